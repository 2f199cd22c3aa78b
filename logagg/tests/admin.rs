//! The admin server over a real socket: /healthz follows the checks, /metrics serves
//! Prometheus text, unknown paths are 404.

use logagg::telemetry::{admin_router, serve_admin, Health};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

async fn get(address: std::net::SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let request = format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
}

#[tokio::test]
async fn healthz_and_metrics_over_a_real_socket() {
    let health = Health::default();
    health.set("broker", false);
    let shutdown = CancellationToken::new();
    let (address, server) = serve_admin(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        admin_router(health.clone()),
        shutdown.clone(),
    )
    .await
    .expect("bind");

    let unhealthy = get(address, "/healthz").await;
    assert!(unhealthy.starts_with("HTTP/1.0 503"), "{unhealthy}");
    assert!(unhealthy.contains(r#""broker":false"#), "{unhealthy}");

    health.set("broker", true);
    let healthy = get(address, "/healthz").await;
    assert!(healthy.starts_with("HTTP/1.0 200"), "{healthy}");
    assert!(healthy.contains(r#""status":"ok""#), "{healthy}");

    metrics::counter!("logagg_test_admin_total").increment(3);
    metrics::histogram!("logagg_test_write_seconds").record(0.003);
    let exposition = get(address, "/metrics").await;
    assert!(
        exposition.contains("logagg_test_admin_total 3"),
        "{exposition}"
    );
    assert!(
        exposition.contains(r#"logagg_test_write_seconds_bucket{le="0.005"} 1"#),
        "latency histograms get second-scale buckets: {exposition}"
    );

    assert!(get(address, "/nope").await.starts_with("HTTP/1.0 404"));
    shutdown.cancel();
    server.await.expect("server stops on shutdown");
}
