//! Dead-lettering a message the collector refuses, with the reason in its headers.
//!
//! The broker's own `basic.reject` dead-lettering cannot carry a reason, so the collector
//! republishes the message to the dead-letter exchange, waits for the broker's confirm, and
//! only then lets the original be acked.

use chrono::{SecondsFormat, Utc};
use lapin::types::{AMQPValue, LongString, ShortString};
use lapin::Channel;
use logagg::broker::{self, BrokerError, PERSISTENT};
use logagg::topology::{HEADER_ERROR_CODE, HEADER_REASON, HEADER_REJECTED_AT, HEADER_SOURCE_QUEUE};

use crate::batch::PendingMessage;

/// Why a message is dead-lettered: a stable code and a sentence for people.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub code: &'static str,
    pub reason: String,
}

/// Publishes `message` to the dead-letter exchange with the rejection in its headers and
/// waits for the broker to confirm it.
pub async fn dead_letter(
    channel: &Channel,
    exchange: &str,
    source_queue: &str,
    message: &PendingMessage,
    rejection: &Rejection,
) -> Result<(), BrokerError> {
    let mut headers = broker::headers_of(&message.properties);
    let text = |value: &str| AMQPValue::LongString(LongString::from(value));
    headers.insert(ShortString::from(HEADER_REASON), text(&rejection.reason));
    headers.insert(ShortString::from(HEADER_ERROR_CODE), text(rejection.code));
    headers.insert(ShortString::from(HEADER_SOURCE_QUEUE), text(source_queue));
    headers.insert(
        ShortString::from(HEADER_REJECTED_AT),
        text(&Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)),
    );
    let properties = message
        .properties
        .clone()
        .with_headers(headers)
        .with_delivery_mode(PERSISTENT);
    broker::publish_confirmed(
        channel,
        exchange,
        &message.routing_key,
        &message.body,
        properties,
    )
    .await
}
