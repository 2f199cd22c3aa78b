//! GELF on the gateway, for graypy, logstash-gelf, Docker's `gelf` log driver and Graylog
//! shippers: UDP on `gelf.listen_udp` (a datagram is a message, zlib, gzip or plain, or one
//! of up to 128 chunks of one), TCP on `gelf.listen_tcp` (messages end with NUL), both
//! served by [`super::listener`], and `POST /gelf` on the gateway's address (202; a body's
//! compression is read from its bytes: clients send a wrong `Content-Encoding`).
//!
//! A message becomes a record through the gateway's JSON path: service from `_service`,
//! else `_app`, else `facility`; `short_message` the message (else `full_message`,
//! `message`), `full_message` kept as an attribute; `timestamp` (seconds since the epoch,
//! with a fraction); `level` (syslog 0-7) the severity (none: info); `host`; every other
//! `_field` an attribute without its underscore. Chunks wait `gelf.chunk_timeout_ms` for the
//! rest of their message; an incomplete message is then dropped and counted.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use chrono::{DateTime, Utc};
use logagg::auth::Caller;
use logagg::settings::GelfSettings;
use logagg::LogRecord;
use serde_json::{Map, Value};

use super::gateway::{ingest, object_record, Gateway, GatewayError, Protocol};
use super::listener::{Frame, Framing, FramingError, Limits, Messages, Step};

/// Where clients post.
pub const HTTP_PATH: &str = "/gelf";

/// Chunked messages dropped before they were whole, by reason (`timeout`, `full`).
const INCOMPLETE: &str = "logagg_gelf_incomplete_dropped_total";

/// The two bytes a chunk starts with.
const CHUNK_MAGIC: [u8; 2] = [0x1e, 0x0f];
/// Magic, message id (8), sequence number, sequence count.
const CHUNK_HEADER: usize = 12;
/// Chunks one message may have.
const MAX_CHUNKS: u8 = 128;

/// A GELF payload as JSON: gzip and zlib inflated (told by their first bytes), plain JSON
/// as it is; at most `limit` bytes.
pub fn inflate(payload: &[u8], limit: usize) -> Result<Vec<u8>, (&'static str, String)> {
    fn read_all(reader: impl Read, limit: usize) -> Result<Vec<u8>, (&'static str, String)> {
        let mut inflated = Vec::new();
        reader
            .take(limit as u64 + 1)
            .read_to_end(&mut inflated)
            .map_err(|error| {
                (
                    "bad_compression",
                    format!("the payload does not inflate: {error}"),
                )
            })?;
        if inflated.len() > limit {
            return Err((
                "too_large",
                format!("the message is over gelf.max_message_bytes ({limit})"),
            ));
        }
        Ok(inflated)
    }
    match payload {
        [0x1f, 0x8b, ..] => read_all(flate2::read::GzDecoder::new(payload), limit),
        [0x78, ..] => read_all(flate2::read::ZlibDecoder::new(payload), limit),
        _ => read_all(payload, limit),
    }
}

/// A GELF message (JSON) as a record.
pub fn message_record(
    json: &[u8],
    id: &str,
    received_at: DateTime<Utc>,
) -> Result<LogRecord, (&'static str, String)> {
    let bad = |reason: String| ("bad_gelf", reason);
    let Value::Object(message) = serde_json::from_slice::<Value>(json)
        .map_err(|error| bad(format!("the message is not JSON: {error}")))?
    else {
        return Err(bad("the message is not a JSON object".into()));
    };
    let text = |key: &str| message.get(key).and_then(Value::as_str);
    let service = text("_service")
        .or_else(|| text("_app"))
        .or_else(|| text("facility"))
        .ok_or_else(|| bad("no service: give _service, _app or facility".into()))?;
    let short = text("short_message")
        .or_else(|| text("full_message"))
        .or_else(|| text("message"))
        .ok_or_else(|| bad("no short_message".into()))?;
    let mut record = Map::new();
    record.insert("service".into(), service.into());
    record.insert("message".into(), short.into());
    let severity = match message.get("level") {
        Some(Value::Number(level)) => level.to_string(),
        Some(Value::String(level)) => level.clone(),
        _ => "info".to_owned(),
    };
    record.insert("severity".into(), severity.into());
    if let Some(seconds) = message.get("timestamp").and_then(Value::as_f64) {
        // Whole seconds and the fraction apart, rounded to the microsecond: a double holds
        // today's seconds with about that precision.
        let whole = seconds.floor();
        let micros = ((seconds - whole) * 1e6).round() as u32;
        let time = (0.0..1e12)
            .contains(&whole)
            .then(|| DateTime::from_timestamp(whole as i64, micros.min(999_999) * 1_000))
            .flatten()
            .ok_or_else(|| bad(format!("timestamp {seconds} is out of range")))?;
        record.insert(
            "timestamp".into(),
            time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
    }
    if let Some(host) = text("host") {
        record.insert("host".into(), host.into());
    }
    let mut attributes = Map::new();
    for (key, value) in &message {
        let name = match key.as_str() {
            "version" | "host" | "short_message" | "timestamp" | "level" | "_service" => continue,
            "full_message" if text("short_message").is_none() => continue,
            "_id" => continue, // reserved by GELF
            other => other.strip_prefix('_').unwrap_or(other),
        };
        if !name.is_empty() {
            attributes.insert(name.to_owned(), value.clone());
        }
    }
    record.insert("attributes".into(), Value::Object(attributes));
    object_record(record, id, received_at).map_err(|reason| ("invalid_record", reason))
}

/// The messages of a `POST /gelf` body: one JSON object, or several, one a line.
fn http_messages(body: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8".to_owned())?;
    let messages: Vec<Vec<u8>> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.as_bytes().to_vec())
        .collect();
    Ok(messages)
}

/// `POST /gelf`: 202 when every message is stored, 400 with the report otherwise.
pub async fn post(
    State(gateway): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    request: Request,
) -> Response {
    let outcome = ingest(
        &gateway,
        &caller,
        Protocol::Gelf,
        request,
        |body| http_messages(&body.bytes).map_err(GatewayError::BadRequest),
        |message, id, received_at| {
            message_record(message, &id, received_at).map_err(|(_, reason)| reason)
        },
    );
    match outcome.await {
        Ok(ingested) if ingested.report.rejected == 0 => StatusCode::ACCEPTED.into_response(),
        Ok(ingested) => (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::to_value(&ingested.report).unwrap_or(Value::Null)),
        )
            .into_response(),
        Err(error) => error.into_response(),
    }
}

/// A chunked message's chunks so far.
struct Partial {
    parts: Vec<Option<Vec<u8>>>,
    received: usize,
    bytes: usize,
    started: Instant,
}

/// Joins chunked messages: chunks in any order, duplicates ignored; a message incomplete
/// after `timeout`, or the oldest when `max_pending` wait, is dropped and counted.
pub struct Chunks {
    pending: HashMap<[u8; 8], Partial>,
    timeout: Duration,
    max_pending: usize,
    max_bytes: usize,
}

impl Chunks {
    pub fn new(timeout: Duration, max_pending: usize, max_bytes: usize) -> Chunks {
        Chunks {
            pending: HashMap::new(),
            timeout,
            max_pending,
            max_bytes,
        }
    }

    /// Messages waiting for chunks.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Adds a chunk (a datagram starting with [`CHUNK_MAGIC`]) received at `now`; the whole
    /// payload once its last chunk is in.
    pub fn add(
        &mut self,
        datagram: &[u8],
        now: Instant,
    ) -> Result<Option<Vec<u8>>, (&'static str, String)> {
        self.expire(now);
        let bad = |reason: String| ("bad_chunk", reason);
        let Some(header) = datagram.get(..CHUNK_HEADER) else {
            return Err(bad("a chunk shorter than its header".into()));
        };
        let mut id = [0u8; 8];
        id.copy_from_slice(&header[2..10]);
        let (sequence, count) = (header[10], header[11]);
        if count == 0 || count > MAX_CHUNKS || sequence >= count {
            return Err(bad(format!(
                "chunk {sequence} of {count}: at most {MAX_CHUNKS} chunks, numbered from 0"
            )));
        }
        let body = &datagram[CHUNK_HEADER..];
        if !self.pending.contains_key(&id) && self.pending.len() >= self.max_pending {
            if let Some(oldest) = self
                .pending
                .iter()
                .min_by_key(|(_, partial)| partial.started)
                .map(|(id, _)| *id)
            {
                self.pending.remove(&oldest);
                metrics::counter!(INCOMPLETE, "reason" => "full").increment(1);
            }
        }
        let partial = self.pending.entry(id).or_insert_with(|| Partial {
            parts: vec![None; usize::from(count)],
            received: 0,
            bytes: 0,
            started: now,
        });
        if partial.parts.len() != usize::from(count) {
            self.pending.remove(&id);
            return Err(bad("chunks of one message disagree on their count".into()));
        }
        let slot = &mut partial.parts[usize::from(sequence)];
        if slot.is_some() {
            return Ok(None); // a duplicate
        }
        partial.bytes += body.len();
        if partial.bytes > self.max_bytes {
            self.pending.remove(&id);
            return Err((
                "too_large",
                format!(
                    "a chunked message over gelf.max_message_bytes ({})",
                    self.max_bytes
                ),
            ));
        }
        *slot = Some(body.to_vec());
        partial.received += 1;
        if partial.received < partial.parts.len() {
            return Ok(None);
        }
        let whole = self.pending.remove(&id).map(|partial| {
            partial
                .parts
                .into_iter()
                .flatten()
                .flatten()
                .collect::<Vec<u8>>()
        });
        Ok(whole)
    }

    /// Drops the messages whose first chunk came `timeout` or more before `now`.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.pending.len();
        let timeout = self.timeout;
        self.pending
            .retain(|_, partial| now.duration_since(partial.started) < timeout);
        let dropped = before - self.pending.len();
        if dropped > 0 {
            metrics::counter!(INCOMPLETE, "reason" => "timeout").increment(dropped as u64);
        }
        dropped
    }
}

/// GELF's TCP framing: a message ends with NUL.
pub struct NulFramer {
    max_frame: usize,
    skipping: bool,
}

impl Framing for NulFramer {
    fn next(&mut self, buffer: &[u8]) -> Result<Step, FramingError> {
        let end = buffer.iter().position(|byte| *byte == 0);
        if self.skipping {
            return Ok(match end {
                Some(end) => {
                    self.skipping = false;
                    Step::Skip(end + 1)
                }
                None if buffer.is_empty() => Step::More,
                None => Step::Skip(buffer.len()),
            });
        }
        Ok(match end {
            Some(end) if buffer[..end].iter().all(u8::is_ascii_whitespace) => Step::Skip(end + 1),
            Some(end) if end <= self.max_frame => {
                Step::Frame(Frame::Message(buffer[..end].to_vec()), end + 1)
            }
            Some(end) => Step::Frame(Frame::TooLong(buffer[..self.max_frame].to_vec()), end + 1),
            None if buffer.len() > self.max_frame => {
                self.skipping = true;
                Step::Frame(
                    Frame::TooLong(buffer[..self.max_frame].to_vec()),
                    buffer.len(),
                )
            }
            None => Step::More,
        })
    }

    fn finish(&mut self, rest: &[u8]) -> Option<Result<Vec<u8>, Vec<u8>>> {
        (!self.skipping && !rest.iter().all(u8::is_ascii_whitespace)).then(|| Ok(rest.to_vec()))
    }
}

/// The GELF protocol, as its listeners use it.
pub struct Gelf {
    settings: GelfSettings,
    chunks: Mutex<Chunks>,
}

impl Gelf {
    pub fn new(settings: GelfSettings) -> Gelf {
        let chunks = Chunks::new(
            settings.chunk_timeout_ms,
            settings.max_pending_messages,
            settings.max_message_bytes,
        );
        Gelf {
            settings,
            chunks: Mutex::new(chunks),
        }
    }
}

impl Messages for Gelf {
    const PROTOCOL: Protocol = Protocol::Gelf;

    fn limits(&self) -> Limits {
        Limits {
            max_connections: self.settings.max_connections,
            max_frame_bytes: self.settings.max_message_bytes,
            max_unconfirmed: self.settings.max_unconfirmed,
        }
    }

    fn framer(&self) -> Box<dyn Framing> {
        Box::new(NulFramer {
            max_frame: self.settings.max_message_bytes,
            skipping: false,
        })
    }

    fn record(&self, message: &[u8], id: String) -> Result<LogRecord, (&'static str, String)> {
        let json = inflate(message, self.settings.max_message_bytes)?;
        message_record(&json, &id, Utc::now())
    }

    fn datagram(&self, datagram: &[u8]) -> Result<Option<Vec<u8>>, (&'static str, String)> {
        if !datagram.starts_with(&CHUNK_MAGIC) {
            return Ok(Some(datagram.to_vec()));
        }
        let Ok(mut chunks) = self.chunks.lock() else {
            return Err(("internal", "the chunk table is poisoned".into()));
        };
        chunks.add(datagram, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn chunk(id: u8, sequence: u8, count: u8, body: &[u8]) -> Vec<u8> {
        let mut datagram = CHUNK_MAGIC.to_vec();
        datagram.extend_from_slice(&[id; 8]);
        datagram.extend_from_slice(&[sequence, count]);
        datagram.extend_from_slice(body);
        datagram
    }

    #[test]
    fn chunks_join_in_any_order_once_and_incomplete_ones_expire() {
        let start = Instant::now();
        let mut chunks = Chunks::new(Duration::from_secs(5), 10, 1_000);
        assert_eq!(chunks.add(&chunk(1, 2, 3, b"!"), start), Ok(None));
        assert_eq!(chunks.add(&chunk(1, 0, 3, b"he"), start), Ok(None));
        assert_eq!(
            chunks.add(&chunk(1, 0, 3, b"he"), start),
            Ok(None),
            "a duplicate"
        );
        assert_eq!(
            chunks.add(&chunk(1, 1, 3, b"llo"), start),
            Ok(Some(b"hello!".to_vec()))
        );
        assert_eq!(chunks.pending(), 0);
        assert_eq!(chunks.add(&chunk(2, 0, 2, b"half"), start), Ok(None));
        assert_eq!(chunks.expire(start + Duration::from_secs(4)), 0);
        assert_eq!(chunks.expire(start + Duration::from_secs(5)), 1);
        assert!(
            chunks.add(&chunk(3, 3, 3, b"x"), start).is_err(),
            "sequence past count"
        );
        assert!(
            chunks.add(&chunk(3, 0, 129, b"x"), start).is_err(),
            "over 128 chunks"
        );
        assert!(chunks.add(&[0x1e, 0x0f, 1], start).is_err(), "no header");
        let mut small = Chunks::new(Duration::from_secs(5), 10, 4);
        assert_eq!(small.add(&chunk(4, 0, 2, b"abc"), start), Ok(None));
        assert_eq!(
            small.add(&chunk(4, 1, 2, b"de"), start).unwrap_err().0,
            "too_large"
        );
        let mut full = Chunks::new(Duration::from_secs(5), 1, 100);
        assert_eq!(full.add(&chunk(5, 0, 2, b"a"), start), Ok(None));
        assert_eq!(full.add(&chunk(6, 0, 2, b"b"), start), Ok(None));
        assert_eq!(full.pending(), 1, "the oldest made room");
    }

    #[test]
    fn payloads_inflate_by_their_first_bytes() {
        let json = br#"{"short_message":"hi","_service":"web"}"#;
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        zlib.write_all(json).unwrap();
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gzip.write_all(json).unwrap();
        for payload in [
            json.to_vec(),
            zlib.finish().unwrap(),
            gzip.finish().unwrap(),
        ] {
            assert_eq!(inflate(&payload, 1_000).unwrap(), json);
        }
        assert_eq!(inflate(json, 10).unwrap_err().0, "too_large");
    }

    #[test]
    fn gelf_fields_map_to_the_record() {
        let record = message_record(
            br#"{"version":"1.1","host":"web-1","short_message":"disk full","full_message":"disk full\nat /var","timestamp":1764748800.25,"level":3,"_app":"storage","_user_id":7,"_id":"x","facility":"ignored"}"#,
            "r-0",
            Utc::now(),
        )
        .unwrap();
        assert_eq!(record.service, "storage");
        assert_eq!(record.severity, logagg::Severity::Error);
        assert_eq!(record.message, "disk full");
        assert_eq!(record.host.as_deref(), Some("web-1"));
        assert_eq!(record.attributes["user_id"], 7);
        assert_eq!(record.attributes["full_message"], "disk full\nat /var");
        assert!(!record.attributes.contains_key("id"));
        assert_eq!(
            record
                .timestamp
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "2025-12-03T08:00:00.250Z"
        );
        let no_service = message_record(br#"{"short_message":"x"}"#, "r-1", Utc::now());
        assert!(no_service.unwrap_err().1.contains("_service"));
        assert!(message_record(
            br#"{"short_message":"x","_service":"a","timestamp":1e30}"#,
            "r-2",
            Utc::now()
        )
        .is_err());
    }

    #[test]
    fn nul_frames_split_and_long_ones_are_cut() {
        let mut framer = NulFramer {
            max_frame: 4,
            skipping: false,
        };
        assert_eq!(
            framer.next(b"{a}\0rest"),
            Ok(Step::Frame(Frame::Message(b"{a}".to_vec()), 4))
        );
        assert_eq!(framer.next(b"rest"), Ok(Step::More));
        assert_eq!(
            framer.next(b"toolong"),
            Ok(Step::Frame(Frame::TooLong(b"tool".to_vec()), 7))
        );
        assert_eq!(framer.next(b"ng\0"), Ok(Step::Skip(3)));
        assert_eq!(framer.finish(b"{b}"), Some(Ok(b"{b}".to_vec())));
    }

    proptest::proptest! {
        #[test]
        fn no_datagram_or_chunk_sequence_panics(
            datagrams in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..40), 0..20),
            ids in proptest::collection::vec(0u8..3, 0..20),
            sequences in proptest::collection::vec((0u8..4, 0u8..4), 0..20),
        ) {
            let gelf = Gelf::new(GelfSettings { max_message_bytes: 1024, ..GelfSettings::default() });
            for datagram in &datagrams {
                if let Ok(Some(message)) = gelf.datagram(datagram) {
                    let _ = gelf.record(&message, "r".into());
                }
            }
            for ((id, (sequence, count)), body) in ids.iter().zip(&sequences).zip(&datagrams) {
                if let Ok(Some(message)) = gelf.datagram(&chunk(*id, *sequence, *count, body)) {
                    let _ = gelf.record(&message, "r".into());
                }
            }
        }
    }
}
