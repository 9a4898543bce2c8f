//! A snapshot is the store's checkpoint streamed in place: building one links the store's
//! files instead of copying them and keeps nothing on disk, and a follower that receives it
//! chunk by chunk ends with the same data.

mod common;

use std::path::Path;

use collabstream_common::TimeRange;
use collabstream_proto::v1;
use collabstream_store::Store;
use common::{open, write_entry};
use openraft::Entry;
use openraft::storage::RaftStateMachine;
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

/// The regular files under `dir` with their sizes.
fn files(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read dir") {
        let e = e.expect("dir entry");
        let m = e.metadata().expect("metadata");
        if m.is_dir() {
            out.extend(files(&e.path()));
        } else {
            out.push((e.file_name().to_string_lossy().into_owned(), m.len()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_links_the_store_and_streams_to_a_follower() {
    let leader_dir = tempfile::tempdir().unwrap();
    let (leader, mut leader_sm) = open(leader_dir.path());
    leader_sm.apply((0..=60).map(entry)).await.expect("apply");
    let snapshot = leader_sm.get_current_snapshot().await.expect("make").expect("a snapshot");
    let store_files = files(&leader_dir.path().join("db"));
    // Nothing of it is left in the snapshot directory: its files are open in the reader.
    assert_eq!(files(&leader_dir.path().join("snapshots")), vec![], "the snapshot directory is empty");

    // Sent as openraft's chunked transport does: seek to each offset, read a chunk.
    let follower_dir = tempfile::tempdir().unwrap();
    let (follower, mut follower_sm) = open(follower_dir.path());
    let mut data = snapshot.snapshot;
    let end = data.seek(std::io::SeekFrom::End(0)).await.unwrap();
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
    // What was sent: the store's SST files as they were (a checkpoint links them; RocksDB
    // never rewrites one under its name), and a few small files.
    let sent = tempfile::tempdir().unwrap();
    let mut stream = Vec::new();
    receiving.seek(std::io::SeekFrom::Start(0)).await.unwrap();
    receiving.read_to_end(&mut stream).await.unwrap();
    assert_eq!(stream.len() as u64, end);
    collabstream_raft::unpack_archive(stream.as_slice(), sent.path()).expect("unpack");
    let sent_files = files(sent.path());
    let ssts: Vec<_> = sent_files.iter().filter(|(n, _)| n.ends_with(".sst")).collect();
    assert!(!ssts.is_empty(), "the snapshot has SST files: {sent_files:?}");
    for (name, len) in &ssts {
        assert!(
            store_files.iter().any(|(n, l)| n == name && l == len),
            "{name} ({len} bytes) is not one of the store's files: {store_files:?}"
        );
    }
    let sst_bytes: u64 = ssts.iter().map(|(_, len)| len).sum();
    let other_bytes: u64 = sent_files.iter().filter(|(n, _)| !n.ends_with(".sst")).map(|f| f.1).sum();
    assert!(sst_bytes > 5_000, "the data is in SST files ({sst_bytes} bytes)");
    assert!(end < sst_bytes + other_bytes + 4096, "the stream is the files: {end}");

    follower_sm.install_snapshot(&snapshot.meta, receiving).await.expect("install");
    assert_eq!(follower.applied_index(), 60);
    assert_eq!(samples(&follower), samples(&leader));
    assert_eq!(files(&follower_dir.path().join("snapshots")), vec![], "the installed snapshot is not kept");

    // The follower's current snapshot is its store, which it can send on in turn.
    let current = follower_sm.get_current_snapshot().await.unwrap().expect("a current snapshot");
    assert_eq!(current.meta.last_log_id, snapshot.meta.last_log_id);
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

/// The whole stream of a snapshot, as its reader gives it.
async fn stream_of(snapshot: openraft::storage::Snapshot<collabstream_raft::TypeConfig>) -> Vec<u8> {
    let mut data = snapshot.snapshot;
    let mut out = Vec::new();
    data.read_to_end(&mut out).await.expect("the snapshot streams");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_sent_again_over_a_longer_one_installs_as_sent() {
    // Two snapshots of the same id whose files differ: the same state snapshotted on two nodes
    // (or again after a compaction). The receiver got all of the longer one's chunks, then the
    // shorter one's from offset 0, as openraft's receiver writes a stream it already knows.
    let (long_dir, short_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_, mut long_sm) = open(long_dir.path());
    long_sm.apply((0..=60).map(entry)).await.expect("apply");
    let long = stream_of(long_sm.get_current_snapshot().await.unwrap().unwrap()).await;
    let (short_store, mut short_sm) = open(short_dir.path());
    short_sm.apply((0..=5).map(entry)).await.expect("apply");
    let short = short_sm.get_current_snapshot().await.unwrap().unwrap();
    let meta = short.meta.clone();
    let short = stream_of(short).await;
    assert!(long.len() > short.len() + 1000, "{} against {}", long.len(), short.len());

    let follower_dir = tempfile::tempdir().unwrap();
    let (follower, mut follower_sm) = open(follower_dir.path());
    let mut receiving = follower_sm.begin_receiving_snapshot().await.expect("receive");
    receiving.write_all(&long).await.unwrap();
    receiving.seek(std::io::SeekFrom::Start(0)).await.unwrap();
    receiving.write_all(&short).await.unwrap();
    receiving.shutdown().await.unwrap();
    follower_sm.install_snapshot(&meta, receiving).await.expect("install");
    assert_eq!(follower.applied_index(), 5);
    assert_eq!(samples(&follower), samples(&short_store));
}
