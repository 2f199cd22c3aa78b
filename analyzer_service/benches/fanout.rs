//! Fan-out benchmark, one run on this machine, printing every figure: the distributor
//! (analyzer_service's binary) delivering a pre-filled queue to four local analyzers that
//! answer at once, against the collector draining the same logs from the storage queue in
//! the same run (their ratio's target is at least 1: the distributor writes nothing to the
//! database per log); the distributor's peak RSS; the split's error against the weights
//! 0.4/0.3/0.2/0.1 in that run, and the schedule's alone at 10k, 100k and 1M logs.
//!
//! Run: `cargo bench -p analyzer_service --bench fanout` (services from scripts/setup.sh).
//! `BENCH_LOGS` (default 100000); `BENCH_BATCH` logs per message (default 1); realistic logs
//! (`BENCH_PROFILE=simple` for the 16-word vocabulary).

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use analyzer_service::schedule::Schedule;
use lapin::options::{QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use logagg::settings::{Settings, TrafficProfile};
use logagg::store::analyzers::Target;
use logagg::telemetry::Health;
use logagg::testsuite::{bench_setting, peak_rss_kib, wait_until, TestContext};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(600);
const WEIGHTS: [f64; 4] = [0.4, 0.3, 0.2, 0.1];

fn main() {
    if !logagg::testsuite::under_cargo_bench("cargo bench -p analyzer_service --bench fanout") {
        return;
    }
    logagg::testsuite::block_on(run());
}

/// An analyzer that answers 200 at once, counting the lines it got.
async fn analyzer() -> (String, Arc<AtomicU64>) {
    let count = Arc::new(AtomicU64::new(0));
    let app = axum::Router::new().route(
        "/logs",
        axum::routing::post({
            let count = count.clone();
            move |body: axum::body::Bytes| async move {
                let lines = body.iter().filter(|byte| **byte == b'\n').count() as u64;
                count.fetch_add(lines, Ordering::Relaxed);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/logs", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, count)
}

/// The largest difference between a share and its weight.
fn share_error(counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    counts
        .iter()
        .zip(WEIGHTS)
        .map(|(count, weight)| (*count as f64 / total.max(1) as f64 - weight).abs())
        .fold(0.0, f64::max)
}

async fn run() {
    let logs = bench_setting("BENCH_LOGS", 100_000);
    let context = TestContext::new("bench_fanout").await;
    let mut settings: Settings = context.settings.clone();
    settings.source.count = logs;
    settings.source.rate = 0;
    settings.source.batch_records = bench_setting("BENCH_BATCH", 1) as usize;
    settings.source.profile = match std::env::var("BENCH_PROFILE").as_deref() {
        Ok("simple") => TrafficProfile::Simple,
        _ => TrafficProfile::Realistic,
    };
    println!(
        "logagg fan-out benchmark: {logs} {} logs, {} per message",
        settings.source.profile.as_str(),
        settings.source.batch_records
    );

    // Both queues filled with the same logs: the distributor's declared and bound as it
    // would once an analyzer is registered.
    let connection = logagg::testsuite::await_broker(&settings).await;
    let channel = connection.create_channel().await.expect("channel");
    logagg::topology::declare(&channel, &settings.broker)
        .await
        .expect("topology");
    channel
        .queue_declare(
            settings.analyzers.queue.as_str().into(),
            QueueDeclareOptions::durable(),
            analyzer_service::distributor::queue_arguments(&settings),
        )
        .await
        .expect("analyzers queue");
    channel
        .queue_bind(
            settings.analyzers.queue.as_str().into(),
            settings.broker.exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("binding");
    let report = source_service::simulate(&settings, &Health::default(), &CancellationToken::new())
        .await
        .expect("prefill");
    println!("  prefilled: {report}");

    // The collector drains the storage queue (in this process, its release build).
    let shutdown = CancellationToken::new();
    let collector = tokio::spawn(collector_service::run(settings.clone(), shutdown.clone()));
    let first = wait_until(WAIT, || async { context.stored().await > 0 }).await;
    assert!(first, "the collector stored nothing");
    let started = Instant::now();
    let drained = wait_until(WAIT, || async { context.stored().await >= logs }).await;
    assert!(drained, "the collector did not drain the queue");
    let collector_rate = logs as f64 / started.elapsed().as_secs_f64();
    shutdown.cancel();
    let _ = collector.await;
    println!("  collector drain: {collector_rate:.0} logs/s");

    // The distributor, as its own process, to four analyzers registered in the registry.
    let mut counts = Vec::new();
    for (index, weight) in WEIGHTS.iter().enumerate() {
        let (url, count) = analyzer().await;
        let now = chrono::Utc::now();
        context
            .store
            .register_analyzer(
                &format!("bench-{index}"),
                &Target::Url(url),
                *weight,
                now,
                now + chrono::Duration::hours(1),
            )
            .await
            .expect("register");
        counts.push(count);
    }
    let delivered = || {
        counts
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .sum::<u64>()
    };
    let admin_port = logagg::testsuite::free_port();
    let mut distributor = context
        .service_command(env!("CARGO_BIN_EXE_analyzer_service"), admin_port)
        .env("LOGAGG__ANALYZERS__LISTEN", "127.0.0.1:0")
        .env("LOGAGG__TELEMETRY__LOG_LEVEL", "warn")
        .envs(std::env::vars().filter(|(key, _)| key.starts_with("LOGAGG__ANALYZERS__")))
        .stdout(Stdio::null())
        .spawn()
        .expect("analyzer_service process");
    let first = wait_until(WAIT, || async { delivered() > 0 }).await;
    assert!(first, "the distributor delivered nothing");
    let started = Instant::now();
    let all = wait_until(WAIT, || async { delivered() >= logs }).await;
    let distributor_rate = logs as f64 / started.elapsed().as_secs_f64();
    let peak_mib = peak_rss_kib(distributor.id()) as f64 / 1024.0;
    let _ = Command::new("kill")
        .args(["-TERM", &distributor.id().to_string()])
        .status();
    let _ = distributor.wait();
    assert!(all, "{} of {logs} delivered", delivered());
    let split: Vec<u64> = counts
        .iter()
        .map(|count| count.load(Ordering::Relaxed))
        .collect();
    println!(
        "  distributor: {distributor_rate:.0} logs/s to 4 analyzers ({:.2} of the collector's drain), peak RSS {peak_mib:.1} MiB",
        distributor_rate / collector_rate
    );
    println!(
        "  split over 0.4/0.3/0.2/0.1: {split:?}, largest share error {:.5}",
        share_error(&split)
    );

    // The schedule alone, as the distributor runs it: the split's error at 10k, 100k, 1M.
    let mut schedule = Schedule::default();
    let weights: Vec<(String, f64)> = WEIGHTS
        .iter()
        .enumerate()
        .map(|(index, weight)| (index.to_string(), *weight))
        .collect();
    schedule.set(&weights);
    let mut picked = [0_u64; 4];
    for picks in 1..=1_000_000_u64 {
        let id = schedule.pick(&[]).expect("a pick");
        picked[id.parse::<usize>().expect("index")] += 1;
        if [10_000, 100_000, 1_000_000].contains(&picks) {
            println!(
                "  schedule alone, {picks} logs: largest share error {:.7}",
                share_error(&picked)
            );
        }
    }
    let _ = connection.close(200, "done".into()).await;
    context.cleanup().await;
}
