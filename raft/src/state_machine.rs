//! [`StateMachine`]: the store as openraft's state machine. Apply is the store's deterministic
//! apply; the last applied log id and the membership are recorded in the store with every
//! entry and made durable at its checkpoints, so they always match the data.
//!
//! A snapshot is made when one is asked for (to bound the log, or to send to a follower): a
//! store checkpoint, then a RocksDB checkpoint (a directory of hard links to the store's
//! files) whose files are opened for streaming (`archive`) and whose directory is removed at
//! once. Nothing of it stays on disk but while a follower is being sent it: a snapshot kept
//! between transfers held the files that compaction had replaced since (up to 18 MB during the
//! side-by-side benchmark's ingestion; docs/benchmarks.md, session 8). The store itself is the
//! current snapshot, so no snapshot is ever older than the log's purge point.
//!
//! A received snapshot is unpacked and recorded (`<id>.snap` with its metadata in `<id>.meta`)
//! before the store is replaced, so that an install cut short by a crash is done again at the
//! next start; it is removed once installed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use collabstream_store::Store;
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageIOError, StoredMembership,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use crate::LogStorage;
use crate::archive::{self, ArchiveReader};
use crate::codec::{decode, encode};
use crate::raft_stats::RaftStats;
use crate::snapshot_data::SnapshotData;
use crate::types::{Entry, LogId, Membership, NodeId, Request, Response, StorageError, TypeConfig};

type Meta = SnapshotMeta<NodeId, openraft::BasicNode>;

/// What the store records for Raft with each applied entry.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct SmMeta {
    last_applied: Option<LogId>,
    membership: Membership,
}

/// An error with its causes, for storage errors that openraft only logs as text.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(&format!(": {c}"));
        cur = c.source();
    }
    s
}

fn sm_err(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_state_machine(openraft::AnyError::error(e.to_string())).into()
}

fn snap_err(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_snapshot(None, openraft::AnyError::error(e.to_string())).into()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f).await.map_err(sm_err)?
}

/// The snapshot directory and what is in it.
#[derive(Debug)]
struct Snapshots {
    dir: PathBuf,
    /// A received snapshot whose install has not finished, with its meta.
    received: Mutex<Option<(Meta, PathBuf)>>,
    incoming: Mutex<Option<PathBuf>>,
    seq: AtomicU64,
}

impl Snapshots {
    /// Opens `dir`, finds the newest received snapshot left there (its install was cut short,
    /// or it finished and the node stopped before removing it) and removes leftovers of
    /// interrupted makes and receives.
    fn open(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let (mut found, mut snaps): (Vec<(Meta, PathBuf)>, Vec<PathBuf>) = (Vec::new(), Vec::new());
        for e in std::fs::read_dir(&dir)? {
            let path = e?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
            if let Some(id) = name.strip_suffix(".meta") {
                let snap = dir.join(format!("{id}.snap"));
                let meta = std::fs::read(&path).ok().and_then(|b| decode::<Meta>(&b).ok());
                match (meta, snap.is_dir()) {
                    (Some(meta), true) => found.push((meta, snap)),
                    _ => remove_snapshot(&dir, id),
                }
            } else if name.starts_with("tmp-") || name.starts_with("incoming-") {
                remove_path(&path);
            } else if name.ends_with(".snap") {
                snaps.push(path);
            }
        }
        // A snapshot whose meta is gone (removed first, then a crash) is not a snapshot.
        for snap in snaps.iter().filter(|s| !found.iter().any(|(_, f)| f == *s)) {
            remove_path(snap);
        }
        found.sort_by_key(|a| a.0.last_log_id);
        let newest = found.pop();
        // Older ones (and the kept checkpoints of versions before snapshots were made on
        // demand) are of no use.
        for (meta, _) in found {
            remove_snapshot(&dir, &meta.snapshot_id);
        }
        Ok(Self { dir, received: Mutex::new(newest), incoming: Mutex::new(None), seq: AtomicU64::new(0) })
    }

    fn temp(&self, what: &str) -> PathBuf {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("tmp-{what}-{}-{n}", std::process::id()))
    }

    /// Makes a snapshot of `store` as it is now: its meta, and the checkpoint's files opened
    /// for streaming (their directory is gone when this returns; the files stay readable
    /// through the reader, and their disk is freed when it is dropped, unless the store still
    /// links them). The id names the last applied log id, so a snapshot made again of the
    /// same state, here or on another node, carries the same id (openraft expects the current
    /// snapshot to keep its id while nothing changes); its files may differ, which a receiver
    /// handles (see `install_snapshot`).
    fn make(&self, store: &Store) -> Result<(Meta, ArchiveReader), StorageError> {
        let dir = self.temp("checkpoint");
        let made = (|| {
            let (_, sm) = store.create_snapshot(&dir).map_err(|e| snap_err(chain(&e)))?;
            let meta = snapshot_meta(&sm)?;
            Ok((meta, ArchiveReader::open(&dir).map_err(snap_err)?))
        })();
        remove_path(&dir);
        made
    }

    /// Records the unpacked snapshot in `unpacked` as received, durably (renamed into place,
    /// its meta written and synced, the directory synced; the files must be synced already),
    /// in place of any earlier one. Returns where it now is.
    fn set_received(&self, meta: &Meta, unpacked: &Path) -> std::io::Result<PathBuf> {
        let mut received = self.received.lock();
        let snap = self.dir.join(format!("{}.snap", meta.snapshot_id));
        remove_path(&snap);
        std::fs::rename(unpacked, &snap)?;
        let meta_path = self.dir.join(format!("{}.meta", meta.snapshot_id));
        let bytes = encode(meta).map_err(std::io::Error::other)?;
        let tmp = self.temp("meta");
        std::fs::write(&tmp, bytes)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &meta_path)?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        if let Some((old, _)) = received.replace((meta.clone(), snap.clone()))
            && old.snapshot_id != meta.snapshot_id
        {
            remove_snapshot(&self.dir, &old.snapshot_id);
        }
        Ok(snap)
    }

    /// Removes the received snapshot: the store holds it durably now.
    fn installed(&self) {
        if let Some((meta, _)) = self.received.lock().take() {
            remove_snapshot(&self.dir, &meta.snapshot_id);
        }
    }
}

/// Removes snapshot `id` from `dir`: the meta first, since a snapshot without one is ignored.
fn remove_snapshot(dir: &Path, id: &str) {
    remove_path(&dir.join(format!("{id}.meta")));
    remove_path(&dir.join(format!("{id}.snap")));
}

fn remove_path(path: &Path) {
    let _ = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
}

/// openraft's state machine over the store.
#[derive(Debug, Clone)]
pub struct StateMachine {
    store: Arc<Store>,
    snapshots: Arc<Snapshots>,
    meta: SmMeta,
    /// The log whose purges wait for installs ([`LogStorage::purging_behind`]).
    log: Option<LogStorage>,
    stats: Arc<RaftStats>,
}

impl StateMachine {
    /// The state machine over `store`, keeping snapshots in `snapshot_dir`.
    ///
    /// If the node stopped while a snapshot was being installed, the store was left wiped
    /// ([`Store::install_interrupted`]); the snapshot, recorded before the install began, is
    /// installed again here, before openraft reads the state.
    pub fn new(store: Arc<Store>, snapshot_dir: PathBuf) -> std::io::Result<Self> {
        let snapshots = Arc::new(Snapshots::open(snapshot_dir)?);
        if store.install_interrupted() {
            let Some((meta, path)) = snapshots.received.lock().clone() else {
                return Err(std::io::Error::other(format!(
                    "the node stopped while installing a snapshot and no snapshot is left in {}; \
                     move the data directory away and start the node again to rejoin with a fresh copy",
                    snapshots.dir.display()
                )));
            };
            tracing::warn!(snapshot = %meta.snapshot_id, "installing the interrupted snapshot again");
            install(&store, &meta, &path).map_err(|e| std::io::Error::other(e.to_string()))?;
        }
        snapshots.installed();
        let meta = decode_meta(&store.sm_meta()).map_err(std::io::Error::other)?;
        Ok(Self { store, snapshots, meta, log: None, stats: Arc::default() })
    }

    /// Carries out the purges `log` holds back once an install has made them safe (pass the
    /// log built with [`LogStorage::purging_behind`] over the same store).
    pub fn releasing_purges_of(mut self, log: LogStorage) -> Self {
        self.log = Some(log);
        self
    }

    /// Counts applies and snapshots in `stats` (the node's).
    pub fn counting_in(mut self, stats: Arc<RaftStats>) -> Self {
        self.stats = stats;
        self
    }
}

/// Replaces the store's content with the snapshot's checkpoint in `dir` and records its meta.
fn install(store: &Store, meta: &Meta, dir: &Path) -> Result<(), StorageError> {
    let sm = SmMeta { last_applied: meta.last_log_id, membership: meta.last_membership.clone() };
    let sm_bytes = encode(&sm).map_err(sm_err)?;
    store.install_snapshot(dir).map_err(|e| snap_err(chain(&e)))?;
    store.set_sm_meta(sm_bytes).map_err(|e| snap_err(chain(&e)))?;
    tracing::info!(snapshot = %meta.snapshot_id, "snapshot installed");
    Ok(())
}

fn decode_meta(bytes: &[u8]) -> Result<SmMeta, StorageError> {
    if bytes.is_empty() { Ok(SmMeta::default()) } else { decode(bytes).map_err(sm_err) }
}

/// The meta of a snapshot of the store whose replication record is `sm`. The id names the last
/// applied log id, so a snapshot made again of the same state keeps its id.
fn snapshot_meta(sm: &[u8]) -> Result<Meta, StorageError> {
    let sm = decode_meta(sm)?;
    let snapshot_id = match sm.last_applied {
        Some(l) => format!("{:020}-{}", l.index, l.leader_id),
        None => "empty".to_string(),
    };
    Ok(Meta { last_log_id: sm.last_applied, last_membership: sm.membership, snapshot_id })
}

/// Builds snapshots; openraft runs it beside apply.
#[derive(Debug)]
pub struct SnapshotBuilder {
    store: Arc<Store>,
    stats: Arc<RaftStats>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    /// A checkpoint of the store, which lets the log be purged up to it, and the meta of the
    /// store as it now stands; no data. openraft keeps only the meta of a snapshot it built
    /// (`sm::worker` answers `Response::BuildSnapshot(snap.meta)`, openraft 0.9.25) and takes
    /// what it sends from [`get_current_snapshot`](RaftStateMachine::get_current_snapshot),
    /// which makes it then. Made here too, the data was a RocksDB checkpoint (every memtable
    /// flushed, the log's too, every file linked and opened) thrown away about once a second
    /// under load.
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let store = self.store.clone();
        let meta = blocking(move || {
            let (_, sm) = store.checkpoint_with_meta().map_err(|e| snap_err(chain(&e)))?;
            snapshot_meta(&sm)
        })
        .await?;
        tracing::info!(snapshot = %meta.snapshot_id, "snapshot built");
        self.stats.snapshots_built.fetch_add(1, Ordering::Relaxed);
        Ok(Snapshot { meta, snapshot: Box::new(SnapshotData::Built) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), StorageError> {
        Ok((self.meta.last_applied, self.meta.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let (started, n) = (std::time::Instant::now(), entries.len() as u64);
        let store = self.store.clone();
        let mut meta = self.meta.clone();
        let (responses, meta) = blocking(move || {
            let mut out = Vec::with_capacity(entries.len());
            for e in entries {
                let index = e.log_id.index;
                meta.last_applied = Some(e.log_id);
                let apply_err = |err: &dyn std::fmt::Display| -> StorageError {
                    StorageIOError::apply(e.log_id, openraft::AnyError::error(err.to_string())).into()
                };
                match e.payload {
                    EntryPayload::Normal(Request { command }) => {
                        let bytes = encode(&meta).map_err(|x| apply_err(&x))?;
                        let outcomes = store
                            .apply_batch(index, &command, Some(bytes))
                            .map_err(|x| apply_err(&chain(&x)))?;
                        out.push(Response { outcomes });
                    }
                    payload => {
                        if let EntryPayload::Membership(m) = payload {
                            meta.membership = StoredMembership::new(Some(e.log_id), m);
                        }
                        let bytes = encode(&meta).map_err(|x| apply_err(&x))?;
                        store.apply_meta(index, bytes).map_err(|x| apply_err(&chain(&x)))?;
                        out.push(Response::default());
                    }
                }
            }
            Ok((out, meta))
        })
        .await?;
        self.meta = meta;
        self.stats.apply.observe(started.elapsed().as_secs_f64());
        self.stats.applied_entries.fetch_add(n, Ordering::Relaxed);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { store: self.store.clone(), stats: self.stats.clone() }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotData>, StorageError> {
        let path = self.snapshots.dir.join(format!(
            "incoming-{}-{}.snap",
            std::process::id(),
            self.snapshots.seq.fetch_add(1, Ordering::Relaxed)
        ));
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .await
            .map_err(snap_err)?;
        *self.snapshots.incoming.lock() = Some(path);
        Ok(Box::new(SnapshotData::Receiving(file)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<SnapshotData>,
    ) -> Result<(), StorageError> {
        // The data is normally the file handed out for receiving; a stored snapshot (openraft's
        // full-snapshot install) is read the same way, from its start.
        let reader: Box<dyn std::io::Read + Send> = match *snapshot {
            SnapshotData::Receiving(mut file) => {
                file.flush().await.map_err(snap_err)?;
                // openraft writes each chunk at its offset, and the last one ends the stream. A
                // stream sent again under the same id (the same state snapshotted again, after
                // a leader change or a failed send) is written over the first from offset 0, and
                // may be shorter: what is left past its end is not part of it.
                let end = file.stream_position().await.map_err(snap_err)?;
                file.set_len(end).await.map_err(snap_err)?;
                file.seek(std::io::SeekFrom::Start(0)).await.map_err(snap_err)?;
                Box::new(file.into_std().await)
            }
            SnapshotData::Stored(mut reader) => {
                std::io::Seek::rewind(&mut reader).map_err(snap_err)?;
                Box::new(reader)
            }
            SnapshotData::Built => return Err(snap_err("a built snapshot carries no data to install")),
        };
        let incoming = self.snapshots.incoming.lock().take();
        let (store, snapshots, meta_owned) = (self.store.clone(), self.snapshots.clone(), meta.clone());
        blocking(move || {
            let dir = snapshots.temp("received");
            let unpacked = archive::unpack(reader, &dir);
            if let Some(incoming) = incoming {
                let _ = std::fs::remove_file(incoming);
            }
            if let Err(e) = unpacked {
                remove_path(&dir);
                return Err(snap_err(e));
            }
            // Recorded first, durably: if the node stops during the install, the store is found
            // half replaced at the next start and this snapshot installed again from here
            // (openraft may already have purged the log it covers).
            let path = snapshots.set_received(&meta_owned, &dir).map_err(snap_err)?;
            install(&store, &meta_owned, &path)?;
            snapshots.installed();
            Ok(())
        })
        .await?;
        self.meta = SmMeta { last_applied: meta.last_log_id, membership: meta.last_membership.clone() };
        self.stats.snapshots_installed.fetch_add(1, Ordering::Relaxed);
        if let Some(log) = &self.log {
            log.release_held_purge().await?;
        }
        Ok(())
    }

    /// A snapshot of the store as it is now (see the module's doc): on the leader, the state
    /// machine's task stops applying while the store is checkpointed for it.
    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let (store, snapshots) = (self.store.clone(), self.snapshots.clone());
        let (meta, reader) = blocking(move || snapshots.make(&store)).await?;
        if meta.last_log_id.is_none() {
            return Ok(None);
        }
        Ok(Some(Snapshot { meta, snapshot: Box::new(SnapshotData::Stored(reader)) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn blank(index: u64) -> Entry {
        let log_id = openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), index);
        Entry { log_id, payload: EntryPayload::Blank }
    }

    /// A state machine over a new store in `dir`, and its snapshots' directory.
    fn machine(dir: &Path) -> (Arc<Store>, StateMachine, std::path::PathBuf) {
        let snapshot_dir = dir.join("snapshots");
        let store =
            Arc::new(Store::open(&dir.join("db"), collabstream_store::StoreConfig::default()).unwrap());
        let sm = StateMachine::new(store.clone(), snapshot_dir.clone()).unwrap();
        (store, sm, snapshot_dir)
    }

    fn files_in(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_snapshot_is_the_store_as_it_stands_and_leaves_no_files_behind() {
        let dir = tempfile::tempdir().unwrap();
        let (_, mut sm, snapshot_dir) = machine(dir.path());
        assert!(sm.get_current_snapshot().await.unwrap().is_none(), "nothing applied, no snapshot");

        sm.apply((0..=3).map(blank)).await.unwrap();
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta.last_log_id, Some(blank(3).log_id));
        assert_eq!(files_in(&snapshot_dir), Vec::<String>::new(), "the checkpoint's directory is gone");

        // Made again of the same state, it keeps its id; once the store moves on, so does it.
        let again = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(again.meta, current.meta);
        sm.apply([blank(4)]).await.unwrap();
        let after = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(after.meta.last_log_id, Some(blank(4).log_id));
        assert_ne!(after.meta.snapshot_id, current.meta.snapshot_id);

        // The first one still streams whole, from files its directory no longer names.
        let mut stream = Vec::new();
        let mut data = current.snapshot;
        data.read_to_end(&mut stream).await.unwrap();
        let unpacked = dir.path().join("unpacked");
        archive::unpack(stream.as_slice(), &unpacked).unwrap();
        assert!(files_in(&unpacked).iter().any(|f| f.ends_with(".sst")), "{:?}", files_in(&unpacked));
        assert!(unpacked.join("CURRENT").exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_build_is_a_checkpoint_named_as_the_current_snapshot_and_carries_no_data() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut sm, snapshot_dir) = machine(dir.path());
        sm.apply((0..=3).map(blank)).await.unwrap();
        assert_eq!(store.checkpointed_index(), 0);

        let built = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        assert_eq!(built.meta.last_log_id, Some(blank(3).log_id));
        assert_eq!(store.checkpointed_index(), 3, "the log may be purged up to what was built");
        assert_eq!(files_in(&snapshot_dir), Vec::<String>::new(), "nothing was written for it");
        assert_eq!(sm.get_current_snapshot().await.unwrap().unwrap().meta, built.meta);

        // Its data is no snapshot: reading or installing it fails, it does not send nothing.
        let mut data = built.snapshot;
        let e = data.read_to_end(&mut Vec::new()).await.unwrap_err();
        assert!(e.to_string().contains("get_current_snapshot"), "{e}");
        let e = sm.install_snapshot(&built.meta, data).await.unwrap_err();
        assert!(e.to_string().contains("no data to install"), "{e}");
    }

    #[test]
    fn leftovers_and_all_but_the_newest_received_snapshot_are_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = Snapshots::open(dir.path().to_path_buf()).unwrap();
        let meta = |index: u64, id: &str| Meta {
            last_log_id: Some(blank(index).log_id),
            last_membership: Default::default(),
            snapshot_id: id.into(),
        };
        for (index, id) in [(30, "older"), (40, "newer")] {
            let unpacked = snapshots.temp("received");
            std::fs::create_dir(&unpacked).unwrap();
            std::fs::write(unpacked.join("CURRENT"), id).unwrap();
            snapshots.set_received(&meta(index, id), &unpacked).unwrap();
        }
        assert_eq!(files_in(&snapshots.dir).len(), 2, "the newer replaced the older");
        // A crash left an older snapshot (say, a kept checkpoint of an earlier version), a
        // half-written temporary directory and a snapshot whose meta was already removed.
        std::fs::create_dir(snapshots.dir.join("older.snap")).unwrap();
        std::fs::write(snapshots.dir.join("older.meta"), encode(&meta(30, "older")).unwrap()).unwrap();
        std::fs::create_dir(snapshots.temp("checkpoint")).unwrap();
        std::fs::create_dir(snapshots.dir.join("meta-removed.snap")).unwrap();

        let reopened = Snapshots::open(snapshots.dir.clone()).unwrap();
        let (kept, path) = reopened.received.lock().clone().unwrap();
        assert_eq!(kept.snapshot_id, "newer");
        assert_eq!(std::fs::read(path.join("CURRENT")).unwrap(), b"newer");
        let mut left = files_in(&reopened.dir);
        left.sort();
        assert_eq!(left, ["newer.meta", "newer.snap"]);
        reopened.installed();
        assert_eq!(files_in(&reopened.dir), Vec::<String>::new());
    }
}
