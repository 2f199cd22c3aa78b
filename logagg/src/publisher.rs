//! Publishing with confirms that survives a lost broker node: every publisher of logs (the
//! simulator, the gateway, the shipper) sends through a [`Resender`], which keeps each
//! message until the broker settles it and sends it again, unchanged (same message id, so
//! the collector stores it once), when its confirm failed: the connection or channel was
//! lost, or the broker nacked it (a quorum queue's leader changing). A new channel comes
//! from the [`LazyChannel`], whose connect tries every node of `broker.urls` in turn.

use std::collections::VecDeque;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel, Confirmation};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::backoff::Backoff;
use crate::broker::{BrokerError, MANDATORY};
use crate::runtime::LazyChannel;

/// Messages sent again after their confirm failed, over every publisher of the process.
pub const RESENT_METRIC: &str = "logagg_publish_resent_total";

/// One message, kept as it was first sent so that a re-send is the same message.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub exchange: ShortString,
    pub routing_key: ShortString,
    pub body: Vec<u8>,
    pub properties: BasicProperties,
}

/// How the broker settled a message, for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Confirmed and routed to at least one queue.
    Queued,
    /// Returned: no queue is bound for its routing key (publishes are mandatory). Sending
    /// it again cannot help.
    Unroutable,
}

/// When a [`Resender`] stops trying: at a deadline (a client waits), or on shutdown (then
/// it stops retrying but still awaits the confirms of messages in flight), or never.
#[derive(Debug, Clone, Default)]
pub struct GiveUp {
    pub deadline: Option<Instant>,
    pub shutdown: Option<CancellationToken>,
}

impl GiveUp {
    /// Sleeps until `wake`, cut short by the deadline or shutdown: `false` when the caller
    /// gives up.
    async fn wait_until(&self, wake: Instant) -> bool {
        let until = self.deadline.map_or(wake, |deadline| deadline.min(wake));
        let cancelled = async {
            match &self.shutdown {
                Some(shutdown) => shutdown.cancelled().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = cancelled => false,
            _ = tokio::time::sleep_until(until) => until == wake,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The deadline passed or shutdown came before a channel could be opened.
    #[error("RabbitMQ unreachable: {last_error}")]
    Unreachable { last_error: String },
    /// The deadline passed or shutdown came with messages still unsettled.
    #[error("{unsettled} message(s) not confirmed by RabbitMQ: {last_error}")]
    GaveUp {
        unsettled: usize,
        last_error: String,
    },
    /// A failure no retry can fix (an invalid URL, a queue declared with other arguments).
    #[error(transparent)]
    Broker(BrokerError),
}

/// What one attempt's confirm says.
enum Attempt {
    Settled(Settled),
    /// Send it again: the reason it failed this time, and whether on a new channel.
    /// A nacked message goes on a new channel: a quorum queue changing leader nacks what
    /// arrives meanwhile, and RabbitMQ 3.10 was seen nacking every later publish on such a
    /// channel (minutes on end) while a new channel on the same node was confirmed at once.
    Again {
        reason: String,
        new_channel: bool,
    },
}

impl Attempt {
    fn of(confirmation: Result<Confirmation, lapin::Error>) -> Attempt {
        match confirmation {
            Ok(Confirmation::Ack(None) | Confirmation::NotRequested) => {
                Attempt::Settled(Settled::Queued)
            }
            Ok(Confirmation::Ack(Some(_)) | Confirmation::Nack(Some(_))) => {
                Attempt::Settled(Settled::Unroutable)
            }
            Ok(Confirmation::Nack(None)) => Attempt::Again {
                reason: "the broker nacked it".into(),
                new_channel: true,
            },
            Err(error) => Attempt::Again {
                reason: error.to_string(),
                new_channel: false,
            },
        }
    }
}

/// A message's attempt, once its confirm (or failure) came: sent in round `round`.
struct Attempted<T> {
    confirmation: Result<Confirmation, lapin::Error>,
    channel: Channel,
    message: Outgoing,
    tag: T,
    round: u64,
}

type InFlight<T> = BoxFuture<'static, Attempted<T>>;

/// Messages awaiting their confirm, each with the caller's tag `T` (what it carries), and
/// those waiting to be sent again. Cancel-safe: a message is never only in a dropped future.
pub struct Resender<'a, T> {
    link: &'a LazyChannel,
    give_up: GiveUp,
    in_flight: FuturesUnordered<InFlight<T>>,
    again: VecDeque<(Outgoing, T)>,
    backoff: Backoff,
    /// After a failed attempt, nothing is sent again before this moment (kept across
    /// cancelled calls, so a caller polling `next` in a `select!` does not extend it).
    pause_until: Option<Instant>,
    /// Sends since the last failure form a round; the first failure of the current round
    /// pauses and starts the next, while failures of earlier rounds (the rest of a lost
    /// channel's window) are sent again without another pause.
    round: u64,
    last_error: String,
    resent: u64,
}

impl<'a, T: Send + 'static> Resender<'a, T> {
    pub fn new(link: &'a LazyChannel, give_up: GiveUp) -> Self {
        let settings = link.settings();
        Resender {
            link,
            give_up,
            in_flight: FuturesUnordered::new(),
            again: VecDeque::new(),
            backoff: Backoff::new(settings.reconnect_initial_ms, settings.reconnect_max_ms),
            pause_until: None,
            round: 0,
            last_error: String::new(),
            resent: 0,
        }
    }

    /// Messages sent and not yet settled, re-sends included.
    pub fn unsettled(&self) -> usize {
        self.in_flight.len() + self.again.len()
    }

    /// Messages sent again so far.
    pub fn resent(&self) -> u64 {
        self.resent
    }

    /// Opens a channel now (connecting, with the topology declared), retrying until it
    /// opens or the caller gives up.
    pub async fn connect(&mut self) -> Result<(), PublishError> {
        self.channel().await.map(drop)
    }

    /// Starts publishing `message`; its outcome comes from [`Resender::next`].
    pub async fn send(&mut self, message: Outgoing, tag: T) -> Result<(), PublishError> {
        self.again.push_back((message, tag));
        self.start_again().await
    }

    /// The next message settled for good, with its tag; `None` when none is left. Messages
    /// whose confirm failed are sent again on the way, on a new channel if theirs is lost.
    pub async fn next(&mut self) -> Option<Result<(Settled, T), PublishError>> {
        loop {
            if !self.again.is_empty() {
                if let Err(error) = self.start_again().await {
                    return Some(Err(error));
                }
            }
            // Confirms are awaited past shutdown (a graceful stop drains them), not past
            // a deadline.
            let next = match self.give_up.deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, self.in_flight.next()).await,
                None => Ok(self.in_flight.next().await),
            };
            let Ok(next) = next else {
                self.last_error = "no confirm before the deadline".into();
                return Some(Err(self.gave_up()));
            };
            let Attempted {
                confirmation,
                channel,
                message,
                tag,
                round,
            } = next?;
            match Attempt::of(confirmation) {
                Attempt::Settled(settled) => {
                    if self.pause_until.is_none() && self.again.is_empty() {
                        self.backoff.reset();
                    }
                    return Some(Ok((settled, tag)));
                }
                Attempt::Again {
                    reason,
                    new_channel,
                } => {
                    if round == self.round {
                        warn!(%reason, "a publish was not confirmed; sending it again");
                        self.round += 1;
                        self.pause_until = Some(Instant::now() + self.backoff.next_delay());
                    }
                    self.last_error = reason;
                    self.resent += 1;
                    metrics::counter!(RESENT_METRIC).increment(1);
                    self.again.push_back((message, tag));
                    if new_channel && channel.status().connected() {
                        // The next `channel()` opens a new one; what else is in flight on
                        // this one fails and is sent again.
                        let _ = channel
                            .close(200, "nacked: publishing on a new channel".into())
                            .await;
                    }
                }
            }
        }
    }

    /// Sends the messages waiting to be sent (again), after the pause a failure asked for.
    async fn start_again(&mut self) -> Result<(), PublishError> {
        let channel = self.channel().await?;
        while let Some((message, tag)) = self.again.pop_front() {
            self.in_flight
                .push(publish(channel.clone(), message, tag, self.round));
        }
        Ok(())
    }

    /// A channel to publish on, once any pause is over; opening one is retried with backoff.
    async fn channel(&mut self) -> Result<Channel, PublishError> {
        let mut unreachable = false;
        loop {
            if let Some(until) = self.pause_until {
                if !self.give_up.wait_until(until).await {
                    return Err(if unreachable {
                        PublishError::Unreachable {
                            last_error: self.last_error.clone(),
                        }
                    } else {
                        self.gave_up()
                    });
                }
                self.pause_until = None;
            }
            let opened = match self.give_up.deadline {
                // Out of time while a node is still answering: the messages are late, the
                // broker is not unreachable.
                Some(deadline) => {
                    match tokio::time::timeout_at(deadline, self.link.channel()).await {
                        Ok(opened) => opened,
                        Err(_) => {
                            self.last_error = "no channel opened before the deadline".into();
                            return Err(self.gave_up());
                        }
                    }
                }
                None => self.link.channel().await,
            };
            match opened {
                Ok(channel) => return Ok(channel),
                Err(error) if is_permanent(&error) => return Err(PublishError::Broker(error)),
                Err(error) => {
                    warn!(%error, "no RabbitMQ channel to publish on; retrying");
                    self.last_error = error.to_string();
                    unreachable = true;
                    self.pause_until = Some(Instant::now() + self.backoff.next_delay());
                }
            }
        }
    }

    fn gave_up(&self) -> PublishError {
        PublishError::GaveUp {
            unsettled: self.unsettled(),
            last_error: self.last_error.clone(),
        }
    }
}

/// A failure no retry can fix.
fn is_permanent(error: &BrokerError) -> bool {
    matches!(error, BrokerError::InvalidUrl(_)) || error.is_topology_mismatch()
}

fn publish<T: Send + 'static>(
    channel: Channel,
    message: Outgoing,
    tag: T,
    round: u64,
) -> InFlight<T> {
    async move {
        let confirmation = match channel
            .basic_publish(
                message.exchange.clone(),
                message.routing_key.clone(),
                MANDATORY,
                &message.body,
                message.properties.clone(),
            )
            .await
        {
            Ok(confirm) => confirm.await,
            Err(error) => Err(error),
        };
        Attempted {
            confirmation,
            channel,
            message,
            tag,
            round,
        }
    }
    .boxed()
}
