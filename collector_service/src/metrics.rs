//! The collector's Prometheus metrics: series names, descriptions, and the macros to record them.

pub use ::metrics::{counter, histogram};

pub const CONSUMED: &str = "logagg_collector_consumed_total";
pub const STORED: &str = "logagg_collector_stored_total";
pub const DUPLICATES: &str = "logagg_collector_duplicates_total";
pub const IDENTICAL_BODIES: &str = "logagg_collector_identical_bodies_total";
pub const DEAD_LETTERED: &str = "logagg_collector_dead_lettered_total";
pub const BATCH_SIZE: &str = "logagg_collector_batch_size";
pub const WRITE_LATENCY: &str = "logagg_collector_write_latency_seconds";
pub const WRITE_FAILURES: &str = "logagg_collector_write_failures_total";
pub const STATS_FAILURES: &str = "logagg_collector_stats_failures_total";
pub const RECONNECTS: &str = "logagg_collector_broker_reconnects_total";
pub const IDLE_RESUBSCRIBES: &str = "logagg_collector_idle_resubscribes_total";

/// Registers descriptions so `/metrics` explains each series.
pub fn describe() {
    metrics::describe_counter!(CONSUMED, "Messages received from the storage queue.");
    metrics::describe_counter!(STORED, "Records newly written to MongoDB.");
    metrics::describe_counter!(
        DUPLICATES,
        "Records already stored: redeliveries, re-sent messages, and identical bodies."
    );
    metrics::describe_counter!(
        IDENTICAL_BODIES,
        "New messages without a message-id whose body (so whose id) a stored record already \
         had: the publisher sent the same bytes twice, and they are one record."
    );
    metrics::describe_counter!(
        DEAD_LETTERED,
        "Messages sent to the dead-letter queue, by reason."
    );
    metrics::describe_histogram!(BATCH_SIZE, "Messages per written batch.");
    metrics::describe_histogram!(WRITE_LATENCY, "Seconds per bulk insert, successful or not.");
    metrics::describe_counter!(WRITE_FAILURES, "Bulk inserts that failed and were retried.");
    metrics::describe_counter!(
        STATS_FAILURES,
        "Batches stored but missing from the stats rollups (their update failed)."
    );
    metrics::describe_counter!(
        RECONNECTS,
        "Times the broker connection was re-established."
    );
    metrics::describe_counter!(
        IDLE_RESUBSCRIBES,
        "Times the consumer moved to a new channel after collector.idle_resubscribe_seconds \
         without a delivery (returns messages a broker fault left checked out to the old one)."
    );
}
