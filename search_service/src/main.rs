//! search_service binary: load settings, start tracing, serve the API until SIGTERM or Ctrl-C.

use anyhow::Context;
use logagg::{settings::Settings, shutdown, telemetry};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings =
        Settings::from_process_env(search_service::SECTIONS).context("loading settings")?;
    telemetry::init_tracing(&settings.telemetry);
    let shutdown_token = CancellationToken::new();
    shutdown::cancel_on_signal(shutdown_token.clone());
    let dependencies = search_service::Dependencies::from_settings(&settings).await?;
    search_service::run(settings, dependencies, shutdown_token).await
}
