//! `collabstream bench`: the same workload against Collaborate-Stream, VictoriaMetrics 1.79 and
//! Prometheus 2.42, one after the other on loopback, in one run:
//!
//! 1. remote-write ingestion samples/s of node-exporter-like data (request bodies are built
//!    before the clock starts, so every system gets the same bytes and the sender costs the
//!    same for each);
//! 2. disk bytes per sample after each system's own flush (see [`System::compacted_bytes`]),
//!    and of the live data directory, after ingestion and the queries and again at rest
//!    ([`AT_REST`] after the last write);
//! 3. resident memory per active series after ingestion;
//! 4. PromQL range-query latency on a fixed query set over the last hour of data.
//!
//! It checks that every system holds every series and sample before measuring queries, prints
//! a Markdown table with ratios and the targets, and can replace the marked section of
//! `docs/benchmarks.md` with it.

mod queries;
mod report;
mod systems;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use collabstream_workload::{NodeExporter, SERIES_PER_HOST};

pub use report::Report;
use report::SystemResult;
pub use systems::Kind;
use systems::System;

use crate::error::Error;
use crate::remote_write::RemoteWriteClient;

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Hosts of 500 node-exporter series each.
    pub hosts: usize,
    /// Scrapes per series (samples per series).
    pub scrapes: usize,
    pub interval: Duration,
    /// Concurrent senders; each owns a slice of the hosts and sends its scrapes in order.
    pub senders: usize,
    /// Series per remote-write request.
    pub batch: usize,
    /// Runs of each query; the median is reported.
    pub query_runs: usize,
    /// Where the systems keep their data (a temporary directory when `None`).
    pub dir: Option<PathBuf>,
    /// Replace the marked section of this Markdown file with the report.
    pub update_doc: Option<PathBuf>,
    /// The command line that produced the report, recorded with it.
    pub command: String,
    /// Which systems to run (all three by default; ratios need ours and the other one).
    pub systems: Vec<Kind>,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            hosts: 40,
            scrapes: 480,
            interval: Duration::from_secs(15),
            senders: 8,
            batch: 2_000,
            query_runs: 5,
            dir: None,
            update_doc: None,
            command: "collabstream bench".into(),
            systems: vec![Kind::Collabstream, Kind::VictoriaMetrics, Kind::Prometheus],
        }
    }
}

/// Senders meet after this many scrapes, so no sender runs ahead of another by more than a
/// few minutes of data: Prometheus refuses (and drops whole requests with) samples more than
/// an hour older than the newest it has.
const SCRAPES_PER_ROUND: usize = 20;

/// How long after the last write the data directory is measured "at rest": long enough for
/// each system's background work after a burst (our log is dropped after two quiet seconds;
/// VictoriaMetrics flushes its in-memory parts every second).
pub(crate) const AT_REST: Duration = Duration::from_secs(10);

/// The encoded workload: `bodies[sender][scrape]` holds that sender's requests of that scrape.
struct Workload {
    bodies: Vec<Vec<Vec<Bytes>>>,
    samples: u64,
    series: u64,
    first_ms: i64,
    last_ms: i64,
}

fn generate(opts: &BenchOptions, now_ms: i64) -> Workload {
    let interval_ms = opts.interval.as_millis() as i64;
    // End a minute before now, on an interval boundary; every system accepts the whole span.
    let last_ms = (now_ms - 60_000).div_euclid(interval_ms) * interval_ms;
    let first_ms = last_ms - (opts.scrapes as i64 - 1) * interval_ms;
    let senders = opts.senders.clamp(1, opts.hosts.max(1));
    let mut bodies = Vec::with_capacity(senders);
    let mut samples = 0u64;
    for s in 0..senders {
        let hosts = (s * opts.hosts / senders)..((s + 1) * opts.hosts / senders);
        let mut generator = NodeExporter::hosts(hosts, 42);
        let mut per_scrape = Vec::with_capacity(opts.scrapes);
        for k in 0..opts.scrapes {
            let ts = first_ms + k as i64 * interval_ms;
            let requests = generator.scrape(ts, opts.interval.as_secs_f64(), opts.batch);
            samples += requests.iter().map(|r| r.series.len() as u64).sum::<u64>();
            per_scrape.push(requests.iter().map(RemoteWriteClient::encode).collect());
        }
        bodies.push(per_scrape);
    }
    Workload { bodies, samples, series: (opts.hosts * SERIES_PER_HOST) as u64, first_ms, last_ms }
}

/// Sends the whole workload to `url`.
async fn ingest(url: &str, w: &Workload) -> Result<(), Error> {
    let client = RemoteWriteClient::new(url)?;
    let scrapes = w.bodies.first().map_or(0, Vec::len);
    for round in (0..scrapes).step_by(SCRAPES_PER_ROUND) {
        let end = (round + SCRAPES_PER_ROUND).min(scrapes);
        let mut tasks = Vec::with_capacity(w.bodies.len());
        for sender in &w.bodies {
            let client = client.clone();
            let bodies: Vec<Bytes> = sender[round..end].iter().flatten().cloned().collect();
            tasks.push(tokio::spawn(async move {
                for body in bodies {
                    client.send(body).await?;
                }
                Ok::<_, Error>(())
            }));
        }
        for t in tasks {
            t.await.map_err(|e| Error::Bench(e.to_string()))??;
        }
    }
    Ok(())
}

/// Runs the benchmark; progress goes to stderr.
pub async fn bench(opts: BenchOptions) -> Result<Report, Error> {
    let tmp = tempfile::Builder::new()
        .prefix("collabstream-bench-")
        .tempdir()
        .map_err(|e| Error::Bench(e.to_string()))?;
    let root = opts.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let t = Instant::now();
    let workload = generate(&opts, now_ms);
    let body_bytes: usize = workload.bodies.iter().flatten().flatten().map(Bytes::len).sum();
    eprintln!(
        "workload: {} series × {} scrapes = {} samples in {} remote-write requests ({:.1} MiB), built in {:.1?}",
        workload.series,
        opts.scrapes,
        workload.samples,
        workload.bodies.iter().flatten().map(Vec::len).sum::<usize>(),
        body_bytes as f64 / (1 << 20) as f64,
        t.elapsed()
    );
    let months = months(workload.first_ms, workload.last_ms);
    let query_set = queries::query_set();
    let mut results = Vec::new();
    for &kind in &opts.systems {
        eprintln!("{}: starting", kind.name());
        let dir = root.join(format!("{kind:?}").to_lowercase());
        let mut system = System::start(kind, &dir).await?;
        let idle_rss = system.memory().0;
        // Timed until the data is queryable, not only acknowledged (VictoriaMetrics acknowledges
        // first and makes data searchable within a second; the flush call ends that wait).
        let started = Instant::now();
        ingest(&system.write_url(), &workload).await?;
        system.make_queryable().await?;
        let ingest_time = started.elapsed();
        let ingest_done = Instant::now();
        eprintln!(
            "{}: ingested {} samples in {:.1?} ({:.0} samples/s)",
            kind.name(),
            workload.samples,
            ingest_time,
            workload.samples as f64 / ingest_time.as_secs_f64()
        );
        queries::verify(&system, &workload_check(&workload, &opts)).await?;
        let (rss, peak_rss) = system.memory();
        let timings = queries::run(&system, &query_set, workload.last_ms, opts.query_runs).await?;
        let live = system.live_bytes();
        // Writes stopped before the queries; each system gets the same time at rest.
        tokio::time::sleep(AT_REST.saturating_sub(ingest_done.elapsed())).await;
        let rest = system.live_bytes();
        let compacted = system.compacted_bytes(&months).await?;
        eprintln!(
            "{}: {:.2} bytes/sample compacted, {:.2} live after ingestion, {:.2} at rest",
            kind.name(),
            compacted as f64 / workload.samples as f64,
            live as f64 / workload.samples as f64,
            rest as f64 / workload.samples as f64
        );
        system.stop();
        results.push(SystemResult {
            kind,
            samples_per_s: workload.samples as f64 / ingest_time.as_secs_f64(),
            compacted_bytes: compacted,
            live_bytes: live,
            rest_bytes: rest,
            rss,
            peak_rss,
            idle_rss,
            queries: timings,
        });
    }
    let report = Report {
        samples: workload.samples,
        series: workload.series,
        scrapes: opts.scrapes,
        senders: workload.bodies.len(),
        batch: opts.batch,
        query_runs: opts.query_runs,
        command: opts.command.clone(),
        results,
    };
    if let Some(doc) = &opts.update_doc {
        report.update_doc(doc)?;
    }
    Ok(report)
}

/// What every system must hold before it is measured.
pub(crate) struct Check {
    pub(crate) series: u64,
    pub(crate) scrapes: usize,
    pub(crate) last_ms: i64,
    pub(crate) span: Duration,
}

fn workload_check(w: &Workload, opts: &BenchOptions) -> Check {
    Check {
        series: w.series,
        scrapes: opts.scrapes,
        last_ms: w.last_ms,
        span: opts.interval * opts.scrapes as u32,
    }
}

/// VictoriaMetrics' monthly partitions (`2026_11`) that the data falls in.
fn months(first_ms: i64, last_ms: i64) -> Vec<String> {
    let month = |ms: i64| {
        let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        format!("{}_{:02}", t.year(), u8::from(t.month()))
    };
    let mut out = vec![month(first_ms)];
    if month(last_ms) != out[0] {
        out.push(month(last_ms));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_is_split_into_disjoint_in_order_senders() {
        let opts = BenchOptions { hosts: 3, scrapes: 4, senders: 2, batch: 400, ..Default::default() };
        let w = generate(&opts, 1_800_000_000_000);
        assert_eq!(w.bodies.len(), 2);
        assert_eq!(w.series, 1_500);
        assert_eq!(w.samples, 1_500 * 4);
        assert_eq!(w.last_ms - w.first_ms, 3 * 15_000);
        assert_eq!(w.last_ms % 15_000, 0);
        // Sender 0 has host 0 (500 series → 2 requests of ≤ 400), sender 1 hosts 1 and 2.
        assert_eq!(w.bodies[0][0].len(), 2);
        assert_eq!(w.bodies[1][0].len(), 3);
    }

    #[test]
    fn months_cover_the_span() {
        // 2026-11-30T23:00Z to 2026-12-01T01:00Z.
        assert_eq!(months(1_796_079_600_000, 1_796_086_800_000), ["2026_11", "2026_12"]);
        assert_eq!(months(1_796_079_600_000, 1_796_079_600_000), ["2026_11"]);
    }
}
