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
use tracing::{info, warn};

use crate::batch::{Batch, PendingMessage};
use crate::metrics;
use crate::writer::{WriteError, Writer};

/// Write tasks in dispatch order. Dropping the session aborts them: after a lost connection
/// their deliveries are back in the queue, and a write retrying against a down MongoDB must
/// not outlive the session that can no longer ack it.
type InFlight = FuturesOrdered<AbortOnDropHandle<Result<u64, WriteError>>>;

/// Consumes on one connection until shutdown (`Ok`: in-flight work was finished or returned)
/// or a broker failure (`Err`: reconnect).
pub async fn consume(connection: &Connection, writer: Arc<Writer>) -> Result<(), SessionError> {
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
    info!(
        queue = %settings.broker.storage_queue,
        prefetch = settings.collector.prefetch,
        batch_size = settings.collector.batch_size,
        "consuming"
    );

    let mut session = Session {
        writer: Arc::clone(&writer),
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
    let result = session.run(&mut consumer, &shutdown).await;
    if result.is_ok() {
        // Shutdown: stop deliveries, write what we hold, and give in-flight writes a deadline.
        let _ = channel
            .basic_cancel(consumer_tag.as_str().into(), BasicCancelOptions::default())
            .await;
        session.take_delivered(&mut consumer).await;
        session
            .finish(settings.collector.shutdown_grace_seconds)
            .await;
    }
    writer.health.set("broker", false);
    result
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
    ) -> Result<(), SessionError> {
        loop {
            let batch_deadline = self.batch.deadline();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                Some(joined) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    self.handle_written(joined).await?;
                }
                _ = sleep_until_deadline(batch_deadline), if batch_deadline.is_some() => {
                    self.dispatch().await?;
                }
                delivery = consumer.next() => {
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
