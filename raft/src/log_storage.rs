//! [`LogStorage`]: openraft's log on the store's `log` column family. Appends, truncations,
//! purges and the vote are fsynced before openraft is told they are done; appends are written
//! by the [`LogWriter`] thread, so openraft's core goes on while they are.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use parking_lot::Mutex;

use collabstream_store::{LogStore, Store};
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader, StorageIOError};

use crate::codec::{decode, encode, encode_sized};
use crate::log_writer::{LogWriter, Op};
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

const VOTE: &[u8] = b"raft_vote";
const COMMITTED: &[u8] = b"raft_committed";
const PURGED: &[u8] = b"raft_last_purged";

/// openraft's log storage. Cheap to clone; clones share the database and the cache.
#[derive(Clone, Debug)]
pub struct LogStorage {
    /// For reads; every write goes through `writer`.
    log: LogStore,
    writer: LogWriter,
    /// The newest entries, so that replication to each follower and apply read them from
    /// memory instead of reading and decoding them from RocksDB once per reader. Entries not
    /// yet on disk are always here: readable as soon as `append` returns.
    recent: Arc<Mutex<Recent>>,
    /// The stored size of every entry in the log, so the log can be kept to a size in bytes
    /// (entries range from a few bytes to many MiB; a count bounds nothing).
    sizes: Arc<Mutex<BTreeMap<u64, u64>>>,
    /// With a store set ([`LogStorage::purging_behind`]), entries the store has not made
    /// durable are not dropped: the purge is held until it has.
    gate: Option<Arc<Store>>,
    purges: Arc<Mutex<Purges>>,
}

/// At most this many entries and bytes of commands are kept in [`LogStorage::recent`] (more
/// while entries are not yet durable). 16 MiB covers what followers in step read (the last
/// few hundred entries at full ingest) and a node's apply; a follower further behind reads
/// from RocksDB. At 64 MiB the cache was a fifth of the bench's peak RSS, with no gain in
/// single-node or three-node throughput. Entries every reader in step has read leave earlier
/// ([`LogStorage::release_cached`]).
const RECENT: usize = 4096;
const RECENT_BYTES: u64 = 16 << 20;

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

    /// Adds the log's new last entry; entries up to `durable` are on disk and may be evicted.
    fn push(&mut self, e: Entry, durable: u64) {
        // Entries not following the cached ones restart the cache, which therefore always
        // holds a contiguous run up to the log's last entry. (openraft truncates before it
        // appends anything but the next index, and truncation removes them from the cache too.)
        if self.entries.last_key_value().is_some_and(|(&last, _)| last + 1 != e.log_id.index) {
            self.clear();
        }
        self.bytes += entry_bytes(&e);
        self.entries.insert(e.log_id.index, e);
        while self.entries.len() > RECENT || (self.bytes > RECENT_BYTES && self.entries.len() > 1) {
            match self.entries.first_entry() {
                Some(first) if *first.key() <= durable => {
                    self.bytes -= entry_bytes(first.get());
                    first.remove();
                }
                _ => break,
            }
        }
    }

    /// Drops the entries up to `upto` that are on disk (`durable`) from the front.
    fn release(&mut self, upto: u64, durable: u64) {
        while let Some(first) = self.entries.first_entry()
            && *first.key() <= upto.min(durable)
        {
            self.bytes -= entry_bytes(first.get());
            first.remove();
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

fn io_vote(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_vote(openraft::AnyError::error(e.to_string())).into()
}

impl LogStorage {
    /// The log storage over `log`; reads the size of every entry in it.
    pub fn new(log: LogStore) -> Result<Self, crate::Error> {
        let mut sizes = BTreeMap::new();
        if let Some(first) = log.first_index()? {
            for item in log.read_from(first) {
                let (index, bytes) = item?;
                sizes.insert(index, bytes.len() as u64);
            }
        }
        let writer = LogWriter::start(log.clone(), log.last_index()?)
            .map_err(|e| crate::Error::Raft(format!("cannot start the log writer thread: {e}")))?;
        Ok(Self {
            log,
            writer,
            recent: Default::default(),
            sizes: Arc::new(Mutex::new(sizes)),
            gate: None,
            purges: Default::default(),
        })
    }

    /// Drops entries only once `store` has made them durable (checkpointed).
    ///
    /// openraft purges the log a snapshot covers as soon as it hands the snapshot to the state
    /// machine, while the install is still running. A node that stopped in between came back
    /// with the log gone and the store still (or again) behind it, and could not start. A purge
    /// past the store's checkpoint is therefore held, and carried out when the install is done
    /// ([`LogStorage::release_held_purge`]) or with the next purge.
    pub fn purging_behind(mut self, store: Arc<Store>) -> Self {
        self.gate = Some(store);
        self
    }

    /// Carries out a held purge if the store has caught up with it.
    pub async fn release_held_purge(&self) -> Result<(), StorageError> {
        let released = {
            let mut purges = self.purges.lock();
            match purges.held {
                Some(id) if self.may_drop(id.index) => purges.held.take(),
                _ => None,
            }
        };
        match released {
            Some(id) => self.purge_now(id).await,
            None => Ok(()),
        }
    }

    fn may_drop(&self, upto: u64) -> bool {
        self.gate.as_ref().is_none_or(|store| upto <= store.checkpointed_index())
    }

    /// Queues the purge, unless one as far or further is queued already: the record of the
    /// last purged entry only moves forward, whichever task purges first.
    async fn purge_now(&self, log_id: LogId) -> Result<(), StorageError> {
        let value = encode(&log_id).map_err(io_write)?;
        let (done, rx) = tokio::sync::oneshot::channel();
        {
            let mut purges = self.purges.lock();
            if purges.queued.is_some_and(|q| q >= log_id) {
                return Ok(());
            }
            purges.queued = Some(log_id);
            if purges.held.is_some_and(|h| h <= log_id) {
                purges.held = None;
            }
            self.recent.lock().retain(|i| i > log_id.index);
            self.sizes.lock().retain(|i, _| *i > log_id.index);
            self.writer
                .submit(Op::Purge { upto: log_id.index, key: PURGED, value, done })
                .map_err(io_write)?;
        }
        rx.await.map_err(|_| io_write("the log writer has stopped"))?.map_err(io_write)
    }

    /// Queues a write and waits until it is done.
    async fn write(
        &self,
        op: impl FnOnce(tokio::sync::oneshot::Sender<Result<(), String>>) -> Op,
    ) -> Result<(), String> {
        let (done, rx) = tokio::sync::oneshot::channel();
        self.writer.submit(op(done))?;
        rx.await.map_err(|_| "the log writer has stopped".to_string())?
    }

    /// Drops the cached entries up to `upto` once they are on disk: the caller knows that no
    /// reader in step needs them again (applied here and replicated to every follower). Those
    /// that do (a follower catching up, a new leader's replication) read them from RocksDB.
    pub fn release_cached(&self, upto: u64) {
        let durable = self.writer.durable();
        self.recent.lock().release(upto, durable);
    }

    /// Bytes of the entries in the log.
    pub fn log_bytes(&self) -> u64 {
        self.sizes.lock().values().sum()
    }

    /// Bytes of the entries after index `after`, and the index of the last entry (`after` if
    /// the log is empty). Unlike differences of [`log_bytes`](Self::log_bytes), this counts
    /// what was appended however much a purge dropped meanwhile.
    pub fn appended_after(&self, after: u64) -> (u64, u64) {
        let sizes = self.sizes.lock();
        let bytes = sizes.range(after.saturating_add(1)..).map(|(_, size)| size).sum();
        (bytes, sizes.keys().next_back().copied().unwrap_or(after))
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

    /// The newest entry, also when it is not on disk yet.
    fn last_entry(&self) -> Result<Option<Entry>, StorageError> {
        if let Some((_, e)) = self.recent.lock().entries.last_key_value() {
            return Ok(Some(e.clone()));
        }
        match self.log.last_entry().map_err(io_read)? {
            Some((_, bytes)) => Ok(Some(decode::<Entry>(&bytes).map_err(io_read)?)),
            None => Ok(None),
        }
    }
}

/// Purges queued and held back (see [`LogStorage::purging_behind`]).
#[derive(Debug, Default)]
struct Purges {
    queued: Option<LogId>,
    held: Option<LogId>,
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
        // The cache always holds a contiguous run ending at the last entry of the log, so a
        // range starting inside it is served from memory entirely. Older entries are on disk;
        // the lock is held while reading them so that none moves from the cache to only the
        // disk in between (entries leave the cache only once they are durable).
        let recent = self.recent.lock();
        if recent.entries.first_key_value().is_some_and(|(&first, _)| first <= from) {
            return Ok(recent.entries.range(from..to).map(|(_, e)| e.clone()).collect());
        }
        let mut out: Vec<Entry> = self
            .log
            .read_range(from, to)
            .map_err(io_read)?
            .into_iter()
            .map(|(_, bytes)| decode::<Entry>(&bytes).map_err(io_read))
            .collect::<Result<_, _>>()?;
        let next = out.last().map_or(from, |e| e.log_id.index + 1);
        if next < to {
            out.extend(recent.entries.range(next..to).map(|(_, e)| e.clone()));
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStorage {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.meta(PURGED)?;
        let last = self.last_entry()?.map(|e| e.log_id);
        Ok(LogState { last_purged_log_id, last_log_id: last.or(last_purged_log_id) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let value = encode(vote).map_err(io_vote)?;
        self.write(|done| Op::PutMeta { key: VOTE, value, sync: true, done }).await.map_err(io_vote)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.meta(VOTE)
    }

    /// A hint for restarts (entries up to it are re-applied at once); not fsynced, because
    /// openraft saves it at every commit and losing the latest one only delays re-apply until
    /// the leader's next heartbeat. Queued behind the appends, not waited for: openraft calls
    /// this from its core at every commit.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let value = encode(&committed).map_err(io_write)?;
        let (done, _) = tokio::sync::oneshot::channel();
        self.writer.submit(Op::PutMeta { key: COMMITTED, value, sync: false, done }).map_err(io_write)
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
            .map(|e| Ok((e.log_id.index, encode_sized(e, entry_bytes(e) as usize).map_err(io_write)?)))
            .collect::<Result<_, StorageError>>()?;
        {
            let mut sizes = self.sizes.lock();
            for (index, bytes) in &encoded {
                sizes.insert(*index, bytes.len() as u64);
            }
        }
        {
            // Readable from here on, as openraft requires once append returns.
            let durable = self.writer.durable();
            let mut recent = self.recent.lock();
            for e in entries {
                recent.push(e, durable);
            }
        }
        let flushed = Box::new(move |result: std::io::Result<()>| callback.log_io_completed(result));
        self.writer.submit(Op::Append { entries: encoded, flushed }).map_err(io_write)
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Invisible to readers before the call returns, as openraft requires.
        self.recent.lock().retain(|i| i < log_id.index);
        self.sizes.lock().retain(|i, _| *i < log_id.index);
        let from = log_id.index;
        self.write(|done| Op::Truncate { from, done }).await.map_err(io_write)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        if !self.may_drop(log_id.index) {
            tracing::info!(upto = log_id.index, "purge held until the store has the entries durably");
            let mut purges = self.purges.lock();
            if purges.held.is_none_or(|h| h < log_id) {
                purges.held = Some(log_id);
            }
            return Ok(());
        }
        self.purge_now(log_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, len: usize) -> Entry {
        Entry {
            log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
            payload: openraft::EntryPayload::Normal(crate::Request { command: vec![0; len].into() }),
        }
    }

    fn cached(r: &Recent) -> Vec<u64> {
        r.entries.keys().copied().collect()
    }

    #[test]
    fn release_drops_consumed_entries_that_are_on_disk() {
        let mut r = Recent::default();
        for i in 1..=5 {
            r.push(entry(i, 100), 0);
        }
        assert_eq!(r.bytes, 5 * 164);
        // Consumed up to 4, but only 3 on disk: an entry not yet durable stays.
        r.release(4, 3);
        assert_eq!(cached(&r), [4, 5]);
        assert_eq!(r.bytes, 2 * 164);
        r.release(10, 10);
        assert!(cached(&r).is_empty());
        assert_eq!(r.bytes, 0);
        // The next entry starts a new contiguous run.
        r.push(entry(6, 10), 5);
        assert_eq!(cached(&r), [6]);
    }
}
