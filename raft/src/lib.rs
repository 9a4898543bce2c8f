//! `collabstream-raft`: how writes become replicated, numbered, durable log entries applied to
//! the store (layer L3), on openraft.
//!
//! - [`Writer`]: any node takes writes; a follower forwards them to the leader, which groups
//!   concurrent writes into one entry (group commit). A write is acknowledged once committed by
//!   a majority and applied. Writes travel encoded; an entry is their concatenation.
//! - [`LogStorage`]: openraft's log on the store's fsynced `log` column family; the vote too.
//!   The log is kept to a size in bytes (snapshot, then drop all but the newest entries).
//! - [`StateMachine`]: the store's deterministic apply; snapshots are RocksDB checkpoints
//!   packed into one file and streamed in chunks.
//! - [`RaftGrpc`] and [`Network`]: the `RaftService` (append entries, vote, install snapshot,
//!   forwarded writes, read index) over tonic, with deadlines and lazy reconnects.
//! - [`AdminGrpc`]: cluster status, membership changes and aggregation rules ([`change_rule`]:
//!   checked, committed by the leader; configured rules kept in force by it).
//! - [`ClusterSecret`]: required of every Raft and Admin call when the cluster has one.
//!
//! A single node is a cluster of one: the same path, with no followers to wait for.
//!
//! Must not depend on: ingest, query, tiering, server.

// openraft's traits fix `StorageError` (over 200 bytes) as the error type; boxing it would only
// move the allocation.
#![allow(clippy::result_large_err)]

mod admin;
mod archive;
mod cache_release;
mod cluster_view;
mod codec;
mod configuration;
mod core_runtime;
mod error;
mod log_bounds;
mod log_storage;
mod log_writer;
mod network;
mod node;
mod options;
mod raft_stats;
mod rules;
mod secret;
mod snapshot_data;
mod sql_tables;
mod state_machine;
mod tick_proposer;
mod types;
mod write_queue;

pub use admin::{AdminGrpc, TieringPass, run_tiering};
pub use archive::{ArchiveReader, unpack as unpack_archive};
pub use cluster_view::{MemberView, cluster_view};
pub use collabstream_store::ApplyOutcome;
pub use error::Error;
pub use log_storage::LogStorage;
pub use network::{HTTP2_WINDOW, Network, RaftGrpc};
pub use node::{Writer, WriterHandle};
pub use options::RaftOptions;
pub use raft_stats::RaftStats;
pub use rules::change_rule;
pub use secret::{ClusterSecret, PeerChannel, RequireSecret, SECRET_HEADER};
pub use snapshot_data::SnapshotData;
pub use sql_tables::change_sql_table;
pub use state_machine::StateMachine;
pub use types::{NodeId, Request, Response, TypeConfig};
