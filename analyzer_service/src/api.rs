//! The registration API: analyzers register (or update) with a weight and a target, renew
//! their lease, and deregister; anyone with an `admin` key reads who gets what share.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use chrono::Utc;
use logagg::auth::{self, Guard};
use logagg::http_error::{error_response, ErrorCode};
use logagg::settings::{AnalyzerSettings, AuthSettings, Scope};
use logagg::store::analyzers::{views, AnalyzerList, AnalyzerView, Target};
use logagg::store::Database;
use serde::Deserialize;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Database,
    pub settings: Arc<AnalyzerSettings>,
}

/// The API, every route behind the `admin` scope (`analyzers.api_keys`, deprecated, count
/// as unscoped keys of this API).
pub fn router(state: AppState, auth: &AuthSettings) -> Router {
    let guard = Guard::new(
        auth,
        Scope::Admin,
        Some(("analyzers.api_keys", &state.settings.api_keys)),
    );
    Router::new()
        .route("/api/v1/analyzers", get(list))
        .route(
            "/api/v1/analyzers/{id}",
            put(register).delete(deregister).get(show),
        )
        .route("/api/v1/analyzers/{id}/heartbeat", post(heartbeat))
        .route_layer(axum::middleware::from_fn_with_state(guard, auth::authorize))
        .fallback(|| async {
            error_response(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such route")
        })
        .with_state(state)
}

/// A registration's body: exactly one of `url` and `queue: true`, and a weight.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Registration {
    url: Option<String>,
    queue: Option<bool>,
    weight: f64,
}

/// Why a request is refused.
enum ApiError {
    Bad(String),
    NotFound(String),
    Store(logagg::store::StoreError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Bad(message) => {
                error_response(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
            }
            ApiError::NotFound(message) => {
                error_response(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
            }
            ApiError::Store(error) => error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::StoreUnavailable,
                error.to_string(),
            ),
        }
    }
}

impl From<logagg::store::StoreError> for ApiError {
    fn from(error: logagg::store::StoreError) -> Self {
        ApiError::Store(error)
    }
}

/// An analyzer id: 1-64 of `A-Z a-z 0-9 _ - .`, starting with a letter or digit (it names a
/// queue, `logs.analyzer.<id>`).
fn check_id(id: &str) -> Result<(), ApiError> {
    let valid = (1..=64).contains(&id.len())
        && id.starts_with(|first: char| first.is_ascii_alphanumeric())
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"_-.".contains(&byte));
    if valid {
        Ok(())
    } else {
        Err(ApiError::Bad(format!(
            "analyzer id `{id}` must be 1-64 of A-Z a-z 0-9 _ - . starting with a letter or digit"
        )))
    }
}

fn target_of(registration: &Registration) -> Result<Target, ApiError> {
    match (&registration.url, registration.queue) {
        (Some(url), None | Some(false)) => {
            let parsed = reqwest::Url::parse(url)
                .map_err(|error| ApiError::Bad(format!("`url` is not a URL: {error}")))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(ApiError::Bad(format!(
                    "`url` must be an http or https URL with a host, not `{url}`"
                )));
            }
            Ok(Target::Url(url.clone()))
        }
        (None, Some(true)) => Ok(Target::Queue),
        _ => Err(ApiError::Bad(
            "give exactly one of `url` (an http(s) URL) and `queue: true`".into(),
        )),
    }
}

async fn register(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<AnalyzerView>, ApiError> {
    check_id(&id)?;
    let registration: Registration = serde_json::from_slice(&body)
        .map_err(|error| ApiError::Bad(format!("invalid registration: {error}")))?;
    if !(registration.weight.is_finite() && registration.weight > 0.0) {
        return Err(ApiError::Bad(format!(
            "`weight` must be a positive number, not {}",
            registration.weight
        )));
    }
    let target = target_of(&registration)?;
    let now = Utc::now();
    let lease =
        chrono::Duration::from_std(state.settings.lease_seconds).unwrap_or(chrono::Duration::MAX);
    state
        .store
        .register_analyzer(&id, &target, registration.weight, now, now + lease)
        .await?;
    show(State(state), Path(id)).await
}

async fn heartbeat(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<AnalyzerView>, ApiError> {
    check_id(&id)?;
    let now = Utc::now();
    let lease =
        chrono::Duration::from_std(state.settings.lease_seconds).unwrap_or(chrono::Duration::MAX);
    if !state
        .store
        .heartbeat_analyzer(&id, now, now + lease)
        .await?
    {
        return Err(ApiError::NotFound(format!(
            "no analyzer `{id}`: register it with PUT"
        )));
    }
    show(State(state), Path(id)).await
}

async fn deregister(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    check_id(&id)?;
    if state.store.deregister_analyzer(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("no analyzer `{id}`")))
    }
}

async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<AnalyzerView>, ApiError> {
    check_id(&id)?;
    let analyzers = state.store.registered_analyzers().await?;
    views(&analyzers, state.settings.max_failures)
        .into_iter()
        .find(|view| view.id == id)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no analyzer `{id}`")))
}

async fn list(State(state): State<AppState>) -> Result<Json<AnalyzerList>, ApiError> {
    let analyzers = state.store.registered_analyzers().await?;
    Ok(Json(AnalyzerList {
        analyzers: views(&analyzers, state.settings.max_failures),
    }))
}
