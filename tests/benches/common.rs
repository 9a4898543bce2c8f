//! What the benches share: knobs from the environment, the meetings workload as gRPC writes
//! and its sender, and `/metrics` figures. Included by each bench with `mod common;`.

#![allow(dead_code)] // each bench uses its own part

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use collabstream_proto::v1::{self, ingest_service_client::IngestServiceClient};
use collabstream_tests::Node;
use collabstream_workload::Meetings;

pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_millis() as i64
}

/// The meetings workload from `start_ms` on, one second of event time at a time, in writes of
/// `batch` events, until `events`; and the last event time.
pub fn meeting_writes(events: usize, batch: usize, start_ms: i64) -> (Vec<v1::WriteRequest>, i64) {
    let mut workload = Meetings::new(10_000, 7);
    let (mut writes, mut pending, mut n, mut t) = (Vec::new(), Vec::new(), 0, start_ms);
    while n < events {
        t += 1_000;
        for e in workload.tick(t, 1_000) {
            pending.push(e);
            n += 1;
            if pending.len() == batch {
                writes.push(v1::WriteRequest { events: std::mem::take(&mut pending), ..Default::default() });
            }
        }
    }
    if !pending.is_empty() {
        writes.push(v1::WriteRequest { events: pending, ..Default::default() });
    }
    (writes, t)
}

/// Sends `writes` from `clients` concurrent gRPC clients (client `c` sends writes `c`,
/// `c + clients`, … in order); events accepted and the time taken.
pub async fn send_events(url: &str, writes: Arc<Vec<v1::WriteRequest>>, clients: usize) -> (u64, Duration) {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (url, writes) = (url.to_string(), writes.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = IngestServiceClient::connect(url).await.expect("connect");
            let mut accepted = 0;
            for w in writes.iter().skip(c).step_by(clients) {
                accepted += client.write(w.clone()).await.expect("write").into_inner().events_accepted;
            }
            accepted
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        accepted += t.await.expect("client");
    }
    (accepted, started.elapsed())
}

/// A figure of `/metrics`, summed over its series.
pub async fn metric_sum(node: &Node, name: &str) -> f64 {
    let text = reqwest::get(node.url("/metrics")).await.expect("metrics").text().await.expect("text");
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// CPU time the node has used so far, in seconds (user and system, from /proc).
pub fn cpu_seconds(node: &Node) -> f64 {
    process_cpu_seconds(node.pid().expect("running"))
}

/// CPU time process `pid` has used so far, in seconds.
pub fn process_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name (which may hold spaces) start after its closing paren.
    let fields: Vec<&str> = stat.rsplit_once(')').expect("stat").1.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    // USER_HZ is 100 on Linux.
    ticks / 100.0
}

/// A memory figure of process `pid` from /proc (`VmRSS`: resident now, `VmHWM`: the most it
/// has held resident), in MiB.
pub fn memory_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"));
    kb / 1024.0
}

/// Windows emitted, corrections, late events dropped: the pack's figures on `/metrics`.
pub async fn windows(node: &Node) -> (f64, f64, f64) {
    (
        metric_sum(node, "collabstream_aggregation_windows_emitted_total").await,
        metric_sum(node, "collabstream_aggregation_corrections_total").await,
        metric_sum(node, "collabstream_late_events_dropped_total").await,
    )
}
