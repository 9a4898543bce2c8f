//! Replicated ingest: one node against a three-node cluster on loopback, and the failover
//! time when the leader is killed.
//!
//! `cargo bench -p collabstream-tests --bench replication` runs, for each cluster size,
//! `BENCH_CLIENTS` (default 32) gRPC clients sending writes of `BENCH_SERIES` (default 500)
//! samples to the leader for `BENCH_SECONDS` (default 10), and reports samples/s and write
//! latency p50/p99. Then it kills the leader of a three-node cluster under a light load and
//! reports the time from the kill to the first acknowledged write. `cargo test --benches`
//! runs it briefly as a smoke test.
//!
//! `BENCH_CLUSTER_SECONDS` (default `BENCH_SECONDS`) sets the three-node load apart: with 600
//! it is the ten-minute loaded run without faults, which reports the leader changes during the
//! load (the Raft term before and after it, as every node reports it).

use std::time::{Duration, Instant};

use collabstream_proto::v1::{self, ingest_service_client::IngestServiceClient};
use collabstream_tests::{Node, TestCluster};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn write(client: usize, round: u64, series: usize) -> v1::WriteRequest {
    let t = 1_732_780_800_000 + round as i64 * 1000;
    v1::WriteRequest {
        series: (0..series)
            .map(|s| v1::TimeSeries {
                labels: vec![
                    v1::Label { name: "__name__".into(), value: "bench_load".into() },
                    v1::Label { name: "client".into(), value: client.to_string() },
                    v1::Label { name: "series".into(), value: s.to_string() },
                ],
                samples: vec![v1::Sample { timestamp_ms: t, value: (round as f64) * 0.5 + s as f64 }],
            })
            .collect(),
        ..Default::default()
    }
}

struct LoadResult {
    samples_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// `clients` concurrent writers against `url` for `seconds`.
async fn load(url: &str, clients: usize, series: usize, seconds: u64) -> LoadResult {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let url = url.to_string();
        tasks.push(tokio::spawn(async move {
            let mut client = IngestServiceClient::connect(url).await.expect("connect");
            let (mut latencies, mut samples) = (Vec::new(), 0u64);
            let mut round = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                let r = client.write(write(c, round, series)).await.expect("write").into_inner();
                latencies.push(t.elapsed().as_secs_f64() * 1e3);
                samples += r.samples_accepted;
                round += 1;
            }
            (latencies, samples)
        }));
    }
    let (mut latencies, mut samples) = (Vec::new(), 0u64);
    for t in tasks {
        let (l, s) = t.await.expect("client");
        latencies.extend(l);
        samples += s;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    LoadResult { samples_per_s: samples as f64 / elapsed, p50_ms: pct(0.5), p99_ms: pct(0.99) }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let clients = env_usize("BENCH_CLIENTS", if quick { 2 } else { 32 });
    let series = env_usize("BENCH_SERIES", if quick { 50 } else { 500 });
    let seconds = env_usize("BENCH_SECONDS", if quick { 1 } else { 10 }) as u64;
    let cluster_seconds = env_usize("BENCH_CLUSTER_SECONDS", seconds as usize) as u64;
    let dir = tempfile::tempdir().expect("tempdir");

    let single = {
        let node = Node::start(&dir.path().join("single"), &[]).expect("node starts");
        load(&node.grpc_url(), clients, series, seconds).await
    };
    let (triple, failover, terms) = {
        let mut cluster =
            TestCluster::start(&dir.path().join("cluster"), 3, &[]).await.expect("cluster starts");
        let leader = cluster.wait_leader(&[0, 1, 2], Duration::from_secs(30)).await.expect("leader");
        let term = |s: Vec<u64>| (*s.iter().min().unwrap_or(&0), *s.iter().max().unwrap_or(&0));
        let mut before = Vec::new();
        for i in 0..3 {
            before.push(cluster.status(i).await.expect("status").term);
        }
        let r = load(&cluster.node(leader).grpc_url(), clients, series, cluster_seconds).await;
        let mut after = Vec::new();
        for i in 0..3 {
            after.push(cluster.status(i).await.expect("status").term);
        }
        let terms = (term(before), term(after));

        // Failover: kill the leader, then write to the survivors until one write is acknowledged.
        let survivors: Vec<String> =
            (0..3).filter(|i| *i != leader).map(|i| cluster.node(i).grpc_url()).collect();
        cluster.kill(leader);
        let killed = Instant::now();
        let mut round = 1_000_000u64;
        let acked = loop {
            if killed.elapsed() > Duration::from_secs(60) {
                for i in (0..3).filter(|i| *i != leader) {
                    let log = cluster.node(i).log();
                    let tail: Vec<&str> = log.lines().rev().take(12).collect();
                    eprintln!("node {}: {:?}\n{}", i + 1, cluster.status(i).await, tail.join("\n"));
                }
                panic!("no write acknowledged within 60 s of the kill");
            }
            let url = &survivors[round as usize % survivors.len()];
            round += 1;
            if let Ok(mut c) = IngestServiceClient::connect(url.clone()).await
                && c.write(write(0, round, 1)).await.is_ok()
            {
                break killed.elapsed();
            }
        };
        (r, acked, terms)
    };
    println!("| nodes | samples/s | write p50 ms | write p99 ms |\n|---:|---:|---:|---:|");
    for (n, r) in [(1, &single), (3, &triple)] {
        println!("| {n} | {:.0} | {:.2} | {:.2} |", r.samples_per_s, r.p50_ms, r.p99_ms);
    }
    println!(
        "\n3 nodes / 1 node throughput: {:.2}; failover (leader SIGKILL → first acknowledged write): {:.2} s \
         ({clients} clients × {series} samples per write, {seconds} s each)",
        triple.samples_per_s / single.samples_per_s,
        failover.as_secs_f64()
    );
    let ((lo, hi), (lo2, hi2)) = terms;
    println!(
        "leader changes during the {cluster_seconds} s three-node load: {} (Raft term {lo}..{hi} on the three nodes \
         before it, {lo2}..{hi2} after)",
        hi2 - hi
    );
}
