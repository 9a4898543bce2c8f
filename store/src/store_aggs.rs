//! What the store tells of its aggregation rules: their figures, definitions and rows.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use collabstream_common::TimeRange;
use collabstream_proto::v1;

use crate::agg_rows::{self, AggRow};
use crate::aggregations::RuleStats;
use crate::error::Result;
use crate::store::{Store, WriterState};

/// A rule's rows as a table has them: see [`Store::aggregation_tables`].
#[derive(Debug, Clone, PartialEq)]
pub struct RuleTable {
    pub name: String,
    /// The group's label names, the same for every row (`None`: each group has its own, a
    /// rule over samples grouped `without` labels).
    pub group: Option<Vec<String>>,
    /// The outputs' names ([`Rule::columns`](crate::agg::Rule::columns)).
    pub outputs: Vec<String>,
}

impl Store {
    /// Aggregation output samples refused since start: a window corrected later than the
    /// out-of-order window lets a sample in.
    pub fn outputs_refused(&self) -> u64 {
        self.outputs_refused.load(Ordering::Relaxed)
    }

    /// The aggregation rules running, with their watermark, late drops and open keys.
    pub fn aggregation_stats(&self) -> Vec<RuleStats> {
        self.agg_stats.lock().clone()
    }

    /// Whether aggregation rules are running (the leader then ticks).
    pub fn aggregating(&self) -> bool {
        !self.agg_stats.lock().is_empty()
    }

    /// The users' aggregation rules in force, by name, and the names of the built-in packs'
    /// rules running. Waits for the entry being applied, if any.
    pub fn aggregation_rules(&self) -> (Vec<v1::AggregationRule>, Vec<String>) {
        self.writer.lock().aggs.definitions()
    }

    /// What a table of each running rule's rows is made of, in the rules' order, as of the
    /// last entry applied (without waiting for the one being applied).
    pub fn aggregation_tables(&self) -> Vec<RuleTable> {
        self.sql_view.read().rules.clone()
    }

    /// The tables SQL plans with, as of the last entry applied that changed them.
    pub fn sql_view(&self) -> Arc<SqlView> {
        self.sql_view.read().clone()
    }

    /// Publishes what SQL plans with, from the writer's state.
    pub(crate) fn publish_sql_view(&self, writer: &WriterState) {
        *self.sql_view.write() = Arc::new(SqlView::of(writer));
    }

    /// A rule's output columns ([`Rule::columns`](crate::agg::Rule::columns)) and its rows
    /// whose window ends in `range`, by end then group, at most `limit`; `None` if no rule of
    /// that name runs.
    pub fn aggregation_rows(
        &self,
        rule: &str,
        range: TimeRange,
        limit: usize,
    ) -> Result<Option<(Vec<String>, Vec<AggRow>)>> {
        let Some(columns) = self.writer.lock().aggs.rule_named(rule).map(|r| r.columns()) else {
            return Ok(None);
        };
        Ok(Some((columns, agg_rows::read(&self.db, rule, range, limit)?)))
    }

    /// A rule's rows whose window ends in `range`, by end then group, handed to `f` until it
    /// answers false (nothing if no rule of that name has rows).
    pub fn scan_aggregation_rows(
        &self,
        rule: &str,
        range: TimeRange,
        f: impl FnMut(AggRow) -> bool,
    ) -> Result<()> {
        agg_rows::scan(&self.db, rule, range, f)
    }

    /// The SQL catalog's external tables in force, by name, as of the last entry applied.
    pub fn sql_tables(&self) -> Vec<v1::SqlTable> {
        self.sql_view.read().external.clone()
    }
}

/// The tables SQL plans with: the running rules' and the external ones.
#[derive(Debug, Default)]
pub struct SqlView {
    /// What each running rule's table is made of, in the rules' order.
    pub rules: Vec<RuleTable>,
    /// The SQL catalog's external tables, by name.
    pub external: Vec<v1::SqlTable>,
}

impl SqlView {
    pub(crate) fn of(writer: &WriterState) -> Self {
        let rules = writer
            .aggs
            .rules()
            .map(|r| RuleTable { name: r.name().to_string(), group: r.group_columns(), outputs: r.columns() })
            .collect();
        Self { rules, external: writer.sql_tables.tables().to_vec() }
    }
}
