//! [`Aggregations`]: the rules apply runs, with their window state, and the rows they keep in
//! the `agg` column family.
//!
//! Lives in the writer's state: only apply (and the checkpoint, on the apply thread) touches
//! it. Its rows are written in the checkpoint's synced batch with the applied index, never
//! between checkpoints, so that after a crash the rows are the state as of the index the log
//! is replayed from (see `agg::state`).

use collabstream_proto::v1;
use rocksdb::IteratorMode;

use crate::agg::{Changes, Emission, EmissionKind, EventRule, Sessions, WindowKind, Windows, meetings};
use crate::db::{CF_AGG, Rocks};
use crate::error::{Error, Result};
use crate::store::cf;

#[derive(Debug)]
enum Engine {
    Windows(Windows),
    Sessions(Sessions),
}

impl Engine {
    fn new(rule: &EventRule) -> Self {
        match rule.window.window {
            WindowKind::Session { .. } => Engine::Sessions(Sessions::new(rule.window.clone())),
            _ => Engine::Windows(Windows::new(rule.window.clone())),
        }
    }

    fn restore<'a>(
        rule: &EventRule,
        meta: &[u8],
        rows: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Result<Self> {
        Ok(match rule.window.window {
            WindowKind::Session { .. } => {
                Engine::Sessions(Sessions::restore(rule.window.clone(), meta, rows)?)
            }
            _ => Engine::Windows(Windows::restore(rule.window.clone(), meta, rows)?),
        })
    }

    fn observe(&mut self, clock: i64, group: &[u8], o: &crate::agg::Observation, out: &mut Vec<Emission>) {
        match self {
            Engine::Windows(w) => w.observe(clock, group, o, out),
            Engine::Sessions(s) => s.observe(clock, group, o, out),
        }
    }

    fn tick(&mut self, clock: i64, out: &mut Vec<Emission>) {
        match self {
            Engine::Windows(w) => w.tick(clock, out),
            Engine::Sessions(s) => s.tick(clock, out),
        }
    }

    fn take_changes(&mut self) -> Changes {
        match self {
            Engine::Windows(w) => w.take_changes(),
            Engine::Sessions(s) => s.take_changes(),
        }
    }

    fn stats(&self, rule: &str) -> RuleStats {
        let (watermark, late_dropped, open_keys) = match self {
            Engine::Windows(w) => (w.watermark(), w.late_dropped(), w.open_panes()),
            Engine::Sessions(s) => (s.watermark(), s.late_dropped(), s.open_sessions()),
        };
        RuleStats {
            rule: rule.to_string(),
            watermark,
            late_dropped,
            open_keys,
            events: 0,
            emitted: 0,
            corrections: 0,
        }
    }
}

/// What `/metrics` shows of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleStats {
    pub rule: String,
    /// Event time (ms) up to which the rule takes its windows to be complete.
    pub watermark: i64,
    /// Events past their windows' allowed lateness, dropped.
    pub late_dropped: u64,
    /// Panes or sessions held, over all groups.
    pub open_keys: usize,
    /// Since this process started: events the rule took, windows emitted for the first time,
    /// and windows emitted again (corrections and withdrawn sessions).
    pub events: u64,
    pub emitted: u64,
    pub corrections: u64,
}

/// A rule's counters since this process started.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    events: u64,
    emitted: u64,
    corrections: u64,
}

impl Counts {
    fn count(&mut self, emitted: &[Emission]) {
        for e in emitted {
            match e.kind {
                EmissionKind::First => self.emitted += 1,
                EmissionKind::Correction | EmissionKind::Retraction => self.corrections += 1,
            }
        }
    }
}

/// The rules in force and their state.
#[derive(Debug, Default)]
pub(crate) struct Aggregations {
    running: Vec<(EventRule, Engine)>,
    /// One per rule running, in the same order.
    counts: Vec<Counts>,
    /// Rules dropped since the last checkpoint, whose rows it deletes.
    dropped: Vec<String>,
}

/// Emissions of one rule, by its position among those running.
pub(crate) type Emitted = Vec<(usize, Emission)>;

/// What a checkpoint writes to the `agg` column family: rows to put (`Some`) or delete, and
/// the key ranges of dropped rules.
#[derive(Debug, Default)]
pub(crate) struct AggWrites {
    pub(crate) rows: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    pub(crate) dropped: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A rule's rows: its name, then 0 for its meta row or 1 and a state row's key.
fn prefix(rule: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(rule.len() + 2);
    k.push(rule.len().min(255) as u8);
    k.extend_from_slice(&rule.as_bytes()[..rule.len().min(255)]);
    k
}

fn meta_key(rule: &str) -> Vec<u8> {
    let mut k = prefix(rule);
    k.push(0);
    k
}

fn row_key(rule: &str, row: &[u8]) -> Vec<u8> {
    let mut k = prefix(rule);
    k.push(1);
    k.extend_from_slice(row);
    k
}

impl Aggregations {
    /// The rules in force per `meetings_pack`, with the state the database holds for them.
    pub(crate) fn load(db: &Rocks, meetings_pack: bool) -> Result<Self> {
        let mut aggs = Aggregations::default();
        if !meetings_pack {
            return Ok(aggs);
        }
        for rule in meetings::rules() {
            let p = prefix(&rule.name);
            let mut meta = None;
            let mut rows = Vec::new();
            for item in db.iterator_cf(cf(db, CF_AGG), IteratorMode::From(&p, rocksdb::Direction::Forward)) {
                let (k, v) = item?;
                let Some(rest) = k.strip_prefix(p.as_slice()) else { break };
                match rest.split_first() {
                    Some((0, [])) => meta = Some(v),
                    Some((1, row)) => rows.push((row.to_vec(), v)),
                    _ => return Err(Error::Corrupt { what: "aggregation key" }),
                }
            }
            let engine = match meta {
                Some(meta) => {
                    Engine::restore(&rule, &meta, rows.iter().map(|(k, v)| (k.as_slice(), &v[..])))?
                }
                None => Engine::new(&rule),
            };
            aggs.running.push((rule, engine));
            aggs.counts.push(Counts::default());
        }
        Ok(aggs)
    }

    /// Turns the meetings pack on or off, from a settings entry.
    pub(crate) fn set_meetings_pack(&mut self, on: bool) {
        let running = !self.running.is_empty();
        if on && !running {
            self.running = meetings::rules()
                .into_iter()
                .map(|r| {
                    let e = Engine::new(&r);
                    (r, e)
                })
                .collect();
            self.counts = vec![Counts::default(); self.running.len()];
            // Rules dropped and started again since the last checkpoint keep their place in
            // `dropped`: their old rows are deleted before the new ones are written (the
            // checkpoint's batch deletes first), so a restart never reads the two mixed.
        } else if !on && running {
            self.dropped.extend(self.running.drain(..).map(|(r, _)| r.name));
            self.counts.clear();
        }
    }

    pub(crate) fn stats(&self) -> Vec<RuleStats> {
        self.running
            .iter()
            .zip(&self.counts)
            .map(|((r, e), c)| RuleStats {
                events: c.events,
                emitted: c.emitted,
                corrections: c.corrections,
                ..e.stats(&r.name)
            })
            .collect()
    }

    pub(crate) fn rule(&self, i: usize) -> Option<&EventRule> {
        self.running.get(i).map(|(r, _)| r)
    }

    /// One applied event, in an entry stamped `clock` by the leader.
    pub(crate) fn observe(&mut self, clock: i64, e: &v1::Event, out: &mut Emitted) {
        let mut emitted = Vec::new();
        for (i, (rule, engine)) in self.running.iter_mut().enumerate() {
            if let Some((group, o)) = rule.observe(e) {
                engine.observe(clock, &group, &o, &mut emitted);
                if let Some(c) = self.counts.get_mut(i) {
                    c.events += 1;
                    c.count(&emitted);
                }
                out.extend(emitted.drain(..).map(|x| (i, x)));
            }
        }
    }

    /// A tick of the leader's clock.
    pub(crate) fn tick(&mut self, clock: i64, out: &mut Emitted) {
        let mut emitted = Vec::new();
        for (i, (_, engine)) in self.running.iter_mut().enumerate() {
            engine.tick(clock, &mut emitted);
            if let Some(c) = self.counts.get_mut(i) {
                c.count(&emitted);
            }
            out.extend(emitted.drain(..).map(|x| (i, x)));
        }
    }

    /// What the next checkpoint writes (see [`AggWrites`]).
    pub(crate) fn take_changes(&mut self) -> AggWrites {
        let mut rows = Vec::new();
        for (rule, engine) in &mut self.running {
            let c = engine.take_changes();
            rows.push((meta_key(&rule.name), Some(c.meta)));
            rows.extend(c.rows.into_iter().map(|(k, v)| (row_key(&rule.name, &k), v)));
        }
        let dropped = self
            .dropped
            .drain(..)
            .map(|name| {
                let mut end = prefix(&name);
                end.push(2);
                (prefix(&name), end)
            })
            .collect();
        AggWrites { rows, dropped }
    }
}
