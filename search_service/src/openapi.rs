//! The OpenAPI 3 document served at `/api/v1/openapi.json`. Paths come from the handlers'
//! `#[utoipa::path]` attributes as they are routed (`utoipa_axum::routes!`), so a route
//! cannot exist without its description; the query parameters below are checked against
//! the parser's own lists by the tests.
#![allow(dead_code)] // The structs only describe parameters; handlers read the raw query.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi};

/// Filters shared by `/api/v1/logs`, `/api/v1/stats` and `/api/v1/tail`, but time.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FilterParams {
    /// Service name; repeat for several.
    service: Option<Vec<String>>,
    /// Severity (any accepted spelling: `error`, `ERR`, `3`, …); repeat for several.
    severity: Option<Vec<String>>,
    /// This severity and above.
    min_severity: Option<String>,
    host: Option<String>,
    /// Attribute `<key>` equals the value (as text, number or boolean), e.g. `attr.order=42`.
    #[param(rename = "attr.<key>")]
    attr: Option<String>,
    /// HTTP status, 100-599.
    status: Option<u16>,
    /// `1xx` … `5xx`; not with `status`.
    status_class: Option<String>,
    method: Option<String>,
    path: Option<String>,
    /// Words that must all appear in the message (from the word index; needs
    /// `store.word_index`).
    q: Option<String>,
    /// A literal substring of the message (case-sensitive, bounded by the query time limit).
    contains: Option<String>,
}

/// Time range of `/api/v1/logs` and `/api/v1/stats`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TimeParams {
    /// RFC 3339 time, or an age back from now (`15m`, `24h`, `7d`); default: `to` minus
    /// `search.default_range_hours`.
    from: Option<String>,
    /// RFC 3339 time or age, inclusive; default now.
    to: Option<String>,
}

/// Paging of `/api/v1/logs`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// `newest` (default) or `oldest`.
    order: Option<String>,
    /// Records per page, 1 to `search.max_limit` (default `search.default_limit`).
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Bucket width of `/api/v1/stats`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IntervalParams {
    /// Bucket width like `5m` or `1h`; default chosen for about 120 buckets. Whole minutes
    /// when stats come from rollups.
    interval: Option<String>,
}

/// Filters of `/api/v1/alerts`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertParams {
    /// `firing`, `resolved` or `all` (default).
    state: Option<String>,
    service: Option<String>,
    /// At most this many, newest first (default 50, at most 500).
    limit: Option<u32>,
}

/// Optional range of `/api/v1/services`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RangeParams {
    /// RFC 3339 time or age; default: everything the rollups hold.
    from: Option<String>,
    /// RFC 3339 time or age; default now.
    to: Option<String>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "logagg search API",
        description = "Search, stats and live tail over the logs logagg stores."
    ),
    modifiers(&ApiKeys),
    tags(
        (name = "logs", description = "Stored logs"),
        (name = "stats", description = "Counts, histograms and access-log latency"),
        (name = "tail", description = "Live logs as Server-Sent Events"),
        (name = "alerts", description = "Alerts the monitor raised"),
        (name = "compat", description = "Routes of the Python prototype")
    )
)]
pub struct ApiDoc;

/// Declares the two ways of presenting an API key (required only when keys are set).
struct ApiKeys;

impl Modify for ApiKeys {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
