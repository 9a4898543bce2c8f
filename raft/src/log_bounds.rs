//! The log's size and the snapshot's disk: what a node keeps besides its data.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use collabstream_store::Store;
use tokio_util::sync::CancellationToken;

use crate::log_storage::LogStorage;
use crate::options::RaftOptions;
use crate::types::{NodeId, Raft};
use openraft::BasicNode;

/// Keeps the log to a size in bytes: once it holds `snapshot_after_bytes`, takes a snapshot
/// and drops the log behind it but the last `keep_bytes`. (openraft's own policy counts
/// entries, and one entry may carry a few bytes or many MiB.)
///
/// When writes stop (the log grew by less than [`IDLE_GROWTH`] a second for [`IDLE_TICKS`]
/// seconds) and it holds more than [`IDLE_MIN_BYTES`], the log is dropped up to a snapshot as
/// far as every follower has it, keeping none for catching up: a quiet node then holds little
/// more than its data. A snapshot is a checkpoint of hard links, so taking one often is cheap.
///
/// A snapshot also keeps the SST files it links after compaction has replaced them in the
/// store. When those come to [`STALE_MIN_BYTES`] and a quarter of the store's, a new snapshot
/// is taken (at most every [`STALE_EVERY`]) so that the old one and its files go.
pub(crate) async fn run_log_bounds(
    raft: Raft,
    options: RaftOptions,
    store: Arc<Store>,
    log: LogStorage,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut last_bytes, mut quiet_ticks) = (log.log_bytes(), 0u32);
    // What this task last asked to drop: while a follower is down, an idle node would
    // otherwise ask (and log) the same purge every second.
    let mut purged_upto = 0;
    let mut last_stale_snapshot = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let bytes = log.log_bytes();
        quiet_ticks = if bytes.saturating_sub(last_bytes) < IDLE_GROWTH { quiet_ticks + 1 } else { 0 };
        last_bytes = bytes;
        let over = bytes > options.snapshot_after_bytes;
        let idle = quiet_ticks >= IDLE_TICKS && bytes > IDLE_MIN_BYTES;
        if !over && !idle {
            if last_stale_snapshot.elapsed() >= STALE_EVERY && stale_snapshot(&options.snapshot_dir, &store) {
                last_stale_snapshot = Instant::now();
                if let Err(e) = raft.trigger().snapshot().await {
                    tracing::warn!(error = %e, "cannot start a snapshot to let go of replaced files");
                }
            }
            continue;
        }
        let applied = raft.metrics().borrow().last_applied.map(|l| l.index).unwrap_or(0);
        let snapshot_index =
            |m: &openraft::RaftMetrics<NodeId, BasicNode>| m.snapshot.map(|l| l.index).unwrap_or(0);
        if snapshot_index(&raft.metrics().borrow()) < applied {
            if let Err(e) = raft.trigger().snapshot().await {
                tracing::warn!(error = %e, "cannot start a snapshot to bound the log");
                continue;
            }
            let done = raft
                .wait(Some(Duration::from_secs(120)))
                .metrics(|m| snapshot_index(m) >= applied, "snapshot to bound the log")
                .await;
            if let Err(e) = done {
                tracing::warn!(error = %e, "the snapshot to bound the log did not finish");
                continue;
            }
        }
        let (snapshot, slowest_follower) = {
            let m = raft.metrics().borrow().clone();
            (snapshot_index(&m), crate::cache_release::slowest_follower(&m))
        };
        let upto = if over {
            log.purge_point(options.keep_bytes).map(|p| p.min(snapshot))
        } else {
            // Idle: what every follower has, up to the snapshot.
            log.purge_point(0).map(|p| p.min(snapshot).min(slowest_follower.unwrap_or(u64::MAX)))
        };
        if let Some(upto) = upto
            && upto > purged_upto
        {
            purged_upto = upto;
            tracing::info!(bytes, upto, idle = !over, "dropping the log up to the snapshot");
            if let Err(e) = raft.trigger().purge_log(upto).await {
                tracing::warn!(error = %e, "cannot drop the log behind the snapshot");
            }
        }
        last_bytes = log.log_bytes();
    }
}

/// The log counts as idle when it grows by less than this a second...
const IDLE_GROWTH: u64 = 64 << 10;
/// ...for this many seconds...
const IDLE_TICKS: u32 = 2;
/// ...and is worth dropping when it holds more than this.
const IDLE_MIN_BYTES: u64 = 1 << 20;

/// A snapshot is retaken when the files only it still links come to this...
const STALE_MIN_BYTES: u64 = 4 << 20;
/// ...at most this often (each one flushes the memtables).
const STALE_EVERY: Duration = Duration::from_secs(5);

/// Whether the snapshots in `dir` hold at least [`STALE_MIN_BYTES`] and a quarter of the
/// store's SST bytes in files the store no longer links (a file's link count tells: a
/// checkpoint's files are hard links to the store's).
fn stale_snapshot(dir: &Path, store: &Store) -> bool {
    let stale = unlinked_bytes(dir);
    stale >= STALE_MIN_BYTES && stale >= store.stats().sst_bytes / 4
}

/// Bytes of the files under `dir`'s snapshot directories linked only once.
pub(crate) fn unlinked_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(snapshots) = std::fs::read_dir(dir) else { return 0 };
    let mut bytes = 0;
    for snap in snapshots.flatten() {
        let Ok(files) = std::fs::read_dir(snap.path()) else { continue };
        for f in files.flatten() {
            if let Ok(m) = f.metadata()
                && m.is_file()
                && m.nlink() == 1
            {
                bytes += m.len();
            }
        }
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_files_the_store_no_longer_links() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, snaps) = (tmp.path().join("db"), tmp.path().join("snapshots"));
        let snap = snaps.join("1-1-5.snap");
        std::fs::create_dir_all(&store).unwrap();
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(store.join("000010.sst"), vec![0; 1000]).unwrap();
        std::fs::hard_link(store.join("000010.sst"), snap.join("000010.sst")).unwrap();
        std::fs::write(snap.join("000007.sst"), vec![0; 300]).unwrap();
        std::fs::write(snaps.join("1-1-5.meta"), b"meta").unwrap();
        assert_eq!(unlinked_bytes(&snaps), 300);
        // Compaction removes the store's link: the snapshot alone holds the file now.
        std::fs::remove_file(store.join("000010.sst")).unwrap();
        assert_eq!(unlinked_bytes(&snaps), 1300);
    }
}
