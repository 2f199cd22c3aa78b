//! On a real three-node RabbitMQ cluster (`scripts/cluster.sh`): a collector given every
//! node in `broker.urls` keeps storing when the node it is connected to is killed, and every
//! confirmed log is stored exactly once. The field saw a collector pinned to a dead node
//! store nothing while two healthy nodes held the queue.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use logagg::broker;
use logagg::settings::BrokerSettings;
use logagg::testsuite::{free_port, http_request, wait_until, TestContext};

#[path = "support/collector.rs"]
mod collector;

const LOGS: u64 = 2_000;
const TIMEOUT: Duration = Duration::from_secs(120);

fn cluster(arguments: &[&str]) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster.sh");
    let output = Command::new(&script)
        .args(arguments)
        .stderr(Stdio::inherit())
        .output()
        .expect("scripts/cluster.sh runs");
    assert!(
        output.status.success(),
        "scripts/cluster.sh {arguments:?} failed (RabbitMQ must be installed: scripts/setup.sh)"
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Stops the cluster when the test ends, passing or not.
struct ClusterGuard;

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        cluster(&["stop"]);
    }
}

/// The collector's node as its `/healthz` says (`127.0.0.1:570N`), once connected.
async fn collector_node(admin_port: u16) -> Option<String> {
    let (_, body) = http_request(admin_port, "GET", "/healthz").await;
    let value: serde_json::Value = serde_json::from_str(body.split("\r\n\r\n").last()?).ok()?;
    value["broker_node"].as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_fails_over_when_its_node_is_killed() {
    cluster(&["start"]);
    let _guard = ClusterGuard;
    let urls: Vec<String> = cluster(&["urls"])
        .trim()
        .split(',')
        .map(str::to_owned)
        .collect();
    assert_eq!(urls.len(), 3);
    let context = TestContext::new("cluster_failover").await;
    let broker_settings = BrokerSettings {
        url: urls[0].clone(),
        urls: urls.clone(),
        ..context.settings.broker.clone()
    };

    let admin_port = free_port();
    let mut collector = collector::start_collector_process_with(
        &context,
        admin_port,
        &[
            ("LOGAGG__BROKER__URL", urls[0].clone()),
            ("LOGAGG__BROKER__URLS", urls.join(",")),
            ("LOGAGG__BROKER__HEARTBEAT_SECONDS", "5".into()),
        ],
    );
    let connected = wait_until(TIMEOUT, || async {
        collector_node(admin_port).await.is_some()
    })
    .await;
    assert!(connected, "the collector connected to no node");
    let node = collector_node(admin_port).await.expect("node");
    let killed: usize = node
        .rsplit(':')
        .next()
        .and_then(|port| port.parse::<usize>().ok())
        .map(|port| port - 5700)
        .expect("a cluster port");

    // The publisher uses another node, with confirms; a nacked or lost publish is sent
    // again under the same id.
    let publisher_settings = BrokerSettings {
        urls: vec![urls[killed % 3].clone()],
        ..broker_settings.clone()
    };
    let connection = broker::connect(&publisher_settings, "cluster-test-publisher")
        .await
        .expect("publisher connects");
    let channel = broker::confirm_channel(&connection).await.expect("channel");
    logagg::topology::declare(&channel, &broker_settings)
        .await
        .expect("topology on the cluster");
    let publish = |index: u64| {
        let channel = channel.clone();
        let exchange = broker_settings.exchange.clone();
        async move {
            loop {
                let body = format!(r#"{{"message":"log {index}"}}"#);
                let properties =
                    broker::log_properties(broker::CONTENT_TYPE_JSON, &format!("log-{index}"));
                let sent = broker::publish_confirmed(
                    &channel,
                    &exchange,
                    "cluster.info",
                    body.as_bytes(),
                    properties,
                )
                .await;
                if sent.is_ok() {
                    return;
                }
            }
        }
    };
    for index in 0..LOGS / 2 {
        publish(index).await;
    }
    let half = wait_until(TIMEOUT, || async { context.stored().await >= LOGS / 2 }).await;
    assert!(half, "{} stored before the fault", context.stored().await);

    // Kill the collector's node and keep publishing: the collector must move on.
    let killed_at = Instant::now();
    cluster(&["kill", &killed.to_string()]);
    for index in LOGS / 2..LOGS {
        publish(index).await;
    }
    let all = wait_until(TIMEOUT, || async { context.stored().await >= LOGS }).await;
    let recovered_in = killed_at.elapsed();
    let after = collector_node(admin_port).await;
    let _ = collector.kill();
    let _ = collector.wait();
    let stored = context.stored().await;
    println!(
        "killed node {killed} ({node}); all {LOGS} stored {:.1} s after the kill; collector now on {after:?}",
        recovered_in.as_secs_f64()
    );
    assert!(
        all,
        "{stored} of {LOGS} stored after node {killed} was killed"
    );
    assert_eq!(stored, LOGS, "each confirmed log exactly once");
    assert_ne!(
        after.as_deref(),
        Some(node.as_str()),
        "it moved to another node"
    );
    for queue in [
        &broker_settings.storage_queue,
        &broker_settings.dead_letter_queue,
        &broker_settings.monitoring_queue,
    ] {
        let _ = channel
            .queue_delete(queue.as_str().into(), Default::default())
            .await;
    }
    let _ = connection.close(200, "done".into()).await;
    context.cleanup().await;
}
