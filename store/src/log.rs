//! The durable log: numbered entries in the `log` column family, each append fsynced.
//!
//! It is the write-ahead log of the store: an entry is acknowledged only once it is here and
//! applied; on restart, entries after the store's checkpoint are applied again. The Raft log
//! storage keeps its entries in the same column family.

use std::sync::Arc;

use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions};

use crate::db::{CF_LOG, Rocks};
use crate::error::{Error, Result};
use crate::keys::u64_key;

/// A handle on the `log` column family of a store's database.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Rocks>,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

impl LogStore {
    pub(crate) fn new(db: Arc<Rocks>) -> Self {
        Self { db }
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
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db.write_opt(batch, &opts)?;
        Ok(())
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

    /// Drops entries with index `<= upto`, fsynced.
    pub fn purge(&self, upto: u64) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(self.cf(), u64_key(0), u64_key(upto.saturating_add(1)));
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db.write_opt(batch, &opts)?;
        Ok(())
    }
}

fn parse_index(k: &[u8]) -> Result<u64> {
    Ok(u64::from_be_bytes(k.try_into().map_err(|_| Error::Corrupt { what: "log key" })?))
}
