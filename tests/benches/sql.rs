//! SQL aggregates over the cold tier's Parquet files and over the hot store, ours against
//! DuckDB over the same files in the same run (`tests/sql/bench_duckdb.py` times both).
//!
//! `cargo bench -p collabstream-tests --bench sql` writes 26 hours of `BENCH_SERIES` series
//! (default 10,000: half counters, half gauges, one sample a minute) to a release node with
//! 2-hour blocks and one hour of hot retention, moves the blocks that ended an hour ago (23–24 hours) to the local object
//! store, and times each query `BENCH_ROUNDS` times (default 7) on both engines, printing the
//! medians and the ratio. A full run fails when a cold query takes more than 1.5× DuckDB's
//! time (the target). `cargo test --benches` runs it with 100 series and one round, as
//! a smoke test that also checks both engines count the same rows.

use std::process::Command;

use collabstream_proto::v1::{self, ingest_service_client::IngestServiceClient};
use collabstream_tests::Node;
use serde_json::Value;

const HOUR: i64 = 3_600_000;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let series = env_usize("BENCH_SERIES", if full { 10_000 } else { 100 });
    let rounds = env_usize("BENCH_ROUNDS", if full { 7 } else { 1 });
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
    for batch in 0..(minutes + 9) / 10 {
        let times: Vec<i64> =
            (batch * 10..((batch + 1) * 10).min(minutes)).map(|m| first + m * 60_000).collect();
        let req = v1::WriteRequest {
            batch_id: format!("sql-bench-{batch}"),
            series: (0..series)
                .map(|i| {
                    let name = if i % 2 == 0 { "cq_requests_total" } else { "cq_temperature" };
                    v1::TimeSeries {
                        labels: vec![
                            v1::Label { name: "__name__".into(), value: name.into() },
                            v1::Label { name: "instance".into(), value: format!("i{}", i / 2 % 100) },
                            v1::Label { name: "job".into(), value: format!("job{}", i / 200) },
                        ],
                        samples: times
                            .iter()
                            .map(|t| v1::Sample {
                                timestamp_ms: *t,
                                value: ((t / 60_000 + i as i64) % 977) as f64,
                            })
                            .collect(),
                    }
                })
                .collect(),
            events: Vec::new(),
        };
        client.write(req).await.expect("write");
    }
    let http = reqwest::Client::new();
    // Blocks of two hours go cold once they end an hour ago or more.
    let expected = (now - HOUR).div_euclid(2 * HOUR) * 2 * HOUR;
    let mut cold_until = i64::MIN;
    for _ in 0..50 {
        let r = http.post(node.url("/api/v1/admin/tiering/run")).send().await.expect("run");
        assert_eq!(r.status(), 200);
        let m: Value = http
            .get(node.url("/api/v1/admin/tiering"))
            .send()
            .await
            .expect("manifest")
            .json()
            .await
            .expect("JSON");
        cold_until = m["data"]["cold_until_ms"].as_i64().unwrap_or(i64::MIN);
        if cold_until >= expected {
            break;
        }
    }
    assert!(cold_until >= expected, "the cold tier reaches {cold_until}, not {expected}");
    let objects = node.data_dir.join("objects");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/bench_duckdb.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(format!("http://{}", node.http))
        .arg(&objects)
        .arg(cold_until.to_string())
        .arg((now - HOUR / 2).to_string())
        .arg(rounds.to_string())
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "{series} series, 26 h at one sample a minute; cold until {cold_until}; median of {rounds} rounds\n"
    );
    println!("| query | rows | ours (ms) | DuckDB (ms) | ours / DuckDB |\n|---|---|---|---|---|");
    let mut over = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let r: Value = serde_json::from_str(line).expect("a JSON line");
        let (name, ratio) = (r["query"].as_str().unwrap_or(""), r["ratio"].as_f64().unwrap_or(f64::NAN));
        println!("| {name} | {} | {} | {} | {ratio:.2} |", r["rows"], r["ours_ms"], r["duckdb_ms"]);
        if name.starts_with("cold") && (ratio.is_nan() || ratio > 1.5) {
            over.push(format!("{name}: {ratio:.2}× DuckDB"));
        }
    }
    if full {
        assert!(over.is_empty(), "over the 1.5× target: {over:?}");
    }
}
