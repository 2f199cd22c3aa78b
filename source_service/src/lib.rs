//! source_service: gets logs onto the exchange. Production ingest lives in [`ingest`] (the
//! HTTP gateway, the file and stdin shipper); load generation in [`load`] (the simulator, the
//! traffic scenarios and their publish loop); the command line in [`command`].

pub mod command;
pub mod ingest;
pub mod load;

use std::sync::Arc;

use anyhow::Context;
use ingest::listener;
use logagg::http_server::{self, HangUp};
use logagg::settings::Settings;
use logagg::telemetry;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use load::{publish, run, simulate, PublishReport, Traffic};

pub const SERVICE_NAME: &str = "source_service";

/// Serves the ingest gateway on `gateway.listen`, OTLP on `otlp.listen`, syslog and GELF
/// on their TCP and UDP addresses (those enabled), and the admin server, until `shutdown`.
/// A listener that fails stops the others.
pub async fn serve_gateway(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let gateway = ingest::gateway::Gateway::new(settings.gateway.clone(), settings.broker.clone());
    let stop = shutdown.child_token();
    let mut servers = tokio::task::JoinSet::new();
    let scheme = http_server::scheme(&settings.tls);
    let http_apps = [
        (
            "gateway.listen",
            Some(settings.gateway.listen),
            ingest::gateway::router(gateway.clone(), &settings.auth),
        ),
        (
            "otlp.listen",
            settings.otlp.enabled.then_some(settings.otlp.listen),
            ingest::gateway::otlp_router(gateway.clone(), &settings.auth),
        ),
    ];
    for (setting, address, app) in http_apps {
        let Some(address) = address else { continue };
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("binding {setting} {address}"))?;
        info!(address = %listener.local_addr()?, scheme, setting, "ingest listening");
        let (tls, stop) = (settings.tls.clone(), stop.clone());
        servers.spawn(async move {
            http_server::serve(listener, app, &tls, HangUp::Finishes, stop)
                .await
                .with_context(|| format!("serving {setting}"))
        });
    }
    if settings.syslog.enabled {
        let syslog = &settings.syslog;
        let (tcp, udp) = listener::bind("syslog", syslog.listen_tcp, syslog.listen_udp).await?;
        let syslog = Arc::new(ingest::syslog::Syslog {
            settings: settings.syslog.clone(),
        });
        servers.spawn(listener::serve_tcp(
            tcp,
            gateway.clone(),
            syslog.clone(),
            stop.clone(),
        ));
        servers.spawn(listener::serve_udp(
            udp,
            gateway.clone(),
            syslog,
            stop.clone(),
        ));
    }
    if settings.gelf.enabled {
        let gelf = &settings.gelf;
        let (tcp, udp) = listener::bind("gelf", gelf.listen_tcp, gelf.listen_udp).await?;
        let gelf = Arc::new(ingest::gelf::Gelf::new(settings.gelf.clone()));
        servers.spawn(listener::serve_tcp(
            tcp,
            gateway.clone(),
            gelf.clone(),
            stop.clone(),
        ));
        servers.spawn(listener::serve_udp(
            udp,
            gateway.clone(),
            gelf,
            stop.clone(),
        ));
    }
    let (_address, admin_task) = telemetry::serve_admin(
        settings.telemetry.admin_listen,
        telemetry::admin_router(gateway.health.clone()),
        stop.clone(),
    )
    .await
    .context("binding the admin server")?;
    let mut outcome = Ok(());
    while let Some(joined) = servers.join_next().await {
        let served = joined
            .context("a listener panicked")
            .and_then(|served| served);
        if served.is_err() && outcome.is_ok() {
            stop.cancel();
            outcome = served;
        }
    }
    stop.cancel();
    let _ = admin_task.await;
    outcome
}
