//! Every kind of bad input gets a clear 4xx (or gRPC INVALID_ARGUMENT) with the reason, and
//! the good items of the same request are kept.

use collabstream_proto::prompb;
use collabstream_proto::v1::{self, ingest_service_client::IngestServiceClient};
use collabstream_tests::{Node, remote_write_body};
use prost::Message;

fn label(n: &[u8], v: &[u8]) -> prompb::Label {
    prompb::Label { name: n.to_vec(), value: v.to_vec() }
}

fn ts(labels: Vec<prompb::Label>, t: i64) -> prompb::TimeSeries {
    prompb::TimeSeries {
        labels,
        samples: vec![prompb::Sample { value: 1.0, timestamp: t }],
        ..Default::default()
    }
}

async fn count(node: &Node, selector: &str) -> usize {
    node.export(selector).await.len()
}

fn assert_envelope(body: &str, needle: &str) {
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    assert_eq!(v["status"], "error", "{body}");
    assert_eq!(v["errorType"], "bad_data", "{body}");
    assert!(v["error"].as_str().unwrap_or("").contains(needle), "expected {needle:?} in {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_refuses_bad_input_and_keeps_good_series() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(dir.path(), &[]).expect("node starts");

    // Undecodable bodies.
    let (status, body) = node.remote_write(b"definitely not snappy".to_vec()).await;
    assert_eq!(status, 400);
    assert_envelope(&body, "snappy");
    let garbage = snap::raw::Encoder::new().compress_vec(&[0xff, 0xff, 0xff, 0xff]).expect("snappy");
    let (status, body) = node.remote_write(garbage).await;
    assert_eq!(status, 400);
    assert_envelope(&body, "WriteRequest");

    // A mixed batch: one good series and one of each bad kind.
    let good = ts(vec![label(b"__name__", b"bad_input_good"), label(b"job", b"x")], 1_000);
    let req = prompb::WriteRequest {
        timeseries: vec![
            good,
            ts(vec![label(b"__name__", b"m"), label(b"", b"v")], 1_000),
            ts(vec![label(b"__name__", b"m"), label(b"a", b"1"), label(b"a", b"2")], 1_000),
            ts(vec![label(b"__name__", b"m"), label(b"job", &[0xc3, 0x28])], 1_000),
            ts(vec![label(b"job", b"no-name")], 1_000),
            // Names are any UTF-8 in Prometheus 3.x: this one is fine.
            ts(vec![label(b"__name__", "bad_input.utf8 ✓".as_bytes())], 1_000),
        ],
        metadata: vec![],
    };
    let (status, body) = node.remote_write(remote_write_body(&req)).await;
    assert_eq!(status, 400, "{body}");
    assert_envelope(&body, "4 item(s) rejected");
    for reason in ["empty label name", "duplicate label name", "not valid UTF-8", "missing metric name"] {
        assert!(body.contains(reason), "{reason:?} missing from {body}");
    }
    assert_eq!(count(&node, "bad_input_good").await, 1, "the good series was kept");
    assert_eq!(count(&node, r#"{"bad_input.utf8 ✓"}"#).await, 1, "UTF-8 metric names are accepted");

    // Over the limit: refused from the length snappy declares, before decompressing.
    let huge = vec![0u8; 200 << 20];
    let body = snap::raw::Encoder::new().compress_vec(&huge).expect("snappy");
    assert!(body.len() < 32 << 20, "compressed zeros stay under the request limit");
    let (status, text) = node.remote_write(body).await;
    assert_eq!(status, 413, "{text}");

    // Metadata-only requests (sent every minute by Prometheus) are fine.
    let meta = prompb::WriteRequest {
        timeseries: vec![],
        metadata: vec![prompb::MetricMetadata {
            r#type: 1,
            metric_family_name: "x".into(),
            help: "h".into(),
            unit: String::new(),
        }],
    };
    let (status, _) = node.remote_write(remote_write_body(&meta)).await;
    assert_eq!(status, 204);

    // Remote write 2.0 is refused with a hint, not misread.
    let r = reqwest::Client::new()
        .post(node.url("/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf;proto=io.prometheus.write.v2.Request")
        .body(remote_write_body(&meta))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 415);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_refuses_bad_items_with_details_and_keeps_good_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(dir.path(), &[]).expect("node starts");
    let mut client = IngestServiceClient::connect(node.grpc_url()).await.expect("connects");
    let l = |n: &str, v: &str| v1::Label { name: n.into(), value: v.into() };
    let samples = vec![v1::Sample { timestamp_ms: 5_000, value: 2.0 }];
    let req = v1::WriteRequest {
        batch_id: String::new(),
        series: vec![
            v1::TimeSeries { labels: vec![l("__name__", "grpc_good")], samples: samples.clone() },
            v1::TimeSeries { labels: vec![l("zone", "eu")], samples: samples.clone() },
            v1::TimeSeries {
                labels: vec![l("__name__", "x"), l("a", "1"), l("a", "2")],
                samples: samples.clone(),
            },
        ],
        events: vec![v1::Event { event: None }],
    };
    let status = client.write(req).await.expect_err("bad items are an error");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("missing metric name"), "{}", status.message());
    let details = v1::WriteResponse::decode(status.details()).expect("details carry the response");
    assert_eq!(details.samples_accepted, 1);
    assert_eq!(details.rejected.len(), 3);
    assert_eq!(count(&node, "grpc_good").await, 1);
}

/// A store-side refusal names the client's item, through validation's filtering and apply's
/// numbering (series it already knows are sent by id, after the others).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_rejections_name_the_clients_items_after_filtering_and_reordering() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(dir.path(), &[]).expect("node starts");
    let mut client = IngestServiceClient::connect(node.grpc_url()).await.expect("connects");
    let l = |n: &str, v: &str| v1::Label { name: n.into(), value: v.into() };
    let series = |name: &str, t: i64| v1::TimeSeries {
        labels: vec![l("__name__", name)],
        samples: vec![v1::Sample { timestamp_ms: t, value: 1.0 }],
    };
    let now = 1_732_780_800_000;
    let first = v1::WriteRequest { series: vec![series("known_a", now)], ..Default::default() };
    client.write(first).await.expect("first write");
    // Item 0 fails validation, item 1 (known, sent by id after the new item 2) is two hours
    // older than its newest sample, past the store's one-hour out-of-order window.
    let bad = v1::TimeSeries {
        labels: vec![l("zone", "eu")],
        samples: vec![v1::Sample { timestamp_ms: now, value: 1.0 }],
    };
    let req = v1::WriteRequest {
        series: vec![bad, series("known_a", now - 7_200_000), series("new_b", now)],
        ..Default::default()
    };
    let status = client.write(req).await.expect_err("two items refused");
    let details = v1::WriteResponse::decode(status.details()).expect("details carry the response");
    let named: Vec<(i32, u32, u32)> =
        details.rejected.iter().map(|r| (r.kind, r.index, r.sample_index)).collect();
    assert_eq!(
        named,
        [(v1::ItemKind::Series as i32, 0, 0), (v1::ItemKind::Sample as i32, 1, 0)],
        "{:?}",
        details.rejected
    );
    assert_eq!(details.samples_accepted, 1, "new_b's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_endpoint_reports_each_bad_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(dir.path(), &[]).expect("node starts");
    let body = [
        r#"{"type":"user","meeting_id":"m1","user_id":"u1","action":"join","timestamp":1732780800000}"#,
        r#"{"type":"user","meeting_id":"m1","user_id":"u1","action":"dance","timestamp":1732780800000}"#,
        "",
        "not json",
        r#"{"type":"meeting","meeting_id":"m1","kind":"quality","latency_ms":120,"jitter_ms":8,"packet_loss_pct":0.2,"timestamp":"2024-11-28T08:00:01Z"}"#,
    ]
    .join("\n");
    let r = reqwest::Client::new().post(node.url("/api/v1/events")).body(body).send().await.expect("request");
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["accepted"], 2);
    assert_eq!(v["errorType"], "bad_data");
    let rejected = v["rejected"].as_array().expect("rejected");
    assert_eq!(rejected.len(), 2);
    assert_eq!(rejected[0]["line"], 2);
    assert!(rejected[0]["reason"].as_str().unwrap_or("").contains("dance"));
    assert_eq!(rejected[1]["line"], 4);
    let exported =
        reqwest::get(node.url("/api/v1/events/export")).await.expect("export").text().await.expect("body");
    assert_eq!(exported.lines().count(), 2, "the good lines were kept: {exported}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_configured_request_limit_get_413() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("small.toml");
    std::fs::write(&config, "[ingest]\nmax_request_bytes = 2048\nmax_decoded_bytes = 4096\n")
        .expect("config");
    let node = Node::start(&dir.path().join("data"), &["--config", config.to_str().expect("utf-8 path")])
        .expect("node starts");
    let (status, body) = node.remote_write(vec![7u8; 3000]).await;
    assert_eq!(status, 413, "{body}");
    assert_envelope(&body, "over the limit");
    let r = reqwest::Client::new()
        .post(node.url("/api/v1/events"))
        .body(vec![b' '; 3000])
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 413);
    // Declared decoded size over max_decoded_bytes, though the body itself is small.
    let (status, _) =
        node.remote_write(snap::raw::Encoder::new().compress_vec(&[0u8; 5000]).expect("snappy")).await;
    assert_eq!(status, 413);
}
