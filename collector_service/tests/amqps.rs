//! `amqps://` against a TLS-enabled RabbitMQ node started for the test (`scripts/cluster.sh`
//! with one node and an AMQPS listener, its certificate made in the test): the simulator
//! publishes and the collector stores over TLS, verifying the node's certificate against
//! `broker.tls_ca_file`; without that CA, or at a name the certificate does not hold, the
//! connection is refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use logagg::broker;
use logagg::testsuite::{wait_until, TestCertificates, TestContext};
use tokio_util::sync::CancellationToken;

/// The TLS node's own directory, ports and epmd: beside the default node and the cluster
/// test's nodes, never touching them.
fn node_env(directory: &Path, certificates: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("LOGAGG_CLUSTER_DIR", directory.display().to_string()),
        ("LOGAGG_CLUSTER_BASE_PORT", "5750".into()),
        ("LOGAGG_CLUSTER_EPMD_PORT", "4400".into()),
        ("LOGAGG_CLUSTER_NODES", "1".into()),
        ("LOGAGG_CLUSTER_TLS_DIR", certificates.display().to_string()),
    ]
}

/// A one-node broker with AMQPS, stopped when dropped (the test passing or not).
struct TlsNode {
    env: Vec<(&'static str, String)>,
}

impl TlsNode {
    fn script(&self, argument: &str) -> String {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster.sh");
        let output = Command::new(&script)
            .arg(argument)
            .envs(self.env.iter().map(|(key, value)| (*key, value.as_str())))
            .stderr(Stdio::inherit())
            .output()
            .expect("scripts/cluster.sh runs");
        assert!(
            output.status.success(),
            "scripts/cluster.sh {argument} failed (RabbitMQ must be installed: scripts/setup.sh)"
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }
}

impl Drop for TlsNode {
    fn drop(&mut self) {
        self.script("stop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_publish_and_store_over_amqps_verifying_the_node() {
    const COUNT: u64 = 2_000;
    let context = TestContext::new("amqps").await;
    let directory = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.data/tls-broker");
    let certificates = TestCertificates::new(&directory.join("certs"));
    let node = TlsNode {
        env: node_env(&directory, &directory.join("certs")),
    };
    node.script("stop");
    node.script("start");
    let url = node.script("tls-urls");
    assert!(
        url.starts_with("amqps://guest:guest@localhost:5761"),
        "{url}"
    );

    let mut settings = context.settings.clone();
    settings.broker.url = url.clone();
    settings.broker.tls_ca_file = Some(certificates.ca_file.clone());

    // Verification is on: without the CA, and at an address the certificate does not
    // name, the handshake is refused.
    let mut untrusting = settings.broker.clone();
    untrusting.tls_ca_file = None;
    let refused = broker::connect(&untrusting, "amqps-untrusting")
        .await
        .expect_err("a node signed by an unknown CA");
    assert!(
        format!("{refused:?}")
            .to_lowercase()
            .contains("certificate"),
        "{refused:?}"
    );
    let mut wrong_name = settings.broker.clone();
    wrong_name.url = url.replace("localhost", "127.0.0.2");
    assert!(
        broker::connect(&wrong_name, "amqps-wrong-name")
            .await
            .is_err(),
        "a certificate that does not name the host"
    );
    let connection = broker::connect(&settings.broker, "amqps-check")
        .await
        .expect("amqps with the CA");
    let _ = connection.close(200, "checked".into()).await;

    // The collector and the simulator over TLS: every log stored once.
    let shutdown = CancellationToken::new();
    let collector = tokio::spawn(collector_service::run(settings.clone(), shutdown.clone()));
    (settings.source.count, settings.source.rate) = (COUNT, 0);
    let report = source_service::simulate(
        &settings,
        &logagg::telemetry::Health::default(),
        &CancellationToken::new(),
    )
    .await
    .expect("the simulator published over amqps");
    assert_eq!(report.confirmed, COUNT, "{report:?}");
    let stored = wait_until(Duration::from_secs(60), || async {
        context.stored().await >= COUNT
    })
    .await;
    assert!(
        stored,
        "{} of {COUNT} stored over amqps",
        context.stored().await
    );
    assert_eq!(context.stored().await, COUNT);
    shutdown.cancel();
    collector
        .await
        .expect("task")
        .expect("the collector stopped cleanly");
    drop(node);
    // The node's data holds this run's queues: nothing is left for the next run.
    let _ = std::fs::remove_dir_all(&directory);
    context.cleanup().await;
}
