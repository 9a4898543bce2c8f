//! The label index (`cargo bench -p collabstream-store --bench label_index`): regex matchers
//! over the 1,000,000 values of one label (`user_id`, one per series), with and without a
//! literal prefix, through the store's index, and the same matchers answered the way the index
//! answered them before the FST (its sorted term map: the prefix's range, or every value
//! tested), on the same values in the same run.
//!
//! Prints a Markdown table for docs/benchmarks.md. `BENCH_INDEX_SERIES` scales it down;
//! `cargo test --benches` runs it with 20,000 series as a smoke test.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::time::{Duration, Instant};

use collabstream_common::TimeRange;
use collabstream_proto::v1;
use collabstream_store::{MatchOp, Matcher, Store, StoreConfig};

fn command(write: v1::WriteRequest) -> v1::Command {
    v1::Command { leader_time_ms: 0, payload: Some(v1::command::Payload::Write(write.into())) }
}

/// `u<two digits><six digits>`: the first two digits spread users evenly, so `u12.*` is 1%.
fn user(i: usize) -> String {
    format!("u{:02}{:06}", i % 100, i / 100)
}

/// Median of 7 runs of `f`, which returns how many series it found (checked against `want`).
fn median(f: &dyn Fn() -> usize, want: usize) -> Duration {
    let mut runs = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        assert_eq!(f(), want);
        runs.push(t.elapsed());
    }
    runs.sort();
    runs[runs.len() / 2]
}

/// The term map as the index used it before the FST: with a literal prefix, the values in its
/// range, each tested; without, every value tested.
fn term_map(values: &BTreeMap<String, Vec<u64>>, m: &Matcher, prefix: Option<&str>) -> usize {
    let lists: Vec<&Vec<u64>> = match prefix {
        Some(p) => values
            .range::<str, _>((Bound::Included(p), Bound::Unbounded))
            .take_while(|(v, _)| v.starts_with(p))
            .filter(|(v, _)| m.matches(v))
            .map(|(_, ids)| ids)
            .collect(),
        None => values.iter().filter(|(v, _)| m.matches(v)).map(|(_, ids)| ids).collect(),
    };
    lists.iter().map(|l| l.len()).sum()
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("BENCH_INDEX_SERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 20_000 } else { 1_000_000 });
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), StoreConfig::default()).expect("open");
    let mut values: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (index, chunk) in (1u64..).zip((0..n).collect::<Vec<_>>().chunks(10_000)) {
        let series = chunk
            .iter()
            .map(|i| {
                values.entry(user(*i)).or_default().push(*i as u64);
                v1::TimeSeries {
                    labels: vec![
                        v1::Label { name: "__name__".into(), value: "meeting_user_rtt_ms".into() },
                        v1::Label { name: "region".into(), value: format!("r{}", (i / 100) % 10) },
                        v1::Label { name: "user_id".into(), value: user(*i) },
                    ],
                    samples: vec![v1::Sample { timestamp_ms: 1_000, value: *i as f64 }],
                }
            })
            .collect();
        store.apply(index, &command(v1::WriteRequest { series, ..Default::default() })).expect("apply");
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let re = |v: &str| Matcher::new(MatchOp::Regex, "user_id", v).expect("regex");
    let count = |m: &Matcher| values.keys().filter(|v| m.matches(v)).count();

    // The first regex without a literal prefix builds the label's FST.
    let first = re(".*42.*");
    let t = Instant::now();
    let want = count(&first);
    assert_eq!(store.series_ids(std::slice::from_ref(&first)).len(), want);
    let built = t.elapsed();

    println!(
        "| matcher over {n} values of `user_id` | series | index (FST) | term map (before) | ratio | target |"
    );
    println!("|---|---:|---:|---:|---:|---|");
    let mut missed = Vec::new();
    for (regex, prefix) in [
        ("u12.*", Some("u12")),
        ("u12[0-9]+", Some("u12")),
        (".*42.*", None),
        (".*12.*5", None),
        (".*[05]", None),
        ("u.*9999", Some("u")),
    ] {
        let m = re(regex);
        let want = count(&m);
        let ours = median(&|| store.series_ids(std::slice::from_ref(&m)).len(), want);
        let before = median(&|| term_map(&values, &m, prefix), want);
        println!(
            "| `{{user_id=~\"{regex}\"}}` | {want} | {:.2} ms | {:.2} ms | {:.2} | ≤ 20 ms |",
            ms(ours),
            ms(before),
            ms(ours) / ms(before)
        );
        if ms(ours) > 20.0 {
            missed.push(format!("{regex}: {:.2} ms", ms(ours)));
        }
    }
    // A full run fails when a matcher misses the target (the smoke run's 20,000 values prove
    // nothing about it).
    assert!(quick || missed.is_empty(), "over the 20 ms target: {missed:?}");
    println!("\nThe first regex without a literal prefix also built the label's FST: {:.0} ms.", ms(built));
    let m = re("u12.*");
    let d =
        median(&|| store.series(std::slice::from_ref(&m), TimeRange::ALL).expect("series").len(), n / 100);
    println!(
        "Returning the {} label sets of `u12.*` sorted (what `/api/v1/series` needs): {:.2} ms.",
        n / 100,
        ms(d)
    );
}
