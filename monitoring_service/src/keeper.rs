//! The alert keeper: a task of its own that stores what the monitor raises and resolves
//! (one alert per rule and service across all monitors, by the store's marker) and sends
//! notifications. Consumption only queues events here, so MongoDB being slow or down never
//! stalls it.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use logagg::backoff::Backoff;
use logagg::store::alerts::{FiringAlert, Opened, StoredAlert};
use logagg::store::{Database, StoreError};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::metrics;
use crate::monitor::AlertEvent;
use crate::sinks::{Notification, Notifier};

/// What the consume loop asks of the keeper.
#[derive(Debug)]
pub enum Command {
    Event(AlertEvent),
    /// Reply with every alert firing now (another monitor's too), to adopt them.
    LoadFiring(oneshot::Sender<Vec<FiringAlert>>),
}

/// Starts the keeper on `tasks`; send it commands, it stops at `shutdown` or when all
/// senders go.
pub fn start(
    store: Database,
    notifier: Notifier,
    capacity: usize,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) -> mpsc::Sender<Command> {
    let (sender, receiver) = mpsc::channel(capacity);
    tasks.spawn(run(store, notifier, receiver, shutdown));
    sender
}

async fn run(
    store: Database,
    notifier: Notifier,
    mut commands: mpsc::Receiver<Command>,
    shutdown: CancellationToken,
) {
    // (rule, service) → the firing episode's id, as far as this monitor knows.
    let mut episodes: HashMap<(String, String), String> = HashMap::new();
    loop {
        let command = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = commands.recv() => match next {
                Some(command) => command,
                None => return,
            },
        };
        match command {
            Command::LoadFiring(reply) => {
                let Some(firing) = retry(&shutdown, || store.firing_alerts()).await else {
                    return;
                };
                for alert in &firing {
                    episodes.insert(
                        (alert.rule.clone(), alert.service.clone()),
                        alert.episode.clone(),
                    );
                }
                let _ = reply.send(firing);
            }
            Command::Event(event) => {
                let key = (event.rule.clone(), event.service.clone());
                if event.fired {
                    let alert = stored(&event, uuid::Uuid::now_v7().to_string());
                    let Some(opened) = retry(&shutdown, || store.open_alert(&alert)).await else {
                        return;
                    };
                    match opened {
                        Opened::New => {
                            info!(alert = %alert.id, rule = %alert.rule, service = %alert.service, value = alert.value, "alert fired");
                            metrics::counter!(metrics::ALERTS_FIRED).increment(1);
                            metrics::gauge!(metrics::ALERTS_FIRING).increment(1.0);
                            notifier.notify(&Notification::new(&alert, true));
                            episodes.insert(key, alert.id);
                        }
                        Opened::AlreadyFiring(episode) => {
                            metrics::counter!(metrics::ALERTS_JOINED).increment(1);
                            episodes.insert(key, episode);
                        }
                    }
                } else {
                    let episode = match episodes.remove(&key) {
                        Some(episode) => Some(episode),
                        None => retry(&shutdown, || store.firing_alerts())
                            .await
                            .unwrap_or_default()
                            .into_iter()
                            .find(|alert| {
                                (alert.rule.as_str(), alert.service.as_str())
                                    == (key.0.as_str(), key.1.as_str())
                            })
                            .map(|alert| alert.episode),
                    };
                    let Some(episode) = episode else {
                        metrics::counter!(metrics::KEEPER_HANDLED).increment(1);
                        continue;
                    };
                    let alert = stored(&event, episode);
                    let Some(closed) = retry(&shutdown, || store.resolve_alert(&alert)).await
                    else {
                        return;
                    };
                    if closed {
                        info!(alert = %alert.id, rule = %alert.rule, service = %alert.service, "alert resolved");
                        metrics::counter!(metrics::ALERTS_RESOLVED).increment(1);
                        metrics::gauge!(metrics::ALERTS_FIRING).decrement(1.0);
                        notifier.notify(&Notification::new(&alert, false));
                    }
                }
                metrics::counter!(metrics::KEEPER_HANDLED).increment(1);
            }
        }
    }
}

fn stored(event: &AlertEvent, id: String) -> StoredAlert {
    let time = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
    StoredAlert {
        id,
        rule: event.rule.clone(),
        service: event.service.clone(),
        value: event.value,
        threshold: event.threshold,
        window_seconds: event.window_seconds,
        started_at: time(event.started_ms),
        resolved_at: event.resolved_ms.map(time),
        peak: event.peak,
        sample_ids: event.sample_ids.clone(),
    }
}

/// Retries a store call with backoff until it succeeds; `None` at shutdown.
async fn retry<T, F, Fut>(shutdown: &CancellationToken, mut call: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        match call().await {
            Ok(value) => return Some(value),
            Err(error) => {
                let delay = backoff.next_delay();
                warn!(%error, retry_in_ms = delay.as_millis() as u64, "alert store unavailable");
                if !logagg::shutdown::sleep_unless_cancelled(delay, shutdown).await {
                    return None;
                }
            }
        }
    }
}
