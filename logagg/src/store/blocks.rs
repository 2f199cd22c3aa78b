//! Word blocks in MongoDB: one small document per written batch (or part of one) with its
//! logs' ids, time range, services and a bloom filter of their words (`crate::words`).
//!
//! A writer stores a batch's blocks and its logs together and acks the batch's messages only
//! once both are stored; if either fails, the batch is written again (a block's `_id`
//! derives from its logs' ids, so it is the same block). A stored log is thus in a block
//! from the moment its messages are acked; a block whose logs failed to store only costs a
//! search a read that finds nothing.
//! Search asks, per time window, for the blocks whose filter has every bit of every query
//! word set (`$bitsAllSet`, evaluated by the server), then reads those blocks' logs by `_id`
//! with the exact `all_words` check. Where too many blocks match (a common word), it scans
//! the window's logs instead: the words are then dense, and a scan finds a page quickly.

use std::collections::{BTreeSet, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use bson::spec::BinarySubtype;
use bson::{doc, Binary, Bson, Document};
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use mongodb::error::ErrorKind;
use mongodb::options::IndexOptions;
use mongodb::IndexModel;

use super::{fields, Database, StoreError, DUPLICATE_KEY};
use crate::words::{bloom_positions, word_hash, Bloom, BLOOM_CAPACITY, BLOOM_SIZES};

/// Field names of a block document.
pub mod block_fields {
    /// Derived from the logs' ids.
    pub const ID: &str = "_id";
    /// The stored format's version: how words hash into the filter.
    pub const VERSION: &str = "v";
    /// Earliest and latest timestamp of the block's logs.
    pub const FROM: &str = "from";
    pub const TO: &str = "to";
    pub const SERVICES: &str = "services";
    pub const IDS: &str = "ids";
    /// The filter's size in bits, one of `crate::words::BLOOM_SIZES`.
    pub const BITS: &str = "m";
    pub const BLOOM: &str = "bloom";
    /// On the marker document only: from when every written log is in a block.
    pub const SINCE: &str = "since";
}

/// The format [`block_fields::VERSION`] names.
pub const BLOCK_VERSION: i32 = 1;
/// Logs one block holds at most. Smaller blocks narrow a search for a word in a few logs
/// in a hundred (fewer blocks hold it) and cost more block documents to read.
pub const MAX_BLOCK_LOGS: usize = 100;
/// A block's logs all lie in one aligned hour, so a block overlapping `[low, high]` ends
/// before `high` plus an hour: search's block query is one range on `to`.
pub const BLOCK_SPAN: chrono::Duration = chrono::Duration::hours(1);
/// Index serving search's question: blocks of one filter size ending in a time range.
/// (SecantusDB bounds only the first range of a compound index well: with `from` in the
/// index too, a one-minute window's blocks took 30 ms instead of 1.3 ms.)
pub const INDEX_BLOCKS: &str = "m_to";
/// `_id` of the marker document recording when the first block was written.
const MARKER_ID: &str = "blocks_since";
/// Matching blocks a window reads logs of by `_id`; past it, the window is scanned.
pub const MAX_CANDIDATE_BLOCKS: usize = 100;

/// Builds a batch's blocks, log by log: one open block per hour its logs are stamped in.
#[derive(Debug, Default)]
pub struct BlockBuilder {
    done: Vec<Document>,
    open: std::collections::BTreeMap<i64, Pending>,
}

#[derive(Debug)]
struct Pending {
    ids: Vec<String>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    services: BTreeSet<String>,
    hashes: HashSet<u64, BuildHasherDefault<PassThrough>>,
}

/// Hashes a word hash to itself: it is well mixed already.
#[derive(Debug, Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 << 8) | u64::from(*byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

impl BlockBuilder {
    /// Adds one log with its distinct `words`.
    pub fn push<'a>(
        &mut self,
        id: &str,
        timestamp: DateTime<Utc>,
        service: &str,
        words: impl IntoIterator<Item = &'a str>,
    ) {
        let hashes: Vec<u64> = words.into_iter().map(word_hash).collect();
        self.push_hashed(id, timestamp, service, &hashes);
    }

    /// Adds one log with the [`word_hash`]es of its distinct words.
    pub fn push_hashed(
        &mut self,
        id: &str,
        timestamp: DateTime<Utc>,
        service: &str,
        hashes: &[u64],
    ) {
        let hour = timestamp
            .timestamp_millis()
            .div_euclid(BLOCK_SPAN.num_milliseconds());
        let full = self.open.get(&hour).is_some_and(|pending| {
            pending.ids.len() >= MAX_BLOCK_LOGS
                || pending.hashes.len() + hashes.len() > BLOCK_CAPACITY_WORDS
        });
        if full {
            if let Some(pending) = self.open.remove(&hour) {
                self.done.push(pending.into_document());
            }
        }
        let pending = self.open.entry(hour).or_insert_with(|| Pending {
            ids: Vec::new(),
            from: timestamp,
            to: timestamp,
            services: BTreeSet::new(),
            hashes: HashSet::default(),
        });
        pending.ids.push(id.to_owned());
        pending.from = pending.from.min(timestamp);
        pending.to = pending.to.max(timestamp);
        if !pending.services.contains(service) {
            pending.services.insert(service.to_owned());
        }
        pending.hashes.extend(hashes.iter().copied());
    }

    /// The block documents.
    pub fn finish(mut self) -> Vec<Document> {
        let open = std::mem::take(&mut self.open);
        self.done
            .extend(open.into_values().map(Pending::into_document));
        self.done
    }
}

impl Pending {
    fn into_document(self) -> Document {
        let mut bloom = Bloom::for_words(self.hashes.len());
        for hash in &self.hashes {
            bloom.insert(*hash);
        }
        let mut id_hash = 0xcbf2_9ce4_8422_2325_u64;
        for id in &self.ids {
            id_hash = (id_hash ^ word_hash(id)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        doc! {
            block_fields::ID: format!("{id_hash:016x}-{}", self.ids.len()),
            block_fields::VERSION: BLOCK_VERSION,
            block_fields::FROM: bson::DateTime::from_chrono(self.from),
            block_fields::TO: bson::DateTime::from_chrono(self.to),
            block_fields::SERVICES: self.services.into_iter().collect::<Vec<_>>(),
            block_fields::IDS: self.ids,
            block_fields::BITS: i64::from(bloom.bits()),
            block_fields::BLOOM: Binary { subtype: BinarySubtype::Generic, bytes: bloom.bytes().to_vec() },
        }
    }
}

/// Words a block takes before a new one starts: its filter's capacity.
const BLOCK_CAPACITY_WORDS: usize = BLOOM_CAPACITY;

/// The blocks of a window that may hold a query's words.
#[derive(Debug, Clone, PartialEq)]
pub enum Candidates {
    /// The ids of the logs of every matching block (none: no log in the window holds them).
    Ids(Vec<String>),
    /// More than [`MAX_CANDIDATE_BLOCKS`] blocks match: scan the window.
    Scan,
}

impl Database {
    /// The blocks' indexes, and the marker saying from when logs are in blocks; idempotent.
    pub(super) async fn ensure_blocks(&self) -> Result<(), StoreError> {
        let Some(blocks) = &self.blocks else {
            return Ok(());
        };
        blocks
            .create_index(
                IndexModel::builder()
                    .keys(doc! { block_fields::BITS: 1, block_fields::TO: 1 })
                    .options(
                        IndexOptions::builder()
                            .name(INDEX_BLOCKS.to_owned())
                            .build(),
                    )
                    .build(),
            )
            .await
            .map_err(StoreError::Unavailable)?;
        let marker = doc! {
            block_fields::ID: MARKER_ID,
            block_fields::SINCE: bson::DateTime::from_chrono(Utc::now()),
        };
        match blocks.insert_one(marker).await {
            Ok(_) => Ok(()),
            Err(error) if super::is_duplicate_key(&error) => Ok(()),
            Err(error) => Err(StoreError::Unavailable(error)),
        }
    }

    /// When the first writer with word blocks started: logs stamped before may be stored
    /// the earlier way only. `None` before any did (then every log may be).
    pub async fn blocks_since(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let Some(blocks) = &self.blocks else {
            return Ok(None);
        };
        let marker = blocks
            .find_one(doc! { block_fields::ID: MARKER_ID })
            .await
            .map_err(StoreError::Unavailable)?;
        Ok(marker
            .and_then(|marker| marker.get_datetime(block_fields::SINCE).ok().copied())
            .map(bson::DateTime::to_chrono))
    }

    /// Writes blocks; one already written (the same logs) is not written again.
    pub(super) async fn insert_blocks(&self, documents: Vec<Document>) -> Result<(), StoreError> {
        let Some(blocks) = &self.blocks else {
            return Ok(());
        };
        if documents.is_empty() {
            return Ok(());
        }
        match blocks.insert_many(documents).ordered(false).await {
            Ok(_) => Ok(()),
            Err(error) => match error.kind.as_ref() {
                ErrorKind::InsertMany(failure)
                    if failure.write_concern_error.is_none()
                        && failure
                            .write_errors
                            .iter()
                            .flatten()
                            .all(|write_error| write_error.code == DUPLICATE_KEY) =>
                {
                    Ok(())
                }
                _ => Err(StoreError::Unavailable(error)),
            },
        }
    }

    /// The logs of the blocks overlapping `[from, to]` that may hold every one of `words`,
    /// and, with `services`, one of them; [`Candidates::Scan`] past `max_blocks` blocks.
    pub async fn block_candidates(
        &self,
        words: &[String],
        services: Option<&[Bson]>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        max_blocks: usize,
    ) -> Result<Candidates, StoreError> {
        let Some(blocks) = &self.blocks else {
            return Ok(Candidates::Scan);
        };
        let hashes: Vec<u64> = words.iter().map(|word| word_hash(word)).collect();
        let queries = BLOOM_SIZES.map(|bits| {
            let mut positions: Vec<u32> = hashes
                .iter()
                .flat_map(|hash| bloom_positions(*hash, bits))
                .collect();
            positions.sort_unstable();
            positions.dedup();
            let mut filter = doc! {
                block_fields::BITS: i64::from(bits),
                block_fields::TO: {
                    "$gte": bson::DateTime::from_chrono(from),
                    "$lt": bson::DateTime::from_chrono(to.checked_add_signed(BLOCK_SPAN).unwrap_or(to)),
                },
                block_fields::FROM: { "$lte": bson::DateTime::from_chrono(to) },
                block_fields::BLOOM: { "$bitsAllSet": positions.into_iter().map(i64::from).collect::<Vec<_>>() },
            };
            if let Some(services) = services {
                filter.insert(block_fields::SERVICES, doc! { "$in": services });
            }
            async move {
                blocks
                    .find(filter)
                    .projection(doc! { block_fields::IDS: 1 })
                    .limit(i64::try_from(max_blocks + 1).unwrap_or(i64::MAX))
                    .await
                    .map_err(StoreError::Unavailable)?
                    .try_collect::<Vec<Document>>()
                    .await
                    .map_err(StoreError::Unavailable)
            }
        });
        let found: Vec<Vec<Document>> = futures::stream::iter(queries)
            .buffer_unordered(BLOOM_SIZES.len())
            .try_collect()
            .await?;
        let matching: Vec<Document> = found.into_iter().flatten().collect();
        if matching.len() > max_blocks {
            return Ok(Candidates::Scan);
        }
        let mut ids: Vec<String> = matching
            .iter()
            .filter_map(|block| block.get_array(block_fields::IDS).ok())
            .flatten()
            .filter_map(|id| id.as_str().map(str::to_owned))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        Ok(Candidates::Ids(ids))
    }

    /// Deletes the blocks all of whose logs are older than the oldest stored log: what
    /// retention's purge leaves behind. Returns how many went.
    pub async fn purge_blocks(&self) -> Result<u64, StoreError> {
        let Some(blocks) = &self.blocks else {
            return Ok(0);
        };
        let oldest = self
            .logs
            .find_one(doc! {})
            .sort(doc! { fields::TIMESTAMP: 1 })
            .projection(doc! { fields::TIMESTAMP: 1 })
            .await
            .map_err(StoreError::Unavailable)?
            .and_then(|log| log.get_datetime(fields::TIMESTAMP).ok().copied());
        let before = oldest.unwrap_or_else(|| bson::DateTime::from_chrono(Utc::now()));
        blocks
            .delete_many(doc! {
                block_fields::BITS: { "$exists": true },
                block_fields::TO: { "$lt": before },
            })
            .await
            .map(|result| result.deleted_count)
            .map_err(StoreError::Unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp_millis(ms).unwrap()
    }

    #[test]
    fn a_batch_becomes_blocks_cut_at_their_capacity() {
        let mut builder = BlockBuilder::default();
        builder.push("a", at(20), "web", ["alpha", "beta"]);
        builder.push("b", at(10), "api", ["beta"]);
        let blocks = builder.finish();
        assert_eq!(blocks.len(), 1);
        let block = &blocks[0];
        assert_eq!(
            block
                .get_datetime(block_fields::FROM)
                .unwrap()
                .timestamp_millis(),
            10
        );
        assert_eq!(
            block
                .get_datetime(block_fields::TO)
                .unwrap()
                .timestamp_millis(),
            20
        );
        assert_eq!(
            block.get_array(block_fields::SERVICES).unwrap(),
            &vec![Bson::from("api"), Bson::from("web")]
        );
        let bloom = Bloom::from_bytes(
            block
                .get_binary_generic(block_fields::BLOOM)
                .unwrap()
                .clone(),
        )
        .unwrap();
        assert!(bloom.may_contain(word_hash("alpha")) && bloom.may_contain(word_hash("beta")));
        assert_eq!(
            block.get_i64(block_fields::BITS).unwrap(),
            i64::from(bloom.bits())
        );

        let mut builder = BlockBuilder::default();
        let words: Vec<String> = (0..100).map(|n| format!("w{n}")).collect();
        for log in 0..(BLOCK_CAPACITY_WORDS / 100 + 1) {
            let unique: Vec<String> = words.iter().map(|word| format!("{word}-{log}")).collect();
            builder.push(
                &log.to_string(),
                at(0),
                "web",
                unique.iter().map(String::as_str),
            );
        }
        let blocks = builder.finish();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[1].get_array(block_fields::IDS).unwrap().len(), 1);
    }

    #[test]
    fn a_block_holds_logs_of_one_hour_and_at_most_its_share() {
        let mut builder = BlockBuilder::default();
        let hour = BLOCK_SPAN.num_milliseconds();
        builder.push("a", at(hour - 1), "web", ["x"]);
        builder.push("b", at(hour), "web", ["x"]);
        builder.push("c", at(hour - 2), "web", ["x"]);
        for n in 0..MAX_BLOCK_LOGS + 1 {
            builder.push(&format!("n{n}"), at(hour + 10), "web", ["y"]);
        }
        let blocks = builder.finish();
        let sizes: Vec<usize> = blocks
            .iter()
            .map(|block| block.get_array(block_fields::IDS).unwrap().len())
            .collect();
        assert_eq!(sizes, [MAX_BLOCK_LOGS, 2, 2]);
        for block in &blocks {
            let from = block
                .get_datetime(block_fields::FROM)
                .unwrap()
                .timestamp_millis();
            let to = block
                .get_datetime(block_fields::TO)
                .unwrap()
                .timestamp_millis();
            assert_eq!(from.div_euclid(hour), to.div_euclid(hour));
        }
    }

    #[test]
    fn the_same_logs_make_the_same_block_id() {
        let block = |ids: &[&str]| {
            let mut builder = BlockBuilder::default();
            for id in ids {
                builder.push(id, at(0), "web", ["x"]);
            }
            builder.finish()[0]
                .get_str(block_fields::ID)
                .unwrap()
                .to_owned()
        };
        assert_eq!(block(&["a", "b"]), block(&["a", "b"]));
        assert_ne!(block(&["a", "b"]), block(&["a", "c"]));
    }
}
