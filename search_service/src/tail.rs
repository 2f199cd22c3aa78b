//! Live tail: each client gets its own auto-delete queue on the exchange, and the logs that
//! pass its filters as they arrive. Not fed by polling MongoDB.
//!
//! Memory is bounded twice: the broker holds at most `search.tail_buffer` logs in the
//! client's queue (oldest dropped first), and at most that many wait here for the client to
//! read them. A client that falls that far behind is told (`event: dropped`) and dropped.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Consumer};
use logagg::broker;
use logagg::http_error::ErrorCode;
use logagg::parse::parse_records;
use logagg::runtime::{Declare, LazyChannel};
use logagg::settings::BrokerSettings;
use logagg::topology;
use logagg::LogRecord;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::error::ApiError;
use crate::query::LogQuery;

/// Deliveries the broker may have in flight to one tail consumer.
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

/// Opens tails on one shared RabbitMQ connection, made on first use and remade when lost.
#[derive(Debug)]
pub struct Tails {
    broker: LazyChannel,
    clients: Arc<Semaphore>,
    max_clients: usize,
    buffer: usize,
    shutdown: CancellationToken,
    /// Each open tail's forwarding task; `run` waits for them at shutdown.
    tasks: TaskTracker,
}

impl Tails {
    pub fn new(
        broker: BrokerSettings,
        max_clients: usize,
        buffer: usize,
        shutdown: CancellationToken,
    ) -> Tails {
        Tails {
            broker: LazyChannel::new(broker, crate::SERVICE_NAME, Declare::LogTopology),
            clients: Arc::new(Semaphore::new(max_clients)),
            max_clients,
            buffer,
            shutdown,
            tasks: TaskTracker::new(),
        }
    }

    /// The tails' forwarding tasks, for the service to wait on at shutdown.
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
        let channel = self.channel().await?;
        let consumer = self.consume(&channel).await.map_err(|error| {
            warn!(%error, "could not open a live-tail queue");
            ApiError::BrokerUnavailable
        })?;
        let (sender, receiver) = mpsc::channel(self.buffer);
        let (end_sender, end_receiver) = oneshot::channel();
        let shutdown = self.shutdown.clone();
        self.tasks.spawn(async move {
            let end = forward(consumer, &channel, &query, &sender, &shutdown).await;
            let _ = end_sender.send(end);
            drop(sender);
            let _ = channel.close(200, "tail ended".into()).await;
            drop(permit);
        });
        let logs = futures::stream::unfold(receiver, |mut receiver| async move {
            receiver
                .recv()
                .await
                .map(|record| (TailEvent::Log(record), receiver))
        });
        let end = futures::stream::once(async move {
            TailEvent::End(end_receiver.await.unwrap_or(TailEnd::BrokerLost))
        });
        Ok(futures::stream::once(async { TailEvent::Ready })
            .chain(logs)
            .chain(end))
    }

    async fn channel(&self) -> Result<Channel, ApiError> {
        self.broker.new_channel().await.map_err(|error| {
            warn!(%error, "live tail cannot reach RabbitMQ");
            ApiError::BrokerUnavailable
        })
    }

    async fn consume(&self, channel: &Channel) -> Result<Consumer, broker::BrokerError> {
        let queue =
            topology::declare_tail_queue(channel, self.broker.settings(), self.buffer).await?;
        channel
            .basic_qos(PREFETCH, BasicQosOptions::default())
            .await?;
        Ok(channel
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?)
    }
}

/// Moves matching logs from `consumer` to `sender` until the client goes, falls behind,
/// the broker fails, or the service shuts down.
async fn forward(
    mut consumer: Consumer,
    channel: &Channel,
    query: &LogQuery,
    sender: &mpsc::Sender<Box<LogRecord>>,
    shutdown: &CancellationToken,
) -> TailEnd {
    loop {
        let delivery = tokio::select! {
            _ = shutdown.cancelled() => return TailEnd::Shutdown,
            // The client went away: nobody reads the end event.
            _ = sender.closed() => return TailEnd::Shutdown,
            delivery = consumer.next() => delivery,
        };
        let delivery = match delivery {
            Some(Ok(delivery)) => delivery,
            Some(Err(_)) | None => return TailEnd::BrokerLost,
        };
        if delivery.delivery_tag % ACK_EVERY == 0 {
            let multiple = BasicAckOptions { multiple: true };
            if channel
                .basic_ack(delivery.delivery_tag, multiple)
                .await
                .is_err()
            {
                return TailEnd::BrokerLost;
            }
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
            if !query.matches(&record) {
                continue;
            }
            match sender.try_send(Box::new(record)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => return TailEnd::TooSlow,
                Err(mpsc::error::TrySendError::Closed(_)) => return TailEnd::Shutdown,
            }
        }
    }
}
