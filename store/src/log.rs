//! The durable log: numbered entries in the `log` column family, each append fsynced.
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

/// A handle on the `log` column family of a store's database.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Rocks>,
    /// Writes wait for disk space rather than fail (shared with the store).
    disk: Arc<DiskRetry>,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

impl LogStore {
    pub(crate) fn new(db: Arc<Rocks>, disk: Arc<DiskRetry>) -> Self {
        Self { db, disk }
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

    /// Flushes every column family written through RocksDB's WAL, so that the WAL's files go.
    ///
    /// RocksDB keeps a WAL file while any memtable holds writes made through it: the log's
    /// entries, and what checkpoints write with the WAL (heads, deduplication ids, window
    /// state, meta). On a quiet node nothing fills those memtables, so up to the WAL's 4 MiB
    /// bound stayed on disk for good after a purge (3.3-3.9 MB at rest after
    /// `collabstream bench` in five runs of nine without it). The log's flush drops what a
    /// purge covered, leaving its range deletion in a small file.
    ///
    /// It waits for the flushes, and RocksDB may first wait for earlier flushes of the same
    /// column families (so as not to stall writes): call it off any thread that writes.
    pub fn release_wal(&self) -> Result<()> {
        let mut wait = FlushOptions::default();
        wait.set_wait(true);
        let logged: Vec<_> = db::ALL_CFS
            .iter()
            .filter(|name| !db::DATA_CFS.contains(name))
            .map(|name| crate::store::cf(&self.db, name))
            .collect();
        self.disk.run("flushing what the WAL holds", || self.db.flush_cfs_opt(&logged, &wait))?;
        Ok(())
    }

    /// A small durable value of the log's owner (the Raft vote, the committed index), kept
    /// in the meta column family.
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

fn parse_index(k: &[u8]) -> Result<u64> {
    Ok(u64::from_be_bytes(k.try_into().map_err(|_| Error::Corrupt { what: "log key" })?))
}
