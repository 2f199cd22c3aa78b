//! Logs written before word blocks (`super::blocks`): an earlier version stored each log's
//! uncommon words in an indexed `words` array and recorded the words it found common, each
//! with the time from which logs left it out of the index. Search still reads those logs
//! that way until retention removes them: the common words as recorded, and a search's words
//! turned into conditions per time span.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bson::{doc, Bson, Document};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mongodb::Collection;

use super::{fields, Database, StoreError};
use crate::settings::StoreSettings;
use crate::words::CommonWords;

/// Field names of a common word's document.
pub mod common_fields {
    /// The word.
    pub const ID: &str = "_id";
    /// Logs stamped from then on leave the word out of the index.
    pub const SINCE: &str = "since";
    /// When a writer found it common.
    pub const FOUND_AT: &str = "found_at";
}

/// Common words read at most.
pub const MAX_COMMON_WORDS: usize = 10_000;
/// Longest a process keeps the common words before reading them again.
const MAX_REFRESH: Duration = Duration::from_secs(5);

/// How long after the first block logs may still be stored the earlier way: by writers of
/// the earlier version still running while the others are upgraded.
pub const LEGACY_OVERLAP: chrono::Duration = chrono::Duration::hours(1);

/// The earlier version's common words, as last read.
#[derive(Debug)]
pub(super) struct LegacyWords {
    collection: Collection<Document>,
    read: Mutex<Option<(Instant, Arc<CommonWords>)>>,
    /// Whether the `words` index exists, as last read.
    indexed: Mutex<Option<(Instant, bool)>>,
    refresh: Duration,
}

impl LegacyWords {
    pub(super) fn new(collection: Collection<Document>, settings: &StoreSettings) -> Self {
        Self {
            collection,
            read: Mutex::new(None),
            indexed: Mutex::new(None),
            refresh: (settings.common_word_grace_seconds / 4).min(MAX_REFRESH),
        }
    }
}

/// One span of a search's time range, with the conditions its words need there.
#[derive(Debug, Clone, PartialEq)]
pub struct WordSpan {
    pub from: DateTime<Utc>,
    /// Inclusive.
    pub to: DateTime<Utc>,
    pub conditions: Document,
}

impl Database {
    /// The common words, as read at most a quarter of the grace (and 5 s) ago. Empty with
    /// `store.word_index` off.
    pub async fn common_words(&self) -> Result<Arc<CommonWords>, StoreError> {
        let Some(state) = &self.legacy_words else {
            return Ok(Arc::default());
        };
        if let Some((read_at, words)) = &*super::lock(&state.read) {
            if read_at.elapsed() < state.refresh {
                return Ok(words.clone());
            }
        }
        let documents: Vec<Document> = state
            .collection
            .find(doc! {})
            .limit(MAX_COMMON_WORDS as i64)
            .await
            .map_err(StoreError::Unavailable)?
            .try_collect()
            .await
            .map_err(StoreError::Unavailable)?;
        let words = Arc::new(CommonWords::new(documents.iter().filter_map(|document| {
            let word = document.get_str(common_fields::ID).ok()?;
            let since = document.get_datetime(common_fields::SINCE).ok()?;
            Some((word.to_owned(), since.to_chrono()))
        })));
        *super::lock(&state.read) = Some((Instant::now(), words.clone()));
        Ok(words)
    }

    /// The latest time, at most `to`, a log stored the earlier way may be stamped:
    /// [`LEGACY_OVERLAP`] after the first block. `None` where there are none (the `words`
    /// index was never made here, so no earlier version wrote).
    pub async fn legacy_until(
        &self,
        to: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let Some(state) = &self.legacy_words else {
            return Ok(None);
        };
        let cached = *super::lock(&state.indexed);
        let indexed = match cached {
            Some((read_at, indexed)) if read_at.elapsed() < state.refresh => indexed,
            _ => {
                let names = self
                    .logs
                    .list_index_names()
                    .await
                    .map_err(StoreError::Unavailable)?;
                let indexed = names.iter().any(|name| name == super::INDEX_WORDS_TIME);
                *super::lock(&state.indexed) = Some((Instant::now(), indexed));
                indexed
            }
        };
        if !indexed {
            return Ok(None);
        }
        Ok(Some(match self.blocks_since().await? {
            Some(since) => (since + LEGACY_OVERLAP).min(to),
            None => to,
        }))
    }

    /// `[from, to]` cut where a word of `words` leaves the index, oldest span first, each
    /// with its word conditions: `words` holds a word in logs stamped before its `since`,
    /// `all_words` from then on.
    pub async fn word_spans(
        &self,
        words: &[String],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<WordSpan>, StoreError> {
        let common = if words.is_empty() {
            Arc::default()
        } else {
            self.common_words().await?
        };
        Ok(word_spans(words, &common, from, to))
    }
}

/// See [`Database::word_spans`].
pub fn word_spans(
    words: &[String],
    common: &CommonWords,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<WordSpan> {
    let mut cuts: Vec<DateTime<Utc>> = words
        .iter()
        .filter_map(|word| common.since(word))
        .filter(|since| from < *since && *since <= to)
        .collect();
    cuts.sort();
    cuts.dedup();
    let mut spans = Vec::with_capacity(cuts.len() + 1);
    let mut start = from;
    for end in cuts.into_iter().map(Some).chain([None]) {
        let span_to = match end {
            Some(cut) => cut - chrono::Duration::milliseconds(1),
            None => to,
        };
        let (indexed, scanned): (Vec<&String>, Vec<&String>) = words
            .iter()
            .partition(|word| common.since(word).is_none_or(|since| since > start));
        spans.push(WordSpan {
            from: start,
            to: span_to,
            conditions: conditions(&indexed, &scanned),
        });
        if let Some(cut) = end {
            start = cut;
        }
    }
    spans
}

/// Flat conditions where possible: SecantusDB keeps to `words_ts` for `words: w` beside
/// other fields, and for an `$and` of `words` equalities, but leaves it for an `$or`.
fn conditions(indexed: &[&String], scanned: &[&String]) -> Document {
    let mut conditions = Document::new();
    match indexed {
        [] => {}
        [word] => {
            conditions.insert(fields::WORDS, word.as_str());
        }
        words => {
            // `$and` of equalities, not `$all`: the same documents, but SecantusDB runs
            // `$all` without the index's time bounds (35 ms against 0.4 ms for a one-minute
            // window of 50k logs, docs/PERFORMANCE.md).
            let each: Vec<Document> = words
                .iter()
                .map(|word| doc! { fields::WORDS: word.as_str() })
                .collect();
            conditions.insert("$and", each);
        }
    }
    match scanned {
        [] => {}
        [word] => {
            conditions.insert(fields::ALL_WORDS, word.as_str());
        }
        words => {
            let all: Vec<Bson> = words.iter().map(|word| Bson::from(word.as_str())).collect();
            conditions.insert(fields::ALL_WORDS, doc! { "$all": all });
        }
    }
    conditions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp_millis(ms).unwrap()
    }

    fn owned(words: &[&str]) -> Vec<String> {
        words.iter().map(|word| (*word).to_owned()).collect()
    }

    #[test]
    fn a_range_is_cut_where_each_word_leaves_the_index() {
        let common =
            CommonWords::new([("alpha".to_owned(), at(100)), ("beta".to_owned(), at(200))]);
        let spans = word_spans(&owned(&["alpha", "beta", "rare"]), &common, at(0), at(300));
        assert_eq!(
            spans,
            vec![
                WordSpan {
                    from: at(0),
                    to: at(99),
                    conditions: doc! { "$and": [{ "words": "alpha" }, { "words": "beta" }, { "words": "rare" }] },
                },
                WordSpan {
                    from: at(100),
                    to: at(199),
                    conditions: doc! { "$and": [{ "words": "beta" }, { "words": "rare" }], "all_words": "alpha" },
                },
                WordSpan {
                    from: at(200),
                    to: at(300),
                    conditions: doc! { "words": "rare", "all_words": { "$all": ["alpha", "beta"] } },
                },
            ]
        );
    }

    #[test]
    fn words_common_before_the_range_or_after_it_do_not_cut_it() {
        let common = CommonWords::new([("alpha".to_owned(), at(10)), ("beta".to_owned(), at(900))]);
        let spans = word_spans(&owned(&["alpha", "beta"]), &common, at(100), at(300));
        assert_eq!(
            spans,
            vec![WordSpan {
                from: at(100),
                to: at(300),
                conditions: doc! { "words": "beta", "all_words": "alpha" },
            }]
        );
        // `since` at the range's start: the whole range scans.
        let spans = word_spans(&owned(&["alpha"]), &common, at(10), at(20));
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].conditions, doc! { "all_words": "alpha" });
        // No words: one span, no conditions.
        let spans = word_spans(&[], &common, at(10), at(20));
        assert_eq!(spans[0].conditions, Document::new());
    }
}
