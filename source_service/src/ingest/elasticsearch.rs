//! The Elasticsearch bulk API on the gateway, for Filebeat, Logstash, Fluent Bit's `es`
//! output, Vector's `elasticsearch` sink, rsyslog's `omelasticsearch` and the Elasticsearch
//! clients: `POST /_bulk` and `POST /{index}/_bulk` with `index` and `create` actions, and
//! the calls shippers make before they send (`GET /`, `GET /_license`,
//! `GET /_cluster/health`, index templates and ILM policies: accepted, nothing to do).
//! Every answer carries `X-Elastic-Product: Elasticsearch`, which clients check.
//!
//! Each document becomes a record through the gateway's JSON path. Message from `message`,
//! else `log`, `msg`, `short_message`; time from `@timestamp`; ECS fields mapped
//! (`service.name`, `log.level`, `host.name`, `http.request.method`, `url.path`,
//! `http.response.status_code`, `event.duration` in nanoseconds), nested or dotted; every
//! other field an attribute. The service, when the document names none, is the index's
//! name, or a data stream's dataset (`logs-checkout-default` → `checkout`). A document's id
//! is its `_id` when the action gives one, else the request's content and the document's
//! position, so a retried request stores nothing twice. `update` and `delete` are refused
//! per item: logs are append-only.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::Utc;
use logagg::auth::Caller;
use logagg::LogRecord;
use serde_json::{json, Map, Value};

use super::gateway::{ingest, object_record, Gateway, GatewayError, Ingested, Protocol};

/// The header Elasticsearch clients (8 and later) require on every answer.
pub const PRODUCT_HEADER: &str = "x-elastic-product";

/// The Elasticsearch version shippers are told: one every current shipper accepts.
const VERSION: &str = "8.17.0";

/// Adds [`PRODUCT_HEADER`] to an answer of these routes.
pub async fn product_header(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(PRODUCT_HEADER, HeaderValue::from_static("Elasticsearch"));
    response
}

/// `GET /` (and `HEAD /`): who we are, as shippers check it.
pub async fn root() -> Json<Value> {
    Json(json!({
        "name": "logagg",
        "cluster_name": "logagg",
        "cluster_uuid": "logagg",
        "version": {
            "number": VERSION,
            "build_flavor": "default",
            "build_type": "docker",
            "lucene_version": "9.12.0",
            "minimum_wire_compatibility_version": "7.17.0",
            "minimum_index_compatibility_version": "7.0.0"
        },
        "tagline": "You Know, for Search"
    }))
}

/// `GET /_license`: a basic license, active (Filebeat and Logstash ask).
pub async fn license() -> Json<Value> {
    Json(json!({
        "license": { "status": "active", "uid": "logagg", "type": "basic", "mode": "basic",
                     "issue_date_in_millis": 0, "max_nodes": 1000 }
    }))
}

/// `GET /_cluster/health`.
pub async fn health() -> Json<Value> {
    Json(json!({
        "cluster_name": "logagg", "status": "green", "timed_out": false,
        "number_of_nodes": 1, "number_of_data_nodes": 1
    }))
}

/// Index templates, ILM policies and the like: accepted, nothing to do.
pub async fn accepted() -> Json<Value> {
    Json(json!({ "acknowledged": true }))
}

/// `POST /_bulk`.
pub async fn bulk(
    State(gateway): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    request: Request,
) -> Response {
    bulk_into(gateway, caller, None, request).await
}

/// `POST /{index}/_bulk`: `index` for actions that name none.
pub async fn bulk_index(
    State(gateway): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Path(index): Path<String>,
    request: Request,
) -> Response {
    bulk_into(gateway, caller, Some(index), request).await
}

async fn bulk_into(
    gateway: Arc<Gateway>,
    caller: Caller,
    default_index: Option<String>,
    request: Request,
) -> Response {
    let started = Instant::now();
    let outcome = ingest(
        &gateway,
        &caller,
        Protocol::Elasticsearch,
        request,
        |body| parse_bulk(body.text()?, default_index.as_deref()).map_err(GatewayError::BadRequest),
        |item, positioned, received_at| {
            let id = item.id.clone().unwrap_or(positioned);
            item.document
                .clone()
                .and_then(|document| document_record(document, &item.index, &id, received_at))
        },
    );
    match outcome.await {
        Ok(Ingested { items, ids, report }) => {
            let mut refused: Vec<Option<String>> = vec![None; items.len()];
            for error in report.errors {
                if let Some(slot) = refused.get_mut(error.index) {
                    *slot = Some(error.reason);
                }
            }
            let answers: Vec<Value> = items
                .iter()
                .zip(ids)
                .zip(refused)
                .map(|((item, id), reason)| item_answer(item, id, reason))
                .collect();
            Json(json!({
                "took": u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                "errors": report.rejected > 0,
                "items": answers,
            }))
            .into_response()
        }
        Err(error) => error_answer(error),
    }
}

/// A request refused as a whole, in Elasticsearch's error shape (`{"error":{"type",
/// "reason"},"status"}`), with the gateway's status and `Retry-After`.
fn error_answer(error: GatewayError) -> Response {
    let reason = error.to_string();
    let mut response = error.into_response();
    let status = response.status();
    let kind = match status {
        StatusCode::TOO_MANY_REQUESTS => "es_rejected_execution_exception",
        StatusCode::PAYLOAD_TOO_LARGE => "content_too_long_exception",
        status if status.is_server_error() => "unavailable_shards_exception",
        _ => "parse_exception",
    };
    let body = json!({ "error": { "type": kind, "reason": reason }, "status": status.as_u16() });
    *response.body_mut() = axum::body::Body::from(body.to_string());
    response
}

/// One action of a bulk body.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkItem {
    /// `index` or `create` (stored), `update` or `delete` (refused).
    pub action: String,
    pub index: String,
    pub id: Option<String>,
    /// The document, or why the item is refused.
    pub document: Result<Map<String, Value>, String>,
}

/// The items of a bulk body. A malformed action line refuses the request (as
/// Elasticsearch does); a source line that is no JSON object refuses its item only.
pub fn parse_bulk(text: &str, default_index: Option<&str>) -> Result<Vec<BulkItem>, String> {
    let mut lines = text.lines().filter(|line| !line.trim().is_empty());
    let mut items = Vec::new();
    while let Some(line) = lines.next() {
        let number = items.len();
        let action: Map<String, Value> = serde_json::from_str(line)
            .map_err(|error| format!("action {number}: malformed action line: {error}"))?;
        let (name, metadata) = match action.into_iter().next() {
            Some((name, Value::Object(metadata))) => (name, metadata),
            _ => return Err(format!("action {number}: malformed action line")),
        };
        let index = metadata
            .get("_index")
            .and_then(Value::as_str)
            .or(default_index)
            .unwrap_or("")
            .to_owned();
        let id = metadata
            .get("_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let document = match name.as_str() {
            "index" | "create" | "update" => {
                let source = lines.next().ok_or_else(|| {
                    format!("action {number}: `{name}` without its document line")
                })?;
                if name == "update" {
                    Err(append_only())
                } else {
                    match serde_json::from_str::<Value>(source) {
                        Ok(Value::Object(document)) => Ok(document),
                        Ok(_) => Err("the document is not a JSON object".to_owned()),
                        Err(error) => Err(format!("the document is not valid JSON: {error}")),
                    }
                }
            }
            "delete" => Err(append_only()),
            other => return Err(format!("action {number}: unknown action `{other}`")),
        };
        items.push(BulkItem {
            action: name,
            index,
            id,
            document,
        });
    }
    Ok(items)
}

fn append_only() -> String {
    "logagg stores logs append-only: update and delete are not supported".to_owned()
}

fn item_answer(item: &BulkItem, id: Option<String>, refused: Option<String>) -> Value {
    let id = id.or_else(|| item.id.clone()).unwrap_or_default();
    let answer = match refused {
        None => json!({
            "_index": item.index, "_id": id, "_version": 1, "result": "created", "status": 201,
            "_shards": { "total": 1, "successful": 1, "failed": 0 },
            "_seq_no": 0, "_primary_term": 1
        }),
        Some(reason) => json!({
            "_index": item.index, "_id": id, "status": 400,
            "error": { "type": error_type(&item.action), "reason": reason }
        }),
    };
    json!({ item.action.clone(): answer })
}

fn error_type(action: &str) -> &'static str {
    match action {
        "update" | "delete" => "illegal_argument_exception",
        _ => "document_parsing_exception",
    }
}

/// Removes the value at `path` from `document`: nested (`{"service":{"name":…}}`) or
/// dotted (`{"service.name":…}`). An object left empty goes too.
fn take(document: &mut Map<String, Value>, path: &[&str]) -> Option<Value> {
    if let Some(value) = document.remove(&path.join(".")) {
        return Some(value);
    }
    let (first, rest) = path.split_first()?;
    if rest.is_empty() {
        return document.remove(*first);
    }
    let Some(Value::Object(inner)) = document.get_mut(*first) else {
        return None;
    };
    let value = take(inner, rest);
    if inner.is_empty() {
        document.remove(*first);
    }
    value
}

/// The service an index stands for: a data stream's dataset (`logs-<dataset>-<namespace>`)
/// or the index's name.
fn index_service(index: &str) -> &str {
    let parts: Vec<&str> = index.splitn(3, '-').collect();
    match parts.as_slice() {
        ["logs", dataset, _namespace] if !dataset.is_empty() => dataset,
        _ => index,
    }
}

/// A document as a record, through the gateway's JSON path.
fn document_record(
    mut document: Map<String, Value>,
    index: &str,
    id: &str,
    received_at: chrono::DateTime<Utc>,
) -> Result<LogRecord, String> {
    let mut record = Map::new();
    let service = match take(&mut document, &["service", "name"]) {
        Some(service) => service,
        None => match document.remove("service") {
            Some(Value::String(service)) => Value::String(service),
            Some(other) => {
                document.insert("service".into(), other);
                Value::String(index_service(index).to_owned())
            }
            None => Value::String(index_service(index).to_owned()),
        },
    };
    if service.as_str().is_some_and(str::is_empty) {
        return Err("no service: give `service.name`, or bulk into an index named after it".into());
    }
    record.insert("service".into(), service);
    let message = ["message", "log", "msg", "short_message"]
        .iter()
        .find_map(|key| match document.get(*key) {
            Some(Value::String(_)) => document.remove(*key),
            _ => None,
        })
        .ok_or("no message: give `message` (or `log`, `msg`, `short_message`)")?;
    record.insert("message".into(), message);
    let severity = take(&mut document, &["log", "level"])
        .or_else(|| document.remove("level"))
        .or_else(|| document.remove("severity"))
        .unwrap_or_else(|| Value::String("info".into()));
    record.insert("severity".into(), severity);
    if let Some(time) = document.remove("@timestamp") {
        record.insert("timestamp".into(), time);
    }
    if let Some(host) = take(&mut document, &["host", "name"]) {
        record.insert("host".into(), host);
    }
    let mut http = Map::new();
    for (path, field) in [
        (&["http", "request", "method"][..], "method"),
        (&["url", "path"][..], "path"),
        (&["http", "response", "status_code"][..], "status"),
    ] {
        if let Some(value) = take(&mut document, path) {
            http.insert(field.into(), value);
        }
    }
    if let Some(nanos) = take(&mut document, &["event", "duration"]) {
        let millis = nanos.as_f64().map(|nanos| nanos / 1e6);
        http.insert("duration_ms".into(), millis.map_or(nanos, Value::from));
    }
    if !http.is_empty() {
        record.insert("http".into(), Value::Object(http));
    }
    record.insert("attributes".into(), Value::Object(document));
    object_record(record, id, received_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecs_documents_map_onto_records() {
        let body = concat!(
            r#"{"create":{"_index":"logs-checkout-default"}}"#,
            "\n",
            r#"{"@timestamp":"2026-12-03T05:00:00.123Z","message":"GET /cart 200","log":{"level":"warn"},"host.name":"web-1","http":{"request":{"method":"GET"},"response":{"status_code":200}},"url":{"path":"/cart"},"event":{"duration":1500000},"trace":{"id":"abc"}}"#,
            "\n",
            r#"{"index":{"_id":"given-1"}}"#,
            "\n",
            r#"{"service":{"name":"payments"},"msg":"paid","level":"error"}"#,
            "\n",
            r#"{"delete":{"_id":"x"}}"#,
            "\n",
            r#"{"index":{}}"#,
            "\n",
            "[1,2]\n",
        );
        let items = parse_bulk(body, Some("fallback")).unwrap();
        assert_eq!(items.len(), 4);
        let first = document_record(
            items[0].document.clone().unwrap(),
            &items[0].index,
            "a",
            Utc::now(),
        )
        .unwrap();
        assert_eq!(
            (first.service.as_str(), first.severity),
            ("checkout", logagg::Severity::Warn)
        );
        assert_eq!(first.host.as_deref(), Some("web-1"));
        let http = first.http.unwrap();
        assert_eq!(
            (
                http.method.as_deref(),
                http.path.as_deref(),
                http.status,
                http.duration_ms
            ),
            (Some("GET"), Some("/cart"), Some(200), Some(1.5))
        );
        assert_eq!(first.attributes["trace"]["id"], "abc");
        assert_eq!(items[1].id.as_deref(), Some("given-1"));
        assert_eq!(items[1].index, "fallback");
        let second = document_record(
            items[1].document.clone().unwrap(),
            &items[1].index,
            "b",
            Utc::now(),
        )
        .unwrap();
        assert_eq!(
            (second.service.as_str(), second.message.as_str()),
            ("payments", "paid")
        );
        assert!(items[2]
            .document
            .as_ref()
            .unwrap_err()
            .contains("append-only"));
        assert!(items[3]
            .document
            .as_ref()
            .unwrap_err()
            .contains("not a JSON object"));
        assert!(
            parse_bulk("{\"index\":{}}\n", None).is_err(),
            "no document line"
        );
        assert!(parse_bulk("{\"upsert\":{}}\n{}\n", None).is_err());
        assert!(parse_bulk("not json\n", None).is_err());
    }

    proptest::proptest! {
        #[test]
        fn no_bulk_body_panics(body in "[\\{\\}\\[\\]\":a-z_ ,\n0-9]{0,300}") {
            if let Ok(items) = parse_bulk(&body, Some("i")) {
                for item in items {
                    if let Ok(document) = item.document {
                        let _ = document_record(document, &item.index, "p", Utc::now());
                    }
                }
            }
        }
    }
}
