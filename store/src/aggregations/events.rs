//! The events of one write through every event rule, the rules shared out among threads.
//!
//! Rules are independent of each other: a rule's state is a function of the events it saw, in
//! order, and nothing else. So each rule takes the whole write on one thread, rule after rule,
//! and apply uses as many threads as the node gives it. What two rules do share is decided
//! before they start, on the apply thread: every event's group key, interned once for all
//! rules that group alike. Their emissions are then put back in the order one thread taking
//! the write event by event would have made them (by event, then by rule, each rule's own in
//! its order), because that order decides the ids of new output series, which every replica
//! must assign alike whatever its thread count.

use collabstream_proto::v1;
use collabstream_proto::v1::event::Event;

use super::{Aggregations, Emitted, RuleRows, Running};
use crate::agg::panes::{Group, intern};
use crate::agg::{Emission, EventField, Observation, Rule};
use crate::db::Rocks;
use crate::error::Result;

/// Fewer events than this are taken on the apply thread alone: a thread costs tens of
/// microseconds to start, a rule an event about one.
const EVENTS_FOR_THREADS: usize = 256;

/// An emission with the event (its position among those taken) and the rule (its position
/// among those running) that made it.
type Tagged = (u32, u32, Emission);

/// One rule's share of the work: its position, the column of group keys it reads, itself.
type Job<'a> = (usize, usize, &'a mut Running);

impl Aggregations {
    /// The events of one write with their times, in order, in an entry stamped `clock` by the
    /// leader, on up to `threads` threads (this node's own choice: the emissions are the same
    /// for any count).
    pub(crate) fn observe_events(
        &mut self,
        db: &Rocks,
        clock: i64,
        events: &[(v1::Event, i64)],
        threads: usize,
        out: &mut Emitted,
    ) -> Result<()> {
        let taken: Vec<(&Event, i64)> =
            events.iter().filter_map(|(e, ts)| Some((e.event.as_ref()?, *ts))).collect();
        if taken.is_empty() {
            return Ok(());
        }
        // Each distinct `group_by` among the rules, and every event's key under it.
        let mut fields: Vec<Vec<EventField>> = Vec::new();
        let mut jobs: Vec<(usize, usize, usize)> = Vec::new();
        for (i, r) in self.running.iter().enumerate() {
            let Rule::Events(rule) = &r.rule else { continue };
            let column = match fields.iter().position(|f| *f == rule.group_by) {
                Some(c) => c,
                None => {
                    fields.push(rule.group_by.clone());
                    fields.len() - 1
                }
            };
            jobs.push((i, column, r.ns_per_event as usize));
        }
        let columns: Vec<Vec<Group>> = fields.iter().map(|f| self.keys(f, &taken)).collect();
        let parts = if taken.len() < EVENTS_FOR_THREADS { 1 } else { threads.clamp(1, jobs.len().max(1)) };
        let shares = share_out(&mut self.running, &jobs, parts);
        // One share runs here; each other one on a thread of its own.
        let (taken, columns) = (&taken, &columns);
        let results: Vec<Result<Vec<Tagged>>> = std::thread::scope(|s| {
            let mut shares = shares.into_iter();
            let mut first = shares.next().unwrap_or_default();
            let others: Vec<_> = shares
                .map(|mut share| s.spawn(move || run_rules(&mut share, db, clock, taken, columns)))
                .collect();
            let mut results = vec![run_rules(&mut first, db, clock, taken, columns)];
            for h in others {
                results.push(h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
            }
            results
        });
        let mut tagged = Vec::new();
        for r in results {
            tagged.extend(r?);
        }
        // Stable: a rule's emissions for one event keep their order.
        tagged.sort_by_key(|(event, rule, _)| (*event, *rule));
        out.extend(tagged.into_iter().map(|(_, rule, e)| (rule as usize, e)));
        Ok(())
    }

    /// Every event's group key under `fields`, held once in the shared set.
    fn keys(&mut self, fields: &[EventField], taken: &[(&Event, i64)]) -> Vec<Group> {
        let mut key = Vec::new();
        taken
            .iter()
            .map(|(event, _)| {
                key.clear();
                crate::agg::group_key(fields, event, &mut key);
                intern(&mut self.groups, &key)
            })
            .collect()
    }
}

/// What an event costs `rule` before any was measured, in nanoseconds: a distinct count (a
/// sorted set's search and insert) three times a count or a sum, 100 ns each (the pack's
/// one-measure rules took 70-80 ns an event of the agg_apply bench). Only the first write
/// is shared out by it; the rules' measured costs take over from there.
pub(super) fn first_guess(rule: &Rule) -> u32 {
    let Rule::Events(rule) = rule else { return 0 };
    let weight: u32 = rule.measures.iter().map(|m| if m.distinct.is_some() { 3 } else { 1 }).sum();
    weight.max(1) * 100
}

/// `ns_per_event` after a write of `events` events that took the rule `elapsed`: an average
/// over about the last eight writes, so one slow write (a page fault storm, a preempted
/// thread) moves the sharing little.
fn measured(ns_per_event: u32, elapsed: std::time::Duration, events: usize) -> u32 {
    let now = (elapsed.as_nanos() / events.max(1) as u128).min(u128::from(u32::MAX)) as u64;
    ((u64::from(ns_per_event) * 7 + now) / 8) as u32
}

/// The rules of `jobs` in `parts` shares of about equal cost (dearest first, each to the
/// cheapest share so far), each share in rule order.
fn share_out<'a>(
    running: &'a mut [Running],
    jobs: &[(usize, usize, usize)],
    parts: usize,
) -> Vec<Vec<Job<'a>>> {
    let parts = parts.max(1);
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&j| (std::cmp::Reverse(jobs[j].2), j));
    let mut load = vec![0usize; parts];
    let mut part_of = vec![0usize; jobs.len()];
    for j in order {
        let lightest = (0..parts).min_by_key(|&p| (load[p], p)).unwrap_or(0);
        load[lightest] += jobs[j].2;
        part_of[j] = lightest;
    }
    let mut shares: Vec<Vec<Job<'a>>> = (0..parts).map(|_| Vec::new()).collect();
    let mut next = 0;
    for (i, r) in running.iter_mut().enumerate() {
        if jobs.get(next).is_some_and(|j| j.0 == i) {
            shares[part_of[next]].push((i, jobs[next].1, r));
            next += 1;
        }
    }
    shares.retain(|s| !s.is_empty());
    shares
}

/// Each rule of `share` over every event, in order.
fn run_rules(
    share: &mut [Job<'_>],
    db: &Rocks,
    clock: i64,
    taken: &[(&Event, i64)],
    columns: &[Vec<Group>],
) -> Result<Vec<Tagged>> {
    let mut o = Observation::default();
    let mut emitted = Vec::new();
    let mut out = Vec::new();
    for (i, column, r) in share.iter_mut() {
        let Rule::Events(rule) = &r.rule else { continue };
        let cold = RuleRows { db, prefix: &r.rows_prefix };
        let keys = &columns[*column];
        let started = std::time::Instant::now();
        for (j, (event, ts)) in taken.iter().enumerate() {
            o.ts = *ts;
            o.inputs.clear();
            rule.inputs(event, &mut o.inputs);
            // An event no measure takes only tells the time.
            let group = (!o.inputs.is_empty()).then(|| &keys[j]);
            r.engine.observe_group(clock, group, &o, &cold, &mut emitted)?;
            r.counts.events += 1;
            r.counts.count(&emitted);
            out.extend(emitted.drain(..).map(|e| (j as u32, *i as u32, e)));
        }
        r.ns_per_event = measured(r.ns_per_event, started.elapsed(), taken.len());
    }
    Ok(out)
}
