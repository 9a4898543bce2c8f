//! Reads are bounded before they hold everything: a PromQL selector over `query.max_samples`,
//! an export over it, and an events export over its page size get a clear error.

use collabstream_proto::prompb;
use collabstream_tests::{Node, remote_write_body};

async fn get(node: &Node, path: &str, query: &[(&str, &str)]) -> (u16, String) {
    let r = reqwest::Client::new().get(node.url(path)).query(query).send().await.expect("request");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wide_reads_fail_with_the_limit_instead_of_loading_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("limits.toml");
    std::fs::write(&config, "[query]\nmax_samples = 1000\n").expect("config");
    let node =
        Node::start(&dir.path().join("node"), &["--config", &config.display().to_string()]).expect("node");
    let t0 = 1_732_780_800_000i64;
    let series = |job: &str| prompb::TimeSeries {
        labels: vec![
            prompb::Label { name: b"__name__".to_vec(), value: b"read_limit".to_vec() },
            prompb::Label { name: b"job".to_vec(), value: job.as_bytes().to_vec() },
        ],
        samples: (0..600).map(|i| prompb::Sample { value: i as f64, timestamp: t0 + i * 1_000 }).collect(),
        ..Default::default()
    };
    let body = remote_write_body(&prompb::WriteRequest {
        timeseries: vec![series("a"), series("b")],
        ..Default::default()
    });
    assert_eq!(node.remote_write(body).await.0, 204);
    let at = ((t0 + 600_000) / 1000).to_string();

    // One series fits; both (1,200 samples) do not.
    let (status, body) = get(
        &node,
        "/api/v1/query",
        &[("query", "count_over_time(read_limit{job=\"a\"}[1h])"), ("time", &at)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) =
        get(&node, "/api/v1/query", &[("query", "count_over_time({__name__=~\".+\"}[10y])"), ("time", &at)])
            .await;
    assert_eq!(status, 422, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["errorType"], "execution", "{body}");
    assert!(v["error"].as_str().unwrap_or("").contains("too many samples"), "{body}");

    let (status, body) = get(&node, "/api/v1/export", &[("match[]", "read_limit")]).await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = get(&node, "/api/v1/export", &[("match[]", "read_limit{job=\"a\"}")]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.lines().count(), 1);
    assert!(body.contains("\"timestamps\""));

    let (status, body) = get(&node, "/api/v1/events/export", &[("limit", "2000000")]).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("page with start"), "{body}");
}
