//! OTLP/HTTP logs on the gateway, for OpenTelemetry SDKs and the Collector's `otlphttp`
//! exporter: `POST /v1/logs` with an `ExportLogsServiceRequest` as protobuf
//! (`application/x-protobuf`) or OTLP's JSON (`application/json`), gzip or deflate bodies.
//! Served on the gateway's address and on `otlp.listen` (4318, the SDKs' default).
//!
//! Each log record becomes a record through the gateway's JSON path: service from the
//! resource's `service.name`, severity from `severity_number` (1-4 trace … 21-24 fatal)
//! else `severity_text` (else info), message from the body (a string, or a structured body
//! as its JSON text), time from `time_unix_nano` else `observed_time_unix_nano`, host from
//! the resource's `host.name`; the other resource attributes, then the record's, become
//! attributes (dots → `_`), with `trace_id` and `span_id` in hex and `otel_scope` naming
//! the instrumentation scope. Ids come from the request's content and the record's
//! position, so a retried export stores nothing twice.
//!
//! Answers are OTLP's: 200 with an `ExportLogsServiceResponse` in the request's encoding
//! (`partial_success` with the refused count and the first reason when some records were
//! refused: clients do not retry those), and for a request refused whole a
//! `google.rpc.Status` with the gateway's status: 400 and 413 (not retried), 429 and 503
//! with `Retry-After` (retried).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use base64::Engine;
use chrono::{DateTime, Utc};
use logagg::auth::Caller;
use logagg::LogRecord;
use prost::Message;
use serde_json::{Map, Value};

use super::gateway::{ingest, object_record, Gateway, GatewayError, Ingested, Protocol};

/// Where exporters send logs.
pub const LOGS_PATH: &str = "/v1/logs";

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// How a request's body (and so its answer) is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// From the request's `Content-Type`; protobuf when it names neither (OTLP's default).
    pub fn of(content_type: &str) -> Encoding {
        if content_type.contains("json") {
            Encoding::Json
        } else {
            Encoding::Protobuf
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => PROTOBUF,
            Encoding::Json => JSON,
        }
    }
}

/// One log record of an export with what it inherits from its resource and scope.
#[derive(Debug, Clone, PartialEq)]
pub struct Log {
    pub resource: Arc<Vec<proto::KeyValue>>,
    pub scope: Arc<str>,
    pub record: proto::LogRecord,
}

/// `POST /v1/logs`.
pub async fn export(
    State(gateway): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    request: Request,
) -> Response {
    let encoding = Encoding::of(
        request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default(),
    );
    let outcome = ingest(
        &gateway,
        &caller,
        Protocol::Otlp,
        request,
        |body| decode(&body.bytes, encoding).map_err(GatewayError::BadRequest),
        |log, id, received_at| log_record(log, &id, received_at),
    );
    match outcome.await {
        Ok(Ingested { report, .. }) => {
            let partial = (report.rejected > 0).then(|| proto::ExportLogsPartialSuccess {
                rejected_log_records: report.rejected as i64,
                error_message: report
                    .errors
                    .first()
                    .map(|error| format!("record {}: {}", error.index, error.reason))
                    .unwrap_or_default(),
            });
            answer(StatusCode::OK, encoding, response_body(partial, encoding))
        }
        Err(error) => error_answer(error, encoding),
    }
}

fn answer(status: StatusCode, encoding: Encoding, body: Vec<u8>) -> Response {
    (
        status,
        [(
            CONTENT_TYPE,
            HeaderValue::from_static(encoding.content_type()),
        )],
        body,
    )
        .into_response()
}

/// An `ExportLogsServiceResponse`.
fn response_body(partial: Option<proto::ExportLogsPartialSuccess>, encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::Protobuf => proto::ExportLogsServiceResponse {
            partial_success: partial,
        }
        .encode_to_vec(),
        Encoding::Json => {
            let body = match partial {
                Some(partial) => serde_json::json!({ "partialSuccess": {
                    "rejectedLogRecords": partial.rejected_log_records.to_string(),
                    "errorMessage": partial.error_message,
                }}),
                None => serde_json::json!({}),
            };
            body.to_string().into_bytes()
        }
    }
}

/// A request refused whole: the gateway's status and `Retry-After`, the body a
/// `google.rpc.Status` in the request's encoding.
fn error_answer(error: GatewayError, encoding: Encoding) -> Response {
    let message = error.to_string();
    let mut response = error.into_response();
    // gRPC codes as OTLP/HTTP's Status carries them.
    let code = match response.status() {
        StatusCode::TOO_MANY_REQUESTS => 8,    // RESOURCE_EXHAUSTED
        StatusCode::SERVICE_UNAVAILABLE => 14, // UNAVAILABLE
        _ => 3,                                // INVALID_ARGUMENT
    };
    let body = match encoding {
        Encoding::Protobuf => proto::Status { code, message }.encode_to_vec(),
        Encoding::Json => serde_json::json!({ "code": code, "message": message })
            .to_string()
            .into_bytes(),
    };
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(encoding.content_type()),
    );
    *response.body_mut() = axum::body::Body::from(body);
    response
}

/// The log records of an export body (already inflated), in order.
pub fn decode(body: &[u8], encoding: Encoding) -> Result<Vec<Log>, String> {
    let request = match encoding {
        Encoding::Protobuf => proto::ExportLogsServiceRequest::decode(body)
            .map_err(|error| format!("not an OTLP ExportLogsServiceRequest: {error}"))?,
        Encoding::Json => {
            let value: Value = serde_json::from_slice(body)
                .map_err(|error| format!("invalid OTLP JSON: {error}"))?;
            json::request(value).map_err(|error| format!("invalid OTLP JSON: {error}"))?
        }
    };
    let mut logs = Vec::new();
    for resource_logs in request.resource_logs {
        let resource = Arc::new(
            resource_logs
                .resource
                .map(|resource| resource.attributes)
                .unwrap_or_default(),
        );
        for scope_logs in resource_logs.scope_logs {
            let scope: Arc<str> = scope_logs
                .scope
                .map(|scope| scope.name)
                .unwrap_or_default()
                .into();
            for record in scope_logs.log_records {
                logs.push(Log {
                    resource: Arc::clone(&resource),
                    scope: Arc::clone(&scope),
                    record,
                });
            }
        }
    }
    Ok(logs)
}

/// OTLP's severity number (1-24) as one of our words.
fn severity_of_number(number: i32) -> Option<&'static str> {
    Some(match number {
        1..=4 => "trace",
        5..=8 => "debug",
        9..=12 => "info",
        13..=16 => "warn",
        17..=20 => "error",
        21..=24 => "fatal",
        _ => return None,
    })
}

fn string_attribute<'a>(attributes: &'a [proto::KeyValue], key: &str) -> Option<&'a str> {
    attributes
        .iter()
        .find(|pair| pair.key == key)
        .and_then(|pair| match &pair.value.as_ref()?.value {
            Some(proto::any_value::Value::StringValue(text)) => Some(text.as_str()),
            _ => None,
        })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A log record as a record, through the gateway's JSON path (the same checks and limits).
fn log_record(log: &Log, id: &str, received_at: DateTime<Utc>) -> Result<LogRecord, String> {
    let record = &log.record;
    let service = string_attribute(&log.resource, "service.name")
        .ok_or("the resource has no `service.name` attribute")?;
    let mut object = Map::new();
    object.insert("service".into(), service.into());
    let severity = severity_of_number(record.severity_number)
        .map(str::to_owned)
        .or_else(|| (!record.severity_text.is_empty()).then(|| record.severity_text.clone()))
        .unwrap_or_else(|| "info".to_owned());
    object.insert("severity".into(), severity.into());
    let message = match record.body.as_ref().and_then(|body| body.value.as_ref()) {
        Some(proto::any_value::Value::StringValue(text)) => text.clone(),
        Some(_) => record
            .body
            .as_ref()
            .map(|body| any_value_json(body).to_string())
            .unwrap_or_default(),
        None => String::new(),
    };
    object.insert("message".into(), message.into());
    let nanos = if record.time_unix_nano != 0 {
        record.time_unix_nano
    } else {
        record.observed_time_unix_nano
    };
    if nanos != 0 {
        let time = DateTime::from_timestamp_nanos(i64::try_from(nanos).unwrap_or(i64::MAX));
        object.insert(
            "timestamp".into(),
            time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                .into(),
        );
    }
    if let Some(host) = string_attribute(&log.resource, "host.name") {
        object.insert("host".into(), host.into());
    }
    let mut attributes = Map::new();
    for pair in log.resource.iter().chain(&record.attributes) {
        if pair.key == "service.name" || pair.key == "host.name" {
            continue;
        }
        let value = pair.value.as_ref().map_or(Value::Null, any_value_json);
        attributes.insert(pair.key.clone(), value);
    }
    if !record.trace_id.is_empty() {
        attributes.insert("trace_id".into(), hex(&record.trace_id).into());
    }
    if !record.span_id.is_empty() {
        attributes.insert("span_id".into(), hex(&record.span_id).into());
    }
    if !log.scope.is_empty() {
        attributes.insert("otel_scope".into(), log.scope.to_string().into());
    }
    if !record.event_name.is_empty() {
        attributes.insert("event_name".into(), record.event_name.clone().into());
    }
    object.insert("attributes".into(), Value::Object(attributes));
    object_record(object, id, received_at)
}

/// An `AnyValue` as JSON: a kvlist an object, bytes base64, a double that JSON cannot
/// hold (NaN, ±inf) its text.
fn any_value_json(value: &proto::AnyValue) -> Value {
    use proto::any_value::Value as Any;
    match &value.value {
        None => Value::Null,
        Some(Any::StringValue(text)) => text.clone().into(),
        Some(Any::BoolValue(flag)) => (*flag).into(),
        Some(Any::IntValue(number)) => (*number).into(),
        Some(Any::DoubleValue(number)) => serde_json::Number::from_f64(*number)
            .map_or_else(|| number.to_string().into(), Value::Number),
        Some(Any::ArrayValue(array)) => array.values.iter().map(any_value_json).collect(),
        Some(Any::KvlistValue(list)) => list
            .values
            .iter()
            .map(|pair| {
                (
                    pair.key.clone(),
                    pair.value.as_ref().map_or(Value::Null, any_value_json),
                )
            })
            .collect::<Map<String, Value>>()
            .into(),
        Some(Any::BytesValue(bytes)) => base64::engine::general_purpose::STANDARD
            .encode(bytes)
            .into(),
    }
}

/// OTLP's JSON encoding read into the protobuf messages: lowerCamelCase field names (the
/// proto's own names accepted too), 64-bit integers as strings or numbers, enums as
/// numbers or names, trace and span ids in hex, bytes in base64.
mod json {
    use base64::Engine;
    use serde_json::Value;

    use super::proto;

    type Result<T> = std::result::Result<T, String>;

    /// Takes field `camel` (or its proto name `snake`) out of an object: the strings move
    /// into the messages instead of being copied.
    fn take(object: &mut Value, camel: &str, snake: &str) -> Option<Value> {
        let fields = object.as_object_mut()?;
        fields
            .remove(camel)
            .or_else(|| fields.remove(snake))
            .filter(|value| !value.is_null())
    }

    fn array(object: &mut Value, camel: &str, snake: &str) -> Result<Vec<Value>> {
        match take(object, camel, snake) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => Ok(items),
            Some(_) => Err(format!("`{camel}` is not an array")),
        }
    }

    fn text(object: &mut Value, camel: &str, snake: &str) -> Result<String> {
        match take(object, camel, snake) {
            None => Ok(String::new()),
            Some(Value::String(text)) => Ok(text),
            Some(_) => Err(format!("`{camel}` is not a string")),
        }
    }

    /// A 64-bit integer: OTLP's JSON writes them as strings, some encoders as numbers.
    fn integer_of<T: std::str::FromStr + TryFrom<u64> + TryFrom<i64>>(
        value: Value,
        name: &str,
    ) -> Result<T> {
        let bad = || format!("`{name}` is not an integer");
        match value {
            Value::String(text) => text.trim().parse().map_err(|_| bad()),
            Value::Number(number) => {
                if let Some(unsigned) = number.as_u64() {
                    T::try_from(unsigned).map_err(|_| bad())
                } else if let Some(signed) = number.as_i64() {
                    T::try_from(signed).map_err(|_| bad())
                } else {
                    Err(bad())
                }
            }
            _ => Err(bad()),
        }
    }

    fn integer<T: std::str::FromStr + TryFrom<u64> + TryFrom<i64>>(
        object: &mut Value,
        camel: &str,
        snake: &str,
    ) -> Result<Option<T>> {
        take(object, camel, snake)
            .map(|value| integer_of(value, camel))
            .transpose()
    }

    fn hex_bytes(object: &mut Value, camel: &str, snake: &str) -> Result<Vec<u8>> {
        let text = text(object, camel, snake)?;
        if text.len() % 2 != 0 {
            return Err(format!("`{camel}` is not hex"));
        }
        (0..text.len())
            .step_by(2)
            .map(|at| {
                text.get(at..at + 2)
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                    .ok_or_else(|| format!("`{camel}` is not hex"))
            })
            .collect()
    }

    pub fn request(mut value: Value) -> Result<proto::ExportLogsServiceRequest> {
        if !value.is_object() {
            return Err("the body is not a JSON object".into());
        }
        let resource_logs = array(&mut value, "resourceLogs", "resource_logs")?
            .into_iter()
            .map(resource_logs)
            .collect::<Result<_>>()?;
        Ok(proto::ExportLogsServiceRequest { resource_logs })
    }

    fn resource_logs(mut value: Value) -> Result<proto::ResourceLogs> {
        let resource = match take(&mut value, "resource", "resource") {
            Some(mut resource) => Some(proto::Resource {
                attributes: key_values(&mut resource, "attributes", "attributes")?,
            }),
            None => None,
        };
        let scope_logs = array(&mut value, "scopeLogs", "scope_logs")?
            .into_iter()
            .map(scope_logs)
            .collect::<Result<_>>()?;
        Ok(proto::ResourceLogs {
            resource,
            scope_logs,
        })
    }

    fn scope_logs(mut value: Value) -> Result<proto::ScopeLogs> {
        let scope = match take(&mut value, "scope", "scope") {
            Some(mut scope) => Some(proto::InstrumentationScope {
                name: text(&mut scope, "name", "name")?,
                version: text(&mut scope, "version", "version")?,
            }),
            None => None,
        };
        let log_records = array(&mut value, "logRecords", "log_records")?
            .into_iter()
            .map(log_record)
            .collect::<Result<_>>()?;
        Ok(proto::ScopeLogs { scope, log_records })
    }

    fn log_record(mut value: Value) -> Result<proto::LogRecord> {
        let severity_number = match take(&mut value, "severityNumber", "severity_number") {
            Some(Value::String(name)) if name.starts_with("SEVERITY_NUMBER_") => {
                proto::severity_number_of_name(&name)
                    .ok_or_else(|| format!("unknown severityNumber `{name}`"))?
            }
            Some(number) => integer_of(number, "severityNumber")?,
            None => 0,
        };
        Ok(proto::LogRecord {
            time_unix_nano: integer(&mut value, "timeUnixNano", "time_unix_nano")?.unwrap_or(0),
            observed_time_unix_nano: integer(
                &mut value,
                "observedTimeUnixNano",
                "observed_time_unix_nano",
            )?
            .unwrap_or(0),
            severity_number,
            severity_text: text(&mut value, "severityText", "severity_text")?,
            body: take(&mut value, "body", "body")
                .map(any_value)
                .transpose()?,
            attributes: key_values(&mut value, "attributes", "attributes")?,
            flags: integer(&mut value, "flags", "flags")?.unwrap_or(0),
            trace_id: hex_bytes(&mut value, "traceId", "trace_id")?,
            span_id: hex_bytes(&mut value, "spanId", "span_id")?,
            event_name: text(&mut value, "eventName", "event_name")?,
        })
    }

    fn key_values(object: &mut Value, camel: &str, snake: &str) -> Result<Vec<proto::KeyValue>> {
        array(object, camel, snake)?
            .into_iter()
            .map(|mut pair| {
                Ok(proto::KeyValue {
                    key: text(&mut pair, "key", "key")?,
                    value: take(&mut pair, "value", "value")
                        .map(any_value)
                        .transpose()?,
                })
            })
            .collect()
    }

    fn any_value(value: Value) -> Result<proto::AnyValue> {
        use proto::any_value::Value as Any;
        let Value::Object(fields) = value else {
            return Err("an AnyValue is not an object".into());
        };
        let Some((kind, mut inner)) = fields.into_iter().find(|(_, inner)| !inner.is_null()) else {
            return Ok(proto::AnyValue { value: None });
        };
        let value = match (kind.as_str(), &mut inner) {
            ("stringValue" | "string_value", Value::String(text)) => {
                Any::StringValue(std::mem::take(text))
            }
            ("boolValue" | "bool_value", Value::Bool(flag)) => Any::BoolValue(*flag),
            ("intValue" | "int_value", _) => Any::IntValue(integer_of(inner, "intValue")?),
            ("doubleValue" | "double_value", Value::Number(number)) => {
                Any::DoubleValue(number.as_f64().unwrap_or(0.0))
            }
            ("doubleValue" | "double_value", Value::String(text)) => Any::DoubleValue(
                text.parse()
                    .map_err(|_| format!("doubleValue `{text}` is not a number"))?,
            ),
            ("arrayValue" | "array_value", _) => Any::ArrayValue(proto::ArrayValue {
                values: array(&mut inner, "values", "values")?
                    .into_iter()
                    .map(any_value)
                    .collect::<Result<_>>()?,
            }),
            ("kvlistValue" | "kvlist_value", _) => Any::KvlistValue(proto::KeyValueList {
                values: key_values(&mut inner, "values", "values")?,
            }),
            ("bytesValue" | "bytes_value", Value::String(text)) => Any::BytesValue(
                base64::engine::general_purpose::STANDARD
                    .decode(text.as_bytes())
                    .map_err(|_| "bytesValue is not base64".to_owned())?,
            ),
            (kind, _) => return Err(format!("an AnyValue's `{kind}` is not understood")),
        };
        Ok(proto::AnyValue { value: Some(value) })
    }
}

/// OTLP's logs messages (opentelemetry-proto `collector/logs/v1` and `logs/v1`), the fields
/// exporters send, and `google.rpc.Status`.
pub mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportLogsServiceRequest {
        #[prost(message, repeated, tag = "1")]
        pub resource_logs: Vec<ResourceLogs>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportLogsServiceResponse {
        #[prost(message, optional, tag = "1")]
        pub partial_success: Option<ExportLogsPartialSuccess>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportLogsPartialSuccess {
        #[prost(int64, tag = "1")]
        pub rejected_log_records: i64,
        #[prost(string, tag = "2")]
        pub error_message: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceLogs {
        #[prost(message, optional, tag = "1")]
        pub resource: Option<Resource>,
        #[prost(message, repeated, tag = "2")]
        pub scope_logs: Vec<ScopeLogs>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Resource {
        #[prost(message, repeated, tag = "1")]
        pub attributes: Vec<KeyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ScopeLogs {
        #[prost(message, optional, tag = "1")]
        pub scope: Option<InstrumentationScope>,
        #[prost(message, repeated, tag = "2")]
        pub log_records: Vec<LogRecord>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct InstrumentationScope {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub version: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LogRecord {
        #[prost(fixed64, tag = "1")]
        pub time_unix_nano: u64,
        #[prost(fixed64, tag = "11")]
        pub observed_time_unix_nano: u64,
        #[prost(int32, tag = "2")]
        pub severity_number: i32,
        #[prost(string, tag = "3")]
        pub severity_text: String,
        #[prost(message, optional, tag = "5")]
        pub body: Option<AnyValue>,
        #[prost(message, repeated, tag = "6")]
        pub attributes: Vec<KeyValue>,
        #[prost(fixed32, tag = "8")]
        pub flags: u32,
        #[prost(bytes = "vec", tag = "9")]
        pub trace_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "10")]
        pub span_id: Vec<u8>,
        #[prost(string, tag = "12")]
        pub event_name: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyValue {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<AnyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AnyValue {
        #[prost(oneof = "any_value::Value", tags = "1, 2, 3, 4, 5, 6, 7")]
        pub value: Option<any_value::Value>,
    }

    pub mod any_value {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Value {
            #[prost(string, tag = "1")]
            StringValue(String),
            #[prost(bool, tag = "2")]
            BoolValue(bool),
            #[prost(int64, tag = "3")]
            IntValue(i64),
            #[prost(double, tag = "4")]
            DoubleValue(f64),
            #[prost(message, tag = "5")]
            ArrayValue(super::ArrayValue),
            #[prost(message, tag = "6")]
            KvlistValue(super::KeyValueList),
            #[prost(bytes, tag = "7")]
            BytesValue(Vec<u8>),
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ArrayValue {
        #[prost(message, repeated, tag = "1")]
        pub values: Vec<AnyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyValueList {
        #[prost(message, repeated, tag = "1")]
        pub values: Vec<KeyValue>,
    }

    /// `google.rpc.Status`: OTLP/HTTP's error body.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Status {
        #[prost(int32, tag = "1")]
        pub code: i32,
        #[prost(string, tag = "2")]
        pub message: String,
    }

    /// `SEVERITY_NUMBER_WARN2` → 14: the enum's names, as OTLP's JSON may write them.
    pub fn severity_number_of_name(name: &str) -> Option<i32> {
        const LEVELS: [&str; 6] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];
        let rest = name.strip_prefix("SEVERITY_NUMBER_")?;
        if rest == "UNSPECIFIED" {
            return Some(0);
        }
        let level = rest.trim_end_matches(|c: char| c.is_ascii_digit());
        let step: i32 = match &rest[level.len()..] {
            "" => 1,
            digits => digits.parse().ok().filter(|step| (2..=4).contains(step))?,
        };
        let index = LEVELS.iter().position(|known| *known == level)?;
        Some(index as i32 * 4 + step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPORT: &str = r#"{"resourceLogs":[{"resource":{"attributes":[
        {"key":"service.name","value":{"stringValue":"checkout"}},
        {"key":"host.name","value":{"stringValue":"web-1"}},
        {"key":"deployment.environment","value":{"stringValue":"prod"}}]},
      "scopeLogs":[{"scope":{"name":"app.payments"},"logRecords":[
        {"timeUnixNano":"1764740000123456789","severityNumber":17,"severityText":"ERROR",
         "body":{"stringValue":"card declined"},
         "attributes":[{"key":"http.status_code","value":{"intValue":"402"}}],
         "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"},
        {"observedTimeUnixNano":1764740000000000000,"severityText":"warning",
         "body":{"kvlistValue":{"values":[{"key":"user","value":{"stringValue":"ann"}}]}}}]}]}]}"#;

    #[test]
    fn json_and_protobuf_give_the_same_records() {
        let logs = decode(EXPORT.as_bytes(), Encoding::Json).unwrap();
        assert_eq!(logs.len(), 2);
        let request = json::request(serde_json::from_str(EXPORT).unwrap()).unwrap();
        let from_protobuf = decode(&request.encode_to_vec(), Encoding::Protobuf).unwrap();
        assert_eq!(logs, from_protobuf);

        let first = log_record(&logs[0], "r-0", Utc::now()).unwrap();
        assert_eq!(first.service, "checkout");
        assert_eq!(first.severity, logagg::Severity::Error);
        assert_eq!(first.message, "card declined");
        assert_eq!(first.host.as_deref(), Some("web-1"));
        assert_eq!(first.attributes["deployment_environment"], "prod");
        assert_eq!(first.attributes["http_status_code"], 402);
        assert_eq!(
            first.attributes["trace_id"],
            "5b8efff798038103d269b633813fc60c"
        );
        assert_eq!(first.attributes["span_id"], "eee19b7ec3c1b174");
        assert_eq!(first.attributes["otel_scope"], "app.payments");
        assert_eq!(
            first
                .timestamp
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "2025-12-03T05:33:20.123Z"
        );
        let second = log_record(&logs[1], "r-1", Utc::now()).unwrap();
        assert_eq!(second.severity, logagg::Severity::Warn, "from the text");
        assert_eq!(
            second.message, r#"{"user":"ann"}"#,
            "a structured body as JSON"
        );
        assert_eq!(
            second.timestamp.timestamp(),
            1_764_740_000,
            "the observed time"
        );
    }

    #[test]
    fn severity_numbers_map_by_range_and_by_name() {
        assert_eq!(severity_of_number(4), Some("trace"));
        assert_eq!(severity_of_number(13), Some("warn"));
        assert_eq!(severity_of_number(24), Some("fatal"));
        assert_eq!(severity_of_number(0), None);
        assert_eq!(
            proto::severity_number_of_name("SEVERITY_NUMBER_WARN2"),
            Some(14)
        );
        assert_eq!(
            proto::severity_number_of_name("SEVERITY_NUMBER_INFO"),
            Some(9)
        );
        assert_eq!(
            proto::severity_number_of_name("SEVERITY_NUMBER_FATAL4"),
            Some(24)
        );
        assert_eq!(
            proto::severity_number_of_name("SEVERITY_NUMBER_INFO9"),
            None
        );
    }

    #[test]
    fn a_resource_without_service_name_refuses_its_records_with_the_reason() {
        let body =
            r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"x"}}]}]}]}"#;
        let logs = decode(body.as_bytes(), Encoding::Json).unwrap();
        let refused = log_record(&logs[0], "r-0", Utc::now()).unwrap_err();
        assert!(refused.contains("service.name"), "{refused}");
        for bad in [
            "[]",
            r#"{"resourceLogs":{}}"#,
            r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"traceId":"xyz"}]}]}]}"#,
        ] {
            assert!(decode(bad.as_bytes(), Encoding::Json).is_err(), "{bad}");
        }
    }

    /// JSON values built from OTLP's own field names, nested: shapes a sender might get
    /// wrong in every way.
    fn otlp_shaped_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|number| serde_json::json!(number)),
            "[0-9a-fA-Z_ ]{0,12}".prop_map(Value::from),
        ];
        let names = prop_oneof![
            Just("resourceLogs"),
            Just("resource"),
            Just("attributes"),
            Just("scopeLogs"),
            Just("scope"),
            Just("name"),
            Just("logRecords"),
            Just("timeUnixNano"),
            Just("observedTimeUnixNano"),
            Just("severityNumber"),
            Just("severityText"),
            Just("body"),
            Just("key"),
            Just("value"),
            Just("stringValue"),
            Just("intValue"),
            Just("doubleValue"),
            Just("boolValue"),
            Just("bytesValue"),
            Just("arrayValue"),
            Just("kvlistValue"),
            Just("values"),
            Just("traceId"),
            Just("spanId"),
        ];
        leaf.prop_recursive(6, 96, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::vec((names.clone(), inner), 0..5).prop_map(|pairs| {
                    Value::Object(
                        pairs
                            .into_iter()
                            .map(|(name, value)| (name.to_owned(), value))
                            .collect(),
                    )
                }),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn no_json_shape_makes_the_decoder_or_mapping_panic(value in otlp_shaped_json()) {
            if let Ok(logs) = decode(value.to_string().as_bytes(), Encoding::Json) {
                for log in &logs {
                    let _ = log_record(log, "r-0", Utc::now());
                }
            }
        }

        #[test]
        fn no_body_makes_the_decoders_panic(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            if let Ok(logs) = decode(&body, Encoding::Protobuf) {
                for log in &logs {
                    let _ = log_record(log, "r-0", Utc::now());
                }
            }
            let _ = decode(&body, Encoding::Json);
        }
    }
}
