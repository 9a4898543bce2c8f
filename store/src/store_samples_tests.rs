//! Rules over samples inside apply: each output equals a brute-force reference computed from
//! the raw samples by its definition; `keep_input = false` stores only the outputs; a resent
//! write counts once; a restart neither loses nor recounts.

use std::collections::BTreeMap;

use collabstream_common::TimeRange;
use collabstream_proto::v1;

use super::agg_tests::{config, open};
use super::tests::{all, commit, write};
use super::*;
use crate::matcher::{MatchOp, Matcher};

const OUTPUTS: [&str; 11] = [
    "count_samples",
    "sum_samples",
    "avg",
    "min",
    "max",
    "last",
    "count_series",
    "increase",
    "total",
    "rate_sum",
    "rate_avg",
];

fn rule(name: &str, keep_input: bool) -> v1::Command {
    let mut outputs: Vec<v1::RuleOutput> =
        OUTPUTS.iter().map(|k| v1::RuleOutput { kind: (*k).into(), quantile: 0.0 }).collect();
    outputs.push(v1::RuleOutput { kind: "quantile".into(), quantile: 0.5 });
    let def = v1::AggregationRule {
        name: name.into(),
        r#match: vec![v1::LabelMatcher {
            name: "__name__".into(),
            op: "=".into(),
            value: "requests_total".into(),
        }],
        group_by: vec!["job".into()],
        size_ms: 10_000,
        outputs,
        // The series drift apart by up to ~20 s: every window waits for the closing sample.
        max_out_of_orderness_ms: 60_000,
        idle_timeout_ms: 30_000,
        distinct_threshold: 100,
        keep_input,
        origin: "api".into(),
        ..Default::default()
    };
    v1::Command {
        leader_time_ms: 0,
        payload: Some(v1::command::Payload::Rules(v1::RuleChange {
            change: Some(v1::rule_change::Change::Create(def)),
        })),
    }
}

fn series(job: &str, instance: &str, samples: &[(i64, f64)]) -> v1::TimeSeries {
    let labels = [("__name__", "requests_total"), ("instance", instance), ("job", job)];
    v1::TimeSeries {
        labels: labels.iter().map(|(n, v)| v1::Label { name: (*n).into(), value: (*v).into() }).collect(),
        samples: samples.iter().map(|(t, v)| v1::Sample { timestamp_ms: *t, value: *v }).collect(),
    }
}

/// Six counters (two jobs, three instances) sampled every 1–3 s for a minute, with resets,
/// sent as 20 writes of a few samples per series; then one sample far on that closes every
/// window.
fn workload() -> Vec<v1::Command> {
    let mut seed = 11u64;
    let mut next = move |below: u64| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) % below
    };
    let keys: Vec<(String, String)> =
        ["a", "b"].iter().flat_map(|j| (1..=3).map(move |i| (j.to_string(), format!("i{i}")))).collect();
    let mut state: Vec<(i64, f64)> = keys.iter().map(|_| (0, 0.0)).collect();
    let mut writes = Vec::new();
    for _ in 0..20 {
        let mut ts = Vec::new();
        for (k, (job, inst)) in keys.iter().enumerate() {
            let mut samples = Vec::new();
            for _ in 0..next(3) {
                let (t, v) = &mut state[k];
                *t += 1_000 + next(2_000) as i64;
                *v = if next(15) == 0 { next(5) as f64 } else { *v + next(40) as f64 / 4.0 };
                samples.push((*t, *v));
            }
            if !samples.is_empty() {
                ts.push(series(job, inst, &samples));
            }
        }
        writes.push(write("", ts, vec![]));
    }
    writes.push(write("", vec![series("a", "i1", &[(500_000, 1.0)])], vec![]));
    writes
}

/// Each output per definition, by (job, window end): from the samples in the order applied.
fn reference(writes: &[v1::Command]) -> BTreeMap<(String, i64), BTreeMap<&'static str, f64>> {
    #[derive(Default)]
    struct W {
        n: f64,
        sum: f64,
        min: f64,
        max: f64,
        last: (i64, f64),
        series: std::collections::BTreeSet<String>,
        increase: f64,
    }
    let mut windows: BTreeMap<(String, i64), W> = BTreeMap::new();
    let mut prev: BTreeMap<String, f64> = BTreeMap::new();
    for w in writes {
        let Some(v1::command::Payload::Write(w)) = &w.payload else { continue };
        for s in &w.series {
            let job = s.labels.iter().find(|l| l.name == "job").unwrap().value.clone();
            let id = format!("{:?}", s.labels);
            for x in &s.samples {
                let end = x.timestamp_ms.div_euclid(10_000) * 10_000 + 10_000;
                let win = windows.entry((job.clone(), end)).or_insert(W {
                    min: f64::MAX,
                    max: f64::MIN,
                    ..W::default()
                });
                let increase = match prev.insert(id.clone(), x.value) {
                    Some(p) if x.value >= p => x.value - p,
                    Some(_) => x.value,
                    None => 0.0,
                };
                win.n += 1.0;
                win.sum += x.value;
                win.min = win.min.min(x.value);
                win.max = win.max.max(x.value);
                if x.timestamp_ms >= win.last.0 {
                    win.last = (x.timestamp_ms, x.value);
                }
                win.series.insert(id.clone());
                win.increase += increase;
            }
        }
    }
    // `total`: a job's increases in every window up to this one (a job's samples are never
    // the 70 s apart, out of orderness and a window, that would start its carry from 0).
    let mut running: BTreeMap<String, f64> = BTreeMap::new();
    windows
        .into_iter()
        .filter(|((_, end), _)| *end < 500_000)
        .map(|(k, w)| {
            let total = *running.entry(k.0.clone()).and_modify(|t| *t += w.increase).or_insert(w.increase);
            let rate = w.increase * 1000.0 / 10_000.0;
            let count = w.series.len() as f64;
            let outputs = BTreeMap::from([
                ("count_samples", w.n),
                ("sum_samples", w.sum),
                ("avg", w.sum / w.n),
                ("min", w.min),
                ("max", w.max),
                ("last", w.last.1),
                ("count_series", count),
                ("increase", w.increase),
                ("total", total),
                ("rate_sum", rate),
                ("rate_avg", rate / count),
            ]);
            (k, outputs)
        })
        .collect()
}

fn output(store: &Store, metric: &str) -> BTreeMap<(String, i64), f64> {
    let m = [Matcher::new(MatchOp::Equal, "__name__", metric).unwrap()];
    let mut out = BTreeMap::new();
    for s in store.select(&m, TimeRange::ALL).unwrap() {
        let job = s.labels.get("job").unwrap_or("").to_string();
        for x in &s.samples {
            out.insert((job.clone(), x.timestamp_ms), x.value);
        }
    }
    out
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn every_output_equals_its_definition_over_the_raw_samples() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    commit(&store, &rule("req", true));
    let writes = workload();
    for w in &writes {
        commit(&store, w);
    }
    let want = reference(&writes);
    assert!(want.len() >= 10, "{} windows", want.len());
    for name in OUTPUTS {
        let got = output(&store, &format!("req_{name}"));
        assert_eq!(got.len(), want.len(), "{name}: {got:?}");
        for (k, w) in &want {
            assert!(close(got[k], w[name]), "{name} {k:?}: {} ≠ {}", got[k], w[name]);
        }
    }
    // The median of each window within DDSketch's 1 % (of a value the window holds).
    let medians = output(&store, "req_quantile");
    assert_eq!(medians.len(), want.len());
    for (k, w) in &want {
        assert!(medians[k] >= w["min"] * 0.99 && medians[k] <= w["max"] * 1.01, "{k:?}");
    }
    // The raw samples are stored too (keep_input).
    let raw = [Matcher::new(MatchOp::Equal, "__name__", "requests_total").unwrap()];
    assert_eq!(store.select(&raw, TimeRange::ALL).unwrap().len(), 6);
}

#[test]
fn without_input_only_outputs_are_stored_and_a_resent_write_counts_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    commit(&store, &rule("req", false));
    let writes = workload();
    let mut accepted = 0;
    for w in &writes {
        accepted += commit(&store, w).samples_accepted;
        // Every write sent twice, as a remote-write sender retrying would.
        commit(&store, w);
    }
    let sent: usize = writes
        .iter()
        .filter_map(|w| match &w.payload {
            Some(v1::command::Payload::Write(w)) => {
                Some(w.series.iter().map(|s| s.samples.len()).sum::<usize>())
            }
            _ => None,
        })
        .sum();
    assert_eq!(accepted, sent as u64, "taken by the rule counts as accepted");
    let raw = [Matcher::new(MatchOp::Equal, "__name__", "requests_total").unwrap()];
    assert!(store.select(&raw, TimeRange::ALL).unwrap().is_empty(), "no input series");
    let want = reference(&writes);
    let got = output(&store, "req_increase");
    assert_eq!(got.len(), want.len());
    for (k, w) in &want {
        assert!(close(got[k], w["increase"]), "{k:?}");
    }
    // The figures for /metrics are refreshed at the leader's ticks.
    commit(
        &store,
        &v1::Command { leader_time_ms: 1, payload: Some(v1::command::Payload::Tick(v1::Tick {})) },
    );
    let stats = store.aggregation_stats().into_iter().find(|s| s.rule == "req").unwrap();
    assert_eq!(stats.samples_ignored, sent as u64, "each resent sample");
}

#[test]
fn a_restart_neither_loses_nor_recounts_samples() {
    let writes = workload();
    let whole_dir = tempfile::tempdir().unwrap();
    let whole = open(whole_dir.path());
    commit(&whole, &rule("req", false));
    for w in &writes {
        commit(&whole, w);
    }
    let want = all(&whole);
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    commit(&store, &rule("req", false));
    for (i, w) in writes.iter().enumerate() {
        commit(&store, w);
        if i == 6 {
            store.checkpoint().unwrap();
        }
        if i == 13 {
            drop(store);
            store = super::tests::reopen_with(dir.path(), config());
        }
    }
    assert_eq!(all(&store), want);
}
