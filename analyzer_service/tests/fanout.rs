//! The fan-out against the real RabbitMQ and MongoDB-compatible server, with real HTTP
//! analyzers (local axum servers): weights become shares, a failing analyzer's logs go to
//! the others, bad registrations are refused.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use logagg::settings::Settings;
use logagg::testsuite::{wait_until, TestContext};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const TIMEOUT: Duration = Duration::from_secs(120);

/// A URL analyzer: the ids of the records it accepted (the warm-up's aside); it answers
/// `status` (200 unless changed).
#[derive(Clone)]
struct Analyzer {
    ids: Arc<Mutex<Vec<String>>>,
    warm_up: Arc<std::sync::atomic::AtomicUsize>,
    status: Arc<Mutex<StatusCode>>,
    url: String,
}

/// The service the warm-up logs come from.
const WARM_UP: &str = "warm-up";

impl Analyzer {
    async fn start() -> Analyzer {
        let ids = Arc::new(Mutex::new(Vec::new()));
        let warm_up = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let status = Arc::new(Mutex::new(StatusCode::OK));
        let app = axum::Router::new().route(
            "/logs",
            axum::routing::post({
                let (ids, warm_up, status) = (ids.clone(), warm_up.clone(), status.clone());
                move |body: String| async move {
                    let answer = *status.lock().expect("status");
                    if answer.is_success() {
                        let mut ids = ids.lock().expect("ids");
                        for line in body.lines() {
                            let record: Value = serde_json::from_str(line).expect("a JSON line");
                            if record["service"] == WARM_UP {
                                warm_up.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            } else {
                                ids.push(record["id"].as_str().expect("an id").to_owned());
                            }
                        }
                    }
                    answer
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/logs", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Analyzer {
            ids,
            warm_up,
            status,
            url,
        }
    }

    fn count(&self) -> usize {
        self.ids.lock().expect("ids").len()
    }
}

/// The service on a port of its own; its API's base URL.
async fn start_service(settings: Settings, shutdown: CancellationToken) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        analyzer_service::run(settings, listener, shutdown)
            .await
            .expect("analyzer_service ran")
    });
    base
}

async fn put(base: &str, id: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .put(format!("{base}/api/v1/analyzers/{id}"))
        .json(&body)
        .send()
        .await
        .expect("PUT");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn settings_for(context: &TestContext) -> Settings {
    let mut settings = context.settings.clone();
    settings.analyzers.refresh_ms = Duration::from_millis(100);
    settings.telemetry.admin_listen = "127.0.0.1:0".parse().expect("address");
    settings
}

async fn publish(settings: &Settings, count: u64) {
    let mut settings = settings.clone();
    (settings.source.count, settings.source.rate) = (count, 0);
    let report = source_service::simulate(
        &settings,
        &logagg::telemetry::Health::default(),
        &CancellationToken::new(),
    )
    .await
    .expect("simulator");
    assert_eq!(report.confirmed, count, "{report}");
}

/// Registers `analyzers` with their weights and waits until the distributor takes logs:
/// a first log published reaches one of them.
async fn register_and_warm_up(
    base: &str,
    settings: &Settings,
    analyzers: &[(&str, &Analyzer, f64)],
) {
    for (id, analyzer, weight) in analyzers {
        let (status, body) = put(base, id, json!({"url": analyzer.url, "weight": weight})).await;
        assert_eq!(status, 200, "{body}");
    }
    let warmed = || {
        analyzers
            .iter()
            .map(|(_, analyzer, _)| analyzer.warm_up.load(std::sync::atomic::Ordering::Relaxed))
            .sum::<usize>()
    };
    let mut warm_up = settings.clone();
    warm_up.source.services = vec![WARM_UP.to_owned()];
    let warm = wait_until(TIMEOUT, || async {
        // Published until one arrives: logs published before the queue is bound go nowhere.
        if warmed() == 0 {
            publish(&warm_up, 1).await;
        }
        warmed() > 0
    })
    .await;
    assert!(warm, "no log reached an analyzer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_analyzers_get_their_weights_within_one_percent() {
    const LOGS: usize = 30_000;
    let context = TestContext::new("analyzers_split").await;
    let settings = settings_for(&context);
    let shutdown = CancellationToken::new();
    let base = start_service(settings.clone(), shutdown.clone()).await;
    let (a, b, c) = (
        Analyzer::start().await,
        Analyzer::start().await,
        Analyzer::start().await,
    );
    let analyzers = [("a", &a, 0.5), ("b", &b, 0.3), ("c", &c, 0.2)];
    register_and_warm_up(&base, &settings, &analyzers).await;

    publish(&settings, LOGS as u64).await;
    let all = wait_until(TIMEOUT, || async {
        a.count() + b.count() + c.count() >= LOGS
    })
    .await;
    let counts = [a.count(), b.count(), c.count()];
    println!("{LOGS} logs over weights 0.5/0.3/0.2: {counts:?}");
    assert!(all, "{counts:?} of {LOGS}");
    let mut ids: Vec<String> = [&a, &b, &c]
        .iter()
        .flat_map(|analyzer| analyzer.ids.lock().expect("ids").clone())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), LOGS, "each log to exactly one analyzer");
    for ((id, _, weight), count) in analyzers.iter().zip(counts) {
        let share = count as f64 / LOGS as f64;
        assert!(
            (share - weight).abs() <= 0.01,
            "{id}: {share:.4} of the logs, weight {weight}"
        );
    }

    // The API shows the same: delivered counts and online shares.
    let listing: Value = reqwest::get(format!("{base}/api/v1/analyzers"))
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    let shares: Vec<f64> = listing["analyzers"]
        .as_array()
        .expect("analyzers")
        .iter()
        .map(|analyzer| analyzer["share"].as_f64().expect("share"))
        .collect();
    assert_eq!(shares, [0.5, 0.3, 0.2]);
    shutdown.cancel();
    context.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_analyzer_goes_offline_and_its_logs_go_to_the_others() {
    const LOGS: usize = 5_000;
    let mut context = TestContext::new("analyzers_failing").await;
    context.settings.analyzers.max_failures = 2;
    let settings = settings_for(&context);
    let shutdown = CancellationToken::new();
    let base = start_service(settings.clone(), shutdown.clone()).await;
    let (a, b) = (Analyzer::start().await, Analyzer::start().await);
    register_and_warm_up(&base, &settings, &[("a", &a, 1.0), ("b", &b, 1.0)]).await;

    *b.status.lock().expect("status") = StatusCode::INTERNAL_SERVER_ERROR;
    publish(&settings, LOGS as u64).await;
    let all = wait_until(TIMEOUT, || async { a.count() >= LOGS }).await;
    assert!(all, "{} of {LOGS} reached the working analyzer", a.count());
    assert_eq!(b.count(), 0);
    let listing: Value = reqwest::get(format!("{base}/api/v1/analyzers/b"))
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(listing["online"], false, "{listing}");
    assert!(listing["failed_total"].as_u64().expect("failed_total") >= 2);

    // A heartbeat brings it back (its failures forgotten); it takes its share again.
    *b.status.lock().expect("status") = StatusCode::OK;
    let back = reqwest::Client::new()
        .post(format!("{base}/api/v1/analyzers/b/heartbeat"))
        .send()
        .await
        .expect("heartbeat");
    assert_eq!(back.status(), 200);
    let online = wait_until(TIMEOUT, || async {
        let view: Value = reqwest::get(format!("{base}/api/v1/analyzers/b"))
            .await
            .expect("GET")
            .json()
            .await
            .expect("JSON");
        view["online"] == true
    })
    .await;
    assert!(online);
    // The distributor reads the registry every 100 ms: publish until b gets some.
    let shared = wait_until(TIMEOUT, || async {
        publish(&settings, 100).await;
        b.count() > 0
    })
    .await;
    assert!(shared, "the analyzer that came back got nothing");
    shutdown.cancel();
    context.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_registrations_are_refused_with_400_and_the_reason() {
    let context = TestContext::new("analyzers_api").await;
    let settings = settings_for(&context);
    let shutdown = CancellationToken::new();
    let base = start_service(settings, shutdown.clone()).await;
    let url = "http://127.0.0.1:9/logs";
    for (id, body) in [
        ("zero", json!({"url": url, "weight": 0})),
        ("negative", json!({"url": url, "weight": -0.5})),
        ("nan", json!({"url": url, "weight": "NaN"})),
        ("missing", json!({"url": url})),
        ("ftp", json!({"url": "ftp://example.com/x", "weight": 1})),
        ("nohost", json!({"url": "http://", "weight": 1})),
        ("both", json!({"url": url, "queue": true, "weight": 1})),
        ("neither", json!({"weight": 1})),
        ("unknown", json!({"url": url, "weight": 1, "colour": "red"})),
        ("has%20space", json!({"url": url, "weight": 1})),
    ] {
        let (status, body) = put(&base, id, body).await;
        assert_eq!(status, 400, "{id}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{id}: {body}");
    }
    let (status, body) = put(&base, "good", json!({"url": url, "weight": 2.5})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["target"]["url"], url);
    assert_eq!(body["share"], 1.0);
    let client = reqwest::Client::new();
    let deleted = client
        .delete(format!("{base}/api/v1/analyzers/good"))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(deleted.status(), 204);
    let again = client
        .delete(format!("{base}/api/v1/analyzers/good"))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(again.status(), 404);
    let heartbeat = client
        .post(format!("{base}/api/v1/analyzers/good/heartbeat"))
        .send()
        .await
        .expect("heartbeat");
    assert_eq!(heartbeat.status(), 404);
    shutdown.cancel();
    context.cleanup().await;
}
