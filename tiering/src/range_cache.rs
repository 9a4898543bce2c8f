//! [`RangeCache`]: byte ranges of cold files (their pages of column data) kept in memory up to
//! a budget, so that a dashboard asking the same cold range again reads no object again.
//!
//! Objects never change once in the manifest (a name carries its content's checksum), so a
//! range once read is valid for as long as the object exists; the oldest ranges leave first.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;

use bytes::Bytes;
use parking_lot::Mutex;

type Key = (String, u64, u64);

#[derive(Debug)]
pub(crate) struct RangeCache {
    budget: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_key: HashMap<Key, Bytes>,
    /// Insertion order, oldest first (a key appears once: re-inserting replaces nothing).
    order: VecDeque<Key>,
    bytes: usize,
    hits: u64,
    misses: u64,
    /// Bytes handed in after a miss (what was fetched).
    fetched: u64,
}

impl RangeCache {
    pub(crate) fn new(budget: usize) -> Self {
        Self { budget, inner: Mutex::new(Inner::default()) }
    }

    pub(crate) fn get(&self, path: &str, range: &Range<u64>) -> Option<Bytes> {
        let mut m = self.inner.lock();
        let found = m.by_key.get(&(path.to_string(), range.start, range.end)).cloned();
        if found.is_some() {
            m.hits += 1;
        } else {
            m.misses += 1;
        }
        found
    }

    pub(crate) fn insert(&self, path: &str, range: &Range<u64>, bytes: Bytes) {
        if bytes.len() > self.budget / 4 {
            return;
        }
        let mut m = self.inner.lock();
        let key = (path.to_string(), range.start, range.end);
        if m.by_key.contains_key(&key) {
            return;
        }
        // A copy: the bytes may be a slice of a larger fetch (the store coalesces nearby
        // ranges), which the slice would keep alive whole, unaccounted.
        let bytes = Bytes::copy_from_slice(&bytes);
        m.fetched += bytes.len() as u64;
        m.bytes += bytes.len();
        m.by_key.insert(key.clone(), bytes);
        m.order.push_back(key);
        while m.bytes > self.budget {
            let Some(oldest) = m.order.pop_front() else { break };
            if let Some(b) = m.by_key.remove(&oldest) {
                m.bytes -= b.len();
            }
        }
    }

    /// (hits, misses) since start.
    pub(crate) fn counts(&self) -> (u64, u64) {
        let m = self.inner.lock();
        (m.hits, m.misses)
    }

    /// Bytes fetched from the object store since start (those kept, that is).
    pub(crate) fn fetched(&self) -> u64 {
        self.inner.lock().fetched
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_kept_up_to_the_budget_oldest_out_first() {
        let c = RangeCache::new(100);
        c.insert("a", &(0..10), Bytes::from(vec![1; 20]));
        c.insert("a", &(10..20), Bytes::from(vec![2; 20]));
        assert_eq!(c.get("a", &(0..10)).as_deref(), Some(&[1u8; 20][..]));
        assert!(c.get("b", &(0..10)).is_none());
        for i in 0..4 {
            c.insert("b", &(i..i + 1), Bytes::from(vec![3; 20]));
        }
        assert!(c.get("a", &(0..10)).is_none(), "the oldest left");
        assert!(c.get("b", &(3..4)).is_some());
        c.insert("big", &(0..1), Bytes::from(vec![0; 30]));
        assert!(c.get("big", &(0..1)).is_none(), "over a quarter of the budget: not kept");
        assert_eq!(c.counts(), (2, 3));
    }
}
