//! The consume loop for one broker connection: deliveries, batch deadlines, finished writes
//! and shutdown in one `select!`. Acks go out in delivery order, each one a `multiple` ack
//! of a whole written batch.

use std::sync::Arc;

use futures::stream::FuturesOrdered;
use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Connection, Consumer};
use logagg::broker::{self, BrokerError};
use logagg::runtime::SessionError;
use logagg::topology;
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;
use tracing::{debug, info, warn};

use crate::batch::{Batch, PendingMessage};
use crate::metrics;
use crate::writer::{WriteError, Writer};

/// Write tasks in dispatch order. Dropping the session aborts them: after a lost connection
/// their deliveries are back in the queue, and a write retrying against a down MongoDB must
/// not outlive the session that can no longer ack it.
type InFlight = FuturesOrdered<AbortOnDropHandle<Result<u64, WriteError>>>;

/// Why consuming on one channel ended without a broker failure.
enum Ended {
    Shutdown,
    /// Nothing delivered for `collector.idle_resubscribe_seconds` and nothing held.
    Idle,
}

/// Consumes on one connection until shutdown (`Ok`: in-flight work was finished or returned)
/// or a broker failure (`Err`: reconnect).
///
/// A collector with nothing delivered and nothing held for `collector.idle_resubscribe_seconds`
/// closes its channel and consumes on a new one. After a quorum queue's leader changes under
/// a network fault, RabbitMQ can keep messages checked out to a consumer whose channel never
/// received them (rabbitmq-server#15473): they stay unacked, and nobody is sent them, until
/// that channel closes. Closing an idle channel costs nothing (it holds nothing of ours) and
/// returns any such messages to the queue.
pub async fn consume(connection: &Connection, writer: Arc<Writer>) -> Result<(), SessionError> {
    let mut announce = true;
    let result = loop {
        match consume_on_channel(connection, &writer, std::mem::take(&mut announce)).await {
            Ok(Ended::Shutdown) => break Ok(()),
            Ok(Ended::Idle) => {
                metrics::counter!(metrics::IDLE_RESUBSCRIBES).increment(1);
                debug!("nothing delivered lately: consuming on a new channel");
            }
            Err(error) => break Err(error),
        }
    };
    writer.health.set("broker", false);
    result
}

/// Consumes on a new channel until shutdown or idleness; `announce` logs it at info.
async fn consume_on_channel(
    connection: &Connection,
    writer: &Arc<Writer>,
    announce: bool,
) -> Result<Ended, SessionError> {
    let settings = Arc::clone(&writer.settings);
    let channel = connection.create_channel().await?;
    topology::declare(&channel, &settings.broker).await?;
    channel
        .basic_qos(settings.collector.prefetch, BasicQosOptions::default())
        .await?;
    let consumer_tag = format!("collector-{}-{}", broker::host_name(), uuid::Uuid::now_v7());
    let mut consumer = channel
        .basic_consume(
            settings.broker.storage_queue.as_str().into(),
            consumer_tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    writer.health.set("broker", true);
    if announce {
        info!(
            queue = %settings.broker.storage_queue,
            prefetch = settings.collector.prefetch,
            batch_size = settings.collector.batch_size,
            "consuming"
        );
    }

    let mut session = Session {
        writer: Arc::clone(writer),
        channel: channel.clone(),
        batch: Batch::new(
            settings.collector.batch_size,
            settings.collector.batch_max_age_ms,
        ),
        in_flight: FuturesOrdered::new(),
        max_in_flight: settings.collector.max_in_flight_batches,
        acks_stopped: false,
    };
    let shutdown = writer.shutdown.clone();
    let ended = session
        .run(
            &mut consumer,
            &shutdown,
            settings.collector.idle_resubscribe_seconds,
        )
        .await?;
    match ended {
        Ended::Shutdown => {
            // Stop deliveries, write what we hold, and give in-flight writes a deadline.
            let _ = channel
                .basic_cancel(consumer_tag.as_str().into(), BasicCancelOptions::default())
                .await;
            session.take_delivered(&mut consumer).await;
            session
                .finish(settings.collector.shutdown_grace_seconds)
                .await;
        }
        Ended::Idle => {
            // Anything delivered since the check goes back to the queue, unacked: redelivered,
            // and stored once.
            channel
                .close(200, "idle: consuming on a new channel".into())
                .await?;
        }
    }
    Ok(ended)
}

struct Session {
    writer: Arc<Writer>,
    channel: lapin::Channel,
    batch: Batch,
    in_flight: InFlight,
    max_in_flight: usize,
    /// Set once a write did not finish: later batches must not be acked past it.
    acks_stopped: bool,
}

impl Session {
    async fn run(
        &mut self,
        consumer: &mut Consumer,
        shutdown: &tokio_util::sync::CancellationToken,
        idle: std::time::Duration,
    ) -> Result<Ended, SessionError> {
        let mut last_delivery = Instant::now();
        loop {
            let batch_deadline = self.batch.deadline();
            let holding = !self.in_flight.is_empty() || !self.batch.is_empty();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(Ended::Shutdown),
                Some(joined) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    self.handle_written(joined).await?;
                }
                _ = sleep_until_deadline(batch_deadline), if batch_deadline.is_some() => {
                    self.dispatch().await?;
                }
                _ = tokio::time::sleep_until(last_delivery + idle), if !idle.is_zero() && !holding => {
                    return Ok(Ended::Idle);
                }
                delivery = consumer.next() => {
                    last_delivery = Instant::now();
                    self.handle_delivery(delivery).await?;
                }
            }
        }
    }

    async fn handle_delivery(
        &mut self,
        delivery: Option<lapin::Result<lapin::message::Delivery>>,
    ) -> Result<(), SessionError> {
        let delivery = match delivery {
            Some(Ok(delivery)) => delivery,
            Some(Err(error)) => return Err(BrokerError::Operation(error).into()),
            None => return Err(BrokerError::ConsumerCancelled.into()),
        };
        metrics::counter!(metrics::CONSUMED).increment(1);
        let full = self
            .batch
            .push(PendingMessage::from_delivery(delivery), Instant::now());
        if full {
            self.dispatch().await?;
        }
        Ok(())
    }

    /// Hands the current batch to a write task, first waiting for a free write slot.
    async fn dispatch(&mut self) -> Result<(), SessionError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        while self.in_flight.len() >= self.max_in_flight {
            match self.in_flight.next().await {
                Some(joined) => self.handle_written(joined).await?,
                None => break,
            }
        }
        let messages = self.batch.take();
        let writer = Arc::clone(&self.writer);
        self.in_flight
            .push_back(AbortOnDropHandle::new(tokio::spawn(async move {
                writer.write(messages).await
            })));
        Ok(())
    }

    /// Acks a written batch (and, by `multiple`, everything before it), in delivery order.
    async fn handle_written(
        &mut self,
        joined: Result<Result<u64, WriteError>, tokio::task::JoinError>,
    ) -> Result<(), SessionError> {
        match joined {
            Ok(Ok(last_tag)) if !self.acks_stopped => {
                self.channel
                    .basic_ack(last_tag, BasicAckOptions { multiple: true })
                    .await?;
                Ok(())
            }
            Ok(Ok(_)) => Ok(()),
            Ok(Err(WriteError::Interrupted)) => {
                self.acks_stopped = true;
                Ok(())
            }
            Ok(Err(WriteError::Broker(error))) => Err(error.into()),
            Err(join_error) => {
                self.acks_stopped = true;
                warn!(%join_error, "write task failed; its batch will be redelivered");
                Err(SessionError::TaskFailed(join_error.to_string()))
            }
        }
    }

    /// After the consumer is cancelled, takes in what the broker had already delivered, so it
    /// is written now rather than returned and redelivered. The stream ends once the broker
    /// confirmed the cancel; a quiet half second ends it too.
    async fn take_delivered(&mut self, consumer: &mut Consumer) {
        let quiet = std::time::Duration::from_millis(500);
        while let Ok(Some(Ok(delivery))) = tokio::time::timeout(quiet, consumer.next()).await {
            metrics::counter!(metrics::CONSUMED).increment(1);
            let full = self
                .batch
                .push(PendingMessage::from_delivery(delivery), Instant::now());
            if full && self.dispatch().await.is_err() {
                return;
            }
        }
    }

    /// Writes the partial batch and waits for in-flight writes, at most `grace`.
    /// Whatever is not acked by then is returned to the queue when the channel closes.
    async fn finish(&mut self, grace: std::time::Duration) {
        let drain = async {
            self.dispatch().await?;
            while let Some(joined) = self.in_flight.next().await {
                self.handle_written(joined).await?;
            }
            Ok::<(), SessionError>(())
        };
        match tokio::time::timeout(grace, drain).await {
            Ok(Ok(())) => info!("in-flight batches written and acked"),
            Ok(Err(error)) => {
                warn!(%error, "could not finish in-flight batches; they will be redelivered")
            }
            Err(_) => warn!(
                grace_seconds = grace.as_secs(),
                "shutdown grace elapsed; unfinished batches will be redelivered"
            ),
        }
    }
}

async fn sleep_until_deadline(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
