//! retention_service's Prometheus metrics: series names, descriptions, and the macros to
//! record them.

pub use ::metrics::{counter, gauge, histogram};

pub const RUNS: &str = "logagg_retention_runs_total";
pub const DELETED: &str = "logagg_retention_deleted_total";
pub const ARCHIVED: &str = "logagg_retention_archived_total";
pub const ALERTS_DELETED: &str = "logagg_retention_alerts_deleted_total";
pub const RUN_DURATION: &str = "logagg_retention_run_duration_seconds";
pub const LAST_RUN: &str = "logagg_retention_last_run_timestamp_seconds";
pub const LAST_SUCCESS: &str = "logagg_retention_last_success_timestamp_seconds";
pub const FAILURES: &str = "logagg_retention_failures_total";

/// Registers descriptions so `/metrics` explains each series.
pub fn describe() {
    metrics::describe_counter!(RUNS, "Purge runs, by outcome (completed, failed, skipped).");
    metrics::describe_counter!(DELETED, "Logs deleted, by policy.");
    metrics::describe_counter!(ARCHIVED, "Logs written to archive files, by policy.");
    metrics::describe_counter!(ALERTS_DELETED, "Resolved alerts deleted.");
    metrics::describe_histogram!(RUN_DURATION, "Seconds per purge run that took the lease.");
    metrics::describe_gauge!(
        LAST_RUN,
        "Unix time the last purge run ended, whatever its outcome."
    );
    metrics::describe_gauge!(LAST_SUCCESS, "Unix time the last purge run completed.");
    metrics::describe_counter!(FAILURES, "Purge runs that failed, by reason.");
}
