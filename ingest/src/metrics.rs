//! Ingest counters, rendered in the Prometheus text format by the server's `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts of what was ingested and refused, by every front end together.
#[derive(Debug, Default)]
pub struct IngestMetrics {
    pub samples_ingested: AtomicU64,
    pub samples_rejected: AtomicU64,
    pub events_ingested: AtomicU64,
    pub events_rejected: AtomicU64,
    pub duplicate_batches: AtomicU64,
    pub requests_failed: AtomicU64,
}

impl IngestMetrics {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Appends the counters in the Prometheus text exposition format.
    pub fn render(&self, out: &mut String) {
        let counters = [
            ("collabstream_samples_ingested_total", "Samples accepted.", &self.samples_ingested),
            (
                "collabstream_samples_rejected_total",
                "Samples refused, with the reason sent to the client.",
                &self.samples_rejected,
            ),
            ("collabstream_events_ingested_total", "Events accepted.", &self.events_ingested),
            (
                "collabstream_events_rejected_total",
                "Events refused, with the reason sent to the client.",
                &self.events_rejected,
            ),
            (
                "collabstream_duplicate_batches_total",
                "Batches whose batch id was already applied.",
                &self.duplicate_batches,
            ),
            (
                "collabstream_write_requests_failed_total",
                "Write requests that failed on our side (retryable).",
                &self.requests_failed,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
    }
}
