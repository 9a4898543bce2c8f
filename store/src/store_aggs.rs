//! What the store tells of its aggregation rules: their figures, definitions and rows.

use std::sync::atomic::Ordering;

use collabstream_common::TimeRange;
use collabstream_proto::v1;

use crate::agg_rows::{self, AggRow};
use crate::aggregations::RuleStats;
use crate::error::Result;
use crate::store::Store;

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
}
