//! The API's errors: each maps to a status and the body `{"error": {"code", "message"}}`.
//! Server-side failures are logged here and reach the client without internals.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use logagg::store::StoreError;
use serde_json::json;

use crate::query::QueryError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("parameter `{parameter}` {message}")]
    BadParameter { parameter: String, message: String },
    #[error("{0}")]
    NotFound(String),
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
        let body = json!({ "error": { "code": code, "message": self.to_string() } });
        (status, Json(body)).into_response()
    }
}
