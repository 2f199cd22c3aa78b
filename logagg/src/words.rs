//! Words of a log message, for word search without a text index.
//!
//! A writer stores each message's distinct lower-cased words twice: all of them in an
//! unindexed array, and those that are not common in an array with a multikey index. A word
//! is *common* once it has appeared in at least `store.common_word_ratio` of the logs a
//! writer counted over one sample ([`WordCounter`]). Indexing such a word costs an index
//! entry in a large share of all logs (on SecantusDB, the multikey index cut bulk inserts to
//! a third, docs/PERFORMANCE.md) and buys little: it is dense, so a time-window scan filtering
//! the unindexed array finds a page of it quickly.
//!
//! A common word is recorded once with the time `since` from which logs leave it out of the
//! index ([`CommonWords`]); `since` never changes. Search uses the index for a word in logs
//! stamped before its `since`, and the unindexed array from then on. Writers apply it only
//! once `since` has passed on their clock, and `since` lies `store.common_word_grace_seconds`
//! after the word was found, so every searcher has read it before any log leaves it out.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

/// Words kept per message at most; a message with more distinct words is searchable by its
/// first ones only. Bounds the index entries one document adds.
pub const MAX_WORDS_PER_MESSAGE: usize = 128;
/// Longest word kept, in bytes; longer runs (hashes, base64) are not searchable as words.
pub const MAX_WORD_BYTES: usize = 48;

/// The distinct words of `text` in order of first appearance: maximal runs of letters and
/// digits, lower-cased, at most [`MAX_WORD_BYTES`] long, at most [`MAX_WORDS_PER_MESSAGE`].
pub fn message_words(text: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for word in split_words(text) {
        if words.len() == MAX_WORDS_PER_MESSAGE {
            break;
        }
        if !words.contains(&word) {
            words.push(word);
        }
    }
    words
}

/// The words of a search query, split and normalised exactly as messages are; words too
/// long to have been stored are kept, so the query honestly matches nothing.
pub fn query_words(query: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for word in query
        .split(|character: char| !character.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
    {
        if !words.contains(&word) {
            words.push(word);
        }
    }
    words
}

/// The words found common, each with the time from which writers leave it out of the index.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommonWords {
    since: HashMap<String, DateTime<Utc>>,
}

impl CommonWords {
    pub fn new(entries: impl IntoIterator<Item = (String, DateTime<Utc>)>) -> Self {
        Self {
            since: entries.into_iter().collect(),
        }
    }

    /// When `word` left the index, if it is common.
    pub fn since(&self, word: &str) -> Option<DateTime<Utc>> {
        self.since.get(word).copied()
    }

    pub fn len(&self) -> usize {
        self.since.len()
    }

    pub fn is_empty(&self) -> bool {
        self.since.is_empty()
    }

    /// Whether a writer at `now` leaves `word` of a log stamped `timestamp` out of the index.
    pub fn unindexed(&self, word: &str, timestamp: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self.since(word)
            .is_some_and(|since| since <= timestamp && since <= now)
    }

    /// The words of `words` a writer at `now` indexes for a log stamped `timestamp`.
    pub fn indexed<'a>(
        &self,
        words: &'a [String],
        timestamp: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Vec<&'a String> {
        words
            .iter()
            .filter(|word| !self.unindexed(word, timestamp, now))
            .collect()
    }
}

/// Distinct words one sample counts at most; words first seen past it wait for the next
/// sample. Bounds the counter's memory (about 4 MiB).
pub const MAX_COUNTED_WORDS: usize = 50_000;

/// Counts in how many logs each word appears, one sample of logs at a time.
#[derive(Debug)]
pub struct WordCounter {
    sample: usize,
    threshold: u32,
    logs: usize,
    counts: HashMap<String, u32>,
}

impl WordCounter {
    /// A word appearing in at least `ratio` of `sample` logs is common.
    pub fn new(sample: usize, ratio: f64) -> Self {
        let threshold = (sample as f64 * ratio)
            .ceil()
            .clamp(1.0, f64::from(u32::MAX)) as u32;
        Self {
            sample: sample.max(1),
            threshold,
            logs: 0,
            counts: HashMap::new(),
        }
    }

    /// Counts one log's distinct `words`, leaving out those `known` already. At the end of a
    /// sample, returns the words it found common (if any) and starts the next sample.
    pub fn count(&mut self, words: &[String], known: &CommonWords) -> Option<Vec<String>> {
        for word in words {
            if known.since(word).is_some() {
                continue;
            }
            if let Some(count) = self.counts.get_mut(word) {
                *count += 1;
            } else if self.counts.len() < MAX_COUNTED_WORDS {
                self.counts.insert(word.clone(), 1);
            }
        }
        self.logs += 1;
        if self.logs < self.sample {
            return None;
        }
        self.logs = 0;
        let threshold = self.threshold;
        let mut common: Vec<String> = std::mem::take(&mut self.counts)
            .into_iter()
            .filter(|(_, count)| *count >= threshold)
            .map(|(word, _)| word)
            .collect();
        common.sort();
        (!common.is_empty()).then_some(common)
    }
}

fn split_words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|character: char| !character.is_alphanumeric())
        .filter(|word| !word.is_empty() && word.len() <= MAX_WORD_BYTES)
        .map(str::to_lowercase)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn words_are_lowercased_distinct_runs_of_letters_and_digits() {
        assert_eq!(
            message_words("Payment FAILED for order #42: card_declined (payment)"),
            ["payment", "failed", "for", "order", "42", "card", "declined"]
        );
        assert_eq!(message_words("Über größe"), ["über", "größe"]);
        assert!(message_words("  --- ").is_empty());
    }

    #[test]
    fn long_runs_and_many_words_are_bounded() {
        let hash = "a".repeat(MAX_WORD_BYTES + 1);
        assert_eq!(message_words(&format!("id {hash} ok")), ["id", "ok"]);
        let many: String = (0..500).map(|n| format!("w{n} ")).collect();
        assert_eq!(message_words(&many).len(), MAX_WORDS_PER_MESSAGE);
    }

    fn words(text: &str) -> Vec<String> {
        message_words(text)
    }

    #[test]
    fn words_in_at_least_the_ratio_of_a_sample_are_common() {
        let mut counter = WordCounter::new(10, 0.5);
        let none = CommonWords::default();
        for index in 0..9 {
            let text = if index < 5 {
                "alpha beta"
            } else {
                "alpha gamma"
            };
            assert_eq!(
                counter.count(&words(&format!("{text} id{index}")), &none),
                None
            );
        }
        // alpha: 10 of 10, beta: 5, gamma: 5 (with this one), each id: 1.
        assert_eq!(
            counter.count(&words("alpha gamma id9"), &none),
            Some(vec!["alpha".into(), "beta".into(), "gamma".into()])
        );
        // The next sample starts from nothing.
        for _ in 0..9 {
            assert_eq!(counter.count(&words("delta"), &none), None);
        }
        assert_eq!(
            counter.count(&words("epsilon"), &none),
            Some(vec!["delta".into()])
        );
    }

    #[test]
    fn known_common_words_are_not_counted_again_and_a_sample_may_find_none() {
        let mut counter = WordCounter::new(4, 0.5);
        let known = CommonWords::new([("alpha".to_owned(), Utc::now())]);
        for index in 0..3 {
            assert_eq!(
                counter.count(&words(&format!("alpha x{index}")), &known),
                None
            );
        }
        assert_eq!(counter.count(&words("alpha x3"), &known), None);
    }

    #[test]
    fn a_word_leaves_the_index_only_for_logs_stamped_from_since_once_since_has_passed() {
        let since = DateTime::<Utc>::from_timestamp_millis(1_000_000).unwrap();
        let common = CommonWords::new([("alpha".to_owned(), since)]);
        let before = since - chrono::Duration::milliseconds(1);
        let later = since + chrono::Duration::seconds(5);
        assert!(common.unindexed("alpha", since, since));
        assert!(common.unindexed("alpha", later, later));
        // Stamped before `since`: indexed, however late it is written.
        assert!(!common.unindexed("alpha", before, later));
        // A writer whose clock has not reached `since` still indexes it.
        assert!(!common.unindexed("alpha", later, before));
        assert!(!common.unindexed("beta", later, later));
        let all = words("alpha beta");
        assert_eq!(common.indexed(&all, later, later), [&"beta".to_owned()]);
    }

    proptest! {
        #[test]
        fn every_query_word_of_a_message_is_found_in_its_words(message in "([a-zA-Z0-9]{1,20}[ .,:-]){0,40}") {
            let stored = message_words(&message);
            for word in query_words(&message) {
                prop_assert!(stored.contains(&word));
            }
        }
    }
}
