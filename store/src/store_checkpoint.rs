//! Checkpoints: what makes the state applied so far durable, so that the log before it can be
//! dropped (the data column families are written without RocksDB's WAL; see `db`).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use rocksdb::{FlushOptions, WriteBatch, WriteOptions};

use collabstream_common::SeriesId;

use crate::db::{CF_AGG, CF_CHUNKS, CF_DEDUP, CF_HEADS, CF_META, DATA_CFS};
use crate::error::Result;
use crate::head::{HeadLimits, merge_sorted};
use crate::store::{META_APPLIED, META_NEXT_SERIES, META_SETTINGS, META_SM, Store, WriterState, cf, no_wal};
use crate::{chunk, keys};

impl Store {
    /// Makes everything applied so far durable, so the log up to the returned index may be
    /// dropped. Merges out-of-order samples into their chunks, flushes the data column
    /// families, then records heads and the applied index in one fsynced write.
    pub fn checkpoint(&self) -> Result<u64> {
        let mut writer = self.writer.lock();
        self.checkpoint_locked(&mut writer)
    }

    pub(crate) fn checkpoint_locked(&self, writer: &mut WriterState) -> Result<u64> {
        self.check_running()?;
        let done = self.checkpoint_unchecked(writer);
        self.stop_after(done)
    }

    fn checkpoint_unchecked(&self, writer: &mut WriterState) -> Result<u64> {
        let applied = self.applied.load(Ordering::Acquire);
        if applied == self.checkpointed.load(Ordering::Acquire) && !writer.sm_meta_dirty {
            return Ok(applied);
        }
        // Apply waits for the whole checkpoint (it holds the writer's lock): a long one shows
        // in the log, with where its time went.
        let started = std::time::Instant::now();
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
        self.write("checkpoint: merging out-of-order samples", &merges, &no_wal())?;
        // Only now, with the merged chunks readable, leave the head. The writer lock held here
        // keeps apply from adding samples in between.
        for e in merged {
            e.head.lock().clear_out_of_order();
        }
        let cfs: Vec<_> = DATA_CFS.iter().map(|n| cf(&self.db, n)).collect();
        let mut flush = FlushOptions::default();
        flush.set_wait(true);
        self.disk.run("checkpoint: flushing", || self.db.flush_cfs_opt(&cfs, &flush))?;
        let flushed = started.elapsed();

        // Dirty marks and dedup changes are cleared only once they are written: a failed write
        // must leave them for the next checkpoint.
        let mut durable = WriteBatch::default();
        let cf_heads = cf(&self.db, CF_HEADS);
        let mut written = Vec::new();
        for e in index.entries() {
            let head = e.head.lock();
            if head.dirty {
                let (record, changes) = head.durable_changes();
                for (n, segment) in changes.put {
                    durable.put_cf(cf_heads, keys::head_segment_key(e.id, n), segment.encode());
                }
                for n in changes.delete {
                    durable.delete_cf(cf_heads, keys::head_segment_key(e.id, n));
                }
                durable.put_cf(cf_heads, keys::series_key(e.id), record);
                written.push(e.clone());
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
        // Aggregation state as of `applied`, in the same synced batch (see `aggregations`).
        let cf_agg = cf(&self.db, CF_AGG);
        let agg = writer.aggs.take_changes();
        for (from, to) in agg.dropped {
            durable.delete_range_cf(cf_agg, from, to);
        }
        for (k, v) in agg.rows {
            match v {
                Some(v) => durable.put_cf(cf_agg, k, v),
                None => durable.delete_cf(cf_agg, k),
            }
        }
        let cf_meta = cf(&self.db, CF_META);
        durable.put_cf(cf_meta, META_APPLIED, applied.to_be_bytes());
        durable.put_cf(cf_meta, META_NEXT_SERIES, writer.next_series.to_be_bytes());
        durable.put_cf(cf_meta, META_SM, &writer.sm_meta);
        durable.put_cf(cf_meta, META_SETTINGS, self.settings.read().encode());
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        self.write("checkpoint", &durable, &sync)?;
        for e in written {
            e.head.lock().mark_durable();
        }
        // Every pane is clean now, its row just written: the oldest can leave memory.
        writer.aggs.evict(self.config.aggregation_keys_in_memory);
        writer.dedup.clear_changes();
        self.checkpointed.store(applied, Ordering::Release);
        writer.sm_meta_dirty = false;
        let took = started.elapsed();
        if took >= std::time::Duration::from_millis(100) {
            tracing::info!(applied, ?took, until_flushed = ?flushed, "a long checkpoint (apply waited for it)");
        } else {
            tracing::debug!(applied, ?took, "checkpoint");
        }
        Ok(applied)
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
