//! `GET /api/v1/stats` and `GET /api/v1/services`: counts by severity, by service and in
//! time buckets, top services by errors, and per-route access-log status classes and
//! latency quantiles.
//!
//! Filtered only by service, severity and time, stats come from the rollups collectors
//! keep (`logagg::store::stats`): counts to the minute, access logs to the hour, a few
//! hundred documents for a day. With any other filter they are folded from the matching
//! logs themselves, exactly, within the query time limit.

use std::collections::BTreeMap;
use std::time::Duration;

use bson::{doc, Document};
use chrono::{DateTime, Utc};
use logagg::sketch::LatencySketch;
use logagg::store::search::ScanRequest;
use logagg::store::stats::{
    normalise_path, stat_fields, AccessRollup, CountsRollup, RollupDocument, RollupRead, HOUR_MS,
    KIND_COUNTS, MINUTE_MS,
};
use logagg::store::{fields, Database};
use logagg::{Severity, StatusClass};
use serde::Serialize;

use crate::error::ApiError;
use crate::query::{parse_age, LogQuery, QueryError};

/// Most time buckets a response may hold.
pub const MAX_BUCKETS: i64 = 1_000;
/// Bucket widths chosen automatically, seconds: the first giving at most
/// [`AUTO_BUCKETS`] buckets.
const AUTO_INTERVALS: [i64; 12] = [
    60, 300, 600, 900, 1_800, 3_600, 10_800, 21_600, 43_200, 86_400, 604_800, 2_592_000,
];
const AUTO_BUCKETS: i64 = 120;
/// Services listed under `top_error_services`, routes under `access`.
const TOP_SERVICES: usize = 10;
const TOP_ROUTES: usize = 100;

/// Where a stats answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatsSource {
    /// The collectors' rollups: counts to the minute, access logs to the hour.
    Rollups,
    /// The matching logs, folded one by one.
    Logs,
}

/// The body of `GET /api/v1/stats`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Stats {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub interval_seconds: i64,
    pub source: StatsSource,
    pub total: u64,
    pub by_severity: BTreeMap<String, u64>,
    pub by_service: BTreeMap<String, u64>,
    /// Every bucket from the one holding `from` to the one holding `to`, empty ones too.
    pub histogram: Vec<Bucket>,
    /// Services by count of `error` and `fatal` logs, most first; at most 10.
    pub top_error_services: Vec<ServiceErrors>,
    /// Access logs (those with an HTTP status or duration) per route, busiest first; at most
    /// 100. Paths are grouped with ids as `:id`.
    pub access: Vec<RouteStats>,
    /// Access logs per service over all its routes, busiest first: for each service, its
    /// rows in `access` plus its `other` add up to these totals.
    pub access_totals: Vec<ServiceAccess>,
    pub took_ms: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Bucket {
    pub start: DateTime<Utc>,
    pub count: u64,
    pub by_severity: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServiceErrors {
    pub service: String,
    pub errors: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RouteStats {
    pub service: String,
    pub method: String,
    pub path: String,
    #[serde(flatten)]
    pub counts: AccessCounts,
}

/// Requests, their status classes and latency: of a route, of a service, or of the routes
/// left out of the top rows.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AccessCounts {
    pub requests: u64,
    /// `1xx` … `5xx` → count (requests without a status are in `requests` only).
    pub status_classes: BTreeMap<String, u64>,
    /// Latency quantiles in milliseconds (within 4 %), absent without durations.
    pub latency_ms: Option<Quantiles>,
}

/// One service's access logs over all its routes.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServiceAccess {
    pub service: String,
    /// Distinct routes (method and grouped path).
    pub routes: u64,
    #[serde(flatten)]
    pub totals: AccessCounts,
    /// The service's routes that are not rows of `access`, added up.
    pub other: OtherRoutes,
}

/// The routes a service's top rows leave out.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OtherRoutes {
    pub routes: u64,
    #[serde(flatten)]
    pub counts: AccessCounts,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Quantiles {
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

/// The body of `GET /api/v1/services`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Services {
    pub services: Vec<ServiceSummary>,
    pub took_ms: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServiceSummary {
    pub service: String,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub total: u64,
    pub by_severity: BTreeMap<String, u64>,
}

#[derive(Debug, Default, Clone)]
struct RouteAccumulator {
    requests: u64,
    classes: [u64; 5],
    latency: LatencySketch,
}

impl RouteAccumulator {
    fn merge(&mut self, other: &RouteAccumulator) {
        self.requests += other.requests;
        for (total, count) in self.classes.iter_mut().zip(other.classes) {
            *total += count;
        }
        self.latency.merge(&other.latency);
    }

    fn counts(&self) -> AccessCounts {
        AccessCounts {
            requests: self.requests,
            status_classes: self
                .classes
                .iter()
                .enumerate()
                .filter(|(_, count)| **count > 0)
                .map(|(index, count)| (StatusClass::ALL[index].as_str().to_owned(), *count))
                .collect(),
            latency_ms: self.latency.quantile(0.5).map(|p50| Quantiles {
                mean: self.latency.mean().unwrap_or(p50),
                p50,
                p95: self.latency.quantile(0.95).unwrap_or(p50),
                p99: self.latency.quantile(0.99).unwrap_or(p50),
            }),
        }
    }
}

/// A service's routes added up: all of them, and those outside the top rows.
#[derive(Debug, Default)]
struct ServiceAccumulator {
    routes: u64,
    all: RouteAccumulator,
    other_routes: u64,
    other: RouteAccumulator,
}

/// The top rows (busiest routes first, at most `limit`) and every service's totals, whose
/// `other` holds what the rows leave out.
fn access_sections(
    routes: BTreeMap<(String, String, String), RouteAccumulator>,
    limit: usize,
) -> (Vec<RouteStats>, Vec<ServiceAccess>) {
    let mut ranked: Vec<((String, String, String), RouteAccumulator)> =
        routes.into_iter().collect();
    // Stable: equal counts keep the key order, so answers do not shuffle between calls.
    ranked.sort_by_key(|(_, route)| std::cmp::Reverse(route.requests));
    let mut services: BTreeMap<String, ServiceAccumulator> = BTreeMap::new();
    for (rank, ((service, _, _), route)) in ranked.iter().enumerate() {
        let totals = services.entry(service.clone()).or_default();
        totals.routes += 1;
        totals.all.merge(route);
        if rank >= limit {
            totals.other_routes += 1;
            totals.other.merge(route);
        }
    }
    let rows = ranked
        .into_iter()
        .take(limit)
        .map(|((service, method, path), route)| RouteStats {
            service,
            method,
            path,
            counts: route.counts(),
        })
        .collect();
    let mut totals: Vec<ServiceAccess> = services
        .into_iter()
        .map(|(service, totals)| ServiceAccess {
            service,
            routes: totals.routes,
            totals: totals.all.counts(),
            other: OtherRoutes {
                routes: totals.other_routes,
                counts: totals.other.counts(),
            },
        })
        .collect();
    totals.sort_by_key(|service| std::cmp::Reverse(service.totals.requests));
    (rows, totals)
}

/// Counts being folded into a [`Stats`].
#[derive(Debug)]
struct Accumulator {
    from_ms: i64,
    to_ms: i64,
    interval_ms: i64,
    by_severity: BTreeMap<Severity, u64>,
    by_service: BTreeMap<String, u64>,
    errors_by_service: BTreeMap<String, u64>,
    buckets: BTreeMap<i64, BTreeMap<Severity, u64>>,
    routes: BTreeMap<(String, String, String), RouteAccumulator>,
}

impl Accumulator {
    fn add_count(&mut self, time_ms: i64, service: &str, severity: Severity, count: u64) {
        *self.by_severity.entry(severity).or_default() += count;
        *self.by_service.entry(service.to_owned()).or_default() += count;
        if severity >= Severity::Error {
            *self
                .errors_by_service
                .entry(service.to_owned())
                .or_default() += count;
        }
        let bucket = time_ms.div_euclid(self.interval_ms) * self.interval_ms;
        *self
            .buckets
            .entry(bucket)
            .or_default()
            .entry(severity)
            .or_default() += count;
    }

    fn route(&mut self, service: &str, method: &str, path: &str) -> &mut RouteAccumulator {
        self.routes
            .entry((service.to_owned(), method.to_owned(), path.to_owned()))
            .or_default()
    }

    /// A stored log (projected to time, service, severity and HTTP fields).
    fn add_log(&mut self, document: &Document) {
        let (Ok(time), Ok(service), Some(severity)) = (
            document.get_datetime(fields::TIMESTAMP),
            document.get_str(fields::SERVICE),
            document
                .get_str(fields::SEVERITY)
                .ok()
                .and_then(|severity| severity.parse::<Severity>().ok()),
        ) else {
            return;
        };
        self.add_count(time.timestamp_millis(), service, severity, 1);
        self.add_access_of_log(document);
    }

    /// A stored log's access fields, if it has them.
    fn add_access_of_log(&mut self, document: &Document) {
        let (Ok(service), Ok(http)) = (
            document.get_str(fields::SERVICE),
            document.get_document(fields::HTTP),
        ) else {
            return;
        };
        let status = http.get_i32(fields::HTTP_STATUS).ok();
        let duration = http.get_f64(fields::HTTP_DURATION_MS).ok();
        if status.is_none() && duration.is_none() {
            return;
        }
        let method = http.get_str(fields::HTTP_METHOD).unwrap_or("-");
        let path = http
            .get_str(fields::HTTP_PATH)
            .map_or_else(|_| "-".to_owned(), normalise_path);
        let route = self.route(service, method, &path);
        route.requests += 1;
        if let Some(class) = status
            .and_then(|status| u16::try_from(status).ok())
            .and_then(StatusClass::of)
        {
            route.classes[class.index()] += 1;
        }
        if let Some(duration) = duration {
            route.latency.add(duration);
        }
    }

    /// A counts rollup: each of its minutes inside the range.
    fn add_counts_rollup(&mut self, rollup: &CountsRollup) {
        let first_minute = self.from_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
        for (minute, count) in &rollup.minutes {
            let time_ms = rollup.hour.timestamp_millis() + i64::from(*minute) * MINUTE_MS;
            if (first_minute..=self.to_ms).contains(&time_ms) {
                self.add_count(time_ms, &rollup.service, rollup.severity, *count);
            }
        }
    }

    /// An access rollup (whole hour).
    fn add_access_rollup(&mut self, rollup: &AccessRollup) {
        let route = self.route(&rollup.service, &rollup.method, &rollup.path);
        route.requests += rollup.requests;
        for (total, count) in route.classes.iter_mut().zip(rollup.classes) {
            *total += count;
        }
        for (bucket, count) in &rollup.latency {
            route.latency.add_to_bucket(*bucket, *count);
        }
    }

    fn finish(self, source: StatsSource, took: Duration) -> Stats {
        let name = |severity: &Severity| severity.as_str().to_owned();
        let first_bucket = self.from_ms.div_euclid(self.interval_ms) * self.interval_ms;
        let histogram = (0..)
            .map(|index| first_bucket + index * self.interval_ms)
            .take_while(|start| *start <= self.to_ms)
            .map(|start| {
                let by_severity = self.buckets.get(&start).cloned().unwrap_or_default();
                Bucket {
                    start: DateTime::from_timestamp_millis(start).unwrap_or_default(),
                    count: by_severity.values().sum(),
                    by_severity: by_severity.iter().map(|(s, n)| (name(s), *n)).collect(),
                }
            })
            .collect();
        let mut top_error_services: Vec<ServiceErrors> = self
            .errors_by_service
            .into_iter()
            .map(|(service, errors)| ServiceErrors { service, errors })
            .collect();
        top_error_services.sort_by(|a, b| b.errors.cmp(&a.errors).then(a.service.cmp(&b.service)));
        top_error_services.truncate(TOP_SERVICES);
        let (access, access_totals) = access_sections(self.routes, TOP_ROUTES);
        Stats {
            from: DateTime::from_timestamp_millis(self.from_ms).unwrap_or_default(),
            to: DateTime::from_timestamp_millis(self.to_ms).unwrap_or_default(),
            interval_seconds: self.interval_ms / 1_000,
            source,
            total: self.by_severity.values().sum(),
            by_severity: self
                .by_severity
                .iter()
                .map(|(s, n)| (name(s), *n))
                .collect(),
            by_service: self.by_service,
            histogram,
            top_error_services,
            access,
            access_totals,
            took_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// The bucket width: `interval` (an age like `5m`, `1h`), or chosen for about 120 buckets.
/// Rollups count by the minute, so their buckets are whole minutes.
pub fn choose_interval(interval: Option<&str>, query: &LogQuery) -> Result<i64, QueryError> {
    let span_ms = (query.to - query.from).num_milliseconds().max(1);
    let minimum_ms = if query.rollups_can_answer() {
        MINUTE_MS
    } else {
        1_000
    };
    let requested_ms = match interval {
        Some(text) => parse_age("interval", text)?.num_milliseconds(),
        None => AUTO_INTERVALS
            .iter()
            .map(|seconds| seconds * 1_000)
            .find(|ms| span_ms / ms < AUTO_BUCKETS)
            .unwrap_or(AUTO_INTERVALS[AUTO_INTERVALS.len() - 1] * 1_000),
    };
    // Whole units of the source's resolution, and never more than MAX_BUCKETS buckets:
    // an interval too fine for the range is widened (the answer's `interval_seconds` says
    // which was used), not refused.
    let fewest_ms = span_ms / (MAX_BUCKETS - 1) + 1;
    let interval_ms = requested_ms.max(fewest_ms).max(minimum_ms);
    Ok((interval_ms + minimum_ms - 1) / minimum_ms * minimum_ms)
}

/// Computes the stats for `query` with buckets `interval_ms` wide.
pub async fn stats(
    store: &Database,
    query: &LogQuery,
    interval_ms: i64,
    max_time: Duration,
) -> Result<Stats, ApiError> {
    let started = std::time::Instant::now();
    let mut accumulator = Accumulator {
        from_ms: query.from.timestamp_millis(),
        to_ms: query.to.timestamp_millis(),
        interval_ms,
        by_severity: BTreeMap::new(),
        by_service: BTreeMap::new(),
        errors_by_service: BTreeMap::new(),
        buckets: BTreeMap::new(),
        routes: BTreeMap::new(),
    };
    if query.matches_nothing {
        return Ok(accumulator.finish(StatsSource::Logs, started.elapsed()));
    }
    if !query.rollups_can_answer() {
        let projection = doc! {
            fields::ID: 0, fields::TIMESTAMP: 1, fields::SERVICE: 1, fields::SEVERITY: 1,
            fields::HTTP: 1,
        };
        let documents = scan_matching(store, query, &query.filter(), projection, max_time).await?;
        documents
            .iter()
            .for_each(|document| accumulator.add_log(document));
        return Ok(accumulator.finish(StatsSource::Logs, started.elapsed()));
    }
    let hours_from = query.from.timestamp_millis().div_euclid(HOUR_MS) * HOUR_MS;
    let mut filter = query.filter();
    filter.insert(
        stat_fields::TIME,
        doc! {
            "$gte": bson::DateTime::from_millis(hours_from),
            "$lte": bson::DateTime::from_chrono(query.to),
        },
    );
    // Access rollups have no severity, so a severity filter leaves them out here and their
    // section is folded from the matching access logs instead.
    for rollup in store
        .find_stats(filter, RollupRead::Whole, max_time)
        .await?
    {
        match &rollup {
            RollupDocument::Counts(counts) => accumulator.add_counts_rollup(counts),
            RollupDocument::Access(access) => accumulator.add_access_rollup(access),
        }
    }
    if !query.severities.is_empty() {
        let mut filter = query.filter();
        filter.insert(fields::HTTP, doc! { "$exists": true });
        let projection = doc! { fields::ID: 0, fields::SERVICE: 1, fields::HTTP: 1 };
        let access_logs = scan_matching(store, query, &filter, projection, max_time).await?;
        access_logs
            .iter()
            .for_each(|document| accumulator.add_access_of_log(document));
    }
    Ok(accumulator.finish(StatsSource::Rollups, started.elapsed()))
}

/// The logs of `query`'s range and words that match `filter`, projected.
async fn scan_matching(
    store: &Database,
    query: &LogQuery,
    filter: &Document,
    projection: Document,
    max_time: Duration,
) -> Result<Vec<Document>, logagg::store::StoreError> {
    store
        .scan_logs(&ScanRequest {
            filter: filter.clone(),
            words: query.words.clone(),
            from: query.from,
            to: query.to,
            projection,
            max_time,
        })
        .await
}

/// Every service in the rollups of `[from, to]` (or all of them), first and last seen and
/// counts by severity.
pub async fn services(
    store: &Database,
    range: Option<(DateTime<Utc>, DateTime<Utc>)>,
    max_time: Duration,
) -> Result<Services, ApiError> {
    let started = std::time::Instant::now();
    let mut filter = doc! { stat_fields::KIND: KIND_COUNTS };
    if let Some((from, to)) = range {
        filter.insert(
            stat_fields::TIME,
            doc! {
                "$gte": bson::DateTime::from_millis(from.timestamp_millis().div_euclid(HOUR_MS) * HOUR_MS),
                "$lte": bson::DateTime::from_chrono(to),
            },
        );
    }
    let mut summaries: BTreeMap<String, ServiceSummary> = BTreeMap::new();
    for rollup in store
        .find_stats(filter, RollupRead::HourTotals, max_time)
        .await?
    {
        let RollupDocument::Counts(counts) = rollup else {
            continue;
        };
        let summary = summaries
            .entry(counts.service.clone())
            .or_insert_with(|| ServiceSummary {
                service: counts.service.clone(),
                first_seen: counts.first,
                last_seen: counts.last,
                total: 0,
                by_severity: BTreeMap::new(),
            });
        summary.first_seen = summary.first_seen.min(counts.first);
        summary.last_seen = summary.last_seen.max(counts.last);
        summary.total += counts.count;
        *summary
            .by_severity
            .entry(counts.severity.as_str().to_owned())
            .or_default() += counts.count;
    }
    Ok(Services {
        services: summaries.into_values().collect(),
        took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}
