//! `collabstream produce`: sends a synthetic workload to a node (or a cluster) with a bound on
//! count or duration and a progress bar showing the achieved rate.
//!
//! Targets: gRPC through the SDK (`http://host:9202`, or several nodes comma-separated: any
//! node takes writes, and retries move on to the next); Prometheus remote write (a URL ending
//! in `/api/v1/write`: ours, Prometheus's or VictoriaMetrics'), which carries samples only; or
//! Kafka (`kafka://host:9092,…`, or `kafka` for the brokers in `KAFKA_BOOTSTRAP_SERVERS`),
//! which carries events, each type to its topic, as the origin project's producers did.

use std::time::{Duration, Instant};

use collabstream_common::{Clock, SystemClock};
use collabstream_proto::v1;
use collabstream_sdk::{Client, ClientConfig};
use collabstream_workload::{Meetings, NodeExporter};
use tokio_util::sync::CancellationToken;

use collabstream_proto::kafka_message::{KafkaFormat, KafkaTopics};

use crate::error::Error;
use crate::kafka_producer::KafkaProducer;
use crate::progress::Progress;
use crate::remote_write::RemoteWriteClient;

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

/// Where the workload goes.
enum Sink {
    Grpc(Client),
    RemoteWrite(RemoteWriteClient),
    Kafka(KafkaProducer),
}

/// The bootstrap brokers of a `kafka://host:port,…` (or bare `kafka`) target, or `None` when
/// `target` is not a Kafka target. A target without brokers takes `KAFKA_BOOTSTRAP_SERVERS`.
fn kafka_brokers(target: &str) -> Option<Result<Vec<String>, Error>> {
    let rest = target.strip_prefix("kafka://").or_else(|| (target == "kafka").then_some(""))?;
    let list = if rest.trim_matches('/').is_empty() {
        std::env::var("KAFKA_BOOTSTRAP_SERVERS").unwrap_or_default()
    } else {
        rest.trim_matches('/').to_string()
    };
    let brokers: Vec<String> =
        list.split(',').map(str::trim).filter(|b| !b.is_empty()).map(String::from).collect();
    Some(if brokers.is_empty() {
        Err(Error::Config(
            "no Kafka brokers: use --target kafka://HOST:9092 or set KAFKA_BOOTSTRAP_SERVERS".into(),
        ))
    } else {
        Ok(brokers)
    })
}

impl Sink {
    async fn open(target: &str, workload: Workload, kafka_format: KafkaFormat) -> Result<Sink, Error> {
        if let Some(brokers) = kafka_brokers(target) {
            if workload != Workload::Meetings {
                return Err(Error::Config(
                    "Kafka carries events (the meetings workload); send node-exporter samples over gRPC or \
                     remote write"
                        .into(),
                ));
            }
            return Ok(Sink::Kafka(
                KafkaProducer::connect(brokers?, KafkaTopics::default(), kafka_format).await?,
            ));
        }
        if target.trim_end_matches('/').ends_with("/api/v1/write") {
            if workload == Workload::Meetings {
                return Err(Error::Config(
                    "the meetings workload is events, which remote write cannot carry; send it over gRPC \
                     (--target http://HOST:9202) or use --workload node-exporter"
                        .into(),
                ));
            }
            return Ok(Sink::RemoteWrite(RemoteWriteClient::new(target)?));
        }
        let endpoints: Vec<String> = target.split(',').map(|e| e.trim().to_string()).collect();
        let client = Client::connect(ClientConfig::new(endpoints))
            .map_err(|e| Error::Config(format!("bad --target {target:?}: {e}")))?;
        Ok(Sink::Grpc(client))
    }

    /// Sends one request; returns the items the target accepted.
    async fn send(&self, req: v1::WriteRequest) -> Result<u64, Error> {
        match self {
            Sink::Grpc(client) => {
                // The SDK gives each request a batch id, so its retries apply once.
                let resp = client.write(req).await.map_err(|e| Error::Produce(e.to_string()))?;
                Ok(resp.samples_accepted + resp.events_accepted)
            }
            Sink::RemoteWrite(client) => {
                let n = req.series.iter().map(|s| s.samples.len() as u64).sum();
                client.send(RemoteWriteClient::encode(&req)).await?;
                Ok(n)
            }
            Sink::Kafka(producer) => producer.send(&req.events).await,
        }
    }
}

/// What to produce and for how long.
#[derive(Debug, Clone)]
pub struct ProduceOptions {
    /// gRPC endpoints (comma-separated), a remote-write URL, or `kafka://brokers`.
    pub target: String,
    /// How events are encoded in Kafka messages.
    pub kafka_format: KafkaFormat,
    pub workload: Workload,
    /// Concurrent meetings, or series for node-exporter.
    pub size: usize,
    /// Seconds of simulated time per second of wall time (1 = real time).
    pub speed: f64,
    pub duration: Option<Duration>,
    /// Stop after this many events or samples.
    pub count: Option<u64>,
    /// Simulated time starts this far before the wall clock and runs without waiting until it
    /// has caught up.
    pub backfill: Duration,
    pub quiet: bool,
}

/// Runs until the duration or count is reached or `stop` fires; returns items sent.
pub async fn produce(opts: ProduceOptions, stop: CancellationToken) -> Result<u64, Error> {
    let sink = Sink::open(&opts.target, opts.workload, opts.kafka_format).await?;
    let clock = SystemClock;
    let started = Instant::now();
    let mut sim_ms = clock.now_ms().saturating_sub(opts.backfill.as_millis() as i64);
    let tick = Duration::from_millis(1000);
    let sim_step = (1000.0 * opts.speed.max(0.001)) as i64;
    let mut source = match opts.workload {
        Workload::Meetings => Source::Meetings(Meetings::new(opts.size, 1)),
        Workload::NodeExporter => Source::Nodes(NodeExporter::new(opts.size, 1)),
    };
    let progress = Progress::new(opts.count, opts.duration, opts.quiet);
    let mut sent = 0u64;
    let mut interval = tokio::time::interval(tick);
    // After a backfill, live ticks resume one a second (not a burst of the missed ones).
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Only a backfill runs without waiting, until it first catches up with the wall clock
    // (at a speed below 1, simulated time falls behind it for good and must not catch up).
    let mut backfilling = !opts.backfill.is_zero();
    'run: loop {
        backfilling = backfilling && sim_ms + sim_step <= clock.now_ms();
        if !backfilling {
            tokio::select! {
                _ = interval.tick() => {}
                _ = stop.cancelled() => break,
            }
        } else if stop.is_cancelled() {
            break;
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
        for req in requests {
            sent += sink.send(req).await?;
            progress.update(sent, started.elapsed());
            if opts.count.is_some_and(|c| sent >= c) || stop.is_cancelled() {
                break 'run;
            }
        }
        progress.update(sent, started.elapsed());
        if opts.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
    }
    progress.finish();
    Ok(sent)
}
