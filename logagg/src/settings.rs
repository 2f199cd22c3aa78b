//! Settings for every service, layered: built-in defaults < `config/default.toml` < the file
//! named by `LOGAGG_CONFIG` < environment variables `LOGAGG__<SECTION>__<KEY>`. One file per
//! section; choices are enums, parsed once at load.
//!
//! Each service loads only the [`Section`]s it uses: a bad value in a section it does not
//! read (a monitor's sink URL, for the collector) does not stop it. Loaders take the
//! environment as a parameter, so tests never mutate the process's own.

mod analyzers;
mod auth;
mod broker;
mod collector;
mod gateway;
mod gelf;
mod monitor;
mod otlp;
mod retention;
mod search;
mod source;
mod store;
mod syslog;
mod telemetry;
mod tls;

use std::collections::HashMap;

use config::{Config, Environment, File, FileFormat};
use serde::{Deserialize, Serialize};

pub use analyzers::{AnalyzerSettings, StickyBy};
pub use auth::{AuthSettings, KeySetting, Scope};
pub use broker::{BrokerSettings, DeadLetterStrategy, QueueType};
pub use collector::CollectorSettings;
pub use gateway::GatewaySettings;
pub use gelf::GelfSettings;
pub use monitor::{AlertRule, MonitorSettings, RuleKind, SinkKind, SinkSettings};
pub use otlp::OtlpSettings;
pub use retention::{parse_schedule, RetentionPolicy, RetentionSettings};
pub use search::SearchSettings;
pub use source::{MessageFormat, SourceSettings, TrafficProfile};
pub use store::{StoreSettings, WriteAcknowledgment};
pub use syslog::SyslogSettings;
pub use telemetry::{LogFormat, TelemetrySettings};
pub use tls::TlsSettings;

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
    /// A value of the wrong type or shape, named by its path (`broker.storage_queue_type`).
    #[error("invalid setting `{setting}`: {reason}")]
    Value { setting: String, reason: String },
    #[error("unknown settings section `{0}`")]
    UnknownSection(String),
    #[error("invalid setting `{setting}`: {reason}")]
    Invalid {
        setting: &'static str,
        reason: String,
    },
}

/// The one way a check refuses a value: naming the setting and saying why.
pub(crate) fn invalid<T>(
    setting: &'static str,
    reason: impl Into<String>,
) -> Result<T, SettingsError> {
    Err(SettingsError::Invalid {
        setting,
        reason: reason.into(),
    })
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
    /// analyzer_service.
    pub analyzers: AnalyzerSettings,
    /// API keys of every HTTP surface (search, gateway, analyzers, admin routes).
    pub auth: AuthSettings,
    /// HTTPS for the HTTP listeners (search, gateway, analyzers).
    pub tls: TlsSettings,
    /// The gateway's OTLP/HTTP listener.
    pub otlp: OtlpSettings,
    /// The gateway's syslog listeners.
    pub syslog: SyslogSettings,
    /// The gateway's GELF listeners.
    pub gelf: GelfSettings,
}

/// A section of the settings, as a service names the ones it uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Broker,
    Store,
    Telemetry,
    Collector,
    Source,
    Retention,
    Search,
    Monitor,
    Gateway,
    Analyzers,
    Auth,
    Tls,
    Otlp,
    Syslog,
    Gelf,
}

impl Section {
    pub const ALL: [Section; 15] = [
        Section::Broker,
        Section::Store,
        Section::Telemetry,
        Section::Collector,
        Section::Source,
        Section::Retention,
        Section::Search,
        Section::Monitor,
        Section::Gateway,
        Section::Analyzers,
        Section::Auth,
        Section::Tls,
        Section::Otlp,
        Section::Syslog,
        Section::Gelf,
    ];

    /// The section's name in files and in `LOGAGG__<SECTION>__…`.
    pub fn name(self) -> &'static str {
        match self {
            Section::Broker => "broker",
            Section::Store => "store",
            Section::Telemetry => "telemetry",
            Section::Collector => "collector",
            Section::Source => "source",
            Section::Retention => "retention",
            Section::Search => "search",
            Section::Monitor => "monitor",
            Section::Gateway => "gateway",
            Section::Analyzers => "analyzers",
            Section::Auth => "auth",
            Section::Tls => "tls",
            Section::Otlp => "otlp",
            Section::Syslog => "syslog",
            Section::Gelf => "gelf",
        }
    }
}

impl Settings {
    /// Loads `sections` from the files and the given environment and validates them; every
    /// other section keeps its defaults, unread.
    pub fn load(
        env: &HashMap<String, String>,
        sections: &[Section],
    ) -> Result<Settings, SettingsError> {
        let layered = layered_config(env)?;
        let top_level: HashMap<String, config::Value> = layered.clone().try_deserialize()?;
        if let Some(unknown) = top_level
            .keys()
            .find(|key| !Section::ALL.iter().any(|section| section.name() == *key))
        {
            return Err(SettingsError::UnknownSection(unknown.clone()));
        }
        let mut settings = Settings::default();
        for section in sections {
            settings.read_section(&layered, *section)?;
        }
        settings.validate(sections)?;
        Ok(settings)
    }

    /// Loads every section (tools and tests that check a whole configuration).
    pub fn load_all(env: &HashMap<String, String>) -> Result<Settings, SettingsError> {
        Settings::load(env, &Section::ALL)
    }

    /// Loads `sections` from the process environment.
    pub fn from_process_env(sections: &[Section]) -> Result<Settings, SettingsError> {
        Settings::load(&std::env::vars().collect(), sections)
    }

    fn read_section(&mut self, layered: &Config, section: Section) -> Result<(), SettingsError> {
        let name = section.name();
        match section {
            Section::Broker => self.broker = typed_section(layered, name)?,
            Section::Store => self.store = typed_section(layered, name)?,
            Section::Telemetry => self.telemetry = typed_section(layered, name)?,
            Section::Collector => self.collector = typed_section(layered, name)?,
            Section::Source => self.source = typed_section(layered, name)?,
            Section::Retention => self.retention = typed_section(layered, name)?,
            Section::Search => self.search = typed_section(layered, name)?,
            Section::Monitor => self.monitor = typed_section(layered, name)?,
            Section::Gateway => self.gateway = typed_section(layered, name)?,
            Section::Analyzers => self.analyzers = typed_section(layered, name)?,
            Section::Auth => self.auth = typed_section(layered, name)?,
            Section::Tls => self.tls = typed_section(layered, name)?,
            Section::Otlp => self.otlp = typed_section(layered, name)?,
            Section::Syslog => self.syslog = typed_section(layered, name)?,
            Section::Gelf => self.gelf = typed_section(layered, name)?,
        }
        Ok(())
    }

    /// Checks what deserialisation cannot (ranges, names, cross-field rules) in `sections`.
    pub fn validate(&self, sections: &[Section]) -> Result<(), SettingsError> {
        for section in sections {
            match section {
                Section::Broker => self.broker.validate()?,
                Section::Store => self.store.validate()?,
                Section::Telemetry => self.telemetry.validate()?,
                Section::Collector => self.collector.validate()?,
                Section::Source => self.source.validate()?,
                Section::Retention => self.retention.validate()?,
                Section::Search => self.search.validate()?,
                Section::Monitor => self.monitor.validate()?,
                Section::Gateway => self.gateway.validate()?,
                Section::Analyzers => self.analyzers.validate()?,
                Section::Auth => self.auth.validate()?,
                Section::Tls => self.tls.validate()?,
                Section::Otlp => self.otlp.validate()?,
                Section::Syslog => self.syslog.validate()?,
                Section::Gelf => self.gelf.validate()?,
            }
        }
        Ok(())
    }
}

/// Section `name` of the layered settings as its type; an error names the setting's path.
fn typed_section<T: serde::de::DeserializeOwned + Default>(
    layered: &Config,
    name: &'static str,
) -> Result<T, SettingsError> {
    let value: config::Value = match layered.get(name) {
        Ok(value) => value,
        // A section whose defaults are all empty (`[auth]`: no key) is no table at all
        // until a file or the environment gives it one.
        Err(config::ConfigError::NotFound(_)) => return Ok(T::default()),
        Err(error) => return Err(error.into()),
    };
    serde_path_to_error::deserialize(value).map_err(|error| SettingsError::Value {
        setting: format!("{name}.{}", error.path()),
        reason: error.inner().to_string(),
    })
}

/// Defaults, the default file, the named file and the environment, in that order.
fn layered_config(env: &HashMap<String, String>) -> Result<Config, SettingsError> {
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
    Ok(builder
        .add_source(
            Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .list_separator(",")
                .with_list_parse_key("source.services")
                .with_list_parse_key("broker.urls")
                .with_list_parse_key("search.api_keys")
                .with_list_parse_key("gateway.api_keys")
                .with_list_parse_key("analyzers.api_keys")
                .with_list_parse_key("analyzers.binding_keys")
                .try_parsing(true)
                .source(Some(overrides)),
        )
        .build()?)
}

/// Each key at least [`MIN_API_KEY_BYTES`] printable ASCII characters without spaces.
pub(crate) fn validate_api_keys(
    setting: &'static str,
    keys: &[String],
) -> Result<(), SettingsError> {
    if keys.iter().any(|key| {
        key.len() < MIN_API_KEY_BYTES || !key.bytes().all(|byte| byte.is_ascii_graphic())
    }) {
        return invalid(
            setting,
            "each key must be at least 16 printable ASCII characters without spaces",
        );
    }
    Ok(())
}

/// Shortest API key accepted: long enough that guessing is hopeless.
const MIN_API_KEY_BYTES: usize = 16;

/// A queue or exchange name the broker accepts and that is ours to declare.
pub(crate) fn validate_broker_name(setting: &'static str, name: &str) -> Result<(), SettingsError> {
    if name.is_empty() || name.len() > 255 || name.starts_with("amq.") {
        return invalid(setting, "must be 1-255 bytes and not start with `amq.`");
    }
    Ok(())
}

/// An address like `0.0.0.0:5000`.
/// Serde for a [`Duration`](std::time::Duration) kept as whole milliseconds: a key ending
/// `_ms` stays a number in files and the environment, and is a `Duration` from load on.
pub(crate) mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(u64::try_from(value.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }
}

/// Serde for a [`Duration`](std::time::Duration) kept as whole seconds (keys ending
/// `_seconds`).
pub(crate) mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_secs)
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
        let settings = Settings::load_all(&env(&[])).unwrap();
        assert_eq!(settings.broker.exchange, "logs_exchange");
        assert_eq!(settings, Settings::default());
    }

    #[test]
    fn broker_urls_are_a_comma_separated_list_checked_at_load() {
        let settings = Settings::load_all(&env(&[(
            "LOGAGG__BROKER__URLS",
            "amqp://u:p@10.0.0.1:5672/%2f,amqp://u:p@10.0.0.2:5672/%2f",
        )]))
        .unwrap();
        assert_eq!(settings.broker.nodes().len(), 2);
        assert_eq!(
            Settings::default().broker.nodes(),
            vec![Settings::default().broker.url.as_str()]
        );
        let error = Settings::load_all(&env(&[(
            "LOGAGG__BROKER__URLS",
            "amqp://u:secret@h:5672/%2f,http://nope",
        )]))
        .unwrap_err()
        .to_string();
        assert!(error.contains("broker.urls"), "{error}");
        assert!(
            !error.contains("secret"),
            "no credentials in errors: {error}"
        );
    }

    #[test]
    fn durations_and_addresses_are_typed_at_load() {
        let settings = Settings::load_all(&env(&[
            ("LOGAGG__COLLECTOR__BATCH_MAX_AGE_MS", "250"),
            ("LOGAGG__COLLECTOR__SHUTDOWN_GRACE_SECONDS", "3"),
            ("LOGAGG__SEARCH__LISTEN", "127.0.0.1:5001"),
        ]))
        .unwrap();
        assert_eq!(
            settings.collector.batch_max_age_ms,
            std::time::Duration::from_millis(250)
        );
        assert_eq!(
            settings.collector.shutdown_grace_seconds,
            std::time::Duration::from_secs(3)
        );
        assert_eq!(
            settings.search.listen,
            std::net::SocketAddr::from(([127, 0, 0, 1], 5001))
        );
        for (key, value, setting) in [
            ("LOGAGG__SEARCH__LISTEN", "localhost", "search.listen"),
            (
                "LOGAGG__COLLECTOR__RETRY_MAX_MS",
                "soon",
                "collector.retry_max_ms",
            ),
        ] {
            let error = Settings::load_all(&env(&[(key, value)])).unwrap_err();
            assert!(error.to_string().contains(setting), "{error}");
        }
    }

    #[test]
    fn environment_overrides_defaults_with_typed_values() {
        let settings = Settings::load_all(&env(&[
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
        let error = Settings::load_all(&env(&[("LOGAGG__COLLECTOR__BATCH_SIZ", "5")])).unwrap_err();
        assert!(error.to_string().contains("batch_siz"), "{error}");
        let error = Settings::load_all(&env(&[("LOGAGG__BROKER__STORAGE_QUEUE_TYPE", "stream")]))
            .unwrap_err();
        assert!(
            error.to_string().contains("broker.storage_queue_type"),
            "{error}"
        );
        let error = Settings::load_all(&env(&[("LOGAGG__COLLECTOR__PREFETCH", "0")])).unwrap_err();
        assert!(error.to_string().contains("collector.prefetch"), "{error}");
        let error =
            Settings::load_all(&env(&[("LOGAGG__SOURCE__SERVICES", "ok,bad name")])).unwrap_err();
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
            let error = Settings::load_all(&env(&batch)).unwrap_err();
            assert!(
                error.to_string().contains("source.batch_records"),
                "{error}"
            );
        }
        assert!(Settings::load_all(&env(&[("LOGAGG__SOURCE__BATCH_RECORDS", "50")])).is_ok());
        for (key, value, setting) in [
            (
                "LOGAGG__STORE__BLOCKS_COLLECTION",
                "",
                "store.blocks_collection",
            ),
            (
                "LOGAGG__STORE__COMMON_WORDS_COLLECTION",
                "",
                "store.common_words_collection",
            ),
        ] {
            let error = Settings::load_all(&env(&[(key, value)])).unwrap_err();
            assert!(
                error.to_string().contains(setting),
                "{key}={value}: {error}"
            );
        }
        assert!(Settings::load_all(&env(&[("LOGAGG__STORE__BLOCKS_COLLECTION", "b")])).is_ok());
    }

    #[test]
    fn retention_settings_fail_with_the_setting_named() {
        let error =
            Settings::load_all(&env(&[("LOGAGG__RETENTION__SCHEDULE", "every day")])).unwrap_err();
        assert!(error.to_string().contains("retention.schedule"), "{error}");
        let error = Settings::load_all(&env(&[("LOGAGG__RETENTION__DEFAULT_MAX_AGE_DAYS", "-3")]))
            .unwrap_err();
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
        assert!(settings.validate(&Section::ALL).is_ok());
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
            let error = settings.validate(&Section::ALL).unwrap_err().to_string();
            assert!(error.contains("retention.policies"), "{error}");
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn a_service_reads_and_checks_only_its_own_sections() {
        let bad_monitor = env(&[
            ("LOGAGG__MONITOR__TICK_MS", "0"),
            ("LOGAGG__MONITOR__MAX_SERVICES", "many"),
            ("LOGAGG__COLLECTOR__BATCH_SIZE", "250"),
        ]);
        let collector = [
            Section::Broker,
            Section::Store,
            Section::Telemetry,
            Section::Collector,
        ];
        let settings = Settings::load(&bad_monitor, &collector).expect("the collector starts");
        assert_eq!(settings.collector.batch_size, 250);
        assert_eq!(settings.monitor, MonitorSettings::default(), "left unread");
        let error = Settings::load(&bad_monitor, &[Section::Monitor]).unwrap_err();
        assert!(
            error.to_string().contains("monitor.max_services"),
            "{error}"
        );
        let error =
            Settings::load(&env(&[("LOGAGG__COLECTOR__BATCH_SIZE", "5")]), &collector).unwrap_err();
        assert!(error.to_string().contains("colector"), "{error}");
    }

    #[test]
    fn choices_are_enums_parsed_once() {
        let settings = Settings::load_all(&env(&[
            ("LOGAGG__BROKER__STORAGE_QUEUE_TYPE", "classic"),
            ("LOGAGG__BROKER__DEAD_LETTER_STRATEGY", "at-most-once"),
            ("LOGAGG__STORE__WRITE_CONCERN_W", "majority"),
            ("LOGAGG__TELEMETRY__LOG_FORMAT", "json"),
            ("LOGAGG__SOURCE__FORMAT", "plain"),
        ]))
        .unwrap();
        assert_eq!(settings.broker.storage_queue_type, QueueType::Classic);
        assert_eq!(
            settings.broker.dead_letter_strategy,
            DeadLetterStrategy::AtMostOnce
        );
        assert_eq!(
            settings.store.write_concern_w,
            WriteAcknowledgment::Majority
        );
        assert_eq!(settings.telemetry.log_format, LogFormat::Json);
        assert_eq!(settings.source.format, MessageFormat::Plain);
        let nodes = Settings::load_all(&env(&[("LOGAGG__STORE__WRITE_CONCERN_W", "2")])).unwrap();
        assert_eq!(nodes.store.write_concern_w, WriteAcknowledgment::Nodes(2));
        let error =
            Settings::load_all(&env(&[("LOGAGG__STORE__WRITE_CONCERN_W", "most")])).unwrap_err();
        assert!(
            error.to_string().contains("store.write_concern_w"),
            "{error}"
        );
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
        let settings = Settings::load_all(&env(&[
            (CONFIG_FILE_ENV, &path_text),
            ("LOGAGG__COLLECTOR__PREFETCH", "1200"),
        ]))
        .unwrap();
        assert_eq!(settings.collector.batch_size, 300);
        assert_eq!(settings.collector.prefetch, 1200);
        let missing = Settings::load_all(&env(&[(CONFIG_FILE_ENV, "/nonexistent/logagg.toml")]));
        assert!(missing.is_err());
    }

    #[test]
    fn auth_keys_load_from_a_file_and_bad_ones_refuse_to_start_naming_the_setting() {
        let directory = std::env::temp_dir().join(format!("logagg-auth-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let load = |name: &str, text: &str| {
            let path = directory.join(name);
            std::fs::write(&path, text).unwrap();
            Settings::load_all(&env(&[(CONFIG_FILE_ENV, &path.to_string_lossy())]))
        };
        let hash = "a".repeat(64);
        let settings = load(
            "good.toml",
            &format!(
                "[[auth.keys]]\nname = \"checkout-team\"\nsha256 = \"{hash}\"\nscopes = [\"read\", \"ingest\"]\nservices = [\"checkout\", \"cart*\"]\n\n[[auth.keys]]\nname = \"ops\"\nsha256 = \"{hash}\"\nscopes = [\"admin\"]\n"
            ),
        )
        .unwrap();
        assert_eq!(settings.auth.keys.len(), 2);
        assert_eq!(
            settings.auth.keys[0].scopes,
            vec![Scope::Read, Scope::Ingest]
        );
        assert_eq!(
            settings.auth.keys[0].services.as_deref(),
            Some(&["checkout".to_owned(), "cart*".to_owned()][..])
        );
        assert_eq!(settings.auth.keys[1].services, None);

        let refused = |name: &str, text: String, setting: &str| {
            let error = load(name, &text).expect_err(&text).to_string();
            assert!(error.contains(setting), "{setting}: {error}");
        };
        let key = |sha256: &str, scopes: &str, services: &str| {
            format!(
                "[[auth.keys]]\nname = \"k\"\nsha256 = \"{sha256}\"\nscopes = {scopes}\n{services}"
            )
        };
        refused(
            "short-hash.toml",
            key("abc", "[\"read\"]", ""),
            "auth.keys.sha256",
        );
        refused(
            "not-hex.toml",
            key(&"g".repeat(64), "[\"read\"]", ""),
            "auth.keys.sha256",
        );
        refused("no-scope.toml", key(&hash, "[]", ""), "auth.keys.scopes");
        refused("bad-scope.toml", key(&hash, "[\"write\"]", ""), "auth");
        refused(
            "bad-pattern.toml",
            key(&hash, "[\"read\"]", "services = [\"check out\"]\n"),
            "auth.keys.services",
        );
        refused(
            "same-name.toml",
            format!(
                "{}\n{}",
                key(&hash, "[\"read\"]", ""),
                key(&hash, "[\"read\"]", "")
            ),
            "auth.keys.name",
        );
        refused(
            "short-legacy.toml",
            "[search]\napi_keys = [\"short\"]\n".to_owned(),
            "search.api_keys",
        );
        let _ = std::fs::remove_dir_all(&directory);
    }

    #[test]
    fn tls_wants_both_files_and_names_the_one_that_is_missing() {
        let half = Settings::load_all(&env(&[("LOGAGG__TLS__CERT_FILE", "Cargo.toml")]));
        assert!(half.expect_err("half").to_string().contains("`tls`"));
        let missing = Settings::load_all(&env(&[
            ("LOGAGG__TLS__CERT_FILE", "Cargo.toml"),
            ("LOGAGG__TLS__KEY_FILE", "/nonexistent/server.key"),
        ]));
        assert!(missing
            .expect_err("missing")
            .to_string()
            .contains("tls.key_file"));
        let both = Settings::load_all(&env(&[
            ("LOGAGG__TLS__CERT_FILE", "Cargo.toml"),
            ("LOGAGG__TLS__KEY_FILE", "Cargo.toml"),
        ]))
        .expect("both set");
        assert!(both.tls.files().is_some());
    }
}
