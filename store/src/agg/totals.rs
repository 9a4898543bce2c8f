//! [`Totals`]: the running sum a group carries from window to window, for a sample rule's
//! `total` output (VictoriaMetrics' `total`: an output counter summing its inputs' increases).
//!
//! A window's total is every increase of its group before the window's end: the carry (all
//! the group's increases so far) minus those of the group's panes at or after the end. So a
//! late sample in an emitted window changes that window's total and every later one already
//! emitted; the windows re-emit them (corrections). A group whose every pane has expired
//! (no sample for a window plus the allowed lateness) starts again from 0, as a counter that
//! reset; until then its carry is kept, in memory and in one state row.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::agg::formula::MeasureId;
use crate::agg::measures::Observation;
use crate::agg::state::{RowSink, put_row_key};
use crate::error::{Error, Result};
use crate::varint::{Reader, put_i64};

/// The time of the carries' rows: after every pane, so that expired panes' range deletes
/// never reach them.
pub(crate) const CARRY_ROW_TIME: i64 = i64::MAX;

#[derive(Debug, Clone, Copy, PartialEq)]
struct Carry {
    sum: f64,
    /// The start of the group's newest pane.
    last_pane: i64,
    /// Bytes of its row as the last checkpoint wrote it (0 if none has).
    bytes: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct Totals {
    /// The measure whose sums are carried (a sample rule's increases).
    measure: MeasureId,
    carries: BTreeMap<Arc<[u8]>, Carry>,
    /// Groups whose carry changed since the last [`Totals::write_changes`].
    dirty: BTreeSet<Arc<[u8]>>,
    /// The bytes of the carries' rows, as written.
    row_bytes: u64,
}

impl Totals {
    pub(crate) fn new(measure: MeasureId) -> Self {
        Self { measure, carries: BTreeMap::new(), dirty: BTreeSet::new(), row_bytes: 0 }
    }

    /// The measure whose sums are carried.
    pub(crate) fn measure(&self) -> MeasureId {
        self.measure
    }

    /// The measure's part of an observation: the sum its accumulator takes (NaN is not summed).
    pub(crate) fn value(&self, o: &Observation) -> f64 {
        o.inputs
            .iter()
            .filter(|i| i.measure == self.measure)
            .filter_map(|i| i.value)
            .filter(|v| !v.is_nan())
            .sum()
    }

    /// An observation of `group` taken into the pane starting at `pane`; `expired` tells
    /// whether a pane is past all its windows' lateness.
    pub(crate) fn observe(
        &mut self,
        group: &Arc<[u8]>,
        pane: i64,
        o: &Observation,
        expired: impl Fn(i64) -> bool,
    ) {
        let value = self.value(o);
        let c = self.carries.entry(group.clone()).or_insert(Carry { sum: 0.0, last_pane: pane, bytes: 0 });
        if expired(c.last_pane) {
            // Every pane the old carry counted is gone: a new run, from 0.
            c.sum = 0.0;
            c.last_pane = pane;
        }
        c.sum += value;
        c.last_pane = c.last_pane.max(pane);
        self.dirty.insert(group.clone());
    }

    /// The group's carry and its newest pane, if it has one.
    pub(crate) fn carry(&self, group: &[u8]) -> Option<(f64, i64)> {
        self.carries.get(group).map(|c| (c.sum, c.last_pane))
    }

    /// Writes the rows changed since the last call into `sink` (keyed by
    /// [`row_key`](crate::agg::state::row_key) at [`CARRY_ROW_TIME`]);
    /// carries whose panes have all expired are deleted (a new sample would start them from
    /// 0 anyway, so outputs do not depend on when this runs).
    pub(crate) fn write_changes(&mut self, expired: impl Fn(i64) -> bool, sink: &mut impl RowSink) {
        let gone: Vec<Arc<[u8]>> =
            self.carries.iter().filter(|(_, c)| expired(c.last_pane)).map(|(g, _)| g.clone()).collect();
        for g in gone {
            if let Some(c) = self.carries.remove(&g) {
                self.row_bytes -= u64::from(c.bytes);
            }
            self.dirty.insert(g);
        }
        let (mut key, mut value) = (Vec::new(), Vec::new());
        for g in std::mem::take(&mut self.dirty) {
            key.clear();
            put_row_key(&mut key, CARRY_ROW_TIME, &g);
            match self.carries.get_mut(&g) {
                Some(c) => {
                    value.clear();
                    value.extend_from_slice(&c.sum.to_bits().to_be_bytes());
                    put_i64(&mut value, c.last_pane);
                    self.row_bytes = self.row_bytes - u64::from(c.bytes) + value.len() as u64;
                    c.bytes = value.len() as u32;
                    sink.row(&key, Some(&value));
                }
                None => sink.row(&key, None),
            }
        }
    }

    /// A carry's row, as [`Totals::write_changes`] wrote it.
    pub(crate) fn restore(&mut self, group: Arc<[u8]>, value: &[u8]) -> Result<()> {
        let corrupt = || Error::Corrupt { what: "aggregation total" };
        let bits = value.get(..8).ok_or_else(corrupt)?;
        let sum = f64::from_bits(u64::from_be_bytes(bits.try_into().map_err(|_| corrupt())?));
        let mut r = Reader::new(&value[8..]);
        let last_pane = r.i64().ok_or_else(corrupt)?;
        if !r.is_empty() {
            return Err(corrupt());
        }
        self.row_bytes += value.len() as u64;
        self.carries.insert(group, Carry { sum, last_pane, bytes: value.len() as u32 });
        Ok(())
    }

    /// The bytes of the carries' rows as checkpoints wrote them.
    pub(crate) fn row_bytes(&self) -> u64 {
        self.row_bytes
    }
}
