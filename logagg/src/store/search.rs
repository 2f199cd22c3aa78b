//! Search's queries: a page of logs in time order with keyset pagination, walked in time
//! windows, and one log by id.
//!
//! Pages are ordered by `(ts, _id)`, so a cursor (the last record's time and id) names an
//! exact position and each record appears once however many logs arrive meanwhile. A page is
//! gathered window by window from the cursor outwards, each window four times wider than the
//! last: SecantusDB's cost for a sorted, limited range query grows with the documents in the
//! range, not with the limit (docs/PERFORMANCE.md), so a page of the newest logs of a day
//! must not ask for the whole day at once.

use std::time::Duration;

use bson::{doc, Bson, Document};
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use mongodb::error::ErrorKind;
use serde::{Deserialize, Serialize};

use super::blocks::{BlockWalk, Candidates, MAX_CANDIDATE_BLOCKS};
use super::{fields, Database, StoreError};
use crate::record::Severity;

/// Blocks of one hour that may hold a query's words past which the words are taken as
/// common where a walk starts (`Database::dense_where_walk_starts`).
const DENSE_BLOCKS: usize = 4;

/// Width of the first time window a page walk queries.
const FIRST_WINDOW: chrono::Duration = chrono::Duration::minutes(1);
/// Records at one millisecond a page read fetches whole to find those past its cursor.
const MAX_TIES: usize = 10_000;
/// Blocks a scan for stats reads logs of by `_id`; past it, the range is scanned.
const MAX_SCAN_BLOCKS: usize = 200;
/// Most ids a walk of blocks reads the logs of at once.
const IDS_PER_READ: usize = 10_000;
/// Ids per `$in` query reading logs by `_id`. SecantusDB's cost per id grows with the
/// list: 46 µs an id in lists of 10,000, 15 µs in lists of 250-500 (docs/PERFORMANCE.md).
const IDS_PER_FIND: usize = 500;
/// Server code for a query stopped by `maxTimeMS`.
const MAX_TIME_EXPIRED: i32 = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Order {
    #[serde(rename = "n")]
    NewestFirst,
    #[serde(rename = "o")]
    OldestFirst,
}

/// Where the next page starts: just past this record, in the request's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageCursor {
    pub timestamp_ms: i64,
    pub id: String,
}

/// What [`PageCursor::decode`] reads, as a regular expression (for API documents): the
/// timestamp in milliseconds, `:`, and the id's bytes in hex.
pub const CURSOR_PATTERN: &str = "^-?[0-9]{1,15}:([0-9a-f]{2}){0,512}$";

impl PageCursor {
    /// The cursor as a token: `<timestamp ms>:<hex of the id>`. Any token of that form is a
    /// position in the logs' order, so there is no cursor that points nowhere.
    pub fn encode(&self) -> String {
        let id: String = self.id.bytes().map(|byte| format!("{byte:02x}")).collect();
        format!("{}:{id}", self.timestamp_ms)
    }

    /// Reads a token of [`CURSOR_PATTERN`]'s form; `None` for anything else.
    pub fn decode(token: &str) -> Option<PageCursor> {
        let (timestamp, id) = token.split_once(':')?;
        let digits = timestamp.strip_prefix('-').unwrap_or(timestamp);
        if digits.is_empty()
            || digits.len() > 15
            || !digits.bytes().all(|byte| byte.is_ascii_digit())
            || id.len() % 2 != 0
            || id.len() > 1024
            || !id
                .bytes()
                .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
        {
            return None;
        }
        let bytes: Option<Vec<u8>> = (0..id.len())
            .step_by(2)
            .map(|index| u8::from_str_radix(id.get(index..index + 2)?, 16).ok())
            .collect();
        Some(PageCursor {
            timestamp_ms: timestamp.parse().ok()?,
            // Ids are text; bytes that are not UTF-8 still name a position between ids.
            id: String::from_utf8_lossy(&bytes?).into_owned(),
        })
    }
}

/// One page's request.
#[derive(Debug, Clone)]
pub struct PageRequest {
    /// Conditions on anything but time and words, flat.
    pub filter: Document,
    /// Words the message must all hold (`crate::words::query_words`).
    pub words: Vec<String>,
    pub from: DateTime<Utc>,
    /// Inclusive.
    pub to: DateTime<Utc>,
    pub order: Order,
    pub after: Option<PageCursor>,
    pub limit: usize,
    pub max_time: Duration,
}

/// A scan's request: every log matching it, unsorted ([`Database::scan_logs`]).
#[derive(Debug, Clone)]
pub struct ScanRequest {
    /// Conditions on anything but time and words, flat.
    pub filter: Document,
    /// Words the message must all hold (`crate::words::query_words`).
    pub words: Vec<String>,
    pub from: DateTime<Utc>,
    /// Inclusive.
    pub to: DateTime<Utc>,
    /// The fields read.
    pub projection: Document,
    /// For each query.
    pub max_time: Duration,
}

impl ScanRequest {
    /// The same request ending at `until` if that comes first.
    fn until(&self, until: DateTime<Utc>) -> ScanRequest {
        ScanRequest {
            to: self.to.min(until),
            ..self.clone()
        }
    }
}

/// What a walk of blocks found so far, and how much its next read asks for.
struct WalkReads {
    found: Vec<Document>,
    ids_read: usize,
    ids_per_read: usize,
}

impl WalkReads {
    fn new(first_read: usize) -> WalkReads {
        WalkReads {
            found: Vec::new(),
            ids_read: 0,
            ids_per_read: first_read.clamp(1, IDS_PER_READ),
        }
    }
}

/// How far a page's walk of blocks reads ([`Database::read_walk`]): until a page of
/// `limit` logs lies past every block not yet walked.
#[derive(Debug, Clone, Copy)]
struct PageEnd {
    limit: usize,
    newest_first: bool,
}

/// One end of a time window.
#[derive(Debug, Clone, Copy)]
struct Bound {
    time: DateTime<Utc>,
    inclusive: bool,
}

impl Database {
    /// A page of log documents for `request`, in its order. With words: from the logs of
    /// the blocks that may hold them (`store::blocks`), their words checked on the message;
    /// merged with the logs stored with their words (`all_words`, before
    /// `BlockEras::listed_until`), read window by window with the server's check, and with
    /// those stored before blocks, read the earlier way (`store::words`).
    pub async fn find_page(&self, request: &PageRequest) -> Result<Vec<Document>, StoreError> {
        if request.words.is_empty() || !self.word_index() {
            return self.find_page_by_spans(request).await;
        }
        let mut pages = vec![self.find_checked_page(request).await?];
        let listed_until = self.block_eras().await?.listed_until();
        if let Some(until) = listed_until.filter(|until| *until >= request.from) {
            let mut filter = request.filter.clone();
            filter.insert(fields::ALL_WORDS, all_words(&request.words));
            let listed = PageRequest {
                filter,
                to: until.min(request.to),
                ..request.clone()
            };
            pages.push(self.find_page_in(&listed, Some(&request.words)).await?);
        }
        if let Some(until) = self.legacy_until(request.to).await? {
            if until >= request.from {
                let older = PageRequest {
                    to: until,
                    ..request.clone()
                };
                pages.push(self.find_page_by_spans(&older).await?);
            }
        }
        if pages.len() == 1 {
            return Ok(pages.pop().unwrap_or_default());
        }
        let sort = sort_of(request.order);
        let mut merged: Vec<Document> = pages.into_iter().flatten().collect();
        merged.sort_by(|left, right| compare_by(&sort, left, right));
        merged.dedup_by(|later, earlier| later.get(fields::ID) == earlier.get(fields::ID));
        merged.truncate(request.limit);
        Ok(merged)
    }

    /// A page of the logs whose message holds `request.words`, from the blocks that may
    /// hold them: read at once when few blocks of the range may
    /// ([`MAX_CANDIDATE_BLOCKS`]), else walked in time order ([`Database::walk_blocks`])
    /// until the page is full and no block left could hold a log that goes before.
    async fn find_checked_page(&self, request: &PageRequest) -> Result<Vec<Document>, StoreError> {
        let deadline = std::time::Instant::now() + request.max_time;
        let newest_first = request.order == Order::NewestFirst;
        let (mut low, mut high) = (request.from, request.to);
        if let Some(cursor) = &request.after {
            if let Some(time) = DateTime::<Utc>::from_timestamp_millis(cursor.timestamp_ms) {
                if newest_first {
                    high = high.min(time);
                } else {
                    low = low.max(time);
                }
            }
        }
        if low > high {
            return Ok(Vec::new());
        }
        let past_cursor = |document: &Document| {
            request
                .after
                .as_ref()
                .is_none_or(|cursor| is_past(document, cursor, request.order))
        };
        let check = Checked::new(
            within(request.filter.clone(), low, high),
            &request.words,
            None,
            request.max_time,
        );
        let services = request.filter.get(fields::SERVICE).and_then(values_of);
        let sort = sort_of(request.order);
        let (check, sort, past_cursor) = (&check, &sort, &past_cursor);
        let start_walk = || {
            self.walk_blocks(
                &request.words,
                services.as_deref(),
                low,
                high,
                newest_first,
                request.max_time,
            )
        };
        // Four times the page first: about a third of the logs whose signature passes hold
        // a template's two words (docs/PERFORMANCE.md).
        let mut reads = WalkReads::new(request.limit.saturating_mul(4));
        let until = PageEnd {
            limit: request.limit,
            newest_first,
        };
        let started = std::time::Instant::now();
        let dense = self
            .dense_where_walk_starts(&request.words, services.as_deref(), low, high, newest_first)
            .await?;
        let mut walk = None;
        let mut done = false;
        if dense {
            // Walk first: the words are common where the walk starts, so its first read
            // most likely fills the page, and asking the whole range's blocks (30 ms for a
            // day of 1M logs) would only say so.
            let mut started_walk = start_walk().await?;
            done = self
                .read_walk(
                    &mut started_walk,
                    check,
                    past_cursor,
                    &mut reads,
                    until,
                    1,
                    deadline,
                )
                .await?;
            tracing::debug!(
                done,
                elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                "word page: dense where the walk starts, first read"
            );
            walk = Some(started_walk);
        }
        if !done {
            // Few blocks of the whole range may hold the words (a burst of them in the hour
            // probed, or words that are rare): read those at once.
            let candidates = self
                .block_candidates(
                    &request.words,
                    services.as_deref(),
                    low,
                    high,
                    MAX_CANDIDATE_BLOCKS,
                )
                .await?;
            tracing::debug!(
                candidate_ids = match &candidates {
                    Candidates::Ids(ids) => Some(ids.len()),
                    Candidates::Scan => None,
                },
                elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                "word page: candidate blocks asked"
            );
            match candidates {
                Candidates::Ids(ids) => reads.found.extend(
                    self.read_checked(check, &ids, Some((sort, request.limit)), past_cursor)
                        .await?,
                ),
                Candidates::Scan => {
                    let mut walk = match walk.take() {
                        Some(walk) => walk,
                        None => start_walk().await?,
                    };
                    self.read_walk(
                        &mut walk,
                        check,
                        past_cursor,
                        &mut reads,
                        until,
                        usize::MAX,
                        deadline,
                    )
                    .await?;
                }
            }
        }
        let mut page = reads.found;
        page.sort_by(|left, right| compare_by(sort, left, right));
        page.dedup_by(|later, earlier| later.get(fields::ID) == earlier.get(fields::ID));
        page.truncate(request.limit);
        Ok(page)
    }

    /// Whether, in the hour of `[low, high]` a walk starts in (newest first, its last), more
    /// than [`DENSE_BLOCKS`] blocks may hold every word: then the walk's first read most
    /// likely fills a page, and the whole range's blocks are asked only if it does not.
    /// On a day of 1M logs, asking the hour took 6.6 ms (median) for rare words and 18 ms
    /// for dense ones, asking the day about 30 ms (SecantusDB reads every index entry of
    /// the range, limit or not). Ranges of at most two hours are not probed.
    async fn dense_where_walk_starts(
        &self,
        words: &[String],
        services: Option<&[Bson]>,
        low: DateTime<Utc>,
        high: DateTime<Utc>,
        newest_first: bool,
    ) -> Result<bool, StoreError> {
        let hour = chrono::Duration::hours(1);
        if high - low <= hour * 2 {
            return Ok(false);
        }
        let (from, to) = if newest_first {
            (high - hour, high)
        } else {
            (low, low + hour)
        };
        let started = std::time::Instant::now();
        let dense = self
            .blocks_may_hold_more_than(words, services, from, to, DENSE_BLOCKS)
            .await?;
        tracing::debug!(
            dense,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "word page: the walk's first hour probed"
        );
        Ok(dense)
    }

    /// The logs of `ids` that `check` keeps and `keep` does too; with `first`, only the
    /// first so many in its sort (read in that order when the ids fit one query).
    async fn read_checked(
        &self,
        check: &Checked<'_>,
        ids: &[String],
        first: Option<(&Document, usize)>,
        keep: &(dyn Fn(&Document) -> bool + Sync),
    ) -> Result<Vec<Document>, StoreError> {
        let mut kept = Vec::new();
        if ids.is_empty() {
            return Ok(kept);
        }
        let in_one = first.filter(|_| ids.len() <= IDS_PER_FIND);
        for chunk in ids.chunks(IDS_PER_FIND) {
            let mut find = self
                .logs
                .find(by_ids(chunk, check.filter.clone()))
                .batch_size(u32::try_from(IDS_PER_FIND).unwrap_or(u32::MAX))
                .max_time(check.max_time);
            if let Some(projection) = &check.read {
                find = find.projection(projection.clone());
            }
            if let Some((sort, _)) = in_one {
                find = find.sort(sort.clone());
            }
            let mut cursor = find.await.map_err(classify_query_error)?;
            while let Some(document) = cursor.try_next().await.map_err(classify_query_error)? {
                if !check.holds(&document) || !keep(&document) {
                    continue;
                }
                kept.push(check.trimmed(document));
                if in_one.is_some_and(|(_, wanted)| kept.len() >= wanted) {
                    return Ok(kept);
                }
            }
        }
        Ok(kept)
    }

    /// The logs of the walk's blocks that `check` keeps and `keep` does too, added to
    /// `reads`, read a few blocks at a time (first `reads.ids_per_read` ids, then what the
    /// page still lacks at the rate found so far, [`next_read`]) until `until` holds, the
    /// walk ends (then `true`) or `max_reads` reads are done (then `false`). Past
    /// `deadline`, a query timeout.
    #[allow(clippy::too_many_arguments)]
    async fn read_walk(
        &self,
        walk: &mut BlockWalk,
        check: &Checked<'_>,
        keep: &(dyn Fn(&Document) -> bool + Sync),
        reads: &mut WalkReads,
        until: PageEnd,
        max_reads: usize,
        deadline: std::time::Instant,
    ) -> Result<bool, StoreError> {
        for _ in 0..max_reads {
            let started = std::time::Instant::now();
            let ids = next_walk_ids(walk, reads.ids_per_read).await?;
            if ids.is_empty() {
                return Ok(true);
            }
            let blocks_read = started.elapsed();
            reads.ids_read += ids.len();
            let checked = self.read_checked(check, &ids, None, keep).await?;
            tracing::debug!(
                ids = ids.len(),
                kept = checked.len(),
                blocks_ms = blocks_read.as_secs_f64() * 1e3,
                logs_ms = (started.elapsed() - blocks_read).as_secs_f64() * 1e3,
                "word walk: a read"
            );
            reads.found.extend(checked);
            past_deadline(deadline)?;
            let doubled = (reads.ids_per_read * 2).min(IDS_PER_READ);
            let PageEnd {
                limit,
                newest_first,
            } = until;
            // Logs past the horizon are all found: once a page of them is, no block left
            // holds one going before.
            let Some(horizon) = walk.horizon().await? else {
                return Ok(true);
            };
            let settled = reads
                .found
                .iter()
                .filter(|log| {
                    log.get_datetime(fields::TIMESTAMP).is_ok_and(|time| {
                        let time = time.to_chrono();
                        if newest_first {
                            time > horizon
                        } else {
                            time < horizon
                        }
                    })
                })
                .count();
            if settled >= limit {
                return Ok(true);
            }
            reads.ids_per_read =
                next_read(reads.ids_read, reads.found.len(), limit - settled, doubled);
        }
        Ok(false)
    }

    /// A page the earlier way: span by span where its words leave the `words` index
    /// (`store::words`), the newest span first when newest first.
    async fn find_page_by_spans(&self, request: &PageRequest) -> Result<Vec<Document>, StoreError> {
        let mut spans = self
            .word_spans(&request.words, request.from, request.to)
            .await?;
        if request.order == Order::NewestFirst {
            spans.reverse();
        }
        let mut page: Vec<Document> = Vec::with_capacity(request.limit);
        for span in spans {
            if page.len() == request.limit {
                break;
            }
            let mut filter = request.filter.clone();
            filter.extend(span.conditions);
            let in_span = PageRequest {
                filter,
                words: Vec::new(),
                from: span.from,
                to: span.to,
                limit: request.limit - page.len(),
                ..request.clone()
            };
            page.extend(self.find_page_in(&in_span, None).await?);
        }
        Ok(page)
    }

    /// A page for `request`, whose filter holds its word conditions, walked in windows; with
    /// `words`, each window reads only the logs of the blocks that may hold them (or all of
    /// it, when too many blocks may).
    async fn find_page_in(
        &self,
        request: &PageRequest,
        words: Option<&[String]>,
    ) -> Result<Vec<Document>, StoreError> {
        let newest_first = request.order == Order::NewestFirst;
        let mut page: Vec<Document> = Vec::with_capacity(request.limit);
        // The edge the walk starts from: `to` (newest first) or `from` (oldest first), or just
        // past the cursor, whose equal-time records with a further `_id` come first.
        let mut edge = if newest_first {
            Bound {
                time: request.to,
                inclusive: true,
            }
        } else {
            Bound {
                time: request.from,
                inclusive: true,
            }
        };
        if let Some(cursor) = &request.after {
            let time =
                DateTime::<Utc>::from_timestamp_millis(cursor.timestamp_ms).unwrap_or(request.from);
            if (request.from..=request.to).contains(&time) {
                page.extend(self.ties_after(request, cursor, time).await?);
            }
            let beyond_range = if newest_first {
                time > request.to
            } else {
                time < request.from
            };
            if !beyond_range {
                edge = Bound {
                    time,
                    inclusive: false,
                };
            }
        }
        let far_end = if newest_first {
            request.from
        } else {
            request.to
        };
        // Words in few blocks of the whole range (a rare token): one read of their logs.
        if let Some(words) = words {
            if page.len() < request.limit && in_range(edge, far_end, newest_first) {
                let (low, high) = if newest_first {
                    (
                        Bound {
                            time: far_end,
                            inclusive: true,
                        },
                        edge,
                    )
                } else {
                    (
                        edge,
                        Bound {
                            time: far_end,
                            inclusive: true,
                        },
                    )
                };
                if let Some(found) = self
                    .read_candidates(request, words, low, high, request.limit - page.len())
                    .await?
                {
                    page.extend(found);
                    return Ok(page);
                }
            }
        }
        let mut width = FIRST_WINDOW;
        while page.len() < request.limit && in_range(edge, far_end, newest_first) {
            let (low, high, next_edge) = if newest_first {
                let low_time = edge
                    .time
                    .checked_sub_signed(width)
                    .unwrap_or(far_end)
                    .max(far_end);
                let low = Bound {
                    time: low_time,
                    inclusive: true,
                };
                (
                    low,
                    edge,
                    Bound {
                        time: low_time,
                        inclusive: false,
                    },
                )
            } else {
                let high_time = edge
                    .time
                    .checked_add_signed(width)
                    .unwrap_or(far_end)
                    .min(far_end);
                let high = Bound {
                    time: high_time,
                    inclusive: high_time == far_end,
                };
                (
                    edge,
                    high,
                    Bound {
                        time: high_time,
                        inclusive: true,
                    },
                )
            };
            let wanted = request.limit - page.len();
            let from_blocks = match words {
                None => None,
                Some(words) => {
                    self.read_candidates(request, words, low, high, wanted)
                        .await?
                }
            };
            match from_blocks {
                Some(found) => page.extend(found),
                None => {
                    let mut window = request.filter.clone();
                    window.insert(fields::TIMESTAMP, time_condition(low, high));
                    page.extend(
                        self.find_sorted(window, sort_of(request.order), wanted, request.max_time)
                            .await?,
                    );
                }
            }
            let reached_far_end = if newest_first {
                low.time <= far_end
            } else {
                high.time >= far_end
            };
            if reached_far_end {
                break;
            }
            edge = next_edge;
            width = width * 4;
        }
        Ok(page)
    }

    /// Up to `wanted` logs of `[low, high]` matching `request` and holding every one of
    /// `words`, in its order, read from the blocks that may hold them; `None` when too many
    /// blocks may and the range is to be scanned instead.
    async fn read_candidates(
        &self,
        request: &PageRequest,
        words: &[String],
        low: Bound,
        high: Bound,
        wanted: usize,
    ) -> Result<Option<Vec<Document>>, StoreError> {
        let services = request.filter.get(fields::SERVICE).and_then(values_of);
        let candidates = self
            .block_candidates(
                words,
                services.as_deref(),
                low.time,
                high.time,
                MAX_CANDIDATE_BLOCKS,
            )
            .await?;
        let ids = match candidates {
            Candidates::Scan => return Ok(None),
            Candidates::Ids(ids) if ids.is_empty() => return Ok(Some(Vec::new())),
            Candidates::Ids(ids) => ids,
        };
        let mut range = request.filter.clone();
        range.insert(fields::TIMESTAMP, time_condition(low, high));
        self.find_sorted_once(
            by_ids(&ids, range),
            sort_of(request.order),
            wanted,
            request.max_time,
        )
        .await
        .map(Some)
    }

    /// The records at exactly the cursor's time with an id past the cursor's, in order.
    ///
    /// All records at that millisecond are read and the cursor's id compared here: any
    /// condition on `_id` beside the filter makes SecantusDB leave the filter's index
    /// (500 ms against 1 ms among 1M logs). Past [`MAX_TIES`] records at one millisecond it
    /// asks the server after all.
    async fn ties_after(
        &self,
        request: &PageRequest,
        cursor: &PageCursor,
        time: DateTime<Utc>,
    ) -> Result<Vec<Document>, StoreError> {
        let newest_first = request.order == Order::NewestFirst;
        let direction = if newest_first { -1 } else { 1 };
        let mut ties = request.filter.clone();
        ties.insert(fields::TIMESTAMP, bson::DateTime::from_chrono(time));
        let all = self
            .find_sorted(
                ties.clone(),
                doc! { fields::ID: direction },
                MAX_TIES,
                request.max_time,
            )
            .await?;
        if all.len() == MAX_TIES {
            let id_past = if newest_first { "$lt" } else { "$gt" };
            ties.insert(fields::ID, doc! { id_past: &cursor.id });
            return self
                .find_sorted(
                    ties,
                    doc! { fields::ID: direction },
                    request.limit,
                    request.max_time,
                )
                .await;
        }
        Ok(all
            .into_iter()
            .filter(|document| {
                document.get_str(fields::ID).is_ok_and(|id| {
                    if newest_first {
                        id < cursor.id.as_str()
                    } else {
                        id > cursor.id.as_str()
                    }
                })
            })
            .take(request.limit)
            .collect())
    }

    /// One log document by id.
    pub async fn find_log(&self, id: &str) -> Result<Option<Document>, StoreError> {
        self.logs
            .find_one(doc! { fields::ID: id })
            .await
            .map_err(classify_query_error)
    }

    /// Every log matching `request.filter` and holding all its words in `[from, to]`, only
    /// the `projection` fields, unsorted: what stats fold over when rollups cannot answer.
    /// With words, the logs of the blocks that may hold them (all blocks of the range when
    /// too many may), their words checked on the message; those stored with their words
    /// (`all_words`) read with the server's check; and those stored before blocks, the
    /// earlier way. Bounded by `max_time` for each query, and in all for a walk of blocks.
    pub async fn scan_logs(&self, request: &ScanRequest) -> Result<Vec<Document>, StoreError> {
        if request.words.is_empty() || !self.word_index() {
            return self.scan_by_spans(request).await;
        }
        let listed_until = self
            .block_eras()
            .await?
            .listed_until()
            .filter(|until| *until >= request.from);
        let legacy_until = self
            .legacy_until(request.to)
            .await?
            .filter(|until| *until >= request.from);
        let mut request = request.clone();
        // More than one way or block may find a log: keep `_id` to tell.
        request.projection.insert(fields::ID, 1);
        let mut logs = self.scan_checked(&request).await?;
        if let Some(until) = listed_until {
            logs.extend(self.scan_listed(&request.until(until)).await?);
        }
        if let Some(until) = legacy_until {
            logs.extend(self.scan_by_spans(&request.until(until)).await?);
        }
        // A block sealed while a walk began is walked open and sealed, and a batch written
        // again lists its ids twice: each log counts once.
        let mut seen = std::collections::HashSet::new();
        logs.retain(|log| {
            log.get_str(fields::ID)
                .map_or(true, |id| seen.insert(id.to_owned()))
        });
        Ok(logs)
    }

    /// [`scan_logs`](Self::scan_logs) among the logs whose words are checked on their
    /// message: those of the blocks that may hold them, or of every block of the range
    /// when more than [`MAX_SCAN_BLOCKS`] may.
    async fn scan_checked(&self, request: &ScanRequest) -> Result<Vec<Document>, StoreError> {
        let ScanRequest {
            filter,
            words,
            from,
            to,
            projection,
            max_time,
        } = request;
        let deadline = std::time::Instant::now() + *max_time;
        let check = Checked::new(
            within(filter.clone(), *from, *to),
            words,
            Some(projection.clone()),
            *max_time,
        );
        let services = filter.get(fields::SERVICE).and_then(values_of);
        let keep_all = |_: &Document| true;
        match self
            .block_candidates(words, services.as_deref(), *from, *to, MAX_SCAN_BLOCKS)
            .await?
        {
            Candidates::Ids(ids) => self.read_checked(&check, &ids, None, &keep_all).await,
            Candidates::Scan => {
                let walk = self
                    .walk_blocks(words, services.as_deref(), *from, *to, true, *max_time)
                    .await?;
                self.read_walk_to_end(walk, &check, deadline).await
            }
        }
    }

    /// Every log of the walk's blocks that `check` keeps, read [`IDS_PER_READ`] ids at a
    /// time. (Three reads of 2,500 in flight, the next blocks read meanwhile, measured no
    /// faster on this machine's two cores: docs/PERFORMANCE.md.) Past `deadline`, a query
    /// timeout.
    async fn read_walk_to_end(
        &self,
        mut walk: BlockWalk,
        check: &Checked<'_>,
        deadline: std::time::Instant,
    ) -> Result<Vec<Document>, StoreError> {
        let keep_all = |_: &Document| true;
        let mut found = Vec::new();
        loop {
            let started = std::time::Instant::now();
            let ids = next_walk_ids(&mut walk, IDS_PER_READ).await?;
            if ids.is_empty() {
                return Ok(found);
            }
            let blocks_read = started.elapsed();
            let checked = self.read_checked(check, &ids, None, &keep_all).await?;
            tracing::debug!(
                ids = ids.len(),
                kept = checked.len(),
                blocks_ms = blocks_read.as_secs_f64() * 1e3,
                logs_ms = (started.elapsed() - blocks_read).as_secs_f64() * 1e3,
                "word scan: a read"
            );
            found.extend(checked);
            past_deadline(deadline)?;
        }
    }

    /// [`scan_logs`](Self::scan_logs) among the logs stored with their words
    /// (`all_words`): those of the blocks that may hold them, or the whole range, when more
    /// than [`MAX_SCAN_BLOCKS`] may.
    async fn scan_listed(&self, request: &ScanRequest) -> Result<Vec<Document>, StoreError> {
        let ScanRequest {
            filter,
            words,
            from,
            to,
            projection,
            max_time,
        } = request;
        let mut blocked = filter.clone();
        blocked.insert(fields::ALL_WORDS, all_words(words));
        let services = filter.get(fields::SERVICE).and_then(values_of);
        let logs = match self
            .block_candidates(words, services.as_deref(), *from, *to, MAX_SCAN_BLOCKS)
            .await?
        {
            Candidates::Scan => {
                self.scan_span(blocked, *from, *to, projection.clone(), *max_time)
                    .await?
            }
            Candidates::Ids(ids) => {
                let mut logs = Vec::new();
                for chunk in ids.chunks(IDS_PER_FIND) {
                    logs.extend(
                        self.scan_span(
                            by_ids(chunk, blocked.clone()),
                            *from,
                            *to,
                            projection.clone(),
                            *max_time,
                        )
                        .await?,
                    );
                }
                logs
            }
        };
        Ok(logs)
    }

    /// [`scan_logs`](Self::scan_logs) the earlier way, span by span (`store::words`).
    async fn scan_by_spans(&self, request: &ScanRequest) -> Result<Vec<Document>, StoreError> {
        let mut logs = Vec::new();
        for span in self
            .word_spans(&request.words, request.from, request.to)
            .await?
        {
            let mut filter = request.filter.clone();
            filter.extend(span.conditions);
            logs.extend(
                self.scan_span(
                    filter,
                    span.from,
                    span.to,
                    request.projection.clone(),
                    request.max_time,
                )
                .await?,
            );
        }
        Ok(logs)
    }

    async fn scan_span(
        &self,
        filter: Document,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        projection: Document,
        max_time: Duration,
    ) -> Result<Vec<Document>, StoreError> {
        let find = self
            .logs
            .find(within(filter, from, to))
            .projection(projection)
            .batch_size(10_000)
            .max_time(max_time);
        find.await
            .map_err(classify_query_error)?
            .try_collect()
            .await
            .map_err(classify_query_error)
    }

    /// One sorted, limited query; a filter on some services and several (or any) severities
    /// is run as one query per service and severity, merged. SecantusDB walks the whole
    /// service's part of `service_severity_ts` when severity is open or an `$in` (130 ms for
    /// a one-minute window of one service among 1M logs, against under 1 ms for each point
    /// query; docs/PERFORMANCE.md), where MongoDB would seek each interval.
    async fn find_sorted(
        &self,
        filter: Document,
        sort: Document,
        limit: usize,
        max_time: Duration,
    ) -> Result<Vec<Document>, StoreError> {
        let Some(points) = point_filters(&filter) else {
            return self.find_sorted_once(filter, sort, limit, max_time).await;
        };
        let mut merged: Vec<Document> = futures::stream::iter(points)
            .map(|point| self.find_sorted_once(point, sort.clone(), limit, max_time))
            .buffer_unordered(POINT_QUERIES_IN_FLIGHT)
            .try_concat()
            .await?;
        merged.sort_by(|left, right| compare_by(&sort, left, right));
        merged.truncate(limit);
        Ok(merged)
    }

    /// One sorted, limited query. (A query by `_id` `$in` is not hinted to `_id_`: SecantusDB
    /// picks that index itself and takes 22 ms for 1,900 ids, but 1 s when told to.)
    async fn find_sorted_once(
        &self,
        filter: Document,
        sort: Document,
        limit: usize,
        max_time: Duration,
    ) -> Result<Vec<Document>, StoreError> {
        let find = self
            .logs
            .find(filter)
            .sort(sort)
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .batch_size(u32::try_from(limit).unwrap_or(u32::MAX))
            .max_time(max_time);
        find.await
            .map_err(classify_query_error)?
            .try_collect()
            .await
            .map_err(classify_query_error)
    }
}

/// A read whose word check is made here, on each log's message: logs stored without their
/// words (`all_words`).
struct Checked<'a> {
    /// Conditions on the logs, their time range included.
    filter: Document,
    words: &'a [String],
    /// The fields read (the caller's, and the message), or `None` for whole documents.
    read: Option<Document>,
    /// Whether the message is read only for the check.
    drop_message: bool,
    max_time: Duration,
}

impl<'a> Checked<'a> {
    fn new(
        filter: Document,
        words: &'a [String],
        projection: Option<Document>,
        max_time: Duration,
    ) -> Self {
        let drop_message = projection
            .as_ref()
            .is_some_and(|projection| !projection.contains_key(fields::MESSAGE));
        let read = projection.map(|mut projection| {
            projection.insert(fields::MESSAGE, 1);
            projection
        });
        Checked {
            filter,
            words,
            read,
            drop_message,
            max_time,
        }
    }

    /// Whether `log`'s message holds every word.
    fn holds(&self, log: &Document) -> bool {
        log.get_str(fields::MESSAGE)
            .is_ok_and(|message| crate::words::holds_all(message, self.words))
    }

    /// `log` with only the fields the caller asked for.
    fn trimmed(&self, mut log: Document) -> Document {
        if self.drop_message {
            log.remove(fields::MESSAGE);
        }
        log
    }
}

/// The ids of the walk's next blocks whose signatures may hold the words, at least
/// `wanted` unless the walk ends first (then fewer, or none once it has).
async fn next_walk_ids(walk: &mut BlockWalk, wanted: usize) -> Result<Vec<String>, StoreError> {
    let mut ids = Vec::new();
    while ids.len() < wanted {
        match walk.next_ids().await? {
            Some(block) => ids.extend(block),
            None => break,
        }
    }
    Ok(ids)
}

/// How many ids a page's next walk read asks for: what it still lacks (`missing`) at the
/// rate its reads found so far (`found` of `read`), half as many again for the rate's
/// spread, and at most `doubled`. A page short of a few logs then reads a block or two,
/// not twice its last read (which cost a template pair's page about 40 ms: 826 ids read
/// for 3 logs, docs/PERFORMANCE.md); one that found none reads `doubled`.
fn next_read(read: usize, found: usize, missing: usize, doubled: usize) -> usize {
    if found == 0 {
        return doubled;
    }
    let wanted = missing.saturating_mul(read).saturating_mul(3) / found.saturating_mul(2);
    wanted.clamp(1, doubled)
}

/// A walk of blocks runs query after query: past the time one query may take, it stops
/// as one query would (`search.query_timeout_ms`).
fn past_deadline(deadline: std::time::Instant) -> Result<(), StoreError> {
    if std::time::Instant::now() >= deadline {
        return Err(StoreError::QueryTimeout);
    }
    Ok(())
}

/// Whether `log` lies past `cursor` in `order`: after it by `(ts, _id)`.
fn is_past(log: &Document, cursor: &PageCursor, order: Order) -> bool {
    let (Ok(time), Ok(id)) = (log.get_datetime(fields::TIMESTAMP), log.get_str(fields::ID)) else {
        return false;
    };
    let position = (time.timestamp_millis(), id);
    let at = (cursor.timestamp_ms, cursor.id.as_str());
    match order {
        Order::NewestFirst => position < at,
        Order::OldestFirst => position > at,
    }
}

/// `filter` restricted to logs stamped in `[from, to]`.
fn within(mut filter: Document, from: DateTime<Utc>, to: DateTime<Utc>) -> Document {
    filter.insert(
        fields::TIMESTAMP,
        time_condition(
            Bound {
                time: from,
                inclusive: true,
            },
            Bound {
                time: to,
                inclusive: true,
            },
        ),
    );
    filter
}

/// Point queries a split runs at once.
const POINT_QUERIES_IN_FLIGHT: usize = 8;
/// Most point queries a filter is split into; beyond, it runs as one query.
const MAX_POINT_QUERIES: usize = 64;

/// `filter` split into one filter per (service, severity) pair, when it names services and
/// leaves severity open or gives several; `None` when it is one point already, names no
/// service, or would split too far.
fn point_filters(filter: &Document) -> Option<Vec<Document>> {
    let services = values_of(filter.get(fields::SERVICE)?)?;
    let severities = match filter.get(fields::SEVERITY) {
        None => Severity::ALL
            .iter()
            .map(|severity| Bson::from(severity.as_str()))
            .collect(),
        Some(condition) => values_of(condition)?,
    };
    let points = services.len() * severities.len();
    if points <= 1 || points > MAX_POINT_QUERIES {
        return None;
    }
    let mut filters = Vec::with_capacity(points);
    for service in &services {
        for severity in &severities {
            let mut point = filter.clone();
            point.insert(fields::SERVICE, service.clone());
            point.insert(fields::SEVERITY, severity.clone());
            filters.push(point);
        }
    }
    Some(filters)
}

/// The values an equality or an `$in` (and nothing else) accepts.
fn values_of(condition: &Bson) -> Option<Vec<Bson>> {
    match condition {
        Bson::String(_) => Some(vec![condition.clone()]),
        Bson::Document(operators) if operators.len() == 1 => {
            operators.get_array("$in").ok().cloned()
        }
        _ => None,
    }
}

/// `filter` restricted to the logs of `ids`, the `_id` condition first: SecantusDB reads the
/// ids through `_id_` either way, but with the time range before them it took 1-1.6 s
/// instead of 7 ms for one block's 1,000 ids in a ten-hour window of 1M logs.
fn by_ids(ids: &[String], filter: Document) -> Document {
    let mut restricted = doc! { fields::ID: { "$in": ids } };
    restricted.extend(filter);
    restricted
}

/// Orders documents as `sort` (fields with 1 or -1) would.
fn compare_by(sort: &Document, left: &Document, right: &Document) -> std::cmp::Ordering {
    for (field, direction) in sort {
        let ordering = match (left.get(field), right.get(field)) {
            (Some(Bson::DateTime(a)), Some(Bson::DateTime(b))) => a.cmp(b),
            (Some(Bson::String(a)), Some(Bson::String(b))) => a.cmp(b),
            (a, b) => a.is_some().cmp(&b.is_some()),
        };
        let ordering = if direction.as_i32() == Some(-1) {
            ordering.reverse()
        } else {
            ordering
        };
        if ordering != std::cmp::Ordering::Equal {
            return ordering;
        }
    }
    std::cmp::Ordering::Equal
}

/// A page's sort: by time, then `_id`, in `order`.
fn sort_of(order: Order) -> Document {
    let direction = if order == Order::NewestFirst { -1 } else { 1 };
    doc! { fields::TIMESTAMP: direction, fields::ID: direction }
}

/// The exact condition of word search: the log's words hold every one of `words`.
fn all_words(words: &[String]) -> Bson {
    match words {
        [word] => Bson::from(word.as_str()),
        words => Bson::Document(doc! { "$all": words }),
    }
}

fn in_range(edge: Bound, far_end: DateTime<Utc>, newest_first: bool) -> bool {
    if newest_first {
        edge.time > far_end || (edge.inclusive && edge.time == far_end)
    } else {
        edge.time < far_end || (edge.inclusive && edge.time == far_end)
    }
}

fn time_condition(low: Bound, high: Bound) -> Document {
    let low_operator = if low.inclusive { "$gte" } else { "$gt" };
    let high_operator = if high.inclusive { "$lte" } else { "$lt" };
    doc! {
        low_operator: Bson::DateTime(bson::DateTime::from_chrono(low.time)),
        high_operator: Bson::DateTime(bson::DateTime::from_chrono(high.time)),
    }
}

pub(super) fn classify_query_error(error: mongodb::error::Error) -> StoreError {
    match error.kind.as_ref() {
        ErrorKind::Command(command) if command.code == MAX_TIME_EXPIRED => StoreError::QueryTimeout,
        _ => StoreError::Unavailable(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_on_services_split_into_service_and_severity_points() {
        let split = point_filters(&doc! { "service": "web", "host": "h" }).unwrap();
        assert_eq!(split.len(), 7);
        assert_eq!(
            split[0],
            doc! { "service": "web", "host": "h", "severity": "trace" }
        );
        let split = point_filters(
            &doc! { "service": { "$in": ["a", "b"] }, "severity": { "$in": ["warn", "error"] } },
        )
        .unwrap();
        assert_eq!(split.len(), 4);
        for unsplit in [
            doc! { "service": "web", "severity": "error" },
            doc! { "severity": { "$in": ["warn", "error"] } },
            doc! { "service": { "$regex": "w" } },
        ] {
            assert_eq!(point_filters(&unsplit), None, "{unsplit}");
        }
    }

    #[test]
    fn merged_points_are_ordered_as_the_sort_says() {
        let at = |ms: i64, id: &str| doc! { "ts": bson::DateTime::from_millis(ms), "_id": id };
        let mut documents = vec![at(1, "b"), at(2, "a"), at(1, "c")];
        let newest_first = doc! { "ts": -1, "_id": -1 };
        documents.sort_by(|l, r| compare_by(&newest_first, l, r));
        assert_eq!(documents, vec![at(2, "a"), at(1, "c"), at(1, "b")]);
    }

    #[test]
    fn a_page_short_of_a_few_logs_reads_a_few_more_ids_not_twice_its_last_read() {
        // 97 of 422 ids held the words and 3 are missing: about 20 ids, not 844.
        assert_eq!(next_read(422, 97, 3, 844), 19);
        // None found yet: double.
        assert_eq!(next_read(400, 0, 100, 800), 800);
        // A rate that asks for more than doubling is held to it.
        assert_eq!(next_read(400, 2, 98, 800), 800);
        // Never fewer than one.
        assert_eq!(next_read(10_000, 9_999, 1, 10_000), 1);
    }

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        let cursor = PageCursor {
            timestamp_ms: 1_795_000_000_123,
            id: "abc-7".into(),
        };
        assert_eq!(cursor.encode(), "1795000000123:6162632d37");
        assert_eq!(PageCursor::decode(&cursor.encode()), Some(cursor));
        let early = PageCursor {
            timestamp_ms: -5,
            id: String::new(),
        };
        assert_eq!(PageCursor::decode("-5:"), Some(early));
        for token in [
            "",
            "zz",
            "1",
            ":ab",
            "1:a",
            "1:AB",
            "+1:ab",
            "1:0g",
            &format!("1:{}", "a".repeat(2000)),
        ] {
            assert_eq!(PageCursor::decode(token), None, "{token}");
        }
    }
}
