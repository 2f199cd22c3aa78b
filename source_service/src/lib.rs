//! source_service: gets logs onto the exchange. Production ingest lives in [`ingest`] (the
//! HTTP gateway, the file and stdin shipper); load generation in [`load`] (the simulator, the
//! traffic scenarios and their publish loop); the command line in [`command`].

pub mod command;
pub mod ingest;
pub mod load;

use anyhow::Context;
use logagg::http_server;
use logagg::settings::Settings;
use logagg::telemetry;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use load::{publish, run, simulate, PublishReport, Traffic};

pub const SERVICE_NAME: &str = "source_service";

/// Serves the ingest gateway on `gateway.listen` (and the admin server) until `shutdown`.
pub async fn serve_gateway(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&settings.gateway.listen)
        .await
        .with_context(|| format!("binding gateway.listen {}", settings.gateway.listen))?;
    info!(
        address = %listener.local_addr()?,
        scheme = http_server::scheme(&settings.tls),
        "ingest gateway listening"
    );
    let gateway = ingest::gateway::Gateway::new(settings.gateway.clone(), settings.broker.clone());
    let (_address, admin_task) = telemetry::serve_admin(
        settings.telemetry.admin_listen,
        telemetry::admin_router(gateway.health.clone()),
        shutdown.clone(),
    )
    .await
    .context("binding the admin server")?;
    let app = ingest::gateway::router(gateway, &settings.auth);
    let served = http_server::serve(listener, app, &settings.tls, shutdown).await;
    let _ = admin_task.await;
    served.context("serving the gateway")
}
