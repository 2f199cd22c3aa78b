//! monitoring_service binary: load settings, start tracing, monitor until SIGTERM or Ctrl-C.

use anyhow::Context;
use logagg::{settings::Settings, shutdown, telemetry};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings =
        Settings::from_process_env(monitoring_service::SECTIONS).context("loading settings")?;
    telemetry::init_tracing(&settings.telemetry);
    let shutdown_token = CancellationToken::new();
    shutdown::cancel_on_signal(shutdown_token.clone());
    monitoring_service::run(settings, shutdown_token).await
}
