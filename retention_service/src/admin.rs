//! The admin port's own route: `POST /api/v1/purge[?dry_run=true]` runs a purge now and
//! answers with its report. It wants an `admin`-scoped key whenever `[[auth.keys]]` are
//! configured (`/healthz` and `/metrics` beside it stay open).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use logagg::auth::{self, Guard};
use logagg::http_error::{error_response, ErrorCode};
use logagg::settings::{AuthSettings, Scope};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use crate::purge::{PurgeError, Trigger};
use crate::service::RunRequest;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeParams {
    #[serde(default)]
    dry_run: bool,
}

/// Routes that hand manual runs to the service loop through `requests`, behind the
/// `admin` scope.
pub fn router(requests: mpsc::Sender<RunRequest>, auth: &AuthSettings) -> Router {
    Router::new()
        .route("/api/v1/purge", post(purge))
        .route_layer(middleware::from_fn_with_state(
            Guard::new(auth, Scope::Admin, None),
            auth::authorize,
        ))
        .with_state(requests)
}

async fn purge(
    State(requests): State<mpsc::Sender<RunRequest>>,
    params: Result<Query<PurgeParams>, QueryRejection>,
) -> Response {
    let Query(params) = match params {
        Ok(params) => params,
        Err(rejection) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadParameter,
                rejection.body_text(),
            )
        }
    };
    let (reply, answer) = oneshot::channel();
    let request = RunRequest {
        trigger: Trigger::Manual,
        dry_run: params.dry_run,
        reply: Some(reply),
    };
    if requests.try_send(request).is_err() {
        return error_response(
            StatusCode::CONFLICT,
            ErrorCode::Busy,
            "purges are already queued on this replica; try again when they are done",
        );
    }
    match answer.await {
        Ok(Ok(report)) => (StatusCode::OK, Json(report)).into_response(),
        Ok(Err(purge_error @ PurgeError::LeaseHeld(_))) => error_response(
            StatusCode::CONFLICT,
            ErrorCode::LeaseHeld,
            purge_error.to_string(),
        ),
        Ok(Err(purge_error)) => {
            tracing::warn!(error = %purge_error, "manual purge failed");
            error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                purge_error.reason(),
                purge_error.to_string(),
            )
        }
        Err(_) => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ShuttingDown,
            "the service stopped before running the purge",
        ),
    }
}
