//! The HTTP ingest gateway: `POST /api/v1/logs` (a JSON record, a JSON array or NDJSON)
//! and `POST /api/v1/logs/raw?format=…&service=…` (text lines in a named format). Every
//! record is validated and normalised, published persistent and mandatory with publisher
//! confirms, and the client hears 202 only once the broker confirmed them all.
//!
//! Memory is bounded: bodies by `gateway.max_body_bytes` (after gzip or deflate) and
//! `gateway.body_timeout_ms`, records per request by `gateway.max_records`, and records
//! awaiting confirms across requests by `gateway.max_unconfirmed` (503 with Retry-After
//! beyond, never a queue). Each key, or client address without keys, has a token bucket of
//! `gateway.rate_per_second` records (429 with Retry-After).

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{middleware, Extension, Json, Router};
use chrono::{DateTime, Utc};
use logagg::auth::{self, Caller, Guard};
use logagg::formats::{parse_line, LineContext, LineFormat};
use logagg::http_error::{error_response, ErrorBody, ErrorCode};
use logagg::parse::{parse_message, record_body, Envelope};
use logagg::publisher::{GiveUp, Outgoing, PublishError, Resender, Settled};
use logagg::record::{positioned_id, request_id};
use logagg::runtime::{Declare, LazyChannel};
use logagg::settings::{AuthSettings, BrokerSettings, GatewaySettings, Scope};
use logagg::telemetry::Health;
use logagg::{broker, LogRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Semaphore;
use tracing::warn;

/// Records by protocol (`json`, `lines`, `loki`, `elasticsearch`, `otlp`, `syslog`, `gelf`) and outcome (`accepted`:
/// confirmed by the broker; `rejected`: refused with a reason).
const RECORDS: &str = "logagg_ingest_records_total";

/// The protocol a request came in by: a label of [`RECORDS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `POST /api/v1/logs`.
    Json,
    /// `POST /api/v1/logs/raw`.
    Lines,
    Loki,
    Elasticsearch,
    Otlp,
    Syslog,
    Gelf,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Json => "json",
            Protocol::Lines => "lines",
            Protocol::Loki => "loki",
            Protocol::Elasticsearch => "elasticsearch",
            Protocol::Otlp => "otlp",
            Protocol::Syslog => "syslog",
            Protocol::Gelf => "gelf",
        }
    }
}
const REFUSED: &str = "logagg_gateway_requests_refused_total";

/// Why a request was refused as a whole.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A query parameter is missing or wrong; the message names it.
    #[error("{0}")]
    BadParameter(String),
    /// The body (or how it is encoded) cannot be read.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("over this key's rate; retry in {retry_after} s")]
    TooManyRequests { retry_after: u64 },
    /// The broker is unreachable, refused, or confirms lag.
    #[error("{reason}")]
    Unavailable { reason: String, retry_after: u64 },
}

impl GatewayError {
    fn status_and_code(&self) -> (StatusCode, ErrorCode) {
        match self {
            GatewayError::BadParameter(_) => (StatusCode::BAD_REQUEST, ErrorCode::BadParameter),
            GatewayError::BadRequest(_) => (StatusCode::BAD_REQUEST, ErrorCode::BadRequest),
            GatewayError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::TooLarge),
            GatewayError::TooManyRequests { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited)
            }
            GatewayError::Unavailable { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable)
            }
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            GatewayError::TooManyRequests { retry_after }
            | GatewayError::Unavailable { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        metrics::counter!(REFUSED, "code" => code.as_str()).increment(1);
        let retry_after = self.retry_after();
        let mut response = error_response(status, code, self.to_string());
        if let Some(seconds) = retry_after {
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(RETRY_AFTER, value);
            }
        }
        response
    }
}

/// One rejected record or line: its index in the request (0-based) and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    pub index: usize,
    pub reason: String,
}

/// The answer to an ingest request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestReport {
    pub accepted: usize,
    pub rejected: usize,
    pub errors: Vec<Rejection>,
}

/// Everything the handlers share.
pub struct Gateway {
    settings: GatewaySettings,
    publisher: BrokerLink,
    limiter: RateLimiter,
    unconfirmed: Arc<Semaphore>,
    /// What the admin server's `/healthz` reports.
    pub health: Health,
}

impl Gateway {
    pub fn new(settings: GatewaySettings, broker: BrokerSettings) -> Arc<Gateway> {
        // Healthy once listening; the broker check joins at the first channel opened.
        let health = Health::default();
        health.set("listening", true);
        Arc::new(Gateway {
            limiter: RateLimiter::new(settings.rate_per_second, settings.burst),
            unconfirmed: Arc::new(Semaphore::new(settings.max_unconfirmed)),
            publisher: BrokerLink {
                channel: LazyChannel::new(broker, "source_service-gateway", Declare::LogTopology),
                health: health.clone(),
            },
            health,
            settings,
        })
    }
}

/// The gateway's routes; with keys configured, each wants one with the `ingest` scope
/// (`gateway.api_keys`, deprecated, count as unscoped keys of the gateway).
pub fn router(gateway: Arc<Gateway>, auth: &AuthSettings) -> Router {
    let guard = ingest_guard(&gateway, auth);
    Router::new()
        .route("/api/v1/logs", post(ingest_json))
        .route("/api/v1/logs/raw", post(ingest_raw))
        .route(super::loki::PUSH_PATH, post(super::loki::push))
        .route(super::otlp::LOGS_PATH, post(super::otlp::export))
        .route(super::gelf::HTTP_PATH, post(super::gelf::post))
        .merge(elasticsearch_routes())
        .route_layer(middleware::from_fn(to_completion))
        .route_layer(middleware::from_fn_with_state(guard, auth::authorize))
        .route(super::loki::READY_PATH, get(super::loki::ready))
        .fallback(|| async {
            error_response(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such route")
        })
        .with_state(gateway)
}

/// The OTLP listener's one route (`otlp.listen`), with the gateway's keys.
pub fn otlp_router(gateway: Arc<Gateway>, auth: &AuthSettings) -> Router {
    let guard = ingest_guard(&gateway, auth);
    Router::new()
        .route(super::otlp::LOGS_PATH, post(super::otlp::export))
        .route_layer(middleware::from_fn(to_completion))
        .route_layer(middleware::from_fn_with_state(guard, auth::authorize))
        .fallback(|| async {
            error_response(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such route")
        })
        .with_state(gateway)
}

/// Runs a request's handler to its end even when hyper drops it: an HTTP/2 stream the
/// client resets, or a connection still open when the drain after shutdown ends, leaves
/// no request half-published. (An HTTP/1 client that sends and closes is the listener's
/// [`HangUp::Finishes`](logagg::http_server::HangUp::Finishes): hyper then never drops it.)
async fn to_completion(request: Request, next: middleware::Next) -> Response {
    match tokio::spawn(next.run(request)).await {
        Ok(response) => response,
        Err(error) => {
            warn!(%error, "an ingest handler failed");
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
                "the request could not be handled",
            )
        }
    }
}

fn ingest_guard(gateway: &Gateway, auth: &AuthSettings) -> Guard {
    Guard::new(
        auth,
        Scope::Ingest,
        Some(("gateway.api_keys", &gateway.settings.api_keys)),
    )
}

/// The Elasticsearch API's routes, each answer marked as Elasticsearch's.
fn elasticsearch_routes() -> Router<Arc<Gateway>> {
    use super::elasticsearch as es;
    Router::new()
        .route("/", get(es::root))
        .route("/_license", get(es::license))
        .route("/_cluster/health", get(es::health))
        .route("/_bulk", post(es::bulk).put(es::bulk))
        .route("/{index}/_bulk", post(es::bulk_index).put(es::bulk_index))
        .route("/_index_template/{name}", any(es::accepted))
        .route("/_template/{name}", any(es::accepted))
        .route("/_ilm/policy/{name}", any(es::accepted))
        .layer(middleware::map_response(es::product_header))
}

async fn ingest_json(
    State(gateway): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    request: Request,
) -> Response {
    let outcome = ingest(
        &gateway,
        &caller,
        Protocol::Json,
        request,
        |body| json_items(body.text()?, &body.content_type),
        |item, id, received_at| json_record(item.as_bytes(), &id, received_at),
    );
    respond(outcome.await.map(|ingested| ingested.report))
}

/// A request's items, the ids their records were given (`None` where refused before a
/// record was made), and the report.
pub(crate) struct Ingested<T> {
    pub(crate) items: Vec<T>,
    pub(crate) ids: Vec<Option<String>>,
    pub(crate) report: IngestReport,
}

/// The path every HTTP protocol shares: reads the body within the limits, lets the
/// protocol `decode` it into items, checks their count, makes each item a record
/// (`record` is given the item's positioned id: the request's content and the item's
/// position, so a retried request maps to the same records), and publishes them all.
pub(crate) async fn ingest<T>(
    gateway: &Gateway,
    caller: &Caller,
    protocol: Protocol,
    request: Request,
    decode: impl FnOnce(&RequestBody) -> Result<Vec<T>, GatewayError>,
    record: impl Fn(&T, String, DateTime<Utc>) -> Result<LogRecord, String>,
) -> Result<Ingested<T>, GatewayError> {
    let received_at = Utc::now();
    let body = read_body(gateway, caller, protocol, request).await?;
    let items = decode(&body)?;
    check_count(gateway, items.len())?;
    let parsed: Vec<Result<LogRecord, String>> = items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            record(
                item,
                positioned_id(&body.request_id, index as u64),
                received_at,
            )
        })
        .collect();
    let ids = parsed
        .iter()
        .map(|record| record.as_ref().ok().map(|record| record.id.clone()))
        .collect();
    let report = publish_all(gateway, caller, protocol, &body.rate_key, parsed).await?;
    Ok(Ingested { items, ids, report })
}

/// A JSON record (our shape, or one a protocol module built) as the collector parses it:
/// every protocol's records pass the same checks and limits.
pub(crate) fn json_record(
    json: &[u8],
    id: &str,
    received_at: chrono::DateTime<Utc>,
) -> Result<LogRecord, String> {
    parse_message(&Envelope {
        routing_key: "",
        body: json,
        content_type: Some("application/json"),
        message_id: Some(id),
        amqp_timestamp: None,
        received_at,
    })
    .map_err(|error| error.to_string())
}

/// A JSON object a protocol module mapped its fields into, as a record: the checks of
/// [`json_record`] without writing the object out and reading it back.
pub(crate) fn object_record(
    object: serde_json::Map<String, Value>,
    id: &str,
    received_at: chrono::DateTime<Utc>,
) -> Result<LogRecord, String> {
    logagg::parse::record_from_json_object(object, id, received_at)
        .map_err(|error| error.to_string())
}

/// Query of `POST /api/v1/logs/raw`.
#[derive(Debug, Deserialize)]
pub struct RawQuery {
    pub format: String,
    pub service: Option<String>,
}

async fn ingest_raw(
    State(gateway): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<RawQuery>, axum::extract::rejection::QueryRejection>,
    request: Request,
) -> Response {
    let outcome = async {
        let Query(query) = query.map_err(|_| {
            GatewayError::BadParameter("`format` is required: ?format=clf&service=web".into())
        })?;
        let format: LineFormat = query.format.parse().map_err(GatewayError::BadParameter)?;
        if let Some(service) = &query.service {
            logagg::parse::validate_service(service)
                .map_err(|error| GatewayError::BadParameter(format!("`service`: {error}")))?;
        }
        let ingested = ingest(
            &gateway,
            &caller,
            Protocol::Lines,
            request,
            |body| {
                let lines: Vec<String> = body
                    .text()?
                    .lines()
                    .filter(|line| !line.trim().is_empty())
                    .map(str::to_owned)
                    .collect();
                Ok(lines)
            },
            |line, id, received_at| {
                let context = LineContext {
                    service: query.service.as_deref(),
                    received_at,
                };
                parse_line(format, line, id, &context).map_err(|error| error.to_string())
            },
        )
        .await?;
        Ok(ingested.report)
    };
    respond(outcome.await)
}

fn respond(outcome: Result<IngestReport, GatewayError>) -> Response {
    match outcome {
        Ok(report) if report.accepted == 0 => {
            let mut body = serde_json::to_value(&report).unwrap_or(Value::Null);
            body["error"] = ErrorBody::new(
                ErrorCode::NoValidRecord,
                "every record was rejected; see errors",
            )
            .to_json()["error"]
                .take();
            (StatusCode::BAD_REQUEST, Json(body)).into_response()
        }
        Ok(report) => (StatusCode::ACCEPTED, Json(report)).into_response(),
        Err(error) => error.into_response(),
    }
}

pub(crate) fn check_count(gateway: &Gateway, count: usize) -> Result<(), GatewayError> {
    if count == 0 {
        return Err(GatewayError::BadRequest("the body holds no record".into()));
    }
    if count > gateway.settings.max_records {
        return Err(GatewayError::TooLarge(format!(
            "{count} records; at most {} per request",
            gateway.settings.max_records
        )));
    }
    Ok(())
}

/// An ingest request's body, read and checked.
pub(crate) struct RequestBody {
    /// Whose token bucket the records are taken from: the key's name, else (an open
    /// gateway) the client address.
    pub(crate) rate_key: String,
    /// Lower-cased `Content-Type`, empty without one.
    pub(crate) content_type: String,
    /// The body, inflated when the client said gzip or deflate.
    pub(crate) bytes: Vec<u8>,
    /// [`request_id`] of the route, query and (inflated) body: item `n`'s record id is
    /// `<request_id>-<n>`, so a retried request maps to the same records and identical
    /// items of one request or of two different requests stay distinct.
    pub(crate) request_id: String,
}

impl RequestBody {
    /// The body as text: the JSON and line routes want UTF-8.
    pub(crate) fn text(&self) -> Result<&str, GatewayError> {
        std::str::from_utf8(&self.bytes)
            .map_err(|_| GatewayError::BadRequest("the body is not UTF-8".into()))
    }
}

/// Reads the body within the size and time limits, inflating it when the client says so
/// (GELF: when its bytes say so, its clients' `Content-Encoding` being wrong).
async fn read_body(
    gateway: &Gateway,
    caller: &Caller,
    protocol: Protocol,
    request: Request,
) -> Result<RequestBody, GatewayError> {
    let limit = gateway.settings.max_body_bytes;
    let route_and_query = request
        .uri()
        .path_and_query()
        .map_or_else(|| request.uri().path().to_owned(), ToString::to_string);
    let too_large = || GatewayError::TooLarge(format!("body over {limit} bytes"));
    let headers = request.headers();
    let rate_key = match &caller.key {
        Some(name) => format!("key:{name}"),
        None => request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(
                || "anonymous".to_owned(),
                |info| format!("ip:{}", info.0.ip()),
            ),
    };
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let declared = headers
        .get(CONTENT_ENCODING)
        .and_then(|value| value.to_str().ok())
        .map(str::trim);
    let encoding = match declared {
        _ if protocol == Protocol::Gelf => None,
        None | Some("identity" | "") => Some(BodyEncoding::Identity),
        Some(encoding) if encoding.eq_ignore_ascii_case("gzip") => Some(BodyEncoding::Gzip),
        Some(encoding) if encoding.eq_ignore_ascii_case("deflate") => Some(BodyEncoding::Deflate),
        Some(other) => {
            return Err(GatewayError::BadRequest(format!(
                "Content-Encoding `{other}` is not supported; send gzip, deflate or nothing"
            )))
        }
    };
    let timeout = gateway.settings.body_timeout_ms;
    let bytes = tokio::time::timeout(timeout, axum::body::to_bytes(request.into_body(), limit))
        .await
        .map_err(|_| GatewayError::BadRequest("the body took too long to arrive".into()))?
        .map_err(|_| too_large())?;
    let bytes = encoding
        .unwrap_or_else(|| BodyEncoding::sniff(&bytes))
        .inflate(&bytes, limit)
        .map_err(|error| match error {
            InflateError::TooLarge => too_large(),
            InflateError::Invalid(name) => {
                GatewayError::BadRequest(format!("the body is not valid {name}"))
            }
        })?;
    let id = request_id(&route_and_query, &bytes);
    Ok(RequestBody {
        rate_key,
        content_type,
        bytes,
        request_id: id,
    })
}

/// A body's `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyEncoding {
    Identity,
    Gzip,
    /// zlib-wrapped as HTTP means it; a raw deflate stream, as some clients send, too.
    Deflate,
}

enum InflateError {
    TooLarge,
    Invalid(&'static str),
}

impl BodyEncoding {
    /// The encoding a body's first bytes show: gzip's magic, zlib's header, else none.
    fn sniff(bytes: &[u8]) -> BodyEncoding {
        match bytes {
            [0x1f, 0x8b, ..] => BodyEncoding::Gzip,
            [0x78, ..] => BodyEncoding::Deflate,
            _ => BodyEncoding::Identity,
        }
    }

    /// The body as sent, at most `limit` bytes once inflated.
    fn inflate(self, bytes: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
        fn read_all(reader: impl Read, limit: usize) -> std::io::Result<Vec<u8>> {
            let mut inflated = Vec::new();
            reader.take(limit as u64 + 1).read_to_end(&mut inflated)?;
            Ok(inflated)
        }
        let inflated = match self {
            BodyEncoding::Identity => return Ok(bytes.to_vec()),
            BodyEncoding::Gzip => read_all(flate2::read::GzDecoder::new(bytes), limit)
                .map_err(|_| InflateError::Invalid("gzip"))?,
            BodyEncoding::Deflate => read_all(flate2::read::ZlibDecoder::new(bytes), limit)
                .or_else(|_| read_all(flate2::read::DeflateDecoder::new(bytes), limit))
                .map_err(|_| InflateError::Invalid("deflate"))?,
        };
        if inflated.len() > limit {
            return Err(InflateError::TooLarge);
        }
        Ok(inflated)
    }
}

/// The JSON items of a body: an array's elements, NDJSON's lines, or the one object.
fn json_items(text: &str, content_type: &str) -> Result<Vec<String>, GatewayError> {
    let trimmed = text.trim();
    if trimmed.starts_with('[') {
        let items: Vec<Value> = serde_json::from_str(trimmed)
            .map_err(|error| GatewayError::BadRequest(format!("invalid JSON array: {error}")))?;
        return Ok(items.iter().map(Value::to_string).collect());
    }
    let lines: Vec<&str> = trimmed
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    if content_type.contains("ndjson") || lines.len() > 1 {
        return Ok(lines.into_iter().map(str::to_owned).collect());
    }
    Ok(lines.into_iter().map(str::to_owned).collect())
}

/// Rate-limits, then publishes every parsed record whose service the caller's key may
/// write, and waits for all confirms; the others are refused with the reason.
pub(crate) async fn publish_all(
    gateway: &Gateway,
    caller: &Caller,
    protocol: Protocol,
    rate_key: &str,
    parsed: Vec<Result<LogRecord, String>>,
) -> Result<IngestReport, GatewayError> {
    let exchange = gateway.publisher.exchange();
    let mut messages = Vec::with_capacity(parsed.len());
    let mut errors = Vec::new();
    for (index, result) in parsed.into_iter().enumerate() {
        match result {
            Ok(record) if !caller.services.admits(&record.service) => errors.push(Rejection {
                index,
                reason: format!(
                    "service `{}` is not among the services key `{}` may write",
                    record.service,
                    caller.name()
                ),
            }),
            Ok(record) => {
                // Written once here, and checked as the collector will read it.
                let message = record_message(&exchange, &record);
                if message.body.len() > logagg::parse::MAX_BODY_BYTES {
                    let too_large = logagg::parse::ParseError::TooLarge {
                        size: message.body.len(),
                        max: logagg::parse::MAX_BODY_BYTES,
                    };
                    errors.push(Rejection {
                        index,
                        reason: too_large.to_string(),
                    });
                } else {
                    messages.push(message);
                }
            }
            Err(reason) => errors.push(Rejection { index, reason }),
        }
    }
    metrics::counter!(RECORDS, "protocol" => protocol.as_str(), "outcome" => "rejected")
        .increment(errors.len() as u64);
    let report = IngestReport {
        accepted: messages.len(),
        rejected: errors.len(),
        errors,
    };
    if messages.is_empty() {
        return Ok(report);
    }
    gateway
        .limiter
        .take(rate_key, messages.len() as u64)
        .map_err(|retry_after| GatewayError::TooManyRequests { retry_after })?;
    let count = u32::try_from(messages.len()).unwrap_or(u32::MAX);
    let _permits = Arc::clone(&gateway.unconfirmed)
        .try_acquire_many_owned(count)
        .map_err(|_| GatewayError::Unavailable {
            reason: "the broker is behind on confirms; retry shortly".into(),
            retry_after: 1,
        })?;
    gateway
        .publisher
        .publish_for_client(messages, gateway.settings.confirm_timeout_ms)
        .await?;
    metrics::counter!(RECORDS, "protocol" => protocol.as_str(), "outcome" => "accepted")
        .increment(report.accepted as u64);
    Ok(report)
}

/// The gateway's shared link to RabbitMQ, and the `broker` health check it keeps: whether
/// the last publish was confirmed.
struct BrokerLink {
    channel: LazyChannel,
    health: Health,
}

impl BrokerLink {
    /// Publishes `messages` and waits until the broker queued every one. A message whose
    /// confirm fails (its node lost, a nack) is sent again, on another node if need be,
    /// until `give_up`; messages already queued are not duplicated by a retry (their ids
    /// are kept).
    async fn publish(&self, messages: Vec<Outgoing>, give_up: GiveUp) -> Result<(), PublishError> {
        let mut resender = Resender::new(&self.channel, give_up);
        let mut outcome = Ok(());
        for message in messages {
            if let Err(error) = resender.send(message, ()).await {
                outcome = Err(error);
                break;
            }
        }
        while outcome.is_ok() {
            let Some(settled) = resender.next().await else {
                break;
            };
            match settled {
                Ok((Settled::Queued, ())) => {}
                Ok((Settled::Unroutable, ())) => {
                    outcome = Err(PublishError::GaveUp {
                        unsettled: resender.unsettled(),
                        last_error: "no queue is bound for a record (unroutable)".into(),
                    });
                }
                Err(error) => {
                    outcome = Err(error);
                    break;
                }
            }
        }
        self.health.set("broker", outcome.is_ok());
        outcome
    }

    /// Publishes records' messages for an HTTP client: until `confirm_timeout`, then the
    /// client is told to retry (503).
    async fn publish_for_client(
        &self,
        messages: Vec<Outgoing>,
        confirm_timeout: std::time::Duration,
    ) -> Result<(), GatewayError> {
        let give_up = GiveUp {
            deadline: Some(tokio::time::Instant::now() + confirm_timeout),
            shutdown: None,
        };
        self.publish(messages, give_up).await.map_err(|error| {
            warn!(%error, "publishing failed; the client is told to retry");
            match error {
                PublishError::Unreachable { .. } | PublishError::Broker(_) => {
                    GatewayError::Unavailable {
                        reason: "RabbitMQ is unavailable; retry later".into(),
                        retry_after: 5,
                    }
                }
                PublishError::GaveUp { .. } => GatewayError::Unavailable {
                    reason: format!("{error}; retry (records already queued are not duplicated)"),
                    retry_after: 1,
                },
            }
        })
    }

    fn exchange(&self) -> lapin::types::ShortString {
        self.channel.settings().exchange.as_str().into()
    }
}

/// A record as the message that carries it onto the exchange.
fn record_message(exchange: &lapin::types::ShortString, record: &LogRecord) -> Outgoing {
    Outgoing {
        exchange: exchange.clone(),
        routing_key: logagg::parse::routing_key(&record.service, record.severity).into(),
        body: record_body(record),
        properties: broker::log_properties(broker::CONTENT_TYPE_JSON, &record.id),
    }
}

impl Gateway {
    /// Publishes, for a listener that has no client to answer (syslog), what it read:
    /// each record onto the exchange, each frame that is none dead-lettered with why.
    /// Waits for every confirm, re-sending until `shutdown`: the listener stops reading
    /// meanwhile, which is the back-pressure its senders feel.
    pub(crate) async fn publish_or_dead_letter(
        &self,
        protocol: Protocol,
        source: &str,
        parsed: Vec<Result<LogRecord, Unparsed>>,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> Result<(), PublishError> {
        let exchange = self.publisher.exchange();
        let dead_letter_exchange: lapin::types::ShortString = self
            .publisher
            .channel
            .settings()
            .dead_letter_exchange
            .as_str()
            .into();
        let (mut accepted, mut rejected) = (0, 0);
        let messages = parsed
            .into_iter()
            .map(|result| match result {
                Ok(record) => {
                    accepted += 1;
                    record_message(&exchange, &record)
                }
                Err(unparsed) => {
                    rejected += 1;
                    let properties = lapin::BasicProperties::default()
                        .with_content_type(broker::CONTENT_TYPE_TEXT.into())
                        .with_message_id(unparsed.id.as_str().into());
                    Outgoing {
                        exchange: dead_letter_exchange.clone(),
                        routing_key: format!("{}.unparsed", protocol.as_str()).into(),
                        body: unparsed.bytes,
                        properties: broker::dead_letter_properties(
                            &properties,
                            unparsed.code,
                            &unparsed.reason,
                            source,
                        ),
                    }
                }
            })
            .collect();
        let give_up = GiveUp {
            deadline: None,
            shutdown: Some(shutdown.clone()),
        };
        self.publisher.publish(messages, give_up).await?;
        metrics::counter!(RECORDS, "protocol" => protocol.as_str(), "outcome" => "accepted")
            .increment(accepted);
        metrics::counter!(RECORDS, "protocol" => protocol.as_str(), "outcome" => "rejected")
            .increment(rejected);
        Ok(())
    }
}

/// What a listener read that is no record: dead-lettered with its id and why.
pub(crate) struct Unparsed {
    pub(crate) id: String,
    pub(crate) bytes: Vec<u8>,
    /// A stable reason code (`ParseError::code`, or the listener's own).
    pub(crate) code: &'static str,
    pub(crate) reason: String,
}

/// Token buckets per key: `rate` records a second, up to `burst` at once.
struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

/// Buckets kept before full (idle) ones are forgotten.
const MAX_BUCKETS: usize = 10_000;

impl RateLimiter {
    fn new(rate: u64, burst: u64) -> RateLimiter {
        RateLimiter {
            rate: rate.max(1) as f64,
            burst: burst.max(1) as f64,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `count` tokens, or says in how many seconds to retry. A request larger than
    /// the burst passes when the bucket is full, leaving it in debt.
    fn take(&self, key: &str, count: u64) -> Result<(), u64> {
        let now = Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        if buckets.len() >= MAX_BUCKETS {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, (tokens, at)| *tokens + at.elapsed().as_secs_f64() * rate < burst);
        }
        let (tokens, at) = buckets.entry(key.to_owned()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        let wanted = count as f64;
        if *tokens >= wanted || *tokens >= self.burst {
            *tokens -= wanted;
            return Ok(());
        }
        let missing = wanted.min(self.burst) - *tokens;
        Err((missing / self.rate).ceil().max(1.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_asks_to_wait_for_the_refill() {
        let limiter = RateLimiter::new(100, 250);
        assert_eq!(limiter.take("a", 200), Ok(()));
        assert_eq!(limiter.take("a", 100), Err(1));
        assert_eq!(limiter.take("b", 250), Ok(()), "keys are separate");
        assert_eq!(limiter.take("a", 50), Ok(()));
        let tiny = RateLimiter::new(10, 10);
        assert_eq!(
            tiny.take("a", 1_000),
            Ok(()),
            "a full bucket lets a big request through"
        );
        assert_eq!(tiny.take("a", 5), Err(100), "then the debt is paid first");
    }

    #[test]
    fn bodies_split_into_items_as_array_ndjson_or_one_object() {
        let items = |text: &str, content_type: &str| json_items(text, content_type).unwrap();
        assert_eq!(items(r#"{"a":1}"#, "application/json"), [r#"{"a":1}"#]);
        assert_eq!(items(" [ {\"a\":1}, {\"b\":2} ] ", "").len(), 2);
        assert_eq!(
            items("{\"a\":1}\n\n{\"b\":2}\n", "application/x-ndjson").len(),
            2
        );
        assert!(json_items("[1, 2", "").is_err());
    }
}
