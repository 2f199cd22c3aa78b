//! Tracing setup, Prometheus metrics, and the admin server with `/healthz` and `/metrics`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;
use tracing_subscriber::EnvFilter;

use crate::settings::{LogFormat, TelemetrySettings};

/// Installs the global tracing subscriber: text or JSON, filtered by `log_level`.
/// A second call (as in tests running several services) keeps the first.
pub fn init_tracing(settings: &TelemetrySettings) {
    let filter = EnvFilter::try_new(&settings.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _already_installed = if settings.log_format == LogFormat::Json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Durations are `*_seconds`; counts per operation (batch sizes) are `*_size`.
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".into()),
                    &[
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                        10.0,
                    ],
                )
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        Matcher::Suffix("_size".into()),
                        &[1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0],
                    )
                })
                .map(|builder| builder.build_recorder())
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            // Fails only if another recorder is installed; then ours just renders nothing.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Named health checks that components flip as they connect and fail.
#[derive(Clone, Default, Debug)]
pub struct Health {
    checks: Arc<Mutex<BTreeMap<&'static str, bool>>>,
}

impl Health {
    pub fn set(&self, check: &'static str, healthy: bool) {
        if let Ok(mut checks) = self.checks.lock() {
            checks.insert(check, healthy);
        }
    }

    /// Healthy when at least one check is registered and all pass.
    pub fn snapshot(&self) -> (bool, BTreeMap<&'static str, bool>) {
        let checks = self
            .checks
            .lock()
            .map(|checks| checks.clone())
            .unwrap_or_default();
        let healthy = !checks.is_empty() && checks.values().all(|ok| *ok);
        (healthy, checks)
    }
}

#[derive(Clone)]
struct AdminState {
    health: Health,
    metrics: PrometheusHandle,
}

/// The admin routes: `/healthz` (200 or 503 with each check) and `/metrics` (Prometheus text).
pub fn admin_router(health: Health) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(render_metrics))
        .with_state(AdminState {
            health,
            metrics: metrics_handle(),
        })
}

async fn healthz(State(state): State<AdminState>) -> impl IntoResponse {
    let (healthy, checks) = state.health.snapshot();
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body =
        json!({ "status": if healthy { "ok" } else { "unavailable" }, "checks": checks });
    if let Some(node) = crate::broker::connected_node() {
        body["broker_node"] = json!(node);
    }
    (status, Json(body))
}

async fn render_metrics(State(state): State<AdminState>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// Binds the admin server and serves `router` (usually [`admin_router`], perhaps merged with
/// a service's own admin routes) until `shutdown`. Returns the bound address.
pub async fn serve_admin(
    listen: SocketAddr,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(listen).await?;
    let address = listener.local_addr()?;
    info!(%address, "admin server listening (/healthz, /metrics)");
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "admin server failed");
        }
    });
    Ok((address, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_needs_every_check_to_pass() {
        let health = Health::default();
        assert!(!health.snapshot().0, "no checks yet is not healthy");
        health.set("broker", true);
        health.set("store", false);
        assert!(!health.snapshot().0);
        health.set("store", true);
        assert!(health.snapshot().0);
    }
}
