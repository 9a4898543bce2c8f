//! [`Sessions`] against a slow reference: sessions kept as lists of events, merged by scanning.

use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::agg::distinct::hash;
use crate::agg::windows_tests::{Seen, Step, check_window, clock, count, rule, steps};
use crate::agg::{Emission, EmissionKind, Observation, Sessions, WindowKind, WindowRule};

/// What a reader of the output series sees in the end: (group, end) → the emission there.
fn published(emitted: &[Emission]) -> BTreeMap<(u8, i64), &Emission> {
    let mut seen = BTreeMap::new();
    for e in emitted {
        match e.kind {
            EmissionKind::Retraction => {
                seen.remove(&(e.group[0], e.end));
            }
            _ => {
                seen.insert((e.group[0], e.end), e);
            }
        }
    }
    seen
}

struct RefSession {
    group: u8,
    events: Vec<Seen>,
    alive: bool,
    emitted: bool,
}

impl RefSession {
    fn first(&self) -> i64 {
        self.events.iter().map(|e| e.0).min().unwrap_or(i64::MAX)
    }
    fn end(&self, gap: i64) -> i64 {
        self.events.iter().map(|e| e.0).max().unwrap_or(i64::MIN) + gap
    }
}

/// The published windows and the dropped count, computed by scanning every session each step.
fn reference(r: &WindowRule, steps: &[Step]) -> (BTreeMap<(u8, i64), Vec<Seen>>, u64, i64) {
    let gap = r.window.size_ms();
    let (mut wm, mut newest_clock, mut dropped) = (i64::MIN, None, 0);
    let mut sessions: Vec<RefSession> = Vec::new();
    let mut published: BTreeMap<(u8, i64), Vec<Seen>> = BTreeMap::new();
    for (i, s) in steps.iter().enumerate() {
        match s {
            Step::Event { ts, group, value, user } => {
                newest_clock = Some(clock(i));
                let (touched, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut sessions)
                    .into_iter()
                    .partition(|s| s.alive && s.group == *group && s.first() < ts + gap && s.end(gap) > *ts);
                sessions = rest;
                if touched.is_empty() && ts + gap + r.allowed_lateness_ms <= wm {
                    dropped += 1;
                    continue;
                }
                let mut touched = touched;
                touched.sort_by_key(RefSession::first);
                let mut merged =
                    RefSession { group: *group, events: Vec::new(), alive: true, emitted: false };
                for t in &touched {
                    if t.emitted {
                        published.remove(&(t.group, t.end(gap)));
                    }
                    merged.events.extend(t.events.iter().copied());
                }
                merged.events.push((*ts, *value, *user));
                if merged.end(gap) <= wm {
                    merged.emitted = true;
                    published.insert((*group, merged.end(gap)), merged.events.clone());
                }
                sessions.push(merged);
                wm = wm.max(ts - r.max_out_of_orderness_ms);
            }
            Step::Tick => {
                if newest_clock.is_some_and(|c| clock(i) - c >= r.idle_timeout_ms) {
                    wm = wm.max(clock(i) - r.max_out_of_orderness_ms);
                }
            }
        }
        for s in sessions.iter_mut().filter(|s| s.alive) {
            if !s.emitted && s.end(gap) <= wm {
                s.emitted = true;
                published.insert((s.group, s.end(gap)), s.events.clone());
            }
            if s.end(gap) + r.allowed_lateness_ms <= wm {
                s.alive = false;
            }
        }
    }
    (published, dropped, wm)
}

fn run(r: &WindowRule, steps: &[Step]) -> (Sessions, Vec<Emission>) {
    let mut s = Sessions::new(r.clone());
    let mut out = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        match step {
            Step::Event { ts, group, value, user } => {
                let o = Observation::single(*ts, *value, Some(hash(&[*user])));
                s.observe(clock(i), &[*group], &o, &mut out);
            }
            Step::Tick => s.tick(clock(i), &mut out),
        }
    }
    (s, out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn session_windows_match_the_reference(steps in steps(), gap in 500i64..4_000) {
        let r = rule(WindowKind::Session { gap_ms: gap });
        let (s, emitted) = run(&r, &steps);
        let (want, dropped, wm) = reference(&r, &steps);
        prop_assert_eq!(s.watermark(), wm);
        prop_assert_eq!(s.late_dropped(), dropped);
        let got = published(&emitted);
        prop_assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
        for (key, e) in got {
            prop_assert!(e.end <= wm);
            check_window(&r, e, &want[&key])?;
        }
    }
}

#[test]
fn a_late_event_that_joins_two_sessions_withdraws_both_and_emits_one() {
    let r = WindowRule { outputs: vec![count()], ..rule(WindowKind::Session { gap_ms: 1_000 }) };
    let mut s = Sessions::new(r);
    let event = |ts| Observation::single(ts, Some(1.0), None);
    let mut out = Vec::new();
    for ts in [10_000, 10_500, 12_000, 20_000] {
        s.observe(0, b"g", &event(ts), &mut out);
    }
    // Watermark 18 s: the sessions [10, 11.5) and [12, 13) are out.
    let summary =
        |out: &[Emission]| out.iter().map(|e| (e.kind, e.start, e.end, e.values[0])).collect::<Vec<_>>();
    assert_eq!(
        summary(&out),
        [(EmissionKind::First, 10_000, 11_500, Some(2.0)), (EmissionKind::First, 12_000, 13_000, Some(1.0))]
    );
    out.clear();
    // 11.2 s is within the gap of both: one session [10, 13) of four events replaces them.
    s.observe(0, b"g", &event(11_200), &mut out);
    assert_eq!(
        summary(&out),
        [
            (EmissionKind::Retraction, 10_000, 11_500, None),
            (EmissionKind::Correction, 10_000, 13_000, Some(4.0))
        ]
    );
    assert_eq!(s.open_sessions(), 2);
}

#[test]
fn a_late_event_into_a_session_ending_at_the_watermark_corrects_it_at_once() {
    let r = WindowRule { outputs: vec![count()], ..rule(WindowKind::Session { gap_ms: 1_000 }) };
    let mut s = Sessions::new(r);
    let event = |ts| Observation::single(ts, None, None);
    let mut out = Vec::new();
    s.observe(0, b"g", &event(10_000), &mut out);
    s.observe(0, b"g", &event(13_000), &mut out);
    // Watermark 11 s, exactly the end of [10 s, 11 s): emitted.
    assert_eq!(out.iter().map(|e| (e.kind, e.end)).collect::<Vec<_>>(), [(EmissionKind::First, 11_000)]);
    out.clear();
    // A late event inside it keeps the end: the same timestamp, corrected, nothing withdrawn.
    s.observe(0, b"g", &event(9_500), &mut out);
    assert_eq!(
        out.iter().map(|e| (e.kind, e.start, e.end, e.values[0])).collect::<Vec<_>>(),
        [(EmissionKind::Correction, 9_500, 11_000, Some(2.0))]
    );
}
