//! `broker.urls`: a node that is down is passed over for the next, on connect and in a
//! running collector, and the node in use is shown in `/healthz` and a metric.

use std::time::Duration;

use logagg::broker;
use logagg::testsuite::{
    free_port, http_request, metric_in, scrape_metrics, wait_until, TestContext,
};

#[path = "support/collector.rs"]
mod collector;

const TIMEOUT: Duration = Duration::from_secs(60);

/// A node list whose first node has nothing listening, then the real broker.
fn dead_then_live(context: &TestContext) -> Vec<String> {
    let dead = format!("amqp://guest:guest@127.0.0.1:{}/%2f", free_port());
    vec![dead, context.settings.broker.url.clone()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_first_node_is_passed_over_for_the_next() {
    let context = TestContext::new("broker_nodes").await;
    let mut settings = context.settings.broker.clone();
    settings.urls = dead_then_live(&context);
    let connection = broker::connect_from(&settings, "broker-nodes-test", 0)
        .await
        .expect("the second node accepts");
    assert!(connection.status().connected());
    assert_eq!(broker::connected_node().as_deref(), Some("127.0.0.1:5672"));
    let _ = connection.close(200, "done".into()).await;

    // A collector process given the list stores what is published, whichever node it
    // tries first, and says which node it is on.
    let admin_port = free_port();
    let urls = settings.urls.join(",");
    let mut collector = collector::start_collector_process_with(
        &context,
        admin_port,
        &[("LOGAGG__BROKER__URLS", urls)],
    );
    for index in 0..50 {
        broker::publish_confirmed(
            &context.channel,
            &context.settings.broker.exchange,
            "nodes.info",
            format!(r#"{{"message":"log {index}"}}"#).as_bytes(),
            broker::log_properties(broker::CONTENT_TYPE_JSON, &format!("node-log-{index}")),
        )
        .await
        .expect("publish");
    }
    let stored = wait_until(TIMEOUT, || async { context.stored().await >= 50 }).await;
    let (status, health) = http_request(admin_port, "GET", "/healthz").await;
    let metrics = scrape_metrics(admin_port).await;
    let _ = collector.kill();
    let _ = collector.wait();
    assert!(stored, "{} of 50 stored", context.stored().await);
    assert_eq!(status, 200, "{health}");
    assert!(
        health.contains(r#""broker_node":"127.0.0.1:5672""#),
        "{health}"
    );
    let live = metric_in(
        &metrics,
        &format!(
            "{}{{node=\"127.0.0.1:5672\"}}",
            broker::CONNECTED_NODE_METRIC
        ),
    );
    assert_eq!(live, 1.0, "{metrics}");
    context.cleanup().await;
}
