//! Aggregation outputs become samples: `Store::write_outputs`.
//!
//! Each output of an emitted window is a sample of the series `<metric>{group labels, output
//! labels}` at the window's end, appended in the entry that closed (or corrected) the window.
//! A replay appends the same sample again, which changes nothing; a correction appends the
//! same timestamp with the new value, which the head keeps (the last one applied wins). A
//! retraction appends a stale marker, so PromQL sees no value there any more.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use collabstream_common::STALE_NAN_BITS;
use collabstream_proto::log_write::canonical_labels;
use rocksdb::WriteBatch;

use crate::agg::EmissionKind;
use crate::agg_rows::{self, AggRow};
use crate::aggregations::Emitted;
use crate::error::Result;
use crate::head::SeriesEntry;
use crate::settings::Settings;
use crate::store::{Store, WriterState};
use crate::store_apply::ApplyOutcome;

/// An output sample on its way to its series: found by its labels while the rules are
/// borrowed, or to be created (or found again, when an earlier sample of the same entry
/// created it) once they are not.
enum OutputSeries {
    Found(Arc<SeriesEntry>),
    New(Vec<(String, String)>),
}

impl Store {
    pub(crate) fn write_outputs(
        &self,
        writer: &mut WriterState,
        settings: &Settings,
        emitted: Emitted,
        batch: &mut WriteBatch,
    ) -> Result<()> {
        // Series and samples first: the rules are borrowed from the writer state, which
        // creating a series changes. Most outputs go to series that exist: those are found
        // from label slices, with no owned copy of the labels.
        let mut samples: Vec<(OutputSeries, i64, f64)> = Vec::new();
        let mut canonical = Vec::new();
        for (i, e) in emitted {
            let Some(rule) = writer.aggs.rule(i) else { continue };
            let Some(group) = rule.group_labels(&e.group) else { continue };
            let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(group.len() + 3);
            for (series, value) in rule.series().iter().zip(&e.values) {
                let value = match (e.kind, value) {
                    (EmissionKind::Retraction, _) => f64::from_bits(STALE_NAN_BITS),
                    (_, Some(v)) => *v,
                    (_, None) => continue,
                };
                pairs.clear();
                pairs.push(("__name__", series.metric.as_str()));
                pairs.extend(group.iter().map(|(n, v)| (n.as_str(), v.as_str())));
                pairs.extend(series.labels.iter().map(|(n, v)| (n.as_str(), v.as_str())));
                // An empty group value is no label, as in Prometheus.
                pairs.retain(|(_, v)| !v.is_empty());
                pairs.sort_unstable();
                // A group label named as the output's own (an input's `quantile`, grouped
                // `without`) is not a second label of that name.
                pairs.dedup_by(|a, b| a.0 == b.0);
                canonical.clear();
                canonical_labels(pairs.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())), &mut canonical);
                let found = self.index.read().find(&canonical).cloned();
                let series = match found {
                    Some(entry) => OutputSeries::Found(entry),
                    None => {
                        OutputSeries::New(pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect())
                    }
                };
                samples.push((series, e.end, value));
            }
            drop(pairs);
            match e.kind {
                EmissionKind::Retraction => agg_rows::delete(batch, &self.db, rule.name(), e.end, &e.group),
                _ => {
                    let row = AggRow { group, start: e.start, end: e.end, values: e.values };
                    agg_rows::put(batch, &self.db, rule.name(), &e.group, &row);
                }
            }
        }
        for (series, ts, value) in samples {
            let found = match series {
                OutputSeries::Found(entry) => Ok(entry),
                // Created by an earlier sample of this entry, or still to be created.
                OutputSeries::New(labels) => {
                    canonical.clear();
                    canonical_labels(
                        labels.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
                        &mut canonical,
                    );
                    self.index.read().find(&canonical).cloned().ok_or(labels)
                }
            };
            let entry = match found {
                Ok(entry) => {
                    // Persisted after the checkpoint and found again during a replay: created
                    // by this very entry the first time, so keep ids in step (as for writes).
                    writer.next_series = writer.next_series.max(entry.id.0 + 1);
                    entry
                }
                Err(labels) => {
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
