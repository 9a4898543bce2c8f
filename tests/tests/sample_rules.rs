//! Streaming aggregation of remote-written samples: where PromQL can say the same thing
//! exactly, a rule's outputs at each window's end equal PromQL over the raw samples (within
//! 1e-9 relative); with `keep_input = false` only the outputs are stored.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use collabstream_proto::prompb;
use collabstream_tests::{Node, remote_write_body, wait_until};
use serde_json::Value;

const CONFIG: &str = r#"
[[aggregations]]
name = "reqs"
match = "requests_total"
interval = "1m"
by = ["job"]
outputs = ["count_samples", "sum_samples", "min", "max", "count_series", "increase"]
max_out_of_orderness = "30s"

[[aggregations]]
name = "dropped"
match = '{__name__="noisy_total"}'
interval = "1m"
without = ["instance"]
outputs = ["count_samples", "sum_samples"]
keep_input = false
max_out_of_orderness = "30s"
"#;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_millis() as i64
}

fn series(name: &str, job: &str, instance: &str, samples: Vec<prompb::Sample>) -> prompb::TimeSeries {
    let labels = [("__name__", name), ("instance", instance), ("job", job)];
    prompb::TimeSeries {
        labels: labels.iter().map(|(n, v)| prompb::Label { name: (*n).into(), value: (*v).into() }).collect(),
        samples,
        ..Default::default()
    }
}

/// Results of `query` at `time` (unix seconds): the `job` label → value.
async fn query(node: &Node, query: &str, time: f64) -> Vec<(String, f64)> {
    let body = node.query(query, Some(time)).await;
    assert_eq!(body["status"], "success", "{query}: {body}");
    let mut out: Vec<(String, f64)> = body["data"]["result"]
        .as_array()
        .expect("a vector")
        .iter()
        .map(|r| {
            let job = r["metric"]["job"].as_str().unwrap_or("").to_string();
            (job, r["value"][1].as_str().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn same(a: &[(String, f64)], b: &[(String, f64)]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|((ja, x), (jb, y))| ja == jb && (x - y).abs() <= 1e-9 * x.abs().max(y.abs()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_equal_promql_over_the_raw_samples() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("rules.toml");
    std::fs::write(&config, CONFIG).expect("config written");
    let config = config.display().to_string();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("dir");
    let node = Node::start(&data, &["--config", &config]).expect("node starts");
    let listed = wait_until(Duration::from_secs(20), || async {
        let body = reqwest::get(node.url("/api/v1/aggregations")).await.ok()?.text().await.ok()?;
        body.contains("dropped").then_some(())
    })
    .await;
    assert!(listed.is_some(), "the configured rules are in force");

    // Four counters of two jobs, a sample every 7 s (with a reset), and a noisy metric, for
    // ten minutes that ended five minutes ago; sent in 30 s batches, oldest first.
    let base = (now_ms() - 15 * 60_000).div_euclid(60_000) * 60_000;
    let keys = [("a", "i1"), ("a", "i2"), ("b", "i1"), ("b", "i2")];
    let value = |k: usize, t: i64| -> f64 {
        let step = (t - base) / 7_000;
        // Instance a/i2 restarts halfway.
        if k == 1 && t >= base + 300_000 {
            (step - 42) as f64 * 1.5
        } else {
            step as f64 * (k + 1) as f64 + 0.25
        }
    };
    for batch in 0..20 {
        let (from, to) = (base + batch * 30_000, base + (batch + 1) * 30_000);
        let mut ts = Vec::new();
        for (k, (job, inst)) in keys.iter().enumerate() {
            let samples: Vec<prompb::Sample> = (from..to)
                .filter(|t| (t - base) % 7_000 == 0)
                .map(|t| prompb::Sample { timestamp: t, value: value(k, t) })
                .collect();
            ts.push(series("requests_total", job, inst, samples.clone()));
            ts.push(series("noisy_total", job, inst, samples));
        }
        let (status, text) = node
            .remote_write(remote_write_body(&prompb::WriteRequest { timeseries: ts, ..Default::default() }))
            .await;
        assert_eq!(status, 204, "{text}");
    }
    // One sample ten minutes on closes every window.
    let closing = series(
        "requests_total",
        "z",
        "z",
        vec![prompb::Sample { timestamp: base + 20 * 60_000, value: 1.0 }],
    );
    let noisy =
        series("noisy_total", "z", "z", vec![prompb::Sample { timestamp: base + 20 * 60_000, value: 1.0 }]);
    let req = prompb::WriteRequest { timeseries: vec![closing, noisy], ..Default::default() };
    assert_eq!(node.remote_write(remote_write_body(&req)).await.0, 204);

    // At each window's end E, PromQL over [1m] evaluated 1 ms before E covers [E-1m, E).
    let pairs = [
        ("reqs_sum_samples", "sum by (job) (sum_over_time(requests_total[1m]))"),
        ("reqs_count_samples", "sum by (job) (count_over_time(requests_total[1m]))"),
        ("reqs_min", "min by (job) (min_over_time(requests_total[1m]))"),
        ("reqs_max", "max by (job) (max_over_time(requests_total[1m]))"),
        ("reqs_count_series", "count by (job) (count_over_time(requests_total[1m]))"),
    ];
    for w in 1..=10 {
        let end = (base + w * 60_000) as f64 / 1000.0;
        for (output, promql) in pairs {
            let want = query(&node, promql, end - 0.001).await;
            assert_eq!(want.len(), 2, "{promql} at {end}: {want:?}");
            let got = wait_until(Duration::from_secs(10), || async {
                let got = query(&node, output, end).await;
                same(&got, &want).then_some(got)
            })
            .await;
            assert!(
                got.is_some(),
                "{output} at {end}: {:?}, PromQL {want:?}",
                query(&node, output, end).await
            );
        }
    }
    // The restart is a counter reset: increase counts the new value whole, never negative.
    let increases = query(&node, "reqs_increase", (base + 360_000) as f64 / 1000.0).await;
    assert!(increases.iter().all(|(_, v)| *v >= 0.0), "{increases:?}");

    // keep_input = false: the outputs (grouped without instance), and no input series.
    let series: Value = reqwest::Client::new()
        .get(node.url("/api/v1/series"))
        .query(&[("match[]", "noisy_total")])
        .send()
        .await
        .expect("series answered")
        .json()
        .await
        .expect("json");
    assert_eq!(series["data"].as_array().map(Vec::len), Some(0), "{series}");
    let end = (base + 60_000) as f64 / 1000.0;
    let want = query(&node, "sum by (job) (sum_over_time(requests_total[1m]))", end - 0.001).await;
    assert!(same(&query(&node, "dropped_sum_samples", end).await, &want));

    // Self-monitoring (refreshed at the leader's ticks): every sample taken once, five series.
    let taken = wait_until(Duration::from_secs(10), || async {
        let m = reqwest::get(node.url("/metrics")).await.ok()?.text().await.ok()?;
        let events = m.lines().any(|l| l == r#"collabstream_aggregation_events_total{rule="reqs"} 345"#);
        let series = m.lines().any(|l| l == r#"collabstream_aggregation_input_series{rule="reqs"} 5"#);
        // At least the five series' rows (the windows' come with the next checkpoint).
        let bytes = m
            .lines()
            .find_map(|l| l.strip_prefix(r#"collabstream_aggregation_state_bytes{rule="reqs"} "#))
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|b| b >= 5 * 24);
        (events && series && bytes).then_some(())
    })
    .await;
    assert!(taken.is_some(), "{}", reqwest::get(node.url("/metrics")).await.unwrap().text().await.unwrap());
}
