//! A snapshot is the store's checkpoint streamed in place: building one links the store's
//! files instead of copying them, and a follower that receives it chunk by chunk ends with
//! the same data.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use collabstream_common::TimeRange;
use collabstream_proto::v1;
use collabstream_store::Store;
use common::{open, write_entry};
use openraft::storage::RaftStateMachine;
use openraft::{Entry, RaftSnapshotBuilder};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

fn entry(index: u64) -> Entry<collabstream_raft::TypeConfig> {
    let series = (0..200)
        .map(|s| v1::TimeSeries {
            labels: vec![
                v1::Label { name: "__name__".into(), value: "bytes_total".into() },
                v1::Label { name: "instance".into(), value: format!("host-{s}") },
            ],
            samples: (0..20)
                .map(|k| v1::Sample {
                    timestamp_ms: (index as i64 * 20 + k) * 15_000,
                    value: ((index * 20 + k as u64) * 7919 % 104_729) as f64,
                })
                .collect(),
        })
        .collect();
    write_entry(index, series)
}

fn samples(store: &Store) -> Vec<(String, Vec<(i64, f64)>)> {
    let series = store.select(&[], TimeRange::ALL).expect("select");
    series
        .into_iter()
        .map(|s| (s.labels.to_string(), s.samples.iter().map(|x| (x.timestamp_ms, x.value)).collect()))
        .collect()
}

/// The regular files under `dir` with their link counts.
fn files(dir: &Path) -> Vec<(String, u64, u64)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read dir") {
        let e = e.expect("dir entry");
        let m = e.metadata().expect("metadata");
        if m.is_dir() {
            out.extend(files(&e.path()));
        } else {
            out.push((e.file_name().to_string_lossy().into_owned(), m.len(), m.nlink()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_links_the_store_and_streams_to_a_follower() {
    let leader_dir = tempfile::tempdir().unwrap();
    let (leader, mut leader_sm) = open(leader_dir.path());
    leader_sm.apply((0..=60).map(entry)).await.expect("apply");
    let snapshot = leader_sm.get_snapshot_builder().await.build_snapshot().await.expect("build");

    // Every SST file of the snapshot is the store's own file, linked, not a copy.
    let snap_files = files(&leader_dir.path().join("snapshots"));
    let ssts: Vec<_> = snap_files.iter().filter(|(n, _, _)| n.ends_with(".sst")).collect();
    assert!(!ssts.is_empty(), "the snapshot has SST files: {snap_files:?}");
    for (name, len, links) in &ssts {
        assert!(*links >= 2, "{name} ({len} bytes) was copied into the snapshot, not linked");
    }
    let sst_bytes: u64 = ssts.iter().map(|(_, len, _)| len).sum();
    let other_bytes: u64 = snap_files.iter().filter(|(n, _, _)| !n.ends_with(".sst")).map(|f| f.1).sum();
    assert!(sst_bytes > 5_000, "the data is in SST files ({sst_bytes} bytes)");

    // Sent as openraft's chunked transport does: seek to each offset, read a chunk.
    let follower_dir = tempfile::tempdir().unwrap();
    let (follower, mut follower_sm) = open(follower_dir.path());
    let mut data = snapshot.snapshot;
    let end = data.seek(std::io::SeekFrom::End(0)).await.unwrap();
    assert!(end >= sst_bytes && end < sst_bytes + other_bytes + 4096, "the stream is the files: {end}");
    let mut receiving = follower_sm.begin_receiving_snapshot().await.expect("receive");
    let mut offset = 0;
    while offset < end {
        data.seek(std::io::SeekFrom::Start(offset)).await.unwrap();
        let mut chunk = Vec::with_capacity(40_000);
        while chunk.len() < chunk.capacity() {
            if data.read_buf(&mut chunk).await.unwrap() == 0 {
                break;
            }
        }
        receiving.write_all(&chunk).await.unwrap();
        offset += chunk.len() as u64;
    }
    follower_sm.install_snapshot(&snapshot.meta, receiving).await.expect("install");
    assert_eq!(follower.applied_index(), 60);
    assert_eq!(samples(&follower), samples(&leader));

    // The follower keeps what it received as its current snapshot, to send on in turn.
    let current = follower_sm.get_current_snapshot().await.unwrap().expect("a current snapshot");
    assert_eq!(current.meta.snapshot_id, snapshot.meta.snapshot_id);
    let mut again = current.snapshot;
    let mut resent = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = again.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        resent += n as u64;
    }
    assert!(resent >= sst_bytes, "the follower's copy streams whole: {resent}");
}
