//! monitoring_service against the real RabbitMQ and the MongoDB-compatible server: webhook
//! payloads, one alert from three monitors, one alert when the active monitor is killed
//! mid-burst, and live access-log stats.

use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use logagg::broker;
use logagg::settings::{AlertRule, Settings, SinkKind, SinkSettings};
use logagg::testsuite::{
    free_port, http_request, metric_in, scrape_metrics, wait_until, TestContext,
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const TIMEOUT: Duration = Duration::from_secs(30);

/// A local HTTP server recording every JSON body POSTed to `/hook` and `/slack`; `/flaky`
/// answers 500 to its first request.
#[derive(Clone, Default)]
struct Receiver {
    bodies: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Receiver {
    async fn start() -> (Receiver, u16) {
        let receiver = Receiver::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let record = |route: &'static str, receiver: Receiver| {
            post(move |Json(body): Json<Value>| async move {
                let mut bodies = receiver.bodies.lock().expect("lock");
                let first_flaky = route == "flaky" && !bodies.iter().any(|(r, _)| r == "flaky-500");
                if first_flaky {
                    bodies.push(("flaky-500".into(), body));
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                bodies.push((route.into(), body));
                StatusCode::OK
            })
        };
        let slow = {
            let receiver = receiver.clone();
            post(move |Json(body): Json<Value>| async move {
                receiver
                    .bodies
                    .lock()
                    .expect("lock")
                    .push(("slow".into(), body));
                tokio::time::sleep(Duration::from_secs(60)).await;
                StatusCode::OK
            })
        };
        let app = Router::new()
            .route("/slow", slow)
            .route("/hook", record("hook", receiver.clone()))
            .route("/slack", record("slack", receiver.clone()))
            .route("/flaky", record("flaky", receiver.clone()));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, port)
    }

    fn on(&self, route: &str) -> Vec<Value> {
        self.bodies
            .lock()
            .expect("lock")
            .iter()
            .filter(|(r, _)| r == route)
            .map(|(_, body)| body.clone())
            .collect()
    }
}

fn monitor_settings(context: &TestContext, port: u16) -> Settings {
    let mut settings = context.settings.clone();
    settings.monitor.rules = vec![AlertRule {
        window_seconds: 2,
        cooldown_seconds: 1,
        ..AlertRule::default()
    }];
    let sink = |kind: SinkKind, path: &str| SinkSettings {
        kind,
        url: format!("http://127.0.0.1:{port}/{path}"),
        retry_initial_ms: std::time::Duration::from_millis(50),
        ..SinkSettings::default()
    };
    let slow = SinkSettings {
        timeout_ms: std::time::Duration::from_millis(60_000),
        ..sink(SinkKind::Webhook, "slow")
    };
    settings.monitor.sinks = vec![
        sink(SinkKind::Webhook, "hook"),
        sink(SinkKind::Slack, "slack"),
        sink(SinkKind::Webhook, "flaky"),
        slow,
    ];
    settings.monitor.tick_ms = std::time::Duration::from_millis(100);
    settings
}

async fn publish_errors(context: &TestContext, service: &str, count: usize) {
    let channel = broker::confirm_channel(&context.connection)
        .await
        .expect("channel");
    for index in 0..count {
        broker::publish_confirmed(
            &channel,
            &context.settings.broker.exchange,
            &format!("{service}.error"),
            format!(r#"{{"message":"payment failed {index}"}}"#).as_bytes(),
            broker::log_properties("application/json", &format!("{service}-{index}")),
        )
        .await
        .expect("publish");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_receive_exactly_one_fired_and_one_resolved_payload() {
    let context = TestContext::new("monitor_sinks").await;
    let (receiver, port) = Receiver::start().await;
    let shutdown = CancellationToken::new();
    let monitor = tokio::spawn(monitoring_service::run(
        monitor_settings(&context, port),
        shutdown.clone(),
    ));
    // A consumer of the alerts exchange, bound before anything fires.
    let alerts_channel = context.connection.create_channel().await.expect("channel");
    logagg::topology::declare_alerts_exchange(&alerts_channel, &context.settings.broker)
        .await
        .expect("alerts exchange");
    let alerts_queue = alerts_channel
        .queue_declare(
            "".into(),
            lapin::options::QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .expect("queue")
        .name()
        .to_string();
    alerts_channel
        .queue_bind(
            alerts_queue.as_str().into(),
            context.settings.broker.alerts_exchange.as_str().into(),
            "alert.#".into(),
            Default::default(),
            Default::default(),
        )
        .await
        .expect("bind");
    publish_errors(&context, "checkout", 12).await;

    // The window is 2 s: the burst fires, then resolves as it slides out.
    let resolved = wait_until(TIMEOUT, || async {
        receiver.on("hook").len() == 2
            && receiver.on("slack").len() == 2
            && receiver.on("flaky").len() == 2
    })
    .await;
    assert!(
        resolved,
        "payloads: {:?}",
        receiver.bodies.lock().expect("lock")
    );
    let hook = receiver.on("hook");
    assert_eq!(hook[0]["event"], "fired");
    assert_eq!(hook[1]["event"], "resolved");
    let alert = &hook[0]["alert"];
    assert_eq!(alert["rule"], "error_burst");
    assert_eq!(alert["service"], "checkout");
    assert_eq!(alert["value"], 10.0, "fired at the 10th error");
    assert_eq!(alert["threshold"], 10.0);
    assert_eq!(alert["window_seconds"], 2);
    assert_eq!(alert["sample_ids"].as_array().expect("samples").len(), 5);
    assert_eq!(hook[1]["alert"]["id"], alert["id"], "one episode");
    assert!(hook[1]["alert"]["resolved_at"].is_string());
    assert_eq!(hook[1]["alert"]["peak"], 12.0);
    let slack = receiver.on("slack");
    assert!(slack[0]["text"]
        .as_str()
        .expect("text")
        .starts_with("[FIRING] error_burst on checkout: 10"));
    assert!(slack[1]["text"]
        .as_str()
        .expect("text")
        .starts_with("[RESOLVED] error_burst on checkout"));
    assert_eq!(
        receiver.on("flaky-500").len(),
        1,
        "the failing sink was retried"
    );
    assert_eq!(receiver.on("flaky")[0], hook[0]);

    // The slow sink is still on its first request: it held up no other sink.
    assert_eq!(receiver.on("slow").len(), 1);
    // The alerts exchange carried the same two events.
    let published: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let both = wait_until(TIMEOUT, || async {
        if let Ok(Some(message)) = alerts_channel
            .basic_get(
                alerts_queue.as_str().into(),
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await
        {
            let body: Value = serde_json::from_slice(&message.delivery.data).expect("JSON");
            let key = message.delivery.routing_key.to_string();
            published.lock().expect("lock").push((key, body));
        }
        published.lock().expect("lock").len() == 2
    })
    .await;
    let published = published.lock().expect("lock").clone();
    assert!(both, "{published:?}");
    assert_eq!(published[0].0, "alert.fired.checkout");
    assert_eq!(published[1].0, "alert.resolved.checkout");
    assert_eq!(published[0].1, hook[0]);
    assert_eq!(published[1].1, hook[1]);

    let stored = context.stored_alerts().await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].get_str("state").expect("state"), "resolved");
    shutdown.cancel();
    monitor.await.expect("join").expect("monitor");
    context.cleanup().await;
}

fn start_monitor_process(context: &TestContext, admin_port: u16, port: u16) -> Child {
    let mut command = context.service_command(env!("CARGO_BIN_EXE_monitoring_service"), admin_port);
    command
        .env("LOGAGG__MONITOR__TICK_MS", "100")
        .env("LOGAGG_CONFIG", write_monitor_config(port))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command.spawn().expect("monitor process")
}

/// Rules and sinks as a TOML file (lists of tables do not fit in environment variables).
fn write_monitor_config(port: u16) -> String {
    let path = std::env::temp_dir().join(format!("logagg-monitor-{port}.toml"));
    std::fs::write(
        &path,
        format!(
            "[[monitor.rules]]\nname = \"error_burst\"\nthreshold = 10.0\nwindow_seconds = 60\n\n\
             [[monitor.sinks]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{port}/hook\"\n"
        ),
    )
    .expect("config file");
    path.to_string_lossy().into_owned()
}

async fn total(ports: &[u16], name: &str) -> f64 {
    let mut sum = 0.0;
    for port in ports {
        sum += metric_in(&scrape_metrics(*port).await, name);
    }
    sum
}

/// Starts `count` monitor processes (webhook to `port`) and waits until all consume.
async fn start_monitors(context: &TestContext, count: usize, port: u16) -> (Vec<u16>, Vec<Child>) {
    let ports: Vec<u16> = (0..count).map(|_| free_port()).collect();
    let monitors = ports
        .iter()
        .map(|admin| start_monitor_process(context, *admin, port))
        .collect();
    await_consumers(context, &ports).await;
    (ports, monitors)
}

fn stop_all(monitors: &mut [Child]) {
    for monitor in monitors {
        let _ = monitor.kill();
        let _ = monitor.wait();
    }
}

/// Waits until every monitor in `ports` answers and the queue has that many consumers.
async fn await_consumers(context: &TestContext, ports: &[u16]) {
    let queue = context.settings.broker.monitoring_queue.clone();
    let ready = wait_until(TIMEOUT, || async {
        let mut healthy = 0;
        for port in ports {
            if http_request(*port, "GET", "/healthz").await.0 == 200 {
                healthy += 1;
            }
        }
        healthy == ports.len()
            && context
                .queue_state(&queue)
                .await
                .is_some_and(|state| state.consumers as usize == ports.len())
    })
    .await;
    assert!(ready, "monitors did not all start consuming");
}

/// Waits until the monitors have seen `logs` logs and their keepers handled every
/// transition their rules raised.
async fn await_settled(ports: &[u16], logs: f64) {
    let settled = wait_until(TIMEOUT, || async {
        let seen = total(ports, "logagg_monitor_messages_total").await;
        let raised = total(ports, "logagg_monitor_alert_transitions_total").await;
        let handled = total(ports, "logagg_monitor_keeper_handled_total").await;
        seen >= logs && handled >= raised
    })
    .await;
    assert!(settled, "monitors did not settle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_monitors_and_a_burst_of_30_errors_fire_exactly_one_alert() {
    let context = TestContext::new("monitor_three").await;
    let (receiver, port) = Receiver::start().await;
    let (ports, mut monitors) = start_monitors(&context, 3, port).await;
    publish_errors(&context, "payments", 30).await;
    await_settled(&ports, 30.0).await;
    let fired = wait_until(TIMEOUT, || async { !receiver.on("hook").is_empty() }).await;
    assert!(fired, "no webhook");
    let seen: Vec<f64> = {
        let mut seen = Vec::new();
        for admin in &ports {
            seen.push(metric_in(
                &scrape_metrics(*admin).await,
                "logagg_monitor_messages_total",
            ));
        }
        seen
    };
    assert_eq!(
        seen.iter().filter(|count| **count > 0.0).count(),
        1,
        "one monitor got them all: {seen:?}"
    );
    assert_eq!(receiver.on("hook").len(), 1);
    assert_eq!(context.stored_alerts().await.len(), 1);
    stop_all(&mut monitors);
    context.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_killed_mid_burst_still_ends_in_one_alert() {
    let context = TestContext::new("monitor_killed").await;
    let (receiver, port) = Receiver::start().await;
    let (ports, mut monitors) = start_monitors(&context, 2, port).await;
    publish_errors(&context, "inventory", 15).await;
    await_settled(&ports, 15.0).await;
    assert!(wait_until(TIMEOUT, || async { receiver.on("hook").len() == 1 }).await);

    // Kill the active monitor (the one that saw the logs) mid-burst; the standby takes over.
    let mut active = None;
    for (index, admin) in ports.iter().enumerate() {
        if metric_in(
            &scrape_metrics(*admin).await,
            "logagg_monitor_messages_total",
        ) > 0.0
        {
            active = Some(index);
        }
    }
    let active = active.expect("an active monitor");
    monitors[active].kill().expect("kill");
    monitors[active].wait().expect("wait");
    let standby = ports[1 - active];
    let queue = context.settings.broker.monitoring_queue.clone();
    assert!(
        wait_until(TIMEOUT, || async {
            context
                .queue_state(&queue)
                .await
                .is_some_and(|state| state.consumers == 1)
        })
        .await
    );
    publish_errors(&context, "inventory", 15).await;
    await_settled(&[standby], 15.0).await;
    assert_eq!(
        receiver.on("hook").len(),
        1,
        "no second alert: {:?}",
        receiver.on("hook")
    );
    assert_eq!(context.stored_alerts().await.len(), 1);
    stop_all(&mut monitors);
    context.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_access_stats_are_served_per_route() {
    let context = TestContext::new("monitor_live").await;
    let mut settings = context.settings.clone();
    settings.monitor.sinks = vec![];
    let shutdown = CancellationToken::new();
    // A free port can be taken by another test's monitor process before this one binds it
    // (the other's /healthz then answers for it): a monitor that could not bind is started
    // again on another port, and any other early stop is reported at once.
    let mut attempts = 0;
    let (admin, monitor) = loop {
        attempts += 1;
        let admin = free_port();
        settings.telemetry.admin_listen = std::net::SocketAddr::from(([127, 0, 0, 1], admin));
        let mut monitor = tokio::spawn(monitoring_service::run(settings.clone(), shutdown.clone()));
        let ports = [admin];
        tokio::select! {
            stopped = &mut monitor => {
                let stopped = format!("{stopped:?}");
                assert!(
                    stopped.contains("binding the admin server") && attempts < 3,
                    "the monitor stopped before consuming: {stopped}"
                );
            }
            () = await_consumers(&context, &ports) => break (admin, monitor),
        }
    };
    let channel = broker::confirm_channel(&context.connection)
        .await
        .expect("channel");
    for index in 0..40 {
        let status = if index % 4 == 0 { 503 } else { 200 };
        let body = serde_json::json!({
            "message": "request", "http": {
                "method": "GET", "path": format!("/orders/{index}"), "status": status,
                "duration_ms": f64::from(index + 1),
            }
        });
        broker::publish_confirmed(
            &channel,
            &context.settings.broker.exchange,
            "shop.info",
            body.to_string().as_bytes(),
            broker::log_properties("application/json", &format!("live-{index}")),
        )
        .await
        .expect("publish");
    }
    let live = || async {
        let (_, body) = http_request(admin, "GET", "/api/v1/live").await;
        serde_json::from_str::<Value>(&body).unwrap_or(Value::Null)
    };
    let counted = wait_until(TIMEOUT, || async {
        live().await["routes"][0]["requests"] == 40
    })
    .await;
    let live = live().await;
    assert!(counted, "{live}");
    let gauges = wait_until(TIMEOUT, || async {
        scrape_metrics(admin).await.contains(
            "logagg_monitor_route_requests_per_second{service=\"shop\",method=\"GET\",path=\"/orders/:id\"}",
        )
    })
    .await;
    assert!(gauges, "{}", scrape_metrics(admin).await);
    let route = &live["routes"][0];
    assert_eq!(route["service"], "shop");
    assert_eq!(route["path"], "/orders/:id");
    assert_eq!(route["status_classes"]["5xx"], 10);
    let p50 = route["latency_ms"]["p50"].as_f64().expect("p50");
    assert!((p50 - 20.0).abs() <= 20.0 * 0.04, "{route}");
    shutdown.cancel();
    monitor.await.expect("join").expect("monitor");
    context.cleanup().await;
}

#[tokio::test]
async fn two_monitors_opening_the_same_alert_at_once_open_it_once() {
    let context = TestContext::new("monitor_open_once").await;
    let alert = |id: &str| logagg::store::alerts::StoredAlert {
        id: id.into(),
        rule: "error_burst".into(),
        service: "checkout".into(),
        value: 10.0,
        threshold: 10.0,
        window_seconds: 60,
        started_at: chrono::Utc::now(),
        resolved_at: None,
        peak: 10.0,
        sample_ids: vec![],
    };
    let (first, second) = (alert("episode-a"), alert("episode-b"));
    let (a, b) = tokio::join!(
        context.store.open_alert(&first),
        context.store.open_alert(&second)
    );
    let outcomes = [a.expect("open a"), b.expect("open b")];
    use logagg::store::alerts::Opened;
    let new = outcomes.iter().filter(|o| **o == Opened::New).count();
    assert_eq!(new, 1, "{outcomes:?}");
    let winner = if outcomes[0] == Opened::New {
        &first
    } else {
        &second
    };
    assert!(outcomes.contains(&Opened::AlreadyFiring(winner.id.clone())));
    assert_eq!(context.stored_alerts().await.len(), 1);
    // Retrying the winner's own open (a lost answer) is not a second alert.
    assert_eq!(
        context.store.open_alert(winner).await.expect("retry"),
        Opened::New
    );
    assert_eq!(context.stored_alerts().await.len(), 1);
    // Resolving closes it once; then the pair can fire again.
    let mut resolved = winner.clone();
    resolved.resolved_at = Some(chrono::Utc::now());
    assert!(context
        .store
        .resolve_alert(&resolved)
        .await
        .expect("resolve"));
    assert!(!context.store.resolve_alert(&resolved).await.expect("again"));
    assert_eq!(
        context
            .store
            .open_alert(&alert("episode-c"))
            .await
            .expect("reopen"),
        Opened::New
    );
    assert_eq!(
        context.store.firing_alerts().await.expect("firing").len(),
        1
    );
    context.cleanup().await;
}
