//! [`LogWriter`]: the one thread that writes the Raft log, in order, so that openraft's core
//! never waits for a disk.
//!
//! openraft calls [`LogStorage`](crate::LogStorage)'s `append` from its core task and waits
//! for it to return, but only needs the entries to be readable by then: durability is reported
//! through a callback. Writing and fsyncing inside `append` kept the core from doing anything
//! else for the length of an fsync (committing, answering clients, sending the next entries),
//! so a node could only get one entry through append and apply at a time. Here `append` hands
//! the encoded entries to this thread and returns; the thread writes whatever appends have
//! queued up in one fsynced batch and then calls their callbacks.
//!
//! Every write goes through the same queue (appends, truncations, purges, the vote), so they
//! reach the disk in the order openraft issued them, as openraft requires.
//!
//! After a purge, a second thread ([`WalRelease`]) flushes what holds RocksDB's WAL: a flush
//! may wait for an earlier one of the same column family, and appends must not wait for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use collabstream_store::LogStore;
use tokio::sync::oneshot;

/// What to do when an append is durable (or has failed).
pub(crate) type Flushed = Box<dyn FnOnce(std::io::Result<()>) + Send>;

/// A write to the log, carried out in queue order.
pub(crate) enum Op {
    /// Entries `(index, encoded entry)`, following the log's last.
    Append { entries: Vec<(u64, Vec<u8>)>, flushed: Flushed },
    /// Drop entries with index `>= from`.
    Truncate { from: u64, done: oneshot::Sender<Result<(), String>> },
    /// Drop entries with index `<= upto` and record `(key, value)` in the same write.
    Purge { upto: u64, key: &'static [u8], value: Vec<u8>, done: oneshot::Sender<Result<(), String>> },
    /// A small value of the log's owner (the vote, fsynced; the committed hint, not).
    PutMeta { key: &'static [u8], value: Vec<u8>, sync: bool, done: oneshot::Sender<Result<(), String>> },
}

/// The handle on the writer thread; cheap to clone. The thread ends when every handle is gone.
#[derive(Clone)]
pub(crate) struct LogWriter {
    tx: mpsc::Sender<Op>,
    /// Every entry up to this index is on disk (0: none yet). Read by the entry cache, which
    /// must keep entries that are not.
    durable: Arc<AtomicU64>,
    /// Declared after `tx`: when the last clone goes, its sender is dropped first, the thread
    /// sees the channel closed and returns, and this joins it. So the log's RocksDB handle is
    /// closed before the writer is gone, and never by a thread racing the process's exit (a
    /// test process once aborted in RocksDB's teardown: "pthread lock: Invalid argument").
    _joiner: Arc<Joiner>,
}

/// Joins the writer thread when dropped (unless dropped on that thread itself).
struct Joiner(Option<std::thread::JoinHandle<()>>);

impl Drop for Joiner {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take()
            && handle.thread().id() != std::thread::current().id()
        {
            let _ = handle.join();
        }
    }
}

impl std::fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWriter").field("durable", &self.durable.load(Ordering::Relaxed)).finish()
    }
}

impl LogWriter {
    /// Starts the writer thread over `log`, whose entries up to `last` are on disk.
    pub(crate) fn start(log: LogStore, last: u64) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let durable = Arc::new(AtomicU64::new(last));
        let thread_durable = durable.clone();
        let release = WalRelease::start(log.clone())?;
        let handle = std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || run(&log, &rx, &thread_durable, &release))?;
        Ok(Self { tx, durable, _joiner: Arc::new(Joiner(Some(handle))) })
    }

    /// Queues `op`. Fails only when the thread is gone, which it is only after a failed write
    /// (the node cannot go on without its log) or while the process is stopping.
    pub(crate) fn submit(&self, op: Op) -> Result<(), String> {
        self.tx.send(op).map_err(|_| "the log writer has stopped after a failed write".to_string())
    }

    /// Entries up to this index are on disk.
    pub(crate) fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }
}

/// The thread that gives back RocksDB's WAL after purges ([`LogStore::release_wal`]). Owned by
/// the writer thread, which joins it when it ends, so neither outlives the log's handle.
struct WalRelease {
    /// One slot: a request made while a release runs queues one more, and requests made while
    /// one is queued are covered by it.
    tx: Option<mpsc::SyncSender<()>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl WalRelease {
    fn start(log: LogStore) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel(1);
        let handle = std::thread::Builder::new().name("raft-wal-release".into()).spawn(move || {
            while rx.recv().is_ok() {
                if let Err(e) = log.release_wal() {
                    // The WAL stays until the next purge's release; nothing is lost.
                    tracing::warn!(error = %e, "flushing after a log purge failed");
                }
            }
        })?;
        Ok(Self { tx: Some(tx), handle: Some(handle) })
    }

    fn request(&self) {
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(());
        }
    }
}

impl Drop for WalRelease {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

fn run(log: &LogStore, rx: &mpsc::Receiver<Op>, durable: &AtomicU64, release: &WalRelease) {
    let mut next: Option<Op> = None;
    loop {
        let op = match next.take() {
            Some(op) => op,
            None => match rx.recv() {
                Ok(op) => op,
                Err(_) => return,
            },
        };
        match op {
            Op::Append { entries, flushed } => {
                // Every append queued behind this one shares its write and fsync.
                let mut batches = vec![(entries, flushed)];
                while let Ok(op) = rx.try_recv() {
                    match op {
                        Op::Append { entries, flushed } => batches.push((entries, flushed)),
                        other => {
                            next = Some(other);
                            break;
                        }
                    }
                }
                let last = batches.iter().filter_map(|(e, _)| e.last().map(|(i, _)| *i)).max();
                let written =
                    log.append(batches.iter().flat_map(|(e, _)| e.iter().map(|(i, b)| (*i, b.as_slice()))));
                let failed = written.as_ref().err().map(ToString::to_string);
                if let (None, Some(last)) = (&failed, last) {
                    durable.store(last, Ordering::Release);
                }
                for (_, flushed) in batches {
                    flushed(match &failed {
                        None => Ok(()),
                        Some(e) => Err(std::io::Error::other(e.clone())),
                    });
                }
                if let Some(e) = failed {
                    tracing::error!(error = %e, "writing the raft log failed; the log writer stops");
                    return;
                }
            }
            Op::Truncate { from, done } => {
                let result = log.truncate_from(from).map_err(|e| e.to_string());
                if result.is_ok() {
                    durable.fetch_min(from.saturating_sub(1), Ordering::AcqRel);
                }
                let _ = done.send(result);
            }
            Op::Purge { upto, key, value, done } => {
                let purged = log.purge_with_meta(upto, key, &value);
                if purged.is_ok() {
                    release.request();
                }
                let _ = done.send(purged.map_err(|e| e.to_string()));
            }
            Op::PutMeta { key, value, sync, done } => {
                let result =
                    if sync { log.put_meta(key, &value) } else { log.put_meta_unsynced(key, &value) };
                let _ = done.send(result.map_err(|e| e.to_string()));
            }
        }
    }
}
