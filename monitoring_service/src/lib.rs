//! monitoring_service: consumes the monitoring queue with auto-ack, keeps sliding windows per
//! service, raises and resolves alerts (stored, published on the alerts exchange, sent to
//! sinks), and serves live access-log stats. One monitor at a time is active (the queue has
//! a single active consumer); run more copies as standbys.

pub mod consumer;
pub mod keeper;
pub mod live;
pub mod metrics;
pub mod monitor;
pub mod rules;
pub mod sinks;
pub mod window;

use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use logagg::runtime::{self, BrokerSession, Reconnecting, SessionError};
use logagg::settings::{Section, Settings};
use logagg::store::Database;
use logagg::telemetry::{self, Health};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::consumer::{consume, Context};
use crate::live::{LiveRoute, LiveStats};
use crate::monitor::Monitor;
use crate::rules::Rule;
use crate::sinks::Notifier;

/// Name shown for the monitor's broker connection and MongoDB client.
pub const SERVICE_NAME: &str = "monitoring_service";
/// The settings sections the monitor reads and checks; the others are left unread.
pub const SECTIONS: &[Section] = &[
    Section::Broker,
    Section::Store,
    Section::Telemetry,
    Section::Monitor,
];
/// Alert transitions waiting for the keeper at most.
const KEEPER_QUEUE: usize = 10_000;

/// Runs the monitor until `shutdown`: admin server (`/healthz`, `/metrics`, `/api/v1/live`),
/// alert keeper and sinks, then the consume loop, reconnecting whenever the broker is lost.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    metrics::describe();
    let settings = Arc::new(settings);
    let health = Health::default();
    health.set("broker", false);
    let monitor_settings = &settings.monitor;
    let live = Arc::new(Mutex::new(LiveStats::new(
        monitor_settings.live_window_seconds,
        monitor_settings.max_routes_per_service,
    )));
    let admin = telemetry::admin_router(health.clone()).merge(live_router(Arc::clone(&live)));
    let (_admin_address, admin_task) =
        telemetry::serve_admin(settings.telemetry.admin_listen, admin, shutdown.clone())
            .await
            .context("binding the admin server")?;
    let store = Database::connect(&settings.store, SERVICE_NAME)
        .await
        .context("configuring the MongoDB client")?;
    let tasks = TaskTracker::new();
    let notifier = Notifier::start(
        &monitor_settings.sinks,
        &settings.broker,
        monitor_settings.sink_queue,
        &tasks,
        &shutdown,
    );
    let keeper = keeper::start(
        store.clone(),
        notifier,
        KEEPER_QUEUE,
        &tasks,
        shutdown.clone(),
    );
    let rules: Vec<Rule> = monitor_settings.rules.iter().map(Rule::compile).collect();
    let mut context = Context {
        monitor: Monitor::new(
            rules,
            monitor_settings.max_services,
            monitor_settings.idle_eviction_seconds,
        ),
        live,
        keeper,
        health: health.clone(),
        shutdown: shutdown.clone(),
        settings: Arc::clone(&settings),
    };

    let names = Reconnecting {
        connection_name: SERVICE_NAME,
        reconnects_metric: metrics::RECONNECTS,
    };
    runtime::run_with_reconnect(&settings.broker, names, &health, &shutdown, &mut context).await;
    drop(context);
    runtime::wait_for_tasks(&tasks, runtime::TASKS_DEADLINE).await;
    store.shutdown().await;
    info!("monitor stopped");
    let _ = admin_task.await;
    Ok(())
}

impl BrokerSession for Context {
    async fn run(&mut self, connection: &lapin::Connection) -> Result<(), SessionError> {
        Ok(consume(connection, self).await?)
    }
}

/// The body of `GET /api/v1/live`.
#[derive(Debug, Serialize)]
pub struct Live {
    pub window_seconds: u64,
    pub routes: Vec<LiveRoute>,
}

fn live_router(live: Arc<Mutex<LiveStats>>) -> Router {
    Router::new()
        .route("/api/v1/live", get(live_routes))
        .with_state(live)
}

async fn live_routes(State(live): State<Arc<Mutex<LiveStats>>>) -> Json<Live> {
    let now = chrono::Utc::now().timestamp_millis();
    let (window_seconds, routes) = match live.lock() {
        Ok(live) => (live.window_seconds(), live.snapshot(now)),
        Err(_) => (0, Vec::new()),
    };
    Json(Live {
        window_seconds,
        routes,
    })
}

/// Sets the live route gauges for Prometheus.
pub fn publish_live_gauges(live: &Mutex<LiveStats>, now: i64) {
    let Ok(live) = live.lock() else {
        return;
    };
    for route in live.snapshot(now) {
        let labels = [
            ("service", route.service.clone()),
            ("method", route.method.clone()),
            ("path", route.path.clone()),
        ];
        metrics::gauge!(metrics::ROUTE_RATE, &labels).set(route.requests_per_second);
        for (class, count) in &route.status_classes {
            let mut with_class = labels.to_vec();
            with_class.push(("class", class.clone()));
            metrics::gauge!(metrics::ROUTE_RESPONSES, &with_class).set(*count as f64);
        }
        if let Some(latency) = &route.latency_ms {
            for (quantile, value) in [
                ("0.5", latency.p50),
                ("0.95", latency.p95),
                ("0.99", latency.p99),
            ] {
                let mut with_quantile = labels.to_vec();
                with_quantile.push(("quantile", quantile.to_owned()));
                metrics::gauge!(metrics::ROUTE_LATENCY, &with_quantile).set(value);
            }
        }
    }
}
