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
    /// Ship a log file's lines (following rotation), or stdin's.
    Ship {
        /// The file to tail; without it, stdin is read to its end.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        /// plain, clf, combined, syslog5424, syslog3164 or logfmt.
        #[arg(long)]
        format: String,
        /// The service the lines come from (required by formats without one).
        #[arg(long)]
        service: Option<String>,
        /// Where the file's offset is kept between runs.
        #[arg(long, default_value = ".logagg-ship")]
        state_dir: std::path::PathBuf,
        /// Stop at the end of the file instead of waiting for more.
        #[arg(long)]
        no_follow: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut settings = Settings::from_process_env().context("loading settings")?;
    telemetry::init_tracing(&settings.telemetry);
    let shutdown_token = CancellationToken::new();
    shutdown::cancel_on_signal(shutdown_token.clone());
    let (count, rate, format) = match cli.command {
        Command::Simulate {
            count,
            rate,
            format,
        } => (count, rate, format),
        Command::Gateway => return source_service::serve_gateway(settings, shutdown_token).await,
        Command::Ship {
            file,
            format,
            service,
            state_dir,
            no_follow,
        } => {
            let options = source_service::shipper::ShipOptions {
                path: file,
                format: format.parse().map_err(anyhow::Error::msg)?,
                service,
                state_dir,
                follow: !no_follow,
                poll: std::time::Duration::from_millis(200),
            };
            let report =
                source_service::shipper::ship(&settings, &options, &shutdown_token).await?;
            println!(
                "shipped {} lines, dead-lettered {}",
                report.shipped, report.dead_lettered
            );
            return Ok(());
        }
    };
    settings.source.count = count.unwrap_or(settings.source.count);
    settings.source.rate = rate.unwrap_or(settings.source.rate);
    settings.source.format = format.unwrap_or(settings.source.format);
    settings.validate().context("invalid flags")?;
    let report = source_service::run(settings, shutdown_token).await?;
    println!("{report}");
    Ok(())
}
