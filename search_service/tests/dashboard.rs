//! The dashboard in a real browser: headless Chromium driven by chromedriver (W3C
//! WebDriver over HTTP) against the search API serving known data. Each page must show what
//! the API says, filters and the tail must work, no page may raise an error, and each page
//! is saved as a screenshot under `target/test-output/dashboard/`.
//!
//! Needs Debian's `chromium` and `chromium-driver`; scripts/setup.sh installs them.

#[path = "support/browser.rs"]
mod browser;
#[path = "support/server.rs"]
mod server;

use chrono::Utc;
use logagg::record::HttpFields;
use logagg::store::alerts::StoredAlert;
use logagg::store::stats::Rollup;
use logagg::testsuite::{http_request, TestContext};
use logagg::{LogRecord, Severity};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use browser::Browser;

fn seed_logs() -> Vec<LogRecord> {
    let now = Utc::now();
    (0..300)
        .map(|index| {
            let timestamp = now - chrono::Duration::seconds(index as i64 * 20);
            let severity = [
                Severity::Info,
                Severity::Warn,
                Severity::Error,
                Severity::Info,
            ][index % 4];
            LogRecord {
                id: format!("dash-{index:04}"),
                timestamp,
                received_at: timestamp,
                service: ["web", "auth", "billing"][index % 3].into(),
                severity,
                message: format!(
                    "request {index} {}",
                    if index % 5 == 0 {
                        "payment declined"
                    } else {
                        "ok"
                    }
                ),
                host: Some("web-1".into()),
                attributes: Default::default(),
                http: Some(HttpFields {
                    method: Some("GET".into()),
                    path: Some(["/home", "/profile", "/login"][index % 3].into()),
                    status: Some([200, 200, 404, 503][index % 4]),
                    duration_ms: Some(10.0 + index as f64),
                    ..HttpFields::default()
                }),
            }
        })
        .collect()
}

async fn api(port: u16, path: &str) -> Value {
    let (status, body) = http_request(port, "GET", path).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_page_shows_what_the_api_says_and_filters_and_tail_work() {
    let context = TestContext::new("dashboard_browser").await;
    context.store.ensure_indexes().await.expect("indexes");
    let logs = seed_logs();
    context.store.insert_records(&logs).await.expect("seed");
    let mut rollup = Rollup::default();
    logs.iter().for_each(|record| rollup.add_record(record));
    context.store.record_stats(&rollup).await.expect("rollups");
    let alert = StoredAlert {
        id: "alert-1".into(),
        rule: "error_burst".into(),
        service: "billing".into(),
        value: 12.0,
        threshold: 10.0,
        window_seconds: 60,
        started_at: Utc::now(),
        resolved_at: None,
        peak: 12.0,
        sample_ids: vec!["dash-0002".into(), "dash-0014".into()],
    };
    context.store.open_alert(&alert).await.expect("alert");

    let shutdown = CancellationToken::new();
    let port = server::serve(&context, &shutdown).await;
    let base = format!("http://127.0.0.1:{port}");
    let browser = Browser::start().await;

    // Overview: the totals and tables are the API's.
    let stats = api(port, "/api/v1/stats?from=24h").await;
    browser.open(&format!("{base}/#/?range=24h")).await;
    browser
        .until(
            "the volume chart",
            "return !!document.querySelector('#volume svg rect');",
        )
        .await;
    browser
        .until(
            "the latency chart",
            "return !!document.querySelector('#latency-over-time svg');",
        )
        .await;
    let heading = browser
        .run("return document.querySelector('#volume h2').textContent;")
        .await;
    assert!(
        heading
            .as_str()
            .expect("text")
            .contains(&format!("({} logs)", stats["total"])),
        "{heading}"
    );
    let top = browser
        .run("return [...document.querySelectorAll('#top-errors tr')].slice(1).map(r => [r.cells[0].textContent, Number(r.cells[1].textContent.replace(/\\D/g, ''))]);")
        .await;
    let expected_top: Vec<Value> = stats["top_error_services"]
        .as_array()
        .expect("top")
        .iter()
        .map(|entry| json!([entry["service"], entry["errors"]]))
        .collect();
    assert_eq!(top, Value::Array(expected_top));
    let firing = browser
        .run("return document.querySelectorAll('#firing li').length;")
        .await;
    assert_eq!(firing, json!(1));
    let endpoints = browser
        .run("return document.querySelectorAll('#endpoints tr').length - 1;")
        .await;
    assert_eq!(
        endpoints,
        json!(stats["access"].as_array().expect("access").len().min(12))
    );
    // Requests per service over all endpoints, with their 5xx: the API's totals.
    let totals = browser
        .run("return [...document.querySelectorAll('#service-totals tr')].slice(1).map(r => [r.cells[0].textContent, Number(r.cells[2].textContent.replace(/\\D/g, '')), Number(r.cells[7].textContent.replace(/\\D/g, ''))]);")
        .await;
    let expected_totals: Vec<Value> = stats["access_totals"]
        .as_array()
        .expect("access_totals")
        .iter()
        .map(|entry| {
            let server_errors = entry["status_classes"]["5xx"].as_u64().unwrap_or(0);
            json!([entry["service"], entry["requests"], server_errors])
        })
        .collect();
    assert!(!expected_totals.is_empty(), "the seed has access logs");
    assert_eq!(totals, Value::Array(expected_totals));
    browser.assert_no_errors("overview").await;
    browser.screenshot("overview").await;

    // Search: rows as the API pages them; a row opens the record; the form filters.
    let page = api(port, "/api/v1/logs?service=web&limit=50").await;
    browser.open(&format!("{base}/#/search?service=web")).await;
    browser
        .until(
            "results",
            "return document.querySelectorAll('#results-table tr.row').length > 0;",
        )
        .await;
    let ids = browser.run("return [...document.querySelectorAll('#results-table tr.row')].map(r => r.dataset.id);").await;
    let expected_ids: Vec<Value> = page["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .map(|log| log["id"].clone())
        .collect();
    assert_eq!(ids, Value::Array(expected_ids.clone()));
    browser
        .run("document.querySelector('#results-table tr.row').click();")
        .await;
    browser
        .until("the record", &format!("return (document.querySelector('#detail pre') || {{}}).textContent?.includes('{}') === true;", expected_ids[0].as_str().expect("id")))
        .await;
    browser
        .run("document.querySelector('#next').click();")
        .await;
    browser
        .until(
            "page 2",
            "return document.body.textContent.includes('page 2');",
        )
        .await;
    browser
        .run("const form = document.querySelector('form.filters'); form.q.value = 'payment declined'; form.requestSubmit();")
        .await;
    browser
        .until(
            "the filtered URL",
            "return location.hash.includes('q=payment');",
        )
        .await;
    let filtered = api(port, "/api/v1/logs?service=web&q=payment+declined&limit=50").await;
    let count = filtered["logs"].as_array().expect("logs").len();
    browser
        .until("filtered rows", &format!("return document.querySelectorAll('#results-table tr.row').length === {count} && location.hash.includes('q=');"))
        .await;
    browser.assert_no_errors("search").await;
    browser.screenshot("search").await;

    // Live tail: a published log appears; paused, it is held until resumed.
    browser
        .open(&format!("{base}/#/tail?service=tailsvc"))
        .await;
    browser
        .until(
            "the tail to be live",
            "return document.querySelector('#tail-status').textContent === 'live';",
        )
        .await;
    let channel = logagg::broker::confirm_channel(&context.connection)
        .await
        .expect("channel");
    let publish = |message: &'static str| {
        let channel = channel.clone();
        let exchange = context.settings.broker.exchange.clone();
        async move {
            logagg::broker::publish_confirmed(
                &channel,
                &exchange,
                "tailsvc.error",
                json!({ "message": message }).to_string().as_bytes(),
                logagg::broker::log_properties("application/json", message),
            )
            .await
            .expect("publish");
        }
    };
    publish("first live line").await;
    browser
        .until(
            "the live line",
            "return document.querySelector('#tail-lines').textContent.includes('first live line');",
        )
        .await;
    browser
        .run("document.querySelector('#pause').click();")
        .await;
    publish("held while paused").await;
    browser
        .until(
            "the held line",
            "return document.querySelector('#pause').dataset.held === '1';",
        )
        .await;
    let shown = browser.run("return document.querySelector('#tail-lines').textContent.includes('held while paused');").await;
    assert_eq!(shown, json!(false), "paused lines wait");
    browser
        .run("document.querySelector('#pause').click();")
        .await;
    browser.until("the resumed line", "return document.querySelector('#tail-lines').textContent.includes('held while paused');").await;
    browser.assert_no_errors("tail").await;
    browser.screenshot("tail").await;

    // Alerts: the firing alert with its sample logs.
    browser.open(&format!("{base}/#/alerts?id=alert-1")).await;
    browser
        .until(
            "the samples",
            "return document.querySelectorAll('#samples tr').length === 2;",
        )
        .await;
    let samples = browser
        .run("return document.querySelector('#samples').textContent;")
        .await;
    let sample = logs
        .iter()
        .find(|log| log.id == "dash-0002")
        .expect("sample");
    assert!(samples.as_str().expect("text").contains(&sample.message));
    browser.assert_no_errors("alerts").await;
    browser.screenshot("alerts").await;

    // Analyzers: weight against share, online and offline, as the API says.
    let now = Utc::now();
    for (id, weight, lease) in [("anomaly", 3.0, 60), ("siem", 1.0, 60), ("gone", 1.0, -60)] {
        context
            .store
            .register_analyzer(
                id,
                &logagg::store::analyzers::Target::Url(format!("http://{id}:8000/logs")),
                weight,
                now,
                now + chrono::Duration::seconds(lease),
            )
            .await
            .expect("register");
    }
    for (id, delivered) in [("anomaly", 750), ("siem", 250)] {
        context
            .store
            .record_delivered(id, delivered, now)
            .await
            .expect("delivered");
    }
    let listed = api(port, "/api/v1/analyzers").await;
    assert_eq!(listed["analyzers"][0]["id"], "anomaly");
    assert_eq!(listed["analyzers"][0]["share"], 0.75);
    assert_eq!(listed["analyzers"][1]["online"], false, "{listed}");
    browser.open(&format!("{base}/#/analyzers")).await;
    browser
        .until(
            "the analyzers table",
            "return document.querySelectorAll('#analyzers tr').length === 4;",
        )
        .await;
    let table = browser
        .run("return document.querySelector('#analyzers').textContent;")
        .await;
    let table = table.as_str().expect("text");
    for expected in [
        "anomaly",
        "siem",
        "gone",
        "75 %",
        "offline",
        "http://siem:8000/logs",
    ] {
        assert!(table.contains(expected), "{expected} not in {table}");
    }
    let bars = browser
        .run("return document.querySelectorAll('#share-bars rect').length;")
        .await;
    assert_eq!(bars, json!(6), "two bars for each analyzer");
    browser.assert_no_errors("analyzers").await;
    browser.screenshot("analyzers").await;

    // A narrow window still lays out (screenshot for a person to look at).
    browser
        .command(
            reqwest::Method::POST,
            "/window/rect",
            json!({ "width": 420, "height": 800 }),
        )
        .await;
    browser.open(&format!("{base}/#/?range=24h")).await;
    browser
        .until(
            "the narrow overview",
            "return !!document.querySelector('#volume svg rect');",
        )
        .await;
    let overflow = browser
        .run("return document.documentElement.scrollWidth <= window.innerWidth + 1;")
        .await;
    assert_eq!(overflow, json!(true), "no horizontal scrolling at 420 px");
    browser.screenshot("overview-narrow").await;

    shutdown.cancel();
    drop(browser);
    context.cleanup().await;
}
