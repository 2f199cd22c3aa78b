//! Production ingest: the HTTP gateway and the shipper of files and stdin. Both validate and
//! normalise each record as the collector would, and publish it persistent and mandatory with
//! publisher confirms.

pub mod elasticsearch;
pub mod gateway;
pub mod gelf;
pub mod listener;
pub mod loki;
pub mod otlp;
pub mod shipper;
pub mod syslog;
