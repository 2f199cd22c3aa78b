//! The API's errors: each maps to a status and the body `{"error": {"code", "message"}}`.
//! Server-side failures are logged here and reach the client without internals.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use logagg::store::StoreError;
use serde::Serialize;

use crate::query::QueryError;

/// The body of every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, for programs: `bad_parameter`, `not_found`, `unauthorized`,
    /// `store_unavailable`, `query_timeout`, `broker_unavailable`, `too_many_tails`.
    pub code: &'static str,
    /// For people; names the parameter at fault.
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("parameter `{parameter}` {message}")]
    BadParameter { parameter: String, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("RabbitMQ is unavailable; live tail is down until it is back")]
    BrokerUnavailable,
    #[error("too many live-tail clients; try again later")]
    TooManyTails,
    #[error("MongoDB is unavailable")]
    Unavailable(#[source] StoreError),
    #[error("the query ran past its time limit; narrow the time range or the filters")]
    QueryTimeout,
}

impl From<QueryError> for ApiError {
    fn from(error: QueryError) -> Self {
        ApiError::BadParameter {
            parameter: error.parameter,
            message: error.message,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::QueryTimeout => ApiError::QueryTimeout,
            other => ApiError::Unavailable(other),
        }
    }
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadParameter { .. } => (StatusCode::BAD_REQUEST, "bad_parameter"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::BrokerUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "broker_unavailable"),
            ApiError::TooManyTails => (StatusCode::SERVICE_UNAVAILABLE, "too_many_tails"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            ApiError::QueryTimeout => (StatusCode::SERVICE_UNAVAILABLE, "query_timeout"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let ApiError::Unavailable(source) = &self {
            tracing::warn!(error = %source, "search query failed");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message: self.to_string(),
            },
        };
        (status, Json(body)).into_response()
    }
}
