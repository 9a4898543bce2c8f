//! The store settings apply depends on travel through the log: a node's `[store]`
//! configuration takes effect when its leader proposes it, and on every replica alike.

use std::time::{Duration, Instant};

use collabstream_proto::v1;
use collabstream_tests::{Node, TestCluster};

fn series(name: &str, t: i64) -> v1::TimeSeries {
    v1::TimeSeries {
        labels: vec![v1::Label { name: "__name__".into(), value: name.into() }],
        samples: vec![v1::Sample { timestamp_ms: t, value: 1.0 }],
    }
}

/// Writes a sample, then one 50 s older, to fresh series until the older one is refused (the
/// configured 10 s window in force) or `deadline` passes. Returns the refusal's reason.
async fn older_sample_refused(node: &Node, deadline: Duration) -> Option<String> {
    let mut client =
        v1::ingest_service_client::IngestServiceClient::connect(node.grpc_url()).await.expect("connect");
    let started = Instant::now();
    let mut k = 0;
    while started.elapsed() < deadline {
        k += 1;
        let name = format!("settings_probe_{k}");
        let write =
            |t| v1::WriteRequest { batch_id: String::new(), series: vec![series(&name, t)], events: vec![] };
        client.write(write(100_000)).await.expect("the newer sample is taken");
        match client.write(write(50_000)).await {
            Err(status) if status.code() == tonic::Code::InvalidArgument => {
                return Some(status.message().to_string());
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(other) => panic!("unexpected answer: {other:?}"),
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leaders_store_settings_apply_on_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("store.toml");
    std::fs::write(&config, "[store]\nout_of_order_window = \"10s\"\n").unwrap();
    let config = config.display().to_string();
    let cluster = TestCluster::start(dir.path(), 3, &["--config", &config]).await.unwrap();
    cluster.wait_leader(&[0, 1, 2], Duration::from_secs(30)).await.unwrap();
    let reason = older_sample_refused(cluster.node(1), Duration::from_secs(20)).await;
    let reason = reason.expect("the configured 10 s window takes effect");
    assert!(reason.contains("10s"), "{reason}");
    // Every replica refused the same samples: the same series and samples everywhere.
    let leader = cluster.wait_leader(&[0, 1, 2], Duration::from_secs(30)).await.unwrap();
    let applied = cluster.status(leader).await.unwrap().applied_index.unwrap();
    let mut seen = Vec::new();
    for i in 0..3 {
        cluster.wait_applied(i, applied, Duration::from_secs(30)).await.unwrap();
        seen.push(cluster.node(i).export("{__name__=~\"settings_probe_.*\"}").await);
    }
    assert!(!seen[0].is_empty());
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0], seen[2]);
}
