//! Dead-lettering a message the collector refuses, with the reason in its headers.
//!
//! The broker's own `basic.reject` dead-lettering cannot carry a reason, so the collector
//! republishes the message to the dead-letter exchange, waits for the broker's confirm, and
//! only then lets the original be acked.

use std::ops::Range;

use lapin::types::{AMQPValue, LongString, ShortString};
use lapin::Channel;
use logagg::broker::{self, BrokerError};
use logagg::topology;

use crate::batch::PendingMessage;

/// What a dead letter keeps of a body over the parser's 1 MiB limit: its first 64 KiB,
/// enough to tell what it was and whose, and its size in
/// [`topology::HEADER_ORIGINAL_BYTES`]. The collector cuts it as it arrives
/// (`PendingMessage::from_delivery`): kept whole, a flood of oversized bodies would sit in
/// the collector's memory, and the broker would write each to disk again in the dead-letter
/// queue until its disk alarm blocked every publisher.
pub const DEAD_LETTER_MAX_BODY: usize = 64 * 1024;

/// Why a message is dead-lettered: a stable code and a sentence for people.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub code: &'static str,
    pub reason: String,
}

/// Publishes `message` (or only its `line`, for one line of a batch message) to the
/// dead-letter exchange with the rejection in its headers, and waits for the broker to
/// confirm it. A line goes as a JSON message, its place in the batch in a header.
pub async fn dead_letter(
    channel: &Channel,
    exchange: &str,
    source_queue: &str,
    message: &PendingMessage,
    line: Option<&Range<usize>>,
    rejection: &Rejection,
) -> Result<(), BrokerError> {
    let mut properties = broker::dead_letter_properties(
        &message.properties,
        rejection.code,
        &rejection.reason,
        source_queue,
    );
    if let Some(range) = line {
        let mut headers = properties.headers().clone().unwrap_or_default();
        headers.insert(
            ShortString::from(topology::HEADER_BATCH_LINE),
            AMQPValue::LongString(LongString::from(format!("{}..{}", range.start, range.end))),
        );
        properties = properties
            .with_headers(headers)
            .with_content_type(ShortString::from(broker::CONTENT_TYPE_JSON));
    }
    if let Some(size) = message.oversized {
        let mut headers = properties.headers().clone().unwrap_or_default();
        headers.insert(
            ShortString::from(topology::HEADER_ORIGINAL_BYTES),
            AMQPValue::LongLongInt(i64::try_from(size).unwrap_or(i64::MAX)),
        );
        properties = properties.with_headers(headers);
    }
    broker::publish_confirmed(
        channel,
        exchange,
        &message.routing_key,
        message.record_body(line),
        properties,
    )
    .await
}
