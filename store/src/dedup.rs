//! Remembers recent batch ids so that a retried batch is applied once.
//!
//! Ids are evicted oldest first once `capacity` is reached; eviction depends only on the order
//! of applied entries, so every replica remembers the same ids. Changes reach the `dedup`
//! column family only at a checkpoint, so what is on disk is exactly the checkpointed state and
//! replaying the log after it rebuilds the rest.

use std::collections::{HashMap, VecDeque};

#[derive(Debug, Default)]
pub(crate) struct Dedup {
    seen: HashMap<String, u64>,
    order: VecDeque<(u64, String)>,
    next_seq: u64,
    /// Rows to write and delete at the next checkpoint.
    added: Vec<(u64, String)>,
    evicted: Vec<u64>,
}

impl Dedup {
    pub(crate) fn contains(&self, id: &str) -> bool {
        self.seen.contains_key(id)
    }

    /// Records `id`, evicting the oldest ids beyond `capacity`.
    pub(crate) fn insert(&mut self, id: String, capacity: usize) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.seen.insert(id.clone(), seq);
        self.order.push_back((seq, id.clone()));
        self.added.push((seq, id));
        while self.order.len() > capacity {
            let (old_seq, old) = self.order.pop_front().expect("len > capacity > 0");
            if self.seen.get(&old) == Some(&old_seq) {
                self.seen.remove(&old);
            }
            self.evicted.push(old_seq);
        }
    }

    /// The rows to put and delete since the last [`Dedup::clear_changes`]: the checkpoint
    /// writes them, then clears them.
    pub(crate) fn changes(&self) -> (&[(u64, String)], &[u64]) {
        (&self.added, &self.evicted)
    }

    /// Clears the changes [`Dedup::changes`] gave, `(added, evicted)` long then: apply may have
    /// made more while the checkpoint wrote them, which stay for the next one.
    pub(crate) fn clear_changes(&mut self, written: (usize, usize)) {
        self.added.drain(..written.0);
        self.evicted.drain(..written.1);
    }

    /// Restores a row read at open; rows come in sequence order.
    pub(crate) fn restore(&mut self, seq: u64, id: String) {
        self.seen.insert(id.clone(), seq);
        self.order.push_back((seq, id));
        self.next_seq = self.next_seq.max(seq + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_oldest_first() {
        let mut d = Dedup::default();
        d.insert("a".into(), 2);
        d.insert("b".into(), 2);
        assert!(d.contains("a"));
        d.insert("c".into(), 2);
        assert!(!d.contains("a") && d.contains("b") && d.contains("c"));
        let (added, evicted) = d.changes();
        assert_eq!(added.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(evicted, [0]);
        let written = (added.len(), evicted.len());
        // A checkpoint writes these while apply records one more id.
        d.insert("d".into(), 2);
        d.clear_changes(written);
        let (added, evicted) = d.changes();
        assert_eq!(added.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [3], "left for the next checkpoint");
        assert_eq!(evicted, [1]);
    }
}
