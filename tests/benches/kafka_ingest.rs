//! Kafka to visible aggregates on one node, next to the same events over gRPC in the same
//! run: the meetings workload (10,000 concurrent meetings, through the meetings pack), sent
//! once by gRPC clients to a fresh node, and once produced (as JSON, keyed by meeting) into the
//! three event topics of a tansu broker on loopback, then consumed by another fresh node.
//!
//! `cargo bench -p collabstream-tests --bench kafka_ingest` (with a release `collabstream`:
//! `cargo build --release -p collabstream-server`, found next to the bench binary or at
//! `$COLLABSTREAM_BIN`; tansu from `scripts/install-tansu.sh`). Knobs: `BENCH_EVENTS` (default
//! 1,000,000), `BENCH_CLIENTS` (gRPC clients, default 8), `BENCH_BATCH` (events a gRPC write,
//! default 5,000), `BENCH_PARTITIONS` (per topic, default 3), `BENCH_KAFKA_CONFIG` (more
//! `[kafka]` keys, `;`-separated, e.g. `align_within = "1h"`). `cargo test --benches` runs it
//! small, as a smoke test.
//!
//! The Kafka figure is timed from the first consumed event being applied until the last one
//! is (`collabstream_kafka_events_total`, counted once a batch is applied, polled every 100 ms;
//! more often, the scrapes themselves slow the node: `/metrics` walks every series' head):
//! the node's start and its first fetch are left out, as the gRPC figure leaves out the
//! clients' connections. Applied means visible: apply updates the windows and writes the
//! outputs of those it closes in the same batch.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use collabstream_proto::kafka_message::KafkaTopics;
use collabstream_tests::{KafkaBroker, Node};
use common::{
    cpu_seconds, env_usize, meeting_writes, memory_mib, metric_sum, now_ms, process_cpu_seconds, send_events,
    windows,
};

/// Every event of `writes` into its topic, as our producer would send it; the time taken.
async fn produce(
    broker: &KafkaBroker,
    writes: &[collabstream_proto::v1::WriteRequest],
    partitions: i32,
) -> Duration {
    for t in KafkaTopics::default().all() {
        broker.create_topic(t, partitions).await;
    }
    let started = Instant::now();
    let events: Vec<_> = writes.iter().flat_map(|w| w.events.iter().cloned()).collect();
    broker.produce_events(&events, partitions).await;
    started.elapsed()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let events = env_usize("BENCH_EVENTS", if quick { 20_000 } else { 1_000_000 });
    let clients = env_usize("BENCH_CLIENTS", if quick { 2 } else { 8 });
    let batch = env_usize("BENCH_BATCH", if quick { 1_000 } else { 5_000 });
    let partitions = env_usize("BENCH_PARTITIONS", 3) as i32;
    let (writes, _) = meeting_writes(events, batch, now_ms() - 3_600_000);
    let writes = Arc::new(writes);
    let events = writes.iter().map(|w| w.events.len()).sum::<usize>();
    let dir = tempfile::tempdir().expect("tempdir");

    let node = Node::start(&dir.path().join("grpc"), &[]).expect("node");
    let cpu = cpu_seconds(&node);
    let (accepted, took) = send_events(&node.grpc_url(), writes.clone(), clients).await;
    assert_eq!(accepted as usize, events, "every event accepted over gRPC");
    let grpc = events as f64 / took.as_secs_f64();
    let grpc_cores = (cpu_seconds(&node) - cpu) / took.as_secs_f64();
    let grpc_windows = windows(&node).await;
    let grpc_rss = memory_mib(node.pid().expect("running"), "VmHWM");
    drop(node);

    let broker = KafkaBroker::start(dir.path()).expect("tansu (scripts/install-tansu.sh)");
    let produced_in = produce(&broker, &writes, partitions).await;
    let config = dir.path().join("kafka.toml");
    let extra = std::env::var("BENCH_KAFKA_CONFIG").unwrap_or_default().replace(';', "\n");
    std::fs::write(&config, format!("[kafka]\nbrokers = [\"{}\"]\n{extra}\n", broker.addr()))
        .expect("config");
    let node =
        Node::start(&dir.path().join("kafka"), &["--config", config.to_str().expect("utf-8")]).expect("node");
    let deadline = Instant::now() + Duration::from_secs(if quick { 120 } else { 1_800 });
    let mut first = None;
    let (mut node_cpu, mut broker_cpu) = (0.0, 0.0);
    let took = loop {
        let applied = metric_sum(&node, "collabstream_kafka_events_total").await;
        if applied > 0.0 && first.is_none() {
            first = Some(Instant::now());
            (node_cpu, broker_cpu) = (cpu_seconds(&node), process_cpu_seconds(broker.pid()));
        }
        if applied as usize >= events {
            break first.expect("seen").elapsed();
        }
        assert!(Instant::now() < deadline, "only {applied} of {events} events consumed in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let kafka = events as f64 / took.as_secs_f64();
    let node_cores = (cpu_seconds(&node) - node_cpu) / took.as_secs_f64();
    let broker_cores = (process_cpu_seconds(broker.pid()) - broker_cpu) / took.as_secs_f64();
    let kafka_windows = windows(&node).await;
    let kafka_rss = memory_mib(node.pid().expect("running"), "VmHWM");
    let poison = metric_sum(&node, "collabstream_kafka_poison_messages_total").await;
    assert_eq!(poison, 0.0, "every message an event");
    drop(node);
    drop(broker);

    println!("{events} events of the meetings workload, {partitions} partitions a topic");
    println!("| figure | value |\n|---|---|");
    println!("| events/s over gRPC ({clients} clients, {batch} a write), 1 node | {grpc:.0} |");
    println!("| events/s from Kafka to applied aggregates, 1 node | {kafka:.0} |");
    println!("| Kafka ÷ gRPC | {:.2} |", kafka / grpc);
    println!(
        "| cores used: node over gRPC / node over Kafka + broker (of {}) | {grpc_cores:.2} / {node_cores:.2} + {broker_cores:.2} |",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "| windows emitted / corrections / late events dropped, gRPC | {:.0} / {:.0} / {:.0} |",
        grpc_windows.0, grpc_windows.1, grpc_windows.2
    );
    println!(
        "| windows emitted / corrections / late events dropped, Kafka | {:.0} / {:.0} / {:.0} |",
        kafka_windows.0, kafka_windows.1, kafka_windows.2
    );
    println!("| peak RSS of the node, gRPC / Kafka | {grpc_rss:.0} / {kafka_rss:.0} MiB |");
    println!("| (producing them into tansu took) | {:.1} s |", produced_in.as_secs_f64());
}
