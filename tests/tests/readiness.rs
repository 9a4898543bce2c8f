//! `/readyz` answers 200 only while the node knows a leader: a node whose peers are not up
//! cannot take writes, and a load balancer or a rolling update must not count it ready.

use std::time::Duration;

use collabstream_tests::{Node, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_a_leader_is_alive_but_not_ready() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Node 2 of two whose node 1 (which forms the cluster) never starts: nothing on port 9.
    let node = Node::start(dir.path(), &["--node-id", "2", "--peers", "1=127.0.0.1:9,2=127.0.0.1:10"])
        .expect("node");
    let client = reqwest::Client::new();
    assert_eq!(client.get(node.url("/healthz")).send().await.expect("healthz").status(), 200);
    for _ in 0..10 {
        let r = client.get(node.url("/readyz")).send().await.expect("readyz");
        let status = r.status().as_u16();
        let body = r.text().await.expect("body");
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("no leader known"), "{body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A node of its own elects itself and becomes ready.
    let alone = tempfile::tempdir().expect("tempdir");
    let node = Node::start(alone.path(), &[]).expect("node");
    let ready = wait_until(Duration::from_secs(30), || async {
        let r = client.get(node.url("/readyz")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    assert!(ready.is_some(), "a single node is ready once it leads");
}
