//! The one error body every HTTP surface answers with (search, the dashboard's API, the
//! gateway, admin routes, a live tail's last event): `{"error": {"code", "message"}}`, and the
//! one list of codes, so a client branches on a code that means the same everywhere.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// Every error code an HTTP surface answers with. Stable: programs branch on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A query or path parameter is wrong; the message names it.
    BadParameter,
    /// The body cannot be read: not UTF-8, bad gzip, invalid JSON, no record.
    BadRequest,
    /// API keys are set and the request presented none of them.
    Unauthorized,
    /// The key is valid but lacks the scope the route wants.
    Forbidden,
    /// No such route or resource.
    NotFound,
    /// The body or its record count is over the limit.
    TooLarge,
    /// Over the key's rate; `Retry-After` says when to come back.
    RateLimited,
    /// Every record of a request was refused (the body lists why).
    NoValidRecord,
    /// RabbitMQ is unreachable or behind on confirms; retry.
    Unavailable,
    /// MongoDB is unreachable; retry.
    StoreUnavailable,
    /// RabbitMQ is unreachable (the live tail).
    BrokerUnavailable,
    /// A query ran past its server time limit.
    QueryTimeout,
    /// Too many live-tail clients at once.
    TooManyTails,
    /// A live-tail client fell too far behind and was dropped.
    TooSlow,
    /// The service is shutting down.
    ShuttingDown,
    /// Work of this kind is already queued on this replica.
    Busy,
    /// Another replica holds the lease for this job.
    LeaseHeld,
    /// The lease was taken over while the job ran.
    LeaseLost,
    /// The job was interrupted by a shutdown.
    Interrupted,
    /// MongoDB failed during a job.
    Store,
    /// Archiving failed during a job; nothing was deleted.
    Archive,
    /// An unexpected failure (logged by the server); retrying is safe.
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadParameter => "bad_parameter",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::NoValidRecord => "no_valid_record",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::BrokerUnavailable => "broker_unavailable",
            ErrorCode::QueryTimeout => "query_timeout",
            ErrorCode::TooManyTails => "too_many_tails",
            ErrorCode::TooSlow => "too_slow",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Busy => "busy",
            ErrorCode::LeaseHeld => "lease_held",
            ErrorCode::LeaseLost => "lease_lost",
            ErrorCode::Interrupted => "interrupted",
            ErrorCode::Store => "store",
            ErrorCode::Archive => "archive",
            ErrorCode::Internal => "internal",
        }
    }
}

/// The body of every error answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, for programs.
    pub code: ErrorCode,
    /// For people; names the parameter or limit at fault.
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code,
                message: message.into(),
            },
        }
    }

    /// The body as JSON, for answers that carry more than the error (the gateway's report).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// An error answer: `status` with the body `{"error": {"code", "message"}}`.
pub fn error_response(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Response {
    (status, Json(ErrorBody::new(code, message))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialise_as_their_names() {
        for code in [
            ErrorCode::BadParameter,
            ErrorCode::TooManyTails,
            ErrorCode::Store,
        ] {
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::json!(code.as_str())
            );
        }
        assert_eq!(
            ErrorBody::new(ErrorCode::NotFound, "no such route").to_json(),
            serde_json::json!({"error": {"code": "not_found", "message": "no such route"}})
        );
    }
}
