//! A table per aggregation rule: one row per group and window emitted (corrections replace
//! their row), as the rule's read API gives them: `window_start` and `window_end` (unix
//! milliseconds), `timestamp` (the window's end, as a timestamp), the group's labels as text
//! columns (or a `labels` map for a rule over samples grouped `without` labels, whose groups
//! differ in their labels), then one nullable DOUBLE per output. A time range on
//! `window_end` or `timestamp` limits the rows read.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Builder, Int64Builder, MapBuilder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use collabstream_store::{AggRow, RuleTable as RuleDef, Store};
use datafusion::catalog::Session;
use datafusion::common::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use crate::sql::hot_exec::{HotExec, Produce};
use crate::sql::pushdown::{Pushdown, TimeColumn};
use crate::sql::store_table::TableScan;

/// The type of a rule table's `timestamp` column.
fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// The time columns of window rows, for [`Pushdown`]: both name the window's end.
const WINDOW_TIMES: [(&str, TimeColumn); 2] =
    [("window_end", TimeColumn::Millis), ("timestamp", TimeColumn::Timestamp)];

pub(crate) fn labels_map_type() -> DataType {
    let entries = Fields::from(vec![
        Field::new("keys", DataType::Utf8, false),
        Field::new("values", DataType::Utf8, true),
    ]);
    DataType::Map(Arc::new(Field::new("entries", DataType::Struct(entries), false)), false)
}

#[derive(Debug)]
pub(crate) struct RuleTable {
    store: Arc<Store>,
    def: RuleDef,
    schema: SchemaRef,
}

impl RuleTable {
    pub(crate) fn new(store: Arc<Store>, def: RuleDef) -> Self {
        let mut fields = vec![
            Field::new("window_start", DataType::Int64, false),
            Field::new("window_end", DataType::Int64, false),
            Field::new("timestamp", timestamp_type(), false),
        ];
        match &def.group {
            Some(names) => fields.extend(names.iter().map(|n| Field::new(n, DataType::Utf8, true))),
            None => fields.push(Field::new("labels", labels_map_type(), false)),
        }
        fields.extend(def.outputs.iter().map(|n| Field::new(n, DataType::Float64, true)));
        Self { store, def, schema: Arc::new(Schema::new(fields)) }
    }
}

/// Rows of one rule as record batches of its table's schema.
struct Rows {
    start: Int64Builder,
    end: Int64Builder,
    time: TimestampMillisecondBuilder,
    group: Result<Vec<StringBuilder>, MapBuilder<StringBuilder, StringBuilder>>,
    values: Vec<Float64Builder>,
    len: usize,
}

impl Rows {
    fn new(def: &RuleDef) -> Self {
        Self {
            start: Int64Builder::new(),
            end: Int64Builder::new(),
            time: TimestampMillisecondBuilder::new().with_timezone("UTC"),
            group: match &def.group {
                Some(names) => Ok(names.iter().map(|_| StringBuilder::new()).collect()),
                None => Err(MapBuilder::new(None, StringBuilder::new(), StringBuilder::new())),
            },
            values: def.outputs.iter().map(|_| Float64Builder::new()).collect(),
            len: 0,
        }
    }

    fn push(&mut self, def: &RuleDef, row: &AggRow) -> Result<(), String> {
        self.start.append_value(row.start);
        self.end.append_value(row.end);
        self.time.append_value(row.end);
        match (&mut self.group, &def.group) {
            (Ok(columns), Some(names)) => {
                for (b, name) in columns.iter_mut().zip(names) {
                    b.append_option(row.group.iter().find(|(n, _)| n == name).map(|(_, v)| v));
                }
            }
            (Err(map), _) => {
                for (n, v) in &row.group {
                    map.keys().append_value(n);
                    map.values().append_value(v);
                }
                map.append(true).map_err(|e| e.to_string())?;
            }
            (Ok(_), None) => {}
        }
        for (i, b) in self.values.iter_mut().enumerate() {
            b.append_option(row.values.get(i).copied().flatten());
        }
        self.len += 1;
        Ok(())
    }

    fn take(&mut self, schema: &SchemaRef) -> Result<RecordBatch, String> {
        let mut columns: Vec<ArrayRef> =
            vec![Arc::new(self.start.finish()), Arc::new(self.end.finish()), Arc::new(self.time.finish())];
        match &mut self.group {
            Ok(builders) => columns.extend(builders.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef)),
            Err(map) => columns.push(Arc::new(map.finish())),
        }
        columns.extend(self.values.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        self.len = 0;
        RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
    }
}

#[async_trait]
impl TableScan for RuleTable {
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
        let push = Pushdown::from_filters(filters, &WINDOW_TIMES, &[]);
        let what = format!("rule {} rows, window_end {}", self.def.name, push.describe());
        let (store, def, schema) = (self.store.clone(), self.def.clone(), self.schema.clone());
        let batch_rows = state.config().batch_size().max(1);
        let produce: Produce = Arc::new(move |emit| {
            let mut rows = Rows::new(&def);
            let (mut sent, mut open, mut failed) = (0usize, true, None);
            store
                .scan_aggregation_rows(&def.name, push.range, |row| {
                    if let Err(e) = rows.push(&def, &row) {
                        failed = Some(e);
                        return false;
                    }
                    if rows.len >= batch_rows {
                        sent += rows.len;
                        match rows.take(&schema) {
                            Ok(b) => open = emit.send(b) && limit.is_none_or(|l| sent < l),
                            Err(e) => {
                                failed = Some(e);
                                open = false;
                            }
                        }
                    }
                    open
                })
                .map_err(|e| e.to_string())?;
            if let Some(e) = failed {
                return Err(e);
            }
            if open && rows.len > 0 {
                emit.send(rows.take(&schema)?);
            }
            Ok(())
        });
        Ok(Arc::new(HotExec::new(what, self.schema.clone(), projection, produce)?))
    }
}
