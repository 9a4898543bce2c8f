//! The store's configuration (`[store]` in the server's TOML).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How the store keeps samples. Durations are human-readable in TOML (`"2h"`, `"30s"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// How far behind a series' newest sample an older sample is still accepted.
    #[serde(with = "humantime_serde")]
    pub out_of_order_window: Duration,
    /// Chunks never span a block boundary, so that tiering moves whole chunks.
    #[serde(with = "humantime_serde")]
    pub block_duration: Duration,
    /// A series' open chunk is cut after this many samples.
    pub chunk_max_samples: usize,
    /// How many recent batch ids are remembered to acknowledge a retried batch once.
    pub dedup_capacity: usize,
    /// New series beyond this many are refused: every series is held in memory on every node.
    pub max_series: usize,
    /// How often the in-memory head is made durable so the log before it can be dropped.
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// The meetings rule pack (DESIGN §3): `meeting_active_users` and the other meeting
    /// metrics, computed from the events as they are applied. Its windows are corrected up to
    /// 5 min 5 s late; with a shorter `out_of_order_window` those corrections are refused
    /// (counted in `collabstream_aggregation_outputs_refused_total`).
    pub meetings_pack: bool,
    /// Window panes the aggregation rules hold in memory, all rules together (each keeps a
    /// share as large as its share of the panes); older ones are let go of after a checkpoint
    /// and read back from RocksDB when touched, and apply takes a checkpoint when the rules
    /// hold twice this many. This node's own bound: the outputs do not depend on it.
    pub aggregation_keys_in_memory: usize,
    /// Threads apply shares the event rules among for a write of many events (each rule takes
    /// all of a write's events on one thread); 0 for one a core. This node's own choice: the
    /// outputs do not depend on it.
    pub aggregation_threads: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            out_of_order_window: Duration::from_secs(3600),
            block_duration: Duration::from_secs(2 * 3600),
            chunk_max_samples: 480,
            dedup_capacity: 100_000,
            max_series: 4_000_000,
            checkpoint_interval: Duration::from_secs(60),
            meetings_pack: true,
            aggregation_keys_in_memory: 100_000,
            aggregation_threads: 0,
        }
    }
}

impl StoreConfig {
    /// Refuses settings that would make the store misbehave, saying which key to change.
    pub fn validate(&self) -> Result<(), String> {
        if self.block_duration < Duration::from_secs(60) {
            return Err("store.block_duration must be at least 1m".into());
        }
        if !(2..=100_000).contains(&self.chunk_max_samples) {
            return Err("store.chunk_max_samples must be between 2 and 100000".into());
        }
        if self.max_series == 0 {
            return Err("store.max_series must be at least 1".into());
        }
        if self.aggregation_keys_in_memory == 0 {
            return Err("store.aggregation_keys_in_memory must be at least 1".into());
        }
        if self.aggregation_threads > 256 {
            return Err("store.aggregation_threads must be at most 256 (0: one a core)".into());
        }
        if !(1..=10_000_000).contains(&self.dedup_capacity) {
            return Err("store.dedup_capacity must be between 1 and 10000000".into());
        }
        // Apply reads 0 in a settings entry as "the default", so the smallest window is 1ms.
        if self.out_of_order_window < Duration::from_millis(1) {
            return Err("store.out_of_order_window must be at least 1ms".into());
        }
        if self.checkpoint_interval < Duration::from_secs(1) {
            return Err("store.checkpoint_interval must be at least 1s".into());
        }
        Ok(())
    }

    pub fn window_ms(&self) -> i64 {
        self.out_of_order_window.as_millis() as i64
    }

    /// [`StoreConfig::aggregation_threads`], with 0 read as the machine's cores.
    pub(crate) fn aggregation_threads(&self) -> usize {
        match self.aggregation_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    pub(crate) fn block_ms(&self) -> i64 {
        self.block_duration.as_millis() as i64
    }
}
