//! MongoDB: [`Database`], the logs collection's field names, its indexes, and idempotent batch
//! writes. Alerts, leases, retention's purge, search's pages, stats rollups and the common
//! words live in the submodules, each with its own collection's field names.

pub mod alerts;
pub mod analyzers;
pub mod blocks;
pub mod lease;
pub mod retention;
pub mod search;
pub mod stats;
pub mod words;

use std::time::Duration;

use bson::{doc, Bson, Document, RawArrayBuf, RawBson, RawDocumentBuf};
use chrono::{DateTime, Utc};
use mongodb::error::ErrorKind;
use mongodb::options::{
    Acknowledgment, ClientOptions, CollectionOptions, IndexOptions, WriteConcern,
};
use mongodb::{Client, Collection, IndexModel};
use serde_json::{Map, Value};

use crate::record::{HttpFields, LogRecord, Severity};
use crate::settings::{StoreSettings, WriteAcknowledgment};

/// Field names of a stored log document. Queries elsewhere use these, never literals.
pub mod fields {
    pub const ID: &str = "_id";
    pub const TIMESTAMP: &str = "ts";
    pub const RECEIVED_AT: &str = "received_at";
    pub const SERVICE: &str = "service";
    pub const SEVERITY: &str = "severity";
    pub const MESSAGE: &str = "message";
    /// Logs written before word blocks only: the message's uncommon words, indexed
    /// (`store::words`).
    pub const WORDS: &str = "words";
    /// Logs written by earlier versions only: all the message's distinct lower-cased words
    /// (`crate::words`), unindexed, which search checks on the server for them.
    pub const ALL_WORDS: &str = "all_words";
    pub const HOST: &str = "host";
    pub const ATTRIBUTES: &str = "attrs";
    pub const HTTP: &str = "http";
    pub const HTTP_METHOD: &str = "method";
    pub const HTTP_PATH: &str = "path";
    pub const HTTP_STATUS: &str = "status";
    pub const HTTP_DURATION_MS: &str = "duration_ms";
    pub const HTTP_CLIENT_IP: &str = "client_ip";
    pub const HTTP_BYTES: &str = "bytes";
    pub const HTTP_USER_AGENT: &str = "user_agent";
    pub const HTTP_REFERER: &str = "referer";
}

/// Field names of a stored alert (written by the monitor, purged by retention).
pub mod alert_fields {
    pub const ID: &str = "_id";
    pub const RULE: &str = "rule";
    pub const SERVICE: &str = "service";
    pub const STATE: &str = "state";
    pub const STARTED_AT: &str = "started_at";
    /// Absent while the alert fires; set when it resolves.
    pub const RESOLVED_AT: &str = "resolved_at";
    /// The rule's value when it fired, then when it resolved.
    pub const VALUE: &str = "value";
    pub const PEAK: &str = "peak";
    pub const THRESHOLD: &str = "threshold";
    pub const WINDOW_SECONDS: &str = "window_seconds";
    /// Ids of the last matching logs before it fired.
    pub const SAMPLE_IDS: &str = "sample_ids";
}

/// Index serving service + severity + time-range queries, newest first.
pub const INDEX_SERVICE_SEVERITY_TIME: &str = "service_severity_ts";
/// Index serving time-range queries and retention's time-ordered purge.
pub const INDEX_TIME: &str = "ts";
/// Multikey index on the `words` of logs written before word blocks; no longer created.
pub const INDEX_WORDS_TIME: &str = "words_ts";

/// Server error code for a duplicate `_id`: on redelivery, the record is already stored.
pub const DUPLICATE_KEY: i32 = 11000;

/// Write-error codes that mean "try again" rather than "this document is bad".
const TRANSIENT_WRITE_CODES: [i32; 19] = [
    6, 7, 24, 46, 50, 89, 91, 112, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436, 64, 100, 134,
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid store settings: {0}")]
    Settings(String),
    /// MongoDB is unreachable or refused the write for a reason that may pass: retry.
    #[error("MongoDB unavailable: {0}")]
    Unavailable(#[source] mongodb::error::Error),
    #[error("stored document is malformed: {0}")]
    Malformed(String),
    /// A query ran past its server time limit (`maxTimeMS`).
    #[error("the query ran past its time limit")]
    QueryTimeout,
}

/// What became of a batch: how many were new, how many were already there, and which
/// (by index into the batch) MongoDB refused for good, with its reason.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InsertOutcome {
    pub inserted: usize,
    pub duplicates: usize,
    /// Indexes into the batch of the records that were already stored.
    pub duplicate_indexes: Vec<usize>,
    pub rejected: Vec<(usize, String)>,
}

impl InsertOutcome {
    /// Indexes into a batch of `batch_len` of the records this write stored.
    pub fn newly_stored(&self, batch_len: usize) -> impl Iterator<Item = usize> + '_ {
        (0..batch_len).filter(move |index| {
            !self.duplicate_indexes.contains(index)
                && !self.rejected.iter().any(|(rejected, _)| rejected == index)
        })
    }
}

/// A handle on logagg's MongoDB database: the logs and the collections beside them (alerts,
/// leases, retention runs, stats rollups, common words), with every query the services make
/// of them. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Database {
    client: Client,
    logs: Collection<Document>,
    /// The same collection, for inserts of documents encoded as BSON bytes.
    raw_logs: Collection<RawDocumentBuf>,
    alerts: Collection<Document>,
    leases: Collection<Document>,
    retention_runs: Collection<Document>,
    stats: Collection<Document>,
    analyzers: Collection<Document>,
    /// Word blocks (`blocks`); `None` with `store.word_index` off.
    blocks: Option<Collection<Document>>,
    /// The earlier version's common words (`words`); `None` with `store.word_index` off.
    legacy_words: Option<std::sync::Arc<words::LegacyWords>>,
    /// The word blocks this process's writes keep open across batches (`blocks`).
    open_blocks: std::sync::Arc<std::sync::Mutex<blocks::OpenBlocks>>,
    /// The block markers as last read, and when (`Database::block_eras`).
    block_eras: std::sync::Arc<std::sync::Mutex<Option<(std::time::Instant, blocks::BlockEras)>>>,
}

/// Locks a mutex whose holder cannot leave its data half-changed: a poisoned lock is taken.
fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Database {
    /// Builds a client; no connection is made until the first operation.
    pub async fn connect(settings: &StoreSettings, app_name: &str) -> Result<Database, StoreError> {
        let mut options = ClientOptions::parse(&settings.url)
            .await
            .map_err(|error| StoreError::Settings(error.to_string()))?;
        options.app_name = Some(app_name.to_owned());
        options.server_selection_timeout = Some(settings.server_selection_timeout_ms);
        options.connect_timeout = Some(settings.connect_timeout_ms);
        let client = Client::with_options(options)
            .map_err(|error| StoreError::Settings(error.to_string()))?;
        let write_concern = write_concern(settings)?;
        let database = client.database(&settings.database);
        let collection = |name: &str| {
            database.collection_with_options::<Document>(
                name,
                CollectionOptions::builder()
                    .write_concern(write_concern.clone())
                    .build(),
            )
        };
        Ok(Database {
            logs: collection(&settings.logs_collection),
            raw_logs: collection(&settings.logs_collection).clone_with_type(),
            alerts: collection(&settings.alerts_collection),
            leases: collection(&settings.leases_collection),
            retention_runs: collection(&settings.retention_runs_collection),
            stats: collection(&settings.stats_collection),
            analyzers: collection(&settings.analyzers_collection),
            blocks: settings
                .word_index
                .then(|| collection(&settings.blocks_collection)),
            legacy_words: settings.word_index.then(|| {
                std::sync::Arc::new(words::LegacyWords::new(
                    collection(&settings.common_words_collection),
                    settings,
                ))
            }),
            open_blocks: std::sync::Arc::default(),
            block_eras: std::sync::Arc::default(),
            client,
        })
    }

    pub fn logs(&self) -> &Collection<Document> {
        &self.logs
    }

    /// The word blocks' collection; `None` with word search off.
    pub fn blocks(&self) -> Option<&Collection<Document>> {
        self.blocks.as_ref()
    }

    pub fn alerts(&self) -> &Collection<Document> {
        &self.alerts
    }

    pub fn stats(&self) -> &Collection<Document> {
        &self.stats
    }

    pub fn retention_runs(&self) -> &Collection<Document> {
        &self.retention_runs
    }

    /// Whether messages' words are stored and indexed (`store.word_index`).
    pub fn word_index(&self) -> bool {
        self.blocks.is_some()
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Closes the client's connections and stops its background tasks, waiting at most five
    /// seconds. Without it, a runtime that stops while the driver's pool is mid-request can
    /// panic inside the driver (mongo-rust-driver issue #847).
    pub async fn shutdown(self) {
        let closing = self.client.shutdown();
        if tokio::time::timeout(Duration::from_secs(5), closing)
            .await
            .is_err()
        {
            tracing::warn!("MongoDB client did not shut down within 5 s");
        }
    }

    /// Round-trips a `ping` to check that MongoDB answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.client
            .database(&self.logs.namespace().db)
            .run_command(doc! { "ping": 1 })
            .await
            .map(|_| ())
            .map_err(StoreError::Unavailable)
    }

    /// Creates the indexes the queries need; idempotent.
    pub async fn ensure_indexes(&self) -> Result<(), StoreError> {
        let indexes = vec![
            IndexModel::builder()
                .keys(doc! { fields::SERVICE: 1, fields::SEVERITY: 1, fields::TIMESTAMP: -1 })
                .options(
                    IndexOptions::builder()
                        .name(INDEX_SERVICE_SEVERITY_TIME.to_owned())
                        .build(),
                )
                .build(),
            IndexModel::builder()
                .keys(doc! { fields::TIMESTAMP: -1 })
                .options(IndexOptions::builder().name(INDEX_TIME.to_owned()).build())
                .build(),
        ];
        self.logs
            .create_indexes(indexes)
            .await
            .map_err(StoreError::Unavailable)?;
        self.ensure_blocks().await?;
        self.stats
            .create_indexes(Database::stats_indexes())
            .await
            .map_err(StoreError::Unavailable)?;
        self.alerts
            .create_index(
                IndexModel::builder()
                    .keys(doc! { alert_fields::STARTED_AT: -1 })
                    .options(
                        IndexOptions::builder()
                            .name(alerts::INDEX_ALERTS_STARTED.to_owned())
                            .build(),
                    )
                    .build(),
            )
            .await
            .map_err(StoreError::Unavailable)?;
        Ok(())
    }

    /// Writes a batch with one unordered bulk insert. Records already stored (same `_id`)
    /// count as duplicates, not failures, so a redelivered batch is simply written again.
    ///
    /// `Err` means nothing can be said about this batch's fate: retry all of it.
    pub async fn insert_records(&self, records: &[LogRecord]) -> Result<InsertOutcome, StoreError> {
        if records.is_empty() {
            return Ok(InsertOutcome::default());
        }
        let (documents, blocks) = self.log_documents_in_open_blocks(records);
        // Both at once: each is a journaled round trip. `Err` for either has the whole batch
        // written again (its ids appended to a block again, logs as duplicates), and its
        // messages are acked only after both, so no stored log stays out of a block.
        let (blocks_written, outcome) =
            futures::join!(self.write_blocks(blocks), self.insert_logs(documents));
        blocks_written?;
        outcome
    }

    /// The stored form of `records`, their logs added to this writer's open word blocks
    /// (`blocks::OpenBlocks`), and what that writes: appends, and blocks sealed because they
    /// filled up or aged.
    fn log_documents_in_open_blocks(
        &self,
        records: &[LogRecord],
    ) -> (Vec<RawDocumentBuf>, blocks::BlockWrites) {
        let mut writes = blocks::BlockWrites::default();
        let (documents, hashes) = self.encode(records);
        if let Some(hashes) = hashes {
            // Encoded first: the lock is held only to add the logs to their blocks.
            let mut open = lock(&self.open_blocks);
            for (record, hashes) in records.iter().zip(&hashes) {
                open.push_hashed(
                    &mut writes,
                    &record.id,
                    record.timestamp,
                    &record.service,
                    hashes,
                );
            }
            open.seal_aged(&mut writes, blocks::BLOCK_MAX_AGE);
        }
        (documents, writes)
    }

    /// The stored form of `records`, and with word search on, their word blocks as one
    /// writer of one batch would seal them (what benchmarks measure the encoding with).
    pub fn log_documents(&self, records: &[LogRecord]) -> (Vec<RawDocumentBuf>, Vec<Document>) {
        let (documents, hashes) = self.encode(records);
        let mut blocks = blocks::BlockBuilder::default();
        for (record, hashes) in records.iter().zip(hashes.iter().flatten()) {
            blocks.push_hashed(&record.id, record.timestamp, &record.service, hashes);
        }
        (documents, blocks.finish())
    }

    /// The stored form of `records`, and with word search on, each one's word hashes
    /// (`crate::words::hashed_words`), in order. The words themselves are not stored: search
    /// checks them on the message.
    fn encode(&self, records: &[LogRecord]) -> (Vec<RawDocumentBuf>, Option<Vec<Vec<u64>>>) {
        let documents = records
            .iter()
            .map(|record| record_to_raw::<&str>(record, None))
            .collect();
        let hashes = self.word_index().then(|| {
            records
                .iter()
                .map(|record| crate::words::hashed_words(&record.message).hashes)
                .collect()
        });
        (documents, hashes)
    }

    /// Writes stored-form documents (as read back from an archive) the same way: their word
    /// blocks, from their messages' words, then one unordered insert, existing `_id`s
    /// counted as duplicates. (Documents archived with their words, `all_words`, keep them.)
    pub async fn insert_documents(
        &self,
        documents: Vec<Document>,
    ) -> Result<InsertOutcome, StoreError> {
        if self.word_index() {
            let mut blocks = blocks::BlockBuilder::default();
            for document in &documents {
                let (Ok(id), Ok(timestamp), Ok(service)) = (
                    document.get_str(fields::ID),
                    document.get_datetime(fields::TIMESTAMP),
                    document.get_str(fields::SERVICE),
                ) else {
                    continue;
                };
                let message = document.get_str(fields::MESSAGE).unwrap_or_default();
                let words = crate::words::hashed_words(message);
                blocks.push_hashed(id, timestamp.to_chrono(), service, &words.hashes);
            }
            self.insert_blocks(blocks.finish()).await?;
        }
        let raw = documents
            .iter()
            .map(RawDocumentBuf::from_document)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| StoreError::Malformed(error.to_string()))?;
        self.insert_logs(raw).await
    }

    /// One unordered insert of stored-form documents, existing `_id`s counted as duplicates.
    async fn insert_logs(
        &self,
        documents: Vec<RawDocumentBuf>,
    ) -> Result<InsertOutcome, StoreError> {
        let batch_len = documents.len();
        if batch_len == 0 {
            return Ok(InsertOutcome::default());
        }
        match self.raw_logs.insert_many(documents).ordered(false).await {
            Ok(result) => Ok(InsertOutcome {
                inserted: result.inserted_ids.len(),
                ..InsertOutcome::default()
            }),
            Err(error) => classify_insert_error(error, batch_len),
        }
    }
}

fn write_concern(settings: &StoreSettings) -> Result<WriteConcern, StoreError> {
    let acknowledgment = match settings.write_concern_w {
        WriteAcknowledgment::Majority => Acknowledgment::Majority,
        WriteAcknowledgment::Nodes(nodes) => Acknowledgment::Nodes(nodes),
    };
    Ok(WriteConcern::builder()
        .w(acknowledgment)
        .journal(settings.write_concern_journal)
        .build())
}

/// Whether a write failed only because a document with its key exists (an insert, or an
/// upsert reported as a command error).
pub(super) fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    match error.kind.as_ref() {
        ErrorKind::Write(mongodb::error::WriteFailure::WriteError(write_error)) => {
            write_error.code == DUPLICATE_KEY
        }
        ErrorKind::Command(command_error) => command_error.code == DUPLICATE_KEY,
        _ => false,
    }
}

/// Splits an unordered insert's failures into duplicates (fine), refused documents (poison)
/// and anything that calls for retrying the whole batch.
fn classify_insert_error(
    error: mongodb::error::Error,
    batch_len: usize,
) -> Result<InsertOutcome, StoreError> {
    let ErrorKind::InsertMany(failure) = error.kind.as_ref() else {
        return Err(StoreError::Unavailable(error));
    };
    if failure.write_concern_error.is_some() {
        return Err(StoreError::Unavailable(error));
    }
    let write_errors = failure.write_errors.clone().unwrap_or_default();
    let mut outcome = InsertOutcome::default();
    for write_error in &write_errors {
        if write_error.code == DUPLICATE_KEY {
            outcome.duplicates += 1;
            outcome.duplicate_indexes.push(write_error.index);
        } else if TRANSIENT_WRITE_CODES.contains(&write_error.code) {
            return Err(StoreError::Unavailable(error));
        } else {
            outcome.rejected.push((
                write_error.index,
                format!(
                    "MongoDB refused the document (code {}): {}",
                    write_error.code, write_error.message
                ),
            ));
        }
    }
    outcome.inserted = batch_len.saturating_sub(write_errors.len());
    Ok(outcome)
}

/// The stored form of a record; with `words`, also the message's distinct words for word
/// search's exact check (`crate::words::message_words`). Encoded straight to BSON bytes,
/// with no intermediate [`Document`]: the collector's largest cost per log after parsing.
/// Attribute keys hold no NUL (`crate::parse` refuses them), which BSON keys cannot.
pub fn record_to_raw<W: AsRef<str>>(record: &LogRecord, words: Option<&[W]>) -> RawDocumentBuf {
    let mut document = RawDocumentBuf::new();
    document.append_ref(fields::ID, record.id.as_str());
    document.append_ref(
        fields::TIMESTAMP,
        bson::DateTime::from_chrono(record.timestamp),
    );
    document.append_ref(
        fields::RECEIVED_AT,
        bson::DateTime::from_chrono(record.received_at),
    );
    document.append_ref(fields::SERVICE, record.service.as_str());
    document.append_ref(fields::SEVERITY, record.severity.as_str());
    document.append_ref(fields::MESSAGE, record.message.as_str());
    if let Some(host) = &record.host {
        document.append_ref(fields::HOST, host.as_str());
    }
    if !record.attributes.is_empty() {
        document.append(fields::ATTRIBUTES, json_object_to_raw(&record.attributes));
    }
    if let Some(http) = &record.http {
        let mut http_document = RawDocumentBuf::new();
        if let Some(method) = &http.method {
            http_document.append_ref(fields::HTTP_METHOD, method.as_str());
        }
        if let Some(path) = &http.path {
            http_document.append_ref(fields::HTTP_PATH, path.as_str());
        }
        if let Some(status) = http.status {
            http_document.append_ref(fields::HTTP_STATUS, i32::from(status));
        }
        if let Some(duration) = http.duration_ms {
            http_document.append_ref(fields::HTTP_DURATION_MS, duration);
        }
        if let Some(client_ip) = &http.client_ip {
            http_document.append_ref(fields::HTTP_CLIENT_IP, client_ip.as_str());
        }
        if let Some(bytes) = http.bytes {
            http_document.append_ref(fields::HTTP_BYTES, i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        if let Some(user_agent) = &http.user_agent {
            http_document.append_ref(fields::HTTP_USER_AGENT, user_agent.as_str());
        }
        if let Some(referer) = &http.referer {
            http_document.append_ref(fields::HTTP_REFERER, referer.as_str());
        }
        document.append(fields::HTTP, http_document);
    }
    match words.filter(|words| !words.is_empty()) {
        Some(words) => append_strings(document, fields::ALL_WORDS, words),
        None => document,
    }
}

/// Keys of array elements: `"0"`, `"1"`, …
static ARRAY_KEYS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
    (0..crate::words::MAX_WORDS_PER_MESSAGE)
        .map(|index| index.to_string())
        .collect()
});

/// `document` with an array of `items` appended under `key`, written straight as BSON: an
/// array is a document keyed `"0"`, `"1"`, … under element type 4. `RawArrayBuf::push`
/// allocates a key and a value per item; this writes them in place (items past
/// [`crate::words::MAX_WORDS_PER_MESSAGE`] are left out).
fn append_strings<W: AsRef<str>>(
    document: RawDocumentBuf,
    key: &str,
    items: &[W],
) -> RawDocumentBuf {
    const ARRAY: u8 = 0x04;
    let mut elements = RawDocumentBuf::new();
    for (item, index_key) in items.iter().zip(ARRAY_KEYS.iter()) {
        elements.append_ref(index_key, item.as_ref());
    }
    // The new element starts where the document's terminating zero was.
    let type_at = document.as_bytes().len() - 1;
    let mut document = document;
    document.append_ref(key, &elements);
    let mut bytes = document.into_bytes();
    bytes[type_at] = ARRAY;
    RawDocumentBuf::from_bytes(bytes).expect("the same length, one type byte changed")
}

/// [`record_to_raw`] as a [`Document`], for code that edits or compares it.
pub fn record_to_document(record: &LogRecord, words: Option<&[String]>) -> Document {
    record_to_raw(record, words)
        .to_document()
        .unwrap_or_default()
}

/// Reads a stored document back into a record.
pub fn document_to_record(document: &Document) -> Result<LogRecord, StoreError> {
    let malformed = |field: &str| StoreError::Malformed(format!("field `{field}`"));
    let text = |field: &'static str| {
        document
            .get_str(field)
            .map(str::to_owned)
            .map_err(|_| malformed(field))
    };
    let time = |field: &'static str| -> Result<DateTime<Utc>, StoreError> {
        document
            .get_datetime(field)
            .map(|time| time.to_chrono())
            .map_err(|_| malformed(field))
    };
    let severity: Severity = text(fields::SEVERITY)?
        .parse()
        .map_err(|_| malformed(fields::SEVERITY))?;
    let attributes = match document.get_document(fields::ATTRIBUTES) {
        Ok(attributes) => match Bson::Document(attributes.clone()).into_relaxed_extjson() {
            Value::Object(object) => object,
            _ => Map::new(),
        },
        Err(_) => Map::new(),
    };
    let http = document
        .get_document(fields::HTTP)
        .ok()
        .map(|http| HttpFields {
            method: http.get_str(fields::HTTP_METHOD).ok().map(str::to_owned),
            path: http.get_str(fields::HTTP_PATH).ok().map(str::to_owned),
            status: http
                .get_i32(fields::HTTP_STATUS)
                .ok()
                .and_then(|status| u16::try_from(status).ok()),
            duration_ms: http.get_f64(fields::HTTP_DURATION_MS).ok(),
            client_ip: http.get_str(fields::HTTP_CLIENT_IP).ok().map(str::to_owned),
            bytes: http
                .get_i64(fields::HTTP_BYTES)
                .ok()
                .and_then(|bytes| u64::try_from(bytes).ok()),
            user_agent: http
                .get_str(fields::HTTP_USER_AGENT)
                .ok()
                .map(str::to_owned),
            referer: http.get_str(fields::HTTP_REFERER).ok().map(str::to_owned),
        });
    Ok(LogRecord {
        id: text(fields::ID)?,
        timestamp: time(fields::TIMESTAMP)?,
        received_at: time(fields::RECEIVED_AT)?,
        service: text(fields::SERVICE)?,
        severity,
        message: text(fields::MESSAGE)?,
        host: document.get_str(fields::HOST).ok().map(str::to_owned),
        attributes,
        http,
    })
}

/// Plain JSON to raw BSON, without reading `$`-keys as extended JSON: integers that fit stay
/// 64-bit integers, everything else numeric becomes a double.
fn json_to_raw(value: &Value) -> RawBson {
    match value {
        Value::Null => RawBson::Null,
        Value::Bool(flag) => RawBson::Boolean(*flag),
        Value::Number(number) => match number.as_i64() {
            Some(integer) => RawBson::Int64(integer),
            None => RawBson::Double(number.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(text) => RawBson::String(text.clone()),
        Value::Array(items) => {
            let mut array = RawArrayBuf::new();
            for item in items {
                array.push(json_to_raw(item));
            }
            RawBson::Array(array)
        }
        Value::Object(object) => RawBson::Document(json_object_to_raw(object)),
    }
}

fn json_object_to_raw(object: &Map<String, Value>) -> RawDocumentBuf {
    let mut document = RawDocumentBuf::new();
    for (key, value) in object {
        document.append(key, json_to_raw(value));
    }
    document
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn sample() -> LogRecord {
        let mut attributes = Map::new();
        attributes.insert("order".into(), Value::from(42));
        attributes.insert("tags".into(), serde_json::json!(["a", {"b": 1.5}]));
        LogRecord {
            id: "m-1".into(),
            timestamp: Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap(),
            received_at: Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 1).unwrap(),
            service: "checkout".into(),
            severity: Severity::Error,
            message: "payment failed".into(),
            host: Some("web-1".into()),
            attributes,
            http: Some(HttpFields {
                method: Some("POST".into()),
                path: Some("/pay".into()),
                status: Some(502),
                duration_ms: Some(12.5),
                client_ip: Some("10.0.0.1".into()),
                bytes: Some(2326),
                user_agent: Some("curl/8.5".into()),
                referer: Some("https://example.com/".into()),
            }),
        }
    }

    #[test]
    fn records_round_trip_through_documents() {
        let record = sample();
        let all = crate::words::message_words(&record.message);
        let document = record_to_document(&record, Some(&all));
        assert_eq!(document.get_str(fields::ID).unwrap(), "m-1");
        assert_eq!(document.get_str(fields::SEVERITY).unwrap(), "error");
        let words = |field: &str| -> Vec<String> {
            document
                .get_array(field)
                .unwrap()
                .iter()
                .filter_map(Bson::as_str)
                .map(str::to_owned)
                .collect()
        };
        assert!(!document.contains_key(fields::WORDS));
        assert_eq!(words(fields::ALL_WORDS), ["payment", "failed"]);
        assert_eq!(document_to_record(&document).unwrap(), record);
    }

    #[test]
    fn words_are_written_as_the_library_writes_an_array() {
        let record = sample();
        let words = ["payment", "failed", "über"];
        let mut expected =
            RawDocumentBuf::from_document(&record_to_document(&record, None)).unwrap();
        let mut array = RawArrayBuf::new();
        for word in words {
            array.push(word);
        }
        expected.append(fields::ALL_WORDS, array);
        assert_eq!(
            record_to_raw(&record, Some(&words)).as_bytes(),
            expected.as_bytes()
        );
    }

    #[test]
    fn minimal_records_store_no_empty_optionals() {
        let mut record = sample();
        record.host = None;
        record.http = None;
        record.attributes = Map::new();
        let document = record_to_document(&record, None);
        assert!(!document.contains_key(fields::WORDS));
        assert!(!document.contains_key(fields::ALL_WORDS));
        assert!(!document.contains_key(fields::HOST));
        assert!(!document.contains_key(fields::HTTP));
        assert!(!document.contains_key(fields::ATTRIBUTES));
        assert_eq!(document_to_record(&document).unwrap(), record);
    }

    #[test]
    fn dollar_keys_in_values_are_not_read_as_extended_json() {
        let value = serde_json::json!({"d": {"date": "2024"}, "big": u64::MAX});
        let RawBson::Document(document) = json_to_raw(&value) else {
            panic!("not a document")
        };
        let document = document.to_document().expect("valid BSON");
        assert!(matches!(document.get("big"), Some(Bson::Double(_))));
        assert_eq!(
            document.get_document("d").unwrap().get_str("date"),
            Ok("2024")
        );
    }
}
