//! The gateway when RabbitMQ blocks publishers (a memory alarm): it answers 503 with
//! Retry-After within its confirm deadline instead of waiting or buffering.
//!
//! Alone in its test binary (cargo runs test binaries one after another), because blocking
//! publishers is broker-wide; the alarm is lifted when the test ends, even on failure, and
//! scripts/setup.sh lifts it too.

use std::process::Command;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use logagg::settings::GatewaySettings;
use logagg::testsuite::TestContext;
use source_service::ingest::gateway::{router, Gateway};
use tower::ServiceExt;

/// Sets the memory high watermark to 0 (every publisher blocked) until dropped.
struct MemoryAlarm;

impl MemoryAlarm {
    fn raise() -> MemoryAlarm {
        set_watermark("0");
        MemoryAlarm
    }
}

impl Drop for MemoryAlarm {
    fn drop(&mut self) {
        set_watermark("0.4");
    }
}

fn set_watermark(value: &str) {
    let status = Command::new("rabbitmqctl")
        .args(["-q", "set_vm_memory_high_watermark", value])
        .status()
        .expect("rabbitmqctl");
    assert!(
        status.success(),
        "rabbitmqctl set_vm_memory_high_watermark {value}"
    );
}

#[tokio::test]
async fn a_blocked_broker_gets_503_with_retry_after_not_a_hang() {
    let context = TestContext::new("gateway_blocked").await;
    let gateway = router(
        Gateway::new(
            GatewaySettings {
                confirm_timeout_ms: std::time::Duration::from_millis(1_000),
                ..GatewaySettings::default()
            },
            context.settings.broker.clone(),
        ),
        &context.settings.auth,
    );
    let post = |body: &'static str| {
        gateway.clone().oneshot(
            Request::post("/api/v1/logs")
                .body(Body::from(body))
                .expect("request"),
        )
    };
    let line = r#"{"service":"a","severity":"info","message":"m"}"#;
    assert_eq!(
        post(line).await.expect("response").status(),
        StatusCode::ACCEPTED
    );

    let alarm = MemoryAlarm::raise();
    let started = Instant::now();
    let response = post(line).await.expect("response");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // An OTLP export hears the same in OTLP's shape: 503, Retry-After (SDKs retry), and a
    // google.rpc.Status with UNAVAILABLE in the request's encoding.
    let export = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"a"}}]},"scopeLogs":[{"logRecords":[{"body":{"stringValue":"m"}}]}]}]}"#;
    let response = gateway
        .clone()
        .oneshot(
            Request::post("/v1/logs")
                .header("content-type", "application/json")
                .body(Body::from(export))
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    let status: serde_json::Value = serde_json::from_slice(&body).expect("a JSON Status");
    assert_eq!(status["code"], 14, "{status}");
    drop(alarm);
    context.cleanup().await;
}
