//! [`Alignment`]: keeps the partitions a leader consumes close in event time.
//!
//! Each partition is read as fast as apply takes it, but partitions do not cover event time at
//! the same pace: 4 MiB of a topic with few events (meeting reports) spans far more of it than
//! 4 MiB of a busy one (chat). Left alone, the sparse partitions run ahead, the rules'
//! watermarks with them, and the busy partitions' events arrive late: re-emitted windows at
//! best (a million events of the meetings workload, measured: 715,388 corrections, where the
//! same events sent over gRPC in time order made 26,483), dropped as later than
//! `allowed_lateness` at worst, as when a consumer starts with hours of backlog.
//!
//! So every partition says when its next unproposed event happened, and a partition proposes
//! only its events up to the earliest of those plus `align_within`. The partition holding the
//! earliest event can always go on, so no two partitions wait for each other. A partition
//! between fetches with messages still to read reports its last proposed event's time (its
//! next one is no earlier); one that has caught up holds no one back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

#[derive(Debug)]
pub(crate) struct Alignment {
    within_ms: i64,
    /// (topic, partition) → the event time of its next event not yet proposed, if it has one.
    next: Mutex<HashMap<(String, i32), i64>>,
    /// Bumped at every change, so that a waiter cannot miss one made between its look at the
    /// bound and its wait.
    version: watch::Sender<u64>,
}

impl Alignment {
    pub(crate) fn new(within: Duration) -> Self {
        let within_ms = i64::try_from(within.as_millis()).unwrap_or(i64::MAX);
        Self { within_ms, next: Mutex::new(HashMap::new()), version: watch::Sender::new(0) }
    }

    /// Records `partition`'s next unproposed event time (`None`: nothing waiting).
    pub(crate) fn report(&self, topic: &str, partition: i32, next_ms: Option<i64>) {
        let mut next = self.next.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (topic.to_string(), partition);
        let before = match next_ms {
            Some(t) => next.insert(key, t),
            None => next.remove(&key),
        };
        if before != next_ms {
            self.version.send_modify(|v| *v += 1);
        }
    }

    /// The latest event time any partition may propose now (`None`: no bound), and the
    /// version it is as of, for [`changed`](Self::changed).
    pub(crate) fn limit_ms(&self) -> (Option<i64>, u64) {
        let next = self.next.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let version = *self.version.borrow();
        (next.values().min().map(|m| m.saturating_add(self.within_ms)), version)
    }

    /// Waits until something changed after `version`, or `at_most`.
    pub(crate) async fn changed(&self, version: u64, at_most: Duration) {
        let mut rx = self.version.subscribe();
        let _ = tokio::time::timeout(at_most, rx.wait_for(|v| *v != version)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earliest_waiting_event_bounds_every_partition() {
        let a = Alignment::new(Duration::from_secs(2));
        assert_eq!(a.limit_ms().0, None);
        a.report("chat", 0, Some(10_000));
        a.report("meeting", 0, Some(600_000));
        assert_eq!(a.limit_ms().0, Some(12_000), "the sparse partition waits for the busy one");
        // The earliest may always go on: its own next event is within the bound.
        a.report("chat", 0, Some(11_500));
        assert_eq!(a.limit_ms().0, Some(13_500));
        // Caught up: it holds no one back.
        a.report("chat", 0, None);
        assert_eq!(a.limit_ms().0, Some(602_000));
    }

    #[tokio::test]
    async fn a_change_made_before_the_wait_is_not_missed() {
        let a = Alignment::new(Duration::from_secs(2));
        a.report("chat", 0, Some(10_000));
        let (_, seen) = a.limit_ms();
        a.report("chat", 0, Some(20_000));
        let waited = std::time::Instant::now();
        a.changed(seen, Duration::from_secs(30)).await;
        assert!(waited.elapsed() < Duration::from_secs(5), "woken at once");
    }
}
