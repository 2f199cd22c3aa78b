//! Abuse at the edges (issue 16), beside steady traffic: a backlog and then a flood of bodies
//! over the 1 MiB limit, and 10,000 new service names in 20 s (three times the rate of the
//! monitor's `max_services` a minute). Each oversized body is dead-lettered with its reason
//! (and only its first 64 KiB), every new service's log is stored and the monitor counts the
//! services beyond its bound instead of growing, the steady traffic keeps at least half its
//! rate, and the collector stays within its memory bound.

#[path = "support/collector.rs"]
mod collector;

use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use logagg::broker;
use logagg::testsuite::{
    free_port, header_text, metric_in, metric_value, peak_rss_kib, scrape_metrics, take_all,
    wait_until, TestContext,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The steady publisher's rate, logs a second: a tenth of what this machine stores.
const STEADY_RATE: u64 = 400;
const STEADY_SERVICES: [&str; 2] = ["steady-a", "steady-b"];
/// Bodies one byte over the limit waiting when the collector starts, then flooding with the
/// new services.
const BACKLOG: usize = 200;
/// Logs of exactly 1 MiB (valid, stored) in the same backlog.
const LARGE: usize = 150;
const OVERSIZED: usize = 300;
const OVERSIZED_RATE: u32 = 15;
const NEW_SERVICES: usize = 10_000;
const NEW_SERVICES_RATE: u32 = 500;
const MIB: f64 = 1024.0 * 1024.0;
/// The collector's memory without traffic, with room (it idles at about 40 MiB).
const BASE_MIB: f64 = 64.0;

/// The collector's memory bound (docs/collector.md): its base, the messages its prefetch
/// lets the broker send (every large log of the backlog: fewer than `collector.prefetch`),
/// and the batches being filled and written, each held about three times over.
fn memory_bound_mib(settings: &logagg::settings::Settings) -> f64 {
    let batches = (settings.collector.max_in_flight_batches + 1) as f64;
    BASE_MIB
        + (LARGE * logagg::parse::MAX_BODY_BYTES) as f64 / MIB
        + batches * 3.0 * collector_service::batch::BATCH_MAX_BYTES as f64 / MIB
}
const TIMEOUT: Duration = Duration::from_secs(180);

/// `count` messages from `body(index)` on `key(index)`, `window` awaiting confirms at once,
/// `per_second` at most.
async fn flood(
    settings: &logagg::settings::Settings,
    count: usize,
    (window, per_second): (usize, u32),
    key: impl Fn(usize) -> String,
    body: impl Fn(usize) -> Vec<u8>,
) {
    let connection = broker::connect(&settings.broker, "flood")
        .await
        .expect("broker");
    let channel = broker::confirm_channel(&connection).await.expect("channel");
    let mut pending: FuturesUnordered<_> = FuturesUnordered::new();
    let mut pace = tokio::time::interval(Duration::from_secs(1) / per_second);
    for index in 0..count {
        pace.tick().await;
        if pending.len() >= window {
            let confirmation: Result<lapin::Confirmation, broker::BrokerError> =
                pending.next().await.expect("pending");
            let confirmation = confirmation.expect("confirm");
            assert!(broker::is_queued(&confirmation), "{confirmation:?}");
        }
        pending.push(broker::publish_owned(
            channel.clone(),
            settings.broker.exchange.as_str().into(),
            key(index),
            body(index),
            broker::log_properties("application/json", &uuid::Uuid::now_v7().to_string()),
        ));
    }
    while let Some(confirmation) = pending.next().await {
        assert!(broker::is_queued(&confirmation.expect("confirm")));
    }
    let _ = connection.close(200, "done".into()).await;
}

/// A JSON log of `size` bytes.
fn body_of(index: usize, size: usize) -> Vec<u8> {
    let mut body = format!(r#"{{"message":"{index} "#).into_bytes();
    body.resize(size - 3, b'x');
    body.extend_from_slice(b"\" }");
    body
}

/// One byte over the limit.
fn oversized_body(index: usize) -> Vec<u8> {
    body_of(index, logagg::parse::MAX_BODY_BYTES + 1)
}

async fn stored_of(store: &logagg::store::Database, services: bson::Document) -> u64 {
    store
        .logs()
        .count_documents(bson::doc! { "service": services })
        .await
        .expect("count")
}

fn steady_confirmed() -> u64 {
    metric_value("logagg_source_confirmed_total") as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_are_refused_or_bounded_and_slow_nothing_else() {
    let context = TestContext::new("floods").await;
    let mut settings = context.settings.clone();
    let connection = logagg::testsuite::await_broker(&settings).await;
    let channel = connection.create_channel().await.expect("channel");
    logagg::topology::declare(&channel, &settings.broker)
        .await
        .expect("topology");

    // A backlog of oversized bodies: a collector starting on it must not take it all in.
    flood(
        &settings,
        BACKLOG,
        (8, 1_000),
        |_| "flood.info".to_owned(),
        oversized_body,
    )
    .await;
    flood(
        &settings,
        LARGE,
        (8, 1_000),
        |_| "large.info".to_owned(),
        |index| body_of(index, logagg::parse::MAX_BODY_BYTES),
    )
    .await;
    let admin_port = free_port();
    let mut collector = collector::start_collector_process_with(&context, admin_port, &[]);
    let dead_lettered = || async {
        metric_in(
            &scrape_metrics(admin_port).await,
            "logagg_collector_dead_lettered_total",
        )
    };
    let large = bson::doc! { "$eq": "large" };
    let backlog_done = wait_until(TIMEOUT, || async {
        dead_lettered().await >= BACKLOG as f64
            && stored_of(&context.store, large.clone()).await >= LARGE as u64
    })
    .await;
    assert!(backlog_done, "the backlog was not dead-lettered and stored");
    let backlog_peak_mib = peak_rss_kib(collector.id()) as f64 / 1024.0;

    let stop_monitor = CancellationToken::new();
    let monitor = tokio::spawn(monitoring_service::run(
        settings.clone(),
        stop_monitor.clone(),
    ));

    // Steady traffic until told to stop.
    settings.source.rate = STEADY_RATE;
    settings.source.count = 0;
    settings.source.services = STEADY_SERVICES.map(str::to_owned).to_vec();
    let stop_steady = CancellationToken::new();
    let steady = {
        let (settings, stop) = (settings.clone(), stop_steady.clone());
        tokio::spawn(async move {
            let health = logagg::telemetry::Health::default();
            source_service::load::simulate(&settings, &health, &stop).await
        })
    };
    let steady_filter = bson::doc! { "$in": STEADY_SERVICES.to_vec() };
    let reached = wait_until(TIMEOUT, || async {
        stored_of(&context.store, steady_filter.clone()).await >= STEADY_RATE
    })
    .await;
    assert!(reached, "the steady traffic was not stored");

    // Both floods at once.
    let (confirmed_before, stored_before) = (
        steady_confirmed(),
        stored_of(&context.store, steady_filter.clone()).await,
    );
    let flood_start = Instant::now();
    let oversized = {
        let settings = settings.clone();
        tokio::spawn(async move {
            flood(
                &settings,
                OVERSIZED,
                (8, OVERSIZED_RATE),
                |_| "flood.info".to_owned(),
                oversized_body,
            )
            .await
        })
    };
    let new_services = {
        let settings = settings.clone();
        tokio::spawn(async move {
            flood(
                &settings,
                NEW_SERVICES,
                (200, NEW_SERVICES_RATE),
                |index| format!("new-{index:05}.info"),
                |index| format!(r#"{{"message":"hello from service {index}"}}"#).into_bytes(),
            )
            .await
        })
    };
    oversized.await.expect("oversized flood");
    new_services.await.expect("new-services flood");
    let flood_time = flood_start.elapsed();
    let (confirmed_during, stored_during) = (
        steady_confirmed() - confirmed_before,
        stored_of(&context.store, steady_filter.clone()).await - stored_before,
    );

    stop_steady.cancel();
    let report = steady
        .await
        .expect("steady task")
        .expect("steady traffic published");
    let all = wait_until(TIMEOUT, || async {
        stored_of(&context.store, steady_filter.clone()).await >= report.confirmed
            && stored_of(&context.store, bson::doc! { "$regex": "^new-" }).await
                >= NEW_SERVICES as u64
            && dead_lettered().await >= (BACKLOG + OVERSIZED) as f64
    })
    .await;
    let peak_mib = peak_rss_kib(collector.id()) as f64 / 1024.0;
    stop_monitor.cancel();
    monitor.await.expect("monitor task").expect("monitor ran");
    let dead_letters = take_all(&connection, &settings.broker.dead_letter_queue).await;
    let _ = collector.kill();
    let _ = collector.wait();

    let seconds = flood_time.as_secs_f64();
    let paced = STEADY_RATE as f64 * seconds;
    println!(
        "floods: a backlog of {BACKLOG} bodies of 1 MiB + 1 byte (dead-lettered) and {LARGE} \
         logs of 1 MiB (stored) at a collector peak RSS of {backlog_peak_mib:.0} MiB; then {OVERSIZED} more and {NEW_SERVICES} new \
         services in {seconds:.1} s: the steady traffic meanwhile {confirmed_during} \
         confirmed and {stored_during} stored (paced at {paced:.0}); collector peak RSS \
         {peak_mib:.0} MiB (bound {:.0} MiB); monitor: {} services, {} logs past max_services",
        memory_bound_mib(&settings),
        metric_value("logagg_monitor_services"),
        metric_value("logagg_monitor_services_overflowed_total"),
    );

    assert!(all, "not everything stored or dead-lettered");
    assert_eq!(
        dead_letters.len(),
        BACKLOG + OVERSIZED,
        "one dead letter per oversized body"
    );
    for message in &dead_letters {
        assert_eq!(
            header_text(&message.properties, logagg::topology::HEADER_ERROR_CODE).as_deref(),
            Some("too_large")
        );
        // Its first 64 KiB, and how large it was.
        assert_eq!(
            message.data.len(),
            collector_service::dead_letter::DEAD_LETTER_MAX_BODY
        );
        let original = message.properties.headers().as_ref().and_then(|headers| {
            headers
                .inner()
                .get(logagg::topology::HEADER_ORIGINAL_BYTES)
                .cloned()
        });
        assert_eq!(
            original,
            Some(lapin::types::AMQPValue::LongLongInt(
                logagg::parse::MAX_BODY_BYTES as i64 + 1
            ))
        );
    }
    // The monitor stopped counting new services at its bound, and said so.
    assert!(metric_value("logagg_monitor_services_overflowed_total") > 0.0);
    assert!(
        confirmed_during as f64 >= paced / 2.0,
        "the steady publisher slowed to {confirmed_during} of {paced:.0}"
    );
    assert!(
        stored_during as f64 >= paced / 2.0,
        "storing the steady traffic slowed to {stored_during} of {paced:.0}"
    );
    let bound_mib = memory_bound_mib(&settings);
    assert!(
        backlog_peak_mib.max(peak_mib) < bound_mib,
        "the collector reached {:.0} MiB",
        backlog_peak_mib.max(peak_mib)
    );
    let _ = connection.close(200, "done".into()).await;
    context.cleanup().await;
}
