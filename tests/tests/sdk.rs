//! The SDK against a real node: a batch whose answer is lost is retried and stored once; bad
//! items come back as a structured rejection.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use collabstream_proto::v1;
use collabstream_sdk::{Client, ClientConfig, Error};
use collabstream_tests::Node;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

fn series(name: &str, t: i64) -> v1::TimeSeries {
    v1::TimeSeries {
        labels: vec![v1::Label { name: "__name__".into(), value: name.into() }],
        samples: vec![v1::Sample { timestamp_ms: t, value: 42.0 }],
    }
}

/// Forwards TCP to `upstream`. While `drop_answers` is set, a connection forwards what the
/// client sends but never delivers the server's answer, then closes after a short delay: the
/// write is applied and its acknowledgement lost, as when a network drops a reply.
async fn lossy_proxy(upstream: std::net::SocketAddr, drop_answers: Arc<AtomicBool>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        // Bounded: the test makes a handful of connections.
        for _ in 0..64 {
            let Ok((client, _)) = listener.accept().await else { return };
            let drop_this = drop_answers.load(Ordering::SeqCst);
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(upstream).await else { return };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = tokio::spawn(async move { tokio::io::copy(&mut cr, &mut sw).await });
                if drop_this {
                    // Read and discard the answers for a while, then cut the connection.
                    let sink =
                        tokio::spawn(async move { tokio::io::copy(&mut sr, &mut tokio::io::sink()).await });
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    sink.abort();
                    up.abort();
                    let _ = cw.shutdown().await;
                } else {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    up.abort();
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_answer_was_lost_is_retried_and_stored_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(dir.path(), &[]).expect("node starts");
    let drop_answers = Arc::new(AtomicBool::new(true));
    let proxy = lossy_proxy(node.grpc, drop_answers.clone()).await;
    let mut config = ClientConfig::new([format!("http://{proxy}")]);
    config.timeout = Duration::from_millis(300);
    config.initial_backoff = Duration::from_millis(100);
    let client = Client::connect(config).expect("client");

    // Let the first attempt through to the node but lose its answer; later connections work.
    let flip = {
        let drop_answers = drop_answers.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            drop_answers.store(false, Ordering::SeqCst);
        })
    };
    let resp = client
        .write(v1::WriteRequest { series: vec![series("sdk_retried", 1_000)], ..Default::default() })
        .await
        .expect("acknowledged after a retry");
    flip.await.expect("flip");
    assert_eq!(resp.duplicate_batches, 1, "the retry found its batch already applied: {resp:?}");
    let stored = node.export("sdk_retried").await;
    assert_eq!(stored.values().map(|s| s.len()).sum::<usize>(), 1, "stored once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_items_come_back_structured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(dir.path(), &[]).expect("node starts");
    let client = Client::connect(ClientConfig::new([node.grpc_url()])).expect("client");
    let bad = v1::TimeSeries {
        labels: vec![v1::Label { name: "job".into(), value: "x".into() }],
        ..series("x", 1)
    };
    let err = client
        .write(v1::WriteRequest { series: vec![series("sdk_ok", 1), bad], ..Default::default() })
        .await
        .expect_err("one item is bad");
    let Error::Rejected { response, .. } = err else { panic!("expected a rejection, got {err}") };
    assert_eq!(response.samples_accepted, 1);
    assert_eq!(response.rejected.len(), 1);
    assert!(response.rejected[0].reason.contains("missing metric name"));
    assert_eq!(node.export("sdk_ok").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_writer_sends_by_size_and_by_time() {
    use collabstream_sdk::{BatchOptions, BatchWriter};
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(dir.path(), &[]).expect("node starts");
    let client = Client::connect(ClientConfig::new([node.grpc_url()])).expect("client");

    let writer = BatchWriter::new(
        client.clone(),
        BatchOptions { max_items: 1_000, max_delay: Duration::from_secs(60) },
    );
    for i in 0..2_345 {
        writer.add_series(series("sdk_batched", 1_000 + i)).await.expect("queued");
    }
    let stats = writer.close().await.expect("all sent");
    assert_eq!(stats.samples_accepted, 2_345);
    assert_eq!(stats.batches, 3, "two full batches and the rest at close");
    assert_eq!(node.export("sdk_batched").await.values().map(|s| s.len()).sum::<usize>(), 2_345);

    // One event and no flush: the delay sends it.
    let writer =
        BatchWriter::new(client, BatchOptions { max_items: 1_000, max_delay: Duration::from_millis(100) });
    let event = collabstream_proto::events_json::parse_event(
        r#"{"type":"chat","meeting_id":"m-sdk","user_id":"u","message_id":"1","timestamp":5}"#,
        None,
    )
    .expect("event");
    writer.add_event(event).await.expect("queued");
    let url = node.url("/api/v1/events/export");
    let arrived = collabstream_tests::wait_until(Duration::from_secs(10), || {
        let url = url.clone();
        async move {
            let body = reqwest::get(url).await.ok()?.text().await.ok()?;
            body.contains("m-sdk").then_some(())
        }
    })
    .await;
    assert!(arrived.is_some(), "the delayed batch was sent without a flush");
    assert_eq!(writer.close().await.expect("closed").events_accepted, 1);
}
