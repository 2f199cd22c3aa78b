//! collector_service: consumes the storage queue with manual acks and stores batches in
//! MongoDB, acking only what MongoDB acknowledged. Run more copies to scale out.

pub mod batch;
pub mod consumer;
pub mod dead_letter;
pub mod metrics;
pub mod writer;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use logagg::backoff::{retry_until_ok, Backoff};
use logagg::settings::Settings;
use logagg::store::Store;
use logagg::telemetry::{self, Health};
use logagg::{broker, shutdown};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::consumer::consume;
use crate::writer::Writer;

/// Name shown for the collector's broker connections and MongoDB client.
pub const SERVICE_NAME: &str = "collector_service";

/// Runs the collector until `shutdown` is cancelled: admin server, indexes, then the consume
/// loop, reconnecting with backoff whenever the broker connection is lost.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    metrics::describe();
    let settings = Arc::new(settings);
    let health = Health::default();
    health.set("broker", false);
    health.set("store", false);
    let (_admin_address, admin_task) = telemetry::serve_admin(
        &settings.telemetry.admin_listen,
        telemetry::admin_router(health.clone()),
        shutdown.clone(),
    )
    .await
    .context("binding the admin server")?;
    let store = Store::connect(&settings.store, SERVICE_NAME)
        .await
        .context("configuring the MongoDB client")?;
    if !ensure_indexes(&store, &settings, &health, &shutdown).await {
        store.shutdown().await;
        admin_task.abort();
        return Ok(());
    }

    let mut reconnect = Backoff::new(
        Duration::from_millis(settings.broker.reconnect_initial_ms),
        Duration::from_millis(settings.broker.reconnect_max_ms),
    );
    while !shutdown.is_cancelled() {
        let Some(connection) =
            broker::connect_with_backoff(&settings.broker, SERVICE_NAME, &shutdown).await
        else {
            break;
        };
        let session = async {
            let dead_letter_channel = broker::confirm_channel(&connection).await?;
            let writer = Arc::new(Writer {
                store: store.clone(),
                dead_letter_channel,
                settings: Arc::clone(&settings),
                health: health.clone(),
                shutdown: shutdown.clone(),
            });
            consume(&connection, writer).await
        };
        match session.await {
            Ok(_) => {
                let _ = connection
                    .close(200, "collector shutting down".into())
                    .await;
                break;
            }
            Err(error) => {
                health.set("broker", false);
                metrics::counter!(metrics::RECONNECTS).increment(1);
                let delay = reconnect.next_delay();
                if let Some(hint) = error.hint() {
                    error!(%error, %hint, retry_in_ms = delay.as_millis() as u64, "cannot consume until an operator fixes the broker topology");
                } else {
                    warn!(%error, retry_in_ms = delay.as_millis() as u64, "broker session lost; reconnecting");
                }
                let _ = connection.close(320, "collector reconnecting".into()).await;
                if !shutdown::sleep_unless_cancelled(delay, &shutdown).await {
                    break;
                }
            }
        }
    }
    store.shutdown().await;
    info!("collector stopped");
    let _ = admin_task.await;
    Ok(())
}

/// Creates the indexes, retrying while MongoDB is unreachable. `false` if shut down first.
async fn ensure_indexes(
    store: &Store,
    settings: &Settings,
    health: &Health,
    shutdown: &CancellationToken,
) -> bool {
    let backoff = Backoff::new(
        Duration::from_millis(settings.collector.retry_initial_ms),
        Duration::from_millis(settings.collector.retry_max_ms),
    );
    let ready = retry_until_ok("create indexes", backoff, shutdown, || {
        store.ensure_indexes()
    })
    .await;
    if ready {
        health.set("store", true);
        info!("indexes ready");
    }
    ready
}
