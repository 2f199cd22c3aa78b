//! retention_service: purges logs and resolved alerts past their retention, on a cron
//! schedule, one replica at a time, archiving them first when asked.

pub mod admin;
pub mod archive;
pub mod clock;
pub mod metrics;
pub mod policy;
pub mod purge;
pub mod service;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use logagg::backoff::retry_until_ok;
use logagg::settings::{Section, Settings};
use logagg::store::{Database, InsertOutcome};
use logagg::telemetry::{self, Health};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::Clock;
use crate::purge::{Purger, RunReport, Trigger};

/// Name shown for the service's MongoDB client and in lease holders.
pub const SERVICE_NAME: &str = "retention_service";
/// The settings sections retention reads and checks; the others are left unread.
pub const SECTIONS: &[Section] = &[
    Section::Store,
    Section::Telemetry,
    Section::Retention,
    Section::Auth,
];

/// Runs the service until `shutdown`: admin server (with `POST /api/v1/purge`), indexes, the
/// cron job, and the loop that runs purges.
pub async fn run(
    settings: Settings,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    metrics::describe();
    let health = Health::default();
    health.set("store", false);
    let (requests, queued) = mpsc::channel(service::QUEUE_CAPACITY);
    let admin_routes = telemetry::admin_router(health.clone())
        .merge(admin::router(requests.clone(), &settings.auth));
    let (_admin_address, admin_task) = telemetry::serve_admin(
        settings.telemetry.admin_listen,
        admin_routes,
        shutdown.clone(),
    )
    .await
    .context("binding the admin server")?;
    let purger = connect(&settings, clock, shutdown.clone()).await?;
    let ready = retry_until_ok(
        "create indexes",
        logagg::runtime::startup_backoff(),
        &shutdown,
        || purger.store.ensure_retention_indexes(),
    )
    .await;
    if ready {
        health.set("store", true);
        let mut scheduler =
            service::start_scheduler(&settings.retention.schedule, requests).await?;
        info!(schedule = %settings.retention.schedule, "retention scheduled (UTC)");
        service::run_loop(purger.clone(), queued, shutdown.clone()).await;
        if let Err(error) = scheduler.shutdown().await {
            warn!(%error, "scheduler did not stop cleanly");
        }
    }
    purger.store.shutdown().await;
    info!("retention stopped");
    let _ = admin_task.await;
    Ok(())
}

/// One purge now (the `purge` subcommand), or with `dry_run` a report of what it would
/// delete.
pub async fn purge_once(
    settings: &Settings,
    clock: Arc<dyn Clock>,
    dry_run: bool,
    shutdown: CancellationToken,
) -> Result<RunReport, anyhow::Error> {
    let purger = connect(settings, clock, shutdown).await?;
    purger
        .store
        .ensure_retention_indexes()
        .await
        .context("creating indexes")?;
    let outcome = purger.run(Trigger::Manual, dry_run).await;
    purger.store.shutdown().await;
    Ok(outcome?)
}

/// What a restore did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RestoreReport {
    pub files: usize,
    pub read: u64,
    pub inserted: u64,
    /// Already present (restoring twice, or logs that were never purged).
    pub duplicates: u64,
}

/// Writes the documents of archive files back into the logs collection. Records already
/// there are left as they are, so restoring twice is harmless.
pub async fn restore(settings: &Settings, files: &[PathBuf]) -> anyhow::Result<RestoreReport> {
    let store = Database::connect(&settings.store, SERVICE_NAME)
        .await
        .context("configuring the MongoDB client")?;
    let mut report = RestoreReport::default();
    for file in files {
        let path = file.clone();
        let documents = tokio::task::spawn_blocking(move || archive::read_archive(&path))
            .await
            .context("reading the archive")??;
        report.files += 1;
        report.read += documents.len() as u64;
        for chunk in documents.chunks(1_000) {
            let InsertOutcome {
                inserted,
                duplicates,
                rejected,
                ..
            } = store
                .insert_documents(chunk.to_vec())
                .await
                .with_context(|| format!("restoring {}", file.display()))?;
            if let Some((index, reason)) = rejected.first() {
                anyhow::bail!("{}: record {index} refused: {reason}", file.display());
            }
            report.inserted += inserted as u64;
            report.duplicates += duplicates as u64;
        }
        info!(file = %file.display(), "restored");
    }
    store.shutdown().await;
    Ok(report)
}

async fn connect(
    settings: &Settings,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> anyhow::Result<Purger> {
    let store = Database::connect(&settings.store, SERVICE_NAME)
        .await
        .context("configuring the MongoDB client")?;
    Ok(Purger {
        store,
        settings: Arc::new(settings.retention.clone()),
        clock,
        holder: format!(
            "{}@{}:{}",
            SERVICE_NAME,
            logagg::broker::host_name(),
            std::process::id()
        ),
        shutdown,
    })
}
