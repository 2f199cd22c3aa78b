//! `[collector]`: consuming the storage queue, batching and writing.

use serde::{Deserialize, Serialize};

use super::{invalid, SettingsError};

/// collector_service: consuming, batching and writing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CollectorSettings {
    /// Unacknowledged deliveries the broker may send this collector (`basic.qos`). Counts
    /// messages, not logs: with batch messages of N logs, about 4000 / N keeps memory bounded.
    pub prefetch: u16,
    /// Records per bulk insert.
    pub batch_size: usize,
    /// Milliseconds a partial batch may wait for more records before it is written.
    #[serde(with = "super::millis")]
    pub batch_max_age_ms: std::time::Duration,
    /// Batches being written at once; acks stay in delivery order.
    pub max_in_flight_batches: usize,
    /// First wait before retrying a failed write, milliseconds; doubles each try.
    #[serde(with = "super::millis")]
    pub retry_initial_ms: std::time::Duration,
    /// Longest wait between write retries, milliseconds.
    #[serde(with = "super::millis")]
    pub retry_max_ms: std::time::Duration,
    /// Seconds a shutdown waits for in-flight batches before returning them to the queue.
    #[serde(with = "super::seconds")]
    pub shutdown_grace_seconds: std::time::Duration,
    /// Seconds without a delivery, holding nothing, after which the collector consumes on a
    /// new channel: it returns messages a broker fault left checked out to the old one
    /// (docs/collector.md). 0 never does.
    #[serde(with = "super::seconds")]
    pub idle_resubscribe_seconds: std::time::Duration,
}

impl Default for CollectorSettings {
    fn default() -> Self {
        Self {
            prefetch: 4_000,
            batch_size: 1_000,
            batch_max_age_ms: std::time::Duration::from_millis(200),
            max_in_flight_batches: 2,
            retry_initial_ms: std::time::Duration::from_millis(100),
            retry_max_ms: std::time::Duration::from_millis(5_000),
            shutdown_grace_seconds: std::time::Duration::from_secs(10),
            idle_resubscribe_seconds: std::time::Duration::from_secs(30),
        }
    }
}

impl CollectorSettings {
    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        if self.batch_size == 0 || self.max_in_flight_batches == 0 {
            return invalid(
                "collector.batch_size",
                "batch_size and max_in_flight_batches must be at least 1",
            );
        }
        if self.prefetch == 0 {
            return invalid("collector.prefetch", "must be at least 1");
        }
        Ok(())
    }
}
