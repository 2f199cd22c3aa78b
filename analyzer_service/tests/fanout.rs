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
use tokio_util::task::TaskTracker;

const TIMEOUT: Duration = Duration::from_secs(120);

/// A URL analyzer: the ids of the records it accepted (the warm-up's aside); it answers
/// `status` (200 unless changed).
#[derive(Clone)]
struct Analyzer {
    ids: Arc<Mutex<Vec<String>>>,
    /// The service of each record in `ids`.
    services: Arc<Mutex<Vec<String>>>,
    /// When the last record (not the warm-up's) came.
    last_at: Arc<Mutex<Option<std::time::Instant>>>,
    warm_up: Arc<std::sync::atomic::AtomicUsize>,
    status: Arc<Mutex<StatusCode>>,
    url: String,
}

/// The service the warm-up logs come from.
const WARM_UP: &str = "warm-up";

impl Analyzer {
    async fn start() -> Analyzer {
        let ids = Arc::new(Mutex::new(Vec::new()));
        let services = Arc::new(Mutex::new(Vec::new()));
        let warm_up = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let last_at = Arc::new(Mutex::new(None));
        let status = Arc::new(Mutex::new(StatusCode::OK));
        let app = axum::Router::new().route(
            "/logs",
            axum::routing::post({
                let (ids, warm_up, status) = (ids.clone(), warm_up.clone(), status.clone());
                let (last_at, services) = (last_at.clone(), services.clone());
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
                                services.lock().expect("services").push(
                                    record["service"].as_str().expect("a service").to_owned(),
                                );
                                *last_at.lock().expect("last_at") = Some(std::time::Instant::now());
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
            services,
            last_at,
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
/// The analyzer services a test runs, stopped and awaited before its cleanup: a distributor
/// still running would declare its queues again after the cleanup deleted them.
#[derive(Default)]
struct Services {
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Services {
    /// Starts one more service; its API's base URL.
    async fn start(&self, settings: Settings) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let shutdown = self.shutdown.clone();
        self.tasks.spawn(async move {
            analyzer_service::run(settings, listener, shutdown)
                .await
                .expect("analyzer_service ran")
        });
        base
    }

    /// Stops every service started and waits until each has ended.
    async fn stop(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// `GET` of the API's `path`, as JSON.
async fn get_json(base: &str, path: &str) -> Value {
    client()
        .get(format!("{base}{path}"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON")
}

async fn put(base: &str, id: &str, body: Value) -> (u16, Value) {
    let response = client()
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
    // A deadline, so a broker that never confirms fails the test with the simulator's
    // report (confirmed, re-sent, unroutable) instead of hanging it.
    let give_up = CancellationToken::new();
    let timer = tokio::spawn({
        let give_up = give_up.clone();
        async move {
            tokio::time::sleep(TIMEOUT).await;
            give_up.cancel();
        }
    });
    let report =
        source_service::simulate(&settings, &logagg::telemetry::Health::default(), &give_up)
            .await
            .expect("simulator");
    timer.abort();
    assert_eq!(
        report.confirmed, count,
        "not all confirmed within {TIMEOUT:?}: {report}"
    );
}

/// An HTTP client that gives up: a service that stopped answering fails the test.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
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
    let services = Services::default();
    let base = services.start(settings.clone()).await;
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
    let listing: Value = get_json(&base, "/api/v1/analyzers").await;
    let shares: Vec<f64> = listing["analyzers"]
        .as_array()
        .expect("analyzers")
        .iter()
        .map(|analyzer| analyzer["share"].as_f64().expect("share"))
        .collect();
    assert_eq!(shares, [0.5, 0.3, 0.2]);
    // And what each was delivered over the last minute (all of it, and the warm-up).
    let listing = || async {
        let listing: Value = get_json(&base, "/api/v1/analyzers").await;
        listing["analyzers"].as_array().expect("analyzers").clone()
    };
    let counted = wait_until(TIMEOUT, || async {
        let delivered: u64 = listing()
            .await
            .iter()
            .map(|analyzer| analyzer["delivered"].as_u64().unwrap_or(0))
            .sum();
        delivered >= LOGS as u64
    })
    .await;
    assert!(
        counted,
        "the registry's delivered counts did not reach {LOGS}"
    );
    // And Prometheus (this process's recorder: every test of the binary adds to it).
    assert!(logagg::testsuite::metric_value("logagg_analyzer_delivered_total") >= LOGS as f64);
    for (analyzer, (id, _, weight)) in listing().await.iter().zip(&analyzers) {
        let observed = analyzer["observed_share_last_minute"]
            .as_f64()
            .expect("share");
        assert!(
            (observed - weight).abs() <= 0.01,
            "{id}: {observed} over the last minute, weight {weight}"
        );
    }
    services.stop().await;
    context.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_analyzer_goes_offline_and_its_logs_go_to_the_others() {
    const LOGS: usize = 5_000;
    let mut context = TestContext::new("analyzers_failing").await;
    context.settings.analyzers.max_failures = 2;
    let settings = settings_for(&context);
    let services = Services::default();
    let base = services.start(settings.clone()).await;
    let (a, b) = (Analyzer::start().await, Analyzer::start().await);
    register_and_warm_up(&base, &settings, &[("a", &a, 1.0), ("b", &b, 1.0)]).await;

    *b.status.lock().expect("status") = StatusCode::INTERNAL_SERVER_ERROR;
    publish(&settings, LOGS as u64).await;
    let all = wait_until(TIMEOUT, || async { a.count() >= LOGS }).await;
    assert!(all, "{} of {LOGS} reached the working analyzer", a.count());
    assert_eq!(b.count(), 0);
    let listing: Value = get_json(&base, "/api/v1/analyzers/b").await;
    assert_eq!(listing["online"], false, "{listing}");
    assert!(listing["failed_total"].as_u64().expect("failed_total") >= 2);

    // A heartbeat brings it back (its failures forgotten); it takes its share again.
    *b.status.lock().expect("status") = StatusCode::OK;
    let back = client()
        .post(format!("{base}/api/v1/analyzers/b/heartbeat"))
        .send()
        .await
        .expect("heartbeat");
    assert_eq!(back.status(), 200);
    let online = wait_until(TIMEOUT, || async {
        let view: Value = get_json(&base, "/api/v1/analyzers/b").await;
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
    services.stop().await;
    context.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_registrations_are_refused_with_400_and_the_reason() {
    let context = TestContext::new("analyzers_api").await;
    let settings = settings_for(&context);
    let services = Services::default();
    let base = services.start(settings).await;
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
    services.stop().await;
    context.cleanup().await;
}

/// A unique analyzer id (a queue analyzer's id names a broker-wide queue).
fn unique_id(name: &str) -> String {
    format!("{name}-{}", uuid_like())
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or(0);
    format!("{}-{nanos}", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_analyzer_gets_exactly_its_share_on_its_own_queue() {
    const LOGS: usize = 4_000;
    let context = TestContext::new("analyzers_queue").await;
    let settings = settings_for(&context);
    let services = Services::default();
    let base = services.start(settings.clone()).await;
    let a = Analyzer::start().await;
    let queued = unique_id("queued");
    let (status, body) = put(&base, &queued, json!({"queue": true, "weight": 1})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["target"], "queue");
    register_and_warm_up(&base, &settings, &[("a", &a, 3.0)]).await;

    publish(&settings, LOGS as u64).await;
    let queue = analyzer_service::distributor::analyzer_queue(&queued);
    let all = wait_until(TIMEOUT, || async {
        a.count() >= LOGS * 3 / 4 && {
            let delivered: Value = get_json(&base, &format!("/api/v1/analyzers/{queued}")).await;
            delivered["delivered"].as_u64().unwrap_or(0) >= (LOGS / 4) as u64
        }
    })
    .await;
    assert!(all, "{} to the URL analyzer", a.count());
    let connection = logagg::testsuite::await_broker(&settings).await;
    let messages = logagg::testsuite::take_all(&connection, &queue).await;
    let channel = connection.create_channel().await.expect("channel");
    let _ = channel
        .queue_delete(queue.as_str().into(), Default::default())
        .await;
    // Each message is the record, its id also the AMQP message id.
    let mut records = 0;
    for message in &messages {
        let record: Value = serde_json::from_slice(&message.data).expect("a JSON record");
        let id = message
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str());
        assert_eq!(id, record["id"].as_str());
        if record["service"] != WARM_UP {
            records += 1;
        }
    }
    println!(
        "{LOGS} logs over 3:1: {} to the URL analyzer, {records} on the queue",
        a.count()
    );
    assert_eq!(records, LOGS / 4, "the queue analyzer's share");
    assert_eq!(a.count(), LOGS * 3 / 4);
    let _ = connection.close(200, "done".into()).await;
    services.stop().await;
    context.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyzer_that_stops_renewing_its_lease_gets_nothing_after_it() {
    let mut context = TestContext::new("analyzers_lease").await;
    context.settings.analyzers.lease_seconds = Duration::from_secs(2);
    let settings = settings_for(&context);
    let services = Services::default();
    let base = services.start(settings.clone()).await;
    let (a, b) = (Analyzer::start().await, Analyzer::start().await);
    register_and_warm_up(&base, &settings, &[("a", &a, 1.0), ("b", &b, 1.0)]).await;

    // Both renew every 300 ms; b stops once it has taken logs, a keeps on.
    let b_renews = CancellationToken::new();
    let renew = |id: &'static str, stop: CancellationToken| {
        let base = base.clone();
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let _ = reqwest::Client::new()
                    .post(format!("{base}/api/v1/analyzers/{id}/heartbeat"))
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    let a_renews = CancellationToken::new();
    renew("a", a_renews.clone());
    renew("b", b_renews.clone());
    let traffic = {
        let mut settings = settings.clone();
        (settings.source.count, settings.source.rate) = (4_000, 500);
        tokio::spawn(async move {
            source_service::simulate(
                &settings,
                &logagg::telemetry::Health::default(),
                &CancellationToken::new(),
            )
            .await
        })
    };
    let b_took = wait_until(TIMEOUT, || async { b.count() >= 500 }).await;
    assert!(b_took, "b got no share");
    b_renews.cancel();
    let stopped_at = std::time::Instant::now();
    let report = traffic.await.expect("traffic").expect("published");
    let all = wait_until(TIMEOUT, || async {
        (a.count() + b.count()) as u64 >= report.confirmed
    })
    .await;
    assert!(all, "{} + {} of {}", a.count(), b.count(), report.confirmed);
    let last_b = b.last_at.lock().expect("last_at").expect("b took logs");
    let after = last_b.saturating_duration_since(stopped_at);
    println!(
        "b stopped renewing its 2 s lease; its last log came {:.2} s later; a {} b {}",
        after.as_secs_f64(),
        a.count(),
        b.count()
    );
    assert!(
        after <= Duration::from_secs(3),
        "b still got logs {after:?} after it stopped renewing"
    );
    let mut ids: Vec<String> = [&a, &b]
        .iter()
        .flat_map(|analyzer| analyzer.ids.lock().expect("ids").clone())
        .collect();
    let total = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), total, "no log went to both");
    assert_eq!(total as u64, report.confirmed);
    a_renews.cancel();
    services.stop().await;
    context.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_competing_distributors_keep_the_split_within_one_percent() {
    const LOGS: usize = 30_000;
    let context = TestContext::new("analyzers_three").await;
    let settings = settings_for(&context);
    let services = Services::default();
    let base = services.start(settings.clone()).await;
    for _ in 0..2 {
        services.start(settings.clone()).await;
    }
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
    println!("{LOGS} logs through three distributors over 0.5/0.3/0.2: {counts:?}");
    assert!(all, "{counts:?} of {LOGS}");
    assert_eq!(counts.iter().sum::<usize>(), LOGS, "each log once");
    for ((id, _, weight), count) in analyzers.iter().zip(counts) {
        let share = count as f64 / LOGS as f64;
        assert!(
            (share - weight).abs() <= 0.01,
            "{id}: {share:.4} of the logs, weight {weight}"
        );
    }
    services.stop().await;
    context.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_by_service_keeps_services_and_moves_only_the_departed_analyzers() {
    use std::collections::{BTreeMap, BTreeSet};
    let mut context = TestContext::new("analyzers_sticky").await;
    context.settings.analyzers.sticky_by = logagg::settings::StickyBy::Service;
    let mut settings = settings_for(&context);
    let services = Services::default();
    let base = services.start(settings.clone()).await;
    let (a, b, c) = (
        Analyzer::start().await,
        Analyzer::start().await,
        Analyzer::start().await,
    );
    let analyzers = [("a", &a, 0.5), ("b", &b, 0.3), ("c", &c, 0.2)];
    register_and_warm_up(&base, &settings, &analyzers).await;
    settings.source.services = (0..40).map(|index| format!("svc-{index}")).collect();
    let placement = |analyzers: &[(&str, &Analyzer, f64)]| {
        let mut placed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (id, analyzer, _) in analyzers {
            for service in analyzer.services.lock().expect("services").iter() {
                placed
                    .entry(service.clone())
                    .or_default()
                    .insert((*id).to_owned());
            }
        }
        placed
    };
    let received = || a.count() + b.count() + c.count();

    publish(&settings, 4_000).await;
    let all = wait_until(TIMEOUT, || async { received() >= 4_000 }).await;
    assert!(all, "{} of 4000", received());
    let before = placement(&analyzers);
    assert_eq!(before.len(), 40, "every service seen");
    for (service, on) in &before {
        assert_eq!(on.len(), 1, "{service} went to {on:?}");
    }

    // c leaves: its services move, the others stay where they were.
    let deleted = reqwest::Client::new()
        .delete(format!("{base}/api/v1/analyzers/c"))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(deleted.status(), 204);
    for (_, analyzer, _) in &analyzers {
        analyzer.ids.lock().expect("ids").clear();
        analyzer.services.lock().expect("services").clear();
    }
    publish(&settings, 4_000).await;
    let all = wait_until(TIMEOUT, || async { received() >= 4_000 }).await;
    assert!(all, "{} of 4000", received());
    let after = placement(&analyzers[..2]);
    let mut moved = 0;
    for (service, was) in &before {
        let was = was.iter().next().expect("one analyzer");
        if was == "c" {
            moved += 1;
        } else {
            let now = &after[service];
            assert_eq!(now.len(), 1, "{service} split over {now:?}");
            assert!(now.contains(was), "{service} moved from {was} to {now:?}");
        }
    }
    println!("sticky: 40 services, {moved} were on the analyzer that left; the rest stayed");
    services.stop().await;
    context.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyzer_joining_takes_its_share() {
    const LOGS: usize = 4_000;
    let context = TestContext::new("analyzers_join").await;
    let settings = settings_for(&context);
    let services = Services::default();
    let base = services.start(settings.clone()).await;
    let (a, b) = (Analyzer::start().await, Analyzer::start().await);
    register_and_warm_up(&base, &settings, &[("a", &a, 3.0)]).await;
    publish(&settings, 1_000).await;
    let alone = wait_until(TIMEOUT, || async { a.count() >= 1_000 }).await;
    assert!(alone, "{} of 1000 to the only analyzer", a.count());

    let (status, body) = put(&base, "b", json!({"url": b.url, "weight": 1.0})).await;
    assert_eq!(status, 200, "{body}");
    // Every replica follows the registry within analyzers.refresh_ms: publish until b gets logs.
    let joined = wait_until(TIMEOUT, || async {
        publish(&settings, 100).await;
        b.count() > 0
    })
    .await;
    assert!(joined, "the new analyzer got nothing");
    // The logs counted from here come from a service of their own: stragglers of the
    // loop above are not counted.
    let mut measured = settings.clone();
    measured.source.services = vec!["measured".to_owned()];
    publish(&measured, LOGS as u64).await;
    let of = |analyzer: &Analyzer| {
        analyzer
            .services
            .lock()
            .expect("services")
            .iter()
            .filter(|service| *service == "measured")
            .count()
    };
    let all = wait_until(TIMEOUT, || async { of(&a) + of(&b) >= LOGS }).await;
    println!(
        "after b joined at weight 1 beside a at 3: a {} b {}",
        of(&a),
        of(&b)
    );
    assert!(all);
    assert_eq!(of(&a) + of(&b), LOGS);
    let share = of(&b) as f64 / LOGS as f64;
    assert!((share - 0.25).abs() <= 0.01, "b took {share:.4}");
    services.stop().await;
    context.cleanup().await;
}

/// With no analyzer online, logs wait in the queue (unacked or ready), and are delivered
/// once one comes back: none dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_none_online_logs_wait_and_are_delivered_when_one_is_back() {
    let mut context = TestContext::new("analyzers_none").await;
    context.settings.analyzers.max_failures = 1;
    let settings = settings_for(&context);
    let services = Services::default();
    let base = services.start(settings.clone()).await;
    let a = Analyzer::start().await;
    register_and_warm_up(&base, &settings, &[("a", &a, 1.0)]).await;

    *a.status.lock().expect("status") = StatusCode::SERVICE_UNAVAILABLE;
    publish(&settings, 500).await;
    let offline = wait_until(TIMEOUT, || async {
        let view: Value = get_json(&base, "/api/v1/analyzers/a").await;
        view["online"] == false
    })
    .await;
    assert!(offline, "a failing analyzer stayed online");
    // The logs are still the broker's: every one of them is in the queue or held unacked.
    let connection = logagg::testsuite::await_broker(&settings).await;
    let channel = connection.create_channel().await.expect("channel");
    let held = channel
        .queue_declare(
            settings.analyzers.queue.as_str().into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .expect("the queue");
    println!(
        "with none online: {} ready in the queue, {} delivered",
        held.message_count(),
        a.count()
    );
    assert_eq!(a.count(), 0);

    *a.status.lock().expect("status") = StatusCode::OK;
    let back = reqwest::Client::new()
        .post(format!("{base}/api/v1/analyzers/a/heartbeat"))
        .send()
        .await
        .expect("heartbeat");
    assert_eq!(back.status(), 200);
    let all = wait_until(TIMEOUT, || async { a.count() >= 500 }).await;
    assert!(all, "{} of 500 once the analyzer was back", a.count());
    assert_eq!(a.count(), 500);
    let _ = connection.close(200, "done".into()).await;
    services.stop().await;
    context.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_api_keys_set_registration_wants_one() {
    let mut context = TestContext::new("analyzers_keys").await;
    let key = "analyzer-key-0123456789";
    context.settings.analyzers.api_keys = vec![key.to_owned()];
    let settings = settings_for(&context);
    let services = Services::default();
    let base = services.start(settings).await;
    let body = json!({"url": "http://127.0.0.1:9/logs", "weight": 1});
    let (status, answer) = put(&base, "a", body.clone()).await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(answer["error"]["code"], "unauthorized");
    let listing = reqwest::get(format!("{base}/api/v1/analyzers"))
        .await
        .expect("GET");
    assert_eq!(listing.status(), 401);
    let accepted = reqwest::Client::new()
        .put(format!("{base}/api/v1/analyzers/a"))
        .header("authorization", format!("Bearer {key}"))
        .json(&body)
        .send()
        .await
        .expect("PUT");
    assert_eq!(accepted.status(), 200);
    services.stop().await;
    context.cleanup().await;
}

/// `[[auth.keys]]`: registration wants the `admin` scope; a `read` key gets 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_wants_an_admin_scoped_key() {
    use logagg::auth::sha256_hex;
    use logagg::settings::{KeySetting, Scope};
    let mut context = TestContext::new("analyzers_scopes").await;
    let (admin, reader) = ("analyzer-admin-0123456789", "analyzer-reader-0123456789");
    context.settings.auth.keys = [("ops", admin, Scope::Admin), ("dash", reader, Scope::Read)]
        .into_iter()
        .map(|(name, secret, scope)| KeySetting {
            name: name.into(),
            sha256: sha256_hex(secret),
            scopes: vec![scope],
            services: None,
        })
        .collect();
    let settings = settings_for(&context);
    let services = Services::default();
    let base = services.start(settings).await;
    let body = json!({"url": "http://127.0.0.1:9/logs", "weight": 1});
    let client = reqwest::Client::new();
    for (key, status, code) in [
        (None, 401, Some("unauthorized")),
        (Some(reader), 403, Some("forbidden")),
        (Some(admin), 200, None),
    ] {
        let mut request = client.put(format!("{base}/api/v1/analyzers/a")).json(&body);
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        let response = request.send().await.expect("PUT");
        assert_eq!(response.status().as_u16(), status, "{key:?}");
        let answer: serde_json::Value = response.json().await.expect("JSON");
        if let Some(code) = code {
            assert_eq!(answer["error"]["code"], code);
        }
    }
    services.stop().await;
    context.cleanup().await;
}

/// The registry is MongoDB's: a distributor started after another stopped delivers to the
/// analyzers registered through the first, with no one registering again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_distributor_resumes_without_registration() {
    let context = TestContext::new("analyzers_restart").await;
    let settings = settings_for(&context);
    let first = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let running = tokio::spawn(analyzer_service::run(
        settings.clone(),
        listener,
        first.clone(),
    ));
    let a = Analyzer::start().await;
    register_and_warm_up(&base, &settings, &[("a", &a, 1.0)]).await;
    first.cancel();
    running
        .await
        .expect("the first distributor's task")
        .expect("the first distributor ran");

    let second = Services::default();
    second.start(settings.clone()).await;
    publish(&settings, 300).await;
    let all = wait_until(TIMEOUT, || async { a.count() >= 300 }).await;
    assert!(all, "{} of 300 after the restart", a.count());
    second.stop().await;
    context.cleanup().await;
}

/// `[tls]`: the registration API serves HTTPS that a client trusting the test's CA accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registration_api_serves_https_when_tls_is_set() {
    let context = TestContext::new("analyzers_https").await;
    let directory =
        std::env::temp_dir().join(format!("logagg-analyzers-https-{}", std::process::id()));
    let certificates = logagg::testsuite::TestCertificates::new(&directory);
    let mut settings = settings_for(&context);
    settings.tls.cert_file = Some(certificates.cert_file.clone());
    settings.tls.key_file = Some(certificates.key_file.clone());
    let services = Services::default();
    let base = services
        .start(settings)
        .await
        .replace("http://", "https://");
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(certificates.ca_pem.as_bytes()).expect("CA"),
        )
        .build()
        .expect("client");
    let url = format!("{base}/api/v1/analyzers");
    let answered = logagg::testsuite::wait_until(Duration::from_secs(30), || async {
        client
            .get(&url)
            .send()
            .await
            .is_ok_and(|response| response.status().is_success())
    })
    .await;
    assert!(answered, "the registration API never answered over HTTPS");
    let plain = reqwest::get(url.replace("https://", "http://")).await;
    assert!(
        plain
            .as_ref()
            .map_or(true, |response| !response.status().is_success()),
        "{plain:?}"
    );
    services.stop().await;
    let _ = std::fs::remove_dir_all(&directory);
    context.cleanup().await;
}
