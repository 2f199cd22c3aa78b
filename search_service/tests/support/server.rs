//! The search service over a real socket for a test: its router on a free loopback port,
//! served until the test's shutdown token is cancelled.

use logagg::testsuite::TestContext;
use search_service::api::{router, AppState};
use tokio_util::sync::CancellationToken;

/// Serves the API over `context`'s store and settings; returns the port.
pub async fn serve(context: &TestContext, shutdown: &CancellationToken) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let app = router(AppState::new(
        context.store.clone(),
        &context.settings,
        shutdown.clone(),
    ));
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    });
    port
}
