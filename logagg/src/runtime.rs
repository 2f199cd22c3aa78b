//! What every consuming service runs the same way: a broker session on a connection that is
//! reopened with backoff whenever it is lost, the index creation a service waits for at
//! start, and the one backoff each of them uses.

use std::future::Future;
use std::time::Duration;

use lapin::Connection;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::backoff::{retry_until_ok, Backoff};
use crate::broker::{self, BrokerError};
use crate::settings::BrokerSettings;
use crate::store::Database;
use crate::telemetry::Health;

/// How long a service's `run` waits at shutdown for its background tasks (sinks, the alert
/// keeper, live tails) before it returns without them.
pub const TASKS_DEADLINE: Duration = Duration::from_secs(10);

/// Closes `tracker` and waits for its tasks, at most `deadline`. `false` (with a WARN naming
/// how many were left) when some were still running.
pub async fn wait_for_tasks(tracker: &TaskTracker, deadline: Duration) -> bool {
    tracker.close();
    let finished = tokio::time::timeout(deadline, tracker.wait()).await.is_ok();
    if !finished {
        warn!(
            tasks = tracker.len(),
            deadline_ms = deadline.as_millis() as u64,
            "background tasks still running at the shutdown deadline"
        );
    }
    finished
}

/// Backoff of start-up steps that wait for a dependency (creating indexes).
pub fn startup_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(200), Duration::from_secs(10))
}

/// Why a broker session ended before shutdown; either way the connection is reopened.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// A task of the session (a collector's write) failed; its deliveries go back to the
    /// queue with the connection.
    #[error("a task of the session failed: {0}")]
    TaskFailed(String),
}

impl From<lapin::Error> for SessionError {
    fn from(error: lapin::Error) -> Self {
        SessionError::Broker(BrokerError::Operation(error))
    }
}

impl SessionError {
    /// What an operator should do about it, when there is something to do.
    pub fn hint(&self) -> Option<String> {
        match self {
            SessionError::Broker(error) => error.hint(),
            SessionError::TaskFailed(_) => None,
        }
    }
}

/// Work done on one broker connection: a consume loop.
pub trait BrokerSession: Send {
    /// Runs on `connection` until shutdown (`Ok`: stop for good) or a failure (`Err`: the
    /// connection is reopened and the session run again).
    fn run(
        &mut self,
        connection: &Connection,
    ) -> impl Future<Output = Result<(), SessionError>> + Send;
}

/// How a service's reconnect loop names itself: in RabbitMQ's connection list, in logs, and
/// in the counter of reconnects on its `/metrics`.
#[derive(Debug, Clone, Copy)]
pub struct Reconnecting<'a> {
    pub connection_name: &'a str,
    pub reconnects_metric: &'static str,
}

/// Runs `session` until `shutdown`, on a connection opened with backoff and reopened with
/// backoff after every broker failure. `health`'s `broker` check is false between sessions.
/// A failure an operator must fix (a queue declared with other arguments) is an ERROR with
/// the fix; the loop keeps retrying, so it recovers once the fix is made.
pub async fn run_with_reconnect<S: BrokerSession>(
    broker_settings: &BrokerSettings,
    names: Reconnecting<'_>,
    health: &Health,
    shutdown: &CancellationToken,
    session: &mut S,
) {
    let mut reconnect = Backoff::new(
        broker_settings.reconnect_initial_ms,
        broker_settings.reconnect_max_ms,
    );
    while !shutdown.is_cancelled() {
        let Some(connection) =
            broker::connect_with_backoff(broker_settings, names.connection_name, shutdown).await
        else {
            break;
        };
        let outcome = session.run(&connection).await;
        health.set("broker", false);
        let error = match outcome {
            Ok(()) => {
                let _ = connection.close(200, "shutting down".into()).await;
                break;
            }
            Err(error) => error,
        };
        metrics::counter!(names.reconnects_metric).increment(1);
        let delay = reconnect.next_delay();
        let retry_in_ms = delay.as_millis() as u64;
        match error.hint() {
            Some(hint) => error!(
                %error, %hint, retry_in_ms,
                "cannot consume until an operator fixes the broker topology"
            ),
            None => warn!(%error, retry_in_ms, "broker session lost; reconnecting"),
        }
        let _ = connection.close(320, "reconnecting".into()).await;
        if !crate::shutdown::sleep_unless_cancelled(delay, shutdown).await {
            break;
        }
    }
}

/// Creates the store's indexes, retrying with [`startup_backoff`] while MongoDB is
/// unreachable; marks `health`'s `store` check once done. `false` if shut down first.
pub async fn ensure_indexes(
    store: &Database,
    health: &Health,
    shutdown: &CancellationToken,
) -> bool {
    let ready = retry_until_ok("create indexes", startup_backoff(), shutdown, || {
        store.ensure_indexes()
    })
    .await;
    if ready {
        health.set("store", true);
        info!("indexes ready");
    }
    ready
}

/// Longest wait for each RabbitMQ node when a [`LazyChannel`] opens its connection.
const LAZY_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What a [`LazyChannel`] declares on each channel it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declare {
    /// The log topology (exchange, queues, bindings): for publishers of logs.
    LogTopology,
    /// The alerts exchange: for publishers of alerts.
    AlertsExchange,
}

/// A connection and publisher-confirm channel opened on first use, shared by every caller,
/// and opened again after a failure: for services that publish now and then (the gateway,
/// the alerts sink) and the live tail's channels. Never retries by itself: a caller that
/// gets an error tells its own client (503) or retries its own work.
#[derive(Debug)]
pub struct LazyChannel {
    settings: BrokerSettings,
    connection_name: String,
    declare: Declare,
    open: tokio::sync::Mutex<Option<(Connection, lapin::Channel)>>,
}

impl LazyChannel {
    pub fn new(settings: BrokerSettings, connection_name: &str, declare: Declare) -> LazyChannel {
        LazyChannel {
            settings,
            connection_name: connection_name.to_owned(),
            declare,
            open: tokio::sync::Mutex::new(None),
        }
    }

    pub fn settings(&self) -> &BrokerSettings {
        &self.settings
    }

    /// The shared confirm channel, opened (with its declarations) when there is none or the
    /// last one failed.
    pub async fn channel(&self) -> Result<lapin::Channel, BrokerError> {
        let mut open = self.open.lock().await;
        if let Some((_, channel)) = open
            .as_ref()
            .filter(|(_, channel)| channel.status().connected())
        {
            return Ok(channel.clone());
        }
        let connection = match open.take() {
            Some((connection, _)) if connection.status().connected() => connection,
            _ => self.connect().await?,
        };
        let channel = broker::confirm_channel(&connection).await?;
        match self.declare {
            Declare::LogTopology => crate::topology::declare(&channel, &self.settings).await?,
            Declare::AlertsExchange => {
                crate::topology::declare_alerts_exchange(&channel, &self.settings).await?
            }
        }
        *open = Some((connection, channel.clone()));
        Ok(channel)
    }

    /// A channel of its own on the shared connection (a consumer's: the live tail's).
    pub async fn new_channel(&self) -> Result<lapin::Channel, BrokerError> {
        let mut open = self.open.lock().await;
        if let Some((connection, _)) = open.as_ref().filter(|(c, _)| c.status().connected()) {
            if let Ok(channel) = connection.create_channel().await {
                return Ok(channel);
            }
        }
        let connection = self.connect().await?;
        let confirm_channel = broker::confirm_channel(&connection).await?;
        let channel = connection.create_channel().await?;
        *open = Some((connection, confirm_channel));
        Ok(channel)
    }

    /// Closes the connection so the next call opens a new one (after a failed publish).
    pub async fn reset(&self) {
        if let Some((connection, _)) = self.open.lock().await.take() {
            let _ = connection.close(200, "reopening".into()).await;
        }
    }

    async fn connect(&self) -> Result<Connection, BrokerError> {
        // Each node gets its turn: a list of three waits up to three times as long.
        let nodes = u32::try_from(self.settings.nodes().len())
            .unwrap_or(1)
            .max(1);
        let timeout = LAZY_CONNECT_TIMEOUT * nodes;
        tokio::time::timeout(
            timeout,
            broker::connect(&self.settings, &self.connection_name),
        )
        .await
        .map_err(|_| BrokerError::ConnectTimeout(timeout))?
    }
}
