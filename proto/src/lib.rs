//! `collabstream-proto`: the wire formats (layer L1).
//!
//! - [`v1`]: our gRPC `IngestService`, events, and the log [`v1::Command`] the store applies.
//! - [`prompb`]: Prometheus remote write 1.0.
//! - [`log_view`]: a log entry read in place, for apply on every replica; [`log_write`]: the
//!   [`v1::LogWrite`] an entry carries, with the series the proposer knows packed by id
//!   ([`known_series`]).
//! - [`prompb_view`]: a remote-write body turned into a log write without owned messages.
//! - [`events_json`]: the JSON event format of `/api/v1/events` and Kafka; [`kafka_message`]:
//!   events as Kafka messages (topic, key, JSON or protobuf value, partition).
//! - conversions between wire messages and `collabstream-common` types, one module per message
//!   family ([`series`], [`events`]).
//!
//! Must not depend on: store, raft, ingest, query, tiering, server. Generated code only, plus
//! conversions with no I/O.

pub mod events;
pub mod events_json;
pub mod kafka_message;
pub mod known_series;
pub mod log_view;
pub mod log_write;
pub mod prompb_view;
pub mod series;
mod wire;

/// Our own API and log messages.
#[allow(clippy::all, missing_debug_implementations)]
pub mod v1 {
    tonic::include_proto!("collabstream.v1");
}

/// Prometheus remote write 1.0.
#[allow(clippy::all, missing_debug_implementations)]
pub mod prompb {
    tonic::include_proto!("prometheus");
}
