//! The `samples` table: every sample, hot and cold, as `(metric, labels, series_id, timestamp,
//! value)` — the cold tier's file schema (`docs/cold-tier.md`), so that both tiers are one
//! schema. A scan takes the cold boundary first, then reads the files the manifest names for
//! the rows before it and the hot store for the rest: each row once. Time ranges and metric
//! names in `WHERE` prune files (by the manifest's time span and metric list, then by row-group
//! and page statistics) and select series in the hot store's index.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use collabstream_common::{METRIC_NAME, TimeRange};
use collabstream_store::arrow_rows::{SamplesBatch, samples_schema};
use collabstream_store::{MatchOp, Matcher, SAMPLES_TABLE, Store};
use datafusion::catalog::Session;
use datafusion::common::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use crate::sql::cold_scan::{self, Boundary};
use crate::sql::hot_exec::HotExec;
use crate::sql::pushdown::{Pushdown, TimeColumn};
use crate::sql::store_table::TableScan;
use crate::sql::tiers;

#[derive(Debug)]
pub(crate) struct SamplesTable {
    store: Arc<Store>,
    schema: SchemaRef,
}

impl SamplesTable {
    pub(crate) fn new(store: Arc<Store>) -> Self {
        Self { store, schema: samples_schema() }
    }
}

/// The hot store's selection for the metric names a query names (none: every series).
fn matchers(metrics: Option<&[String]>) -> Vec<Matcher> {
    match metrics {
        None => Vec::new(),
        Some([one]) => vec![Matcher::equal(METRIC_NAME, one.clone())],
        Some(many) => {
            let alternatives: Vec<String> = many.iter().map(|m| regex::escape(m)).collect();
            match Matcher::new(MatchOp::Regex, METRIC_NAME, alternatives.join("|")) {
                Ok(m) => vec![m],
                // Escaped names always make a regex; should one not, the scan reads every
                // series and the filter above it decides.
                Err(_) => Vec::new(),
            }
        }
    }
}

#[async_trait]
impl TableScan for SamplesTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let push = Pushdown::from_filters(filters, &[("timestamp", TimeColumn::Timestamp)], &["metric"]);
        let range = push.range;
        let metrics = push.values_of("metric").map(<[String]>::to_vec);
        // The boundary first, the manifest's files after it (see `tiers`).
        let held = Arc::new(self.store.hold_cold_boundary());
        let boundary = held.at();
        let files = tiers::cold_files(&self.store.cold_view(), SAMPLES_TABLE, boundary, range, |b| {
            metrics.as_ref().is_none_or(|m| m.iter().any(|x| b.metrics.binary_search(x).is_ok()))
        });
        let cold = cold_scan::scan(
            state,
            &self.schema,
            files,
            projection,
            Boundary { column: "timestamp", at: boundary },
            limit,
            cold_scan::selective(filters, "timestamp"),
        )?;
        let hot = if range.end >= boundary && metrics.as_ref().is_none_or(|m| !m.is_empty()) {
            let what = format!("samples from {boundary}, {}", push.describe());
            let schema = self.schema.clone();
            let batch_rows = state.config().batch_size().max(1);
            let produce: crate::sql::hot_exec::Produce = Arc::new(move |emit| {
                let selected = matchers(metrics.as_deref());
                let range = TimeRange { start: range.start.max(boundary), end: range.end };
                let mut cursor = held.samples(&selected, range);
                let mut batch = SamplesBatch::default();
                let mut sent = 0usize;
                use collabstream_store::SeriesCursor;
                while let Some(part) = cursor.next_part().map_err(|e| e.to_string())? {
                    batch.append(part.id, &part.labels, &part.samples);
                    if batch.len() >= batch_rows {
                        sent += batch.len();
                        if !emit.send(batch.take(&schema)?) || limit.is_some_and(|l| sent >= l) {
                            return Ok(());
                        }
                    } else if !emit.wanted() {
                        return Ok(());
                    }
                }
                if !batch.is_empty() {
                    emit.send(batch.take(&schema)?);
                }
                Ok(())
            });
            Some(Arc::new(HotExec::new(what, self.schema.clone(), projection, produce)?)
                as Arc<dyn ExecutionPlan>)
        } else {
            None
        };
        tiers::union(cold, hot, &self.schema, projection)
    }
}
