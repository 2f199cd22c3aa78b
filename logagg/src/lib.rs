//! logagg's shared core: the log record and its parsers, the RabbitMQ topology, the MongoDB
//! store, settings, telemetry and shutdown. Services know RabbitMQ and MongoDB names only
//! through this crate.

pub mod auth;
pub mod backoff;
pub mod broker;
pub mod formats;
pub mod http_error;
pub mod http_server;
pub mod parse;
pub mod publisher;
pub mod record;
pub mod runtime;
pub mod settings;
pub mod shutdown;
pub mod sketch;
pub mod store;
pub mod telemetry;
pub mod topology;
pub mod words;

#[cfg(feature = "testsuite")]
pub mod testsuite;

pub use record::{LogRecord, Severity, StatusClass};
pub use settings::Settings;
