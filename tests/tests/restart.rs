//! A node killed with SIGKILL keeps every write it acknowledged; a node stopped with SIGTERM
//! exits cleanly after checkpointing, also when a client stalls mid-request.

use std::time::Duration;

use collabstream_proto::v1::{self, ingest_service_client::IngestServiceClient};
use collabstream_tests::{Exported, Node, remote_write_body, series_key};

fn series(name: &str, instance: u32, start: i64, n: i64, value: f64) -> v1::TimeSeries {
    v1::TimeSeries {
        labels: vec![
            v1::Label { name: "__name__".into(), value: name.into() },
            v1::Label { name: "instance".into(), value: format!("i{instance}") },
        ],
        samples: (0..n)
            .map(|i| v1::Sample { timestamp_ms: start + i * 1000, value: value + i as f64 })
            .collect(),
    }
}

fn record(acked: &mut Exported, s: &v1::TimeSeries) {
    let e =
        acked.entry(series_key(s.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())))).or_default();
    for x in &s.samples {
        e.insert(x.timestamp_ms, x.value);
    }
}

async fn events(node: &Node) -> Vec<String> {
    let body =
        reqwest::get(node.url("/api/v1/events/export")).await.expect("events").text().await.expect("body");
    let mut lines: Vec<String> = body.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = Node::start(dir.path(), &[]).expect("node starts");
    let mut client = IngestServiceClient::connect(node.grpc_url()).await.expect("grpc connects");
    let http = reqwest::Client::new();
    let mut acked = Exported::new();
    let mut acked_events = Vec::new();
    let base = 1_700_000_000_000i64;

    for round in 0..30u32 {
        let batch: Vec<_> =
            (0..20).map(|i| series("rs_grpc", i, base + round as i64 * 10_000, 10, round as f64)).collect();
        let req =
            v1::WriteRequest { batch_id: format!("round-{round}"), series: batch.clone(), events: vec![] };
        let resp = client.write(req).await.expect("grpc write acknowledged").into_inner();
        assert_eq!(resp.samples_accepted, 200);
        batch.iter().for_each(|s| record(&mut acked, s));

        let rw: Vec<_> =
            (0..5).map(|i| series("rs_remote", i, base + round as i64 * 1_000, 1, 0.5)).collect();
        let prom = collabstream_proto::series::to_prompb(&v1::WriteRequest {
            series: rw.clone(),
            ..Default::default()
        });
        let r = http
            .post(node.url("/api/v1/write"))
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .body(remote_write_body(&prom))
            .send()
            .await
            .expect("remote write");
        assert_eq!(r.status(), 204);
        rw.iter().for_each(|s| record(&mut acked, s));

        let line = format!(
            r#"{{"type":"chat","meeting_id":"m{round}","user_id":"u1","message_id":"x{round}","length":3,"timestamp":{}}}"#,
            base + round as i64
        );
        let r = http.post(node.url("/api/v1/events")).body(line.clone()).send().await.expect("events");
        assert_eq!(r.status(), 200);
        acked_events.push(round);
    }
    // A streamed write too.
    let stream = tokio_stream::iter(vec![
        v1::WriteRequest { series: vec![series("rs_stream", 1, base, 5, 1.0)], ..Default::default() },
        v1::WriteRequest { series: vec![series("rs_stream", 2, base, 5, 2.0)], ..Default::default() },
    ]);
    let resp = client.write_stream(stream).await.expect("stream acknowledged").into_inner();
    assert_eq!(resp.samples_accepted, 10);
    record(&mut acked, &series("rs_stream", 1, base, 5, 1.0));
    record(&mut acked, &series("rs_stream", 2, base, 5, 2.0));

    node.kill9();
    let node = Node::start(dir.path(), &[]).expect("node restarts");
    let got = node.export(r#"{__name__=~"rs_.*"}"#).await;
    assert_eq!(got.len(), acked.len(), "every acknowledged series is back");
    assert_eq!(got, acked, "every acknowledged sample is back with its value");
    assert_eq!(events(&node).await.len(), acked_events.len());

    // A retried batch (same id) after the restart is still applied once.
    let mut client = IngestServiceClient::connect(node.grpc_url()).await.expect("grpc reconnects");
    let retry = v1::WriteRequest {
        batch_id: "round-0".into(),
        series: vec![series("rs_grpc", 0, base, 10, 99.0)],
        events: vec![],
    };
    let resp = client.write(retry).await.expect("retry acknowledged").into_inner();
    assert_eq!((resp.duplicate_batches, resp.samples_accepted), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_checkpoints_and_exits_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = Node::start(dir.path(), &[]).expect("node starts");
    let mut client = IngestServiceClient::connect(node.grpc_url()).await.expect("grpc connects");
    let s = series("term_test", 1, 1_700_000_000_000, 50, 1.0);
    client.write(v1::WriteRequest { series: vec![s.clone()], ..Default::default() }).await.expect("write");
    let get = |path: &'static str| {
        let url = node.url(path);
        async move { reqwest::get(url).await.expect("request") }
    };
    assert_eq!(get("/healthz").await.status(), 200);
    assert_eq!(get("/readyz").await.status(), 200);
    let metrics = get("/metrics").await.text().await.expect("metrics");
    for line in ["collabstream_samples_ingested_total 50", "collabstream_active_series 1"] {
        assert!(metrics.lines().any(|l| l == line), "{line:?} missing from /metrics:\n{metrics}");
    }
    // Raft's own entries (the membership, the leader's first entry) come before the write.
    let applied: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("collabstream_applied_index "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no applied index in /metrics:\n{metrics}"));
    assert!(applied >= 1, "{metrics}");
    assert!(metrics.contains("# TYPE collabstream_rocksdb_sst_bytes gauge"));
    for family in ["log", "series", "heads", "chunks", "events"] {
        let line = format!("collabstream_rocksdb_cf_sst_bytes{{cf=\"{family}\"}} ");
        assert!(metrics.lines().any(|l| l.starts_with(&line)), "{line:?} missing from /metrics:\n{metrics}");
    }
    assert!(metrics.lines().any(|l| l == "collabstream_disk_writes_failing 0"), "{metrics}");
    assert!(node.terminate(Duration::from_secs(30)).expect("exits"), "exit status 0");
    let log = node.log();
    assert!(log.contains("store checkpointed"), "shutdown checkpoints:\n{log}");
    let node = Node::start(dir.path(), &[]).expect("restarts");
    assert!(node.log().contains("to_replay=0"), "nothing left to replay after a clean stop:\n{}", node.log());
    let got = node.export("term_test").await;
    let mut want = Exported::new();
    record(&mut want, &s);
    assert_eq!(got, want);
}

/// A client that stops halfway through sending a request body cannot keep a node from
/// stopping: after `shutdown_timeout` its connection is closed, and the node checkpoints and
/// exits with what it had acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_node_whose_client_stalls_mid_request() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("node.toml");
    std::fs::write(&config, "shutdown_timeout = \"2s\"\n").expect("config");
    let data = dir.path().join("data");
    let config = config.to_str().expect("utf-8 path");
    let mut node = Node::start(&data, &["--config", config]).expect("node starts");
    let mut client = IngestServiceClient::connect(node.grpc_url()).await.expect("grpc connects");
    let s = series("stall_test", 1, 1_700_000_000_000, 20, 1.0);
    client.write(v1::WriteRequest { series: vec![s.clone()], ..Default::default() }).await.expect("write");
    // The headers and a thousand of the million bytes the body claims, then nothing more.
    let mut stalled = std::net::TcpStream::connect(node.http).expect("connects");
    write!(
        stalled,
        "POST /api/v1/write HTTP/1.1\r\nHost: collabstream\r\nContent-Type: application/x-protobuf\r\n\
         Content-Encoding: snappy\r\nContent-Length: 1048576\r\n\r\n"
    )
    .expect("headers sent");
    stalled.write_all(&[0u8; 1000]).expect("part of the body sent");
    // The request reaches its handler before the signal (it is in flight, not queued).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(node.terminate(Duration::from_secs(30)).expect("exits in time"), "exit status 0");
    let log = node.log();
    assert!(
        log.contains("requests still in flight after shutdown_timeout"),
        "the drain was cut short:\n{log}"
    );
    assert!(log.contains("store checkpointed"), "shutdown checkpoints:\n{log}");
    drop(stalled);
    let node = Node::start(&data, &["--config", config]).expect("restarts");
    let mut want = Exported::new();
    record(&mut want, &s);
    assert_eq!(node.export("stall_test").await, want);
}
