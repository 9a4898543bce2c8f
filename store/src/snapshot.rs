//! Whole-store snapshots for Raft: a RocksDB checkpoint (hard links, so cheap to make) taken at
//! a checkpointed index, and the install of such a checkpoint from another node.

use std::path::Path;
use std::sync::atomic::Ordering;

use rocksdb::{IteratorMode, Options, WriteBatch, WriteOptions};

use crate::db::{
    self, CF_AGG, CF_AGG_ROWS, CF_CHUNKS, CF_DEDUP, CF_EVENT_TIMES, CF_EVENTS, CF_HEADS, CF_META, CF_SERIES,
    Rocks, total_order,
};
use crate::error::Result;
use crate::store::{META_STORE_KEYS, Store, cf, load};

/// Column families a snapshot carries whole. `meta` is carried key by key (the Raft vote and
/// log bookkeeping in it stay the node's own); `log` not at all.
const SNAPSHOT_CFS: [&str; 8] =
    [CF_SERIES, CF_HEADS, CF_CHUNKS, CF_EVENTS, CF_EVENT_TIMES, CF_DEDUP, CF_AGG, CF_AGG_ROWS];

/// Set while an install is half done. A store opened with it set starts empty, so the
/// replication layer fetches the snapshot again instead of serving a mix of old and new data.
pub(crate) const META_INSTALLING: &[u8] = b"snapshot_installing";

impl Store {
    /// Checkpoints, then writes a RocksDB checkpoint of the database into `dir` (which must not
    /// exist). Returns the applied index and the replication meta the snapshot holds.
    pub fn create_snapshot(&self, dir: &Path) -> Result<(u64, Vec<u8>)> {
        let _one = self.checkpointing.lock();
        let (applied, sm_meta) = self.checkpoint_beside_apply()?;
        // No other checkpoint runs until this returns, so the store's own rows still say
        // `applied`; apply goes on meanwhile, and the data it writes ahead of `applied` is what
        // a node installing this snapshot writes again alike when it applies the entries after.
        self.disk.run("snapshot: checkpoint", || {
            // A checkpoint cut short leaves part of its directory behind.
            let _ = std::fs::remove_dir_all(dir);
            rocksdb::checkpoint::Checkpoint::new(&self.db)?.create_checkpoint(dir)
        })?;
        Ok((applied, sm_meta))
    }

    /// Replaces every series, sample, event and dedup entry with those of the snapshot in `dir`
    /// (made by [`create_snapshot`](Self::create_snapshot), here or on another node), and
    /// reloads the in-memory index and heads. The log and the Raft bookkeeping stay.
    pub fn install_snapshot(&self, dir: &Path) -> Result<()> {
        self.check_running()?;
        let installed = self.install_snapshot_unchecked(dir);
        self.stop_after(installed)
    }

    fn install_snapshot_unchecked(&self, dir: &Path) -> Result<()> {
        let _one = self.checkpointing.lock();
        let mut writer = self.writer.lock();
        let names: Vec<&str> = db::ALL_CFS.to_vec();
        let src = Rocks::open_cf_for_read_only(&Options::default(), dir, names, false)?;
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        let mut mark = WriteBatch::default();
        mark.put_cf(cf(&self.db, CF_META), META_INSTALLING, b"1");
        self.write("snapshot install: marking it begun", &mark, &sync)?;

        let mut no_wal = WriteOptions::default();
        no_wal.disable_wal(true);
        for name in SNAPSHOT_CFS {
            let (dst_cf, src_cf) = (cf(&self.db, name), cf(&src, name));
            if let Some(batch) = clear(&self.db, name)? {
                self.write("snapshot install: clearing", &batch, &sync)?;
            }
            #[cfg(any(test, feature = "failpoints"))]
            if self.fail_install.swap(false, Ordering::AcqRel) {
                return Err(crate::Error::Injected("snapshot install stopped half done"));
            }
            let mut batch = WriteBatch::default();
            for item in src.iterator_cf_opt(src_cf, total_order(), IteratorMode::Start) {
                let (k, v) = item?;
                batch.put_cf(dst_cf, k, v);
                if batch.size_in_bytes() > 4 << 20 {
                    self.write("snapshot install", &std::mem::take(&mut batch), &no_wal)?;
                }
            }
            self.write("snapshot install", &batch, &no_wal)?;
        }
        let handles: Vec<_> = SNAPSHOT_CFS.iter().map(|n| cf(&self.db, n)).collect();
        let mut flush = rocksdb::FlushOptions::default();
        flush.set_wait(true);
        self.disk.run("snapshot install: flushing", || self.db.flush_cfs_opt(&handles, &flush))?;

        // The store's own meta last, in one fsynced write that also clears the marker.
        let mut meta = WriteBatch::default();
        let (dst_meta, src_meta) = (cf(&self.db, CF_META), cf(&src, CF_META));
        for key in META_STORE_KEYS {
            match src.get_cf(src_meta, key)? {
                Some(v) => meta.put_cf(dst_meta, key, v),
                None => meta.delete_cf(dst_meta, key),
            }
        }
        meta.delete_cf(dst_meta, META_INSTALLING);
        self.write("snapshot install: its meta", &meta, &sync)?;
        drop(src);

        let loaded = load(&self.db)?;
        *self.index.write() = loaded.index;
        *self.settings.write() = loaded.settings;
        *writer = loaded.writer;
        self.publish_cold(&writer.manifest);
        self.durable_cold_until.store(self.cold_until(), Ordering::Release);
        self.durable_events_cold_until.store(writer.manifest.view().events_cold_until, Ordering::Release);
        writer.aggs.evict(self.config.aggregation_keys_in_memory);
        *self.agg_stats.lock() = writer.aggs.stats();
        self.publish_sql_view(&writer);
        self.applied.store(loaded.applied, Ordering::Release);
        self.checkpointed.store(loaded.applied, Ordering::Release);
        self.install_interrupted.store(false, Ordering::Release);
        tracing::info!(applied = loaded.applied, "snapshot installed");
        Ok(())
    }

    /// Makes the next [`install_snapshot`](Self::install_snapshot) fail after it has cleared
    /// part of the store, as a crash there would leave it (tests of recovery only).
    #[cfg(any(test, feature = "failpoints"))]
    pub fn fail_next_install_midway(&self) {
        self.fail_install.store(true, Ordering::Release);
    }
}

impl Store {
    /// Replaces the replication layer's record (after a snapshot install, with the snapshot's
    /// own metadata) and makes it durable.
    pub fn set_sm_meta(&self, sm_meta: Vec<u8>) -> Result<()> {
        let _one = self.checkpointing.lock();
        let mut writer = self.writer.lock();
        writer.sm_meta = sm_meta;
        writer.sm_meta_dirty = true;
        self.checkpoint_locked(&mut writer)?;
        Ok(())
    }
}

/// A batch deleting every key of a column family (none when it is empty), to be written
/// fsynced.
pub(crate) fn clear(db: &Rocks, name: &str) -> Result<Option<WriteBatch>> {
    let handle = cf(db, name);
    let first =
        db.iterator_cf_opt(handle, total_order(), IteratorMode::Start).next().transpose()?.map(|(k, _)| k);
    let last =
        db.iterator_cf_opt(handle, total_order(), IteratorMode::End).next().transpose()?.map(|(k, _)| k);
    Ok(match (first, last) {
        (Some(first), Some(last)) => {
            let mut batch = WriteBatch::default();
            batch.delete_range_cf(handle, &first, &last);
            batch.delete_cf(handle, &last);
            Some(batch)
        }
        _ => None,
    })
}
