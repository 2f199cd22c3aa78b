//! Ingest to searchable, and search under load: one run on this machine, printing figures.
//!
//! A collector and an auto-ack stand-in for the monitor run in-process; the simulator
//! publishes realistic logs (batched, `BENCH_BATCH`, default 50) at a fraction of
//! `BENCH_CEILING` logs/s (default 20,000: give the pipeline bench's (b) from the same
//! session) for `BENCH_SECONDS` (default 20) per fraction (`BENCH_FRACTIONS`, percent,
//! default `50,90`). Meanwhile:
//!
//! - a probe publishes one log every 500 ms carrying a token no other log has and, from the
//!   broker's confirm, asks search (`GET /api/v1/logs?q=<token>`) every 50 ms until the log
//!   is returned: ingest → searchable, p50 / p99 / max (the polling's own load on search
//!   is bounded: at most a few pollers at once);
//! - at the first fraction only, search's queries run back to back (a page of a service, a
//!   page of two template words, a rare token, stats over 24 h): their latency under load;
//!   and the storage queue's depth at the end says whether ingest kept up.
//!
//! `cargo bench -p search_service --bench freshness` (services from scripts/setup.sh).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::Utc;
use logagg::broker;
use logagg::settings::{Settings, TrafficProfile};
use logagg::telemetry::Health;
use logagg::testsuite::{bench_setting, TestContext};
use search_service::api::{router, AppState};
use serde_json::Value;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

fn main() {
    if !logagg::testsuite::under_cargo_bench("cargo bench -p search_service --bench freshness") {
        return;
    }
    logagg::testsuite::block_on(run());
}

async fn run() {
    let ceiling = bench_setting("BENCH_CEILING", 20_000);
    let seconds = bench_setting("BENCH_SECONDS", 20);
    let batch = bench_setting("BENCH_BATCH", 50) as usize;
    let fractions: Vec<u64> = std::env::var("BENCH_FRACTIONS")
        .unwrap_or_else(|_| "50,90".into())
        .split(',')
        .filter_map(|fraction| fraction.trim().parse().ok())
        .collect();
    println!(
        "freshness benchmark: ceiling {ceiling} logs/s, {seconds} s per fraction {fractions:?} %, batch {batch}, realistic logs"
    );
    let context = TestContext::new("bench_fresh").await;
    context.store.ensure_indexes().await.expect("indexes");
    let mut settings = context.settings.clone();
    settings.telemetry.log_level = "warn".into();
    settings.source.profile = TrafficProfile::Realistic;
    settings.source.batch_records = batch;
    let shutdown = CancellationToken::new();
    let collector = tokio::spawn(collector_service::run(settings.clone(), shutdown.clone()));
    assert!(!collector.is_finished(), "the collector stopped at once");
    let monitor = tokio::spawn(logagg::testsuite::stand_in_monitor(
        settings.clone(),
        shutdown.clone(),
    ));
    let app = router(AppState::new(
        context.store.clone(),
        &settings,
        CancellationToken::new(),
    ));
    for (index, fraction) in fractions.iter().enumerate() {
        let rate = ceiling * fraction / 100;
        let mut load = settings.clone();
        load.source.rate = rate;
        load.source.count = rate * seconds;
        let simulator = tokio::spawn(async move {
            source_service::simulate(&load, &Health::default(), &CancellationToken::new())
                .await
                .expect("simulate")
        });
        let done = CancellationToken::new();
        let probe = tokio::spawn(probe(settings.clone(), app.clone(), done.clone()));
        let queries =
            (index == 0).then(|| tokio::spawn(queries_under_load(app.clone(), done.clone())));
        let report = simulator.await.expect("simulator");
        done.cancel();
        let latencies = probe.await.expect("probe");
        let depth = context.ready_messages(&settings.broker.storage_queue).await;
        println!(
            "at {fraction} % ({rate} logs/s asked): simulator {report}; storage queue {depth} ready at the end"
        );
        summary("  ingest -> searchable", latencies);
        if let Some(queries) = queries {
            for (name, times) in queries.await.expect("queries") {
                summary(&format!("  under load: {name}"), times);
            }
        }
    }
    shutdown.cancel();
    let _ = collector.await;
    let _ = monitor.await;
    context.cleanup().await;
}

/// Publishes a log with a unique token every 50 ms; from each confirm, times until search
/// returns it.
async fn probe(settings: Settings, app: axum::Router, done: CancellationToken) -> Vec<Duration> {
    let connection = logagg::testsuite::await_broker(&settings).await;
    let channel = broker::confirm_channel(&connection).await.expect("channel");
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let mut pollers = Vec::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    while !done.is_cancelled() {
        ticker.tick().await;
        let token = format!("probe{}", uuid::Uuid::now_v7().simple());
        let body = serde_json::json!({
            "timestamp": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "service": "probe",
            "severity": "info",
            "message": format!("level=info msg=\"probe\" token={token}"),
        });
        let confirmation = broker::publish_owned(
            channel.clone(),
            settings.broker.exchange.as_str().into(),
            "probe.info".into(),
            serde_json::to_vec(&body).expect("JSON"),
            broker::log_properties(broker::CONTENT_TYPE_JSON, &token),
        )
        .await
        .expect("publish");
        assert!(broker::is_queued(&confirmation), "probe nacked");
        let confirmed = Instant::now();
        let app = app.clone();
        let latencies = latencies.clone();
        pollers.push(tokio::spawn(async move {
            let uri = format!("/api/v1/logs?q={token}&from=5m&limit=1");
            loop {
                let (_, body) = get(&app, &uri).await;
                if body["logs"].as_array().is_some_and(|logs| !logs.is_empty()) {
                    latencies.lock().await.push(confirmed.elapsed());
                    return;
                }
                if confirmed.elapsed() > Duration::from_secs(60) {
                    panic!("probe {token} not searchable after 60 s");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }
    for poller in pollers {
        poller.await.expect("poller");
    }
    let _ = connection.close(200, "probe done".into()).await;
    Arc::try_unwrap(latencies)
        .expect("pollers done")
        .into_inner()
}

/// Search's queries back to back until `done`, each kind's latencies.
async fn queries_under_load(
    app: axum::Router,
    done: CancellationToken,
) -> Vec<(&'static str, Vec<Duration>)> {
    let kinds: [(&str, &str); 4] = [
        (
            "service page of 100",
            "/api/v1/logs?service=checkout&limit=100",
        ),
        (
            "words page of 100 (2 words)",
            "/api/v1/logs?q=failed+password&limit=100",
        ),
        (
            "rare token (absent) over 24 h",
            "/api/v1/logs?q=f00dfeedcafe4242&from=24h&limit=100",
        ),
        ("stats over 24 h", "/api/v1/stats?from=24h"),
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); kinds.len()];
    let mut round = 0;
    while !done.is_cancelled() {
        let (_, uri) = kinds[round % kinds.len()];
        let started = Instant::now();
        let (status, body) = get(&app, uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        times[round % kinds.len()].push(started.elapsed());
        round += 1;
    }
    kinds.iter().map(|(name, _)| *name).zip(times).collect()
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, Value) {
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 26)
        .await
        .expect("body");
    (status, serde_json::from_slice(&bytes).expect("JSON"))
}

fn summary(name: &str, mut times: Vec<Duration>) {
    if times.is_empty() {
        println!("{name}: no samples");
        return;
    }
    times.sort();
    let at = |q: f64| times[((q * times.len() as f64).ceil() as usize).saturating_sub(1)];
    println!(
        "{name:<44} n={:<5} p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms",
        times.len(),
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
    );
}
