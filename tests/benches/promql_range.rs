//! Range-query latency, ours against Prometheus 2.42 on the same data and queries.
//!
//! `cargo bench -p collabstream-tests --bench promql_range` loads the differential test's
//! dataset, scaled (`BENCH_SCALE` copies of every series, default 200: 5,600 series, 1.3M
//! samples), into a release node and a Prometheus through remote write, then runs every query
//! of the set that Prometheus answers as a range query (30 min, 1 min step) `BENCH_ROUNDS`
//! times (default 5) against each, alternating. It prints the median latency per system and
//! the ratio ours/Prometheus per query, then the median ratio over the set.
//! `cargo test --benches` runs it at scale 2 with one round, as a smoke test. `BENCH_FILTER`
//! keeps only the queries containing it.

use std::time::{Duration, Instant};

use collabstream_tests::promql_suite::{queries, range_window, start_pair};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// One range query; its latency, or None when it failed.
async fn time_query(client: &reqwest::Client, url: &str, params: &[(&str, String)]) -> Option<Duration> {
    let started = Instant::now();
    let r = client.post(url).form(params).send().await.ok()?;
    let ok = r.status().is_success();
    let _ = r.bytes().await.ok()?;
    ok.then(|| started.elapsed())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let scale = env_usize("BENCH_SCALE", if quick { 2 } else { 200 });
    let rounds = env_usize("BENCH_ROUNDS", if quick { 1 } else { 5 });
    let dir = tempfile::tempdir().expect("tempdir");
    let pair = start_pair(dir.path(), scale).await.expect("node and Prometheus hold the dataset");
    let (node, prom, t0) = (&pair.node, &pair.prometheus, pair.t0);
    let (series, samples) = (pair.series, pair.samples);
    let client = reqwest::Client::new();
    println!("dataset: {series} series, {samples} samples; {rounds} rounds per query");

    let (start, end, step) = range_window(t0);
    let secs = |ms: i64| format!("{}", ms as f64 / 1000.0);
    let at = secs(t0 + 40 * 60_000 + 7_000);
    let mut ratios = Vec::new();
    let mut rows = Vec::new();
    let (ours_url, theirs_url) = (node.url("/api/v1/query_range"), prom.url("/api/v1/query_range"));
    // BENCH_FILTER=substring runs only the matching queries (for profiling one of them).
    let filter = std::env::var("BENCH_FILTER").unwrap_or_default();
    for q in queries().into_iter().filter(|q| q.contains(&filter)) {
        let q = q.replace("{AT}", &at);
        let params =
            vec![("query", q.clone()), ("start", secs(start)), ("end", secs(end)), ("step", secs(step))];
        // Warm up both; skip what Prometheus does not answer (many-to-many with copies, …).
        if time_query(&client, &theirs_url, &params).await.is_none() {
            continue;
        }
        let Some(_) = time_query(&client, &ours_url, &params).await else {
            panic!("we failed a query Prometheus answers: {q}");
        };
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            ours.push(time_query(&client, &ours_url, &params).await.expect("ours").as_secs_f64() * 1e3);
            theirs.push(time_query(&client, &theirs_url, &params).await.expect("theirs").as_secs_f64() * 1e3);
        }
        let (o, t) = (median(ours), median(theirs));
        ratios.push(o / t);
        rows.push((o / t, o, t, q));
    }
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    println!("| ratio | ours ms | Prometheus ms | query |\n|---:|---:|---:|---|");
    for (r, o, t, q) in rows.iter().take(if quick { 5 } else { 15 }) {
        println!("| {r:.2} | {o:.2} | {t:.2} | `{q}` |");
    }
    let total_ours: f64 = rows.iter().map(|r| r.1).sum();
    let total_theirs: f64 = rows.iter().map(|r| r.2).sum();
    println!(
        "\n{} queries: median ratio ours/Prometheus {:.2}; p90 {:.2}; total time {:.0} ms vs {:.0} ms ({:.2}x)",
        ratios.len(),
        median(ratios.clone()),
        {
            let mut r = ratios.clone();
            r.sort_by(f64::total_cmp);
            r[(r.len() * 9 / 10).min(r.len() - 1)]
        },
        total_ours,
        total_theirs,
        total_ours / total_theirs
    );
}
