//! Alerts: one document per episode in the alerts collection, and while it fires, a marker
//! in the leases collection keyed by rule and service. The marker's `_id` makes "this rule
//! already fires for this service" one atomic insert, so however many monitors see the same
//! burst, one opens the alert and the others join it.
//!
//! The marker is deleted when the alert resolves. (A unique index on a field of the alert
//! itself would not do: SecantusDB keeps a unique index's old key when the field is updated
//! or unset, so the pair could never fire again.)

use bson::{doc, Bson, Document};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mongodb::error::ErrorKind;

use super::{alert_fields, Store, StoreError, DUPLICATE_KEY};

/// Marker field holding the open episode's id.
const MARKER_EPISODE: &str = "episode";
/// Marker field naming what the marker is, so markers can be listed.
const MARKER_KIND: &str = "kind";
const MARKER_KIND_ALERT: &str = "alert";

/// An alert as stored, published and sent to sinks.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StoredAlert {
    pub id: String,
    pub rule: String,
    pub service: String,
    pub value: f64,
    pub threshold: f64,
    pub window_seconds: u64,
    pub started_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub peak: f64,
    pub sample_ids: Vec<String>,
}

/// What opening an alert found.
#[derive(Debug, Clone, PartialEq)]
pub enum Opened {
    /// This call opened it: notify.
    New,
    /// The pair already fires under this episode id (opened by another monitor, or before a
    /// restart): do not notify again.
    AlreadyFiring(String),
}

/// An alert firing now, as its marker records it.
#[derive(Debug, Clone, PartialEq)]
pub struct FiringAlert {
    pub rule: String,
    pub service: String,
    pub episode: String,
    pub started_at: DateTime<Utc>,
}

fn marker_id(rule: &str, service: &str) -> String {
    format!("alert|{rule}|{service}")
}

impl Store {
    /// Opens `alert` unless its rule already fires for its service.
    pub async fn open_alert(&self, alert: &StoredAlert) -> Result<Opened, StoreError> {
        let marker = doc! {
            "_id": marker_id(&alert.rule, &alert.service),
            MARKER_KIND: MARKER_KIND_ALERT,
            MARKER_EPISODE: &alert.id,
            alert_fields::RULE: &alert.rule,
            alert_fields::SERVICE: &alert.service,
            alert_fields::STARTED_AT: bson::DateTime::from_chrono(alert.started_at),
        };
        if let Err(error) = self.leases.insert_one(marker).await {
            if !is_duplicate(&error) {
                return Err(StoreError::Unavailable(error));
            }
            let existing = self
                .leases
                .find_one(doc! { "_id": marker_id(&alert.rule, &alert.service) })
                .await
                .map_err(StoreError::Unavailable)?;
            let episode = existing
                .and_then(|marker| marker.get_str(MARKER_EPISODE).ok().map(str::to_owned))
                .unwrap_or_default();
            // Our own marker, from an attempt whose answer was lost: carry on.
            if episode != alert.id {
                return Ok(Opened::AlreadyFiring(episode));
            }
        }
        match self
            .alerts
            .insert_one(alert_document(alert, "firing"))
            .await
        {
            Ok(_) => Ok(Opened::New),
            // Stored by an earlier attempt whose answer was lost.
            Err(error) if is_duplicate(&error) => Ok(Opened::New),
            Err(error) => Err(StoreError::Unavailable(error)),
        }
    }

    /// Resolves the episode `alert.id`. `true` when this call closed it (notify); `false`
    /// when it was already closed.
    pub async fn resolve_alert(&self, alert: &StoredAlert) -> Result<bool, StoreError> {
        let resolved_at = alert.resolved_at.unwrap_or_else(Utc::now);
        self.alerts
            .update_one(
                doc! { "_id": &alert.id },
                doc! { "$set": {
                    alert_fields::STATE: "resolved",
                    alert_fields::RESOLVED_AT: bson::DateTime::from_chrono(resolved_at),
                    "value": alert.value,
                    "peak": alert.peak,
                }},
            )
            .await
            .map_err(StoreError::Unavailable)?;
        let deleted = self
            .leases
            .delete_one(doc! {
                "_id": marker_id(&alert.rule, &alert.service),
                MARKER_EPISODE: &alert.id,
            })
            .await
            .map_err(StoreError::Unavailable)?;
        Ok(deleted.deleted_count == 1)
    }

    /// Every alert firing now.
    pub async fn firing_alerts(&self) -> Result<Vec<FiringAlert>, StoreError> {
        let markers: Vec<Document> = self
            .leases
            .find(doc! { MARKER_KIND: MARKER_KIND_ALERT })
            .await
            .map_err(StoreError::Unavailable)?
            .try_collect()
            .await
            .map_err(StoreError::Unavailable)?;
        Ok(markers
            .iter()
            .filter_map(|marker| {
                Some(FiringAlert {
                    rule: marker.get_str(alert_fields::RULE).ok()?.to_owned(),
                    service: marker.get_str(alert_fields::SERVICE).ok()?.to_owned(),
                    episode: marker.get_str(MARKER_EPISODE).ok()?.to_owned(),
                    started_at: marker
                        .get_datetime(alert_fields::STARTED_AT)
                        .ok()?
                        .to_chrono(),
                })
            })
            .collect())
    }
}

impl Store {
    /// The newest alerts first, `firing` only, `resolved` only, or both (`state` `None`),
    /// optionally of one service; at most `limit`.
    pub async fn list_alerts(
        &self,
        state: Option<&str>,
        service: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Document>, StoreError> {
        let mut filter = Document::new();
        if let Some(state) = state {
            filter.insert(alert_fields::STATE, state);
        }
        if let Some(service) = service {
            filter.insert(alert_fields::SERVICE, service);
        }
        self.alerts
            .find(filter)
            .sort(doc! { alert_fields::STARTED_AT: -1 })
            .limit(limit)
            .await
            .map_err(StoreError::Unavailable)?
            .try_collect()
            .await
            .map_err(StoreError::Unavailable)
    }
}

/// Index serving the alert list, newest first.
pub const INDEX_ALERTS_STARTED: &str = "started_at";

/// The stored form of an alert.
pub fn alert_document(alert: &StoredAlert, state: &str) -> Document {
    let mut document = doc! {
        alert_fields::ID: &alert.id,
        alert_fields::RULE: &alert.rule,
        alert_fields::SERVICE: &alert.service,
        alert_fields::STATE: state,
        "value": alert.value,
        "threshold": alert.threshold,
        "window_seconds": i64::try_from(alert.window_seconds).unwrap_or(i64::MAX),
        alert_fields::STARTED_AT: bson::DateTime::from_chrono(alert.started_at),
        "peak": alert.peak,
        "sample_ids": alert.sample_ids.iter().map(|id| Bson::from(id.as_str())).collect::<Vec<_>>(),
    };
    if let Some(resolved_at) = alert.resolved_at {
        document.insert(
            alert_fields::RESOLVED_AT,
            bson::DateTime::from_chrono(resolved_at),
        );
    }
    document
}

fn is_duplicate(error: &mongodb::error::Error) -> bool {
    match error.kind.as_ref() {
        ErrorKind::Write(mongodb::error::WriteFailure::WriteError(write_error)) => {
            write_error.code == DUPLICATE_KEY
        }
        _ => false,
    }
}
