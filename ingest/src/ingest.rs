//! [`Ingest`]: the one path every front end writes through.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use collabstream_proto::v1;
use collabstream_raft::Writer;

use crate::config::IngestConfig;
use crate::error::Error;
use crate::metrics::IngestMetrics;
use crate::prepare::Prepared;

/// Proposes prepared writes and accounts for them. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Ingest {
    writer: Writer,
    metrics: Arc<IngestMetrics>,
    config: Arc<IngestConfig>,
    /// Numbers the batch ids this node gives writes with events and none of their own.
    auto_ids: Arc<AtomicU64>,
}

impl Ingest {
    pub fn new(writer: Writer, config: IngestConfig) -> Self {
        Self { writer, metrics: Arc::default(), config: Arc::new(config), auto_ids: Arc::default() }
    }

    /// A batch id no other write has: this node's id, its clock and a counter.
    fn auto_id(&self) -> String {
        let n = self.auto_ids.fetch_add(1, Ordering::Relaxed);
        format!("auto-{}-{}-{n}", self.writer.node_id(), self.writer.now_ms())
    }

    pub fn metrics(&self) -> &Arc<IngestMetrics> {
        &self.metrics
    }

    pub fn config(&self) -> &IngestConfig {
        &self.config
    }

    /// The node's writer, for the changes that are not writes (aggregation rules).
    pub(crate) fn writer(&self) -> &Writer {
        &self.writer
    }

    /// The local store, whose known series the write paths name by id.
    pub(crate) fn store(&self) -> &collabstream_store::Store {
        self.writer.store()
    }

    /// Writes the valid part of `p` and answers with counts and every rejection (validation's
    /// and the store's). Returns an error only when the write itself failed.
    pub async fn write(&self, mut p: Prepared) -> Result<v1::WriteResponse, Error> {
        check_batch_id(&p.request.batch_id)?;
        let mut resp = v1::WriteResponse::default();
        // The request moves into the log entry; `p` keeps the index maps and rejections.
        if let Some(encoded) = p.encode(self.store(), || self.auto_id()) {
            resp = match self.writer.propose(encoded).await {
                Ok(r) => r,
                Err(e) => {
                    IngestMetrics::add(&self.metrics.requests_failed, 1);
                    return Err(e.into());
                }
            };
            if resp.duplicate_batches > 0 {
                IngestMetrics::add(&self.metrics.duplicate_batches, 1);
            }
            // Apply refuses events one by one, and samples by series or one by one.
            let events = resp.rejected.iter().filter(|r| r.kind == v1::ItemKind::Event as i32).count() as u64;
            IngestMetrics::add(&self.metrics.events_rejected, events);
            IngestMetrics::add(&self.metrics.samples_rejected, resp.rejected.len() as u64 - events);
            for r in &mut resp.rejected {
                *r = p.map_back(std::mem::take(r));
            }
        }
        IngestMetrics::add(&self.metrics.samples_ingested, resp.samples_accepted);
        IngestMetrics::add(&self.metrics.events_ingested, resp.events_accepted);
        IngestMetrics::add(&self.metrics.samples_rejected, p.rejected_samples);
        IngestMetrics::add(&self.metrics.events_rejected, p.rejected_events);
        let mut rejected = p.rejected;
        rejected.append(&mut resp.rejected);
        rejected.sort_by_key(|r| (r.kind, r.index, r.sample_index));
        resp.rejected = rejected;
        Ok(resp)
    }
}

/// A one-line summary of rejections for an error message: how many, and the first few.
pub(crate) fn summarize(rejected: &[v1::Rejection], what: &str) -> String {
    let kinds = |r: &v1::Rejection| match v1::ItemKind::try_from(r.kind) {
        Ok(v1::ItemKind::Sample) => format!("{what}[{}].samples[{}]", r.index, r.sample_index),
        Ok(v1::ItemKind::Event) => format!("events[{}]", r.index),
        _ => format!("{what}[{}]", r.index),
    };
    let shown: Vec<String> = rejected.iter().take(5).map(|r| format!("{}: {}", kinds(r), r.reason)).collect();
    let more = rejected.len().saturating_sub(5);
    let mut s = format!("{} item(s) rejected, the others were written: {}", rejected.len(), shown.join("; "));
    if more > 0 {
        s.push_str(&format!("; and {more} more"));
    }
    s
}

/// The longest batch id (idempotency key) taken. Every replica remembers the recent ones
/// (`store.dedup_capacity` of them), so an unbounded id would be unbounded memory.
pub const MAX_BATCH_ID_BYTES: usize = 128;

fn check_batch_id(id: &str) -> Result<(), Error> {
    if id.len() > MAX_BATCH_ID_BYTES {
        return Err(Error::BadRequest(format!(
            "batch id is {} bytes, over the limit of {MAX_BATCH_ID_BYTES}; use a shorter unique id such as a UUID",
            id.len()
        )));
    }
    Ok(())
}
