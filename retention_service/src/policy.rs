//! Retention policies as filters: which logs each policy governs (first match wins) and which
//! of those are past its age. Pure code, no I/O.

use bson::{doc, Bson, Document};
use chrono::{DateTime, Duration, Utc};
use logagg::settings::RetentionSettings;
use logagg::store::{alert_fields, fields};
use logagg::Severity;

/// Name of the catch-all policy made from `retention.default_max_age_days`.
pub const DEFAULT_POLICY: &str = "default";

/// One policy, its severities parsed. Empty lists match everything.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: String,
    pub services: Vec<String>,
    pub severities: Vec<Severity>,
    pub max_age: Duration,
}

impl Policy {
    /// Whether a log from `service` at `severity` falls under this policy (ignoring age).
    pub fn matches(&self, service: &str, severity: Severity) -> bool {
        (self.services.is_empty() || self.services.iter().any(|name| name == service))
            && (self.severities.is_empty() || self.severities.contains(&severity))
    }

    /// Logs older than this are past the policy's age.
    pub fn cutoff(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now.checked_sub_signed(self.max_age)
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// The MongoDB condition for "this policy's selector" (no age), or `None` for a
    /// catch-all.
    fn selector(&self) -> Option<Document> {
        let mut selector = Document::new();
        if !self.services.is_empty() {
            selector.insert(fields::SERVICE, doc! { "$in": &self.services });
        }
        if !self.severities.is_empty() {
            let names: Vec<&str> = self.severities.iter().map(|s| s.as_str()).collect();
            selector.insert(fields::SEVERITY, doc! { "$in": names });
        }
        (!selector.is_empty()).then_some(selector)
    }
}

/// The configured policies in order, then the default catch-all.
///
/// Settings were validated at load, so severities parse; one that somehow does not is
/// dropped from the list rather than widening the policy to every severity.
pub fn compile(settings: &RetentionSettings) -> Vec<Policy> {
    let mut policies: Vec<Policy> = settings
        .policies
        .iter()
        .map(|policy| Policy {
            name: policy.name.clone(),
            services: policy.services.clone(),
            severities: policy
                .severities
                .iter()
                .filter_map(|severity| severity.parse().ok())
                .collect(),
            max_age: Duration::days(policy.max_age_days),
        })
        .collect();
    policies.push(Policy {
        name: DEFAULT_POLICY.to_owned(),
        services: Vec::new(),
        severities: Vec::new(),
        max_age: Duration::days(settings.default_max_age_days),
    });
    policies
}

/// Index of the policy that governs a log: the first that matches.
pub fn governing_policy(policies: &[Policy], service: &str, severity: Severity) -> Option<usize> {
    policies
        .iter()
        .position(|policy| policy.matches(service, severity))
}

/// The filter for "logs governed by policy `index` and past its age at `now`": its own
/// selector, none of the earlier policies' selectors, and a timestamp before its cutoff.
///
/// Kept flat (one condition per field, no nested `$and`): SecantusDB answers a flat time range
/// from the index in milliseconds but took seconds for the same range nested in `$and` at a
/// million documents, and MongoDB plans both alike.
pub fn expired_filter(policies: &[Policy], index: usize, now: DateTime<Utc>) -> Document {
    let policy = &policies[index];
    let mut filter = policy.selector().unwrap_or_default();
    filter.insert(
        fields::TIMESTAMP,
        doc! { "$lt": bson::DateTime::from_chrono(policy.cutoff(now)) },
    );
    let earlier: Vec<Bson> = policies[..index]
        .iter()
        .filter_map(Policy::selector)
        .map(Bson::Document)
        .collect();
    if !earlier.is_empty() {
        filter.insert("$nor", earlier);
    }
    filter
}

/// The filter for alerts resolved before `cutoff` (firing alerts have no resolution time and
/// never match).
pub fn expired_alerts_filter(cutoff: DateTime<Utc>) -> Document {
    doc! { alert_fields::RESOLVED_AT: { "$lt": bson::DateTime::from_chrono(cutoff) } }
}

/// Whether a scheduled run was missed: the schedule's first time after the last completed
/// run has already passed. Never having run counts as missed.
pub fn run_missed(
    schedule: &croner::Cron,
    last_completed: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> bool {
    let Some(last_completed) = last_completed else {
        return true;
    };
    schedule
        .find_next_occurrence(&last_completed, false)
        .is_ok_and(|next_due| next_due <= now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use logagg::settings::{parse_schedule, RetentionPolicy};

    fn settings() -> RetentionSettings {
        let policy = |name: &str, services: &[&str], severities: &[&str], days| RetentionPolicy {
            name: name.into(),
            services: services.iter().map(|s| (*s).to_owned()).collect(),
            severities: severities.iter().map(|s| (*s).to_owned()).collect(),
            max_age_days: days,
        };
        RetentionSettings {
            policies: vec![
                policy("debug", &[], &["debug", "TRACE"], 2),
                policy("auth", &["auth"], &[], 5),
                policy("errors", &[], &["Error", "fatal"], 30),
            ],
            ..RetentionSettings::default()
        }
    }

    #[test]
    fn the_first_matching_policy_governs() {
        let policies = compile(&settings());
        assert_eq!(policies.len(), 4);
        assert_eq!(policies[3].name, DEFAULT_POLICY);
        assert_eq!(policies[3].max_age, Duration::days(10));
        let governing = |service, severity| governing_policy(&policies, service, severity);
        assert_eq!(governing("auth", Severity::Debug), Some(0));
        assert_eq!(governing("auth", Severity::Error), Some(1));
        assert_eq!(governing("web", Severity::Fatal), Some(2));
        assert_eq!(governing("web", Severity::Info), Some(3));
        assert_eq!(governing("web", Severity::Trace), Some(0));
    }

    #[test]
    fn filters_exclude_what_earlier_policies_govern() {
        let policies = compile(&settings());
        let now = Utc.with_ymd_and_hms(2026, 11, 21, 0, 0, 0).unwrap();
        let filter = expired_filter(&policies, 2, now);
        assert_eq!(
            filter
                .get_document("ts")
                .unwrap()
                .get_datetime("$lt")
                .unwrap()
                .to_chrono(),
            Utc.with_ymd_and_hms(2026, 10, 22, 0, 0, 0).unwrap()
        );
        assert_eq!(
            filter
                .get_document("severity")
                .unwrap()
                .get_array("$in")
                .unwrap()
                .len(),
            2
        );
        let excluded = filter.get_array("$nor").unwrap();
        assert_eq!(excluded.len(), 2, "debug and auth come first");
        let default_filter = expired_filter(&policies, 3, now);
        assert!(
            !default_filter.contains_key("service") && !default_filter.contains_key("severity"),
            "the catch-all has no selector of its own"
        );
        assert_eq!(default_filter.get_array("$nor").unwrap().len(), 3);
    }

    #[test]
    fn ages_compare_instants_not_text() {
        let policies = compile(&RetentionSettings::default());
        let now = Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap();
        assert_eq!(
            policies[0].cutoff(now),
            Utc.with_ymd_and_hms(2026, 11, 11, 12, 0, 0).unwrap()
        );
        let filter = expired_filter(&policies, 0, now);
        assert!(matches!(
            filter.get_document("ts").unwrap().get("$lt"),
            Some(Bson::DateTime(_))
        ));
    }

    #[test]
    fn a_run_is_missed_when_its_time_passed_since_the_last_completed_one() {
        let daily = parse_schedule("0 0 0 * * *").unwrap();
        let at = |day, hour| Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap();
        assert!(run_missed(&daily, None, at(21, 7)));
        assert!(!run_missed(&daily, Some(at(21, 0)), at(21, 7)));
        assert!(run_missed(&daily, Some(at(20, 0)), at(21, 7)));
        assert!(run_missed(&daily, Some(at(19, 23)), at(20, 0)));
    }
}
