//! The log record model: what a stored log is, its severity scale and its stable message id.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::parse::ParseError;

/// The one lowercase severity scale every accepted spelling is normalised to, lowest first.
///
/// The derived `Ord` follows declaration order, so `severity >= Severity::Warn` means
/// "warn and above".
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Trace,
    Debug,
    Info,
    Notice,
    Warn,
    Error,
    Fatal,
}

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Severity; 7] = [
        Severity::Trace,
        Severity::Debug,
        Severity::Info,
        Severity::Notice,
        Severity::Warn,
        Severity::Error,
        Severity::Fatal,
    ];

    /// The canonical lowercase name stored in MongoDB and used in routing keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Trace => "trace",
            Severity::Debug => "debug",
            Severity::Info => "info",
            Severity::Notice => "notice",
            Severity::Warn => "warn",
            Severity::Error => "error",
            Severity::Fatal => "fatal",
        }
    }

    /// Maps a syslog severity number (RFC 5424: 0 emergency … 7 debug) onto the scale.
    pub fn from_syslog(code: u64) -> Option<Severity> {
        match code {
            0..=2 => Some(Severity::Fatal),
            3 => Some(Severity::Error),
            4 => Some(Severity::Warn),
            5 => Some(Severity::Notice),
            6 => Some(Severity::Info),
            7 => Some(Severity::Debug),
            _ => None,
        }
    }
}

/// Every name a severity is known by (matched case-insensitively), with its severity.
pub const SEVERITY_NAMES: [(&str, Severity); 27] = [
    ("trace", Severity::Trace),
    ("trc", Severity::Trace),
    ("verbose", Severity::Trace),
    ("finest", Severity::Trace),
    ("debug", Severity::Debug),
    ("dbg", Severity::Debug),
    ("fine", Severity::Debug),
    ("info", Severity::Info),
    ("inf", Severity::Info),
    ("information", Severity::Info),
    ("informational", Severity::Info),
    ("notice", Severity::Notice),
    ("note", Severity::Notice),
    ("warn", Severity::Warn),
    ("warning", Severity::Warn),
    ("wrn", Severity::Warn),
    ("error", Severity::Error),
    ("err", Severity::Error),
    ("eror", Severity::Error),
    ("severe", Severity::Error),
    ("fatal", Severity::Fatal),
    ("critical", Severity::Fatal),
    ("crit", Severity::Fatal),
    ("alert", Severity::Fatal),
    ("emerg", Severity::Fatal),
    ("emergency", Severity::Fatal),
    ("panic", Severity::Fatal),
];

impl FromStr for Severity {
    type Err = ParseError;

    /// Accepts the common spellings case-insensitively: `Error`, `ERR`, `warning`, `WARN`,
    /// syslog numbers `0`-`7`, `fatal`/`critical`/`emergency`/`alert`, and so on.
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let trimmed = raw.trim();
        if let Ok(code) = trimmed.parse::<u64>() {
            return Severity::from_syslog(code)
                .ok_or_else(|| ParseError::UnknownSeverity(trimmed.to_owned()));
        }
        let lower = trimmed.to_ascii_lowercase();
        SEVERITY_NAMES
            .iter()
            .find(|(name, _)| *name == lower)
            .map(|(_, severity)| *severity)
            .ok_or_else(|| ParseError::UnknownSeverity(truncate_for_reason(trimmed)))
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Request fields of an access log, when the record describes an HTTP request.
/// An HTTP status class, `1xx` … `5xx`: how access stats group statuses and how
/// `status_class=5xx` filters them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StatusClass {
    Informational,
    Success,
    Redirection,
    ClientError,
    ServerError,
}

impl StatusClass {
    pub const ALL: [StatusClass; 5] = [
        StatusClass::Informational,
        StatusClass::Success,
        StatusClass::Redirection,
        StatusClass::ClientError,
        StatusClass::ServerError,
    ];

    /// The class of `status`; `None` outside 100-599.
    pub fn of(status: u16) -> Option<StatusClass> {
        (100..600)
            .contains(&status)
            .then(|| StatusClass::ALL[usize::from(status / 100 - 1)])
    }

    /// `0` for 1xx … `4` for 5xx.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The first digit of the class's statuses: `1` … `5`.
    pub fn digit(self) -> u16 {
        self as u16 + 1
    }

    pub fn as_str(self) -> &'static str {
        ["1xx", "2xx", "3xx", "4xx", "5xx"][self.index()]
    }
}

impl FromStr for StatusClass {
    type Err = String;

    /// `1xx` … `5xx`, any case.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_bytes() {
            [digit @ b'1'..=b'5', b'x', b'x'] => Ok(StatusClass::ALL[usize::from(digit - b'1')]),
            _ => Err(format!("`{text}` is not a status class: 1xx … 5xx")),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HttpFields {
    pub method: Option<String>,
    pub path: Option<String>,
    pub status: Option<u16>,
    pub duration_ms: Option<f64>,
    pub client_ip: Option<String>,
    /// Response size in bytes.
    pub bytes: Option<u64>,
    pub user_agent: Option<String>,
    pub referer: Option<String>,
}

impl HttpFields {
    pub fn is_empty(&self) -> bool {
        self == &HttpFields::default()
    }
}

/// One log record, as parsed from the broker and stored in MongoDB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogRecord {
    /// Stable record id, stored as the document `_id`: the AMQP message-id when the publisher
    /// set one, otherwise [`derive_message_id`] of the routing key and body; a batch line's,
    /// an HTTP item's or a shipped line's is a [`positioned_id`].
    pub id: String,
    /// When the event happened, UTC, millisecond precision.
    pub timestamp: DateTime<Utc>,
    /// When a collector first parsed the message, UTC, millisecond precision.
    pub received_at: DateTime<Utc>,
    pub service: String,
    pub severity: Severity,
    pub message: String,
    pub host: Option<String>,
    /// Free-form structured fields from the publisher.
    #[schema(value_type = Object)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
    pub http: Option<HttpFields>,
}

/// Derives a message id from what was published, for publishers that set no AMQP message-id.
///
/// A redelivery carries the same routing key and bytes, so it maps to the same id and is
/// stored once. The flip side: two byte-identical messages on the same routing key without
/// a message-id are one record (the collector counts them,
/// `logagg_collector_identical_bodies_total`). The hash is SHA-256, so distinct messages
/// never share an id in practice, even if someone crafts them to.
pub fn derive_message_id(routing_key: &str, body: &[u8]) -> String {
    digest_id(&[routing_key.as_bytes(), body])
}

/// The id of the record at `position` within something that has an id of its own: line `n`
/// of a batch message, item `n` of an HTTP request, the line at byte offset `n` of a shipped
/// file. Identical lines at different positions are different records; the same position
/// sent again (a redelivery, a retried request, a re-read after a crash) is the same record.
pub fn positioned_id(origin: &str, position: u64) -> String {
    format!("{origin}-{position}")
}

/// The id of an HTTP ingest request: its route and query (which decide how the body is
/// read) and its body, so a client retrying the identical request maps to the same records.
pub fn request_id(route_and_query: &str, body: &[u8]) -> String {
    digest_id(&[route_and_query.as_bytes(), body])
}

/// The first 128 bits of SHA-256 over the parts, a zero byte between each two (so
/// `("ab", "c")` and `("a", "bc")` differ), in hex. Ids already stored depend on this form.
fn digest_id(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for (index, part) in parts.iter().enumerate() {
        if index > 0 {
            hasher.update([0u8]);
        }
        hasher.update(part);
    }
    let digest = hasher.finalize();
    digest[..16]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Keeps error reasons short when they quote client input.
pub(crate) fn truncate_for_reason(input: &str) -> String {
    const MAX_QUOTED_CHARS: usize = 64;
    if input.chars().count() <= MAX_QUOTED_CHARS {
        return input.to_owned();
    }
    let prefix: String = input.chars().take(MAX_QUOTED_CHARS).collect();
    format!("{prefix}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes_parse_print_and_classify() {
        assert_eq!(StatusClass::of(503), Some(StatusClass::ServerError));
        assert_eq!(StatusClass::of(99), None);
        assert_eq!(StatusClass::of(600), None);
        assert_eq!("4XX".parse(), Ok(StatusClass::ClientError));
        assert!("6xx".parse::<StatusClass>().is_err());
        for class in StatusClass::ALL {
            assert_eq!(class.as_str().parse(), Ok(class));
            assert_eq!(StatusClass::of(class.digit() * 100), Some(class));
        }
    }

    #[test]
    fn common_spellings_normalise() {
        let cases = [
            ("Error", Severity::Error),
            ("ERR", Severity::Error),
            ("warning", Severity::Warn),
            ("WARN", Severity::Warn),
            ("fatal", Severity::Fatal),
            ("CRITICAL", Severity::Fatal),
            ("Info", Severity::Info),
            (" debug ", Severity::Debug),
            ("notice", Severity::Notice),
            ("trace", Severity::Trace),
        ];
        for (raw, expected) in cases {
            assert_eq!(raw.parse::<Severity>().ok(), Some(expected), "{raw}");
        }
    }

    #[test]
    fn syslog_numbers_map_onto_the_scale() {
        let expected = [
            Severity::Fatal,
            Severity::Fatal,
            Severity::Fatal,
            Severity::Error,
            Severity::Warn,
            Severity::Notice,
            Severity::Info,
            Severity::Debug,
        ];
        for (code, severity) in expected.iter().enumerate() {
            assert_eq!(code.to_string().parse::<Severity>().ok(), Some(*severity));
        }
        assert!(matches!(
            "8".parse::<Severity>(),
            Err(ParseError::UnknownSeverity(_))
        ));
    }

    #[test]
    fn unknown_severity_is_rejected_with_its_name() {
        let error = "loud".parse::<Severity>().err();
        assert_eq!(error, Some(ParseError::UnknownSeverity("loud".into())));
    }

    #[test]
    fn canonical_names_round_trip() {
        for severity in Severity::ALL {
            assert_eq!(severity.as_str().parse::<Severity>().ok(), Some(severity));
        }
        assert!(Severity::Warn < Severity::Error && Severity::Error < Severity::Fatal);
    }

    #[test]
    fn derived_ids_are_stable_and_depend_on_routing_key_and_body() {
        let first = derive_message_id("a.error", b"boom");
        assert_eq!(first, derive_message_id("a.error", b"boom"));
        assert_eq!(first.len(), 32);
        // Ids stored before this function was reshaped must not change.
        assert_eq!(first, "5247e7bfa323314a916e0b84b8eb0509");
        assert_ne!(first, derive_message_id("b.error", b"boom"));
        assert_ne!(first, derive_message_id("a.error", b"boom!"));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(derive_message_id("ab", b"c"), derive_message_id("a", b"bc"));
    }

    #[test]
    fn request_ids_depend_on_route_and_body_and_positions_tell_records_apart() {
        let request = request_id("/api/v1/logs/raw?format=clf", b"line\nline\n");
        assert_eq!(
            request,
            request_id("/api/v1/logs/raw?format=clf", b"line\nline\n")
        );
        assert_ne!(
            request,
            request_id("/api/v1/logs/raw?format=combined", b"line\nline\n")
        );
        assert_ne!(
            request,
            request_id("/api/v1/logs/raw?format=clf", b"line\n")
        );
        assert_ne!(positioned_id(&request, 0), positioned_id(&request, 1));
        assert_eq!(positioned_id("abc", 7), "abc-7");
    }
}
