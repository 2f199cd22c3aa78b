//! Retention's queries: expired documents in time order through an index, deletes by `_id`,
//! and the record of each run.

use bson::{doc, Bson, Document};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mongodb::options::IndexOptions;
use mongodb::{Collection, IndexModel};

use super::{alert_fields, fields, Database, StoreError};

/// Index on alerts' resolution time, which retention purges by.
pub const INDEX_ALERT_RESOLVED: &str = "resolved_at";

/// Field names of a retention run document.
pub mod run_fields {
    pub const ID: &str = "_id";
    pub const HOLDER: &str = "holder";
    pub const TRIGGER: &str = "trigger";
    pub const STATUS: &str = "status";
    pub const STARTED_AT: &str = "started_at";
    pub const FINISHED_AT: &str = "finished_at";
    pub const REPORT: &str = "report";
    pub const ERROR: &str = "error";
}

/// `status` of a run: still going (or killed while going), finished, or stopped by an error.
pub mod run_status {
    pub const RUNNING: &str = "running";
    pub const COMPLETED: &str = "completed";
    pub const FAILED: &str = "failed";
}

/// Which collection a purge works on, and the time field it orders by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurgeTarget {
    Logs,
    Alerts,
}

impl PurgeTarget {
    pub fn time_field(self) -> &'static str {
        match self {
            PurgeTarget::Logs => fields::TIMESTAMP,
            PurgeTarget::Alerts => alert_fields::RESOLVED_AT,
        }
    }
}

/// `filter` with its time condition narrowed to `[from, until)`: the query
/// [`Database::expired_batch`] sends.
pub fn windowed_filter(
    target: PurgeTarget,
    filter: Document,
    from: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> Document {
    let time_field = target.time_field();
    let mut query = filter;
    let mut time_condition = query.get_document(time_field).cloned().unwrap_or_default();
    if let Some(from) = from {
        time_condition.insert("$gte", bson::DateTime::from_chrono(from));
    }
    if let Some(until) = until {
        time_condition.insert("$lt", bson::DateTime::from_chrono(until));
    }
    if !time_condition.is_empty() {
        query.insert(time_field, time_condition);
    }
    query
}

impl Database {
    fn purge_collection(&self, target: PurgeTarget) -> &Collection<Document> {
        match target {
            PurgeTarget::Logs => &self.logs,
            PurgeTarget::Alerts => &self.alerts,
        }
    }

    /// The indexes retention walks: logs by time (shared with search) and alerts by
    /// resolution time. Idempotent.
    pub async fn ensure_retention_indexes(&self) -> Result<(), StoreError> {
        self.ensure_indexes().await?;
        let resolved = IndexModel::builder()
            .keys(doc! { alert_fields::RESOLVED_AT: 1 })
            .options(
                IndexOptions::builder()
                    .name(INDEX_ALERT_RESOLVED.to_owned())
                    .build(),
            )
            .build();
        self.alerts
            .create_index(resolved)
            .await
            .map_err(StoreError::Unavailable)?;
        Ok(())
    }

    /// Up to `limit` documents matching `filter` whose time also lies in `[from, until)`
    /// (either bound optional; `until` must not exceed the filter's own upper bound), oldest
    /// first. The window is merged into the filter's time condition rather than added with
    /// `$and`, and no index is hinted: SecantusDB serves a flat range on the time index in
    /// milliseconds but took seconds with either at a million documents.
    pub async fn expired_batch(
        &self,
        target: PurgeTarget,
        filter: Document,
        from: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        limit: usize,
        whole: bool,
    ) -> Result<Vec<Document>, StoreError> {
        let time_field = target.time_field();
        let query = windowed_filter(target, filter, from, until);
        let mut find = self
            .purge_collection(target)
            .find(query)
            .sort(doc! { time_field: 1 })
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .batch_size(u32::try_from(limit).unwrap_or(u32::MAX));
        if !whole {
            find = find.projection(doc! { "_id": 1, time_field: 1 });
        }
        find.await
            .map_err(StoreError::Unavailable)?
            .try_collect()
            .await
            .map_err(StoreError::Unavailable)
    }

    /// Deletes the documents with these `_id`s; returns how many went.
    pub async fn delete_ids(&self, target: PurgeTarget, ids: Vec<Bson>) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        self.purge_collection(target)
            .delete_many(doc! { "_id": { "$in": ids } })
            .await
            .map(|result| result.deleted_count)
            .map_err(StoreError::Unavailable)
    }

    /// How many documents match `filter` (a dry run's answer).
    pub async fn count_matching(
        &self,
        target: PurgeTarget,
        filter: Document,
    ) -> Result<u64, StoreError> {
        self.purge_collection(target)
            .count_documents(filter)
            .await
            .map_err(StoreError::Unavailable)
    }

    /// Records that run `run_id` started.
    pub async fn record_run_start(
        &self,
        run_id: &str,
        holder: &str,
        trigger: &str,
        started_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.retention_runs
            .insert_one(doc! {
                run_fields::ID: run_id,
                run_fields::HOLDER: holder,
                run_fields::TRIGGER: trigger,
                run_fields::STATUS: run_status::RUNNING,
                run_fields::STARTED_AT: bson::DateTime::from_chrono(started_at),
            })
            .await
            .map(|_| ())
            .map_err(StoreError::Unavailable)
    }

    /// Records how run `run_id` ended, with its report (and error, if it failed).
    pub async fn record_run_end(
        &self,
        run_id: &str,
        status: &str,
        finished_at: DateTime<Utc>,
        report: Document,
        error: Option<String>,
    ) -> Result<(), StoreError> {
        let mut set = doc! {
            run_fields::STATUS: status,
            run_fields::FINISHED_AT: bson::DateTime::from_chrono(finished_at),
            run_fields::REPORT: report,
        };
        if let Some(error) = error {
            set.insert(run_fields::ERROR, error);
        }
        self.retention_runs
            .update_one(doc! { run_fields::ID: run_id }, doc! { "$set": set })
            .await
            .map(|_| ())
            .map_err(StoreError::Unavailable)
    }

    /// When the latest run that completed had started, if any ever did.
    pub async fn last_completed_run(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let latest = self
            .retention_runs
            .find_one(doc! { run_fields::STATUS: run_status::COMPLETED })
            .sort(doc! { run_fields::STARTED_AT: -1 })
            .await
            .map_err(StoreError::Unavailable)?;
        Ok(latest
            .and_then(|run| run.get_datetime(run_fields::STARTED_AT).ok().copied())
            .map(|started| started.to_chrono()))
    }
}
