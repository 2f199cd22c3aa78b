//! Retention benchmark, one run on this machine, printing every figure:
//!
//! (a) purge rate on `BENCH_RECORDS` (default 1,000,000) expired logs, alone, with the default
//!     batch size and pause;
//! (b) ingest throughput (bulk inserts of 1,000 with 2 in flight, as a collector writes) for
//!     `BENCH_INGEST_SECONDS` alone, then as long again while a purge runs (on a fresh backlog
//!     of 300,000 expired logs), and the ratio of the two; the purge rate under that load too.
//!
//! Logs carry the realistic profile's messages over 20 services (their word blocks written
//! with them, as a collector writes them); `BENCH_PROFILE=simple` gives the earlier one
//! fixed line.
//!
//! Run: `cargo bench -p retention_service --bench purge` (MongoDB-compatible server from
//! scripts/setup.sh). `BENCH_RECORDS`, `BENCH_INGEST_SECONDS` (default 10),
//! `BENCH_BATCH_SIZE` and `BENCH_PAUSE_MS` (defaults: the settings' 1000 and 50) change sizes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use logagg::settings::RetentionSettings;
use logagg::store::Database;
use logagg::testsuite::{bench_setting, metric_value, TestContext};
use logagg::{LogRecord, Severity};
use retention_service::clock::SystemClock;
use retention_service::metrics;
use retention_service::purge::{Purger, Trigger};
use source_service::load::realistic::RealisticMessages;
use tokio_util::sync::CancellationToken;

fn main() {
    if !logagg::testsuite::under_cargo_bench("cargo bench -p retention_service --bench purge") {
        return;
    }
    logagg::testsuite::block_on(run());
}

async fn run() {
    let records = bench_setting("BENCH_RECORDS", 1_000_000);
    let ingest_seconds = bench_setting("BENCH_INGEST_SECONDS", 10);
    let defaults = RetentionSettings::default();
    let settings = RetentionSettings {
        batch_size: bench_setting("BENCH_BATCH_SIZE", defaults.batch_size as u64) as usize,
        batch_pause_ms: std::time::Duration::from_millis(bench_setting(
            "BENCH_PAUSE_MS",
            defaults.batch_pause_ms.as_millis() as u64,
        )),
        ..defaults
    };
    println!(
        "retention benchmark: {records} expired logs, batch {} with {} ms pause, {ingest_seconds} s ingest window",
        settings.batch_size,
        settings.batch_pause_ms.as_millis()
    );
    let context = TestContext::new("bench_retention").await;
    let purger = Purger {
        store: context.store.clone(),
        settings: Arc::new(settings),
        clock: Arc::new(SystemClock),
        holder: "bench".into(),
        shutdown: CancellationToken::new(),
    };

    let seeded = seed_expired(&context.store, records).await;
    println!("seeded {records} expired logs at {seeded:.0} logs/s");
    let started = Instant::now();
    let report = purger.run(Trigger::Manual, false).await.expect("purge");
    let alone = report.total_deleted() as f64 / started.elapsed().as_secs_f64();
    println!(
        "(a) purge alone: {} deleted in {:.1} s = {alone:.0} logs/s ({} batches)",
        report.total_deleted(),
        started.elapsed().as_secs_f64(),
        report
            .policies
            .iter()
            .map(|policy| policy.batches)
            .sum::<u64>()
    );

    let window = Duration::from_secs(ingest_seconds);
    let ingest_alone = ingest(&context.store, window).await;
    println!("(b) ingest alone: {ingest_alone:.0} logs/s");
    seed_expired(&context.store, BACKLOG_DURING_INGEST).await;
    let deleted_before = metric_value(metrics::DELETED);
    let stop_purge = CancellationToken::new();
    let purging = tokio::spawn({
        let purger = Purger {
            shutdown: stop_purge.clone(),
            ..purger.clone()
        };
        async move { purger.run(Trigger::Manual, false).await }
    });
    let ingest_during = ingest(&context.store, window).await;
    let deleted_during = metric_value(metrics::DELETED) - deleted_before;
    stop_purge.cancel();
    let outcome = purging.await.expect("purge task");
    assert!(
        outcome.is_err(),
        "the purge finished inside the window; raise BACKLOG_DURING_INGEST"
    );
    println!(
        "    ingest while a purge runs: {ingest_during:.0} logs/s = {:.2} of ingest alone",
        ingest_during / ingest_alone
    );
    println!(
        "    purge meanwhile: {deleted_during:.0} deleted in {ingest_seconds} s = {:.0} logs/s",
        deleted_during / window.as_secs_f64()
    );
    context.cleanup().await;
}

/// Expired logs seeded for (b): more than a purge deletes in the ingest window.
const BACKLOG_DURING_INGEST: u64 = 300_000;

const SERVICES: usize = 20;

/// The realistic profile's messages unless `BENCH_PROFILE=simple`.
fn messages() -> Option<RealisticMessages> {
    let simple = std::env::var("BENCH_PROFILE").is_ok_and(|profile| profile == "simple");
    (!simple).then(|| RealisticMessages::new(SERVICES, 11))
}

fn log(
    id: String,
    age: chrono::Duration,
    n: u64,
    messages: &mut Option<RealisticMessages>,
) -> LogRecord {
    let timestamp = Utc::now() - age;
    let service = (n % SERVICES as u64) as usize;
    LogRecord {
        message: match messages {
            Some(messages) => messages.message(service, Severity::Info),
            None => format!("GET /api/orders/{id} returned 200 in 12 ms for a benchmark"),
        },
        id,
        timestamp,
        received_at: timestamp,
        service: format!("svc-{service:02}"),
        severity: Severity::Info,
        host: Some("bench-host".into()),
        attributes: serde_json::Map::new(),
        http: None,
    }
}

/// Inserts `count` logs aged 11 to 20 days; returns the insert rate.
async fn seed_expired(store: &Database, count: u64) -> f64 {
    let started = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    let prefix = uuid::Uuid::now_v7().simple().to_string();
    let mut messages = messages();
    for first in (0..count).step_by(1_000) {
        if in_flight.len() >= 2 {
            in_flight.next().await;
        }
        let batch: Vec<LogRecord> = (first..(first + 1_000).min(count))
            .map(|n| {
                let age =
                    chrono::Duration::days(11) + chrono::Duration::seconds((n % 777_600) as i64);
                log(format!("{prefix}-{n}"), age, n, &mut messages)
            })
            .collect();
        let store = store.clone();
        in_flight.push(tokio::spawn(async move {
            store.insert_records(&batch).await.expect("seed insert")
        }));
    }
    while in_flight.next().await.is_some() {}
    store.ensure_retention_indexes().await.expect("indexes");
    count as f64 / started.elapsed().as_secs_f64()
}

/// Writes fresh logs in batches of 1,000 with 2 in flight for `window`; returns the rate.
async fn ingest(store: &Database, window: Duration) -> f64 {
    let written = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let prefix = uuid::Uuid::now_v7().simple().to_string();
    let mut in_flight = FuturesUnordered::new();
    let mut next = 0_u64;
    let mut messages = messages();
    while started.elapsed() < window {
        if in_flight.len() >= 2 {
            in_flight.next().await;
            continue;
        }
        let batch: Vec<LogRecord> = (next..next + 1_000)
            .map(|n| {
                log(
                    format!("{prefix}-{n}"),
                    chrono::Duration::zero(),
                    n,
                    &mut messages,
                )
            })
            .collect();
        next += 1_000;
        let store = store.clone();
        let written = Arc::clone(&written);
        in_flight.push(tokio::spawn(async move {
            let outcome = store.insert_records(&batch).await.expect("ingest insert");
            written.fetch_add(outcome.inserted as u64, Ordering::SeqCst);
        }));
    }
    let elapsed = started.elapsed().as_secs_f64();
    while in_flight.next().await.is_some() {}
    written.load(Ordering::SeqCst) as f64 / elapsed
}
