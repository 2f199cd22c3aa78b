//! Load generation: the simulator and the traffic scenarios, and the one publish loop both
//! use (each log at its due time, persistent and mandatory, at most `source.max_unconfirmed`
//! awaiting the broker's confirm).

pub mod batcher;
pub mod pacer;
pub mod realistic;
pub mod scenario;
pub mod simulator;

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use lapin::Confirmation;
use logagg::settings::Settings;
use logagg::telemetry::{self, Health};
use logagg::{broker, topology};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::batcher::{Batcher, Outgoing};
use self::pacer::Pacer;
use self::simulator::Generator;
use crate::SERVICE_NAME;

const PUBLISHED: &str = "logagg_source_published_total";
const CONFIRMED: &str = "logagg_source_confirmed_total";
const NACKED: &str = "logagg_source_nacked_total";

/// What a simulator run did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PublishReport {
    /// Logs published, confirmed and nacked; `messages` carried them (fewer when batched).
    pub published: u64,
    pub confirmed: u64,
    pub nacked: u64,
    pub messages: u64,
    pub elapsed: Duration,
}

impl PublishReport {
    /// Confirmed logs per second.
    pub fn rate(&self) -> f64 {
        self.confirmed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl std::fmt::Display for PublishReport {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "published {} confirmed {} nacked {} in {:.2}s: {:.0} logs/s in {} messages",
            self.published,
            self.confirmed,
            self.nacked,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.messages
        )
    }
}

/// Runs the simulator with its admin server until the count is reached or `shutdown`.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<PublishReport> {
    let health = Health::default();
    let admin_shutdown = shutdown.child_token();
    let (_address, admin_task) = telemetry::serve_admin(
        settings.telemetry.admin_listen,
        telemetry::admin_router(health.clone()),
        admin_shutdown.clone(),
    )
    .await
    .context("binding the admin server")?;
    let report = simulate(&settings, &health, &shutdown).await;
    admin_shutdown.cancel();
    let _ = admin_task.await;
    report
}

/// Logs to publish, each due at a time from the start.
pub trait Traffic {
    fn content_type(&self) -> &'static str;
    /// When the next log is due, from the start, having published `sent`; `None`: done.
    fn next_due(&self, sent: u64) -> Option<Duration>;
    fn next_log(&mut self, now: chrono::DateTime<Utc>) -> Option<simulator::GeneratedLog>;
}

/// The simulator's traffic: `source.count` logs (0: until shutdown) at `source.rate`.
struct Simulated {
    generator: Generator,
    pacer: Pacer,
    count: u64,
}

impl Traffic for Simulated {
    fn content_type(&self) -> &'static str {
        self.generator.format().content_type()
    }

    fn next_due(&self, sent: u64) -> Option<Duration> {
        (self.count == 0 || sent < self.count).then(|| self.pacer.due(sent))
    }

    fn next_log(&mut self, now: chrono::DateTime<Utc>) -> Option<simulator::GeneratedLog> {
        Some(self.generator.next_log(now))
    }
}

impl Traffic for scenario::ScenarioGenerator {
    fn content_type(&self) -> &'static str {
        broker::CONTENT_TYPE_JSON
    }

    fn next_due(&self, _sent: u64) -> Option<Duration> {
        scenario::ScenarioGenerator::next_due(self).map(Duration::from_secs_f64)
    }

    fn next_log(&mut self, now: chrono::DateTime<Utc>) -> Option<simulator::GeneratedLog> {
        scenario::ScenarioGenerator::next_log(self, now)
    }
}

/// Publishes simulated logs: `source.count` of them (0: until shutdown) at `source.rate`
/// per second (0: as fast as confirms allow), keeping at most `source.max_unconfirmed`
/// awaiting the broker's confirm. Waits for every confirm before returning.
pub async fn simulate(
    settings: &Settings,
    health: &Health,
    shutdown: &CancellationToken,
) -> anyhow::Result<PublishReport> {
    let mut traffic = Simulated {
        generator: Generator::new(&settings.source, rand::random()),
        pacer: Pacer::new(settings.source.rate),
        count: settings.source.count,
    };
    info!(rate = settings.source.rate, count = settings.source.count, format = %settings.source.format, "simulator started");
    publish(settings, &mut traffic, health, shutdown).await
}

/// Publishes `traffic`, each log at its due time, keeping at most `source.max_unconfirmed`
/// awaiting the broker's confirm; waits for every confirm before returning.
pub async fn publish(
    settings: &Settings,
    traffic: &mut impl Traffic,
    health: &Health,
    shutdown: &CancellationToken,
) -> anyhow::Result<PublishReport> {
    let source = &settings.source;
    let Some(connection) =
        broker::connect_with_backoff(&settings.broker, SERVICE_NAME, shutdown).await
    else {
        return Ok(PublishReport::default());
    };
    let channel = broker::confirm_channel(&connection)
        .await
        .context("opening a confirm channel")?;
    if let Err(error) = topology::declare(&channel, &settings.broker).await {
        let hint = error.hint().unwrap_or_default();
        return Err(anyhow::Error::new(error).context(format!("declaring the topology. {hint}")));
    }
    health.set("broker", true);

    let publisher = Publisher {
        channel: channel.clone(),
        exchange: lapin::types::ShortString::from(settings.broker.exchange.as_str()),
        max_unconfirmed: source.max_unconfirmed,
    };
    let mut batcher = Batcher::new(
        source.batch_records,
        source.batch_linger_ms,
        traffic.content_type(),
    );
    let mut unconfirmed = FuturesUnordered::new();
    let mut report = PublishReport::default();
    let mut generated = 0u64;
    let started = Instant::now();
    let mut last_progress = started;

    while let Some(due) = traffic.next_due(generated) {
        // Publishes only travel while their futures are polled, so waiting for the pacer
        // must keep driving them: otherwise a paced message would sit unsent until
        // max_unconfirmed more had queued up behind it. A batch whose linger ends while
        // waiting goes out on time.
        loop {
            let now = started.elapsed();
            if batcher
                .next_deadline()
                .is_some_and(|deadline| deadline <= now)
            {
                for message in batcher.take_due(now) {
                    send(&publisher, message, &mut unconfirmed, &mut report).await?;
                }
            }
            let Some(wait) = pacer::wait_until_due(due, now) else {
                break;
            };
            let linger = batcher
                .next_deadline()
                .map(|deadline| deadline.saturating_sub(now));
            let wake = tokio::time::Instant::now() + linger.map_or(wait, |linger| linger.min(wait));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(wake) => {}
                Some(confirmation) = unconfirmed.next(), if !unconfirmed.is_empty() => {
                    record_confirmation(confirmation, &mut report)?;
                }
            }
        }
        if shutdown.is_cancelled() {
            break;
        }
        let Some(log) = traffic.next_log(Utc::now()) else {
            break;
        };
        generated += 1;
        for message in batcher.push(log, started.elapsed()) {
            send(&publisher, message, &mut unconfirmed, &mut report).await?;
        }
        if last_progress.elapsed() >= Duration::from_secs(5) {
            last_progress = Instant::now();
            info!(
                published = report.published,
                confirmed = report.confirmed,
                "progress"
            );
        }
    }
    for message in batcher.take_all() {
        send(&publisher, message, &mut unconfirmed, &mut report).await?;
    }
    while let Some(confirmation) = unconfirmed.next().await {
        record_confirmation(confirmation, &mut report)?;
    }
    report.elapsed = started.elapsed();
    let _ = channel.close(200, "simulator done".into()).await;
    let _ = connection.close(200, "simulator done".into()).await;
    health.set("broker", false);
    info!(%report, "simulator finished");
    Ok(report)
}

type Confirmed = (Result<Confirmation, broker::BrokerError>, u64);

/// Where the publish loop sends its messages.
struct Publisher {
    channel: lapin::Channel,
    exchange: lapin::types::ShortString,
    max_unconfirmed: usize,
}

/// Publishes one message, first waiting while `max_unconfirmed` await their confirm; then
/// polls once so the publish starts now, collecting the confirms already in.
async fn send(
    publisher: &Publisher,
    message: Outgoing,
    unconfirmed: &mut FuturesUnordered<BoxFuture<'static, Confirmed>>,
    report: &mut PublishReport,
) -> anyhow::Result<()> {
    while unconfirmed.len() >= publisher.max_unconfirmed {
        if let Some(confirmation) = unconfirmed.next().await {
            record_confirmation(confirmation, report)?;
        }
    }
    let properties = broker::log_properties(message.content_type, &message.message_id);
    let records = message.records;
    unconfirmed.push(
        broker::publish_owned(
            publisher.channel.clone(),
            publisher.exchange.clone(),
            message.routing_key,
            message.body,
            properties,
        )
        .map(move |confirmation| (confirmation, records))
        .boxed(),
    );
    report.published += records;
    report.messages += 1;
    metrics::counter!(PUBLISHED).increment(records);
    while let Some(Some(confirmation)) = unconfirmed.next().now_or_never() {
        record_confirmation(confirmation, report)?;
    }
    Ok(())
}

fn record_confirmation(
    (confirmation, records): Confirmed,
    report: &mut PublishReport,
) -> anyhow::Result<()> {
    let confirmation = confirmation.context("publishing")?;
    if !broker::is_queued(&confirmation) {
        report.nacked += records;
        metrics::counter!(NACKED).increment(records);
        warn!(?confirmation, records, "broker did not queue a message");
    } else {
        report.confirmed += records;
        metrics::counter!(CONFIRMED).increment(records);
    }
    Ok(())
}
