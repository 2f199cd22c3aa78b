//! Parsers for what publishers put on the exchange: JSON records and plain-text lines.
//!
//! Pure code, no I/O: a message's routing key, properties and body go in, a validated
//! [`LogRecord`] or a [`ParseError`] with a reason comes out.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde_json::{Map, Value};

use crate::record::{
    derive_message_id, positioned_id, truncate_for_reason, HttpFields, LogRecord, Severity,
};

/// Largest body a collector accepts; larger ones are dead-lettered as too large.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Longest service name; names also obey [`validate_service`]'s character rules.
pub const MAX_SERVICE_LEN: usize = 64;
/// [`validate_service`]'s character rules as a regular expression (for API documents):
/// letters, digits, `_`, `-` and `.`, starting with a letter or digit, no empty part
/// between dots.
pub const SERVICE_PATTERN: &str = r"^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$";
/// Longest host name.
pub const MAX_HOST_LEN: usize = 255;
/// Most attributes one record may carry.
pub const MAX_ATTRIBUTES: usize = 128;
/// Longest publisher-set message id.
pub const MAX_MESSAGE_ID_LEN: usize = 128;
/// Content type of a batch message: one JSON record per line (NDJSON), all published under
/// one routing key. Publishers batch to spare the broker per-message work.
pub const CONTENT_TYPE_BATCH: &str = "application/x-ndjson";
/// Most records one batch message may carry.
pub const MAX_BATCH_RECORDS: usize = 10_000;

/// Why a message could not become a record. `code()` is stable for machines, `Display`
/// is the reason written into the dead-letter header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty body")]
    EmptyBody,
    #[error("body is {size} bytes, more than the {max} allowed")]
    TooLarge { size: usize, max: usize },
    #[error("body is not valid UTF-8")]
    InvalidUtf8,
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    #[error("JSON body must be an object")]
    NotAnObject,
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    #[error("field `{field}` must be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("invalid timestamp `{0}`")]
    InvalidTimestamp(String),
    #[error("unknown severity `{0}`")]
    UnknownSeverity(String),
    #[error("invalid service name `{name}`: {reason}")]
    InvalidService { name: String, reason: &'static str },
    #[error("malformed line: expected `<timestamp> <service> <severity> <message>`, {0}")]
    MalformedLine(&'static str),
    /// A line in one of `crate::formats`' formats that does not fit it.
    #[error("not a valid {format} line: {reason}")]
    MalformedFormat {
        format: &'static str,
        reason: &'static str,
    },
    #[error("invalid message id: {0}")]
    InvalidMessageId(&'static str),
    #[error("invalid field `{field}`: {reason}")]
    InvalidField {
        field: &'static str,
        reason: &'static str,
    },
    #[error("batch holds {count} records, more than the {max} allowed")]
    TooManyRecords { count: usize, max: usize },
}

impl ParseError {
    /// A short stable code for metrics labels and the `x-logagg-error` header.
    pub fn code(&self) -> &'static str {
        match self {
            ParseError::EmptyBody => "empty_body",
            ParseError::TooLarge { .. } => "too_large",
            ParseError::InvalidUtf8 => "invalid_utf8",
            ParseError::InvalidJson(_) => "invalid_json",
            ParseError::NotAnObject => "not_an_object",
            ParseError::MissingField(_) => "missing_field",
            ParseError::WrongType { .. } => "wrong_type",
            ParseError::InvalidTimestamp(_) => "invalid_timestamp",
            ParseError::UnknownSeverity(_) => "unknown_severity",
            ParseError::InvalidService { .. } => "invalid_service",
            ParseError::MalformedLine(_) | ParseError::MalformedFormat { .. } => "malformed_line",
            ParseError::InvalidMessageId(_) => "invalid_message_id",
            ParseError::InvalidField { .. } => "invalid_field",
            ParseError::TooManyRecords { .. } => "too_many_records",
        }
    }
}

/// Everything a collector knows about one message when it parses it.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    pub routing_key: &'a str,
    pub body: &'a [u8],
    pub content_type: Option<&'a str>,
    /// The AMQP `message-id` property.
    pub message_id: Option<&'a str>,
    /// The AMQP `timestamp` property, seconds since the epoch.
    pub amqp_timestamp: Option<u64>,
    pub received_at: DateTime<Utc>,
}

/// Parses one message into a validated record.
///
/// JSON when the content type says so or the body starts with `{`; otherwise the plain-text
/// line `<timestamp> <service> <severity> <message>`. Service and severity missing from a
/// JSON body come from the routing key (severity = last word, service = the rest).
pub fn parse_message(envelope: &Envelope<'_>) -> Result<LogRecord, ParseError> {
    let text = body_text(envelope.body)?;
    if text.trim().is_empty() {
        return Err(ParseError::EmptyBody);
    }
    let id = message_id(envelope)?;
    let received_at = truncate_to_millis(envelope.received_at);
    let is_json = envelope
        .content_type
        .is_some_and(|content_type| content_type.contains("json"))
        || text.trim_start().starts_with('{');
    if is_json {
        parse_json_record(text, envelope, id, received_at)
    } else {
        let line = parse_plain_line(text)?;
        Ok(LogRecord {
            id,
            timestamp: line.timestamp,
            received_at,
            service: line.service.to_owned(),
            severity: line.severity,
            message: line.message.to_owned(),
            host: None,
            attributes: Map::new(),
            http: None,
        })
    }
}

/// One record of a message, or why it is not one. `line` is the record's byte range in the
/// body when the message is a batch; a batch-wide error (too large, bad message id) and
/// every single-record message have `None`, meaning the whole message.
#[derive(Debug)]
pub struct ParsedRecord {
    pub line: Option<std::ops::Range<usize>>,
    pub record: Result<LogRecord, ParseError>,
}

/// Whether a message is a batch ([`CONTENT_TYPE_BATCH`]).
pub fn is_batch(envelope: &Envelope<'_>) -> bool {
    envelope
        .content_type
        .is_some_and(|content_type| content_type.starts_with(CONTENT_TYPE_BATCH))
}

/// Parses a message into its records: one for a single record, one per non-blank line for a
/// batch. A bad line spoils only itself. Line `n` (0-based, counting every line) of a batch
/// gets the id `<message id>-<n>`, the message id being the AMQP one or derived from the whole
/// body, so a redelivered batch maps to the same records and identical lines stay distinct.
pub fn parse_records(envelope: &Envelope<'_>) -> Vec<ParsedRecord> {
    if !is_batch(envelope) {
        return vec![ParsedRecord {
            line: None,
            record: parse_message(envelope),
        }];
    }
    match parse_batch(envelope) {
        Ok(records) => records,
        Err(error) => vec![ParsedRecord {
            line: None,
            record: Err(error),
        }],
    }
}

/// A body as text: at most [`MAX_BODY_BYTES`], valid UTF-8.
fn body_text(body: &[u8]) -> Result<&str, ParseError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ParseError::TooLarge {
            size: body.len(),
            max: MAX_BODY_BYTES,
        });
    }
    std::str::from_utf8(body).map_err(|_| ParseError::InvalidUtf8)
}

fn parse_batch(envelope: &Envelope<'_>) -> Result<Vec<ParsedRecord>, ParseError> {
    let text = body_text(envelope.body)?;
    let base_id = message_id(envelope)?;
    let received_at = truncate_to_millis(envelope.received_at);
    let mut records = Vec::new();
    let mut start = 0;
    for (number, line) in text.split('\n').enumerate() {
        let range = start..start + line.len();
        start = range.end + 1;
        if line.trim().is_empty() {
            continue;
        }
        if records.len() == MAX_BATCH_RECORDS {
            return Err(ParseError::TooManyRecords {
                count: text.lines().filter(|line| !line.trim().is_empty()).count(),
                max: MAX_BATCH_RECORDS,
            });
        }
        let record = parse_json_record(
            line,
            envelope,
            positioned_id(&base_id, number as u64),
            received_at,
        );
        records.push(ParsedRecord {
            line: Some(range),
            record,
        });
    }
    if records.is_empty() {
        return Err(ParseError::EmptyBody);
    }
    Ok(records)
}

fn message_id(envelope: &Envelope<'_>) -> Result<String, ParseError> {
    match envelope.message_id {
        Some(publisher_id) => validated_message_id(publisher_id),
        None => Ok(derive_message_id(envelope.routing_key, envelope.body)),
    }
}

fn validated_message_id(publisher_id: &str) -> Result<String, ParseError> {
    if publisher_id.is_empty() {
        return Err(ParseError::InvalidMessageId("empty"));
    }
    if publisher_id.len() > MAX_MESSAGE_ID_LEN {
        return Err(ParseError::InvalidMessageId("longer than 128 bytes"));
    }
    if publisher_id.chars().any(char::is_control) {
        return Err(ParseError::InvalidMessageId("contains control characters"));
    }
    Ok(publisher_id.to_owned())
}

/// The JSON body a record is published as, with its id as the AMQP message-id: what
/// [`parse_message`] reads back into the same record (but `received_at`, set on receipt).
pub fn record_body(record: &LogRecord) -> Vec<u8> {
    /// The body's fields, borrowed from the record and written straight to bytes (no
    /// intermediate `Value`: the gateway writes one per record).
    #[derive(serde::Serialize)]
    struct Body<'a> {
        timestamp: String,
        service: &'a str,
        severity: &'a str,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        host: Option<&'a str>,
        #[serde(skip_serializing_if = "no_attributes")]
        attributes: &'a Map<String, Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        http: Option<&'a HttpFields>,
    }
    fn no_attributes(attributes: &&Map<String, Value>) -> bool {
        attributes.is_empty()
    }
    serde_json::to_vec(&Body {
        timestamp: record
            .timestamp
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        service: &record.service,
        severity: record.severity.as_str(),
        message: &record.message,
        host: record.host.as_deref(),
        attributes: &record.attributes,
        http: record.http.as_ref(),
    })
    .unwrap_or_default()
}

/// The parts of a plain-text log line.
#[derive(Debug, Clone, PartialEq)]
pub struct PlainLine<'a> {
    pub timestamp: DateTime<Utc>,
    pub service: &'a str,
    pub severity: Severity,
    pub message: &'a str,
}

/// Parses `<timestamp> <service_name> <severity> <log_message>`, as existing Python services
/// publish it: `2024-05-01 12:00:00 ServiceA Error Log message generated`.
///
/// The timestamp is either one RFC 3339 token or a date and a time token; without a zone it
/// is UTC. The message is the rest of the text, inner whitespace and later lines kept.
pub fn parse_plain_line(text: &str) -> Result<PlainLine<'_>, ParseError> {
    let text = text.trim_end();
    let (first, rest) = next_token(text).ok_or(ParseError::EmptyBody)?;
    let (timestamp_text, rest) = match next_token(rest) {
        Some((second, after_second)) if looks_like_date(first) && looks_like_time(second) => {
            (format!("{first} {second}"), after_second)
        }
        _ => (first.to_owned(), rest),
    };
    let timestamp = parse_timestamp(&timestamp_text)?;
    let (service, rest) = next_token(rest).ok_or(ParseError::MalformedLine("no service"))?;
    validate_service(service)?;
    let (severity_text, rest) = next_token(rest).ok_or(ParseError::MalformedLine("no severity"))?;
    let severity = severity_text.parse::<Severity>()?;
    let message = rest.trim_start();
    if message.is_empty() {
        return Err(ParseError::MalformedLine("no message"));
    }
    Ok(PlainLine {
        timestamp,
        service,
        severity,
        message,
    })
}

/// Splits off the first whitespace-separated token; `None` when only whitespace is left.
fn next_token(text: &str) -> Option<(&str, &str)> {
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return None;
    }
    let end = trimmed.find(char::is_whitespace).unwrap_or(trimmed.len());
    Some(trimmed.split_at(end))
}

fn looks_like_date(token: &str) -> bool {
    let bytes = token.as_bytes();
    bytes.len() == 10 && bytes[4] == b'-' && bytes[7] == b'-'
}

fn looks_like_time(token: &str) -> bool {
    let bytes = token.as_bytes();
    bytes.len() >= 8 && bytes[2] == b':' && bytes[5] == b':'
}

/// Parses a timestamp: RFC 3339 (`T` or space separator), or a date and time without a zone,
/// taken as UTC. Python's `2024-05-01 12:00:00,123` (comma before milliseconds) is accepted.
pub fn parse_timestamp(raw: &str) -> Result<DateTime<Utc>, ParseError> {
    let invalid = || ParseError::InvalidTimestamp(truncate_for_reason(raw));
    let candidate = raw.trim().replacen(',', ".", 1);
    if let Ok(with_zone) = DateTime::parse_from_rfc3339(&candidate) {
        return Ok(truncate_to_millis(with_zone.with_timezone(&Utc)));
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(&candidate, format) {
            return Ok(truncate_to_millis(Utc.from_utc_datetime(&naive)));
        }
    }
    Err(invalid())
}

/// Epoch seconds, or milliseconds when the number is too large to be seconds (after 5138 AD).
fn timestamp_from_epoch(value: f64) -> Option<DateTime<Utc>> {
    const LARGEST_EPOCH_SECONDS: f64 = 1.0e11;
    if !value.is_finite() || value < 0.0 {
        return None;
    }
    let millis = if value >= LARGEST_EPOCH_SECONDS {
        value
    } else {
        value * 1000.0
    };
    // Bounded above by the year 9999 so the conversion to i64 is exact and in range.
    if millis > 253_402_300_799_999.0 {
        return None;
    }
    DateTime::from_timestamp_millis(millis as i64)
}

pub fn truncate_to_millis(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(time.timestamp_millis()).unwrap_or(time)
}

/// Checks a service name: 1 to 64 characters of `A-Z a-z 0-9 _ - .`, starting with a letter
/// or digit, with no empty dot-separated part. Such a name can never break a routing key
/// (`*`, `#` and spaces are out) nor a plain-text line.
pub fn validate_service(name: &str) -> Result<(), ParseError> {
    let invalid = |reason| ParseError::InvalidService {
        name: truncate_for_reason(name),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("empty"));
    }
    if name.len() > MAX_SERVICE_LEN {
        return Err(invalid("longer than 64 characters"));
    }
    if !name
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.'))
    {
        return Err(invalid(
            "only letters, digits, '_', '-' and '.' are allowed",
        ));
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(invalid("must start with a letter or digit"));
    }
    if name.split('.').any(str::is_empty) {
        return Err(invalid("empty part between dots"));
    }
    Ok(())
}

/// Splits a routing key `<service>.<severity>` into its service (everything before the last
/// dot) and severity word (the last word). `None` when there is no dot.
pub fn split_routing_key(routing_key: &str) -> Option<(&str, &str)> {
    routing_key.rsplit_once('.')
}

/// The routing key a record is published with.
pub fn routing_key(service: &str, severity: Severity) -> String {
    format!("{service}.{severity}")
}

const TIMESTAMP_KEYS: [&str; 4] = ["timestamp", "@timestamp", "ts", "time"];
const SERVICE_KEYS: [&str; 3] = ["service", "service_name", "app"];
const SEVERITY_KEYS: [&str; 3] = ["severity", "level", "log_level"];
const MESSAGE_KEYS: [&str; 3] = ["message", "msg", "log_message"];
const HOST_KEYS: [&str; 2] = ["host", "hostname"];
const ATTRIBUTE_KEYS: [&str; 2] = ["attributes", "attrs"];

fn take_first(object: &mut Map<String, Value>, keys: &[&str]) -> Option<Value> {
    let mut found = None;
    for key in keys {
        if let Some(value) = object.remove(*key) {
            found.get_or_insert(value);
        }
    }
    found
}

/// A record from a JSON object another protocol's fields were mapped into (the gateway's
/// Loki, Elasticsearch, OTLP and GELF routes): the checks of a JSON message, with `id` as
/// its message id, without writing the object out and reading it back.
pub fn record_from_json_object(
    object: Map<String, Value>,
    id: &str,
    received_at: DateTime<Utc>,
) -> Result<LogRecord, ParseError> {
    let id = validated_message_id(id)?;
    let envelope = Envelope {
        routing_key: "",
        body: &[],
        content_type: None,
        message_id: None,
        amqp_timestamp: None,
        received_at,
    };
    let received_at = truncate_to_millis(received_at);
    record_from_object(object, &envelope, id, received_at)
}

fn parse_json_record(
    text: &str,
    envelope: &Envelope<'_>,
    id: String,
    received_at: DateTime<Utc>,
) -> Result<LogRecord, ParseError> {
    let value: Value =
        serde_json::from_str(text).map_err(|error| ParseError::InvalidJson(error.to_string()))?;
    let Value::Object(object) = value else {
        return Err(ParseError::NotAnObject);
    };
    record_from_object(object, envelope, id, received_at)
}

fn record_from_object(
    mut object: Map<String, Value>,
    envelope: &Envelope<'_>,
    id: String,
    received_at: DateTime<Utc>,
) -> Result<LogRecord, ParseError> {
    let routing_parts = split_routing_key(envelope.routing_key);

    let service = match take_first(&mut object, &SERVICE_KEYS) {
        Some(Value::String(service)) => service,
        Some(_) => return Err(wrong_type("service", "a string")),
        None => routing_parts
            .map(|(service, _)| service.to_owned())
            .ok_or(ParseError::MissingField("service"))?,
    };
    validate_service(&service)?;

    let severity = match take_first(&mut object, &SEVERITY_KEYS) {
        Some(Value::String(severity)) => severity.parse()?,
        Some(Value::Number(number)) => number
            .as_u64()
            .and_then(Severity::from_syslog)
            .ok_or_else(|| ParseError::UnknownSeverity(number.to_string()))?,
        Some(_) => return Err(wrong_type("severity", "a string or a syslog number")),
        None => routing_parts
            .ok_or(ParseError::MissingField("severity"))?
            .1
            .parse()?,
    };

    let message = match take_first(&mut object, &MESSAGE_KEYS) {
        Some(Value::String(message)) => message,
        Some(_) => return Err(wrong_type("message", "a string")),
        None => return Err(ParseError::MissingField("message")),
    };

    let timestamp = match take_first(&mut object, &TIMESTAMP_KEYS) {
        Some(Value::String(raw)) => parse_timestamp(&raw)?,
        Some(Value::Number(number)) => number
            .as_f64()
            .and_then(timestamp_from_epoch)
            .ok_or_else(|| ParseError::InvalidTimestamp(number.to_string()))?,
        Some(_) => return Err(wrong_type("timestamp", "a string or an epoch number")),
        None => envelope
            .amqp_timestamp
            .and_then(|seconds| timestamp_from_epoch(seconds as f64))
            .unwrap_or(received_at),
    };

    let host = match take_first(&mut object, &HOST_KEYS) {
        Some(Value::String(host)) if host.len() <= MAX_HOST_LEN => Some(host),
        Some(Value::String(_)) => {
            return Err(ParseError::InvalidField {
                field: "host",
                reason: "longer than 255 bytes",
            })
        }
        Some(Value::Null) | None => None,
        Some(_) => return Err(wrong_type("host", "a string")),
    };

    let http = match object.remove("http") {
        Some(Value::Object(fields)) => Some(parse_http_fields(fields)?),
        Some(Value::Null) | None => None,
        Some(_) => return Err(wrong_type("http", "an object")),
    };

    let mut attributes = match take_first(&mut object, &ATTRIBUTE_KEYS) {
        Some(Value::Object(attributes)) => attributes,
        Some(Value::Null) | None => Map::new(),
        Some(_) => return Err(wrong_type("attributes", "an object")),
    };
    // Unknown top-level fields from structured loggers are kept as attributes, not lost.
    for (key, value) in object {
        attributes.entry(key).or_insert(value);
    }
    let attributes = sanitize_attributes(attributes)?;

    Ok(LogRecord {
        id,
        timestamp,
        received_at,
        service,
        severity,
        message,
        host,
        attributes,
        http: http.filter(|fields| !fields.is_empty()),
    })
}

fn wrong_type(field: &'static str, expected: &'static str) -> ParseError {
    ParseError::WrongType { field, expected }
}

/// Attribute keys become MongoDB field names: `.` would read as a path and `$` as an
/// operator, so at every depth dots become `_` (`http.route` → `http_route`) and `$`-keys
/// are refused. Nesting deeper than [`MAX_ATTRIBUTE_DEPTH`] is refused too.
fn sanitize_attributes(attributes: Map<String, Value>) -> Result<Map<String, Value>, ParseError> {
    if attributes.len() > MAX_ATTRIBUTES {
        return Err(ParseError::InvalidField {
            field: "attributes",
            reason: "more than 128 keys",
        });
    }
    sanitize_object(attributes, 1)
}

/// Deepest nesting of objects and arrays inside `attributes`.
pub const MAX_ATTRIBUTE_DEPTH: usize = 16;

fn sanitize_object(
    object: Map<String, Value>,
    depth: usize,
) -> Result<Map<String, Value>, ParseError> {
    let mut sanitized = Map::with_capacity(object.len());
    for (key, value) in object {
        if key.is_empty() || key.starts_with('$') || key.contains('\0') {
            return Err(ParseError::InvalidField {
                field: "attributes",
                reason: "keys must be non-empty, must not start with '$' and must not hold NUL",
            });
        }
        let key = if key.contains('.') {
            key.replace('.', "_")
        } else {
            key
        };
        sanitized.insert(key, sanitize_value(value, depth)?);
    }
    Ok(sanitized)
}

fn sanitize_value(value: Value, depth: usize) -> Result<Value, ParseError> {
    let too_deep = || ParseError::InvalidField {
        field: "attributes",
        reason: "nested more than 16 levels",
    };
    match value {
        Value::Object(_) | Value::Array(_) if depth >= MAX_ATTRIBUTE_DEPTH => Err(too_deep()),
        Value::Object(object) => Ok(Value::Object(sanitize_object(object, depth + 1)?)),
        Value::Array(items) => items
            .into_iter()
            .map(|item| sanitize_value(item, depth + 1))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        scalar => Ok(scalar),
    }
}

fn parse_http_fields(mut fields: Map<String, Value>) -> Result<HttpFields, ParseError> {
    let method = match fields.remove("method") {
        Some(Value::String(method)) if !method.is_empty() && method.len() <= 16 => {
            Some(method.to_ascii_uppercase())
        }
        Some(Value::Null) | None => None,
        Some(_) => return Err(wrong_type("http.method", "a string of 1 to 16 characters")),
    };
    let path = match fields.remove("path") {
        Some(Value::String(path)) if path.len() <= 4096 => Some(path),
        Some(Value::Null) | None => None,
        Some(_) => return Err(wrong_type("http.path", "a string of at most 4096 bytes")),
    };
    let status = match fields.remove("status") {
        Some(Value::Number(number)) => {
            let status = number
                .as_u64()
                .filter(|status| (100..=599).contains(status))
                .ok_or(ParseError::InvalidField {
                    field: "http.status",
                    reason: "must be an integer from 100 to 599",
                })?;
            Some(status as u16)
        }
        Some(Value::Null) | None => None,
        Some(_) => return Err(wrong_type("http.status", "an integer")),
    };
    let duration_ms = match fields.remove("duration_ms") {
        Some(Value::Number(number)) => {
            let duration = number
                .as_f64()
                .filter(|duration| duration.is_finite() && *duration >= 0.0)
                .ok_or(ParseError::InvalidField {
                    field: "http.duration_ms",
                    reason: "must be a non-negative number",
                })?;
            Some(duration)
        }
        Some(Value::Null) | None => None,
        Some(_) => return Err(wrong_type("http.duration_ms", "a number")),
    };
    let client_ip = match fields.remove("client_ip") {
        Some(Value::String(address)) if address.len() <= 64 => Some(address),
        Some(Value::Null) | None => None,
        Some(_) => return Err(wrong_type("http.client_ip", "a string of at most 64 bytes")),
    };
    let bytes = match fields.remove("bytes") {
        Some(Value::Number(number)) => Some(number.as_u64().ok_or(ParseError::InvalidField {
            field: "http.bytes",
            reason: "must be a non-negative integer",
        })?),
        Some(Value::Null) | None => None,
        Some(_) => return Err(wrong_type("http.bytes", "an integer")),
    };
    let text = |field: &'static str, value: Option<Value>| match value {
        Some(Value::String(text)) if text.len() <= 4096 => Ok(Some(text)),
        Some(Value::Null) | None => Ok(None),
        Some(_) => Err(wrong_type(field, "a string of at most 4096 bytes")),
    };
    let user_agent = text("http.user_agent", fields.remove("user_agent"))?;
    let referer = text("http.referer", fields.remove("referer"))?;
    Ok(HttpFields {
        method,
        path,
        status,
        duration_ms,
        client_ip,
        bytes,
        user_agent,
        referer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn envelope<'a>(routing_key: &'a str, body: &'a [u8]) -> Envelope<'a> {
        Envelope {
            routing_key,
            body,
            content_type: None,
            message_id: None,
            amqp_timestamp: None,
            received_at: Utc.with_ymd_and_hms(2024, 5, 2, 0, 0, 0).unwrap(),
        }
    }

    #[test]
    fn a_published_record_body_parses_back_into_the_same_record() {
        let line = r#"203.0.113.9 - bob [21/Nov/2026:11:59:59 +0000] "POST /api/pay HTTP/1.1" 503 120 "https://r/" "curl/8" 0.250"#;
        let mut record = crate::formats::parse_line(
            crate::formats::LineFormat::Combined,
            line,
            "request-0".into(),
            &crate::formats::LineContext {
                service: Some("shop"),
                received_at: Utc::now(),
            },
        )
        .unwrap();
        record.host = Some("web-1".into());
        let body = record_body(&record);
        let parsed = parse_message(&Envelope {
            message_id: Some(&record.id),
            content_type: Some("application/json"),
            ..envelope("", &body)
        })
        .unwrap();
        assert_eq!(
            LogRecord {
                received_at: record.received_at,
                ..parsed
            },
            record
        );
    }

    fn batch<'a>(body: &'a [u8], message_id: Option<&'a str>) -> Envelope<'a> {
        Envelope {
            content_type: Some(CONTENT_TYPE_BATCH),
            message_id,
            ..envelope("checkout.error", body)
        }
    }

    #[test]
    fn a_batch_gives_one_record_per_line_and_a_bad_line_spoils_only_itself() {
        let body =
            b"{\"message\":\"one\"}\n{broken\n\n{\"message\":\"three\",\"severity\":\"warn\"}\r\n";
        let parsed = parse_records(&batch(body, Some("m1")));
        assert_eq!(parsed.len(), 3);
        let first = parsed[0].record.as_ref().unwrap();
        assert_eq!(
            (first.id.as_str(), first.service.as_str()),
            ("m1-0", "checkout")
        );
        assert_eq!(first.severity, Severity::Error);
        assert_eq!(parsed[0].line, Some(0..17));
        assert_eq!(
            parsed[1].record.as_ref().unwrap_err().code(),
            "invalid_json"
        );
        assert_eq!(&body[parsed[1].line.clone().unwrap()], b"{broken");
        let third = parsed[2].record.as_ref().unwrap();
        assert_eq!(
            (third.id.as_str(), third.severity),
            ("m1-3", Severity::Warn)
        );
    }

    #[test]
    fn batch_ids_without_a_message_id_are_stable_and_identical_lines_stay_distinct() {
        let body = b"{\"message\":\"same\"}\n{\"message\":\"same\"}";
        let ids = |parsed: Vec<ParsedRecord>| -> Vec<String> {
            parsed
                .into_iter()
                .map(|one| one.record.unwrap().id)
                .collect()
        };
        let first = ids(parse_records(&batch(body, None)));
        let again = ids(parse_records(&batch(body, None)));
        assert_eq!(first, again);
        assert_ne!(first[0], first[1]);
        let base = derive_message_id("checkout.error", body);
        assert_eq!(first, [format!("{base}-0"), format!("{base}-1")]);
    }

    #[test]
    fn batch_wide_errors_reject_the_whole_message() {
        let whole = |body: &[u8], message_id| {
            let parsed = parse_records(&batch(body, message_id));
            assert_eq!(parsed.len(), 1);
            assert_eq!(parsed[0].line, None);
            parsed[0].record.as_ref().unwrap_err().code()
        };
        assert_eq!(whole(b"\n \n", None), "empty_body");
        assert_eq!(whole(b"\xff\xfe", None), "invalid_utf8");
        assert_eq!(
            whole(b"{\"message\":\"x\"}", Some("")),
            "invalid_message_id"
        );
        let too_many = "{\"message\":\"x\"}\n".repeat(MAX_BATCH_RECORDS + 1);
        assert_eq!(whole(too_many.as_bytes(), None), "too_many_records");
        let huge = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(whole(&huge, None), "too_large");
    }

    #[test]
    fn a_message_without_the_batch_content_type_is_one_record() {
        let body = br#"{"message":"a\nb"}"#;
        let parsed = parse_records(&envelope("web.info", body));
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].line, None);
        assert_eq!(parsed[0].record.as_ref().unwrap().message, "a\nb");
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn python_plain_line_is_parsed() {
        let body = b"2024-05-01 12:00:00 ServiceA Error Log message generated";
        let record = parse_message(&envelope("ServiceA.Error", body)).unwrap();
        assert_eq!(record.timestamp, utc("2024-05-01T12:00:00Z"));
        assert_eq!(record.service, "ServiceA");
        assert_eq!(record.severity, Severity::Error);
        assert_eq!(record.message, "Log message generated");
        assert_eq!(record.id, derive_message_id("ServiceA.Error", body));
    }

    #[test]
    fn plain_line_accepts_rfc3339_and_python_millis_and_keeps_inner_whitespace() {
        let line = parse_plain_line("2024-05-01T12:00:00+02:00 web WARN  two  spaces\n").unwrap();
        assert_eq!(line.timestamp, utc("2024-05-01T10:00:00Z"));
        assert_eq!(line.message, "two  spaces");
        let line = parse_plain_line("2024-05-01 12:00:00,250 web info hi").unwrap();
        assert_eq!(line.timestamp, utc("2024-05-01T12:00:00.250Z"));
        let multi = parse_plain_line("2024-05-01 12:00:00 web error trace:\n  at main\n").unwrap();
        assert_eq!(multi.message, "trace:\n  at main");
    }

    #[test]
    fn malformed_plain_lines_are_rejected_with_a_reason() {
        let cases: [(&str, &str); 6] = [
            ("hello world", "invalid_timestamp"),
            ("2024-05-01 12:00:00", "malformed_line"),
            ("2024-05-01 12:00:00 web", "malformed_line"),
            ("2024-05-01 12:00:00 web error", "malformed_line"),
            ("2024-05-01 12:00:00 web loud boom", "unknown_severity"),
            ("2024-13-01 12:00:00 web error boom", "invalid_timestamp"),
        ];
        for (line, code) in cases {
            let error = parse_message(&envelope("web.error", line.as_bytes())).unwrap_err();
            assert_eq!(error.code(), code, "{line}: {error}");
        }
        let error = parse_plain_line("2024-05-01 12:00:00 we*b error boom").unwrap_err();
        assert_eq!(error.code(), "invalid_service");
    }

    #[test]
    fn json_record_with_every_field() {
        let body = br#"{"timestamp":"2024-05-01T12:00:00.123Z","service":"checkout","severity":"ERR",
            "message":"payment failed","host":"web-1","attributes":{"order":42,"otel.trace_id":"ab"},
            "http":{"method":"post","path":"/pay","status":502,"duration_ms":12.5,"client_ip":"10.0.0.1"},
            "user":"u1"}"#;
        let mut envelope = envelope("checkout.error", body);
        envelope.content_type = Some("application/json");
        envelope.message_id = Some("m-1");
        let record = parse_message(&envelope).unwrap();
        assert_eq!(record.id, "m-1");
        assert_eq!(record.timestamp, utc("2024-05-01T12:00:00.123Z"));
        assert_eq!(record.severity, Severity::Error);
        assert_eq!(record.host.as_deref(), Some("web-1"));
        assert_eq!(record.attributes["order"], 42);
        assert_eq!(record.attributes["otel_trace_id"], "ab");
        assert_eq!(record.attributes["user"], "u1");
        let http = record.http.unwrap();
        assert_eq!(http.method.as_deref(), Some("POST"));
        assert_eq!(http.status, Some(502));
        assert_eq!(http.duration_ms, Some(12.5));
    }

    #[test]
    fn json_takes_missing_service_and_severity_from_the_routing_key() {
        let body = br#"{"message":"hello","ts":1714564800}"#;
        let record = parse_message(&envelope("payments.api.Warning", body)).unwrap();
        assert_eq!(record.service, "payments.api");
        assert_eq!(record.severity, Severity::Warn);
        assert_eq!(record.timestamp, utc("2024-05-01T12:00:00Z"));
        let millis = parse_message(&envelope(
            "a.info",
            br#"{"message":"x","ts":1714564800123}"#,
        ))
        .unwrap();
        assert_eq!(millis.timestamp, utc("2024-05-01T12:00:00.123Z"));
    }

    #[test]
    fn json_without_timestamp_uses_amqp_timestamp_then_receipt_time() {
        let body = br#"{"message":"x"}"#;
        let mut with_property = envelope("a.info", body);
        with_property.amqp_timestamp = Some(1_714_564_800);
        let record = parse_message(&with_property).unwrap();
        assert_eq!(record.timestamp, utc("2024-05-01T12:00:00Z"));
        let record = parse_message(&envelope("a.info", body)).unwrap();
        assert_eq!(record.timestamp, record.received_at);
    }

    #[test]
    fn json_rejections_name_the_problem() {
        let cases: [(&str, &[u8], &str); 14] = [
            ("a.info", b"{not json", "invalid_json"),
            ("a.info", b"[1,2]", "not_an_object"),
            (
                "a.info",
                br#"{"service":"a","severity":"info"}"#,
                "missing_field",
            ),
            ("a.info", br#"{"message":5}"#, "wrong_type"),
            ("a.loud", br#"{"message":"x"}"#, "unknown_severity"),
            ("nodots", br#"{"message":"x"}"#, "missing_field"),
            (
                "a.info",
                br#"{"message":"x","service":"a b"}"#,
                "invalid_service",
            ),
            (
                "a.info",
                br#"{"message":"x","ts":"yesterday"}"#,
                "invalid_timestamp",
            ),
            ("a.info", br#"{"message":"x","ts":-5}"#, "invalid_timestamp"),
            (
                "a.info",
                br#"{"message":"x","http":{"status":999}}"#,
                "invalid_field",
            ),
            (
                "a.info",
                br#"{"message":"x","attrs":{"$where":1}}"#,
                "invalid_field",
            ),
            (
                "a.info",
                br#"{"message":"x","attrs":{"a":{"b\u0000c":1}}}"#,
                "invalid_field",
            ),
            ("a.info", br#"{"message":"x","k\u0000":1}"#, "invalid_field"),
            ("a.info", b"   ", "empty_body"),
        ];
        for (routing_key, body, code) in cases {
            let mut envelope = envelope(routing_key, body);
            envelope.content_type = Some("application/json");
            let error = parse_message(&envelope).unwrap_err();
            assert_eq!(
                error.code(),
                code,
                "{}: {error}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(
            parse_message(&envelope("a.info", &[0xff, 0xfe])).unwrap_err(),
            ParseError::InvalidUtf8
        );
        let huge = vec![b'x'; MAX_BODY_BYTES + 1];
        assert_eq!(
            parse_message(&envelope("a.info", &huge))
                .unwrap_err()
                .code(),
            "too_large"
        );
    }

    #[test]
    fn publisher_message_ids_are_validated() {
        let body = br#"{"message":"x"}"#;
        for (id, ok) in [("", false), ("abc", true), ("a\nb", false)] {
            let mut envelope = envelope("a.info", body);
            envelope.message_id = Some(id);
            assert_eq!(parse_message(&envelope).is_ok(), ok, "{id:?}");
        }
    }

    #[test]
    fn service_names_that_could_break_routing_are_refused() {
        for good in ["ServiceA", "checkout", "payments.api", "a-b_c", "9lives"] {
            assert!(validate_service(good).is_ok(), "{good}");
        }
        let too_long = "a".repeat(65);
        for bad in [
            "",
            "a*",
            "a#",
            "a b",
            ".a",
            "a.",
            "a..b",
            "-a",
            too_long.as_str(),
        ] {
            assert!(validate_service(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn parser_never_panics_on_arbitrary_bytes(
            routing_key in ".{0,40}",
            body in proptest::collection::vec(any::<u8>(), 0..300),
            json in any::<bool>(),
        ) {
            let mut envelope = envelope(&routing_key, &body);
            if json { envelope.content_type = Some("application/json"); }
            let _ = parse_message(&envelope);
        }

        #[test]
        fn any_valid_plain_line_round_trips(
            service in "[A-Za-z0-9][A-Za-z0-9_-]{0,20}",
            severity in proptest::sample::select(Severity::ALL.to_vec()),
            message in "[^\\s][ -~]{0,80}",
            seconds in 0i64..4_102_444_800,
        ) {
            let timestamp = DateTime::from_timestamp(seconds, 0).unwrap();
            let text = format!("{} {service} {severity} {message}", timestamp.format("%Y-%m-%d %H:%M:%S"));
            let line = parse_plain_line(&text).unwrap();
            prop_assert_eq!(line.timestamp, timestamp);
            prop_assert_eq!(line.service, service.as_str());
            prop_assert_eq!(line.severity, severity);
            prop_assert_eq!(line.message, message.trim_end());
        }

        #[test]
        fn valid_names_are_accepted_and_wildcards_never(name in "[A-Za-z0-9][A-Za-z0-9_.#* -]{0,70}") {
            let accepted = validate_service(&name).is_ok();
            if accepted {
                prop_assert!(!name.contains(['*', '#', ' ']) && name.len() <= MAX_SERVICE_LEN);
            }
        }
    }
}
