//! `meeting_metrics` (DESIGN §3): the meetings pack's outputs as the origin project's table,
//! one row per meeting and window: `(meeting_id, window_start, window_end, timestamp,
//! active_users, message_rate, avg_latency_ms, p95_latency_ms, churn_rate, engagement_score,
//! meeting_health)`. The pack's rules have windows of their own (30 s, 30 s sliding by 10 s,
//! 1 m, 5 m); a row joins the outputs of every rule whose window is the same span, the
//! others are null. `meeting_health` is `good`, `fair` or `poor` (null for a window without a
//! quality report). `timestamp` is the window's end in unix nanoseconds (BIGINT): the origin's
//! `WHERE timestamp >= CAST(now() - INTERVAL '1' HOUR AS BIGINT)` compares it with what
//! DataFusion casts a timestamp to, nanoseconds, and so returns the last hour's rows.
//!
//! Rows are read a stretch of window ends at a time from each rule and merged, so a scan holds
//! one stretch, however long its range.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Builder, Int64Builder, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use collabstream_common::TimeRange;
use collabstream_store::Store;
use datafusion::catalog::Session;
use datafusion::common::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use crate::sql::hot_exec::{HotExec, Produce};
use crate::sql::pushdown::{Pushdown, TimeColumn};
use crate::sql::store_table::TableScan;

/// Window ends read from each rule per stretch.
const STRETCH_MS: i64 = 3_600_000;

/// The numeric columns, in order, and where each comes from: (rule, output column).
const SOURCES: [(&str, &str, &str); 6] = [
    ("active_users", "meeting_active_users", "meeting_active_users"),
    ("message_rate", "meeting_message_rate", "meeting_message_rate"),
    ("avg_latency_ms", "meeting_latency", "meeting_avg_latency_ms"),
    ("p95_latency_ms", "meeting_latency", "meeting_p95_latency_ms"),
    ("churn_rate", "meeting_churn_rate", "meeting_churn_rate"),
    ("engagement_score", "meeting_engagement_score", "meeting_engagement_score"),
];
const HEALTH_RULE: &str = "meeting_health";
const HEALTH_SCORE: &str = "meeting_health_score";

pub(crate) fn schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("meeting_id", DataType::Utf8, false),
        Field::new("window_start", DataType::Int64, false),
        Field::new("window_end", DataType::Int64, false),
        Field::new("timestamp", DataType::Int64, false),
        Field::new("active_users", DataType::Int64, true),
    ];
    fields.extend(SOURCES[1..].iter().map(|(name, _, _)| Field::new(*name, DataType::Float64, true)));
    fields.push(Field::new("meeting_health", DataType::Utf8, true));
    Arc::new(Schema::new(fields))
}

#[derive(Debug)]
pub(crate) struct MeetingMetrics {
    store: Arc<Store>,
    schema: SchemaRef,
}

impl MeetingMetrics {
    pub(crate) fn new(store: Arc<Store>) -> Self {
        Self { store, schema: schema() }
    }
}

/// A row being gathered: the six numbers, then the health score.
type Row = [Option<f64>; 7];

/// Which rule output fills which slot of a [`Row`]: (rule, output index in the rule, slot).
fn plan(store: &Store) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    for t in store.aggregation_tables() {
        for (slot, (_, rule, column)) in SOURCES.iter().enumerate() {
            if t.name == *rule
                && let Some(i) = t.outputs.iter().position(|o| o == column)
            {
                out.push((t.name.clone(), i, slot));
            }
        }
        if t.name == HEALTH_RULE
            && let Some(i) = t.outputs.iter().position(|o| o == HEALTH_SCORE)
        {
            out.push((t.name.clone(), i, 6));
        }
    }
    out
}

fn health(score: Option<f64>) -> Option<&'static str> {
    match score? {
        s if s >= 1.5 => Some("good"),
        s if s >= 0.5 => Some("fair"),
        _ => Some("poor"),
    }
}

fn batch(schema: &SchemaRef, rows: &BTreeMap<(i64, i64, String), Row>) -> Result<RecordBatch, String> {
    let (mut meeting, mut start, mut end) = (StringBuilder::new(), Int64Builder::new(), Int64Builder::new());
    let mut time = Int64Builder::new();
    let mut users = Int64Builder::new();
    let mut numbers: Vec<Float64Builder> = (1..6).map(|_| Float64Builder::new()).collect();
    let mut status = StringBuilder::new();
    for ((e, s, m), row) in rows {
        meeting.append_value(m);
        start.append_value(*s);
        end.append_value(*e);
        time.append_value(e.saturating_mul(1_000_000));
        users.append_option(row[0].map(|v| v.round() as i64));
        for (b, v) in numbers.iter_mut().zip(&row[1..6]) {
            b.append_option(*v);
        }
        status.append_option(health(row[6]));
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(meeting.finish()),
        Arc::new(start.finish()),
        Arc::new(end.finish()),
        Arc::new(time.finish()),
        Arc::new(users.finish()),
    ];
    columns.extend(numbers.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    columns.push(Arc::new(status.finish()));
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
}

/// The first window end at or after `from` (and within `range`) of any of `rules`.
fn next_end(store: &Store, rules: &[String], from: i64, range: TimeRange) -> Result<Option<i64>, String> {
    let mut next: Option<i64> = None;
    for r in rules {
        store
            .scan_aggregation_rows(r, TimeRange { start: from, end: range.end }, |row| {
                next = Some(next.map_or(row.end, |n| n.min(row.end)));
                false
            })
            .map_err(|e| e.to_string())?;
    }
    Ok(next)
}

#[async_trait]
impl TableScan for MeetingMetrics {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let times = [("window_end", TimeColumn::Millis), ("timestamp", TimeColumn::Nanos)];
        let push = Pushdown::from_filters(filters, &times, &["meeting_id"]);
        let what = format!("meetings pack rows, window_end {}", push.describe());
        let (store, schema) = (self.store.clone(), self.schema.clone());
        let produce: Produce = Arc::new(move |emit| {
            let plan = plan(&store);
            let mut rules: Vec<String> = plan.iter().map(|(r, _, _)| r.clone()).collect();
            rules.dedup();
            let meetings = push.values_of("meeting_id");
            let range = push.range;
            let mut from = range.start;
            let mut sent = 0usize;
            while let Some(first) = next_end(&store, &rules, from, range)? {
                let stretch =
                    TimeRange { start: first, end: first.saturating_add(STRETCH_MS - 1).min(range.end) };
                let mut rows: BTreeMap<(i64, i64, String), Row> = BTreeMap::new();
                for (rule, output, slot) in &plan {
                    store
                        .scan_aggregation_rows(rule, stretch, |row| {
                            let Some((_, meeting)) = row.group.iter().find(|(n, _)| n == "meeting_id") else {
                                return true;
                            };
                            if meetings.is_some_and(|m| m.binary_search(meeting).is_err()) {
                                return emit.wanted();
                            }
                            let slots =
                                rows.entry((row.end, row.start, meeting.clone())).or_insert([None; 7]);
                            slots[*slot] = row.values.get(*output).copied().flatten();
                            true
                        })
                        .map_err(|e| e.to_string())?;
                }
                sent += rows.len();
                if (!rows.is_empty() && !emit.send(batch(&schema, &rows)?)) || !emit.wanted() {
                    return Ok(());
                }
                if limit.is_some_and(|l| sent >= l) || stretch.end >= range.end {
                    return Ok(());
                }
                from = stretch.end + 1;
            }
            Ok(())
        });
        Ok(Arc::new(HotExec::new(what, self.schema.clone(), projection, produce)?))
    }
}
