//! API keys for the HTTP APIs (search, the ingest gateway): when keys are set, a route
//! wants one of them as `Authorization: Bearer KEY` or `X-API-Key: KEY`, and answers 401
//! with the JSON error body without it.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use crate::http_error::{error_response, ErrorCode};

/// Header that carries a key as it is.
pub const API_KEY_HEADER: &str = "x-api-key";

/// The keys a request may present; empty means the API is open.
#[derive(Clone, Debug, Default)]
pub struct ApiKeys(Arc<Vec<Vec<u8>>>);

impl ApiKeys {
    pub fn new(keys: &[String]) -> ApiKeys {
        ApiKeys(Arc::new(
            keys.iter().map(|key| key.as_bytes().to_vec()).collect(),
        ))
    }

    pub fn is_open(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `headers` present one of the keys. Each comparison takes the same time
    /// wherever the first differing byte is.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(presented) = presented_key(headers) else {
            return false;
        };
        self.0
            .iter()
            .fold(false, |found, key| found | constant_time_eq(key, presented))
    }
}

/// The key a request presents, if any.
pub fn presented_key(headers: &HeaderMap) -> Option<&[u8]> {
    headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::as_bytes)
        .or_else(|| headers.get(API_KEY_HEADER).map(|value| value.as_bytes()))
}

fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .zip(right)
            .fold(0_u8, |difference, (a, b)| difference | (a ^ b))
            == 0
}

/// Middleware: passes the request on when the API is open or a key matches.
pub async fn require_key(State(keys): State<ApiKeys>, request: Request, next: Next) -> Response {
    if keys.is_open() || keys.admits(request.headers()) {
        return next.run(request).await;
    }
    let mut response = error_response(
        StatusCode::UNAUTHORIZED,
        ErrorCode::Unauthorized,
        "a valid API key is required (Authorization: Bearer KEY or X-API-Key: KEY)",
    );
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, "Bearer".parse().expect("static header"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, value.parse().unwrap());
        headers
    }

    #[test]
    fn a_key_is_accepted_as_bearer_or_header_and_nothing_else_is() {
        let keys = ApiKeys::new(&["0123456789abcdef".into(), "fedcba9876543210".into()]);
        assert!(keys.admits(&headers("authorization", "Bearer fedcba9876543210")));
        assert!(keys.admits(&headers("x-api-key", "0123456789abcdef")));
        for (name, value) in [
            ("authorization", "Bearer 0123456789abcde"),
            ("authorization", "Basic 0123456789abcdef"),
            ("authorization", "0123456789abcdef"),
            ("x-api-key", "0123456789abcdef0"),
            ("x-other", "0123456789abcdef"),
        ] {
            assert!(!keys.admits(&headers(name, value)), "{name}: {value}");
        }
        assert!(!keys.admits(&HeaderMap::new()));
    }
}
