//! One purge run: take the lease, walk each policy's expired logs oldest first in bounded
//! batches (archiving each batch first when enabled), then the expired alerts, and record
//! what was done.

use std::sync::Arc;
use std::time::Instant;

use bson::{Bson, Document};
use chrono::{DateTime, Utc};
use logagg::http_error::ErrorCode;
use logagg::settings::RetentionSettings;
use logagg::shutdown::sleep_unless_cancelled;
use logagg::store::lease::LeaseHolder;
use logagg::store::retention::{run_status, PurgeTarget};
use logagg::store::{Database, StoreError};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::archive::{ArchiveError, Archiver};
use crate::clock::Clock;
use crate::metrics;
use crate::policy::{self, Policy};

/// Name of the lease document that makes purges one at a time across replicas.
pub const LEASE_NAME: &str = "retention";

/// First time window a purge queries; it then adapts to how dense the logs are.
const INITIAL_WINDOW: chrono::Duration = chrono::Duration::hours(1);
const MIN_WINDOW: chrono::Duration = chrono::Duration::seconds(1);
const MAX_WINDOW: chrono::Duration = chrono::Duration::days(366);

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Schedule,
    /// At start, because a scheduled run was missed while the service was down.
    Missed,
    Retry,
    Manual,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Missed => "missed",
            Trigger::Retry => "retry",
            Trigger::Manual => "manual",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    #[error("another replica is purging: lease held by {} until {}", .0.holder, .0.expires_at)]
    LeaseHeld(LeaseHolder),
    #[error("the purge lease was lost to {} mid-run; stopped before the next batch", .0.holder)]
    LeaseLost(LeaseHolder),
    #[error("purge interrupted by shutdown; the next run completes it")]
    Interrupted,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("archiving failed, nothing of the batch was deleted: {0}")]
    Archive(#[from] ArchiveError),
    #[error("archive task failed: {0}")]
    ArchiveTask(String),
}

impl PurgeError {
    /// Label for the failures metric.
    pub fn reason(&self) -> ErrorCode {
        match self {
            PurgeError::LeaseHeld(_) => ErrorCode::LeaseHeld,
            PurgeError::LeaseLost(_) => ErrorCode::LeaseLost,
            PurgeError::Interrupted => ErrorCode::Interrupted,
            PurgeError::Store(_) => ErrorCode::Store,
            PurgeError::Archive(_) | PurgeError::ArchiveTask(_) => ErrorCode::Archive,
        }
    }
}

/// What a run did (or, dry, would do) under one policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PolicyReport {
    pub policy: String,
    pub max_age_days: i64,
    /// Logs with a timestamp before this were expired.
    pub cutoff: DateTime<Utc>,
    /// Deleted, or in a dry run, that would be deleted.
    pub deleted: u64,
    pub archived: u64,
    pub batches: u64,
}

/// A run's report, returned to the CLI and HTTP callers and stored with the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub trigger: Trigger,
    pub dry_run: bool,
    /// The clock's time the run worked from.
    pub as_of: DateTime<Utc>,
    pub policies: Vec<PolicyReport>,
    pub alerts: PolicyReport,
    /// Stats rollups deleted: those of hours older than the longest policy's age (they
    /// summarise logs no policy keeps any more). Not counted by a dry run.
    pub stats_deleted: u64,
    /// Word blocks deleted: those all of whose logs are older than the oldest log kept.
    /// Not counted by a dry run.
    #[serde(default)]
    pub blocks_deleted: u64,
    pub duration_ms: u64,
}

impl RunReport {
    pub fn total_deleted(&self) -> u64 {
        self.policies.iter().map(|policy| policy.deleted).sum()
    }
}

/// Everything a run needs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Purger {
    pub store: Database,
    pub settings: Arc<RetentionSettings>,
    pub clock: Arc<dyn Clock>,
    /// This replica's name in the lease and run records.
    pub holder: String,
    pub shutdown: CancellationToken,
}

impl Purger {
    /// Runs a purge now, or with `dry_run` counts what it would delete without deleting or
    /// taking the lease.
    pub async fn run(&self, trigger: Trigger, dry_run: bool) -> Result<RunReport, PurgeError> {
        let as_of = self.clock.now();
        let policies = policy::compile(&self.settings);
        let mut report = RunReport {
            run_id: uuid::Uuid::now_v7().to_string(),
            trigger,
            dry_run,
            as_of,
            policies: policies
                .iter()
                .map(|policy| PolicyReport {
                    policy: policy.name.clone(),
                    max_age_days: policy.max_age.num_days(),
                    cutoff: policy.cutoff(as_of),
                    ..PolicyReport::default()
                })
                .collect(),
            alerts: PolicyReport {
                policy: "alerts".into(),
                max_age_days: self.settings.alert_max_age_days,
                cutoff: as_of
                    .checked_sub_signed(chrono::Duration::days(self.settings.alert_max_age_days))
                    .unwrap_or(DateTime::<Utc>::MIN_UTC),
                ..PolicyReport::default()
            },
            stats_deleted: 0,
            blocks_deleted: 0,
            duration_ms: 0,
        };
        let started = Instant::now();
        if dry_run {
            self.count_expired(&policies, &mut report).await?;
            report.duration_ms = elapsed_ms(started);
            return Ok(report);
        }

        if let Some(holder) = self.take_lease().await? {
            metrics::counter!(metrics::RUNS, "outcome" => "skipped").increment(1);
            return Err(PurgeError::LeaseHeld(holder));
        }
        self.store
            .record_run_start(&report.run_id, &self.holder, trigger.as_str(), as_of)
            .await?;
        info!(run_id = %report.run_id, trigger = trigger.as_str(), %as_of, "purge started");
        let outcome = self.purge(&policies, &mut report).await;
        report.duration_ms = elapsed_ms(started);
        self.finish(&report, outcome.as_ref().err()).await;
        outcome.map(|()| report)
    }

    async fn count_expired(
        &self,
        policies: &[Policy],
        report: &mut RunReport,
    ) -> Result<(), PurgeError> {
        for (index, policy_report) in report.policies.iter_mut().enumerate() {
            let filter = policy::expired_filter(policies, index, report.as_of);
            policy_report.deleted = self.store.count_matching(PurgeTarget::Logs, filter).await?;
        }
        let alert_filter = policy::expired_alerts_filter(report.alerts.cutoff);
        report.alerts.deleted = self
            .store
            .count_matching(PurgeTarget::Alerts, alert_filter)
            .await?;
        Ok(())
    }

    async fn purge(&self, policies: &[Policy], report: &mut RunReport) -> Result<(), PurgeError> {
        let archiver = self
            .settings
            .archive_enabled
            .then(|| Archiver::new(&self.settings.archive_dir));
        for (index, policy_report) in report.policies.iter_mut().enumerate() {
            let filter = policy::expired_filter(policies, index, report.as_of);
            let end = policy_report.cutoff;
            self.purge_target(
                PurgeTarget::Logs,
                filter,
                end,
                archiver.as_ref(),
                policy_report,
            )
            .await?;
        }
        let end = report.alerts.cutoff;
        let alert_filter = policy::expired_alerts_filter(end);
        self.purge_target(
            PurgeTarget::Alerts,
            alert_filter,
            end,
            None,
            &mut report.alerts,
        )
        .await?;
        let longest_kept = report.policies.iter().map(|policy| policy.cutoff).min();
        if let Some(cutoff) = longest_kept {
            report.stats_deleted = self.store.delete_stats_before(cutoff).await?;
        }
        report.blocks_deleted = self.store.purge_blocks().await?;
        Ok(())
    }

    /// Deletes what `filter` matches (all of it older than `end`), oldest first, a bounded
    /// batch at a time, renewing the lease before each batch so a replica that lost it stops.
    ///
    /// Each query covers a time window `[from, from + window)` sized to hold about one batch:
    /// the span the last full batch took, or twice the last window when it came back short.
    /// So no query ranges over more than a batch's worth of the index, whatever the server's
    /// planner does with a limit, and documents the filter skips are walked past once.
    async fn purge_target(
        &self,
        target: PurgeTarget,
        filter: Document,
        end: DateTime<Utc>,
        archiver: Option<&Archiver>,
        report: &mut PolicyReport,
    ) -> Result<(), PurgeError> {
        let batch_size = self.settings.batch_size;
        let pause = self.settings.batch_pause_ms;
        let time_of = |document: &Document| {
            document
                .get_datetime(target.time_field())
                .ok()
                .map(|time| time.to_chrono())
        };
        let oldest = self
            .store
            .expired_batch(target, filter.clone(), None, None, 1, false)
            .await?;
        let Some(mut from) = oldest.first().and_then(time_of) else {
            return Ok(());
        };
        let mut window = INITIAL_WINDOW;
        while from < end {
            if self.shutdown.is_cancelled() {
                return Err(PurgeError::Interrupted);
            }
            if let Some(holder) = self.take_lease().await? {
                return Err(PurgeError::LeaseLost(holder));
            }
            let until = from.checked_add_signed(window).unwrap_or(end).min(end);
            let batch = self
                .store
                .expired_batch(
                    target,
                    filter.clone(),
                    Some(from),
                    Some(until),
                    batch_size,
                    archiver.is_some(),
                )
                .await?;
            let full = batch.len() == batch_size;
            if full {
                let last = batch.last().and_then(time_of).unwrap_or(until);
                window = (last - from).max(MIN_WINDOW);
                from = last;
            } else {
                window = (window * 2).min(MAX_WINDOW);
                from = until;
            }
            if batch.is_empty() {
                continue;
            }
            self.delete_batch(target, &batch, archiver, report).await?;
            if !sleep_unless_cancelled(pause, &self.shutdown).await {
                return Err(PurgeError::Interrupted);
            }
        }
        Ok(())
    }

    /// Archives (when enabled) then deletes one batch, counting it in the report and metrics.
    async fn delete_batch(
        &self,
        target: PurgeTarget,
        batch: &[Document],
        archiver: Option<&Archiver>,
        report: &mut PolicyReport,
    ) -> Result<(), PurgeError> {
        if let Some(archiver) = archiver {
            report.archived += archive(archiver, batch).await?;
            metrics::counter!(metrics::ARCHIVED, "policy" => report.policy.clone())
                .increment(batch.len() as u64);
        }
        let ids: Vec<Bson> = batch
            .iter()
            .filter_map(|document| document.get("_id").cloned())
            .collect();
        let deleted = self.store.delete_ids(target, ids).await?;
        report.deleted += deleted;
        report.batches += 1;
        match target {
            PurgeTarget::Logs => {
                metrics::counter!(metrics::DELETED, "policy" => report.policy.clone())
                    .increment(deleted);
            }
            PurgeTarget::Alerts => {
                metrics::counter!(metrics::ALERTS_DELETED).increment(deleted);
            }
        }
        Ok(())
    }

    /// Takes or renews the lease; `Some(holder)` when another replica has it.
    async fn take_lease(&self) -> Result<Option<LeaseHolder>, StoreError> {
        self.store
            .acquire_lease(
                LEASE_NAME,
                &self.holder,
                self.clock.now(),
                self.settings.lease_seconds,
            )
            .await
    }

    /// Records the run's end, releases the lease, and updates the metrics. Best effort: a
    /// record that cannot be written is logged, and an unreleased lease expires.
    async fn finish(&self, report: &RunReport, error: Option<&PurgeError>) {
        let finished_at = self.clock.now();
        let status = if error.is_some() {
            run_status::FAILED
        } else {
            run_status::COMPLETED
        };
        let report_document = bson::to_document(report).unwrap_or_default();
        if let Err(record_error) = self
            .store
            .record_run_end(
                &report.run_id,
                status,
                finished_at,
                report_document,
                error.map(ToString::to_string),
            )
            .await
        {
            warn!(error = %record_error, run_id = %report.run_id, "could not record the run's end");
        }
        if !matches!(error, Some(PurgeError::LeaseLost(_))) {
            if let Err(release_error) = self.store.release_lease(LEASE_NAME, &self.holder).await {
                warn!(error = %release_error, "could not release the purge lease; it will expire");
            }
        }
        let end_seconds = finished_at.timestamp() as f64;
        metrics::gauge!(metrics::LAST_RUN).set(end_seconds);
        metrics::histogram!(metrics::RUN_DURATION).record(report.duration_ms as f64 / 1000.0);
        match error {
            None => {
                metrics::counter!(metrics::RUNS, "outcome" => "completed").increment(1);
                metrics::gauge!(metrics::LAST_SUCCESS).set(end_seconds);
                info!(
                    run_id = %report.run_id,
                    deleted = report.total_deleted(),
                    alerts_deleted = report.alerts.deleted,
                    duration_ms = report.duration_ms,
                    "purge completed"
                );
            }
            Some(error) => {
                metrics::counter!(metrics::RUNS, "outcome" => "failed").increment(1);
                metrics::counter!(metrics::FAILURES, "reason" => error.reason().as_str())
                    .increment(1);
                warn!(run_id = %report.run_id, %error, deleted = report.total_deleted(), "purge stopped early");
            }
        }
    }
}

/// Archives a batch on a blocking thread; returns how many documents it wrote.
async fn archive(archiver: &Archiver, batch: &[Document]) -> Result<u64, PurgeError> {
    let archiver = archiver.clone();
    let documents = batch.to_vec();
    let count = documents.len() as u64;
    tokio::task::spawn_blocking(move || archiver.append(&documents))
        .await
        .map_err(|error| PurgeError::ArchiveTask(error.to_string()))??;
    Ok(count)
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}
