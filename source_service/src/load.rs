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
use futures::FutureExt;
use logagg::broker;
use logagg::publisher::{self, GiveUp, PublishError, Resender, Settled};
use logagg::runtime::{Declare, LazyChannel};
use logagg::settings::Settings;
use logagg::telemetry::{self, Health};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::batcher::{Batcher, Outgoing};
use self::pacer::Pacer;
use self::simulator::Generator;
use crate::SERVICE_NAME;

const PUBLISHED: &str = "logagg_source_published_total";
const CONFIRMED: &str = "logagg_source_confirmed_total";
const UNROUTABLE: &str = "logagg_source_unroutable_total";

/// What a simulator run did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PublishReport {
    /// Logs published, confirmed, and returned because no queue took them; `messages`
    /// carried them (fewer when batched).
    pub published: u64,
    pub confirmed: u64,
    pub unroutable: u64,
    /// Messages sent again after their confirm failed (node lost, nack): stored once.
    pub resent: u64,
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
            "published {} confirmed {} unroutable {} in {:.2}s: {:.0} logs/s in {} messages ({} re-sent)",
            self.published,
            self.confirmed,
            self.unroutable,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.messages,
            self.resent
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
/// awaiting the broker's confirm; waits for every confirm before returning. A message whose
/// confirm fails (its node lost, a nack) is sent again, on another node if need be.
pub async fn publish(
    settings: &Settings,
    traffic: &mut impl Traffic,
    health: &Health,
    shutdown: &CancellationToken,
) -> anyhow::Result<PublishReport> {
    let source = &settings.source;
    let link = LazyChannel::new(settings.broker.clone(), SERVICE_NAME, Declare::LogTopology);
    let give_up = GiveUp {
        deadline: None,
        shutdown: Some(shutdown.clone()),
    };
    let mut publisher = Publisher {
        resender: Resender::new(&link, give_up),
        exchange: lapin::types::ShortString::from(settings.broker.exchange.as_str()),
        max_unconfirmed: source.max_unconfirmed,
    };
    match publisher.resender.connect().await {
        Ok(()) => health.set("broker", true),
        Err(PublishError::Unreachable { .. } | PublishError::GaveUp { .. }) => {
            return Ok(PublishReport::default())
        }
        Err(PublishError::Broker(error)) => {
            let hint = error.hint().unwrap_or_default();
            return Err(anyhow::Error::new(error).context(format!("opening the broker. {hint}")));
        }
    }
    let mut batcher = Batcher::new(
        source.batch_records,
        source.batch_linger_ms,
        traffic.content_type(),
    );
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
                    publisher.send(message, &mut report).await?;
                }
            }
            let Some(wait) = pacer::wait_until_due(due, now) else {
                break;
            };
            let linger = batcher
                .next_deadline()
                .map(|deadline| deadline.saturating_sub(now));
            let wake = tokio::time::Instant::now() + linger.map_or(wait, |linger| linger.min(wait));
            let unsettled = publisher.resender.unsettled() > 0;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(wake) => {}
                Some(settled) = publisher.resender.next(), if unsettled => {
                    record_settled(settled, &mut report)?;
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
            publisher.send(message, &mut report).await?;
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
        publisher.send(message, &mut report).await?;
    }
    while let Some(settled) = publisher.resender.next().await {
        record_settled(settled, &mut report)?;
    }
    report.elapsed = started.elapsed();
    report.resent = publisher.resender.resent();
    link.reset().await;
    health.set("broker", false);
    info!(%report, "simulator finished");
    Ok(report)
}

/// Where the publish loop sends its messages, each tagged with the logs it carries.
struct Publisher<'a> {
    resender: Resender<'a, u64>,
    exchange: lapin::types::ShortString,
    max_unconfirmed: usize,
}

impl Publisher<'_> {
    /// Publishes one message, first waiting while `max_unconfirmed` await their confirm;
    /// then polls once so the publish starts now, collecting the confirms already in.
    async fn send(&mut self, message: Outgoing, report: &mut PublishReport) -> anyhow::Result<()> {
        while self.resender.unsettled() >= self.max_unconfirmed {
            if let Some(settled) = self.resender.next().await {
                record_settled(settled, report)?;
            }
        }
        let records = message.records;
        let outgoing = publisher::Outgoing {
            exchange: self.exchange.clone(),
            routing_key: message.routing_key.into(),
            properties: broker::log_properties(message.content_type, &message.message_id),
            body: message.body,
        };
        self.resender.send(outgoing, records).await?;
        report.published += records;
        report.messages += 1;
        metrics::counter!(PUBLISHED).increment(records);
        while let Some(Some(settled)) = self.resender.next().now_or_never() {
            record_settled(settled, report)?;
        }
        Ok(())
    }
}

fn record_settled(
    settled: Result<(Settled, u64), PublishError>,
    report: &mut PublishReport,
) -> anyhow::Result<()> {
    let (settled, records) = settled.context("publishing")?;
    match settled {
        Settled::Queued => {
            report.confirmed += records;
            metrics::counter!(CONFIRMED).increment(records);
        }
        Settled::Unroutable => {
            report.unroutable += records;
            metrics::counter!(UNROUTABLE).increment(records);
            warn!(records, "no queue took a message (unroutable)");
        }
    }
    Ok(())
}
