//! Opening the node's two RocksDB databases: the store's, with every column family of data,
//! and the log's, inside it (`LOG_DIR`), with the replicated log alone.
//!
//! Why two: a RocksDB database has one WAL, and a memtable keeps every WAL file written since
//! it began, even when nothing in it came through the WAL (RocksDB cannot tell). With the log
//! in the store's database, its fsynced entries (25-32 MB a second under the meetings
//! workload) filled the WAL's bound every ~150 ms, and each time RocksDB flushed every data
//! column family's memtable to release it: small level-0 files that compactions then merged
//! again and again (docs/benchmarks.md, session 27). In its own database the log's WAL holds
//! back only the log.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{
    BlockBasedOptions, ColumnFamilyDescriptor, DBCompressionType, Options, ReadOptions, SliceTransform,
};

use crate::error::Result;

/// Single-threaded mode only means column families cannot be added after open (we create them
/// all at open); the handle is still shared across threads.
pub(crate) type Rocks = rocksdb::DB;

/// The replicated log, in the log's database. Written with fsync. The store's database has a
/// column family of this name too, empty: where older versions kept the log (`Store::open`
/// moves it, `log::move_older_log`), and what snapshots from them hold.
pub const CF_LOG: &str = "log";
/// Store bookkeeping: applied index, next series id; in the log's database, the log's owner's
/// values (the Raft vote, the committed index, the last purged entry).
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

/// The store database's column families (`log` only for older data directories; see
/// [`CF_LOG`]).
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

/// The log database's column families.
pub(crate) const LOG_CFS: [&str; 2] = [CF_LOG, CF_META];

/// The log's database, a directory inside the store's (RocksDB leaves names it does not know
/// alone, and a RocksDB checkpoint of the store, a snapshot, takes only the store's files).
pub(crate) const LOG_DIR: &str = "log";

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
            if name == CF_HEADS {
                // Every checkpoint writes each changed series' head again, so most of what a
                // flush leaves in level 0 is superseded by the next one's. With the log in the
                // store's database the WAL's flushes made level 0 reach RocksDB's trigger of
                // four files within a second; with only checkpoints flushing it, up to three
                // files of old heads stayed: 6.5-7.2 MB of the 9.6M-sample side-by-side
                // benchmark's live data directory against 1.2 MB compacted (session 27). One
                // file starts a compaction, which leaves each series' last head only.
                o.set_level_zero_file_num_compaction_trigger(1);
            }
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
        CF_EVENTS => {
            // Keys follow the log, so a flushed file overlaps nothing below it and could go
            // down by a trivial move, but RocksDB moves a file only if its compression is the
            // output level's (`Compaction::IsTrivialMove`, `InputCompressionMatchesOutput`).
            // With LZ4 in level 0 and zstd at the bottom, every flush of event blocks was
            // decompressed and compressed again. zstd at every level: compressed once, at the
            // flush, to the size the bottom level had. Compactions took 27-37 % less CPU while
            // a node took the meetings workload, and next to none without the pack
            // (docs/benchmarks.md, session 30).
            o.set_compression_type(DBCompressionType::Zstd);
            table.set_block_size(16 << 10);
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

/// Each database's WAL bound (see [`open_with`]).
const WAL_BYTES: u64 = 2 << 20;

/// Where RocksDB's info log rolls over to a new file (see [`open`]).
const INFO_LOG_FILE_BYTES: usize = 4 << 20;

/// Opens the store's database in `path`.
pub(crate) fn open(path: &Path) -> Result<Arc<Rocks>> {
    open_with(path, &ALL_CFS)
}

/// Opens the log's database in `path`.
pub(crate) fn open_log(path: &Path) -> Result<Arc<Rocks>> {
    open_with(path, &LOG_CFS)
}

fn open_with(path: &Path, names: &[&str]) -> Result<Arc<Rocks>> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    // Both databases use RocksDB's default environment and so share its thread pools: one
    // flush and one compaction thread in all (a node's threads: one `rocksdb:high`, one
    // `rocksdb:low`).
    opts.set_max_background_jobs(2);
    // RocksDB's info log (`LOG`: every flush and compaction) is one file for as long as the
    // process runs unless it rolls, and by default it never does (`keep_log_file_num` counts
    // only files rolled at restarts): 837 KB after one `collabstream bench` run, growing with
    // every checkpoint. Rolled at this size with the last four kept: at most 20 MiB a database.
    opts.set_max_log_file_size(INFO_LOG_FILE_BYTES);
    opts.set_keep_log_file_num(4);
    // Past this size RocksDB flushes the memtables that hold the oldest WAL file back, as it
    // would on its own when a memtable fills. In the log's database that is the log's own
    // memtable. In the store's, the WAL takes only what checkpoints write through it (heads,
    // deduplication ids, window state, meta), and a memtable of a data column family (written
    // without the WAL) holds it back as well: such a flush writes data ahead of the
    // checkpoint, which a replay after a crash re-applies alike (apply is idempotent). The
    // WALs are part of the live data directory: 2 MiB each, the 4 MiB the one database's WAL
    // had before the log moved out (at 16 MiB it held 9-17 MB of the live data directory
    // during the side-by-side benchmark's ingestion; docs/benchmarks.md, session 22).
    opts.set_max_total_wal_size(WAL_BYTES);
    let cfs = names.iter().map(|n| ColumnFamilyDescriptor::new(*n, cf_options(n)));
    Ok(Arc::new(Rocks::open_cf_descriptors(&opts, path, cfs)?))
}
