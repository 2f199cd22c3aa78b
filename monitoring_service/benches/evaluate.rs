//! Monitoring benchmark, one run on this machine, printing every figure:
//!
//! (a) logs per second one monitor evaluates, on one core, with 1,000 services and 5 rules:
//!     `Monitor::observe` on parsed records (`BENCH_LOGS`, default 2,000,000);
//! (b) the same with each log parsed from its JSON body first, as the consume loop does;
//! (c) time from publishing the log that crosses a threshold to its webhook arriving, over
//!     `BENCH_ALERTS` (default 50) alerts, through RabbitMQ, the monitor and a local HTTP
//!     server.
//!
//! Run: `cargo bench -p monitoring_service --bench evaluate` (RabbitMQ and the
//! MongoDB-compatible server from scripts/setup.sh).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::{Json, Router};
use logagg::broker;
use logagg::parse::{parse_message, Envelope};
use logagg::settings::{AlertRule, RuleKind, SinkKind, SinkSettings};
use logagg::testsuite::{bench_setting, wait_until, TestContext};
use logagg::{LogRecord, Severity};
use monitoring_service::monitor::Monitor;
use monitoring_service::rules::Rule;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const SERVICES: usize = 1_000;

fn main() {
    if !logagg::testsuite::under_cargo_bench("cargo bench -p monitoring_service --bench evaluate") {
        return;
    }
    let logs = bench_setting("BENCH_LOGS", 2_000_000) as usize;
    println!("monitor benchmark: {SERVICES} services, 5 rules, {logs} logs");
    evaluate(logs);
    logagg::testsuite::block_on(latency(bench_setting("BENCH_ALERTS", 50) as usize));
}

fn five_rules() -> Vec<Rule> {
    let rule =
        |name: &str, kind: RuleKind, severity: &str, threshold: f64, window: u64| AlertRule {
            name: name.into(),
            kind,
            min_severity: severity.into(),
            threshold,
            window_seconds: window,
            min_volume: 20,
            ..AlertRule::default()
        };
    [
        rule("error_burst", RuleKind::Count, "error", 10.0, 60),
        rule("warn_flood", RuleKind::Count, "warn", 200.0, 60),
        rule("any_fatal", RuleKind::Count, "fatal", 1.0, 10),
        rule("error_ratio", RuleKind::Ratio, "error", 0.5, 60),
        rule("slow_errors", RuleKind::Count, "error", 500.0, 300),
    ]
    .iter()
    .map(Rule::compile)
    .collect()
}

fn record(index: usize) -> LogRecord {
    let severity = match index % 100 {
        0..=9 => Severity::Debug,
        10..=84 => Severity::Info,
        85..=94 => Severity::Warn,
        _ => Severity::Error,
    };
    LogRecord {
        id: format!("id-{index}"),
        timestamp: chrono::Utc::now(),
        received_at: chrono::Utc::now(),
        service: format!("svc-{:04}", (index * 7919) % SERVICES),
        severity,
        message: format!("request {index} handled"),
        host: None,
        attributes: Default::default(),
        http: None,
    }
}

fn evaluate(logs: usize) {
    let records: Vec<LogRecord> = (0..logs).map(record).collect();
    let mut monitor = Monitor::new(five_rules(), 100_000, 600);
    let mut events = Vec::new();
    // Logs arrive at 200,000 a second of the monitor's clock.
    let started = Instant::now();
    for (index, record) in records.iter().enumerate() {
        monitor.observe(
            record,
            1_800_000_000_000 + (index / 200) as i64,
            &mut events,
        );
        events.clear();
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "(a) evaluate: {logs} logs in {elapsed:.2} s = {:.0} logs/s on one core ({} services)",
        logs as f64 / elapsed,
        monitor.services()
    );

    let bodies: Vec<(String, Vec<u8>)> = records
        .iter()
        .take(logs.min(500_000))
        .map(|record| {
            let key = logagg::parse::routing_key(&record.service, record.severity);
            let body = serde_json::json!({ "message": record.message, "host": "h1" });
            (key, serde_json::to_vec(&body).expect("json"))
        })
        .collect();
    let mut monitor = Monitor::new(five_rules(), 100_000, 600);
    let started = Instant::now();
    for (index, (key, body)) in bodies.iter().enumerate() {
        let envelope = Envelope {
            routing_key: key,
            body,
            content_type: Some("application/json"),
            message_id: None,
            amqp_timestamp: None,
            received_at: chrono::Utc::now(),
        };
        let record = parse_message(&envelope).expect("parse");
        monitor.observe(
            &record,
            1_800_000_000_000 + (index / 200) as i64,
            &mut events,
        );
        events.clear();
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "(b) parse + evaluate: {} logs in {elapsed:.2} s = {:.0} logs/s on one core",
        bodies.len(),
        bodies.len() as f64 / elapsed
    );
}

async fn latency(alerts: usize) {
    let context = TestContext::new("bench_monitor").await;
    let arrivals: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let app = Router::new().route(
        "/hook",
        post({
            let arrivals = Arc::clone(&arrivals);
            move |Json(body): Json<Value>| async move {
                if body["event"] == "fired" {
                    let service = body["alert"]["service"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    arrivals
                        .lock()
                        .expect("lock")
                        .push((service, Instant::now()));
                }
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut settings = context.settings.clone();
    // The count rule (10 errors in 60 s): the 10th error is the crossing this measures.
    settings.monitor.rules = vec![AlertRule::default()];
    settings.monitor.sinks = vec![SinkSettings {
        kind: SinkKind::Webhook,
        url: format!("http://127.0.0.1:{port}/hook"),
        ..SinkSettings::default()
    }];
    let shutdown = CancellationToken::new();
    let monitor = tokio::spawn(monitoring_service::run(settings, shutdown.clone()));
    let channel = broker::confirm_channel(&context.connection)
        .await
        .expect("channel");
    let exchange = context.settings.broker.exchange.clone();
    let publish = |service: String, index: usize| {
        let channel = channel.clone();
        let exchange = exchange.clone();
        async move {
            let body = format!(r#"{{"message":"failure {index}"}}"#);
            broker::publish_confirmed(
                &channel,
                &exchange,
                &format!("{service}.error"),
                body.as_bytes(),
                broker::log_properties("application/json", &uuid::Uuid::now_v7().to_string()),
            )
            .await
            .expect("publish");
        }
    };
    // Warm-up: the monitor is consuming once a first alert comes through.
    for index in 0..10 {
        publish("warmup".into(), index).await;
    }
    assert!(
        wait_until(Duration::from_secs(30), || async {
            !arrivals.lock().expect("lock").is_empty()
        })
        .await,
        "no warm-up alert"
    );
    let mut latencies = Vec::with_capacity(alerts);
    for trial in 0..alerts {
        let service = format!("latency-{trial}");
        for index in 0..9 {
            publish(service.clone(), index).await;
        }
        let sent = Instant::now();
        publish(service.clone(), 9).await;
        let arrived = wait_until(Duration::from_secs(10), || async {
            arrivals
                .lock()
                .expect("lock")
                .iter()
                .any(|(name, _)| *name == service)
        })
        .await;
        assert!(arrived, "no alert for {service}");
        let at = arrivals
            .lock()
            .expect("lock")
            .iter()
            .find(|(name, _)| *name == service)
            .map(|(_, at)| *at)
            .expect("arrival");
        latencies.push(at.saturating_duration_since(sent));
    }
    latencies.sort();
    let at = |q: f64| latencies[((q * latencies.len() as f64).ceil() as usize).saturating_sub(1)];
    println!(
        "(c) publish of the 10th error -> webhook: n={} p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
        latencies.len(),
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        latencies[latencies.len() - 1].as_secs_f64() * 1e3
    );
    shutdown.cancel();
    let _ = monitor.await;
    context.cleanup().await;
}
