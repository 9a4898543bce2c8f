//! The `total` output ([`Formula::Total`]) against a brute-force reference: a window's total is
//! the sum of its group's values before its end that arrived while the window could still be
//! corrected, since the group last started from 0. (That carries survive a restart and do
//! not depend on what is held in memory is checked with the other state, in `state_tests`.)

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::windows_tests::{Step, clock, run, steps};
use crate::agg::{EmissionKind, Formula, NoColdRows, Observation, Output, WindowKind, WindowRule, Windows};

fn rule(window: WindowKind) -> WindowRule {
    WindowRule {
        window,
        outputs: vec![Formula::Of { measure: 0, output: Output::Sum }, Formula::Total { measure: 0 }],
        max_out_of_orderness_ms: 2_000,
        allowed_lateness_ms: 10_000,
        idle_timeout_ms: 3_000,
        distinct_threshold: 8,
    }
}

/// An accepted event as the reference keeps it.
struct Taken {
    group: u8,
    ts: i64,
    value: f64,
    /// The watermark when it arrived.
    watermark: i64,
    /// Which run of its group's carry it belongs to.
    run: u32,
}

/// (end, group) → (sum, total) of every window due, from the events by their definitions.
fn reference(r: &WindowRule, steps: &[Step]) -> BTreeMap<(i64, u8), (f64, f64)> {
    let (size, pane, late) = (r.window.size_ms(), r.window.pane_ms(), r.allowed_lateness_ms);
    let expired = |p: i64, wm: i64| p + size + late <= wm;
    let (mut wm, mut newest_clock) = (i64::MIN, None);
    let mut taken = Vec::new();
    // Group → (run, newest pane).
    let mut runs: BTreeMap<u8, (u32, i64)> = BTreeMap::new();
    for (i, s) in steps.iter().enumerate() {
        match s {
            Step::Event { ts, group, value, .. } => {
                newest_clock = Some(clock(i));
                let p = ts.div_euclid(pane) * pane;
                if !expired(p, wm) {
                    let run = runs.entry(*group).or_insert((0, p));
                    if expired(run.1, wm) {
                        *run = (run.0 + 1, p);
                    }
                    run.1 = run.1.max(p);
                    let value = value.filter(|v| !v.is_nan()).unwrap_or(0.0);
                    taken.push(Taken { group: *group, ts: *ts, value, watermark: wm, run: run.0 });
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
    let open = |end: i64, t: &Taken| end + late > t.watermark;
    let mut out = BTreeMap::new();
    for t in &taken {
        let first_end = t.ts.div_euclid(pane) * pane + pane;
        let mut end = first_end;
        while end <= first_end - pane + size {
            if end <= wm && open(end, t) {
                out.insert((end, t.group), t.run);
            }
            end += pane;
        }
    }
    out.into_iter()
        .map(|((end, group), run)| {
            let mine = |x: &&Taken| x.group == group && open(end, x);
            let sum =
                taken.iter().filter(mine).filter(|x| x.ts < end && x.ts >= end - size).map(|x| x.value).sum();
            let total =
                taken.iter().filter(mine).filter(|x| x.run == run && x.ts < end).map(|x| x.value).sum();
            ((end, group), (sum, total))
        })
        .collect()
}

fn check(window: WindowKind, steps: &[Step]) -> Result<(), TestCaseError> {
    let r = rule(window);
    let (_, emitted) = run(&r, steps);
    let mut last: BTreeMap<(i64, u8), (f64, f64)> = BTreeMap::new();
    for e in &emitted {
        let (Some(sum), Some(total)) = (e.values[0], e.values[1]) else {
            return Err(TestCaseError::fail(format!("a window without a sum or total: {e:?}")));
        };
        last.insert((e.end, e.group[0]), (sum, total));
    }
    let want = reference(&r, steps);
    prop_assert_eq!(last.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0);
    for (k, (sum, total)) in &last {
        let (want_sum, want_total) = want[k];
        prop_assert!(close(*sum, want_sum), "{:?}: sum {} ≠ {}", k, sum, want_sum);
        prop_assert!(close(*total, want_total), "{:?}: total {} ≠ {}", k, total, want_total);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn tumbling_totals_match_the_reference(steps in steps()) {
        check(WindowKind::Tumbling { size_ms: 5_000 }, &steps)?;
    }

    #[test]
    fn sliding_totals_match_the_reference(steps in steps()) {
        check(WindowKind::Sliding { size_ms: 6_000, hop_ms: 2_000 }, &steps)?;
    }
}

#[test]
fn a_late_value_corrects_the_later_totals_and_a_gap_starts_again_from_zero() {
    let mut w = Windows::new(rule(WindowKind::Tumbling { size_ms: 5_000 }));
    let mut out = Vec::new();
    // The emissions of group g after one event of `group`.
    let mut at = |w: &mut Windows, group: &[u8], ts: i64, v: f64| {
        w.observe(0, group, &Observation::single(ts, Some(v), None), &NoColdRows, &mut out).unwrap();
        w.flush_corrections(&NoColdRows, &mut out).unwrap();
        let got =
            out.iter().filter(|e| e.group == b"g").map(|e| (e.end, e.values[1], e.kind)).collect::<Vec<_>>();
        out.clear();
        got
    };
    let (first, fix) = (EmissionKind::First, EmissionKind::Correction);
    assert!(at(&mut w, b"g", 1_000, 1.0).is_empty());
    assert!(at(&mut w, b"g", 6_000, 2.0).is_empty());
    assert_eq!(at(&mut w, b"g", 11_000, 4.0), [(5_000, Some(1.0), first)]);
    assert_eq!(at(&mut w, b"g", 16_000, 8.0), [(10_000, Some(3.0), first)]);
    // Late into [0, 5 s): that window and the one after it already emitted are corrected.
    assert_eq!(at(&mut w, b"g", 2_000, 16.0), [(5_000, Some(17.0), fix), (10_000, Some(19.0), fix)]);
    // Another group moves the watermark to 48 s: g's windows close, and its panes expire.
    assert_eq!(at(&mut w, b"h", 50_000, 0.0), [(15_000, Some(23.0), first), (20_000, Some(31.0), first)]);
    // So g's next value starts its total again from 0.
    assert!(at(&mut w, b"g", 52_000, 32.0).is_empty());
    assert_eq!(at(&mut w, b"g", 57_000, 64.0), [(55_000, Some(32.0), first)]);
}
