//! source_service binary: `simulate` publishes generated traffic, `gateway` serves the HTTP
//! ingest API.

use anyhow::Context;
use clap::{Parser, Subcommand};
use logagg::{settings::Settings, shutdown, telemetry};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(version, about = "Gets logs onto the logagg exchange")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Publish simulated logs (settings section `source`; flags override it).
    Simulate {
        /// Messages to publish; 0 runs until stopped.
        #[arg(long)]
        count: Option<u64>,
        /// Messages per second; 0 is as fast as publisher confirms allow.
        #[arg(long)]
        rate: Option<u64>,
        /// `json` or `plain`.
        #[arg(long)]
        format: Option<String>,
    },
    /// Serve the HTTP ingest gateway (settings section `gateway`).
    Gateway,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut settings = Settings::from_process_env().context("loading settings")?;
    telemetry::init_tracing(&settings.telemetry);
    let shutdown_token = CancellationToken::new();
    shutdown::cancel_on_signal(shutdown_token.clone());
    let Command::Simulate {
        count,
        rate,
        format,
    } = cli.command
    else {
        return source_service::serve_gateway(settings, shutdown_token).await;
    };
    settings.source.count = count.unwrap_or(settings.source.count);
    settings.source.rate = rate.unwrap_or(settings.source.rate);
    settings.source.format = format.unwrap_or(settings.source.format);
    settings.validate().context("invalid flags")?;
    let report = source_service::run(settings, shutdown_token).await?;
    println!("{report}");
    Ok(())
}
