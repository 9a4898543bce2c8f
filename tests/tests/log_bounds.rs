//! The replicated log is kept to a size in bytes: a node snapshots once its log holds
//! `snapshot_after_bytes` and drops it behind the snapshot but for `keep_bytes`, and what it
//! dropped is still there after a restart.

use std::time::Duration;

use collabstream_proto::v1::ingest_service_client::IngestServiceClient;
use collabstream_proto::v1::{self, StatusRequest, admin_service_client::AdminServiceClient};
use collabstream_tests::{Node, TestCluster, wait_until};

const SERIES: usize = 200;
const WRITES: i64 = 60;
/// Samples per series per write. Series the node knows travel in the log by id (about four
/// bytes a sample here: a time step and a small integer), so it is samples, not labels, that
/// make the entries big here.
const PER_WRITE: i64 = 15;

fn write(k: i64) -> v1::WriteRequest {
    v1::WriteRequest {
        series: (0..SERIES)
            .map(|s| v1::TimeSeries {
                labels: vec![
                    v1::Label { name: "__name__".into(), value: "bounded_total".into() },
                    v1::Label { name: "padding".into(), value: format!("{s:0>120}") },
                ],
                samples: (0..PER_WRITE)
                    .map(|j| {
                        let n = k * PER_WRITE + j;
                        v1::Sample { timestamp_ms: 1_732_780_800_000 + n * 1000, value: n as f64 }
                    })
                    .collect(),
            })
            .collect(),
        ..Default::default()
    }
}

async fn status(node: &Node) -> Option<v1::StatusResponse> {
    let mut admin = AdminServiceClient::connect(node.grpc_url()).await.ok()?;
    Some(admin.status(StatusRequest {}).await.ok()?.into_inner())
}

/// Entries in the log past its purge point.
fn kept(s: &v1::StatusResponse) -> u64 {
    s.last_log_index.unwrap_or(0) - s.purged_index.unwrap_or(0)
}

/// Waits up to 20 s for the log to be dropped to its last `most` entries.
async fn dropped_to(node: &Node, most: u64) -> v1::StatusResponse {
    wait_until(Duration::from_secs(20), || async {
        let s = status(node).await?;
        (s.purged_index.unwrap_or(0) > 0 && kept(&s) <= most).then_some(s)
    })
    .await
    .unwrap_or_else(|| panic!("the log was never dropped to {most} entries; the node's log:\n{}", node.log()))
}

/// A config file in `dir` with `[raft]` settings `raft` and entry counts that never snapshot
/// (bytes do here), and its path.
fn raft_config(dir: &std::path::Path, raft: &str) -> String {
    let cfg = dir.join("raft.toml");
    std::fs::write(&cfg, format!("[raft]\nsnapshot_after_entries = 1000000\n{raft}\n")).expect("config");
    cfg.to_str().expect("utf-8").to_string()
}

/// A node in `dir` with `[raft]` settings `raft`, sent `WRITES` writes, and a client on it.
async fn written_node(
    dir: &std::path::Path,
    raft: &str,
) -> (Node, IngestServiceClient<tonic::transport::Channel>) {
    let cfg = raft_config(dir, raft);
    let node = Node::start(&dir.join("node"), &["--config", &cfg]).expect("node starts");
    let mut client = IngestServiceClient::connect(node.grpc_url()).await.expect("connect");
    for k in 0..WRITES {
        client.write(write(k)).await.expect("write");
    }
    (node, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_dropped_behind_a_snapshot_once_it_outgrows_its_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Each write is ~12 KiB in the log once its series are known (the first ~35 KiB).
    let cfg = raft_config(dir.path(), "snapshot_after_bytes = 524288\nkeep_bytes = 131072");
    let data = dir.path().join("node");
    let mut node = Node::start(&data, &["--config", &cfg]).expect("node starts");
    let mut client = IngestServiceClient::connect(node.grpc_url()).await.expect("connect");
    for k in 0..WRITES {
        client.write(write(k)).await.expect("write");
    }
    // Entries of ~30 KiB: once the node has caught up with its bound (it checks every second,
    // and a purge stops at the snapshot, which may trail the last entry), what stays is under
    // snapshot_after_bytes + keep_bytes (640 KiB, about 20 entries), not the ~2 MiB written.
    let purged = wait_until(Duration::from_secs(30), || async {
        let s = status(&node).await?;
        (s.purged_index.unwrap_or(0) > 0 && kept(&s) <= 20).then_some(s)
    })
    .await
    .unwrap_or_else(|| panic!("the log was never purged to its bound; the node's log:\n{}", node.log()));
    assert!(purged.snapshot_index.unwrap_or(0) >= purged.purged_index.unwrap_or(0), "{purged:?}");

    node.terminate(Duration::from_secs(30)).expect("stops");
    let node = Node::start(&data, &["--config", &cfg]).expect("restarts");
    let exported = node.export("bounded_total").await;
    assert_eq!(exported.len(), SERIES);
    assert!(
        exported.values().all(|samples| samples.len() == (WRITES * PER_WRITE) as usize),
        "every sample survives the restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_writes_stop_drops_its_log_up_to_a_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Bounds far above what is written: only the idle rule can drop anything.
    let (node, _) = written_node(dir.path(), "snapshot_after_bytes = 1073741824").await;
    // ~2 MiB of log; two quiet seconds later it is dropped up to the snapshot, all but the
    // last entry or two.
    let purged = dropped_to(&node, 2).await;
    assert!(purged.snapshot_index.unwrap_or(0) >= purged.purged_index.unwrap_or(0), "{purged:?}");
    assert_eq!(node.export("bounded_total").await.len(), SERIES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_alone_keeps_no_log_behind_its_snapshot_while_written_to() {
    let dir = tempfile::tempdir().expect("tempdir");
    // keep_bytes far above what is written: a node that kept it would drop nothing until its
    // writes stopped, and they do not stop here until the log was dropped.
    let cfg = raft_config(dir.path(), "snapshot_after_bytes = 524288\nkeep_bytes = 1073741824");
    let node = Node::start(&dir.path().join("node"), &["--config", &cfg]).expect("node starts");
    let mut client = IngestServiceClient::connect(node.grpc_url()).await.expect("connect");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut dropped = None;
    // Bounded in writes and time; a write every few milliseconds leaves no quiet second, so the
    // idle rule never applies.
    for k in 0..2_000 {
        client.write(write(k)).await.expect("write");
        if k % 10 == 0
            && let Some(s) = status(&node).await
            && s.purged_index.unwrap_or(0) > 0
        {
            dropped = Some(s);
            break;
        }
        if std::time::Instant::now() > deadline {
            break;
        }
    }
    let s = dropped.unwrap_or_else(|| panic!("the log was never dropped; the node's log:\n{}", node.log()));
    assert!(s.snapshot_index.unwrap_or(0) >= s.purged_index.unwrap_or(0), "{s:?}");
}

/// Bytes of RocksDB's WAL files in a node's data directory: the store's database's and the
/// log's (`db/log/`).
fn wal_bytes(data: &std::path::Path) -> u64 {
    [data.join("db"), data.join("db").join("log")]
        .iter()
        .flat_map(|d| std::fs::read_dir(d).expect("the node's databases"))
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_quiet_after_a_burst_gives_back_its_wal() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The bound is crossed while writing, then the last writes leave less in the log than the
    // idle rule's 1 MiB.
    let (node, mut client) = written_node(dir.path(), "snapshot_after_bytes = 524288").await;
    let data = dir.path().join("node");
    // The bound's purges (each flushes what the WAL holds) until the log is dropped; then a
    // few writes more (~12 KB each), until the WAL holds over 64 KiB: under the idle rule's
    // 1 MiB of log and the 512 KiB bound, over the 64 KiB written since the node was last
    // quiet that also settle it.
    dropped_to(&node, 2).await;
    let mut held = 0;
    for k in WRITES..WRITES + 20 {
        client.write(write(k)).await.expect("write");
        held = wal_bytes(&data);
        if held > 64 << 10 {
            break;
        }
    }
    assert!(held > 64 << 10, "the last writes are in the WAL: {held} bytes");
    // Two quiet seconds, a snapshot and a purge; the tick entries written meanwhile are small.
    let settled = wait_until(Duration::from_secs(20), || async {
        let wal = wal_bytes(&data);
        (wal < 64 << 10).then_some(wal)
    })
    .await;
    assert!(
        settled.is_some(),
        "the WAL still holds {} bytes; the node's log:\n{}",
        wal_bytes(&data),
        node.log()
    );
    assert_eq!(node.export("bounded_total").await.len(), SERIES);
}

/// A cluster's nodes keep `keep_bytes` of log after a purge, for followers; here as much as
/// the bound, as by default. The bound takes its next snapshot once `snapshot_after_bytes`
/// more were written, not at every check: with what a node keeps already at the bound, every
/// check of the log's size (ten a second) took a snapshot while writes went on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_keeping_as_much_as_its_bound_snapshots_by_bytes_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = raft_config(dir.path(), "snapshot_after_bytes = 262144\nkeep_bytes = 262144");
    let cluster =
        TestCluster::start(&dir.path().join("cluster"), 3, &["--config", &cfg]).await.expect("cluster");
    let leader = cluster.wait_leader(&[0, 1, 2], Duration::from_secs(30)).await.expect("leader");
    let mut client = IngestServiceClient::connect(cluster.node(leader).grpc_url()).await.expect("connect");
    // About 1.9 MB of log (~12 KB a write once the series are known): seven snapshots by bytes.
    let started = std::time::Instant::now();
    for k in 0..150 {
        client.write(write(k)).await.expect("write");
    }
    let took = started.elapsed();
    let leader_node = cluster.node(leader);
    let s = dropped_to(leader_node, 200).await;
    for i in 0..3 {
        let built = cluster.node(i).metric("collabstream_raft_snapshots_built_total").await;
        assert!(
            (1.0..=12.0).contains(&built),
            "node {} built {built} snapshots in {took:?} of writes ({s:?}); its log:\n{}",
            i + 1,
            cluster.node(i).log()
        );
    }
}
