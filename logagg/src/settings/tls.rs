//! `[tls]`: HTTPS for the HTTP listeners (search and the dashboard, the ingest gateway,
//! analyzer registration). The admin listener stays plain HTTP on loopback.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{invalid, SettingsError};

/// A certificate and its key; with both set, the HTTP listeners serve HTTPS only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM file: the server's certificate chain, leaf first. Unset: plain HTTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// PEM file: the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

impl TlsSettings {
    /// The certificate and key files when HTTPS is on.
    pub fn files(&self) -> Option<(&PathBuf, &PathBuf)> {
        self.cert_file.as_ref().zip(self.key_file.as_ref())
    }

    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return invalid(
                "tls",
                "set both cert_file and key_file (HTTPS), or neither (plain HTTP)",
            );
        }
        for (setting, file) in [
            ("tls.cert_file", &self.cert_file),
            ("tls.key_file", &self.key_file),
        ] {
            if let Some(path) = file {
                if let Err(error) = std::fs::metadata(path) {
                    return invalid(setting, format!("{}: {error}", path.display()));
                }
            }
        }
        Ok(())
    }
}
