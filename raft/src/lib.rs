//! `collabstream-raft`: how writes become numbered, durable log entries applied to the store
//! (layer L3).
//!
//! Today this crate holds the single-node path, [`Writer`]: it group-commits proposals into the
//! store's fsynced log, applies them in order with the store's deterministic apply, answers
//! each proposer with its [`ApplyOutcome`], checkpoints the store and purges the log behind the
//! checkpoint. The replicated path (openraft over the same log column family and the same
//! apply) slots in behind the same `propose` call.
//!
//! Must not depend on: ingest, query, tiering, server.

mod error;
mod writer;

pub use collabstream_store::ApplyOutcome;
pub use error::Error;
pub use writer::{Writer, WriterHandle, WriterOptions};
