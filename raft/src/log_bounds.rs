//! The log's size: what a node keeps besides its data.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::log_storage::LogStorage;
use crate::options::RaftOptions;
use crate::types::{NodeId, Raft};
use openraft::BasicNode;

/// Keeps the log to a size in bytes: once it holds `snapshot_after_bytes` and that much was
/// appended since the last snapshot this took, takes a snapshot and drops the log behind it
/// but the last `keep_bytes` (none on a node alone in its cluster). (openraft's own policy
/// counts entries, and one entry may carry a few bytes or many MiB.) The second condition is
/// for a cluster, whose `keep_bytes` (4 MiB by default, as the bound) is over the bound again
/// after the next append: without it every check took a snapshot, a store checkpoint on each
/// node ten times a second, and three nodes took half the samples a second.
///
/// The bound is checked every [`CHECK`]; idleness is judged once a second. A snapshot for
/// the bound comes no sooner after the last than [`PACE`] times as long as that one took,
/// unless the log is past [`PACE_UNTIL`] times its bound (see [`over_bound`]), so that the log
/// outgrows its bound rather than the node spending most of its time on snapshots when they
/// are dear.
///
/// When writes stop (the log grew by less than [`IDLE_GROWTH`] a second for [`IDLE_SECONDS`]
/// seconds) and it holds more than [`IDLE_MIN_BYTES`], or more than [`SETTLE_BYTES`] were
/// written since the node was last quiet, the log is dropped up to a snapshot as far as every
/// follower has it, keeping none for catching up: a quiet node then holds little more than its
/// data. The second case is the end of a burst whatever it left in the log: the snapshot's
/// checkpoint and the purge flush the memtables that keep RocksDB's WAL files (up to its 4 MiB
/// bound stayed at rest in `collabstream bench`). Taking a snapshot costs a store checkpoint;
/// nothing of it stays on disk (`state_machine`). Three a second under `collabstream bench`
/// cost apply 2-3 % of its time; ten a second on each of three nodes halved their throughput.
pub(crate) async fn run_log_bounds(
    raft: Raft,
    options: RaftOptions,
    log: LogStorage,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The last entry seen: growth is counted by entries, as the log's size falls with a purge
    // (a purge queued just before the size was read once hid the writes that followed it).
    let (_, mut seen) = log.appended_after(0);
    let mut quiet_seconds = 0u32;
    // Checks and growth in the current second.
    let (mut checks, mut second_growth) = (0u32, 0u64);
    // What this task last asked to drop: while a follower is down, an idle node would
    // otherwise ask (and log) the same purge every second.
    let mut purged_upto = 0;
    // Bytes written to the log since the node was last quiet.
    let mut written = 0;
    // Bytes written since the last snapshot taken for the bound: all of the log at start.
    let mut since_snapshot = log.log_bytes();
    // How long the last snapshot this task waited for took, and when it was done.
    let (mut last_took, mut last_done) = (Duration::ZERO, std::time::Instant::now());
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let (growth, last) = log.appended_after(seen);
        seen = last;
        written += growth;
        since_snapshot += growth;
        second_growth += growth;
        checks += 1;
        let second = checks == CHECKS_A_SECOND;
        if second {
            quiet_seconds = if second_growth < IDLE_GROWTH { quiet_seconds + 1 } else { 0 };
            (checks, second_growth) = (0, 0);
        }
        let bytes = log.log_bytes();
        let over = over_bound(
            Log { bytes, since_snapshot, bound: options.snapshot_after_bytes },
            last_took,
            last_done.elapsed(),
        );
        let idle =
            second && quiet_seconds >= IDLE_SECONDS && (bytes > IDLE_MIN_BYTES || written > SETTLE_BYTES);
        if !over && !idle {
            continue;
        }
        let applied = raft.metrics().borrow().last_applied.map(|l| l.index).unwrap_or(0);
        let snapshot_index =
            |m: &openraft::RaftMetrics<NodeId, BasicNode>| m.snapshot.map(|l| l.index).unwrap_or(0);
        if snapshot_index(&raft.metrics().borrow()) < applied {
            let began = std::time::Instant::now();
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
            (last_took, last_done) = (began.elapsed(), std::time::Instant::now());
        }
        since_snapshot = 0;
        let (snapshot, slowest_follower, alone) = {
            let m = raft.metrics().borrow().clone();
            let alone = m.membership_config.nodes().all(|(id, _)| *id == m.id);
            (snapshot_index(&m), crate::cache_release::slowest_follower(&m), alone)
        };
        let upto = if over {
            // `keep_bytes` is for followers catching up; a node alone keeps none.
            let keep = if alone { 0 } else { options.keep_bytes };
            log.purge_point(keep).map(|p| p.min(snapshot))
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
        if !over {
            written = 0;
        }
    }
}

/// How often the log's size is compared with its bound. Under `collabstream bench`'s load
/// (2-2.7M samples a second, 6.6 bytes a sample in the log) a check a second let the log's
/// files reach 7-13 MB over a 4 MiB bound, most of the data directory right after ingestion;
/// checked every 100 ms they stayed at 4.0 MB or less, at about three snapshots (checkpoints)
/// a second instead of one (docs/benchmarks.md, session 25).
const CHECK: Duration = Duration::from_millis(100);
/// A snapshot for the bound waits at least this many times as long as the last one took: at
/// most a quarter of the time goes to them. A store checkpoint under `collabstream bench`'s
/// samples takes tens of milliseconds, so the 100 ms check still decides there; with the
/// meetings pack's window state it takes 180-410 ms (every changed pane is written), and
/// back to back they cost the aggregation bench's node 22-27 % of the events a second it
/// takes with them paced so (docs/benchmarks.md, session 26).
const PACE: u32 = 3;
/// ...unless the log holds more than this many times its bound (64 MiB by default): a slow
/// disk makes snapshots slow, and waiting on them must not let the log grow without end.
const PACE_UNTIL: u64 = 16;

/// The log's size as the bound sees it: its bytes, those written since the last snapshot the
/// bound took, and the bound (`snapshot_after_bytes`).
#[derive(Debug, Clone, Copy)]
struct Log {
    bytes: u64,
    since_snapshot: u64,
    bound: u64,
}

/// Whether the bound takes a snapshot now: the log holds more than the bound, as much was
/// written since the last snapshot, and `since` that one, which took `took`, it waited
/// [`PACE`] times as long (or the log is past [`PACE_UNTIL`] times the bound).
fn over_bound(log: Log, took: Duration, since: Duration) -> bool {
    let paced = since >= took * PACE || log.bytes > log.bound.saturating_mul(PACE_UNTIL);
    log.bytes > log.bound && log.since_snapshot > log.bound && paced
}

/// Checks in a second, over which idleness is judged.
const CHECKS_A_SECOND: u32 = 10;
/// The log counts as idle when it grows by less than this a second...
const IDLE_GROWTH: u64 = 64 << 10;
/// ...for this many seconds...
const IDLE_SECONDS: u32 = 2;
/// ...and is worth dropping when it holds more than this...
const IDLE_MIN_BYTES: u64 = 1 << 20;
/// ...or when more than this was written since the node was last quiet. Not every byte: a
/// leader's ticks (an entry a second) would then take a snapshot every two seconds of quiet.
const SETTLE_BYTES: u64 = 64 << 10;

#[cfg(test)]
mod tests {
    use super::*;

    fn log(bytes_mib: u64, since_mib: u64) -> Log {
        Log { bytes: bytes_mib << 20, since_snapshot: since_mib << 20, bound: 4 << 20 }
    }

    #[test]
    fn the_bound_snapshots_once_as_much_was_written_since_the_last() {
        let ms = Duration::from_millis;
        assert!(!over_bound(log(3, 3), ms(0), ms(0)), "under the bound");
        assert!(!over_bound(log(5, 1), ms(0), ms(0)), "a cluster's kept log, little written since");
        assert!(over_bound(log(5, 5), ms(0), ms(0)));
    }

    #[test]
    fn a_snapshot_waits_three_times_as_long_as_the_last_one_took() {
        let ms = Duration::from_millis;
        assert!(over_bound(log(5, 5), ms(20), ms(60)), "a cheap one: the next check decides");
        assert!(!over_bound(log(40, 40), ms(300), ms(899)), "a dear one: the log grows meanwhile");
        assert!(over_bound(log(40, 40), ms(300), ms(900)));
        let at = |bytes| Log { bytes, since_snapshot: bytes, bound: 4 << 20 };
        assert!(!over_bound(at(64 << 20), ms(10_000), ms(1_000)), "up to 16 times the bound...");
        assert!(over_bound(at((64 << 20) + 1), ms(10_000), ms(1_000)), "...and no further");
    }
}
