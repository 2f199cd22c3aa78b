//! Settings for every service, layered: built-in defaults < `config/default.toml` < the file
//! named by `LOGAGG_CONFIG` < environment variables `LOGAGG__<SECTION>__<KEY>`.
//!
//! Loaders take the environment as a parameter, so tests never mutate the process's own.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use serde::{Deserialize, Serialize};

use crate::record::Severity;

/// Environment variable naming an extra settings file (TOML).
pub const CONFIG_FILE_ENV: &str = "LOGAGG_CONFIG";
/// Prefix of environment overrides: `LOGAGG__BROKER__URL`, `LOGAGG__COLLECTOR__BATCH_SIZE`.
pub const ENV_PREFIX: &str = "LOGAGG";
/// The settings file read from the working directory when present.
pub const DEFAULT_FILE: &str = "config/default.toml";

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("could not load settings: {0}")]
    Load(#[from] config::ConfigError),
    #[error("invalid setting `{setting}`: {reason}")]
    Invalid {
        setting: &'static str,
        reason: String,
    },
}

/// All settings; each service reads the sections it needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// RabbitMQ connection and topology (every service).
    pub broker: BrokerSettings,
    /// MongoDB connection, collections and writes (every service but the source).
    pub store: StoreSettings,
    /// Logging and the admin server (every service).
    pub telemetry: TelemetrySettings,
    /// collector_service.
    pub collector: CollectorSettings,
    /// source_service's simulator.
    pub source: SourceSettings,
    /// retention_service.
    pub retention: RetentionSettings,
    /// search_service.
    pub search: SearchSettings,
    /// monitoring_service.
    pub monitor: MonitorSettings,
    /// source_service's ingest gateway.
    pub gateway: GatewaySettings,
}

/// RabbitMQ connection and topology. Every service declares the same topology at start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerSettings {
    /// AMQP URI with credentials and vhost. Never logged.
    pub url: String,
    /// Durable topic exchange that publishers send `<service>.<severity>` to.
    pub exchange: String,
    /// Durable queue bound to every key, consumed by the collectors with manual acks.
    pub storage_queue: String,
    /// `x-queue-type` of the storage queue: `quorum` (replicated, default) or `classic`.
    pub storage_queue_type: String,
    /// Deliveries of one message before the broker dead-letters it instead of requeueing
    /// (`x-delivery-limit`; quorum queues only). Stops a message that crashes collectors from
    /// looping forever.
    pub delivery_limit: u32,
    /// `x-dead-letter-strategy` of the storage queue: `at-least-once` (dead letters are never
    /// lost; needs RabbitMQ 3.10+) or `at-most-once`.
    pub dead_letter_strategy: String,
    /// Queue the monitor consumes with auto-ack.
    pub monitoring_queue: String,
    /// Whether the monitoring queue survives a broker restart. Off by default: durable, it
    /// writes every persistent message to disk a second time (publishing dropped from 18.6k
    /// to 13.0k msg/s here). Turn it on for RabbitMQ 4.x, where transient non-exclusive
    /// queues are a deprecated feature.
    pub monitoring_queue_durable: bool,
    /// Most messages the monitoring queue keeps; beyond it the oldest are dropped (the monitor
    /// samples: the storage queue holds every message regardless).
    pub monitoring_queue_max_length: u32,
    /// Milliseconds a message may wait in the monitoring queue before it is too stale to alert on.
    pub monitoring_message_ttl_ms: u32,
    /// Fanout exchange that receives rejected and over-delivered messages.
    pub dead_letter_exchange: String,
    /// Durable queue holding dead letters, each with its reason in headers.
    pub dead_letter_queue: String,
    /// Durable topic exchange the monitor publishes alerts to (`alert.<fired|resolved>.<service>`).
    pub alerts_exchange: String,
    /// Seconds between AMQP heartbeats.
    pub heartbeat_seconds: u16,
    /// Name this process's connections carry in RabbitMQ's connection list; empty means
    /// `<service>@<hostname>`.
    pub connection_name: String,
    /// First wait before reconnecting after a lost connection, milliseconds; doubles each try.
    pub reconnect_initial_ms: u64,
    /// Longest wait between reconnect attempts, milliseconds.
    pub reconnect_max_ms: u64,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        Self {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            exchange: "logs_exchange".into(),
            storage_queue: "logs.storage".into(),
            storage_queue_type: "quorum".into(),
            delivery_limit: 20,
            dead_letter_strategy: "at-least-once".into(),
            monitoring_queue: "logs.monitoring".into(),
            monitoring_queue_durable: false,
            monitoring_queue_max_length: 100_000,
            monitoring_message_ttl_ms: 60_000,
            dead_letter_exchange: "logs.dead_letter".into(),
            dead_letter_queue: "logs.dead_letter".into(),
            alerts_exchange: "logs.alerts".into(),
            heartbeat_seconds: 30,
            connection_name: String::new(),
            reconnect_initial_ms: 200,
            reconnect_max_ms: 10_000,
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
    /// Store each message's words so search's `q` works: all of them in `all_words`, and
    /// those not (yet) common in `words`, under the multikey index `words_ts`. Off, `q` is
    /// refused and inserts are cheapest (docs/PERFORMANCE.md).
    pub word_index: bool,
    /// Collection of the words found common: each with the time from which logs leave it
    /// out of the index (`crate::words`).
    pub common_words_collection: String,
    /// Share of logs (0-1] a word must appear in, over one sample, to be found common and
    /// leave the index. At 0.01 a page of 100 logs holding a common word is found within
    /// 10,000 logs of a time-window scan.
    pub common_word_ratio: f64,
    /// Logs a writer counts words over before it decides which are common.
    pub common_word_sample: usize,
    /// Seconds between a word being found common and logs leaving it out of the index.
    /// Every searcher must have re-read the common words by then (they re-read them every
    /// quarter of this, at most every 5 s), so it must exceed the clocks' skew.
    pub common_word_grace_seconds: u64,
    /// Collection of alerts raised by the monitor.
    pub alerts_collection: String,
    /// Collection of leases: which replica may run a singleton job (the purge) until when.
    pub leases_collection: String,
    /// Collection recording each retention run: when, what it deleted, how it ended.
    pub retention_runs_collection: String,
    /// Collection of stats rollups (counts per hour, service, severity; access-log latency).
    pub stats_collection: String,
    /// Write concern `w`: `1`, `majority`, or a number of nodes.
    pub write_concern_w: String,
    /// Write concern `j`: a write is acknowledged only once it is in the on-disk journal.
    pub write_concern_journal: bool,
    /// Milliseconds to find a usable server before an operation fails (and is retried).
    pub server_selection_timeout_ms: u64,
    /// Milliseconds to open a connection.
    pub connect_timeout_ms: u64,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            url: "mongodb://127.0.0.1:27017".into(),
            database: "logagg".into(),
            logs_collection: "logs".into(),
            word_index: true,
            common_words_collection: "common_words".into(),
            common_word_ratio: 0.01,
            common_word_sample: 20_000,
            common_word_grace_seconds: 30,
            alerts_collection: "alerts".into(),
            leases_collection: "leases".into(),
            retention_runs_collection: "retention_runs".into(),
            stats_collection: "log_stats".into(),
            write_concern_w: "1".into(),
            write_concern_journal: true,
            server_selection_timeout_ms: 5_000,
            connect_timeout_ms: 5_000,
        }
    }
}

/// Logging and the admin HTTP port (`/healthz`, `/metrics`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    /// `text` for people, `json` for log shippers.
    pub log_format: String,
    /// A tracing filter: `info`, `logagg=debug,lapin=warn`, …
    pub log_level: String,
    /// Address of the admin server; port 0 picks a free one.
    pub admin_listen: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            log_format: "text".into(),
            log_level: "info,lapin=warn,mongodb=warn".into(),
            admin_listen: "0.0.0.0:9100".into(),
        }
    }
}

/// collector_service: consuming, batching and writing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CollectorSettings {
    /// Unacknowledged deliveries the broker may send this collector (`basic.qos`). Counts
    /// messages, not logs: with batch messages of N logs, about 4000 / N keeps memory bounded.
    pub prefetch: u16,
    /// Records per bulk insert.
    pub batch_size: usize,
    /// Milliseconds a partial batch may wait for more records before it is written.
    pub batch_max_age_ms: u64,
    /// Batches being written at once; acks stay in delivery order.
    pub max_in_flight_batches: usize,
    /// First wait before retrying a failed write, milliseconds; doubles each try.
    pub retry_initial_ms: u64,
    /// Longest wait between write retries, milliseconds.
    pub retry_max_ms: u64,
    /// Seconds a shutdown waits for in-flight batches before returning them to the queue.
    pub shutdown_grace_seconds: u64,
}

impl Default for CollectorSettings {
    fn default() -> Self {
        Self {
            prefetch: 4_000,
            batch_size: 1_000,
            batch_max_age_ms: 200,
            max_in_flight_batches: 2,
            retry_initial_ms: 100,
            retry_max_ms: 5_000,
            shutdown_grace_seconds: 10,
        }
    }
}

/// source_service simulator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourceSettings {
    /// Messages per second; 0 publishes as fast as publisher confirms allow.
    pub rate: u64,
    /// Messages to publish; 0 runs until stopped.
    pub count: u64,
    /// Body format: `json` or `plain` (the Python services' line).
    pub format: String,
    /// Services the simulated logs come from.
    pub services: Vec<String>,
    /// Relative weight of each severity.
    pub severity_weights: BTreeMap<String, u32>,
    /// Smallest generated message, bytes.
    pub message_min_bytes: usize,
    /// Largest generated message, bytes.
    pub message_max_bytes: usize,
    /// Published messages awaiting a broker confirm at most.
    pub max_unconfirmed: usize,
    /// Logs per message: above 1, logs sharing a routing key go out together as one
    /// `application/x-ndjson` batch message (JSON format only).
    pub batch_records: usize,
    /// Longest a log waits for its batch to fill, milliseconds.
    pub batch_linger_ms: u64,
}

impl Default for SourceSettings {
    fn default() -> Self {
        Self {
            rate: 100,
            count: 0,
            format: "json".into(),
            services: ["checkout", "payments", "auth", "search", "inventory"]
                .map(String::from)
                .to_vec(),
            severity_weights: [
                ("debug", 10),
                ("info", 70),
                ("warn", 12),
                ("error", 7),
                ("fatal", 1),
            ]
            .into_iter()
            .map(|(severity, weight)| (severity.to_owned(), weight))
            .collect(),
            message_min_bytes: 40,
            message_max_bytes: 200,
            max_unconfirmed: 2_000,
            batch_records: 1,
            batch_linger_ms: 50,
        }
    }
}

/// retention_service: when and what to purge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSettings {
    /// When purges run, UTC, as a cron expression with seconds:
    /// `sec min hour day-of-month month day-of-week`. Default: daily at 00:00.
    pub schedule: String,
    /// Days a log is kept when no policy matches it.
    pub default_max_age_days: i64,
    /// Policies by service and severity; the first that matches a log decides its age.
    pub policies: Vec<RetentionPolicy>,
    /// Days a resolved alert is kept. Firing alerts are never purged.
    pub alert_max_age_days: i64,
    /// Logs deleted per batch.
    pub batch_size: usize,
    /// Milliseconds to pause between batches, so ingest and search keep their share of MongoDB.
    pub batch_pause_ms: u64,
    /// Write purged logs to compressed NDJSON files before deleting them.
    pub archive_enabled: bool,
    /// Directory of archive files: `<service>/<service>-<YYYY-MM-DD>.ndjson.gz`.
    pub archive_dir: String,
    /// Seconds a replica's purge lease lasts without renewal; renewed every batch.
    pub lease_seconds: u64,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            schedule: "0 0 0 * * *".into(),
            default_max_age_days: 10,
            policies: Vec::new(),
            alert_max_age_days: 90,
            batch_size: 1_000,
            batch_pause_ms: 50,
            archive_enabled: false,
            archive_dir: "archive".into(),
            lease_seconds: 300,
        }
    }
}

/// search_service: the REST API over stored logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SearchSettings {
    /// Address the REST API listens on.
    pub listen: String,
    /// Records per page when a request names no `limit`.
    pub default_limit: u32,
    /// Largest `limit` a request may ask for.
    pub max_limit: u32,
    /// Hours back from now that a request without `from` searches.
    pub default_range_hours: u32,
    /// Milliseconds MongoDB may spend on one query before it is stopped (`maxTimeMS`).
    pub query_timeout_ms: u64,
    /// Longest `q` or `contains` parameter, bytes.
    pub max_text_bytes: usize,
    /// Keys a client must present (`Authorization: Bearer KEY` or `X-API-Key: KEY`); empty
    /// leaves the API open. From the environment: comma-separated.
    pub api_keys: Vec<String>,
    /// Most live-tail clients at once; more get 503.
    pub max_tail_clients: usize,
    /// Logs a tail client may fall behind by before it is told and dropped.
    pub tail_buffer: usize,
}

impl Default for SearchSettings {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:5000".into(),
            default_limit: 100,
            max_limit: 1_000,
            default_range_hours: 24,
            query_timeout_ms: 5_000,
            max_text_bytes: 256,
            api_keys: Vec::new(),
            max_tail_clients: 64,
            tail_buffer: 1_000,
        }
    }
}

/// One retention policy: logs of these services and severities are kept this many days.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionPolicy {
    /// Name shown in reports and metrics.
    pub name: String,
    /// Services the policy applies to; empty means every service.
    #[serde(default)]
    pub services: Vec<String>,
    /// Severities the policy applies to (any accepted spelling); empty means every severity.
    #[serde(default)]
    pub severities: Vec<String>,
    /// Days a matching log is kept.
    pub max_age_days: i64,
}

/// Parses a retention schedule the way tokio-cron-scheduler does (six or seven fields, the
/// first being seconds; day-of-month and day-of-week both must match).
pub fn parse_schedule(expression: &str) -> Result<croner::Cron, croner::errors::CronError> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expression)
}

impl Settings {
    /// Loads settings from the files and the given environment, then validates them.
    pub fn load(env: &HashMap<String, String>) -> Result<Settings, SettingsError> {
        let defaults = Config::try_from(&Settings::default())?;
        let mut builder = Config::builder()
            .add_source(defaults)
            .add_source(File::new(DEFAULT_FILE, FileFormat::Toml).required(false));
        if let Some(path) = env.get(CONFIG_FILE_ENV) {
            builder = builder.add_source(File::new(path, FileFormat::Toml).required(true));
        }
        let overrides: HashMap<String, String> = env
            .iter()
            .filter(|(key, _)| key.starts_with(&format!("{ENV_PREFIX}__")))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        let settings: Settings = builder
            .add_source(
                Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator("__")
                    .separator("__")
                    .list_separator(",")
                    .with_list_parse_key("source.services")
                    .with_list_parse_key("search.api_keys")
                    .with_list_parse_key("gateway.api_keys")
                    .try_parsing(true)
                    .source(Some(overrides)),
            )
            .build()?
            .try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Loads settings from the process environment.
    pub fn from_process_env() -> Result<Settings, SettingsError> {
        Settings::load(&std::env::vars().collect())
    }

    /// Checks what deserialisation cannot: ranges, names and enumerations.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |setting: &'static str, reason: &str| {
            Err(SettingsError::Invalid {
                setting,
                reason: reason.to_owned(),
            })
        };
        if !matches!(
            self.broker.storage_queue_type.as_str(),
            "quorum" | "classic"
        ) {
            return invalid("broker.storage_queue_type", "must be `quorum` or `classic`");
        }
        if !matches!(
            self.broker.dead_letter_strategy.as_str(),
            "at-least-once" | "at-most-once"
        ) {
            return invalid(
                "broker.dead_letter_strategy",
                "must be `at-least-once` or `at-most-once`",
            );
        }
        if self.broker.delivery_limit == 0 {
            return invalid("broker.delivery_limit", "must be at least 1");
        }
        for (setting, name) in [
            ("broker.exchange", &self.broker.exchange),
            ("broker.storage_queue", &self.broker.storage_queue),
            ("broker.monitoring_queue", &self.broker.monitoring_queue),
            (
                "broker.dead_letter_exchange",
                &self.broker.dead_letter_exchange,
            ),
            ("broker.dead_letter_queue", &self.broker.dead_letter_queue),
        ] {
            if name.is_empty() || name.len() > 255 || name.starts_with("amq.") {
                return invalid(setting, "must be 1-255 bytes and not start with `amq.`");
            }
        }
        if self.store.write_concern_w != "majority"
            && self.store.write_concern_w.parse::<u32>().is_err()
        {
            return invalid("store.write_concern_w", "must be `majority` or a number");
        }
        if self.store.database.is_empty() || self.store.logs_collection.is_empty() {
            return invalid(
                "store.database",
                "database and collection names must be set",
            );
        }
        if !(self.store.common_word_ratio > 0.0 && self.store.common_word_ratio <= 1.0) {
            return invalid("store.common_word_ratio", "must be above 0 and at most 1");
        }
        if !(10..=10_000_000).contains(&self.store.common_word_sample) {
            return invalid("store.common_word_sample", "must be 10-10,000,000 logs");
        }
        if self.store.common_words_collection.is_empty() {
            return invalid("store.common_words_collection", "must be set");
        }
        if !matches!(self.telemetry.log_format.as_str(), "text" | "json") {
            return invalid("telemetry.log_format", "must be `text` or `json`");
        }
        if self
            .telemetry
            .admin_listen
            .parse::<std::net::SocketAddr>()
            .is_err()
        {
            return invalid(
                "telemetry.admin_listen",
                "must be an address like 0.0.0.0:9100",
            );
        }
        let collector = &self.collector;
        if collector.batch_size == 0 || collector.max_in_flight_batches == 0 {
            return invalid(
                "collector.batch_size",
                "batch_size and max_in_flight_batches must be at least 1",
            );
        }
        if collector.prefetch == 0 {
            return invalid("collector.prefetch", "must be at least 1");
        }
        if !matches!(self.source.format.as_str(), "json" | "plain") {
            return invalid("source.format", "must be `json` or `plain`");
        }
        if self.source.services.is_empty() {
            return invalid("source.services", "must name at least one service");
        }
        for service in &self.source.services {
            if let Err(error) = crate::parse::validate_service(service) {
                return invalid("source.services", &error.to_string());
            }
        }
        if self
            .source
            .severity_weights
            .values()
            .all(|weight| *weight == 0)
        {
            return invalid(
                "source.severity_weights",
                "at least one weight must be positive",
            );
        }
        for severity in self.source.severity_weights.keys() {
            if severity.parse::<Severity>().is_err() {
                return invalid(
                    "source.severity_weights",
                    &format!("unknown severity `{severity}`"),
                );
            }
        }
        if self.source.message_min_bytes > self.source.message_max_bytes
            || self.source.message_max_bytes > crate::parse::MAX_BODY_BYTES / 2
        {
            return invalid(
                "source.message_max_bytes",
                "must be at least message_min_bytes and at most 512 KiB",
            );
        }
        if self.source.max_unconfirmed == 0 {
            return invalid("source.max_unconfirmed", "must be at least 1");
        }
        if !(1..=crate::parse::MAX_BATCH_RECORDS).contains(&self.source.batch_records) {
            return invalid("source.batch_records", "must be from 1 to 10000");
        }
        if self.source.batch_records > 1 && self.source.format != "json" {
            return invalid(
                "source.batch_records",
                "batches carry JSON records: set source.format = json",
            );
        }
        self.retention.validate()?;
        self.monitor.validate()?;
        self.gateway.validate()?;
        self.search.validate()
    }
}

/// source_service's HTTP ingest gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewaySettings {
    /// Address the ingest gateway listens on.
    pub listen: String,
    /// Largest request body, bytes, after gzip decompression; larger gets 413.
    pub max_body_bytes: usize,
    /// Most records (or lines) in one request; more gets 413.
    pub max_records: usize,
    /// Records per second each key (or client address, without keys) may send, sustained.
    pub rate_per_second: u64,
    /// Records a key may send at once above the sustained rate.
    pub burst: u64,
    /// Keys clients must present; empty leaves the gateway open. From the environment:
    /// comma-separated.
    pub api_keys: Vec<String>,
    /// Records published and not yet confirmed, across all requests, at most; a request
    /// that would go beyond gets 503 with Retry-After instead of waiting in memory.
    pub max_unconfirmed: usize,
    /// How long a request waits for the broker's confirms before answering 503.
    pub confirm_timeout_ms: u64,
    /// How long a client may take to send its body.
    pub body_timeout_ms: u64,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8080".into(),
            max_body_bytes: 10 * 1024 * 1024,
            max_records: 10_000,
            rate_per_second: 20_000,
            burst: 40_000,
            api_keys: Vec::new(),
            max_unconfirmed: 50_000,
            confirm_timeout_ms: 5_000,
            body_timeout_ms: 30_000,
        }
    }
}

impl GatewaySettings {
    fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |setting: &'static str, reason: &str| {
            Err(SettingsError::Invalid {
                setting,
                reason: reason.to_owned(),
            })
        };
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return invalid("gateway.listen", "must be an address like 0.0.0.0:8080");
        }
        if self.max_body_bytes == 0 || self.max_records == 0 || self.max_unconfirmed == 0 {
            return invalid(
                "gateway",
                "max_body_bytes, max_records and max_unconfirmed must be at least 1",
            );
        }
        if self.rate_per_second == 0
            || self.burst < self.rate_per_second.min(self.max_records as u64)
        {
            return invalid(
                "gateway.burst",
                "rate_per_second must be at least 1 and burst must fit one full request",
            );
        }
        if self.confirm_timeout_ms == 0 || self.body_timeout_ms == 0 {
            return invalid("gateway", "timeouts must be at least 1 ms");
        }
        validate_api_keys("gateway.api_keys", &self.api_keys)?;
        Ok(())
    }
}

/// monitoring_service: error-rate rules over sliding windows, alert sinks, live access stats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorSettings {
    /// Asked of the broker with `basic.qos`. RabbitMQ applies prefetch to manual-ack
    /// consumers only; the monitor's auto-ack consumer is bounded by the monitoring queue's
    /// length and by evaluating faster than the broker delivers.
    pub prefetch: u16,
    /// How often rules are re-evaluated without new logs (alerts resolve as windows empty).
    pub tick_ms: u64,
    /// A service that sent nothing for this long, with no alert open, is forgotten.
    pub idle_eviction_seconds: u64,
    /// Services watched at most; logs of further services are counted and skipped.
    pub max_services: usize,
    /// Window of the live access-log stats (`/api/v1/live`), seconds.
    pub live_window_seconds: u64,
    /// Routes per service in the live stats; further ones are counted under `other`.
    pub max_routes_per_service: usize,
    /// Notifications a sink may have waiting; beyond, new ones are dropped and counted.
    pub sink_queue: usize,
    /// Alert rules (TOML array of tables `[[monitor.rules]]`), each evaluated per service.
    pub rules: Vec<AlertRule>,
    /// Where notifications go (TOML array of tables `[[monitor.sinks]]`); the alerts
    /// exchange always gets them too.
    pub sinks: Vec<SinkSettings>,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        Self {
            prefetch: 1_000,
            tick_ms: 1_000,
            idle_eviction_seconds: 600,
            max_services: 10_000,
            live_window_seconds: 60,
            max_routes_per_service: 100,
            sink_queue: 1_000,
            rules: vec![AlertRule::error_ratio()],
            sinks: vec![SinkSettings::default()],
        }
    }
}

/// One alert rule. The fields a rule leaves out take [`AlertRule::default`]'s values (a
/// count rule: 10 or more errors in 60 s); the rule monitors run without any configured is
/// [`AlertRule::error_ratio`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertRule {
    /// Shown in alerts and notifications: 1-64 letters, digits, `_` or `-`, unique.
    pub name: String,
    /// Services the rule watches; empty means each service separately.
    pub services: Vec<String>,
    /// `count`: logs at or above `min_severity` in the window; `ratio`: those over all logs.
    pub kind: String,
    /// The lowest severity the rule counts (any accepted spelling).
    pub min_severity: String,
    /// Fires at or above this (a count, or a ratio from 0 to 1).
    pub threshold: f64,
    /// Length of the sliding window, seconds (1 to 3600).
    pub window_seconds: u64,
    /// How long the value must stay at or above the threshold before the alert fires.
    pub for_seconds: u64,
    /// Resolves once the value falls below this; default half the threshold. The band
    /// between keeps a value hovering at the threshold from flapping.
    pub resolve_below: Option<f64>,
    /// `ratio` only: logs the window must hold before the ratio counts.
    pub min_volume: u64,
    /// After resolving, the same rule and service do not fire again for this long.
    pub cooldown_seconds: u64,
}

impl Default for AlertRule {
    fn default() -> Self {
        Self {
            name: "error_burst".into(),
            services: Vec::new(),
            kind: "count".into(),
            min_severity: "error".into(),
            threshold: 10.0,
            window_seconds: 60,
            for_seconds: 0,
            resolve_below: None,
            min_volume: 0,
            cooldown_seconds: 300,
        }
    }
}

impl AlertRule {
    /// The default rule: a service's errors (and worse) are 10 % or more of its logs over a
    /// minute holding at least 100 logs. A ratio, so it scales with traffic and stays quiet
    /// on healthy traffic (the demo's 0.5 % of 5xx); a minimum volume, so a quiet service's
    /// one error in three logs is not an incident. The form alerting templates for
    /// Prometheus and Loki use for error rates.
    pub fn error_ratio() -> AlertRule {
        AlertRule {
            name: "error_ratio".into(),
            kind: "ratio".into(),
            threshold: 0.1,
            min_volume: 100,
            ..AlertRule::default()
        }
    }
}

/// Where alert notifications go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SinkSettings {
    /// `log` (a line in the monitor's own log), `webhook` (JSON POST) or `slack`
    /// (Slack-compatible `{"text"}`).
    pub kind: String,
    /// `webhook` and `slack`: the http(s) URL notifications are POSTed to.
    pub url: String,
    /// Longest wait for one delivery attempt, milliseconds.
    pub timeout_ms: u64,
    /// Attempts per notification, with doubling backoff from `retry_initial_ms`.
    pub max_attempts: u32,
    /// Wait before the second attempt, milliseconds; doubles each attempt.
    pub retry_initial_ms: u64,
}

impl Default for SinkSettings {
    fn default() -> Self {
        Self {
            kind: "log".into(),
            url: String::new(),
            timeout_ms: 5_000,
            max_attempts: 5,
            retry_initial_ms: 500,
        }
    }
}

impl MonitorSettings {
    fn validate(&self) -> Result<(), SettingsError> {
        let invalid =
            |setting: &'static str, reason: String| Err(SettingsError::Invalid { setting, reason });
        if self.tick_ms == 0 || self.max_services == 0 || self.sink_queue == 0 {
            return invalid(
                "monitor",
                "tick_ms, max_services and sink_queue must be at least 1".into(),
            );
        }
        if !(1..=3_600).contains(&self.live_window_seconds) {
            return invalid("monitor.live_window_seconds", "must be 1 to 3600".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for rule in &self.rules {
            let reason = rule.problem();
            if let Some(reason) = reason {
                return invalid("monitor.rules", format!("rule `{}`: {reason}", rule.name));
            }
            if !names.insert(rule.name.as_str()) {
                return invalid("monitor.rules", format!("rule `{}` twice", rule.name));
            }
        }
        for sink in &self.sinks {
            match sink.kind.as_str() {
                "log" => {}
                "webhook" | "slack" => {
                    if !(sink.url.starts_with("http://") || sink.url.starts_with("https://")) {
                        return invalid(
                            "monitor.sinks",
                            format!("a {} sink needs an http(s) url", sink.kind),
                        );
                    }
                    if sink.max_attempts == 0 || sink.timeout_ms == 0 {
                        return invalid(
                            "monitor.sinks",
                            "max_attempts and timeout_ms must be at least 1".into(),
                        );
                    }
                }
                other => {
                    return invalid(
                        "monitor.sinks",
                        format!("kind `{other}` is not log, webhook or slack"),
                    )
                }
            }
        }
        Ok(())
    }
}

impl AlertRule {
    /// What is wrong with the rule, if anything.
    pub fn problem(&self) -> Option<String> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-'));
        if !name_ok {
            return Some("names are 1-64 letters, digits, `_` or `-`".into());
        }
        if self.min_severity.parse::<Severity>().is_err() {
            return Some(format!("`{}` is not a severity", self.min_severity));
        }
        if let Some(service) = self
            .services
            .iter()
            .find(|service| crate::parse::validate_service(service).is_err())
        {
            return Some(format!("`{service}` is not a valid service name"));
        }
        if !(1..=3_600).contains(&self.window_seconds) {
            return Some("window_seconds must be 1 to 3600".into());
        }
        let ratio = match self.kind.as_str() {
            "count" => false,
            "ratio" => true,
            other => return Some(format!("kind `{other}` is not count or ratio")),
        };
        let threshold_ok =
            self.threshold.is_finite() && self.threshold > 0.0 && (!ratio || self.threshold <= 1.0);
        if !threshold_ok {
            return Some("threshold must be above 0 (and at most 1 for a ratio)".into());
        }
        if self
            .resolve_below
            .is_some_and(|below| !(0.0..=self.threshold).contains(&below))
        {
            return Some("resolve_below must be between 0 and the threshold".into());
        }
        None
    }
}

/// Each key at least [`MIN_API_KEY_BYTES`] printable ASCII characters without spaces.
fn validate_api_keys(setting: &'static str, keys: &[String]) -> Result<(), SettingsError> {
    if keys.iter().any(|key| {
        key.len() < MIN_API_KEY_BYTES || !key.bytes().all(|byte| byte.is_ascii_graphic())
    }) {
        return Err(SettingsError::Invalid {
            setting,
            reason: "each key must be at least 16 printable ASCII characters without spaces".into(),
        });
    }
    Ok(())
}

/// Shortest API key accepted: long enough that guessing is hopeless.
const MIN_API_KEY_BYTES: usize = 16;

impl SearchSettings {
    fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |setting: &'static str, reason: &str| {
            Err(SettingsError::Invalid {
                setting,
                reason: reason.to_owned(),
            })
        };
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return invalid("search.listen", "must be an address like 0.0.0.0:5000");
        }
        if self.max_limit == 0 || self.max_limit > 10_000 {
            return invalid("search.max_limit", "must be between 1 and 10000");
        }
        if self.default_limit == 0 || self.default_limit > self.max_limit {
            return invalid("search.default_limit", "must be between 1 and max_limit");
        }
        if self.default_range_hours == 0 {
            return invalid("search.default_range_hours", "must be at least 1");
        }
        if self.query_timeout_ms == 0 {
            return invalid("search.query_timeout_ms", "must be at least 1");
        }
        if self.max_text_bytes == 0 {
            return invalid("search.max_text_bytes", "must be at least 1");
        }
        validate_api_keys("search.api_keys", &self.api_keys)?;
        if self.max_tail_clients == 0 {
            return invalid("search.max_tail_clients", "must be at least 1");
        }
        if self.tail_buffer == 0 || self.tail_buffer > 100_000 {
            return invalid("search.tail_buffer", "must be between 1 and 100000");
        }
        Ok(())
    }
}

/// Retention ages a setting may give, in days: a day to a century.
const AGE_DAYS: std::ops::RangeInclusive<i64> = 1..=36_500;

impl RetentionSettings {
    fn validate(&self) -> Result<(), SettingsError> {
        let invalid =
            |setting: &'static str, reason: String| Err(SettingsError::Invalid { setting, reason });
        if let Err(error) = parse_schedule(&self.schedule) {
            return invalid(
                "retention.schedule",
                format!(
                    "`{}` is not a cron expression with seconds (e.g. `0 0 0 * * *`): {error}",
                    self.schedule
                ),
            );
        }
        if !AGE_DAYS.contains(&self.default_max_age_days) {
            return invalid(
                "retention.default_max_age_days",
                format!("must be 1 to 36500 days, not {}", self.default_max_age_days),
            );
        }
        if !AGE_DAYS.contains(&self.alert_max_age_days) {
            return invalid(
                "retention.alert_max_age_days",
                format!("must be 1 to 36500 days, not {}", self.alert_max_age_days),
            );
        }
        if self.batch_size == 0 || self.batch_size > 100_000 {
            return invalid(
                "retention.batch_size",
                "must be between 1 and 100000".into(),
            );
        }
        if self.lease_seconds < 10 {
            return invalid("retention.lease_seconds", "must be at least 10".into());
        }
        if self.archive_enabled && self.archive_dir.trim().is_empty() {
            return invalid(
                "retention.archive_dir",
                "must be set when archive_enabled is true".into(),
            );
        }
        let mut names = std::collections::HashSet::new();
        for (index, policy) in self.policies.iter().enumerate() {
            let which = format!("policy {} (`{}`)", index + 1, policy.name);
            if policy.name.trim().is_empty() || !names.insert(policy.name.as_str()) {
                return invalid(
                    "retention.policies",
                    format!("{which}: every policy needs a unique, non-empty name"),
                );
            }
            if !AGE_DAYS.contains(&policy.max_age_days) {
                return invalid(
                    "retention.policies",
                    format!(
                        "{which}: max_age_days must be 1 to 36500, not {}",
                        policy.max_age_days
                    ),
                );
            }
            for severity in &policy.severities {
                if severity.parse::<Severity>().is_err() {
                    return invalid(
                        "retention.policies",
                        format!("{which}: unknown severity `{severity}`"),
                    );
                }
            }
            for service in &policy.services {
                if let Err(error) = crate::parse::validate_service(service) {
                    return invalid("retention.policies", format!("{which}: {error}"));
                }
            }
        }
        Ok(())
    }
}

impl CollectorSettings {
    pub fn batch_max_age(&self) -> Duration {
        Duration::from_millis(self.batch_max_age_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_load_and_validate() {
        let settings = Settings::load(&env(&[])).unwrap();
        assert_eq!(settings.broker.exchange, "logs_exchange");
        assert_eq!(settings, Settings::default());
    }

    #[test]
    fn environment_overrides_defaults_with_typed_values() {
        let settings = Settings::load(&env(&[
            ("LOGAGG__COLLECTOR__BATCH_SIZE", "250"),
            ("LOGAGG__BROKER__EXCHANGE", "other"),
            ("LOGAGG__SOURCE__SERVICES", "a,b"),
            ("LOGAGG__STORE__WRITE_CONCERN_JOURNAL", "false"),
            ("UNRELATED", "ignored"),
        ]))
        .unwrap();
        assert_eq!(settings.collector.batch_size, 250);
        assert_eq!(settings.broker.exchange, "other");
        assert_eq!(settings.source.services, vec!["a", "b"]);
        assert!(!settings.store.write_concern_journal);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_setting() {
        let error = Settings::load(&env(&[("LOGAGG__COLLECTOR__BATCH_SIZ", "5")])).unwrap_err();
        assert!(error.to_string().contains("batch_siz"), "{error}");
        let error =
            Settings::load(&env(&[("LOGAGG__BROKER__STORAGE_QUEUE_TYPE", "stream")])).unwrap_err();
        assert!(
            error.to_string().contains("broker.storage_queue_type"),
            "{error}"
        );
        let error = Settings::load(&env(&[("LOGAGG__COLLECTOR__PREFETCH", "0")])).unwrap_err();
        assert!(error.to_string().contains("collector.prefetch"), "{error}");
        let error =
            Settings::load(&env(&[("LOGAGG__SOURCE__SERVICES", "ok,bad name")])).unwrap_err();
        assert!(error.to_string().contains("source.services"), "{error}");
        for batch in [
            [
                ("LOGAGG__SOURCE__BATCH_RECORDS", "0"),
                ("LOGAGG__SOURCE__FORMAT", "json"),
            ],
            [
                ("LOGAGG__SOURCE__BATCH_RECORDS", "10001"),
                ("LOGAGG__SOURCE__FORMAT", "json"),
            ],
            [
                ("LOGAGG__SOURCE__BATCH_RECORDS", "50"),
                ("LOGAGG__SOURCE__FORMAT", "plain"),
            ],
        ] {
            let error = Settings::load(&env(&batch)).unwrap_err();
            assert!(
                error.to_string().contains("source.batch_records"),
                "{error}"
            );
        }
        assert!(Settings::load(&env(&[("LOGAGG__SOURCE__BATCH_RECORDS", "50")])).is_ok());
        for (key, value, setting) in [
            (
                "LOGAGG__STORE__COMMON_WORD_RATIO",
                "0",
                "store.common_word_ratio",
            ),
            (
                "LOGAGG__STORE__COMMON_WORD_RATIO",
                "1.5",
                "store.common_word_ratio",
            ),
            (
                "LOGAGG__STORE__COMMON_WORD_SAMPLE",
                "9",
                "store.common_word_sample",
            ),
            (
                "LOGAGG__STORE__COMMON_WORDS_COLLECTION",
                "",
                "store.common_words_collection",
            ),
        ] {
            let error = Settings::load(&env(&[(key, value)])).unwrap_err();
            assert!(
                error.to_string().contains(setting),
                "{key}={value}: {error}"
            );
        }
        assert!(Settings::load(&env(&[("LOGAGG__STORE__COMMON_WORD_RATIO", "1")])).is_ok());
    }

    #[test]
    fn retention_settings_fail_with_the_setting_named() {
        let error =
            Settings::load(&env(&[("LOGAGG__RETENTION__SCHEDULE", "every day")])).unwrap_err();
        assert!(error.to_string().contains("retention.schedule"), "{error}");
        let error =
            Settings::load(&env(&[("LOGAGG__RETENTION__DEFAULT_MAX_AGE_DAYS", "-3")])).unwrap_err();
        assert!(
            error.to_string().contains("retention.default_max_age_days"),
            "{error}"
        );
        let policy = |name: &str, severities: &[&str], days| RetentionPolicy {
            name: name.into(),
            services: Vec::new(),
            severities: severities.iter().map(|s| (*s).to_owned()).collect(),
            max_age_days: days,
        };
        let mut settings = Settings::default();
        settings.retention.policies = vec![policy("debug", &["debug", "TRACE"], 2)];
        assert!(settings.validate().is_ok());
        for (policies, expected) in [
            (vec![policy("x", &["loud"], 2)], "unknown severity `loud`"),
            (
                vec![policy("x", &[], -1)],
                "max_age_days must be 1 to 36500",
            ),
            (
                vec![policy("x", &[], i64::MAX)],
                "max_age_days must be 1 to 36500",
            ),
            (
                vec![policy("x", &[], 1), policy("x", &[], 2)],
                "unique, non-empty name",
            ),
        ] {
            settings.retention.policies = policies;
            let error = settings.validate().unwrap_err().to_string();
            assert!(error.contains("retention.policies"), "{error}");
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn the_default_schedule_is_daily_at_midnight() {
        use chrono::TimeZone;
        let schedule = parse_schedule(&RetentionSettings::default().schedule).unwrap();
        let after = chrono::Utc
            .with_ymd_and_hms(2026, 11, 21, 7, 30, 0)
            .unwrap();
        let next = schedule.find_next_occurrence(&after, false).unwrap();
        assert_eq!(
            next,
            chrono::Utc.with_ymd_and_hms(2026, 11, 22, 0, 0, 0).unwrap()
        );
    }

    #[test]
    fn a_named_file_layers_between_defaults_and_environment() {
        let directory =
            std::env::temp_dir().join(format!("logagg-settings-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join("extra.toml");
        std::fs::write(&path, "[collector]\nbatch_size = 300\nprefetch = 900\n").unwrap();
        let path_text = path.to_string_lossy().into_owned();
        let settings = Settings::load(&env(&[
            (CONFIG_FILE_ENV, &path_text),
            ("LOGAGG__COLLECTOR__PREFETCH", "1200"),
        ]))
        .unwrap();
        assert_eq!(settings.collector.batch_size, 300);
        assert_eq!(settings.collector.prefetch, 1200);
        let missing = Settings::load(&env(&[(CONFIG_FILE_ENV, "/nonexistent/logagg.toml")]));
        assert!(missing.is_err());
    }
}
