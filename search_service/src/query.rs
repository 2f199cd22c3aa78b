//! Query parameters of `GET /api/v1/logs`: parsed, validated (each error names its
//! parameter) and turned into a flat MongoDB filter. Pure code, no I/O.

use std::collections::BTreeSet;

use bson::{doc, Bson, Document};
use chrono::{DateTime, Duration, Utc};
use logagg::auth::ServiceScope;
use logagg::parse::validate_service;
use logagg::settings::SearchSettings;
use logagg::store::fields;
use logagg::store::search::{Order, PageCursor};
use logagg::words::{message_words, query_words};
use logagg::{LogRecord, Severity};

/// A parameter the request got wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parameter `{parameter}` {message}")]
pub struct QueryError {
    pub parameter: String,
    pub message: String,
}

impl QueryError {
    pub fn new(parameter: impl Into<String>, message: impl Into<String>) -> QueryError {
        QueryError {
            parameter: parameter.into(),
            message: message.into(),
        }
    }
}

/// Parameters of `GET /api/v1/logs` that may repeat (each value adds an alternative).
pub const REPEATABLE_PARAMETERS: [&str; 2] = ["service", "severity"];
/// Parameters of `GET /api/v1/logs` given at most once; `attr.<key>` comes on top.
pub const SINGLE_PARAMETERS: [&str; 13] = [
    "min_severity",
    "from",
    "to",
    "host",
    "status",
    "status_class",
    "method",
    "path",
    "q",
    "contains",
    "order",
    "limit",
    "cursor",
];

/// Parameters of `/api/v1/logs` that stats refuse (they take `interval` besides).
pub const NOT_FOR_STATS: [&str; 3] = ["order", "limit", "cursor"];
/// Parameters of `/api/v1/logs` that a live tail refuses.
pub const NOT_FOR_TAIL: [&str; 5] = ["from", "to", "order", "limit", "cursor"];

/// Longest `path` or attribute value, characters.
pub const MAX_VALUE_CHARS: usize = 1024;
/// Longest `host`, characters.
pub const MAX_HOST_CHARS: usize = 255;
/// Longest `method`, letters.
pub const MAX_METHOD_LETTERS: usize = 16;

/// What `status` or `status_class` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    Exact(u16),
    /// `5xx` is `Class(5)`.
    Class(u16),
}

/// A validated search.
#[derive(Debug, Clone, PartialEq)]
pub struct LogQuery {
    pub services: Vec<String>,
    /// Empty means every severity.
    pub severities: Vec<Severity>,
    pub from: DateTime<Utc>,
    /// Inclusive.
    pub to: DateTime<Utc>,
    pub host: Option<String>,
    pub attributes: Vec<(String, String)>,
    pub status: Option<StatusFilter>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub words: Vec<String>,
    pub contains: Option<String>,
    pub order: Order,
    pub limit: usize,
    pub cursor: Option<PageCursor>,
    /// The filters contradict each other (`from` after `to`, a `status` outside its
    /// `status_class`, `min_severity` above every `severity` given): nothing can match, so
    /// every answer is empty. Each parameter being valid, the request is not refused.
    pub matches_nothing: bool,
    /// The services the caller's key may read ([`within`](Self::within)).
    pub scope: ServiceScope,
}

impl LogQuery {
    /// Parses query-string pairs (repeated keys allowed where the API says so) at `now`.
    pub fn parse(
        pairs: &[(String, String)],
        now: DateTime<Utc>,
        settings: &SearchSettings,
    ) -> Result<LogQuery, QueryError> {
        let mut services = Vec::new();
        let mut severities: BTreeSet<Severity> = BTreeSet::new();
        let mut single: std::collections::BTreeMap<&str, &str> = Default::default();
        let mut attributes = Vec::new();
        for (key, value) in pairs {
            match key.as_str() {
                "service" => {
                    validate_service(value)
                        .map_err(|error| QueryError::new("service", error.to_string()))?;
                    if !services.contains(value) {
                        services.push(value.clone());
                    }
                }
                "severity" => {
                    severities.insert(parse_severity("severity", value)?);
                }
                single_key if SINGLE_PARAMETERS.contains(&single_key) => {
                    if single.insert(key.as_str(), value.as_str()).is_some() {
                        return Err(QueryError::new(key, "may be given only once"));
                    }
                }
                _ => match key.strip_prefix("attr.") {
                    Some(attribute) => {
                        attributes.push(parse_attribute(key, attribute, value)?);
                    }
                    None => {
                        return Err(QueryError::new(key, "is not a parameter of this endpoint"))
                    }
                },
            }
        }
        let mut severities: Vec<Severity> = severities.into_iter().collect();
        let mut matches_nothing = false;
        if let Some(minimum) = single.get("min_severity") {
            let minimum = parse_severity("min_severity", minimum)?;
            if severities.is_empty() {
                severities = Severity::ALL
                    .into_iter()
                    .filter(|severity| *severity >= minimum)
                    .collect();
            } else {
                severities.retain(|severity| *severity >= minimum);
                matches_nothing |= severities.is_empty();
            }
        }
        let to = match single.get("to") {
            Some(text) => parse_time("to", text, now)?,
            None => now,
        };
        let from = match single.get("from") {
            Some(text) => parse_time("from", text, now)?,
            None => to - Duration::hours(i64::from(settings.default_range_hours)),
        };
        matches_nothing |= from > to;
        let status = match (single.get("status"), single.get("status_class")) {
            (Some(status), Some(class)) => {
                let (status, class) = (parse_status(status)?, parse_status_class(class)?);
                matches_nothing |= status / 100 != class;
                Some(StatusFilter::Exact(status))
            }
            (Some(status), None) => Some(StatusFilter::Exact(parse_status(status)?)),
            (None, Some(class)) => Some(StatusFilter::Class(parse_status_class(class)?)),
            (None, None) => None,
        };
        let method = single
            .get("method")
            .map(|method| {
                if method.is_empty()
                    || method.len() > MAX_METHOD_LETTERS
                    || !method.bytes().all(|byte| byte.is_ascii_alphabetic())
                {
                    Err(QueryError::new("method", "must be an HTTP method like GET"))
                } else {
                    Ok(method.to_ascii_uppercase())
                }
            })
            .transpose()?;
        let path = single
            .get("path")
            .map(|path| bounded("path", path, MAX_VALUE_CHARS))
            .transpose()?;
        let host = single
            .get("host")
            .map(|host| bounded("host", host, MAX_HOST_CHARS))
            .transpose()?;
        // Words are what `q` holds besides punctuation; a `q` of punctuation alone asks for
        // no word, like no `q`. Its length bounds how many words it can hold.
        let words = match single.get("q") {
            Some(text) => query_words(&bounded("q", text, settings.max_text_bytes)?),
            None => Vec::new(),
        };
        let contains = single
            .get("contains")
            .map(|text| bounded("contains", text, settings.max_text_bytes))
            .transpose()?;
        let order = match single.get("order").copied() {
            None | Some("newest") => Order::NewestFirst,
            Some("oldest") => Order::OldestFirst,
            Some(_) => return Err(QueryError::new("order", "must be `newest` or `oldest`")),
        };
        let limit = match single.get("limit") {
            Some(text) => {
                let limit: u64 = text
                    .parse()
                    .map_err(|_| QueryError::new("limit", "must be a whole number"))?;
                if limit == 0 || limit > u64::from(settings.max_limit) {
                    return Err(QueryError::new(
                        "limit",
                        format!("must be between 1 and {}", settings.max_limit),
                    ));
                }
                limit as usize
            }
            None => settings.default_limit as usize,
        };
        let cursor = single
            .get("cursor")
            .map(|text| {
                PageCursor::decode(text).ok_or_else(|| {
                    QueryError::new("cursor", "is not a cursor: `<ms>:<hex id>`, as pages give")
                })
            })
            .transpose()?;
        Ok(LogQuery {
            services,
            severities,
            from,
            to,
            host,
            attributes,
            status,
            method,
            path,
            words,
            contains,
            order,
            limit,
            cursor,
            matches_nothing,
            scope: ServiceScope::All,
        })
    }

    /// The query as a caller reading only `scope` may run it: the services it names
    /// outside the scope are dropped (naming only such services matches nothing, as a
    /// service without logs would: the answer does not tell whether it exists), and
    /// without named services only the scope's are read.
    pub fn within(mut self, scope: &ServiceScope) -> LogQuery {
        if !self.services.is_empty() {
            self.services.retain(|service| scope.admits(service));
            self.matches_nothing |= self.services.is_empty();
        }
        self.scope = scope.clone();
        self
    }

    /// The MongoDB filter, flat (one condition per field), without the time range, which
    /// the store's page walk adds window by window, and without the words, which the store
    /// turns into conditions span by span (`logagg::store::words`).
    pub fn filter(&self) -> Document {
        let mut filter = Document::new();
        if let Some(condition) = one_or_in(self.services.iter().map(|s| Bson::from(s.as_str()))) {
            filter.insert(fields::SERVICE, condition);
        } else if let Some(condition) = self.scope.condition() {
            filter.insert(fields::SERVICE, condition);
        }
        if let Some(condition) = one_or_in(self.severities.iter().map(|s| Bson::from(s.as_str()))) {
            filter.insert(fields::SEVERITY, condition);
        }
        if let Some(host) = &self.host {
            filter.insert(fields::HOST, host.as_str());
        }
        for (key, value) in &self.attributes {
            filter.insert(
                format!("{}.{key}", fields::ATTRIBUTES),
                doc! { "$in": attribute_values(value) },
            );
        }
        let http = |name: &str| format!("{}.{name}", fields::HTTP);
        match self.status {
            Some(StatusFilter::Exact(status)) => {
                filter.insert(http(fields::HTTP_STATUS), i32::from(status));
            }
            Some(StatusFilter::Class(class)) => {
                let low = i32::from(class) * 100;
                filter.insert(
                    http(fields::HTTP_STATUS),
                    doc! { "$gte": low, "$lt": low + 100 },
                );
            }
            None => {}
        }
        if let Some(method) = &self.method {
            filter.insert(http(fields::HTTP_METHOD), method.as_str());
        }
        if let Some(path) = &self.path {
            filter.insert(http(fields::HTTP_PATH), path.as_str());
        }
        if let Some(text) = &self.contains {
            filter.insert(
                fields::MESSAGE,
                Bson::RegularExpression(bson::Regex {
                    pattern: escape_regex(text),
                    options: String::new(),
                }),
            );
        }
        filter
    }
}

impl LogQuery {
    /// Whether the stats rollups can answer: filters on service, severity and time only.
    pub fn rollups_can_answer(&self) -> bool {
        self.host.is_none()
            && self.attributes.is_empty()
            && self.status.is_none()
            && self.method.is_none()
            && self.path.is_none()
            && self.words.is_empty()
            && self.contains.is_none()
    }

    /// Whether `record` passes every filter but time: what the live tail applies to each
    /// log as it arrives, agreeing with [`filter`](Self::filter) on stored ones.
    pub fn matches(&self, record: &LogRecord) -> bool {
        if self.matches_nothing {
            return false;
        }
        let http = record.http.as_ref();
        let status_ok = match self.status {
            None => true,
            Some(StatusFilter::Exact(status)) => http.and_then(|h| h.status) == Some(status),
            Some(StatusFilter::Class(class)) => {
                http.and_then(|h| h.status).map(|status| status / 100) == Some(class)
            }
        };
        (self.services.is_empty() || self.services.contains(&record.service))
            && self.scope.admits(&record.service)
            && (self.severities.is_empty() || self.severities.contains(&record.severity))
            && self
                .host
                .as_ref()
                .is_none_or(|host| record.host.as_ref() == Some(host))
            && self.attributes.iter().all(|(key, value)| {
                record.attributes.get(key).is_some_and(|stored| {
                    attribute_values(value)
                        .iter()
                        .any(|wanted| bson_equals_json(wanted, stored))
                })
            })
            && status_ok
            && self
                .method
                .as_ref()
                .is_none_or(|method| http.and_then(|h| h.method.as_ref()) == Some(method))
            && self
                .path
                .as_ref()
                .is_none_or(|path| http.and_then(|h| h.path.as_ref()) == Some(path))
            && (self.words.is_empty() || {
                let words = message_words(&record.message);
                self.words.iter().all(|word| words.contains(word))
            })
            && self
                .contains
                .as_ref()
                .is_none_or(|text| record.message.contains(text.as_str()))
    }
}

fn bson_equals_json(wanted: &Bson, stored: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (wanted, stored) {
        (Bson::String(wanted), Value::String(stored)) => wanted == stored,
        (Bson::Int64(wanted), Value::Number(stored)) => {
            stored.as_i64() == Some(*wanted) || stored.as_f64() == Some(*wanted as f64)
        }
        (Bson::Double(wanted), Value::Number(stored)) => stored.as_f64() == Some(*wanted),
        (Bson::Boolean(wanted), Value::Bool(stored)) => wanted == stored,
        _ => false,
    }
}

fn one_or_in(values: impl Iterator<Item = Bson>) -> Option<Bson> {
    let mut values: Vec<Bson> = values.collect();
    match values.len() {
        0 => None,
        1 => values.pop(),
        _ => Some(Bson::Document(doc! { "$in": values })),
    }
}

/// A severity as the API takes it: a name or alias in any case, or a syslog number 0-7,
/// with nothing around it (the OpenAPI document's pattern says the same).
pub fn parse_severity(parameter: &str, text: &str) -> Result<Severity, QueryError> {
    let well_formed = matches!(text.as_bytes(), [b'0'..=b'7'])
        || (!text.is_empty() && text.bytes().all(|byte| byte.is_ascii_alphabetic()));
    well_formed
        .then(|| text.parse().ok())
        .flatten()
        .ok_or_else(|| QueryError::new(parameter, format!("`{}` is not a severity", clip(text))))
}

/// RFC 3339, or a relative age back from `now`: `90s`, `15m`, `24h`, `7d`, `2w`; `now` too.
pub fn parse_time(
    parameter: &str,
    text: &str,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, QueryError> {
    let invalid = || {
        QueryError::new(
            parameter,
            format!(
                "`{}` is neither an RFC 3339 time nor an age like 15m, 24h, 7d",
                clip(text)
            ),
        )
    };
    if text == "now" {
        return Ok(now);
    }
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    span(text)
        .and_then(|age| now.checked_sub_signed(age))
        .ok_or_else(invalid)
}

/// Units of a span, with the most digits each may have (so no span passes about 30
/// years), as [`SPAN_PATTERN`] states them.
const SPAN_UNITS: [(&str, i64, usize); 5] = [
    ("s", 1, 9),
    ("m", 60, 7),
    ("h", 3_600, 5),
    ("d", 86_400, 4),
    ("w", 604_800, 3),
];

/// What [`span`] accepts, as the OpenAPI document's pattern.
pub const SPAN_PATTERN: &str = "^([0-9]{1,9}s|[0-9]{1,7}m|[0-9]{1,5}h|[0-9]{1,4}d|[0-9]{1,3}w)$";

/// A span like `90s`, `15m`, `24h`, `7d`, `2w`: digits and a unit, at most 9 digits of
/// seconds, 7 of minutes, 5 of hours, 4 of days or 3 of weeks (so never past ~32 years).
fn span(text: &str) -> Option<Duration> {
    let split = text.len().checked_sub(1)?;
    if !text.is_char_boundary(split) {
        return None;
    }
    let (number, unit) = text.split_at(split);
    let (_, seconds_per_unit, max_digits) = SPAN_UNITS.iter().find(|(name, _, _)| *name == unit)?;
    if number.is_empty()
        || number.len() > *max_digits
        || !number.bytes().all(|byte| byte.is_ascii_digit())
    {
        return None;
    }
    let amount: i64 = number.parse().ok()?;
    Duration::try_seconds(amount * seconds_per_unit)
}

/// A span like `90s`, `15m`, `24h`, `7d`, `2w` given as `parameter` ([`SPAN_PATTERN`]).
pub fn parse_age(parameter: &str, text: &str) -> Result<Duration, QueryError> {
    span(text).ok_or_else(|| {
        QueryError::new(
            parameter,
            format!("`{}` is not a span like 15m, 24h, 7d", clip(text)),
        )
    })
}

fn parse_status(text: &str) -> Result<u16, QueryError> {
    text.parse::<u16>()
        .ok()
        .filter(|status| (100..=599).contains(status))
        .ok_or_else(|| QueryError::new("status", "must be an HTTP status from 100 to 599"))
}

fn parse_status_class(text: &str) -> Result<u16, QueryError> {
    text.parse::<logagg::StatusClass>()
        .map(logagg::StatusClass::digit)
        .map_err(|_| QueryError::new("status_class", "must be one of 1xx … 5xx"))
}

fn parse_attribute(
    parameter: &str,
    key: &str,
    value: &str,
) -> Result<(String, String), QueryError> {
    let key_ok = !key.is_empty()
        && key.len() <= 64
        && key
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-'));
    if !key_ok {
        return Err(QueryError::new(
            parameter,
            "attribute names are 1-64 letters, digits, `_` or `-`",
        ));
    }
    bounded(parameter, value, MAX_VALUE_CHARS)?;
    Ok((key.to_owned(), value.to_owned()))
}

/// An attribute value as text matches it stored as text, number or boolean.
fn attribute_values(value: &str) -> Vec<Bson> {
    let mut values = vec![Bson::from(value)];
    if let Ok(integer) = value.parse::<i64>() {
        values.push(Bson::Int64(integer));
    } else if let Ok(number) = value.parse::<f64>() {
        if number.is_finite() {
            values.push(Bson::Double(number));
        }
    }
    if let Ok(flag) = value.parse::<bool>() {
        values.push(Bson::Boolean(flag));
    }
    values
}

/// A text parameter of 1 to `max_chars` characters (as the OpenAPI document's
/// `minLength`/`maxLength` count them).
fn bounded(parameter: &str, text: &str, max_chars: usize) -> Result<String, QueryError> {
    if text.is_empty() {
        return Err(QueryError::new(parameter, "must not be empty"));
    }
    if text.chars().count() > max_chars {
        return Err(QueryError::new(
            parameter,
            format!("is longer than {max_chars} characters"),
        ));
    }
    Ok(text.to_owned())
}

/// `text` as a regular expression matching itself literally.
pub fn escape_regex(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len() * 2);
    for character in text.chars() {
        // A BSON regular expression is a C string: NUL is written as an escape.
        if character == '\0' {
            escaped.push_str("\\x00");
            continue;
        }
        if "\\^$.|?*+()[]{}/-".contains(character) {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
}

/// At most 64 characters of client text, for error messages.
fn clip(text: &str) -> String {
    text.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap()
    }

    fn parse(query: &str) -> Result<LogQuery, QueryError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
        LogQuery::parse(&pairs, now(), &SearchSettings::default())
    }

    #[test]
    fn defaults_are_the_last_day_newest_first_a_page_of_100() {
        let query = parse("").unwrap();
        assert_eq!(query.to, now());
        assert_eq!(query.from, now() - Duration::hours(24));
        assert_eq!((query.order, query.limit), (Order::NewestFirst, 100));
        assert!(query.filter().is_empty());
    }

    #[test]
    fn every_filter_lands_in_one_flat_document() {
        let query = parse(
            "service=web&service=auth&min_severity=warn&from=7d&to=2026-11-21T11:00:00Z&host=h1\
             &attr.order=42&status_class=5xx&method=get&path=/pay&q=Payment+FAILED&contains=a.b*",
        )
        .unwrap();
        assert_eq!(query.from, now() - Duration::days(7));
        let filter = query.filter();
        assert_eq!(
            filter.get_document("service").unwrap(),
            &doc! { "$in": ["web", "auth"] }
        );
        assert_eq!(
            filter.get_document("severity").unwrap(),
            &doc! { "$in": ["warn", "error", "fatal"] }
        );
        assert_eq!(
            filter.get_document("attrs.order").unwrap(),
            &doc! { "$in": ["42", 42_i64] }
        );
        assert_eq!(
            filter.get_document("http.status").unwrap(),
            &doc! { "$gte": 500, "$lt": 600 }
        );
        assert_eq!(filter.get_str("http.method").unwrap(), "GET");
        // Words are the store's to turn into conditions, span by span (store::words).
        assert_eq!(query.words, ["payment", "failed"]);
        assert!(!filter.contains_key("words") && !filter.contains_key("$and"));
        let Some(Bson::RegularExpression(regex)) = filter.get("message") else {
            panic!("no regex")
        };
        assert_eq!(regex.pattern, r"a\.b\*");
        assert!(
            filter.keys().all(|key| !key.starts_with('$')),
            "flat: {filter}"
        );
    }

    #[test]
    fn bad_input_names_the_parameter() {
        let long = "w ".repeat(200);
        for (query, parameter) in [
            ("from=yesterday", "from"),
            ("to=2026-13-01T00:00:00Z", "to"),
            ("limit=0", "limit"),
            ("limit=1000000000", "limit"),
            ("limit=ten", "limit"),
            ("severity=loud", "severity"),
            ("min_severity=loud", "min_severity"),
            ("severity=%20debug", "severity"),
            ("severity=03", "severity"),
            (&format!("q={long}"), "q"),
            ("contains=", "contains"),
            ("cursor=nonsense", "cursor"),
            ("status=700", "status"),
            ("status_class=6xx", "status_class"),
            ("service=bad%20name", "service"),
            ("attr.a$b=1", "attr.a$b"),
            ("order=random", "order"),
            ("limit=5&limit=6", "limit"),
            ("colour=red", "colour"),
            ("from=999999999999d", "from"),
            ("from=10000d", "from"),
            ("from=+5m", "from"),
            ("from=1é", "from"),
        ] {
            let error = parse(query).expect_err(query);
            assert_eq!(error.parameter, parameter, "{query}: {error:?}");
        }
    }

    #[test]
    fn a_literal_with_nul_is_escaped_so_a_bson_regex_can_carry_it() {
        assert_eq!(escape_regex("a\0b.c"), "a\\x00b\\.c");
        assert!(!escape_regex("\0\0").contains('\0'));
    }

    /// Parameters each valid but contradicting each other are an empty answer, not a 400:
    /// the OpenAPI document cannot state relations between parameters, and what it allows
    /// must not be refused.
    #[test]
    fn contradicting_filters_match_nothing_and_agreeing_ones_something() {
        for query in [
            "from=1h&to=2h",
            "severity=debug&min_severity=error",
            "status=404&status_class=5xx",
        ] {
            let parsed = parse(query).expect(query);
            assert!(parsed.matches_nothing, "{query}");
        }
        for query in ["from=2h&to=1h", "status=503&status_class=5xx", "q=---"] {
            let parsed = parse(query).expect(query);
            assert!(!parsed.matches_nothing, "{query}");
        }
        assert!(
            parse("q=---").expect("q").words.is_empty(),
            "no word asked for"
        );
    }

    proptest::proptest! {
        /// Whatever a client sends, parsing answers Ok or a 400, never a panic.
        #[test]
        fn any_query_string_parses_or_is_refused(
            pairs in proptest::collection::vec(
                (
                    proptest::prop_oneof![
                        proptest::sample::select(
                            REPEATABLE_PARAMETERS
                                .iter()
                                .chain(SINGLE_PARAMETERS.iter())
                                .map(|name| (*name).to_owned())
                                .collect::<Vec<_>>()
                        ),
                        "attr\\..{0,8}",
                    ],
                    proptest::prop_oneof![
                        ".{0,12}",
                        "[0-9]{1,20}[smhdwx]?",
                        "-?[0-9]{1,4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(Z|[+-][0-9]{2}:[0-9]{2})",
                        "[0-9a-f]{0,64}",
                    ],
                ),
                0..6,
            )
        ) {
            if let Ok(query) = LogQuery::parse(&pairs, now(), &SearchSettings::default()) {
                let _ = query.filter();
                proptest::prop_assert!(query.from <= query.to || query.matches_nothing);
            }
        }

        #[test]
        fn any_time_or_span_parses_or_is_refused(text in ".{0,16}", digits in "[0-9]{1,3}") {
            let _ = parse_time("from", &text, now());
            let _ = parse_time("from", &format!("{digits}{text}"), now());
            let _ = parse_age("interval", &text);
        }
    }

    #[test]
    fn regex_metacharacters_are_escaped_to_literals() {
        assert_eq!(escape_regex("(a|b)^$"), r"\(a\|b\)\^\$");
        assert_eq!(escape_regex("plain text"), "plain text");
    }
}
