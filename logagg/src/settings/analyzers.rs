//! `[analyzers]`: analyzer_service, the weighted fan-out to registered analyzers.

use serde::{Deserialize, Serialize};

use super::{invalid, validate_api_keys, SettingsError};

/// What keeps logs on one analyzer, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StickyBy {
    /// Each log to the next analyzer of the weighted schedule: exact shares.
    None,
    /// All logs of a service to the same analyzer while the online set is unchanged
    /// (weighted rendezvous hashing: a change moves only the departed analyzer's services).
    Service,
}

/// analyzer_service: its queue, the registration API, leases and delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnalyzerSettings {
    /// Address the registration API listens on.
    pub listen: std::net::SocketAddr,
    /// The distributor's durable quorum queue. It is bound to the exchange only while some
    /// analyzer is registered, so with none it takes nothing.
    pub queue: String,
    /// Routing keys the queue is bound with (`#`: every log).
    pub binding_keys: Vec<String>,
    /// Most bytes the queue holds while no analyzer is online; past it the oldest logs go to
    /// the dead-letter queue (RabbitMQ's `maxlen` reason), never blocking the storage path.
    pub queue_max_bytes: u64,
    /// Unacknowledged messages the broker may send one distributor.
    pub prefetch: u16,
    /// Seconds a registration or heartbeat keeps an analyzer online.
    #[serde(with = "super::seconds")]
    pub lease_seconds: std::time::Duration,
    /// Deliveries in a row an analyzer may fail before it is offline until it registers or
    /// heartbeats again.
    pub max_failures: u32,
    /// Logs per POST to a URL analyzer, at most.
    pub batch_size: usize,
    /// Milliseconds a partial round of logs may wait before it is delivered.
    #[serde(with = "super::millis")]
    pub batch_max_age_ms: std::time::Duration,
    /// Milliseconds a URL analyzer has to answer a POST.
    #[serde(with = "super::millis")]
    pub delivery_timeout_ms: std::time::Duration,
    /// Milliseconds between reads of the registered analyzers (every replica sees a change
    /// within this).
    #[serde(with = "super::millis")]
    pub refresh_ms: std::time::Duration,
    /// Deprecated: use `[[auth.keys]]` with the `admin` scope. Keys in clear for the
    /// registration API only; a warning at start says so.
    pub api_keys: Vec<String>,
    /// `none`, or `service`: for analyzers that keep per-service state, each service's logs
    /// to one analyzer (shares then follow the weights over services, not over logs).
    pub sticky_by: StickyBy,
}

impl Default for AnalyzerSettings {
    fn default() -> Self {
        Self {
            listen: std::net::SocketAddr::from(([0, 0, 0, 0], 5100)),
            queue: "logs.analyzers".into(),
            binding_keys: vec!["#".into()],
            queue_max_bytes: 1024 * 1024 * 1024,
            prefetch: 2_000,
            lease_seconds: std::time::Duration::from_secs(30),
            max_failures: 3,
            batch_size: 500,
            batch_max_age_ms: std::time::Duration::from_millis(200),
            delivery_timeout_ms: std::time::Duration::from_millis(5_000),
            refresh_ms: std::time::Duration::from_millis(500),
            api_keys: Vec::new(),
            sticky_by: StickyBy::None,
        }
    }
}

impl AnalyzerSettings {
    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        if self.queue.is_empty() {
            return invalid("analyzers.queue", "must name a queue");
        }
        if self.binding_keys.is_empty() {
            return invalid("analyzers.binding_keys", "must hold at least one key");
        }
        if self.prefetch == 0 || self.batch_size == 0 || self.max_failures == 0 {
            return invalid(
                "analyzers.batch_size",
                "prefetch, batch_size and max_failures must be at least 1",
            );
        }
        if self.lease_seconds.is_zero() || self.refresh_ms.is_zero() {
            return invalid(
                "analyzers.lease_seconds",
                "lease_seconds and refresh_ms must be more than 0",
            );
        }
        validate_api_keys("analyzers.api_keys", &self.api_keys)
    }
}
