//! Topology declaration against the real broker: idempotent, and a conflicting queue is an
//! operator's problem named as such, not a fault to retry quietly.

use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use logagg::testsuite::TestContext;
use logagg::topology;

#[tokio::test]
async fn declaring_twice_changes_nothing() {
    let context = TestContext::new("declare_twice").await;
    topology::declare(&context.channel, &context.settings.broker)
        .await
        .expect("second declaration of the same topology");
    context.cleanup().await;
}

#[tokio::test]
async fn a_queue_with_other_arguments_is_reported_with_a_hint() {
    let context = TestContext::new("mismatch").await;
    let mut settings = context.settings.broker.clone();
    settings.monitoring_queue = format!("{}.conflicting", settings.monitoring_queue);
    // An earlier version (or another tool) made this queue durable; the topology wants it not.
    let channel = context.connection.create_channel().await.expect("channel");
    channel
        .queue_declare(
            settings.monitoring_queue.as_str().into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await
        .expect("conflicting queue");

    let declare_channel = context.connection.create_channel().await.expect("channel");
    let error = topology::declare(&declare_channel, &settings)
        .await
        .expect_err("a mismatch must fail");
    assert!(error.is_topology_mismatch(), "{error}");
    let hint = error.hint().expect("a hint for the operator");
    assert!(hint.contains(&settings.monitoring_queue), "{hint}");

    let _ = channel
        .queue_delete(
            settings.monitoring_queue.as_str().into(),
            QueueDeleteOptions::default(),
        )
        .await;
    context.cleanup().await;
}
