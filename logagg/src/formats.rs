//! Text log formats the gateway and the shipper read, one line at a time, into records:
//! the plain-text line, Common and Combined Log Format, RFC 5424 and RFC 3164 syslog, and
//! logfmt. Access-log lines fill the record's HTTP fields; their severity follows the status
//! (5xx error, 4xx warn, else info).

use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDateTime, TimeZone, Utc};
use serde_json::{Map, Value};

use crate::parse::{
    parse_plain_line, parse_timestamp, truncate_to_millis, validate_service, ParseError,
};
use crate::record::{HttpFields, LogRecord, Severity};

/// Longest line accepted, bytes.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineFormat {
    /// `<timestamp> <service> <severity> <message>`.
    Plain,
    /// Common Log Format: `host ident user [time] "request" status bytes`.
    Clf,
    /// Combined Log Format: CLF + `"referer" "user-agent"`.
    Combined,
    /// RFC 5424 syslog: `<pri>1 time host app procid msgid [sd] msg`.
    Syslog5424,
    /// RFC 3164 (BSD) syslog: `<pri>Mmm dd hh:mm:ss host tag[pid]: msg`.
    Syslog3164,
    /// logfmt: `key=value key="quoted value"`.
    Logfmt,
}

impl LineFormat {
    pub const NAMES: [&str; 6] = [
        "plain",
        "clf",
        "combined",
        "syslog5424",
        "syslog3164",
        "logfmt",
    ];

    pub fn name(self) -> &'static str {
        match self {
            LineFormat::Plain => "plain",
            LineFormat::Clf => "clf",
            LineFormat::Combined => "combined",
            LineFormat::Syslog5424 => "syslog5424",
            LineFormat::Syslog3164 => "syslog3164",
            LineFormat::Logfmt => "logfmt",
        }
    }
}

impl FromStr for LineFormat {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "plain" => LineFormat::Plain,
            "clf" | "common" => LineFormat::Clf,
            "combined" => LineFormat::Combined,
            "syslog5424" | "rfc5424" => LineFormat::Syslog5424,
            "syslog3164" | "rfc3164" => LineFormat::Syslog3164,
            "logfmt" => LineFormat::Logfmt,
            _ => {
                return Err(format!(
                    "unknown format `{name}`; one of {}",
                    LineFormat::NAMES.join(", ")
                ))
            }
        })
    }
}

/// What a line does not carry: the service (for formats without one, or to override a
/// syslog app name) and when it was received.
#[derive(Debug, Clone, Copy)]
pub struct LineContext<'a> {
    pub service: Option<&'a str>,
    pub received_at: DateTime<Utc>,
}

/// Parses one line in `format` into a validated record with the id `id`, which the caller
/// derives from where the line came from ([`crate::record::positioned_id`]): the text alone
/// cannot tell two identical lines apart, and both count.
pub fn parse_line(
    format: LineFormat,
    line: &str,
    id: String,
    context: &LineContext<'_>,
) -> Result<LogRecord, ParseError> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Err(ParseError::EmptyBody);
    }
    if line.len() > MAX_LINE_BYTES {
        return Err(ParseError::TooLarge {
            size: line.len(),
            max: MAX_LINE_BYTES,
        });
    }
    let received_at = truncate_to_millis(context.received_at);
    let record = match format {
        LineFormat::Plain => parse_plain_line(line).map(|plain| {
            new_record(
                plain.service.to_owned(),
                plain.severity,
                plain.timestamp,
                plain.message.to_owned(),
                received_at,
            )
        }),
        LineFormat::Clf => access_line(line, false, context, received_at),
        LineFormat::Combined => access_line(line, true, context, received_at),
        LineFormat::Syslog5424 => syslog_5424(line, context, received_at),
        LineFormat::Syslog3164 => syslog_3164(line, context, received_at),
        LineFormat::Logfmt => logfmt(line, context, received_at),
    };
    let mut record = record.map_err(|error| match error {
        ParseError::MalformedLine(reason) if format != LineFormat::Plain => {
            ParseError::MalformedFormat {
                format: format.name(),
                reason,
            }
        }
        other => other,
    })?;
    validate_service(&record.service)?;
    record.id = id;
    Ok(record)
}

fn new_record(
    service: String,
    severity: Severity,
    timestamp: DateTime<Utc>,
    message: String,
    received_at: DateTime<Utc>,
) -> LogRecord {
    LogRecord {
        id: String::new(),
        timestamp,
        received_at,
        service,
        severity,
        message,
        host: None,
        attributes: Map::new(),
        http: None,
    }
}

fn required_service(context: &LineContext<'_>) -> Result<String, ParseError> {
    context
        .service
        .map(str::to_owned)
        .ok_or(ParseError::MissingField("service"))
}

/// The context's service, else the line's app name (syslog).
fn service_or_app(context: &LineContext<'_>, app: Option<&str>) -> Result<String, ParseError> {
    context
        .service
        .or(app)
        .map(str::to_owned)
        .ok_or(ParseError::MissingField("service"))
}

fn malformed(reason: &'static str) -> ParseError {
    ParseError::MalformedLine(reason)
}

/// A `"…"` field with `\"` escapes; returns the unescaped text and the rest.
fn quoted(text: &str) -> Option<(String, &str)> {
    let rest = text.trim_start().strip_prefix('"')?;
    let mut value = String::new();
    let mut characters = rest.char_indices();
    while let Some((index, character)) = characters.next() {
        match character {
            '\\' => {
                if let Some((_, escaped)) = characters.next() {
                    value.push(escaped);
                }
            }
            '"' => return Some((value, &rest[index + 1..])),
            other => value.push(other),
        }
    }
    None
}

fn token(text: &str) -> Option<(&str, &str)> {
    let text = text.trim_start();
    if text.is_empty() {
        return None;
    }
    let end = text.find(' ').unwrap_or(text.len());
    Some((&text[..end], &text[end..]))
}

/// `-` means absent in CLF and syslog.
fn present(value: &str) -> Option<&str> {
    (value != "-" && !value.is_empty()).then_some(value)
}

/// Common or Combined Log Format.
fn access_line(
    line: &str,
    combined: bool,
    context: &LineContext<'_>,
    received_at: DateTime<Utc>,
) -> Result<LogRecord, ParseError> {
    let (client_ip, rest) = token(line).ok_or(malformed("no client address"))?;
    let (_ident, rest) = token(rest).ok_or(malformed("no ident"))?;
    let (user, rest) = token(rest).ok_or(malformed("no user"))?;
    let rest = rest
        .trim_start()
        .strip_prefix('[')
        .ok_or(malformed("no [time]"))?;
    let (time_text, rest) = rest.split_once(']').ok_or(malformed("unclosed [time]"))?;
    let timestamp = DateTime::parse_from_str(time_text, "%d/%b/%Y:%H:%M:%S %z")
        .map_err(|_| ParseError::InvalidTimestamp(time_text.chars().take(64).collect()))?
        .with_timezone(&Utc);
    let (request, rest) = quoted(rest).ok_or(malformed("no \"request\""))?;
    let (status_text, rest) = token(rest).ok_or(malformed("no status"))?;
    let status: u16 = status_text
        .parse()
        .ok()
        .filter(|status| (100..=599).contains(status))
        .ok_or(malformed("status is not 100-599"))?;
    let (bytes_text, rest) = token(rest).ok_or(malformed("no size"))?;
    let bytes = match present(bytes_text) {
        Some(text) => Some(
            text.parse::<u64>()
                .map_err(|_| malformed("size is not a number"))?,
        ),
        None => None,
    };
    let (referer, user_agent, rest) = if combined {
        let (referer, rest) = quoted(rest).ok_or(malformed("no \"referer\""))?;
        let (user_agent, rest) = quoted(rest).ok_or(malformed("no \"user-agent\""))?;
        (
            present(&referer).map(str::to_owned),
            present(&user_agent).map(str::to_owned),
            rest,
        )
    } else {
        (None, None, rest)
    };
    // A response time some servers append (`%D` microseconds or `%T`-style seconds with a
    // fraction) is taken as the duration.
    let duration_ms = token(rest).and_then(|(extra, _)| {
        if extra.contains('.') {
            extra.parse::<f64>().ok().map(|seconds| seconds * 1_000.0)
        } else {
            extra.parse::<f64>().ok().map(|micros| micros / 1_000.0)
        }
    });
    let mut parts = request.split(' ');
    let (method, path) = match (parts.next(), parts.next()) {
        (Some(method), Some(path)) if !method.is_empty() => {
            (Some(method.to_ascii_uppercase()), Some(path.to_owned()))
        }
        _ => (None, None),
    };
    let severity = match status {
        500..=599 => Severity::Error,
        400..=499 => Severity::Warn,
        _ => Severity::Info,
    };
    let mut record = new_record(
        required_service(context)?,
        severity,
        truncate_to_millis(timestamp),
        line.to_owned(),
        received_at,
    );
    if let Some(user) = present(user) {
        record.attributes.insert("user".into(), Value::from(user));
    }
    record.http = Some(HttpFields {
        method,
        path,
        status: Some(status),
        duration_ms,
        client_ip: Some(client_ip.to_owned()),
        bytes,
        user_agent,
        referer,
    });
    Ok(record)
}

/// `<pri>` at the start of a syslog line: the severity is `pri % 8`.
fn priority(line: &str) -> Result<(Severity, &str), ParseError> {
    let rest = line.strip_prefix('<').ok_or(malformed("no <priority>"))?;
    let (number, rest) = rest
        .split_once('>')
        .ok_or(malformed("unclosed <priority>"))?;
    let value: u16 = number
        .parse()
        .ok()
        .filter(|value| *value <= 191 && number.len() <= 3)
        .ok_or(malformed("priority is not 0-191"))?;
    let severity = Severity::from_syslog(u64::from(value % 8)).unwrap_or(Severity::Info);
    Ok((severity, rest))
}

fn syslog_5424(
    line: &str,
    context: &LineContext<'_>,
    received_at: DateTime<Utc>,
) -> Result<LogRecord, ParseError> {
    let (severity, rest) = priority(line)?;
    let (version, rest) = token(rest).ok_or(malformed("no version"))?;
    if version != "1" {
        return Err(malformed("RFC 5424 version must be 1"));
    }
    let (time_text, rest) = token(rest).ok_or(malformed("no timestamp"))?;
    let timestamp = match present(time_text) {
        Some(text) => parse_timestamp(text)?,
        None => received_at,
    };
    let (host, rest) = token(rest).ok_or(malformed("no hostname"))?;
    let (app, rest) = token(rest).ok_or(malformed("no app-name"))?;
    let (process, rest) = token(rest).ok_or(malformed("no procid"))?;
    let (message_id, rest) = token(rest).ok_or(malformed("no msgid"))?;
    let rest = rest.trim_start();
    let (structured, message) = if let Some(after) = rest.strip_prefix('-') {
        (None, after)
    } else if rest.starts_with('[') {
        let end = structured_data_end(rest).ok_or(malformed("unclosed structured data"))?;
        (Some(&rest[..end]), &rest[end..])
    } else {
        return Err(malformed("no structured data"));
    };
    let message = message.trim_start().trim_start_matches('\u{feff}');
    let service = service_or_app(context, present(app))?;
    let mut record = new_record(
        service,
        severity,
        timestamp,
        if message.is_empty() {
            line.to_owned()
        } else {
            message.to_owned()
        },
        received_at,
    );
    record.host = present(host).map(str::to_owned);
    for (key, value) in [("app", app), ("procid", process), ("msgid", message_id)] {
        if let Some(value) = present(value) {
            record.attributes.insert(key.into(), Value::from(value));
        }
    }
    if let Some(structured) = structured {
        record
            .attributes
            .insert("structured_data".into(), Value::from(structured));
    }
    Ok(record)
}

/// End (exclusive) of the `[id k="v"]…` elements, honouring `\]` and quotes.
fn structured_data_end(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut index = 0;
    while bytes.get(index) == Some(&b'[') {
        let mut in_quotes = false;
        index += 1;
        loop {
            match bytes.get(index)? {
                b'\\' => index += 1,
                b'"' => in_quotes = !in_quotes,
                b']' if !in_quotes => break,
                _ => {}
            }
            index += 1;
        }
        index += 1;
    }
    Some(index)
}

fn syslog_3164(
    line: &str,
    context: &LineContext<'_>,
    received_at: DateTime<Utc>,
) -> Result<LogRecord, ParseError> {
    let (severity, rest) = priority(line)?;
    // `Mmm dd hh:mm:ss` (day space-padded), in the sender's zone, without a year: taken as
    // UTC in the year that puts it closest to the time received.
    let stamp = rest.get(..15).ok_or(malformed("no timestamp"))?;
    let rest = &rest[15..];
    let naive = |year: i32| {
        NaiveDateTime::parse_from_str(&format!("{year} {stamp}"), "%Y %b %e %H:%M:%S").ok()
    };
    let year = received_at.year();
    let timestamp = [year - 1, year, year + 1]
        .into_iter()
        .filter_map(|candidate| naive(candidate).map(|time| Utc.from_utc_datetime(&time)))
        .min_by_key(|time| (*time - received_at).num_seconds().abs())
        .ok_or_else(|| ParseError::InvalidTimestamp(stamp.to_owned()))?;
    let (host, rest) = token(rest).ok_or(malformed("no hostname"))?;
    let rest = rest.trim_start();
    let (tag, message) = match rest.split_once(':') {
        Some((tag, message)) if !tag.contains(' ') && tag.len() <= 48 => {
            (Some(tag), message.trim_start())
        }
        _ => (None, rest),
    };
    let (app, process) = match tag {
        Some(tag) => match tag.split_once('[') {
            Some((app, pid)) => (Some(app), pid.strip_suffix(']')),
            None => (Some(tag), None),
        },
        None => (None, None),
    };
    let service = service_or_app(context, app)?;
    let mut record = new_record(
        service,
        severity,
        timestamp,
        message.to_owned(),
        received_at,
    );
    record.host = Some(host.to_owned());
    if let Some(app) = app {
        record.attributes.insert("app".into(), Value::from(app));
    }
    if let Some(process) = process {
        record
            .attributes
            .insert("procid".into(), Value::from(process));
    }
    Ok(record)
}

/// logfmt pairs, in order; a bare key is `true`.
fn logfmt_pairs(line: &str) -> Result<Vec<(String, String)>, ParseError> {
    let mut pairs = Vec::new();
    let mut rest = line.trim();
    while !rest.is_empty() {
        let key_end = rest.find(['=', ' ']).unwrap_or(rest.len());
        let key = &rest[..key_end];
        if key.is_empty() {
            return Err(malformed("logfmt key missing"));
        }
        rest = &rest[key_end..];
        let value = if let Some(after) = rest.strip_prefix('=') {
            if after.starts_with('"') {
                let (value, after_value) =
                    quoted(after).ok_or(malformed("unclosed logfmt quote"))?;
                rest = after_value;
                value
            } else {
                let end = after.find(' ').unwrap_or(after.len());
                rest = &after[end..];
                after[..end].to_owned()
            }
        } else {
            "true".to_owned()
        };
        pairs.push((key.to_owned(), value));
        rest = rest.trim_start();
    }
    Ok(pairs)
}

fn logfmt(
    line: &str,
    context: &LineContext<'_>,
    received_at: DateTime<Utc>,
) -> Result<LogRecord, ParseError> {
    let pairs = logfmt_pairs(line)?;
    let mut record = new_record(
        String::new(),
        Severity::Info,
        received_at,
        String::new(),
        received_at,
    );
    let mut service = None;
    let mut http = HttpFields::default();
    for (key, value) in pairs {
        match key.as_str() {
            "ts" | "time" | "timestamp" | "t" => record.timestamp = parse_timestamp(&value)?,
            "level" | "lvl" | "severity" => record.severity = value.parse()?,
            "msg" | "message" => record.message = value,
            "service" | "app" => service = Some(value),
            "host" | "hostname" => record.host = Some(value),
            "method" => http.method = Some(value.to_ascii_uppercase()),
            "path" => http.path = Some(value),
            "status" => {
                http.status = Some(
                    value
                        .parse()
                        .ok()
                        .filter(|status| (100..=599).contains(status))
                        .ok_or(malformed("status is not 100-599"))?,
                )
            }
            "duration_ms" => {
                http.duration_ms = Some(
                    value
                        .parse()
                        .ok()
                        .filter(|duration: &f64| duration.is_finite() && *duration >= 0.0)
                        .ok_or(malformed("duration_ms is not a number"))?,
                )
            }
            _ => {
                let key = key.replace(['.', '$'], "_");
                record.attributes.insert(key, logfmt_value(&value));
            }
        }
    }
    if record.message.is_empty() {
        return Err(ParseError::MissingField("msg"));
    }
    record.service = match (context.service, service) {
        (Some(service), _) => service.to_owned(),
        (None, Some(service)) => service,
        (None, None) => return Err(ParseError::MissingField("service")),
    };
    if !http.is_empty() {
        record.http = Some(http);
    }
    Ok(record)
}

fn logfmt_value(value: &str) -> Value {
    if let Ok(integer) = value.parse::<i64>() {
        return Value::from(integer);
    }
    if let Ok(number) = value.parse::<f64>() {
        if number.is_finite() {
            return Value::from(number);
        }
    }
    match value {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => Value::from(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(service: Option<&str>) -> LineContext<'_> {
        LineContext {
            service,
            received_at: Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap(),
        }
    }

    fn parse(format: &str, line: &str, service: Option<&str>) -> Result<LogRecord, ParseError> {
        parse_line(
            format.parse().unwrap(),
            line,
            "id".into(),
            &context(service),
        )
    }

    #[test]
    fn common_and_combined_log_format_fill_the_http_fields() {
        let clf = r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326"#;
        let record = parse("clf", clf, Some("web")).unwrap();
        assert_eq!(
            record.timestamp,
            Utc.with_ymd_and_hms(2000, 10, 10, 20, 55, 36).unwrap()
        );
        assert_eq!(record.severity, Severity::Info);
        assert_eq!(record.message, clf);
        assert_eq!(record.attributes["user"], "frank");
        let http = record.http.unwrap();
        assert_eq!(http.method.as_deref(), Some("GET"));
        assert_eq!(http.path.as_deref(), Some("/apache_pb.gif"));
        assert_eq!((http.status, http.bytes), (Some(200), Some(2326)));
        assert_eq!(http.client_ip.as_deref(), Some("127.0.0.1"));

        let combined = r#"203.0.113.9 - - [21/Nov/2026:11:59:59 +0000] "POST /api/pay?x=1 HTTP/1.1" 503 - "https://shop.example/cart" "Mozilla/5.0 (X11; Linux x86_64) \"quoted\"" 0.250"#;
        let record = parse("combined", combined, Some("shop")).unwrap();
        assert_eq!(record.severity, Severity::Error);
        let http = record.http.unwrap();
        assert_eq!(http.bytes, None);
        assert_eq!(http.referer.as_deref(), Some("https://shop.example/cart"));
        assert_eq!(
            http.user_agent.as_deref(),
            Some(r#"Mozilla/5.0 (X11; Linux x86_64) "quoted""#)
        );
        assert_eq!(http.duration_ms, Some(250.0));
        let not_found = r#"10.1.1.1 - - [21/Nov/2026:11:00:00 +0000] "GET /x HTTP/1.1" 404 12"#;
        assert_eq!(
            parse("clf", not_found, Some("web")).unwrap().severity,
            Severity::Warn
        );
    }

    #[test]
    fn rfc5424_and_rfc3164_syslog() {
        let line = "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \u{feff}'su root' failed for lonvick on /dev/pts/8";
        let record = parse("syslog5424", line, None).unwrap();
        assert_eq!(record.service, "su");
        assert_eq!(record.severity, Severity::Fatal, "34 % 8 = 2, critical");
        assert_eq!(record.host.as_deref(), Some("mymachine.example.com"));
        assert_eq!(record.message, "'su root' failed for lonvick on /dev/pts/8");
        assert_eq!(record.attributes["msgid"], "ID47");
        let with_data = r#"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - [exampleSDID@32473 iut="3" eventSource="Application \]"] An application event"#;
        let record = parse("syslog5424", with_data, Some("billing")).unwrap();
        assert_eq!(
            (record.service.as_str(), record.severity),
            ("billing", Severity::Notice)
        );
        assert_eq!(record.message, "An application event");
        assert!(record.attributes["structured_data"]
            .as_str()
            .unwrap()
            .ends_with(r#"\]"]"#));

        let bsd = "<13>Nov 21 11:58:01 web-3 sshd[4242]: Accepted publickey for deploy";
        let record = parse("syslog3164", bsd, None).unwrap();
        assert_eq!(record.service, "sshd");
        assert_eq!(record.severity, Severity::Notice);
        assert_eq!(
            record.timestamp,
            Utc.with_ymd_and_hms(2026, 11, 21, 11, 58, 1).unwrap()
        );
        assert_eq!(record.attributes["procid"], "4242");
        assert_eq!(record.message, "Accepted publickey for deploy");
        let new_year = "<11>Dec 31 23:59:59 h1 cron: late";
        let record = parse_line(
            LineFormat::Syslog3164,
            new_year,
            "id".into(),
            &LineContext {
                service: None,
                received_at: Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 5).unwrap(),
            },
        )
        .unwrap();
        assert_eq!(record.timestamp.year(), 2026, "the closest year");
    }

    #[test]
    fn logfmt_keys_map_to_fields_and_the_rest_to_attributes() {
        let line = r#"ts=2026-11-21T11:00:00Z level=error service=checkout msg="payment failed: card declined" status=502 duration_ms=81.5 method=post path=/pay order.id=42 retry=true"#;
        let record = parse("logfmt", line, None).unwrap();
        assert_eq!(record.service, "checkout");
        assert_eq!(record.severity, Severity::Error);
        assert_eq!(record.message, "payment failed: card declined");
        assert_eq!(record.attributes["order_id"], 42);
        assert_eq!(record.attributes["retry"], true);
        let http = record.http.unwrap();
        assert_eq!((http.status, http.duration_ms), (Some(502), Some(81.5)));
        assert_eq!(http.method.as_deref(), Some("POST"));
    }

    #[test]
    fn a_line_takes_the_id_of_its_position_and_the_plain_line_still_parses() {
        let line = "2024-05-01 12:00:00 ServiceA Error Log message generated";
        let record = parse_line(LineFormat::Plain, line, "file-120".into(), &context(None));
        let record = record.unwrap();
        assert_eq!(
            (record.service.as_str(), record.severity, record.id.as_str()),
            ("ServiceA", Severity::Error, "file-120")
        );
    }

    proptest::proptest! {
        /// No line, however broken, makes a parser panic.
        #[test]
        fn any_line_parses_or_is_refused(
            line in "(<[0-9]{1,3}>)?[ -~\u{a0}-\u{2fff}\\[\\]\"=]{0,80}",
            format in proptest::sample::select(LineFormat::NAMES.to_vec()),
        ) {
            let _ = parse(format, &line, Some("svc"));
            let _ = parse(format, &line, None);
        }

        /// Every valid sample cut short or with a character spliced in anywhere.
        #[test]
        fn damaged_samples_parse_or_are_refused(cut in 0_usize..400, splice in proptest::char::any()) {
            for (format, line) in SAMPLES {
                let characters: Vec<char> = line.chars().collect();
                let at = cut % (characters.len() + 1);
                let cut_short: String = characters[..at].iter().collect();
                let mut spliced = characters.clone();
                spliced.insert(at, splice);
                let spliced: String = spliced.into_iter().collect();
                for damaged in [cut_short, spliced] {
                    let _ = parse(format, &damaged, Some("svc"));
                    let _ = parse(format, &damaged, None);
                }
            }
        }
    }

    const SAMPLES: [(&str, &str); 6] = [
        (
            "plain",
            "2024-05-01 12:00:00 ServiceA Error Log message generated",
        ),
        (
            "clf",
            r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326"#,
        ),
        (
            "combined",
            r#"203.0.113.9 - - [21/Nov/2026:11:59:59 +0000] "POST /p HTTP/1.1" 503 - "https://r/" "UA \"q\"" 0.250"#,
        ),
        (
            "syslog5424",
            r#"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - [id@1 a="3" b="x \]"] event"#,
        ),
        (
            "syslog3164",
            "<13>Nov 21 11:58:01 web-3 sshd[4242]: Accepted publickey",
        ),
        (
            "logfmt",
            r#"ts=2026-11-21T11:00:00Z level=error service=c msg="a b" status=502 k=v"#,
        ),
    ];

    #[test]
    fn malformed_lines_are_refused_with_a_reason() {
        for (format, line, service) in [
            ("clf", "not an access log", Some("web")),
            (
                "clf",
                r#"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 999 1"#,
                Some("web"),
            ),
            (
                "clf",
                r#"1.2.3.4 - - [yesterday] "GET / HTTP/1.0" 200 1"#,
                Some("web"),
            ),
            (
                "clf",
                r#"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 1"#,
                None,
            ),
            (
                "combined",
                r#"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 1"#,
                Some("web"),
            ),
            (
                "syslog5424",
                "<34>2 2003-10-11T22:14:15Z h app - - - m",
                None,
            ),
            (
                "syslog5424",
                "<999>1 2003-10-11T22:14:15Z h app - - - m",
                None,
            ),
            (
                "syslog5424",
                "34>1 2003-10-11T22:14:15Z h app - - - m",
                None,
            ),
            ("syslog3164", "<13>Smarch 41 99:99:99 h app: m", None),
            ("syslog3164", "<13>Nov 21 11:58:01 web-3 no tag here", None),
            ("logfmt", r#"level=error msg="unclosed"#, Some("x")),
            ("logfmt", "level=loud msg=hi", Some("x")),
            ("logfmt", "level=info", Some("x")),
            ("logfmt", "msg=hi service=bad*name", None),
            ("plain", "just words", None),
            ("plain", "   ", None),
        ] {
            assert!(parse(format, line, service).is_err(), "{format}: {line}");
        }
        assert!("csv".parse::<LineFormat>().is_err());
    }
}
