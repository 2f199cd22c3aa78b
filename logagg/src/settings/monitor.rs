//! `[monitor]`: alert rules over sliding windows, alert sinks, live access stats.

use serde::{Deserialize, Serialize};

use super::{invalid, SettingsError};
use crate::record::Severity;

/// What an alert rule measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleKind {
    /// Logs at or above `min_severity` in the window.
    Count,
    /// Those logs over all logs in the window, once it holds `min_volume`.
    Ratio,
}

/// Where a sink sends notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// A line in the monitor's own log.
    Log,
    /// The notification as JSON, POSTed to `url`.
    Webhook,
    /// A Slack-compatible `{"text"}`, POSTed to `url`.
    Slack,
}

impl SinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::Log => "log",
            SinkKind::Webhook => "webhook",
            SinkKind::Slack => "slack",
        }
    }
}

/// monitoring_service: error-rate rules over sliding windows, alert sinks, live access stats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorSettings {
    /// Asked of the broker with `basic.qos`. RabbitMQ applies prefetch to manual-ack
    /// consumers only; the monitor's auto-ack consumer is bounded by the monitoring queue's
    /// length and by evaluating faster than the broker delivers.
    pub prefetch: u16,
    /// How often rules are re-evaluated without new logs (alerts resolve as windows empty).
    #[serde(with = "super::millis")]
    pub tick_ms: std::time::Duration,
    /// A service that sent nothing for this long, with no alert open, is forgotten.
    pub idle_eviction_seconds: u64,
    /// Services watched at most; logs of further services are counted and skipped.
    pub max_services: usize,
    /// Window of the live access-log stats (`/api/v1/live`), seconds.
    pub live_window_seconds: u64,
    /// Routes per service in the live stats; further ones are counted under `other`.
    pub max_routes_per_service: usize,
    /// Notifications a sink may have waiting; beyond, new ones are dropped and counted.
    pub sink_queue: usize,
    /// Alert rules (TOML array of tables `[[monitor.rules]]`), each evaluated per service.
    pub rules: Vec<AlertRule>,
    /// Where notifications go (TOML array of tables `[[monitor.sinks]]`); the alerts
    /// exchange always gets them too.
    pub sinks: Vec<SinkSettings>,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        Self {
            prefetch: 1_000,
            tick_ms: std::time::Duration::from_millis(1_000),
            idle_eviction_seconds: 600,
            max_services: 10_000,
            live_window_seconds: 60,
            max_routes_per_service: 100,
            sink_queue: 1_000,
            rules: vec![AlertRule::error_ratio()],
            sinks: vec![SinkSettings::default()],
        }
    }
}

/// One alert rule. The fields a rule leaves out take [`AlertRule::default`]'s values (a
/// count rule: 10 or more errors in 60 s); the rule monitors run without any configured is
/// [`AlertRule::error_ratio`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertRule {
    /// Shown in alerts and notifications: 1-64 letters, digits, `_` or `-`, unique.
    pub name: String,
    /// Services the rule watches; empty means each service separately.
    pub services: Vec<String>,
    /// `count`: logs at or above `min_severity` in the window; `ratio`: those over all logs.
    pub kind: RuleKind,
    /// The lowest severity the rule counts (any accepted spelling).
    pub min_severity: String,
    /// Fires at or above this (a count, or a ratio from 0 to 1).
    pub threshold: f64,
    /// Length of the sliding window, seconds (1 to 3600).
    pub window_seconds: u64,
    /// How long the value must stay at or above the threshold before the alert fires.
    pub for_seconds: u64,
    /// Resolves once the value falls below this; default half the threshold. The band
    /// between keeps a value hovering at the threshold from flapping.
    pub resolve_below: Option<f64>,
    /// `ratio` only: logs the window must hold before the ratio counts.
    pub min_volume: u64,
    /// After resolving, the same rule and service do not fire again for this long.
    pub cooldown_seconds: u64,
}

impl Default for AlertRule {
    fn default() -> Self {
        Self {
            name: "error_burst".into(),
            services: Vec::new(),
            kind: RuleKind::Count,
            min_severity: "error".into(),
            threshold: 10.0,
            window_seconds: 60,
            for_seconds: 0,
            resolve_below: None,
            min_volume: 0,
            cooldown_seconds: 300,
        }
    }
}

impl AlertRule {
    /// The default rule: a service's errors (and worse) are 10 % or more of its logs over a
    /// minute holding at least 100 logs. A ratio, so it scales with traffic and stays quiet
    /// on healthy traffic (the demo's 0.5 % of 5xx); a minimum volume, so a quiet service's
    /// one error in three logs is not an incident. The form alerting templates for
    /// Prometheus and Loki use for error rates.
    pub fn error_ratio() -> AlertRule {
        AlertRule {
            name: "error_ratio".into(),
            kind: RuleKind::Ratio,
            threshold: 0.1,
            min_volume: 100,
            ..AlertRule::default()
        }
    }
}

/// Where alert notifications go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SinkSettings {
    /// `log` (a line in the monitor's own log), `webhook` (JSON POST) or `slack`
    /// (Slack-compatible `{"text"}`).
    pub kind: SinkKind,
    /// `webhook` and `slack`: the http(s) URL notifications are POSTed to.
    pub url: String,
    /// Longest wait for one delivery attempt, milliseconds.
    #[serde(with = "super::millis")]
    pub timeout_ms: std::time::Duration,
    /// Attempts per notification, with doubling backoff from `retry_initial_ms`.
    pub max_attempts: u32,
    /// Wait before the second attempt, milliseconds; doubles each attempt.
    #[serde(with = "super::millis")]
    pub retry_initial_ms: std::time::Duration,
}

impl Default for SinkSettings {
    fn default() -> Self {
        Self {
            kind: SinkKind::Log,
            url: String::new(),
            timeout_ms: std::time::Duration::from_millis(5_000),
            max_attempts: 5,
            retry_initial_ms: std::time::Duration::from_millis(500),
        }
    }
}

impl MonitorSettings {
    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        if self.tick_ms.is_zero() || self.max_services == 0 || self.sink_queue == 0 {
            return invalid(
                "monitor",
                "tick_ms, max_services and sink_queue must be at least 1",
            );
        }
        if !(1..=3_600).contains(&self.live_window_seconds) {
            return invalid("monitor.live_window_seconds", "must be 1 to 3600");
        }
        let mut names = std::collections::BTreeSet::new();
        for rule in &self.rules {
            let reason = rule.problem();
            if let Some(reason) = reason {
                return invalid("monitor.rules", format!("rule `{}`: {reason}", rule.name));
            }
            if !names.insert(rule.name.as_str()) {
                return invalid("monitor.rules", format!("rule `{}` twice", rule.name));
            }
        }
        for sink in &self.sinks {
            if sink.kind == SinkKind::Log {
                continue;
            }
            if !(sink.url.starts_with("http://") || sink.url.starts_with("https://")) {
                return invalid(
                    "monitor.sinks",
                    format!("a {} sink needs an http(s) url", sink.kind.as_str()),
                );
            }
            if sink.max_attempts == 0 || sink.timeout_ms.is_zero() {
                return invalid(
                    "monitor.sinks",
                    "max_attempts and timeout_ms must be at least 1",
                );
            }
        }
        Ok(())
    }
}

impl AlertRule {
    /// What is wrong with the rule, if anything.
    pub fn problem(&self) -> Option<String> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-'));
        if !name_ok {
            return Some("names are 1-64 letters, digits, `_` or `-`".into());
        }
        if self.min_severity.parse::<Severity>().is_err() {
            return Some(format!("`{}` is not a severity", self.min_severity));
        }
        if let Some(service) = self
            .services
            .iter()
            .find(|service| crate::parse::validate_service(service).is_err())
        {
            return Some(format!("`{service}` is not a valid service name"));
        }
        if !(1..=3_600).contains(&self.window_seconds) {
            return Some("window_seconds must be 1 to 3600".into());
        }
        let ratio = self.kind == RuleKind::Ratio;
        let threshold_ok =
            self.threshold.is_finite() && self.threshold > 0.0 && (!ratio || self.threshold <= 1.0);
        if !threshold_ok {
            return Some("threshold must be above 0 (and at most 1 for a ratio)".into());
        }
        if self
            .resolve_below
            .is_some_and(|below| !(0.0..=self.threshold).contains(&below))
        {
            return Some("resolve_below must be between 0 and the threshold".into());
        }
        None
    }
}
