//! A client that retries an events request (after a timeout or a 503, not knowing whether the
//! first attempt was stored) with the same idempotency key stores its events once.

use collabstream_tests::Node;

const EVENTS: &str = concat!(
    r#"{"type":"user","meeting_id":"idem","user_id":"u1","action":"join","timestamp":1732780800000}"#,
    "\n",
    r#"{"type":"chat","meeting_id":"idem","user_id":"u1","message_id":"x","length":4,"timestamp":1732780801000}"#,
    "\n",
);

async fn post(node: &Node, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new().post(node.url("/api/v1/events")).body(EVENTS);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let body = r.text().await.unwrap_or_default();
    (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}")))
}

async fn stored(node: &Node) -> usize {
    let body =
        reqwest::get(node.url("/api/v1/events/export")).await.expect("export").text().await.expect("body");
    body.lines().filter(|l| l.contains("\"idem\"")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_events_request_with_its_key_is_stored_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(dir.path(), &[]).expect("node starts");

    let (status, body) = post(&node, &[("Idempotency-Key", "req-1")]).await;
    assert_eq!((status, body["accepted"].as_u64(), body["duplicate"].as_bool()), (200, Some(2), Some(false)));
    let (status, body) = post(&node, &[("Idempotency-Key", "req-1")]).await;
    assert_eq!((status, body["accepted"].as_u64(), body["duplicate"].as_bool()), (200, Some(0), Some(true)));
    // The older header names the same key.
    let (_, body) = post(&node, &[("X-Batch-Id", "req-1")]).await;
    assert_eq!(body["duplicate"].as_bool(), Some(true));
    assert_eq!(stored(&node).await, 2);

    // A key that would be unbounded memory on every replica, and two headers that disagree.
    let long = "k".repeat(129);
    let (status, body) = post(&node, &[("Idempotency-Key", &long)]).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errorType"], "bad_data", "{body}");
    assert!(body["error"].as_str().unwrap().contains("over the limit of 128"), "{body}");
    let (status, body) = post(&node, &[("Idempotency-Key", "a"), ("X-Batch-Id", "b")]).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(stored(&node).await, 2, "refused requests store nothing");
}
