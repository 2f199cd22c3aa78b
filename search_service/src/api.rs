//! The REST API's routes and handlers. `router` builds the whole API so tests drive it with
//! `tower::ServiceExt::oneshot` as well as over a socket.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, RawQuery, State};
use axum::routing::get;
use axum::{Json, Router};
use bson::Document;
use chrono::Utc;
use logagg::settings::SearchSettings;
use logagg::store::search::{Order, PageCursor, PageRequest};
use logagg::store::{document_to_record, fields, Store};
use logagg::Severity;
use serde::Serialize;
use serde_json::Value;

use crate::error::ApiError;
use crate::query::{LogQuery, QueryError};

/// What every handler needs.
#[derive(Clone, Debug)]
pub struct AppState {
    pub store: Store,
    pub settings: Arc<SearchSettings>,
}

impl AppState {
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

/// The API: `/api/v1/logs`, `/api/v1/logs/{id}`, and the compatible `/logs/...` routes; any
/// other path is a JSON 404.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/logs", get(search_logs))
        .route("/api/v1/logs/{id}", get(get_log))
        .route("/logs/{service}", get(compat_service_logs))
        .route(
            "/logs/{service}/{severity}",
            get(compat_service_severity_logs),
        )
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .with_state(state)
}

/// `GET /api/v1/logs`: one page.
#[derive(Debug, Serialize)]
pub struct LogsPage {
    pub logs: Vec<Value>,
    /// Pass as `cursor` for the next page; `null` when this page is the last.
    pub next_cursor: Option<String>,
    pub took_ms: u64,
}

async fn search_logs(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<LogsPage>, ApiError> {
    let started = Instant::now();
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|_| QueryError::new("query", "is not a valid query string"))?;
    let query = LogQuery::parse(&pairs, Utc::now(), &state.settings)?;
    state.check_word_search(&query)?;
    let documents = state.store.find_page(&page_request(&state, &query)).await?;
    let next_cursor = (documents.len() == query.limit)
        .then(|| {
            documents
                .last()
                .and_then(|last| cursor_after(last, query.order))
        })
        .flatten();
    Ok(Json(LogsPage {
        logs: documents.iter().map(log_json).collect(),
        next_cursor,
        took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }))
}

async fn get_log(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match state.store.find_log(&id).await? {
        Some(document) => Ok(Json(log_json(&document))),
        None => Err(ApiError::NotFound(format!("no log with id `{id}`"))),
    }
}

/// The body the Python prototype's clients read.
#[derive(Debug, Serialize)]
pub struct CompatLogs {
    pub message: &'static str,
    pub logs: Vec<Value>,
}

async fn compat_service_logs(
    State(state): State<AppState>,
    Path(service): Path<String>,
) -> Result<Json<CompatLogs>, ApiError> {
    compat_logs(&state, service, None).await
}

async fn compat_service_severity_logs(
    State(state): State<AppState>,
    Path((service, severity)): Path<(String, String)>,
) -> Result<Json<CompatLogs>, ApiError> {
    let severity: Severity = severity
        .parse()
        .map_err(|_| QueryError::new("severity", format!("`{severity}` is not a severity")))?;
    compat_logs(&state, service, Some(severity)).await
}

/// Newest first (the parsed default), the default page size, over the default range: what
/// `/logs/...` answered.
async fn compat_logs(
    state: &AppState,
    service: String,
    severity: Option<Severity>,
) -> Result<Json<CompatLogs>, ApiError> {
    let mut pairs = vec![("service".to_owned(), service)];
    if let Some(severity) = severity {
        pairs.push(("severity".to_owned(), severity.as_str().to_owned()));
    }
    let query = LogQuery::parse(&pairs, Utc::now(), &state.settings)?;
    let documents = state.store.find_page(&page_request(state, &query)).await?;
    Ok(Json(CompatLogs {
        message: "Logs retrieved successfully",
        logs: documents.iter().map(log_json).collect(),
    }))
}

fn page_request(state: &AppState, query: &LogQuery) -> PageRequest {
    PageRequest {
        filter: query.filter(),
        from: query.from,
        to: query.to,
        order: query.order,
        after: query.cursor.clone(),
        limit: query.limit,
        max_time: Duration::from_millis(state.settings.query_timeout_ms),
    }
}

fn cursor_after(document: &Document, order: Order) -> Option<String> {
    let timestamp = document.get_datetime(fields::TIMESTAMP).ok()?;
    let id = document.get_str(fields::ID).ok()?;
    Some(
        PageCursor {
            timestamp_ms: timestamp.timestamp_millis(),
            id: id.to_owned(),
            order,
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
