//! The OpenAPI document is true to the router and the parser; API keys guard every data
//! route.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use logagg::testsuite::TestContext;
use search_service::api::{openapi, openapi_document, router, AppState, WordSearch, OPENAPI_PATH};
use search_service::query::{
    NOT_FOR_STATS, NOT_FOR_TAIL, REPEATABLE_PARAMETERS, SINGLE_PARAMETERS,
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

async fn send(app: &axum::Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = app.clone().oneshot(request).await.expect("response");
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if content_type.starts_with("text/event-stream") {
        return (status, Value::Null);
    }
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
        .await
        .expect("body");
    (status, serde_json::from_slice(&bytes).expect("JSON body"))
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).expect("request")
}

fn query_parameters(document: &Value, path: &str) -> BTreeSet<String> {
    document["paths"][path]["get"]["parameters"]
        .as_array()
        .unwrap_or_else(|| panic!("{path} has parameters"))
        .iter()
        .filter(|parameter| parameter["in"] == "query")
        .map(|parameter| parameter["name"].as_str().expect("name").to_owned())
        .collect()
}

fn parser_parameters(without: &[&str], with: &[&str]) -> BTreeSet<String> {
    REPEATABLE_PARAMETERS
        .iter()
        .chain(SINGLE_PARAMETERS.iter())
        .filter(|name| !without.contains(name))
        .chain(with.iter())
        .map(|name| (*name).to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_describes_every_route_and_exactly_the_parameters_parsed() {
    let context = TestContext::new("openapi").await;
    let app = router(AppState::new(
        context.store.clone(),
        &context.settings,
        CancellationToken::new(),
    ));
    let document = serde_json::to_value(openapi()).expect("JSON");
    assert!(document["openapi"]
        .as_str()
        .expect("version")
        .starts_with("3."));
    let (status, served) = send(&app, get(OPENAPI_PATH)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        served,
        openapi_document(&context.settings.search, WordSearch::On),
        "served as generated, with the parameters' constraints"
    );
    let logs_parameters = served["paths"]["/api/v1/logs"]["get"]["parameters"]
        .as_array()
        .expect("parameters");
    let limit = logs_parameters
        .iter()
        .find(|parameter| parameter["name"] == "limit")
        .expect("limit");
    assert_eq!(
        limit["schema"]["maximum"], context.settings.search.max_limit,
        "the deployment's own bound"
    );

    let paths: BTreeSet<&str> = document["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .map(String::as_str)
        .collect();
    let expected: BTreeSet<&str> = [
        "/api/v1/logs",
        "/api/v1/logs/{id}",
        "/api/v1/stats",
        "/api/v1/services",
        "/api/v1/tail",
        "/api/v1/alerts",
        "/api/v1/analyzers",
        "/logs/{service}",
        "/logs/{service}/{severity}",
    ]
    .into();
    assert_eq!(paths, expected);
    // Each documented path is routed: it never falls through to the 404 of unknown routes.
    for path in paths {
        let uri = path
            .replace("{id}", "no-such-id")
            .replace("{service}", "web")
            .replace("{severity}", "error");
        let (status, body) = send(&app, get(&uri)).await;
        assert_ne!(body["error"]["message"], "no such route", "{path}");
        assert!(
            status == StatusCode::OK || status == StatusCode::NOT_FOUND,
            "{path}: {status} {body}"
        );
    }

    assert_eq!(
        query_parameters(&document, "/api/v1/logs"),
        parser_parameters(&[], &[])
    );
    assert_eq!(
        query_parameters(&document, "/api/v1/stats"),
        parser_parameters(&NOT_FOR_STATS, &["interval"])
    );
    assert_eq!(
        query_parameters(&document, "/api/v1/tail"),
        parser_parameters(&NOT_FOR_TAIL, &[])
    );
    context.cleanup().await;
}

#[tokio::test]
async fn with_api_keys_set_data_routes_want_one_and_answer_401_without() {
    let mut context = TestContext::new("api_keys").await;
    let key = "k3y-0123456789abcdef";
    context.settings.search.api_keys = vec![key.to_owned(), "another-key-0123456789".into()];
    let app = router(AppState::new(
        context.store.clone(),
        &context.settings,
        CancellationToken::new(),
    ));
    for uri in [
        "/api/v1/logs",
        "/api/v1/stats",
        "/api/v1/services",
        "/api/v1/tail",
        "/api/v1/alerts",
        "/api/v1/analyzers",
        "/api/v1/logs/x",
        "/logs/web",
    ] {
        let response = app.clone().oneshot(get(uri)).await.expect("response");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let (_, body) = send(&app, get(uri)).await;
        assert_eq!(body["error"]["code"], "unauthorized", "{uri}");
    }
    let wrong = Request::get("/api/v1/logs")
        .header("x-api-key", "k3y-0123456789abcdeX")
        .body(Body::empty())
        .expect("request");
    assert_eq!(send(&app, wrong).await.0, StatusCode::UNAUTHORIZED);
    for (header, value) in [
        ("x-api-key", key.to_owned()),
        ("authorization", format!("Bearer {key}")),
    ] {
        let request = Request::get("/api/v1/logs")
            .header(header, value)
            .body(Body::empty())
            .expect("request");
        let (status, body) = send(&app, request).await;
        assert_eq!(status, StatusCode::OK, "{header}: {body}");
    }
    assert_eq!(send(&app, get(OPENAPI_PATH)).await.0, StatusCode::OK);
    context.cleanup().await;
}

#[tokio::test]
async fn the_dashboard_is_served_from_the_binary_without_a_key() {
    let mut context = TestContext::new("dashboard_assets").await;
    context.settings.search.api_keys = vec!["dashboard-key-0123456789".into()];
    let app = router(AppState::new(
        context.store.clone(),
        &context.settings,
        CancellationToken::new(),
    ));
    for (path, content_type, marker) in [
        ("/", "text/html", "/assets/app.js"),
        ("/assets/app.js", "text/javascript", "/api/v1/stats"),
        ("/assets/app.css", "text/css", "--error"),
    ] {
        let response = app.clone().oneshot(get(path)).await.expect("response");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let header = response.headers()["content-type"]
            .to_str()
            .expect("type")
            .to_owned();
        assert!(header.starts_with(content_type), "{path}: {header}");
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        assert!(String::from_utf8_lossy(&body).contains(marker), "{path}");
    }
    // The page refers to nothing outside the service.
    let response = app.clone().oneshot(get("/")).await.expect("response");
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    assert!(
        !String::from_utf8_lossy(&body).contains("http"),
        "no external URL in the page"
    );
    context.cleanup().await;
}
