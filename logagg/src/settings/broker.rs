//! `[broker]`: the RabbitMQ connection and the topology every service declares.

use serde::{Deserialize, Serialize};

use super::{invalid, validate_broker_name, SettingsError};

/// `x-queue-type` of the storage and dead-letter queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    /// Replicated over a cluster's nodes (Raft): the production choice.
    Quorum,
    /// One node's queue.
    Classic,
}

impl QueueType {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Quorum => "quorum",
            QueueType::Classic => "classic",
        }
    }
}

/// `x-dead-letter-strategy` of the storage queue (quorum queues only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeadLetterStrategy {
    /// Dead letters are never lost (RabbitMQ 3.10+).
    AtLeastOnce,
    AtMostOnce,
}

impl DeadLetterStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterStrategy::AtLeastOnce => "at-least-once",
            DeadLetterStrategy::AtMostOnce => "at-most-once",
        }
    }
}

/// RabbitMQ connection and topology. Every service declares the same topology at start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerSettings {
    /// AMQP URI with credentials and vhost. Never logged.
    pub url: String,
    /// AMQP URIs of a cluster's nodes, tried in turn on every connect and reconnect (each
    /// process starts at a random one, so consumers spread over the nodes); empty: `url`
    /// alone. From the environment: comma-separated. Never logged.
    pub urls: Vec<String>,
    /// PEM file of the certificate authorities that sign the nodes' certificates, trusted
    /// for `amqps://` URLs besides the bundled Mozilla roots. Certificates are always
    /// verified (name and chain); unset: the bundled roots alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// Durable topic exchange that publishers send `<service>.<severity>` to.
    pub exchange: String,
    /// Durable queue bound to every key, consumed by the collectors with manual acks.
    pub storage_queue: String,
    /// `x-queue-type` of the storage queue: `quorum` (replicated, default) or `classic`.
    pub storage_queue_type: QueueType,
    /// Deliveries of one message before the broker dead-letters it instead of requeueing
    /// (`x-delivery-limit`; quorum queues only). Stops a message that crashes collectors from
    /// looping forever.
    pub delivery_limit: u32,
    /// Replicas of the quorum storage and dead-letter queues when they are first declared
    /// (`x-quorum-initial-group-size`): 3 suits a cluster of 3 or more nodes (a majority
    /// survives one node lost); 0, the default, sends nothing and RabbitMQ places a replica
    /// on every node. RabbitMQ refuses a declare whose value differs from the existing
    /// queue's (PRECONDITION_FAILED), so set it before the queues first exist.
    pub quorum_group_size: u32,
    /// `x-dead-letter-strategy` of the storage queue: `at-least-once` (dead letters are never
    /// lost; needs RabbitMQ 3.10+) or `at-most-once`.
    pub dead_letter_strategy: DeadLetterStrategy,
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
    #[serde(with = "super::millis")]
    pub reconnect_initial_ms: std::time::Duration,
    /// Longest wait between reconnect attempts, milliseconds.
    #[serde(with = "super::millis")]
    pub reconnect_max_ms: std::time::Duration,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        Self {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            urls: Vec::new(),
            tls_ca_file: None,
            exchange: "logs_exchange".into(),
            storage_queue: "logs.storage".into(),
            storage_queue_type: QueueType::Quorum,
            delivery_limit: 20,
            quorum_group_size: 0,
            dead_letter_strategy: DeadLetterStrategy::AtLeastOnce,
            monitoring_queue: "logs.monitoring".into(),
            monitoring_queue_durable: false,
            monitoring_queue_max_length: 100_000,
            monitoring_message_ttl_ms: 60_000,
            dead_letter_exchange: "logs.dead_letter".into(),
            dead_letter_queue: "logs.dead_letter".into(),
            alerts_exchange: "logs.alerts".into(),
            heartbeat_seconds: 30,
            connection_name: String::new(),
            reconnect_initial_ms: std::time::Duration::from_millis(200),
            reconnect_max_ms: std::time::Duration::from_millis(10_000),
        }
    }
}

impl BrokerSettings {
    /// The nodes to connect to: `urls`, or `url` alone.
    pub fn nodes(&self) -> Vec<&str> {
        if self.urls.is_empty() {
            vec![self.url.as_str()]
        } else {
            self.urls.iter().map(String::as_str).collect()
        }
    }

    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        if let Some(path) = &self.tls_ca_file {
            if let Err(error) = std::fs::read(path) {
                return invalid("broker.tls_ca_file", format!("{}: {error}", path.display()));
            }
        }
        for node in self.nodes() {
            if let Err(reason) = node.parse::<lapin::uri::AMQPUri>() {
                let setting = if self.urls.is_empty() {
                    "broker.url"
                } else {
                    "broker.urls"
                };
                // The reason never quotes the URI: it holds credentials.
                return invalid(setting, format!("not an AMQP URI: {reason}"));
            }
        }
        if self.delivery_limit == 0 {
            return invalid("broker.delivery_limit", "must be at least 1");
        }
        for (setting, name) in [
            ("broker.exchange", &self.exchange),
            ("broker.storage_queue", &self.storage_queue),
            ("broker.monitoring_queue", &self.monitoring_queue),
            ("broker.dead_letter_exchange", &self.dead_letter_exchange),
            ("broker.dead_letter_queue", &self.dead_letter_queue),
            ("broker.alerts_exchange", &self.alerts_exchange),
        ] {
            validate_broker_name(setting, name)?;
        }
        Ok(())
    }
}
