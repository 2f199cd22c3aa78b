//! `[store]`: the MongoDB connection, its collections, word search and the write concern.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{invalid, SettingsError};

/// A write concern's `w`: how many nodes must have a write before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteAcknowledgment {
    /// A majority of the replica set's voting members.
    Majority,
    /// This many nodes (1: the primary alone).
    Nodes(u32),
}

impl Serialize for WriteAcknowledgment {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            WriteAcknowledgment::Majority => serializer.serialize_str("majority"),
            WriteAcknowledgment::Nodes(nodes) => serializer.serialize_str(&nodes.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for WriteAcknowledgment {
    /// `"majority"`, or a number of nodes as a number or a string (an environment variable
    /// is read as a number).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Number(u32),
            Text(String),
        }
        match Written::deserialize(deserializer)? {
            Written::Number(nodes) => Ok(WriteAcknowledgment::Nodes(nodes)),
            Written::Text(text) if text == "majority" => Ok(WriteAcknowledgment::Majority),
            Written::Text(text) => text.parse().map(WriteAcknowledgment::Nodes).map_err(|_| {
                serde::de::Error::custom(format!("`{text}` is neither `majority` nor a number"))
            }),
        }
    }
}

/// MongoDB connection and write behaviour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// MongoDB connection string (a replica set's in production). Never logged.
    pub url: String,
    /// Database holding the collections.
    pub database: String,
    /// Collection of log records.
    pub logs_collection: String,
    /// Write word blocks so search's `q` works: blocks (`blocks_collection`) of up to 1,000
    /// logs with bloom filters of their words and a signature of each log's, which search
    /// reads to find the logs that may hold a query's words, then checks those logs'
    /// messages (docs/search.md). Off, `q` is refused and inserts are cheapest
    /// (docs/PERFORMANCE.md).
    pub word_index: bool,
    /// Collection of the word blocks: per block, its logs' ids, time range, services and
    /// signatures, and one small bloom filter document per slice of its words' hashes
    /// (`crate::store::blocks`).
    pub blocks_collection: String,
    /// Collection of the words an earlier version found common (`crate::store::words`):
    /// read only to search logs written before word blocks, under the `words` index.
    pub common_words_collection: String,
    /// Seconds a search process keeps the earlier version's common words before reading
    /// them again (a quarter of this, at most 5 s).
    #[serde(with = "super::seconds")]
    pub common_word_grace_seconds: std::time::Duration,
    /// Collection of alerts raised by the monitor.
    pub alerts_collection: String,
    /// Collection of leases: which replica may run a singleton job (the purge) until when.
    pub leases_collection: String,
    /// Collection recording each retention run: when, what it deleted, how it ended.
    pub retention_runs_collection: String,
    /// Collection of stats rollups (counts per hour, service, severity; access-log latency).
    pub stats_collection: String,
    /// Collection of the analyzers registered for the fan-out (analyzer_service).
    pub analyzers_collection: String,
    /// Write concern `w`: `1`, `majority`, or a number of nodes.
    pub write_concern_w: WriteAcknowledgment,
    /// Write concern `j`: a write is acknowledged only once it is in the on-disk journal.
    pub write_concern_journal: bool,
    /// Milliseconds to find a usable server before an operation fails (and is retried).
    #[serde(with = "super::millis")]
    pub server_selection_timeout_ms: std::time::Duration,
    /// Milliseconds to open a connection.
    #[serde(with = "super::millis")]
    pub connect_timeout_ms: std::time::Duration,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            url: "mongodb://127.0.0.1:27017".into(),
            database: "logagg".into(),
            logs_collection: "logs".into(),
            word_index: true,
            blocks_collection: "log_blocks".into(),
            common_words_collection: "common_words".into(),
            common_word_grace_seconds: std::time::Duration::from_secs(30),
            alerts_collection: "alerts".into(),
            leases_collection: "leases".into(),
            retention_runs_collection: "retention_runs".into(),
            stats_collection: "log_stats".into(),
            analyzers_collection: "analyzers".into(),
            write_concern_w: WriteAcknowledgment::Nodes(1),
            write_concern_journal: true,
            server_selection_timeout_ms: std::time::Duration::from_millis(5_000),
            connect_timeout_ms: std::time::Duration::from_millis(5_000),
        }
    }
}

impl StoreSettings {
    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        if self.database.is_empty() || self.logs_collection.is_empty() {
            return invalid(
                "store.database",
                "database and collection names must be set",
            );
        }
        if self.common_words_collection.is_empty() {
            return invalid("store.common_words_collection", "must be set");
        }
        if self.blocks_collection.is_empty() {
            return invalid("store.blocks_collection", "must be set");
        }
        Ok(())
    }
}
