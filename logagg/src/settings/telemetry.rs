//! `[telemetry]`: logging and the admin server (`/healthz`, `/metrics`).

use serde::{Deserialize, Serialize};

use super::SettingsError;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// For people.
    Text,
    /// One JSON object a line, for log shippers.
    Json,
}

/// Logging and the admin HTTP port (`/healthz`, `/metrics`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    /// `text` for people, `json` for log shippers.
    pub log_format: LogFormat,
    /// A tracing filter: `info`, `logagg=debug,lapin=warn`, …
    pub log_level: String,
    /// Address of the admin server (`/healthz`, `/metrics`, and a service's admin routes,
    /// which want an `admin` key when keys are configured): loopback by default, so only
    /// this host reaches it; compose sets `0.0.0.0:9100` inside its network and publishes
    /// no admin port. Port 0 picks a free one.
    pub admin_listen: std::net::SocketAddr,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Text,
            log_level: "info,lapin=warn,mongodb=warn".into(),
            admin_listen: std::net::SocketAddr::from(([127, 0, 0, 1], 9100)),
        }
    }
}

impl TelemetrySettings {
    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        Ok(())
    }
}
