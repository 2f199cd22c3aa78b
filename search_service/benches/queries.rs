//! Search benchmark, one run on this machine, printing every figure: p50/p99 latency of the
//! common requests over `BENCH_RECORDS` (default 1,000,000) stored logs spread over
//! `BENCH_HOURS` (default 24) hours up to now, with stats rollups as collectors write them.
//!
//! Requests go through the whole router in process (parsing, MongoDB, JSON), not a socket.
//! Each kind runs `BENCH_REQUESTS` (default 200) times with varied parameters.
//!
//! Run: `cargo bench -p search_service --bench queries` (MongoDB-compatible server from
//! scripts/setup.sh).
//!
//! Word search is measured as a deployment that has run for a day has it: before seeding,
//! the store's own counter finds the common words over one sample of the seed's logs, and
//! their `since` is set a day back, so the seeded logs keep them out of the index and `q`
//! on them scans. `BENCH_COLD=1` skips that: every word is then indexed.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::Utc;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use logagg::record::HttpFields;
use logagg::store::stats::Rollup;
use logagg::store::Database;
use logagg::testsuite::{bench_setting, TestContext};
use logagg::{LogRecord, Severity};
use search_service::api::{router, AppState};
use serde_json::Value;
use source_service::load::realistic::RealisticMessages;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

#[path = "../tests/support/browser.rs"]
#[allow(dead_code)]
mod browser;

const SERVICES: usize = 20;
const WORDS: [&str; 24] = [
    "payment",
    "declined",
    "timeout",
    "retry",
    "cache",
    "miss",
    "user",
    "login",
    "failed",
    "order",
    "shipped",
    "refund",
    "queue",
    "full",
    "disk",
    "slow",
    "query",
    "token",
    "expired",
    "session",
    "created",
    "upstream",
    "reset",
    "connection",
];
/// Pairs of words that share a line in the realistic profile's templates.
const TEMPLATE_PAIRS: [(&str, &str); 12] = [
    ("failed", "password"),
    ("readiness", "probe"),
    ("received", "block"),
    ("upstream", "failed"),
    ("payment", "declined"),
    ("slow", "query"),
    ("deadlock", "detected"),
    ("session", "started"),
    ("cache", "miss"),
    ("invalid", "user"),
    ("gc", "pause"),
    ("token", "refreshed"),
];
/// Pairs of words each common in the realistic profile but never in one line.
const APART_PAIRS: [(&str, &str); 4] = [
    ("password", "backoff"),
    ("deadlock", "readiness"),
    ("gc", "sshd"),
    ("blk", "order"),
];
const ROUTES: [&str; 8] = [
    "/api/orders",
    "/api/orders/{id}",
    "/api/users/{id}",
    "/api/login",
    "/api/cart",
    "/api/search",
    "/health",
    "/api/pay",
];

fn main() {
    if !logagg::testsuite::under_cargo_bench("cargo bench -p search_service --bench queries") {
        return;
    }
    logagg::testsuite::block_on(run());
}

/// A cheap deterministic generator (xorshift), so runs are comparable.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

fn record(
    index: u64,
    records: u64,
    hours: u64,
    now: chrono::DateTime<Utc>,
    mix: &mut Mix,
    realistic: Option<&mut RealisticMessages>,
) -> LogRecord {
    let span_ms = hours as i64 * 3_600_000;
    let timestamp = now - chrono::Duration::milliseconds(span_ms * index as i64 / records as i64);
    let severity = match mix.below(100) {
        0..=9 => Severity::Debug,
        10..=79 => Severity::Info,
        80..=91 => Severity::Warn,
        92..=98 => Severity::Error,
        _ => Severity::Fatal,
    };
    let words: Vec<&str> = (0..6).map(|_| WORDS[mix.below(WORDS.len())]).collect();
    let http = (index % 2 == 0).then(|| {
        let route = ROUTES[mix.below(ROUTES.len())].replace("{id}", &mix.below(10_000).to_string());
        let status = match mix.below(100) {
            0..=84 => 200,
            85..=92 => 404,
            93..=97 => 500,
            _ => 503,
        };
        HttpFields {
            method: Some(if mix.below(4) == 0 { "POST" } else { "GET" }.into()),
            path: Some(route),
            status: Some(status),
            duration_ms: Some(1.0 + (mix.below(1_000) as f64).powf(1.3) / 10.0),
            client_ip: None,
            ..HttpFields::default()
        }
    });
    let service = mix.below(SERVICES);
    let message = match realistic {
        Some(messages) => messages.message(service, severity),
        None => format!("request {index} {}", words.join(" ")),
    };
    LogRecord {
        id: format!("bench-{index:08}"),
        timestamp,
        received_at: timestamp,
        service: format!("svc-{service:02}"),
        severity,
        message,
        host: Some(format!("host-{}", mix.below(8))),
        attributes: serde_json::Map::new(),
        http,
    }
}

/// Whether the seed's messages are the realistic profile's (`BENCH_PROFILE`, default
/// `realistic`; `simple` gives the earlier 24-word vocabulary).
fn realistic() -> bool {
    std::env::var("BENCH_PROFILE").map_or(true, |profile| profile != "simple")
}

/// A word of `message` no other log is likely to hold (a request id, a block id): its
/// longest word with a digit, if 12 bytes or longer.
fn rare_token(message: &str) -> Option<String> {
    logagg::words::message_words(message)
        .into_iter()
        .filter(|word| word.len() >= 12 && word.bytes().any(|byte| byte.is_ascii_digit()))
        .max_by_key(String::len)
}

/// Stores the logs and their rollups the way collectors do: batches of 1,000, 2 in flight.
/// Returns the rate and a rare token from every `records / tokens`-th log.
async fn seed(store: &Database, records: u64, hours: u64, tokens: usize) -> (f64, Vec<String>) {
    let now = Utc::now();
    let started = Instant::now();
    let mut mix = Mix(0x9e37_79b9_7f4a_7c15);
    let mut messages = realistic().then(|| RealisticMessages::new(SERVICES, 5));
    let every = (records / tokens.max(1) as u64).max(1);
    let mut rare = Vec::new();
    let mut in_flight = FuturesUnordered::new();
    let mut next = 0;
    while next < records || !in_flight.is_empty() {
        while next < records && in_flight.len() < 2 {
            let end = (next + 1_000).min(records);
            let batch: Vec<LogRecord> = (next..end)
                .map(|i| record(i, records, hours, now, &mut mix, messages.as_mut()))
                .collect();
            rare.extend(
                batch
                    .iter()
                    .enumerate()
                    .filter(|(offset, _)| (next + *offset as u64) % every == every / 2)
                    .filter_map(|(_, record)| rare_token(&record.message)),
            );
            let store = store.clone();
            in_flight.push(async move {
                store.insert_records(&batch).await.expect("insert");
                let mut rollup = Rollup::default();
                batch.iter().for_each(|record| rollup.add_record(record));
                store.record_stats(&rollup).await.expect("rollups");
            });
            next = end;
        }
        in_flight.next().await;
    }
    // Past hours' blocks sealed, as a collector's running for a day would have them.
    store.seal_open_blocks().await.expect("sealed");
    (records as f64 / started.elapsed().as_secs_f64(), rare)
}

async fn request(app: &axum::Router, uri: &str) -> (Duration, Value) {
    let (elapsed, status, body) = try_request(app, uri).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    (elapsed, body)
}

/// One request's time, status and body, whatever the status.
async fn try_request(app: &axum::Router, uri: &str) -> (Duration, StatusCode, Value) {
    let started = Instant::now();
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 26)
        .await
        .expect("body");
    let elapsed = started.elapsed();
    let body: Value = serde_json::from_slice(&bytes).expect("JSON");
    (elapsed, status, body)
}

fn report(name: &str, mut times: Vec<Duration>, detail: &str) {
    times.sort();
    let at = |q: f64| times[((q * times.len() as f64).ceil() as usize).saturating_sub(1)];
    println!(
        "{name:<34} n={:<4} p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms  {detail}",
        times.len(),
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
    );
}

async fn measure<F: FnMut(usize) -> String>(
    app: &axum::Router,
    name: &str,
    requests: usize,
    mut uri: F,
) {
    let mut times = Vec::with_capacity(requests);
    let mut returned = 0_usize;
    let mut failed = Vec::new();
    for index in 0..requests {
        let (elapsed, status, body) = try_request(app, &uri(index)).await;
        if status != StatusCode::OK {
            failed.push(format!("{status} {}", body["error"]["code"]));
        }
        returned += body["logs"].as_array().map_or(0, Vec::len);
        times.push(elapsed);
    }
    let failures = if failed.is_empty() {
        String::new()
    } else {
        format!("; {} answered {}", failed.len(), failed[0])
    };
    report(
        name,
        times,
        &format!("avg {} logs{failures}", returned / requests),
    );
}

/// Each dashboard page in headless Chromium, from navigation until its data is on screen.
async fn dashboard(app: &axum::Router) {
    if std::process::Command::new("chromedriver")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("dashboard: chromedriver not installed (scripts/setup.sh installs it); skipped");
        return;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let served = app.clone();
    tokio::spawn(async move { axum::serve(listener, served).await });
    let browser = browser::Browser::start().await;
    let pages = [
        ("dashboard overview (24 h)", "/#/?range=24h", "return !!document.querySelector('#volume svg rect') && !!document.querySelector('#endpoints');"),
        ("dashboard overview + hourly latency", "/#/?range=24h", "return !!document.querySelector('#latency-over-time svg');"),
        ("dashboard search (a service)", "/#/search?service=svc-03", "return document.querySelectorAll('#results-table tr.row').length === 50;"),
        ("dashboard search (words)", "/#/search?q=payment+declined", "return document.querySelectorAll('#results-table tr.row').length > 0;"),
        ("dashboard live tail", "/#/tail?service=svc-03", "return document.querySelector('#tail-status').textContent === 'live';"),
        ("dashboard alerts", "/#/alerts", "return document.querySelectorAll('.panel').length === 2;"),
    ];
    for (name, path, ready) in pages {
        let mut times = Vec::new();
        for _ in 0..10 {
            browser.open("about:blank").await;
            let started = Instant::now();
            browser.open(&format!("{base}{path}")).await;
            browser.until(name, ready).await;
            times.push(started.elapsed());
        }
        report(name, times, "navigation to data on screen");
    }
}

async fn run() {
    let records = bench_setting("BENCH_RECORDS", 1_000_000);
    let hours = bench_setting("BENCH_HOURS", 24);
    let requests = bench_setting("BENCH_REQUESTS", 200) as usize;
    let profile = if realistic() { "realistic" } else { "simple" };
    println!(
        "search benchmark: {records} logs over {hours} h, {profile} profile, {requests} requests per kind"
    );
    if let Ok(log_level) = std::env::var("BENCH_LOG") {
        // e.g. BENCH_LOG=logagg::store=debug: each word page's candidate and walk steps.
        logagg::telemetry::init_tracing(&logagg::settings::TelemetrySettings {
            log_level,
            ..Default::default()
        });
    }
    let context = TestContext::new("bench_search").await;
    context.store.ensure_indexes().await.expect("indexes");
    let (rate, rare) = seed(&context.store, records, hours, requests).await;
    println!(
        "seeded at {rate:.0} logs/s (insert + rollups, 2 batches in flight); {} rare tokens",
        rare.len()
    );
    let app = router(AppState::new(
        context.store.clone(),
        &context.settings,
        CancellationToken::new(),
    ));
    let now = Utc::now();
    let mut mix = Mix(42);
    let stamp =
        |time: chrono::DateTime<Utc>| time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);

    measure(&app, "service+severity page of 100", requests, |index| {
        let severity = ["error", "warn", "info"][index % 3];
        format!(
            "/api/v1/logs?service=svc-{:02}&severity={severity}&limit=100",
            index % SERVICES
        )
    })
    .await;
    let mut starts = Vec::new();
    for _ in 0..requests {
        starts.push(mix.below(hours as usize * 60 - 60));
    }
    measure(&app, "time-range page of 100 (1 h)", requests, |index| {
        let from = now - chrono::Duration::minutes(starts[index] as i64 + 60);
        let to = from + chrono::Duration::hours(1);
        format!(
            "/api/v1/logs?from={}&to={}&limit=100",
            stamp(from),
            stamp(to)
        )
    })
    .await;
    let pairs: Vec<(&str, &str)> = (0..requests)
        .map(|_| {
            if realistic() {
                TEMPLATE_PAIRS[mix.below(TEMPLATE_PAIRS.len())]
            } else {
                (WORDS[mix.below(WORDS.len())], WORDS[mix.below(WORDS.len())])
            }
        })
        .collect();
    measure(&app, "words page of 100 (q, 2 words)", requests, |index| {
        let (first, second) = pairs[index];
        format!("/api/v1/logs?q={first}+{second}&limit=100")
    })
    .await;
    if realistic() {
        measure(&app, "2 common words never in one log, 24 h", 8, |index| {
            let (first, second) = APART_PAIRS[index % APART_PAIRS.len()];
            format!("/api/v1/logs?q={first}+{second}&limit=100")
        })
        .await;
    }
    measure(&app, "stats over 24 h with q (2 words)", 5, |index| {
        let (first, second) = pairs[index];
        format!("/api/v1/stats?from=24h&q={first}+{second}")
    })
    .await;
    if !rare.is_empty() {
        measure(&app, "rare token over 24 h (q, 1 id)", requests, |index| {
            format!("/api/v1/logs?q={}&limit=100", rare[index % rare.len()])
        })
        .await;
    }

    // Deep cursors: page 50 of a service's logs (5,000 in), then time the next page.
    let mut cursors = Vec::new();
    for service in 0..SERVICES.min(requests) {
        let mut cursor: Option<String> = None;
        for _ in 0..50 {
            let mut uri = format!("/api/v1/logs?service=svc-{service:02}&limit=100");
            if let Some(cursor) = &cursor {
                uri.push_str(&format!("&cursor={cursor}"));
            }
            let (_, body) = request(&app, &uri).await;
            match body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        if let Some(cursor) = cursor {
            cursors.push((service, cursor));
        }
    }
    measure(&app, "deep cursor page (after 5,000)", requests, |index| {
        let (service, cursor) = &cursors[index % cursors.len()];
        format!("/api/v1/logs?service=svc-{service:02}&limit=100&cursor={cursor}")
    })
    .await;

    let (_, stats) = request(&app, "/api/v1/stats?from=24h").await;
    println!(
        "stats over 24 h: total {} in {} buckets, {} routes",
        stats["total"],
        stats["histogram"].as_array().map_or(0, Vec::len),
        stats["access"].as_array().map_or(0, Vec::len)
    );
    measure(&app, "stats over 24 h (rollups)", requests, |_| {
        "/api/v1/stats?from=24h".into()
    })
    .await;
    measure(&app, "stats over 24 h, one service", requests, |index| {
        format!("/api/v1/stats?from=24h&service=svc-{:02}", index % SERVICES)
    })
    .await;
    measure(&app, "services", requests, |_| "/api/v1/services".into()).await;
    let folds = (requests / 10).max(5);
    measure(&app, "stats over 1 h folded from logs", folds, |index| {
        format!("/api/v1/stats?from=1h&host=host-{}", index % 8)
    })
    .await;
    dashboard(&app).await;
    search_process_memory(&context, requests).await;
    context.cleanup().await;
}

/// Peak RSS of `search_service` as its own process (this bench's release build) answering
/// stats over 24 h, then a words page, over the seeded logs: the memory figure.
async fn search_process_memory(context: &TestContext, requests: usize) {
    let port = logagg::testsuite::free_port();
    let mut search = context
        .service_command(
            env!("CARGO_BIN_EXE_search_service"),
            logagg::testsuite::free_port(),
        )
        .env("LOGAGG__SEARCH__LISTEN", format!("127.0.0.1:{port}"))
        .env("LOGAGG__TELEMETRY__LOG_LEVEL", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("search_service");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let ready = logagg::testsuite::wait_until(Duration::from_secs(60), || async {
        client
            .get(format!("{base}/api/v1/services"))
            .send()
            .await
            .is_ok_and(|response| response.status().is_success())
    })
    .await;
    let pid = search.id();
    let peak = || logagg::testsuite::peak_rss_kib(pid) as f64 / 1024.0;
    if ready {
        println!(
            "search_service as a process: peak RSS {:.1} MiB idle",
            peak()
        );
        let rounds = [
            ("stats over 24 h", "/api/v1/stats?from=24h".to_owned()),
            (
                "words page of 100",
                format!(
                    "/api/v1/logs?q={}+{}&limit=100",
                    TEMPLATE_PAIRS[0].0, TEMPLATE_PAIRS[0].1
                ),
            ),
        ];
        for (name, path) in rounds {
            let mut statuses = Vec::new();
            for _ in 0..requests.min(10) {
                let status = client
                    .get(format!("{base}{path}"))
                    .send()
                    .await
                    .map_or(0, |response| response.status().as_u16());
                statuses.push(status);
            }
            println!(
                "search_service as a process: peak RSS {:.1} MiB after {} × {name} (statuses {statuses:?})",
                peak(),
                statuses.len()
            );
        }
    } else {
        println!("search_service as a process never answered; no memory figure");
    }
    let _ = search.kill();
    let _ = search.wait();
}
