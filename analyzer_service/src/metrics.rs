//! The distributor's Prometheus metrics: series names, descriptions, and the macros to record them.

pub use ::metrics::{counter, gauge};

pub const DELIVERED: &str = "logagg_analyzer_delivered_total";
pub const FAILURES: &str = "logagg_analyzer_failures_total";
pub const WEIGHT_SHARE: &str = "logagg_analyzer_share";
pub const ONLINE: &str = "logagg_analyzer_online";
pub const WEIGHT: &str = "logagg_analyzer_weight";
pub const LAST_HEARTBEAT: &str = "logagg_analyzer_last_heartbeat_timestamp_seconds";
pub const SKIPPED: &str = "logagg_analyzer_skipped_total";
pub const WAITING: &str = "logagg_analyzer_waiting_rounds_total";
pub const RECONNECTS: &str = "logagg_analyzer_broker_reconnects_total";

/// Registers descriptions so `/metrics` explains each series.
pub fn describe() {
    metrics::describe_counter!(
        DELIVERED,
        "Logs an analyzer accepted from this distributor, by analyzer."
    );
    metrics::describe_counter!(
        FAILURES,
        "Deliveries to an analyzer that failed (no 2xx, timeout, unconfirmed), by analyzer."
    );
    metrics::describe_gauge!(
        WEIGHT_SHARE,
        "An online analyzer's weight over the online analyzers' total, by analyzer."
    );
    metrics::describe_gauge!(ONLINE, "1 while an analyzer gets a share, by analyzer.");
    metrics::describe_gauge!(WEIGHT, "An analyzer's registered weight, by analyzer.");
    metrics::describe_gauge!(
        LAST_HEARTBEAT,
        "When an analyzer last registered or renewed its lease (Unix seconds), by analyzer."
    );
    metrics::describe_counter!(
        SKIPPED,
        "Messages no record could be read from (the collector dead-letters them): acked, \
         delivered to no analyzer."
    );
    metrics::describe_counter!(
        WAITING,
        "Rounds held back because no analyzer was online to take them."
    );
    metrics::describe_counter!(
        RECONNECTS,
        "Times the broker connection was re-established."
    );
}
