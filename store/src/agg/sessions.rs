//! [`Sessions`]: one rule's session windows: a group's events separated by less than `gap`.
//!
//! A session of events from `first` to `last` is the window `[first, last + gap)`, emitted at
//! its end once the watermark reaches it. Watermark, lateness and dropping are as for
//! [`Windows`](crate::agg::Windows); what differs is that a late event can lengthen an emitted
//! session or join two of them. Its output then moves to the new end: the earlier output is
//! withdrawn ([`EmissionKind::Retraction`], written as a stale marker at its timestamp) and the
//! merged session is emitted.

use std::collections::{BTreeMap, BTreeSet};

use crate::agg::acc::Needs;
use crate::agg::formula;
use crate::agg::measures::{Measures, Observation};
use crate::agg::rule::{Emission, EmissionKind, WindowRule};
use crate::agg::state::{Meta, RowSink, parse_row_key, put_row_key};
use crate::agg::watermark::Watermark;
use crate::agg::window::WindowKind;
use crate::error::{Error, Result};
use crate::varint::{Reader, put_i64, put_u64};

#[derive(Debug, Clone)]
struct Session {
    last: i64,
    acc: Measures,
    emitted: bool,
    /// Bytes of its row as the last checkpoint wrote it (0 if none has).
    bytes: u32,
}

#[derive(Debug, Clone)]
pub struct Sessions {
    rule: WindowRule,
    gap: i64,
    /// What each measure accumulates.
    needs: Vec<Needs>,
    watermark: Watermark,
    /// Open sessions by (group, first event time).
    open: BTreeMap<(Vec<u8>, i64), Session>,
    /// Sessions not emitted yet, by (end, group, start).
    pending: BTreeSet<(i64, Vec<u8>, i64)>,
    /// Every open session by (end, group, start), to drop them once past their lateness.
    by_end: BTreeSet<(i64, Vec<u8>, i64)>,
    /// Sessions changed, added or dropped since the last [`Sessions::write_changes`]:
    /// (group, start).
    dirty: BTreeSet<(Vec<u8>, i64)>,
    /// The bytes of the open sessions' rows, as written (see [`Sessions::state_bytes`]).
    state_bytes: u64,
}

impl Session {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_i64(&mut out, self.last);
        put_u64(&mut out, u64::from(self.emitted));
        self.acc.encode(&mut out);
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self> {
        let corrupt = || Error::Corrupt { what: "session" };
        let mut r = Reader::new(bytes);
        let last = r.i64().ok_or_else(corrupt)?;
        let emitted = match r.u64().ok_or_else(corrupt)? {
            0 => false,
            1 => true,
            _ => return Err(corrupt()),
        };
        Ok(Self { last, emitted, acc: Measures::decode(r.rest())?, bytes: bytes.len() as u32 })
    }
}

impl Sessions {
    /// The sessions of `rule`, whose window must be a valid session window.
    pub fn new(rule: WindowRule) -> Self {
        debug_assert!(matches!(rule.window, WindowKind::Session { .. }));
        debug_assert!(rule.window.validate().is_ok());
        let needs = formula::needs(&rule.outputs, rule.distinct_threshold);
        let watermark = Watermark::new(rule.max_out_of_orderness_ms, rule.idle_timeout_ms);
        let gap = rule.window.size_ms();
        Self {
            rule,
            gap,
            needs,
            watermark,
            open: BTreeMap::new(),
            pending: BTreeSet::new(),
            by_end: BTreeSet::new(),
            dirty: BTreeSet::new(),
            state_bytes: 0,
        }
    }

    /// The sessions of `rule` as a checkpoint left them: its meta row and every state row.
    pub fn restore<'a>(
        rule: WindowRule,
        meta: &[u8],
        rows: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Result<Self> {
        let mut s = Self::new(rule);
        s.watermark = s.watermark.clone().restored(Meta::decode(meta)?);
        for (k, v) in rows {
            // Keyed by start first, so that the rows of one time sort together on disk.
            let (start, group) = parse_row_key(k)?;
            let session = Session::decode(v)?;
            let end = session.last.saturating_add(s.gap);
            if !session.emitted {
                s.pending.insert((end, group.clone(), start));
            }
            s.by_end.insert((end, group.clone(), start));
            s.state_bytes += u64::from(session.bytes);
            s.open.insert((group, start), session);
        }
        Ok(s)
    }

    /// Writes the rows changed since the last call into `sink`, for a checkpoint, and gives
    /// the meta row.
    pub fn write_changes(&mut self, sink: &mut impl RowSink) -> Vec<u8> {
        let mut key = Vec::new();
        for (group, start) in std::mem::take(&mut self.dirty) {
            key.clear();
            put_row_key(&mut key, start, &group);
            match self.open.get_mut(&(group, start)) {
                Some(s) => {
                    let row = s.encode();
                    self.state_bytes = self.state_bytes - u64::from(s.bytes) + row.len() as u64;
                    s.bytes = row.len() as u32;
                    sink.row(&key, Some(&row));
                }
                None => sink.row(&key, None),
            }
        }
        self.watermark.saved().encode()
    }

    pub fn watermark(&self) -> i64 {
        self.watermark.get()
    }

    pub fn late_dropped(&self) -> u64 {
        self.watermark.late_dropped()
    }

    pub fn open_sessions(&self) -> usize {
        self.open.len()
    }

    /// The bytes of the open sessions' rows as checkpoints wrote them (a session changed
    /// since counts its last written row; a new one, nothing yet).
    pub fn state_bytes(&self) -> u64 {
        self.state_bytes
    }

    /// One event of `group`, carried by an entry stamped `clock_ms`.
    pub fn observe(&mut self, clock_ms: i64, group: &[u8], o: &Observation, out: &mut Vec<Emission>) {
        if o.inputs.is_empty() {
            // Feeds no measure: it only tells the time.
            if let Some(to) = self.watermark.on_event(clock_ms, o.ts) {
                self.advance(to, out);
            }
            return;
        }
        let wm = self.watermark.get();
        let ts = o.ts;
        // Sessions this event touches: they start before its own would end, and end after it.
        let touched: Vec<i64> = self
            .open
            .range((group.to_vec(), i64::MIN)..(group.to_vec(), ts.saturating_add(self.gap)))
            .filter(|(_, s)| s.last.saturating_add(self.gap) > ts)
            .map(|((_, start), _)| *start)
            .collect();
        if touched.is_empty()
            && ts.saturating_add(self.gap).saturating_add(self.rule.allowed_lateness_ms) <= wm
        {
            self.watermark.drop_late(clock_ms, o.ts);
            return;
        }
        // The merged session ends after the latest of its events.
        let last = touched
            .iter()
            .filter_map(|s| self.open.get(&(group.to_vec(), *s)))
            .fold(ts, |l, s| l.max(s.last));
        let end = last.saturating_add(self.gap);
        let (mut start, mut acc) = (ts, Measures::default());
        for s in touched {
            let Some(old) = self.open.remove(&(group.to_vec(), s)) else { continue };
            self.state_bytes -= u64::from(old.bytes);
            self.dirty.insert((group.to_vec(), s));
            let old_end = old.last.saturating_add(self.gap);
            self.pending.remove(&(old_end, group.to_vec(), s));
            self.by_end.remove(&(old_end, group.to_vec(), s));
            if old.emitted && old_end != end {
                out.push(self.retraction(group, s, old_end));
            }
            start = start.min(s);
            acc.merge(&old.acc, &self.needs);
        }
        acc.add(o, &self.needs);
        let emitted = end <= wm;
        if emitted {
            out.push(self.emission(group, start, end, &acc, EmissionKind::Correction));
        } else {
            self.pending.insert((end, group.to_vec(), start));
        }
        self.by_end.insert((end, group.to_vec(), start));
        self.open.insert((group.to_vec(), start), Session { last, acc, emitted, bytes: 0 });
        self.dirty.insert((group.to_vec(), start));
        if let Some(to) = self.watermark.on_event(clock_ms, ts) {
            self.advance(to, out);
        }
    }

    /// A tick of the leader's clock (see [`Watermark::on_tick`]).
    pub fn tick(&mut self, clock_ms: i64, out: &mut Vec<Emission>) {
        if let Some(to) = self.watermark.on_tick(clock_ms) {
            self.advance(to, out);
        }
    }

    fn advance(&mut self, to: i64, out: &mut Vec<Emission>) {
        while let Some(first) = self.pending.first()
            && first.0 <= to
        {
            let Some((end, group, start)) = self.pending.pop_first() else { break };
            if let Some(s) = self.open.get_mut(&(group.clone(), start)) {
                s.emitted = true;
                self.dirty.insert((group.clone(), start));
                let e = Self::emission_of(&self.rule, &group, start, end, &s.acc, EmissionKind::First);
                out.push(e);
            }
        }
        while let Some(first) = self.by_end.first()
            && first.0.saturating_add(self.rule.allowed_lateness_ms) <= to
        {
            let Some((_, group, start)) = self.by_end.pop_first() else { break };
            if let Some(s) = self.open.remove(&(group.clone(), start)) {
                self.state_bytes -= u64::from(s.bytes);
            }
            self.dirty.insert((group, start));
        }
    }

    fn emission(&self, group: &[u8], start: i64, end: i64, acc: &Measures, kind: EmissionKind) -> Emission {
        Self::emission_of(&self.rule, group, start, end, acc, kind)
    }

    fn emission_of(
        rule: &WindowRule,
        group: &[u8],
        start: i64,
        end: i64,
        acc: &Measures,
        kind: EmissionKind,
    ) -> Emission {
        let values = rule.outputs.iter().map(|f| f.eval(acc, end - start)).collect();
        Emission { group: group.to_vec(), start, end, values, kind }
    }

    fn retraction(&self, group: &[u8], start: i64, end: i64) -> Emission {
        let values = vec![None; self.rule.outputs.len()];
        Emission { group: group.to_vec(), start, end, values, kind: EmissionKind::Retraction }
    }
}
