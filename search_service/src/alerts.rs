//! `GET /api/v1/alerts`: the alerts the monitor stored, newest first.

use bson::Document;
use chrono::{DateTime, Utc};
use logagg::store::alert_fields;
use serde::Serialize;

/// One alert as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AlertView {
    pub id: String,
    pub rule: String,
    pub service: String,
    /// `firing` or `resolved`.
    pub state: String,
    /// The value when it fired (when resolved: when it resolved).
    pub value: f64,
    pub peak: f64,
    pub threshold: f64,
    pub window_seconds: i64,
    pub started_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// Ids of the last matching logs before it fired (`GET /api/v1/logs/{id}`).
    pub sample_ids: Vec<String>,
}

/// The body of `GET /api/v1/alerts`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Alerts {
    pub alerts: Vec<AlertView>,
}

impl AlertView {
    pub fn from_document(document: &Document) -> AlertView {
        let text = |field: &str| document.get_str(field).unwrap_or_default().to_owned();
        let number = |field: &str| {
            document
                .get_f64(field)
                .or_else(|_| document.get_i64(field).map(|n| n as f64))
                .or_else(|_| document.get_i32(field).map(f64::from))
                .unwrap_or_default()
        };
        let time = |field: &str| {
            document
                .get_datetime(field)
                .ok()
                .map(|time| time.to_chrono())
        };
        AlertView {
            id: text(alert_fields::ID),
            rule: text(alert_fields::RULE),
            service: text(alert_fields::SERVICE),
            state: text(alert_fields::STATE),
            value: number("value"),
            peak: number("peak"),
            threshold: number("threshold"),
            window_seconds: number("window_seconds") as i64,
            started_at: time(alert_fields::STARTED_AT),
            resolved_at: time(alert_fields::RESOLVED_AT),
            sample_ids: document
                .get_array("sample_ids")
                .map(|ids| {
                    ids.iter()
                        .filter_map(|id| id.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}
