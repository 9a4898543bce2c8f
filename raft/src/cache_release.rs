//! Empties the log's entry cache behind its readers.
//!
//! The cache ([`LogStorage`]) keeps up to 16 MiB of the newest entries so that apply and the
//! replication to followers in step read them from memory. Once an entry is applied here and
//! every follower has it, no reader in step asks for it again; keeping it until newer entries
//! push it out held 16 MiB (0.8 KiB a series in `collabstream bench`) on an idle node.

use std::time::Duration;

use openraft::RaftMetrics;
use tokio_util::sync::CancellationToken;

use crate::log_storage::LogStorage;
use crate::types::{NodeId, Raft};

type Metrics = RaftMetrics<NodeId, openraft::BasicNode>;

/// How often the cache is trimmed: often enough that a burst's entries leave soon after it.
const EVERY: Duration = Duration::from_millis(250);

/// The newest index that no reader in step needs: applied here and, on a leader, matched by
/// every follower (a follower that was never matched counts as 0).
pub(crate) fn consumed(m: &Metrics) -> u64 {
    let applied = m.last_applied.map_or(0, |l| l.index);
    applied.min(slowest_follower(m).unwrap_or(u64::MAX))
}

/// On a leader, the lowest index every follower has (0 for one never matched); `None`
/// elsewhere.
pub(crate) fn slowest_follower(m: &Metrics) -> Option<u64> {
    m.replication
        .as_ref()
        .and_then(|r| r.iter().filter(|(id, _)| **id != m.id).map(|(_, l)| l.map_or(0, |l| l.index)).min())
}

pub(crate) async fn run_cache_release(raft: Raft, log: LogStorage, stop: CancellationToken) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let upto = consumed(&raft.metrics().borrow());
        log.release_cached(upto);
    }
}
