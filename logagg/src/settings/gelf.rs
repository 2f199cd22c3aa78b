//! `[gelf]`: the gateway's GELF listeners, for Graylog's libraries and shippers (graypy,
//! logstash-gelf, Docker's `gelf` log driver): UDP (zlib, gzip or plain, chunked) and TCP
//! (NUL-framed) on port 12201; `POST /gelf` is on the gateway's own address.

use serde::{Deserialize, Serialize};

use super::{invalid, SettingsError};

/// The GELF listeners of source_service's gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GelfSettings {
    /// Whether the gateway listens for GELF on UDP and TCP (`POST /gelf` is always served).
    pub enabled: bool,
    /// UDP address: a datagram is a message, or a chunk of one. UDP loses what the
    /// network drops, unseen, and what a full socket buffer drops, counted
    /// (`logagg_udp_dropped_total`).
    pub listen_udp: std::net::SocketAddr,
    /// TCP address: messages end with a NUL byte.
    pub listen_tcp: std::net::SocketAddr,
    /// TCP connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Largest message, bytes, once inflated and its chunks joined; a larger one is
    /// dead-lettered (its first bytes) with the reason.
    pub max_message_bytes: usize,
    /// Messages published and awaiting the broker's confirms per connection (and for
    /// UDP) before reading stops: the back-pressure on senders.
    pub max_unconfirmed: usize,
    /// How long the chunks of a message wait for the rest; then the message is dropped
    /// and counted (`logagg_gelf_incomplete_dropped_total`).
    #[serde(with = "super::millis")]
    pub chunk_timeout_ms: std::time::Duration,
    /// Chunked messages waiting for their other chunks at most; beyond, the oldest is
    /// dropped and counted.
    pub max_pending_messages: usize,
}

impl Default for GelfSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            listen_udp: std::net::SocketAddr::from(([0, 0, 0, 0], 12201)),
            listen_tcp: std::net::SocketAddr::from(([0, 0, 0, 0], 12201)),
            max_connections: 1_000,
            max_message_bytes: 1024 * 1024,
            max_unconfirmed: 1_000,
            chunk_timeout_ms: std::time::Duration::from_millis(5_000),
            max_pending_messages: 1_000,
        }
    }
}

impl GelfSettings {
    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        if self.max_connections == 0
            || self.max_unconfirmed == 0
            || self.max_pending_messages == 0
            || self.max_message_bytes < 1024
        {
            return invalid(
                "gelf",
                "max_connections, max_unconfirmed and max_pending_messages must be at least 1, max_message_bytes at least 1024",
            );
        }
        if self.chunk_timeout_ms.is_zero() {
            return invalid("gelf.chunk_timeout_ms", "must be at least 1 ms");
        }
        Ok(())
    }
}
