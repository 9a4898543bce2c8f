//! Snapshot transfer of a large store: make (what `get_current_snapshot` does for a follower: a
//! checkpoint of hard links, its files opened and its directory removed), stream (read in
//! openraft's chunks, as the leader sends it, into the follower's receiving file), install
//! (unpack and load into the follower's store). The network between the two is left out: it
//! adds the stream's bytes at the link's speed.
//!
//! `BENCH_SNAPSHOT_MIB` (default 1024; 4 when run by `cargo test`, as a smoke test without
//! `--bench`) sets the store's size in SST bytes. The samples have
//! random values, so that the store is as large on disk as the data it holds.
//!
//! ```sh
//! CARGO_TARGET_DIR=~/.cache/collabstream-target cargo bench -p collabstream-raft --bench snapshot
//! ```

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::Instant;

use collabstream_proto::v1;
use common::{open, write_entry};
use openraft::Entry;
use openraft::storage::RaftStateMachine;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

const SERIES: usize = 10_000;
const SAMPLES_PER_ENTRY: i64 = 50;
/// openraft's `snapshot_max_chunk_size` as the node configures it.
const CHUNK: usize = 4 << 20;

fn entry(index: u64, rng: &mut u64) -> Entry<collabstream_raft::TypeConfig> {
    let mut next = || {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *rng
    };
    let series = (0..SERIES)
        .map(|s| v1::TimeSeries {
            labels: vec![
                v1::Label { name: "__name__".into(), value: "bench_random".into() },
                v1::Label { name: "series".into(), value: s.to_string() },
            ],
            samples: (0..SAMPLES_PER_ENTRY)
                .map(|k| v1::Sample {
                    timestamp_ms: ((index as i64 - 1) * SAMPLES_PER_ENTRY + k) * 1_000,
                    value: f64::from_bits(next() >> 12 | 0x3ff0_0000_0000_0000),
                })
                .collect(),
        })
        .collect();
    write_entry(index, series)
}

/// Bytes of the files under `dir`.
fn bytes(dir: &Path) -> u64 {
    let mut all = 0;
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let m = e.metadata().expect("metadata");
        all += if m.is_dir() { bytes(&e.path()) } else { m.len() };
    }
    all
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let target: u64 = std::env::var("BENCH_SNAPSHOT_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 4 } else { 1024 })
        << 20;
    let root =
        tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| "/tmp".into())).expect("temp dir");
    let (leader, mut leader_sm) = open(&root.path().join("leader"));

    let started = Instant::now();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut index = 0u64;
    leader_sm.apply([entry(0, &mut rng)]).await.expect("apply");
    while leader.data_sst_bytes() < target {
        let entries: Vec<_> = (0..if quick { 1 } else { 8 })
            .map(|_| {
                index += 1;
                entry(index, &mut rng)
            })
            .collect();
        leader_sm.apply(entries).await.expect("apply");
        leader.checkpoint().expect("checkpoint");
    }
    let samples = index * SERIES as u64 * SAMPLES_PER_ENTRY as u64;
    eprintln!(
        "store: {:.0} MiB of SST files, {samples} samples in {index} entries, written in {:.1?}",
        mib(leader.data_sst_bytes()),
        started.elapsed()
    );

    let t = Instant::now();
    let snapshot = leader_sm.get_current_snapshot().await.expect("make").expect("a snapshot");
    let build = t.elapsed();
    let snap_dir = bytes(&root.path().join("leader/snapshots"));

    let (follower, mut follower_sm) = open(&root.path().join("follower"));
    let t = Instant::now();
    let mut data = snapshot.snapshot;
    let end = data.seek(std::io::SeekFrom::End(0)).await.expect("seek");
    let mut receiving = follower_sm.begin_receiving_snapshot().await.expect("receive");
    let mut offset = 0;
    while offset < end {
        data.seek(std::io::SeekFrom::Start(offset)).await.expect("seek");
        let mut chunk = Vec::with_capacity(CHUNK);
        while chunk.len() < chunk.capacity() {
            if data.read_buf(&mut chunk).await.expect("read") == 0 {
                break;
            }
        }
        receiving.write_all(&chunk).await.expect("write");
        offset += chunk.len() as u64;
    }
    let stream = t.elapsed();
    let t = Instant::now();
    follower_sm.install_snapshot(&snapshot.meta, receiving).await.expect("install");
    let install = t.elapsed();
    assert_eq!(follower.applied_index(), index);
    assert_eq!(follower.stats().series, leader.stats().series);

    println!("| measure | result |");
    println!("|---|---|");
    println!("| store (SST bytes of the data) | {:.0} MiB |", mib(leader.data_sst_bytes()));
    println!(
        "| make (`get_current_snapshot`): store checkpoint, then a checkpoint of hard links opened for reading | {:.2?}; left in the snapshot directory: {} bytes |",
        build, snap_dir
    );
    println!(
        "| stream: {:.0} MiB read in {} MiB chunks into the follower's file | {:.2?} ({:.0} MiB/s) |",
        mib(end),
        CHUNK >> 20,
        stream,
        mib(end) / stream.as_secs_f64()
    );
    println!("| install: unpack and load into the follower's store | {install:.2?} |");
    println!("| total | {:.2?} |", build + stream + install);
}
