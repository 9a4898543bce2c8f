//! [`Ingest`]: the one path every front end writes through.

use std::sync::Arc;

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
}

impl Ingest {
    pub fn new(writer: Writer, config: IngestConfig) -> Self {
        Self { writer, metrics: Arc::default(), config: Arc::new(config) }
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
        if !p.is_empty() {
            // The request moves into the log entry; `p` keeps the index maps and rejections.
            let proposed = match p.encoded.take() {
                Some(encoded) => self.writer.propose_encoded(encoded).await,
                None => self.writer.propose(std::mem::take(&mut p.request)).await,
            };
            let outcome = match proposed {
                Ok(o) => o,
                Err(e) => {
                    IngestMetrics::add(&self.metrics.requests_failed, 1);
                    return Err(e.into());
                }
            };
            if outcome.duplicate {
                resp.duplicate_batches = 1;
                IngestMetrics::add(&self.metrics.duplicate_batches, 1);
            }
            resp.samples_accepted = outcome.samples_accepted;
            resp.events_accepted = outcome.events_accepted;
            let applied_rejections = outcome.rejected.len() as u64;
            IngestMetrics::add(&self.metrics.samples_rejected, applied_rejections);
            resp.rejected.extend(outcome.rejected.into_iter().map(|r| p.map_back(r)));
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
