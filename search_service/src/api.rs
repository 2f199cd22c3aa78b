//! The REST API's routes and handlers. `router` builds the whole API so tests drive it with
//! `tower::ServiceExt::oneshot` as well as over a socket.

use std::sync::Arc;
use std::time::Instant;

use std::convert::Infallible;

use axum::extract::{Path, RawQuery, State};
use axum::middleware;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::{Extension, Json, Router};
use bson::Document;
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use logagg::auth::{self, Caller, Guard};
use logagg::settings::Settings;
use logagg::settings::{Scope, SearchSettings};
use logagg::store::alerts::AlertState;
use logagg::store::analyzers::AnalyzerList;
use logagg::store::search::{PageCursor, PageRequest};
use logagg::store::{document_to_record, fields, Database};
use logagg::LogRecord;
use logagg::Severity;
use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::alerts::{AlertView, Alerts, MAX_ALERTS};
use crate::error::ApiError;
pub use crate::openapi::WordSearch;
use crate::openapi::{
    AlertParams, ApiDoc, FilterParams, IntervalParams, PageParams, RangeParams, TimeParams,
};
use crate::query::{parse_time, LogQuery, QueryError, NOT_FOR_STATS, NOT_FOR_TAIL};
use crate::stats::{self, Services, Stats};
use crate::tail::{TailEvent, Tails};
use logagg::http_error::ErrorBody;

/// What every handler needs.
#[derive(Clone, Debug)]
pub struct AppState {
    pub store: Database,
    pub settings: Arc<SearchSettings>,
    pub tails: Arc<Tails>,
    /// The `read` scope's keys.
    pub guard: Guard,
    /// `analyzers.max_failures`: which registered analyzers the dashboard shows online.
    pub analyzer_max_failures: u32,
}

impl AppState {
    /// State for `settings`; live tails end when `shutdown` is cancelled.
    pub fn new(store: Database, settings: &Settings, shutdown: CancellationToken) -> AppState {
        let search = &settings.search;
        AppState {
            store,
            tails: Arc::new(Tails::new(
                settings.broker.clone(),
                search.max_tail_clients,
                search.tail_buffer,
                shutdown,
            )),
            guard: Guard::new(
                &settings.auth,
                Scope::Read,
                Some(("search.api_keys", &search.api_keys)),
            ),
            settings: Arc::new(search.clone()),
            analyzer_max_failures: settings.analyzers.max_failures,
        }
    }

    /// `q` needs the words the collector stores only with `store.word_index`.
    fn check_word_search(&self, query: &LogQuery) -> Result<(), ApiError> {
        if query.words.is_empty() || self.store.word_index() {
            return Ok(());
        }
        Err(QueryError::new(
            "q",
            "is not available: word search is off on this deployment (store.word_index)",
        )
        .into())
    }
}

/// The whole service: the data routes of [`api_routes`] (logs, one log, stats, services,
/// the live tail, alerts and the compatible `/logs/...` routes) behind the API keys, the
/// OpenAPI document, and the dashboard at `/`; any other path is a JSON 404.
pub fn router(state: AppState) -> Router {
    let (routes, _) = api_routes().split_for_parts();
    let openapi = Arc::new(openapi_document(
        &state.settings,
        WordSearch::from_enabled(state.store.word_index()),
    ));
    routes
        .route_layer(middleware::from_fn_with_state(
            state.guard.clone(),
            auth::authorize,
        ))
        .route(
            OPENAPI_PATH,
            get(move || async move { Json(Value::clone(&openapi)) }),
        )
        .merge(crate::dashboard::routes())
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .with_state(state)
}

/// Where the OpenAPI document is served (without an API key: it holds no data).
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// Every data route with its OpenAPI description.
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(search_logs))
        .routes(routes!(get_log))
        .routes(routes!(get_stats))
        .routes(routes!(list_services))
        .routes(routes!(tail))
        .routes(routes!(list_alerts))
        .routes(routes!(list_analyzers))
        .routes(routes!(compat_service_logs))
        .routes(routes!(compat_service_severity_logs))
}

/// The OpenAPI document of [`router`], as generated from the handlers.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().split_for_parts().1
}

/// The OpenAPI document as served: [`openapi`] with what the parsers enforce of each
/// parameter under this deployment's settings ([`crate::openapi::constrain`]); without word
/// search, `q` is left out (every `q` would be refused).
pub fn openapi_document(settings: &SearchSettings, word_search: WordSearch) -> Value {
    let mut document = serde_json::to_value(openapi()).unwrap_or(Value::Null);
    crate::openapi::constrain(&mut document, settings, word_search);
    document
}

/// The query string as key-value pairs, repeated keys kept.
fn query_pairs(raw: Option<&str>) -> Result<Vec<(String, String)>, QueryError> {
    serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|_| QueryError::new("query", "is not a valid query string"))
}

/// `GET /api/v1/logs`: one page.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogsPage {
    #[schema(value_type = Vec<LogRecord>)]
    pub logs: Vec<Value>,
    /// Pass as `cursor` for the next page; `null` when this page is the last.
    pub next_cursor: Option<String>,
    pub took_ms: u64,
}

/// A page of logs matching the filters, newest (or oldest) first, with keyset paging.
/// Besides the parameters listed, `attr.<key>=<value>` (repeatable, one per key) keeps logs
/// whose attribute `<key>` equals the value as text, number or boolean.
#[utoipa::path(get, path = "/api/v1/logs", tag = "logs",
    params(FilterParams, TimeParams, PageParams),
    security((), ("api_key" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "One page", body = LogsPage),
        (status = 400, description = "A bad parameter, named in the message", body = ErrorBody),
        (status = 401, description = "API keys are set and none (or an unknown one) was presented", body = ErrorBody),
        (status = 403, description = "The key lacks the `read` scope", body = ErrorBody),
        (status = 503, description = "MongoDB unreachable or the query ran past its time limit", body = ErrorBody)
    ))]
async fn search_logs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Json<LogsPage>, ApiError> {
    let started = Instant::now();
    let pairs = query_pairs(raw.as_deref())?;
    let query = LogQuery::parse(&pairs, Utc::now(), &state.settings)?.within(&caller.services);
    state.check_word_search(&query)?;
    let documents = if query.matches_nothing {
        Vec::new()
    } else {
        state.store.find_page(&page_request(&state, &query)).await?
    };
    let next_cursor = (documents.len() == query.limit)
        .then(|| documents.last().and_then(cursor_after))
        .flatten();
    Ok(Json(LogsPage {
        logs: documents.iter().map(log_json).collect(),
        next_cursor,
        took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }))
}

/// Live logs matching the filters as Server-Sent Events: `ready` once the tail's queue is
/// bound, `log` per matching log (its JSON; SSE id = the log's id), and a last `dropped`
/// event (`{"error": {"code", "message"}}`) saying why it ended: `too_slow` when the
/// client fell `search.tail_buffer` logs behind, `broker_unavailable`, `shutting_down`.
#[utoipa::path(get, path = "/api/v1/tail", tag = "tail",
    params(FilterParams),
    security((), ("api_key" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "An event stream", content_type = "text/event-stream", body = String),
        (status = 400, description = "A bad parameter, named in the message", body = ErrorBody),
        (status = 401, description = "API keys are set and none (or an unknown one) was presented", body = ErrorBody),
        (status = 403, description = "The key lacks the `read` scope", body = ErrorBody),
        (status = 503, description = "RabbitMQ unreachable, or `search.max_tail_clients` tails open", body = ErrorBody)
    ))]
async fn tail(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let pairs = query_pairs(raw.as_deref())?;
    reject_parameters(&pairs, &NOT_FOR_TAIL, "the live tail")?;
    let query = LogQuery::parse(&pairs, Utc::now(), &state.settings)?.within(&caller.services);
    let events = state.tails.open(query).await?;
    Ok(Sse::new(events.map(|event| Ok(sse_event(event)))).keep_alive(KeepAlive::default()))
}

/// Counts by severity, by service and in time buckets, top services by errors, and access
/// logs per route (status classes, latency p50/p95/p99), over the filters of
/// `/api/v1/logs`. Filtered only by service, severity and time, they come from rollups
/// (counts to the minute, access logs to the hour: whole hours overlapping the range);
/// otherwise from the matching logs.
#[utoipa::path(get, path = "/api/v1/stats", tag = "stats",
    params(FilterParams, TimeParams, IntervalParams),
    security((), ("api_key" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The stats", body = Stats),
        (status = 400, description = "A bad parameter, named in the message", body = ErrorBody),
        (status = 401, description = "API keys are set and none (or an unknown one) was presented", body = ErrorBody),
        (status = 403, description = "The key lacks the `read` scope", body = ErrorBody),
        (status = 503, description = "MongoDB unreachable or the query ran past its time limit", body = ErrorBody)
    ))]
async fn get_stats(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Stats>, ApiError> {
    let mut pairs = query_pairs(raw.as_deref())?;
    reject_parameters(&pairs, &NOT_FOR_STATS, "stats")?;
    let interval = take_single(&mut pairs, "interval")?;
    let query = LogQuery::parse(&pairs, Utc::now(), &state.settings)?.within(&caller.services);
    state.check_word_search(&query)?;
    let interval_ms = stats::choose_interval(interval.as_deref(), &query)?;
    let max_time = state.settings.query_timeout_ms;
    Ok(Json(
        stats::stats(&state.store, &query, interval_ms, max_time).await?,
    ))
}

/// Every service with logs in the range, first and last seen, and counts by severity.
#[utoipa::path(get, path = "/api/v1/services", tag = "stats",
    params(RangeParams),
    security((), ("api_key" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The services", body = Services),
        (status = 400, description = "A bad parameter, named in the message", body = ErrorBody),
        (status = 401, description = "API keys are set and none (or an unknown one) was presented", body = ErrorBody),
        (status = 403, description = "The key lacks the `read` scope", body = ErrorBody),
        (status = 503, description = "MongoDB unreachable or the query ran past its time limit", body = ErrorBody)
    ))]
async fn list_services(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Services>, ApiError> {
    let mut pairs = query_pairs(raw.as_deref())?;
    let now = Utc::now();
    let from = take_single(&mut pairs, "from")?;
    let to = take_single(&mut pairs, "to")?;
    if let Some((key, _)) = pairs.first() {
        return Err(QueryError::new(key, "is not a parameter of this endpoint").into());
    }
    let range = match (from, to) {
        (None, None) => None,
        (from, to) => {
            let to = match to {
                Some(to) => parse_time("to", &to, now)?,
                None => now,
            };
            let from = match from {
                Some(from) => parse_time("from", &from, now)?,
                None => DateTime::<Utc>::MIN_UTC,
            };
            // `from` after `to` is an empty range: no rollup falls in it.
            Some((from, to))
        }
    };
    let max_time = state.settings.query_timeout_ms;
    let mut services = stats::services(&state.store, range, max_time).await?;
    services
        .services
        .retain(|summary| caller.services.admits(&summary.service));
    Ok(Json(services))
}

/// Alerts, newest first.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts",
    params(AlertParams),
    security((), ("api_key" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The alerts", body = Alerts),
        (status = 400, description = "A bad parameter, named in the message", body = ErrorBody),
        (status = 401, description = "API keys are set and none (or an unknown one) was presented", body = ErrorBody),
        (status = 403, description = "The key lacks the `read` scope", body = ErrorBody),
        (status = 503, description = "MongoDB unreachable", body = ErrorBody)
    ))]
async fn list_alerts(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Alerts>, ApiError> {
    let mut pairs = query_pairs(raw.as_deref())?;
    let wanted = take_single(&mut pairs, "state")?;
    let service = take_single(&mut pairs, "service")?;
    let limit = take_single(&mut pairs, "limit")?;
    if let Some((key, _)) = pairs.first() {
        return Err(QueryError::new(key, "is not a parameter of this endpoint").into());
    }
    let wanted = match wanted.as_deref() {
        None | Some("all") => None,
        Some(text) => Some(
            text.parse::<AlertState>()
                .map_err(|_| QueryError::new("state", "must be firing, resolved or all"))?,
        ),
    };
    if let Some(service) = &service {
        logagg::parse::validate_service(service)
            .map_err(|error| QueryError::new("service", error.to_string()))?;
    }
    let limit = match limit {
        None => 50,
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|limit| (1..=MAX_ALERTS).contains(limit))
            .ok_or_else(|| {
                QueryError::new("limit", format!("must be between 1 and {MAX_ALERTS}"))
            })?,
    };
    // Another service's alerts are an empty list, as a service without alerts would be.
    let entries = if service
        .as_deref()
        .is_some_and(|service| !caller.services.admits(service))
    {
        Vec::new()
    } else {
        state
            .store
            .list_alerts(wanted, service.as_deref(), &caller.services, limit)
            .await?
    };
    Ok(Json(Alerts {
        alerts: entries.into_iter().map(AlertView::from).collect(),
    }))
}

/// The analyzers registered for the fan-out (analyzer_service), with their weights, shares
/// and what each was delivered: the dashboard's Analyzers page.
#[utoipa::path(get, path = "/api/v1/analyzers", tag = "analyzers",
    security((), ("api_key" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The registered analyzers", body = AnalyzerList),
        (status = 400, description = "A bad parameter, named in the message", body = ErrorBody),
        (status = 401, description = "API keys are set and none (or an unknown one) was presented", body = ErrorBody),
        (status = 403, description = "The key lacks the `read` scope", body = ErrorBody),
        (status = 503, description = "MongoDB unreachable", body = ErrorBody)
    ))]
async fn list_analyzers(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<AnalyzerList>, ApiError> {
    if let Some((key, _)) = query_pairs(raw.as_deref())?.first() {
        return Err(QueryError::new(key, "is not a parameter of this endpoint").into());
    }
    let analyzers = state.store.registered_analyzers().await?;
    Ok(Json(AnalyzerList {
        analyzers: logagg::store::analyzers::views(&analyzers, state.analyzer_max_failures),
    }))
}

/// Removes `name` from `pairs` and returns its value; given twice is an error.
fn take_single(
    pairs: &mut Vec<(String, String)>,
    name: &str,
) -> Result<Option<String>, QueryError> {
    let mut values: Vec<String> = Vec::new();
    pairs.retain(|(key, value)| {
        let matched = key == name;
        if matched {
            values.push(value.clone());
        }
        !matched
    });
    match values.len() {
        0 => Ok(None),
        1 => Ok(values.pop()),
        _ => Err(QueryError::new(name, "may be given only once")),
    }
}

fn reject_parameters(
    pairs: &[(String, String)],
    refused: &[&str],
    endpoint: &str,
) -> Result<(), QueryError> {
    match pairs
        .iter()
        .find(|(key, _)| refused.contains(&key.as_str()))
    {
        Some((key, _)) => Err(QueryError::new(
            key,
            format!("does not apply to {endpoint}"),
        )),
        None => Ok(()),
    }
}

fn sse_event(event: TailEvent) -> Event {
    match event {
        TailEvent::Ready => Event::default().event("ready").data("{}"),
        TailEvent::Log(record) => Event::default()
            .event("log")
            .id(record.id.clone())
            .json_data(&record)
            .unwrap_or_else(|_| Event::default().event("log").data("null")),
        TailEvent::End(end) => Event::default().event("dropped").data(
            ErrorBody::new(end.code(), end.message())
                .to_json()
                .to_string(),
        ),
    }
}

/// One log by id.
#[utoipa::path(get, path = "/api/v1/logs/{id}", tag = "logs",
    params(("id" = String, Path, description = "The log's id")),
    security((), ("api_key" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The log", body = LogRecord),
        (status = 404, description = "No log has this id", body = ErrorBody),
        (status = 400, description = "A bad parameter, named in the message", body = ErrorBody),
        (status = 401, description = "API keys are set and none (or an unknown one) was presented", body = ErrorBody),
        (status = 403, description = "The key lacks the `read` scope", body = ErrorBody),
        (status = 503, description = "MongoDB unreachable or the query ran past its time limit", body = ErrorBody)
    ))]
async fn get_log(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    // Another service's log is not found, as a log that does not exist.
    match state.store.find_log(&id).await? {
        Some(document)
            if document
                .get_str(fields::SERVICE)
                .is_ok_and(|service| caller.services.admits(service)) =>
        {
            Ok(Json(log_json(&document)))
        }
        _ => Err(ApiError::NotFound(format!("no log with id `{id}`"))),
    }
}

/// The body the Python prototype's clients read.
#[derive(Debug, Serialize, ToSchema)]
pub struct CompatLogs {
    pub message: &'static str,
    #[schema(value_type = Vec<LogRecord>)]
    pub logs: Vec<Value>,
}

/// The service's logs of the last `search.default_range_hours`, newest first, one default
/// page.
#[utoipa::path(get, path = "/logs/{service}", tag = "compat",
    params(("service" = String, Path)),
    security((), ("api_key" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The logs", body = CompatLogs),
        (status = 400, description = "A bad parameter, named in the message", body = ErrorBody),
        (status = 401, description = "API keys are set and none (or an unknown one) was presented", body = ErrorBody),
        (status = 403, description = "The key lacks the `read` scope", body = ErrorBody),
        (status = 503, description = "MongoDB unreachable or the query ran past its time limit", body = ErrorBody)
    ))]
async fn compat_service_logs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(service): Path<String>,
) -> Result<Json<CompatLogs>, ApiError> {
    compat_logs(&state, &caller, service, None).await
}

/// The service's logs of one severity (any spelling, any case), as `/logs/{service}`.
#[utoipa::path(get, path = "/logs/{service}/{severity}", tag = "compat",
    params(("service" = String, Path), ("severity" = String, Path)),
    security((), ("api_key" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The logs", body = CompatLogs),
        (status = 400, description = "A bad parameter, named in the message", body = ErrorBody),
        (status = 401, description = "API keys are set and none (or an unknown one) was presented", body = ErrorBody),
        (status = 403, description = "The key lacks the `read` scope", body = ErrorBody),
        (status = 503, description = "MongoDB unreachable or the query ran past its time limit", body = ErrorBody)
    ))]
async fn compat_service_severity_logs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((service, severity)): Path<(String, String)>,
) -> Result<Json<CompatLogs>, ApiError> {
    let severity = crate::query::parse_severity("severity", &severity)?;
    compat_logs(&state, &caller, service, Some(severity)).await
}

/// Newest first (the parsed default), the default page size, over the default range: what
/// `/logs/...` answered.
async fn compat_logs(
    state: &AppState,
    caller: &Caller,
    service: String,
    severity: Option<Severity>,
) -> Result<Json<CompatLogs>, ApiError> {
    let mut pairs = vec![("service".to_owned(), service)];
    if let Some(severity) = severity {
        pairs.push(("severity".to_owned(), severity.as_str().to_owned()));
    }
    let query = LogQuery::parse(&pairs, Utc::now(), &state.settings)?.within(&caller.services);
    let documents = if query.matches_nothing {
        Vec::new()
    } else {
        state.store.find_page(&page_request(state, &query)).await?
    };
    Ok(Json(CompatLogs {
        message: "Logs retrieved successfully",
        logs: documents.iter().map(log_json).collect(),
    }))
}

fn page_request(state: &AppState, query: &LogQuery) -> PageRequest {
    PageRequest {
        filter: query.filter(),
        words: query.words.clone(),
        from: query.from,
        to: query.to,
        order: query.order,
        after: query.cursor.clone(),
        limit: query.limit,
        max_time: state.settings.query_timeout_ms,
    }
}

fn cursor_after(document: &Document) -> Option<String> {
    let timestamp = document.get_datetime(fields::TIMESTAMP).ok()?;
    let id = document.get_str(fields::ID).ok()?;
    Some(
        PageCursor {
            timestamp_ms: timestamp.timestamp_millis(),
            id: id.to_owned(),
        }
        .encode(),
    )
}

/// A stored log as the API shows it: the record model, or for a document that does not fit
/// it (written by something else), its relaxed extended JSON.
fn log_json(document: &Document) -> Value {
    match document_to_record(document) {
        Ok(record) => serde_json::to_value(record).unwrap_or(Value::Null),
        Err(_) => bson::Bson::Document(document.clone()).into_relaxed_extjson(),
    }
}
