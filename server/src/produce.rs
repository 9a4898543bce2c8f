//! `collabstream produce`: sends a synthetic workload to a node over gRPC, with a bound on
//! count or duration and a progress line showing the achieved rate.

use std::time::{Duration, Instant};

use collabstream_common::{Clock, SystemClock};
use collabstream_proto::v1::{self, ingest_service_client::IngestServiceClient};
use collabstream_workload::{Meetings, NodeExporter};
use tokio_util::sync::CancellationToken;

use crate::error::Error;

/// Which workload to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Meetings: joins, leaves, chats, reactions, quality reports.
    Meetings,
    /// Node-exporter-like samples.
    NodeExporter,
}

/// The generator behind a [`Workload`].
enum Source {
    Meetings(Meetings),
    Nodes(NodeExporter),
}

/// What to produce and for how long.
#[derive(Debug, Clone)]
pub struct ProduceOptions {
    pub target: String,
    pub workload: Workload,
    /// Concurrent meetings, or series for node-exporter.
    pub size: usize,
    /// Seconds of simulated time per second of wall time (1 = real time).
    pub speed: f64,
    pub duration: Option<Duration>,
    /// Stop after this many events or samples.
    pub count: Option<u64>,
    pub quiet: bool,
}

/// Runs until the duration or count is reached or `stop` fires; returns items sent.
pub async fn produce(opts: ProduceOptions, stop: CancellationToken) -> Result<u64, Error> {
    let mut client = IngestServiceClient::connect(opts.target.clone())
        .await
        .map_err(|source| Error::Connect { target: opts.target.clone(), source })?;
    let clock = SystemClock;
    let started = Instant::now();
    let mut sim_ms = clock.now_ms();
    let tick = Duration::from_millis(1000);
    let sim_step = (1000.0 * opts.speed.max(0.001)) as i64;
    let mut source = match opts.workload {
        Workload::Meetings => Source::Meetings(Meetings::new(opts.size, 1)),
        Workload::NodeExporter => Source::Nodes(NodeExporter::new(opts.size, 1)),
    };
    let mut sent = 0u64;
    let mut seq = 0u64;
    let run_id = format!("produce-{}-{}", std::process::id(), clock.now_ms());
    let mut interval = tokio::time::interval(tick);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.cancelled() => break,
        }
        sim_ms += sim_step;
        let requests: Vec<v1::WriteRequest> = match &mut source {
            Source::Meetings(meetings) => meetings
                .tick(sim_ms, sim_step)
                .chunks(5_000)
                .map(|c| v1::WriteRequest { events: c.to_vec(), ..Default::default() })
                .collect(),
            Source::Nodes(nodes) => nodes.scrape(sim_ms, sim_step as f64 / 1000.0, 2_000),
        };
        for mut req in requests {
            seq += 1;
            // A batch id makes a retry (after a timeout, or against another node) apply once.
            req.batch_id = format!("{run_id}-{seq}");
            let resp = client.write(req).await.map_err(Error::Write)?.into_inner();
            sent += resp.events_accepted + resp.samples_accepted;
        }
        let elapsed = started.elapsed();
        if !opts.quiet {
            eprint!(
                "\r{} sent, {:.0}/s over {:.0?}   ",
                sent,
                sent as f64 / elapsed.as_secs_f64().max(1e-3),
                elapsed
            );
        }
        if opts.duration.is_some_and(|d| elapsed >= d) || opts.count.is_some_and(|c| sent >= c) {
            break;
        }
    }
    if !opts.quiet {
        eprintln!();
    }
    Ok(sent)
}
