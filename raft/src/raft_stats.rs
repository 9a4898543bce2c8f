//! [`RaftStats`]: what the replication layer measures of itself for `/metrics`: how long a
//! write waits to be committed and applied, how long apply takes, snapshots built and
//! installed, and leader changes seen.

use std::sync::atomic::{AtomicU64, Ordering};

use collabstream_common::NodeId;
use collabstream_common::histogram::{self, Histogram, family_header};
use tokio_util::sync::CancellationToken;

use crate::types::Raft;

#[derive(Debug)]
pub struct RaftStats {
    /// A group of writes from its proposal to its answer (committed by a majority, applied here).
    pub(crate) commit: Histogram,
    /// One call of the state machine's apply (a run of committed entries).
    pub(crate) apply: Histogram,
    pub(crate) applied_entries: AtomicU64,
    pub(crate) snapshots_built: AtomicU64,
    pub(crate) snapshots_installed: AtomicU64,
    leader_changes: AtomicU64,
}

impl Default for RaftStats {
    fn default() -> Self {
        Self {
            commit: Histogram::new(histogram::SECONDS),
            apply: Histogram::new(histogram::FAST_SECONDS),
            applied_entries: AtomicU64::new(0),
            snapshots_built: AtomicU64::new(0),
            snapshots_installed: AtomicU64::new(0),
            leader_changes: AtomicU64::new(0),
        }
    }
}

impl RaftStats {
    pub fn render(&self, out: &mut String) {
        let name = "collabstream_raft_commit_duration_seconds";
        family_header(
            out,
            name,
            "histogram",
            "Time from proposing a group of writes to its answer: logged by a majority, committed and applied on this node (the leader).",
        );
        self.commit.render(out, name, "");
        let name = "collabstream_raft_apply_duration_seconds";
        family_header(out, name, "histogram", "Time to apply a run of committed log entries to the store.");
        self.apply.render(out, name, "");
        let counters = [
            (
                "collabstream_raft_applied_entries_total",
                "Log entries applied to the store since start.",
                &self.applied_entries,
            ),
            (
                "collabstream_raft_snapshots_built_total",
                "Snapshots this node built since start.",
                &self.snapshots_built,
            ),
            (
                "collabstream_raft_snapshots_installed_total",
                "Snapshots this node installed from a leader since start.",
                &self.snapshots_installed,
            ),
            (
                "collabstream_raft_leader_changes_total",
                "Times this node saw the leader change (to another node or to none) since start.",
                &self.leader_changes,
            ),
        ];
        for (name, help, n) in counters {
            family_header(out, name, "counter", help);
            out.push_str(&format!("{name} {}\n", n.load(Ordering::Relaxed)));
        }
    }
}

/// Counts leader changes as openraft reports them, until `stop`.
pub(crate) async fn run_leader_watch(raft: Raft, stats: std::sync::Arc<RaftStats>, stop: CancellationToken) {
    let mut metrics = raft.metrics();
    let mut leader: Option<NodeId> = metrics.borrow().current_leader;
    loop {
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return },
            () = stop.cancelled() => return,
        }
        let now = metrics.borrow().current_leader;
        if now != leader {
            stats.leader_changes.fetch_add(1, Ordering::Relaxed);
            leader = now;
        }
    }
}
