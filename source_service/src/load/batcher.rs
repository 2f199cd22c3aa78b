//! Grouping generated logs into batch messages (`application/x-ndjson`, one JSON record per
//! line) that share a routing key, so the broker handles one message per batch instead of one
//! per log. Pure code: the publish loop feeds it logs and the time, and publishes what it
//! hands back.

use std::collections::HashMap;
use std::time::Duration;

use logagg::parse::{CONTENT_TYPE_BATCH, MAX_BODY_BYTES};

use super::simulator::GeneratedLog;

/// One message to publish: a single log, or a batch of logs with one routing key.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub routing_key: String,
    pub body: Vec<u8>,
    pub message_id: String,
    pub content_type: &'static str,
    /// Logs the message carries.
    pub records: u64,
}

#[derive(Debug)]
struct Group {
    body: Vec<u8>,
    records: u64,
    opened: Duration,
}

/// Collects logs per routing key until a group holds `max_records` logs, would outgrow a
/// message body, or has waited `linger`. With `max_records == 1` every log is its own message,
/// with its own content type and id.
#[derive(Debug)]
pub struct Batcher {
    max_records: u64,
    linger: Duration,
    single_content_type: &'static str,
    groups: HashMap<String, Group>,
}

impl Batcher {
    /// `single_content_type` is the content type of unbatched messages (`max_records <= 1`).
    pub fn new(max_records: usize, linger: Duration, single_content_type: &'static str) -> Self {
        Self {
            max_records: max_records.max(1) as u64,
            linger,
            single_content_type,
            groups: HashMap::new(),
        }
    }

    /// Adds a log generated at `now` (from the start); returns the messages that are ready: the
    /// log itself when unbatched, a group that filled up, or one that had no room left for it.
    pub fn push(&mut self, log: GeneratedLog, now: Duration) -> Vec<Outgoing> {
        if self.max_records == 1 {
            return vec![Outgoing {
                routing_key: log.routing_key,
                body: log.body,
                message_id: log.message_id,
                content_type: self.single_content_type,
                records: 1,
            }];
        }
        let mut ready = Vec::new();
        let full_body = self
            .groups
            .get(&log.routing_key)
            .is_some_and(|group| group.body.len() + 1 + log.body.len() > MAX_BODY_BYTES);
        if full_body {
            ready.extend(self.take(&log.routing_key));
        }
        let group = self
            .groups
            .entry(log.routing_key.clone())
            .or_insert_with(|| Group {
                body: Vec::with_capacity(log.body.len() * self.max_records as usize),
                records: 0,
                opened: now,
            });
        if group.records > 0 {
            group.body.push(b'\n');
        }
        group.body.extend_from_slice(&log.body);
        group.records += 1;
        if group.records >= self.max_records {
            ready.extend(self.take(&log.routing_key));
        }
        ready
    }

    /// When the oldest open group must go out, from the start; `None` when none is open.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.groups
            .values()
            .map(|group| group.opened + self.linger)
            .min()
    }

    /// Takes the groups that have waited `linger` by `now`.
    pub fn take_due(&mut self, now: Duration) -> Vec<Outgoing> {
        let due: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, group)| group.opened + self.linger <= now)
            .map(|(key, _)| key.clone())
            .collect();
        due.iter().filter_map(|key| self.take(key)).collect()
    }

    /// Takes every open group (at the end of a run).
    pub fn take_all(&mut self) -> Vec<Outgoing> {
        let keys: Vec<String> = self.groups.keys().cloned().collect();
        keys.iter().filter_map(|key| self.take(key)).collect()
    }

    fn take(&mut self, routing_key: &str) -> Option<Outgoing> {
        let (routing_key, group) = self.groups.remove_entry(routing_key)?;
        Some(Outgoing {
            routing_key,
            body: group.body,
            message_id: uuid::Uuid::now_v7().to_string(),
            content_type: CONTENT_TYPE_BATCH,
            records: group.records,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(key: &str, body: &str) -> GeneratedLog {
        GeneratedLog {
            routing_key: key.into(),
            body: body.as_bytes().to_vec(),
            message_id: format!("id-{body}"),
        }
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn unbatched_logs_go_out_one_by_one_as_they_are() {
        let mut batcher = Batcher::new(1, 10 * MS, "application/json");
        let out = batcher.push(log("web.info", "{}"), Duration::ZERO);
        assert_eq!(
            out,
            vec![Outgoing {
                routing_key: "web.info".into(),
                body: b"{}".to_vec(),
                message_id: "id-{}".into(),
                content_type: "application/json",
                records: 1,
            }]
        );
        assert_eq!(batcher.next_deadline(), None);
    }

    #[test]
    fn logs_are_grouped_per_routing_key_until_full() {
        let mut batcher = Batcher::new(3, 10 * MS, "application/json");
        assert!(batcher.push(log("a.info", "1"), Duration::ZERO).is_empty());
        assert!(batcher.push(log("b.error", "2"), MS).is_empty());
        assert!(batcher.push(log("a.info", "3"), 2 * MS).is_empty());
        let out = batcher.push(log("a.info", "4"), 3 * MS);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].routing_key, "a.info");
        assert_eq!(out[0].body, b"1\n3\n4");
        assert_eq!(out[0].records, 3);
        assert_eq!(out[0].content_type, CONTENT_TYPE_BATCH);
        assert_eq!(batcher.next_deadline(), Some(11 * MS));
    }

    #[test]
    fn groups_go_out_after_linger_and_at_the_end() {
        let mut batcher = Batcher::new(100, 10 * MS, "application/json");
        batcher.push(log("a.info", "1"), Duration::ZERO);
        batcher.push(log("b.info", "2"), 5 * MS);
        assert!(batcher.take_due(9 * MS).is_empty());
        let due = batcher.take_due(10 * MS);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].body, b"1");
        assert_eq!(batcher.next_deadline(), Some(15 * MS));
        let rest = batcher.take_all();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].body, b"2");
        assert_eq!(batcher.next_deadline(), None);
    }

    #[test]
    fn a_group_never_outgrows_a_message_body() {
        let mut batcher = Batcher::new(10_000, 10 * MS, "application/json");
        let big = "x".repeat(MAX_BODY_BYTES / 3);
        assert!(batcher.push(log("a.info", &big), Duration::ZERO).is_empty());
        assert!(batcher.push(log("a.info", &big), Duration::ZERO).is_empty());
        let out = batcher.push(log("a.info", &big), Duration::ZERO);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].records, 2);
        assert!(out[0].body.len() <= MAX_BODY_BYTES);
        assert_eq!(batcher.take_all()[0].records, 1);
    }
}
