//! The consume loop for one broker connection: deliveries (auto-ack), the evaluation tick,
//! and alerts adopted from other monitors, in one `select!`.
//!
//! The monitoring queue has a single active consumer. A monitor counts itself active from
//! its first delivery on a connection: only then does it tick (resolving alerts as windows
//! empty), and it first adopts the alerts already firing, so a standby never resolves what
//! the active monitor watches and a monitor taking over never fires a second alert.

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::Connection;
use logagg::broker::{self, BrokerError};
use logagg::parse::parse_records;
use logagg::settings::Settings;
use logagg::telemetry::Health;
use logagg::topology;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::keeper::Command;
use crate::live::LiveStats;
use crate::metrics;
use crate::monitor::{AlertEvent, Monitor};

/// What the loop works with, across connections.
pub struct Context {
    pub settings: Arc<Settings>,
    pub monitor: Monitor,
    pub live: Arc<Mutex<LiveStats>>,
    pub keeper: mpsc::Sender<Command>,
    pub health: Health,
    pub shutdown: CancellationToken,
}

/// Milliseconds since the epoch: the monitor's clock (windows count logs as they arrive).
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Consumes on one connection until shutdown (`Ok`) or a broker failure (`Err`: reconnect).
pub async fn consume(connection: &Connection, context: &mut Context) -> Result<(), BrokerError> {
    let broker_settings = &context.settings.broker;
    let channel = connection.create_channel().await?;
    topology::declare(&channel, broker_settings).await?;
    channel
        .basic_qos(
            context.settings.monitor.prefetch,
            BasicQosOptions::default(),
        )
        .await?;
    let tag = format!("monitor-{}-{}", broker::host_name(), uuid::Uuid::now_v7());
    let mut deliveries = channel
        .basic_consume(
            broker_settings.monitoring_queue.as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    context.health.set("broker", true);
    info!(queue = %broker_settings.monitoring_queue, "consuming (standing by until the broker makes this monitor the active one)");

    let mut active = false;
    let mut adoption: Option<oneshot::Receiver<Vec<logagg::store::alerts::FiringAlert>>> = None;
    let mut tick = tokio::time::interval(context.settings.monitor.tick_ms);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut events: Vec<AlertEvent> = Vec::new();
    loop {
        tokio::select! {
            biased;
            _ = context.shutdown.cancelled() => return Ok(()),
            adopted = async { adoption.as_mut().expect("guarded").await }, if adoption.is_some() => {
                adoption = None;
                let now = now_ms();
                for alert in adopted.unwrap_or_default() {
                    context.monitor.adopt(&alert.rule, &alert.service, alert.started_at.timestamp_millis(), now);
                }
            }
            _ = tick.tick() => {
                if active {
                    let now = now_ms();
                    context.monitor.tick(now, &mut events);
                    if let Ok(mut live) = context.live.lock() {
                        live.evict(now);
                    }
                    metrics::gauge!(metrics::SERVICES).set(context.monitor.services() as f64);
                    crate::publish_live_gauges(&context.live, now);
                }
            }
            delivery = deliveries.next() => {
                let delivery = match delivery {
                    Some(Ok(delivery)) => delivery,
                    Some(Err(error)) => return Err(BrokerError::Operation(error)),
                    None => return Err(BrokerError::ConsumerCancelled),
                };
                if !active {
                    active = true;
                    info!("active: receiving the monitoring queue");
                    let (reply, receiver) = oneshot::channel();
                    if context.keeper.try_send(Command::LoadFiring(reply)).is_ok() {
                        adoption = Some(receiver);
                    }
                }
                observe(context, &delivery, &mut events);
            }
        }
        for event in events.drain(..) {
            metrics::counter!(metrics::TRANSITIONS).increment(1);
            if context.keeper.try_send(Command::Event(event)).is_err() {
                metrics::counter!(metrics::TRANSITIONS_DROPPED).increment(1);
                warn!("alert keeper queue full; a transition was dropped");
            }
        }
    }
}

fn observe(
    context: &mut Context,
    delivery: &lapin::message::Delivery,
    events: &mut Vec<AlertEvent>,
) {
    metrics::counter!(metrics::MESSAGES).increment(1);
    let now = now_ms();
    let envelope = broker::envelope(
        delivery.routing_key.as_str(),
        &delivery.data,
        &delivery.properties,
        chrono::Utc::now(),
    );
    for parsed in parse_records(&envelope) {
        match parsed.record {
            Ok(record) => observe_record(context, &record, now, events),
            Err(error) => {
                metrics::counter!(metrics::UNPARSEABLE).increment(1);
                debug!(%error, "monitor skips a record the collector will dead-letter");
            }
        }
    }
}

fn observe_record(
    context: &mut Context,
    record: &logagg::LogRecord,
    now: i64,
    events: &mut Vec<AlertEvent>,
) {
    let overflowed = context.monitor.overflowed;
    context.monitor.observe(record, now, events);
    if context.monitor.overflowed > overflowed {
        metrics::counter!(metrics::SERVICES_OVERFLOWED).increment(1);
    }
    metrics::counter!(metrics::EVALUATIONS).increment(context.monitor.rules().len() as u64);
    if let Some(http) = &record.http {
        if let Ok(mut live) = context.live.lock() {
            live.add(&record.service, http, now);
        }
    }
}
