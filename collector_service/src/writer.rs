//! Writing one batch: dead-letter what cannot be stored, bulk-insert the rest, retry until
//! MongoDB acknowledges. Only then may the batch's deliveries be acked.

use std::sync::Arc;
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

use crate::batch::{decode, PendingMessage, Source};
use crate::dead_letter::{dead_letter, Rejection};
use crate::metrics;

/// Everything a batch write needs; shared by all in-flight writes.
pub struct Writer {
    pub store: Database,
    pub dead_letter_channel: Channel,
    pub settings: Arc<Settings>,
    pub health: Health,
    pub shutdown: CancellationToken,
}

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
        for (source, error) in &decoded.rejected {
            let rejection = Rejection {
                code: error.code(),
                reason: error.to_string(),
            };
            self.reject(&messages, source, &rejection).await?;
        }
        let outcome = self.insert_with_retry(&decoded.records).await?;
        for (record_index, reason) in &outcome.rejected {
            let rejection = Rejection {
                code: "store_refused",
                reason: reason.clone(),
            };
            self.reject(
                &messages,
                &decoded.record_sources[*record_index],
                &rejection,
            )
            .await?;
        }
        self.record_stats(&decoded.records, &outcome).await;
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

    /// Dead-letters a whole message, or one line of a batch message.
    async fn reject(
        &self,
        messages: &[PendingMessage],
        source: &Source,
        rejection: &Rejection,
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
            rejection,
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
        let mut backoff = Backoff::new(
            Duration::from_millis(collector.retry_initial_ms),
            Duration::from_millis(collector.retry_max_ms),
        );
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
