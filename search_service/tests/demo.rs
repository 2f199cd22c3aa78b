//! The demo's first minutes, as a newcomer sees them: the collector, the monitor, the search
//! API with its dashboard and the demo's traffic (docs/demo-timeline.toml) run with their
//! default settings against the real RabbitMQ and MongoDB-compatible server, and headless
//! Chromium watches the dashboard's alerts page: the default rule's alert on `auth` fires in
//! the failure phase and resolves after it, and no other service raises one.
//!
//! About two and a half minutes of real time: the timeline is the demo's own.

#[path = "support/browser.rs"]
#[allow(dead_code)]
mod browser;

use std::time::Duration;

use logagg::telemetry::Health;
use logagg::testsuite::{http_request, TestContext};
use serde_json::Value;
use source_service::load::scenario::{ScenarioGenerator, Timeline};
use tokio_util::sync::CancellationToken;

use browser::Browser;

/// Longest wait for the alert to fire (the pure test of the rule sees it at about 66 s).
const FIRES_WITHIN: Duration = Duration::from_secs(150);
/// Longest further wait for it to resolve (seen about 61 s after it fired).
const RESOLVES_WITHIN: Duration = Duration::from_secs(150);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_demo_raises_an_alert_on_auth_in_its_failure_and_resolves_it() {
    let context = TestContext::new("demo").await;
    let settings = context.settings.clone();
    let shutdown = CancellationToken::new();
    let collector = tokio::spawn(collector_service::run(settings.clone(), shutdown.clone()));
    let monitor = tokio::spawn(monitoring_service::run(settings.clone(), shutdown.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    // A client of its own: `run` shuts its client down when it ends.
    let store = logagg::store::Database::connect(&settings.store, "demo-search")
        .await
        .expect("client");
    let dependencies = search_service::Dependencies { store, listener };
    let search = tokio::spawn(search_service::run(
        settings.clone(),
        dependencies,
        shutdown.clone(),
    ));
    let timeline = Timeline::parse(include_str!("../../docs/demo-timeline.toml")).expect("demo");
    let traffic = tokio::spawn({
        let (settings, shutdown) = (settings.clone(), shutdown.clone());
        async move {
            let mut generator = ScenarioGenerator::new(timeline, 7);
            source_service::publish(&settings, &mut generator, &Health::default(), &shutdown).await
        }
    });

    let browser = Browser::start().await;
    browser
        .open(&format!("http://127.0.0.1:{port}/#/alerts"))
        .await;
    let auth_row = |state: &str| {
        format!(
            "return [...document.querySelectorAll('tr.alert-{state}')].some((row) => \
             row.cells[0].textContent === 'error_ratio' && row.cells[1].textContent === 'auth');"
        )
    };
    browser
        .until_within(
            FIRES_WITHIN,
            "the error_ratio alert on auth, firing",
            &auth_row("firing"),
        )
        .await;
    browser.screenshot("demo-alert-firing").await;
    browser
        .until_within(
            RESOLVES_WITHIN,
            "the error_ratio alert on auth, resolved",
            &auth_row("resolved"),
        )
        .await;
    browser.screenshot("demo-alert-resolved").await;
    browser.assert_no_errors("alerts").await;

    let (status, body) = http_request(port, "GET", "/api/v1/alerts?state=all").await;
    assert_eq!(status, 200, "{body}");
    let alerts: Value = serde_json::from_str(&body).expect("JSON");
    let alerts = alerts["alerts"].as_array().expect("alerts");
    let services: Vec<&str> = alerts
        .iter()
        .filter_map(|alert| alert["service"].as_str())
        .collect();
    assert_eq!(
        services,
        ["auth"],
        "only the failing service alerts: {alerts:?}"
    );
    assert_eq!(alerts[0]["state"], "resolved");
    assert_eq!(alerts[0]["rule"], "error_ratio");
    let (status, body) = http_request(port, "GET", "/api/v1/stats?from=10m").await;
    assert_eq!(status, 200, "{body}");
    let stats: Value = serde_json::from_str(&body).expect("JSON");
    assert!(
        stats["access"]
            .as_array()
            .is_some_and(|routes| !routes.is_empty()),
        "the response-time panels have access logs: {stats}"
    );

    shutdown.cancel();
    let report = traffic.await.expect("traffic task").expect("traffic");
    assert!(report.confirmed > 5_000, "{report}");
    collector.await.expect("collector task").expect("collector");
    monitor.await.expect("monitor task").expect("monitor");
    search.await.expect("search task").expect("search");
    drop(browser);
    context.cleanup().await;
}
