//! Loki's push API on the gateway, for Promtail, Alloy, Vector, Fluent Bit and the Python
//! Loki handlers: `POST /loki/api/v1/push` with a snappy-compressed protobuf `PushRequest`
//! (`Content-Type: application/x-protobuf`), the JSON form (`{"streams":[{"stream":{…},
//! "values":[["<ns>","line",{metadata}]]}]}`) or the legacy JSON (`labels` as a LogQL
//! label string, `entries` with RFC 3339 `ts`), gzip bodies too; `GET /ready` for probes.
//!
//! Each entry becomes a record through the same path as the gateway's JSON: service from
//! the label `service_name`, else `service`, `app`, `job`; severity from `level`,
//! `severity`, `detected_level` (else info); `host`/`hostname` labels as the host; every
//! other label and the entry's structured metadata as attributes. Record ids are the
//! request's content and the entry's position, so a retried push stores nothing twice.
//! All stored: 204, as Loki answers and clients require; any entry refused: 400 with the
//! gateway's report (the others are stored), which clients do not retry.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use logagg::auth::Caller;
use logagg::LogRecord;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::gateway::{ingest, object_record, Gateway, GatewayError, IngestReport, Protocol};

/// Where clients push.
pub const PUSH_PATH: &str = "/loki/api/v1/push";
/// Loki's readiness probe.
pub const READY_PATH: &str = "/ready";

/// Labels naming the service, first found wins.
const SERVICE_LABELS: [&str; 4] = ["service_name", "service", "app", "job"];
/// Labels naming the severity, first found wins.
const LEVEL_LABELS: [&str; 3] = ["level", "severity", "detected_level"];
/// Labels naming the host.
const HOST_LABELS: [&str; 2] = ["host", "hostname"];

/// One log line of a push, with its stream's labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub labels: Arc<Vec<(String, String)>>,
    pub timestamp: Option<DateTime<Utc>>,
    pub line: String,
    pub metadata: Vec<(String, String)>,
}

/// `GET /ready`.
pub async fn ready() -> &'static str {
    "ready\n"
}

/// `POST /loki/api/v1/push`.
pub async fn push(
    State(gateway): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    request: Request,
) -> Response {
    let outcome = ingest(
        &gateway,
        &caller,
        Protocol::Loki,
        request,
        |body| decode(&body.bytes, &body.content_type).map_err(GatewayError::BadRequest),
        |entry, id, received_at| entry_record(entry, &id, received_at),
    );
    match outcome.await {
        Ok(ingested) if ingested.report.rejected == 0 => StatusCode::NO_CONTENT.into_response(),
        Ok(ingested) => refused(ingested.report),
        Err(error) => error_answer(error),
    }
}

/// A push refused whole, as Loki answers it: the status (and `Retry-After`) with the
/// reason as plain text, which Promtail, Alloy and Vector log.
fn error_answer(error: GatewayError) -> Response {
    let reason = format!("{error}\n");
    let mut response = error.into_response();
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    *response.body_mut() = axum::body::Body::from(reason);
    response
}

fn refused(report: IngestReport) -> Response {
    let mut body = serde_json::to_value(&report).unwrap_or(Value::Null);
    body["error"] = serde_json::json!({
        "code": "no_valid_record",
        "message": format!("{} of {} entries refused; see errors", report.rejected, report.accepted + report.rejected),
    });
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

/// The entries of a push body (already gunzipped), by its content type: protobuf
/// (snappy-compressed) or JSON, modern or legacy.
pub fn decode(body: &[u8], content_type: &str) -> Result<Vec<Entry>, String> {
    if content_type.starts_with("application/x-protobuf") {
        return decode_protobuf(body);
    }
    let push: JsonPush =
        serde_json::from_slice(body).map_err(|error| format!("invalid Loki push JSON: {error}"))?;
    let mut entries = Vec::new();
    for (index, stream) in push.streams.into_iter().enumerate() {
        let labels = match (stream.stream, stream.labels) {
            (Some(map), _) => map.into_iter().collect(),
            (None, Some(text)) => parse_label_string(&text)
                .map_err(|reason| format!("stream {index}: labels `{text}`: {reason}"))?,
            (None, None) => Vec::new(),
        };
        let labels = Arc::new(labels);
        for value in stream.values {
            let (timestamp, line, metadata) = match value {
                JsonValue::Pair(ns, line) => (ns, line, BTreeMap::new()),
                JsonValue::WithMetadata(ns, line, metadata) => (ns, line, metadata),
            };
            entries.push(Entry {
                labels: Arc::clone(&labels),
                timestamp: Some(nanos_text(timestamp.trim())?),
                line,
                metadata: metadata.into_iter().collect(),
            });
        }
        for entry in stream.entries {
            entries.push(Entry {
                labels: Arc::clone(&labels),
                timestamp: entry
                    .ts
                    .map(|ts| {
                        DateTime::parse_from_rfc3339(&ts)
                            .map(|time| time.with_timezone(&Utc))
                            .map_err(|_| format!("entry time `{ts}` is not RFC 3339"))
                    })
                    .transpose()?,
                line: entry.line,
                metadata: Vec::new(),
            });
        }
    }
    Ok(entries)
}

/// Nanoseconds since the epoch, as text.
fn nanos_text(text: &str) -> Result<DateTime<Utc>, String> {
    text.parse::<i64>()
        .ok()
        .map(DateTime::from_timestamp_nanos)
        .ok_or_else(|| format!("entry time `{text}` is not nanoseconds since the epoch"))
}

#[derive(Debug, Deserialize)]
struct JsonPush {
    #[serde(default)]
    streams: Vec<JsonStream>,
}

#[derive(Debug, Deserialize)]
struct JsonStream {
    /// Modern: labels as an object.
    stream: Option<BTreeMap<String, String>>,
    /// Legacy: labels as a LogQL label string.
    labels: Option<String>,
    #[serde(default)]
    values: Vec<JsonValue>,
    #[serde(default)]
    entries: Vec<JsonEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum JsonValue {
    Pair(String, String),
    WithMetadata(String, String, BTreeMap<String, String>),
}

#[derive(Debug, Deserialize)]
struct JsonEntry {
    ts: Option<String>,
    line: String,
}

/// `{app="web", level="info"}` as pairs: values in double quotes with `\"`, `\\` and `\n`
/// escapes, pairs separated by commas.
fn parse_label_string(text: &str) -> Result<Vec<(String, String)>, String> {
    let inner = text
        .trim()
        .strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
        .ok_or("not in braces")?;
    let mut labels = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
        if chars.peek().is_none() {
            return Ok(labels);
        }
        let mut name = String::new();
        while let Some(c) = chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '_') {
            name.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if name.is_empty() || chars.next() != Some('=') {
            return Err("expected name=\"value\"".into());
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('"') {
            return Err(format!("the value of `{name}` is not quoted"));
        }
        let mut value = String::new();
        loop {
            match chars.next() {
                None => return Err(format!("the value of `{name}` is not closed")),
                Some('"') => break,
                Some('\\') => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some('t') => value.push('\t'),
                    Some(other) => value.push(other),
                    None => return Err(format!("the value of `{name}` is not closed")),
                },
                Some(other) => value.push(other),
            }
        }
        labels.push((name, value));
    }
}

/// The first label among `names` (in that order of preference).
fn label<'a>(labels: &'a [(String, String)], names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|name| {
        labels
            .iter()
            .find(|(label, _)| label == name)
            .map(|(_, value)| value.as_str())
    })
}

/// An entry as a record, through the gateway's JSON path (the same checks and limits).
fn entry_record(entry: &Entry, id: &str, received_at: DateTime<Utc>) -> Result<LogRecord, String> {
    let service = label(&entry.labels, &SERVICE_LABELS)
        .ok_or("no service label: give service_name, service, app or job")?;
    let mut object = Map::new();
    object.insert("service".into(), service.into());
    object.insert(
        "severity".into(),
        label(&entry.labels, &LEVEL_LABELS).unwrap_or("info").into(),
    );
    object.insert("message".into(), entry.line.clone().into());
    if let Some(timestamp) = entry.timestamp {
        object.insert(
            "timestamp".into(),
            timestamp
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                .into(),
        );
    }
    if let Some(host) = label(&entry.labels, &HOST_LABELS) {
        object.insert("host".into(), host.into());
    }
    let named: Vec<&str> = SERVICE_LABELS
        .iter()
        .chain(&LEVEL_LABELS)
        .chain(&HOST_LABELS)
        .copied()
        .collect();
    let mut attributes = Map::new();
    for (name, value) in entry.labels.iter().chain(&entry.metadata) {
        if !named.contains(&name.as_str()) {
            attributes.insert(name.clone(), value.clone().into());
        }
    }
    object.insert("attributes".into(), Value::Object(attributes));
    object_record(object, id, received_at)
}

/// Loki's `logproto.PushRequest`, the fields clients send.
pub mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PushRequest {
        #[prost(message, repeated, tag = "1")]
        pub streams: Vec<StreamAdapter>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StreamAdapter {
        #[prost(string, tag = "1")]
        pub labels: String,
        #[prost(message, repeated, tag = "2")]
        pub entries: Vec<EntryAdapter>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EntryAdapter {
        #[prost(message, optional, tag = "1")]
        pub timestamp: Option<Timestamp>,
        #[prost(string, tag = "2")]
        pub line: String,
        #[prost(message, repeated, tag = "3")]
        pub structured_metadata: Vec<LabelPairAdapter>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LabelPairAdapter {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    /// `google.protobuf.Timestamp`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Timestamp {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }
}

fn decode_protobuf(body: &[u8]) -> Result<Vec<Entry>, String> {
    use prost::Message;
    let bytes = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|error| format!("the protobuf body is not snappy (block format): {error}"))?;
    let push = proto::PushRequest::decode(bytes.as_slice())
        .map_err(|error| format!("not a Loki PushRequest: {error}"))?;
    let mut entries = Vec::new();
    for (index, stream) in push.streams.into_iter().enumerate() {
        let labels =
            Arc::new(parse_label_string(&stream.labels).map_err(|reason| {
                format!("stream {index}: labels `{}`: {reason}", stream.labels)
            })?);
        for entry in stream.entries {
            let timestamp = match entry.timestamp {
                Some(time) => Some(
                    DateTime::from_timestamp(time.seconds, u32::try_from(time.nanos).unwrap_or(0))
                        .ok_or_else(|| format!("entry time {}s is out of range", time.seconds))?,
                ),
                None => None,
            };
            entries.push(Entry {
                labels: Arc::clone(&labels),
                timestamp,
                line: entry.line,
                metadata: entry
                    .structured_metadata
                    .into_iter()
                    .map(|pair| (pair.name, pair.value))
                    .collect(),
            });
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_strings_parse_with_escapes_and_bad_ones_say_why() {
        assert_eq!(
            parse_label_string(r#"{app="web", level="info",msg="a \"b\" \\ c"}"#).unwrap(),
            vec![
                ("app".to_owned(), "web".to_owned()),
                ("level".to_owned(), "info".to_owned()),
                ("msg".to_owned(), r#"a "b" \ c"#.to_owned()),
            ]
        );
        assert_eq!(parse_label_string("{}").unwrap(), vec![]);
        for bad in ["app=\"web\"", "{app=web}", "{app=\"web}", "{=\"x\"}"] {
            assert!(parse_label_string(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_shape_decodes_to_the_same_entry() {
        let modern = br#"{"streams":[{"stream":{"service_name":"web","level":"warn"},"values":[["1764740000000000000","slow",{"trace_id":"abc"}]]}]}"#;
        let legacy = br#"{"streams":[{"labels":"{service_name=\"web\",level=\"warn\"}","entries":[{"ts":"2025-12-03T05:33:20Z","line":"slow"}]}]}"#;
        let modern = decode(modern, "application/json").unwrap();
        let legacy = decode(legacy, "application/json").unwrap();
        assert_eq!(modern[0].timestamp, legacy[0].timestamp);
        assert_eq!(
            modern[0].metadata,
            vec![("trace_id".to_owned(), "abc".to_owned())]
        );
        let record = entry_record(&modern[0], "r-0", Utc::now()).unwrap();
        assert_eq!(record.service, "web");
        assert_eq!(record.severity, logagg::Severity::Warn);
        assert_eq!(record.attributes["trace_id"], "abc");
        let none = Entry {
            labels: Arc::new(vec![("env".into(), "prod".into())]),
            ..modern[0].clone()
        };
        assert!(entry_record(&none, "r-1", Utc::now())
            .unwrap_err()
            .contains("service"));
    }

    proptest::proptest! {
        #[test]
        fn no_body_makes_the_decoders_panic(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = decode(&body, "application/x-protobuf");
            let _ = decode(&body, "application/json");
            if let Ok(compressed) = snap::raw::Encoder::new().compress_vec(&body) {
                let _ = decode(&compressed, "application/x-protobuf");
            }
        }
    }
}
