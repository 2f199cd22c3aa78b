//! The RabbitMQ topology every service declares at start, and the header names on dead letters.
//!
//! Declarations are idempotent: running them again with the same settings changes nothing,
//! so any service may start first. Names and queue arguments all come from [`BrokerSettings`].

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

use crate::broker::BrokerError;
use crate::settings::{BrokerSettings, DeadLetterStrategy, QueueType};

/// Binding key matching every `<service>.<severity>` routing key.
pub const ALL_KEYS: &str = "#";
/// Dead-letter header: the human-readable reason a collector rejected the message.
pub const HEADER_REASON: &str = "x-logagg-reason";
/// Dead-letter header: the stable error code (`invalid_json`, `unknown_severity`, …).
pub const HEADER_ERROR_CODE: &str = "x-logagg-error";
/// Dead-letter header: the queue the message was rejected from.
pub const HEADER_SOURCE_QUEUE: &str = "x-logagg-source-queue";
/// Dead-letter header: when the collector rejected it, RFC 3339.
pub const HEADER_REJECTED_AT: &str = "x-logagg-rejected-at";
/// On a dead letter whose body was cut to its first `DEAD_LETTER_MAX_BODY` bytes: the size
/// of the body as published.
pub const HEADER_ORIGINAL_BYTES: &str = "x-logagg-original-bytes";
/// On a line dead-lettered from a batch message: the line's `start..end` byte range in the
/// batch's body (the batch's own message id is kept).
pub const HEADER_BATCH_LINE: &str = "x-logagg-batch-line";

/// Declares the exchange, the storage, monitoring and dead-letter queues, and their bindings.
pub async fn declare(channel: &Channel, settings: &BrokerSettings) -> Result<(), BrokerError> {
    declare_exchange(channel, settings).await?;
    channel
        .exchange_declare(
            settings.dead_letter_exchange.as_str().into(),
            ExchangeKind::Fanout,
            DURABLE_EXCHANGE,
            FieldTable::default(),
        )
        .await
        .map_err(|source| {
            BrokerError::declare(
                "dead-letter exchange",
                &settings.dead_letter_exchange,
                source,
            )
        })?;

    declare_queue(
        channel,
        &settings.dead_letter_queue,
        QueueDeclareOptions::durable(),
        dead_letter_queue_arguments(settings),
    )
    .await?;
    bind(
        channel,
        &settings.dead_letter_queue,
        &settings.dead_letter_exchange,
    )
    .await?;

    declare_queue(
        channel,
        &settings.storage_queue,
        QueueDeclareOptions::durable(),
        storage_queue_arguments(settings),
    )
    .await?;
    bind(channel, &settings.storage_queue, &settings.exchange).await?;

    // Not durable by default: the monitoring queue is a short-lived sample, and a durable
    // classic queue writes every persistent message to disk a second time (measured here:
    // publishing with confirms drops from 18.6k to 13.0k msg/s). Services re-declare it on
    // connect, so it comes back after a broker restart.
    declare_queue(
        channel,
        &settings.monitoring_queue,
        QueueDeclareOptions {
            durable: settings.monitoring_queue_durable,
            ..QueueDeclareOptions::default()
        },
        monitoring_queue_arguments(settings),
    )
    .await?;
    bind(channel, &settings.monitoring_queue, &settings.exchange).await?;
    Ok(())
}

const DURABLE_EXCHANGE: ExchangeDeclareOptions = ExchangeDeclareOptions {
    passive: false,
    durable: true,
    auto_delete: false,
    internal: false,
    nowait: false,
};

/// Declares the topic exchange publishers send to.
async fn declare_exchange(channel: &Channel, settings: &BrokerSettings) -> Result<(), BrokerError> {
    channel
        .exchange_declare(
            settings.exchange.as_str().into(),
            ExchangeKind::Topic,
            DURABLE_EXCHANGE,
            FieldTable::default(),
        )
        .await
        .map_err(|source| BrokerError::declare("exchange", &settings.exchange, source))
}

/// Declares the durable topic exchange alerts are published to.
pub async fn declare_alerts_exchange(
    channel: &Channel,
    settings: &BrokerSettings,
) -> Result<(), BrokerError> {
    channel
        .exchange_declare(
            settings.alerts_exchange.as_str().into(),
            ExchangeKind::Topic,
            DURABLE_EXCHANGE,
            FieldTable::default(),
        )
        .await
        .map_err(|source| BrokerError::declare("exchange", &settings.alerts_exchange, source))
}

/// Declares a search process's live-tail queue `name`: exclusive to this connection (gone
/// with it), kept while its consumer is cancelled, and holding at most `max_length` logs,
/// oldest dropped first. Not bound here: [`bind_tail_queue`] while any client tails. It
/// receives copies; the storage queue gets every log whatever becomes of a tail.
pub async fn declare_tail_queue(
    channel: &Channel,
    settings: &BrokerSettings,
    name: &str,
    max_length: usize,
) -> Result<(), BrokerError> {
    declare_exchange(channel, settings).await?;
    let mut arguments = FieldTable::default();
    argument(&mut arguments, "x-queue-type", text("classic"));
    argument(
        &mut arguments,
        "x-max-length",
        AMQPValue::LongLongInt(i64::try_from(max_length).unwrap_or(i64::MAX)),
    );
    argument(&mut arguments, "x-overflow", text("drop-head"));
    declare_queue(
        channel,
        name,
        QueueDeclareOptions {
            exclusive: true,
            ..QueueDeclareOptions::default()
        },
        arguments,
    )
    .await
}

/// Binds a live-tail queue to every key (a JSON body may name another service than its
/// routing key, so the tail filters records, not keys).
pub async fn bind_tail_queue(
    channel: &Channel,
    settings: &BrokerSettings,
    queue: &str,
) -> Result<(), BrokerError> {
    bind(channel, queue, &settings.exchange).await
}

/// Unbinds a live-tail queue: no copies while nobody tails. Unlike deleting a queue, this
/// cannot fail a publish routed to it at that moment.
pub async fn unbind_tail_queue(
    channel: &Channel,
    settings: &BrokerSettings,
    queue: &str,
) -> Result<(), BrokerError> {
    channel
        .queue_unbind(
            queue.into(),
            settings.exchange.as_str().into(),
            ALL_KEYS.into(),
            FieldTable::default(),
        )
        .await
        .map_err(BrokerError::Operation)
}

async fn declare_queue(
    channel: &Channel,
    name: &str,
    options: QueueDeclareOptions,
    arguments: FieldTable,
) -> Result<(), BrokerError> {
    channel
        .queue_declare(name.into(), options, arguments)
        .await
        .map_err(|source| BrokerError::declare("queue", name, source))?;
    Ok(())
}

async fn bind(channel: &Channel, queue: &str, exchange: &str) -> Result<(), BrokerError> {
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            ALL_KEYS.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|source| BrokerError::declare("binding", queue, source))
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

fn argument(table: &mut FieldTable, key: &str, value: AMQPValue) {
    table.insert(ShortString::from(key), value);
}

/// The storage queue: quorum by default, dead-lettering rejected and over-delivered messages.
pub fn storage_queue_arguments(settings: &BrokerSettings) -> FieldTable {
    let mut arguments = FieldTable::default();
    argument(
        &mut arguments,
        "x-queue-type",
        text(settings.storage_queue_type.as_str()),
    );
    argument(
        &mut arguments,
        "x-dead-letter-exchange",
        text(&settings.dead_letter_exchange),
    );
    if settings.storage_queue_type == QueueType::Quorum {
        argument(
            &mut arguments,
            "x-delivery-limit",
            AMQPValue::LongLongInt(i64::from(settings.delivery_limit)),
        );
        argument(
            &mut arguments,
            "x-dead-letter-strategy",
            text(settings.dead_letter_strategy.as_str()),
        );
        if settings.dead_letter_strategy == DeadLetterStrategy::AtLeastOnce {
            // RabbitMQ requires reject-publish overflow for at-least-once dead-lettering; with
            // no length limit set it never rejects anything.
            argument(&mut arguments, "x-overflow", text("reject-publish"));
        }
        quorum_group_size(&mut arguments, settings);
    }
    arguments
}

/// `x-quorum-initial-group-size` when `broker.quorum_group_size` is set. RabbitMQ compares
/// it when a queue is declared again, so it is only sent when asked for.
fn quorum_group_size(arguments: &mut FieldTable, settings: &BrokerSettings) {
    if settings.quorum_group_size > 0 {
        argument(
            arguments,
            "x-quorum-initial-group-size",
            AMQPValue::LongLongInt(i64::from(settings.quorum_group_size)),
        );
    }
}

/// The dead-letter queue keeps everything until an operator looks at it.
pub fn dead_letter_queue_arguments(settings: &BrokerSettings) -> FieldTable {
    let mut arguments = FieldTable::default();
    argument(
        &mut arguments,
        "x-queue-type",
        text(settings.storage_queue_type.as_str()),
    );
    if settings.storage_queue_type == QueueType::Quorum {
        quorum_group_size(&mut arguments, settings);
    }
    arguments
}

/// The monitoring queue is a bounded sample: old messages go first when the monitor lags.
pub fn monitoring_queue_arguments(settings: &BrokerSettings) -> FieldTable {
    let mut arguments = FieldTable::default();
    argument(&mut arguments, "x-queue-type", text("classic"));
    argument(
        &mut arguments,
        "x-max-length",
        AMQPValue::LongLongInt(i64::from(settings.monitoring_queue_max_length)),
    );
    argument(&mut arguments, "x-overflow", text("drop-head"));
    argument(
        &mut arguments,
        "x-message-ttl",
        AMQPValue::LongLongInt(i64::from(settings.monitoring_message_ttl_ms)),
    );
    // One monitor at a time receives: each service's logs reach one monitor, which counts
    // them all; the others stand by and take over when it goes (docs/monitoring.md).
    argument(
        &mut arguments,
        "x-single-active-consumer",
        AMQPValue::Boolean(true),
    );
    arguments
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(table: &'a FieldTable, key: &str) -> Option<&'a AMQPValue> {
        table.inner().get(&ShortString::from(key))
    }

    #[test]
    fn storage_queue_is_quorum_with_delivery_limit_and_dead_lettering() {
        let settings = BrokerSettings::default();
        let arguments = storage_queue_arguments(&settings);
        assert_eq!(get(&arguments, "x-queue-type"), Some(&text("quorum")));
        assert_eq!(
            get(&arguments, "x-delivery-limit"),
            Some(&AMQPValue::LongLongInt(20))
        );
        assert_eq!(
            get(&arguments, "x-dead-letter-exchange"),
            Some(&text("logs.dead_letter"))
        );
        assert_eq!(get(&arguments, "x-overflow"), Some(&text("reject-publish")));
    }

    #[test]
    fn quorum_group_size_is_sent_only_when_set() {
        let key = "x-quorum-initial-group-size";
        let unset = BrokerSettings::default();
        assert!(get(&storage_queue_arguments(&unset), key).is_none());
        assert!(get(&dead_letter_queue_arguments(&unset), key).is_none());
        let three = BrokerSettings {
            quorum_group_size: 3,
            ..BrokerSettings::default()
        };
        for arguments in [
            storage_queue_arguments(&three),
            dead_letter_queue_arguments(&three),
        ] {
            assert_eq!(get(&arguments, key), Some(&AMQPValue::LongLongInt(3)));
        }
        let classic = BrokerSettings {
            storage_queue_type: QueueType::Classic,
            ..three
        };
        assert!(get(&storage_queue_arguments(&classic), key).is_none());
    }

    #[test]
    fn classic_storage_queue_gets_no_quorum_only_arguments() {
        let settings = BrokerSettings {
            storage_queue_type: QueueType::Classic,
            ..BrokerSettings::default()
        };
        let arguments = storage_queue_arguments(&settings);
        assert!(get(&arguments, "x-delivery-limit").is_none());
        assert!(get(&arguments, "x-dead-letter-strategy").is_none());
    }

    #[test]
    fn monitoring_queue_is_bounded() {
        let arguments = monitoring_queue_arguments(&BrokerSettings::default());
        assert_eq!(
            get(&arguments, "x-max-length"),
            Some(&AMQPValue::LongLongInt(100_000))
        );
        assert_eq!(get(&arguments, "x-overflow"), Some(&text("drop-head")));
    }
}
