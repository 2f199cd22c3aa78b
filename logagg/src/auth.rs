//! API keys with scopes, one model for every HTTP surface: search and the dashboard
//! (`read`), the ingest gateway (`ingest`), analyzer registration and state-changing admin
//! routes (`admin`). Keys are configured in `[[auth.keys]]` by the SHA-256 of their secret,
//! each with scopes and, optionally, the services (glob patterns) it may read or write.
//!
//! A request presents its key as `Authorization: Bearer KEY` or `X-API-Key: KEY`. With no
//! key configured a surface is open. Otherwise no key or an unknown one gets 401, a key
//! without the surface's scope 403, both with the JSON error body; an admitted request
//! carries its [`Caller`] (name and services) to the handlers. Each request is counted in
//! `logagg_api_requests_total{key, route, outcome}`; each refused request and each admin
//! action writes one audit line (target `logagg::audit`: key name, route, client address).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::http_error::{error_response, ErrorCode};
use crate::settings::{AuthSettings, Scope};

/// Header that carries a key as it is.
pub const API_KEY_HEADER: &str = "x-api-key";
/// Requests by key name, route and outcome (`allowed`, `unauthorized`, `forbidden`).
pub const REQUESTS_METRIC: &str = "logagg_api_requests_total";
/// The tracing target of audit lines.
pub const AUDIT_TARGET: &str = "logagg::audit";

/// Registers the metric's description (each guard does, so every surface's does).
fn describe_metrics() {
    metrics::describe_counter!(
        REQUESTS_METRIC,
        "HTTP API requests by key name, route and outcome (allowed, unauthorized, forbidden)"
    );
}

/// The services a caller may read or write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceScope {
    All,
    /// Services matching any of these glob patterns (`*` any run, `?` one character).
    Only(Arc<[String]>),
}

impl ServiceScope {
    pub fn admits(&self, service: &str) -> bool {
        match self {
            ServiceScope::All => true,
            ServiceScope::Only(patterns) => patterns
                .iter()
                .any(|pattern| glob_matches(pattern.as_bytes(), service.as_bytes())),
        }
    }

    /// A MongoDB condition on a service field that holds for the admitted services only
    /// (`$in` anchored regular expressions); `None` for every service.
    pub fn condition(&self) -> Option<bson::Document> {
        match self {
            ServiceScope::All => None,
            ServiceScope::Only(patterns) => {
                let regexes: Vec<bson::Bson> = patterns
                    .iter()
                    .map(|pattern| {
                        bson::Bson::RegularExpression(bson::Regex {
                            pattern: glob_regex(pattern),
                            options: String::new(),
                        })
                    })
                    .collect();
                Some(bson::doc! { "$in": regexes })
            }
        }
    }
}

/// Whether `text` matches the glob `pattern` (`*` and `?`; every other byte literal).
fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
    // The classic two-pointer match with backtracking to the last star: linear-ish, no
    // recursion, so no pattern a settings file holds can make it blow up.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&byte) if byte == b'?' || byte == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|byte| *byte == b'*')
}

fn glob_regex(pattern: &str) -> String {
    let mut regex = String::from("^");
    for character in pattern.chars() {
        match character {
            '*' => regex.push_str(".*"),
            '?' => regex.push('.'),
            '.' | '-' => {
                regex.push('\\');
                regex.push(character);
            }
            other => regex.push(other),
        }
    }
    regex.push('$');
    regex
}

/// Who made an admitted request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The key's name; `None` on an open surface (no key configured).
    pub key: Option<Arc<str>>,
    pub services: ServiceScope,
}

impl Caller {
    /// The caller of an open surface: no key, every service.
    pub fn anonymous() -> Caller {
        Caller {
            key: None,
            services: ServiceScope::All,
        }
    }

    /// The key's name, `anonymous` without one.
    pub fn name(&self) -> &str {
        self.key.as_deref().unwrap_or("anonymous")
    }

    fn of(key: &Key) -> Caller {
        Caller {
            key: Some(Arc::clone(&key.name)),
            services: key.services.clone(),
        }
    }
}

#[derive(Debug)]
struct Key {
    name: Arc<str>,
    digest: [u8; 32],
    scopes: Vec<Scope>,
    services: ServiceScope,
}

/// The keys one surface checks and the scope it wants: the middleware's state.
#[derive(Debug, Clone)]
pub struct Guard {
    keys: Arc<Vec<Key>>,
    scope: Scope,
}

/// A deprecated per-surface key list (`search.api_keys`): its setting's name and keys.
pub type LegacyKeys<'a> = (&'static str, &'a [String]);

impl Guard {
    /// The guard of a surface wanting `scope`: the `[[auth.keys]]`, plus the surface's
    /// deprecated list, whose keys count as unscoped keys of this surface only (a warning
    /// says so at start).
    pub fn new(auth: &AuthSettings, scope: Scope, legacy: Option<LegacyKeys<'_>>) -> Guard {
        describe_metrics();
        let mut keys: Vec<Key> = auth
            .keys
            .iter()
            .map(|key| Key {
                name: key.name.as_str().into(),
                digest: parse_hex_digest(&key.sha256),
                scopes: key.scopes.clone(),
                services: match &key.services {
                    None => ServiceScope::All,
                    Some(patterns) => ServiceScope::Only(patterns.clone().into()),
                },
            })
            .collect();
        if let Some((setting, legacy)) = legacy.filter(|(_, keys)| !keys.is_empty()) {
            warn!(
                setting,
                "deprecated: `{setting}` holds keys in clear; move them to [[auth.keys]] \
                 (by SHA-256, with scopes): they keep working meanwhile, for this API only"
            );
            keys.extend(legacy.iter().enumerate().map(|(index, key)| Key {
                name: format!("{setting}[{index}]").into(),
                digest: Sha256::digest(key.as_bytes()).into(),
                scopes: vec![scope],
                services: ServiceScope::All,
            }));
        }
        Guard {
            keys: Arc::new(keys),
            scope,
        }
    }

    /// No key configured: every request is let in as [`Caller::anonymous`].
    pub fn is_open(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key `headers` present, if it is one of ours. The presented key is hashed and
    /// compared with every configured hash, each comparison taking the same time wherever
    /// the first differing byte is.
    fn identify(&self, headers: &HeaderMap) -> Option<&Key> {
        let presented: [u8; 32] = Sha256::digest(presented_key(headers)?).into();

        self.keys.iter().fold(None, |found, key| {
            if constant_time_eq(&key.digest, &presented) {
                Some(key)
            } else {
                found
            }
        })
    }
}

/// The hex SHA-256 of a key: what `[[auth.keys]]` holds for it (as `printf %s KEY |
/// sha256sum` prints).
pub fn sha256_hex(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Settings validation checked the 64 hex digits; anything else (never reached) is a
/// digest no key has.
fn parse_hex_digest(hex: &str) -> [u8; 32] {
    let mut digest = [0u8; 32];
    for (index, byte) in digest.iter_mut().enumerate() {
        *byte = hex
            .get(index * 2..index * 2 + 2)
            .and_then(|pair| u8::from_str_radix(pair, 16).ok())
            .unwrap_or(0);
    }
    digest
}

/// The key a request presents, if any: `Authorization: Bearer KEY`, `X-API-Key: KEY`,
/// HTTP Basic with the key as the password (the user name is not checked), which is how
/// Loki clients send credentials, or Elasticsearch's `Authorization: ApiKey
/// base64(id:KEY)`.
pub fn presented_key(headers: &HeaderMap) -> Option<std::borrow::Cow<'_, [u8]>> {
    use base64::Engine;
    use std::borrow::Cow;
    let authorization = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    if let Some(key) = authorization.and_then(|value| value.strip_prefix("Bearer ")) {
        return Some(Cow::Borrowed(key.as_bytes()));
    }
    if let Some(encoded) = authorization.and_then(|value| value.strip_prefix("Basic ")) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let colon = decoded.iter().position(|byte| *byte == b':')?;
        return Some(Cow::Owned(decoded[colon + 1..].to_vec()));
    }
    // Elasticsearch's form: base64 of `id:key` (the key after the colon), or the key as is.
    if let Some(value) = authorization.and_then(|value| value.strip_prefix("ApiKey ")) {
        let value = value.trim();
        let decoded = base64::engine::general_purpose::STANDARD.decode(value).ok();
        return Some(
            match decoded.and_then(|bytes| {
                let colon = bytes.iter().position(|byte| *byte == b':')?;
                Some(bytes[colon + 1..].to_vec())
            }) {
                Some(key) => Cow::Owned(key),
                None => Cow::Borrowed(value.as_bytes()),
            },
        );
    }
    headers
        .get(API_KEY_HEADER)
        .map(|value| Cow::Borrowed(value.as_bytes()))
}

fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .zip(right)
            .fold(0_u8, |difference, (a, b)| difference | (a ^ b))
            == 0
}

/// The outcome of checking a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Allowed,
    Unauthorized,
    Forbidden,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Unauthorized => "unauthorized",
            Outcome::Forbidden => "forbidden",
        }
    }
}

/// Middleware: lets the request in with its [`Caller`] as an extension when the surface is
/// open or its key holds the guard's scope; 401 or 403 with the JSON body otherwise.
pub async fn authorize(State(guard): State<Guard>, mut request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "other".to_owned(), |path| path.as_str().to_owned());
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |info| info.0.to_string());
    let (caller, outcome) = if guard.is_open() {
        (Some(Caller::anonymous()), Outcome::Allowed)
    } else {
        match guard.identify(request.headers()) {
            None => (None, Outcome::Unauthorized),
            Some(key) if !key.scopes.contains(&guard.scope) => {
                (Some(Caller::of(key)), Outcome::Forbidden)
            }
            Some(key) => (Some(Caller::of(key)), Outcome::Allowed),
        }
    };
    let key_label = caller
        .as_ref()
        .map_or_else(|| "none".to_owned(), |caller| caller.name().to_owned());
    metrics::counter!(
        REQUESTS_METRIC,
        "key" => key_label.clone(),
        "route" => route.clone(),
        "outcome" => outcome.as_str()
    )
    .increment(1);
    let method = request.method().clone();
    match (outcome, caller) {
        (Outcome::Allowed, Some(caller)) => {
            if guard.scope == Scope::Admin && method != Method::GET && method != Method::HEAD {
                info!(target: AUDIT_TARGET, key = %key_label, %method, route, client, "admin action");
            }
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        (outcome, _) => {
            warn!(
                target: AUDIT_TARGET,
                key = %key_label,
                %method,
                route,
                client,
                outcome = outcome.as_str(),
                "request refused"
            );
            refusal(outcome, guard.scope)
        }
    }
}

fn refusal(outcome: Outcome, scope: Scope) -> Response {
    if outcome == Outcome::Forbidden {
        return error_response(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            format!(
                "this key lacks the `{}` scope this route wants",
                scope.as_str()
            ),
        );
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
    use crate::settings::KeySetting;

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, value.parse().unwrap());
        headers
    }

    #[test]
    fn a_key_is_accepted_as_bearer_or_header_and_nothing_else_is() {
        let auth = AuthSettings {
            keys: vec![KeySetting {
                name: "team".into(),
                sha256: sha256_hex("fedcba9876543210"),
                scopes: vec![Scope::Read],
                services: None,
            }],
        };
        let legacy = ["0123456789abcdef".to_owned()];
        let guard = Guard::new(&auth, Scope::Read, Some(("search.api_keys", &legacy)));
        let named = |headers: &HeaderMap| guard.identify(headers).map(|key| key.name.to_string());
        assert_eq!(
            named(&headers("authorization", "Bearer fedcba9876543210")).as_deref(),
            Some("team")
        );
        assert_eq!(
            named(&headers("x-api-key", "0123456789abcdef")).as_deref(),
            Some("search.api_keys[0]")
        );
        assert_eq!(
            named(&headers(
                "authorization",
                "Basic dXNlcjpmZWRjYmE5ODc2NTQzMjEw"
            ))
            .as_deref(),
            Some("team"),
            "Basic user:fedcba9876543210"
        );
        assert_eq!(
            named(&headers(
                "authorization",
                "ApiKey aWQ6ZmVkY2JhOTg3NjU0MzIxMA=="
            ))
            .as_deref(),
            Some("team"),
            "ApiKey base64(id:fedcba9876543210)"
        );
        assert_eq!(
            named(&headers("authorization", "ApiKey fedcba9876543210")).as_deref(),
            Some("team")
        );
        for (name, value) in [
            ("authorization", "Basic dXNlcjpmZWRjYmE5ODc2NTQzMjE="),
            ("authorization", "Basic not-base64"),
            ("authorization", "Bearer 0123456789abcde"),
            ("authorization", "Basic 0123456789abcdef"),
            ("authorization", "0123456789abcdef"),
            ("x-api-key", "0123456789abcdef0"),
            ("x-other", "0123456789abcdef"),
        ] {
            assert!(named(&headers(name, value)).is_none(), "{name}: {value}");
        }
        assert!(named(&HeaderMap::new()).is_none());
    }

    #[test]
    fn service_globs_match_whole_names() {
        let scope = ServiceScope::Only(
            vec!["checkout".to_owned(), "cart*".to_owned(), "a?c".to_owned()].into(),
        );
        for admitted in ["checkout", "cart", "cart-v2", "abc", "a.c"] {
            assert!(scope.admits(admitted), "{admitted}");
        }
        for refused in [
            "checkout2",
            "xcheckout",
            "payments",
            "ac",
            "abcd",
            "Checkout",
        ] {
            assert!(!scope.admits(refused), "{refused}");
        }
        assert!(glob_matches(b"*a*b*", b"xxaxxbxx"));
        assert!(!glob_matches(b"*a*b", b"xxaxxbxx"));
        assert_eq!(glob_regex("cart*.v?"), r"^cart.*\.v.$");
    }
}
