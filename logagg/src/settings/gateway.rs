//! `[gateway]`: source_service's HTTP ingest gateway.

use serde::{Deserialize, Serialize};

use super::{invalid, validate_api_keys, SettingsError};

/// source_service's HTTP ingest gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewaySettings {
    /// Address the ingest gateway listens on.
    pub listen: std::net::SocketAddr,
    /// Largest request body, bytes, after gzip decompression; larger gets 413.
    pub max_body_bytes: usize,
    /// Most records (or lines) in one request; more gets 413.
    pub max_records: usize,
    /// Records per second each key (or client address, without keys) may send, sustained.
    pub rate_per_second: u64,
    /// Records a key may send at once above the sustained rate.
    pub burst: u64,
    /// Deprecated: use `[[auth.keys]]`. Keys in clear that write every service, for the
    /// gateway only; a warning at start says so. From the environment: comma-separated.
    pub api_keys: Vec<String>,
    /// Records published and not yet confirmed, across all requests, at most; a request
    /// that would go beyond gets 503 with Retry-After instead of waiting in memory.
    pub max_unconfirmed: usize,
    /// How long a request waits for the broker's confirms before answering 503.
    #[serde(with = "super::millis")]
    pub confirm_timeout_ms: std::time::Duration,
    /// How long a client may take to send its body.
    #[serde(with = "super::millis")]
    pub body_timeout_ms: std::time::Duration,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            listen: std::net::SocketAddr::from(([0, 0, 0, 0], 8080)),
            max_body_bytes: 10 * 1024 * 1024,
            max_records: 10_000,
            rate_per_second: 20_000,
            burst: 40_000,
            api_keys: Vec::new(),
            max_unconfirmed: 50_000,
            confirm_timeout_ms: std::time::Duration::from_millis(5_000),
            body_timeout_ms: std::time::Duration::from_millis(30_000),
        }
    }
}

impl GatewaySettings {
    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        if self.max_body_bytes == 0 || self.max_records == 0 || self.max_unconfirmed == 0 {
            return invalid(
                "gateway",
                "max_body_bytes, max_records and max_unconfirmed must be at least 1",
            );
        }
        if self.rate_per_second == 0
            || self.burst < self.rate_per_second.min(self.max_records as u64)
        {
            return invalid(
                "gateway.burst",
                "rate_per_second must be at least 1 and burst must fit one full request",
            );
        }
        if self.confirm_timeout_ms.is_zero() || self.body_timeout_ms.is_zero() {
            return invalid("gateway", "timeouts must be at least 1 ms");
        }
        validate_api_keys("gateway.api_keys", &self.api_keys)
    }
}
