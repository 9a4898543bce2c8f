//! The Python client example (client generated from our proto with grpcio-tools) writes to a
//! real node, and a retried batch is applied once.

use std::path::PathBuf;
use std::process::Command;

use collabstream_tests::Node;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_example_writes_samples_and_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(dir.path(), &[]).expect("node starts");
    // When the test runs: a binary built in another checkout sharing the target directory
    // would otherwise run that checkout's script.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), PathBuf::from);
    let script = manifest.join("../sdk/examples/python/ingest_example.py");
    let out = tokio::task::spawn_blocking({
        let target = node.grpc.to_string();
        move || Command::new("python3").arg(script).args(["--target", &target]).output()
    })
    .await
    .expect("joined")
    .expect("python3 runs (scripts/install-deps.sh installs grpcio)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "example failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("samples_accepted=4 events_accepted=3 retry_duplicate_batches=1"),
        "unexpected output: {stdout}"
    );
    let stored = node.export("py_example_requests_total").await;
    assert_eq!(stored.values().map(|s| s.len()).sum::<usize>(), 4);
}
