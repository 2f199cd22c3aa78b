//! Stats rollups: counts of stored logs per hour, service and severity (with a count per
//! minute inside), and per hour, service, method and path for access logs (status classes
//! and a latency sketch; not per severity, which would multiply the documents a day of stats
//! reads). Collectors add each batch's newly stored logs with one `update`
//! command of upserts; search reads hundreds of rollups instead of scanning millions of logs.
//!
//! Rollups are best effort by design: a batch whose rollup update fails (or whose insert was
//! retried after MongoDB stored part of it) is missing from them. The logs themselves, and
//! every answer search builds from the logs, are exact.

use std::collections::BTreeMap;
use std::time::Duration;

use bson::{doc, Bson, Document};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mongodb::options::IndexOptions;
use mongodb::IndexModel;

use super::{Database, StoreError};
use crate::record::{HttpFields, LogRecord, Severity, StatusClass};
use crate::sketch::{LatencySketch, ZERO_BUCKET};

/// Field names of a rollup document.
pub mod stat_fields {
    pub const ID: &str = "_id";
    /// [`KIND_COUNTS`](super::KIND_COUNTS) or [`KIND_ACCESS`](super::KIND_ACCESS).
    pub const KIND: &str = "k";
    /// Start of the rollup's hour.
    pub const TIME: &str = "t";
    pub const SERVICE: &str = "service";
    pub const SEVERITY: &str = "severity";
    pub const METHOD: &str = "method";
    pub const PATH: &str = "path";
    pub const COUNT: &str = "n";
    /// Counts rollups: minute of the hour (`"0"`…`"59"`) → count.
    pub const MINUTES: &str = "m";
    /// Counts rollups: earliest and latest log timestamp counted.
    pub const FIRST: &str = "first";
    pub const LAST: &str = "last";
    /// Access rollups: status class (`"2xx"`…) → count.
    pub const CLASSES: &str = "c";
    /// Access rollups: latency sketch bucket → count ([`bucket_key`](super::bucket_key)).
    pub const LATENCY: &str = "l";
}

pub const KIND_COUNTS: &str = "counts";
pub const KIND_ACCESS: &str = "access";
/// Width of a rollup, ms.
pub const HOUR_MS: i64 = 3_600_000;
/// Resolution of counts inside a rollup, ms.
pub const MINUTE_MS: i64 = 60_000;

/// Index serving rollup reads by kind and time.
pub const INDEX_STATS_KIND_TIME: &str = "k_t";

/// Longest path kept in an access rollup, bytes.
const MAX_PATH_BYTES: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct CountKey {
    hour_ms: i64,
    service: String,
    severity: Severity,
}

#[derive(Debug, Clone, Default)]
struct CountCell {
    count: u64,
    minutes: BTreeMap<u8, u64>,
    first_ms: i64,
    last_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct AccessKey {
    hour_ms: i64,
    service: String,
    method: String,
    path: String,
}

#[derive(Debug, Clone, Default)]
struct AccessCell {
    count: u64,
    classes: [u64; 5],
    latency: LatencySketch,
}

/// Rollup increments for a set of logs, ready to be added to the stored rollups.
#[derive(Debug, Clone, Default)]
pub struct Rollup {
    counts: BTreeMap<CountKey, CountCell>,
    access: BTreeMap<AccessKey, AccessCell>,
}

impl Rollup {
    /// Counts one log.
    pub fn add(
        &mut self,
        timestamp: DateTime<Utc>,
        service: &str,
        severity: Severity,
        http: Option<&HttpFields>,
    ) {
        let time_ms = timestamp.timestamp_millis();
        let hour_ms = time_ms.div_euclid(HOUR_MS) * HOUR_MS;
        let minute = ((time_ms - hour_ms) / MINUTE_MS) as u8;
        let cell = self
            .counts
            .entry(CountKey {
                hour_ms,
                service: service.to_owned(),
                severity,
            })
            .or_insert_with(|| CountCell {
                first_ms: time_ms,
                last_ms: time_ms,
                ..CountCell::default()
            });
        cell.count += 1;
        *cell.minutes.entry(minute).or_default() += 1;
        cell.first_ms = cell.first_ms.min(time_ms);
        cell.last_ms = cell.last_ms.max(time_ms);
        let Some(http) = http.filter(|http| http.status.is_some() || http.duration_ms.is_some())
        else {
            return;
        };
        let cell = self
            .access
            .entry(AccessKey {
                hour_ms,
                service: service.to_owned(),
                method: http.method.clone().unwrap_or_else(|| "-".into()),
                path: http
                    .path
                    .as_deref()
                    .map_or_else(|| "-".into(), normalise_path),
            })
            .or_default();
        cell.count += 1;
        if let Some(class) = http.status.and_then(StatusClass::of) {
            cell.classes[class.index()] += 1;
        }
        if let Some(duration) = http.duration_ms {
            cell.latency.add(duration);
        }
    }

    /// Counts one record.
    pub fn add_record(&mut self, record: &LogRecord) {
        self.add(
            record.timestamp,
            &record.service,
            record.severity,
            record.http.as_ref(),
        );
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The `update` command's statements: one upsert per rollup document touched.
    fn statements(&self) -> Vec<Document> {
        let mut statements = Vec::with_capacity(self.counts.len() + self.access.len());
        for (key, cell) in &self.counts {
            let mut increments = doc! { stat_fields::COUNT: cell.count as i64 };
            for (minute, count) in &cell.minutes {
                increments.insert(format!("{}.{minute}", stat_fields::MINUTES), *count as i64);
            }
            statements.push(doc! {
                "q": { stat_fields::ID: format!("c|{}|{}|{}", key.hour_ms, key.service, key.severity.as_str()) },
                "u": {
                    "$inc": increments,
                    "$min": { stat_fields::FIRST: bson::DateTime::from_millis(cell.first_ms) },
                    "$max": { stat_fields::LAST: bson::DateTime::from_millis(cell.last_ms) },
                    "$setOnInsert": {
                        stat_fields::KIND: KIND_COUNTS,
                        stat_fields::TIME: bson::DateTime::from_millis(key.hour_ms),
                        stat_fields::SERVICE: &key.service,
                        stat_fields::SEVERITY: key.severity.as_str(),
                    },
                },
                "upsert": true,
            });
        }
        for (key, cell) in &self.access {
            let mut increments = doc! { stat_fields::COUNT: cell.count as i64 };
            for (class, count) in StatusClass::ALL.iter().zip(cell.classes) {
                if count > 0 {
                    increments.insert(
                        format!("{}.{}", stat_fields::CLASSES, class.as_str()),
                        count as i64,
                    );
                }
            }
            for (bucket, count) in cell.latency.buckets() {
                increments.insert(
                    format!("{}.{}", stat_fields::LATENCY, bucket_key(bucket)),
                    count as i64,
                );
            }
            statements.push(doc! {
                "q": { stat_fields::ID: format!("a|{}|{}|{}|{}", key.hour_ms, key.service, key.method, key.path) },
                "u": {
                    "$inc": increments,
                    "$setOnInsert": {
                        stat_fields::KIND: KIND_ACCESS,
                        stat_fields::TIME: bson::DateTime::from_millis(key.hour_ms),
                        stat_fields::SERVICE: &key.service,
                        stat_fields::METHOD: &key.method,
                        stat_fields::PATH: &key.path,
                    },
                },
                "upsert": true,
            });
        }
        statements
    }
}

/// A counts rollup as stored: one hour of one service's logs of one severity.
#[derive(Debug, Clone, PartialEq)]
pub struct CountsRollup {
    pub hour: DateTime<Utc>,
    pub service: String,
    pub severity: Severity,
    pub count: u64,
    /// (minute of the hour, 0-59; count), as stored. A list, not a map: reading thousands
    /// of rollups for a day's stats must not build a tree per document.
    pub minutes: Vec<(u8, u64)>,
    /// Earliest and latest log timestamp counted.
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
}

/// An access rollup as stored: one hour of one service's requests to one route.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessRollup {
    pub hour: DateTime<Utc>,
    pub service: String,
    pub method: String,
    pub path: String,
    pub requests: u64,
    /// Requests per status class, `[1xx, 2xx, 3xx, 4xx, 5xx]`.
    pub classes: [u64; 5],
    /// (latency sketch bucket, count), as stored: added into the reader's own sketch.
    pub latency: Vec<(i32, u64)>,
}

/// A rollup document read back: the one model [`Rollup::statements`] writes and search reads.
#[derive(Debug, Clone, PartialEq)]
pub enum RollupDocument {
    Counts(CountsRollup),
    Access(AccessRollup),
}

impl RollupDocument {
    /// Reads a stored rollup; `None` for a document that is not one (or is damaged).
    pub fn from_document(document: &Document) -> Option<RollupDocument> {
        let hour = document.get_datetime(stat_fields::TIME).ok()?.to_chrono();
        let service = document.get_str(stat_fields::SERVICE).ok()?.to_owned();
        let count = document.get(stat_fields::COUNT).map_or(0, count_of);
        match document.get_str(stat_fields::KIND).ok()? {
            KIND_COUNTS => {
                // Absent when a reader projected the minutes away (the services list).
                let minutes = document
                    .get_document(stat_fields::MINUTES)
                    .map(|stored| {
                        stored
                            .iter()
                            .filter_map(|(minute, count)| {
                                Some((minute.parse().ok()?, count_of(count)))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Some(RollupDocument::Counts(CountsRollup {
                    hour,
                    service,
                    severity: document.get_str(stat_fields::SEVERITY).ok()?.parse().ok()?,
                    count,
                    minutes,
                    first: document.get_datetime(stat_fields::FIRST).ok()?.to_chrono(),
                    last: document.get_datetime(stat_fields::LAST).ok()?.to_chrono(),
                }))
            }
            KIND_ACCESS => {
                let mut classes = [0; 5];
                if let Ok(stored) = document.get_document(stat_fields::CLASSES) {
                    for (class, count) in stored {
                        if let Some(index) =
                            class.parse::<StatusClass>().ok().map(StatusClass::index)
                        {
                            classes[index] += count_of(count);
                        }
                    }
                }
                let latency = document
                    .get_document(stat_fields::LATENCY)
                    .map(|stored| {
                        stored
                            .iter()
                            .filter_map(|(bucket, count)| {
                                Some((parse_bucket_key(bucket)?, count_of(count)))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Some(RollupDocument::Access(AccessRollup {
                    hour,
                    service,
                    method: document.get_str(stat_fields::METHOD).ok()?.to_owned(),
                    path: document.get_str(stat_fields::PATH).ok()?.to_owned(),
                    requests: count,
                    classes,
                    latency,
                }))
            }
            _ => None,
        }
    }
}

/// How much of each rollup a read brings back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollupRead {
    /// Everything, the counts rollups' per-minute counts too (stats).
    Whole,
    /// The hour's totals: the per-minute counts stay on the server (the services list).
    HourTotals,
}

/// A stored count, whichever numeric type the server kept it as.
fn count_of(value: &Bson) -> u64 {
    match value {
        Bson::Int32(count) => u64::try_from(*count).unwrap_or(0),
        Bson::Int64(count) => u64::try_from(*count).unwrap_or(0),
        Bson::Double(count) if *count >= 0.0 => *count as u64,
        _ => 0,
    }
}

/// A sketch bucket as a field name: its number, or `z` for the zero bucket.
pub fn bucket_key(bucket: i32) -> String {
    if bucket == ZERO_BUCKET {
        "z".into()
    } else {
        bucket.to_string()
    }
}

/// Reads [`bucket_key`] back.
pub fn parse_bucket_key(key: &str) -> Option<i32> {
    if key == "z" {
        Some(ZERO_BUCKET)
    } else {
        key.parse().ok()
    }
}

/// A path as access rollups group it: without its query string, numeric and id-like
/// segments (`/users/123`, `/orders/9f86d081884c7d65`) as `:id`, at most 200 bytes; so one
/// route is one row, and ids do not multiply rows without bound.
pub fn normalise_path(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let mut normalised = String::with_capacity(path.len());
    for (index, segment) in path.split('/').enumerate() {
        if index > 0 {
            normalised.push('/');
        }
        let id_like = !segment.is_empty()
            && (segment.bytes().all(|byte| byte.is_ascii_digit())
                || (segment.len() >= 16
                    && segment
                        .bytes()
                        .all(|byte| byte.is_ascii_hexdigit() || byte == b'-')));
        normalised.push_str(if id_like { ":id" } else { segment });
    }
    if normalised.len() > MAX_PATH_BYTES {
        let mut end = MAX_PATH_BYTES;
        while !normalised.is_char_boundary(end) {
            end -= 1;
        }
        normalised.truncate(end);
    }
    normalised
}

/// Rollup documents per reply batch when reading them.
const ROLLUPS_PER_BATCH: u32 = 1_000;

impl Database {
    /// Adds `rollup` to the stored rollups: one `update` command of upserts. Not retried:
    /// `$inc` is not idempotent, so a retry after an unknown outcome could count twice.
    pub async fn record_stats(&self, rollup: &Rollup) -> Result<(), StoreError> {
        if rollup.is_empty() {
            return Ok(());
        }
        let reply = self
            .client
            .database(&self.stats.namespace().db)
            .run_command(doc! {
                "update": self.stats.name(),
                "updates": rollup.statements(),
                "ordered": false,
            })
            .await
            .map_err(StoreError::Unavailable)?;
        match reply.get_array("writeErrors") {
            Ok(errors) if !errors.is_empty() => Err(StoreError::Malformed(format!(
                "{} rollup updates refused, first: {}",
                errors.len(),
                errors[0]
            ))),
            _ => Ok(()),
        }
    }

    /// Rollups matching `filter`, with at most `max_time` of server time. Documents that
    /// are not rollups (or are damaged) are skipped.
    pub async fn find_stats(
        &self,
        filter: Document,
        read: RollupRead,
        max_time: Duration,
    ) -> Result<Vec<RollupDocument>, StoreError> {
        let mut find = self.stats.find(filter);
        if read == RollupRead::HourTotals {
            find = find.projection(doc! { stat_fields::MINUTES: 0 });
        }
        // Each document is read into its rollup as it comes: a day of 10M logs' rollups
        // (10,500 documents, 10 MB as BSON) held as `Document`s first took the search
        // service to a 228 MiB peak for one stats request (docs/PERFORMANCE.md).
        let mut cursor = find
            .batch_size(ROLLUPS_PER_BATCH)
            .max_time(max_time)
            .await
            .map_err(super::search::classify_query_error)?;
        let mut rollups = Vec::new();
        while let Some(document) = cursor
            .try_next()
            .await
            .map_err(super::search::classify_query_error)?
        {
            rollups.extend(RollupDocument::from_document(&document));
        }
        Ok(rollups)
    }

    /// Deletes rollups of hours that ended before `cutoff`; returns how many.
    pub async fn delete_stats_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        let hour_start_limit = cutoff.timestamp_millis() - HOUR_MS;
        self.stats
            .delete_many(doc! {
                stat_fields::TIME: { "$lte": Bson::DateTime(bson::DateTime::from_millis(hour_start_limit)) }
            })
            .await
            .map(|result| result.deleted_count)
            .map_err(StoreError::Unavailable)
    }

    pub(super) fn stats_indexes() -> Vec<IndexModel> {
        vec![IndexModel::builder()
            .keys(doc! { stat_fields::KIND: 1, stat_fields::TIME: 1 })
            .options(
                IndexOptions::builder()
                    .name(INDEX_STATS_KIND_TIME.to_owned())
                    .build(),
            )
            .build()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// What the server makes of an upsert on an empty collection: `$setOnInsert` and `$inc`
    /// (dotted paths as nested documents), `$min`/`$max` as set.
    fn upserted(statement: &Document) -> Document {
        let update = statement.get_document("u").unwrap();
        let mut document = update.get_document("$setOnInsert").unwrap().clone();
        for operator in ["$inc", "$min", "$max"] {
            let Ok(fields) = update.get_document(operator) else {
                continue;
            };
            for (path, value) in fields {
                match path.split_once('.') {
                    Some((parent, child)) => {
                        if !document.contains_key(parent) {
                            document.insert(parent, Document::new());
                        }
                        document
                            .get_document_mut(parent)
                            .unwrap()
                            .insert(child, value.clone());
                    }
                    None => {
                        document.insert(path, value.clone());
                    }
                }
            }
        }
        document
    }

    #[test]
    fn rollups_read_back_as_they_were_written() {
        let at = Utc.with_ymd_and_hms(2026, 11, 21, 10, 7, 30).unwrap();
        let http = HttpFields {
            method: Some("GET".into()),
            path: Some("/a/7".into()),
            status: Some(503),
            duration_ms: Some(12.0),
            ..HttpFields::default()
        };
        let mut rollup = Rollup::default();
        rollup.add(at, "web", Severity::Error, Some(&http));
        let read: Vec<RollupDocument> = rollup
            .statements()
            .iter()
            .map(|statement| RollupDocument::from_document(&upserted(statement)).unwrap())
            .collect();
        let hour = Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap();
        assert_eq!(
            read[0],
            RollupDocument::Counts(CountsRollup {
                hour,
                service: "web".into(),
                severity: Severity::Error,
                count: 1,
                minutes: vec![(7, 1)],
                first: at,
                last: at,
            })
        );
        let RollupDocument::Access(access) = &read[1] else {
            panic!("{read:?}")
        };
        assert_eq!(
            (access.hour, access.method.as_str(), access.path.as_str()),
            (hour, "GET", "/a/:id")
        );
        assert_eq!((access.requests, access.classes), (1, [0, 0, 0, 0, 1]));
        assert_eq!(access.latency.len(), 1);
    }

    #[test]
    fn paths_group_by_route_not_by_id() {
        for (path, normalised) in [
            ("/users/123/orders?page=2", "/users/:id/orders"),
            ("/o/9f86d081884c7d65-aa", "/o/:id"),
            ("/static/app.js", "/static/app.js"),
            ("/", "/"),
            ("", ""),
        ] {
            assert_eq!(normalise_path(path), normalised, "{path}");
        }
        let long = normalise_path(&"/é".repeat(200));
        assert_eq!(
            long.len(),
            199,
            "cut at a character boundary under 200 bytes"
        );
    }

    #[test]
    fn one_upsert_per_hour_service_and_severity_counting_each_minute() {
        let mut rollup = Rollup::default();
        let at = |minute: u32, second: u32| {
            Utc.with_ymd_and_hms(2026, 11, 21, 10, minute, second)
                .unwrap()
        };
        let http = HttpFields {
            method: Some("GET".into()),
            path: Some("/a/7".into()),
            status: Some(503),
            duration_ms: Some(12.0),
            client_ip: None,
            ..HttpFields::default()
        };
        rollup.add(at(1, 5), "web", Severity::Error, Some(&http));
        rollup.add(at(1, 50), "web", Severity::Error, None);
        rollup.add(at(59, 0), "web", Severity::Error, None);
        rollup.add(at(2, 0), "web", Severity::Info, None);
        let statements = rollup.statements();
        assert_eq!(statements.len(), 3, "{statements:?}");
        let id = |statement: &Document| {
            statement
                .get_document("q")
                .unwrap()
                .get_str("_id")
                .unwrap()
                .to_owned()
        };
        let increments_of = |wanted: String| {
            statements
                .iter()
                .find(|statement| id(statement) == wanted)
                .unwrap_or_else(|| panic!("no {wanted} in {statements:?}"))
                .get_document("u")
                .unwrap()
                .get_document("$inc")
                .unwrap()
                .clone()
        };
        let hour = at(0, 0).timestamp_millis();
        assert_eq!(
            increments_of(format!("c|{hour}|web|error")),
            doc! { "n": 3_i64, "m.1": 2_i64, "m.59": 1_i64 }
        );
        let access = increments_of(format!("a|{hour}|web|GET|/a/:id"));
        assert_eq!(access.get_i64("c.5xx").unwrap(), 1);
    }
}
