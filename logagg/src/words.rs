//! Words of a log message, for word search without a text index.
//!
//! A writer hashes each message's distinct lower-cased words and, for each batch, writes
//! *blocks* (`crate::store::blocks`) of up to a thousand logs, each with bloom filters of
//! its words ([`Bloom`]), one per slice of the word hashes, and a signature per log. Search
//! asks the blocks of a range which may hold every query word, then reads only those
//! blocks' logs and checks each message's words exactly ([`holds_all`]): a filter's false
//! positive costs a read, never a wrong answer. Neither the words nor an index entry per
//! word is stored, so word search costs ingest little however many distinct words real logs
//! carry (ids, addresses, numbers).
//!
//! Logs written by earlier versions carry their words in an unindexed `all_words`; those
//! written before blocks carry an indexed `words` array too, and
//! words that version found common ([`CommonWords`]) were left out of it from a time
//! `since`: search still reads those logs that way (`crate::store::words`).

use std::borrow::Cow;
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
    hashed_words(text)
        .words
        .into_iter()
        .map(Cow::into_owned)
        .collect()
}

/// A message's distinct words ([`message_words`]), each with its [`word_hash`]; words
/// already lower-case borrow from the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashedWords<'a> {
    pub words: Vec<Cow<'a, str>>,
    pub hashes: Vec<u64>,
}

/// [`message_words`] with each word's hash, allocating only for words with upper-case
/// letters: what a writer stores and puts in a block, once per word.
pub fn hashed_words(text: &str) -> HashedWords<'_> {
    let mut words: Vec<Cow<'_, str>> = Vec::new();
    let mut hashes: Vec<u64> = Vec::new();
    for word in text
        .split(|character: char| !character.is_alphanumeric())
        .filter(|word| !word.is_empty() && word.len() <= MAX_WORD_BYTES)
    {
        if words.len() == MAX_WORDS_PER_MESSAGE {
            break;
        }
        let word: Cow<'_, str> = if word
            .bytes()
            .any(|byte| !byte.is_ascii() || byte.is_ascii_uppercase())
        {
            Cow::Owned(word.to_lowercase())
        } else {
            Cow::Borrowed(word)
        };
        let hash = word_hash(&word);
        let seen = hashes
            .iter()
            .zip(&words)
            .any(|(known, known_word)| *known == hash && *known_word == word);
        if !seen {
            hashes.push(hash);
            words.push(word);
        }
    }
    HashedWords { words, hashes }
}

/// Whether `message`'s words, as a writer takes them ([`hashed_words`]: at most
/// [`MAX_WORDS_PER_MESSAGE`], none longer than [`MAX_WORD_BYTES`]), hold every one of
/// `words` (a query's, [`query_words`]): word search's exact check.
pub fn holds_all(message: &str, words: &[String]) -> bool {
    let stored = hashed_words(message).words;
    words
        .iter()
        .all(|word| stored.iter().any(|stored| stored == word))
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

/// Bits per distinct word: with [`BLOOM_HASHES`] hashes, 0.07 % false positives when full.
pub const BLOOM_BITS_PER_WORD: u32 = 16;
/// Bit positions set per word.
pub const BLOOM_HASHES: u32 = 7;

/// A word's 64-bit hash, from which its bit positions in a filter of any size derive. Part of
/// the stored format (blocks carry a version): FNV-1a, then SplitMix64's finaliser so every
/// bit depends on every byte.
pub fn word_hash(word: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in word.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// A log's *signature*: 128 bits, two set per distinct word of its message. Stored per log
/// in a sealed block, it lets search read only those of a candidate block's logs that may
/// hold every query word (about 8 % of logs pass for a word they lack, 0.7 % for two).
pub type Signature = u128;

/// The signature bits of a word of `hash`: from bits the filters' positions do not use
/// (they read the low 13 bits of each 32-bit half; slices the top 4).
pub fn signature_of(hash: u64) -> Signature {
    let first = (hash >> 45) & 127;
    let second = (hash >> 52) & 127;
    (1_u128 << first) | (1_u128 << second)
}

/// The bit positions of a word of `hash` in a filter of `bits` bits (a power of two), by
/// double hashing. Bit `p` is bit `p % 8` (least significant first) of byte `p / 8`: what
/// MongoDB's `$bitsAllSet` on binary data reads.
pub fn bloom_positions(hash: u64, bits: u32) -> impl Iterator<Item = u32> {
    let first = hash as u32;
    let step = ((hash >> 32) as u32) | 1;
    (0..BLOOM_HASHES).map(move |index| first.wrapping_add(index.wrapping_mul(step)) & (bits - 1))
}

/// A bloom filter of words, sized for the words it is to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bloom {
    bits: u32,
    bytes: Vec<u8>,
}

impl Bloom {
    /// An empty filter of the smallest of `sizes` (ascending powers of two, at least 8) that
    /// gives each of `words` distinct words [`BLOOM_BITS_PER_WORD`] bits; the largest for more.
    pub fn for_words(words: usize, sizes: &[u32]) -> Bloom {
        let wanted = u64::try_from(words)
            .unwrap_or(u64::MAX)
            .saturating_mul(u64::from(BLOOM_BITS_PER_WORD));
        let bits = sizes
            .iter()
            .copied()
            .find(|bits| u64::from(*bits) >= wanted)
            .or_else(|| sizes.last().copied())
            .unwrap_or(8);
        Bloom {
            bits,
            bytes: vec![0; (bits / 8) as usize],
        }
    }

    /// Distinct words a filter of `bits` bits holds at its designed false-positive rate.
    pub const fn capacity(bits: u32) -> usize {
        (bits / BLOOM_BITS_PER_WORD) as usize
    }

    /// Reads a stored filter; `None` unless `bytes` is one of `sizes` long.
    pub fn from_bytes(bytes: Vec<u8>, sizes: &[u32]) -> Option<Bloom> {
        let bits = u32::try_from(bytes.len()).ok()?.checked_mul(8)?;
        sizes.contains(&bits).then_some(Bloom { bits, bytes })
    }

    pub fn bits(&self) -> u32 {
        self.bits
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn insert(&mut self, hash: u64) {
        for position in bloom_positions(hash, self.bits) {
            self.bytes[(position / 8) as usize] |= 1 << (position % 8);
        }
    }

    pub fn may_contain(&self, hash: u64) -> bool {
        bloom_positions(hash, self.bits)
            .all(|position| self.bytes[(position / 8) as usize] & (1 << (position % 8)) != 0)
    }
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
    fn the_exact_check_finds_the_words_a_writer_would_have_stored_and_no_others() {
        let query = query_words;
        let message = "Payment FAILED for order-42: card_declined";
        assert!(holds_all(message, &query("payment failed")));
        assert!(holds_all(message, &query("ORDER 42 declined card")));
        assert!(holds_all(message, &[]));
        assert!(!holds_all(message, &query("payment refused")));
        assert!(!holds_all(message, &query("pay")));
        // Past the words a writer keeps, as in its blocks: not found.
        let many: String = (0..500).map(|n| format!("w{n} ")).collect();
        assert!(holds_all(&many, &query("w0 w127")));
        assert!(!holds_all(&many, &query("w128")));
        let long = "a".repeat(MAX_WORD_BYTES + 1);
        assert!(!holds_all(&format!("id {long}"), &query(&long)));
    }

    #[test]
    fn a_bloom_filter_holds_what_was_inserted_and_little_else() {
        const SIZES: [u32; 3] = [1 << 10, 1 << 12, 1 << 14];
        let words: Vec<String> = (0..Bloom::capacity(SIZES[2]))
            .map(|n| format!("w{n}"))
            .collect();
        let mut bloom = Bloom::for_words(words.len(), &SIZES);
        assert_eq!(bloom.bits(), SIZES[2]);
        for word in &words {
            bloom.insert(word_hash(word));
        }
        assert!(words.iter().all(|word| bloom.may_contain(word_hash(word))));
        let false_positives = (0..100_000)
            .filter(|n| bloom.may_contain(word_hash(&format!("other{n}"))))
            .count();
        // 0.07 % expected when full.
        assert!(false_positives < 200, "{false_positives} of 100,000");
        let stored = Bloom::from_bytes(bloom.bytes().to_vec(), &SIZES).unwrap();
        assert_eq!(stored, bloom);
        assert_eq!(Bloom::from_bytes(vec![0; 3], &SIZES), None);
        assert_eq!(Bloom::for_words(1, &SIZES).bits(), SIZES[0]);
        assert_eq!(Bloom::for_words(100, &SIZES).bits(), SIZES[1]);
        assert_eq!(Bloom::for_words(100_000, &SIZES).bits(), SIZES[2]);
    }

    #[test]
    fn a_signature_sets_one_or_two_bits_a_word() {
        for word in ["error", "timeout", "9032e22e849785de"] {
            let signature = signature_of(word_hash(word));
            assert!((1..=2).contains(&signature.count_ones()), "{word}");
        }
        assert_eq!(
            signature_of(word_hash("error")),
            signature_of(word_hash("error"))
        );
    }

    #[test]
    fn word_hashes_are_the_stored_format() {
        // Blocks already written depend on these values: a change needs a new block version.
        assert_eq!(word_hash(""), 17_665_956_581_633_026_203);
        assert_eq!(word_hash("error"), word_hash("error"));
        assert_ne!(word_hash("error"), word_hash("errors"));
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

    #[test]
    fn hashed_words_borrow_lower_case_words_and_hash_each_once() {
        let hashed = hashed_words("GET get /api/v1 Über über");
        assert_eq!(hashed.words, ["get", "api", "v1", "über"]);
        assert!(matches!(hashed.words[1], Cow::Borrowed(_)));
        assert!(matches!(hashed.words[0], Cow::Owned(_)));
        let expected: Vec<u64> = hashed.words.iter().map(|word| word_hash(word)).collect();
        assert_eq!(hashed.hashes, expected);
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
