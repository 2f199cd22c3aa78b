//! Pipeline benchmark, one run on this machine, printing every figure:
//!
//! (a) the raw broker ceiling: persistent messages with confirms into a quorum queue, then
//!     drained by a consumer that only acks (multiple acks); then the same logs published
//!     through the services' topology (topic exchange, storage and monitoring queues) with
//!     nothing consuming: the broker's ceiling for what (b) publishes;
//! (b) the pipeline: simulator → exchange → collector → stored, running together, with an
//!     auto-ack consumer on the monitoring queue standing in for monitoring_service;
//! (c) the MongoDB-compatible server's bulk-insert ceiling with the same documents;
//! (d) the collector binary draining a pre-filled queue, and its peak RSS;
//! (e) the collector's CPU per log, on one core: parsing, then encoding and hashing;
//! (f) (b) with each service its own process (`source_service simulate`, `collector_service`,
//!     `monitoring_service` with its default rule) and each one's peak RSS. It runs the
//!     release binaries beside the bench's collector, so build them first:
//!     `cargo build --release -p source_service -p monitoring_service`. `BENCH_SERVICES`
//!     (default 20) is how many services the simulator spreads the logs over: the monitor
//!     keeps windows per service (`BENCH_SERVICES=10000` is the scale).
//!
//! Run: `cargo bench -p collector_service --bench pipeline` (services from scripts/setup.sh).
//! Sizes: `BENCH_MESSAGES` (default 200000); (c) and (d) run `BENCH_REPEAT` times (default 3)
//! and their medians make the ratio. `LOGAGG__STORE__WORD_INDEX=false` measures (b), (c) and
//! (d) without storing messages' words (the collector child inherits the variable).
//! `BENCH_BATCH=50` has the simulator in (b) and (d) send up to 50 logs per message (batch
//! messages, `source.batch_records`); (a) always sends one log per message.
//!
//!
//! The simulator's logs are the realistic profile's (`source.profile = realistic`: real
//! systems' lines with ids, addresses and numbers); `BENCH_PROFILE=simple` measures the
//! earlier 16-word vocabulary instead.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use logagg::broker;
use logagg::parse::{parse_message, Envelope};
use logagg::settings::Settings;
use logagg::settings::{SourceSettings, TrafficProfile};
use logagg::store::record_to_raw;
use logagg::telemetry::Health;
use logagg::testsuite::{
    bench_setting, metric_in, peak_rss_kib, scrape_metrics, wait_until, TestContext,
};
use logagg::LogRecord;
use source_service::load::simulator::Generator;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(600);

fn messages() -> u64 {
    std::env::var("BENCH_MESSAGES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(200_000)
}

fn main() {
    if !logagg::testsuite::under_cargo_bench("cargo bench -p collector_service --bench pipeline") {
        return;
    }
    logagg::testsuite::block_on(run());
}

/// `BENCH_ONLY=d` (or `a`, `b`, `c`) runs one measurement; ratios then use the figures
/// given in `BENCH_PUBLISH_RATE`, `BENCH_DRAIN_RATE`, `BENCH_TOPOLOGY_RATE` and
/// `BENCH_INSERT_RATE`.
fn only(part: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |only| only.contains(part))
}

/// Runs of (c) and (d), whose ratio is a target: their medians are used. `BENCH_REPEAT`.
fn repeats() -> usize {
    std::env::var("BENCH_REPEAT")
        .ok()
        .and_then(|value| value.parse().ok())
        .filter(|runs| *runs > 0)
        .unwrap_or(3)
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn given(name: &str) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(f64::NAN)
}

async fn run() {
    let count = messages();
    println!("logagg pipeline benchmark: {count} messages per measurement");
    let (publish_rate, drain_rate, topology_rate) = if only("a") {
        broker_ceiling(count).await
    } else {
        (
            given("BENCH_PUBLISH_RATE"),
            given("BENCH_DRAIN_RATE"),
            given("BENCH_TOPOLOGY_RATE"),
        )
    };
    println!("(a) broker ceiling, one quorum queue: publish+confirm {publish_rate:>9.0} msg/s, drain (ack only) {drain_rate:>9.0} msg/s");
    let insert_rate = if only("c") {
        let mut samples = Vec::new();
        for _ in 0..repeats() {
            samples.push(insert_ceiling(count).await);
        }
        println!("    (c) runs: {samples:.0?}");
        median(samples)
    } else {
        given("BENCH_INSERT_RATE")
    };
    println!(
        "(c) bulk-insert ceiling (1000/batch, 2 in flight, j:true), median: {insert_rate:>9.0} docs/s"
    );
    if only("b") {
        let pipeline_rate = pipeline(count).await;
        println!(
        "(b) pipeline source→collector→stored: {pipeline_rate:>9.0} logs/s = {:.0}% of the broker publish ceiling, {:.0}% of the topology's",
            100.0 * pipeline_rate / publish_rate,
            100.0 * pipeline_rate / topology_rate
        );
    }
    if only("e") {
        let (decode_us, encode_us) = decode_cost(count);
        println!(
            "(e) collector CPU per message, one core: parse {decode_us:.2} µs + BSON build and encode {encode_us:.2} µs"
        );
    }
    if only("f") {
        services_as_processes(count).await;
    }
    if !only("d") {
        return;
    }
    let mut samples = Vec::new();
    let mut peak_rss_kib = 0;
    for _ in 0..repeats() {
        let (rate, rss_kib) = prefilled_drain(count).await;
        samples.push(rate);
        peak_rss_kib = peak_rss_kib.max(rss_kib);
    }
    println!("    (d) runs: {samples:.0?}");
    let drain_only_rate = median(samples);
    let bound = drain_rate.min(insert_rate);
    println!(
        "(d) collector draining {count} pre-filled, median: {drain_only_rate:>9.0} logs/s = {:.0}% of min(a drain, c) = {bound:.0}; collector peak RSS {:.1} MiB",
        100.0 * drain_only_rate / bound,
        peak_rss_kib as f64 / 1024.0
    );
}

/// A generated JSON log as the simulator makes it.
fn generated(generator: &mut Generator) -> source_service::load::simulator::GeneratedLog {
    generator.next_log(Utc::now())
}

/// (a): publish and drain rates of one quorum queue, and the publish rate through the
/// services' topology.
async fn broker_ceiling(count: u64) -> (f64, f64, f64) {
    let context = TestContext::new("bench_broker").await;
    let queue = format!("{}.ceiling", context.settings.broker.storage_queue);
    let channel = broker::confirm_channel(&context.connection)
        .await
        .expect("confirm channel");
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        lapin::types::AMQPValue::LongString("quorum".into()),
    );
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::durable(),
            arguments,
        )
        .await
        .expect("declare");
    let mut generator = Generator::new(&bench_source(&context.settings), 1);
    // The default exchange routes straight to the one quorum queue named by the key.
    let publish_rate = publish_confirmed(
        &context,
        &channel,
        &mut generator,
        count,
        Route::Queue(&queue),
    )
    .await;

    let consumer_channel = context.connection.create_channel().await.expect("channel");
    consumer_channel
        .basic_qos(4_000, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = consumer_channel
        .basic_consume(
            queue.as_str().into(),
            "bench-drain".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let started = Instant::now();
    let mut received = 0u64;
    while received < count {
        let Some(Ok(delivery)) = consumer.next().await else {
            panic!("consumer ended")
        };
        received += 1;
        if received % 1_000 == 0 || received == count {
            consumer_channel
                .basic_ack(delivery.delivery_tag, BasicAckOptions { multiple: true })
                .await
                .expect("ack");
        }
    }
    let drain_rate = count as f64 / started.elapsed().as_secs_f64();
    let _ = consumer_channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;

    // The same logs through the services' topology, nothing consuming: the topic exchange
    // copies each to the storage quorum queue and the monitoring queue.
    let topology_rate =
        publish_confirmed(&context, &channel, &mut generator, count, Route::Exchange).await;
    println!(
        "    (a) through the topology (topic exchange → storage quorum queue + monitoring queue), nothing consuming: publish+confirm {topology_rate:>9.0} msg/s"
    );
    context.cleanup().await;
    (publish_rate, drain_rate, topology_rate)
}

/// Where (a) publishes.
enum Route<'a> {
    /// Through the default exchange to this queue.
    Queue(&'a str),
    /// Through the services' exchange, by each log's routing key.
    Exchange,
}

/// Publishes `count` generated logs by `route` with confirms, at most the source's
/// `max_unconfirmed` outstanding; returns messages per second.
async fn publish_confirmed(
    context: &TestContext,
    channel: &lapin::Channel,
    generator: &mut Generator,
    count: u64,
    route: Route<'_>,
) -> f64 {
    let mut unconfirmed = FuturesUnordered::new();
    let started = Instant::now();
    for _ in 0..count {
        while unconfirmed.len() >= context.settings.source.max_unconfirmed {
            unconfirmed.next().await;
        }
        let log = generated(generator);
        let properties = broker::log_properties(broker::CONTENT_TYPE_JSON, &log.message_id);
        let (exchange, routing_key) = match route {
            Route::Queue(queue) => ("", queue.to_owned()),
            Route::Exchange => (context.settings.broker.exchange.as_str(), log.routing_key),
        };
        unconfirmed.push(broker::publish_owned(
            channel.clone(),
            exchange.into(),
            routing_key,
            log.body,
            properties,
        ));
    }
    while unconfirmed.next().await.is_some() {}
    count as f64 / started.elapsed().as_secs_f64()
}

/// Logs per message the simulator sends in (b) and (d): `BENCH_BATCH` (default 1).
fn batch_records() -> usize {
    std::env::var("BENCH_BATCH")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(1)
}

/// `store.word_index` as the bench's environment sets it (default on).
fn word_index() -> bool {
    std::env::var("LOGAGG__STORE__WORD_INDEX").map_or(true, |value| value != "false")
}

/// A generated JSON log as the collector parses it.
fn generated_record(generator: &mut Generator) -> LogRecord {
    let log = generated(generator);
    parse_message(&Envelope {
        routing_key: &log.routing_key,
        body: &log.body,
        content_type: Some(broker::CONTENT_TYPE_JSON),
        message_id: Some(&log.message_id),
        amqp_timestamp: None,
        received_at: Utc::now(),
    })
    .expect("parse")
}

/// The simulator's settings with the bench's profile: `BENCH_PROFILE` (default realistic).
fn bench_source(settings: &Settings) -> SourceSettings {
    let profile = match std::env::var("BENCH_PROFILE").as_deref() {
        Ok("simple") => TrafficProfile::Simple,
        _ => TrafficProfile::Realistic,
    };
    SourceSettings {
        profile,
        ..settings.source.clone()
    }
}

/// (c): the documents the collector would write (with word search on, each 1,000's word
/// blocks first), inserted 1,000 at a time, 2 in flight.
async fn insert_ceiling(count: u64) -> f64 {
    let context = TestContext::new("bench_insert").await;
    context.store.ensure_indexes().await.expect("indexes");
    let mut generator = Generator::new(&bench_source(&context.settings), 2);
    let records: Vec<LogRecord> = (0..count)
        .map(|_| generated_record(&mut generator))
        .collect();
    let batches: Vec<_> = records
        .chunks(1_000)
        .map(|batch| context.store.log_documents(batch))
        .collect();
    let started = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    for (documents, blocks) in batches {
        if in_flight.len() >= 2 {
            in_flight.next().await;
        }
        let logs = context
            .store
            .logs()
            .clone_with_type::<bson::RawDocumentBuf>();
        let block_collection = context.store.blocks().cloned();
        in_flight.push(tokio::spawn(async move {
            // As the store writes them: blocks and logs at once.
            let blocks_written = async {
                if let Some(collection) = block_collection.filter(|_| !blocks.is_empty()) {
                    collection
                        .insert_many(blocks)
                        .ordered(false)
                        .await
                        .expect("insert blocks");
                }
            };
            let logs_written = async {
                logs.insert_many(documents)
                    .ordered(false)
                    .await
                    .expect("insert")
            };
            futures::join!(blocks_written, logs_written).1
        }));
    }
    while in_flight.next().await.is_some() {}
    let rate = count as f64 / started.elapsed().as_secs_f64();
    context.cleanup().await;
    rate
}

async fn pipeline(count: u64) -> f64 {
    let context = TestContext::new("bench_pipeline").await;
    let mut settings = context.settings.clone();
    settings.source = bench_source(&settings);
    settings.telemetry.log_level = "warn".into();
    settings.store.word_index = word_index();
    settings.source.batch_records = batch_records();
    let shutdown = CancellationToken::new();
    let collector = tokio::spawn(collector_service::run(settings.clone(), shutdown.clone()));
    let monitor = tokio::spawn(logagg::testsuite::stand_in_monitor(
        context.settings.clone(),
        shutdown.clone(),
    ));
    let started = Instant::now();
    settings.source.count = count;
    settings.source.rate = 0;
    let report = source_service::simulate(&settings, &Health::default(), &CancellationToken::new())
        .await
        .expect("simulate");
    println!("    (b) simulator: {report}");
    let written = wait_until(WAIT, || async {
        written_in(&logagg::telemetry::metrics_handle().render()) >= count as f64
    })
    .await;
    let rate = count as f64 / started.elapsed().as_secs_f64();
    shutdown.cancel();
    let _ = collector.await;
    let sampled = monitor.await.unwrap_or(0);
    println!("    (b) the stand-in monitor received {sampled} messages on the monitoring queue");
    assert!(written, "pipeline did not store everything");
    assert_eq!(stored(&context).await, count);
    context.cleanup().await;
    rate
}

async fn prefilled_drain(count: u64) -> (f64, u64) {
    let context = TestContext::new("bench_drain").await;
    let mut settings: Settings = context.settings.clone();
    settings.source = bench_source(&settings);
    settings.source.count = count;
    settings.source.rate = 0;
    settings.source.batch_records = batch_records();
    let report = source_service::simulate(&settings, &Health::default(), &CancellationToken::new())
        .await
        .expect("prefill");
    let storage_queue = settings.broker.storage_queue.clone();
    assert_eq!(
        u64::from(context.ready_messages(&storage_queue).await),
        report.messages
    );

    let admin_port = logagg::testsuite::free_port();
    let started = Instant::now();
    let mut collector = context
        .service_command(env!("CARGO_BIN_EXE_collector_service"), admin_port)
        .env("LOGAGG__TELEMETRY__LOG_LEVEL", "warn")
        // Tuning under test: LOGAGG__COLLECTOR__* from the bench's environment wins.
        .envs(std::env::vars().filter(|(key, _)| key.starts_with("LOGAGG__COLLECTOR__")))
        .stdout(Stdio::null())
        .spawn()
        .expect("collector process");
    // The drain starts at the first delivery: process start, connecting and declaring are
    // not draining (their time is printed separately).
    let consuming = wait_until(WAIT, || async {
        scrape_metrics(admin_port)
            .await
            .lines()
            .any(|line| line.starts_with("logagg_collector_consumed_total "))
    })
    .await;
    assert!(consuming, "collector never consumed");
    let startup = started.elapsed();
    let drain_started = Instant::now();
    let written = wait_until(WAIT, || async {
        written_in(&scrape_metrics(admin_port).await) >= count as f64
    })
    .await;
    let rate = count as f64 / drain_started.elapsed().as_secs_f64();
    println!(
        "    (d) collector start-up before the first delivery: {} ms",
        startup.as_millis()
    );
    let peak_rss_kib = peak_rss_kib(collector.id());
    let _ = Command::new("kill")
        .args(["-TERM", &collector.id().to_string()])
        .status();
    let _ = collector.wait();
    assert!(written, "collector did not drain the queue");
    assert_eq!(stored(&context).await, count);
    context.cleanup().await;
    (rate, peak_rss_kib)
}

/// (f): the services as the user runs them, each its own process, the simulator publishing
/// `count` logs as fast as confirms allow; prints the rate from the simulator's start to the
/// last log stored and each process's peak RSS.
async fn services_as_processes(count: u64) {
    let binary = |name: &str| {
        std::path::Path::new(env!("CARGO_BIN_EXE_collector_service")).with_file_name(name)
    };
    let (source, monitor) = (binary("source_service"), binary("monitoring_service"));
    if !source.exists() || !monitor.exists() {
        println!(
            "(f) skipped: {} or {} is missing; run `cargo build --release -p source_service -p monitoring_service`",
            source.display(),
            monitor.display()
        );
        return;
    }
    let services = bench_setting("BENCH_SERVICES", 20);
    let context = TestContext::new("bench_services").await;
    let service_names = (0..services)
        .map(|index| format!("svc-{index:05}"))
        .collect::<Vec<_>>()
        .join(",");
    let spawn = |path: &std::path::Path, admin_port: u16, arguments: &[String]| {
        context
            .service_command(path, admin_port)
            .args(arguments)
            .env("LOGAGG__TELEMETRY__LOG_LEVEL", "warn")
            .env("LOGAGG__SOURCE__SERVICES", &service_names)
            .envs(std::env::vars().filter(|(key, _)| key.starts_with("LOGAGG__COLLECTOR__")))
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
    };
    let (collector_port, monitor_port, source_port) = (
        logagg::testsuite::free_port(),
        logagg::testsuite::free_port(),
        logagg::testsuite::free_port(),
    );
    let mut collector = spawn(
        std::path::Path::new(env!("CARGO_BIN_EXE_collector_service")),
        collector_port,
        &[],
    );
    let mut monitor = spawn(&monitor, monitor_port, &[]);
    let queues = context.settings.broker.clone();
    let consuming = wait_until(WAIT, || async {
        consumed(&context, &queues.storage_queue).await
            && consumed(&context, &queues.monitoring_queue).await
    })
    .await;
    assert!(consuming, "collector or monitor never consumed");
    let profile = bench_source(&context.settings).profile;
    let started = Instant::now();
    let mut simulator = spawn(
        &source,
        source_port,
        &[
            "simulate".into(),
            format!("--count={count}"),
            "--rate=0".into(),
            format!("--profile={}", profile.as_str()),
            format!("--batch={}", batch_records()),
        ],
    );
    let mut source_peak_kib = 0;
    let published = loop {
        source_peak_kib = source_peak_kib.max(peak_rss_kib(simulator.id()));
        if let Some(status) = simulator.try_wait().expect("simulator") {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(published.success(), "simulator failed: {published}");
    let written = wait_until(WAIT, || async {
        written_in(&scrape_metrics(collector_port).await) >= count as f64
    })
    .await;
    let rate = count as f64 / started.elapsed().as_secs_f64();
    assert!(written, "collector did not store every log");
    // The monitor takes what its bounded queue holds: done once that queue is empty.
    let monitored = wait_until(WAIT, || async {
        context.ready_messages(&queues.monitoring_queue).await == 0
    })
    .await;
    assert!(monitored, "monitor did not empty its queue");
    let monitor_metrics = scrape_metrics(monitor_port).await;
    println!(
        "(f) services as processes, {count} logs over {services} services: {rate:>9.0} logs/s; peak RSS source {:.1} MiB, collector {:.1} MiB, monitor {:.1} MiB (it received {} messages and keeps {} services)",
        source_peak_kib as f64 / 1024.0,
        peak_rss_kib(collector.id()) as f64 / 1024.0,
        peak_rss_kib(monitor.id()) as f64 / 1024.0,
        metric_in(&monitor_metrics, "logagg_monitor_messages_total"),
        metric_in(&monitor_metrics, "logagg_monitor_services"),
    );
    for child in [&mut collector, &mut monitor] {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let _ = child.wait();
    }
    assert_eq!(stored(&context).await, count);
    context.cleanup().await;
}

/// Whether `queue` has a consumer.
async fn consumed(context: &TestContext, queue: &str) -> bool {
    context
        .queue_state(queue)
        .await
        .is_some_and(|state| state.consumers > 0)
}

/// Microseconds per message for the collector's pure work: parsing the delivery, then
/// encoding the BSON document as the driver sends it, with the message's words and its
/// batch's word blocks.
fn decode_cost(count: u64) -> (f64, f64) {
    let settings = Settings::default();
    let mut generator = Generator::new(&bench_source(&settings), 3);
    let messages: Vec<collector_service::batch::PendingMessage> = (0..count)
        .map(|index| {
            let log = generated(&mut generator);
            collector_service::batch::PendingMessage {
                delivery_tag: index + 1,
                routing_key: log.routing_key,
                properties: broker::log_properties(broker::CONTENT_TYPE_JSON, &log.message_id),
                body: log.body,
                received_at: Utc::now(),
                redelivered: false,
                oversized: None,
            }
        })
        .collect();
    let started = Instant::now();
    let decoded = collector_service::batch::decode(&messages);
    let decode_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut encoded_bytes = 0usize;
    let mut blocks = logagg::store::blocks::BlockBuilder::default();
    for record in &decoded.records {
        let words = logagg::words::hashed_words(&record.message);
        blocks.push_hashed(&record.id, record.timestamp, &record.service, &words.hashes);
        let document = record_to_raw::<&str>(record, None);
        encoded_bytes += document.as_bytes().len();
    }
    for block in blocks.finish() {
        encoded_bytes += bson::to_vec(&block).map_or(0, |bytes| bytes.len());
    }
    let encode_seconds = started.elapsed().as_secs_f64();
    assert!(encoded_bytes > 0);
    let per_message = |seconds: f64| seconds * 1e6 / count as f64;
    (per_message(decode_seconds), per_message(encode_seconds))
}

/// Records the collector reports written (new or already there), from its metrics text.
fn written_in(metrics_text: &str) -> f64 {
    metric_in(metrics_text, "logagg_collector_stored_total")
        + metric_in(metrics_text, "logagg_collector_duplicates_total")
}

/// Stored documents, counted once; SecantusDB counts by scanning, so timed loops never call it.
async fn stored(context: &TestContext) -> u64 {
    context
        .store
        .logs()
        .count_documents(bson::doc! {})
        .await
        .expect("count")
}
