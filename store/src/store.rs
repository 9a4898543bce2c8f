//! [`Store`]: the node's state machine over RocksDB.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use collabstream_common::{Labels, SeriesId};
use collabstream_proto::log_view::{CommandView, WriteView};
use collabstream_proto::log_write::canonical_labels;
use collabstream_proto::v1::{self, ItemKind, Rejection};
use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use prost::Message;
use rocksdb::{FlushOptions, IteratorMode, WriteBatch, WriteOptions};

use crate::config::StoreConfig;
use crate::db::{self, CF_CHUNKS, CF_DEDUP, CF_EVENTS, CF_HEADS, CF_META, CF_SERIES, DATA_CFS, Rocks};
use crate::dedup::Dedup;
use crate::error::{Error, Result};
use crate::head::{Appended, HeadLimits, HeadSeries, SeriesEntry, merge_sorted};
use crate::index::SeriesIndex;
use crate::keys;
use crate::log::LogStore;
use crate::{chunk, series_codec};

const META_APPLIED: &[u8] = b"applied_index";
const META_NEXT_SERIES: &[u8] = b"next_series_id";
/// The replication layer's own state at the applied index (for Raft: the last applied log id
/// and membership), opaque to the store and made durable with it at each checkpoint.
const META_SM: &[u8] = b"state_machine_meta";
/// The store's keys in the meta column family (the Raft log keeps its own there too).
pub(crate) const META_STORE_KEYS: [&[u8]; 3] = [META_APPLIED, META_NEXT_SERIES, META_SM];

/// What applying one entry did, reported back to the writer that proposed it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ApplyOutcome {
    pub samples_accepted: u64,
    pub events_accepted: u64,
    pub rejected: Vec<Rejection>,
    /// The entry's batch id had been applied before, so nothing was applied again.
    pub duplicate: bool,
}

/// See [`Store::known_series`].
pub struct KnownSeries<'a>(RwLockReadGuard<'a, SeriesIndex>);

impl KnownSeries<'_> {
    /// The ids of the series with these canonical label bytes
    /// ([`canonical_labels`](collabstream_proto::log_write::canonical_labels)), one per key,
    /// appended to `out`. Looking many up at once is faster than one by one: their cache misses
    /// overlap.
    pub fn find_many(&self, keys: &[&[u8]], out: &mut Vec<Option<SeriesId>>) {
        self.0.find_ids(keys, out)
    }

    /// The id of one series by its canonical label bytes.
    pub fn find(&self, canonical: &[u8]) -> Option<SeriesId> {
        let mut out = Vec::with_capacity(1);
        self.find_many(&[canonical], &mut out);
        out.pop().flatten()
    }

    /// [`KnownSeries::find_many`] with raw ids, the form the wire encoders take.
    pub fn find_raw(&self, keys: &[&[u8]], out: &mut Vec<Option<u64>>) {
        let mut ids = Vec::with_capacity(keys.len());
        self.find_many(keys, &mut ids);
        out.extend(ids.into_iter().map(|id| id.map(|i| i.0)));
    }
}

impl std::fmt::Debug for KnownSeries<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnownSeries").field("series", &self.0.len()).finish()
    }
}

/// Size and shape figures for `/metrics` and benchmarks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    pub series: u64,
    pub head_samples: u64,
    pub sst_bytes: u64,
    /// Of `sst_bytes`, the replicated log's (dropped behind snapshots).
    pub log_sst_bytes: u64,
    pub memtable_bytes: u64,
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
/// `apply` and `checkpoint` are serialised by `writer`; reads run concurrently with them.
pub struct Store {
    pub(crate) db: Arc<Rocks>,
    config: StoreConfig,
    pub(crate) limits: HeadLimits,
    pub(crate) index: RwLock<SeriesIndex>,
    /// Held by apply and checkpoint: there is one writer at a time.
    pub(crate) writer: Mutex<WriterState>,
    pub(crate) applied: AtomicU64,
    pub(crate) checkpointed: AtomicU64,
}

/// State only the writer touches.
#[derive(Debug, Default)]
pub(crate) struct WriterState {
    next_series: u64,
    dedup: Dedup,
    pub(crate) sm_meta: Vec<u8>,
    /// Changed since the last checkpoint (a membership entry changes it without data).
    pub(crate) sm_meta_dirty: bool,
}

/// What [`Store::open`] and a snapshot install load from the database.
pub(crate) struct Loaded {
    pub(crate) applied: u64,
    pub(crate) index: SeriesIndex,
    pub(crate) writer: WriterState,
}

/// Reads the durable state: applied index, series index with heads, dedup, replication meta.
/// A half-installed snapshot is wiped first (see `snapshot::META_INSTALLING`).
pub(crate) fn load(db: &Rocks) -> Result<Loaded> {
    if db.get_cf(cf(db, CF_META), crate::snapshot::META_INSTALLING)?.is_some() {
        tracing::warn!("a snapshot install was interrupted; starting empty so the snapshot is fetched again");
        for name in [CF_SERIES, CF_HEADS, CF_CHUNKS, CF_EVENTS, CF_DEDUP] {
            crate::snapshot::clear(db, name)?;
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
    let mut heads: BTreeMap<SeriesId, HeadSeries> = BTreeMap::new();
    for item in db.iterator_cf(cf(db, CF_HEADS), IteratorMode::Start) {
        let (k, v) = item?;
        let id = keys::parse_series_key(&k).ok_or(Error::Corrupt { what: "head key" })?;
        heads.insert(id, HeadSeries::decode(&v)?);
    }
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
    Ok(Loaded { applied, index, writer: WriterState { next_series, dedup, sm_meta, sm_meta_dirty: false } })
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("applied", &self.applied.load(Ordering::Relaxed))
            .field("series", &self.index.read().len())
            .finish_non_exhaustive()
    }
}

fn no_wal() -> WriteOptions {
    let mut o = WriteOptions::default();
    o.disable_wal(true);
    o
}

impl Store {
    /// Opens (or creates) the store in `path` and loads the series index and heads.
    pub fn open(path: &Path, config: StoreConfig) -> Result<Self> {
        let db = db::open(path)?;
        let limits = HeadLimits {
            window_ms: config.window_ms(),
            block_ms: config.block_ms().max(1),
            max_samples: config.chunk_max_samples,
        };
        let Loaded { applied, index, writer } = load(&db)?;
        tracing::info!(applied, series = index.len(), "store opened");
        Ok(Self {
            db,
            config,
            limits,
            index: RwLock::new(index),
            writer: Mutex::new(writer),
            applied: AtomicU64::new(applied),
            checkpointed: AtomicU64::new(applied),
        })
    }

    /// The log that lives in the same database.
    pub fn log(&self) -> LogStore {
        LogStore::new(self.db.clone())
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// The index of the last entry applied.
    pub fn applied_index(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// Everything up to this index is durable without the log.
    pub fn checkpointed_index(&self) -> u64 {
        self.checkpointed.load(Ordering::Acquire)
    }

    /// Applies log entry `index`. Deterministic: the outcome and the resulting state depend only
    /// on the state before and the entry. Entries must come in increasing index order.
    pub fn apply(&self, index: u64, cmd: &v1::Command) -> Result<ApplyOutcome> {
        Ok(self.apply_batch(index, &cmd.encode_to_vec(), None)?.pop().unwrap_or_default())
    }

    /// Applies log entry `index`, an encoded [`v1::Command`] whose payload may carry a batch of
    /// writes (one outcome each), and records `sm_meta` as the replication layer's state at
    /// this index. The entry is read in place ([`CommandView`]): nothing of it is copied but
    /// the label sets of new series.
    pub fn apply_batch(
        &self,
        index: u64,
        entry: &[u8],
        sm_meta: Option<Vec<u8>>,
    ) -> Result<Vec<ApplyOutcome>> {
        // Every proposer checks what it logs, so this is not expected; but an entry that cannot
        // be read would fail identically on every replica, at every restart. It is applied as
        // an entry without writes (logged, the same everywhere) instead of stopping the node.
        let cmd = CommandView::parse(entry).unwrap_or_else(|source| {
            tracing::error!(index, error = %source, "unreadable log entry skipped");
            CommandView::default()
        });
        let mut writer = self.writer.lock();
        let applied = self.applied.load(Ordering::Acquire);
        if index <= applied {
            return Err(Error::OutOfOrderApply { index, applied });
        }
        let mut batch = WriteBatch::default();
        let mut outcomes = Vec::with_capacity(cmd.writes.len());
        for (pos, req) in cmd.writes.iter().enumerate() {
            let mut outcome = ApplyOutcome::default();
            // Events are keyed by (time, index, position); a batch numbers them across writes.
            self.apply_write(&mut writer, index, (pos as u32) << 20, req, &mut batch, &mut outcome)?;
            outcomes.push(outcome);
        }
        self.db.write_opt(batch, &no_wal())?;
        if let Some(meta) = sm_meta {
            writer.sm_meta = meta;
            writer.sm_meta_dirty = true;
        }
        self.applied.store(index, Ordering::Release);
        Ok(outcomes)
    }

    /// The series applied so far, for a proposer that names series by id in the entries it
    /// builds (`LogSeries` in `log.proto`). Every replica that applies a later entry has
    /// applied these too, and gave them the same ids. Holds the index's read lock: look up a
    /// request's series and drop it.
    pub fn known_series(&self) -> KnownSeries<'_> {
        KnownSeries(self.index.read())
    }

    /// The replication layer's state recorded with the last applied entry (after a restart:
    /// with the last checkpointed one).
    pub fn sm_meta(&self) -> Vec<u8> {
        self.writer.lock().sm_meta.clone()
    }

    /// Records the replication layer's state for an entry that changes no data (a Raft
    /// membership or blank entry) and counts it as applied.
    pub fn apply_meta(&self, index: u64, sm_meta: Vec<u8>) -> Result<()> {
        let mut writer = self.writer.lock();
        let applied = self.applied.load(Ordering::Acquire);
        if index <= applied && applied != 0 {
            return Err(Error::OutOfOrderApply { index, applied });
        }
        writer.sm_meta = sm_meta;
        writer.sm_meta_dirty = true;
        self.applied.store(index.max(applied), Ordering::Release);
        Ok(())
    }

    fn apply_write(
        &self,
        writer: &mut WriterState,
        index: u64,
        event_base: u32,
        req: &WriteView<'_>,
        batch: &mut WriteBatch,
        outcome: &mut ApplyOutcome,
    ) -> Result<()> {
        if !req.batch_id.is_empty() {
            if writer.dedup.contains(req.batch_id) {
                outcome.duplicate = true;
                return Ok(());
            }
            writer.dedup.insert(req.batch_id.to_string(), self.config.dedup_capacity);
        }
        let entries = self.resolve_series(writer, req, batch, outcome);
        for (i, (series, entry)) in req.series.iter().zip(entries).enumerate() {
            let Some(entry) = entry else { continue };
            self.append_samples(&entry, i as u32, req.samples(series).iter().copied(), outcome)?;
        }
        // The series the proposer named by id, numbered after those with labels.
        let index_lock = self.index.read();
        let mut known = req.known();
        let mut i = req.series.len() as u32;
        while let Some(mut s) = known.next_series().expect("WriteView::parse checked the known series whole")
        {
            match index_lock.get(SeriesId(s.id)) {
                Some(entry) => {
                    let samples = std::iter::from_fn(|| s.next_sample().ok().flatten());
                    self.append_samples(entry, i, samples, outcome)?;
                }
                // Not expected (ids are never reused, and the proposer had applied the entry
                // that created the series); refused the same way on every replica.
                None => outcome.rejected.push(Rejection {
                    kind: ItemKind::Series as i32,
                    index: i,
                    reason: format!(
                        "series id {} is unknown to the state machine; send the series with its labels",
                        s.id
                    ),
                    ..Default::default()
                }),
            }
            i += 1;
        }
        drop(index_lock);
        let cf_events = cf(&self.db, CF_EVENTS);
        for (pos, raw) in req.events.iter().enumerate() {
            let timestamp =
                v1::Event::decode(*raw).ok().and_then(|e| collabstream_proto::events::timestamp_ms(&e));
            match timestamp {
                Some(ts) => {
                    // Stored as the leader encoded it: the same bytes on every replica.
                    batch.put_cf(cf_events, keys::event_key(ts, index, event_base + pos as u32), raw);
                    outcome.events_accepted += 1;
                }
                None => outcome.rejected.push(Rejection {
                    kind: ItemKind::Event as i32,
                    index: pos as u32,
                    reason: "event has no type, or is not a valid Event message".into(),
                    ..Default::default()
                }),
            }
        }
        Ok(())
    }

    /// Appends one series' samples (item `i` of the write) to its head, writing out the chunks
    /// this cuts.
    fn append_samples(
        &self,
        entry: &SeriesEntry,
        i: u32,
        samples: impl Iterator<Item = (i64, f64)>,
        outcome: &mut ApplyOutcome,
    ) -> Result<()> {
        let mut head = entry.head.lock();
        // Created only when a chunk is cut (every few hundred samples): a RocksDB batch is an
        // FFI allocation, too costly to make per series per request.
        let mut cut: Option<WriteBatch> = None;
        for (j, (ts, value)) in samples.enumerate() {
            match head.append(ts, value, self.limits) {
                Appended::Stored => outcome.samples_accepted += 1,
                Appended::Cut { start, samples } => {
                    outcome.samples_accepted += 1;
                    // The column family is looked up here, not per call: most calls append
                    // a sample or two and cut nothing, and the lookup is a map search by name.
                    cut.get_or_insert_with(WriteBatch::default).put_cf(
                        cf(&self.db, CF_CHUNKS),
                        keys::chunk_key(entry.id, start),
                        chunk::encode(start, &samples),
                    );
                }
                Appended::TooOld { newest } => outcome.rejected.push(Rejection {
                    kind: ItemKind::Sample as i32,
                    index: i,
                    sample_index: j as u32,
                    reason: format!(
                        "sample at {ts} is older than the out-of-order window ({}) allows behind the series' newest sample at {newest}",
                        humantime::format_duration(self.config.out_of_order_window),
                    ),
                    message_index: 0,
                }),
            }
        }
        if let Some(cut) = cut {
            // Written before the head lock is released, so a reader never sees a cut chunk's
            // samples gone from the head but not yet in RocksDB.
            self.db.write_opt(cut, &no_wal())?;
        }
        Ok(())
    }

    /// Finds or creates the series of each wire series; `None` for a refused label set. New ids
    /// are assigned in request order, so every replica assigns the same ones.
    fn resolve_series(
        &self,
        writer: &mut WriterState,
        req: &WriteView<'_>,
        batch: &mut WriteBatch,
        outcome: &mut ApplyOutcome,
    ) -> Vec<Option<Arc<SeriesEntry>>> {
        let series = &req.series;
        let mut found: Vec<Option<Arc<SeriesEntry>>> = Vec::with_capacity(series.len());
        let mut canonical = Vec::new();
        let mut missing = false;
        {
            let index = self.index.read();
            for s in series {
                canonical.clear();
                canonical_labels(req.labels(s).iter().copied(), &mut canonical);
                let e = index.find(&canonical).cloned();
                if let Some(e) = &e {
                    // A series persisted after the checkpoint and found again during replay:
                    // it was created by this very entry the first time, so keep ids in step.
                    writer.next_series = writer.next_series.max(e.id.0 + 1);
                }
                missing |= e.is_none();
                found.push(e);
            }
        }
        if !missing {
            return found;
        }
        let mut index = self.index.write();
        let cf_series = cf(&self.db, CF_SERIES);
        for (i, s) in series.iter().enumerate() {
            if found[i].is_some() {
                continue;
            }
            canonical.clear();
            canonical_labels(req.labels(s).iter().copied(), &mut canonical);
            if let Some(e) = index.find(&canonical) {
                // Created by an earlier series of this very write.
                found[i] = Some(e.clone());
                continue;
            }
            let checked = utf8_pairs(req.labels(s)).and_then(|p| check_sorted_labels(&p).map(|()| p));
            let pairs = match checked {
                Ok(p) => p,
                Err(reason) => {
                    outcome.rejected.push(Rejection {
                        kind: ItemKind::Series as i32,
                        index: i as u32,
                        reason,
                        ..Default::default()
                    });
                    continue;
                }
            };
            let id = SeriesId(writer.next_series);
            writer.next_series += 1;
            let labels = Labels::from_sorted_unchecked(
                pairs.iter().map(|(n, v)| collabstream_common::Label::new(*n, *v)).collect(),
            );
            batch.put_cf(cf_series, keys::series_key(id), series_codec::encode(pairs.iter().copied()));
            let entry = Arc::new(SeriesEntry::new(id, labels, HeadSeries::default()));
            index.insert(entry.clone());
            found[i] = Some(entry);
        }
        found
    }

    /// Makes everything applied so far durable, so the log up to the returned index may be
    /// dropped. Merges out-of-order samples into their chunks, flushes the data column
    /// families, then records heads and the applied index in one fsynced write.
    pub fn checkpoint(&self) -> Result<u64> {
        let mut writer = self.writer.lock();
        self.checkpoint_locked(&mut writer)
    }

    pub(crate) fn checkpoint_locked(&self, writer: &mut WriterState) -> Result<u64> {
        let applied = self.applied.load(Ordering::Acquire);
        if applied == self.checkpointed.load(Ordering::Acquire) && !writer.sm_meta_dirty {
            return Ok(applied);
        }
        let index = self.index.read();
        let mut merges = WriteBatch::default();
        let mut merged = Vec::new();
        for e in index.entries() {
            let ooo = e.head.lock().out_of_order().clone();
            if !ooo.is_empty() {
                self.merge_out_of_order(e.id, ooo, &mut merges)?;
                merged.push(e.clone());
            }
        }
        self.db.write_opt(merges, &no_wal())?;
        // Only now, with the merged chunks readable, leave the head. The writer lock held here
        // keeps apply from adding samples in between.
        for e in merged {
            e.head.lock().clear_out_of_order();
        }
        let cfs: Vec<_> = DATA_CFS.iter().map(|n| cf(&self.db, n)).collect();
        let mut flush = FlushOptions::default();
        flush.set_wait(true);
        self.db.flush_cfs_opt(&cfs, &flush)?;

        let mut durable = WriteBatch::default();
        let cf_heads = cf(&self.db, CF_HEADS);
        for e in index.entries() {
            let mut head = e.head.lock();
            if head.dirty {
                durable.put_cf(cf_heads, keys::series_key(e.id), head.encode());
                head.dirty = false;
            }
        }
        let cf_dedup = cf(&self.db, CF_DEDUP);
        let (added, evicted) = writer.dedup.take_changes();
        for (seq, id) in added {
            durable.put_cf(cf_dedup, keys::u64_key(seq), id.as_bytes());
        }
        for seq in evicted {
            durable.delete_cf(cf_dedup, keys::u64_key(seq));
        }
        let cf_meta = cf(&self.db, CF_META);
        durable.put_cf(cf_meta, META_APPLIED, applied.to_be_bytes());
        durable.put_cf(cf_meta, META_NEXT_SERIES, writer.next_series.to_be_bytes());
        durable.put_cf(cf_meta, META_SM, &writer.sm_meta);
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        self.db.write_opt(durable, &sync)?;
        self.checkpointed.store(applied, Ordering::Release);
        writer.sm_meta_dirty = false;
        tracing::debug!(applied, "checkpoint");
        Ok(applied)
    }

    /// Writes accepted out-of-order samples into the stored chunk of their block that starts
    /// at or before them (or a new chunk), replacing samples at the same timestamps.
    fn merge_out_of_order(
        &self,
        id: SeriesId,
        ooo: BTreeMap<i64, f64>,
        batch: &mut WriteBatch,
    ) -> Result<()> {
        let cf_chunks = cf(&self.db, CF_CHUNKS);
        let block = |t: i64| t.div_euclid(self.limits.block_ms);
        let mut groups: BTreeMap<i64, Vec<(i64, f64)>> = BTreeMap::new();
        let mut it = self.db.raw_iterator_cf(cf_chunks);
        for (ts, v) in ooo {
            it.seek_for_prev(keys::chunk_key(id, ts));
            let stored = it
                .key()
                .and_then(keys::parse_chunk_key)
                .filter(|(sid, start)| *sid == id && block(*start) == block(ts))
                .map(|(_, start)| start);
            let pending = groups.range(..=ts).next_back().map(|(s, _)| *s).filter(|s| block(*s) == block(ts));
            let start = match (stored, pending) {
                (Some(a), Some(b)) => a.max(b),
                (a, b) => a.or(b).unwrap_or(ts),
            };
            groups.entry(start).or_default().push((ts, v));
        }
        it.status()?;
        drop(it);
        for (start, new) in groups {
            let key = keys::chunk_key(id, start);
            let old = match self.db.get_cf(cf_chunks, key)? {
                Some(bytes) => chunk::decode(start, &bytes)?,
                None => Vec::new(),
            };
            batch.put_cf(cf_chunks, key, chunk::encode(start, &merge_sorted(&old, &new)));
        }
        Ok(())
    }

    /// Bytes of the stored data's SST files (the log's not counted); cheap.
    pub fn data_sst_bytes(&self) -> u64 {
        db::ALL_CFS.iter().filter(|name| **name != db::CF_LOG).map(|name| self.cf_int(name, SST_BYTES)).sum()
    }

    /// An integer property of a column family (0 when RocksDB has none).
    fn cf_int(&self, name: &str, property: &str) -> u64 {
        self.db.property_int_value_cf(cf(&self.db, name), property).ok().flatten().unwrap_or(0)
    }

    pub fn stats(&self) -> StoreStats {
        let index = self.index.read();
        let head_samples = index.entries().map(|e| e.head.lock().len() as u64).sum();
        let mut stats = StoreStats { series: index.len() as u64, head_samples, ..Default::default() };
        for name in db::ALL_CFS {
            let sst = self.cf_int(name, SST_BYTES);
            stats.sst_bytes += sst;
            if name == db::CF_LOG {
                stats.log_sst_bytes = sst;
            }
            stats.memtable_bytes += self.cf_int(name, "rocksdb.cur-size-all-mem-tables");
        }
        stats
    }

    /// Flushes and fully compacts every column family (benchmarks and maintenance). Call
    /// [`Store::checkpoint`] first, or the data not yet checkpointed stays in memtables.
    pub fn compact(&self) -> Result<()> {
        for name in db::ALL_CFS {
            let cf = cf(&self.db, name);
            self.db.flush_cf(cf)?;
            self.db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }
}

const SST_BYTES: &str = "rocksdb.total-sst-files-size";

pub(crate) fn cf<'a>(db: &'a Rocks, name: &str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name).expect("every column family is created at open")
}

/// The labels of a series not seen before, checked as UTF-8.
fn utf8_pairs<'a>(labels: &[(&'a [u8], &'a [u8])]) -> std::result::Result<Vec<(&'a str, &'a str)>, String> {
    labels
        .iter()
        .map(|(n, v)| match (std::str::from_utf8(n), std::str::from_utf8(v)) {
            (Ok(n), Ok(v)) => Ok((n, v)),
            _ => Err("label names and values must be UTF-8".to_string()),
        })
        .collect()
}

/// The store trusts the proposer to send normalised label sets; this cheap check keeps a bad
/// entry from corrupting the index if it ever does not.
fn check_sorted_labels(labels: &[(&str, &str)]) -> std::result::Result<(), String> {
    if labels.iter().any(|(n, v)| n.is_empty() || v.is_empty()) {
        return Err("label names and values must be non-empty".into());
    }
    if labels.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err("labels must be sorted by name without duplicates".into());
    }
    if !labels.iter().any(|(n, _)| *n == collabstream_common::METRIC_NAME) {
        return Err("missing metric name".into());
    }
    Ok(())
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
