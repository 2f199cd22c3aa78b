//! source_service binary: `simulate`, `scenario`, `gateway` or `ship` ([`Command`]).

use anyhow::Context;
use clap::Parser;
use logagg::settings::Settings;
use logagg::{shutdown, telemetry};
use source_service::command::Command;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(version, about = "Gets logs onto the logagg exchange")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings =
        Settings::from_process_env(cli.command.sections()).context("loading settings")?;
    telemetry::init_tracing(&settings.telemetry);
    let shutdown_token = CancellationToken::new();
    shutdown::cancel_on_signal(shutdown_token.clone());
    cli.command.run(settings, shutdown_token).await
}
