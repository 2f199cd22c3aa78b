//! search_service: the REST API over stored logs (port 5000 by default): logs, stats,
//! services, alerts, the live tail and the dashboard; `/healthz` and `/metrics` on the admin
//! port.

pub mod alerts;
pub mod api;
pub mod dashboard;
pub mod error;
pub mod openapi;
pub mod query;
pub mod stats;
pub mod tail;

use anyhow::Context;
use logagg::http_server::{self, HangUp};
use logagg::runtime;
use logagg::settings::{Section, Settings};
use logagg::store::Database;
use logagg::telemetry::{self, Health};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// Name shown for the service's MongoDB client.
pub const SERVICE_NAME: &str = "search_service";
/// The settings sections search reads and checks; the others are left unread.
pub const SECTIONS: &[Section] = &[
    Section::Broker,
    Section::Store,
    Section::Telemetry,
    Section::Search,
    // Only `analyzers.max_failures`, for the dashboard's Analyzers page.
    Section::Analyzers,
    Section::Auth,
    Section::Tls,
];

/// What the service runs on, made by its caller (`main`, or a test with its own database and
/// a listener on port 0).
pub struct Dependencies {
    pub store: Database,
    /// Where the API and the dashboard are served.
    pub listener: TcpListener,
}

impl Dependencies {
    /// The database client and `search.listen` bound, as `settings` name them.
    pub async fn from_settings(settings: &Settings) -> anyhow::Result<Dependencies> {
        let store = Database::connect(&settings.store, SERVICE_NAME)
            .await
            .context("configuring the MongoDB client")?;
        let listener = TcpListener::bind(&settings.search.listen)
            .await
            .with_context(|| format!("binding search.listen {}", settings.search.listen))?;
        Ok(Dependencies { store, listener })
    }
}

/// Serves the API until `shutdown`. MongoDB being down does not stop it: queries answer 503
/// until it is back.
pub async fn run(
    settings: Settings,
    dependencies: Dependencies,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Dependencies { store, listener } = dependencies;
    let health = Health::default();
    health.set("store", false);
    let (_admin_address, admin_task) = telemetry::serve_admin(
        settings.telemetry.admin_listen,
        telemetry::admin_router(health.clone()),
        shutdown.clone(),
    )
    .await
    .context("binding the admin server")?;
    let indexes = tokio::spawn({
        let (store, shutdown) = (store.clone(), shutdown.clone());
        async move { runtime::ensure_indexes(&store, &health, &shutdown).await }
    });
    info!(
        address = %listener.local_addr()?,
        scheme = http_server::scheme(&settings.tls),
        "search API listening"
    );
    let state = api::AppState::new(store.clone(), &settings, shutdown.clone());
    let tails = std::sync::Arc::clone(&state.tails);
    let app = api::router(state);
    let served = http_server::serve(
        listener,
        app,
        &settings.tls,
        HangUp::Cancels,
        shutdown.clone(),
    )
    .await;
    shutdown.cancel();
    runtime::wait_for_tasks(tails.tasks(), runtime::TASKS_DEADLINE).await;
    let _ = indexes.await;
    store.shutdown().await;
    let _ = admin_task.await;
    served.context("serving the API")
}
