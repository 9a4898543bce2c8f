//! [`Store`]: the node's state machine over RocksDB: opening, checkpoints, sizes. Applying entries
//! is in `store_apply.rs`, reading in `store_read.rs`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use collabstream_common::SeriesId;
use parking_lot::{Mutex, RwLock};
use rocksdb::{IteratorMode, WriteBatch, WriteOptions};

use crate::aggregations::Aggregations;
use crate::checkpoint_stats::{CheckpointStats, CheckpointTotals};
use crate::cold_manifest::{ColdView, Manifest};
use crate::config::StoreConfig;
use crate::db::{
    self, CF_AGG, CF_AGG_ROWS, CF_CHUNKS, CF_DEDUP, CF_EVENT_TIMES, CF_EVENTS, CF_HEADS, CF_META, CF_SERIES,
    Rocks,
};
use crate::dedup::Dedup;
use crate::disk_retry::DiskRetry;
use crate::error::{Error, Result};
use crate::head::{HeadSeries, SeriesEntry};
use crate::index::SeriesIndex;
use crate::keys;
use crate::log::LogStore;
use crate::series_codec;
use crate::settings::Settings;
use crate::source_offsets::SourceOffsets;

pub(crate) const META_APPLIED: &[u8] = b"applied_index";
pub(crate) const META_NEXT_SERIES: &[u8] = b"next_series_id";
/// The replication layer's own state at the applied index (for Raft: the last applied log id
/// and membership), opaque to the store and made durable with it at each checkpoint.
pub(crate) const META_SM: &[u8] = b"state_machine_meta";
/// The replicated [`Settings`] in force at the applied index.
pub(crate) const META_SETTINGS: &[u8] = b"apply_settings";
/// The store's keys in the meta column family (the Raft log keeps its own there too).
/// Where each Kafka partition's applied messages end (see `source_offsets`).
pub(crate) const META_SOURCES: &[u8] = b"source_offsets";
/// The cold tier's manifest (see `cold_manifest`).
pub(crate) const META_COLD: &[u8] = b"cold_manifest";
/// The SQL catalog's external tables (see `sql_catalog`).
pub(crate) const META_SQL_TABLES: &[u8] = b"sql_tables";
pub(crate) const META_STORE_KEYS: [&[u8]; 7] =
    [META_APPLIED, META_NEXT_SERIES, META_SM, META_SETTINGS, META_SOURCES, META_COLD, META_SQL_TABLES];

/// Size and shape figures for `/metrics` and benchmarks.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StoreStats {
    pub series: u64,
    /// Recounted at most every few seconds (see `HEAD_SAMPLES_MAX_AGE`).
    pub head_samples: u64,
    pub sst_bytes: u64,
    /// Of `sst_bytes`, the replicated log's (dropped behind snapshots).
    pub log_sst_bytes: u64,
    pub memtable_bytes: u64,
    /// Bytes held by RocksDB's block caches and by its open SST files' indexes and filters.
    pub block_cache_bytes: u64,
    pub table_reader_bytes: u64,
    /// SST bytes of each column family, by name.
    pub sst_bytes_by_cf: Vec<(&'static str, u64)>,
    /// Compactions and flushes running now.
    pub running_compactions: u64,
    pub running_flushes: u64,
    /// Bytes RocksDB estimates compaction must rewrite to bring every level within its target.
    pub pending_compaction_bytes: u64,
    /// Whether RocksDB stops writes now (too many level-0 files, memtables or pending bytes),
    /// and the rate it slows them to when it delays them (0: not delayed).
    pub write_stopped: bool,
    pub delayed_write_rate: u64,
}

/// Series, chunks, events and dedup state in one RocksDB database, changed only through
/// [`Store::apply`] of numbered log entries.
///
/// Durability: `apply` writes without RocksDB's WAL, because the log (see [`Store::log`]) is the
/// write-ahead log. [`Store::checkpoint`] makes everything applied so far durable and records
/// the index; after a crash the owner applies the log entries after
/// [`Store::checkpointed_index`] again, and because apply is deterministic and its writes are
/// idempotent, the result is the same state.
///
/// `apply` and the part of `checkpoint` that takes the state are serialised by `writer`;
/// reads run concurrently with them.
pub struct Store {
    pub(crate) db: Arc<Rocks>,
    /// The log's own database (see `db`), handed out by [`Store::log`].
    pub(crate) log_db: Arc<Rocks>,
    pub(crate) config: StoreConfig,
    /// `config.aggregation_threads` with 0 read as the cores, once: finding the cores reads
    /// the affinity mask and cgroup files, too much for every write apply takes.
    pub(crate) aggregation_threads: usize,
    /// What apply depends on, as the log last set it; written by apply (under `writer`).
    pub(crate) settings: RwLock<Settings>,
    pub(crate) index: RwLock<SeriesIndex>,
    /// Held by apply, and by a checkpoint while it takes the state it writes.
    pub(crate) writer: Mutex<WriterState>,
    /// Held by a checkpoint from start to end (and a snapshot's creation or install), taken
    /// before `writer`: one checkpoint at a time, so none writes an older state over a newer.
    pub(crate) checkpointing: Mutex<()>,
    pub(crate) applied: AtomicU64,
    pub(crate) checkpointed: AtomicU64,
    /// Set at open when a snapshot install was interrupted, cleared by the next install.
    pub(crate) install_interrupted: AtomicBool,
    /// Why the state machine stopped, once a write to RocksDB failed part way through an
    /// apply or a checkpoint: the in-memory state may then hold a half-applied entry, so
    /// nothing more is applied or checkpointed (which could make it durable). A restart
    /// recovers from the last checkpoint and the log.
    pub(crate) stopped: Mutex<Option<String>>,
    /// Retries writes that fail for want of disk space; shared with the log.
    pub(crate) disk: Arc<DiskRetry>,
    /// New series refused at `max_series` since start (for `/metrics`).
    pub(crate) series_refused: AtomicU64,
    /// What checkpoints cost since start (for `/metrics`).
    pub(crate) checkpoint_stats: CheckpointStats,
    /// Aggregation output samples the head refused (see [`Store::outputs_refused`]).
    pub(crate) outputs_refused: AtomicU64,
    /// The rules' figures as of the last entry that moved them: read without the writer's
    /// lock, which apply holds while a write is retried (a full disk).
    pub(crate) agg_stats: Mutex<Vec<crate::aggregations::RuleStats>>,
    /// The tables SQL plans with, as of the last entry that changed them: read without the
    /// writer's lock, so that a statement never waits for the entry being applied.
    pub(crate) sql_view: RwLock<Arc<crate::store_aggs::SqlView>>,
    /// The head sample count [`Store::stats`] last walked the heads for, and when: the walk
    /// is O(series) under the index's read lock, so it runs at most once per
    /// [`HEAD_SAMPLES_MAX_AGE`] however often `/metrics` is scraped.
    head_samples: Mutex<Option<(std::time::Instant, u64)>>,
    /// The cold tier's manifest as of the last applied entry (a copy for readers; apply owns
    /// it in `writer`), with its two bounds apart so that the hot paths read them lock-free.
    pub(crate) cold: RwLock<Arc<ColdView>>,
    pub(crate) sealed_before: AtomicI64,
    pub(crate) cold_until: AtomicI64,
    /// The cold boundary as of the last checkpoint: what [`Store::drop_cold`] may delete
    /// below. (Its deletes are not logged, and RocksDB may flush them before the checkpoint
    /// that records the boundary; a crash then would reopen with an older boundary over hot
    /// data already gone.)
    pub(crate) durable_cold_until: AtomicI64,
    /// The same for events (whose boundary readers take from `cold`).
    pub(crate) durable_events_cold_until: AtomicI64,
    /// The cold boundaries hot cursors started from, with how many are open: a cursor reads
    /// lazily, so [`Store::drop_cold`] keeps what the oldest of them may still read.
    /// Samples' readers and events' readers apart, so that neither holds the other's drops.
    pub(crate) cold_readers: Mutex<[BTreeMap<i64, usize>; 2]>,
    /// Samples refused since start because their block is sealed for the cold tier.
    pub(crate) cold_refused: AtomicU64,
    /// Events refused since start for the same reason.
    pub(crate) events_cold_refused: AtomicU64,
    /// Test-only fault injection: the next snapshot install fails half done...
    #[cfg(any(test, feature = "failpoints"))]
    pub(crate) fail_install: AtomicBool,
    /// ...the next apply fails at its RocksDB write.
    #[cfg(any(test, feature = "failpoints"))]
    pub(crate) fail_apply: AtomicBool,
}

/// State only the writer touches.
#[derive(Debug, Default)]
pub(crate) struct WriterState {
    pub(crate) next_series: u64,
    pub(crate) dedup: Dedup,
    pub(crate) sm_meta: Vec<u8>,
    /// Changed since the last checkpoint (a membership entry changes it without data).
    pub(crate) sm_meta_dirty: bool,
    /// The aggregation rules in force and their window state.
    pub(crate) aggs: Aggregations,
    /// Where the Kafka partitions' applied messages end.
    pub(crate) sources: SourceOffsets,
    /// The cold tier's manifest.
    pub(crate) manifest: Manifest,
    /// The SQL catalog's external tables.
    pub(crate) sql_tables: crate::sql_catalog::SqlCatalog,
}

/// What [`Store::open`] and a snapshot install load from the database.
pub(crate) struct Loaded {
    /// The store was found half replaced by a snapshot and wiped (see `snapshot::META_INSTALLING`).
    pub(crate) install_interrupted: bool,
    pub(crate) applied: u64,
    pub(crate) settings: Settings,
    pub(crate) index: SeriesIndex,
    pub(crate) writer: WriterState,
}

/// A series' head as stored: its record and its segments in order.
struct StoredHead {
    id: SeriesId,
    record: Box<[u8]>,
    segments: Vec<Box<[u8]>>,
}

impl StoredHead {
    fn decode(&self) -> Result<HeadSeries> {
        let segments: Vec<&[u8]> = self.segments.iter().map(|b| &b[..]).collect();
        HeadSeries::decode(&self.record, &segments)
    }
}

/// Reads every series' head: its record, then its segments numbered from 0 (keys sort so).
fn load_heads(db: &Rocks) -> Result<BTreeMap<SeriesId, HeadSeries>> {
    let mut heads = BTreeMap::new();
    let mut pending: Option<StoredHead> = None;
    for item in db.iterator_cf(cf(db, CF_HEADS), IteratorMode::Start) {
        let (k, v) = item?;
        if let Some(id) = keys::parse_series_key(&k) {
            if let Some(p) = pending.replace(StoredHead { id, record: v, segments: Vec::new() }) {
                heads.insert(p.id, p.decode()?);
            }
        } else {
            let (id, n) = keys::parse_head_segment_key(&k).ok_or(Error::Corrupt { what: "head key" })?;
            match pending.as_mut() {
                Some(p) if p.id == id && p.segments.len() as u64 == u64::from(n) => p.segments.push(v),
                _ => {
                    return Err(Error::Corrupt {
                        what: "head segment without its record or out of sequence",
                    });
                }
            }
        }
    }
    if let Some(p) = pending {
        heads.insert(p.id, p.decode()?);
    }
    Ok(heads)
}

/// Reads the durable state: applied index, series index with heads, dedup, replication meta.
/// A half-installed snapshot is wiped first (see `snapshot::META_INSTALLING`); the owner then
/// installs the snapshot again ([`Store::install_interrupted`]).
pub(crate) fn load(db: &Rocks) -> Result<Loaded> {
    let install_interrupted = db.get_cf(cf(db, CF_META), crate::snapshot::META_INSTALLING)?.is_some();
    if install_interrupted {
        tracing::warn!("a snapshot install was interrupted; the store is wiped to install it again");
        for name in [CF_SERIES, CF_HEADS, CF_CHUNKS, CF_EVENTS, CF_EVENT_TIMES, CF_DEDUP, CF_AGG, CF_AGG_ROWS]
        {
            if let Some(batch) = crate::snapshot::clear(db, name)? {
                let mut sync = WriteOptions::default();
                sync.set_sync(true);
                db.write_opt(batch, &sync)?;
            }
        }
        let mut batch = WriteBatch::default();
        for key in META_STORE_KEYS {
            batch.delete_cf(cf(db, CF_META), key);
        }
        batch.delete_cf(cf(db, CF_META), crate::snapshot::META_INSTALLING);
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        db.write_opt(batch, &sync)?;
    }
    let meta_bytes = |k: &[u8]| -> Result<Option<Vec<u8>>> { Ok(db.get_cf(cf(db, CF_META), k)?) };
    let meta = |k: &[u8]| -> Result<u64> {
        Ok(match meta_bytes(k)? {
            Some(v) => {
                u64::from_be_bytes(v.as_slice().try_into().map_err(|_| Error::Corrupt { what: "meta" })?)
            }
            None => 0,
        })
    };
    let applied = meta(META_APPLIED)?;
    let next_series = meta(META_NEXT_SERIES)?.max(1);
    let sm_meta = meta_bytes(META_SM)?.unwrap_or_default();
    let sources = match meta_bytes(META_SOURCES)? {
        Some(b) => SourceOffsets::decode(&b)?,
        None => SourceOffsets::default(),
    };
    let settings = match meta_bytes(META_SETTINGS)? {
        Some(b) => Settings::decode(&b).ok_or(Error::Corrupt { what: "settings" })?,
        None => Settings::default(),
    };
    let manifest = match meta_bytes(META_COLD)? {
        Some(b) => Manifest::decode(&b).ok_or(Error::Corrupt { what: "cold manifest" })?,
        None => Manifest::default(),
    };
    let sql_tables = match meta_bytes(META_SQL_TABLES)? {
        Some(b) => crate::sql_catalog::SqlCatalog::decode(&b)?,
        None => crate::sql_catalog::SqlCatalog::default(),
    };
    let mut heads = load_heads(db)?;
    let mut index = SeriesIndex::default();
    for item in db.iterator_cf(cf(db, CF_SERIES), IteratorMode::Start) {
        let (k, v) = item?;
        let id = keys::parse_series_key(&k).ok_or(Error::Corrupt { what: "series key" })?;
        let labels = series_codec::decode(&v)?;
        let head = heads.remove(&id).unwrap_or_default();
        index.insert(Arc::new(SeriesEntry::new(id, labels, head)));
    }
    let mut dedup = Dedup::default();
    for item in db.iterator_cf(cf(db, CF_DEDUP), IteratorMode::Start) {
        let (k, v) = item?;
        let seq = keys::parse_series_key(&k).ok_or(Error::Corrupt { what: "dedup key" })?.0;
        let id = String::from_utf8(v.to_vec()).map_err(|_| Error::Corrupt { what: "dedup" })?;
        dedup.restore(seq, id);
    }
    Ok(Loaded {
        install_interrupted,
        applied,
        settings,
        index,
        writer: WriterState {
            next_series,
            dedup,
            sm_meta,
            sm_meta_dirty: false,
            aggs: Aggregations::load(db, settings.meetings_pack)?,
            sources,
            manifest,
            sql_tables,
        },
    })
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("applied", &self.applied.load(Ordering::Relaxed))
            .field("series", &self.index.read().len())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Writes `batch`, retrying while the disk is full ([`DiskRetry`]). Each attempt writes a
    /// copy of the batch's bytes (rust-rocksdb's write takes the batch by value): one memcpy
    /// of what apply writes, small beside the write itself.
    pub(crate) fn write(&self, what: &str, batch: &WriteBatch, opts: &WriteOptions) -> Result<()> {
        self.disk.run(what, || self.db.write_opt(WriteBatch::from_data(batch.data()), opts))?;
        Ok(())
    }

    /// Writes that fail for want of disk space and are being retried, if any: what and why.
    pub fn disk_failing(&self) -> Option<String> {
        self.disk.failing()
    }

    /// Failed writes retried since start.
    pub fn disk_retries(&self) -> u64 {
        self.disk.retries()
    }
}

pub(crate) fn no_wal() -> WriteOptions {
    let mut o = WriteOptions::default();
    o.disable_wal(true);
    o
}

impl Store {
    /// Opens (or creates) the store in `path` and loads the series index and heads.
    pub fn open(path: &Path, config: StoreConfig) -> Result<Self> {
        let db = db::open(path)?;
        let log_db = db::open_log(&path.join(db::LOG_DIR))?;
        crate::log::move_older_log(&db, &log_db)?;
        let Loaded { install_interrupted, applied, settings, index, mut writer } = load(&db)?;
        // The rows are what was loaded: the oldest panes need not stay in memory.
        writer.aggs.evict(config.aggregation_keys_in_memory);
        if settings != Settings::from_config(&config) {
            tracing::info!(
                replicated = ?settings,
                configured = ?Settings::from_config(&config),
                "the store settings in force differ from this node's [store] configuration; \
                 the leader proposes its own, and apply uses the last proposed on every node"
            );
        }
        tracing::info!(applied, series = index.len(), "store opened");
        let agg_stats = writer.aggs.stats();
        let sql_view = Arc::new(crate::store_aggs::SqlView::of(&writer));
        let pack_late =
            crate::agg::meetings::MAX_OUT_OF_ORDERNESS_MS + crate::agg::meetings::ALLOWED_LATENESS_MS;
        if config.meetings_pack && config.window_ms() < pack_late {
            tracing::warn!(
                out_of_order_window_ms = config.window_ms(),
                needed_ms = pack_late,
                "the meetings pack corrects windows up to 5m 5s late, and store.out_of_order_window refuses \
                 samples that old: late corrections will be dropped and counted; widen the window or set \
                 store.meetings_pack = false"
            );
        }
        let cold = writer.manifest.view();
        Ok(Self {
            sealed_before: AtomicI64::new(cold.sealed_before),
            cold_until: AtomicI64::new(cold.cold_until),
            durable_cold_until: AtomicI64::new(cold.cold_until),
            durable_events_cold_until: AtomicI64::new(cold.events_cold_until),
            cold_readers: Mutex::new([BTreeMap::new(), BTreeMap::new()]),
            cold: RwLock::new(cold),
            cold_refused: AtomicU64::new(0),
            events_cold_refused: AtomicU64::new(0),
            db,
            log_db,
            aggregation_threads: config.aggregation_threads(),
            config,
            settings: RwLock::new(settings),
            index: RwLock::new(index),
            writer: Mutex::new(writer),
            checkpointing: Mutex::new(()),
            applied: AtomicU64::new(applied),
            checkpointed: AtomicU64::new(applied),
            install_interrupted: AtomicBool::new(install_interrupted),
            stopped: Mutex::new(None),
            disk: Arc::new(DiskRetry::default()),
            series_refused: AtomicU64::new(0),
            checkpoint_stats: CheckpointStats::default(),
            outputs_refused: AtomicU64::new(0),
            head_samples: Mutex::new(None),
            agg_stats: Mutex::new(agg_stats),
            sql_view: RwLock::new(sql_view),
            #[cfg(any(test, feature = "failpoints"))]
            fail_install: AtomicBool::new(false),
            #[cfg(any(test, feature = "failpoints"))]
            fail_apply: AtomicBool::new(false),
        })
    }

    /// New series refused at the series limit since this node started.
    pub fn series_refused(&self) -> u64 {
        self.series_refused.load(Ordering::Relaxed)
    }

    /// What the checkpoints since this node started cost.
    pub fn checkpoint_totals(&self) -> CheckpointTotals {
        self.checkpoint_stats.totals()
    }

    /// Why the state machine stopped, if it has (see [`Error::Stopped`]).
    pub fn stopped(&self) -> Option<String> {
        self.stopped.lock().clone()
    }

    /// Each Kafka partition's offset after its last applied message: where a new leader's
    /// consumer resumes (partitions never applied are absent).
    pub fn source_offsets(&self) -> std::collections::BTreeMap<(String, i32), i64> {
        self.writer.lock().sources.get()
    }

    /// Fails if the state machine has stopped.
    pub(crate) fn check_running(&self) -> Result<()> {
        match self.stopped.lock().as_ref() {
            Some(reason) => Err(Error::Stopped { reason: reason.clone() }),
            None => Ok(()),
        }
    }

    /// Stops the state machine after `e` (an error that may have left a change half made).
    pub(crate) fn stop_after<T>(&self, result: Result<T>) -> Result<T> {
        if let Err(e) = &result
            && !matches!(e, Error::OutOfOrderApply { .. } | Error::Stopped { .. })
        {
            let reason = crate::error::chain(e);
            tracing::error!(error = %reason, "state machine stopped");
            self.stopped.lock().get_or_insert(reason);
        }
        result
    }

    /// Makes the next apply fail at its RocksDB write, as a full disk would (tests only).
    #[cfg(any(test, feature = "failpoints"))]
    pub fn fail_next_apply_write(&self) {
        self.fail_apply.store(true, Ordering::Release);
    }

    /// Whether the store was opened half replaced by a snapshot (the node stopped during an
    /// install) and so holds nothing: the owner must install that snapshot again before it
    /// serves or applies anything, because the log before the snapshot may be gone.
    pub fn install_interrupted(&self) -> bool {
        self.install_interrupted.load(Ordering::Acquire)
    }

    /// The store's log (in a database of its own).
    pub fn log(&self) -> LogStore {
        LogStore::new(self.log_db.clone(), self.db.clone(), self.disk.clone())
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Whether the store holds no series at all.
    pub fn is_empty(&self) -> bool {
        self.index.read().len() == 0
    }

    /// The settings apply uses now (see [`Settings`]).
    pub fn settings(&self) -> Settings {
        *self.settings.read()
    }

    /// The index of the last entry applied.
    pub fn applied_index(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// Everything up to this index is durable without the log.
    pub fn checkpointed_index(&self) -> u64 {
        self.checkpointed.load(Ordering::Acquire)
    }

    /// The replication layer's state recorded with the last applied entry (after a restart:
    /// with the last checkpointed one).
    pub fn sm_meta(&self) -> Vec<u8> {
        self.writer.lock().sm_meta.clone()
    }

    /// Bytes of the stored data's SST files (the log's not counted); cheap.
    pub fn data_sst_bytes(&self) -> u64 {
        db::ALL_CFS.iter().filter(|name| **name != db::CF_LOG).map(|name| self.cf_int(name, SST_BYTES)).sum()
    }

    /// An integer property of a column family of the store's database (0 when RocksDB has
    /// none).
    fn cf_int(&self, name: &str, property: &str) -> u64 {
        int_property(&self.db, name, property)
    }

    /// Every column family in use, with its database and the name `/metrics` gives it: the
    /// store's (but its `log`, empty since the log has a database of its own), then the log's
    /// (its meta as `log_meta`).
    fn column_families(&self) -> impl Iterator<Item = (&Rocks, &'static str, &'static str)> {
        let store = db::ALL_CFS.iter().filter(|n| **n != db::CF_LOG).map(|n| (&*self.db, *n, *n));
        store.chain([(&*self.log_db, db::CF_LOG, db::CF_LOG), (&*self.log_db, db::CF_META, "log_meta")])
    }

    pub fn stats(&self) -> StoreStats {
        let series = self.index.read().len() as u64;
        let head_samples = {
            let mut cached = self.head_samples.lock();
            match *cached {
                Some((at, n)) if at.elapsed() < HEAD_SAMPLES_MAX_AGE => n,
                _ => {
                    let n = self.index.read().entries().map(|e| e.head.lock().len() as u64).sum();
                    *cached = Some((std::time::Instant::now(), n));
                    n
                }
            }
        };
        let mut stats = StoreStats { series, head_samples, ..Default::default() };
        for (rocks, name, label) in self.column_families() {
            let int = |property: &str| int_property(rocks, name, property);
            let sst = int(SST_BYTES);
            stats.sst_bytes += sst;
            stats.sst_bytes_by_cf.push((label, sst));
            if name == db::CF_LOG {
                stats.log_sst_bytes = sst;
            }
            stats.memtable_bytes += int("rocksdb.cur-size-all-mem-tables");
            stats.block_cache_bytes += int("rocksdb.block-cache-usage");
            stats.table_reader_bytes += int("rocksdb.estimate-table-readers-mem");
            stats.pending_compaction_bytes += int("rocksdb.estimate-pending-compaction-bytes");
        }
        for rocks in [&self.db, &self.log_db] {
            let db_int = |property: &str| rocks.property_int_value(property).ok().flatten().unwrap_or(0);
            stats.running_compactions += db_int("rocksdb.num-running-compactions");
            stats.running_flushes += db_int("rocksdb.num-running-flushes");
            stats.write_stopped |= db_int("rocksdb.is-write-stopped") != 0;
            stats.delayed_write_rate =
                stats.delayed_write_rate.max(db_int("rocksdb.actual-delayed-write-rate"));
        }
        stats
    }

    /// Flushes and fully compacts every column family (benchmarks and maintenance). Call
    /// [`Store::checkpoint`] first, or the data not yet checkpointed stays in memtables.
    pub fn compact(&self) -> Result<()> {
        for (rocks, name, _) in self.column_families() {
            let cf = cf(rocks, name);
            rocks.flush_cf(cf)?;
            rocks.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }
}

const SST_BYTES: &str = "rocksdb.total-sst-files-size";
/// How stale [`StoreStats::head_samples`] may be.
const HEAD_SAMPLES_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(5);

/// An integer property of a column family of `db` (0 when RocksDB has none).
fn int_property(db: &Rocks, name: &str, property: &str) -> u64 {
    db.property_int_value_cf(cf(db, name), property).ok().flatten().unwrap_or(0)
}

pub(crate) fn cf<'a>(db: &'a Rocks, name: &str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name).expect("every column family is created at open")
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "store_hazard_tests.rs"]
mod hazard_tests;

#[cfg(test)]
#[path = "store_agg_tests.rs"]
mod agg_tests;

#[cfg(test)]
#[path = "store_checkpoint_tests.rs"]
mod checkpoint_tests;

#[cfg(test)]
#[path = "store_sources_tests.rs"]
mod sources_tests;

#[cfg(test)]
#[path = "store_rules_tests.rs"]
mod rules_tests;

#[cfg(test)]
#[path = "store_samples_tests.rs"]
mod samples_tests;

#[cfg(test)]
#[path = "store_cold_tests.rs"]
mod cold_tests;

#[cfg(test)]
#[path = "store_log_tests.rs"]
mod log_tests;

#[cfg(test)]
#[path = "store_rocksdb_tests.rs"]
mod rocksdb_tests;
