//! `collabstream-ingest`: every way data gets in (layer L4).
//!
//! - [`Ingest`]: validates writes, proposes them through the [`Writer`], and reports what was
//!   accepted and what was refused and why.
//! - [`grpc::IngestGrpc`]: the gRPC `IngestService` (`Write`, `WriteStream`).
//! - [`http::router`]: `POST /api/v1/write` (Prometheus remote write 1.0) and
//!   `POST /api/v1/events` (newline-delimited JSON events); `/api/v1/aggregations`, the
//!   aggregation rules ([`RuleSpec`], as users write them in TOML and JSON).
//! - [`kafka`]: the leader's Kafka consumer, exactly once (each batch one log entry with the
//!   offsets it advances).
//! - [`IngestMetrics`]: counters for `/metrics`.
//!
//! Bad items are refused one by one with a reason; the good items of the same request are
//! kept. Must not depend on: query, tiering, server.
//!
//! [`Writer`]: collabstream_raft::Writer

mod config;
mod error;
pub mod grpc;
pub mod http;
mod ingest;
pub mod kafka;
mod metrics;
mod prepare;
mod remote_write;
mod rule_spec;
mod rules_http;

pub use config::IngestConfig;
pub use error::{Error, http_status, prometheus_error_body};
pub use ingest::Ingest;
pub use metrics::IngestMetrics;
pub use prepare::Prepared;
pub use rule_spec::RuleSpec;
