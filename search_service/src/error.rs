//! The API's errors: each maps to a status and a code of `logagg::http_error`, answered with
//! its one body `{"error": {"code", "message"}}`.
//! Server-side failures are logged here and reach the client without internals.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use logagg::http_error::{error_response, ErrorCode};
use logagg::store::StoreError;

use crate::query::QueryError;

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
    fn status_and_code(&self) -> (StatusCode, ErrorCode) {
        match self {
            ApiError::BadParameter { .. } => (StatusCode::BAD_REQUEST, ErrorCode::BadParameter),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            ApiError::BrokerUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::BrokerUnavailable,
            ),
            ApiError::TooManyTails => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::TooManyTails),
            ApiError::Unavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::StoreUnavailable)
            }
            ApiError::QueryTimeout => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::QueryTimeout),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let ApiError::Unavailable(source) = &self {
            tracing::warn!(error = %source, "search query failed");
        }
        error_response(status, code, self.to_string())
    }
}
