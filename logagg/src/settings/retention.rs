//! `[retention]`: when purges run, what they keep, and the archive.

use serde::{Deserialize, Serialize};

use super::{invalid, SettingsError};
use crate::record::Severity;

/// retention_service: when and what to purge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSettings {
    /// When purges run, UTC, as a cron expression with seconds:
    /// `sec min hour day-of-month month day-of-week`. Default: daily at 00:00.
    pub schedule: String,
    /// Days a log is kept when no policy matches it.
    pub default_max_age_days: i64,
    /// Policies by service and severity; the first that matches a log decides its age.
    pub policies: Vec<RetentionPolicy>,
    /// Days a resolved alert is kept. Firing alerts are never purged.
    pub alert_max_age_days: i64,
    /// Logs deleted per batch.
    pub batch_size: usize,
    /// Milliseconds to pause between batches, so ingest and search keep their share of MongoDB.
    #[serde(with = "super::millis")]
    pub batch_pause_ms: std::time::Duration,
    /// Write purged logs to compressed NDJSON files before deleting them.
    pub archive_enabled: bool,
    /// Directory of archive files: `<service>/<service>-<YYYY-MM-DD>.ndjson.gz`.
    pub archive_dir: String,
    /// Seconds a replica's purge lease lasts without renewal; renewed every batch.
    #[serde(with = "super::seconds")]
    pub lease_seconds: std::time::Duration,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            schedule: "0 0 0 * * *".into(),
            default_max_age_days: 10,
            policies: Vec::new(),
            alert_max_age_days: 90,
            batch_size: 1_000,
            batch_pause_ms: std::time::Duration::from_millis(50),
            archive_enabled: false,
            archive_dir: "archive".into(),
            lease_seconds: std::time::Duration::from_secs(300),
        }
    }
}

/// One retention policy: logs of these services and severities are kept this many days.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionPolicy {
    /// Name shown in reports and metrics.
    pub name: String,
    /// Services the policy applies to; empty means every service.
    #[serde(default)]
    pub services: Vec<String>,
    /// Severities the policy applies to (any accepted spelling); empty means every severity.
    #[serde(default)]
    pub severities: Vec<String>,
    /// Days a matching log is kept.
    pub max_age_days: i64,
}

/// Parses a retention schedule the way tokio-cron-scheduler does (six or seven fields, the
/// first being seconds; day-of-month and day-of-week both must match).
pub fn parse_schedule(expression: &str) -> Result<croner::Cron, croner::errors::CronError> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expression)
}

/// Retention ages a setting may give, in days: a day to a century.
const AGE_DAYS: std::ops::RangeInclusive<i64> = 1..=36_500;

impl RetentionSettings {
    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        if let Err(error) = parse_schedule(&self.schedule) {
            return invalid(
                "retention.schedule",
                format!(
                    "`{}` is not a cron expression with seconds (e.g. `0 0 0 * * *`): {error}",
                    self.schedule
                ),
            );
        }
        if !AGE_DAYS.contains(&self.default_max_age_days) {
            return invalid(
                "retention.default_max_age_days",
                format!("must be 1 to 36500 days, not {}", self.default_max_age_days),
            );
        }
        if !AGE_DAYS.contains(&self.alert_max_age_days) {
            return invalid(
                "retention.alert_max_age_days",
                format!("must be 1 to 36500 days, not {}", self.alert_max_age_days),
            );
        }
        if self.batch_size == 0 || self.batch_size > 100_000 {
            return invalid("retention.batch_size", "must be between 1 and 100000");
        }
        if self.lease_seconds < std::time::Duration::from_secs(10) {
            return invalid("retention.lease_seconds", "must be at least 10");
        }
        if self.archive_enabled && self.archive_dir.trim().is_empty() {
            return invalid(
                "retention.archive_dir",
                "must be set when archive_enabled is true",
            );
        }
        let mut names = std::collections::HashSet::new();
        for (index, policy) in self.policies.iter().enumerate() {
            let which = format!("policy {} (`{}`)", index + 1, policy.name);
            if policy.name.trim().is_empty() || !names.insert(policy.name.as_str()) {
                return invalid(
                    "retention.policies",
                    format!("{which}: every policy needs a unique, non-empty name"),
                );
            }
            if !AGE_DAYS.contains(&policy.max_age_days) {
                return invalid(
                    "retention.policies",
                    format!(
                        "{which}: max_age_days must be 1 to 36500, not {}",
                        policy.max_age_days
                    ),
                );
            }
            for severity in &policy.severities {
                if severity.parse::<Severity>().is_err() {
                    return invalid(
                        "retention.policies",
                        format!("{which}: unknown severity `{severity}`"),
                    );
                }
            }
            for service in &policy.services {
                if let Err(error) = crate::parse::validate_service(service) {
                    return invalid("retention.policies", format!("{which}: {error}"));
                }
            }
        }
        Ok(())
    }
}
