//! analyzer_service: the weighted fan-out. Analyzers register over HTTP with a weight and a
//! target (a URL that takes NDJSON POSTs, or a queue of their own); the distributor gives
//! each log of its queue to one online analyzer, in proportion to the weights. Run more
//! copies to scale out (competing consumers; the registry is shared in MongoDB).

pub mod api;
pub mod distributor;
pub mod metrics;
pub mod schedule;

use std::sync::Arc;

use anyhow::Context;
use logagg::http_server::{self, HangUp};
use logagg::runtime::{self, Reconnecting};
use logagg::settings::{Section, Settings};
use logagg::store::Database;
use logagg::telemetry::{self, Health};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// Name shown for the service's broker connections and MongoDB client.
pub const SERVICE_NAME: &str = "analyzer_service";
/// The settings sections the service reads and checks; the others are left unread.
pub const SECTIONS: &[Section] = &[
    Section::Broker,
    Section::Store,
    Section::Telemetry,
    Section::Analyzers,
    Section::Auth,
    Section::Tls,
];

/// Serves the registration API on `listener` and distributes until `shutdown`.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    metrics::describe();
    let settings = Arc::new(settings);
    let health = Health::default();
    health.set("broker", false);
    health.set("store", false);
    let (_admin_address, admin_task) = telemetry::serve_admin(
        settings.telemetry.admin_listen,
        telemetry::admin_router(health.clone()),
        shutdown.clone(),
    )
    .await
    .context("binding the admin server")?;
    let store = Database::connect(&settings.store, SERVICE_NAME)
        .await
        .context("configuring the MongoDB client")?;

    info!(
        address = %listener.local_addr()?,
        scheme = http_server::scheme(&settings.tls),
        "analyzer registration API listening"
    );
    let app = api::router(
        api::AppState {
            store: store.clone(),
            settings: Arc::new(settings.analyzers.clone()),
        },
        &settings.auth,
    );
    let api = tokio::spawn({
        let (shutdown, tls) = (shutdown.clone(), settings.tls.clone());
        async move { http_server::serve(listener, app, &tls, HangUp::Cancels, shutdown).await }
    });

    let (sender, registered) = tokio::sync::watch::channel(Arc::new(Vec::new()));
    let refresher = tokio::spawn(distributor::refresh_registered(
        store.clone(),
        Arc::clone(&settings),
        sender,
        health.clone(),
        shutdown.clone(),
    ));
    let mut session = distributor::Distributor {
        store: store.clone(),
        settings: Arc::clone(&settings),
        http: reqwest::Client::new(),
        registered,
        health: health.clone(),
        shutdown: shutdown.clone(),
        schedule: schedule::Schedule::default(),
    };
    let names = Reconnecting {
        connection_name: SERVICE_NAME,
        reconnects_metric: metrics::RECONNECTS,
    };
    runtime::run_with_reconnect(&settings.broker, names, &health, &shutdown, &mut session).await;
    shutdown.cancel();
    let _ = refresher.await;
    let served = api.await.context("the API task")?;
    store.shutdown().await;
    let _ = admin_task.await;
    info!("analyzer_service stopped");
    served.context("serving the registration API")
}
