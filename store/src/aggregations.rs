//! [`Aggregations`]: the rules apply runs, with their window state, and the rows they keep in
//! the `agg` column family.
//!
//! Lives in the writer's state: only apply (and the checkpoint, on the apply thread) touches
//! it. Its rows are written in the checkpoint's synced batch with the applied index, never
//! between checkpoints, so that after a crash the rows are the state as of the index the log
//! is replayed from (see `agg::state`).
//!
//! Rules run in a fixed order, the same on every replica and after every restart (the order
//! of their outputs decides the ids of new series): the meetings pack's in its order, then
//! the users' by name.
//!
//! Keys: a user rule's definition at `0, name`; a rule's meta row at `len, name, 0`, its window
//! state rows at `len, name, 1, row`, and a sample rule's last sample per input series at
//! `len, name, 2, series key` (a name is never empty, so definitions and state never meet).

use std::sync::Arc;

use collabstream_proto::v1;
use prost::Message;
use rocksdb::{ColumnFamily, IteratorMode, WriteBatch};
use rustc_hash::FxHashSet;

use crate::agg::panes::Group;
use crate::agg::sample_rule::{SeriesLast, series_key};
use crate::agg::state::{RowSink, time_bound};
use crate::agg::{ColdRows, Emission, EmissionKind, Rule, meetings, rule_proto};
use crate::agg_engine::Engine;
pub use crate::agg_engine::RuleStats;
use crate::db::{CF_AGG, Rocks};
use crate::error::{Error, Result};
use crate::store::cf;

mod events;

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

#[derive(Debug)]
struct Running {
    rule: Rule,
    engine: Engine,
    counts: Counts,
    /// The user's definition; `None` for a pack's rule.
    def: Option<v1::AggregationRule>,
    /// A sample rule's input series (empty for an event rule).
    last: SeriesLast,
    /// The key prefix of the rule's window rows (see [`RuleRows`]), made once.
    rows_prefix: Vec<u8>,
    /// What an event costs the rule here, in nanoseconds, as measured over the last writes:
    /// how apply shares the rules out among its threads (see `events`). This node's own
    /// figure, which decides nothing else.
    ns_per_event: u32,
}

/// What a rule change did: the API's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleOutcome {
    Changed,
    /// The rule already ran as defined, or was not there to delete.
    Unchanged,
    /// Refused, and why (the same on every replica).
    Refused(String),
}

/// The rules in force and their state.
#[derive(Debug, Default)]
pub(crate) struct Aggregations {
    running: Vec<Running>,
    /// Rules dropped since the last checkpoint, whose rows it deletes.
    dropped: Vec<String>,
    /// Definitions created (`Some`) and deleted since the last checkpoint, in order.
    defs: Vec<(String, Option<Vec<u8>>)>,
    /// Whether any rule over samples runs (apply looks at samples only then).
    samples: bool,
    /// Rules dropped by the entry being applied, whose rows it deletes.
    dropped_rows: Vec<String>,
    /// Event groups' keys, each held once for every rule that names it (the pack's six rules
    /// all group by meeting): an event's group is looked up once, not once a rule. Only looked
    /// up, never iterated for a result; keys no rule holds any more go at each checkpoint.
    groups: FxHashSet<Group>,
}

/// Emissions of one rule, by its position among those running.
pub(crate) type Emitted = Vec<(usize, Emission)>;

/// A rule's state rows on their way into the checkpoint's batch (the `agg` column family),
/// each key prefixed with the rule's name and the tag in one buffer, no row copied. A range
/// is deleted before the rows written after it, as a RocksDB batch applies its operations
/// in order.
struct PrefixedRows<'a> {
    batch: &'a mut WriteBatch,
    cf: &'a ColumnFamily,
    key: Vec<u8>,
    prefix: usize,
}

impl<'a> PrefixedRows<'a> {
    fn new(batch: &'a mut WriteBatch, cf: &'a ColumnFamily, prefix: Vec<u8>) -> Self {
        Self { batch, cf, prefix: prefix.len(), key: prefix }
    }
}

impl RowSink for PrefixedRows<'_> {
    fn delete_before(&mut self, time: i64) {
        self.key.truncate(self.prefix);
        let from = self.key.clone();
        self.key.extend_from_slice(&time_bound(time));
        self.batch.delete_range_cf(self.cf, from.as_slice(), self.key.as_slice());
    }

    fn row(&mut self, key: &[u8], value: Option<&[u8]>) {
        self.key.truncate(self.prefix);
        self.key.extend_from_slice(key);
        match value {
            Some(v) => self.batch.put_cf(self.cf, &self.key, v),
            None => self.batch.delete_cf(self.cf, &self.key),
        }
    }
}

/// A rule's rows: its name, then 0 for its meta row, or a tag and a state row's key.
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

/// A state row: `tag` 1 for the windows', 2 for a sample rule's input series.
fn row_key(rule: &str, tag: u8, row: &[u8]) -> Vec<u8> {
    let mut k = prefix(rule);
    k.push(tag);
    k.extend_from_slice(row);
    k
}

fn def_key(rule: &str) -> Vec<u8> {
    let mut k = vec![0];
    k.extend_from_slice(rule.as_bytes());
    k
}

/// A rule's window rows as the last checkpoint wrote them, for the panes its engine let go of
/// from memory.
struct RuleRows<'a> {
    db: &'a Rocks,
    prefix: &'a [u8],
}

impl ColdRows for RuleRows<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let mut k = Vec::with_capacity(self.prefix.len() + key.len());
        k.extend_from_slice(self.prefix);
        k.extend_from_slice(key);
        Ok(self.db.get_cf(cf(self.db, CF_AGG), k)?)
    }
}

/// A rule's engine and input series with the state the database holds for them, or new ones.
fn restore(db: &Rocks, rule: &Rule) -> Result<(Engine, SeriesLast)> {
    let p = prefix(rule.name());
    let mut meta = None;
    let mut rows = Vec::new();
    let mut series = Vec::new();
    for item in db.iterator_cf(cf(db, CF_AGG), IteratorMode::From(&p, rocksdb::Direction::Forward)) {
        let (k, v) = item?;
        let Some(rest) = k.strip_prefix(p.as_slice()) else { break };
        match rest.split_first() {
            Some((0, [])) => meta = Some(v),
            Some((1, row)) => rows.push((row.to_vec(), v)),
            Some((2, key)) => series.push((key.to_vec(), v)),
            _ => return Err(Error::Corrupt { what: "aggregation key" }),
        }
    }
    let window = rule.window();
    let engine = match meta {
        Some(meta) => Engine::restore(window, &meta, rows.iter().map(|(k, v)| (k.as_slice(), &v[..])))?,
        None => Engine::new(window),
    };
    Ok((engine, SeriesLast::restore(series.iter().map(|(k, v)| (k.as_slice(), &v[..])))?))
}

impl Running {
    fn new(rule: Rule, (engine, last): (Engine, SeriesLast), def: Option<v1::AggregationRule>) -> Self {
        let rows_prefix = row_key(rule.name(), 1, &[]);
        let ns_per_event = events::first_guess(&rule);
        Running { rule, engine, counts: Counts::default(), def, last, rows_prefix, ns_per_event }
    }

    fn fresh(rule: Rule, def: Option<v1::AggregationRule>) -> Self {
        let engine = Engine::new(rule.window());
        Running::new(rule, (engine, SeriesLast::default()), def)
    }
}

impl Aggregations {
    /// The rules in force (the meetings pack per `meetings_pack`, and the users'), with the
    /// state the database holds for them.
    pub(crate) fn load(db: &Rocks, meetings_pack: bool) -> Result<Self> {
        let mut aggs = Aggregations::default();
        if meetings_pack {
            for rule in meetings::rules().into_iter().map(Rule::Events) {
                let state = restore(db, &rule)?;
                aggs.running.push(Running::new(rule, state, None));
            }
        }
        for item in db.iterator_cf(cf(db, CF_AGG), IteratorMode::From(&[0], rocksdb::Direction::Forward)) {
            let (k, v) = item?;
            if k.first() != Some(&0) {
                break;
            }
            let corrupt = |_| Error::Corrupt { what: "aggregation rule definition" };
            let def = v1::AggregationRule::decode(&v[..]).map_err(|e| corrupt(e.to_string()))?;
            // Accepted once, so not checked against today's settings again.
            let rule = rule_proto::rule(&def, i64::MAX).map_err(corrupt)?;
            let state = restore(db, &rule)?;
            aggs.running.push(Running::new(rule, state, Some(def)));
        }
        aggs.samples = aggs.running.iter().any(|r| matches!(r.rule, Rule::Samples(_)));
        Ok(aggs)
    }

    /// Turns the meetings pack on or off, from a settings entry.
    pub(crate) fn set_meetings_pack(&mut self, on: bool) {
        let running = self.running.iter().any(|r| r.def.is_none());
        if on && !running {
            let pack = meetings::rules().into_iter().map(|r| Running::fresh(Rule::Events(r), None));
            self.running.splice(0..0, pack);
            // Rules dropped and started again since the last checkpoint keep their place in
            // `dropped`: their old rows are deleted before the new ones are written (the
            // checkpoint's batch deletes first), so a restart never reads the two mixed.
        } else if !on && running {
            let (pack, users): (Vec<_>, Vec<_>) = self.running.drain(..).partition(|r| r.def.is_none());
            let names: Vec<String> = pack.into_iter().map(|r| r.rule.name().to_string()).collect();
            self.dropped_rows.extend(names.iter().cloned());
            self.dropped.extend(names);
            self.running = users;
        }
    }

    /// A rule change from the log, checked as [`rule_proto::rule`] does, with the
    /// store's out-of-order window as the longest allowed lateness.
    pub(crate) fn change(&mut self, change: &v1::RuleChange, out_of_order_window_ms: i64) -> RuleOutcome {
        match &change.change {
            Some(v1::rule_change::Change::Create(def)) => self.create(def, out_of_order_window_ms),
            Some(v1::rule_change::Change::Delete(name)) => self.delete(name),
            None => RuleOutcome::Refused("the rule change is empty".into()),
        }
    }

    fn create(&mut self, def: &v1::AggregationRule, out_of_order_window_ms: i64) -> RuleOutcome {
        if let Some(r) = self.running.iter().find(|r| r.rule.name() == def.name) {
            return match &r.def {
                Some(d) if d == def => RuleOutcome::Unchanged,
                Some(_) => RuleOutcome::Refused(format!(
                    "a rule named {} runs with another definition; delete it first",
                    def.name
                )),
                None => RuleOutcome::Refused(format!("{} is a rule of the meetings pack", def.name)),
            };
        }
        let rule = match rule_proto::rule(def, out_of_order_window_ms) {
            Ok(r) => r,
            Err(e) => return RuleOutcome::Refused(e),
        };
        let at = self
            .running
            .iter()
            .position(|r| r.def.is_some() && r.rule.name() > def.name.as_str())
            .unwrap_or(self.running.len());
        self.samples |= matches!(rule, Rule::Samples(_));
        self.running.insert(at, Running::fresh(rule, Some(def.clone())));
        self.defs.push((def.name.clone(), Some(def.encode_to_vec())));
        RuleOutcome::Changed
    }

    fn delete(&mut self, name: &str) -> RuleOutcome {
        let Some(at) = self.running.iter().position(|r| r.rule.name() == name) else {
            return RuleOutcome::Unchanged;
        };
        if self.running[at].def.is_none() {
            return RuleOutcome::Refused(format!(
                "{name} is a rule of the meetings pack; turn the pack off with store.meetings_pack = false"
            ));
        }
        self.running.remove(at);
        self.samples = self.running.iter().any(|r| matches!(r.rule, Rule::Samples(_)));
        self.dropped.push(name.to_string());
        self.dropped_rows.push(name.to_string());
        self.defs.push((name.to_string(), None));
        RuleOutcome::Changed
    }

    /// The rules dropped since the last call, whose rows the entry deletes.
    pub(crate) fn take_dropped_rows(&mut self) -> Vec<String> {
        std::mem::take(&mut self.dropped_rows)
    }

    /// The rule running under `name`, if any.
    pub(crate) fn rule_named(&self, name: &str) -> Option<&Rule> {
        self.running.iter().map(|r| &r.rule).find(|r| r.name() == name)
    }

    /// Every rule running, in order.
    pub(crate) fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.running.iter().map(|r| &r.rule)
    }

    /// The users' rules in force, by name, and the names of the packs' rules.
    pub(crate) fn definitions(&self) -> (Vec<v1::AggregationRule>, Vec<String>) {
        let users = self.running.iter().filter_map(|r| r.def.clone()).collect();
        let pack =
            self.running.iter().filter(|r| r.def.is_none()).map(|r| r.rule.name().to_string()).collect();
        (users, pack)
    }

    pub(crate) fn stats(&self) -> Vec<RuleStats> {
        self.running
            .iter()
            .map(|r| RuleStats {
                events: r.counts.events,
                emitted: r.counts.emitted,
                corrections: r.counts.corrections,
                samples_ignored: r.last.ignored,
                input_series: r.last.len(),
                ..r.engine.stats(r.rule.name())
            })
            .map(|mut s| {
                // A series' row: its 8-byte key, a timestamp and a value.
                s.state_bytes += s.input_series as u64 * 24;
                s
            })
            .collect()
    }

    pub(crate) fn rule(&self, i: usize) -> Option<&Rule> {
        self.running.get(i).map(|r| &r.rule)
    }

    /// Whether any rule over samples runs.
    pub(crate) fn takes_samples(&self) -> bool {
        self.samples
    }

    /// The samples of one series (labels sorted by name), in an entry stamped `clock`: each
    /// rule whose selector matches takes them. Whether they are to be stored too (no matching
    /// rule has `keep_input = false`).
    pub(crate) fn observe_samples(
        &mut self,
        db: &Rocks,
        clock: i64,
        labels: &[(&str, &str)],
        samples: &[(i64, f64)],
        out: &mut Emitted,
    ) -> Result<bool> {
        let mut keep = true;
        let mut key = None;
        let mut emitted = Vec::new();
        for (i, r) in self.running.iter_mut().enumerate() {
            let Rule::Samples(rule) = &r.rule else { continue };
            if !rule.matches(labels) {
                continue;
            }
            keep &= rule.keep_input;
            let key = *key.get_or_insert_with(|| series_key(labels));
            let group = rule.group(labels);
            let cold = RuleRows { db, prefix: &r.rows_prefix };
            for (ts, value) in samples {
                if let Some(o) = r.last.observe(key, *ts, *value) {
                    r.engine.observe(clock, &group, &o, &cold, &mut emitted)?;
                    r.counts.events += 1;
                    r.counts.count(&emitted);
                    out.extend(emitted.drain(..).map(|x| (i, x)));
                }
            }
        }
        Ok(keep)
    }

    /// The end of a log entry: every rule emits the corrections its late events made.
    pub(crate) fn flush(&mut self, db: &Rocks, out: &mut Emitted) -> Result<()> {
        let mut emitted = Vec::new();
        for (i, r) in self.running.iter_mut().enumerate() {
            r.engine.flush(&RuleRows { db, prefix: &r.rows_prefix }, &mut emitted)?;
            r.counts.count(&emitted);
            out.extend(emitted.drain(..).map(|x| (i, x)));
        }
        Ok(())
    }

    /// A tick of the leader's clock.
    pub(crate) fn tick(&mut self, db: &Rocks, clock: i64, out: &mut Emitted) -> Result<()> {
        let mut emitted = Vec::new();
        for (i, r) in self.running.iter_mut().enumerate() {
            r.engine.tick(clock, &RuleRows { db, prefix: &r.rows_prefix }, &mut emitted)?;
            r.counts.count(&emitted);
            out.extend(emitted.drain(..).map(|x| (i, x)));
        }
        Ok(())
    }

    /// Lets go of the oldest window panes from memory beyond `keep` over all rules, each rule
    /// keeping a share of `keep` as large as its share of the panes held: right after a
    /// checkpoint wrote them, so that they are read back from their rows.
    pub(crate) fn evict(&mut self, keep: usize) {
        let held = self.hot_keys();
        if held <= keep {
            return;
        }
        for r in &mut self.running {
            let share = (keep as u128 * r.engine.evictable_keys() as u128 / held as u128) as usize;
            r.engine.evict(share);
        }
    }

    /// Window panes held in memory, over all rules.
    pub(crate) fn hot_keys(&self) -> usize {
        self.running.iter().map(|r| r.engine.evictable_keys()).sum()
    }

    /// Writes what changed since the last call into the checkpoint's `batch`, in the `agg`
    /// column family `cf`: dropped rules' ranges, rule definitions, then each rule's meta row
    /// and state rows.
    pub(crate) fn write_changes(&mut self, batch: &mut WriteBatch, cf: &ColumnFamily) {
        // Keys no rule's pane, window or session names any more (the set's own is the last).
        self.groups.retain(|g| Arc::strong_count(g) > 1);
        for name in self.dropped.drain(..) {
            let mut end = prefix(&name);
            end.push(3);
            batch.delete_range_cf(cf, prefix(&name), end);
        }
        for (name, def) in self.defs.drain(..) {
            match def {
                Some(def) => batch.put_cf(cf, def_key(&name), def),
                None => batch.delete_cf(cf, def_key(&name)),
            }
        }
        for r in &mut self.running {
            let name = r.rule.name();
            let meta = r.engine.write_changes(&mut PrefixedRows::new(batch, cf, row_key(name, 1, &[])));
            batch.put_cf(cf, meta_key(name), meta);
            let mut last = PrefixedRows::new(batch, cf, row_key(name, 2, &[]));
            for (k, v) in r.last.take_changes() {
                last.row(&k, v.as_deref());
            }
        }
    }
}
