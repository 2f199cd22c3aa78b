//! `[auth]`: the API keys of every HTTP surface (search and the dashboard, the ingest
//! gateway, analyzer registration, the admin routes), each with its scopes and services.

use serde::{Deserialize, Serialize};

use super::{invalid, SettingsError};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Search, stats, services, alerts, the live tail, the dashboard: its services' logs.
    Read,
    /// The ingest gateway: records of its services.
    Ingest,
    /// State-changing admin routes (the purge) and analyzer registration.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Ingest => "ingest",
            Scope::Admin => "admin",
        }
    }
}

/// One key, by the hex SHA-256 of its secret: settings hold no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySetting {
    /// Shown in logs and metrics, never the key.
    pub name: String,
    /// Hex SHA-256 of the key (`printf %s "$KEY" | sha256sum`).
    pub sha256: String,
    /// Any of `read`, `ingest`, `admin`.
    pub scopes: Vec<Scope>,
    /// Glob patterns (`*`, `?`) over service names; absent means every service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<String>>,
}

/// API keys; with none (and none in the deprecated per-service lists) every HTTP surface is
/// open, with any, every surface wants a key holding its scope.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// `[[auth.keys]]` tables: `name`, `sha256`, `scopes`, `services`.
    pub keys: Vec<KeySetting>,
}

impl AuthSettings {
    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        for (index, key) in self.keys.iter().enumerate() {
            if key.name.trim().is_empty()
                || self.keys[..index]
                    .iter()
                    .any(|other| other.name == key.name)
            {
                return invalid(
                    "auth.keys.name",
                    format!("key {index}: each key needs a name of its own"),
                );
            }
            if key.sha256.len() != 64 || !key.sha256.bytes().all(|byte| byte.is_ascii_hexdigit()) {
                return invalid(
                    "auth.keys.sha256",
                    format!(
                        "key `{}`: must be the 64 hex digits of the key's SHA-256",
                        key.name
                    ),
                );
            }
            if key.scopes.is_empty() {
                return invalid(
                    "auth.keys.scopes",
                    format!(
                        "key `{}`: give at least one of read, ingest, admin",
                        key.name
                    ),
                );
            }
            for pattern in key.services.iter().flatten() {
                let valid = !pattern.is_empty()
                    && pattern.chars().all(|character| {
                        character.is_ascii_alphanumeric() || "-_.*?".contains(character)
                    });
                if !valid {
                    return invalid(
                        "auth.keys.services",
                        format!(
                            "key `{}`: `{pattern}` is not a service name pattern (letters, digits, `-_.` and the wildcards `*` `?`)",
                            key.name
                        ),
                    );
                }
            }
        }
        Ok(())
    }
}
