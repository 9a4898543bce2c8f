//! [`CheckpointStats`]: what the store's checkpoints have cost since it opened, for `/metrics`.
//!
//! A checkpoint is what lets the log be dropped (and a snapshot be named), so how often one
//! runs follows the write rate; what each costs, and how long apply waited for it, is what an
//! operator weighs against a smaller log.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Default)]
pub(crate) struct CheckpointStats {
    count: AtomicU64,
    micros: AtomicU64,
    apply_wait_micros: AtomicU64,
    flush_micros: AtomicU64,
    written_bytes: AtomicU64,
}

/// Totals since the store opened.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CheckpointTotals {
    pub count: u64,
    /// From the start of each checkpoint to its end.
    pub seconds: f64,
    /// Of that, the time apply could not run (the capture, or the whole checkpoint when apply
    /// itself asked for it).
    pub apply_wait_seconds: f64,
    /// Of that, flushing the column families written without RocksDB's WAL.
    pub flush_seconds: f64,
    /// Bytes of the fsynced batch each wrote (heads, deduplication ids, window state, meta).
    pub written_bytes: u64,
}

impl CheckpointStats {
    pub(crate) fn record(&self, took: Duration, apply_wait: Duration, flush: Duration, written_bytes: usize) {
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.micros.fetch_add(micros(took), Ordering::Relaxed);
        self.apply_wait_micros.fetch_add(micros(apply_wait), Ordering::Relaxed);
        self.flush_micros.fetch_add(micros(flush), Ordering::Relaxed);
        self.written_bytes.fetch_add(written_bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn totals(&self) -> CheckpointTotals {
        let seconds = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64 / 1e6;
        CheckpointTotals {
            count: self.count.load(Ordering::Relaxed),
            seconds: seconds(&self.micros),
            apply_wait_seconds: seconds(&self.apply_wait_micros),
            flush_seconds: seconds(&self.flush_micros),
            written_bytes: self.written_bytes.load(Ordering::Relaxed),
        }
    }
}
