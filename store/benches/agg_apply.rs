//! Apply's cost per event with the meetings pack (`cargo bench -p collabstream-store --bench agg_apply`).
//!
//! The aggregation bench (`collabstream-tests --bench aggregation`) measures events/s through
//! gRPC, Raft and apply together, and found apply's thread busy all the time: this one takes
//! apply alone, as every replica runs it (one thread, and the rules shared out among threads
//! for each write), so that a change to the window engine can be measured in seconds and
//! profiled without a cluster around it. The same store, the
//! same log entries (the `meetings` workload in writes of 5,000 events, a tick a second of
//! event time, a checkpoint every 50 writes as the node's snapshots ask for under load), once
//! with the pack and once without, so the pack's own share is the difference.
//!
//! The entries are applied out of order, each group of 16 reversed (an entry arrives up to 15
//! entries, about 7 s of event time, late), as the node's clients interleave their writes: the
//! pack's corrections happen as they do there. A last row prints what the pack emitted and a
//! digest of every output sample, so that two builds can be checked to give the same outputs.
//!
//! `BENCH_EVENTS` (default 1,000,000; 50,000 under `cargo test --benches`); `BENCH_THREADS`,
//! the threads apply shares the rules among (`store.aggregation_threads`; default 0, one a
//! core).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use collabstream_common::TimeRange;

use collabstream_proto::v1;
use collabstream_store::{MatchOp, Matcher, Settings, Store, StoreConfig};
use collabstream_workload::Meetings;
use prost::Message;

/// The server's allocator (server/src/main.rs): apply allocates and frees per event, and
/// glibc's malloc would make that look dearer than it is in the node.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs us with no args: keep it quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let events = env_usize("BENCH_EVENTS", if quick { 50_000 } else { 1_000_000 });
    let entries = meeting_entries(events, 5_000);
    let threads = match env_usize("BENCH_THREADS", 0) {
        0 => format!("{} threads (one a core)", std::thread::available_parallelism().map_or(1, |n| n.get())),
        n => format!("{n} thread(s)"),
    };
    println!(
        "| apply, the rules on {threads}, {events} events of the meetings workload | events/s | µs an event | CPU µs an event |"
    );
    println!("|---|---:|---:|---:|");
    let (without, _) = run(&entries, events, false);
    let (with, outputs) = run(&entries, events, true);
    let per_event = |s: f64| s * 1e6 / events as f64;
    for (what, t) in [("without the meetings pack", &without), ("with the meetings pack (six rules)", &with)]
    {
        println!(
            "| {what} | {:.0} | {:.2} | {:.2} |",
            events as f64 / t.wall.as_secs_f64(),
            per_event(t.wall.as_secs_f64()),
            per_event(t.cpu)
        );
    }
    println!(
        "| the pack's own share | | {:.2} | {:.2} |",
        per_event(with.wall.as_secs_f64() - without.wall.as_secs_f64()),
        per_event(with.cpu - without.cpu)
    );
    println!(
        "| what the pack emitted (windows / corrections / late dropped / digest of the outputs) | {outputs} | | |"
    );
}

/// The log entries after the settings: writes of `batch` events with a tick for every second
/// of event time (the leader's clock following the events), then put out of order in groups
/// of 16.
fn meeting_entries(events: usize, batch: usize) -> Vec<Vec<u8>> {
    let mut workload = Meetings::new(10_000, 7);
    let (mut out, mut pending, mut n, mut t) = (Vec::new(), Vec::new(), 0, 1_764_547_200_000i64);
    let write = |events: Vec<v1::Event>| v1::Command {
        leader_time_ms: 0,
        payload: Some(v1::command::Payload::Write(v1::WriteRequest { events, ..Default::default() }.into())),
    };
    while n < events {
        t += 1_000;
        for e in workload.tick(t, 1_000) {
            if n == events {
                break;
            }
            pending.push(e);
            n += 1;
            if pending.len() == batch {
                out.push(write(std::mem::take(&mut pending)).encode_to_vec());
            }
        }
        let tick = v1::Command { leader_time_ms: t, payload: Some(v1::command::Payload::Tick(v1::Tick {})) };
        out.push(tick.encode_to_vec());
    }
    if !pending.is_empty() {
        out.push(write(pending).encode_to_vec());
    }
    // Clients that overtake each other: an entry arrives up to 15 entries late (writes and
    // ticks, about 7 s of event time, past the pack's 5 s of out-of-orderness).
    for group in out.chunks_mut(16) {
        group.reverse();
    }
    out
}

/// How long apply took, and the CPU time the process used meanwhile (every thread: apply's,
/// the rules', RocksDB's flushes and compactions): what apply costs the machine, which the
/// node's other work (ingest, the log) shares with it.
struct Took {
    wall: Duration,
    cpu: f64,
}

/// CPU time this process has used, in seconds (`/proc/self/stat`, in ticks of 10 ms).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("stat");
    let fields: Vec<&str> = stat.rsplit_once(')').expect("stat").1.split_whitespace().collect();
    let ticks = |i: usize| fields[i].parse::<f64>().expect("ticks");
    (ticks(11) + ticks(12)) / 100.0
}

/// Applies `entries` to a new store, checkpointing every 50 writes; the time apply took
/// (checkpoints included: apply waits for their capture in the node too), and what the rules
/// emitted with a digest of the output series.
fn run(entries: &[Vec<u8>], events: usize, meetings_pack: bool) -> (Took, String) {
    let config = StoreConfig {
        meetings_pack,
        aggregation_threads: env_usize("BENCH_THREADS", 0),
        ..StoreConfig::default()
    };
    let settings = v1::Command {
        leader_time_ms: 0,
        payload: Some(v1::command::Payload::Settings(Settings::from_config(&config).to_proto())),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), config).expect("open");
    store.apply_batch(1, &settings.encode_to_vec(), None).expect("settings");
    let (mut writes, mut accepted) = (0, 0);
    let (started, cpu_before) = (Instant::now(), cpu_seconds());
    for (i, entry) in entries.iter().enumerate() {
        let outcomes = store.apply_batch(i as u64 + 2, entry, None).expect("apply");
        let events: u64 = outcomes.iter().map(|o| o.events_accepted).sum();
        if events > 0 {
            accepted += events;
            writes += 1;
            if writes % 50 == 0 {
                store.checkpoint().expect("checkpoint");
            }
        }
    }
    let took = Took { wall: started.elapsed(), cpu: cpu_seconds() - cpu_before };
    assert_eq!(accepted as usize, events, "every event applied");
    let stats = store.aggregation_stats();
    let sum = |f: fn(&collabstream_store::RuleStats) -> u64| stats.iter().map(f).sum::<u64>();
    let mut digest = DefaultHasher::new();
    let outputs = [Matcher::new(MatchOp::Regex, "__name__", "meeting_.*").expect("matcher")];
    for s in store.select(&outputs, TimeRange::ALL).expect("select") {
        s.labels.to_string().hash(&mut digest);
        for x in &s.samples {
            (x.timestamp_ms, x.value.to_bits()).hash(&mut digest);
        }
    }
    let emitted = format!(
        "{} / {} / {} / {:016x}",
        sum(|r| r.emitted),
        sum(|r| r.corrections),
        sum(|r| r.late_dropped),
        digest.finish()
    );
    (took, emitted)
}
