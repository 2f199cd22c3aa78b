//! Where notifications go: the log, generic webhooks (JSON POST), Slack-compatible webhooks
//! (`{"text"}`), and the alerts exchange. Each sink has its own task and a bounded queue: a
//! slow or failing sink delays only itself, and when its queue is full new notifications
//! for it are dropped and counted, never waited for.

use std::time::Duration;

use lapin::BasicProperties;
use logagg::backoff::Backoff;
use logagg::broker;
use logagg::runtime::{Declare, LazyChannel};
use logagg::settings::{BrokerSettings, SinkKind, SinkSettings};
use logagg::store::alerts::StoredAlert;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::metrics;

/// What a sink receives when an alert fires or resolves.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    /// `fired` or `resolved`.
    pub event: &'static str,
    pub alert: StoredAlert,
}

impl Notification {
    pub fn new(alert: &StoredAlert, fired: bool) -> Notification {
        Notification {
            event: if fired { "fired" } else { "resolved" },
            alert: alert.clone(),
        }
    }

    /// One line for people: the log sink's message and Slack's text.
    pub fn summary(&self) -> String {
        let alert = &self.alert;
        match self.event {
            "fired" => format!(
                "[FIRING] {} on {}: {} (threshold {}) in {} s",
                alert.rule, alert.service, alert.value, alert.threshold, alert.window_seconds
            ),
            _ => format!(
                "[RESOLVED] {} on {}: now {} (peak {}, threshold {})",
                alert.rule, alert.service, alert.value, alert.peak, alert.threshold
            ),
        }
    }
}

/// Fans notifications out to the sinks' queues.
#[derive(Debug, Clone)]
pub struct Notifier {
    queues: Vec<(String, mpsc::Sender<Notification>)>,
}

impl Notifier {
    /// Starts one task per sink (and one for the alerts exchange) on `tasks`; they stop at
    /// `shutdown`.
    pub fn start(
        sinks: &[SinkSettings],
        broker_settings: &BrokerSettings,
        queue: usize,
        tasks: &TaskTracker,
        shutdown: &CancellationToken,
    ) -> Notifier {
        let client = reqwest::Client::new();
        let mut queues = Vec::new();
        for (index, sink) in sinks.iter().enumerate() {
            let name = format!("{}-{index}", sink.kind.as_str());
            let (sender, receiver) = mpsc::channel(queue);
            tasks.spawn(run_sink(
                Sink::Http {
                    kind: sink.kind,
                    settings: sink.clone(),
                    client: client.clone(),
                },
                name.clone(),
                receiver,
                shutdown.clone(),
            ));
            queues.push((name, sender));
        }
        let (sender, receiver) = mpsc::channel(queue);
        tasks.spawn(run_sink(
            Sink::Exchange(LazyChannel::new(
                broker_settings.clone(),
                "monitoring_service-alerts",
                Declare::AlertsExchange,
            )),
            "alerts-exchange".into(),
            receiver,
            shutdown.clone(),
        ));
        queues.push(("alerts-exchange".into(), sender));
        Notifier { queues }
    }

    /// Queues `notification` for every sink without waiting.
    pub fn notify(&self, notification: &Notification) {
        for (name, queue) in &self.queues {
            if queue.try_send(notification.clone()).is_err() {
                metrics::counter!(metrics::SINK_DROPPED, "sink" => name.clone()).increment(1);
                warn!(sink = %name, "sink queue full or closed; notification dropped");
            }
        }
    }
}

// One value per sink task, never stored in bulk: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Sink {
    Http {
        kind: SinkKind,
        settings: SinkSettings,
        client: reqwest::Client,
    },
    /// The alerts exchange, over a channel opened on first use.
    Exchange(LazyChannel),
}

async fn run_sink(
    mut sink: Sink,
    name: String,
    mut queue: mpsc::Receiver<Notification>,
    shutdown: CancellationToken,
) {
    loop {
        let notification = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = queue.recv() => match next {
                Some(notification) => notification,
                None => return,
            },
        };
        let (attempts, initial_delay) = match &sink {
            Sink::Http { settings, .. } => (settings.max_attempts, settings.retry_initial_ms),
            Sink::Exchange(_) => (5, Duration::from_millis(500)),
        };
        let mut backoff = Backoff::new(initial_delay, Duration::from_secs(30));
        let mut delivered = false;
        for attempt in 1..=attempts.max(1) {
            match sink.deliver(&notification).await {
                Ok(()) => {
                    delivered = true;
                    break;
                }
                Err(error) => {
                    metrics::counter!(metrics::SINK_FAILURES, "sink" => name.clone()).increment(1);
                    warn!(sink = %name, attempt, %error, "notification not delivered");
                    if attempt < attempts
                        && !logagg::shutdown::sleep_unless_cancelled(
                            backoff.next_delay(),
                            &shutdown,
                        )
                        .await
                    {
                        return;
                    }
                }
            }
        }
        if delivered {
            metrics::counter!(metrics::NOTIFICATIONS_SENT, "sink" => name.clone()).increment(1);
        } else {
            metrics::counter!(metrics::SINK_GAVE_UP, "sink" => name.clone()).increment(1);
        }
    }
}

impl Sink {
    async fn deliver(&mut self, notification: &Notification) -> Result<(), String> {
        match self {
            Sink::Http {
                kind,
                settings,
                client,
            } => {
                if *kind == SinkKind::Log {
                    info!(alert = %notification.alert.id, "{}", notification.summary());
                    return Ok(());
                }
                let request = client.post(&settings.url).timeout(settings.timeout_ms);
                let request = if *kind == SinkKind::Slack {
                    request.json(&serde_json::json!({ "text": notification.summary() }))
                } else {
                    request.json(notification)
                };
                let response = request.send().await.map_err(|error| error.to_string())?;
                if response.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("HTTP {}", response.status()))
                }
            }
            Sink::Exchange(lazy) => {
                let channel = lazy.channel().await.map_err(|error| error.to_string())?;
                let body = serde_json::to_vec(notification).map_err(|error| error.to_string())?;
                let routing_key = format!(
                    "alert.{}.{}",
                    notification.event, notification.alert.service
                );
                let properties = BasicProperties::default()
                    .with_content_type("application/json".into())
                    .with_delivery_mode(broker::PERSISTENT)
                    .with_message_id(
                        format!("{}.{}", notification.alert.id, notification.event).into(),
                    );
                let published = broker::publish_alert(
                    &channel,
                    &lazy.settings().alerts_exchange,
                    &routing_key,
                    &body,
                    properties,
                )
                .await;
                if published.is_err() {
                    lazy.reset().await;
                }
                published.map_err(|error| error.to_string())
            }
        }
    }
}
