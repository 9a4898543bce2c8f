//! `collabstream-tiering`: moving aged blocks to Parquet on object storage and reading them
//! back (layer L4).
//!
//! Not built yet. Its contract is fixed by the layers around it: it reads sealed chunks through
//! `collabstream-store` (chunks never cross a `store.block_duration` boundary, so a block moves
//! whole), writes `<prefix>/<table>/date=YYYY-MM-DD/hour=HH/<block>.parquet`, commits the
//! manifest change through the log, and implements `collabstream_store::SeriesRead` so the query
//! engine sees cold data exactly like hot data.
//!
//! Must not depend on: ingest, query, raft.
