//! `collabstream-store`: the node's state on local disk (layer L2).
//!
//! One RocksDB database with column families for the log, series, heads, sample chunks, raw
//! events and batch-id dedup state. Every change goes through [`Store::apply`] of a numbered
//! log entry, which is deterministic: it is the state machine that Raft replicates.
//!
//! - [`Store`]: open, apply, checkpoint, select, label listings, events.
//! - [`LogStore`]: the fsynced entry log in the same database.
//! - [`chunk`]: the sample chunk codec (delta-of-delta timestamps, decimal or XOR values, zstd).
//! - [`Matcher`]: Prometheus label matchers, resolved by an in-memory postings index.
//! - [`SeriesRead`]: the read trait the query engine uses for hot and cold data alike, and
//!   [`merge_cursors`], several sources' cursors seen as one.
//!
//! Must not depend on: raft, ingest, query, tiering, server. It knows nothing of Raft: it sees
//! numbered entries and reports what it has made durable.

pub mod agg;
mod agg_engine;
mod agg_rows;
mod aggregations;
pub mod arrow_rows;
pub use agg_rows::AggRow;
pub use aggregations::{RuleOutcome, RuleStats};
mod checkpoint_stats;
pub use checkpoint_stats::CheckpointTotals;
pub mod chunk;
mod chunk_v1;
mod cold_manifest;
mod config;
mod db;
mod decimal;
mod dedup;
mod disk_retry;
mod error;
mod event_blocks;
mod head;
mod held_boundary;
pub use held_boundary::HeldBoundary;
mod index;
mod keys;
mod label_map;
mod log;
mod matcher;
mod merged_read;
mod open_chunk;
mod read;
mod series_chunks;
mod series_codec;
mod series_cursor;
mod store_cold;
mod value_fst;
pub use series_cursor::HotCursor;
mod settings;
mod snapshot;
mod source_offsets;
mod sql_catalog;
mod store;
mod store_aggs;
pub use store_aggs::{RuleTable, SqlView};
mod store_apply;
mod store_checkpoint;
mod store_outputs;
mod store_read;
mod varint;

pub use cold_manifest::{ColdView, EVENTS_TABLE, SAMPLES_TABLE, TABLES};
pub use config::StoreConfig;
pub use disk_retry::DiskRetry;
pub use error::{Error, Result};
pub use event_blocks::StoredEvent;
pub use log::LogStore;
pub use matcher::{MatchOp, Matcher};
pub use merged_read::merge_cursors;
pub use read::{EventRead, SeriesCursor, SeriesData, SeriesRead, VecCursor, whole_series};
pub use settings::Settings;
pub use store::{Store, StoreStats};
pub use store_apply::{ApplyOutcome, KnownSeries};
pub use store_cold::Dropped;
