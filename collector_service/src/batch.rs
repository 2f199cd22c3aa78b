//! Batching and decoding: pure code between a delivery and a bulk insert.

use std::time::Duration;

use chrono::{DateTime, Utc};
use lapin::message::Delivery;
use lapin::BasicProperties;
use logagg::parse::{parse_message, Envelope, ParseError};
use logagg::LogRecord;
use tokio::time::Instant;

/// One delivery waiting to be written: what the parser and the dead-letter path need.
#[derive(Debug)]
pub struct PendingMessage {
    pub delivery_tag: u64,
    pub routing_key: String,
    pub properties: BasicProperties,
    pub body: Vec<u8>,
    pub received_at: DateTime<Utc>,
}

impl PendingMessage {
    pub fn from_delivery(delivery: Delivery) -> Self {
        Self {
            delivery_tag: delivery.delivery_tag,
            routing_key: delivery.routing_key.to_string(),
            properties: delivery.properties,
            body: delivery.data,
            received_at: Utc::now(),
        }
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

/// Deliveries collected until the batch is full or old enough to write.
#[derive(Debug)]
pub struct Batch {
    capacity: usize,
    max_age: Duration,
    messages: Vec<PendingMessage>,
    deadline: Option<Instant>,
}

impl Batch {
    pub fn new(capacity: usize, max_age: Duration) -> Self {
        Self {
            capacity,
            max_age,
            messages: Vec::with_capacity(capacity),
            deadline: None,
        }
    }

    /// Adds a message; the first one starts the age clock. Returns whether the batch is full.
    pub fn push(&mut self, message: PendingMessage, now: Instant) -> bool {
        if self.messages.is_empty() {
            self.deadline = Some(now + self.max_age);
        }
        self.messages.push(message);
        self.messages.len() >= self.capacity
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
        std::mem::replace(&mut self.messages, Vec::with_capacity(self.capacity))
    }
}

/// A batch after parsing: records to store, and messages to dead-letter with their reason.
#[derive(Debug, Default)]
pub struct DecodedBatch {
    pub records: Vec<LogRecord>,
    /// For each record, the index of its message in the batch.
    pub record_sources: Vec<usize>,
    pub rejected: Vec<(usize, ParseError)>,
}

/// Parses every message of a batch; one bad message never spoils the others.
pub fn decode(messages: &[PendingMessage]) -> DecodedBatch {
    let mut decoded = DecodedBatch {
        records: Vec::with_capacity(messages.len()),
        record_sources: Vec::with_capacity(messages.len()),
        rejected: Vec::new(),
    };
    for (index, message) in messages.iter().enumerate() {
        match parse_message(&message.envelope()) {
            Ok(record) => {
                decoded.records.push(record);
                decoded.record_sources.push(index);
            }
            Err(error) => decoded.rejected.push((index, error)),
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
        }
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
        assert_eq!(decoded.record_sources, vec![0, 3]);
        let rejected: Vec<(usize, &str)> = decoded
            .rejected
            .iter()
            .map(|(index, error)| (*index, error.code()))
            .collect();
        assert_eq!(rejected, vec![(1, "invalid_json"), (2, "unknown_severity")]);
    }
}
