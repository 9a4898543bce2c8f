//! Opening RocksDB once, with every column family the node uses.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{
    BlockBasedOptions, ColumnFamilyDescriptor, DBCompressionType, Options, ReadOptions, SliceTransform,
};

use crate::error::Result;

/// Single-threaded mode only means column families cannot be added after open (we create them
/// all at open); the handle is still shared across threads.
pub(crate) type Rocks = rocksdb::DB;

/// The replicated log (and, later, the Raft vote). Written with fsync.
pub const CF_LOG: &str = "log";
/// Store bookkeeping: applied index, next series id.
pub(crate) const CF_META: &str = "meta";
/// Series id → label set.
pub(crate) const CF_SERIES: &str = "series";
/// Series id → head state at the last checkpoint.
pub(crate) const CF_HEADS: &str = "heads";
/// (series id, chunk start) → encoded chunk.
pub(crate) const CF_CHUNKS: &str = "chunks";
/// (log index, write number) → the write's events (see `event_blocks`).
pub(crate) const CF_EVENTS: &str = "events";
/// (minute of event time, log index, write number) → nothing: the blocks holding events of
/// that minute.
pub(crate) const CF_EVENT_TIMES: &str = "event_times";
/// Sequence → batch id, for deduplicating retried batches. Written at checkpoints only.
pub(crate) const CF_DEDUP: &str = "dedup";

/// Aggregation rules' window state: (rule, row) → state. Written at checkpoints only.
pub(crate) const CF_AGG: &str = "agg";

/// Aggregation rules' emitted windows: (rule, window end, group) → start, group labels,
/// outputs. Written by apply, like samples.
pub(crate) const CF_AGG_ROWS: &str = "agg_rows";

pub(crate) const ALL_CFS: [&str; 10] = [
    CF_LOG,
    CF_META,
    CF_SERIES,
    CF_HEADS,
    CF_CHUNKS,
    CF_EVENTS,
    CF_EVENT_TIMES,
    CF_DEDUP,
    CF_AGG,
    CF_AGG_ROWS,
];

/// The CFs whose content the store writes without RocksDB's WAL: the log is the write-ahead
/// log for them, and a checkpoint flushes them before it records the applied index.
pub(crate) const DATA_CFS: [&str; 5] = [CF_SERIES, CF_CHUNKS, CF_EVENTS, CF_EVENT_TIMES, CF_AGG_ROWS];

/// Read options for an iterator that may cross series in the chunks column family (which has
/// a prefix extractor: without total order, such an iterator's results across prefixes are
/// undefined). Harmless on the others.
pub(crate) fn total_order() -> ReadOptions {
    let mut o = ReadOptions::default();
    o.set_total_order_seek(true);
    o
}

fn cf_options(name: &str) -> Options {
    let mut o = Options::default();
    let mut table = BlockBasedOptions::default();
    match name {
        CF_CHUNKS | CF_HEADS => {
            // Chunks are zstd-compressed one by one, yet zstd over whole blocks of them still
            // takes a sixth off what is stored: keys, chunk headers and the small chunks of
            // constant series look alike across series. Larger blocks share key prefixes.
            o.set_compression_type(DBCompressionType::Zstd);
            table.set_block_size(32 << 10);
            if name == CF_CHUNKS {
                // The series id: a reader of many series seeks one iterator from series to
                // series and RocksDB stops it, tombstones included, at the series' last key
                // (`prefix_same_as_start`; docs/notes/chunks-one-iterator-per-batch.md). Every
                // other iterator over chunks must then read in total order ([`total_order`]).
                o.set_prefix_extractor(SliceTransform::create_fixed_prefix(8));
            }
        }
        CF_LOG => {
            o.set_compression_type(DBCompressionType::Lz4);
            // The log is written once, mostly read back from the raft entry cache, and dropped
            // behind a snapshot: RocksDB's default 64 MiB memtable held that much of it in
            // memory with no gain in throughput over 16 MiB on the bench. 4 MiB since session 7
            // (with the log bounded at 16 MiB): the side-by-side runs that followed ingested
            // 1.5-2.2M samples/s against 1.5-1.7M before, not an A/B comparison.
            o.set_write_buffer_size(4 << 20);
            // A purge gives back whole files (`LogStore::drop_purged_files`), but RocksDB's
            // DeleteFilesInRange skips level 0 (db_impl.cc starts at level 1), and at the usual
            // trigger of four files up to three flushes of purged entries stayed on disk: 0.2-4.4
            // MB of the data directory at rest after `collabstream bench`. At one file each
            // flush goes down at once, by a trivial move when it overlaps nothing below, or by
            // a compaction that drops what the purge's range deletion covers.
            o.set_level_zero_file_num_compaction_trigger(1);
        }
        _ => {
            o.set_compression_type(DBCompressionType::Lz4);
            o.set_bottommost_compression_type(DBCompressionType::Zstd);
            table.set_block_size(16 << 10);
        }
    }
    o.set_block_based_table_factory(&table);
    if matches!(name, CF_CHUNKS | CF_EVENTS | CF_EVENT_TIMES) {
        // A tiered block leaves the hot store as one tombstone a chunk or an event block
        // (`Store::drop_cold`); RocksDB's usual triggers (four level-0 files, a level over its
        // size) can keep them, and the data they cover, for as long as little else is written
        // (store_cold_tests: still there 30 s on without this). A file that many deletions went
        // into is marked for compaction, which takes both away.
        o.add_compact_on_deletion_collector_factory(DELETION_WINDOW, DELETION_TRIGGER, 0.5);
    }
    o
}

/// A file is marked for compaction when `DELETION_TRIGGER` of any `DELETION_WINDOW`
/// consecutive entries, or half of all its entries, are deletions.
const DELETION_WINDOW: usize = 1024;
const DELETION_TRIGGER: usize = 512;

/// Where RocksDB's info log rolls over to a new file (see [`open`]).
const INFO_LOG_FILE_BYTES: usize = 4 << 20;

pub(crate) fn open(path: &Path) -> Result<Arc<Rocks>> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_max_background_jobs(2);
    // RocksDB's info log (`LOG`: every flush and compaction) is one file for as long as the
    // process runs unless it rolls, and by default it never does (`keep_log_file_num` counts
    // only files rolled at restarts): 837 KB after one `collabstream bench` run, growing with
    // every checkpoint. Rolled at this size with the last four kept: at most 20 MiB.
    opts.set_max_log_file_size(INFO_LOG_FILE_BYTES);
    opts.set_keep_log_file_num(4);
    // The data column families are written without the WAL, but a memtable that holds anything
    // keeps every WAL file since it began (RocksDB cannot tell), so the log's WAL grew with
    // the time between checkpoints. Past this size RocksDB flushes the memtables that hold the
    // oldest WAL file back, as it would on its own when a memtable fills: replay after a
    // crash re-applies entries over data flushed ahead of the checkpoint (apply is idempotent).
    // 4 MiB, the log's memtable: at 16 MiB the WAL held 9-17 MB of the live data directory
    // during the side-by-side benchmark's ingestion (docs/benchmarks.md, session 22).
    opts.set_max_total_wal_size(4 << 20);
    let cfs = ALL_CFS.iter().map(|n| ColumnFamilyDescriptor::new(*n, cf_options(n)));
    Ok(Arc::new(Rocks::open_cf_descriptors(&opts, path, cfs)?))
}
