//! Replays the requests Grafana's Prometheus datasource sends against a real node and checks
//! every JSON shape Grafana parses; then the API's error answers and limits.

use collabstream_proto::prompb;
use collabstream_tests::{Node, remote_write_body};
use serde_json::{Value, json};

/// Two counters and a gauge, one sample every 15 s for 10 minutes from t0.
fn workload(t0: i64) -> prompb::WriteRequest {
    let series = |name: &str, job: &str, instance: &str, f: &dyn Fn(i64) -> f64| prompb::TimeSeries {
        labels: [("__name__", name), ("job", job), ("instance", instance)]
            .iter()
            .map(|(n, v)| prompb::Label { name: n.as_bytes().to_vec(), value: v.as_bytes().to_vec() })
            .collect(),
        samples: (0..40).map(|i| prompb::Sample { value: f(i), timestamp: t0 + i * 15_000 }).collect(),
        ..Default::default()
    };
    prompb::WriteRequest {
        timeseries: vec![
            series("gf_requests_total", "api", "a:1", &|i| (i * 10) as f64),
            series("gf_requests_total", "web", "b:1", &|i| (i * 20) as f64),
            series("gf_load", "api", "a:1", &|i| 0.5 + (i % 4) as f64),
        ],
        ..Default::default()
    }
}

async fn get(node: &Node, path: &str, params: &[(&str, &str)]) -> (u16, Value) {
    let r = reqwest::Client::new().get(node.url(path)).query(params).send().await.expect("request");
    let status = r.status().as_u16();
    let body = r.text().await.expect("body");
    (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}")))
}

async fn post_form(node: &Node, path: &str, params: &[(&str, &str)]) -> (u16, Value) {
    let r = reqwest::Client::new().post(node.url(path)).form(params).send().await.expect("request");
    let status = r.status().as_u16();
    let body = r.text().await.expect("body");
    (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}")))
}

fn assert_error(status: u16, body: &Value, want_status: u16, error_type: &str, needle: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["status"], "error", "{body}");
    assert_eq!(body["errorType"], error_type, "{body}");
    assert!(body["error"].as_str().unwrap_or("").contains(needle), "expected {needle:?} in {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_datasource_requests_get_prometheus_shapes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(dir.path(), &[]).expect("node starts");
    let t0: i64 = 1_732_780_800_000;
    let r = reqwest::Client::new()
        .post(node.url("/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .body(remote_write_body(&workload(t0)))
        .send()
        .await
        .expect("write");
    assert_eq!(r.status().as_u16(), 204);

    // "Save & test": `1+1` at time 4, then buildinfo.
    let (status, body) = get(&node, "/api/v1/query", &[("query", "1+1"), ("time", "4")]).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"status": "success", "data": {"resultType": "scalar", "result": [4, "2"]}}));
    let (status, body) = get(&node, "/api/v1/status/buildinfo", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "success");
    assert!(body["data"]["version"].as_str().is_some_and(|v| v.split('.').count() == 3), "{body}");
    assert_eq!(body["data"]["features"], json!({}));

    // A dashboard panel: a range query over a step-aligned window, as a form POST.
    let (start, end) = ((t0 / 1000 + 60).to_string(), (t0 / 1000 + 540).to_string());
    let (status, body) = post_form(
        &node,
        "/api/v1/query_range",
        &[
            ("query", "sum by (job) (rate(gf_requests_total[1m]))"),
            ("start", &start),
            ("end", &end),
            ("step", "60"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["resultType"], "matrix");
    let result = body["data"]["result"].as_array().expect("result array");
    assert_eq!(result.len(), 2);
    assert_eq!(result[0]["metric"], json!({"job": "api"}));
    assert_eq!(result[1]["metric"], json!({"job": "web"}));
    let values = result[0]["values"].as_array().expect("values");
    assert_eq!(values.len(), 9);
    for (i, v) in values.iter().enumerate() {
        assert_eq!(v[0].as_i64(), Some(t0 / 1000 + 60 + 60 * i as i64), "{v}");
        let rate: f64 = v[1].as_str().expect("value as string").parse().expect("number");
        assert!((rate - 10.0 / 15.0).abs() < 1e-9, "api rate at step {i}: {rate}");
    }
    // The same as an instant query: a vector with `value` pairs.
    let (status, body) = get(&node, "/api/v1/query", &[("query", "gf_load"), ("time", &end)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["resultType"], "vector");
    assert_eq!(body["data"]["result"][0]["metric"]["__name__"], "gf_load");
    assert_eq!(body["data"]["result"][0]["value"][0].as_i64(), Some(t0 / 1000 + 540));

    // Label names and values for the query editor, with match[] and limit.
    let (status, body) =
        get(&node, "/api/v1/labels", &[("match[]", "gf_requests_total"), ("start", &start), ("end", &end)])
            .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"], json!(["__name__", "instance", "job"]));
    let (_, body) = get(&node, "/api/v1/labels", &[("match[]", "gf_requests_total"), ("limit", "2")]).await;
    assert_eq!(body["data"], json!(["__name__", "instance"]));
    assert_eq!(body["warnings"], json!(["results truncated due to limit"]));
    let (status, body) =
        get(&node, "/api/v1/label/job/values", &[("match[]", "gf_load"), ("start", &start)]).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"], json!(["api"]));
    let (_, body) = get(&node, "/api/v1/label/__name__/values", &[("limit", "1")]).await;
    assert_eq!(body["data"].as_array().map(Vec::len), Some(1));
    // A time picker a day after the data: nothing has samples there.
    let (later, later_end) = ((t0 / 1000 + 86_400).to_string(), (t0 / 1000 + 90_000).to_string());
    let day_later = [("start", later.as_str()), ("end", later_end.as_str())];
    let (status, body) = get(&node, "/api/v1/labels", &day_later).await;
    assert_eq!((status, &body["data"]), (200, &json!([])), "{body}");
    let (_, body) = get(&node, "/api/v1/label/job/values", &day_later).await;
    assert_eq!(body["data"], json!([]));
    let (_, body) = get(&node, "/api/v1/series", &[("match[]", "gf_load"), day_later[0], day_later[1]]).await;
    assert_eq!(body["data"], json!([]));

    // Series lookup (GET and POST) and metadata.
    let (status, body) = get(&node, "/api/v1/series", &[("match[]", "gf_requests_total{job=\"web\"}")]).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"], json!([{"__name__": "gf_requests_total", "instance": "b:1", "job": "web"}]));
    let (_, body) =
        post_form(&node, "/api/v1/series", &[("match[]", "gf_load"), ("match[]", "gf_requests_total")]).await;
    assert_eq!(body["data"].as_array().map(Vec::len), Some(3));
    let (status, body) = get(&node, "/api/v1/metadata", &[]).await;
    assert_eq!(status, 200);
    assert!(body["data"].is_object());
    let (_, body) = get(&node, "/api/v1/query_exemplars", &[("query", "gf_load")]).await;
    assert_eq!(body["data"], json!([]));
    let (_, body) = get(&node, "/api/v1/rules", &[]).await;
    assert_eq!(body["data"], json!({"groups": []}));
    let (_, body) = get(&node, "/api/v1/format_query", &[("query", "sum(rate(x[5m]))by(job)")]).await;
    assert_eq!(body["data"], "sum by (job) (rate(x[5m]))");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_errors_use_the_prometheus_envelope() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("limits.toml");
    std::fs::write(&config, "[query]\nmax_samples = 100\n").expect("config");
    let node = Node::start(&dir.path().join("data"), &["--config", config.to_str().expect("utf-8")])
        .expect("starts");
    let t0: i64 = 1_732_780_800_000;
    reqwest::Client::new()
        .post(node.url("/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .body(remote_write_body(&workload(t0)))
        .send()
        .await
        .expect("write");
    let at = (t0 / 1000 + 300).to_string();

    let (s, b) = get(&node, "/api/v1/query", &[("query", "sum(")]).await;
    assert_error(s, &b, 400, "bad_data", "");
    let (s, b) = get(&node, "/api/v1/query", &[("query", "")]).await;
    assert_error(s, &b, 400, "bad_data", "query");
    let (s, b) = get(&node, "/api/v1/query", &[("query", "1"), ("time", "yesterday")]).await;
    assert_error(s, &b, 400, "bad_data", "time");
    let (s, b) = get(
        &node,
        "/api/v1/query_range",
        &[("query", "1"), ("start", "0"), ("end", "100000"), ("step", "1")],
    )
    .await;
    assert_error(s, &b, 400, "bad_data", "exceeded maximum resolution of 11,000 points per timeseries");
    let (s, b) =
        get(&node, "/api/v1/query_range", &[("query", "1"), ("start", "10"), ("end", "0"), ("step", "1")])
            .await;
    assert_error(s, &b, 400, "bad_data", "end timestamp must not be before start time");
    let (s, b) =
        get(&node, "/api/v1/query_range", &[("query", "1"), ("start", "0"), ("end", "10"), ("step", "0")])
            .await;
    assert_error(s, &b, 400, "bad_data", "zero or negative query resolution step");
    let (s, b) = get(
        &node,
        "/api/v1/query_range",
        &[("query", "up[5m]"), ("start", "0"), ("end", "10"), ("step", "1")],
    )
    .await;
    assert_error(s, &b, 400, "bad_data", "invalid expression type \"range vector\" for range query");
    let (s, b) = get(&node, "/api/v1/series", &[]).await;
    assert_error(s, &b, 400, "bad_data", "no match[] parameter provided");

    // Execution errors: ambiguous matching, and the samples limit.
    let (s, b) =
        get(&node, "/api/v1/query", &[("query", "gf_load + on() gf_requests_total"), ("time", &at)]).await;
    assert_error(s, &b, 422, "execution", "many-to-many matching not allowed");
    let (s, b) = get(
        &node,
        "/api/v1/query",
        &[("query", "count_over_time(gf_requests_total[10m:1s])"), ("time", &at)],
    )
    .await;
    assert_error(s, &b, 422, "execution", "query processing would load too many samples into memory");
    // Under the limit the same node answers.
    let (s, b) =
        get(&node, "/api/v1/query", &[("query", "count_over_time(gf_load[1m])"), ("time", &at)]).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["result"][0]["value"][1], "4");
}
