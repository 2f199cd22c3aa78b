//! Writing one batch: dead-letter what cannot be stored, bulk-insert the rest, retry until
//! MongoDB acknowledges. Only then may the batch's deliveries be acked.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lapin::Channel;
use logagg::backoff::Backoff;
use logagg::broker::BrokerError;
use logagg::settings::Settings;
use logagg::shutdown;
use logagg::store::stats::Rollup;
use logagg::store::{Database, InsertOutcome};
use logagg::telemetry::Health;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::batch::{decode, identical_bodies, PendingMessage, Source};
use crate::dead_letter::{dead_letter, Rejection};
use crate::metrics;

/// Everything a batch write needs; shared by all in-flight writes.
pub struct Writer {
    pub store: Database,
    pub dead_letter_channel: Channel,
    pub settings: Arc<Settings>,
    pub health: Health,
    pub shutdown: CancellationToken,
    /// Keeps the identical-bodies warning to one a minute.
    pub identical_bodies_warning: Mutex<OncePer>,
}

/// Lets an event through at most once per period: a warning that every message of a busy
/// publisher would repeat.
#[derive(Debug)]
pub struct OncePer {
    period: Duration,
    last: Option<tokio::time::Instant>,
}

impl OncePer {
    pub fn new(period: Duration) -> OncePer {
        OncePer { period, last: None }
    }

    /// Whether the event may pass at `now` (and if so, the period starts again).
    pub fn ready(&mut self, now: tokio::time::Instant) -> bool {
        let due = self
            .last
            .is_none_or(|last| now.duration_since(last) >= self.period);
        if due {
            self.last = Some(now);
        }
        due
    }
}

/// How often at most the identical-bodies warning is logged.
pub const IDENTICAL_BODIES_WARNING_PERIOD: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Shutdown came while MongoDB was failing: the batch goes back to the queue unacked.
    #[error("shutdown while the write was being retried")]
    Interrupted,
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

impl Writer {
    /// Writes a batch and returns its last delivery tag. On `Ok`, every message is either
    /// stored (new or duplicate) or confirmed in the dead-letter queue, so all may be acked.
    pub async fn write(&self, messages: Vec<PendingMessage>) -> Result<u64, WriteError> {
        let last_tag = messages.last().map_or(0, |message| message.delivery_tag);
        metrics::histogram!(metrics::BATCH_SIZE).record(messages.len() as f64);
        let decoded = decode(&messages);
        // Dead letters go out together, their confirms awaited together: one at a time, a
        // flood of poison cost a broker round trip each while the good logs behind it waited.
        let unparsed = decoded.rejected.iter().map(|(source, error)| {
            let rejection = Rejection {
                code: error.code(),
                reason: error.to_string(),
            };
            self.reject(&messages, source, rejection)
        });
        futures::future::try_join_all(unparsed).await?;
        let outcome = self.insert_with_retry(&decoded.records).await?;
        let refused = outcome.rejected.iter().map(|(record_index, reason)| {
            let rejection = Rejection {
                code: "store_refused",
                reason: reason.clone(),
            };
            self.reject(&messages, &decoded.record_sources[*record_index], rejection)
        });
        futures::future::try_join_all(refused).await?;
        self.record_stats(&decoded.records, &outcome).await;
        self.count_identical_bodies(&messages, &decoded.record_sources, &outcome);
        let dead_lettered = decoded.rejected.len() + outcome.rejected.len();
        metrics::counter!(metrics::STORED).increment(outcome.inserted as u64);
        metrics::counter!(metrics::DUPLICATES).increment(outcome.duplicates as u64);
        debug!(
            last_tag,
            stored = outcome.inserted,
            duplicates = outcome.duplicates,
            dead_lettered,
            "batch written"
        );
        Ok(last_tag)
    }

    /// Adds the newly stored records to the stats rollups. Best effort: a failure is logged
    /// and counted, never holds the batch back (its logs are stored).
    async fn record_stats(&self, records: &[logagg::LogRecord], outcome: &InsertOutcome) {
        let mut rollup = Rollup::default();
        for index in outcome.newly_stored(records.len()) {
            rollup.add_record(&records[index]);
        }
        if let Err(error) = self.store.record_stats(&rollup).await {
            metrics::counter!(metrics::STATS_FAILURES).increment(1);
            warn!(%error, "stats rollup update failed; these logs are stored but not in stats");
        }
    }

    /// Counts the new messages without a message-id that were stored already (identical
    /// bodies: one record), and warns about them at most once a minute.
    fn count_identical_bodies(
        &self,
        messages: &[PendingMessage],
        sources: &[Source],
        outcome: &InsertOutcome,
    ) {
        let identical = identical_bodies(messages, sources, &outcome.duplicate_indexes);
        let Some(first) = identical.first() else {
            return;
        };
        metrics::counter!(metrics::IDENTICAL_BODIES).increment(identical.len() as u64);
        let warn_now = self
            .identical_bodies_warning
            .lock()
            .is_ok_and(|mut limiter| limiter.ready(tokio::time::Instant::now()));
        if warn_now {
            warn!(
                routing_key = %messages[*first].routing_key,
                messages = identical.len(),
                "messages without a message-id repeated a stored body and were stored as one \
                 record; give each message an AMQP message-id, or milliseconds in its line \
                 (logged at most once a minute)"
            );
        }
    }

    /// Dead-letters a whole message, or one line of a batch message.
    async fn reject(
        &self,
        messages: &[PendingMessage],
        source: &Source,
        rejection: Rejection,
    ) -> Result<(), BrokerError> {
        let broker_settings = &self.settings.broker;
        let message = &messages[source.message];
        warn!(
            delivery_tag = message.delivery_tag,
            routing_key = %message.routing_key,
            line = ?source.line,
            code = rejection.code,
            reason = %rejection.reason,
            "dead-lettering message"
        );
        dead_letter(
            &self.dead_letter_channel,
            &broker_settings.dead_letter_exchange,
            &broker_settings.storage_queue,
            message,
            source.line.as_ref(),
            &rejection,
        )
        .await?;
        metrics::counter!(metrics::DEAD_LETTERED, "reason" => rejection.code).increment(1);
        Ok(())
    }

    /// Inserts until MongoDB acknowledges, backing off between failures. Gives up only when
    /// shutdown is requested, after at least one attempt.
    async fn insert_with_retry(
        &self,
        records: &[logagg::LogRecord],
    ) -> Result<InsertOutcome, WriteError> {
        let collector = &self.settings.collector;
        let mut backoff = Backoff::new(collector.retry_initial_ms, collector.retry_max_ms);
        loop {
            let started = Instant::now();
            let result = self.store.insert_records(records).await;
            metrics::histogram!(metrics::WRITE_LATENCY).record(started.elapsed().as_secs_f64());
            match result {
                Ok(outcome) => {
                    self.health.set("store", true);
                    return Ok(outcome);
                }
                Err(error) => {
                    self.health.set("store", false);
                    metrics::counter!(metrics::WRITE_FAILURES).increment(1);
                    if self.shutdown.is_cancelled() {
                        return Err(WriteError::Interrupted);
                    }
                    let delay = backoff.next_delay();
                    warn!(
                        %error,
                        records = records.len(),
                        retry_in_ms = delay.as_millis() as u64,
                        "write failed; keeping the batch unacked and retrying"
                    );
                    if !shutdown::sleep_unless_cancelled(delay, &self.shutdown).await {
                        return Err(WriteError::Interrupted);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_per_lets_one_event_through_per_period() {
        let start = tokio::time::Instant::now();
        let mut limiter = OncePer::new(Duration::from_secs(60));
        assert!(limiter.ready(start));
        assert!(!limiter.ready(start + Duration::from_secs(1)));
        assert!(!limiter.ready(start + Duration::from_secs(59)));
        assert!(limiter.ready(start + Duration::from_secs(60)));
        assert!(!limiter.ready(start + Duration::from_secs(119)));
    }
}
