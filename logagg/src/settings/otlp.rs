//! `[otlp]`: the gateway's own OTLP/HTTP listener, so OpenTelemetry SDKs and Collectors
//! work with their default endpoint (`http://host:4318/v1/logs`). `POST /v1/logs` is on
//! the gateway's own address too.

use serde::{Deserialize, Serialize};

use super::SettingsError;

/// The OTLP/HTTP listener of source_service's gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpSettings {
    /// Whether the gateway also listens on `listen` (OTLP's own port).
    pub enabled: bool,
    /// Address of the OTLP/HTTP listener; it serves `POST /v1/logs` only, with the
    /// gateway's limits, keys and TLS.
    pub listen: std::net::SocketAddr,
}

impl Default for OtlpSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: std::net::SocketAddr::from(([0, 0, 0, 0], 4318)),
        }
    }
}

impl OtlpSettings {
    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        Ok(())
    }
}
