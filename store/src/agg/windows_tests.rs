//! [`Windows`] against a brute-force reference computed from the same stream.

use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::agg::distinct::hash;
use crate::agg::{
    Emission, EmissionKind, Formula, NoColdRows, Observation, Output, WindowKind, WindowRule, Windows,
};

/// One step of a stream: an event or a tick of the leader's clock.
#[derive(Debug, Clone)]
pub(super) enum Step {
    Event { ts: i64, group: u8, value: Option<f64>, user: u8 },
    Tick,
}

const OUTPUTS: [Output; 9] = [
    Output::Count,
    Output::Sum,
    Output::Avg,
    Output::Min,
    Output::Max,
    Output::Last,
    Output::Rate,
    Output::Distinct,
    Output::Quantile(0.9),
];

/// The count of measure 0.
pub(super) fn count() -> Formula {
    Formula::Of { measure: 0, output: Output::Count }
}

pub(super) fn rule(window: WindowKind) -> WindowRule {
    WindowRule {
        window,
        outputs: OUTPUTS.iter().map(|o| Formula::Of { measure: 0, output: *o }).collect(),
        max_out_of_orderness_ms: 2_000,
        allowed_lateness_ms: 10_000,
        idle_timeout_ms: 3_000,
        distinct_threshold: 8,
    }
}

/// Events drift forward with jitter (out of order) and now and then far back (late); each
/// step moves the clock a second.
pub(super) fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        8 => (0i64..4_000, -6_000i64..3_000, 0u8..3, proptest::option::of(-50.0f64..50.0), 0u8..12)
            .prop_map(|(advance, jitter, group, value, user)| (advance, Step::Event { ts: jitter, group, value, user })),
        1 => (0i64..1, Just(Step::Tick)).prop_map(|(a, s)| (a, s)),
        1 => (0i64..1, -40_000i64..-15_000, 0u8..3, 0u8..12)
            .prop_map(|(a, jitter, group, user)| (a, Step::Event { ts: jitter, group, value: Some(1.0), user })),
    ];
    proptest::collection::vec(step, 1..250).prop_map(|v| {
        let mut base = 100_000;
        v.into_iter()
            .map(|(advance, s)| {
                base += advance;
                match s {
                    Step::Event { ts, group, value, user } => {
                        Step::Event { ts: base + ts, group, value, user }
                    }
                    Step::Tick => Step::Tick,
                }
            })
            .collect()
    })
}

/// The clock of step `i`: a second a step, starting where event times start.
pub(super) fn clock(i: usize) -> i64 {
    100_000 + i as i64 * 1_000
}

pub(super) fn run(r: &WindowRule, steps: &[Step]) -> (Windows, Vec<Emission>) {
    let mut w = Windows::new(r.clone());
    let mut out = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        match s {
            Step::Event { ts, group, value, user } => {
                let o = Observation::single(*ts, *value, Some(hash(&[*user])));
                w.observe(clock(i), &[*group], &o, &NoColdRows, &mut out).unwrap();
            }
            Step::Tick => w.tick(clock(i), &NoColdRows, &mut out).unwrap(),
        }
        // Each step an entry of its own.
        w.flush_corrections(&NoColdRows, &mut out).unwrap();
    }
    (w, out)
}

/// What every window should finally say, and how many events are dropped, computed the
/// slow way: replay the watermark, then aggregate each window from the events that arrived
/// while it could still take them.
/// An event as the reference keeps it: event time, value, user.
pub(super) type Seen = (i64, Option<f64>, u8);

struct Reference {
    /// (end, group) → the events it finally holds, in log order.
    windows: BTreeMap<(i64, u8), Vec<Seen>>,
    dropped: u64,
    watermark: i64,
}

fn reference(r: &WindowRule, steps: &[Step]) -> Reference {
    let (size, pane) = (r.window.size_ms(), r.window.pane_ms());
    let (mut wm, mut newest_clock, mut dropped) = (i64::MIN, None, 0);
    let mut windows: BTreeMap<(i64, u8), Vec<_>> = BTreeMap::new();
    for (i, s) in steps.iter().enumerate() {
        match s {
            Step::Event { ts, group, value, user } => {
                newest_clock = Some(clock(i));
                let first_end = ts.div_euclid(pane) * pane + pane;
                let last_end = ts.div_euclid(pane) * pane + size;
                if last_end + r.allowed_lateness_ms <= wm {
                    dropped += 1;
                    continue;
                }
                let mut end = first_end;
                while end <= last_end {
                    if end + r.allowed_lateness_ms > wm {
                        windows.entry((end, *group)).or_default().push((*ts, *value, *user));
                    }
                    end += pane;
                }
                wm = wm.max(ts - r.max_out_of_orderness_ms);
            }
            Step::Tick => {
                if newest_clock.is_some_and(|c| clock(i) - c >= r.idle_timeout_ms) {
                    wm = wm.max(clock(i) - r.max_out_of_orderness_ms);
                }
            }
        }
    }
    Reference { windows, dropped, watermark: wm }
}

pub(super) fn check_window(r: &WindowRule, got: &Emission, events: &[Seen]) -> Result<(), TestCaseError> {
    let values: Vec<f64> = events.iter().filter_map(|e| e.1).filter(|v| !v.is_nan()).collect();
    let users: std::collections::BTreeSet<u8> = events.iter().map(|e| e.2).collect();
    let last = events.iter().filter(|e| e.1.is_some()).fold(None, |acc: Option<(i64, f64)>, e| match acc {
        Some((t, _)) if e.0 < t => acc,
        _ => e.1.map(|v| (e.0, v)),
    });
    let n = values.len();
    let mut sorted = values.clone();
    sorted.sort_by(f64::total_cmp);
    let sum: f64 = values.iter().sum();
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0);
    for (f, v) in r.outputs.iter().zip(&got.values) {
        let Formula::Of { output: o, .. } = f else { panic!("the tests' rules read one measure") };
        let ok = match (o, v) {
            (Output::Count, Some(v)) => *v == events.len() as f64,
            (Output::Sum, Some(v)) => close(*v, sum),
            (Output::Avg, v) => match v {
                Some(v) => n > 0 && close(*v, sum / n as f64),
                None => n == 0,
            },
            (Output::Min, v) => *v == sorted.first().copied(),
            (Output::Max, v) => *v == sorted.last().copied(),
            (Output::Last, v) => *v == last.map(|l| l.1),
            (Output::Rate, Some(v)) => close(*v, events.len() as f64 * 1000.0 / (got.end - got.start) as f64),
            // Distinct is exact up to the threshold and within 4 standard errors past it.
            (Output::Distinct, Some(v)) => {
                let want = users.len() as f64;
                if users.len() <= r.distinct_threshold {
                    *v == want
                } else {
                    (v - want).abs() <= 4.0 * 0.0163 * want + 1.0
                }
            }
            (Output::Quantile(q), v) => match v {
                Some(v) => {
                    let want = sorted[(q * (n - 1) as f64) as usize];
                    (v - want).abs() <= 0.0101 * want.abs() + 1e-9
                }
                None => n == 0,
            },
            _ => false,
        };
        prop_assert!(
            ok,
            "window ({}, {:?}) output {:?}: got {:?} from {:?}",
            got.end,
            got.group,
            o,
            v,
            events
        );
    }
    Ok(())
}

fn check(window: WindowKind, steps: &[Step]) -> Result<(), TestCaseError> {
    let r = rule(window);
    let (w, emitted) = run(&r, steps);
    let want = reference(&r, steps);
    prop_assert_eq!(w.watermark(), want.watermark);
    prop_assert_eq!(w.late_dropped(), want.dropped);
    // The last emission of each window is its final value.
    let mut last: BTreeMap<(i64, u8), &Emission> = BTreeMap::new();
    for e in &emitted {
        prop_assert!(e.end <= w.watermark(), "window {} emitted before the watermark reached it", e.end);
        last.insert((e.end, e.group[0]), e);
    }
    let due: Vec<_> = want.windows.keys().filter(|(end, _)| *end <= want.watermark).copied().collect();
    prop_assert_eq!(last.keys().copied().collect::<Vec<_>>(), due);
    for (key, e) in last {
        check_window(&r, e, &want.windows[&key])?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn tumbling_windows_match_the_reference(steps in steps()) {
        check(WindowKind::Tumbling { size_ms: 5_000 }, &steps)?;
    }

    #[test]
    fn sliding_windows_match_the_reference(steps in steps()) {
        check(WindowKind::Sliding { size_ms: 6_000, hop_ms: 2_000 }, &steps)?;
    }
}

#[test]
fn the_same_calls_give_the_same_emissions() {
    let steps: Vec<Step> = (0..500)
        .map(|i| match i % 7 {
            6 => Step::Tick,
            k => Step::Event {
                ts: 100_000 + i * 300 - k * 900,
                group: (i % 3) as u8,
                value: Some(i as f64 / 7.0),
                user: (i % 11) as u8,
            },
        })
        .collect();
    let r = rule(WindowKind::Sliding { size_ms: 6_000, hop_ms: 2_000 });
    let (a, b) = (run(&r, &steps).1, run(&r, &steps).1);
    assert!(!a.is_empty());
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
}

#[test]
fn emission_correction_drop_and_idle_at_their_boundaries() {
    let mut w =
        Windows::new(WindowRule { outputs: vec![count()], ..rule(WindowKind::Tumbling { size_ms: 5_000 }) });
    let event = |ts| Observation::single(ts, Some(1.0), None);
    let mut out = Vec::new();
    w.observe(0, b"g", &event(1_000), &NoColdRows, &mut out).unwrap();
    w.observe(0, b"g", &event(6_999), &NoColdRows, &mut out).unwrap();
    assert!(out.is_empty(), "the watermark (4999) has not reached the end (5000): {out:?}");
    w.observe(0, b"g", &event(7_000), &NoColdRows, &mut out).unwrap();
    let first = Emission {
        group: b"g".to_vec(),
        start: 0,
        end: 5_000,
        values: vec![Some(1.0)],
        kind: EmissionKind::First,
    };
    assert_eq!(std::mem::take(&mut out), std::slice::from_ref(&first));
    // Late, within the lateness: the window is emitted again, corrected, at the entry's end,
    // once however many late events it took.
    w.observe(0, b"g", &event(2_000), &NoColdRows, &mut out).unwrap();
    assert!(out.is_empty());
    w.observe(0, b"g", &event(3_000), &NoColdRows, &mut out).unwrap();
    w.flush_corrections(&NoColdRows, &mut out).unwrap();
    assert_eq!(
        std::mem::take(&mut out),
        [Emission { values: vec![Some(3.0)], kind: EmissionKind::Correction, ..first }]
    );
    // The watermark reaches end + lateness (15000): the window takes no more events.
    w.observe(0, b"g", &event(16_999), &NoColdRows, &mut out).unwrap();
    w.observe(0, b"g", &event(4_999), &NoColdRows, &mut out).unwrap();
    assert_eq!(w.late_dropped(), 0);
    w.observe(0, b"g", &event(17_000), &NoColdRows, &mut out).unwrap();
    out.clear();
    w.observe(0, b"g", &event(4_999), &NoColdRows, &mut out).unwrap();
    assert_eq!((w.late_dropped(), out.len()), (1, 0));
    // Idle: a tick 3 s (idle_timeout) after the last event's clock moves the watermark to the
    // tick's clock minus max_out_of_orderness, which closes [15 s, 20 s).
    w.tick(2_999, &NoColdRows, &mut out).unwrap();
    assert!(out.is_empty());
    w.tick(3_000, &NoColdRows, &mut out).unwrap();
    assert_eq!(w.watermark(), 17_000 - 2_000, "a clock behind the events does not move it back");
    w.tick(22_000, &NoColdRows, &mut out).unwrap();
    assert_eq!(w.watermark(), 20_000);
    assert_eq!(out.iter().map(|e| (e.end, e.values[0])).collect::<Vec<_>>(), [(20_000, Some(2.0))]);
    // A correction still waiting when the watermark moves is emitted before the panes it
    // needs can expire.
    w.observe(0, b"g", &event(19_000), &NoColdRows, &mut out).unwrap();
    out.clear();
    w.observe(0, b"g", &event(36_000), &NoColdRows, &mut out).unwrap();
    assert_eq!(
        out.iter().map(|e| (e.end, e.values[0], e.kind)).collect::<Vec<_>>(),
        [(20_000, Some(3.0), EmissionKind::Correction)]
    );
}

#[test]
fn a_late_event_corrects_only_the_sliding_windows_still_within_lateness() {
    let mut w = Windows::new(WindowRule {
        outputs: vec![count()],
        ..rule(WindowKind::Sliding { size_ms: 6_000, hop_ms: 2_000 })
    });
    let event = |ts| Observation::single(ts, Some(1.0), None);
    let mut out = Vec::new();
    w.observe(0, b"g", &event(1_000), &NoColdRows, &mut out).unwrap();
    w.observe(0, b"g", &event(14_000), &NoColdRows, &mut out).unwrap();
    assert_eq!(w.watermark(), 12_000);
    out.clear();
    // The pane [0, 2 s) is in the windows ending at 2, 4 and 6 s; at watermark 12 s the first
    // is exactly at its end + lateness and takes no more.
    w.observe(0, b"g", &event(1_500), &NoColdRows, &mut out).unwrap();
    w.flush_corrections(&NoColdRows, &mut out).unwrap();
    assert_eq!(
        out.iter().map(|e| (e.end, e.values[0], e.kind)).collect::<Vec<_>>(),
        [(4_000, Some(2.0), EmissionKind::Correction), (6_000, Some(2.0), EmissionKind::Correction)]
    );
}

#[test]
fn a_dropped_late_event_still_keeps_the_rule_from_being_idle() {
    let mut w =
        Windows::new(WindowRule { outputs: vec![count()], ..rule(WindowKind::Tumbling { size_ms: 5_000 }) });
    let event = |ts| Observation::single(ts, None, None);
    let mut out = Vec::new();
    w.observe(40_000, b"g", &event(30_000), &NoColdRows, &mut out).unwrap();
    w.observe(42_000, b"g", &event(1_000), &NoColdRows, &mut out).unwrap();
    assert_eq!(w.late_dropped(), 1);
    // 3 s (idle_timeout) after the first event's clock but 1 s after the dropped one's.
    w.tick(43_000, &NoColdRows, &mut out).unwrap();
    assert_eq!(w.watermark(), 28_000);
    w.tick(45_000, &NoColdRows, &mut out).unwrap();
    assert_eq!(w.watermark(), 43_000);
}
