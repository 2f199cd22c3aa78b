//! `GET /api/v1/alerts`: the alerts the monitor stored, newest first, as the store's one
//! alert model reads them (`logagg::store::alerts`).

use chrono::{DateTime, Utc};
use logagg::store::alerts::{AlertEntry, AlertState};
use serde::Serialize;

/// Most alerts one `GET /api/v1/alerts` answers (its `limit` at most).
pub const MAX_ALERTS: i64 = 500;

/// One alert as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AlertView {
    pub id: String,
    pub rule: String,
    pub service: String,
    pub state: AlertState,
    /// The value when it fired (when resolved: when it resolved).
    pub value: f64,
    pub peak: f64,
    pub threshold: f64,
    pub window_seconds: u64,
    pub started_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// Ids of the last matching logs before it fired (`GET /api/v1/logs/{id}`).
    pub sample_ids: Vec<String>,
}

/// The body of `GET /api/v1/alerts`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Alerts {
    pub alerts: Vec<AlertView>,
}

impl From<AlertEntry> for AlertView {
    fn from(entry: AlertEntry) -> AlertView {
        let alert = entry.alert;
        AlertView {
            id: alert.id,
            rule: alert.rule,
            service: alert.service,
            state: entry.state,
            value: alert.value,
            peak: alert.peak,
            threshold: alert.threshold,
            window_seconds: alert.window_seconds,
            started_at: alert.started_at,
            resolved_at: alert.resolved_at,
            sample_ids: alert.sample_ids,
        }
    }
}
