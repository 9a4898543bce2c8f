//! The `series` table: one row per series the store knows, hot or cold (the index keeps every
//! series its samples ever named): `(series_id, metric, labels)`, `labels` being every label
//! but the name, as in `samples`. A metric name in `WHERE` is looked up in the index.

use std::sync::Arc;

use arrow::array::{ArrayRef, MapBuilder, StringBuilder, UInt64Builder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use collabstream_common::METRIC_NAME;
use collabstream_store::{Matcher, Store};
use datafusion::catalog::Session;
use datafusion::common::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use crate::sql::hot_exec::{HotExec, Produce};
use crate::sql::pushdown::Pushdown;
use crate::sql::rule_table::labels_map_type;
use crate::sql::store_table::TableScan;

#[derive(Debug)]
pub(crate) struct SeriesTable {
    store: Arc<Store>,
    schema: SchemaRef,
}

impl SeriesTable {
    pub(crate) fn new(store: Arc<Store>) -> Self {
        let schema = Schema::new(vec![
            Field::new("series_id", DataType::UInt64, false),
            Field::new("metric", DataType::Utf8, false),
            Field::new("labels", labels_map_type(), false),
        ]);
        Self { store, schema: Arc::new(schema) }
    }
}

#[async_trait]
impl TableScan for SeriesTable {
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
        let push = Pushdown::from_filters(filters, &[], &["metric"]);
        let metrics = push.values_of("metric").map(<[String]>::to_vec);
        let what = format!("series index, {}", push.describe());
        let (store, schema) = (self.store.clone(), self.schema.clone());
        let batch_rows = state.config().batch_size().max(1);
        let produce: Produce = Arc::new(move |emit| {
            let selectors: Vec<Vec<Matcher>> = match &metrics {
                None => vec![Vec::new()],
                Some(names) => names.iter().map(|m| vec![Matcher::equal(METRIC_NAME, m.clone())]).collect(),
            };
            let mut sent = 0usize;
            for matchers in selectors {
                let all = store.series_labels(&matchers);
                for chunk in all.chunks(batch_rows) {
                    let mut ids = UInt64Builder::with_capacity(chunk.len());
                    let mut names = StringBuilder::new();
                    let mut map = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
                    for (id, labels) in chunk {
                        ids.append_value(id.0);
                        names.append_value(labels.get(METRIC_NAME).unwrap_or(""));
                        for l in labels.iter().filter(|l| l.name != METRIC_NAME) {
                            map.keys().append_value(&l.name);
                            map.values().append_value(&l.value);
                        }
                        map.append(true).map_err(|e| e.to_string())?;
                    }
                    let columns: Vec<ArrayRef> =
                        vec![Arc::new(ids.finish()), Arc::new(names.finish()), Arc::new(map.finish())];
                    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())?;
                    sent += chunk.len();
                    if !emit.send(batch) || limit.is_some_and(|l| sent >= l) {
                        return Ok(());
                    }
                }
            }
            Ok(())
        });
        Ok(Arc::new(HotExec::new(what, self.schema.clone(), projection, produce)?))
    }
}
