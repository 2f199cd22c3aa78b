//! Scoped keys on every search surface, against real stored data: a `read` key scoped to
//! `checkout` never sees `payments` (logs, one log, the compatible routes, stats from
//! rollups and from logs, services, alerts, the live tail); an unscoped key sees both; no
//! key or a wrong one gets 401, a key without `read` 403, each with the JSON body.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{Duration, Utc};
use futures::StreamExt;
use logagg::auth::{sha256_hex, ServiceScope};
use logagg::settings::{KeySetting, Scope};
use logagg::store::stats::Rollup;
use logagg::testsuite::TestContext;
use logagg::{LogRecord, Severity};
use search_service::api::{router, AppState};
use search_service::query::LogQuery;
use search_service::tail::{TailEvent, Tails};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const CHECKOUT_KEY: &str = "checkout-reader-0123456789";
const ALL_KEY: &str = "everything-reader-0123456789";
const INGEST_KEY: &str = "checkout-ingest-0123456789";

fn key(name: &str, secret: &str, scopes: Vec<Scope>, services: Option<&[&str]>) -> KeySetting {
    KeySetting {
        name: name.into(),
        sha256: sha256_hex(secret),
        scopes,
        services: services.map(|patterns| patterns.iter().map(|p| (*p).to_owned()).collect()),
    }
}

fn records() -> Vec<LogRecord> {
    let now = Utc::now();
    ["checkout", "checkout-v2", "payments", "payments"]
        .iter()
        .enumerate()
        .map(|(index, service)| LogRecord {
            id: format!("scoped-{index}"),
            timestamp: now - Duration::minutes(index as i64 + 1),
            received_at: now,
            service: (*service).into(),
            severity: Severity::Error,
            message: format!("order {index} failed"),
            host: None,
            attributes: Default::default(),
            http: None,
        })
        .collect()
}

async fn get(app: &axum::Router, uri: &str, key: Option<&str>) -> (StatusCode, Value) {
    let mut request = Request::get(uri);
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("response");
    logagg::testsuite::json_response(response).await
}

fn services_of(logs: &Value) -> BTreeSet<String> {
    logs.as_array()
        .expect("an array")
        .iter()
        .map(|log| log["service"].as_str().expect("service").to_owned())
        .collect()
}

fn set(services: &[&str]) -> BTreeSet<String> {
    services
        .iter()
        .map(|service| (*service).to_owned())
        .collect()
}

#[tokio::test]
async fn a_key_scoped_to_checkout_never_sees_payments_and_an_unscoped_key_sees_all() {
    let mut context = TestContext::new("search_scopes").await;
    context.settings.auth.keys = vec![
        key(
            "checkout-team",
            CHECKOUT_KEY,
            vec![Scope::Read],
            Some(&["checkout*"]),
        ),
        key("everyone", ALL_KEY, vec![Scope::Read, Scope::Admin], None),
        key("shipper", INGEST_KEY, vec![Scope::Ingest], None),
    ];
    context.store.ensure_indexes().await.expect("indexes");
    let records = records();
    context.store.insert_records(&records).await.expect("seed");
    let mut rollup = Rollup::default();
    records.iter().for_each(|record| rollup.add_record(record));
    context.store.record_stats(&rollup).await.expect("rollups");
    for (id, service) in [("alert-c", "checkout"), ("alert-p", "payments")] {
        let alert = logagg::store::alerts::StoredAlert {
            id: id.into(),
            rule: "error_burst".into(),
            service: service.into(),
            value: 12.0,
            threshold: 10.0,
            window_seconds: 60,
            started_at: Utc::now(),
            resolved_at: None,
            peak: 12.0,
            sample_ids: vec![],
        };
        context.store.open_alert(&alert).await.expect("alert");
    }
    let app = router(AppState::new(
        context.store.clone(),
        &context.settings,
        CancellationToken::new(),
    ));
    let scoped = Some(CHECKOUT_KEY);
    let checkout = set(&["checkout", "checkout-v2"]);

    // Logs: the scope's services only, and a filter for another service is empty.
    let (status, body) = get(&app, "/api/v1/logs", scoped).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(services_of(&body["logs"]), checkout);
    let (_, body) = get(&app, "/api/v1/logs?service=payments", scoped).await;
    assert_eq!(
        body["logs"],
        json!([]),
        "no error that says payments exists"
    );
    let (_, body) = get(
        &app,
        "/api/v1/logs?service=payments&service=checkout",
        scoped,
    )
    .await;
    assert_eq!(services_of(&body["logs"]), set(&["checkout"]));
    let (_, body) = get(&app, "/api/v1/logs?q=failed", scoped).await;
    assert_eq!(services_of(&body["logs"]), checkout, "word search too");
    let (status, _) = get(&app, "/api/v1/logs/scoped-0", scoped).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = get(&app, "/api/v1/logs/scoped-2", scoped).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another service's log: {body}"
    );
    let (_, body) = get(&app, "/logs/payments", scoped).await;
    assert_eq!(body["logs"], json!([]));
    let (_, body) = get(&app, "/logs/payments/error", scoped).await;
    assert_eq!(body["logs"], json!([]));

    // Stats from rollups and from the logs (a `q` filter), services, alerts.
    for uri in ["/api/v1/stats", "/api/v1/stats?q=failed"] {
        let (status, body) = get(&app, uri, scoped).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        let by_service: BTreeSet<String> = body["by_service"]
            .as_object()
            .expect("by_service")
            .keys()
            .cloned()
            .collect();
        assert_eq!(by_service, checkout, "{uri}");
        assert_eq!(body["by_severity"]["error"], 2, "{uri}: {body}");
    }
    let (_, body) = get(&app, "/api/v1/stats?service=payments", scoped).await;
    assert_eq!(body["by_severity"], json!({}), "{body}");
    let (_, body) = get(&app, "/api/v1/services", scoped).await;
    let listed: BTreeSet<String> = body["services"]
        .as_array()
        .expect("services")
        .iter()
        .map(|summary| summary["service"].as_str().expect("name").to_owned())
        .collect();
    assert_eq!(listed, checkout);
    let (_, body) = get(&app, "/api/v1/alerts", scoped).await;
    let alerts: Vec<&str> = body["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .map(|alert| alert["service"].as_str().expect("service"))
        .collect();
    assert_eq!(alerts, vec!["checkout"]);
    let (_, body) = get(&app, "/api/v1/alerts?service=payments", scoped).await;
    assert_eq!(body["alerts"], json!([]));

    // An unscoped key sees every service.
    let (_, body) = get(&app, "/api/v1/logs", Some(ALL_KEY)).await;
    assert_eq!(
        services_of(&body["logs"]),
        set(&["checkout", "checkout-v2", "payments"])
    );
    let (status, _) = get(&app, "/api/v1/logs/scoped-2", Some(ALL_KEY)).await;
    assert_eq!(status, StatusCode::OK);

    // No key, a wrong key: 401; a key without `read`: 403; all with the JSON body.
    for (key, status, code) in [
        (None, StatusCode::UNAUTHORIZED, "unauthorized"),
        (
            Some("checkout-reader-0123456780"),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (Some(INGEST_KEY), StatusCode::FORBIDDEN, "forbidden"),
    ] {
        for uri in [
            "/api/v1/logs",
            "/api/v1/stats",
            "/api/v1/services",
            "/api/v1/alerts",
            "/api/v1/tail",
            "/logs/checkout",
        ] {
            let (got, body) = get(&app, uri, key).await;
            assert_eq!(got, status, "{uri} with {key:?}: {body}");
            assert_eq!(body["error"]["code"], code, "{uri}");
        }
    }
    context.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_tail_of_a_scoped_key_carries_only_its_services() {
    let context = TestContext::new("tail_scopes").await;
    let tails = Tails::new(
        context.settings.broker.clone(),
        4,
        100,
        CancellationToken::new(),
    );
    let scope = ServiceScope::Only(vec!["checkout".to_owned()].into());
    let query = LogQuery::parse(&[], Utc::now(), &Default::default())
        .expect("query")
        .within(&scope);
    let mut events = Box::pin(tails.open(query).await.expect("tail"));
    assert!(matches!(events.next().await, Some(TailEvent::Ready)));
    let channel = context.connection.create_channel().await.expect("channel");
    for (routing_key, message) in [("payments.error", "hidden"), ("checkout.error", "shown")] {
        channel
            .basic_publish(
                context.settings.broker.exchange.as_str().into(),
                routing_key.into(),
                lapin::options::BasicPublishOptions::default(),
                json!({ "message": message }).to_string().as_bytes(),
                lapin::BasicProperties::default(),
            )
            .await
            .expect("publish");
    }
    // The payments log was published first: the first log the tail carries is checkout's.
    match events.next().await {
        Some(TailEvent::Log(record)) => {
            assert_eq!(
                (record.service.as_str(), record.message.as_str()),
                ("checkout", "shown")
            );
        }
        other => panic!("expected checkout's log, got {other:?}"),
    }
    context.cleanup().await;
}
