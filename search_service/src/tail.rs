//! Live tail: one queue per search process, bound to the exchange while any client tails,
//! and the logs that pass each client's filters as they arrive. Not fed by polling MongoDB.
//!
//! Clients come and go without creating or deleting a queue: the queue lives as long as the
//! process's broker connection. A queue per client did, and RabbitMQ nacks a publish routed
//! to a queue as it is deleted, so tails coming and going failed publishers' confirms now and
//! then and slowed them with a copy of every log per client (docs/PERFORMANCE.md). Now the
//! broker copies each log once per search process, and each log is parsed once here
//! whatever the number of clients.
//!
//! Memory is bounded twice: the broker holds at most `search.tail_buffer` logs in the queue
//! (oldest dropped first), and at most that many wait here for each client. A client that
//! falls that far behind is told (`event: dropped`) and dropped.

use std::sync::{Arc, Mutex, PoisonError};

use futures::{Stream, StreamExt};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Consumer};
use logagg::broker::{self, BrokerError};
use logagg::http_error::ErrorCode;
use logagg::parse::parse_records;
use logagg::runtime::{Declare, LazyChannel};
use logagg::settings::BrokerSettings;
use logagg::topology;
use logagg::LogRecord;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::error::ApiError;
use crate::query::LogQuery;

/// Deliveries the broker may have in flight to the tail's consumer.
const PREFETCH: u16 = 256;
/// Acks go out `multiple` every this many deliveries (less than [`PREFETCH`]).
const ACK_EVERY: u64 = 64;

/// What a tail stream yields.
#[derive(Debug)]
pub enum TailEvent {
    /// The queue is bound: every log published from now on is seen.
    Ready,
    Log(Box<LogRecord>),
    /// The last event: why the tail ended.
    End(TailEnd),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailEnd {
    /// The client fell `tail_buffer` logs behind.
    TooSlow,
    /// The broker connection or channel failed.
    BrokerLost,
    /// The service is shutting down.
    Shutdown,
}

impl TailEnd {
    pub fn code(self) -> ErrorCode {
        match self {
            TailEnd::TooSlow => ErrorCode::TooSlow,
            TailEnd::BrokerLost => ErrorCode::BrokerUnavailable,
            TailEnd::Shutdown => ErrorCode::ShuttingDown,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            TailEnd::TooSlow => "the client fell too far behind the live logs and was dropped",
            TailEnd::BrokerLost => "the connection to RabbitMQ was lost; reconnect to resume",
            TailEnd::Shutdown => "the search service is shutting down",
        }
    }
}

/// Opens tails; the first one starts the task that feeds them all (the hub).
#[derive(Debug)]
pub struct Tails {
    clients: Arc<Semaphore>,
    max_clients: usize,
    buffer: usize,
    subscriptions: mpsc::Sender<Subscription>,
    gone: mpsc::UnboundedSender<u64>,
    /// The hub, until the first tail starts it.
    idle_hub: Mutex<Option<Hub>>,
    next_id: std::sync::atomic::AtomicU64,
    /// The hub task; `run` waits for it at shutdown.
    tasks: TaskTracker,
}

impl Tails {
    pub fn new(
        broker: BrokerSettings,
        max_clients: usize,
        buffer: usize,
        shutdown: CancellationToken,
    ) -> Tails {
        let (subscriptions, subscription_receiver) = mpsc::channel(max_clients);
        let (gone, gone_receiver) = mpsc::unbounded_channel();
        // Named so an operator can tell it in the management UI, unique per process.
        let queue = format!("{}.tail.{}", broker.exchange, uuid::Uuid::now_v7().simple());
        let hub = Hub {
            broker: LazyChannel::new(broker, crate::SERVICE_NAME, Declare::LogTopology),
            queue,
            buffer,
            subscriptions: subscription_receiver,
            gone: gone_receiver,
            shutdown,
            feed: None,
            clients: Vec::new(),
        };
        Tails {
            clients: Arc::new(Semaphore::new(max_clients)),
            max_clients,
            buffer,
            subscriptions,
            gone,
            idle_hub: Mutex::new(Some(hub)),
            next_id: std::sync::atomic::AtomicU64::new(0),
            tasks: TaskTracker::new(),
        }
    }

    /// The hub task, for the service to wait on at shutdown.
    pub fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    /// Tails open now.
    pub fn open_count(&self) -> usize {
        self.max_clients - self.clients.available_permits()
    }

    /// Starts a tail for `query`; its first event is [`TailEvent::Ready`].
    pub async fn open(
        &self,
        query: LogQuery,
    ) -> Result<impl Stream<Item = TailEvent> + Send + 'static, ApiError> {
        let permit = Arc::clone(&self.clients)
            .try_acquire_owned()
            .map_err(|_| ApiError::TooManyTails)?;
        let idle_hub = self
            .idle_hub
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(hub) = idle_hub {
            self.tasks.spawn(hub.run());
        }
        // Made first: should this request be cancelled while the hub subscribes it, the
        // place's drop still tells the hub.
        let place = Place {
            id: self
                .next_id
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            gone: self.gone.clone(),
            _permit: permit,
        };
        let (sender, receiver) = mpsc::channel(self.buffer);
        let (end_sender, end_receiver) = oneshot::channel();
        let (ready_sender, ready_receiver) = oneshot::channel();
        let subscription = Subscription {
            client: Client {
                id: place.id,
                query,
                logs: sender,
                end: end_sender,
            },
            ready: ready_sender,
        };
        // A hub gone (shutdown) answers as a broker that cannot be reached.
        self.subscriptions
            .send(subscription)
            .await
            .map_err(|_| ApiError::BrokerUnavailable)?;
        ready_receiver
            .await
            .map_err(|_| ApiError::BrokerUnavailable)?
            .map_err(|error| {
                warn!(%error, "live tail cannot reach RabbitMQ");
                ApiError::BrokerUnavailable
            })?;
        let logs = futures::stream::unfold((receiver, place), |(mut receiver, place)| async move {
            receiver
                .recv()
                .await
                .map(|record| (TailEvent::Log(record), (receiver, place)))
        });
        let end = futures::stream::once(async move {
            TailEvent::End(end_receiver.await.unwrap_or(TailEnd::BrokerLost))
        });
        Ok(futures::stream::once(async { TailEvent::Ready })
            .chain(logs)
            .chain(end))
    }
}

/// A client's side of its tail, held by the hub.
#[derive(Debug)]
struct Client {
    id: u64,
    query: LogQuery,
    logs: mpsc::Sender<Box<LogRecord>>,
    end: oneshot::Sender<TailEnd>,
}

impl Client {
    /// Queues `record` if it passes the client's filters; `Err` when the client must go.
    fn offer(&self, record: &LogRecord) -> Result<(), TailEnd> {
        if !self.query.matches(record) {
            return match self.logs.is_closed() {
                true => Err(TailEnd::Shutdown),
                false => Ok(()),
            };
        }
        self.logs
            .try_send(Box::new(record.clone()))
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => TailEnd::TooSlow,
                // The client went away: nobody reads the end event.
                mpsc::error::TrySendError::Closed(_) => TailEnd::Shutdown,
            })
    }

    /// Ends the client's stream with `end`, after the logs it has yet to read.
    fn finish(self, end: TailEnd) {
        let _ = self.end.send(end);
    }
}

#[derive(Debug)]
struct Subscription {
    client: Client,
    /// Answered once the queue is bound: every log published from then on is seen.
    ready: oneshot::Sender<Result<(), BrokerError>>,
}

/// A client's place among `search.max_tail_clients`, held by its stream: dropped (the
/// client went away, or read to the end) it frees the place and tells the hub.
#[derive(Debug)]
struct Place {
    id: u64,
    gone: mpsc::UnboundedSender<u64>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Place {
    fn drop(&mut self) {
        let _ = self.gone.send(self.id);
    }
}

/// The queue's consumer, on a channel of its own.
#[derive(Debug)]
struct Feed {
    channel: Channel,
    consumer: Consumer,
    bound: bool,
}

/// Reads the process's tail queue and hands each log to every client it matches.
#[derive(Debug)]
struct Hub {
    broker: LazyChannel,
    queue: String,
    buffer: usize,
    subscriptions: mpsc::Receiver<Subscription>,
    gone: mpsc::UnboundedReceiver<u64>,
    shutdown: CancellationToken,
    feed: Option<Feed>,
    clients: Vec<Client>,
}

impl Hub {
    async fn run(mut self) {
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                subscription = self.subscriptions.recv() => match subscription {
                    Some(subscription) => self.subscribe(subscription).await,
                    None => break,
                },
                Some(id) = self.gone.recv() => {
                    self.clients.retain(|client| client.id != id);
                    self.unbind_when_idle().await;
                }
                delivery = next_delivery(&mut self.feed) => match delivery {
                    Some(Ok(delivery)) => self.deliver(delivery).await,
                    Some(Err(_)) | None => self.lose_feed(TailEnd::BrokerLost).await,
                },
            }
        }
        self.lose_feed(TailEnd::Shutdown).await;
    }

    async fn subscribe(&mut self, subscription: Subscription) {
        let Subscription { client, ready } = subscription;
        if client.logs.is_closed() {
            return; // cancelled while waiting here
        }
        match self.bound_feed().await {
            Ok(()) => {
                self.clients.push(client);
                let _ = ready.send(Ok(()));
            }
            Err(error) => {
                let _ = ready.send(Err(error));
                self.lose_feed(TailEnd::BrokerLost).await;
            }
        }
    }

    /// Opens the feed if need be and binds its queue.
    async fn bound_feed(&mut self) -> Result<(), BrokerError> {
        if self.feed.is_none() {
            let channel = self.broker.new_channel().await?;
            let settings = self.broker.settings();
            topology::declare_tail_queue(&channel, settings, &self.queue, self.buffer).await?;
            channel
                .basic_qos(PREFETCH, BasicQosOptions::default())
                .await?;
            let consumer = channel
                .basic_consume(
                    self.queue.as_str().into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            info!(queue = %self.queue, "live-tail queue open");
            self.feed = Some(Feed {
                channel,
                consumer,
                bound: false,
            });
        }
        let Some(feed) = self.feed.as_mut().filter(|feed| !feed.bound) else {
            return Ok(());
        };
        topology::bind_tail_queue(&feed.channel, self.broker.settings(), &self.queue).await?;
        feed.bound = true;
        Ok(())
    }

    /// With no client left, the queue stops receiving copies.
    async fn unbind_when_idle(&mut self) {
        if !self.clients.is_empty() {
            return;
        }
        let Some(feed) = self.feed.as_mut().filter(|feed| feed.bound) else {
            return;
        };
        match topology::unbind_tail_queue(&feed.channel, self.broker.settings(), &self.queue).await
        {
            Ok(()) => feed.bound = false,
            Err(error) => {
                warn!(%error, "could not unbind the live-tail queue");
                self.lose_feed(TailEnd::BrokerLost).await;
            }
        }
    }

    /// Ends every client with `end` and closes the feed's channel, unbinding first (the
    /// queue itself goes with the connection).
    async fn lose_feed(&mut self, end: TailEnd) {
        for client in self.clients.drain(..) {
            client.finish(end);
        }
        if let Some(feed) = self.feed.take() {
            if feed.bound && feed.channel.status().connected() {
                let settings = self.broker.settings();
                let _ = topology::unbind_tail_queue(&feed.channel, settings, &self.queue).await;
            }
            let _ = feed.channel.close(200, "tail ended".into()).await;
        }
    }

    /// Hands the delivery's records to the clients they match; drops clients that are
    /// full or gone.
    async fn deliver(&mut self, delivery: Delivery) {
        if delivery.delivery_tag % ACK_EVERY == 0 {
            if let Some(feed) = &self.feed {
                let multiple = BasicAckOptions { multiple: true };
                if feed
                    .channel
                    .basic_ack(delivery.delivery_tag, multiple)
                    .await
                    .is_err()
                {
                    return self.lose_feed(TailEnd::BrokerLost).await;
                }
            }
        }
        if self.clients.is_empty() {
            return; // sent before the unbinding
        }
        let envelope = broker::envelope(
            delivery.routing_key.as_str(),
            &delivery.data,
            &delivery.properties,
            chrono::Utc::now(),
        );
        for parsed in parse_records(&envelope) {
            let record = match parsed.record {
                Ok(record) => record,
                Err(error) => {
                    debug!(%error, "live tail skips a record the collector will dead-letter");
                    continue;
                }
            };
            let mut index = 0;
            while index < self.clients.len() {
                match self.clients[index].offer(&record) {
                    Ok(()) => index += 1,
                    Err(end) => self.clients.swap_remove(index).finish(end),
                }
            }
        }
        self.unbind_when_idle().await;
    }
}

async fn next_delivery(feed: &mut Option<Feed>) -> Option<Result<Delivery, lapin::Error>> {
    match feed {
        Some(feed) => feed.consumer.next().await,
        None => std::future::pending().await,
    }
}
