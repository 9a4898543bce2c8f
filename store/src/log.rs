//! The durable log: numbered entries in the `log` column family of the log's own database
//! (see `db`), each append fsynced.
//!
//! It is the write-ahead log of the store: an entry is acknowledged only once it is here and
//! applied; on restart, entries after the store's checkpoint are applied again. The Raft log
//! storage keeps its entries in the same column family.

use std::sync::Arc;

use rocksdb::{Direction, FlushOptions, IteratorMode, WriteBatch, WriteOptions};

use crate::db::{self, CF_LOG, CF_META, Rocks};
use crate::disk_retry::DiskRetry;
use crate::error::{Error, Result};
use crate::keys::u64_key;
use crate::store::cf;

/// A handle on a store's log.
#[derive(Clone)]
pub struct LogStore {
    /// The log's database.
    db: Arc<Rocks>,
    /// The store's, whose WAL [`release_wal`](Self::release_wal) gives back too.
    store_db: Arc<Rocks>,
    /// Writes wait for disk space rather than fail (shared with the store).
    disk: Arc<DiskRetry>,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

impl LogStore {
    pub(crate) fn new(db: Arc<Rocks>, store_db: Arc<Rocks>, disk: Arc<DiskRetry>) -> Self {
        Self { db, store_db, disk }
    }

    fn cf(&self) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(CF_LOG).expect("log column family is created at open")
    }

    /// Appends entries in one fsynced write. Indexes must follow the last one.
    pub fn append<'a>(&self, entries: impl IntoIterator<Item = (u64, &'a [u8])>) -> Result<()> {
        let mut batch = WriteBatch::default();
        let cf = self.cf();
        for (index, bytes) in entries {
            batch.put_cf(cf, u64_key(index), bytes);
        }
        self.sync_write("appending to the log", batch)
    }

    /// The highest index stored, or 0 for an empty log.
    pub fn last_index(&self) -> Result<u64> {
        match self.db.iterator_cf(self.cf(), IteratorMode::End).next() {
            Some(item) => {
                let (k, _) = item?;
                parse_index(&k)
            }
            None => Ok(0),
        }
    }

    /// Entries with index `>= from`, in order.
    pub fn read_from(&self, from: u64) -> impl Iterator<Item = Result<(u64, Vec<u8>)>> + '_ {
        let key = u64_key(from);
        self.db.iterator_cf(self.cf(), IteratorMode::From(&key, Direction::Forward)).map(|item| {
            let (k, v) = item?;
            Ok((parse_index(&k)?, v.to_vec()))
        })
    }

    /// The entry with the highest index, if any.
    pub fn last_entry(&self) -> Result<Option<(u64, Vec<u8>)>> {
        match self.db.iterator_cf(self.cf(), IteratorMode::End).next() {
            Some(item) => {
                let (k, v) = item?;
                Ok(Some((parse_index(&k)?, v.to_vec())))
            }
            None => Ok(None),
        }
    }

    /// The lowest index stored, if any.
    pub fn first_index(&self) -> Result<Option<u64>> {
        match self.db.iterator_cf(self.cf(), IteratorMode::Start).next() {
            Some(item) => Ok(Some(parse_index(&item?.0)?)),
            None => Ok(None),
        }
    }

    /// Entries with `from <= index < to`, in order.
    pub fn read_range(&self, from: u64, to: u64) -> Result<Vec<(u64, Vec<u8>)>> {
        let mut out = Vec::new();
        for item in self.read_from(from) {
            let (i, v) = item?;
            if i >= to {
                break;
            }
            out.push((i, v));
        }
        Ok(out)
    }

    /// Drops entries with index `>= from`, fsynced.
    pub fn truncate_from(&self, from: u64) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(self.cf(), u64_key(from), u64_key(u64::MAX));
        batch.delete_cf(self.cf(), u64_key(u64::MAX));
        self.sync_write("truncating the log", batch)
    }

    /// Drops entries with index `<= upto` and records `(key, value)` in the same fsynced write.
    pub fn purge_with_meta(&self, upto: u64, key: &[u8], value: &[u8]) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(self.cf(), u64_key(0), u64_key(upto.saturating_add(1)));
        batch.put_cf(self.meta_cf(), key, value);
        self.sync_write("purging the log", batch)?;
        self.drop_purged_files(upto)
    }

    /// Deletes the SST files that hold only purged entries. The range deletion already hides
    /// them, but their space would come back only when a compaction reached them: the log is
    /// most of a busy node's disk, so it is given back at once.
    fn drop_purged_files(&self, upto: u64) -> Result<()> {
        self.disk.run("dropping purged log files", || {
            self.db.delete_file_in_range_cf(self.cf(), u64_key(0), u64_key(upto))
        })?;
        Ok(())
    }

    /// Flushes every column family written through RocksDB's WAL, in the log's database and
    /// the store's, so that the WAL files go.
    ///
    /// RocksDB keeps a WAL file while any memtable holds writes made through it: the log's
    /// entries and its owner's values, and what checkpoints write with the WAL (heads,
    /// deduplication ids, window state, meta). On a quiet node nothing fills those memtables,
    /// so up to the WAL's 4 MiB bound stayed on disk for good after a purge (3.3-3.9 MB at rest
    /// after `collabstream bench` in five runs of nine without it). The log's flush drops what
    /// a purge covered, leaving its range deletion in a small file.
    ///
    /// It waits for the flushes, and RocksDB may first wait for earlier flushes of the same
    /// column families (so as not to stall writes): call it off any thread that writes.
    pub fn release_wal(&self) -> Result<()> {
        let mut wait = FlushOptions::default();
        wait.set_wait(true);
        let log: Vec<_> = db::LOG_CFS.iter().map(|name| cf(&self.db, name)).collect();
        self.disk.run("flushing what the log's WAL holds", || self.db.flush_cfs_opt(&log, &wait))?;
        let logged: Vec<_> = db::ALL_CFS
            .iter()
            .filter(|name| !db::DATA_CFS.contains(name) && **name != db::CF_LOG)
            .map(|name| cf(&self.store_db, name))
            .collect();
        self.disk
            .run("flushing what the store's WAL holds", || self.store_db.flush_cfs_opt(&logged, &wait))?;
        Ok(())
    }

    /// A small durable value of the log's owner (the Raft vote, the committed index), kept
    /// in the meta column family of the log's database.
    pub fn get_meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(self.meta_cf(), key)?)
    }

    /// Writes a value for [`get_meta`](Self::get_meta), fsynced.
    pub fn put_meta(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.meta_cf(), key, value);
        self.sync_write("recording the vote", batch)
    }

    /// Like [`put_meta`](Self::put_meta) but without waiting for the disk: for hints that
    /// speed up a restart and may be lost in a crash (the Raft committed index).
    pub fn put_meta_unsynced(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.meta_cf(), key, value);
        self.disk.run("recording a log hint", || self.db.write(WriteBatch::from_data(batch.data())))?;
        Ok(())
    }

    fn meta_cf(&self) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(CF_META).expect("meta column family is created at open")
    }

    /// Writes `batch` fsynced, retrying while the disk is full.
    fn sync_write(&self, what: &str, batch: WriteBatch) -> Result<()> {
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.disk.run(what, || self.db.write_opt(WriteBatch::from_data(batch.data()), &opts))?;
        Ok(())
    }

    /// Drops entries with index `<= upto`, fsynced.
    pub fn purge(&self, upto: u64) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(self.cf(), u64_key(0), u64_key(upto.saturating_add(1)));
        self.sync_write("purging the log", batch)?;
        self.drop_purged_files(upto)
    }
}

/// Moves the log of an older data directory, which kept it in the store's database, into the
/// log's own: its entries, and its owner's values (every meta key that is not the store's).
/// Run at open, before anything reads the log. The copy is written, fsynced, before anything
/// is deleted, so a crash midway leaves it to be done again alike at the next open.
pub(crate) fn move_older_log(store_db: &Rocks, log_db: &Rocks) -> Result<()> {
    let (old_log, old_meta) = (cf(store_db, CF_LOG), cf(store_db, CF_META));
    let mut owner_values = Vec::new();
    for item in store_db.iterator_cf(old_meta, IteratorMode::Start) {
        let (k, v) = item?;
        if !crate::store::META_STORE_KEYS.contains(&&*k) && *k != *crate::snapshot::META_INSTALLING {
            owner_values.push((k, v));
        }
    }
    if owner_values.is_empty() && store_db.iterator_cf(old_log, IteratorMode::Start).next().is_none() {
        return Ok(());
    }
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    let (new_log, new_meta) = (cf(log_db, CF_LOG), cf(log_db, CF_META));
    let (mut batch, mut moved) = (WriteBatch::default(), 0u64);
    for item in store_db.iterator_cf(old_log, IteratorMode::Start) {
        let (k, v) = item?;
        batch.put_cf(new_log, k, v);
        moved += 1;
        if batch.size_in_bytes() >= MOVE_BATCH_BYTES {
            log_db.write_opt(std::mem::take(&mut batch), &sync)?;
        }
    }
    for (k, v) in &owner_values {
        batch.put_cf(new_meta, k, v);
    }
    log_db.write_opt(batch, &sync)?;
    let mut gone = WriteBatch::default();
    gone.delete_range_cf(old_log, u64_key(0), u64_key(u64::MAX));
    gone.delete_cf(old_log, u64_key(u64::MAX));
    for (k, _) in &owner_values {
        gone.delete_cf(old_meta, k);
    }
    store_db.write_opt(gone, &sync)?;
    // The range deletion hides the old entries; this gives their files back.
    store_db.compact_range_cf(old_log, None::<&[u8]>, None::<&[u8]>);
    tracing::info!(entries = moved, values = owner_values.len(), "moved the log into its own database");
    Ok(())
}

/// How much of an older log [`move_older_log`] writes at once.
const MOVE_BATCH_BYTES: usize = 16 << 20;

fn parse_index(k: &[u8]) -> Result<u64> {
    Ok(u64::from_be_bytes(k.try_into().map_err(|_| Error::Corrupt { what: "log key" })?))
}
