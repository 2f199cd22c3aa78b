//! The long-running service: a tokio-cron-scheduler job and the admin route queue run
//! requests; one loop runs them one after another, catches up a missed run at start and
//! retries a failed one with backoff.

use std::time::Duration;

use anyhow::Context;
use logagg::backoff::Backoff;
use logagg::settings::parse_schedule;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::policy::run_missed;
use crate::purge::{PurgeError, Purger, RunReport, Trigger};

/// Run requests waiting at most; a manual request beyond that is refused as busy.
pub const QUEUE_CAPACITY: usize = 4;

/// A request to run a purge, with where to send the outcome (manual runs).
#[derive(Debug)]
pub struct RunRequest {
    pub trigger: Trigger,
    pub dry_run: bool,
    pub reply: Option<oneshot::Sender<Result<RunReport, PurgeError>>>,
}

/// Starts the cron job that queues a scheduled run on `requests`.
pub async fn start_scheduler(
    schedule: &str,
    requests: mpsc::Sender<RunRequest>,
) -> anyhow::Result<JobScheduler> {
    let scheduler = JobScheduler::new()
        .await
        .context("creating the scheduler")?;
    let job = Job::new_async(schedule, move |_job_id, _scheduler| {
        let requests = requests.clone();
        Box::pin(async move {
            let request = RunRequest {
                trigger: Trigger::Schedule,
                dry_run: false,
                reply: None,
            };
            if requests.try_send(request).is_err() {
                warn!("scheduled purge skipped: runs are already queued");
            }
        })
    })
    .with_context(|| format!("retention.schedule `{schedule}`"))?;
    scheduler.add(job).await.context("adding the purge job")?;
    scheduler.start().await.context("starting the scheduler")?;
    Ok(scheduler)
}

/// Runs queued requests until `shutdown`. First checks whether a scheduled run was missed
/// while no replica was up, and if so runs one now.
pub async fn run_loop(
    purger: Purger,
    mut requests: mpsc::Receiver<RunRequest>,
    shutdown: CancellationToken,
) {
    let mut retry_backoff = Backoff::new(Duration::from_secs(60), Duration::from_secs(1800));
    // A run the loop owes itself: the catch-up at start, or the retry of a failed run.
    let mut owed = catch_up(&purger).await;
    loop {
        let request = tokio::select! {
            _ = shutdown.cancelled() => break,
            request = requests.recv() => match request {
                Some(request) => request,
                None => break,
            },
            trigger = run_when_due(owed) => RunRequest { trigger, dry_run: false, reply: None },
        };
        let outcome = purger.run(request.trigger, request.dry_run).await;
        if !request.dry_run {
            owed = match &outcome {
                Ok(_) | Err(PurgeError::LeaseHeld(_) | PurgeError::Interrupted) => {
                    retry_backoff.reset();
                    None
                }
                Err(_) => {
                    let delay = retry_backoff.next_delay();
                    warn!(retry_in_seconds = delay.as_secs(), "purge will be retried");
                    Some((Instant::now() + delay, Trigger::Retry))
                }
            };
        }
        if let Err(PurgeError::LeaseHeld(holder)) = &outcome {
            info!(holder = %holder.holder, "another replica is purging; skipped");
        }
        if let Some(reply) = request.reply {
            let _ = reply.send(outcome);
        }
    }
}

/// A run now when a scheduled one was missed (or none ever completed); a retry in a minute
/// when past runs cannot be read; otherwise nothing.
async fn catch_up(purger: &Purger) -> Option<(Instant, Trigger)> {
    let Ok(schedule) = parse_schedule(&purger.settings.schedule) else {
        return None;
    };
    match purger.store.last_completed_run().await {
        Ok(last_completed) => {
            let missed = run_missed(&schedule, last_completed, purger.clock.now());
            if missed {
                info!(last_completed = ?last_completed, "a scheduled purge was missed; running one now");
            }
            missed.then(|| (Instant::now(), Trigger::Missed))
        }
        Err(error) => {
            error!(%error, "cannot read past runs; retrying the catch-up check later");
            Some((Instant::now() + Duration::from_secs(60), Trigger::Retry))
        }
    }
}

/// Resolves with the owed run's trigger when it is due; never when none is owed.
async fn run_when_due(owed: Option<(Instant, Trigger)>) -> Trigger {
    match owed {
        Some((due, trigger)) => {
            tokio::time::sleep_until(due).await;
            trigger
        }
        None => std::future::pending().await,
    }
}
