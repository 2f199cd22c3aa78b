//! RabbitMQ connections and publishing: connect (with backoff), publisher-confirm channels,
//! and the message properties every log carries.

use std::str::FromStr;

use chrono::Utc;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::tcp::OwnedTLSConfig;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::backoff::Backoff;
use crate::settings::BrokerSettings;

/// AMQP delivery mode 2: the broker writes the message to disk.
pub const PERSISTENT: u8 = 2;
pub const CONTENT_TYPE_JSON: &str = "application/json";
pub const CONTENT_TYPE_TEXT: &str = "text/plain";

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("invalid broker URL: {0}")]
    InvalidUrl(String),
    #[error("could not connect to RabbitMQ: {0}")]
    Connect(#[source] lapin::Error),
    #[error("RabbitMQ did not answer within {0:?}")]
    ConnectTimeout(std::time::Duration),
    #[error("reading broker.tls_ca_file {path}: {source}")]
    CaFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("could not declare {kind} `{name}`: {source}")]
    Declare {
        kind: &'static str,
        name: String,
        #[source]
        source: lapin::Error,
    },
    #[error("broker operation failed: {0}")]
    Operation(#[from] lapin::Error),
    #[error("broker refused (nacked) the message")]
    Nacked,
    #[error("no queue is bound to receive the message (returned as unroutable)")]
    Unroutable,
    #[error("the broker cancelled the consumer (queue deleted, or node down)")]
    ConsumerCancelled,
}

impl BrokerError {
    /// The broker already has this exchange or queue with other arguments (`PRECONDITION_FAILED`
    /// on declare). Retrying cannot fix it: an operator must delete it or change the setting.
    pub fn is_topology_mismatch(&self) -> bool {
        let BrokerError::Declare { source, .. } = self else {
            return false;
        };
        matches!(
            source.kind(),
            lapin::ErrorKind::ProtocolError(error)
                if matches!(
                    error.kind(),
                    lapin::protocol::AMQPErrorKind::Soft(lapin::protocol::AMQPSoftError::PRECONDITIONFAILED)
                )
        )
    }

    /// What an operator should do about this error, when there is something to do.
    pub fn hint(&self) -> Option<String> {
        match self {
            BrokerError::Declare { kind, name, .. } if self.is_topology_mismatch() => Some(format!(
                "the {kind} `{name}` exists with other arguments than these settings declare; \
                 delete it (`rabbitmqctl delete_queue {name}` for a queue; its messages go with it) \
                 or name another one in settings"
            )),
            _ => None,
        }
    }

    pub(crate) fn declare(kind: &'static str, name: &str, source: lapin::Error) -> Self {
        BrokerError::Declare {
            kind,
            name: name.to_owned(),
            source,
        }
    }
}

/// How long one node of several may take to accept a connection before the next is tried
/// (a paused or cut-off node accepts nothing and refuses nothing).
const NODE_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Gauge per node: 1 for the node this process last connected to, 0 for the others.
pub const CONNECTED_NODE_METRIC: &str = "logagg_broker_connected_node";

/// The node this process tries first: the one it last connected to, or at first a random
/// one, so that many processes given the same list spread over the nodes.
static PREFERRED_NODE: std::sync::OnceLock<std::sync::atomic::AtomicUsize> =
    std::sync::OnceLock::new();
/// `host:port` of the node this process last connected to, for `/healthz`.
static CONNECTED_NODE: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// `host:port` of the node this process last connected to (no credentials), if any.
pub fn connected_node() -> Option<String> {
    CONNECTED_NODE.lock().ok().and_then(|node| node.clone())
}

/// The order to try `count` nodes in, starting at `first`.
fn node_order(count: usize, first: usize) -> impl Iterator<Item = usize> {
    (0..count).map(move |offset| (first + offset) % count.max(1))
}

/// Opens a connection named after the service (shown in the RabbitMQ management UI) to the
/// first node of `broker.urls` (or `broker.url`) that accepts it, trying them in turn from
/// the one this process last used.
pub async fn connect(settings: &BrokerSettings, name: &str) -> Result<Connection, BrokerError> {
    let count = settings.nodes().len().max(1);
    let preferred = PREFERRED_NODE
        .get_or_init(|| std::sync::atomic::AtomicUsize::new(rand::random_range(0..count)));
    let first = preferred.load(std::sync::atomic::Ordering::Relaxed) % count;
    connect_from(settings, name, first).await
}

/// [`connect`], trying the nodes in turn from node `first`: the node that accepts becomes
/// this process's preferred one.
pub async fn connect_from(
    settings: &BrokerSettings,
    name: &str,
    first: usize,
) -> Result<Connection, BrokerError> {
    let nodes = settings
        .nodes()
        .into_iter()
        .map(|url| {
            let uri = AMQPUri::from_str(url).map_err(BrokerError::InvalidUrl)?;
            let label = format!("{}:{}", uri.authority.host, uri.authority.port);
            Ok((uri, label))
        })
        .collect::<Result<Vec<(AMQPUri, String)>, BrokerError>>()?;
    let preferred = PREFERRED_NODE.get_or_init(|| std::sync::atomic::AtomicUsize::new(first));
    let mut last_error = None;
    for index in node_order(nodes.len(), first) {
        let (uri, node) = &nodes[index];
        let attempt = connect_node(settings, uri.clone(), name);
        let result = if nodes.len() > 1 {
            tokio::time::timeout(NODE_CONNECT_TIMEOUT, attempt)
                .await
                .unwrap_or(Err(BrokerError::ConnectTimeout(NODE_CONNECT_TIMEOUT)))
        } else {
            attempt.await
        };
        match result {
            Ok(connection) => {
                preferred.store(index, std::sync::atomic::Ordering::Relaxed);
                for (other, (_, label)) in nodes.iter().enumerate() {
                    let value = if other == index { 1.0 } else { 0.0 };
                    metrics::gauge!(CONNECTED_NODE_METRIC, "node" => label.clone()).set(value);
                }
                info!(connection = name, %node, "connected to RabbitMQ");
                if let Ok(mut connected) = CONNECTED_NODE.lock() {
                    *connected = Some(node.clone());
                }
                return Ok(connection);
            }
            Err(error) => {
                if nodes.len() > 1 {
                    warn!(%node, %error, "RabbitMQ node unreachable; trying the next");
                }
                last_error = Some(error);
            }
        }
    }
    Err(last_error.unwrap_or_else(|| BrokerError::InvalidUrl("no broker URL".into())))
}

async fn connect_node(
    settings: &BrokerSettings,
    mut uri: AMQPUri,
    name: &str,
) -> Result<Connection, BrokerError> {
    uri.query.heartbeat = Some(settings.heartbeat_seconds);
    let connection_name = if settings.connection_name.is_empty() {
        format!("{name}@{}", host_name())
    } else {
        settings.connection_name.clone()
    };
    let properties =
        ConnectionProperties::default().with_connection_name(LongString::from(connection_name));
    // `amqps://`: the node's certificate is verified against the bundled roots plus the CA
    // file's, re-read on each connect so a renewed CA needs no restart.
    let tls = match &settings.tls_ca_file {
        Some(path) if uri.scheme == AMQPScheme::AMQPS => OwnedTLSConfig {
            identity: None,
            cert_chain: Some(std::fs::read_to_string(path).map_err(|source| {
                BrokerError::CaFile {
                    path: path.display().to_string(),
                    source,
                }
            })?),
        },
        _ => OwnedTLSConfig::default(),
    };
    let runtime = lapin::runtime::default_runtime().map_err(BrokerError::Connect)?;
    Connection::connect_uri_with_config(uri, properties, tls, runtime)
        .await
        .map_err(BrokerError::Connect)
}

/// Connects, retrying with backoff until it succeeds or `shutdown` is cancelled (`None`).
pub async fn connect_with_backoff(
    settings: &BrokerSettings,
    name: &str,
    shutdown: &CancellationToken,
) -> Option<Connection> {
    let mut backoff = Backoff::new(settings.reconnect_initial_ms, settings.reconnect_max_ms);
    loop {
        match connect(settings, name).await {
            Ok(connection) => {
                info!(connection = name, "connected to RabbitMQ");
                return Some(connection);
            }
            Err(BrokerError::InvalidUrl(reason)) => {
                tracing::error!(%reason, "broker.url(s) invalid; not retrying");
                return None;
            }
            Err(error) => {
                let delay = backoff.next_delay();
                warn!(%error, retry_in_ms = delay.as_millis() as u64, "RabbitMQ unreachable");
                if !crate::shutdown::sleep_unless_cancelled(delay, shutdown).await {
                    return None;
                }
            }
        }
    }
}

/// Opens a channel in publisher-confirm mode.
pub async fn confirm_channel(connection: &Connection) -> Result<Channel, BrokerError> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

/// Properties of a published log: persistent, timestamped, typed and identified.
pub fn log_properties(content_type: &str, message_id: &str) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_content_type(ShortString::from(content_type))
        .with_message_id(ShortString::from(message_id))
        .with_timestamp(Utc::now().timestamp().max(0) as u64)
}

/// Publishes one message and resolves with the broker's confirmation, owning its inputs so
/// that many can be in flight at once (in a `FuturesUnordered`). lapin resolves
/// `basic_publish` only once its I/O loop has written the frames, so publishing one message
/// after another costs a round trip each: about 10k msg/s here, against 20k+ concurrently.
pub async fn publish_owned(
    channel: Channel,
    exchange: ShortString,
    routing_key: String,
    payload: Vec<u8>,
    properties: BasicProperties,
) -> Result<Confirmation, BrokerError> {
    let confirm = channel
        .basic_publish(
            exchange,
            ShortString::from(routing_key),
            MANDATORY,
            &payload,
            properties,
        )
        .await?;
    Ok(confirm.await?)
}

/// Mandatory publishing: a message no queue would receive comes back (`basic.return`)
/// instead of being confirmed and dropped, so "confirmed" always means "queued".
pub(crate) const MANDATORY: BasicPublishOptions = BasicPublishOptions {
    mandatory: true,
    immediate: false,
};

/// Whether a confirmation means the message is safely queued: acked and not returned.
pub fn is_queued(confirmation: &Confirmation) -> bool {
    matches!(confirmation, Confirmation::Ack(None))
}

/// Publishes one message and waits for the broker's confirm; a nack is an error.
pub async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    payload: &[u8],
    properties: BasicProperties,
) -> Result<(), BrokerError> {
    match publish_and_confirm(channel, exchange, routing_key, payload, properties, true).await? {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_)) | Confirmation::Nack(Some(_)) => Err(BrokerError::Unroutable),
        Confirmation::Nack(None) => Err(BrokerError::Nacked),
        Confirmation::NotRequested => Ok(()),
    }
}

/// What the parser needs of a message: its routing key, body and AMQP properties.
pub fn envelope<'a>(
    routing_key: &'a str,
    body: &'a [u8],
    properties: &'a BasicProperties,
    received_at: chrono::DateTime<chrono::Utc>,
) -> crate::parse::Envelope<'a> {
    crate::parse::Envelope {
        routing_key,
        body,
        content_type: properties
            .content_type()
            .as_ref()
            .map(|value| value.as_str()),
        message_id: properties.message_id().as_ref().map(|value| value.as_str()),
        amqp_timestamp: *properties.timestamp(),
        received_at,
    }
}

/// `properties` marked for the dead-letter queue: the reason, its code, where it was
/// rejected and when, as the `x-logagg-*` headers of [`crate::topology`].
pub fn dead_letter_properties(
    properties: &BasicProperties,
    code: &str,
    reason: &str,
    source: &str,
) -> BasicProperties {
    use crate::topology::{
        HEADER_ERROR_CODE, HEADER_REASON, HEADER_REJECTED_AT, HEADER_SOURCE_QUEUE,
    };
    let mut headers = headers_of(properties);
    let text = |value: &str| AMQPValue::LongString(LongString::from(value));
    headers.insert(ShortString::from(HEADER_REASON), text(reason));
    headers.insert(ShortString::from(HEADER_ERROR_CODE), text(code));
    headers.insert(ShortString::from(HEADER_SOURCE_QUEUE), text(source));
    headers.insert(
        ShortString::from(HEADER_REJECTED_AT),
        text(&chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
    );
    properties
        .clone()
        .with_headers(headers)
        .with_delivery_mode(PERSISTENT)
}

/// Publishes an alert event and waits for the broker's confirm. Not mandatory: the alerts
/// exchange is for whoever binds to it, and an event nobody listens to is not an error.
pub async fn publish_alert(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    payload: &[u8],
    properties: BasicProperties,
) -> Result<(), BrokerError> {
    match publish_and_confirm(channel, exchange, routing_key, payload, properties, false).await? {
        Confirmation::Nack(_) => Err(BrokerError::Nacked),
        _ => Ok(()),
    }
}

async fn publish_and_confirm(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    payload: &[u8],
    properties: BasicProperties,
    mandatory: bool,
) -> Result<Confirmation, BrokerError> {
    let options = if mandatory {
        MANDATORY
    } else {
        BasicPublishOptions::default()
    };
    Ok(channel
        .basic_publish(
            ShortString::from(exchange),
            ShortString::from(routing_key),
            options,
            payload,
            properties,
        )
        .await?
        .await?)
}

/// Headers of a message as a mutable table (empty when it had none).
pub fn headers_of(properties: &BasicProperties) -> FieldTable {
    properties.headers().clone().unwrap_or_default()
}

/// This machine's name, for connection names and the record's `host` default.
pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|name| name.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_tried_in_turn_from_the_preferred_one() {
        assert_eq!(node_order(3, 1).collect::<Vec<_>>(), vec![1, 2, 0]);
        assert_eq!(node_order(3, 0).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(node_order(1, 0).collect::<Vec<_>>(), vec![0]);
        assert_eq!(node_order(0, 0).count(), 0);
    }
}
