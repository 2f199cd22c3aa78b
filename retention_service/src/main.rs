//! retention_service binary: `serve` (the default) purges on schedule; `purge` runs one now;
//! `restore` puts archived logs back.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use logagg::{settings::Settings, shutdown, telemetry};
use retention_service::clock::SystemClock;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(version, about = "Purges logs past their retention, on a schedule")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Purge on the schedule in `retention.schedule`, and on `POST /api/v1/purge`.
    Serve,
    /// Purge now, print the report as JSON, and exit.
    Purge {
        /// Report what each policy would delete, deleting nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write the logs in archive files back into MongoDB (already present ones are kept).
    Restore {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings =
        Settings::from_process_env(retention_service::SECTIONS).context("loading settings")?;
    telemetry::init_tracing(&settings.telemetry);
    let shutdown_token = CancellationToken::new();
    shutdown::cancel_on_signal(shutdown_token.clone());
    let clock = Arc::new(SystemClock);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => retention_service::run(settings, clock, shutdown_token).await,
        Command::Purge { dry_run } => {
            let report =
                retention_service::purge_once(&settings, clock, dry_run, shutdown_token).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Command::Restore { files } => {
            let report = retention_service::restore(&settings, &files).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
    }
}
