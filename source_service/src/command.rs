//! The `source_service` command line: one subcommand per way of getting logs onto the
//! exchange, each knowing the settings sections it reads and how it runs.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use logagg::formats::LineFormat;
use logagg::settings::{MessageFormat, Section, Settings, TrafficProfile};
use logagg::telemetry::Health;
use tokio_util::sync::CancellationToken;

use crate::ingest::shipper::{ship, ShipOptions};
use crate::load::scenario::{PhaseKind, ScenarioGenerator, Timeline};

#[derive(Debug, Subcommand)]
pub enum Command {
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
        /// `simple` (a 16-word vocabulary) or `realistic` (real systems' lines).
        #[arg(long)]
        profile: Option<TrafficProfile>,
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
        timeline: Option<PathBuf>,
        /// Without a timeline: the one phase to play.
        #[arg(long, value_enum, default_value_t = ScenarioKind::Normal)]
        kind: ScenarioKind,
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
        /// `simple` (`GET /home 200 12ms`) or `realistic` (whole access lines).
        #[arg(long)]
        profile: Option<TrafficProfile>,
    },
    /// Ship a log file's lines (following rotation), or stdin's.
    Ship {
        /// The file to tail; without it, stdin is read to its end.
        #[arg(long)]
        file: Option<PathBuf>,
        /// plain, clf, combined, syslog5424, syslog3164 or logfmt.
        #[arg(long)]
        format: LineFormat,
        /// The service the lines come from (required by formats without one).
        #[arg(long)]
        service: Option<String>,
        /// Where the file's offset is kept between runs.
        #[arg(long, default_value = ".logagg-ship")]
        state_dir: PathBuf,
        /// Stop at the end of the file instead of waiting for more.
        #[arg(long)]
        no_follow: bool,
        /// After a rotation, how long the old file is read on once it stops growing (a
        /// writer appends to it until it reopens the path).
        #[arg(long, default_value_t = 5)]
        rotate_wait_secs: u64,
    },
}

/// The one phase `scenario` plays without a timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScenarioKind {
    Normal,
    Spike,
    /// `--service` fails.
    Failure,
    /// `--endpoint` is slow.
    Slow,
}

impl Command {
    /// The settings sections the command reads and checks.
    pub fn sections(&self) -> &'static [Section] {
        match self {
            Command::Simulate { .. } | Command::Scenario { .. } => {
                &[Section::Broker, Section::Telemetry, Section::Source]
            }
            Command::Gateway => &[
                Section::Broker,
                Section::Telemetry,
                Section::Gateway,
                Section::Auth,
                Section::Tls,
                Section::Otlp,
                Section::Syslog,
                Section::Gelf,
            ],
            Command::Ship { .. } => &[Section::Broker, Section::Telemetry],
        }
    }

    /// Runs the command until it is done or `shutdown`, printing its report.
    pub async fn run(
        self,
        mut settings: Settings,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let sections = self.sections();
        match self {
            Command::Simulate {
                count,
                rate,
                format,
                profile,
                batch,
            } => {
                let source = &mut settings.source;
                source.profile = profile.unwrap_or(source.profile);
                source.batch_records = batch.unwrap_or(source.batch_records);
                source.count = count.unwrap_or(source.count);
                source.rate = rate.unwrap_or(source.rate);
                source.format = format.unwrap_or(source.format);
                settings.validate(sections).context("invalid flags")?;
                let report = crate::run(settings, shutdown).await?;
                println!("{report}");
            }
            Command::Gateway => crate::serve_gateway(settings, shutdown).await?,
            Command::Scenario {
                timeline,
                kind,
                seconds,
                rate,
                service,
                endpoint,
                batch,
                profile,
            } => {
                settings.source.batch_records = batch.unwrap_or(settings.source.batch_records);
                settings.source.profile = profile.unwrap_or(settings.source.profile);
                settings.validate(sections).context("invalid flags")?;
                let timeline = match timeline {
                    Some(path) => {
                        let text = std::fs::read_to_string(&path)
                            .with_context(|| format!("reading {}", path.display()))?;
                        Timeline::parse(&text).map_err(anyhow::Error::msg)?
                    }
                    None => {
                        let phase = match kind {
                            ScenarioKind::Normal => PhaseKind::Normal,
                            ScenarioKind::Spike => PhaseKind::Spike,
                            ScenarioKind::Failure => PhaseKind::Failure { service },
                            ScenarioKind::Slow => PhaseKind::Slow { endpoint },
                        };
                        Timeline::single(phase, seconds, rate).map_err(anyhow::Error::msg)?
                    }
                };
                let mut traffic = ScenarioGenerator::new(timeline, seed_from_clock())
                    .with_profile(settings.source.profile);
                let report =
                    crate::publish(&settings, &mut traffic, &Health::default(), &shutdown).await?;
                println!("{report}");
            }
            Command::Ship {
                file,
                format,
                service,
                state_dir,
                no_follow,
                rotate_wait_secs,
            } => {
                let options = ShipOptions {
                    path: file,
                    format,
                    service,
                    state_dir,
                    follow: !no_follow,
                    poll: Duration::from_millis(200),
                    rotate_wait: Duration::from_secs(rotate_wait_secs),
                };
                let report = ship(&settings, &options, &shutdown).await?;
                println!(
                    "shipped {} lines, dead-lettered {}",
                    report.shipped, report.dead_lettered
                );
            }
        }
        Ok(())
    }
}

/// A seed for the scenario's randomness that differs per run.
fn seed_from_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(7, |elapsed| elapsed.as_nanos() as u64)
}
