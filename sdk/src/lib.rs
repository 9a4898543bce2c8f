//! `collabstream-sdk`: a Rust client for Collaborate-Stream's gRPC `IngestService`.
//!
//! [`Client`] sends write requests to any node of a cluster. Every request carries a batch id
//! (one is assigned when the caller gives none), so a retry after a timeout or a lost answer
//! is applied once; retryable failures (the node unavailable, timed out, or failing on its
//! side) are retried with exponential backoff, moving to the next endpoint each time.
//!
//! ```no_run
//! # async fn example() -> Result<(), collabstream_sdk::Error> {
//! use collabstream_sdk::{Client, ClientConfig};
//! use collabstream_proto::v1;
//!
//! let client = Client::connect(ClientConfig::new(["http://127.0.0.1:9202"]))?;
//! let event = collabstream_proto::events_json::parse_event(
//!     r#"{"type":"user","meeting_id":"m1","user_id":"u1","action":"join","timestamp":1732780800000}"#,
//!     None,
//! ).expect("valid event");
//! let resp = client.write(v1::WriteRequest { events: vec![event], ..Default::default() }).await?;
//! assert_eq!(resp.events_accepted, 1);
//! # Ok(()) }
//! ```
//!
//! [`BatchWriter`] batches samples and events by size and time in the background.
//!
//! TLS: `https://` endpoints are reached over TLS trusting the bundled public roots;
//! [`ClientConfig::tls`] adds a private CA, the expected server name and a client certificate
//! for mutual TLS (for nodes behind a TLS-terminating load balancer or proxy).
//!
//! Must not depend on: any server-side crate. It speaks only the wire format in `proto`.

mod batch;
mod client;
mod error;

pub use batch::{BatchOptions, BatchStats, BatchWriter};
pub use client::{Client, ClientConfig, TlsOptions};
pub use error::Error;
