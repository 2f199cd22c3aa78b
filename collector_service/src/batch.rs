//! Batching and decoding: pure code between a delivery and a bulk insert.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lapin::message::Delivery;
use lapin::BasicProperties;
use std::ops::Range;

use logagg::parse::{is_batch, parse_records, Envelope, ParseError, MAX_BODY_BYTES};
use logagg::LogRecord;
use tokio::time::Instant;

use crate::dead_letter::DEAD_LETTER_MAX_BODY;

/// One delivery waiting to be written: what the parser and the dead-letter path need.
#[derive(Debug)]
pub struct PendingMessage {
    pub delivery_tag: u64,
    pub routing_key: String,
    pub properties: BasicProperties,
    pub body: Vec<u8>,
    pub received_at: DateTime<Utc>,
    /// The broker's flag: delivered before (to this consumer or another) and not acked.
    pub redelivered: bool,
    /// The body's size when it was over the parser's limit: such a message is only ever
    /// dead-lettered, so `body` keeps just what the dead letter will
    /// (`DEAD_LETTER_MAX_BODY`), and the rest is freed as it arrives.
    pub oversized: Option<usize>,
}

impl PendingMessage {
    pub fn from_delivery(delivery: Delivery) -> Self {
        let mut message = Self {
            delivery_tag: delivery.delivery_tag,
            routing_key: delivery.routing_key.to_string(),
            properties: delivery.properties,
            body: delivery.data,
            received_at: Utc::now(),
            redelivered: delivery.redelivered,
            oversized: None,
        };
        message.cut_if_oversized();
        message
    }

    /// Keeps only the dead letter's part of a body over the limit (see `oversized`).
    fn cut_if_oversized(&mut self) {
        if self.body.len() > MAX_BODY_BYTES {
            self.oversized = Some(self.body.len());
            self.body.truncate(DEAD_LETTER_MAX_BODY);
            self.body.shrink_to_fit();
        }
    }

    /// Whether a stored record with this message's id can only be an identical body from
    /// the publisher, not this message stored on an earlier delivery: the id derives from
    /// the body (no message-id) and the broker says it was never delivered before.
    pub fn is_identical_body_if_stored(&self) -> bool {
        self.properties.message_id().is_none() && !self.redelivered
    }

    /// Records this message may hold: its lines for a batch, else one. An upper bound (blank
    /// lines count), found without parsing, so batches can be sized in records.
    pub fn weight(&self) -> usize {
        if self.oversized.is_none() && is_batch(&self.envelope()) {
            1 + count_byte(b'\n', &self.body)
        } else {
            1
        }
    }

    /// The bytes of one of its records: a line of a batch, or the whole body.
    pub fn record_body(&self, line: Option<&Range<usize>>) -> &[u8] {
        line.and_then(|range| self.body.get(range.clone()))
            .unwrap_or(&self.body)
    }

    fn envelope(&self) -> Envelope<'_> {
        logagg::broker::envelope(
            &self.routing_key,
            &self.body,
            &self.properties,
            self.received_at,
        )
    }
}

fn count_byte(needle: u8, haystack: &[u8]) -> usize {
    haystack.iter().filter(|byte| **byte == needle).count()
}

/// Deliveries collected until the batch holds `capacity` records or is old enough to write.
#[derive(Debug)]
pub struct Batch {
    capacity: usize,
    max_age: Duration,
    messages: Vec<PendingMessage>,
    records: usize,
    deadline: Option<Instant>,
    bytes: usize,
}

/// Bytes of message bodies that make a batch full whatever its record count: a batch is held
/// about three times over while it is written (bodies, records, their BSON), so 1,000 logs of
/// 1 MiB would have cost 3 GiB; this keeps each write under 64 MiB.
pub const BATCH_MAX_BYTES: usize = 16 * 1024 * 1024;

impl Batch {
    pub fn new(capacity: usize, max_age: Duration) -> Self {
        Self {
            capacity,
            max_age,
            messages: Vec::with_capacity(capacity),
            records: 0,
            bytes: 0,
            deadline: None,
        }
    }

    /// Adds a message; the first one starts the age clock. Returns whether the batch is full:
    /// `capacity` records (a batch message's lines each count) or [`BATCH_MAX_BYTES`] of bodies.
    pub fn push(&mut self, message: PendingMessage, now: Instant) -> bool {
        if self.messages.is_empty() {
            self.deadline = Some(now + self.max_age);
        }
        self.records += message.weight();
        self.bytes += message.body.len();
        self.messages.push(message);
        self.records >= self.capacity || self.bytes >= BATCH_MAX_BYTES
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// When the batch must be written even if not full; `None` while empty.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Takes the messages out, leaving an empty batch.
    pub fn take(&mut self) -> Vec<PendingMessage> {
        self.deadline = None;
        self.records = 0;
        self.bytes = 0;
        std::mem::replace(&mut self.messages, Vec::with_capacity(self.capacity))
    }
}

/// Where a record came from: its message in the batch, and its line when that message is a
/// batch message (`None`: the whole message).
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub message: usize,
    pub line: Option<Range<usize>>,
}

/// A batch after parsing: records to store, and messages or lines to dead-letter with their
/// reason.
#[derive(Debug, Default)]
pub struct DecodedBatch {
    pub records: Vec<LogRecord>,
    /// For each record, where it came from.
    pub record_sources: Vec<Source>,
    pub rejected: Vec<(Source, ParseError)>,
}

/// The messages (indexes into the batch) of which a record was already stored although the
/// message is new and its id derives from its body: a publisher sent the same bytes twice.
pub fn identical_bodies(
    messages: &[PendingMessage],
    sources: &[Source],
    duplicate_indexes: &[usize],
) -> BTreeSet<usize> {
    duplicate_indexes
        .iter()
        .filter_map(|record| sources.get(*record))
        .map(|source| source.message)
        .filter(|message| messages[*message].is_identical_body_if_stored())
        .collect()
}

/// Parses every message of a batch; one bad message, or one bad line of a batch message,
/// never spoils the others.
pub fn decode(messages: &[PendingMessage]) -> DecodedBatch {
    let mut decoded = DecodedBatch {
        records: Vec::with_capacity(messages.len()),
        record_sources: Vec::with_capacity(messages.len()),
        rejected: Vec::new(),
    };
    for (index, message) in messages.iter().enumerate() {
        if let Some(size) = message.oversized {
            let source = Source {
                message: index,
                line: None,
            };
            let error = ParseError::TooLarge {
                size,
                max: MAX_BODY_BYTES,
            };
            decoded.rejected.push((source, error));
            continue;
        }
        for parsed in parse_records(&message.envelope()) {
            let source = Source {
                message: index,
                line: parsed.line,
            };
            match parsed.record {
                Ok(record) => {
                    decoded.records.push(record);
                    decoded.record_sources.push(source);
                }
                Err(error) => decoded.rejected.push((source, error)),
            }
        }
    }
    decoded
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::ShortString;

    fn message(tag: u64, body: &str) -> PendingMessage {
        PendingMessage {
            delivery_tag: tag,
            routing_key: "web.error".into(),
            properties: BasicProperties::default()
                .with_content_type(ShortString::from("application/json")),
            body: body.as_bytes().to_vec(),
            received_at: Utc::now(),
            redelivered: false,
            oversized: None,
        }
    }

    #[test]
    fn a_duplicate_is_an_identical_body_only_without_message_id_and_redelivery() {
        let mut with_id = message(1, r#"{"message":"a"}"#);
        with_id.properties = with_id
            .properties
            .with_message_id(ShortString::from("id-1"));
        let mut redelivered = message(2, r#"{"message":"a"}"#);
        redelivered.redelivered = true;
        let messages = [with_id, redelivered, message(3, r#"{"message":"a"}"#)];
        let sources: Vec<Source> = (0..3)
            .map(|message| Source {
                message,
                line: None,
            })
            .collect();
        let identical = identical_bodies(&messages, &sources, &[0, 1, 2]);
        assert_eq!(identical.into_iter().collect::<Vec<_>>(), vec![2]);
        assert!(identical_bodies(&messages, &sources, &[0, 1]).is_empty());
    }

    #[test]
    fn batch_fills_by_size_and_dates_from_its_first_message() {
        let start = Instant::now();
        let mut batch = Batch::new(2, Duration::from_millis(200));
        assert_eq!(batch.deadline(), None);
        assert!(!batch.push(message(1, "{}"), start));
        assert_eq!(batch.deadline(), Some(start + Duration::from_millis(200)));
        assert!(batch.push(message(2, "{}"), start + Duration::from_millis(50)));
        assert_eq!(batch.deadline(), Some(start + Duration::from_millis(200)));
        let taken = batch.take();
        assert_eq!(taken.len(), 2);
        assert!(batch.is_empty());
        assert_eq!(batch.deadline(), None);
    }

    #[test]
    fn decode_separates_poison_from_good_records() {
        let messages = [
            message(1, r#"{"message":"ok 1"}"#),
            message(2, "{broken"),
            message(3, r#"{"message":"ok 2","severity":"loud"}"#),
            message(4, r#"{"message":"ok 3"}"#),
        ];
        let decoded = decode(&messages);
        assert_eq!(decoded.records.len(), 2);
        let sources: Vec<usize> = decoded.record_sources.iter().map(|s| s.message).collect();
        assert_eq!(sources, vec![0, 3]);
        let rejected: Vec<(usize, &str)> = decoded
            .rejected
            .iter()
            .map(|(source, error)| (source.message, error.code()))
            .collect();
        assert_eq!(rejected, vec![(1, "invalid_json"), (2, "unknown_severity")]);
    }

    #[test]
    fn a_batch_message_counts_its_lines_and_a_bad_line_is_rejected_alone() {
        let mut batched = message(1, "{\"message\":\"a\"}\n{oops\n{\"message\":\"c\"}");
        batched.properties = BasicProperties::default()
            .with_content_type(ShortString::from(logagg::parse::CONTENT_TYPE_BATCH));
        assert_eq!(batched.weight(), 3);
        let start = Instant::now();
        let mut batch = Batch::new(4, Duration::from_millis(200));
        assert!(!batch.push(batched, start));
        assert!(batch.push(message(2, r#"{"message":"d"}"#), start));
        let messages = batch.take();
        let decoded = decode(&messages);
        let messages_of: Vec<usize> = decoded.record_sources.iter().map(|s| s.message).collect();
        assert_eq!(messages_of, vec![0, 0, 1]);
        let (source, error) = &decoded.rejected[0];
        assert_eq!(error.code(), "invalid_json");
        assert_eq!(messages[0].record_body(source.line.as_ref()), b"{oops");
        assert_eq!(
            messages[1].record_body(decoded.record_sources[2].line.as_ref()),
            br#"{"message":"d"}"#
        );
    }

    #[test]
    fn large_bodies_fill_a_batch_by_bytes_and_an_oversized_one_is_cut_and_rejected() {
        let start = Instant::now();
        let mut batch = Batch::new(1_000, Duration::from_millis(200));
        let large = "x".repeat(MAX_BODY_BYTES - 14);
        let body = format!(r#"{{"message":"{large}"}}"#);
        assert_eq!(body.len(), MAX_BODY_BYTES);
        for tag in 1..16 {
            assert!(!batch.push(message(tag, &body), start), "{tag}");
        }
        assert!(batch.push(message(16, &body), start));

        let mut cut = message(1, "");
        cut.body = vec![b'x'; MAX_BODY_BYTES + 1];
        cut.cut_if_oversized();
        assert_eq!(
            (cut.body.len(), cut.oversized),
            (DEAD_LETTER_MAX_BODY, Some(MAX_BODY_BYTES + 1))
        );
        assert_eq!(cut.weight(), 1);
        let decoded = decode(&[cut]);
        assert!(decoded.records.is_empty());
        assert_eq!(decoded.rejected[0].1.code(), "too_large");
    }
}
