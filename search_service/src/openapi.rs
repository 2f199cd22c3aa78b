//! The OpenAPI 3 document served at `/api/v1/openapi.json`. Paths come from the handlers'
//! `#[utoipa::path]` attributes as they are routed (`utoipa_axum::routes!`), so a route
//! cannot exist without its description; the query parameters below are checked against
//! the parser's own lists by the tests. [`constrain`] then states what the parsers enforce
//! of each parameter (patterns, lengths, ranges, enums), from the parsers' own constants and
//! this deployment's settings, so that a request the document allows is never refused
//! (schemathesis checks it in CI).
#![allow(dead_code)] // The structs only describe parameters; handlers read the raw query.

use logagg::parse::{MAX_SERVICE_LEN, SERVICE_PATTERN};
use logagg::record::SEVERITY_NAMES;
use logagg::settings::SearchSettings;
use logagg::store::search::CURSOR_PATTERN;
use serde_json::{json, Value};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::alerts::MAX_ALERTS;
use crate::query::{MAX_HOST_CHARS, MAX_METHOD_LETTERS, MAX_VALUE_CHARS, SPAN_PATTERN};
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
    /// HTTP status, 100-599. With `status_class` too, both must hold.
    status: Option<u16>,
    /// `1xx` … `5xx`.
    status_class: Option<String>,
    method: Option<String>,
    path: Option<String>,
    /// Words that must all appear in the message (from the word index; needs
    /// `store.word_index`). Punctuation separates words; a `q` of punctuation alone asks for
    /// no word.
    q: Option<String>,
    /// A literal substring of the message (case-sensitive, bounded by the query time limit).
    contains: Option<String>,
}

/// Time range of `/api/v1/logs` and `/api/v1/stats`. `from` after `to` is an empty range.
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
    /// `next_cursor` of the previous page (`<ms>:<hex id>`: the page starts just past that
    /// log, in this request's `order`).
    cursor: Option<String>,
}

/// Bucket width of `/api/v1/stats`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IntervalParams {
    /// Bucket width like `5m` or `1h`; default chosen for about 120 buckets. Widened to whole
    /// minutes when stats come from rollups, and to at most 1,000 buckets over the range:
    /// the answer's `interval_seconds` is the width used.
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
        (name = "analyzers", description = "Analyzers registered for the fan-out, and their shares"),
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

/// Whether this deployment stores the words `q` searches (`store.word_index`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WordSearch {
    On,
    Off,
}

impl WordSearch {
    pub fn from_enabled(enabled: bool) -> WordSearch {
        if enabled {
            WordSearch::On
        } else {
            WordSearch::Off
        }
    }
}

/// Writes into `document` (the served OpenAPI JSON) what the parsers enforce of each
/// parameter, by name, wherever it appears; `settings` give the deployment's bounds. With
/// word search off, `q` is removed: the API refuses it.
pub fn constrain(
    document: &mut serde_json::Value,
    settings: &SearchSettings,
    word_search: WordSearch,
) {
    let Some(paths) = document
        .get_mut("paths")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(operations) = item.as_object_mut() else {
            continue;
        };
        for operation in operations.values_mut() {
            let Some(parameters) = operation
                .get_mut("parameters")
                .and_then(serde_json::Value::as_array_mut)
            else {
                continue;
            };
            if word_search == WordSearch::Off {
                parameters.retain(|parameter| parameter["name"] != "q");
            }
            for parameter in parameters {
                let name = parameter["name"].as_str().unwrap_or_default().to_owned();
                let Some(schema) = parameter.get_mut("schema") else {
                    continue;
                };
                // A repeatable parameter is an array: its values are the items.
                let schema = if schema["type"] == "array" {
                    &mut schema["items"]
                } else {
                    schema
                };
                if let Some(constraint) = parameter_schema(path, &name, settings) {
                    *schema = constraint;
                }
            }
        }
    }
}

/// The schema of parameter `name` of `path`'s operations, as the parsers enforce it.
fn parameter_schema(path: &str, name: &str, settings: &SearchSettings) -> Option<Value> {
    let text =
        |max_length: usize| json!({"type": "string", "minLength": 1, "maxLength": max_length});
    let time = json!({"anyOf": [
        {"type": "string", "format": "date-time"},
        {"type": "string", "pattern": SPAN_PATTERN},
        {"type": "string", "enum": ["now"]},
    ]});
    Some(match name {
        "service" => {
            json!({"type": "string", "maxLength": MAX_SERVICE_LEN, "pattern": SERVICE_PATTERN})
        }
        "severity" | "min_severity" => json!({"type": "string", "pattern": severity_pattern()}),
        "status" => json!({"type": "integer", "minimum": 100, "maximum": 599}),
        "status_class" => json!({"type": "string", "pattern": "^[1-5][xX][xX]$"}),
        "method" => {
            json!({"type": "string", "pattern": format!("^[A-Za-z]{{1,{MAX_METHOD_LETTERS}}}$")})
        }
        "path" => text(MAX_VALUE_CHARS),
        "host" => text(MAX_HOST_CHARS),
        "q" | "contains" => text(settings.max_text_bytes),
        "from" | "to" => time,
        "interval" => json!({"type": "string", "pattern": SPAN_PATTERN}),
        "order" => json!({"type": "string", "enum": ["newest", "oldest"]}),
        "state" => json!({"type": "string", "enum": ["firing", "resolved", "all"]}),
        "cursor" => json!({"type": "string", "pattern": CURSOR_PATTERN}),
        "limit" if path == "/api/v1/alerts" => {
            json!({"type": "integer", "minimum": 1, "maximum": MAX_ALERTS})
        }
        "limit" => json!({"type": "integer", "minimum": 1, "maximum": settings.max_limit}),
        _ => return None,
    })
}

/// Every severity name in any case, or a syslog number 0-7: what
/// [`parse_severity`](crate::query::parse_severity) takes.
fn severity_pattern() -> String {
    let case_free = |name: &str| -> String {
        name.chars()
            .map(|letter| {
                format!(
                    "[{}{}]",
                    letter.to_ascii_lowercase(),
                    letter.to_ascii_uppercase()
                )
            })
            .collect()
    };
    let names: Vec<String> = SEVERITY_NAMES
        .iter()
        .map(|(name, _)| case_free(name))
        .collect();
    format!("^([0-7]|{})$", names.join("|"))
}
