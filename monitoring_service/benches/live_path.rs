//! The live path's broker cost (issue 18), one run on this machine, printing every figure.
//!
//! One realistic log per message, published persistent with confirms through the topic
//! exchange (`BENCH_MESSAGES`, default 200,000, per case) to:
//!
//! - `storage only`: the storage quorum queue alone (what a deployment without monitors
//!   costs the broker);
//! - `+ classic`: and the monitoring queue as today (classic, bounded, drop-head, TTL,
//!   single active consumer), read by a monitor-like consumer with auto-ack;
//! - `+ stream`: and a stream in its place (`x-queue-type: stream`, `x-max-age` 5 minutes),
//!   read from `next` with a prefetch of `BENCH_STREAM_PREFETCH` (default 1,000) and a
//!   `multiple` ack per half of it (streams need both).
//!
//! The cases run alternately (`BENCH_REPEAT`, default 2 rounds). For each: the publish rate,
//! the monitor's lag (the publisher's send to the consumer's delivery) p50 / p99, and what
//! the consumer received. The storage queue is not drained: a collector's cost is the
//! pipeline bench's.
//!
//! Run: `cargo bench -p monitoring_service --bench live_path` (RabbitMQ from scripts/setup.sh).

use std::time::{Duration, Instant};

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use logagg::testsuite::{bench_setting, TestContext};
use logagg::{broker, Severity};
use source_service::load::realistic::RealisticMessages;

const SERVICES: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    StorageOnly,
    Classic,
    Stream,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::StorageOnly => "storage only",
            Case::Classic => "+ classic monitoring queue",
            Case::Stream => "+ monitoring stream",
        }
    }
}

fn main() {
    if !logagg::testsuite::under_cargo_bench("cargo bench -p monitoring_service --bench live_path")
    {
        return;
    }
    let messages = bench_setting("BENCH_MESSAGES", 200_000);
    let rounds = bench_setting("BENCH_REPEAT", 2);
    println!("live path benchmark: {messages} one-log messages per case, {rounds} rounds");
    logagg::testsuite::block_on(async {
        for round in 1..=rounds {
            for case in [Case::StorageOnly, Case::Classic, Case::Stream] {
                run(case, messages, round).await;
            }
        }
    });
}

async fn run(case: Case, count: u64, round: u64) {
    let context = TestContext::new("bench_live_path").await;
    let broker_settings = &context.settings.broker;
    let channel = broker::confirm_channel(&context.connection)
        .await
        .expect("confirm channel");
    // The test topology is the deployment's: the storage queue and the monitoring queue,
    // both bound to the exchange.
    let classic = broker_settings.monitoring_queue.clone();
    let stream = format!("{classic}.stream");
    let base = Instant::now();
    let monitor_channel = context.connection.create_channel().await.expect("channel");
    if case != Case::Classic {
        context
            .channel
            .queue_delete(classic.as_str().into(), QueueDeleteOptions::default())
            .await
            .expect("delete the classic monitoring queue");
    }
    let monitor = match case {
        Case::StorageOnly => None,
        Case::Classic => Some(tokio::spawn(consume(
            monitor_channel,
            classic.clone(),
            false,
            count,
            base,
        ))),
        Case::Stream => {
            let mut arguments = FieldTable::default();
            arguments.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("stream".into()),
            );
            arguments.insert("x-max-age".into(), AMQPValue::LongString("5m".into()));
            declare_bound(&context, &stream, arguments).await;
            Some(tokio::spawn(consume(
                monitor_channel,
                stream.clone(),
                true,
                count,
                base,
            )))
        }
    };

    let mut messages = RealisticMessages::new(SERVICES, round);
    let started = Instant::now();
    let mut unconfirmed = FuturesUnordered::new();
    for index in 0..count {
        while unconfirmed.len() >= context.settings.source.max_unconfirmed {
            unconfirmed.next().await;
        }
        let service = (index as usize) % SERVICES;
        let severity = Severity::ALL[(index as usize) % Severity::ALL.len()];
        let body = serde_json::json!({
            "service": format!("svc-{service:02}"),
            "severity": severity.as_str(),
            "message": messages.message(service, severity),
        })
        .to_string()
        .into_bytes();
        let mut headers = FieldTable::default();
        let sent = i64::try_from(base.elapsed().as_micros()).unwrap_or(i64::MAX);
        headers.insert("sent_us".into(), AMQPValue::LongLongInt(sent));
        let properties = broker::log_properties(broker::CONTENT_TYPE_JSON, &index.to_string())
            .with_headers(headers);
        unconfirmed.push(broker::publish_owned(
            channel.clone(),
            broker_settings.exchange.as_str().into(),
            format!("svc-{service:02}.{}", severity.as_str()),
            body,
            properties,
        ));
    }
    let mut nacked = 0u64;
    while let Some(confirmation) = unconfirmed.next().await {
        if !matches!(confirmation, Ok(confirmation) if confirmation.is_ack()) {
            nacked += 1;
        }
    }
    let publish_rate = count as f64 / started.elapsed().as_secs_f64();
    let lag = match monitor {
        None => String::new(),
        Some(monitor) => {
            let (received, mut lags) = monitor.await.expect("consumer");
            lags.sort_unstable();
            let at = |quantile: f64| {
                lags.get(
                    ((lags.len() as f64 * quantile) as usize).min(lags.len().saturating_sub(1)),
                )
                .copied()
                .unwrap_or_default() as f64
                    / 1_000.0
            };
            format!(
                "; monitor received {received}, lag p50 {:.1} ms p99 {:.1} ms",
                at(0.5),
                at(0.99)
            )
        }
    };
    println!(
        "round {round} {:<28} publish+confirm {publish_rate:>8.0} msg/s, {nacked} nacked{lag}",
        case.name()
    );
    let _ = context
        .channel
        .queue_delete(stream.as_str().into(), QueueDeleteOptions::default())
        .await;
    context.cleanup().await;
}

async fn declare_bound(context: &TestContext, queue: &str, arguments: FieldTable) {
    context
        .channel
        .queue_declare(queue.into(), QueueDeclareOptions::durable(), arguments)
        .await
        .expect("declare");
    context
        .channel
        .queue_bind(
            queue.into(),
            context.settings.broker.exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
}

/// Reads `queue` as a monitor would until `count` messages came or none came for 5 s (a
/// bounded queue drops); returns what it received and each one's lag in microseconds.
async fn consume(
    channel: lapin::Channel,
    queue: String,
    stream: bool,
    count: u64,
    base: Instant,
) -> (u64, Vec<u64>) {
    let prefetch = u16::try_from(bench_setting("BENCH_STREAM_PREFETCH", 1_000)).unwrap_or(u16::MAX);
    let ack_every = u64::from(prefetch / 2).max(1);
    let mut arguments = FieldTable::default();
    if stream {
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await
            .expect("qos");
        arguments.insert(
            "x-stream-offset".into(),
            AMQPValue::LongString("next".into()),
        );
    }
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "bench-monitor".into(),
            BasicConsumeOptions {
                no_ack: !stream,
                ..BasicConsumeOptions::default()
            },
            arguments,
        )
        .await
        .expect("consume");
    let mut lags = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    let mut received = 0u64;
    while received < count {
        let delivery = match tokio::time::timeout(Duration::from_secs(5), consumer.next()).await {
            Ok(Some(Ok(delivery))) => delivery,
            _ => break,
        };
        received += 1;
        let sent = delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|headers| headers.inner().get("sent_us").cloned());
        if let Some(AMQPValue::LongLongInt(sent)) = sent {
            let now = i64::try_from(base.elapsed().as_micros()).unwrap_or(i64::MAX);
            lags.push(u64::try_from(now.saturating_sub(sent)).unwrap_or(0));
        }
        if stream && (received % ack_every == 0 || received == count) {
            channel
                .basic_ack(delivery.delivery_tag, BasicAckOptions { multiple: true })
                .await
                .expect("ack");
        }
    }
    (received, lags)
}
