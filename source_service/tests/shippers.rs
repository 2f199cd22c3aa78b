//! Other shippers' protocols on the gateway, driven by their real clients from PyPI
//! (installed by `scripts/setup.sh` into `.data/venv`); every entry or document reaches the
//! storage queue as a record, and a retried request maps to the same record ids.
//! - Loki push: `python-logging-loki` in its legacy JSON (`version="0"`) and JSON
//!   (`version="1"`) forms with HTTP Basic credentials, `loki-logger-handler` (gzip JSON),
//!   and a protobuf `PushRequest` encoded by hand in Python and compressed with
//!   python-snappy, as Promtail, Alloy and Vector send.
//! - Elasticsearch bulk: the `elasticsearch` client (`info`, `cluster.health`,
//!   `helpers.bulk` with `index`, `create` and a refused `delete`) with an `ApiKey`.
//! - OTLP/HTTP: the Python SDK's exporter (protobuf, gzip and deflate) on the OTLP
//!   listener found through `OTEL_EXPORTER_OTLP_ENDPOINT`, the JavaScript exporter (JSON,
//!   installed by setup.sh with npm into `.data/node`) on the gateway's address, and an
//!   export sent twice, with a record the gateway refuses (`partial_success`).
//! - Syslog: util-linux `logger` over TCP (octet counting, LF) and UDP.
//! - GELF: graypy's UDP (chunked), HTTP and TCP handlers, gzip and plain datagrams, and a
//!   post sent twice.
//! - rsyslog (Debian's, installed by setup.sh) following a file and forwarding it with
//!   `omfwd` (TCP, octet-counted) and `omelasticsearch` (bulk, Basic credentials).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use logagg::auth::sha256_hex;
use logagg::settings::{KeySetting, Scope};
use logagg::testsuite::{free_port, wait_until, TestContext};
use logagg::LogRecord;
use support::ServedGateway;

mod support;

const KEY: &str = "loki-shipper-key-0123456789";

/// The records of `service`, in the order taken.
fn of_service<'a>(records: &'a [LogRecord], service: &str) -> Vec<&'a LogRecord> {
    records
        .iter()
        .filter(|record| record.service == service)
        .collect()
}

fn data_dir() -> PathBuf {
    std::env::var_os("LOGAGG_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.data"))
}

fn python() -> PathBuf {
    let venv = data_dir().join("venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run scripts/setup.sh (it installs the Python clients into .data/venv)",
        venv.display()
    );
    venv
}

/// The clients' script: each pushes one or more entries; the protobuf push goes twice (a
/// client's retry). It fails on any answer but 204 it can see.
const LOKI_CLIENTS: &str = r#"
import logging, sys, time, requests, snappy
import logging_loki
from loki_logger_handler.loki_logger_handler import LokiLoggerHandler

url, key = sys.argv[1], sys.argv[2]
push = url + "/loki/api/v1/push"

def logger(name, handler):
    log = logging.getLogger(name)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    log.addHandler(handler)
    return log

legacy = logging_loki.LokiHandler(url=push, tags={"service": "loki-legacy"}, auth=("user", key), version="0")
logger("legacy", legacy).warning("a legacy line")
modern = logging_loki.LokiHandler(url=push, tags={"service_name": "loki-modern", "env": "test"}, auth=("user", key), version="1")
logger("modern", modern).error("a modern line")

handler = LokiLoggerHandler(url=push, labels={"app": "loki-handler", "level": "info"}, auth=("user", key),
                            compressed=True, timeout=1)
logger("handler", handler).info("a handler line")
handler._send()

def varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)

def field(tag, payload):
    return varint(tag << 3 | 2) + varint(len(payload)) + payload

def number(tag, value):
    return varint(tag << 3) + varint(value)

now = time.time_ns()
entry = (field(1, number(1, now // 10**9) + number(2, now % 10**9))
         + field(2, b"a protobuf line")
         + field(3, field(1, b"trace_id") + field(2, b"4bf92f35")))
stream = field(1, b'{job="loki-proto", detected_level="error", host="node-7"}') + field(2, entry)
body = snappy.compress(field(1, stream))
for attempt in range(2):
    answer = requests.post(push, data=body, headers={"Content-Type": "application/x-protobuf",
                                                     "Authorization": "Bearer " + key})
    if answer.status_code != 204:
        sys.exit(f"protobuf push: {answer.status_code} {answer.text}")
ready = requests.get(url + "/ready")
if ready.status_code != 200:
    sys.exit(f"/ready: {ready.status_code}")
"#;

/// A gateway on free ports whose one key may write `services`.
async fn start_gateway(context: &mut TestContext, services: &str) -> ServedGateway {
    context.settings.auth.keys = vec![KeySetting {
        name: "shipper".into(),
        sha256: sha256_hex(KEY),
        scopes: vec![Scope::Ingest],
        services: Some(vec![services.into()]),
    }];
    ServedGateway::start(&mut context.settings).await
}

/// Runs a client script with the gateway's URL and the key; it must succeed.
async fn run_clients(script: &'static str, url: &str) {
    let mut command = Command::new(python());
    command.args(["-c", script, url, KEY]);
    run(command).await;
}

/// Runs a client's command; it must succeed.
async fn run(mut command: Command) {
    let output = tokio::task::spawn_blocking(move || command.output().expect("the client runs"))
        .await
        .expect("join");
    assert!(
        output.status.success(),
        "clients failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_loki_clients_push_every_shape_and_each_entry_is_a_record() {
    let mut context = TestContext::new("loki").await;
    let gateway = start_gateway(&mut context, "loki-*").await;
    let url = gateway.url.clone();
    run_clients(LOKI_CLIENTS, &url).await;

    // Every push was answered before the script ended: the records are queued.
    let records: Vec<LogRecord> = context
        .take_records(&context.settings.broker.storage_queue)
        .await;
    assert_eq!(records.len(), 5, "{records:?}");
    let find = |service: &str| of_service(&records, service);
    let legacy = find("loki-legacy");
    assert_eq!(legacy.len(), 1, "{records:?}");
    assert_eq!(legacy[0].message, "a legacy line");
    assert_eq!(legacy[0].severity, logagg::Severity::Warn);
    assert_eq!(legacy[0].attributes["logger"], "legacy");
    let modern = find("loki-modern");
    assert_eq!(modern.len(), 1, "{records:?}");
    assert_eq!(modern[0].severity, logagg::Severity::Error);
    assert_eq!(modern[0].attributes["env"], "test");
    let handler = find("loki-handler");
    assert_eq!(handler.len(), 1, "{records:?}");
    assert!(
        handler[0].message.contains("a handler line"),
        "{:?}",
        handler[0]
    );
    let proto = find("loki-proto");
    assert_eq!(proto.len(), 2, "the push and its retry: {records:?}");
    assert_eq!(
        proto[0].id, proto[1].id,
        "a retried push maps to the same record"
    );
    assert_eq!(proto[0].message, "a protobuf line");
    assert_eq!(proto[0].severity, logagg::Severity::Error);
    assert_eq!(proto[0].host.as_deref(), Some("node-7"));
    assert_eq!(proto[0].attributes["trace_id"], "4bf92f35");
    let age = chrono::Utc::now() - proto[0].timestamp;
    assert!(age.num_seconds().abs() < 60, "the entry's own time: {age}");

    // A key's services bound what it may push; no key is refused.
    let other = r#"{"streams":[{"stream":{"service_name":"payments"},"values":[["1764740000000000000","x"]]}]}"#;
    let client = reqwest::Client::new();
    let answer = client
        .post(format!("{url}/loki/api/v1/push"))
        .header("content-type", "application/json")
        .basic_auth("user", Some(KEY))
        .body(other)
        .send()
        .await
        .expect("push");
    assert_eq!(answer.status(), 400);
    let body: serde_json::Value = answer.json().await.expect("JSON");
    assert!(
        body["errors"][0]["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("payments")),
        "{body}"
    );
    let anonymous = client
        .post(format!("{url}/loki/api/v1/push"))
        .header("content-type", "application/json")
        .body(other)
        .send()
        .await
        .expect("push");
    assert_eq!(anonymous.status(), 401);
    // A push refused whole is answered as Loki does: the reason as plain text.
    let garbled = client
        .post(format!("{url}/loki/api/v1/push"))
        .header("content-type", "application/json")
        .bearer_auth(KEY)
        .body("{\"streams\": 7}")
        .send()
        .await
        .expect("push");
    assert_eq!(garbled.status(), 400);
    assert!(garbled.headers()["content-type"]
        .to_str()
        .is_ok_and(|kind| kind.starts_with("text/plain")));
    assert!(garbled
        .text()
        .await
        .expect("text")
        .contains("invalid Loki push JSON"));

    gateway.stop().await;
    context.cleanup().await;
}

/// The Elasticsearch client: the calls it makes first, then two bulks (the second a retry
/// of the first, byte for byte): `index` into a data stream, `create` with an `_id` and a
/// service, and a `delete`, refused.
const ES_CLIENTS: &str = r#"
import sys
from elasticsearch import Elasticsearch, helpers

url, key = sys.argv[1], sys.argv[2]
es = Elasticsearch(url, api_key=("shipper", key))
info = es.info()
assert info["tagline"] == "You Know, for Search", info
assert es.cluster.health()["status"] == "green"
actions = [
    {"_op_type": "index", "_index": "logs-esweb-default",
     "_source": {"@timestamp": "2026-12-03T05:00:00.250Z", "message": "GET /cart 200",
                 "log": {"level": "warn"}, "host": {"name": "web-1"},
                 "http": {"request": {"method": "GET"}, "response": {"status_code": 200}},
                 "url": {"path": "/cart"}, "event": {"duration": 1500000}, "trace": {"id": "t-1"}}},
    {"_op_type": "create", "_index": "anything", "_id": "doc-1",
     "_source": {"service": {"name": "es-api"}, "message": "paid", "log.level": "error"}},
    {"_op_type": "delete", "_index": "anything", "_id": "doc-1"},
]
for attempt in range(2):
    stored, errors = helpers.bulk(es, actions, raise_on_error=False, stats_only=False)
    assert stored == 2, (stored, errors)
    assert len(errors) == 1 and errors[0]["delete"]["status"] == 400, errors
    assert "append-only" in errors[0]["delete"]["error"]["reason"], errors
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_elasticsearch_client_bulks_into_records() {
    let mut context = TestContext::new("elasticsearch").await;
    let gateway = start_gateway(&mut context, "es*").await;
    let url = gateway.url.clone();
    run_clients(ES_CLIENTS, &url).await;

    let records: Vec<LogRecord> = context
        .take_records(&context.settings.broker.storage_queue)
        .await;
    assert_eq!(records.len(), 4, "two bulks of two: {records:?}");
    let web: Vec<&LogRecord> = records.iter().filter(|r| r.service == "esweb").collect();
    assert_eq!(web.len(), 2, "{records:?}");
    assert_eq!(
        web[0].id, web[1].id,
        "the retried bulk maps to the same record"
    );
    assert_eq!(web[0].severity, logagg::Severity::Warn);
    assert_eq!(web[0].host.as_deref(), Some("web-1"));
    let http = web[0].http.clone().expect("http fields");
    assert_eq!(
        (
            http.method.as_deref(),
            http.path.as_deref(),
            http.status,
            http.duration_ms
        ),
        (Some("GET"), Some("/cart"), Some(200), Some(1.5))
    );
    assert_eq!(web[0].attributes["trace"]["id"], "t-1");
    assert_eq!(
        web[0]
            .timestamp
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "2026-12-03T05:00:00.250Z"
    );
    let api: Vec<&LogRecord> = records.iter().filter(|r| r.service == "es-api").collect();
    assert_eq!(api.len(), 2, "{records:?}");
    assert!(
        api.iter().all(|record| record.id == "doc-1"),
        "the action's _id"
    );
    assert_eq!(api[0].severity, logagg::Severity::Error);
    // Counted per protocol and outcome. The rsyslog test, running beside this one in the
    // same process, bulks too (accepted only): at least this test's count is there.
    let metrics = logagg::telemetry::metrics_handle().render();
    let counted = |outcome: &str| -> f64 {
        logagg::testsuite::metric_with_labels(
            &metrics,
            "logagg_ingest_records_total",
            &[("protocol", "elasticsearch"), ("outcome", outcome)],
        )
    };
    assert!(counted("accepted") >= 4.0, "{metrics}");
    assert_eq!(counted("rejected"), 2.0, "{metrics}");

    gateway.stop().await;
    context.cleanup().await;
}

/// The Python SDK's logging handler and OTLP/HTTP exporter (protobuf), its endpoint from
/// the environment as deployments set it; once gzip, once deflate. Two identical lines
/// each time: both count.
const OTLP_PYTHON: &str = r#"
import logging, sys
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk.resources import Resource

failures = []
class Checked(OTLPLogExporter):
    def export(self, batch):
        result = super().export(batch)
        if result.name != "SUCCESS":
            failures.append(result)
        return result

resource = Resource.create({"service.name": "otel-py", "host.name": "py-host", "deployment.environment": "test"})
for compression in (Compression.Gzip, Compression.Deflate):
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(SimpleLogRecordProcessor(Checked(compression=compression)))
    log = logging.getLogger("py-" + compression.value)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    log.addHandler(LoggingHandler(level=logging.DEBUG, logger_provider=provider))
    log.warning("a python otlp line", extra={"order.id": 42})
    log.warning("a python otlp line", extra={"order.id": 42})
    provider.shutdown()
if failures:
    sys.exit(f"exports failed: {failures}")
"#;

/// The JavaScript SDK's OTLP/HTTP log exporter (JSON) on the gateway's own address.
const OTLP_JS: &str = r#"
const { OTLPLogExporter } = require('@opentelemetry/exporter-logs-otlp-http');
const { LoggerProvider, SimpleLogRecordProcessor } = require('@opentelemetry/sdk-logs');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const [url, key] = process.argv.slice(-2);
const exporter = new OTLPLogExporter({ url: url + '/v1/logs', headers: { Authorization: 'Bearer ' + key } });
const failures = [];
const exportOnce = exporter.export.bind(exporter);
exporter.export = (logs, done) => exportOnce(logs, (result) => {
  if (result.code !== 0) failures.push(String(result.error));
  done(result);
});
const provider = new LoggerProvider({
  resource: resourceFromAttributes({ 'service.name': 'otel-js' }),
  processors: [new SimpleLogRecordProcessor({ exporter })],
});
const logger = provider.getLogger('js-scope');
logger.emit({ severityNumber: 17, severityText: 'ERROR', body: 'a js otlp line', attributes: { 'user.id': 'u-1' } });
logger.emit({ severityNumber: 9, body: { structured: true, n: 3 } });
provider.shutdown().then(() => {
  if (failures.length) { console.error('exports failed:', failures); process.exit(1); }
});
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_exporters_send_protobuf_and_json_and_a_retried_export_is_stored_once() {
    use prost::Message;
    use source_service::ingest::otlp::proto;

    let mut context = TestContext::new("otlp").await;
    let gateway = start_gateway(&mut context, "otel-*").await;
    let url = gateway.url.clone();
    let otlp_url = format!("http://{}", context.settings.otlp.listen);

    let mut python_client = Command::new(python());
    python_client
        .args(["-c", OTLP_PYTHON])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp_url)
        .env(
            "OTEL_EXPORTER_OTLP_HEADERS",
            format!("Authorization=Bearer%20{KEY}"),
        );
    run(python_client).await;
    let mut js_client = Command::new("node");
    js_client
        .args(["-e", OTLP_JS, &url, KEY])
        .env("NODE_PATH", data_dir().join("node/node_modules"));
    run(js_client).await;

    // An export with a record the key may write and one without a service, sent twice.
    let log = |body: &str| proto::LogRecord {
        time_unix_nano: 1_764_740_000_000_000_000,
        severity_number: 13,
        body: Some(proto::AnyValue {
            value: Some(proto::any_value::Value::StringValue(body.into())),
        }),
        ..Default::default()
    };
    let resource = |attributes: Vec<proto::KeyValue>| proto::ResourceLogs {
        resource: Some(proto::Resource { attributes }),
        scope_logs: vec![proto::ScopeLogs {
            scope: None,
            log_records: vec![log("retried")],
        }],
    };
    let export = proto::ExportLogsServiceRequest {
        resource_logs: vec![
            resource(vec![proto::KeyValue {
                key: "service.name".into(),
                value: Some(proto::AnyValue {
                    value: Some(proto::any_value::Value::StringValue("otel-retry".into())),
                }),
            }]),
            resource(Vec::new()),
        ],
    }
    .encode_to_vec();
    let client = reqwest::Client::new();
    for _attempt in 0..2 {
        let answer = client
            .post(format!("{otlp_url}/v1/logs"))
            .header("content-type", "application/x-protobuf")
            .bearer_auth(KEY)
            .body(export.clone())
            .send()
            .await
            .expect("export");
        assert_eq!(answer.status(), 200);
        let response =
            proto::ExportLogsServiceResponse::decode(answer.bytes().await.expect("body").as_ref())
                .expect("an ExportLogsServiceResponse");
        let partial = response.partial_success.expect("partial_success");
        assert_eq!(partial.rejected_log_records, 1);
        assert!(
            partial.error_message.contains("service.name"),
            "{partial:?}"
        );
    }
    // A body that is no export: 400, a google.rpc.Status (JSON for a JSON request).
    let bad = client
        .post(format!("{otlp_url}/v1/logs"))
        .header("content-type", "application/json")
        .bearer_auth(KEY)
        .body("[1,2]")
        .send()
        .await
        .expect("export");
    assert_eq!(bad.status(), 400);
    let status: serde_json::Value = bad.json().await.expect("JSON");
    assert_eq!(status["code"], 3, "{status}");

    let records: Vec<LogRecord> = context
        .take_records(&context.settings.broker.storage_queue)
        .await;
    let find = |service: &str| of_service(&records, service);
    let python = find("otel-py");
    assert_eq!(python.len(), 4, "{records:?}");
    let ids: std::collections::HashSet<&str> =
        python.iter().map(|record| record.id.as_str()).collect();
    assert_eq!(ids.len(), 4, "identical lines are distinct records");
    assert_eq!(python[0].message, "a python otlp line");
    assert_eq!(python[0].severity, logagg::Severity::Warn);
    assert_eq!(python[0].host.as_deref(), Some("py-host"));
    assert_eq!(python[0].attributes["order_id"], 42);
    assert_eq!(python[0].attributes["deployment_environment"], "test");
    assert!(python
        .iter()
        .any(|record| record.attributes["otel_scope"] == "py-deflate"));
    let js = find("otel-js");
    assert_eq!(js.len(), 2, "{records:?}");
    let line = js.iter().find(|record| record.message == "a js otlp line");
    let line = line.expect("the JS line");
    assert_eq!(line.severity, logagg::Severity::Error);
    assert_eq!(line.attributes["user_id"], "u-1");
    assert_eq!(line.attributes["otel_scope"], "js-scope");
    let structured = js
        .iter()
        .find(|record| record.severity == logagg::Severity::Info);
    let structured: serde_json::Value =
        serde_json::from_str(&structured.expect("the structured body").message)
            .expect("a structured body kept as JSON");
    assert_eq!(structured, serde_json::json!({"structured": true, "n": 3}));
    let retried = find("otel-retry");
    assert_eq!(retried.len(), 2, "the export and its retry: {records:?}");
    assert_eq!(
        retried[0].id, retried[1].id,
        "a retried export maps to the same record"
    );
    assert_eq!(retried[0].timestamp.timestamp(), 1_764_740_000);

    gateway.stop().await;
    context.cleanup().await;
}

/// util-linux `logger` over TCP with octet counting (two lines on one connection) and with
/// LF framing, and over UDP in RFC 3164; then a raw connection sending a good line, a line
/// that is no syslog (dead-lettered with the reason) and an octet count over the limit
/// (the connection is closed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logger_sends_syslog_over_tcp_and_udp_and_a_bad_frame_is_dead_lettered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut context = TestContext::new("syslog").await;
    context.settings.syslog.listen_tcp = ([127, 0, 0, 1], free_port()).into();
    context.settings.syslog.listen_udp = ([127, 0, 0, 1], free_port()).into();
    context.settings.syslog.max_frame_bytes = 1_000;
    // One frame per publish: a connection's later frames wait for nothing but the confirm.
    context.settings.syslog.max_unconfirmed = 1;
    let gateway = start_gateway(&mut context, "*").await;
    let (tcp, udp) = (
        context.settings.syslog.listen_tcp.port().to_string(),
        context.settings.syslog.listen_udp.port().to_string(),
    );
    let logger = |args: &[&str]| {
        let mut command = Command::new("logger");
        command.args(["-n", "127.0.0.1"]).args(args);
        command
    };
    // logger sends one message per line of its standard input, on one connection.
    let mut two_lines = Command::new("sh");
    two_lines.args([
        "-c",
        "printf 'the same line\\nthe same line\\n' | logger -n 127.0.0.1 -P \"$0\" -T --octet-count -t syslog-octet",
        &tcp,
    ]);
    run(two_lines).await;
    run(logger(&[
        "-P",
        &tcp,
        "-T",
        "-t",
        "syslog-lf",
        "a line ended by LF",
    ]))
    .await;
    run(logger(&[
        "-P",
        &udp,
        "-d",
        "--rfc3164",
        "-p",
        "user.warning",
        "-t",
        "syslog-udp",
        "a datagram",
    ]))
    .await;
    let mut raw = tokio::net::TcpStream::connect(context.settings.syslog.listen_tcp)
        .await
        .expect("connect");
    raw.write_all(
        b"<11>Dec  3 08:00:00 web-1 syslog-raw: a raw line\nthis is not syslog\n99999 <13>too long",
    )
    .await
    .expect("write");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(30), raw.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "a count over the limit closes the connection"
    );

    let storage = context.settings.broker.storage_queue.clone();
    let dead = context.settings.broker.dead_letter_queue.clone();
    let arrived = wait_until(Duration::from_secs(30), || async {
        let ready = |state: Option<logagg::testsuite::QueueState>| state.map_or(0, |s| s.ready);
        ready(context.queue_state(&storage).await) >= 5
            && ready(context.queue_state(&dead).await) >= 1
    })
    .await;
    assert!(arrived, "5 records and 1 dead letter");
    let records: Vec<LogRecord> = context.take_records(&storage).await;
    assert_eq!(records.len(), 5, "{records:?}");
    let find = |service: &str| of_service(&records, service);
    let octet = find("syslog-octet");
    assert_eq!(octet.len(), 2, "{records:?}");
    assert_ne!(octet[0].id, octet[1].id, "identical lines are two records");
    assert_eq!(octet[0].message, "the same line");
    assert_eq!(octet[0].severity, logagg::Severity::Notice);
    assert_eq!(find("syslog-lf")[0].message, "a line ended by LF");
    let datagram = find("syslog-udp");
    assert_eq!(datagram.len(), 1, "{records:?}");
    assert_eq!(datagram[0].severity, logagg::Severity::Warn);
    let raw_line = find("syslog-raw");
    assert_eq!(raw_line.len(), 1, "{records:?}");
    assert_eq!(raw_line[0].host.as_deref(), Some("web-1"));
    let dead_letters = logagg::testsuite::take_all(&context.connection, &dead).await;
    assert_eq!(dead_letters.len(), 1);
    assert_eq!(dead_letters[0].data, b"this is not syslog");
    let reason = logagg::testsuite::header_text(
        &dead_letters[0].properties,
        logagg::topology::HEADER_REASON,
    )
    .expect("a reason");
    assert!(!reason.is_empty());

    gateway.stop().await;
    context.cleanup().await;
}

/// graypy's three handlers: UDP (a short message, and one of 20,000 characters sent in
/// chunks of 1,420 bytes, its default), HTTP (its header for the key added) and TCP; then
/// datagrams made by hand, gzip and plain.
const GRAYPY: &str = r#"
import gzip, json, logging, secrets, socket, sys, time
import graypy

host, udp, tcp, http, key = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]

def logger(name, handler):
    log = logging.getLogger(name)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    log.addHandler(handler)
    return log

udp_log = logger("gelf-udp", graypy.GELFUDPHandler(host, udp))
udp_log.warning("a short datagram", extra={"order_id": 42})
udp_log.error(secrets.token_hex(10000))

http_handler = graypy.GELFHTTPHandler(host, http, path="/gelf")
http_handler.headers["Authorization"] = "Bearer " + key
logger("gelf-http", http_handler).info("over HTTP", extra={"service": "gelf-http-svc"})

tcp_handler = graypy.GELFTCPHandler(host, tcp)
logger("gelf-tcp", tcp_handler).error("over TCP")
tcp_handler.close()

raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
message = {"version": "1.1", "host": "raw-host", "short_message": "gzip datagram", "_service": "gelf-raw", "timestamp": time.time(), "level": 4}
raw.sendto(gzip.compress(json.dumps(message).encode()), (host, udp))
message["short_message"] = "plain datagram"
raw.sendto(json.dumps(message).encode(), (host, udp))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graypy_sends_gelf_over_udp_http_and_tcp_and_a_retried_post_is_stored_once() {
    let mut context = TestContext::new("gelf").await;
    context.settings.gelf.listen_tcp = ([127, 0, 0, 1], free_port()).into();
    context.settings.gelf.listen_udp = ([127, 0, 0, 1], free_port()).into();
    let gateway = start_gateway(&mut context, "gelf-*").await;
    let url = gateway.url.clone();
    let mut graypy = Command::new(python());
    graypy.args([
        "-c",
        GRAYPY,
        "127.0.0.1",
        &context.settings.gelf.listen_udp.port().to_string(),
        &context.settings.gelf.listen_tcp.port().to_string(),
        &context.settings.gateway.listen.port().to_string(),
        KEY,
    ]);
    run(graypy).await;
    // A post sent twice, as a client's retry.
    let post = r#"{"version":"1.1","host":"h","short_message":"retried","_service":"gelf-retry"}"#;
    for _attempt in 0..2 {
        let answer = reqwest::Client::new()
            .post(format!("{url}/gelf"))
            .bearer_auth(KEY)
            .body(post)
            .send()
            .await
            .expect("post");
        assert_eq!(answer.status(), 202);
    }

    let storage = context.settings.broker.storage_queue.clone();
    let arrived = wait_until(Duration::from_secs(30), || async {
        context
            .queue_state(&storage)
            .await
            .is_some_and(|state| state.ready >= 8)
    })
    .await;
    let records: Vec<LogRecord> = context.take_records(&storage).await;
    if !arrived {
        let dead_letters = logagg::testsuite::take_all(
            &context.connection,
            &context.settings.broker.dead_letter_queue,
        )
        .await;
        let reasons: Vec<Option<String>> = dead_letters
            .iter()
            .map(|letter| {
                logagg::testsuite::header_text(&letter.properties, logagg::topology::HEADER_REASON)
            })
            .collect();
        panic!("8 records expected: {records:?}; dead letters: {reasons:?}");
    }
    assert_eq!(records.len(), 8, "{records:?}");
    let find = |service: &str| of_service(&records, service);
    let udp = find("gelf-udp");
    assert_eq!(udp.len(), 2, "{records:?}");
    let short = udp
        .iter()
        .find(|record| record.severity == logagg::Severity::Warn)
        .expect("the short datagram");
    assert_eq!(short.message, "a short datagram");
    assert_eq!(short.attributes["order_id"], 42);
    let chunked = udp
        .iter()
        .find(|record| record.severity == logagg::Severity::Error)
        .expect("the chunked message");
    assert_eq!(chunked.message.len(), 20_000, "all its chunks, joined");
    let http = find("gelf-http-svc");
    assert_eq!(http.len(), 1, "{records:?}");
    assert_eq!(http[0].message, "over HTTP");
    assert_eq!(find("gelf-tcp")[0].message, "over TCP");
    let raw = find("gelf-raw");
    assert_eq!(raw.len(), 2, "{records:?}");
    assert!(raw.iter().any(|record| record.message == "gzip datagram"));
    assert_eq!(raw[0].host.as_deref(), Some("raw-host"));
    let retried = find("gelf-retry");
    assert_eq!(retried.len(), 2, "{records:?}");
    assert_eq!(
        retried[0].id, retried[1].id,
        "a retried post maps to the same record"
    );

    gateway.stop().await;
    context.cleanup().await;
}

/// rsyslog's configuration: follow `{dir}/app.log`, forward every line to the syslog
/// listener (omfwd, TCP, octet-counted) and to the bulk API (omelasticsearch).
fn rsyslog_config(dir: &std::path::Path, syslog_port: u16, http_port: u16) -> String {
    let dir = dir.display();
    format!(
        r#"
global(workDirectory="{dir}")
module(load="imfile")
module(load="omelasticsearch")
input(type="imfile" File="{dir}/app.log" Tag="rsyslog-file" Ruleset="forward")
template(name="document" type="list" option.jsonf="on") {{
  property(outname="message" name="msg" format="jsonf")
  property(outname="@timestamp" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="host.name" name="hostname" format="jsonf")
}}
ruleset(name="forward") {{
  action(type="omfwd" target="127.0.0.1" port="{syslog_port}" protocol="tcp"
         TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")
  action(type="omelasticsearch" server="127.0.0.1" serverport="{http_port}"
         searchIndex="rsyslog-es" template="document" bulkmode="on" esVersion.major="8"
         uid="rsyslog" pwd="{KEY}")
}}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsyslog_forwards_a_file_with_omfwd_and_omelasticsearch() {
    let mut context = TestContext::new("rsyslog").await;
    context.settings.syslog.listen_tcp = ([127, 0, 0, 1], free_port()).into();
    let gateway = start_gateway(&mut context, "rsyslog-*").await;
    let dir = std::env::temp_dir().join(format!(
        "logagg-rsyslog-{}",
        context.settings.store.database
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("rsyslog's directory");
    let lines = "payment accepted for order 1\nthe same line\nthe same line\n";
    std::fs::write(dir.join("app.log"), lines).expect("the followed file");
    let config = dir.join("rsyslog.conf");
    std::fs::write(
        &config,
        rsyslog_config(
            &dir,
            context.settings.syslog.listen_tcp.port(),
            context.settings.gateway.listen.port(),
        ),
    )
    .expect("rsyslog.conf");
    let mut rsyslog = std::process::Command::new("rsyslogd")
        .arg("-n")
        .arg("-f")
        .arg(&config)
        .arg("-i")
        .arg(dir.join("rsyslogd.pid"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("rsyslogd starts (scripts/setup.sh installs rsyslog and rsyslog-elasticsearch)");

    let storage = context.settings.broker.storage_queue.clone();
    let arrived = wait_until(Duration::from_secs(60), || async {
        context
            .queue_state(&storage)
            .await
            .is_some_and(|state| state.ready >= 6)
    })
    .await;
    let _ = rsyslog.kill();
    let output = rsyslog.wait_with_output().expect("rsyslogd's output");
    let records: Vec<LogRecord> = context.take_records(&storage).await;
    assert!(
        arrived,
        "3 lines by each path: {records:?}\nrsyslogd: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(records.len(), 6, "{records:?}");
    for service in ["rsyslog-file", "rsyslog-es"] {
        let mut messages: Vec<&str> = records
            .iter()
            .filter(|record| record.service == service)
            .map(|record| record.message.as_str())
            .collect();
        messages.sort_unstable();
        assert_eq!(
            messages,
            [
                "payment accepted for order 1",
                "the same line",
                "the same line"
            ],
            "{service}: {records:?}"
        );
    }
    gateway.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    context.cleanup().await;
}
