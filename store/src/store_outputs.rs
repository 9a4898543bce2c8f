//! Aggregation outputs become samples: `Store::write_outputs`.
//!
//! Each output of an emitted window is a sample of the series `<metric>{group labels, output
//! labels}` at the window's end, appended in the entry that closed (or corrected) the window.
//! A replay appends the same sample again, which changes nothing; a correction appends the
//! same timestamp with the new value, which the head keeps (the last one applied wins). A
//! retraction appends a stale marker, so PromQL sees no value there any more.

use std::sync::atomic::Ordering;

use collabstream_common::STALE_NAN_BITS;
use collabstream_proto::log_write::canonical_labels;
use rocksdb::WriteBatch;

use crate::agg::EmissionKind;
use crate::agg_rows::{self, AggRow};
use crate::aggregations::Emitted;
use crate::error::Result;
use crate::settings::Settings;
use crate::store::{Store, WriterState};
use crate::store_apply::ApplyOutcome;

/// An output's label pairs (sorted), timestamp and value.
type OutputSample = (Vec<(String, String)>, i64, f64);

impl Store {
    pub(crate) fn write_outputs(
        &self,
        writer: &mut WriterState,
        settings: &Settings,
        emitted: Emitted,
        batch: &mut WriteBatch,
    ) -> Result<()> {
        // (labels, timestamp, value) first: the rules are borrowed from the writer state,
        // which creating a series changes.
        let mut samples: Vec<OutputSample> = Vec::new();
        for (i, e) in emitted {
            let Some(rule) = writer.aggs.rule(i) else { continue };
            let Some(group) = rule.group_labels(&e.group) else { continue };
            match e.kind {
                EmissionKind::Retraction => agg_rows::delete(batch, &self.db, rule.name(), e.end, &e.group),
                _ => {
                    let row =
                        AggRow { group: group.clone(), start: e.start, end: e.end, values: e.values.clone() };
                    agg_rows::put(batch, &self.db, rule.name(), &e.group, &row);
                }
            }
            for (series, value) in rule.series().iter().zip(&e.values) {
                let value = match (e.kind, value) {
                    (EmissionKind::Retraction, _) => f64::from_bits(STALE_NAN_BITS),
                    (_, Some(v)) => *v,
                    (_, None) => continue,
                };
                let mut labels: Vec<(String, String)> =
                    Vec::with_capacity(group.len() + series.labels.len() + 1);
                labels.push(("__name__".to_string(), series.metric.clone()));
                labels.extend(group.iter().map(|(n, v)| (n.to_string(), v.clone())));
                labels.extend(series.labels.iter().cloned());
                // An empty group value is no label, as in Prometheus.
                labels.retain(|(_, v)| !v.is_empty());
                labels.sort();
                // A group label named as the output's own (an input's `quantile`, grouped
                // `without`) is not a second label of that name.
                labels.dedup_by(|a, b| a.0 == b.0);
                samples.push((labels, e.end, value));
            }
        }
        if samples.is_empty() {
            return Ok(());
        }
        let mut canonical = Vec::new();
        for (labels, ts, value) in samples {
            canonical.clear();
            canonical_labels(labels.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())), &mut canonical);
            let found = self.index.read().find(&canonical).cloned();
            let entry = match found {
                Some(e) => {
                    // Persisted after the checkpoint and found again during a replay: created
                    // by this very entry the first time, so keep ids in step (as for writes).
                    writer.next_series = writer.next_series.max(e.id.0 + 1);
                    e
                }
                None => {
                    let mut index = self.index.write();
                    if index.len() >= settings.max_series {
                        // Decided by the replicated state alone, as for written series.
                        self.series_refused.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let pairs: Vec<(&str, &str)> =
                        labels.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
                    self.insert_series(writer, &mut index, &pairs, batch)
                }
            };
            // Refusals (a correction older than the out-of-order window) are counted there.
            let mut scratch = ApplyOutcome::default();
            self.append_samples(settings, &entry, 0, std::iter::once((ts, value)), &mut scratch)?;
            self.outputs_refused.fetch_add(scratch.rejected.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }
}
