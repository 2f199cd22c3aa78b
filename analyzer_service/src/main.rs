//! analyzer_service binary: load settings, start tracing, distribute until SIGTERM or Ctrl-C.

use anyhow::Context;
use logagg::{settings::Settings, shutdown, telemetry};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings =
        Settings::from_process_env(analyzer_service::SECTIONS).context("loading settings")?;
    telemetry::init_tracing(&settings.telemetry);
    let shutdown_token = CancellationToken::new();
    shutdown::cancel_on_signal(shutdown_token.clone());
    let listener = tokio::net::TcpListener::bind(settings.analyzers.listen)
        .await
        .with_context(|| format!("binding analyzers.listen {}", settings.analyzers.listen))?;
    analyzer_service::run(settings, listener, shutdown_token).await
}
