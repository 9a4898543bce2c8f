//! A real Prometheus scrapes itself and remote-writes to our node; what we store has the same
//! labels and values as what Prometheus stored.

use std::time::Duration;

use collabstream_tests::{Exported, Node, Prometheus, series_key, wait_until};

fn key(metric: &serde_json::Map<String, serde_json::Value>) -> String {
    series_key(metric.iter().map(|(k, v)| (k.as_str(), v.as_str().unwrap_or(""))))
}

/// Raw samples from Prometheus's own TSDB via a range-vector instant query.
async fn theirs(prom: &Prometheus, selector: &str, at_ms: i64) -> Exported {
    let v: serde_json::Value = reqwest::Client::new()
        .get(prom.url("/api/v1/query"))
        .query(&[("query", format!("{selector}[1h]")), ("time", format!("{}", at_ms as f64 / 1000.0))])
        .send()
        .await
        .expect("prometheus query")
        .json()
        .await
        .expect("json");
    let mut out = Exported::new();
    for s in v["data"]["result"].as_array().expect("matrix") {
        let e = out.entry(key(s["metric"].as_object().expect("metric"))).or_default();
        for pair in s["values"].as_array().expect("values") {
            let t = (pair[0].as_f64().expect("time") * 1000.0).round() as i64;
            e.insert(t, pair[1].as_str().expect("value").parse().expect("float"));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_remote_write_lands_with_the_same_labels_and_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(&dir.path().join("node"), &[]).expect("node starts");
    let prom_dir = dir.path().join("prometheus");
    std::fs::create_dir_all(&prom_dir).expect("dir");
    let config = format!(
        r#"
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ['127.0.0.1:{{PORT}}']
remote_write:
  - url: http://{}/api/v1/write
    queue_config:
      batch_send_deadline: 1s
      max_samples_per_send: 500
    metadata_config:
      send_interval: 2s
"#,
        node.http
    );
    let prom = Prometheus::start(&prom_dir, &config, &[]).expect("prometheus starts");

    // Wait (bounded) until several scrapes have arrived through remote write.
    let selector = r#"{job="prometheus",__name__=~"up|scrape_samples_scraped|prometheus_build_info|go_goroutines|prometheus_http_requests_total"}"#;
    let arrived = wait_until(Duration::from_secs(90), || async {
        let s = node.export(r#"up{job="prometheus"}"#).await;
        s.values().next().filter(|v| v.len() >= 5).map(|_| ())
    })
    .await;
    assert!(arrived.is_some(), "no remote-write data arrived; node log:\n{}", node.log());

    let got = node.export(selector).await;
    let newest = got.values().filter_map(|s| s.keys().next_back()).copied().max().expect("samples");
    let want = theirs(&prom, selector, newest).await;
    assert!(got.len() >= 4, "several metrics arrived: {:?}", got.keys().collect::<Vec<_>>());
    let mut compared = 0;
    for (series, samples) in &got {
        let Some(reference) = want.get(series) else {
            panic!("series {series} is not in Prometheus");
        };
        for (t, v) in samples {
            let r = reference.get(t).unwrap_or_else(|| panic!("{series} @ {t} is not in Prometheus"));
            assert!(
                r.to_bits() == v.to_bits() || (r.is_nan() && v.is_nan()),
                "{series} @ {t}: ours {v}, Prometheus {r}"
            );
            compared += 1;
        }
        // Everything Prometheus had up to the newest sample we compared arrived too, except
        // what may still be in flight in its remote-write queue for this very series.
        let last_ours = *samples.keys().next_back().expect("non-empty");
        let missing = reference.range(..=last_ours).filter(|(t, _)| !samples.contains_key(t)).count();
        assert_eq!(
            missing, 0,
            "{series}: {missing} samples Prometheus has up to {last_ours} are missing here"
        );
    }
    assert!(compared >= 20, "compared only {compared} samples");
}
