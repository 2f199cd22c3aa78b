//! source_service binary: `simulate` publishes generated traffic, `gateway` serves the HTTP
//! ingest API.

use anyhow::Context;
use clap::{Parser, Subcommand};
use logagg::settings::{MessageFormat, Section, Settings};
use logagg::{shutdown, telemetry};
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
        format: Option<MessageFormat>,
        /// Logs per message (JSON only): logs sharing a routing key go out as one batch.
        #[arg(long)]
        batch: Option<usize>,
    },
    /// Serve the HTTP ingest gateway (settings section `gateway`).
    Gateway,
    /// Publish a traffic scenario: a timeline file, or one phase.
    Scenario {
        /// A timeline file (TOML: base_rate, day_seconds, services, [[phase]] kind/seconds).
        #[arg(long)]
        timeline: Option<std::path::PathBuf>,
        /// Without a timeline: normal, spike, failure or slow.
        #[arg(long, default_value = "normal")]
        kind: String,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Logs per second of normal traffic.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// The failing service (failure).
        #[arg(long, default_value = "auth")]
        service: String,
        /// The slow endpoint (slow).
        #[arg(long, default_value = "/profile")]
        endpoint: String,
        /// Logs per message: logs sharing a routing key go out as one batch.
        #[arg(long)]
        batch: Option<usize>,
    },
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

impl Command {
    /// The settings sections the command reads and checks.
    fn sections(&self) -> &'static [Section] {
        match self {
            Command::Simulate { .. } | Command::Scenario { .. } => {
                &[Section::Broker, Section::Telemetry, Section::Source]
            }
            Command::Gateway => &[Section::Broker, Section::Telemetry, Section::Gateway],
            Command::Ship { .. } => &[Section::Broker, Section::Telemetry],
        }
    }
}

fn rand_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(7, |elapsed| elapsed.as_nanos() as u64)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let sections = cli.command.sections();
    let mut settings = Settings::from_process_env(sections).context("loading settings")?;
    telemetry::init_tracing(&settings.telemetry);
    let shutdown_token = CancellationToken::new();
    shutdown::cancel_on_signal(shutdown_token.clone());
    let (count, rate, format) = match cli.command {
        Command::Simulate {
            count,
            rate,
            format,
            batch,
        } => {
            settings.source.batch_records = batch.unwrap_or(settings.source.batch_records);
            (count, rate, format)
        }
        Command::Gateway => return source_service::serve_gateway(settings, shutdown_token).await,
        Command::Scenario {
            timeline,
            kind,
            seconds,
            rate,
            service,
            endpoint,
            batch,
        } => {
            settings.source.batch_records = batch.unwrap_or(settings.source.batch_records);
            settings.validate(sections).context("invalid flags")?;
            use source_service::load::scenario::{PhaseKind, ScenarioGenerator, Timeline};
            let timeline = match timeline {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    Timeline::parse(&text).map_err(anyhow::Error::msg)?
                }
                None => {
                    let kind = match kind.as_str() {
                        "normal" => PhaseKind::Normal,
                        "spike" => PhaseKind::Spike,
                        "failure" => PhaseKind::Failure { service },
                        "slow" => PhaseKind::Slow { endpoint },
                        other => anyhow::bail!("--kind `{other}`: normal, spike, failure or slow"),
                    };
                    Timeline::single(kind, seconds, rate).map_err(anyhow::Error::msg)?
                }
            };
            let mut traffic = ScenarioGenerator::new(timeline, rand_seed());
            let report = source_service::publish(
                &settings,
                &mut traffic,
                &logagg::telemetry::Health::default(),
                &shutdown_token,
            )
            .await?;
            println!("{report}");
            return Ok(());
        }
        Command::Ship {
            file,
            format,
            service,
            state_dir,
            no_follow,
        } => {
            let options = source_service::ingest::shipper::ShipOptions {
                path: file,
                format: format.parse().map_err(anyhow::Error::msg)?,
                service,
                state_dir,
                follow: !no_follow,
                poll: std::time::Duration::from_millis(200),
            };
            let report =
                source_service::ingest::shipper::ship(&settings, &options, &shutdown_token).await?;
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
    settings.validate(sections).context("invalid flags")?;
    let report = source_service::run(settings, shutdown_token).await?;
    println!("{report}");
    Ok(())
}
