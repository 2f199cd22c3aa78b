//! `[search]`: search_service's REST API, live tail and dashboard.

use serde::{Deserialize, Serialize};

use super::{invalid, validate_api_keys, SettingsError};

/// search_service: the REST API over stored logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SearchSettings {
    /// Address the REST API listens on.
    pub listen: std::net::SocketAddr,
    /// Records per page when a request names no `limit`.
    pub default_limit: u32,
    /// Largest `limit` a request may ask for.
    pub max_limit: u32,
    /// Hours back from now that a request without `from` searches.
    pub default_range_hours: u32,
    /// Milliseconds MongoDB may spend on one query before it is stopped (`maxTimeMS`), and
    /// a word search may spend walking blocks in time order (docs/search.md); past it the
    /// request answers 503.
    #[serde(with = "super::millis")]
    pub query_timeout_ms: std::time::Duration,
    /// Longest `q` or `contains` parameter, characters (as the OpenAPI document's
    /// `maxLength` counts them; the key's name is older than that).
    pub max_text_bytes: usize,
    /// Deprecated: use `[[auth.keys]]`. Keys in clear that read every service
    /// (`Authorization: Bearer KEY` or `X-API-Key: KEY`), for this API only; a warning at
    /// start says so. From the environment: comma-separated.
    pub api_keys: Vec<String>,
    /// Most live-tail clients at once; more get 503.
    pub max_tail_clients: usize,
    /// Logs a tail client may fall behind by before it is told and dropped.
    pub tail_buffer: usize,
}

impl Default for SearchSettings {
    fn default() -> Self {
        Self {
            listen: std::net::SocketAddr::from(([0, 0, 0, 0], 5000)),
            default_limit: 100,
            max_limit: 1_000,
            default_range_hours: 24,
            query_timeout_ms: std::time::Duration::from_millis(5_000),
            max_text_bytes: 256,
            api_keys: Vec::new(),
            max_tail_clients: 64,
            tail_buffer: 1_000,
        }
    }
}

impl SearchSettings {
    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        if self.max_limit == 0 || self.max_limit > 10_000 {
            return invalid("search.max_limit", "must be between 1 and 10000");
        }
        if self.default_limit == 0 || self.default_limit > self.max_limit {
            return invalid("search.default_limit", "must be between 1 and max_limit");
        }
        if self.default_range_hours == 0 {
            return invalid("search.default_range_hours", "must be at least 1");
        }
        if self.query_timeout_ms.is_zero() {
            return invalid("search.query_timeout_ms", "must be at least 1");
        }
        if self.max_text_bytes == 0 {
            return invalid("search.max_text_bytes", "must be at least 1");
        }
        validate_api_keys("search.api_keys", &self.api_keys)?;
        if self.max_tail_clients == 0 {
            return invalid("search.max_tail_clients", "must be at least 1");
        }
        if self.tail_buffer == 0 || self.tail_buffer > 100_000 {
            return invalid("search.tail_buffer", "must be between 1 and 100000");
        }
        Ok(())
    }
}
