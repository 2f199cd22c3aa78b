//! Records per second through each of the gateway's ingest protocols, in one run on one
//! broker: every HTTP protocol at `BENCH_RECORDS` (100) realistic records per request from
//! `BENCH_CONNECTIONS` (8) clients for `BENCH_SECONDS` (10) each, as a ratio of the gateway's
//! own NDJSON; then GELF over UDP sent at the NDJSON rate (what arrived of what was sent),
//! and syslog over TCP as fast as its back-pressure lets one connection write.
//! `cargo bench -p source_service --bench protocols` (`BENCH_ROUNDS` 2, the order reversed in
//! the second; `BENCH_ONLY=ndjson,otlp-json,…` for some); docs/PERFORMANCE.md quotes it.
//!
//! The gateway runs in this process (as `source_service gateway` does), its own exchange and
//! queues; the storage queue is purged between protocols. Nothing consumes it: these are
//! the gateway's rates up to the broker's confirms, not the pipeline's.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use logagg::testsuite::{block_on, free_port, metric_with_labels, under_cargo_bench, TestContext};
use logagg::Severity;
use prost::Message;
use serde_json::json;
use source_service::ingest::{loki, otlp};
use source_service::load::realistic::RealisticMessages;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

/// A request body in each protocol, and where it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Ndjson,
    LokiProtobuf,
    LokiJson,
    Elasticsearch,
    OtlpProtobuf,
    OtlpJson,
    GelfHttp,
}

impl Protocol {
    const ALL: [Protocol; 7] = [
        Protocol::Ndjson,
        Protocol::LokiProtobuf,
        Protocol::LokiJson,
        Protocol::Elasticsearch,
        Protocol::OtlpProtobuf,
        Protocol::OtlpJson,
        Protocol::GelfHttp,
    ];

    /// Its name in `BENCH_ONLY`.
    fn key(self) -> &'static str {
        match self {
            Protocol::Ndjson => "ndjson",
            Protocol::LokiProtobuf => "loki-protobuf",
            Protocol::LokiJson => "loki-json",
            Protocol::Elasticsearch => "elasticsearch",
            Protocol::OtlpProtobuf => "otlp-protobuf",
            Protocol::OtlpJson => "otlp-json",
            Protocol::GelfHttp => "gelf-http",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Protocol::Ndjson => "NDJSON (POST /api/v1/logs)",
            Protocol::LokiProtobuf => "Loki push, protobuf + snappy",
            Protocol::LokiJson => "Loki push, JSON",
            Protocol::Elasticsearch => "Elasticsearch bulk",
            Protocol::OtlpProtobuf => "OTLP/HTTP, protobuf",
            Protocol::OtlpJson => "OTLP/HTTP, JSON",
            Protocol::GelfHttp => "GELF, POST /gelf (one a line)",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Protocol::Ndjson => "/api/v1/logs",
            Protocol::LokiProtobuf | Protocol::LokiJson => "/loki/api/v1/push",
            Protocol::Elasticsearch => "/_bulk",
            Protocol::OtlpProtobuf | Protocol::OtlpJson => "/v1/logs",
            Protocol::GelfHttp => "/gelf",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Protocol::Ndjson => "application/x-ndjson",
            Protocol::LokiProtobuf | Protocol::OtlpProtobuf => "application/x-protobuf",
            _ => "application/json",
        }
    }

    /// A request holding `logs`, each `(service, severity, message)`.
    fn body(self, logs: &[(String, Severity, String)], now_nanos: u64) -> Vec<u8> {
        match self {
            Protocol::Ndjson => logs
                .iter()
                .map(|(service, severity, message)| {
                    json!({"service": service, "severity": severity.as_str(), "message": message})
                        .to_string()
                        + "\n"
                })
                .collect::<String>()
                .into_bytes(),
            Protocol::LokiJson => {
                let streams: Vec<_> = logs
                    .iter()
                    .map(|(service, severity, message)| {
                        json!({"stream": {"service_name": service, "level": severity.as_str()},
                               "values": [[now_nanos.to_string(), message]]})
                    })
                    .collect();
                json!({ "streams": streams }).to_string().into_bytes()
            }
            Protocol::LokiProtobuf => {
                let streams = logs
                    .iter()
                    .map(|(service, severity, message)| loki::proto::StreamAdapter {
                        labels: format!(
                            "{{service_name=\"{service}\", level=\"{}\"}}",
                            severity.as_str()
                        ),
                        entries: vec![loki::proto::EntryAdapter {
                            timestamp: Some(loki::proto::Timestamp {
                                seconds: (now_nanos / 1_000_000_000) as i64,
                                nanos: (now_nanos % 1_000_000_000) as i32,
                            }),
                            line: message.clone(),
                            structured_metadata: Vec::new(),
                        }],
                    })
                    .collect();
                let push = loki::proto::PushRequest { streams }.encode_to_vec();
                snap::raw::Encoder::new()
                    .compress_vec(&push)
                    .expect("snappy")
            }
            Protocol::Elasticsearch => logs
                .iter()
                .map(|(service, severity, message)| {
                    format!(
                        "{}\n{}\n",
                        json!({"create": {"_index": service}}),
                        json!({"message": message, "log.level": severity.as_str()})
                    )
                })
                .collect::<String>()
                .into_bytes(),
            Protocol::OtlpProtobuf => otlp_request(logs, now_nanos).encode_to_vec(),
            Protocol::OtlpJson => {
                let resource_logs: Vec<_> = logs
                    .iter()
                    .map(|(service, severity, message)| {
                        json!({
                            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                            "scopeLogs": [{"logRecords": [{
                                "timeUnixNano": now_nanos.to_string(),
                                "severityText": severity.as_str(),
                                "body": {"stringValue": message},
                            }]}],
                        })
                    })
                    .collect();
                json!({ "resourceLogs": resource_logs })
                    .to_string()
                    .into_bytes()
            }
            Protocol::GelfHttp => logs
                .iter()
                .map(|(service, severity, message)| {
                    gelf_message(service, *severity, message) + "\n"
                })
                .collect::<String>()
                .into_bytes(),
        }
    }
}

fn otlp_request(
    logs: &[(String, Severity, String)],
    now_nanos: u64,
) -> otlp::proto::ExportLogsServiceRequest {
    let text = |text: &str| otlp::proto::AnyValue {
        value: Some(otlp::proto::any_value::Value::StringValue(text.to_owned())),
    };
    otlp::proto::ExportLogsServiceRequest {
        resource_logs: logs
            .iter()
            .map(|(service, severity, message)| otlp::proto::ResourceLogs {
                resource: Some(otlp::proto::Resource {
                    attributes: vec![otlp::proto::KeyValue {
                        key: "service.name".into(),
                        value: Some(text(service)),
                    }],
                }),
                scope_logs: vec![otlp::proto::ScopeLogs {
                    scope: None,
                    log_records: vec![otlp::proto::LogRecord {
                        time_unix_nano: now_nanos,
                        severity_text: severity.as_str().into(),
                        body: Some(text(message)),
                        ..Default::default()
                    }],
                }],
            })
            .collect(),
    }
}

/// A severity as a syslog level (GELF's `level` too).
fn syslog_level(severity: Severity) -> u8 {
    match severity {
        Severity::Fatal => 2,
        Severity::Error => 3,
        Severity::Warn => 4,
        Severity::Notice => 5,
        Severity::Info => 6,
        Severity::Trace | Severity::Debug => 7,
    }
}

fn gelf_message(service: &str, severity: Severity, message: &str) -> String {
    let level = syslog_level(severity);
    json!({"version": "1.1", "host": "bench", "short_message": message, "level": level,
           "_service": service})
    .to_string()
}

fn syslog_frame(service: &str, severity: Severity, message: &str) -> Vec<u8> {
    let line = format!(
        "<{}>1 - bench {service} - - - {message}",
        8 + syslog_level(severity)
    );
    let mut frame = format!("{} ", line.len()).into_bytes();
    frame.extend_from_slice(line.as_bytes());
    frame
}

fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Realistic logs over 20 services, a pool the requests draw from.
fn log_pool(size: usize) -> Vec<(String, Severity, String)> {
    let mut messages = RealisticMessages::new(20, 11);
    (0..size)
        .map(|index| {
            let severity = match index % 20 {
                0 => Severity::Error,
                1 | 2 => Severity::Warn,
                3 => Severity::Debug,
                _ => Severity::Info,
            };
            let service = index % 20;
            (
                format!("bench-{service}"),
                severity,
                messages.message(service, severity),
            )
        })
        .collect()
}

fn accepted(protocol: &str) -> f64 {
    metric_with_labels(
        &logagg::telemetry::metrics_handle().render(),
        "logagg_ingest_records_total",
        &[("protocol", protocol), ("outcome", "accepted")],
    )
}

fn main() {
    if !under_cargo_bench("cargo bench -p source_service --bench protocols") {
        return;
    }
    let seconds: u64 = setting("BENCH_SECONDS", 10);
    let connections: usize = setting("BENCH_CONNECTIONS", 8);
    let per_request: usize = setting("BENCH_RECORDS", 100);
    block_on(async move {
        logagg::telemetry::metrics_handle();
        let mut context = TestContext::new("bench_protocols").await;
        let settings = &mut context.settings;
        let http_port = free_port();
        settings.gateway.listen = ([127, 0, 0, 1], http_port).into();
        settings.gateway.rate_per_second = 100_000_000;
        settings.gateway.burst = 100_000_000;
        settings.gateway.max_unconfirmed = 1_000_000;
        settings.syslog.listen_tcp = ([127, 0, 0, 1], free_port()).into();
        settings.gelf.listen_udp = ([127, 0, 0, 1], free_port()).into();
        let shutdown = CancellationToken::new();
        let gateway = tokio::spawn(source_service::serve_gateway(
            context.settings.clone(),
            shutdown.clone(),
        ));
        let base = format!("http://127.0.0.1:{http_port}");
        let client = reqwest::Client::new();
        let ready = logagg::testsuite::wait_until(Duration::from_secs(30), || async {
            client.get(format!("{base}/ready")).send().await.is_ok()
        })
        .await;
        assert!(ready, "the gateway never listened");
        let pool = Arc::new(log_pool(10_000));
        println!(
            "{connections} clients, {per_request} realistic records a request, {seconds} s each"
        );
        // Rounds alternate the order (NDJSON first, then last), so a broker slowing down over
        // the run shows as a difference between rounds, not between protocols.
        let rounds: usize = setting("BENCH_ROUNDS", 2);
        let mut rates: Vec<(Protocol, f64)> = Vec::new();
        // `BENCH_ONLY=ndjson,otlp-json` runs those alone (a profile's run).
        let only = std::env::var("BENCH_ONLY").unwrap_or_default();
        let mut order: Vec<Protocol> = Protocol::ALL
            .into_iter()
            .filter(|protocol| only.is_empty() || only.split(',').any(|key| key == protocol.key()))
            .collect();
        for round in 0..rounds {
            if round > 0 {
                order.reverse();
            }
            println!("-- round {}", round + 1);
            for protocol in order.clone() {
                context
                    .purge_queue(&context.settings.broker.storage_queue)
                    .await;
                let records = Arc::new(AtomicU64::new(0));
                let failures = Arc::new(AtomicU64::new(0));
                let stop = Arc::new(AtomicBool::new(false));
                let started = Instant::now();
                let clients: Vec<_> = (0..connections)
                    .map(|client_index| {
                        let (pool, records, failures, stop, client, url) = (
                            Arc::clone(&pool),
                            Arc::clone(&records),
                            Arc::clone(&failures),
                            Arc::clone(&stop),
                            client.clone(),
                            format!("{base}{}", protocol.path()),
                        );
                        tokio::spawn(async move {
                            let mut request = client_index;
                            while !stop.load(Ordering::Relaxed) {
                                let start = (request * per_request) % (pool.len() - per_request);
                                let now = std::time::SystemTime::now()
                                    .duration_since(std::time::UNIX_EPOCH)
                                    .map_or(0, |elapsed| elapsed.as_nanos() as u64);
                                let body = protocol.body(&pool[start..start + per_request], now);
                                let answer = client
                                    .post(&url)
                                    .header("content-type", protocol.content_type())
                                    .body(body)
                                    .send()
                                    .await;
                                match answer {
                                    Ok(answer) if answer.status().is_success() => {
                                        records.fetch_add(per_request as u64, Ordering::Relaxed);
                                    }
                                    _ => {
                                        failures.fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                                request += connections;
                            }
                        })
                    })
                    .collect();
                tokio::time::sleep(Duration::from_secs(seconds)).await;
                stop.store(true, Ordering::Relaxed);
                for client in clients {
                    let _ = client.await;
                }
                let elapsed = started.elapsed().as_secs_f64();
                let rate = records.load(Ordering::Relaxed) as f64 / elapsed;
                rates.push((protocol, rate));
                println!(
                    "{:<32} {:>9.0} records/s  ({} failed requests)",
                    protocol.name(),
                    rate,
                    failures.load(Ordering::Relaxed)
                );
            }
        }
        let mean = |wanted: Protocol| -> f64 {
            let runs: Vec<f64> = rates
                .iter()
                .filter(|(protocol, _)| *protocol == wanted)
                .map(|(_, rate)| *rate)
                .collect();
            runs.iter().sum::<f64>() / runs.len().max(1) as f64
        };
        let ndjson_rate = mean(Protocol::Ndjson);
        println!("-- mean of the rounds, as a ratio of NDJSON's");
        for protocol in order {
            println!(
                "{:<32} {:>9.0} records/s  {:>5.2}",
                protocol.name(),
                mean(protocol),
                mean(protocol) / ndjson_rate
            );
        }

        // GELF over UDP, sent at the NDJSON rate in bursts of `per_request`.
        context
            .purge_queue(&context.settings.broker.storage_queue)
            .await;
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("udp");
        let target = context.settings.gelf.listen_udp;
        let to_send = (ndjson_rate * seconds as f64) as usize;
        let before = accepted("gelf");
        let pace = Duration::from_secs_f64(per_request as f64 / ndjson_rate.max(1.0));
        let mut ticker = tokio::time::interval(pace);
        let started = Instant::now();
        let mut sent = 0;
        while sent < to_send {
            ticker.tick().await;
            for offset in 0..per_request {
                let (service, severity, message) = &pool[(sent + offset) % pool.len()];
                let datagram = gelf_message(service, *severity, message);
                if socket.send_to(datagram.as_bytes(), target).await.is_ok() {
                    sent += 1;
                }
            }
        }
        let sending = started.elapsed().as_secs_f64();
        // UDP may lose some, so there is no count to wait for: arrivals are read once they
        // stop growing for half a second (the gateway publishes what it read in batches).
        let mut arrived = accepted("gelf") - before;
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = accepted("gelf") - before;
            if now == arrived {
                break;
            }
            arrived = now;
        }
        // The listener reads the kernel's drop count every 5 s: wait for one more reading.
        tokio::time::sleep(Duration::from_millis(5_500)).await;
        let kernel_dropped = metric_with_labels(
            &logagg::telemetry::metrics_handle().render(),
            "logagg_udp_dropped_total",
            &[("protocol", "gelf")],
        );
        println!(
            "GELF over UDP at {:.0} datagrams/s: {sent} sent, {arrived:.0} arrived ({:.2} %); \
             the kernel counted {kernel_dropped:.0} dropped (logagg_udp_dropped_total)",
            sent as f64 / sending,
            100.0 * arrived / sent.max(1) as f64
        );

        // Syslog over TCP: one connection, octet-counted, as fast as back-pressure allows.
        context
            .purge_queue(&context.settings.broker.storage_queue)
            .await;
        let before = accepted("syslog");
        let frames = to_send;
        let mut stream = tokio::net::TcpStream::connect(context.settings.syslog.listen_tcp)
            .await
            .expect("syslog connection");
        let started = Instant::now();
        for (service, severity, message) in pool.iter().cycle().take(frames) {
            stream
                .write_all(&syslog_frame(service, *severity, message))
                .await
                .expect("write");
        }
        stream.shutdown().await.expect("shutdown");
        let all = logagg::testsuite::wait_until(Duration::from_secs(600), || async {
            accepted("syslog") - before >= frames as f64
        })
        .await;
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "syslog over TCP, one connection: {frames} frames in {elapsed:.1} s = {:.0} records/s ({})",
            frames as f64 / elapsed,
            if all { "all arrived" } else { "NOT all arrived" }
        );

        shutdown.cancel();
        let _ = gateway.await;
        context.cleanup().await;
    });
}
