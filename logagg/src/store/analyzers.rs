//! The analyzers registered for the fan-out (analyzer_service): where each gets its share,
//! its weight and lease, and what was delivered to it. Every distributor replica reads them,
//! so a registration made through one is seen by all, and survives their restarts.

use bson::{doc, Bson, Document};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde::Serialize;

use super::{Database, StoreError};

/// Field names of an analyzer document (its id is `_id`).
pub mod analyzer_fields {
    pub const URL: &str = "url";
    pub const WEIGHT: &str = "weight";
    pub const LEASE_UNTIL: &str = "lease_until";
    pub const REGISTERED_AT: &str = "registered_at";
    pub const LAST_HEARTBEAT: &str = "last_heartbeat";
    /// Deliveries failed in a row; a success or a heartbeat sets it back to 0.
    pub const FAILURES: &str = "failures";
    pub const FAILED_TOTAL: &str = "failed_total";
    pub const DELIVERED: &str = "delivered";
    /// Logs delivered per minute, `{"<minutes since the epoch>": count}`: the current and
    /// the last minute are kept, older ones removed by the distributors' refresh.
    pub const MINUTES: &str = "minutes";
}
use analyzer_fields as fields;

/// Where an analyzer's share goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// POSTs of NDJSON batches.
    Url(String),
    /// Published to its own durable queue, `logs.analyzer.<id>`.
    Queue,
}

/// Every registered analyzer, as `GET /api/v1/analyzers` answers.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AnalyzerList {
    pub analyzers: Vec<AnalyzerView>,
}

/// An analyzer as the APIs show it (analyzer_service's, and search's for the dashboard).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AnalyzerView {
    pub id: String,
    /// `{"url": …}` or `"queue"`.
    #[schema(value_type = Object)]
    pub target: serde_json::Value,
    pub weight: f64,
    /// Its weight over the online analyzers' total (0 while offline).
    pub share: f64,
    pub online: bool,
    pub lease_until: DateTime<Utc>,
    pub last_heartbeat: DateTime<Utc>,
    pub registered_at: DateTime<Utc>,
    pub delivered: u64,
    /// Its part of everything delivered to the analyzers registered now, since each
    /// registered.
    pub observed_share: f64,
    /// Logs it accepted over the last minute, and its part of all accepted then.
    pub delivered_last_minute: f64,
    pub observed_share_last_minute: f64,
    /// Deliveries failed in a row, and ever.
    pub failures: u32,
    pub failed_total: u64,
}

/// How `analyzers` look now to an API.
pub fn views(analyzers: &[Analyzer], max_failures: u32) -> Vec<AnalyzerView> {
    let now = Utc::now();
    let online_weight: f64 = analyzers
        .iter()
        .filter(|analyzer| analyzer.is_online(now, max_failures))
        .map(|analyzer| analyzer.weight)
        .sum();
    let delivered: u64 = analyzers.iter().map(|analyzer| analyzer.delivered).sum();
    let last_minute: f64 = analyzers
        .iter()
        .map(|analyzer| analyzer.delivered_last_minute(now))
        .sum();
    analyzers
        .iter()
        .map(|analyzer| {
            let online = analyzer.is_online(now, max_failures);
            AnalyzerView {
                id: analyzer.id.clone(),
                target: serde_json::to_value(&analyzer.target).unwrap_or(serde_json::Value::Null),
                weight: analyzer.weight,
                share: if online && online_weight > 0.0 {
                    analyzer.weight / online_weight
                } else {
                    0.0
                },
                online,
                lease_until: analyzer.lease_until,
                last_heartbeat: analyzer.last_heartbeat,
                registered_at: analyzer.registered_at,
                delivered: analyzer.delivered,
                observed_share: if delivered > 0 {
                    analyzer.delivered as f64 / delivered as f64
                } else {
                    0.0
                },
                delivered_last_minute: analyzer.delivered_last_minute(now),
                observed_share_last_minute: if last_minute > 0.0 {
                    analyzer.delivered_last_minute(now) / last_minute
                } else {
                    0.0
                },
                failures: analyzer.failures,
                failed_total: analyzer.failed_total,
            }
        })
        .collect()
}

/// One registered analyzer, as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analyzer {
    pub id: String,
    pub target: Target,
    pub weight: f64,
    pub lease_until: DateTime<Utc>,
    pub registered_at: DateTime<Utc>,
    pub last_heartbeat: DateTime<Utc>,
    /// Deliveries failed in a row.
    pub failures: u32,
    pub failed_total: u64,
    /// Logs it accepted, from every distributor.
    pub delivered: u64,
    /// Logs it accepted per minute since the epoch (the current and last, and any older
    /// ones not yet removed).
    pub minutes: std::collections::BTreeMap<i64, u64>,
}

impl Analyzer {
    /// Whether it gets a share now: its lease runs, and it has not failed `max_failures`
    /// deliveries in a row.
    pub fn is_online(&self, now: DateTime<Utc>, max_failures: u32) -> bool {
        self.lease_until > now && self.failures < max_failures
    }

    /// Logs it accepted over the minute before `now`: this minute's so far, and the part of
    /// the last minute's that the window still covers (as if spread evenly over it).
    pub fn delivered_last_minute(&self, now: DateTime<Utc>) -> f64 {
        let minute = minute_of(now);
        let elapsed = (now.timestamp_millis() - minute * 60_000) as f64 / 60_000.0;
        let count = |minute| self.minutes.get(&minute).copied().unwrap_or(0) as f64;
        count(minute) + count(minute - 1) * (1.0 - elapsed)
    }

    fn from_document(document: &Document) -> Option<Analyzer> {
        let time = |name| {
            document
                .get_datetime(name)
                .ok()
                .map(|value| value.to_chrono())
        };
        let count = |name| match document.get(name) {
            Some(Bson::Int32(value)) => u64::try_from(*value).unwrap_or(0),
            Some(Bson::Int64(value)) => u64::try_from(*value).unwrap_or(0),
            _ => 0,
        };
        let target = match document.get_str(fields::URL) {
            Ok(url) => Target::Url(url.to_owned()),
            Err(_) => Target::Queue,
        };
        Some(Analyzer {
            id: document.get_str("_id").ok()?.to_owned(),
            target,
            weight: document.get_f64(fields::WEIGHT).ok()?,
            lease_until: time(fields::LEASE_UNTIL)?,
            registered_at: time(fields::REGISTERED_AT)?,
            last_heartbeat: time(fields::LAST_HEARTBEAT)?,
            failures: u32::try_from(count(fields::FAILURES)).unwrap_or(u32::MAX),
            failed_total: count(fields::FAILED_TOTAL),
            delivered: count(fields::DELIVERED),
            minutes: document
                .get_document(fields::MINUTES)
                .map(|minutes| {
                    minutes
                        .iter()
                        .filter_map(|(minute, count)| {
                            let count = match count {
                                Bson::Int32(value) => u64::try_from(*value).ok()?,
                                Bson::Int64(value) => u64::try_from(*value).ok()?,
                                _ => return None,
                            };
                            Some((minute.parse().ok()?, count))
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

/// Minutes since the epoch.
fn minute_of(time: DateTime<Utc>) -> i64 {
    time.timestamp_millis().div_euclid(60_000)
}

fn date(time: DateTime<Utc>) -> Bson {
    Bson::DateTime(bson::DateTime::from_chrono(time))
}

impl Database {
    /// Registers `id` or updates its target and weight; either way its lease runs to
    /// `lease_until` and its failures in a row are forgotten.
    pub async fn register_analyzer(
        &self,
        id: &str,
        target: &Target,
        weight: f64,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let url = match target {
            Target::Url(url) => Bson::String(url.clone()),
            Target::Queue => Bson::Null,
        };
        let mut set = doc! {
            fields::WEIGHT: weight,
            fields::LEASE_UNTIL: date(lease_until),
            fields::LAST_HEARTBEAT: date(now),
            fields::FAILURES: 0,
        };
        let mut unset = Document::new();
        match url {
            Bson::Null => {
                unset.insert(fields::URL, "");
            }
            url => {
                set.insert(fields::URL, url);
            }
        }
        let mut update = doc! {
            "$set": set,
            "$setOnInsert": {
                fields::REGISTERED_AT: date(now),
                fields::DELIVERED: 0_i64,
                fields::FAILED_TOTAL: 0_i64,
            },
        };
        if !unset.is_empty() {
            update.insert("$unset", unset);
        }
        self.analyzers
            .update_one(doc! { "_id": id }, update)
            .upsert(true)
            .await
            .map_err(StoreError::Unavailable)?;
        Ok(())
    }

    /// Renews `id`'s lease and forgets its failures; `false` when it is not registered.
    pub async fn heartbeat_analyzer(
        &self,
        id: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let result = self
            .analyzers
            .update_one(
                doc! { "_id": id },
                doc! { "$set": {
                    fields::LEASE_UNTIL: date(lease_until),
                    fields::LAST_HEARTBEAT: date(now),
                    fields::FAILURES: 0,
                } },
            )
            .await
            .map_err(StoreError::Unavailable)?;
        Ok(result.matched_count > 0)
    }

    /// Deregisters `id`; `false` when it was not registered.
    pub async fn deregister_analyzer(&self, id: &str) -> Result<bool, StoreError> {
        let result = self
            .analyzers
            .delete_one(doc! { "_id": id })
            .await
            .map_err(StoreError::Unavailable)?;
        Ok(result.deleted_count > 0)
    }

    /// Every registered analyzer, by id; a document that is not one is skipped.
    pub async fn registered_analyzers(&self) -> Result<Vec<Analyzer>, StoreError> {
        let documents: Vec<Document> = self
            .analyzers
            .find(doc! {})
            .sort(doc! { "_id": 1 })
            .await
            .map_err(StoreError::Unavailable)?
            .try_collect()
            .await
            .map_err(StoreError::Unavailable)?;
        Ok(documents
            .iter()
            .filter_map(Analyzer::from_document)
            .collect())
    }

    /// Counts `count` logs `id` accepted at `now`; its failures in a row are over.
    pub async fn record_delivered(
        &self,
        id: &str,
        count: u64,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        let mut increments = doc! { fields::DELIVERED: count };
        increments.insert(format!("{}.{}", fields::MINUTES, minute_of(now)), count);
        self.analyzers
            .update_one(
                doc! { "_id": id },
                doc! { "$inc": increments, "$set": { fields::FAILURES: 0 } },
            )
            .await
            .map_err(StoreError::Unavailable)?;
        Ok(())
    }

    /// Removes `analyzer`'s minute counts older than the last minute, if it has any.
    pub async fn forget_old_minutes(
        &self,
        analyzer: &Analyzer,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let current = minute_of(now);
        let old: Document = analyzer
            .minutes
            .keys()
            .filter(|minute| **minute < current - 1)
            .map(|minute| {
                (
                    format!("{}.{minute}", fields::MINUTES),
                    Bson::String(String::new()),
                )
            })
            .collect();
        if old.is_empty() {
            return Ok(());
        }
        self.analyzers
            .update_one(doc! { "_id": analyzer.id.as_str() }, doc! { "$unset": old })
            .await
            .map_err(StoreError::Unavailable)?;
        Ok(())
    }

    /// Counts one failed delivery to `id`.
    pub async fn record_failed(&self, id: &str) -> Result<(), StoreError> {
        self.analyzers
            .update_one(
                doc! { "_id": id },
                doc! { "$inc": { fields::FAILURES: 1, fields::FAILED_TOTAL: 1_i64 } },
            )
            .await
            .map_err(StoreError::Unavailable)?;
        Ok(())
    }
}
