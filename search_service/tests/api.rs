//! search_service's API against real stored data in the MongoDB-compatible server.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{Duration, Utc};
use logagg::record::HttpFields;
use logagg::testsuite::TestContext;
use logagg::{LogRecord, Severity};
use search_service::api::{router, AppState};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const SERVICES: [&str; 3] = ["web", "auth", "billing"];
const SEVERITIES: [Severity; 4] = [
    Severity::Debug,
    Severity::Info,
    Severity::Warn,
    Severity::Error,
];

/// `n` logs, one a minute back from now, cycling services, severities and statuses.
fn logs(n: usize, prefix: &str) -> Vec<LogRecord> {
    let now = Utc::now();
    (0..n)
        .map(|index| {
            let timestamp = now - Duration::minutes(index as i64);
            let status = [200_u16, 404, 500, 503][index % 4];
            LogRecord {
                id: format!("{prefix}-{index:05}"),
                timestamp,
                received_at: timestamp,
                service: SERVICES[index % 3].to_owned(),
                severity: SEVERITIES[index % 4],
                message: format!(
                    "request {index} {} (a.b*) done",
                    if index % 5 == 0 {
                        "payment failed"
                    } else {
                        "ok"
                    }
                ),
                host: Some(format!("host-{}", index % 2)),
                attributes: serde_json::json!({ "order": index % 10 })
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
                http: Some(HttpFields {
                    method: Some(if index % 2 == 0 { "GET" } else { "POST" }.into()),
                    path: Some(format!("/p{}", index % 3)),
                    status: Some(status),
                    duration_ms: Some(index as f64),
                    client_ip: None,
                }),
            }
        })
        .collect()
}

async fn app(context: &TestContext) -> axum::Router {
    context.store.ensure_indexes().await.expect("indexes");
    router(AppState::new(
        context.store.clone(),
        &context.settings,
        CancellationToken::new(),
    ))
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, Value) {
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
        .await
        .expect("body");
    (status, serde_json::from_slice(&bytes).expect("JSON body"))
}

fn ids(body: &Value) -> Vec<String> {
    body["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .map(|log| log["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn each_filter_returns_exactly_the_matching_logs() {
    let context = TestContext::new("search_filters").await;
    let records = logs(240, "f");
    context.store.insert_records(&records).await.expect("seed");
    let app = app(&context).await;
    type Predicate = fn(usize, &LogRecord) -> bool;
    let cases: Vec<(&str, Predicate)> = vec![
        ("service=web", |_, r| r.service == "web"),
        ("service=web&service=auth&severity=error", |_, r| {
            r.service != "billing" && r.severity == Severity::Error
        }),
        ("min_severity=warn", |_, r| r.severity >= Severity::Warn),
        ("from=60m", |i, _| i < 60),
        ("host=host-1", |i, _| i % 2 == 1),
        ("attr.order=7", |i, _| i % 10 == 7),
        ("status=404", |i, _| i % 4 == 1),
        ("status_class=5xx", |i, _| i % 4 >= 2),
        ("method=get&path=/p1", |i, _| i % 2 == 0 && i % 3 == 1),
        ("q=Payment+FAILED", |i, _| i % 5 == 0),
        ("contains=(a.b*)", |_, _| true),
        ("contains=a.b%2A%29+done&service=auth", |_, r| {
            r.service == "auth"
        }),
        ("contains=.*", |_, _| false),
    ];
    for (query, keep) in cases {
        let (status, body) = get(&app, &format!("/api/v1/logs?limit=1000&{query}")).await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        let expected: Vec<String> = records
            .iter()
            .enumerate()
            .filter(|(index, record)| keep(*index, record))
            .map(|(_, record)| record.id.clone())
            .collect();
        assert_eq!(ids(&body), expected, "{query}");
    }
    let (status, body) = get(&app, "/api/v1/logs?order=oldest&limit=5&service=billing").await;
    assert_eq!(status, StatusCode::OK);
    let oldest: Vec<String> = records
        .iter()
        .rev()
        .filter(|record| record.service == "billing")
        .take(5)
        .map(|record| record.id.clone())
        .collect();
    assert_eq!(ids(&body), oldest);
    context.cleanup().await;
}

#[tokio::test]
async fn paging_sees_each_record_exactly_once_while_inserts_continue() {
    let context = TestContext::new("search_paging").await;
    let records = logs(10_000, "p");
    for chunk in records.chunks(1_000) {
        context.store.insert_records(chunk).await.expect("seed");
    }
    let app = app(&context).await;
    let writer = tokio::spawn({
        let store = context.store.clone();
        async move {
            for round in 0..20 {
                let fresh = logs(50, &format!("new{round}"));
                store.insert_records(&fresh).await.expect("insert");
            }
        }
    });
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let to = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    loop {
        let mut uri = format!(
            "/api/v1/logs?limit=700&from=8d&to={}",
            to.replace('+', "%2B")
        );
        if let Some(cursor) = &cursor {
            uri.push_str(&format!("&cursor={cursor}"));
        }
        let (status, body) = get(&app, &uri).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        seen.extend(ids(&body).into_iter().filter(|id| id.starts_with("p-")));
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    writer.await.expect("writer");
    let distinct: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(distinct.len(), seen.len(), "a record appeared twice");
    let expected: Vec<String> = records.iter().map(|record| record.id.clone()).collect();
    assert_eq!(seen, expected, "every record once, newest first");
    context.cleanup().await;
}

#[tokio::test]
async fn bad_input_gets_400_naming_the_parameter_and_unknown_routes_404() {
    let context = TestContext::new("search_errors").await;
    let app = app(&context).await;
    let long_q = "word+".repeat(100);
    for (query, parameter) in [
        ("from=yesterday", "from"),
        ("from=1h&to=2h", "from"),
        ("limit=0", "limit"),
        ("limit=1000000000", "limit"),
        ("severity=loud", "severity"),
        (long_q.as_str(), "q"),
        ("contains=", "contains"),
        ("cursor=deadbeef", "cursor"),
        ("colour=red", "colour"),
    ] {
        let query = if parameter == "q" {
            format!("q={query}")
        } else {
            query.to_owned()
        };
        let (status, body) = get(&app, &format!("/api/v1/logs?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["error"]["code"], "bad_parameter", "{query}");
        let message = body["error"]["message"].as_str().expect("message");
        assert!(
            message.contains(&format!("`{parameter}`")),
            "{query}: {message}"
        );
    }
    let mut settings = context.settings.clone();
    settings.store.word_index = false;
    let without_words = router(AppState::new(
        logagg::store::Store::connect(&settings.store, "search-tests")
            .await
            .expect("client"),
        &settings,
        CancellationToken::new(),
    ));
    let (status, body) = get(&without_words, "/api/v1/logs?q=payment").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .expect("message")
        .contains("store.word_index"));
    let (status, body) = get(&app, "/api/v1/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
    let (status, body) = get(&app, "/api/v1/logs/missing-id").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = get(&app, "/logs/web/LOUD").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    context.cleanup().await;
}

#[tokio::test]
async fn compatible_routes_answer_as_the_prototype_did() {
    let context = TestContext::new("search_compat").await;
    let records = logs(40, "c");
    context.store.insert_records(&records).await.expect("seed");
    let app = app(&context).await;
    let (status, body) = get(&app, "/logs/auth/ERROR").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["message"], "Logs retrieved successfully");
    let expected: Vec<String> = records
        .iter()
        .filter(|record| record.service == "auth" && record.severity == Severity::Error)
        .map(|record| record.id.clone())
        .collect();
    assert_eq!(ids(&body), expected);
    let (_, body) = get(&app, "/logs/web").await;
    assert_eq!(
        ids(&body).len(),
        records.iter().filter(|r| r.service == "web").count()
    );
    let (status, one) = get(&app, &format!("/api/v1/logs/{}", records[3].id)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["message"], records[3].message);
    context.cleanup().await;
}

#[tokio::test]
async fn mongodb_down_gives_503_and_the_api_recovers() {
    let mut server = logagg::testsuite::MongoServer::start();
    let context = TestContext::with_mongo_url("search_mongo_down", &server.url()).await;
    let records = logs(10, "d");
    context.store.insert_records(&records).await.expect("seed");
    let app = app(&context).await;
    let (status, _) = get(&app, "/api/v1/logs").await;
    assert_eq!(status, StatusCode::OK);

    server.stop();
    let (status, body) = get(&app, "/api/v1/logs?service=web").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "store_unavailable");
    assert!(
        !body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("127.0.0.1"),
        "internals stay in the log: {body}"
    );

    server.resume();
    logagg::testsuite::await_store(&context.store).await;
    let (status, body) = get(&app, "/api/v1/logs").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(ids(&body).len(), records.len());
    context.cleanup().await;
}
