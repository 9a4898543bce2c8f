//! The meetings workload through ingest, Raft and the meetings pack: events/s on one node and
//! on three, next to remote-write samples/s to the same node in the same run; the latency from
//! a window's end passing the watermark to its output in PromQL; resident memory with many
//! open window keys; and the CPU the nodes used while taking the events (to tell a saturated
//! node from a pipeline waiting on itself).
//!
//! `cargo bench -p collabstream-tests --bench aggregation` (with a release `collabstream`:
//! `cargo build --release -p collabstream-server`, found next to the bench binary or at
//! `$COLLABSTREAM_BIN`). Knobs: `BENCH_EVENTS` (default 2,000,000 events, generated before the
//! clock starts by the `meetings` workload with 10,000 concurrent meetings), `BENCH_CLIENTS`
//! (gRPC clients, default 8), `BENCH_BATCH` (events a write, default 5,000), `BENCH_SAMPLES`
//! (remote-write samples, default 4,000,000), `BENCH_PROBES` (visibility probes, default 200),
//! `BENCH_OPEN_KEYS` (default 1,000,000; 0 skips that phase). `cargo test --benches` runs it
//! small, as a smoke test. Nodes without the meetings pack (the server's `COLLABSTREAM_CONFIG`,
//! which they inherit, naming a file with `[store] meetings_pack = false`) open no key and
//! show no window: measure them with `BENCH_OPEN_KEYS=0 BENCH_PROBES=0`.
//!
//! Clients send their share of the batches in event-time order; between clients the order
//! differs by up to `BENCH_CLIENTS` batches, which the pack's watermark (5 s out of
//! orderness, 5 min lateness) absorbs as corrections, reported with the rates.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use collabstream_proto::prompb;
use collabstream_proto::v1::{self, ingest_service_client::IngestServiceClient};
use collabstream_tests::{Node, TestCluster, remote_write_body};
use collabstream_workload::NodeExporter;
use common::{cpu_seconds, env_usize, meeting_writes, memory_mib, metric_sum, now_ms, send_events, windows};

/// Node-exporter scrapes as snappy remote-write bodies of 2,000 series, until `samples`.
fn remote_write_bodies(samples: usize) -> (Vec<Vec<u8>>, usize) {
    let mut generator = NodeExporter::new(50_000, 42);
    let (mut bodies, mut n) = (Vec::new(), 0);
    let mut ts = now_ms() - 3_600_000;
    while n < samples {
        for req in generator.scrape(ts, 15.0, 2_000) {
            n += req.series.iter().map(|s| s.samples.len()).sum::<usize>();
            let timeseries = req
                .series
                .into_iter()
                .map(|s| prompb::TimeSeries {
                    labels: s
                        .labels
                        .into_iter()
                        .map(|l| prompb::Label { name: l.name.into(), value: l.value.into() })
                        .collect(),
                    samples: s
                        .samples
                        .into_iter()
                        .map(|x| prompb::Sample { timestamp: x.timestamp_ms, value: x.value })
                        .collect(),
                    ..Default::default()
                })
                .collect();
            bodies.push(remote_write_body(&prompb::WriteRequest { timeseries, ..Default::default() }));
        }
        ts += 15_000;
    }
    (bodies, n)
}

async fn send_remote_write(url: &str, bodies: Arc<Vec<Vec<u8>>>, clients: usize) -> Duration {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (url, bodies) = (url.to_string(), bodies.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for b in bodies.iter().skip(c).step_by(clients) {
                let r = http
                    .post(&url)
                    .header("Content-Encoding", "snappy")
                    .header("Content-Type", "application/x-protobuf")
                    .body(b.clone())
                    .send()
                    .await
                    .expect("remote write");
                assert!(r.status().is_success(), "remote write: {}", r.status());
            }
        }));
    }
    for t in tasks {
        t.await.expect("sender");
    }
    started.elapsed()
}

fn event(meeting: &str, ts: i64) -> v1::Event {
    v1::Event {
        event: Some(v1::event::Event::User(v1::UserEvent {
            meeting_id: meeting.into(),
            user_id: "probe".into(),
            action: v1::UserAction::Join as i32,
            timestamp_ms: ts,
            ..Default::default()
        })),
    }
}

/// For each probe from `after_ms` on: an event in a fresh 30 s window, then one 5 s past its end (the watermark
/// passes the end as it is applied); the time from sending that one until PromQL shows the
/// window's `meeting_active_users`.
async fn visibility(node: &Node, probes: usize, after_ms: i64) -> Vec<f64> {
    let mut grpc = IngestServiceClient::connect(node.grpc_url()).await.expect("connect");
    let http = reqwest::Client::new();
    let mut window = after_ms.div_euclid(30_000) * 30_000;
    let mut out = Vec::with_capacity(probes);
    for i in 0..probes {
        let meeting = format!("probe-{i}");
        let write = |e| v1::WriteRequest { events: vec![e], ..Default::default() };
        grpc.write(write(event(&meeting, window + 1_000))).await.expect("probe");
        let started = Instant::now();
        grpc.write(write(event("probe-clock", window + 35_000))).await.expect("closing probe");
        let query = format!(r#"meeting_active_users{{meeting_id="{meeting}"}}"#);
        let time = format!("{}", (window + 30_000) as f64 / 1000.0);
        loop {
            let body: serde_json::Value = http
                .get(node.url("/api/v1/query"))
                .query(&[("query", query.as_str()), ("time", time.as_str())])
                .send()
                .await
                .expect("query")
                .json()
                .await
                .expect("json");
            if body["data"]["result"].as_array().is_some_and(|r| !r.is_empty()) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "probe {i} never became visible");
        }
        out.push(started.elapsed().as_secs_f64() * 1e3);
        window += 60_000;
    }
    out.sort_by(f64::total_cmp);
    out
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or(f64::NAN)
}

fn rss_mib(node: &Node) -> f64 {
    memory_mib(node.pid().expect("running"), "VmRSS")
}

/// Opens window keys (a join in each of many new meetings, all in one window, so none closes)
/// until the pack holds `target`; the keys held and the node's RSS then.
async fn open_keys(node: &Node, target: usize, at_ms: i64) -> (f64, f64) {
    let mut grpc = IngestServiceClient::connect(node.grpc_url()).await.expect("connect");
    let mut next = 0usize;
    // A first 10,000 meetings tell how many keys a meeting opens; then the rest at once.
    let mut send = target.min(10_000);
    loop {
        for from in (next..next + send).step_by(10_000) {
            let events = (from..(from + 10_000).min(next + send))
                .map(|i| event(&format!("open-{i:08}"), at_ms))
                .collect();
            grpc.write(v1::WriteRequest { events, ..Default::default() }).await.expect("write");
        }
        next += send;
        // The figure is refreshed at the leader's ticks (every second).
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        let held = metric_sum(node, "collabstream_aggregation_open_keys").await;
        if held >= target as f64 {
            return (held, rss_mib(node));
        }
        assert!(
            held > 0.0 && next < target * 4,
            "{target} open keys not reached after {next} meetings: {held}"
        );
        let per_meeting = held / next as f64;
        send = (((target as f64 - held) / per_meeting).ceil() as usize).max(1);
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let events = env_usize("BENCH_EVENTS", if quick { 20_000 } else { 2_000_000 });
    let clients = env_usize("BENCH_CLIENTS", if quick { 2 } else { 8 });
    let batch = env_usize("BENCH_BATCH", if quick { 1_000 } else { 5_000 });
    let samples = env_usize("BENCH_SAMPLES", if quick { 20_000 } else { 4_000_000 });
    let probes = env_usize("BENCH_PROBES", if quick { 3 } else { 200 });
    let keys = env_usize("BENCH_OPEN_KEYS", if quick { 20_000 } else { 1_000_000 });
    let start_ms = now_ms() - 3_600_000;
    let (writes, last_ms) = meeting_writes(events, batch, start_ms);
    let writes = Arc::new(writes);
    let (bodies, sample_count) = remote_write_bodies(samples);
    let bodies = Arc::new(bodies);
    println!(
        "meetings workload: {events} events in {} writes over {} s of event time; remote write: {sample_count} samples",
        writes.len(),
        (last_ms - start_ms) / 1000
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(&dir.path().join("one"), &[]).expect("node");
    let cpu_before = cpu_seconds(&node);
    let (accepted, took) = send_events(&node.grpc_url(), writes.clone(), clients).await;
    let one_events = accepted as f64 / took.as_secs_f64();
    let one_cores = (cpu_seconds(&node) - cpu_before) / took.as_secs_f64();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (emitted, corrections, late) = windows(&node).await;
    let took_rw = send_remote_write(&node.url("/api/v1/write"), bodies, clients).await;
    let rw = sample_count as f64 / took_rw.as_secs_f64();
    // Ahead of the leader's clock: the node has been idle for the pack (during the remote
    // write), so its ticks moved the watermark to the present.
    let ahead = now_ms() + 600_000;
    let latencies = visibility(&node, probes, ahead).await;
    drop(node);
    // Open keys on a fresh node, so that its RSS is the keys' and not the series' and
    // events' above.
    let (baseline, held, rss) = if keys == 0 {
        (f64::NAN, 0.0, f64::NAN)
    } else {
        let node = Node::start(&dir.path().join("keys"), &[]).expect("node");
        let baseline = rss_mib(&node);
        let (held, rss) = open_keys(&node, keys, now_ms() + 600_000).await;
        (baseline, held, rss)
    };

    let cluster = TestCluster::start(&dir.path().join("three"), 3, &[]).await.expect("cluster");
    let leader = cluster.wait_leader(&[0, 1, 2], Duration::from_secs(30)).await.expect("leader");
    let cpu3 = |c: &TestCluster| (0..3).map(|i| cpu_seconds(c.node(i))).sum::<f64>();
    let cpu_before = cpu3(&cluster);
    let (accepted3, took3) = send_events(&cluster.node(leader).grpc_url(), writes.clone(), clients).await;
    let three_events = accepted3 as f64 / took3.as_secs_f64();
    let three_cores = (cpu3(&cluster) - cpu_before) / took3.as_secs_f64();
    drop(cluster);

    println!("| figure | value |\n|---|---|");
    println!("| events/s, 1 node (ingest + Raft + meetings pack) | {one_events:.0} |");
    println!("| events/s, 3 nodes | {three_events:.0} |");
    println!(
        "| CPU the node(s) used while taking the events, 1 node / 3 nodes together (of {} cores) | {one_cores:.2} / {three_cores:.2} |",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| remote-write samples/s, same node, same run | {rw:.0} |");
    println!("| events/s ÷ remote-write samples/s (1 node) | {:.2} |", one_events / rw);
    println!(
        "| windows emitted / corrections / late events dropped (1 node) | {emitted:.0} / {corrections:.0} / {late:.0} |"
    );
    println!(
        "| watermark past a window's end → output in PromQL, p50 / p99 / max ({} probes) | {:.1} / {:.1} / {:.1} ms |",
        latencies.len(),
        pct(&latencies, 0.5),
        pct(&latencies, 0.99),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    println!("| RSS of a fresh node / with {held:.0} open window keys | {baseline:.0} / {rss:.0} MiB |");
}
