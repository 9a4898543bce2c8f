//! [`LogStorage`]: openraft's log on the store's `log` column family. Appends, truncations,
//! purges and the vote are fsynced before openraft is told they are done.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use parking_lot::Mutex;

use collabstream_store::LogStore;
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader, StorageIOError};

use crate::codec::{decode, encode};
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

const VOTE: &[u8] = b"raft_vote";
const COMMITTED: &[u8] = b"raft_committed";
const PURGED: &[u8] = b"raft_last_purged";

/// openraft's log storage. Cheap to clone; clones share the database and the cache.
#[derive(Clone, Debug)]
pub struct LogStorage {
    log: LogStore,
    /// The newest entries, so that replication to each follower and apply read them from
    /// memory instead of reading and decoding them from RocksDB once per reader.
    recent: Arc<Mutex<Recent>>,
    /// The stored size of every entry in the log, so the log can be kept to a size in bytes
    /// (entries range from a few bytes to many MiB; a count bounds nothing).
    sizes: Arc<Mutex<BTreeMap<u64, u64>>>,
}

/// At most this many entries and bytes of commands are kept in [`LogStorage::recent`].
const RECENT: usize = 4096;
const RECENT_BYTES: u64 = 64 << 20;

/// A contiguous run of the newest entries and the bytes of their commands.
#[derive(Debug, Default)]
struct Recent {
    entries: BTreeMap<u64, Entry>,
    bytes: u64,
}

fn entry_bytes(e: &Entry) -> u64 {
    match &e.payload {
        openraft::EntryPayload::Normal(r) => r.command.len() as u64 + 64,
        _ => 64,
    }
}

impl Recent {
    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    fn push(&mut self, e: Entry) {
        // Entries not following the cached ones restart the cache, which therefore always
        // holds a contiguous run up to the log's last entry.
        if self.entries.last_key_value().is_some_and(|(&last, _)| last + 1 != e.log_id.index) {
            self.clear();
        }
        self.bytes += entry_bytes(&e);
        self.entries.insert(e.log_id.index, e);
        while self.entries.len() > RECENT || (self.bytes > RECENT_BYTES && self.entries.len() > 1) {
            if let Some((_, old)) = self.entries.pop_first() {
                self.bytes -= entry_bytes(&old);
            }
        }
    }

    fn retain(&mut self, keep: impl Fn(u64) -> bool) {
        self.entries.retain(|i, _| keep(*i));
        self.bytes = self.entries.values().map(entry_bytes).sum();
    }
}

fn io_read(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::read_logs(openraft::AnyError::error(e.to_string())).into()
}

fn io_write(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_logs(openraft::AnyError::error(e.to_string())).into()
}

/// Runs a blocking RocksDB call (an fsync, usually) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f).await.map_err(io_write)?
}

impl LogStorage {
    /// The log storage over `log`; reads the size of every entry in it.
    pub fn new(log: LogStore) -> Result<Self, collabstream_store::Error> {
        let mut sizes = BTreeMap::new();
        if let Some(first) = log.first_index()? {
            for item in log.read_from(first) {
                let (index, bytes) = item?;
                sizes.insert(index, bytes.len() as u64);
            }
        }
        Ok(Self { log, recent: Default::default(), sizes: Arc::new(Mutex::new(sizes)) })
    }

    /// Bytes of the entries in the log.
    pub fn log_bytes(&self) -> u64 {
        self.sizes.lock().values().sum()
    }

    /// The index up to which the log can be dropped so that what follows it, up to the last
    /// entry, holds at most `keep` bytes (at least the last entry is kept).
    pub fn purge_point(&self, keep: u64) -> Option<u64> {
        let sizes = self.sizes.lock();
        let mut kept = 0;
        for (&index, &size) in sizes.iter().rev().skip(1) {
            kept += size;
            if kept > keep {
                return Some(index);
            }
        }
        None
    }

    fn meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        match self.log.get_meta(key).map_err(io_read)? {
            Some(bytes) => Ok(Some(decode(&bytes).map_err(io_read)?)),
            None => Ok(None),
        }
    }

    async fn put_meta<T: serde::Serialize>(&self, key: &'static [u8], value: &T) -> Result<(), StorageError> {
        let bytes = encode(value).map_err(io_write)?;
        let log = self.log.clone();
        blocking(move || log.put_meta(key, &bytes).map_err(io_write)).await
    }
}

impl RaftLogReader<TypeConfig> for LogStorage {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let from = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i + 1,
            Bound::Unbounded => 0,
        };
        let to = match range.end_bound() {
            Bound::Included(i) => i.saturating_add(1),
            Bound::Excluded(i) => *i,
            Bound::Unbounded => u64::MAX,
        };
        if from >= to {
            return Ok(Vec::new());
        }
        {
            // The cache always holds a contiguous run ending at the last entry of the log, so a
            // range starting inside it is served from memory entirely.
            let recent = self.recent.lock();
            if recent.entries.first_key_value().is_some_and(|(&first, _)| first <= from) {
                return Ok(recent.entries.range(from..to).map(|(_, e)| e.clone()).collect());
            }
        }
        self.log
            .read_range(from, to)
            .map_err(io_read)?
            .into_iter()
            .map(|(_, bytes)| decode::<Entry>(&bytes).map_err(io_read))
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStorage {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.meta(PURGED)?;
        let last = match self.log.last_entry().map_err(io_read)? {
            Some((_, bytes)) => Some(decode::<Entry>(&bytes).map_err(io_read)?.log_id),
            None => None,
        };
        Ok(LogState { last_purged_log_id, last_log_id: last.or(last_purged_log_id) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.put_meta(VOTE, vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.meta(VOTE)
    }

    /// A hint for restarts (entries up to it are re-applied at once); not fsynced, because
    /// openraft saves it at every commit and losing the latest one only delays re-apply until
    /// the leader's next heartbeat.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let bytes = encode(&committed).map_err(io_write)?;
        self.log.put_meta_unsynced(COMMITTED, &bytes).map_err(io_write)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.meta::<Option<LogId>>(COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let encoded: Vec<(u64, Vec<u8>)> = entries
            .iter()
            .map(|e| Ok((e.log_id.index, encode(e).map_err(io_write)?)))
            .collect::<Result<_, StorageError>>()?;
        let log = self.log.clone();
        let result = blocking(move || {
            log.append(encoded.iter().map(|(i, b)| (*i, b.as_slice()))).map_err(io_write)?;
            Ok(encoded.into_iter().map(|(i, b)| (i, b.len())).collect::<Vec<_>>())
        })
        .await;
        if let Ok(encoded) = &result {
            let mut sizes = self.sizes.lock();
            for (index, bytes) in encoded {
                sizes.insert(*index, *bytes as u64);
            }
            drop(sizes);
            let mut recent = self.recent.lock();
            for e in entries {
                recent.push(e);
            }
        }
        // The entries are readable and durable once append returns: tell openraft either way.
        callback
            .log_io_completed(result.as_ref().map(|_| ()).map_err(|e| std::io::Error::other(e.to_string())));
        result.map(|_| ())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Invisible to readers before the call returns, as openraft requires.
        self.recent.lock().retain(|i| i < log_id.index);
        self.sizes.lock().retain(|i, _| *i < log_id.index);
        let log = self.log.clone();
        blocking(move || log.truncate_from(log_id.index).map_err(io_write)).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.recent.lock().retain(|i| i > log_id.index);
        self.sizes.lock().retain(|i, _| *i > log_id.index);
        let bytes = encode(&log_id).map_err(io_write)?;
        let log = self.log.clone();
        blocking(move || log.purge_with_meta(log_id.index, PURGED, &bytes).map_err(io_write)).await
    }
}
