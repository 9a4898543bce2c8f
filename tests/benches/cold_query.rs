//! Range queries over 24 hours of data, hot and then cold: the same node, the same queries,
//! before and after its older blocks move to the object store (the local disk here, so that
//! what is measured is our reading of Parquet, not a network).
//!
//! `cargo bench -p collabstream-tests --bench cold_query` writes 26 hours of `BENCH_SERIES`
//! series (default 2,000; half counters, half gauges, one sample a minute) to a release node
//! with 2-hour blocks and one hour of hot retention, runs each query once (the first run,
//! reported apart: caches hold none of its data yet) and `BENCH_ROUNDS` times (default 5) over
//! the 24 hours that will go cold, runs a tiering pass, checks every answer is
//! unchanged, and runs them again. It prints the median latency hot and cold and the ratio.
//! `BENCH_QUERY=<i>` runs the `i`th query alone.
//! `cargo test --benches` runs it with 50 series and one round, as a smoke test.

use std::time::{Duration, Instant};

use collabstream_proto::v1::{self, ingest_service_client::IngestServiceClient};
use collabstream_tests::Node;
use serde_json::Value;

const HOUR: i64 = 3_600_000;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn query(client: &reqwest::Client, node: &Node, q: &str, start: i64, end: i64) -> (Duration, Value) {
    let params = [
        ("query", q.to_string()),
        ("start", format!("{}", start / 1000)),
        ("end", format!("{}", end / 1000)),
        ("step", "300".to_string()),
    ];
    let started = Instant::now();
    let r = client.post(node.url("/api/v1/query_range")).form(&params).send().await.expect("query");
    let v: Value = r.json().await.expect("JSON");
    let took = started.elapsed();
    assert_eq!(v["status"], "success", "{q}: {v}");
    (took, v["data"].clone())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let series = env_usize("BENCH_SERIES", if quick { 50 } else { 2_000 });
    let rounds = env_usize("BENCH_ROUNDS", if quick { 1 } else { 5 });
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        "[store]\nblock_duration = \"2h\"\n[tiering]\nhot_retention = \"1h\"\ninterval = \"1h\"\n",
    )
    .expect("config");
    let node = Node::start(&dir.path().join("node"), &["--config", &config.to_string_lossy()]).expect("node");

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis()
        as i64
        / 60_000
        * 60_000;
    let first = now - 26 * HOUR;
    let mut client = IngestServiceClient::connect(node.grpc_url()).await.expect("grpc");
    let minutes: i64 = 26 * 60;
    for batch in 0..(minutes + 59) / 60 {
        let times: Vec<i64> =
            (batch * 60..((batch + 1) * 60).min(minutes)).map(|m| first + m * 60_000).collect();
        let req = v1::WriteRequest {
            batch_id: format!("cold-query-{batch}"),
            series: (0..series)
                .map(|i| {
                    let counter = i % 2 == 0;
                    let name = if counter { "cq_requests_total" } else { "cq_temperature" };
                    v1::TimeSeries {
                        labels: vec![
                            v1::Label { name: "__name__".into(), value: name.into() },
                            v1::Label { name: "instance".into(), value: format!("i{}", i / 2) },
                            v1::Label { name: "job".into(), value: format!("job{}", i % 10) },
                        ],
                        samples: times
                            .iter()
                            .map(|t| {
                                let k = (t - first) / 60_000;
                                let value = if counter {
                                    (k * (i as i64 % 7 + 1)) as f64
                                } else {
                                    20.0 + ((k + i as i64) % 97) as f64 / 4.0
                                };
                                v1::Sample { timestamp_ms: *t, value }
                            })
                            .collect(),
                    }
                })
                .collect(),
            events: vec![],
        };
        let r = client.write(req).await.expect("write").into_inner();
        assert_eq!(r.samples_accepted as usize, series * times.len());
    }
    // One hour hot in 2-hour blocks: everything before the last block boundary at least an
    // hour old goes cold; the queries read the 24 hours before it.
    let boundary = (now - HOUR).div_euclid(2 * HOUR) * 2 * HOUR;
    let (start, end) = (boundary - 24 * HOUR, boundary - 60_000);
    let all_queries = [
        "sum(rate(cq_requests_total[5m]))",
        "avg by (job) (cq_temperature)",
        "max_over_time(cq_temperature{instance=\"i7\"}[1h])",
    ];
    // `BENCH_QUERY=2` runs the third alone (for a profile of one).
    let queries: Vec<&str> = match std::env::var("BENCH_QUERY").ok().and_then(|v| v.parse::<usize>().ok()) {
        Some(i) => all_queries.get(i).into_iter().copied().collect(),
        None => all_queries.to_vec(),
    };
    let http = reqwest::Client::new();
    let measure = async |label: &str| {
        let mut out = Vec::new();
        for q in queries.iter().copied() {
            // The first run finds the caches empty of this query's data (the warm-up).
            let (first, answer) = query(&http, &node, q, start, end).await;
            let mut ms = Vec::new();
            for _ in 0..rounds {
                ms.push(query(&http, &node, q, start, end).await.0.as_secs_f64() * 1e3);
            }
            println!(
                "{label}: {q}: first {:.1} ms, median {:.1} ms",
                first.as_secs_f64() * 1e3,
                median(ms.clone())
            );
            out.push((median(ms), first.as_secs_f64() * 1e3, answer));
        }
        out
    };
    let hot = measure("hot").await;
    let pass: Value = http
        .post(node.url("/api/v1/admin/tiering/run"))
        .send()
        .await
        .expect("tiering")
        .json()
        .await
        .expect("JSON");
    assert_eq!(pass["status"], "success", "{pass}");
    assert_eq!(pass["data"]["sealed_before_ms"].as_i64(), Some(boundary), "{pass}");
    let tiered = pass["data"]["tiered"].as_array().expect("tiered");
    let bytes: u64 = tiered.iter().map(|b| b["bytes"].as_u64().unwrap_or(0)).sum();
    let samples: u64 =
        tiered.iter().filter(|b| b["table"] == "samples").map(|b| b["rows"].as_u64().unwrap_or(0)).sum();
    println!("tiered: {} blocks, {samples} samples, {bytes} bytes", tiered.len());
    let cold = measure("cold").await;
    println!(
        "\n| query | hot ms | cold ms | cold/hot | first run after tiering, cold ms | first run, hot ms |\n|---|---:|---:|---:|---:|---:|"
    );
    let mut missed = Vec::new();
    for (q, (h, c)) in queries.iter().zip(hot.iter().zip(&cold)) {
        assert_eq!(h.2, c.2, "{q}: the answer changed when its data went cold");
        println!("| `{q}` | {:.1} | {:.1} | {:.2} | {:.1} | {:.1} |", h.0, c.0, c.0 / h.0, c.1, h.1);
        if c.0 > 2.0 * h.0 {
            missed.push(format!("{q}: {:.2}x", c.0 / h.0));
        }
    }
    // A full run fails when a median cold query takes more than twice the hot one (the smoke
    // run's 50 series prove nothing about it).
    assert!(quick || missed.is_empty(), "over 2x the hot time: {missed:?}");
    println!("\n{series} series, 24 h at one sample a minute ({} samples in range)", series * 24 * 60);
}
