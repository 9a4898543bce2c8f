//! The `events` table: every raw event, hot and cold, one row each with its fields as typed
//! columns (the cold tier's file schema, `docs/cold-tier.md`). A scan takes the events' cold
//! boundary first, then reads the files the manifest names for the events before it and the
//! hot store for the rest. A time range prunes files and the hot store's minutes; a
//! `meeting_id` prunes row groups and pages of the files (sorted by meeting inside a row group)
//! and is applied to hot events before they are made into rows.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use collabstream_common::TimeRange;
use collabstream_store::arrow_rows::{events_batch, events_schema};
use collabstream_store::{EVENTS_TABLE, Store, StoredEvent};
use datafusion::catalog::Session;
use datafusion::common::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use crate::sql::cold_scan::{self, Boundary};
use crate::sql::hot_exec::{HotExec, Produce};
use crate::sql::pushdown::{Pushdown, TimeColumn};
use crate::sql::store_table::TableScan;
use crate::sql::tiers;

#[derive(Debug)]
pub(crate) struct EventsTable {
    store: Arc<Store>,
    schema: SchemaRef,
}

impl EventsTable {
    pub(crate) fn new(store: Arc<Store>) -> Self {
        Self { store, schema: events_schema() }
    }
}

#[async_trait]
impl TableScan for EventsTable {
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
        let push = Pushdown::from_filters(filters, &[("timestamp", TimeColumn::Timestamp)], &["meeting_id"]);
        let range = push.range;
        let meetings = push.values_of("meeting_id").map(<[String]>::to_vec);
        let held = Arc::new(self.store.hold_events_cold_boundary());
        let boundary = held.at();
        let files = tiers::cold_files(&self.store.cold_view(), EVENTS_TABLE, boundary, range, |_| true);
        let cold = cold_scan::scan(
            state,
            &self.schema,
            files,
            projection,
            Boundary { column: "timestamp", at: boundary },
            limit,
            cold_scan::selective(filters, "timestamp"),
        )?;
        let hot = if range.end >= boundary && meetings.as_ref().is_none_or(|m| !m.is_empty()) {
            let what = format!("events from {boundary}, {}", push.describe());
            let schema = self.schema.clone();
            let batch_rows = state.config().batch_size().max(1);
            let produce: Produce = Arc::new(move |emit| {
                let range = TimeRange { start: range.start.max(boundary), end: range.end };
                let wanted = |e: &StoredEvent| {
                    meetings.as_ref().is_none_or(|m| {
                        let id = collabstream_proto::events::meeting_id(&e.event).unwrap_or("");
                        m.binary_search_by(|x| x.as_str().cmp(id)).is_ok()
                    })
                };
                let mut rows: Vec<StoredEvent> = Vec::with_capacity(batch_rows);
                let (mut sent, mut open, mut failed) = (0usize, true, None);
                held.events(range, |e| {
                    if wanted(&e) {
                        rows.push(e);
                    } else if !emit.wanted() {
                        return false;
                    }
                    if rows.len() >= batch_rows {
                        sent += rows.len();
                        match events_batch(&schema, &rows) {
                            Ok(b) => open = emit.send(b) && limit.is_none_or(|l| sent < l),
                            Err(e) => {
                                failed = Some(e);
                                open = false;
                            }
                        }
                        rows.clear();
                    }
                    open
                })
                .map_err(|e| e.to_string())?;
                if let Some(e) = failed {
                    return Err(e);
                }
                if open && !rows.is_empty() && emit.wanted() {
                    emit.send(events_batch(&schema, &rows)?);
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
