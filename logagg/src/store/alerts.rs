//! Alerts: one document per episode in the alerts collection, and while it fires, a marker
//! in the leases collection keyed by rule and service. The marker's `_id` makes "this rule
//! already fires for this service" one atomic insert, so however many monitors see the same
//! burst, one opens the alert and the others join it.
//!
//! The marker is deleted when the alert resolves. (A unique index on a field of the alert
//! itself would not do: SecantusDB keeps a unique index's old key when the field is updated
//! or unset, so the pair could never fire again.)

use crate::auth::ServiceScope;
use bson::{doc, Bson, Document};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mongodb::error::ErrorKind;

use super::{alert_fields, Database, StoreError, DUPLICATE_KEY};

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

/// Where an alert stands.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Firing,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

impl std::str::FromStr for AlertState {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "firing" => Ok(AlertState::Firing),
            "resolved" => Ok(AlertState::Resolved),
            other => Err(format!("`{other}` is not firing or resolved")),
        }
    }
}

/// An alert read back from the alerts collection, with where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertEntry {
    pub alert: StoredAlert,
    pub state: AlertState,
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

impl Database {
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
            .insert_one(alert_document(alert, AlertState::Firing))
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
                    alert_fields::STATE: AlertState::Resolved.as_str(),
                    alert_fields::RESOLVED_AT: bson::DateTime::from_chrono(resolved_at),
                    alert_fields::VALUE: alert.value,
                    alert_fields::PEAK: alert.peak,
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

impl Database {
    /// The newest alerts first, of one state or both (`None`), optionally of one service;
    /// at most `limit`.
    pub async fn list_alerts(
        &self,
        state: Option<AlertState>,
        service: Option<&str>,
        scope: &ServiceScope,
        limit: i64,
    ) -> Result<Vec<AlertEntry>, StoreError> {
        let mut filter = Document::new();
        if let Some(condition) = scope.condition() {
            filter.insert(alert_fields::SERVICE, condition);
        }
        if let Some(state) = state {
            filter.insert(alert_fields::STATE, state.as_str());
        }
        if let Some(service) = service {
            filter.insert(alert_fields::SERVICE, service);
        }
        let documents: Vec<Document> = self
            .alerts
            .find(filter)
            .sort(doc! { alert_fields::STARTED_AT: -1 })
            .limit(limit)
            .await
            .map_err(StoreError::Unavailable)?
            .try_collect()
            .await
            .map_err(StoreError::Unavailable)?;
        documents.iter().map(alert_from_document).collect()
    }
}

/// Index serving the alert list, newest first.
pub const INDEX_ALERTS_STARTED: &str = "started_at";

/// The stored form of an alert. [`alert_from_document`] reads it back: the field names of
/// [`alert_fields`] are the only ones either side uses.
pub fn alert_document(alert: &StoredAlert, state: AlertState) -> Document {
    let mut document = doc! {
        alert_fields::ID: &alert.id,
        alert_fields::RULE: &alert.rule,
        alert_fields::SERVICE: &alert.service,
        alert_fields::STATE: state.as_str(),
        alert_fields::VALUE: alert.value,
        alert_fields::THRESHOLD: alert.threshold,
        alert_fields::WINDOW_SECONDS: i64::try_from(alert.window_seconds).unwrap_or(i64::MAX),
        alert_fields::STARTED_AT: bson::DateTime::from_chrono(alert.started_at),
        alert_fields::PEAK: alert.peak,
        alert_fields::SAMPLE_IDS: alert.sample_ids.iter().map(|id| Bson::from(id.as_str())).collect::<Vec<_>>(),
    };
    if let Some(resolved_at) = alert.resolved_at {
        document.insert(
            alert_fields::RESOLVED_AT,
            bson::DateTime::from_chrono(resolved_at),
        );
    }
    document
}

/// Reads [`alert_document`]'s form back.
pub fn alert_from_document(document: &Document) -> Result<AlertEntry, StoreError> {
    let malformed = |field: &str| StoreError::Malformed(format!("alert field `{field}`"));
    let text = |field: &'static str| {
        document
            .get_str(field)
            .map(str::to_owned)
            .map_err(|_| malformed(field))
    };
    let number = |field: &'static str| match document.get(field) {
        Some(Bson::Double(value)) => Ok(*value),
        Some(Bson::Int64(value)) => Ok(*value as f64),
        Some(Bson::Int32(value)) => Ok(f64::from(*value)),
        _ => Err(malformed(field)),
    };
    let state = text(alert_fields::STATE)?
        .parse()
        .map_err(|_| malformed(alert_fields::STATE))?;
    let alert = StoredAlert {
        id: text(alert_fields::ID)?,
        rule: text(alert_fields::RULE)?,
        service: text(alert_fields::SERVICE)?,
        value: number(alert_fields::VALUE)?,
        threshold: number(alert_fields::THRESHOLD)?,
        window_seconds: number(alert_fields::WINDOW_SECONDS)?.max(0.0) as u64,
        started_at: document
            .get_datetime(alert_fields::STARTED_AT)
            .map_err(|_| malformed(alert_fields::STARTED_AT))?
            .to_chrono(),
        resolved_at: document
            .get_datetime(alert_fields::RESOLVED_AT)
            .ok()
            .map(|time| time.to_chrono()),
        peak: number(alert_fields::PEAK)?,
        sample_ids: document
            .get_array(alert_fields::SAMPLE_IDS)
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| id.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    };
    Ok(AlertEntry { alert, state })
}

fn is_duplicate(error: &mongodb::error::Error) -> bool {
    match error.kind.as_ref() {
        ErrorKind::Write(mongodb::error::WriteFailure::WriteError(write_error)) => {
            write_error.code == DUPLICATE_KEY
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn an_alert_reads_back_as_it_was_stored() {
        let alert = StoredAlert {
            id: "a-1".into(),
            rule: "error_ratio".into(),
            service: "auth".into(),
            value: 0.12,
            threshold: 0.1,
            window_seconds: 60,
            started_at: Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap(),
            resolved_at: Some(Utc.with_ymd_and_hms(2026, 12, 1, 10, 5, 0).unwrap()),
            peak: 0.3,
            sample_ids: vec!["l-1".into(), "l-2".into()],
        };
        let entry = alert_from_document(&alert_document(&alert, AlertState::Resolved)).unwrap();
        assert_eq!(entry.alert, alert);
        assert_eq!(entry.state, AlertState::Resolved);
        let mut firing = alert.clone();
        firing.resolved_at = None;
        let entry = alert_from_document(&alert_document(&firing, AlertState::Firing)).unwrap();
        assert_eq!((entry.alert, entry.state), (firing, AlertState::Firing));
    }
}
