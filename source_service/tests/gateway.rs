//! The HTTP ingest gateway against the real RabbitMQ: what it accepts reaches the storage
//! queue as records the collector parses back, and the error matrix.

use std::io::Write;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use logagg::settings::{AuthSettings, GatewaySettings};
use logagg::testsuite::TestContext;
use logagg::{LogRecord, Severity};
use serde_json::Value;
use source_service::ingest::gateway::{router, Gateway};
use tower::ServiceExt;

mod support;

fn app(context: &TestContext, settings: GatewaySettings) -> axum::Router {
    router(
        Gateway::new(settings, context.settings.broker.clone()),
        &context.settings.auth,
    )
}

async fn post(
    app: &axum::Router,
    uri: &str,
    body: impl Into<Body>,
    headers: &[(&str, &str)],
) -> (StatusCode, Option<String>, Value) {
    let mut request = Request::post(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = app
        .clone()
        .oneshot(request.body(body.into()).expect("request"))
        .await
        .expect("response");
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().expect("header").to_owned());
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
        .await
        .expect("body");
    (
        status,
        retry_after,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Every message in the storage queue, parsed as the collector parses it.
async fn stored_queue(context: &TestContext) -> Vec<LogRecord> {
    context
        .take_records(&context.settings.broker.storage_queue)
        .await
}

fn gzip(text: &str) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(text.as_bytes()).expect("gzip");
    encoder.finish().expect("gzip")
}

#[tokio::test]
async fn json_records_arrays_and_ndjson_are_confirmed_then_answered_202() {
    let context = TestContext::new("gateway_json").await;
    let app = app(&context, GatewaySettings::default());
    let one = r#"{"service":"checkout","level":"ERROR","msg":"card declined","ts":"2026-11-21T11:00:00Z","http":{"method":"post","path":"/pay","status":502}}"#;
    let (status, _, body) = post(
        &app,
        "/api/v1/logs",
        one,
        &[("content-type", "application/json")],
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        (body["accepted"].as_u64(), body["rejected"].as_u64()),
        (Some(1), Some(0))
    );

    let array = r#"[{"service":"auth","severity":"info","message":"login"},
                    {"service":"auth","severity":"loud","message":"bad severity"},
                    {"service":"auth","severity":"warn","message":"slow login"}]"#;
    let (status, _, body) = post(&app, "/api/v1/logs", array, &[]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        (body["accepted"].as_u64(), body["rejected"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(body["errors"][0]["index"], 1);
    assert!(body["errors"][0]["reason"]
        .as_str()
        .expect("reason")
        .contains("loud"));

    let ndjson = "{\"service\":\"search\",\"severity\":\"debug\",\"message\":\"a\"}\n{\"service\":\"search\",\"message\":\"no severity\"}\n{\"service\":\"search\",\"severity\":\"info\",\"message\":\"b\"}\n";
    let (status, _, body) = post(
        &app,
        "/api/v1/logs",
        gzip(ndjson),
        &[
            ("content-type", "application/x-ndjson"),
            ("content-encoding", "gzip"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        (body["accepted"].as_u64(), body["rejected"].as_u64()),
        (Some(2), Some(1))
    );
    assert!(body["errors"][0]["reason"]
        .as_str()
        .expect("reason")
        .contains("severity"));

    let records = stored_queue(&context).await;
    assert_eq!(
        records.len(),
        5,
        "exactly the accepted records, confirmed before 202"
    );
    let first = &records[0];
    assert_eq!(
        (first.service.as_str(), first.severity),
        ("checkout", Severity::Error)
    );
    assert_eq!(
        first.http.as_ref().and_then(|http| http.method.as_deref()),
        Some("POST")
    );
    let messages: Vec<&str> = records
        .iter()
        .map(|record| record.message.as_str())
        .collect();
    assert_eq!(messages, ["card declined", "login", "slow login", "a", "b"]);
    context.cleanup().await;
}

#[tokio::test]
async fn raw_lines_in_each_format_become_records_with_their_fields() {
    let context = TestContext::new("gateway_raw").await;
    let app = app(&context, GatewaySettings::default());
    let clf =
        "127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] \"GET /apache_pb.gif HTTP/1.0\" 200 2326\n\
               10.0.0.2 - - [10/Oct/2000:13:55:37 -0700] \"POST /login HTTP/1.1\" 503 -\n\
               this is not an access log\n";
    let (status, _, body) = post(&app, "/api/v1/logs/raw?format=clf&service=web", clf, &[]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        (body["accepted"].as_u64(), body["rejected"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(body["errors"][0]["index"], 2);
    for (format, line) in [
        (
            "syslog5424",
            "<34>1 2003-10-11T22:14:15.003Z mymachine su - ID47 - 'su root' failed",
        ),
        (
            "syslog3164",
            "<13>Nov 21 11:58:01 web-3 sshd[4242]: Accepted publickey for deploy",
        ),
        (
            "logfmt",
            "level=warn service=cart msg=\"cart is slow\" duration_ms=950",
        ),
        (
            "plain",
            "2024-05-01 12:00:00 ServiceA Error Log message generated",
        ),
        (
            "combined",
            "1.2.3.4 - - [21/Nov/2026:11:00:00 +0000] \"GET /x HTTP/1.1\" 404 12 \"-\" \"curl/8\"",
        ),
    ] {
        let (status, _, body) = post(
            &app,
            &format!("/api/v1/logs/raw?format={format}&service=edge"),
            line,
            &[],
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{format}: {body}");
    }
    let records = stored_queue(&context).await;
    assert_eq!(records.len(), 7);
    let http = records[1].http.as_ref().expect("http fields");
    assert_eq!(
        (http.status, http.path.as_deref(), http.bytes),
        (Some(503), Some("/login"), None)
    );
    assert_eq!(records[1].severity, Severity::Error);
    assert_eq!(records[2].severity, Severity::Fatal);
    assert_eq!(
        records[6]
            .http
            .as_ref()
            .and_then(|h| h.user_agent.as_deref()),
        Some("curl/8")
    );
    context.cleanup().await;
}

#[tokio::test]
async fn the_error_matrix() {
    let context = TestContext::new("gateway_errors").await;
    let settings = GatewaySettings {
        max_body_bytes: 4_096,
        max_records: 10,
        rate_per_second: 1,
        burst: 10,
        ..GatewaySettings::default()
    };
    let app = app(&context, settings);
    let line = r#"{"service":"a","severity":"info","message":"m"}"#;
    let big = "x".repeat(5_000);
    let eleven = [line; 11].join("\n");
    for (uri, body, headers, expected) in [
        (
            "/api/v1/logs",
            big.clone().into_bytes(),
            vec![],
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "/api/v1/logs",
            gzip(&"{}".repeat(3_000)),
            vec![("content-encoding", "gzip")],
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "/api/v1/logs",
            eleven.into_bytes(),
            vec![],
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "/api/v1/logs",
            b"not gzip".to_vec(),
            vec![("content-encoding", "gzip")],
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/logs",
            line.as_bytes().to_vec(),
            vec![("content-encoding", "br")],
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/logs",
            b"".to_vec(),
            vec![],
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/logs",
            b"[1, 2".to_vec(),
            vec![],
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/logs",
            vec![0xff, 0xfe],
            vec![],
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/logs",
            br#"{"message":"no service"}"#.to_vec(),
            vec![],
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/logs/raw",
            b"x".to_vec(),
            vec![],
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/logs/raw?format=csv",
            b"x".to_vec(),
            vec![],
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/logs/raw?format=clf&service=bad*name",
            b"x".to_vec(),
            vec![],
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/nothing",
            b"x".to_vec(),
            vec![],
            StatusCode::NOT_FOUND,
        ),
    ] {
        let (status, _, answer) = post(&app, uri, body, &headers).await;
        assert_eq!(status, expected, "{uri} {headers:?}: {answer}");
        assert!(answer["error"]["message"].is_string(), "{uri}: {answer}");
    }
    assert!(
        stored_queue(&context).await.is_empty(),
        "nothing refused was published"
    );

    // The bucket holds 10 records and refills one a second: 5 more right after 10 are
    // refused, told to come back when 5 tokens are there again (at most 5 s).
    let ten = [line; 10].join("\n");
    let (status, _, _) = post(&app, "/api/v1/logs", ten, &[]).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let five = [line; 5].join("\n");
    let (status, retry_after, body) = post(&app, "/api/v1/logs", five, &[]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let retry_after: u64 = retry_after.expect("Retry-After").parse().expect("seconds");
    assert!((1..=5).contains(&retry_after), "{retry_after}");
    context.cleanup().await;
}

#[tokio::test]
async fn keys_broker_outages_and_lagging_confirms() {
    let context = TestContext::new("gateway_keys").await;
    let key = "gateway-key-0123456789";
    let line = r#"{"service":"a","severity":"info","message":"m"}"#;
    let keyed = app(
        &context,
        GatewaySettings {
            api_keys: vec![key.into()],
            ..GatewaySettings::default()
        },
    );
    let (status, _, body) = post(&keyed, "/api/v1/logs", line, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, _, _) = post(&keyed, "/api/v1/logs", line, &[("x-api-key", key)]).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // RabbitMQ unreachable: 503 with Retry-After, nothing held.
    let mut unreachable = context.settings.broker.clone();
    unreachable.url = format!(
        "amqp://guest:guest@127.0.0.1:{}/%2f",
        logagg::testsuite::free_port()
    );
    let down = router(
        Gateway::new(GatewaySettings::default(), unreachable),
        &AuthSettings::default(),
    );
    let (status, retry_after, body) = post(&down, "/api/v1/logs", line, &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(retry_after.as_deref(), Some("5"));

    // Confirms that cannot arrive in time: 503 with Retry-After, not an endless wait.
    let lagging = app(
        &context,
        GatewaySettings {
            confirm_timeout_ms: std::time::Duration::from_millis(1),
            ..GatewaySettings::default()
        },
    );
    let many: String = (0..10_000)
        .map(|index| {
            format!("{{\"service\":\"a\",\"severity\":\"info\",\"message\":\"m{index}\"}}\n")
        })
        .collect();
    let started = std::time::Instant::now();
    let (status, retry_after, body) = post(&lagging, "/api/v1/logs", many, &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert!(started.elapsed() < Duration::from_secs(5));
    context.cleanup().await;
}

#[tokio::test]
async fn a_client_that_stalls_mid_body_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let context = TestContext::new("gateway_slow_client").await;
    let app = app(
        &context,
        GatewaySettings {
            body_timeout_ms: std::time::Duration::from_millis(300),
            ..GatewaySettings::default()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream
        .write_all(b"POST /api/v1/logs HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n{\"service\":")
        .await
        .expect("write");
    // The client sends nothing more; the gateway answers instead of holding the connection.
    let mut answer = String::new();
    let read =
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer)).await;
    assert!(read.is_ok(), "the gateway waited on the stalled client");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("took too long"), "{answer}");
    context.cleanup().await;
}

#[tokio::test]
async fn an_ingest_key_writes_only_its_services_and_other_keys_are_refused() {
    use logagg::auth::sha256_hex;
    use logagg::settings::{KeySetting, Scope};
    let mut context = TestContext::new("gateway_scopes").await;
    let (ingest, reader) = ("checkout-ingest-0123456789", "checkout-reader-0123456789");
    context.settings.auth.keys = vec![
        KeySetting {
            name: "checkout-shipper".into(),
            sha256: sha256_hex(ingest),
            scopes: vec![Scope::Ingest],
            services: Some(vec!["checkout".into(), "cart*".into()]),
        },
        KeySetting {
            name: "checkout-reader".into(),
            sha256: sha256_hex(reader),
            scopes: vec![Scope::Read],
            services: None,
        },
    ];
    let gateway = app(&context, GatewaySettings::default());
    let body = [
        r#"{"service":"checkout","severity":"info","message":"paid"}"#,
        r#"{"service":"payments","severity":"info","message":"not mine"}"#,
        r#"{"service":"cart-v2","severity":"warn","message":"slow"}"#,
    ]
    .join("\n");
    let (status, _, report) = post(
        &gateway,
        "/api/v1/logs",
        body.clone(),
        &[("x-api-key", ingest)],
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{report}");
    assert_eq!(
        (report["accepted"].as_u64(), report["rejected"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(report["errors"][0]["index"], 1);
    let reason = report["errors"][0]["reason"].as_str().expect("reason");
    assert!(
        reason.contains("payments") && reason.contains("checkout-shipper"),
        "{reason}"
    );
    let mut stored: Vec<String> = context
        .take_records(&context.settings.broker.storage_queue)
        .await
        .into_iter()
        .map(|record| record.service)
        .collect();
    stored.sort();
    assert_eq!(stored, vec!["cart-v2", "checkout"]);

    // Only other services: every record refused, 400 with the reasons.
    let (status, _, report) = post(
        &gateway,
        "/api/v1/logs/raw?format=plain&service=payments",
        "2026-11-21 10:00:00 payments info a line",
        &[("x-api-key", ingest)],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{report}");
    assert_eq!(report["error"]["code"], "no_valid_record");

    // A read key may not write; a wrong key and no key get 401.
    for (headers, status, code) in [
        (
            vec![("x-api-key", reader)],
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            vec![("x-api-key", "checkout-ingest-0123456780")],
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (vec![], StatusCode::UNAUTHORIZED, "unauthorized"),
    ] {
        let (got, _, body) = post(&gateway, "/api/v1/logs", body.clone(), &headers).await;
        assert_eq!(got, status, "{headers:?}: {body}");
        assert_eq!(body["error"]["code"], code);
    }
    context.cleanup().await;
}

/// A client that sends its whole request and hangs up at once, without reading the answer
/// (graypy's HTTP handler does): the request arrives whole, so its record is stored, even
/// when the hang-up reaches the server in the same read as the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_after_sending_still_has_its_record_stored() {
    use tokio::io::AsyncWriteExt;
    const CLIENTS: usize = 40;
    let mut context = TestContext::new("gateway_hang_up").await;
    let gateway = support::ServedGateway::start(&mut context.settings).await;
    let address = gateway.url.trim_start_matches("http://").to_owned();
    for client in 0..CLIENTS {
        let body =
            format!(r#"{{"service":"hang-up","severity":"info","message":"client {client}"}}"#);
        let request = format!(
            "POST /api/v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut stream = tokio::net::TcpStream::connect(&address)
            .await
            .expect("connect");
        stream.write_all(request.as_bytes()).await.expect("write");
        stream.shutdown().await.expect("hang up");
    }
    let storage = context.settings.broker.storage_queue.clone();
    let arrived = logagg::testsuite::wait_until(Duration::from_secs(30), || async {
        context
            .queue_state(&storage)
            .await
            .is_some_and(|state| state.ready as usize >= CLIENTS)
    })
    .await;
    let mut messages: Vec<String> = stored_queue(&context)
        .await
        .into_iter()
        .map(|record| record.message)
        .collect();
    messages.sort();
    messages.dedup();
    assert!(
        arrived,
        "{} of {CLIENTS} records: {messages:?}",
        messages.len()
    );
    assert_eq!(messages.len(), CLIENTS);
    gateway.stop().await;
    context.cleanup().await;
}
