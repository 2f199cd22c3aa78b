//! collector_service: consumes the storage queue with manual acks and stores batches in
//! MongoDB, acking only what MongoDB acknowledged. Run more copies to scale out.

pub mod batch;
pub mod consumer;
pub mod dead_letter;
pub mod metrics;
pub mod writer;

use std::sync::Arc;

use anyhow::Context;
use lapin::Connection;
use logagg::broker;
use logagg::runtime::{self, BrokerSession, Reconnecting, SessionError};
use logagg::settings::{Section, Settings};
use logagg::store::Database;
use logagg::telemetry::{self, Health};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::consumer::consume;
use crate::writer::{OncePer, Writer, IDENTICAL_BODIES_WARNING_PERIOD};

/// Name shown for the collector's broker connections and MongoDB client.
pub const SERVICE_NAME: &str = "collector_service";
/// The settings sections the collector reads and checks; the others are left unread.
pub const SECTIONS: &[Section] = &[
    Section::Broker,
    Section::Store,
    Section::Telemetry,
    Section::Collector,
];

/// Seals the word blocks kept open longer than `BLOCK_MAX_AGE` when no batch comes to do it
/// (traffic stopped, an hour ended), until shutdown.
async fn seal_aged_blocks(store: Database, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(logagg::store::blocks::BLOCK_MAX_AGE / 4);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {
                if let Err(error) = store.seal_aged_blocks().await {
                    tracing::warn!(%error, "sealing aged word blocks failed; they stay open and are tried again");
                }
            }
        }
    }
}

/// Runs the collector until `shutdown` is cancelled: admin server, indexes, then the consume
/// loop, reconnecting with backoff whenever the broker connection is lost.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    metrics::describe();
    let settings = Arc::new(settings);
    let health = Health::default();
    health.set("broker", false);
    health.set("store", false);
    let (_admin_address, admin_task) = telemetry::serve_admin(
        settings.telemetry.admin_listen,
        telemetry::admin_router(health.clone()),
        shutdown.clone(),
    )
    .await
    .context("binding the admin server")?;
    let store = Database::connect(&settings.store, SERVICE_NAME)
        .await
        .context("configuring the MongoDB client")?;
    if runtime::ensure_indexes(&store, &health, &shutdown).await {
        let mut session = CollectorSession {
            store: store.clone(),
            settings: Arc::clone(&settings),
            health: health.clone(),
            shutdown: shutdown.clone(),
        };
        let names = Reconnecting {
            connection_name: SERVICE_NAME,
            reconnects_metric: metrics::RECONNECTS,
        };
        let sealing = tokio::spawn(seal_aged_blocks(store.clone(), shutdown.clone()));
        runtime::run_with_reconnect(&settings.broker, names, &health, &shutdown, &mut session)
            .await;
        let _ = sealing.await;
    }
    // Blocks left open stay searchable, but every search overlapping them reads them whole.
    match store.seal_open_blocks().await {
        Ok(0) => {}
        Ok(left) => tracing::warn!(left, "word blocks left open at shutdown"),
        Err(error) => tracing::warn!(%error, "word blocks left open at shutdown"),
    }
    store.shutdown().await;
    info!("collector stopped");
    let _ = admin_task.await;
    Ok(())
}

/// One broker connection's work: a dead-letter channel, and the consume loop writing through
/// it.
struct CollectorSession {
    store: Database,
    settings: Arc<Settings>,
    health: Health,
    shutdown: CancellationToken,
}

impl BrokerSession for CollectorSession {
    async fn run(&mut self, connection: &Connection) -> Result<(), SessionError> {
        let dead_letter_channel = broker::confirm_channel(connection).await?;
        let writer = Arc::new(Writer {
            store: self.store.clone(),
            dead_letter_channel,
            settings: Arc::clone(&self.settings),
            health: self.health.clone(),
            shutdown: self.shutdown.clone(),
            identical_bodies_warning: std::sync::Mutex::new(OncePer::new(
                IDENTICAL_BODIES_WARNING_PERIOD,
            )),
        });
        consume(connection, writer).await
    }
}
