//! Dead-lettering a message the collector refuses, with the reason in its headers.
//!
//! The broker's own `basic.reject` dead-lettering cannot carry a reason, so the collector
//! republishes the message to the dead-letter exchange, waits for the broker's confirm, and
//! only then lets the original be acked.

use lapin::Channel;
use logagg::broker::{self, BrokerError};

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
    let properties = broker::dead_letter_properties(
        &message.properties,
        rejection.code,
        &rejection.reason,
        source_queue,
    );
    broker::publish_confirmed(
        channel,
        exchange,
        &message.routing_key,
        &message.body,
        properties,
    )
    .await
}
