//! `[syslog]`: the gateway's syslog listeners, for rsyslog, syslog-ng and `logger`: TCP
//! (RFC 6587 octet counting or LF framing, chosen per frame) and UDP, RFC 5424 and 3164.

use serde::{Deserialize, Serialize};

use super::{invalid, SettingsError};

/// The syslog listeners of source_service's gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyslogSettings {
    /// Whether the gateway listens for syslog at all.
    pub enabled: bool,
    /// TCP address: frames by octet count (`<len> <msg>`) or ended by LF.
    pub listen_tcp: std::net::SocketAddr,
    /// UDP address: one message per datagram. UDP loses what the network drops, unseen,
    /// and what a full socket buffer drops, counted (`logagg_udp_dropped_total`).
    pub listen_udp: std::net::SocketAddr,
    /// TCP connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Largest frame, bytes; a longer one is dead-lettered (its first bytes) with the
    /// reason, and a connection whose octet count is larger is closed.
    pub max_frame_bytes: usize,
    /// Service of a message that names no app (an RFC 3164 line without a tag).
    pub default_service: String,
    /// Messages published and awaiting the broker's confirms per connection (and for
    /// UDP) before reading stops: the back-pressure on senders.
    pub max_unconfirmed: usize,
}

impl Default for SyslogSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            listen_tcp: std::net::SocketAddr::from(([0, 0, 0, 0], 5514)),
            listen_udp: std::net::SocketAddr::from(([0, 0, 0, 0], 5514)),
            max_connections: 1_000,
            max_frame_bytes: 64 * 1024,
            default_service: "syslog".to_owned(),
            max_unconfirmed: 1_000,
        }
    }
}

impl SyslogSettings {
    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        if self.max_connections == 0 || self.max_frame_bytes < 64 || self.max_unconfirmed == 0 {
            return invalid(
                "syslog",
                "max_connections and max_unconfirmed must be at least 1, max_frame_bytes at least 64",
            );
        }
        crate::parse::validate_service(&self.default_service)
            .or_else(|error| invalid("syslog.default_service", error.to_string()))
    }
}
