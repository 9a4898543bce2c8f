//! [`Windows`]: one rule's tumbling or sliding windows over event time, with its watermark.
//!
//! The semantics are DESIGN §3's:
//! - the watermark is the newest event time seen minus `max_out_of_orderness`, or, once the
//!   rule has had no event for `idle_timeout` of the leader's clock, that clock minus
//!   `max_out_of_orderness` (ticks carry the clock, so every replica computes the same);
//! - a window `[start, end)` is emitted when the watermark reaches its end;
//! - until the watermark reaches `end + allowed_lateness`, a late event updates it and it is
//!   emitted again (a correction: the output at the same timestamp is replaced);
//! - an event all of whose windows are past that is dropped and counted.
//!
//! Everything here is a function of the calls made, in order: no clock, no randomness, no
//! iteration over hash maps. Keys are opaque bytes (the rule's group values, encoded by the
//! caller), compared as bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rustc_hash::FxHashSet;

use crate::agg::acc::Needs;
use crate::agg::formula::{self, Formula};
use crate::agg::measures::{Measures, Observation};
use crate::agg::panes::{Group, Pane, Panes, intern};
use crate::agg::rule::{Emission, EmissionKind, WindowRule};
use crate::agg::state::{ColdRows, Meta, RowSink, parse_row_key, put_row_key, row_key};
use crate::agg::totals::{CARRY_ROW_TIME, Totals};
use crate::agg::watermark::Watermark;
use crate::agg::window::WindowKind;

#[derive(Debug, Clone)]
pub struct Windows {
    rule: WindowRule,
    /// What each measure accumulates.
    needs: Vec<Needs>,
    watermark: Watermark,
    panes: Panes,
    /// Windows with events whose end the watermark has not reached: their groups by end, in
    /// the order they came and perhaps more than once (a sliding window's group, once for
    /// each of its panes); sorted when the end is emitted, so that windows are emitted by
    /// (end, group) whatever the order of the events was.
    pending: BTreeMap<i64, Vec<Group>>,
    /// Panes changed or dropped since the last [`Windows::write_changes`], each once: a pane's
    /// own flag says whether it is here, so a busy pane costs one lookup an event, not two.
    dirty: Vec<(i64, Group)>,
    /// The groups named above, each once. Only looked up, never iterated for a result, so
    /// its hash order cannot reach an output.
    groups: FxHashSet<Group>,
    /// The bytes of the panes' rows, as written (see [`Windows::state_bytes`]).
    state_bytes: u64,
    /// Panes let go of from memory ([`Windows::evict`]), whose rows the last checkpoint wrote:
    /// how many, and their bytes, by pane start. A pane missing from `panes` is looked for
    /// in the rows only when its start is here, so new panes cost no read.
    cold: BTreeMap<i64, (u64, u64)>,
    /// The groups' running sums, for a `total` output (see [`Totals`]).
    totals: Option<Totals>,
    /// Windows already emitted that late events changed since the last
    /// [`Windows::flush_corrections`]: emitted again once, however many events changed them.
    /// Flushed at the end of each log entry, so never part of a checkpoint.
    corrections: BTreeSet<(i64, Group)>,
}

impl Windows {
    /// The windows of `rule`, which must be tumbling or sliding and valid.
    pub fn new(rule: WindowRule) -> Self {
        debug_assert!(!matches!(rule.window, WindowKind::Session { .. }));
        debug_assert!(rule.window.validate().is_ok());
        let needs = formula::needs(&rule.outputs, rule.distinct_threshold);
        let watermark = Watermark::new(rule.max_out_of_orderness_ms, rule.idle_timeout_ms);
        let totals = rule.outputs.iter().find_map(|f| match f {
            Formula::Total { measure } => Some(Totals::new(*measure)),
            _ => None,
        });
        Self {
            rule,
            needs,
            watermark,
            panes: Panes::default(),
            pending: BTreeMap::new(),
            dirty: Vec::new(),
            groups: FxHashSet::default(),
            state_bytes: 0,
            cold: BTreeMap::new(),
            totals,
            corrections: BTreeSet::new(),
        }
    }

    /// The windows of `rule` as a checkpoint left them: its meta row and every state row.
    pub fn restore<'a>(
        rule: WindowRule,
        meta: &[u8],
        rows: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> crate::Result<Self> {
        let mut w = Self::new(rule);
        w.watermark = w.watermark.clone().restored(Meta::decode(meta)?);
        let wm = w.watermark.get();
        for (k, v) in rows {
            let (pane, group) = parse_row_key(k)?;
            let group = w.group(&group);
            if pane == CARRY_ROW_TIME {
                let totals = w.totals.as_mut().ok_or(crate::Error::Corrupt { what: "aggregation total" })?;
                totals.restore(group, v)?;
                continue;
            }
            // The windows of the pane the watermark has not reached are still to be emitted.
            for end in w.rule.window.window_ends(pane).filter(|e| *e > wm) {
                w.pending.entry(end).or_default().push(group.clone());
            }
            w.state_bytes += v.len() as u64;
            let measures = Measures::decode(v)?;
            w.panes.get_or_insert(pane, &group, || Pane { measures, dirty: false, bytes: v.len() as u32 });
        }
        Ok(w)
    }

    /// Writes the rows changed since the last call into `sink`, for a checkpoint, and gives
    /// the meta row.
    pub fn write_changes(&mut self, sink: &mut impl RowSink) -> Vec<u8> {
        debug_assert!(self.corrections.is_empty(), "corrections are flushed at the end of each entry");
        // Panes out of memory that have expired since: their rows go by range, first.
        let cutoff = self.first_live_pane();
        let mut expired_cold = false;
        while let Some((&pane, &(_, bytes))) = self.cold.first_key_value()
            && pane < cutoff
        {
            self.cold.pop_first();
            self.state_bytes -= bytes;
            expired_cold = true;
        }
        if expired_cold {
            sink.delete_before(cutoff);
        }
        let (mut key, mut value) = (Vec::new(), Vec::new());
        for (start, group) in std::mem::take(&mut self.dirty) {
            key.clear();
            put_row_key(&mut key, start, &group);
            match self.panes.get_mut(start, &group) {
                Some(p) => {
                    p.dirty = false;
                    value.clear();
                    p.measures.encode(&mut value);
                    self.state_bytes = self.state_bytes - u64::from(p.bytes) + value.len() as u64;
                    p.bytes = value.len() as u32;
                    sink.row(&key, Some(&value));
                }
                None => sink.row(&key, None),
            }
        }
        let expired = self.expired_fn();
        if let Some(t) = &mut self.totals {
            t.write_changes(expired, sink);
        }
        // Groups no pane, window or carry names any more (the set's own reference is the last).
        self.groups.retain(|g| Arc::strong_count(g) > 1);
        self.watermark.saved().encode()
    }

    /// Lets go of the oldest clean panes from memory until at most `keep` are held. Called
    /// once [`Windows::write_changes`] was written: a clean pane's row is then what it holds
    /// (panes changed since stay); `observe` and emissions read them back through their
    /// [`ColdRows`]. Outputs do not depend on what is held.
    pub fn evict(&mut self, keep: usize) {
        let cold = &mut self.cold;
        self.panes.let_go(keep, |pane, p| {
            let c = cold.entry(pane).or_default();
            c.0 += 1;
            c.1 += u64::from(p.bytes);
        });
    }

    /// Panes held in memory (the others are in the rows).
    pub fn hot_panes(&self) -> usize {
        self.panes.len()
    }

    /// The start of the oldest pane that can still take events: panes starting before it are
    /// past their windows' lateness.
    fn first_live_pane(&self) -> i64 {
        let reach = self.rule.window.size_ms().saturating_add(self.rule.allowed_lateness_ms);
        self.watermark.get().saturating_sub(reach).saturating_add(1)
    }

    /// A pane out of memory, read back; `None` if it has no row.
    /// Takes the counts of panes out of memory (not `&self`), so that it can be called while
    /// a pane is borrowed.
    fn read_cold(
        counts: &BTreeMap<i64, (u64, u64)>,
        pane: i64,
        group: &[u8],
        cold: &dyn ColdRows,
    ) -> crate::Result<Option<Pane>> {
        if counts.get(&pane).is_none_or(|c| c.0 == 0) {
            return Ok(None);
        }
        let Some(row) = cold.get(&row_key(pane, group))? else { return Ok(None) };
        Ok(Some(Pane { measures: Measures::decode(&row)?, dirty: false, bytes: row.len() as u32 }))
    }

    pub fn watermark(&self) -> i64 {
        self.watermark.get()
    }

    pub fn late_dropped(&self) -> u64 {
        self.watermark.late_dropped()
    }

    /// Panes held, in memory or not (each a window, or one hop of one, for one group).
    pub fn open_panes(&self) -> usize {
        self.panes.len() + self.cold.values().map(|c| c.0 as usize).sum::<usize>()
    }

    /// The bytes of the panes' rows as checkpoints wrote them (a pane changed since counts
    /// its last written row; a new one, nothing yet).
    pub fn state_bytes(&self) -> u64 {
        self.state_bytes + self.totals.as_ref().map_or(0, Totals::row_bytes)
    }

    /// One event of `group`, carried by an entry stamped `clock_ms` by the leader. Windows the
    /// watermark now passes are appended to `out`; the windows it corrects wait for
    /// [`Windows::flush_corrections`]. Panes out of memory are read back through `cold`.
    pub fn observe(
        &mut self,
        clock_ms: i64,
        group: &[u8],
        o: &Observation,
        cold: &dyn ColdRows,
        out: &mut Vec<Emission>,
    ) -> crate::Result<()> {
        if o.inputs.is_empty() {
            return self.observe_group(clock_ms, None, o, cold, out);
        }
        let group = self.group(group);
        self.observe_group(clock_ms, Some(group), o, cold, out)
    }

    /// [`Windows::observe`] with the group's shared key, which the caller holds once for every
    /// rule it feeds (apply's path: one lookup an event, not one a rule); `None` only for an
    /// event that feeds no measure.
    pub(crate) fn observe_group(
        &mut self,
        clock_ms: i64,
        group: Option<Group>,
        o: &Observation,
        cold: &dyn ColdRows,
        out: &mut Vec<Emission>,
    ) -> crate::Result<()> {
        let Some(group) = group.filter(|_| !o.inputs.is_empty()) else {
            // Feeds no measure: it only tells the time.
            if let Some(to) = self.watermark.on_event(clock_ms, o.ts) {
                self.advance(to, cold, out)?;
            }
            return Ok(());
        };
        let w = self.rule.window;
        let pane = w.pane_start(o.ts);
        if self.expired(pane) {
            self.watermark.drop_late(clock_ms, o.ts);
            return Ok(());
        }
        let (held, p) = self.panes.get_or_insert(pane, &group, Pane::default);
        let mut new = !held;
        if new && let Some(back) = Self::read_cold(&self.cold, pane, &group, cold)? {
            // Back in memory (its windows are still pending: `pending` keeps every group).
            if let Some(c) = self.cold.get_mut(&pane) {
                c.0 -= 1;
                c.1 -= u64::from(back.bytes);
            }
            *p = back;
            new = false;
        }
        p.measures.add(o, &self.needs);
        if !p.dirty {
            p.dirty = true;
            self.dirty.push((pane, group.clone()));
        }
        let expired = self.expired_fn();
        if let Some(t) = &mut self.totals {
            t.observe(&group, pane, o, expired);
        }
        let wm = self.watermark.get();
        let mut last_end = pane;
        for end in w.window_ends(pane) {
            last_end = end;
            if end > wm {
                // A pane that existed already has its windows the watermark has not reached
                // pending (the watermark never moves back).
                if new {
                    self.pending.entry(end).or_default().push(group.clone());
                }
            } else if end.saturating_add(self.rule.allowed_lateness_ms) > wm {
                self.corrections.insert((end, group.clone()));
            }
        }
        if self.totals.is_some() && last_end <= wm {
            self.correct_later_totals(last_end, &group);
        }
        if let Some(to) = self.watermark.on_event(clock_ms, o.ts) {
            self.advance(to, cold, out)?;
        }
        Ok(())
    }

    /// A tick of the leader's clock: a rule idle for `idle_timeout` moves its watermark to the
    /// clock minus `max_out_of_orderness`, closing its windows.
    pub fn tick(&mut self, clock_ms: i64, cold: &dyn ColdRows, out: &mut Vec<Emission>) -> crate::Result<()> {
        if let Some(to) = self.watermark.on_tick(clock_ms) {
            self.advance(to, cold, out)?;
        }
        Ok(())
    }

    /// The group's shared key.
    fn group(&mut self, group: &[u8]) -> Group {
        intern(&mut self.groups, group)
    }

    /// Whether every window holding the pane starting at `pane` is past its lateness.
    fn expired(&self, pane: i64) -> bool {
        self.expired_fn()(pane)
    }

    /// [`Windows::expired`] as of now, borrowing nothing.
    fn expired_fn(&self) -> impl Fn(i64) -> bool + use<> {
        let (size, lateness, wm) =
            (self.rule.window.size_ms(), self.rule.allowed_lateness_ms, self.watermark.get());
        move |pane: i64| pane.saturating_add(size).saturating_add(lateness) <= wm
    }

    /// Emits the windows the watermark, now at `to`, has reached, and drops expired panes.
    fn advance(&mut self, to: i64, cold: &dyn ColdRows, out: &mut Vec<Emission>) -> crate::Result<()> {
        self.flush_corrections(cold, out)?;
        while let Some((&end, _)) = self.pending.first_key_value()
            && end <= to
        {
            let Some((end, mut groups)) = self.pending.pop_first() else { break };
            groups.sort_unstable();
            groups.dedup();
            // An error (a pane's row unreadable) stops the state machine, which then starts
            // again from its last checkpoint: what was not emitted need not stay pending.
            for group in groups {
                out.extend(self.emission(end, &group, EmissionKind::First, cold)?);
            }
        }
        // Panes whose every window is past its lateness can take no more events.
        while let Some(pane) = self.panes.first_start() {
            if !self.expired(pane) {
                break;
            }
            let Some((pane, gone)) = self.panes.pop_first_start() else { break };
            for (group, p) in gone {
                self.state_bytes -= u64::from(p.bytes);
                // A changed pane is listed already; its row goes the same way.
                if !p.dirty {
                    self.dirty.push((pane, group));
                }
            }
        }
        Ok(())
    }

    /// The outputs of the window of `group` ending at `end`: its panes merged in ascending
    /// order; none if the group has no pane in it.
    fn emission(
        &self,
        end: i64,
        group: &Group,
        kind: EmissionKind,
        cold: &dyn ColdRows,
    ) -> crate::Result<Option<Emission>> {
        let size = self.rule.window.size_ms();
        let start = end - size;
        let (acc, any) = self.merged(start, end, group, cold)?;
        if !any {
            return Ok(None);
        }
        let mut values = Vec::with_capacity(self.rule.outputs.len());
        for f in &self.rule.outputs {
            values.push(match f {
                Formula::Total { .. } => self.total(end, group, cold)?,
                _ => f.eval(&acc, size),
            });
        }
        Ok(Some(Emission { group: group.to_vec(), start, end, values, kind }))
    }

    /// The group's panes from `start` to `end` merged in ascending order, and whether it has any.
    fn merged(
        &self,
        start: i64,
        end: i64,
        group: &Group,
        cold: &dyn ColdRows,
    ) -> crate::Result<(Measures, bool)> {
        let pane_ms = self.rule.window.pane_ms();
        let mut acc = Measures::default();
        let mut any = false;
        let mut pane = start;
        while pane < end {
            match self.panes.get(pane, group) {
                Some(p) => {
                    acc.merge(&p.measures, &self.needs);
                    any = true;
                }
                // Read, not brought back: a closing window's panes are rarely touched again.
                None => {
                    if let Some(p) = Self::read_cold(&self.cold, pane, group, cold)? {
                        acc.merge(&p.measures, &self.needs);
                        any = true;
                    }
                }
            }
            pane += pane_ms;
        }
        Ok((acc, any))
    }

    /// The group's `total` at `end`: its carry less the sums of its panes from `end` on.
    fn total(&self, end: i64, group: &Group, cold: &dyn ColdRows) -> crate::Result<Option<f64>> {
        let Some(t) = &self.totals else { return Ok(None) };
        let Some((carry, last_pane)) = t.carry(group) else { return Ok(None) };
        let later_end = last_pane.saturating_add(self.rule.window.pane_ms());
        let (later, _) =
            if end < later_end { self.merged(end, later_end, group, cold)? } else { Default::default() };
        let later = later.output(t.measure(), crate::agg::Output::Sum, 0).unwrap_or(0.0);
        Ok(Some(carry - later))
    }

    /// After a late observation corrected windows up to `after`: the group's later windows
    /// already emitted, whose totals it changed too (those without a pane of the group were
    /// never emitted for it, and are left out when flushed).
    fn correct_later_totals(&mut self, after: i64, group: &Group) {
        let (size, pane_ms) = (self.rule.window.size_ms(), self.rule.window.pane_ms());
        let newest = self.totals.as_ref().and_then(|t| t.carry(group)).map_or(after, |(_, last)| last);
        let stop = self.watermark.get().min(newest.saturating_add(size));
        let mut end = after.saturating_add(pane_ms);
        while end <= stop {
            self.corrections.insert((end, group.clone()));
            end = end.saturating_add(pane_ms);
        }
    }

    /// Emits the corrections late events made since the last call, each window once, in
    /// (end, group) order. Called at the end of each log entry, and before the watermark
    /// moves (panes it expires must still be there).
    pub fn flush_corrections(&mut self, cold: &dyn ColdRows, out: &mut Vec<Emission>) -> crate::Result<()> {
        for (end, group) in std::mem::take(&mut self.corrections) {
            if let Some(e) = self.emission(end, &group, EmissionKind::Correction, cold)? {
                out.push(e);
            }
        }
        Ok(())
    }
}
