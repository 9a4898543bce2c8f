//! [`KafkaMetrics`]: the consumer's counters, for `/metrics`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

#[derive(Debug, Default)]
pub struct KafkaMetrics {
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
    pub events: AtomicU64,
    pub poison: AtomicU64,
    /// Poison messages copied to the dead-letter topic.
    pub dead_lettered: AtomicU64,
    /// Messages retention removed before they were read (skipped, with an error logged).
    pub lost: AtomicU64,
    /// Batches apply refused because another leader had logged their messages already.
    pub refused: AtomicU64,
    /// Offset commits to the consumer group that failed (our progress is not in the group).
    pub group_commit_failures: AtomicU64,
    /// (topic, partition) → messages in the partition not yet applied, as of the last fetch;
    /// empty while this node does not lead.
    lag: Mutex<BTreeMap<(String, i32), i64>>,
}

impl KafkaMetrics {
    pub(crate) fn set_lag(&self, topic: &str, partition: i32, lag: i64) {
        let mut l = self.lag.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        l.insert((topic.to_string(), partition), lag.max(0));
    }

    pub(crate) fn clear_lags(&self) {
        self.lag.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }

    /// Each partition's lag, for `/metrics`.
    pub fn lags(&self) -> BTreeMap<(String, i32), i64> {
        self.lag.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}
