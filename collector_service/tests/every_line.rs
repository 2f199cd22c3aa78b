//! Every line a client sends is a record, end to end (gateway → exchange → collector →
//! MongoDB): byte-identical lines of one request, the same line in two different requests,
//! and a retried request, which must map to the records it already made.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use logagg::settings::GatewaySettings;
use logagg::testsuite::{json_response, metric_value, wait_until, TestContext};
use serde_json::Value;
use source_service::ingest::gateway::{router, Gateway};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const STORE_TIMEOUT: Duration = Duration::from_secs(60);
const RAW_COMBINED: &str = "/api/v1/logs/raw?format=combined&service=web";

/// An Apache Combined access log of `count` lines in which every tenth line repeats the one
/// before it byte for byte: the same client asking the same path twice in one second, as
/// real access logs do.
fn access_log(count: usize) -> String {
    let mut lines = Vec::with_capacity(count);
    for index in 0..count {
        if index % 10 == 9 {
            let previous: &String = &lines[index - 1];
            lines.push(previous.clone());
            continue;
        }
        let second = index / 4;
        lines.push(format!(
            "203.0.113.{client} - - [21/Nov/2026:10:{minute:02}:{second:02} +0000] \"{method} /items/{item} HTTP/1.1\" {status} {bytes} \"-\" \"curl/8.5\"",
            client = index % 7,
            minute = second / 60,
            second = second % 60,
            method = if index % 13 == 0 { "HEAD" } else { "GET" },
            item = index % 50,
            status = if index % 97 == 0 { 503 } else { 200 },
            bytes = 100 + index % 300,
        ));
    }
    lines.join("\n") + "\n"
}

async fn post(app: &axum::Router, uri: &str, body: String) -> (StatusCode, Value) {
    let response = app
        .clone()
        .oneshot(Request::post(uri).body(Body::from(body)).expect("request"))
        .await
        .expect("response");
    json_response(response).await
}

async fn await_stored(context: &TestContext, expected: u64) {
    let reached = wait_until(STORE_TIMEOUT, || async {
        context.stored().await >= expected
    })
    .await;
    assert!(reached, "{} of {expected} stored", context.stored().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_lines_are_each_a_record_and_a_retried_request_adds_none() {
    let context = TestContext::new("every_line").await;
    let shutdown = CancellationToken::new();
    let collector = {
        let (settings, token) = (context.settings.clone(), shutdown.clone());
        tokio::spawn(async move { collector_service::run(settings, token).await })
    };
    let gateway = router(
        Gateway::new(GatewaySettings::default(), context.settings.broker.clone()),
        &context.settings.auth,
    );
    let log = access_log(1_000);
    assert_eq!(
        log.lines().collect::<std::collections::BTreeSet<_>>().len(),
        900,
        "the log repeats 100 of its lines"
    );

    let (status, answer) = post(&gateway, RAW_COMBINED, log.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], 1_000);
    await_stored(&context, 1_000).await;

    // The same request again (a client retrying after a lost answer): the same 1,000 ids.
    let duplicates_before = metric_value("logagg_collector_duplicates_total");
    let (status, answer) = post(&gateway, RAW_COMBINED, log.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let seen_again = wait_until(STORE_TIMEOUT, || async {
        metric_value("logagg_collector_duplicates_total") >= duplicates_before + 1_000.0
    })
    .await;
    assert!(seen_again, "the retried request was not recognised");
    assert_eq!(context.stored().await, 1_000, "a retry adds no record");

    // One of those lines in another request is another request: one more record. So is a
    // JSON record sent twice in one array.
    let first_line = log.lines().next().expect("a line").to_owned();
    let (status, answer) = post(&gateway, RAW_COMBINED, format!("{first_line}\n\n")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let record = r#"{"service":"billing","severity":"error","message":"card declined"}"#;
    let (status, answer) = post(&gateway, "/api/v1/logs", format!("[{record},{record}]")).await;
    assert_eq!(
        (status, &answer["accepted"]),
        (StatusCode::ACCEPTED, &2.into())
    );
    await_stored(&context, 1_003).await;

    let stored_lines = context
        .store
        .logs()
        .count_documents(bson::doc! { "service": "web" })
        .await
        .expect("count");
    assert_eq!(stored_lines, 1_001, "every line, the repeated ones too");
    let declined = context
        .store
        .logs()
        .count_documents(bson::doc! { "message": "card declined" })
        .await
        .expect("count");
    assert_eq!(declined, 2);
    shutdown.cancel();
    collector
        .await
        .expect("collector task")
        .expect("collector run");
    context.cleanup().await;
}
