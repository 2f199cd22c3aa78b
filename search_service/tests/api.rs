//! search_service's API against real stored data in the MongoDB-compatible server.

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{Duration, Utc};
use logagg::record::HttpFields;
use logagg::store::fields;
use logagg::store::stats::Rollup;
use logagg::testsuite::TestContext;
use logagg::{LogRecord, Severity};
use search_service::api::{router, AppState};
use search_service::query::LogQuery;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const SERVICES: [&str; 3] = ["web", "auth", "billing"];
const SEVERITIES: [Severity; 4] = [
    Severity::Debug,
    Severity::Info,
    Severity::Warn,
    Severity::Error,
];

/// `n` logs, one a minute back from now, cycling services, severities and statuses.
fn logs(n: usize, prefix: &str) -> Vec<LogRecord> {
    let now = Utc::now();
    (0..n)
        .map(|index| {
            let timestamp = now - Duration::minutes(index as i64);
            let status = [200_u16, 404, 500, 503][index % 4];
            LogRecord {
                id: format!("{prefix}-{index:05}"),
                timestamp,
                received_at: timestamp,
                service: SERVICES[index % 3].to_owned(),
                severity: SEVERITIES[index % 4],
                message: format!(
                    "request {index} {} (a.b*) done",
                    if index % 5 == 0 {
                        "payment failed"
                    } else {
                        "ok"
                    }
                ),
                host: Some(format!("host-{}", index % 2)),
                attributes: serde_json::json!({ "order": index % 10 })
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
                http: Some(HttpFields {
                    method: Some(if index % 2 == 0 { "GET" } else { "POST" }.into()),
                    path: Some(format!("/p{}", index % 3)),
                    status: Some(status),
                    duration_ms: Some(index as f64),
                    client_ip: None,
                    ..HttpFields::default()
                }),
            }
        })
        .collect()
}

async fn app(context: &TestContext) -> axum::Router {
    context.store.ensure_indexes().await.expect("indexes");
    router(AppState::new(
        context.store.clone(),
        &context.settings,
        CancellationToken::new(),
    ))
}

/// The ids of every page of `uri` (a logs query without a cursor), following `next_cursor`
/// until there is none; each page must answer 200.
async fn every_page(app: &axum::Router, uri: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, body) = get(app, &format!("{uri}{cursor}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        seen.extend(ids(&body));
        match body["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return seen,
        }
    }
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, Value) {
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
        .await
        .expect("response");
    logagg::testsuite::json_response(response).await
}

fn ids(body: &Value) -> Vec<String> {
    body["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .map(|log| log["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn each_filter_returns_exactly_the_matching_logs() {
    let context = TestContext::new("search_filters").await;
    let records = logs(240, "f");
    context.store.insert_records(&records).await.expect("seed");
    let app = app(&context).await;
    type Predicate = fn(usize, &LogRecord) -> bool;
    let cases: Vec<(&str, Predicate)> = vec![
        ("service=web", |_, r| r.service == "web"),
        ("service=web&service=auth&severity=error", |_, r| {
            r.service != "billing" && r.severity == Severity::Error
        }),
        ("min_severity=warn", |_, r| r.severity >= Severity::Warn),
        ("from=60m", |i, _| i < 60),
        ("host=host-1", |i, _| i % 2 == 1),
        ("attr.order=7", |i, _| i % 10 == 7),
        ("status=404", |i, _| i % 4 == 1),
        ("status_class=5xx", |i, _| i % 4 >= 2),
        ("method=get&path=/p1", |i, _| i % 2 == 0 && i % 3 == 1),
        ("q=Payment+FAILED", |i, _| i % 5 == 0),
        ("contains=(a.b*)", |_, _| true),
        ("contains=a.b%2A%29+done&service=auth", |_, r| {
            r.service == "auth"
        }),
        ("contains=.*", |_, _| false),
    ];
    for (query, keep) in cases {
        let (status, body) = get(&app, &format!("/api/v1/logs?limit=1000&{query}")).await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        let expected: Vec<String> = records
            .iter()
            .enumerate()
            .filter(|(index, record)| keep(*index, record))
            .map(|(_, record)| record.id.clone())
            .collect();
        assert_eq!(ids(&body), expected, "{query}");
    }
    let (status, body) = get(&app, "/api/v1/logs?order=oldest&limit=5&service=billing").await;
    assert_eq!(status, StatusCode::OK);
    let oldest: Vec<String> = records
        .iter()
        .rev()
        .filter(|record| record.service == "billing")
        .take(5)
        .map(|record| record.id.clone())
        .collect();
    assert_eq!(ids(&body), oldest);
    context.cleanup().await;
}

#[tokio::test]
async fn paging_sees_each_record_exactly_once_while_inserts_continue() {
    let context = TestContext::new("search_paging").await;
    let records = logs(10_000, "p");
    for chunk in records.chunks(1_000) {
        context.store.insert_records(chunk).await.expect("seed");
    }
    let app = app(&context).await;
    let writer = tokio::spawn({
        let store = context.store.clone();
        async move {
            for round in 0..20 {
                let fresh = logs(50, &format!("new{round}"));
                store.insert_records(&fresh).await.expect("insert");
            }
        }
    });
    let to = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let uri = format!(
        "/api/v1/logs?limit=700&from=8d&to={}",
        to.replace('+', "%2B")
    );
    let seen: Vec<String> = every_page(&app, &uri)
        .await
        .into_iter()
        .filter(|id| id.starts_with("p-"))
        .collect();
    writer.await.expect("writer");
    let distinct: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(distinct.len(), seen.len(), "a record appeared twice");
    let expected: Vec<String> = records.iter().map(|record| record.id.clone()).collect();
    assert_eq!(seen, expected, "every record once, newest first");
    context.cleanup().await;
}

#[tokio::test]
async fn bad_input_gets_400_naming_the_parameter_and_unknown_routes_404() {
    let context = TestContext::new("search_errors").await;
    let app = app(&context).await;
    let long_q = "word+".repeat(100);
    for (query, parameter) in [
        ("from=yesterday", "from"),
        ("limit=0", "limit"),
        ("limit=1000000000", "limit"),
        ("severity=loud", "severity"),
        (long_q.as_str(), "q"),
        ("contains=", "contains"),
        ("cursor=deadbeef", "cursor"),
        ("cursor=12:abc", "cursor"),
        ("colour=red", "colour"),
    ] {
        let query = if parameter == "q" {
            format!("q={query}")
        } else {
            query.to_owned()
        };
        let (status, body) = get(&app, &format!("/api/v1/logs?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["error"]["code"], "bad_parameter", "{query}");
        let message = body["error"]["message"].as_str().expect("message");
        assert!(
            message.contains(&format!("`{parameter}`")),
            "{query}: {message}"
        );
    }
    let mut settings = context.settings.clone();
    settings.store.word_index = false;
    let without_words = router(AppState::new(
        logagg::store::Database::connect(&settings.store, "search-tests")
            .await
            .expect("client"),
        &settings,
        CancellationToken::new(),
    ));
    let (status, body) = get(&without_words, "/api/v1/logs?q=payment").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .expect("message")
        .contains("store.word_index"));
    // Valid parameters that contradict each other are an empty answer, not an error.
    for query in ["from=1h&to=2h", "status=404&status_class=5xx"] {
        let (status, body) = get(&app, &format!("/api/v1/logs?{query}")).await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        assert_eq!(body["logs"], serde_json::json!([]), "{query}");
    }
    let (status, body) = get(&app, "/api/v1/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
    let (status, body) = get(&app, "/api/v1/logs/missing-id").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = get(&app, "/logs/web/LOUD").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    context.cleanup().await;
}

#[tokio::test]
async fn compatible_routes_answer_as_the_prototype_did() {
    let context = TestContext::new("search_compat").await;
    let records = logs(40, "c");
    context.store.insert_records(&records).await.expect("seed");
    let app = app(&context).await;
    let (status, body) = get(&app, "/logs/auth/ERROR").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["message"], "Logs retrieved successfully");
    let expected: Vec<String> = records
        .iter()
        .filter(|record| record.service == "auth" && record.severity == Severity::Error)
        .map(|record| record.id.clone())
        .collect();
    assert_eq!(ids(&body), expected);
    let (_, body) = get(&app, "/logs/web").await;
    assert_eq!(
        ids(&body).len(),
        records.iter().filter(|r| r.service == "web").count()
    );
    let (status, one) = get(&app, &format!("/api/v1/logs/{}", records[3].id)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["message"], records[3].message);
    context.cleanup().await;
}

#[tokio::test]
async fn mongodb_down_gives_503_and_the_api_recovers() {
    let mut server = logagg::testsuite::MongoServer::start();
    let context = TestContext::with_mongo_url("search_mongo_down", &server.url()).await;
    let records = logs(10, "d");
    context.store.insert_records(&records).await.expect("seed");
    let app = app(&context).await;
    let (status, _) = get(&app, "/api/v1/logs").await;
    assert_eq!(status, StatusCode::OK);

    server.stop();
    let (status, body) = get(&app, "/api/v1/logs?service=web").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "store_unavailable");
    assert!(
        !body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("127.0.0.1"),
        "internals stay in the log: {body}"
    );

    server.resume();
    logagg::testsuite::await_store(&context.store).await;
    let (status, body) = get(&app, "/api/v1/logs").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(ids(&body).len(), records.len());
    context.cleanup().await;
}

/// Stores `records` and adds them to the stats rollups, as a collector does.
async fn seed_with_stats(context: &TestContext, records: &[LogRecord]) {
    context.store.insert_records(records).await.expect("seed");
    let mut rollup = Rollup::default();
    records.iter().for_each(|record| rollup.add_record(record));
    context.store.record_stats(&rollup).await.expect("rollups");
}

fn counts(body: &Value, field: &str) -> BTreeMap<String, u64> {
    body[field]
        .as_object()
        .unwrap_or_else(|| panic!("{field}: {body}"))
        .iter()
        .map(|(key, count)| (key.clone(), count.as_u64().expect("count")))
        .collect()
}

fn tally<'a>(keys: impl Iterator<Item = &'a str>) -> BTreeMap<String, u64> {
    let mut tally = BTreeMap::new();
    keys.for_each(|key| *tally.entry(key.to_owned()).or_default() += 1);
    tally
}

#[tokio::test]
async fn stats_from_rollups_match_the_logs_and_a_filtered_fold() {
    let context = TestContext::new("search_stats").await;
    let records = logs(240, "s");
    seed_with_stats(&context, &records).await;
    let app = app(&context).await;

    let (status, rollups) = get(&app, "/api/v1/stats?from=6h&interval=1h").await;
    assert_eq!(status, StatusCode::OK, "{rollups}");
    assert_eq!(rollups["source"], "rollups");
    assert_eq!(rollups["total"], 240);
    assert_eq!(
        counts(&rollups, "by_severity"),
        tally(records.iter().map(|r| r.severity.as_str()))
    );
    assert_eq!(
        counts(&rollups, "by_service"),
        tally(records.iter().map(|r| r.service.as_str()))
    );
    let histogram = rollups["histogram"].as_array().expect("histogram");
    assert!((6..=7).contains(&histogram.len()), "{histogram:?}");
    let bucketed: u64 = histogram.iter().map(|b| b["count"].as_u64().unwrap()).sum();
    assert_eq!(bucketed, 240);
    let errors = tally(
        records
            .iter()
            .filter(|r| r.severity >= Severity::Error)
            .map(|r| r.service.as_str()),
    );
    for entry in rollups["top_error_services"].as_array().expect("top") {
        let service = entry["service"].as_str().expect("service");
        assert_eq!(entry["errors"].as_u64(), errors.get(service).copied());
    }
    let routes = rollups["access"].as_array().expect("access");
    let expected_routes = tally(records.iter().map(|r| {
        let http = r.http.as_ref().expect("http");
        Box::leak(
            format!(
                "{} {} {}",
                r.service,
                http.method.as_deref().unwrap_or("-"),
                http.path.as_deref().unwrap_or("-")
            )
            .into_boxed_str(),
        ) as &str
    }));
    let seen_routes: BTreeMap<String, u64> = routes
        .iter()
        .map(|route| {
            (
                format!(
                    "{} {} {}",
                    route["service"].as_str().unwrap(),
                    route["method"].as_str().unwrap(),
                    route["path"].as_str().unwrap()
                ),
                route["requests"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(seen_routes, expected_routes);

    // `contains=request` matches every log but forces the fold over the logs themselves:
    // both sources must give the same answer.
    let (status, folded) = get(&app, "/api/v1/stats?from=6h&interval=1h&contains=request").await;
    assert_eq!(status, StatusCode::OK, "{folded}");
    assert_eq!(folded["source"], "logs");
    for field in [
        "total",
        "by_severity",
        "by_service",
        "histogram",
        "top_error_services",
        "access",
        "access_totals",
    ] {
        assert_eq!(rollups[field], folded[field], "{field}");
    }

    // A filter the rollups cannot answer, folded exactly.
    let (_, host) = get(&app, "/api/v1/stats?from=6h&host=host-1&status_class=5xx").await;
    let expected = records
        .iter()
        .enumerate()
        .filter(|(index, _)| index % 2 == 1 && index % 4 >= 2)
        .count();
    assert_eq!(host["total"].as_u64(), Some(expected as u64), "{host}");
    // Severity filters reach the rollups' access rows too.
    let (_, errors_only) = get(&app, "/api/v1/stats?from=6h&severity=error").await;
    let requests: u64 = errors_only["access"]
        .as_array()
        .expect("access")
        .iter()
        .map(|route| route["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(requests, 60);
    assert_eq!(errors_only["total"], 60);

    // An interval finer than the source's minutes, or giving more than 1,000 buckets, is
    // widened, and the answer says to what; an empty range is an empty answer.
    for (query, interval_seconds) in [
        ("interval=30s&from=6h", 60),
        ("interval=90s&from=6h", 120),
        ("interval=1m&from=30d", 2_640),
        ("interval=1s&contains=x&from=30d", 2_595),
    ] {
        let (status, body) = get(&app, &format!("/api/v1/stats?{query}")).await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        assert_eq!(body["interval_seconds"], interval_seconds, "{query}");
        let buckets = body["histogram"].as_array().expect("histogram").len();
        assert!(buckets <= 1_000, "{query}: {buckets}");
    }
    let (status, empty) = get(&app, "/api/v1/stats?from=2h&to=3h").await;
    assert_eq!(
        (status, &empty["total"]),
        (StatusCode::OK, &0.into()),
        "{empty}"
    );
    for (query, parameter) in [
        ("interval=soon", "interval"),
        ("interval=5y", "interval"),
        ("limit=5", "limit"),
        ("cursor=00", "cursor"),
    ] {
        let (status, body) = get(&app, &format!("/api/v1/stats?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .expect("message")
                .contains(&format!("`{parameter}`")),
            "{query}: {body}"
        );
    }
    context.cleanup().await;
}

/// Sums, over a service's rows in `access` and its `other`, of requests and each status class.
fn summed_rows(stats: &Value, service: &str) -> (u64, BTreeMap<String, u64>) {
    let totals = stats["access_totals"]
        .as_array()
        .expect("access_totals")
        .iter()
        .find(|entry| entry["service"] == service)
        .unwrap_or_else(|| panic!("no totals for {service}: {stats}"));
    let rows = stats["access"]
        .as_array()
        .expect("access")
        .iter()
        .filter(|row| row["service"] == service)
        .chain([&totals["other"]]);
    let mut requests = 0;
    let mut classes = BTreeMap::new();
    for row in rows {
        requests += row["requests"].as_u64().expect("requests");
        for (class, count) in counts(row, "status_classes") {
            *classes.entry(class).or_default() += count;
        }
    }
    (requests, classes)
}

#[tokio::test]
async fn access_totals_count_every_route_when_the_rows_stop_at_their_limit() {
    let context = TestContext::new("search_access_totals").await;
    // 150 busy GET routes on `web` (3 requests each) and, on the quiet tail that the 100
    // rows leave out, a HEAD, a POST and three 5xx; 10 routes on `api`.
    let now = Utc::now();
    let mut records = Vec::new();
    let mut add = |service: &str, method: &str, path: String, status: u16| {
        let index = records.len();
        let timestamp = now - Duration::seconds(index as i64);
        records.push(LogRecord {
            id: format!("acc-{index:05}"),
            timestamp,
            received_at: timestamp,
            service: service.to_owned(),
            severity: if status >= 500 {
                Severity::Error
            } else {
                Severity::Info
            },
            message: format!("{method} {path} {status}"),
            host: None,
            attributes: Default::default(),
            http: Some(HttpFields {
                method: Some(method.to_owned()),
                path: Some(path),
                status: Some(status),
                duration_ms: Some(10.0 + index as f64 % 90.0),
                ..HttpFields::default()
            }),
        });
    };
    for route in 0..150 {
        for _ in 0..3 {
            add("web", "GET", format!("/page/r{route}"), 200);
        }
    }
    add("web", "HEAD", "/health".into(), 200);
    add("web", "POST", "/upload".into(), 503);
    add("web", "GET", "/rare/a".into(), 500);
    add("web", "GET", "/rare/b".into(), 502);
    for route in 0..10 {
        for _ in 0..5 {
            add("api", "GET", format!("/v1/r{route}"), 404);
        }
    }
    seed_with_stats(&context, &records).await;
    let app = app(&context).await;

    let (status, rollups) = get(&app, "/api/v1/stats?from=1h").await;
    assert_eq!(status, StatusCode::OK, "{rollups}");
    // `contains` forces the fold over the logs: the same sections from the other source.
    let (status, folded) = get(&app, "/api/v1/stats?from=1h&contains=%20").await;
    assert_eq!(status, StatusCode::OK, "{folded}");
    assert_eq!(folded["source"], "logs");
    for stats in [&rollups, &folded] {
        assert_eq!(stats["access"].as_array().expect("rows").len(), 100);
        let totals = stats["access_totals"].as_array().expect("totals");
        let services: Vec<&str> = totals
            .iter()
            .map(|t| t["service"].as_str().unwrap())
            .collect();
        assert_eq!(services, ["web", "api"], "busiest first");
        let web = &totals[0];
        assert_eq!(web["routes"], 154);
        assert_eq!(web["requests"], 454);
        assert_eq!(
            counts(web, "status_classes"),
            BTreeMap::from([("2xx".to_owned(), 451), ("5xx".to_owned(), 3)]),
            "every 5xx, though no row shows one"
        );
        assert!(web["latency_ms"]["p99"].as_f64().is_some());
        // The rows are api's 10 routes (5 requests each) and 90 of web's: web's other 64
        // routes, the HEAD, the POST and the 5xx among them, are its `other`.
        assert_eq!(web["other"]["routes"], 64);
        assert_eq!(web["other"]["requests"], 60 * 3 + 4);
        for service in ["web", "api"] {
            let entry = totals.iter().find(|t| t["service"] == service).unwrap();
            let (requests, classes) = summed_rows(stats, service);
            assert_eq!(requests, entry["requests"].as_u64().unwrap(), "{service}");
            assert_eq!(classes, counts(entry, "status_classes"), "{service}");
        }
        let api = &totals[1];
        assert_eq!(
            (api["requests"].as_u64(), api["other"]["routes"].as_u64()),
            (Some(50), Some(0))
        );
        let all: u64 = totals.iter().map(|t| t["requests"].as_u64().unwrap()).sum();
        assert_eq!(all, records.len() as u64);
    }
    for field in ["access", "access_totals"] {
        assert_eq!(rollups[field], folded[field], "{field}");
    }
    context.cleanup().await;
}

#[tokio::test]
async fn services_list_first_and_last_seen_and_counts_by_severity() {
    let context = TestContext::new("search_services").await;
    let records = logs(120, "v");
    seed_with_stats(&context, &records).await;
    let app = app(&context).await;
    let (status, body) = get(&app, "/api/v1/services").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let services = body["services"].as_array().expect("services");
    assert_eq!(services.len(), SERVICES.len());
    for entry in services {
        let service = entry["service"].as_str().expect("service");
        let own: Vec<&LogRecord> = records.iter().filter(|r| r.service == service).collect();
        let stamp = |time: chrono::DateTime<Utc>| time.timestamp_millis();
        let first = own.iter().map(|r| r.timestamp).min().expect("first");
        let last = own.iter().map(|r| r.timestamp).max().expect("last");
        let parse = |field: &str| {
            chrono::DateTime::parse_from_rfc3339(entry[field].as_str().expect(field))
                .expect("time")
                .to_utc()
        };
        assert_eq!(stamp(parse("first_seen")), stamp(first), "{service}");
        assert_eq!(stamp(parse("last_seen")), stamp(last), "{service}");
        assert_eq!(entry["total"].as_u64(), Some(own.len() as u64));
        assert_eq!(
            counts(entry, "by_severity"),
            tally(own.iter().map(|r| r.severity.as_str()))
        );
    }
    let (_, recent) = get(&app, "/api/v1/services?from=1m").await;
    assert!(recent["services"].as_array().expect("services").len() <= SERVICES.len());
    let (status, _) = get(&app, "/api/v1/services?service=web").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    context.cleanup().await;
}

/// The winning plan of a page's first window query for `query_string`, as search sends it.
async fn page_plan(context: &TestContext, query_string: &str) -> String {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query_string).expect("pairs");
    let query = LogQuery::parse(&pairs, Utc::now(), &Default::default()).expect("a valid query");
    let mut filter = query.filter();
    let spans = context
        .store
        .word_spans(&query.words, query.from, query.to)
        .await
        .expect("word spans");
    filter.extend(spans.last().expect("a span").conditions.clone());
    filter.insert(
        "ts",
        bson::doc! {
            "$gte": bson::DateTime::from_chrono(query.to - Duration::minutes(1)),
            "$lte": bson::DateTime::from_chrono(query.to),
        },
    );
    let explained = context
        .store
        .client()
        .database(&context.settings.store.database)
        .run_command(bson::doc! { "explain": {
            "find": &context.settings.store.logs_collection,
            "filter": filter,
            "sort": { "ts": -1, "_id": -1 },
            "limit": 100,
        }})
        .await
        .expect("explain");
    explained
        .get_document("queryPlanner")
        .and_then(|planner| planner.get_document("winningPlan"))
        .expect("a winning plan")
        .to_string()
}

#[tokio::test]
async fn the_main_query_shapes_are_served_by_indexes() {
    let context = TestContext::new("search_plans").await;
    context
        .store
        .insert_records(&logs(500, "x"))
        .await
        .expect("seed");
    context.store.ensure_indexes().await.expect("indexes");
    // The main shapes use their own index; any other combination at least an index (the
    // planner may prefer `ts` for a narrow window).
    for (query, index) in [
        ("service=web&severity=error", Some("service_severity_ts")),
        ("", Some("ts")),
        ("service=web&service=auth&min_severity=warn", None),
        ("host=host-1&status_class=5xx&attr.order=3", None),
        ("contains=payment&method=GET&path=/p1", None),
    ] {
        let plan = page_plan(&context, query).await;
        assert!(plan.contains("IXSCAN"), "{query}: {plan}");
        assert!(!plan.contains("COLLSCAN"), "{query}: {plan}");
        if let Some(index) = index {
            assert!(
                plan.contains(&format!("\"indexName\": \"{index}\"")),
                "{query}: {plan}"
            );
        }
    }
    // Words: the filters of a window by their index, then their blocks' logs by `_id`.
    let now = Utc::now();
    let hash = logagg::words::word_hash("payment");
    let positions: Vec<i64> = logagg::words::bloom_positions(hash, 512)
        .map(i64::from)
        .collect();
    let database = context
        .store
        .client()
        .database(&context.settings.store.database);
    let explain = |collection: &str, find: bson::Document| {
        let mut command = bson::doc! { "find": collection };
        command.extend(find);
        let database = database.clone();
        async move {
            let explained = database
                .run_command(bson::doc! { "explain": command })
                .await
                .expect("explain");
            explained
                .get_document("queryPlanner")
                .and_then(|planner| planner.get_document("winningPlan"))
                .expect("a winning plan")
                .to_string()
        }
    };
    let filters_plan = explain(
        &context.settings.store.blocks_collection,
        bson::doc! { "filter": {
            "p": logagg::store::blocks::partition(hash) as i32,
            "k": 512_i64,
            "to": { "$gte": bson::DateTime::from_chrono(now - Duration::minutes(1)) },
            "from": { "$lte": bson::DateTime::from_chrono(now) },
            "f": { "$bitsAllSet": positions },
        }},
    )
    .await;
    assert!(
        filters_plan.contains("\"indexName\": \"p_k_to\""),
        "{filters_plan}"
    );
    let logs_plan = explain(
        &context.settings.store.logs_collection,
        bson::doc! {
            "filter": {
                "_id": { "$in": ["x-1", "x-2"] },
                "ts": { "$gte": bson::DateTime::from_chrono(now - Duration::minutes(1)) },
            },
            "sort": { "ts": -1, "_id": -1 },
        },
    )
    .await;
    assert!(logs_plan.contains("\"indexName\": \"_id_\""), "{logs_plan}");
    // Too many blocks to read at once: sealed blocks newest first, by the same index.
    let walk_plan = explain(
        &context.settings.store.blocks_collection,
        bson::doc! {
            "filter": {
                "p": -2,
                "k": 0_i64,
                "to": { "$gte": bson::DateTime::from_chrono(now - Duration::hours(24)) },
                "from": { "$lte": bson::DateTime::from_chrono(now) },
            },
            "sort": { "to": -1 },
        },
    )
    .await;
    assert!(
        walk_plan.contains("\"indexName\": \"p_k_to\""),
        "{walk_plan}"
    );
    context.cleanup().await;
}

#[tokio::test]
async fn paging_a_service_across_severities_sees_each_record_once_in_order() {
    let context = TestContext::new("search_paging_service").await;
    // Several logs per millisecond, so pages end inside runs of equal timestamps.
    let mut records = logs(3_000, "s");
    let base = Utc::now();
    for (index, record) in records.iter_mut().enumerate() {
        record.timestamp = base - Duration::milliseconds(index as i64 / 7);
    }
    context.store.insert_records(&records).await.expect("seed");
    let app = app(&context).await;
    for (query, keep) in [
        (
            "service=web",
            (|r: &LogRecord| r.service == "web") as fn(&LogRecord) -> bool,
        ),
        ("service=auth&service=billing&min_severity=warn", |r| {
            r.service != "web" && r.severity >= Severity::Warn
        }),
    ] {
        let mut expected: Vec<&LogRecord> = records.iter().filter(|r| keep(r)).collect();
        expected.sort_by(|a, b| (b.timestamp, &b.id).cmp(&(a.timestamp, &a.id)));
        let expected: Vec<String> = expected.iter().map(|r| r.id.clone()).collect();
        let seen = every_page(&app, &format!("/api/v1/logs?{query}&limit=37&from=1h")).await;
        assert_eq!(seen, expected, "{query}");
    }
    context.cleanup().await;
}

#[tokio::test]
async fn alerts_are_listed_newest_first_by_state_and_service() {
    let context = TestContext::new("search_alerts").await;
    let app = app(&context).await;
    let alert = |id: &str, rule: &str, service: &str, minutes_ago: i64| {
        logagg::store::alerts::StoredAlert {
            id: id.into(),
            rule: rule.into(),
            service: service.into(),
            value: 12.0,
            threshold: 10.0,
            window_seconds: 60,
            started_at: Utc::now() - Duration::minutes(minutes_ago),
            resolved_at: None,
            peak: 12.0,
            sample_ids: vec![format!("{id}-log")],
        }
    };
    for stored in [
        alert("a1", "error_burst", "web", 30),
        alert("a2", "error_burst", "auth", 20),
        alert("a3", "error_ratio", "web", 10),
    ] {
        context.store.open_alert(&stored).await.expect("open");
    }
    let mut resolved = alert("a1", "error_burst", "web", 30);
    resolved.resolved_at = Some(Utc::now());
    assert!(context
        .store
        .resolve_alert(&resolved)
        .await
        .expect("resolve"));

    let listed = |body: &Value| -> Vec<String> {
        body["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .map(|alert| alert["id"].as_str().expect("id").to_owned())
            .collect()
    };
    let (status, body) = get(&app, "/api/v1/alerts").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(listed(&body), ["a3", "a2", "a1"]);
    assert_eq!(body["alerts"][2]["state"], "resolved");
    assert!(body["alerts"][2]["resolved_at"].is_string());
    assert_eq!(body["alerts"][0]["sample_ids"][0], "a3-log");
    let (_, firing) = get(&app, "/api/v1/alerts?state=firing").await;
    assert_eq!(listed(&firing), ["a3", "a2"]);
    let (_, web) = get(&app, "/api/v1/alerts?service=web&limit=1").await;
    assert_eq!(listed(&web), ["a3"]);
    for query in [
        "state=loud",
        "limit=0",
        "limit=501",
        "service=bad*",
        "colour=red",
    ] {
        let (status, _) = get(&app, &format!("/api/v1/alerts?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
    }
    context.cleanup().await;
}

/// Logs `payment r<n> <tail>` for `n` in `numbers`, stamped `first` + n - start seconds.
fn worded(
    numbers: std::ops::Range<usize>,
    first: chrono::DateTime<Utc>,
    tail: &str,
) -> Vec<LogRecord> {
    let start = numbers.start;
    numbers
        .map(|n| {
            let timestamp = first + Duration::seconds((n - start) as i64);
            LogRecord {
                id: format!("w-{n:03}"),
                timestamp,
                received_at: timestamp,
                service: SERVICES[n % 3].to_owned(),
                severity: Severity::Info,
                message: format!("Payment r{n:03} {tail}"),
                host: None,
                attributes: serde_json::Map::new(),
                http: None,
            }
        })
        .collect()
}

/// Stores `records` as the version before word blocks did: `words` holds what was indexed
/// (all words but `unindexed`), `all_words` everything, and no block.
async fn store_the_earlier_way(context: &TestContext, records: &[LogRecord], unindexed: &str) {
    let documents: Vec<bson::Document> = records
        .iter()
        .map(|record| {
            let all = logagg::words::message_words(&record.message);
            let indexed: Vec<&String> = all.iter().filter(|word| *word != unindexed).collect();
            let mut document = logagg::store::record_to_document(record, Some(&all));
            document.insert(fields::WORDS, indexed);
            document
        })
        .collect();
    context
        .store
        .logs()
        .insert_many(documents)
        .await
        .expect("earlier-format logs");
}

/// One array of a stored log's words.
async fn stored_words(context: &TestContext, id: &str, field: &str) -> Vec<String> {
    let document = context
        .store
        .logs()
        .find_one(bson::doc! { "_id": id })
        .await
        .expect("find")
        .expect("stored");
    document
        .get_array(field)
        .map(|array| {
            array
                .iter()
                .filter_map(|word| word.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn logs_stored_before_word_blocks_are_found_beside_those_in_blocks() {
    let context = TestContext::new("search_word_migration").await;
    let app = app(&context).await;
    let settings = &context.settings.store;
    let database = context.store.client().database(&settings.database);
    // What the earlier version left: its `words` index, `payment` found common 90 minutes
    // ago, logs before and after that, and one an old collector wrote after the upgrade.
    database
        .run_command(bson::doc! {
            "createIndexes": &settings.logs_collection,
            "indexes": [{
                "key": { fields::WORDS: 1, fields::TIMESTAMP: -1 },
                "name": logagg::store::INDEX_WORDS_TIME,
            }],
        })
        .await
        .expect("the earlier words index");
    let since = Utc::now() - Duration::minutes(90);
    database
        .collection::<bson::Document>(&settings.common_words_collection)
        .insert_one(bson::doc! { "_id": "payment", "since": bson::DateTime::from_chrono(since), "found_at": bson::DateTime::from_chrono(since) })
        .await
        .expect("common word");
    store_the_earlier_way(
        &context,
        &worded(0..20, since - Duration::minutes(30), "ok"),
        "",
    )
    .await;
    store_the_earlier_way(
        &context,
        &worded(20..30, since + Duration::minutes(10), "ok"),
        "payment",
    )
    .await;
    store_the_earlier_way(
        &context,
        &worded(40..41, Utc::now() + Duration::seconds(20), "late"),
        "",
    )
    .await;
    // Logs written now go into blocks, with no `words` nor `all_words`: search checks
    // their words on the message.
    context
        .store
        .insert_records(&worded(30..40, Utc::now() + Duration::seconds(1), "done"))
        .await
        .expect("written in blocks");
    assert!(stored_words(&context, "w-033", "words").await.is_empty());
    assert!(stored_words(&context, "w-033", "all_words")
        .await
        .is_empty());

    let window = format!(
        "from={}&to={}",
        (Utc::now() - Duration::hours(3)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        (Utc::now() + Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    );
    let all: Vec<String> = (0..41).rev().map(|n| format!("w-{n:03}")).collect();
    let (status, body) = get(&app, &format!("/api/v1/logs?q=payment&limit=100&{window}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(ids(&body), all);
    let (_, body) = get(
        &app,
        &format!("/api/v1/logs?q=payment&limit=100&order=oldest&{window}"),
    )
    .await;
    assert_eq!(ids(&body), all.iter().rev().cloned().collect::<Vec<_>>());
    // Pages of 15 cross both cuts (common word, blocks) and see each log once, in order.
    let paged = every_page(&app, &format!("/api/v1/logs?q=PAYMENT&limit=15&{window}")).await;
    assert_eq!(paged, all);
    let earlier: Vec<String> = all[11..].to_vec();
    for (q, expected) in [
        ("payment+r023", vec!["w-023".to_owned()]),
        ("r003+payment", vec!["w-003".to_owned()]),
        ("r035", vec!["w-035".to_owned()]),
        ("late", vec!["w-040".to_owned()]),
        ("payment+ok", earlier),
        ("ok+done", vec![]),
        ("absent", vec![]),
    ] {
        let (_, body) = get(&app, &format!("/api/v1/logs?q={q}&limit=100&{window}")).await;
        assert_eq!(ids(&body), expected, "q={q}");
    }
    // Stats fold over both, each log once.
    let (status, stats) = get(&app, &format!("/api/v1/stats?q=payment&{window}")).await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    assert_eq!(stats["total"], 41);
    let (_, stats) = get(&app, &format!("/api/v1/stats?q=done&{window}")).await;
    assert_eq!(stats["total"], 10);
    context.cleanup().await;
}

/// Stores `records` as a collector of the first block version did: the logs with their
/// words, and one block holding their ids and one filter over all their words.
async fn store_in_a_first_version_block(context: &TestContext, records: &[LogRecord]) {
    use logagg::words::{word_hash, Bloom};
    let settings = &context.settings.store;
    let blocks = context
        .store
        .client()
        .database(&settings.database)
        .collection::<bson::Document>(&settings.blocks_collection);
    let mut documents = Vec::new();
    let mut words = BTreeSet::new();
    for record in records {
        let all = logagg::words::message_words(&record.message);
        documents.push(logagg::store::record_to_document(record, Some(&all)));
        words.extend(all);
    }
    let sizes = [1 << 10, 1 << 12, 1 << 14, 1 << 16];
    let mut bloom = Bloom::for_words(words.len(), &sizes);
    for word in &words {
        bloom.insert(word_hash(word));
    }
    let stamp = |time: chrono::DateTime<Utc>| bson::DateTime::from_chrono(time);
    blocks
        .insert_one(bson::doc! {
            "_id": format!("v1-{}", records[0].id),
            "v": 1,
            "from": stamp(records.iter().map(|record| record.timestamp).min().expect("records")),
            "to": stamp(records.iter().map(|record| record.timestamp).max().expect("records")),
            "services": records.iter().map(|record| record.service.clone()).collect::<BTreeSet<_>>().into_iter().collect::<Vec<_>>(),
            "ids": records.iter().map(|record| record.id.clone()).collect::<Vec<_>>(),
            "m": i64::from(bloom.bits()),
            "bloom": bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: bloom.bytes().to_vec() },
        })
        .await
        .expect("a first-version block");
    context
        .store
        .logs()
        .insert_many(documents)
        .await
        .expect("logs of a first-version block");
}

#[tokio::test]
async fn logs_in_first_version_blocks_stay_searchable_beside_those_in_sliced_blocks() {
    let context = TestContext::new("search_block_migration").await;
    let app = app(&context).await;
    let settings = &context.settings.store;
    let blocks = context
        .store
        .client()
        .database(&settings.database)
        .collection::<bson::Document>(&settings.blocks_collection);
    // What the first block version left: its marker and index, its blocks of logs from two
    // hours ago, and one an old collector wrote after the upgrade.
    blocks
        .insert_one(bson::doc! {
            "_id": "blocks_since",
            "since": bson::DateTime::from_chrono(Utc::now() - Duration::hours(3)),
        })
        .await
        .expect("first-version marker");
    context
        .store
        .client()
        .database(&settings.database)
        .run_command(bson::doc! {
            "createIndexes": &settings.blocks_collection,
            "indexes": [{ "key": { "m": 1, "to": 1 }, "name": "m_to" }],
        })
        .await
        .expect("first-version index");
    let two_hours_ago = Utc::now() - Duration::hours(2);
    store_in_a_first_version_block(&context, &worded(0..15, two_hours_ago, "ok")).await;
    store_in_a_first_version_block(&context, &worded(15..30, two_hours_ago, "ok")).await;
    store_in_a_first_version_block(&context, &worded(40..42, Utc::now(), "late")).await;
    context
        .store
        .insert_records(&worded(30..40, Utc::now() + Duration::seconds(5), "done"))
        .await
        .expect("written in sliced blocks");

    let window = format!(
        "from={}&to={}",
        (Utc::now() - Duration::hours(3)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        (Utc::now() + Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    );
    let mut all: Vec<(i64, String)> = (0..42)
        .map(|n| {
            let first = match n {
                0..15 => (two_hours_ago, 0),
                15..30 => (two_hours_ago, 15),
                30..40 => (Utc::now() + Duration::seconds(5), 30),
                _ => (Utc::now(), 40),
            };
            (
                first.0.timestamp() + (n - first.1) as i64,
                format!("w-{n:03}"),
            )
        })
        .collect();
    all.sort();
    let newest_first: Vec<String> = all.into_iter().rev().map(|(_, id)| id).collect();
    let (status, body) = get(&app, &format!("/api/v1/logs?q=payment&limit=100&{window}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut found = ids(&body);
    let mut expected = newest_first.clone();
    found.sort();
    expected.sort();
    assert_eq!(found, expected);
    // Pages of 15 cross both versions and see each log once.
    let paged = every_page(&app, &format!("/api/v1/logs?q=payment&limit=15&{window}")).await;
    assert_eq!(paged.len(), 42);
    assert_eq!(paged.iter().collect::<BTreeSet<_>>().len(), 42);
    for (q, expected) in [
        ("r007", vec!["w-007"]),
        ("payment+r022", vec!["w-022"]),
        ("r035+done", vec!["w-035"]),
        ("late+r041", vec!["w-041"]),
        ("ok+done", vec![]),
    ] {
        let (_, body) = get(&app, &format!("/api/v1/logs?q={q}&limit=100&{window}")).await;
        assert_eq!(ids(&body), expected, "q={q}");
    }
    let (status, stats) = get(&app, &format!("/api/v1/stats?q=payment&{window}")).await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    assert_eq!(stats["total"], 42);
    context.cleanup().await;
}

#[tokio::test]
async fn small_batches_share_one_block_and_each_is_found_as_soon_as_it_is_stored() {
    let context = TestContext::new("search_open_blocks").await;
    let app = app(&context).await;
    let blocks = context.store.blocks().expect("word search on").clone();
    let start = Utc::now() - Duration::minutes(5);
    // Thirty batches of three, as a collector writes at a low rate: each is searchable by
    // word the moment its write returns (when the collector would ack it).
    for batch in 0..30 {
        let records = worded(
            batch * 3..batch * 3 + 3,
            start + Duration::seconds(batch as i64 * 3),
            "open",
        );
        context
            .store
            .insert_records(&records)
            .await
            .expect("stored");
        let (status, body) = get(
            &app,
            &format!("/api/v1/logs?q=r{:03}&limit=10", batch * 3 + 1),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(ids(&body), [format!("w-{:03}", batch * 3 + 1)]);
    }
    let block_documents = |filter: bson::Document| {
        let blocks = blocks.clone();
        async move { blocks.count_documents(filter).await.expect("count blocks") }
    };
    // One open block (its logs all in one hour) holds them all, and no filter yet.
    let hours: BTreeSet<i64> = (0..90)
        .map(|n| (start + Duration::seconds(n)).timestamp() / 3600)
        .collect();
    assert_eq!(
        block_documents(bson::doc! { "ids": { "$exists": true } }).await,
        hours.len() as u64
    );
    assert_eq!(block_documents(bson::doc! { "p": { "$gte": 0 } }).await, 0);
    let (_, body) = get(&app, "/api/v1/logs?q=payment+open&limit=100").await;
    assert_eq!(ids(&body).len(), 90);

    // Sealed (as at shutdown), the same logs are found through the filters.
    assert_eq!(context.store.seal_open_blocks().await.expect("sealed"), 0);
    assert_eq!(block_documents(bson::doc! { "p": -1 }).await, 0);
    assert!(block_documents(bson::doc! { "p": { "$gte": 0 } }).await > 0);
    let (_, body) = get(&app, "/api/v1/logs?q=payment+open&limit=100").await;
    assert_eq!(ids(&body).len(), 90);
    for n in [0, 44, 89] {
        let (_, body) = get(&app, &format!("/api/v1/logs?q=r{n:03}&limit=10")).await;
        assert_eq!(ids(&body), [format!("w-{n:03}")]);
    }
    let (_, stats) = get(&app, "/api/v1/stats?q=open&from=1h").await;
    assert_eq!(stats["total"], 90);
    context.cleanup().await;
}

/// Stores `records` as a collector of the second block version did: the logs with their
/// words (`all_words`), in one sealed block whose document has no place in the blocks'
/// time order (`p`, `k`).
async fn store_in_a_second_version_block(context: &TestContext, records: &[LogRecord]) {
    let (_, blocks) = context.store.log_documents(records);
    let blocks: Vec<bson::Document> = blocks
        .into_iter()
        .map(|mut block| {
            if block.contains_key("ids") {
                block.remove("p");
                block.remove("k");
            }
            block
        })
        .collect();
    context
        .store
        .blocks()
        .expect("word search on")
        .insert_many(blocks)
        .await
        .expect("a second-version block");
    let documents: Vec<bson::Document> = records
        .iter()
        .map(|record| {
            let all = logagg::words::message_words(&record.message);
            logagg::store::record_to_document(record, Some(&all))
        })
        .collect();
    context
        .store
        .logs()
        .insert_many(documents)
        .await
        .expect("logs of a second-version block");
}

#[tokio::test]
async fn common_words_walk_the_blocks_in_time_order_beside_logs_stored_with_their_words() {
    let context = TestContext::new("search_block_walk").await;
    let blocks = context.store.blocks().expect("word search on").clone();
    // A second-version deployment upgraded now: its marker three hours back, its logs
    // (with their words, in blocks not in time order) two hours back.
    let three_hours_ago = Utc::now() - Duration::hours(3);
    blocks
        .update_one(
            bson::doc! { "_id": "filters_since" },
            bson::doc! { "$set": { "since": bson::DateTime::from_chrono(three_hours_ago) } },
        )
        .upsert(true)
        .await
        .expect("an earlier version's marker");
    let two_hours_ago = Utc::now() - Duration::hours(2);
    store_in_a_second_version_block(&context, &worded(0..10, two_hours_ago, "listed")).await;
    // 45 sealed blocks of two logs, more than a page reads at once, their time ranges
    // overlapping (log n at base + n s, its block's other at base + 140 - n s); newer, 20
    // ending at one time (more than the walk's first read of blocks); and one open block.
    let base = Utc::now() - Duration::minutes(30);
    let tie = base + Duration::seconds(200);
    let mut expected: Vec<(i64, String)> = Vec::new();
    let pairs = (10..55).map(|n| {
        (
            worded(n..n + 1, base + Duration::seconds(n as i64), "walked"),
            worded(
                n + 100..n + 101,
                base + Duration::seconds(140 - n as i64),
                "walked",
            ),
        )
    });
    // The tied blocks' words hold `tied` too: in 20 blocks, all of the last hour, so a
    // search over four hours finds them dense where its walk starts, yet few in its range.
    let tied = (300..320).map(|n| {
        (
            worded(
                n..n + 1,
                tie - Duration::seconds(n as i64 - 299),
                "walked tied",
            ),
            worded(n + 100..n + 101, tie, "walked tied"),
        )
    });
    for (mut pair, mut partner) in pairs.chain(tied) {
        pair.append(&mut partner);
        let (documents, sealed) = context.store.log_documents(&pair);
        blocks.insert_many(sealed).await.expect("sealed blocks");
        let documents: Vec<bson::Document> = documents
            .iter()
            .map(|raw| raw.to_document().expect("a stored-form log"))
            .collect();
        context
            .store
            .logs()
            .insert_many(documents)
            .await
            .expect("their logs");
        for record in &pair {
            expected.push((record.timestamp.timestamp_millis(), record.id.clone()));
        }
    }
    let open = worded(200..205, Utc::now() - Duration::minutes(1), "walked");
    context
        .store
        .insert_records(&open)
        .await
        .expect("an open block");
    for record in &open {
        expected.push((record.timestamp.timestamp_millis(), record.id.clone()));
    }
    for record in worded(0..10, two_hours_ago, "listed") {
        expected.push((record.timestamp.timestamp_millis(), record.id));
    }
    expected.sort();
    let oldest_first: Vec<String> = expected.iter().map(|(_, id)| id.clone()).collect();
    let newest_first: Vec<String> = oldest_first.iter().rev().cloned().collect();
    assert_eq!(newest_first.len(), 145);

    let app = app(&context).await;
    let window = format!(
        "from={}",
        (Utc::now() - Duration::hours(4)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    );
    assert_eq!(
        every_page(&app, &format!("/api/v1/logs?q=payment&limit=7&{window}")).await,
        newest_first
    );
    assert_eq!(
        every_page(
            &app,
            &format!("/api/v1/logs?q=payment&limit=7&order=oldest&{window}")
        )
        .await,
        oldest_first
    );
    let walked: Vec<String> = newest_first
        .iter()
        .filter(|id| !id.starts_with("w-00"))
        .cloned()
        .collect();
    assert_eq!(
        every_page(
            &app,
            &format!("/api/v1/logs?q=walked+payment&limit=10&{window}")
        )
        .await,
        walked
    );
    let tied: Vec<String> = newest_first
        .iter()
        .filter(|id| id.starts_with("w-3") || id.starts_with("w-4"))
        .cloned()
        .collect();
    assert_eq!(tied.len(), 40);
    assert_eq!(
        every_page(&app, &format!("/api/v1/logs?q=tied&limit=7&{window}")).await,
        tied
    );
    for (q, expected) in [
        ("r042+walked", vec!["w-042"]),
        ("r003+listed", vec!["w-003"]),
        ("r142", vec!["w-142"]),
        ("listed+walked", vec![]),
    ] {
        let (status, body) = get(&app, &format!("/api/v1/logs?q={q}&limit=100&{window}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(ids(&body), expected, "q={q}");
    }
    for (q, total) in [
        ("payment", 145),
        ("walked", 135),
        ("listed", 10),
        ("listed+walked", 0),
        ("tied", 40),
    ] {
        let (status, stats) = get(&app, &format!("/api/v1/stats?q={q}&{window}")).await;
        assert_eq!(status, StatusCode::OK, "{stats}");
        assert_eq!(stats["total"], total, "q={q}");
    }
    context.cleanup().await;
}

#[tokio::test]
async fn stats_over_more_blocks_than_a_scan_reads_by_id_walk_them_all_and_count_each_log_once() {
    let context = TestContext::new("search_stats_walk").await;
    let blocks = context.store.blocks().expect("word search on").clone();
    // 210 sealed blocks of 50 logs, all in one aligned hour two hours back: more blocks
    // than a scan reads by id (200), so stats walk, and more logs than one of its reads
    // takes (10,000).
    let now = Utc::now();
    let base = now - Duration::hours(2) - Duration::seconds(now.timestamp() % 3600);
    let groups: Vec<Vec<LogRecord>> = (0..210)
        .map(|n| {
            worded(
                50 * n..50 * n + 50,
                base + Duration::seconds(12 * n as i64),
                "walked",
            )
        })
        .collect();
    let mut sealed = Vec::new();
    let mut logs = Vec::new();
    for group in &groups {
        let (documents, group_blocks) = context.store.log_documents(group);
        sealed.extend(group_blocks);
        logs.extend(
            documents
                .iter()
                .map(|raw| raw.to_document().expect("a stored-form log")),
        );
    }
    blocks.insert_many(sealed).await.expect("sealed blocks");
    context
        .store
        .logs()
        .insert_many(logs)
        .await
        .expect("their logs");
    // The 200th newest block also open, as when it was sealed while a walk began: the walk
    // takes it open last in its first read (10 ids of the batch below, 199 blocks, its 50),
    // sealed first in its second.
    context
        .store
        .insert_records(&groups[10])
        .await
        .expect("an open copy");
    // A batch written twice (its first write failed after its logs were stored): its ids
    // are in its open block twice.
    let again = worded(
        11_000..11_005,
        Utc::now() - Duration::minutes(1),
        "walked again",
    );
    for _ in 0..2 {
        context
            .store
            .insert_records(&again)
            .await
            .expect("an open block");
    }
    let app = app(&context).await;
    for (q, total) in [
        ("walked", 10_505),
        ("payment+walked", 10_505),
        ("again", 5),
        ("r4242+walked", 1),
        ("again+r4242", 0),
    ] {
        let (status, stats) = get(&app, &format!("/api/v1/stats?q={q}&from=3h")).await;
        assert_eq!(status, StatusCode::OK, "{stats}");
        assert_eq!(stats["total"], total, "q={q}");
        let by_service: u64 = stats["by_service"]
            .as_object()
            .expect("by_service")
            .values()
            .filter_map(Value::as_u64)
            .sum();
        assert_eq!(by_service, total, "q={q}: {stats}");
    }
    context.cleanup().await;
}
