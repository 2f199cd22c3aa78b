//! Shutdown: turning SIGTERM or Ctrl-C into a cancelled token, and sleeps that end with it.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Resolves on the first Ctrl-C or SIGTERM.
pub async fn signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(error) => {
                warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => info!("Ctrl-C received, shutting down"),
        () = terminate => info!("SIGTERM received, shutting down"),
    }
}

/// Cancels `token` when a shutdown signal arrives.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        signal().await;
        token.cancel();
    });
}

/// Sleeps for `delay` unless `shutdown` comes first. Returns `false` when shut down, so retry
/// loops read `if !sleep_unless_cancelled(delay, &shutdown).await { return … }`.
pub async fn sleep_unless_cancelled(delay: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sleep_returns_true_after_the_delay_and_false_on_shutdown() {
        let shutdown = CancellationToken::new();
        assert!(sleep_unless_cancelled(Duration::from_secs(60), &shutdown).await);
        shutdown.cancel();
        assert!(!sleep_unless_cancelled(Duration::from_secs(60), &shutdown).await);
    }
}
