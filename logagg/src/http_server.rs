//! Serving a public HTTP listener (search and the dashboard, the ingest gateway, analyzer
//! registration): plain HTTP, or HTTPS (rustls) when `[tls]` names a certificate and key;
//! each request carries the client's address (`ConnectInfo<SocketAddr>`) for audit lines
//! and rate limits, and the server stops gracefully when `shutdown` is cancelled.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::settings::TlsSettings;

/// How long open connections may take to finish once an HTTPS server is told to stop.
const TLS_DRAIN: Duration = Duration::from_secs(10);

/// Whether a listener serves HTTPS: what start-up lines say.
pub fn scheme(tls: &TlsSettings) -> &'static str {
    if tls.files().is_some() {
        "https"
    } else {
        "http"
    }
}

/// Serves `app` on `listener` until `shutdown`. A certificate or key that cannot be read
/// or parsed is an error naming the file, before any request is served.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: &TlsSettings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    let Some((cert_file, key_file)) = tls.files() else {
        return axum::serve(listener, service)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .context("serving HTTP");
    };
    let config = RustlsConfig::from_pem_file(cert_file, key_file)
        .await
        .with_context(|| {
            format!(
                "loading tls.cert_file {} and tls.key_file {}",
                cert_file.display(),
                key_file.display()
            )
        })?;
    let handle = axum_server::Handle::new();
    let stopper = tokio::spawn({
        let handle = handle.clone();
        async move {
            shutdown.cancelled().await;
            handle.graceful_shutdown(Some(TLS_DRAIN));
        }
    });
    let served = axum_server::from_tcp_rustls(listener.into_std()?, config)
        .context("serving HTTPS")?
        .handle(handle)
        .serve(service)
        .await
        .context("serving HTTPS");
    stopper.abort();
    served
}
