//! `collabstream-tiering`: moving aged blocks to Parquet on object storage and reading them
//! back (layer L4).
//!
//! - [`SamplesFile`]: a block of samples as a Parquet file other engines read (schema in
//!   `docs/cold-tier.md`), sorted by metric, series and time.
//! - [`export_samples`]: a block of the hot store through the read seam into such a file.
//! - [`EventsFile`], [`export_events`]: a block of raw events the same way, one typed column
//!   per field, in time order by row group and by meeting inside one.
//! - [`ColdRead`]: samples files read back for the series a node's index resolves, pruned by
//!   file, row-group statistics and the page index.
//! - [`TieredRead`]: the one read source of a node, cold files and the hot store merged, for
//!   samples and for raw events.
//! - [`Tierer`]: the leader's tiering pass: seal, export, upload and verify, commit the
//!   manifest entry through the log ([`ManifestLog`]), cold retention, orphans.
//! - [`Objects`]: the configured object store (`[object_store]`: the local disk or any
//!   S3-compatible store), with uploads verified by reading them back.
//!
//! Its contract is fixed by the layers around it: it reads through `collabstream-store`'s read
//! seam (chunks never cross a block boundary, so a block moves whole), writes
//! `<prefix>/<table>/date=YYYY-MM-DD/hour=HH/<block>.parquet`, commits manifest changes
//! through the log (the store applies them) and implements `collabstream_store::SeriesRead`
//! and `EventRead` for cold data.
//!
//! Must not depend on: ingest, query, raft.

mod cold_events;
mod cold_indexed;
mod cold_known;
mod cold_read;
mod config;
mod events_file;
mod export;
mod object_file;
mod objects;
mod pass;
mod range_cache;
mod samples_file;
mod series_index;
mod tiered_read;

pub use cold_read::{ColdFile, ColdFiles, ColdRead, IndexObject, sorted};
pub use collabstream_store::arrow_rows::{events_schema, samples_schema};
pub use config::{Location, ObjectStoreConfig, TieringConfig};
pub use events_file::EventsFile;
pub use export::{export_events, export_samples, index_name, object_name, object_token};
pub use objects::{Objects, StoredObject, s3_bucket};
pub use pass::{CommitFuture, ManifestLog, PassReport, TieredBlock, Tierer, TieringStats};
pub use samples_file::{FileSummary, SamplesFile};
pub use series_index::SeriesIndex;
pub use tiered_read::{TieredRead, cold_file};
