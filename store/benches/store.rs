//! Store benchmarks (`cargo bench -p collabstream-store --bench store`).
//!
//! 1. apply: node-exporter-like data, 10k series × 2 h at 15 s, in remote-write-sized batches
//!    of 2,000 series, applied on one thread as every replica applies them (encoded entries read
//!    in place): once with every series carrying its labels, once as a proposer logs them
//!    (series it knows named by id).
//! 2. disk: bytes per sample after checkpoint, flush and full compaction (whole data dir).
//!
//! The label index has its own: `--bench label_index`.
//!
//! Prints a Markdown table for docs/benchmarks.md. `BENCH_SERIES` scales it down for a quick look.

use std::path::Path;
use std::time::Instant;

use collabstream_common::TimeRange;
use collabstream_proto::log_write;
use collabstream_proto::v1;
use collabstream_store::{Matcher, Store, StoreConfig};
use collabstream_workload::NodeExporter;
use prost::Message;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            let meta = match e.metadata() {
                Ok(m) => m,
                Err(_) => continue,
            };
            total += if meta.is_dir() { dir_size(&e.path()) } else { meta.len() };
        }
    }
    total
}

fn command(write: v1::WriteRequest) -> v1::Command {
    v1::Command { leader_time_ms: 0, payload: Some(v1::command::Payload::Write(write.into())) }
}

/// `cmd` as a proposer logs it: every series `store` knows named by its id.
fn with_ids(store: &Store, cmd: &v1::Command) -> Vec<u8> {
    let Some(v1::command::Payload::Write(w)) = &cmd.payload else { unreachable!("bench writes") };
    let request =
        v1::WriteRequest { batch_id: w.batch_id.clone(), series: w.series.clone(), events: w.events.clone() };
    let known = store.known_series();
    let (write, _) = log_write::encode(&request, &mut |keys, out| known.find_raw(keys, out));
    // A command whose payload is this one write (`Command.write = 2`).
    let mut out = Vec::with_capacity(write.len() + 8);
    prost::encoding::encode_key(2, prost::encoding::WireType::LengthDelimited, &mut out);
    prost::encoding::encode_varint(write.len() as u64, &mut out);
    out.extend_from_slice(&write);
    out
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs us with no args: keep it quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let series = env_usize("BENCH_SERIES", if quick { 1_000 } else { 10_000 });
    let scrapes = if quick { 40 } else { 480 };

    println!("| benchmark | result | target |");
    println!("|---|---|---|");
    bench_apply_and_disk(series, scrapes);
}

fn bench_apply_and_disk(series: usize, scrapes: usize) {
    let mut workload = NodeExporter::new(series, 42);
    let start_ms = 1_732_780_800_000i64;
    let batches: Vec<v1::Command> = (0..scrapes)
        .flat_map(|i| workload.scrape(start_ms + i as i64 * 15_000, 15.0, 2_000))
        .map(command)
        .collect();
    let samples: usize = batches
        .iter()
        .map(|c| match &c.payload {
            Some(v1::command::Payload::Write(w)) => w.series.len(),
            Some(v1::command::Payload::Batch(b)) => b.writes.iter().map(|w| w.series.len()).sum(),
            _ => 0,
        })
        .sum();
    let encoded: Vec<Vec<u8>> = batches.iter().map(|c| c.encode_to_vec()).collect();

    // What every replica does with a committed entry: read it in place and apply it. With
    // every series sent by labels, each is looked up by its labels.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), StoreConfig::default()).expect("open");
    let t = Instant::now();
    for (i, bytes) in encoded.iter().enumerate() {
        store.apply_batch(i as u64 + 1, bytes, None).expect("apply");
    }
    let apply = t.elapsed();
    report(
        "apply of log entries carrying labels, one thread (samples/s)",
        samples as f64 / apply.as_secs_f64(),
        "(for reference)",
    );

    // What a proposer really logs: series it knows are named by id (`v1::LogSeries`), so the
    // first scrape creates the series and the later ones carry ids and samples only.
    let first_scrape = series.div_ceil(2_000);
    let ref_dir = tempfile::tempdir().expect("tempdir");
    let by_id = Store::open(ref_dir.path(), StoreConfig::default()).expect("open");
    let t = Instant::now();
    for (i, bytes) in encoded[..first_scrape].iter().enumerate() {
        by_id.apply_batch(i as u64 + 1, bytes, None).expect("apply");
    }
    let mut apply = t.elapsed();
    let named: Vec<Vec<u8>> = batches[first_scrape..].iter().map(|c| with_ids(&by_id, c)).collect();
    let t = Instant::now();
    for (i, bytes) in named.iter().enumerate() {
        by_id.apply_batch((first_scrape + i) as u64 + 1, bytes, None).expect("apply");
    }
    apply += t.elapsed();
    report(
        "apply of log entries as the proposer builds them (known series by id), one thread (samples/s)",
        samples as f64 / apply.as_secs_f64(),
        "≥ 1,000,000",
    );
    drop(by_id);

    let t = Instant::now();
    store.checkpoint().expect("checkpoint");
    store.log().purge(u64::MAX - 1).expect("purge");
    store.compact().expect("compact");
    let compact = t.elapsed();
    let stats = store.stats();
    let on_disk = dir_size(dir.path());
    println!(
        "| disk after checkpoint + compaction | {:.3} bytes/sample ({} bytes for {} samples of {} series; SST {} bytes; took {:.1?}) | ≤ 1.0 |",
        on_disk as f64 / samples as f64,
        on_disk,
        samples,
        series,
        stats.sst_bytes,
        compact
    );

    let t = Instant::now();
    let all = store.select(&[Matcher::equal("job", "node")], TimeRange::ALL).expect("select");
    let read: usize = all.iter().map(|s| s.samples.len()).sum();
    assert_eq!(read, samples, "every sample reads back");
    report(
        "select all series, all samples (samples/s)",
        read as f64 / t.elapsed().as_secs_f64(),
        "(for reference)",
    );
}

fn report(what: &str, per_sec: f64, target: &str) {
    println!("| {what} | {:.0} | {target} |", per_sec);
}
