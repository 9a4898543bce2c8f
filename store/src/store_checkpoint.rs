//! Checkpoints: what makes the state applied so far durable, so that the log before it can be
//! dropped (the data column families are written without RocksDB's WAL; see `db`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rocksdb::{FlushOptions, WriteBatch, WriteOptions};

use collabstream_common::SeriesId;

use crate::db::{CF_AGG, CF_CHUNKS, CF_DEDUP, CF_HEADS, CF_META, DATA_CFS};
use crate::error::Result;
use crate::head::{HeadCopy, HeadLimits, HeadWritten, SeriesEntry, merge_sorted};
use crate::series_chunks::series_chunks;
use crate::store::{
    META_APPLIED, META_COLD, META_NEXT_SERIES, META_SETTINGS, META_SM, META_SOURCES, META_SQL_TABLES, Store,
    WriterState, cf, no_wal,
};
use crate::{chunk, keys};

/// A checkpoint's writes, taken under apply's lock at index `applied`, and what to mark once
/// they are on disk.
struct Captured {
    applied: u64,
    /// The replication layer's record as of `applied` (a snapshot's metadata).
    sm_meta: Vec<u8>,
    /// Heads, deduplication ids, window state and meta, written in one fsynced batch once the
    /// data column families are flushed.
    durable: WriteBatch,
    /// The dirty heads as captured, added to `durable` by `write_captured`.
    head_copies: Vec<(SeriesId, HeadCopy)>,
    heads: Vec<(Arc<SeriesEntry>, HeadWritten)>,
    /// How many deduplication changes the batch holds (see `Dedup::clear_changes`).
    dedup: (usize, usize),
    /// How long apply waited: the capture, under its lock.
    held: Duration,
    /// The cold boundary as of `applied`.
    cold_until: i64,
    events_cold_until: i64,
}

impl Store {
    /// Makes everything applied so far durable, so the log up to the returned index may be
    /// dropped. Apply waits only while the state is taken (out-of-order samples merged into
    /// their chunks, heads copied, deduplication ids and window state encoded); encoding the
    /// heads, the flush of the data column families and the fsynced write run beside it.
    pub fn checkpoint(&self) -> Result<u64> {
        Ok(self.checkpoint_with_meta()?.0)
    }

    /// [`Store::checkpoint`], also giving the replication layer's record as of the returned
    /// index (what a snapshot of the store as it now stands is named after).
    pub fn checkpoint_with_meta(&self) -> Result<(u64, Vec<u8>)> {
        let _one = self.checkpointing.lock();
        self.checkpoint_beside_apply()
    }

    /// [`Store::checkpoint`] for a caller that holds `checkpointing`; also gives the
    /// replication layer's record as of the returned index.
    ///
    /// Why apply may go on: the data column families are written without RocksDB's WAL, so
    /// what the checkpoint needs of them is that every write up to `applied` is flushed. The
    /// flush starts after the capture, so it takes all of those and perhaps some of the
    /// entries after: data ahead of the checkpoint, which a replay after a crash writes again
    /// alike (see `db::open`; RocksDB flushes a full memtable on its own in the same way).
    /// What only checkpoints write (heads, deduplication ids, window state, meta) is taken
    /// as of `applied`, and one checkpoint runs at a time (`checkpointing`).
    pub(crate) fn checkpoint_beside_apply(&self) -> Result<(u64, Vec<u8>)> {
        self.checkpoint_in_steps(|| ())
    }

    /// [`Store::checkpoint_beside_apply`] with `meanwhile` run between the capture and the
    /// write, where apply may run (tests apply entries there).
    pub(crate) fn checkpoint_in_steps(&self, meanwhile: impl FnOnce()) -> Result<(u64, Vec<u8>)> {
        let started = Instant::now();
        let mut captured = {
            let mut writer = self.writer.lock();
            self.check_running()?;
            match self.stop_after(self.capture(&mut writer, started))? {
                Some(c) => c,
                None => return Ok((self.applied.load(Ordering::Acquire), writer.sm_meta.clone())),
            }
        };
        meanwhile();
        let flushed = self.stop_after(self.write_captured(&mut captured))?;
        let (held, bytes) = (captured.held, captured.durable.size_in_bytes());
        let mut writer = self.writer.lock();
        let done = self.finish(&mut writer, captured, started, flushed);
        self.checkpoint_stats.record(started.elapsed(), held, flushed, bytes);
        Ok(done)
    }

    /// The whole checkpoint under apply's lock, which the caller holds with `checkpointing`
    /// (apply itself, when its window state outgrows memory; a replaced record).
    pub(crate) fn checkpoint_locked(&self, writer: &mut WriterState) -> Result<u64> {
        self.check_running()?;
        let started = Instant::now();
        let done = self.capture(writer, started).and_then(|captured| match captured {
            Some(mut c) => {
                let flushed = self.write_captured(&mut c)?;
                let bytes = c.durable.size_in_bytes();
                let done = self.finish(writer, c, started, flushed).0;
                // Apply asked for this one and waited for all of it.
                let took = started.elapsed();
                self.checkpoint_stats.record(took, took, flushed, bytes);
                Ok(done)
            }
            None => Ok(self.applied.load(Ordering::Acquire)),
        });
        self.stop_after(done)
    }

    /// Takes what a checkpoint writes as of the last applied entry; `None` if nothing changed
    /// since the last checkpoint.
    fn capture(&self, writer: &mut WriterState, started: Instant) -> Result<Option<Captured>> {
        let applied = self.applied.load(Ordering::Acquire);
        if applied == self.checkpointed.load(Ordering::Acquire) && !writer.sm_meta_dirty {
            return Ok(None);
        }
        let index = self.index.read();
        let limits = self.settings.read().limits();
        let mut merges = WriteBatch::default();
        let mut merged = Vec::new();
        for e in index.entries() {
            let ooo = e.head.lock().out_of_order().clone();
            if !ooo.is_empty() {
                self.merge_out_of_order(e.id, ooo, limits, &mut merges)?;
                merged.push(e.clone());
            }
        }
        // Chunks, like samples: flushed with the data column families.
        self.write("checkpoint: merging out-of-order samples", &merges, &no_wal())?;
        // Only now, with the merged chunks readable, leave the head. The writer lock held here
        // keeps apply from adding samples in between.
        for e in merged {
            e.head.lock().clear_out_of_order();
        }

        // Dirty marks and dedup changes are cleared only once they are written (`finish`).
        // Heads are copied here; `write_captured` encodes them into the batch, after apply's
        // lock is let go when the checkpoint runs beside apply.
        let mut durable = WriteBatch::default();
        let mut heads = Vec::new();
        let mut head_copies = Vec::new();
        for e in index.entries() {
            let head = e.head.lock();
            if head.dirty {
                let (copy, written) = head.durable_copy();
                head_copies.push((e.id, copy));
                heads.push((e.clone(), written));
            }
        }
        let cf_dedup = cf(&self.db, CF_DEDUP);
        let (added, evicted) = writer.dedup.changes();
        for (seq, id) in added {
            durable.put_cf(cf_dedup, keys::u64_key(*seq), id.as_bytes());
        }
        for seq in evicted {
            durable.delete_cf(cf_dedup, keys::u64_key(*seq));
        }
        let dedup = (added.len(), evicted.len());
        // Aggregation state as of `applied`, in the same synced batch (see `aggregations`).
        // Panes are clean from here; those apply changes before `finish` are dirty again.
        writer.aggs.write_changes(&mut durable, cf(&self.db, CF_AGG));
        let cf_meta = cf(&self.db, CF_META);
        durable.put_cf(cf_meta, META_APPLIED, applied.to_be_bytes());
        durable.put_cf(cf_meta, META_NEXT_SERIES, writer.next_series.to_be_bytes());
        durable.put_cf(cf_meta, META_SM, &writer.sm_meta);
        durable.put_cf(cf_meta, META_SETTINGS, self.settings.read().encode());
        // Small (a row per partition), so written whole each time.
        durable.put_cf(cf_meta, META_SOURCES, writer.sources.encode());
        // Rare (a few entries a block), so written whole when it changed. Should the write
        // fail, the store stops: the mark needs no undoing.
        if writer.manifest.dirty {
            durable.put_cf(cf_meta, META_COLD, writer.manifest.encode());
            writer.manifest.dirty = false;
        }
        if writer.sql_tables.dirty {
            durable.put_cf(cf_meta, META_SQL_TABLES, writer.sql_tables.encode());
            writer.sql_tables.dirty = false;
        }
        Ok(Some(Captured {
            applied,
            sm_meta: writer.sm_meta.clone(),
            durable,
            head_copies,
            heads,
            dedup,
            held: started.elapsed(),
            cold_until: writer.manifest.view().cold_until,
            events_cold_until: writer.manifest.view().events_cold_until,
        }))
    }

    /// Adds the captured heads to the batch, flushes the data column families (everything
    /// applied up to the capture, and perhaps more), then writes the batch fsynced. Gives the
    /// time the flush took.
    fn write_captured(&self, c: &mut Captured) -> Result<Duration> {
        let cf_heads = cf(&self.db, CF_HEADS);
        for (id, copy) in std::mem::take(&mut c.head_copies) {
            c.durable.put_cf(cf_heads, keys::series_key(id), copy.record());
            for (n, segment) in copy.put {
                c.durable.put_cf(cf_heads, keys::head_segment_key(id, n), segment);
            }
            for n in copy.delete {
                c.durable.delete_cf(cf_heads, keys::head_segment_key(id, n));
            }
        }
        let started = Instant::now();
        let cfs: Vec<_> = DATA_CFS.iter().map(|n| cf(&self.db, n)).collect();
        let mut flush = FlushOptions::default();
        flush.set_wait(true);
        self.disk.run("checkpoint: flushing", || self.db.flush_cfs_opt(&cfs, &flush))?;
        let flushed = started.elapsed();
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        self.write("checkpoint", &c.durable, &sync)?;
        Ok(flushed)
    }

    /// Marks what the checkpoint wrote as durable and lets the oldest clean panes leave memory.
    fn finish(
        &self,
        writer: &mut WriterState,
        c: Captured,
        started: Instant,
        flushed: Duration,
    ) -> (u64, Vec<u8>) {
        for (e, written) in c.heads {
            e.head.lock().mark_durable(written);
        }
        // Every pane apply has not changed since the capture is clean, its row just written:
        // the oldest can leave memory.
        writer.aggs.evict(self.config.aggregation_keys_in_memory);
        writer.dedup.clear_changes(c.dedup);
        self.checkpointed.store(c.applied, Ordering::Release);
        self.durable_cold_until.fetch_max(c.cold_until, Ordering::AcqRel);
        self.durable_events_cold_until.fetch_max(c.events_cold_until, Ordering::AcqRel);
        if self.applied.load(Ordering::Acquire) == c.applied {
            writer.sm_meta_dirty = false;
        }
        let took = started.elapsed();
        if took >= Duration::from_millis(100) {
            tracing::info!(applied = c.applied, ?took, apply_waited = ?c.held, ?flushed, "a long checkpoint");
        } else {
            tracing::debug!(applied = c.applied, ?took, apply_waited = ?c.held, "checkpoint");
        }
        (c.applied, c.sm_meta)
    }

    /// Writes accepted out-of-order samples into the stored chunk of their block that starts
    /// at or before them (or a new chunk), replacing samples at the same timestamps.
    fn merge_out_of_order(
        &self,
        id: SeriesId,
        ooo: BTreeMap<i64, f64>,
        limits: HeadLimits,
        batch: &mut WriteBatch,
    ) -> Result<()> {
        let cf_chunks = cf(&self.db, CF_CHUNKS);
        let block = |t: i64| t.div_euclid(limits.block_ms);
        let mut groups: BTreeMap<i64, Vec<(i64, f64)>> = BTreeMap::new();
        // Bounded to the series: a seek back from its first chunk would otherwise walk every
        // tombstone before it (see `series_chunks`).
        let mut it = series_chunks(&self.db, id, None);
        for (ts, v) in ooo {
            it.seek_for_prev(keys::chunk_key(id, ts));
            let stored = it
                .key()
                .and_then(keys::parse_chunk_key)
                .filter(|(_, start)| block(*start) == block(ts))
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
            let old = match self.db.get_cf(cf_chunks, keys::chunk_key(id, start))? {
                Some(bytes) => chunk::decode(start, &bytes)?,
                None => Vec::new(),
            };
            // A merge may grow a chunk past the size limit: the excess goes into chunks of
            // their own (keyed by their first sample, all before the next stored chunk, since
            // each sample joined the chunk that starts last at or before it), so no stored
            // chunk ever exceeds what `chunk::decode` accepts.
            for (i, piece) in merge_sorted(&old, &new).chunks(limits.max_samples).enumerate() {
                let at = if i == 0 { start } else { piece[0].0 };
                batch.put_cf(cf_chunks, keys::chunk_key(id, at), chunk::encode(at, piece));
            }
        }
        Ok(())
    }
}
