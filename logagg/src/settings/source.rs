//! `[source]`: the simulator's traffic and publishing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{invalid, SettingsError};
use crate::record::Severity;

/// The body of a simulated message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageFormat {
    /// One JSON record, `content-type: application/json`.
    Json,
    /// `<timestamp> <service> <severity> <message>`, as the Python services publish it.
    Plain,
}

impl MessageFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageFormat::Json => "json",
            MessageFormat::Plain => "plain",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            MessageFormat::Json => crate::broker::CONTENT_TYPE_JSON,
            MessageFormat::Plain => crate::broker::CONTENT_TYPE_TEXT,
        }
    }
}

impl std::fmt::Display for MessageFormat {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl std::str::FromStr for MessageFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "json" => Ok(MessageFormat::Json),
            "plain" => Ok(MessageFormat::Plain),
            other => Err(format!("`{other}` is not a format: json or plain")),
        }
    }
}

/// What the simulator's messages look like.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrafficProfile {
    /// Words drawn from a 16-word vocabulary, `message_min_bytes` to `message_max_bytes`
    /// long: cheap to generate, but every word is common.
    #[default]
    Simple,
    /// Lines in the style of real systems (HDFS, sshd, HTTP access, JVM stack traces,
    /// Kubernetes events, logfmt): a few hundred templates per service with ids, addresses,
    /// numbers and paths, a long tail of rare templates, new ones appearing over time,
    /// 40 B to 8 KiB (docs/PERFORMANCE.md gives its distribution).
    Realistic,
}

impl TrafficProfile {
    pub fn as_str(self) -> &'static str {
        match self {
            TrafficProfile::Simple => "simple",
            TrafficProfile::Realistic => "realistic",
        }
    }
}

impl std::fmt::Display for TrafficProfile {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl std::str::FromStr for TrafficProfile {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "simple" => Ok(TrafficProfile::Simple),
            "realistic" => Ok(TrafficProfile::Realistic),
            other => Err(format!("`{other}` is not a profile: simple or realistic")),
        }
    }
}

/// source_service simulator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourceSettings {
    /// Messages per second; 0 publishes as fast as publisher confirms allow.
    pub rate: u64,
    /// Messages to publish; 0 runs until stopped.
    pub count: u64,
    /// Body format: `json` or `plain` (the Python services' line).
    pub format: MessageFormat,
    /// What the messages look like: `simple` or `realistic`.
    pub profile: TrafficProfile,
    /// Services the simulated logs come from.
    pub services: Vec<String>,
    /// Relative weight of each severity.
    pub severity_weights: BTreeMap<String, u32>,
    /// Smallest generated message, bytes (the simple profile).
    pub message_min_bytes: usize,
    /// Largest generated message, bytes (the simple profile).
    pub message_max_bytes: usize,
    /// Published messages awaiting a broker confirm at most.
    pub max_unconfirmed: usize,
    /// Logs per message: above 1, logs sharing a routing key go out together as one
    /// `application/x-ndjson` batch message (JSON format only).
    pub batch_records: usize,
    /// Longest a log waits for its batch to fill, milliseconds.
    #[serde(with = "super::millis")]
    pub batch_linger_ms: std::time::Duration,
}

impl Default for SourceSettings {
    fn default() -> Self {
        Self {
            rate: 100,
            count: 0,
            format: MessageFormat::Json,
            profile: TrafficProfile::Simple,
            services: ["checkout", "payments", "auth", "search", "inventory"]
                .map(String::from)
                .to_vec(),
            severity_weights: [
                ("debug", 10),
                ("info", 70),
                ("warn", 12),
                ("error", 7),
                ("fatal", 1),
            ]
            .into_iter()
            .map(|(severity, weight)| (severity.to_owned(), weight))
            .collect(),
            message_min_bytes: 40,
            message_max_bytes: 200,
            max_unconfirmed: 2_000,
            batch_records: 1,
            batch_linger_ms: std::time::Duration::from_millis(50),
        }
    }
}

impl SourceSettings {
    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        if self.services.is_empty() {
            return invalid("source.services", "must name at least one service");
        }
        for service in &self.services {
            if let Err(error) = crate::parse::validate_service(service) {
                return invalid("source.services", error.to_string());
            }
        }
        if self.severity_weights.values().all(|weight| *weight == 0) {
            return invalid(
                "source.severity_weights",
                "at least one weight must be positive",
            );
        }
        if let Some(severity) = self
            .severity_weights
            .keys()
            .find(|severity| severity.parse::<Severity>().is_err())
        {
            return invalid(
                "source.severity_weights",
                format!("unknown severity `{severity}`"),
            );
        }
        if self.message_min_bytes > self.message_max_bytes
            || self.message_max_bytes > crate::parse::MAX_BODY_BYTES / 2
        {
            return invalid(
                "source.message_max_bytes",
                "must be at least message_min_bytes and at most 512 KiB",
            );
        }
        if self.max_unconfirmed == 0 {
            return invalid("source.max_unconfirmed", "must be at least 1");
        }
        if !(1..=crate::parse::MAX_BATCH_RECORDS).contains(&self.batch_records) {
            return invalid("source.batch_records", "must be from 1 to 10000");
        }
        if self.batch_records > 1 && self.format != MessageFormat::Json {
            return invalid(
                "source.batch_records",
                "batches carry JSON records: set source.format = json",
            );
        }
        Ok(())
    }
}
