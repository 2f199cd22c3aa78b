//! The monitor's Prometheus metrics: series names, descriptions, and the macros to record them.

pub use ::metrics::{counter, gauge};

pub const MESSAGES: &str = "logagg_monitor_messages_total";
pub const UNPARSEABLE: &str = "logagg_monitor_unparseable_total";
pub const EVALUATIONS: &str = "logagg_monitor_rule_evaluations_total";
pub const TRANSITIONS: &str = "logagg_monitor_alert_transitions_total";
pub const TRANSITIONS_DROPPED: &str = "logagg_monitor_alert_transitions_dropped_total";
pub const KEEPER_HANDLED: &str = "logagg_monitor_keeper_handled_total";
pub const ALERTS_FIRED: &str = "logagg_monitor_alerts_fired_total";
pub const ALERTS_JOINED: &str = "logagg_monitor_alerts_joined_total";
pub const ALERTS_RESOLVED: &str = "logagg_monitor_alerts_resolved_total";
pub const ALERTS_FIRING: &str = "logagg_monitor_alerts_firing";
pub const NOTIFICATIONS_SENT: &str = "logagg_monitor_notifications_sent_total";
pub const SINK_FAILURES: &str = "logagg_monitor_sink_failures_total";
pub const SINK_GAVE_UP: &str = "logagg_monitor_sink_gave_up_total";
pub const SINK_DROPPED: &str = "logagg_monitor_sink_dropped_total";
pub const SERVICES: &str = "logagg_monitor_services";
pub const SERVICES_OVERFLOWED: &str = "logagg_monitor_services_overflowed_total";
pub const ROUTE_RATE: &str = "logagg_monitor_route_requests_per_second";
pub const ROUTE_LATENCY: &str = "logagg_monitor_route_latency_ms";
pub const ROUTE_RESPONSES: &str = "logagg_monitor_route_responses";
pub const RECONNECTS: &str = "logagg_monitor_broker_reconnects_total";

/// Registers descriptions so `/metrics` explains each series.
pub fn describe() {
    metrics::describe_counter!(MESSAGES, "Logs received from the monitoring queue.");
    metrics::describe_counter!(
        UNPARSEABLE,
        "Messages the monitor could not parse (skipped)."
    );
    metrics::describe_counter!(
        EVALUATIONS,
        "Rule evaluations (one per applicable rule per log)."
    );
    metrics::describe_counter!(
        TRANSITIONS,
        "Alerts raised or resolved by this monitor's rules."
    );
    metrics::describe_counter!(
        TRANSITIONS_DROPPED,
        "Transitions dropped: the keeper's queue was full."
    );
    metrics::describe_counter!(KEEPER_HANDLED, "Transitions the alert keeper finished.");
    metrics::describe_counter!(ALERTS_FIRED, "Alerts this monitor opened (and notified).");
    metrics::describe_counter!(
        ALERTS_JOINED,
        "Alerts found already open by another monitor."
    );
    metrics::describe_counter!(
        ALERTS_RESOLVED,
        "Alerts this monitor resolved (and notified)."
    );
    metrics::describe_gauge!(
        ALERTS_FIRING,
        "Alerts opened minus resolved by this monitor."
    );
    metrics::describe_counter!(NOTIFICATIONS_SENT, "Notifications delivered, by sink.");
    metrics::describe_counter!(SINK_FAILURES, "Failed delivery attempts, by sink.");
    metrics::describe_counter!(
        SINK_GAVE_UP,
        "Notifications given up after the last attempt, by sink."
    );
    metrics::describe_counter!(
        SINK_DROPPED,
        "Notifications dropped because a sink's queue was full."
    );
    metrics::describe_gauge!(SERVICES, "Services being watched.");
    metrics::describe_counter!(
        RECONNECTS,
        "Times the broker connection was re-established."
    );
    metrics::describe_counter!(
        SERVICES_OVERFLOWED,
        "Logs skipped: more services than monitor.max_services."
    );
    metrics::describe_gauge!(
        ROUTE_RATE,
        "Access-log requests per second over the live window."
    );
    metrics::describe_gauge!(
        ROUTE_LATENCY,
        "Access-log latency quantiles over the live window, ms."
    );
    metrics::describe_gauge!(
        ROUTE_RESPONSES,
        "Access-log responses by status class over the live window."
    );
}
