//! Syslog listeners on the gateway, for rsyslog, syslog-ng, `logger` and network devices:
//! TCP on `syslog.listen_tcp`, each frame by RFC 6587 octet counting (`<length> <message>`)
//! or ended by LF, chosen per frame; UDP on `syslog.listen_udp`, one message a datagram
//! (both served by [`super::listener`]). RFC 5424 (`<pri>1 …`) and RFC 3164
//! (`<pri>Mmm dd hh:mm:ss host tag: …`) are told apart per message and parsed by the
//! gateway's syslog line formats: service from the app name (or tag), else
//! `syslog.default_service`. A message that is none (unparseable, not UTF-8, over
//! `syslog.max_frame_bytes`, cut by the connection's end) is dead-lettered with the reason.

use chrono::Utc;
use logagg::formats::{parse_line, LineContext, LineFormat};
use logagg::parse::ParseError;
use logagg::settings::SyslogSettings;
use logagg::LogRecord;

use super::gateway::Protocol;
use super::listener::{Frame, Framing, FramingError, Limits, Messages, Step};

/// The syslog protocol, as its listeners use it.
pub struct Syslog {
    pub settings: SyslogSettings,
}

impl Messages for Syslog {
    const PROTOCOL: Protocol = Protocol::Syslog;

    fn limits(&self) -> Limits {
        Limits {
            max_connections: self.settings.max_connections,
            max_frame_bytes: self.settings.max_frame_bytes,
            max_unconfirmed: self.settings.max_unconfirmed,
        }
    }

    fn framer(&self) -> Box<dyn Framing> {
        Box::new(Framer::new(self.settings.max_frame_bytes))
    }

    fn record(&self, message: &[u8], id: String) -> Result<LogRecord, (&'static str, String)> {
        message_record(message, id, &self.settings.default_service)
    }
}

/// Splits a TCP stream into frames, by octet count where a frame starts with a digit
/// (RFC 6587 3.4.1) and by LF otherwise (3.4.2; a CR before it is dropped).
#[derive(Debug)]
pub struct Framer {
    max_frame: usize,
    /// Inside an LF frame over the limit: bytes are skipped up to its LF.
    skipping: bool,
}

/// Digits an octet count may have (RFC 6587 allows any; a frame can't be that long here).
const MAX_COUNT_DIGITS: usize = 10;

impl Framer {
    pub fn new(max_frame: usize) -> Framer {
        Framer {
            max_frame,
            skipping: false,
        }
    }
}

impl Framing for Framer {
    /// What the front of `buffer` holds: a complete frame, bytes to skip (blank lines,
    /// the rest of a frame over the limit), or not enough yet.
    fn next(&mut self, buffer: &[u8]) -> Result<Step, FramingError> {
        if self.skipping {
            return Ok(match buffer.iter().position(|byte| *byte == b'\n') {
                Some(end) => {
                    self.skipping = false;
                    Step::Skip(end + 1)
                }
                None if buffer.is_empty() => Step::More,
                None => Step::Skip(buffer.len()),
            });
        }
        let Some(first) = buffer.first() else {
            return Ok(Step::More);
        };
        if first.is_ascii_digit() {
            let digits = buffer
                .iter()
                .take_while(|byte| byte.is_ascii_digit())
                .count();
            if digits > MAX_COUNT_DIGITS {
                return Err(FramingError::BadOctetCount);
            }
            let Some(separator) = buffer.get(digits) else {
                return Ok(Step::More);
            };
            if *separator != b' ' {
                return Err(FramingError::BadOctetCount);
            }
            let length: usize = std::str::from_utf8(&buffer[..digits])
                .ok()
                .and_then(|text| text.parse().ok())
                .ok_or(FramingError::BadOctetCount)?;
            if length > self.max_frame {
                return Err(FramingError::OctetCountTooLarge(length));
            }
            let end = digits + 1 + length;
            if buffer.len() < end {
                return Ok(Step::More);
            }
            return Ok(Step::Frame(
                Frame::Message(buffer[digits + 1..end].to_vec()),
                end,
            ));
        }
        match buffer.iter().position(|byte| *byte == b'\n') {
            Some(end) if buffer[..end].iter().all(u8::is_ascii_whitespace) => {
                Ok(Step::Skip(end + 1))
            }
            Some(end) if end <= self.max_frame => {
                let line = buffer[..end].strip_suffix(b"\r").unwrap_or(&buffer[..end]);
                Ok(Step::Frame(Frame::Message(line.to_vec()), end + 1))
            }
            Some(end) => Ok(Step::Frame(
                Frame::TooLong(buffer[..self.max_frame].to_vec()),
                end + 1,
            )),
            None if buffer.len() > self.max_frame => {
                self.skipping = true;
                Ok(Step::Frame(
                    Frame::TooLong(buffer[..self.max_frame].to_vec()),
                    buffer.len(),
                ))
            }
            None => Ok(Step::More),
        }
    }

    /// What is left when the connection ends: an LF frame without its LF is a frame; a
    /// cut octet-counted frame is none.
    fn finish(&mut self, rest: &[u8]) -> Option<Result<Vec<u8>, Vec<u8>>> {
        if self.skipping || rest.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        if rest[0].is_ascii_digit() {
            return Some(Err(rest.to_vec()));
        }
        Some(Ok(rest.to_vec()))
    }
}

/// A syslog message as a record: RFC 5424 when a version follows the priority, else
/// RFC 3164; a message naming no app takes `default_service`.
pub fn message_record(
    message: &[u8],
    id: String,
    default_service: &str,
) -> Result<LogRecord, (&'static str, String)> {
    let text = std::str::from_utf8(message)
        .map_err(|_| ("invalid_utf8", "the message is not UTF-8".to_owned()))?;
    let text = text.trim_end_matches(['\n', '\r', '\0']);
    let after_priority = text
        .strip_prefix('<')
        .and_then(|rest| rest.split_once('>'))
        .map(|(_, rest)| rest);
    let format = match after_priority.map(str::as_bytes) {
        Some([b'1'..=b'9', b' ', ..]) => LineFormat::Syslog5424,
        _ => LineFormat::Syslog3164,
    };
    let mut context = LineContext {
        service: None,
        received_at: Utc::now(),
    };
    let parsed = parse_line(format, text, id.clone(), &context).or_else(|error| match error {
        ParseError::MissingField("service") => {
            context.service = Some(default_service);
            parse_line(format, text, id, &context)
        }
        other => Err(other),
    });
    parsed.map_err(|error| (error.code(), error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(framer: &mut Framer, bytes: &[u8]) -> (Vec<Frame>, usize) {
        let mut out = Vec::new();
        let mut taken = 0;
        loop {
            match framer.next(&bytes[taken..]) {
                Ok(Step::Frame(frame, used)) => {
                    taken += used;
                    out.push(frame);
                }
                Ok(Step::Skip(used)) => taken += used,
                Ok(Step::More) | Err(_) => return (out, taken),
            }
        }
    }

    #[test]
    fn octet_counted_and_lf_frames_mix_per_frame() {
        let mut framer = Framer::new(64);
        let stream = b"11 <13>1 - a b<13>plain line\r\n\n5 hello7 <1>tail";
        let (found, taken) = frames(&mut framer, stream);
        assert_eq!(
            found,
            vec![
                Frame::Message(b"<13>1 - a b".to_vec()),
                Frame::Message(b"<13>plain line".to_vec()),
                Frame::Message(b"hello".to_vec()),
                Frame::Message(b"<1>tail".to_vec()),
            ]
        );
        assert_eq!(taken, stream.len());
    }

    #[test]
    fn partial_frames_wait_for_more_and_long_ones_are_cut() {
        let mut framer = Framer::new(8);
        assert_eq!(
            framer.next(b"12"),
            Ok(Step::More),
            "digits without their space"
        );
        assert_eq!(
            framer.next(b"5 abc"),
            Ok(Step::More),
            "a count not yet all there"
        );
        assert_eq!(
            framer.next(b"<1>short"),
            Ok(Step::More),
            "a line without its LF"
        );
        assert_eq!(
            framer.next(b"no newline"),
            Ok(Step::Frame(Frame::TooLong(b"no newli".to_vec()), 10))
        );
        assert_eq!(framer.next(b"still"), Ok(Step::Skip(5)), "inside that line");
        assert_eq!(framer.next(b"ne\nok\n"), Ok(Step::Skip(3)), "up to its LF");
        assert_eq!(
            framer.next(b"ok\n"),
            Ok(Step::Frame(Frame::Message(b"ok".to_vec()), 3))
        );
        assert_eq!(
            framer.next(b"9 x"),
            Err(FramingError::OctetCountTooLarge(9))
        );
        assert_eq!(framer.next(b"12x"), Err(FramingError::BadOctetCount));
        assert_eq!(framer.finish(b"<1>last"), Some(Ok(b"<1>last".to_vec())));
        assert_eq!(
            framer.finish(b"20 <1>cut"),
            Some(Err(b"20 <1>cut".to_vec()))
        );
        assert_eq!(framer.finish(b" \n"), None);
    }

    #[test]
    fn both_rfcs_parse_and_a_message_without_app_takes_the_default_service() {
        let modern = message_record(
            b"<11>1 2026-12-03T08:00:00.5Z web-1 checkout 42 ID7 - payment failed",
            "r-0".into(),
            "syslog",
        )
        .unwrap();
        assert_eq!(
            (
                modern.service.as_str(),
                modern.severity,
                modern.message.as_str()
            ),
            ("checkout", logagg::Severity::Error, "payment failed")
        );
        let old = message_record(
            b"<30>Dec  3 08:00:00 web-1 sshd[7]: accepted",
            "r-1".into(),
            "syslog",
        )
        .unwrap();
        assert_eq!(
            (old.service.as_str(), old.message.as_str()),
            ("sshd", "accepted")
        );
        let untagged = message_record(
            b"<30>Dec  3 08:00:00 web-1 no tag here",
            "r-2".into(),
            "fallback",
        )
        .unwrap();
        assert_eq!(untagged.service, "fallback");
        assert!(message_record(b"not syslog", "r-3".into(), "syslog").is_err());
        assert!(message_record(&[0xff, 0xfe], "r-4".into(), "syslog").is_err());
    }

    proptest::proptest! {
        #[test]
        fn no_stream_makes_the_framer_or_parser_panic(
            chunks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..64), 0..8),
            max in 1usize..80,
        ) {
            let mut framer = Framer::new(max);
            let mut buffer = Vec::new();
            for chunk in chunks {
                buffer.extend_from_slice(&chunk);
                loop {
                    match framer.next(&buffer) {
                        Ok(Step::Frame(frame, used)) => {
                            proptest::prop_assert!(used > 0 && used <= buffer.len());
                            buffer.drain(..used);
                            if let Frame::Message(bytes) = frame {
                                let _ = message_record(&bytes, "r".into(), "syslog");
                            }
                        }
                        Ok(Step::Skip(used)) => {
                            proptest::prop_assert!(used > 0 && used <= buffer.len());
                            buffer.drain(..used);
                        }
                        Ok(Step::More) | Err(_) => break,
                    }
                }
            }
            let _ = framer.finish(&buffer);
        }
    }
}
