//! Serving a public HTTP listener (search and the dashboard, the ingest gateway, analyzer
//! registration): plain HTTP, or HTTPS (rustls) when `[tls]` names a certificate and key;
//! each request carries the client's address (`ConnectInfo<SocketAddr>`) for audit lines
//! and rate limits, and the server stops gracefully when `shutdown` is cancelled. What a
//! request whose client hangs up becomes is the listener's choice: [`HangUp`].

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::settings::TlsSettings;

/// How long open connections may take to finish once a server is told to stop.
const DRAIN: Duration = Duration::from_secs(10);

/// What becomes of a request whose client hangs up (closes its side of the connection)
/// before the answer is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HangUp {
    /// Its handler is dropped: nobody is left to read a search's answer.
    Cancels,
    /// Its handler runs to its end: an ingest request that arrived whole is published
    /// although its client will not read the answer. graypy's HTTP handler sends and
    /// closes; when its close reached hyper in the same read as the body, hyper ended the
    /// connection before the handler ever ran, and the record was lost.
    Finishes,
}

/// Whether a listener serves HTTPS: what start-up lines say.
pub fn scheme(tls: &TlsSettings) -> &'static str {
    if tls.files().is_some() {
        "https"
    } else {
        "http"
    }
}

/// Serves `app` on `listener` until `shutdown`, HTTPS when `tls` names files. A
/// certificate or key that cannot be read or parsed is an error naming the file, before any
/// request is served.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: &TlsSettings,
    hang_up: HangUp,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let tls = match tls.files() {
        None => None,
        Some((cert_file, key_file)) => Some(
            RustlsConfig::from_pem_file(cert_file, key_file)
                .await
                .with_context(|| {
                    format!(
                        "loading tls.cert_file {} and tls.key_file {}",
                        cert_file.display(),
                        key_file.display()
                    )
                })?,
        ),
    };
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    let handle = axum_server::Handle::new();
    let mut server = axum_server::from_tcp(listener.into_std()?)?.handle(handle.clone());
    // hyper ends a connection whose client closed mid-request unless told to allow
    // half-closed connections; then it leaves the request to run and writes its answer.
    server
        .http_builder()
        .http1()
        .half_close(hang_up == HangUp::Finishes);
    let stopper = tokio::spawn(async move {
        shutdown.cancelled().await;
        handle.graceful_shutdown(Some(DRAIN));
    });
    let served = match tls {
        None => server.serve(service).await.context("serving HTTP"),
        Some(config) => server
            .acceptor(RustlsAcceptor::new(config))
            .serve(service)
            .await
            .context("serving HTTPS"),
    };
    stopper.abort();
    served
}
