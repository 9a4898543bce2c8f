//! `collabstream produce` against a real node: node-exporter samples over remote write,
//! meetings over gRPC through the SDK (with a dead endpoint listed first), and a clear refusal
//! of events over remote write.

use collabstream_tests::{Node, produce, sent};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_sends_over_remote_write_and_grpc_with_a_progress_bar() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(dir.path(), &[]).expect("node starts");

    let rw = node.url("/api/v1/write");
    let out = produce(
        &[
            "--target",
            &rw,
            "--workload",
            "node-exporter",
            "--size",
            "500",
            "--count",
            "1000",
            "--speed",
            "15",
        ],
        &[],
    )
    .await;
    assert!(sent(&out) >= 1000);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("] 100%"), "a progress bar that reaches 100%: {stderr:?}");
    let series = node.export("{job=\"node\"}").await;
    assert_eq!(series.len(), 500);
    assert!(series.values().all(|s| s.len() >= 2), "two scrapes of every series");

    // The SDK skips the dead endpoint and moves on to the node.
    let targets = format!("http://127.0.0.1:1,{}", node.grpc_url());
    let out = produce(
        &["--target", &targets, "--workload", "meetings", "--size", "20", "--count", "200", "--speed", "30"],
        &[],
    )
    .await;
    let n = sent(&out);
    assert!(n >= 200, "{n}");
    let events = reqwest::get(node.url("/api/v1/events/export?limit=100000"))
        .await
        .expect("export")
        .text()
        .await
        .expect("body");
    assert_eq!(events.lines().count() as u64, n, "every event sent is stored once");

    let out = produce(&["--target", &rw, "--workload", "meetings", "--count", "10"], &[]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("remote write cannot carry"), "{out:?}");
}
