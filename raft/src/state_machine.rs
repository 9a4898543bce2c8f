//! [`StateMachine`]: the store as openraft's state machine. Apply is the store's deterministic
//! apply; the last applied log id and the membership are recorded in the store with every
//! entry and made durable at its checkpoints, so they always match the data.
//!
//! Snapshots are RocksDB checkpoints of the store (directories of hard links to its SST
//! files), kept in the snapshot directory as `<id>.snap` with their metadata in `<id>.meta`,
//! and streamed to followers file by file (`archive`) without being copied first. A received
//! snapshot is unpacked and becomes the current one before the store is replaced, so an
//! install cut short by a crash is done again at the next start; an older snapshot never
//! replaces a newer one.

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
    current: Mutex<Option<(Meta, PathBuf)>>,
    incoming: Mutex<Option<PathBuf>>,
    seq: AtomicU64,
}

impl Snapshots {
    /// Opens `dir`, finds the newest complete snapshot and removes leftovers of interrupted
    /// builds and receives.
    fn open(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let mut best: Option<(Meta, PathBuf)> = None;
        for e in std::fs::read_dir(&dir)? {
            let path = e?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
            if let Some(id) = name.strip_suffix(".meta") {
                let snap = dir.join(format!("{id}.snap"));
                let meta = std::fs::read(&path).ok().and_then(|b| decode::<Meta>(&b).ok());
                // A snapshot is a checkpoint directory; a `.snap` file is an archive left by an
                // earlier development build, and is not used.
                if let (Some(meta), true) = (meta, snap.is_dir())
                    && best.as_ref().is_none_or(|(b, _)| b.last_log_id < meta.last_log_id)
                {
                    best = Some((meta, snap));
                }
            } else if name.starts_with("tmp-") || name.starts_with("incoming-") {
                let _ =
                    if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            }
        }
        Ok(Self { dir, current: Mutex::new(best), incoming: Mutex::new(None), seq: AtomicU64::new(0) })
    }

    fn temp(&self, what: &str) -> PathBuf {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("tmp-{what}-{}-{n}", std::process::id()))
    }

    /// Records the checkpoint directory `checkpoint` as the current snapshot under `meta` and
    /// removes the one it replaces, durably (renamed into place and the directory synced; the
    /// checkpoint's files must be synced already). A snapshot older
    /// than the current one does not replace it (a build that finishes after a newer snapshot
    /// was installed would leave the current snapshot behind the purged log): it is removed,
    /// and the current one is returned instead.
    fn set_current(&self, meta: &Meta, checkpoint: &Path) -> std::io::Result<(Meta, PathBuf)> {
        // Held throughout, so that two snapshots set at once cannot both pass the comparison.
        let mut current = self.current.lock();
        if let Some((cur_meta, cur_snap)) = current.as_ref()
            && cur_meta.last_log_id > meta.last_log_id
        {
            tracing::info!(
                stale = %meta.snapshot_id,
                current = %cur_meta.snapshot_id,
                "a snapshot older than the current one is dropped"
            );
            let _ = std::fs::remove_dir_all(checkpoint);
            return Ok((cur_meta.clone(), cur_snap.clone()));
        }
        let snap = self.dir.join(format!("{}.snap", meta.snapshot_id));
        std::fs::rename(checkpoint, &snap)?;
        let meta_path = self.dir.join(format!("{}.meta", meta.snapshot_id));
        let bytes = encode(meta).map_err(std::io::Error::other)?;
        let tmp = self.temp("meta");
        std::fs::write(&tmp, bytes)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &meta_path)?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        let old = current.replace((meta.clone(), snap.clone()));
        if let Some((old_meta, old_snap)) = old
            && old_meta.snapshot_id != meta.snapshot_id
        {
            // The meta first: a snapshot without it is ignored at the next start.
            let _ = std::fs::remove_file(self.dir.join(format!("{}.meta", old_meta.snapshot_id)));
            let _ = std::fs::remove_dir_all(old_snap);
        }
        Ok((meta.clone(), snap))
    }

    /// The current snapshot, opened for streaming. Opened under the lock that replacing it
    /// takes, so that its directory is not removed halfway through.
    fn open_current(&self) -> std::io::Result<Option<(Meta, ArchiveReader)>> {
        let current = self.current.lock();
        match current.as_ref() {
            Some((meta, dir)) => Ok(Some((meta.clone(), ArchiveReader::open(dir)?))),
            None => Ok(None),
        }
    }
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
    /// ([`Store::install_interrupted`]); the snapshot, made current before the install began,
    /// is installed again here, before openraft reads the state.
    pub fn new(store: Arc<Store>, snapshot_dir: PathBuf) -> std::io::Result<Self> {
        let snapshots = Arc::new(Snapshots::open(snapshot_dir)?);
        if store.install_interrupted() {
            let Some((meta, path)) = snapshots.current.lock().clone() else {
                return Err(std::io::Error::other(format!(
                    "the node stopped while installing a snapshot and no snapshot is left in {}; \
                     move the data directory away and start the node again to rejoin with a fresh copy",
                    snapshots.dir.display()
                )));
            };
            tracing::warn!(snapshot = %meta.snapshot_id, "installing the interrupted snapshot again");
            install(&store, &meta, &path).map_err(|e| std::io::Error::other(e.to_string()))?;
        }
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

/// Builds snapshots; openraft runs it beside apply.
#[derive(Debug)]
pub struct SnapshotBuilder {
    store: Arc<Store>,
    snapshots: Arc<Snapshots>,
    stats: Arc<RaftStats>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (store, snapshots) = (self.store.clone(), self.snapshots.clone());
        let (meta, reader) = blocking(move || {
            let checkpoint = snapshots.temp("checkpoint");
            let created = store.create_snapshot(&checkpoint);
            if created.is_err() {
                let _ = std::fs::remove_dir_all(&checkpoint);
            }
            let (_, sm) = created.map_err(|e| snap_err(chain(&e)))?;
            let sm = decode_meta(&sm)?;
            let n = snapshots.seq.fetch_add(1, Ordering::Relaxed);
            let index = sm.last_applied.map(|l| l.index).unwrap_or(0);
            let meta = Meta {
                last_log_id: sm.last_applied,
                last_membership: sm.membership,
                snapshot_id: format!("{index:020}-{}-{n}", std::process::id()),
            };
            tracing::info!(snapshot = %meta.snapshot_id, "snapshot built");
            snapshots.set_current(&meta, &checkpoint).map_err(snap_err)?;
            // The current one: this build's, or a newer one installed meanwhile.
            snapshots.open_current().map_err(snap_err)?.ok_or_else(|| snap_err("no current snapshot"))
        })
        .await?;
        self.stats.snapshots_built.fetch_add(1, Ordering::Relaxed);
        Ok(Snapshot { meta, snapshot: Box::new(SnapshotData::Stored(reader)) })
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
        SnapshotBuilder {
            store: self.store.clone(),
            snapshots: self.snapshots.clone(),
            stats: self.stats.clone(),
        }
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
                file.seek(std::io::SeekFrom::Start(0)).await.map_err(snap_err)?;
                Box::new(file.into_std().await)
            }
            SnapshotData::Stored(mut reader) => {
                std::io::Seek::rewind(&mut reader).map_err(snap_err)?;
                Box::new(reader)
            }
        };
        let incoming = self.snapshots.incoming.lock().take();
        let (store, snapshots, meta_owned) = (self.store.clone(), self.snapshots.clone(), meta.clone());
        let installed = blocking(move || {
            let dir = snapshots.temp("received");
            let unpacked = archive::unpack(reader, &dir);
            if let Some(incoming) = incoming {
                let _ = std::fs::remove_file(incoming);
            }
            if let Err(e) = unpacked {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(snap_err(e));
            }
            // Current first, durably: if the node stops during the install, the store is found
            // half replaced at the next start and this snapshot installed again from here
            // (openraft may already have purged the log it covers).
            let (current, path) = snapshots.set_current(&meta_owned, &dir).map_err(snap_err)?;
            if current.snapshot_id != meta_owned.snapshot_id {
                // Not expected (openraft installs only snapshots newer than its own); keep the
                // newer state rather than going back.
                return Ok(false);
            }
            install(&store, &meta_owned, &path)?;
            Ok(true)
        })
        .await?;
        if installed {
            self.meta = SmMeta { last_applied: meta.last_log_id, membership: meta.last_membership.clone() };
            self.stats.snapshots_installed.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(log) = &self.log {
            log.release_held_purge().await?;
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let snapshots = self.snapshots.clone();
        let current = blocking(move || snapshots.open_current().map_err(snap_err)).await?;
        Ok(current.map(|(meta, reader)| Snapshot { meta, snapshot: Box::new(SnapshotData::Stored(reader)) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(index: u64, id: &str) -> Meta {
        Meta {
            last_log_id: Some(openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), index)),
            last_membership: Default::default(),
            snapshot_id: id.into(),
        }
    }

    #[test]
    fn a_build_that_finishes_after_a_newer_install_does_not_replace_it() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = Snapshots::open(dir.path().join("snapshots")).unwrap();
        let installed = snapshots.temp("received");
        std::fs::create_dir(&installed).unwrap();
        std::fs::write(installed.join("CURRENT"), b"newer").unwrap();
        snapshots.set_current(&meta(40, "installed"), &installed).unwrap();
        // A build started at index 30, before the install, finishes now.
        let built = snapshots.temp("checkpoint");
        std::fs::create_dir(&built).unwrap();
        std::fs::write(built.join("CURRENT"), b"older").unwrap();
        let (current, path) = snapshots.set_current(&meta(30, "built"), &built).unwrap();
        assert_eq!(current.snapshot_id, "installed");
        assert_eq!(std::fs::read(path.join("CURRENT")).unwrap(), b"newer");
        assert!(!built.exists() && !snapshots.dir.join("built.snap").exists());
        // And so after a restart.
        let reopened = Snapshots::open(snapshots.dir.clone()).unwrap();
        assert_eq!(reopened.current.lock().as_ref().unwrap().0.snapshot_id, "installed");
    }
}
