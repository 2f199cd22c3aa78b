//! Word blocks in MongoDB: per written batch, one document per block of up to
//! [`MAX_BLOCK_LOGS`] logs of one hour (their ids, time range and services), and beside it one
//! small *filter* document per slice of the word hashes the block's words fall in
//! ([`PARTITIONS`]): a bloom filter (`crate::words`) of those words only.
//!
//! A collector keeps one block per hour *open* across its batches ([`OpenBlocks`]): each
//! batch appends its logs' ids to the open block's document, stored with the logs, and the
//! batch's messages are acked only once both are; if either fails, the batch is written
//! again. Search reads every open block overlapping a window as a candidate. A block is
//! *sealed* once full or a minute old: its filters are written, then its document replaced
//! by the sealed one. A stored log is thus in a block from the moment its messages are
//! acked; a block whose logs failed to store only costs a search a read that finds nothing.
//! One-off writers (`retention restore`) seal their blocks at once ([`BlockBuilder`]; a
//! block's `_id` then derives from its logs' ids, so a batch written again is the same block).
//!
//! Search asks, over its range, for the filters of each query word's slice that have all of
//! its bits set (`$bitsAllSet`, evaluated by the server), keeps the blocks every slice named,
//! then reads those blocks' logs whose signature may hold the words by `_id`, and checks
//! each one's message. Where too many blocks match (a common word), it walks the range's
//! blocks in time order instead ([`Database::walk_blocks`]), until a page is found. The
//! slices are what keep a search cheap: the server reads one sixteenth of a range's filter
//! bytes per query word, and its cost grows with the bytes it reads (docs/PERFORMANCE.md).
//!
//! Blocks of the first version (one filter over all words in the block document itself,
//! [`V1_MARKER_ID`]), and the second's logs stored with their words (`all_words`, before
//! [`CHECKED_MARKER_ID`]), stay searchable until retention removes them.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use bson::spec::BinarySubtype;
use bson::{doc, Binary, Bson, Document};
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use mongodb::error::ErrorKind;
use mongodb::options::IndexOptions;
use mongodb::IndexModel;

use super::{fields, Database, StoreError, DUPLICATE_KEY};
use crate::words::{bloom_positions, signature_of, word_hash, Bloom, Signature};

/// Field names of block, filter and marker documents.
pub mod block_fields {
    /// A block's: derived from its logs' ids. A filter's: the block's, `/`, its slice.
    pub const ID: &str = "_id";
    /// The stored format's version: how words hash into the filters.
    pub const VERSION: &str = "v";
    /// Earliest and latest timestamp of the block's logs (on its filters too).
    pub const FROM: &str = "from";
    pub const TO: &str = "to";
    /// The block's services (on its filters too).
    pub const SERVICES: &str = "services";
    /// On blocks: the logs' ids.
    pub const IDS: &str = "ids";
    /// On sealed blocks: the logs' signatures (`crate::words::signature_of`), 16 bytes each
    /// (little-endian), in the order of their ids. Ids past them (appended after the seal
    /// by a batch in flight) have none.
    pub const SIGNATURES: &str = "sigs";
    /// On filters: the block's `_id`.
    pub const BLOCK: &str = "b";
    /// On filters: the slice of word hashes it holds, `0..PARTITIONS`; on blocks, `OPEN`
    /// or `SEALED` (sealed blocks of the second version, written before
    /// [`CHECKED_MARKER_ID`], have none).
    pub const PARTITION: &str = "p";
    /// On filters: its size in bits, one of `FILTER_SIZES`; on blocks, 0.
    pub const FILTER_BITS: &str = "k";
    pub const FILTER: &str = "f";
    /// On first-version blocks: their one filter's size and bytes.
    pub const V1_BITS: &str = "m";
    pub const V1_BLOOM: &str = "bloom";
    /// On a marker document: from when writers wrote blocks of its version.
    pub const SINCE: &str = "since";
}

/// The format [`block_fields::VERSION`] names.
pub const BLOCK_VERSION: i32 = 2;
/// Logs one block holds at most. Larger blocks mean fewer filter documents for a search to
/// read; a block that matches costs a read of its logs by `_id`.
pub const MAX_BLOCK_LOGS: usize = 1_000;
/// Slices of the word hashes (by their top bits), each with its own filter per block.
pub const PARTITIONS: usize = 16;
/// Filter sizes, in bits: a slice's filter has the smallest giving each of its words
/// `BLOOM_BITS_PER_WORD` bits. Few sizes, because a query asks once per size.
pub const FILTER_SIZES: [u32; 3] = [1 << 9, 1 << 11, 1 << 13];
/// Distinct words one slice of a block holds; a block is cut before one would overflow.
const PARTITION_CAPACITY: usize = Bloom::capacity(FILTER_SIZES[FILTER_SIZES.len() - 1]);
/// A block's logs all lie in one aligned hour, so a block overlapping `[low, high]` ends
/// before `high` plus an hour: search's filter query is one range on `to`.
pub const BLOCK_SPAN: chrono::Duration = chrono::Duration::hours(1);
/// Index serving search's question: the filters of one slice and size ending in a time range.
/// (SecantusDB bounds only the first range of a compound index well: with `from` in the
/// index too, a one-minute window's blocks took 30 ms instead of 1.3 ms.)
pub const INDEX_FILTERS: &str = "p_k_to";
/// `_id` of the marker document recording when the first block of this version was written.
const MARKER_ID: &str = "filters_since";
/// `_id` of the marker recording from when writers store logs without their words
/// (`all_words`) and seal blocks as [`SEALED`]: search checks those logs' words on their
/// message, and reads sealed blocks in time order where too many match to read at once.
const CHECKED_MARKER_ID: &str = "checked_since";
/// `_id` of the first version's marker, and its index and filter sizes.
const V1_MARKER_ID: &str = "blocks_since";
const V1_SIZES: [u32; 4] = [1 << 10, 1 << 12, 1 << 14, 1 << 16];
/// How long the block markers read are trusted before they are read again.
const ERAS_REFRESH: std::time::Duration = std::time::Duration::from_secs(60);
/// Matching blocks a page's window reads (their ids and signatures, then the logs whose
/// signature may hold the words, by `_id`); past it, the window is scanned.
pub const MAX_CANDIDATE_BLOCKS: usize = 40;

/// The slice of word hashes `hash` falls in.
pub fn partition(hash: u64) -> usize {
    (hash >> 60) as usize
}

/// Builds a batch's blocks, log by log: one open block per hour its logs are stamped in.
#[derive(Debug, Default)]
pub struct BlockBuilder {
    done: Vec<Document>,
    open: BTreeMap<i64, Pending>,
}

#[derive(Debug)]
struct Pending {
    ids: Vec<String>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    services: BTreeSet<String>,
    hashes: HashSet<u64, BuildHasherDefault<PassThrough>>,
    /// Distinct words per slice.
    words: [usize; PARTITIONS],
    /// Each log's signature, in the order of `ids`.
    signatures: Vec<Signature>,
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
        let hour = hour_number(timestamp);
        let full = self.open.get(&hour).is_some_and(|pending| {
            pending.ids.len() >= MAX_BLOCK_LOGS || pending.overflows(hashes)
        });
        if full {
            if let Some(pending) = self.open.remove(&hour) {
                self.done.extend(pending.into_documents());
            }
        }
        self.open
            .entry(hour)
            .or_insert_with(|| Pending::new(timestamp))
            .add(id, timestamp, service, hashes);
    }

    /// The block and filter documents.
    pub fn finish(mut self) -> Vec<Document> {
        let open = std::mem::take(&mut self.open);
        for pending in open.into_values() {
            self.done.extend(pending.into_documents());
        }
        self.done
    }
}

impl Pending {
    fn new(timestamp: DateTime<Utc>) -> Pending {
        Pending {
            ids: Vec::new(),
            from: timestamp,
            to: timestamp,
            services: BTreeSet::new(),
            hashes: HashSet::default(),
            words: [0; PARTITIONS],
            signatures: Vec::new(),
        }
    }

    fn add(&mut self, id: &str, timestamp: DateTime<Utc>, service: &str, hashes: &[u64]) {
        self.ids.push(id.to_owned());
        self.signatures.push(
            hashes
                .iter()
                .fold(0, |signature, hash| signature | signature_of(*hash)),
        );
        self.from = self.from.min(timestamp);
        self.to = self.to.max(timestamp);
        if !self.services.contains(service) {
            self.services.insert(service.to_owned());
        }
        for hash in hashes {
            if self.hashes.insert(*hash) {
                self.words[partition(*hash)] += 1;
            }
        }
    }

    /// Whether the block takes no log of `hashes`: it holds [`MAX_BLOCK_LOGS`], or a slice
    /// would pass its capacity.
    fn full_for(&self, hashes: &[u64]) -> bool {
        self.ids.len() >= MAX_BLOCK_LOGS || self.overflows(hashes)
    }

    /// Whether a log of `hashes` would take a slice past its capacity.
    fn overflows(&self, hashes: &[u64]) -> bool {
        let mut words = self.words;
        hashes
            .iter()
            .filter(|hash| !self.hashes.contains(hash))
            .any(|hash| {
                let slice = &mut words[partition(*hash)];
                *slice += 1;
                *slice > PARTITION_CAPACITY
            })
    }

    /// The block document (last), named by its logs' ids, and its filters.
    fn into_documents(self) -> Vec<Document> {
        let mut id_hash = 0xcbf2_9ce4_8422_2325_u64;
        for id in &self.ids {
            id_hash = (id_hash ^ word_hash(id)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        let id = format!("{id_hash:016x}-{}", self.ids.len());
        self.into_named_documents(&id)
    }

    /// One filter document per slice holding words, then the block document, named `id`.
    fn into_named_documents(self, id: &str) -> Vec<Document> {
        let mut filters: Vec<Option<Bloom>> = self
            .words
            .iter()
            .map(|words| (*words > 0).then(|| Bloom::for_words(*words, &FILTER_SIZES)))
            .collect();
        for hash in &self.hashes {
            if let Some(filter) = &mut filters[partition(*hash)] {
                filter.insert(*hash);
            }
        }
        let from = bson::DateTime::from_chrono(self.from);
        let to = bson::DateTime::from_chrono(self.to);
        let services: Vec<String> = self.services.into_iter().collect();
        let mut documents = Vec::with_capacity(1 + PARTITIONS);
        for (slice, filter) in filters.into_iter().enumerate() {
            let Some(filter) = filter else { continue };
            documents.push(doc! {
                block_fields::ID: format!("{id}/{slice}"),
                block_fields::VERSION: BLOCK_VERSION,
                block_fields::BLOCK: id,
                block_fields::PARTITION: slice as i32,
                block_fields::FILTER_BITS: i64::from(filter.bits()),
                block_fields::FROM: from,
                block_fields::TO: to,
                block_fields::SERVICES: &services,
                block_fields::FILTER: Binary { subtype: BinarySubtype::Generic, bytes: filter.bytes().to_vec() },
            });
        }
        let signatures: Vec<u8> = self
            .signatures
            .iter()
            .flat_map(|signature| signature.to_le_bytes())
            .collect();
        documents.push(doc! {
            block_fields::ID: id,
            block_fields::VERSION: BLOCK_VERSION,
            block_fields::PARTITION: SEALED,
            block_fields::FILTER_BITS: 0_i64,
            block_fields::FROM: from,
            block_fields::TO: to,
            block_fields::SERVICES: services,
            block_fields::IDS: self.ids,
            block_fields::SIGNATURES: Binary { subtype: BinarySubtype::Generic, bytes: signatures },
        });
        documents
    }
}

/// How long a writer keeps a block open across its batches before sealing it: at a low
/// rate a batch (closed after 200 ms) holds a few logs, and a block per batch would make a
/// day of logs hundreds of thousands of blocks for every search to read.
pub const BLOCK_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(60);
/// Open blocks a writer keeps at most (one per hour its logs are stamped in); past it, the
/// oldest is sealed.
const MAX_OPEN_BLOCKS: usize = 24;
/// [`block_fields::PARTITION`] of an open block's document: search reads every open block
/// overlapping a window as a candidate, through the filters' index.
const OPEN: i32 = -1;
/// [`block_fields::PARTITION`] of a sealed block: with [`OPEN`], what lets search read
/// blocks in time order through [`INDEX_FILTERS`].
const SEALED: i32 = -2;

/// A writer's blocks kept open across batches, one per hour (the collector's; see
/// docs/search.md). Each batch appends its logs' ids to their open block's document, which
/// search reads whole as a candidate; a block full ([`MAX_BLOCK_LOGS`], or a slice at
/// capacity) or older than [`BLOCK_MAX_AGE`] is sealed: its filters are written, then its
/// document replaced by a sealed one. Every write commutes with the others, so batches
/// in flight at once may land in any order: an acked log is in an open block, or in a
/// sealed one whose filters hold its words.
#[derive(Debug)]
pub struct OpenBlocks {
    /// Names this writer's blocks: random per process.
    writer: String,
    sequence: u64,
    open: BTreeMap<i64, Open>,
    /// Sealed blocks whose writes failed, written again with the next batch.
    unsealed: Vec<Sealed>,
}

#[derive(Debug)]
struct Open {
    id: String,
    opened: std::time::Instant,
    pending: Pending,
}

/// A sealed block's documents: its filters, then its block document.
#[derive(Debug)]
pub struct Sealed {
    filters: Vec<Document>,
    block: Document,
    /// Whether this batch's ids in the block are written by the seal alone (its append was
    /// dropped): then the batch is stored only once the seal is.
    carries_batch: bool,
}

/// What one batch writes to blocks: appends to open blocks, and blocks it sealed.
#[derive(Debug, Default)]
pub struct BlockWrites {
    appends: BTreeMap<String, Append>,
    sealed: Vec<Sealed>,
}

#[derive(Debug)]
struct Append {
    ids: Vec<String>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    services: BTreeSet<String>,
}

impl Default for OpenBlocks {
    fn default() -> Self {
        OpenBlocks {
            writer: format!("{:016x}", rand::random::<u64>()),
            sequence: 0,
            open: BTreeMap::new(),
            unsealed: Vec::new(),
        }
    }
}

impl OpenBlocks {
    /// Adds one log with the [`word_hash`]es of its distinct words to its hour's open block,
    /// sealing that block first if it is full.
    pub fn push_hashed(
        &mut self,
        writes: &mut BlockWrites,
        id: &str,
        timestamp: DateTime<Utc>,
        service: &str,
        hashes: &[u64],
    ) {
        let hour = hour_number(timestamp);
        if self
            .open
            .get(&hour)
            .is_some_and(|open| open.pending.full_for(hashes))
        {
            if let Some(open) = self.open.remove(&hour) {
                writes.seal(open);
            }
        }
        if !self.open.contains_key(&hour) && self.open.len() >= MAX_OPEN_BLOCKS {
            if let Some((&oldest, _)) = self.open.iter().min_by_key(|(_, open)| open.opened) {
                if let Some(open) = self.open.remove(&oldest) {
                    writes.seal(open);
                }
            }
        }
        let open = match self.open.entry(hour) {
            std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::btree_map::Entry::Vacant(entry) => {
                self.sequence += 1;
                entry.insert(Open {
                    id: format!("{}-{}", self.writer, self.sequence),
                    opened: std::time::Instant::now(),
                    pending: Pending::new(timestamp),
                })
            }
        };
        open.pending.add(id, timestamp, service, hashes);
        let append = writes
            .appends
            .entry(open.id.clone())
            .or_insert_with(|| Append {
                ids: Vec::new(),
                from: timestamp,
                to: timestamp,
                services: BTreeSet::new(),
            });
        append.ids.push(id.to_owned());
        append.from = append.from.min(timestamp);
        append.to = append.to.max(timestamp);
        if !append.services.contains(service) {
            append.services.insert(service.to_owned());
        }
    }

    /// Seals the blocks open longer than `max_age` (all of them with zero), and adds them,
    /// with any whose sealing failed before, to `writes`.
    pub fn seal_aged(&mut self, writes: &mut BlockWrites, max_age: std::time::Duration) {
        let aged: Vec<i64> = self
            .open
            .iter()
            .filter(|(_, open)| open.opened.elapsed() >= max_age)
            .map(|(hour, _)| *hour)
            .collect();
        for hour in aged {
            if let Some(open) = self.open.remove(&hour) {
                writes.seal(open);
            }
        }
        writes.sealed.append(&mut self.unsealed);
    }

    /// Keeps sealed blocks whose writes failed, to be written with the next batch.
    pub fn retry(&mut self, sealed: Vec<Sealed>) {
        self.unsealed.extend(sealed);
    }
}

impl Open {
    fn seal(self) -> Sealed {
        let mut documents = self.pending.into_named_documents(&self.id);
        let block = documents.pop().unwrap_or_default();
        Sealed {
            filters: documents,
            block,
            carries_batch: false,
        }
    }
}

impl BlockWrites {
    /// Seals `open`. The sealed document holds every id, so this batch's append to it is
    /// dropped: at a high rate a block fills within a batch or two, and its ids would
    /// otherwise be written twice.
    fn seal(&mut self, open: Open) {
        let carries_batch = self.appends.remove(&open.id).is_some();
        let mut sealed = open.seal();
        sealed.carries_batch = carries_batch;
        self.sealed.push(sealed);
    }

    pub fn is_empty(&self) -> bool {
        self.appends.is_empty() && self.sealed.is_empty()
    }
}

/// The blocks of a window that may hold a query's words.
#[derive(Debug, Clone, PartialEq)]
pub enum Candidates {
    /// The ids of the logs of every matching block (none: no log in the window holds them).
    Ids(Vec<String>),
    /// More than the allowed blocks match: scan the window.
    Scan,
}

/// From when writers wrote blocks of each version, as their markers say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockEras {
    pub v1_since: Option<DateTime<Utc>>,
    pub since: Option<DateTime<Utc>>,
    pub checked_since: Option<DateTime<Utc>>,
}

impl BlockEras {
    /// Logs stamped up to this time may be in first-version blocks only (a writer of the
    /// earlier version may have run for up to an hour beside one of this); `None` when no
    /// first-version block was ever written.
    pub fn v1_until(&self) -> Option<DateTime<Utc>> {
        let v1_since = self.v1_since?;
        Some(match self.since {
            Some(since) => since.checked_add_signed(BLOCK_SPAN).unwrap_or(since),
            None => v1_since.max(Utc::now()),
        })
    }

    /// Logs stamped up to this time may carry their words (`all_words`) and be in blocks
    /// search cannot read in time order (a writer of an earlier version may have run for up
    /// to an hour beside one of this); `None` when no earlier writer of blocks ever ran.
    pub fn listed_until(&self) -> Option<DateTime<Utc>> {
        let earlier = match (self.v1_since, self.since, self.checked_since) {
            (Some(_), _, _) => true,
            (None, Some(since), Some(checked)) => since < checked,
            (None, Some(_), None) => true,
            (None, None, _) => false,
        };
        if !earlier {
            return None;
        }
        Some(match self.checked_since {
            Some(checked) => checked.checked_add_signed(BLOCK_SPAN).unwrap_or(checked),
            None => Utc::now()
                .checked_add_signed(BLOCK_SPAN)
                .unwrap_or_else(Utc::now),
        })
    }
}

/// What the filters say of one slice's words in a window: the blocks that may hold them,
/// or `None` when more matched than asked for.
type SliceMatch = Option<HashSet<String>>;

impl Database {
    /// The indexes of blocks and filters, and the marker saying from when logs are in
    /// blocks of this version; idempotent.
    pub(super) async fn ensure_blocks(&self) -> Result<(), StoreError> {
        let Some(blocks) = &self.blocks else {
            return Ok(());
        };
        blocks
            .create_index(
                IndexModel::builder()
                    .keys(doc! {
                        block_fields::PARTITION: 1,
                        block_fields::FILTER_BITS: 1,
                        block_fields::TO: 1,
                    })
                    .options(
                        IndexOptions::builder()
                            .name(INDEX_FILTERS.to_owned())
                            .build(),
                    )
                    .build(),
            )
            .await
            .map_err(StoreError::Unavailable)?;
        // One time for both markers: equal, they say no writer stored words before.
        let now = bson::DateTime::from_chrono(Utc::now());
        for id in [MARKER_ID, CHECKED_MARKER_ID] {
            let marker = doc! { block_fields::ID: id, block_fields::SINCE: now };
            match blocks.insert_one(marker).await {
                Ok(_) => {}
                Err(error) if super::is_duplicate_key(&error) => {}
                Err(error) => return Err(StoreError::Unavailable(error)),
            }
        }
        Ok(())
    }

    /// From when writers wrote blocks of each version.
    /// Read once a minute at most, and once for good when both markers exist (a marker
    /// never changes once written): every search window asks.
    pub async fn block_eras(&self) -> Result<BlockEras, StoreError> {
        let Some(blocks) = &self.blocks else {
            return Ok(BlockEras::default());
        };
        if let Some((read_at, eras)) = *super::lock(&self.block_eras) {
            let settled =
                eras.v1_since.is_some() && eras.since.is_some() && eras.checked_since.is_some();
            if settled || read_at.elapsed() < ERAS_REFRESH {
                return Ok(eras);
            }
        }
        let markers: Vec<Document> = blocks
            .find(
                doc! { block_fields::ID: { "$in": [MARKER_ID, V1_MARKER_ID, CHECKED_MARKER_ID] } },
            )
            .await
            .map_err(StoreError::Unavailable)?
            .try_collect()
            .await
            .map_err(StoreError::Unavailable)?;
        let since = |id: &str| {
            markers
                .iter()
                .find(|marker| marker.get_str(block_fields::ID) == Ok(id))
                .and_then(|marker| marker.get_datetime(block_fields::SINCE).ok().copied())
                .map(bson::DateTime::to_chrono)
        };
        let eras = BlockEras {
            v1_since: since(V1_MARKER_ID),
            since: since(MARKER_ID),
            checked_since: since(CHECKED_MARKER_ID),
        };
        *super::lock(&self.block_eras) = Some((std::time::Instant::now(), eras));
        Ok(eras)
    }

    /// When the first writer with word blocks (of any version) started: logs stamped before
    /// may be stored the earlier way only. `None` before any did (then every log may be).
    pub async fn blocks_since(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let eras = self.block_eras().await?;
        Ok(match (eras.v1_since, eras.since) {
            (Some(v1), Some(since)) => Some(v1.min(since)),
            (v1, since) => v1.or(since),
        })
    }

    /// Writes blocks and filters; one already written (the same logs) is not written again.
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

    /// Writes one batch's block writes: its appends to open blocks (each an upsert of the
    /// ids, time range and services, all commuting), and the blocks it sealed (filters
    /// first, then the sealed block document, so a block is never out of search's sight).
    /// `Err` if an append failed, or the seal of a block holding some of this batch's logs
    /// without an append: the batch must be written again. Any seal that fails is kept
    /// for the next batch; its block stays open, and found, meanwhile.
    pub(super) async fn write_blocks(&self, writes: BlockWrites) -> Result<(), StoreError> {
        let Some(blocks) = &self.blocks else {
            return Ok(());
        };
        let appends = writes.appends.into_iter().map(|(id, append)| {
            let update = doc! {
                "$push": { block_fields::IDS: { "$each": append.ids } },
                "$min": { block_fields::FROM: bson::DateTime::from_chrono(append.from) },
                "$max": { block_fields::TO: bson::DateTime::from_chrono(append.to) },
                "$addToSet": { block_fields::SERVICES: { "$each": append.services.into_iter().collect::<Vec<_>>() } },
                "$setOnInsert": {
                    block_fields::VERSION: BLOCK_VERSION,
                    block_fields::PARTITION: OPEN,
                    block_fields::FILTER_BITS: 0_i64,
                },
            };
            async move {
                blocks
                    .update_one(doc! { block_fields::ID: id }, update)
                    .upsert(true)
                    .await
                    .map(|_| ())
                    .map_err(StoreError::Unavailable)
            }
        });
        let appended = futures::future::try_join_all(appends);
        let seals = async {
            let mut failed = Vec::new();
            let mut first_error = None;
            for mut sealed in writes.sealed {
                if let Err(error) = self.write_sealed(blocks, &sealed).await {
                    tracing::warn!(%error, "sealing a word block failed; it stays open and is sealed with the next batch");
                    if sealed.carries_batch {
                        first_error.get_or_insert(error);
                    }
                    // Written again later, it no longer answers for this batch, which is
                    // written again itself.
                    sealed.carries_batch = false;
                    failed.push(sealed);
                }
            }
            (failed, first_error)
        };
        let (appended, (failed, carried_error)) = futures::join!(appended, seals);
        if !failed.is_empty() {
            super::lock(&self.open_blocks).retry(failed);
        }
        appended?;
        carried_error.map_or(Ok(()), Err)
    }

    async fn write_sealed(
        &self,
        blocks: &mongodb::Collection<Document>,
        sealed: &Sealed,
    ) -> Result<(), StoreError> {
        self.insert_blocks(sealed.filters.clone()).await?;
        let id = sealed.block.get_str(block_fields::ID).unwrap_or_default();
        blocks
            .replace_one(doc! { block_fields::ID: id }, &sealed.block)
            .upsert(true)
            .await
            .map(|_| ())
            .map_err(StoreError::Unavailable)
    }

    /// Seals every block this handle's writer keeps open (at shutdown, after a seed).
    /// Returns how many could not be: a block left open stays searchable, read whole by
    /// every search overlapping it.
    pub async fn seal_open_blocks(&self) -> Result<usize, StoreError> {
        self.seal_blocks_older_than(std::time::Duration::ZERO).await
    }

    /// Seals the blocks open longer than [`BLOCK_MAX_AGE`] (when no batch comes to do it);
    /// returns how many could not be.
    pub async fn seal_aged_blocks(&self) -> Result<usize, StoreError> {
        self.seal_blocks_older_than(BLOCK_MAX_AGE).await
    }

    async fn seal_blocks_older_than(&self, age: std::time::Duration) -> Result<usize, StoreError> {
        let mut writes = BlockWrites::default();
        super::lock(&self.open_blocks).seal_aged(&mut writes, age);
        if writes.is_empty() {
            return Ok(0);
        }
        self.write_blocks(writes).await?;
        Ok(super::lock(&self.open_blocks).unsealed.len())
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
        let window = Overlapping { from, to, services };
        let eras = self.block_eras().await?;
        let v1_ids = match eras.v1_until() {
            Some(until) if until >= from => {
                match v1_candidates(
                    blocks,
                    &hashes,
                    Overlapping {
                        to: to.min(until),
                        ..window
                    },
                    max_blocks,
                )
                .await?
                {
                    Candidates::Scan => return Ok(Candidates::Scan),
                    Candidates::Ids(ids) => ids,
                }
            }
            _ => Vec::new(),
        };
        // Open blocks before the filters: a block sealed in between has its filters written
        // before its document is replaced, so one of the two queries finds it.
        let open = window
            .find_up_to(
                blocks,
                window.filter(
                    doc! { block_fields::PARTITION: OPEN, block_fields::FILTER_BITS: 0_i64 },
                    doc! {},
                ),
                doc! { block_fields::IDS: 1 },
                max_blocks,
            )
            .await?;
        let Some(matching) = filters_matching(blocks, &hashes, window, max_blocks).await? else {
            return Ok(Candidates::Scan);
        };
        if matching.len() + open.len() > max_blocks {
            return Ok(Candidates::Scan);
        }
        let mut ids = v1_ids;
        ids.extend(ids_of(&open));
        if !matching.is_empty() {
            let found: Vec<Document> = blocks
                .find(doc! { block_fields::ID: { "$in": matching } })
                .projection(doc! { block_fields::IDS: 1, block_fields::SIGNATURES: 1 })
                .await
                .map_err(StoreError::Unavailable)?
                .try_collect()
                .await
                .map_err(StoreError::Unavailable)?;
            let wanted = hashes
                .iter()
                .fold(0, |mask, hash| mask | signature_of(*hash));
            for block in &found {
                ids.extend(signed_ids(block, wanted));
            }
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(Candidates::Ids(ids))
    }

    /// Whether more than `max_blocks` sealed blocks overlapping `[from, to]` may hold every
    /// one of `words`, by their filters alone (one query per word's slice and filter size,
    /// at once): how common the words are in a short window, before a search decides how to
    /// read a long one. Open blocks are not asked.
    pub async fn blocks_may_hold_more_than(
        &self,
        words: &[String],
        services: Option<&[Bson]>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        max_blocks: usize,
    ) -> Result<bool, StoreError> {
        let Some(blocks) = &self.blocks else {
            return Ok(false);
        };
        let hashes: Vec<u64> = words.iter().map(|word| word_hash(word)).collect();
        let window = Overlapping { from, to, services };
        let matching = filters_matching(blocks, &hashes, window, max_blocks).await?;
        Ok(matching.is_none_or(|matching| matching.len() > max_blocks))
    }

    /// The sealed and open blocks overlapping `[from, to]` (with `services`, holding one of
    /// them), one at a time in time order: what a search reads when too many blocks may
    /// hold its words to read them at once. Each block yields the ids of its logs whose
    /// signature may hold every one of `words`.
    pub async fn walk_blocks(
        &self,
        words: &[String],
        services: Option<&[Bson]>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        newest_first: bool,
        max_time: std::time::Duration,
    ) -> Result<BlockWalk, StoreError> {
        let wanted = words
            .iter()
            .fold(0, |mask, word| mask | signature_of(word_hash(word)));
        let mut walk = BlockWalk {
            sealed: None,
            read: VecDeque::new(),
            open: VecDeque::new(),
            newest_first,
            wanted,
        };
        let Some(blocks) = &self.blocks else {
            return Ok(walk);
        };
        let window = Overlapping { from, to, services };
        // Open blocks first: one sealed meanwhile is then read twice, never missed.
        let mut open: Vec<Document> = blocks
            .find(window.filter(
                doc! { block_fields::PARTITION: OPEN, block_fields::FILTER_BITS: 0_i64 },
                doc! {},
            ))
            .projection(walked_fields())
            .max_time(max_time)
            .await
            .map_err(super::search::classify_query_error)?
            .try_collect()
            .await
            .map_err(super::search::classify_query_error)?;
        open.retain(|block| window.starts_in_time(block));
        open.sort_by_key(end_of);
        if newest_first {
            open.reverse();
        }
        walk.open = open.into();
        let mut sealed = window.filter(doc! {}, doc! {});
        // The pages set the index's fields.
        sealed.remove(block_fields::TO);
        walk.sealed = Some(SealedPages::new(
            blocks.clone(),
            sealed,
            from,
            to,
            newest_first,
            max_time,
        ));
        Ok(walk)
    }

    /// Deletes the blocks (and their filters) all of whose logs are older than the oldest
    /// stored log: what retention's purge leaves behind. Returns how many blocks went.
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
        // Filters first: a filter without its block costs a search nothing but a read.
        blocks
            .delete_many(doc! {
                block_fields::PARTITION: { "$gte": 0 },
                block_fields::TO: { "$lt": before },
            })
            .await
            .map_err(StoreError::Unavailable)?;
        blocks
            .delete_many(doc! {
                block_fields::IDS: { "$exists": true },
                block_fields::TO: { "$lt": before },
            })
            .await
            .map(|result| result.deleted_count)
            .map_err(StoreError::Unavailable)
    }
}

/// Sealed blocks a walk's first query reads (about 60 KB each: ids and signatures); each
/// later one reads twice as many, up to [`WALK_MAX_BLOCKS`].
const WALK_FIRST_BLOCKS: usize = 16;
/// The `to` range a walk's first query covers.
const WALK_FIRST_WIDTH: chrono::Duration = chrono::Duration::minutes(15);
const WALK_MAX_BLOCKS: usize = 128;

/// Blocks in time order ([`Database::walk_blocks`]): open ones merged with sealed ones,
/// read a page at a time.
pub struct BlockWalk {
    sealed: Option<SealedPages>,
    /// Sealed blocks read and not yet walked, in order.
    read: VecDeque<Document>,
    open: VecDeque<Document>,
    newest_first: bool,
    wanted: Signature,
}

/// Sealed blocks in time order, a limited query at a time within a window of `to` that
/// starts a quarter of an hour wide and grows fourfold each time one is read through.
/// (SecantusDB's cost for a query on blocks grows with the index entries in its range, limit
/// or not: 16-18 ms for a day's 1,000 blocks, under 1 ms for an hour's 42.)
struct SealedPages {
    blocks: mongodb::Collection<Document>,
    /// The conditions besides the index's (the time range's `from`, the services).
    filter: Document,
    newest_first: bool,
    /// The far end of the walk's `to` range (newest first, its inclusive start; oldest
    /// first, its exclusive end).
    far: DateTime<Utc>,
    /// Where the next query starts: a `to` and whether it is included, with the blocks
    /// already read at it (read again, and skipped).
    near: DateTime<Utc>,
    near_included: bool,
    seen: HashSet<String>,
    /// The walk's latest log time: blocks starting after it are skipped.
    until: DateTime<Utc>,
    width: chrono::Duration,
    per_query: usize,
    done: bool,
    max_time: std::time::Duration,
}

impl SealedPages {
    fn new(
        blocks: mongodb::Collection<Document>,
        filter: Document,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        newest_first: bool,
        max_time: std::time::Duration,
    ) -> Self {
        // Blocks overlapping `[from, to]` end in `[from, to + BLOCK_SPAN)`.
        let end = to.checked_add_signed(BLOCK_SPAN).unwrap_or(to);
        let (near, near_included, far) = if newest_first {
            (end, false, from)
        } else {
            (from, true, end)
        };
        SealedPages {
            blocks,
            filter,
            newest_first,
            far,
            near,
            near_included,
            seen: HashSet::new(),
            until: to,
            width: WALK_FIRST_WIDTH,
            per_query: WALK_FIRST_BLOCKS,
            done: false,
            max_time,
        }
    }

    /// The next blocks in order; none once all are read.
    async fn next_page(&mut self) -> Result<Vec<Document>, StoreError> {
        while !self.done {
            let (window_end, reaches_far) = if self.newest_first {
                let low = self
                    .near
                    .checked_sub_signed(self.width)
                    .unwrap_or(self.far)
                    .max(self.far);
                (low, low <= self.far)
            } else {
                let high = self
                    .near
                    .checked_add_signed(self.width)
                    .unwrap_or(self.far)
                    .min(self.far);
                (high, high >= self.far)
            };
            let (near_operator, far_operator) = match (self.newest_first, self.near_included) {
                (true, true) => ("$lte", "$gte"),
                (true, false) => ("$lt", "$gte"),
                (false, true) => ("$gte", "$lt"),
                (false, false) => ("$gt", "$lt"),
            };
            // The index's equalities, then the range, then the rest.
            let mut filter =
                doc! { block_fields::PARTITION: SEALED, block_fields::FILTER_BITS: 0_i64 };
            filter.insert(
                block_fields::TO,
                doc! {
                    near_operator: bson::DateTime::from_chrono(self.near),
                    far_operator: bson::DateTime::from_chrono(window_end),
                },
            );
            filter.extend(self.filter.clone());
            let limit = self.per_query + self.seen.len();
            let found: Vec<Document> = self
                .blocks
                .find(filter)
                .sort(doc! { block_fields::TO: if self.newest_first { -1 } else { 1 } })
                .projection(walked_fields())
                .limit(i64::try_from(limit).unwrap_or(i64::MAX))
                .max_time(self.max_time)
                .await
                .map_err(super::search::classify_query_error)?
                .try_collect()
                .await
                .map_err(super::search::classify_query_error)?;
            let full = found.len() == limit;
            let mut page = Vec::with_capacity(found.len());
            for block in found {
                let (Ok(to), Ok(id)) = (
                    block
                        .get_datetime(block_fields::TO)
                        .map(|to| to.to_chrono()),
                    block.get_str(block_fields::ID).map(str::to_owned),
                ) else {
                    continue;
                };
                if to == self.near && self.near_included {
                    if !self.seen.insert(id) {
                        continue;
                    }
                } else {
                    self.near = to;
                    self.near_included = true;
                    self.seen = HashSet::from([id]);
                }
                // A block of the window's last hour starting after it holds none of its logs.
                if !starts_by(&block, self.until) {
                    continue;
                }
                page.push(block);
            }
            if full {
                // More in this window: go on from the last `to` read.
                self.per_query = (self.per_query * 2).min(WALK_MAX_BLOCKS);
            } else if reaches_far {
                self.done = true;
            } else {
                // The window is read through: the next, four times wider, starts at its end.
                self.near = window_end;
                self.near_included = !self.newest_first;
                self.seen.clear();
                self.width = self.width * 4;
            }
            if !page.is_empty() {
                return Ok(page);
            }
        }
        Ok(Vec::new())
    }
}

impl BlockWalk {
    /// The next block's ids whose signature may hold the words; `None` once all are read.
    pub async fn next_ids(&mut self) -> Result<Option<Vec<String>>, StoreError> {
        self.peek().await?;
        let take_open = match (self.open.front(), self.read.front()) {
            (Some(open), Some(sealed)) if self.newest_first => end_of(open) >= end_of(sealed),
            (Some(open), Some(sealed)) => end_of(open) <= end_of(sealed),
            (Some(_), None) => true,
            (None, _) => false,
        };
        let block = if take_open {
            self.open.pop_front()
        } else {
            self.read.pop_front()
        };
        Ok(block.map(|block| signed_ids(&block, self.wanted).collect()))
    }

    /// How far the walk has seen every log: newest first, no block left holds a log newer
    /// than this; oldest first, none holds one older. `None` once every block is read.
    pub async fn horizon(&mut self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.peek().await?;
        let ends = [self.open.front(), self.read.front()]
            .into_iter()
            .flatten()
            .map(end_of);
        Ok(if self.newest_first {
            ends.max()
        } else {
            // A block's logs lie in the aligned hour its `to` is in.
            ends.min().map(hour_of)
        })
    }

    /// Reads the next sealed blocks once those read are walked.
    async fn peek(&mut self) -> Result<(), StoreError> {
        if self.read.is_empty() {
            if let Some(sealed) = &mut self.sealed {
                self.read.extend(sealed.next_page().await?);
            }
        }
        Ok(())
    }
}

/// Whether `block` (read with its `from`) starts by `time`.
fn starts_by(block: &Document, time: DateTime<Utc>) -> bool {
    block
        .get_datetime(block_fields::FROM)
        .map_or(true, |from| from.to_chrono() <= time)
}

/// What a walk reads of a block.
fn walked_fields() -> Document {
    doc! { block_fields::IDS: 1, block_fields::SIGNATURES: 1, block_fields::FROM: 1, block_fields::TO: 1 }
}

/// A block's `to`, the time of its newest log.
fn end_of(block: &Document) -> DateTime<Utc> {
    block
        .get_datetime(block_fields::TO)
        .map_or(DateTime::<Utc>::MIN_UTC, |to| to.to_chrono())
}

/// The number of the aligned hour ([`BLOCK_SPAN`]) `time` is in: a block's logs share one.
fn hour_number(time: DateTime<Utc>) -> i64 {
    time.timestamp_millis()
        .div_euclid(BLOCK_SPAN.num_milliseconds())
}

/// The start of the aligned hour `time` is in.
fn hour_of(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(hour_number(time) * BLOCK_SPAN.num_milliseconds())
        .unwrap_or(time)
}

/// The blocks a query asks of: those overlapping `[from, to]`, and with `services`, holding
/// one of them.
#[derive(Debug, Clone, Copy)]
struct Overlapping<'a> {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    services: Option<&'a [Bson]>,
}

impl Overlapping<'_> {
    /// A filter of `leading` (the index's equalities, first), the range of `to`, `trailing`,
    /// and the services. Blocks starting after the window's end (in its last hour) pass
    /// it: see [`Overlapping::starts_in_time`]. (A condition on `from` made SecantusDB take
    /// 25-33 ms for a query matching nothing, against under 1 ms without.)
    fn filter(&self, leading: Document, trailing: Document) -> Document {
        let mut filter = leading;
        filter.insert(block_fields::TO, window_ends(self.from, self.to));
        filter.extend(trailing);
        if let Some(services) = self.services {
            filter.insert(block_fields::SERVICES, doc! { "$in": services });
        }
        filter
    }

    /// Whether `block` (read with its `from`) starts by the window's end.
    fn starts_in_time(&self, block: &Document) -> bool {
        starts_by(block, self.to)
    }

    /// Up to `max_blocks + 1` documents of `filter` overlapping the window, with only
    /// `projection`'s fields: one more than allowed tells that too many match.
    async fn find_up_to(
        &self,
        blocks: &mongodb::Collection<Document>,
        filter: Document,
        mut projection: Document,
        max_blocks: usize,
    ) -> Result<Vec<Document>, StoreError> {
        projection.insert(block_fields::FROM, 1);
        let found: Vec<Document> = blocks
            .find(filter)
            .projection(projection)
            .limit(i64::try_from(max_blocks + 1).unwrap_or(i64::MAX))
            .await
            .map_err(StoreError::Unavailable)?
            .try_collect()
            .await
            .map_err(StoreError::Unavailable)?;
        if found.len() > max_blocks {
            // Past the limit the answer is incomplete: only its size tells.
            return Ok(found);
        }
        Ok(found
            .into_iter()
            .filter(|block| self.starts_in_time(block))
            .collect())
    }
}

/// The sealed blocks of `window` whose filters may hold every word of `hashes`, or `None`
/// when a slice's filters name more than `max_blocks` and no other slice bounds them.
async fn filters_matching(
    blocks: &mongodb::Collection<Document>,
    hashes: &[u64],
    window: Overlapping<'_>,
    max_blocks: usize,
) -> Result<Option<Vec<String>>, StoreError> {
    let mut slices: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for hash in hashes {
        slices.entry(partition(*hash)).or_default().push(*hash);
    }
    let queries = slices
        .into_iter()
        .map(|(slice, hashes)| slice_match(blocks, slice, hashes, window, max_blocks));
    let matches = futures::stream::iter(queries)
        .buffer_unordered(PARTITIONS)
        .try_collect::<Vec<SliceMatch>>()
        .await?;
    // Every block a slice's filters name may hold every word only if every slice names
    // it: the smallest complete answer bounds the rest.
    let mut complete: Vec<HashSet<String>> = matches.into_iter().flatten().collect();
    complete.sort_by_key(HashSet::len);
    let Some((smallest, others)) = complete.split_first() else {
        return Ok(None);
    };
    Ok(Some(
        smallest
            .iter()
            .filter(|block| others.iter().all(|other| other.contains(*block)))
            .cloned()
            .collect(),
    ))
}

/// The blocks of `window` whose filter of `slice` has every bit of `hashes` set, one query
/// per filter size; `None` past `max_blocks`.
async fn slice_match(
    blocks: &mongodb::Collection<Document>,
    slice: usize,
    hashes: Vec<u64>,
    window: Overlapping<'_>,
    max_blocks: usize,
) -> Result<SliceMatch, StoreError> {
    let queries = FILTER_SIZES.map(|bits| {
        let filter = window.filter(
            doc! {
                block_fields::PARTITION: slice as i32,
                block_fields::FILTER_BITS: i64::from(bits),
            },
            doc! { block_fields::FILTER: { "$bitsAllSet": positions(&hashes, bits) } },
        );
        let projection = doc! { block_fields::ID: 0, block_fields::BLOCK: 1 };
        window.find_up_to(blocks, filter, projection, max_blocks)
    });
    let found: Vec<Vec<Document>> = futures::stream::iter(queries)
        .buffer_unordered(FILTER_SIZES.len())
        .try_collect()
        .await?;
    if found.iter().any(|filters| filters.len() > max_blocks) {
        return Ok(None);
    }
    let matching: HashSet<String> = found
        .iter()
        .flatten()
        .filter_map(|filter| filter.get_str(block_fields::BLOCK).ok().map(str::to_owned))
        .collect();
    Ok((matching.len() <= max_blocks).then_some(matching))
}

/// [`Database::block_candidates`] among first-version blocks: one filter
/// over all a block's words, in the block document.
async fn v1_candidates(
    blocks: &mongodb::Collection<Document>,
    hashes: &[u64],
    window: Overlapping<'_>,
    max_blocks: usize,
) -> Result<Candidates, StoreError> {
    let queries = V1_SIZES.map(|bits| {
        let filter = window.filter(
            doc! { block_fields::V1_BITS: i64::from(bits) },
            doc! { block_fields::V1_BLOOM: { "$bitsAllSet": positions(hashes, bits) } },
        );
        window.find_up_to(blocks, filter, doc! { block_fields::IDS: 1 }, max_blocks)
    });
    let found: Vec<Vec<Document>> = futures::stream::iter(queries)
        .buffer_unordered(V1_SIZES.len())
        .try_collect()
        .await?;
    let matching: Vec<Document> = found.into_iter().flatten().collect();
    if matching.len() > max_blocks {
        return Ok(Candidates::Scan);
    }
    Ok(Candidates::Ids(ids_of(&matching).collect()))
}

/// The ids of a block's logs whose signature has every bit of `wanted`, and those with
/// none (appended after its seal, or all of an open block's).
fn signed_ids(block: &Document, wanted: Signature) -> impl Iterator<Item = String> + '_ {
    let signatures = block
        .get_binary_generic(block_fields::SIGNATURES)
        .map(Vec::as_slice)
        .unwrap_or_default();
    block
        .get_array(block_fields::IDS)
        .map(|ids| ids.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter(move |(index, _)| {
            let signature = index
                .checked_mul(SIGNATURE_BYTES)
                .and_then(|start| signatures.get(start..start + SIGNATURE_BYTES))
                .and_then(|bytes| <[u8; SIGNATURE_BYTES]>::try_from(bytes).ok())
                .map(Signature::from_le_bytes);
            signature.is_none_or(|signature| signature & wanted == wanted)
        })
        .filter_map(|(_, id)| id.as_str().map(str::to_owned))
}

/// Bytes of one stored signature.
const SIGNATURE_BYTES: usize = std::mem::size_of::<Signature>();

/// The log ids of block documents.
fn ids_of(blocks: &[Document]) -> impl Iterator<Item = String> + '_ {
    blocks
        .iter()
        .filter_map(|block| block.get_array(block_fields::IDS).ok())
        .flatten()
        .filter_map(|id| id.as_str().map(str::to_owned))
}

/// The `to` of blocks overlapping `[from, to]`: their logs lie in one aligned hour.
fn window_ends(from: DateTime<Utc>, to: DateTime<Utc>) -> Document {
    doc! {
        "$gte": bson::DateTime::from_chrono(from),
        "$lt": bson::DateTime::from_chrono(to.checked_add_signed(BLOCK_SPAN).unwrap_or(to)),
    }
}

/// The bit positions of every one of `hashes` in a filter of `bits` bits, sorted, once each.
fn positions(hashes: &[u64], bits: u32) -> Vec<i64> {
    let mut positions: Vec<u32> = hashes
        .iter()
        .flat_map(|hash| bloom_positions(*hash, bits))
        .collect();
    positions.sort_unstable();
    positions.dedup();
    positions.into_iter().map(i64::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp_millis(ms).unwrap()
    }

    /// The block documents among `documents` (not their filters).
    fn blocks_of(documents: &[Document]) -> Vec<&Document> {
        documents
            .iter()
            .filter(|document| document.contains_key(block_fields::IDS))
            .collect()
    }

    fn filter_of(documents: &[Document], block: &str, slice: usize) -> Option<Bloom> {
        let filter = documents.iter().find(|document| {
            document.get_str(block_fields::ID) == Ok(&format!("{block}/{slice}"))
        })?;
        assert_eq!(filter.get_str(block_fields::BLOCK), Ok(block));
        assert_eq!(filter.get_i32(block_fields::PARTITION), Ok(slice as i32));
        let bloom = Bloom::from_bytes(
            filter
                .get_binary_generic(block_fields::FILTER)
                .unwrap()
                .clone(),
            &FILTER_SIZES,
        )
        .unwrap();
        assert_eq!(
            filter.get_i64(block_fields::FILTER_BITS).unwrap(),
            i64::from(bloom.bits())
        );
        Some(bloom)
    }

    #[test]
    fn a_block_has_a_filter_for_each_slice_its_words_fall_in() {
        let mut builder = BlockBuilder::default();
        builder.push("a", at(20), "web", ["alpha", "beta"]);
        builder.push("b", at(10), "api", ["beta"]);
        let documents = builder.finish();
        let blocks = blocks_of(&documents);
        assert_eq!(blocks.len(), 1);
        let block = blocks[0];
        let id = block.get_str(block_fields::ID).unwrap();
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
        let slices: BTreeSet<usize> = ["alpha", "beta"]
            .iter()
            .map(|word| partition(word_hash(word)))
            .collect();
        assert_eq!(documents.len(), 1 + slices.len());
        for word in ["alpha", "beta"] {
            let hash = word_hash(word);
            let filter = filter_of(&documents, id, partition(hash)).expect("a filter");
            assert!(filter.may_contain(hash));
        }
    }

    #[test]
    fn a_block_is_cut_before_a_slice_overflows() {
        let mut builder = BlockBuilder::default();
        let logs = PARTITION_CAPACITY * PARTITIONS / 100 + 1;
        for log in 0..logs {
            let unique: Vec<String> = (0..100).map(|n| format!("w{n}-{log}")).collect();
            builder.push(
                &log.to_string(),
                at(0),
                "web",
                unique.iter().map(String::as_str),
            );
        }
        let documents = builder.finish();
        let blocks = blocks_of(&documents);
        assert!(blocks.len() >= 2, "{} blocks", blocks.len());
        let stored: usize = blocks
            .iter()
            .map(|block| block.get_array(block_fields::IDS).unwrap().len())
            .sum();
        assert_eq!(stored, logs);
        // Every word is in its slice's filter of its block, none past capacity.
        for block in blocks {
            let id = block.get_str(block_fields::ID).unwrap();
            for log in block.get_array(block_fields::IDS).unwrap() {
                let log = log.as_str().unwrap();
                for n in 0..100 {
                    let hash = word_hash(&format!("w{n}-{log}"));
                    let filter = filter_of(&documents, id, partition(hash)).expect("a filter");
                    assert!(filter.may_contain(hash));
                }
            }
        }
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
        let documents = builder.finish();
        let blocks = blocks_of(&documents);
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
            let documents = builder.finish();
            blocks_of(&documents)[0]
                .get_str(block_fields::ID)
                .unwrap()
                .to_owned()
        };
        assert_eq!(block(&["a", "b"]), block(&["a", "b"]));
        assert_ne!(block(&["a", "b"]), block(&["a", "c"]));
    }

    #[test]
    fn first_version_blocks_are_read_up_to_an_hour_past_this_versions_start() {
        let start = at(1_000_000);
        let eras = BlockEras {
            v1_since: Some(at(0)),
            since: Some(start),
            checked_since: Some(start),
        };
        assert_eq!(eras.v1_until(), Some(start + BLOCK_SPAN));
        let fresh = BlockEras {
            v1_since: None,
            since: Some(start),
            checked_since: Some(start),
        };
        assert_eq!(fresh.v1_until(), None);
    }

    #[test]
    fn logs_with_their_words_are_looked_for_up_to_an_hour_past_the_checked_versions_start() {
        let (earlier, start) = (at(0), at(1_000_000));
        let upgraded = BlockEras {
            v1_since: None,
            since: Some(earlier),
            checked_since: Some(start),
        };
        assert_eq!(upgraded.listed_until(), Some(start + BLOCK_SPAN));
        let from_the_first_version = BlockEras {
            v1_since: Some(earlier),
            since: Some(start),
            checked_since: Some(start),
        };
        assert_eq!(
            from_the_first_version.listed_until(),
            Some(start + BLOCK_SPAN)
        );
        let fresh = BlockEras {
            v1_since: None,
            since: Some(start),
            checked_since: Some(start),
        };
        assert_eq!(fresh.listed_until(), None);
        assert_eq!(BlockEras::default().listed_until(), None);
    }

    fn batch(open: &mut OpenBlocks, ids: std::ops::Range<usize>, hour: i64) -> BlockWrites {
        let mut writes = BlockWrites::default();
        for n in ids {
            let word = format!("w{n}");
            open.push_hashed(
                &mut writes,
                &n.to_string(),
                at(hour * BLOCK_SPAN.num_milliseconds() + n as i64),
                "web",
                &[word_hash(&word), word_hash("shared")],
            );
        }
        writes
    }

    fn sealed_ids(sealed: &Sealed) -> Vec<String> {
        sealed
            .block
            .get_array(block_fields::IDS)
            .unwrap()
            .iter()
            .map(|id| id.as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn batches_append_to_one_open_block_until_it_fills() {
        let mut open = OpenBlocks::default();
        let first = batch(&mut open, 0..600, 5);
        let second = batch(&mut open, 600..1_100, 5);
        assert!(first.sealed.is_empty());
        assert_eq!(first.appends.len(), 1);
        let block = first.appends.keys().next().unwrap().clone();
        // The second batch fills the block: it is sealed with all 1,000 (this batch's first
        // 400 written by the seal alone), and the other 100 open the next block.
        assert!(!second.appends.contains_key(&block));
        assert_eq!(second.appends.len(), 1);
        assert_eq!(second.appends.values().next().unwrap().ids.len(), 100);
        assert_eq!(second.sealed.len(), 1);
        let sealed = &second.sealed[0];
        assert!(sealed.carries_batch);
        assert_eq!(sealed.block.get_str(block_fields::ID).unwrap(), block);
        let expected: Vec<String> = (0..1_000).map(|n| n.to_string()).collect();
        assert_eq!(sealed_ids(sealed), expected);
        assert_eq!(sealed.block.get_i32(block_fields::PARTITION), Ok(SEALED));
        // Its filters hold every word of both batches.
        for n in [0, 599, 600, 999] {
            let hash = word_hash(&format!("w{n}"));
            let filter = filter_of(&sealed.filters, &block, partition(hash)).expect("a filter");
            assert!(filter.may_contain(hash));
        }
    }

    #[test]
    fn open_blocks_are_sealed_when_aged_and_kept_when_their_seal_fails() {
        let mut open = OpenBlocks::default();
        let _ = batch(&mut open, 0..10, 1);
        let _ = batch(&mut open, 10..20, 2);
        let mut young = BlockWrites::default();
        open.seal_aged(&mut young, BLOCK_MAX_AGE);
        assert!(young.is_empty());
        let mut all = BlockWrites::default();
        open.seal_aged(&mut all, std::time::Duration::ZERO);
        assert_eq!(all.sealed.len(), 2, "one block per hour");
        open.retry(all.sealed);
        let mut again = BlockWrites::default();
        open.seal_aged(&mut again, BLOCK_MAX_AGE);
        assert_eq!(
            again.sealed.len(),
            2,
            "failed seals come back with the next batch"
        );
        let mut after = BlockWrites::default();
        open.seal_aged(&mut after, std::time::Duration::ZERO);
        assert!(after.is_empty());
        // A new batch opens a new block, never one sealed before.
        let next = batch(&mut open, 20..21, 1);
        let sealed: BTreeSet<String> = again
            .sealed
            .iter()
            .map(|sealed| sealed.block.get_str(block_fields::ID).unwrap().to_owned())
            .collect();
        assert!(next.appends.keys().all(|id| !sealed.contains(id)));
    }

    #[test]
    fn a_writer_keeps_at_most_its_share_of_open_blocks() {
        let mut open = OpenBlocks::default();
        let mut sealed = 0;
        for hour in 0..(MAX_OPEN_BLOCKS as i64 + 3) {
            sealed += batch(&mut open, 0..1, hour).sealed.len();
        }
        assert_eq!(sealed, 3);
        assert_eq!(open.open.len(), MAX_OPEN_BLOCKS);
    }

    #[test]
    fn a_sealed_block_reads_only_logs_whose_signature_may_hold_the_words() {
        let mut builder = BlockBuilder::default();
        for n in 0..200 {
            let words = [
                format!("w{n}"),
                format!("pair{}", n % 10),
                "common".to_owned(),
            ];
            builder.push(
                &format!("l{n}"),
                at(n),
                "web",
                words.iter().map(String::as_str),
            );
        }
        let documents = builder.finish();
        let mut block = blocks_of(&documents)[0].clone();
        assert_eq!(
            block
                .get_binary_generic(block_fields::SIGNATURES)
                .unwrap()
                .len(),
            200 * SIGNATURE_BYTES
        );
        let wanted = |words: &[&str]| {
            words
                .iter()
                .fold(0, |mask, word| mask | signature_of(word_hash(word)))
        };
        let read = |block: &Document, words: &[&str]| -> Vec<String> {
            signed_ids(block, wanted(words)).collect()
        };
        // Never a log that holds the words left out; few that do not read.
        let one = read(&block, &["w7"]);
        assert!(one.contains(&"l7".to_owned()));
        assert!(one.len() < 40, "{} of 200 read", one.len());
        let pair = read(&block, &["pair3", "common"]);
        for n in (3..200).step_by(10) {
            assert!(pair.contains(&format!("l{n}")), "l{n}");
        }
        assert_eq!(read(&block, &["common"]).len(), 200);
        // Ids appended after the seal have no signature: always read.
        let mut ids = block.get_array(block_fields::IDS).unwrap().clone();
        ids.push(Bson::from("late"));
        block.insert(block_fields::IDS, ids);
        assert!(read(&block, &["w7"]).contains(&"late".to_owned()));
        // An open block (no signatures) is read whole.
        block.remove(block_fields::SIGNATURES);
        assert_eq!(read(&block, &["w7"]).len(), 201);
    }
}
