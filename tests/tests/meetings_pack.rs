//! The meetings pack through the front door: JSON events in, meeting series out through
//! PromQL, closed by later events or by the leader's ticks, and the same after a SIGKILL.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use collabstream_tests::{Node, wait_until};

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_millis() as i64
}

async fn post_events(node: &Node, lines: &[String]) {
    let r = reqwest::Client::new()
        .post(node.url("/api/v1/events"))
        .body(lines.join("\n"))
        .send()
        .await
        .expect("events accepted");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
}

/// `query`'s value for each result's `meeting_id` (and `status`, where there is one).
async fn query(node: &Node, query: &str) -> Vec<(String, f64)> {
    let body = node.query(query, None).await;
    let mut out: Vec<(String, f64)> = body["data"]["result"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|s| {
                    let m = &s["metric"];
                    let key = format!(
                        "{}{}",
                        m["meeting_id"].as_str().unwrap_or(""),
                        m["status"].as_str().map(|s| format!("/{s}")).unwrap_or_default()
                    );
                    (key, s["value"][1].as_str().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn user(meeting: &str, user: &str, action: &str, ts: i64) -> String {
    format!(
        r#"{{"type":"user","meeting_id":"{meeting}","user_id":"{user}","action":"{action}","timestamp":{ts}}}"#
    )
}

fn chat(meeting: &str, user: &str, ts: i64) -> String {
    format!(
        r#"{{"type":"chat","meeting_id":"{meeting}","user_id":"{user}","message_id":"{ts}","length":5,"timestamp":{ts}}}"#
    )
}

fn quality(meeting: &str, latency: f64, ts: i64) -> String {
    format!(
        r#"{{"type":"meeting","meeting_id":"{meeting}","user_id":"probe","kind":"quality","latency_ms":{latency},"jitter_ms":8,"packet_loss_pct":0.2,"timestamp":{ts}}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meeting_events_become_meeting_series() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = Node::start(dir.path(), &[]).expect("node starts");
    // Two minutes ago, in one 30 s window (aligned to the epoch) of meeting m1: three users,
    // one with a camera on, two chatting, and a network far too slow.
    let w = (now_ms() - 120_000).div_euclid(30_000) * 30_000;
    post_events(
        &node,
        &[
            user("m1", "u1", "join", w + 1_000),
            user("m1", "u2", "join", w + 1_500),
            user("m1", "u3", "camera_on", w + 2_000),
            chat("m1", "u1", w + 3_000),
            chat("m1", "u2", w + 4_000),
            quality("m1", 450.0, w + 5_000),
        ],
    )
    .await;
    // An event of another meeting, now: the watermark passes the window (events are in event
    // time), which closes it at once.
    post_events(&node, &[user("m2", "v1", "join", now_ms())]).await;
    let q = |metric: &str| format!("max_over_time({metric}{{meeting_id=\"m1\"}}[10m])");
    let active = wait_until(Duration::from_secs(10), || async {
        let r = query(&node, &q("meeting_active_users")).await;
        (!r.is_empty()).then_some(r)
    })
    .await
    .expect("meeting_active_users appears once the window closes");
    assert_eq!(active, [("m1".to_string(), 4.0)], "u1, u2, u3 and the probe that reported quality");
    assert_eq!(query(&node, &q("meeting_health_score")).await, [("m1".to_string(), 0.0)]);
    assert_eq!(
        query(&node, &q("meeting_health")).await,
        [("m1/fair".to_string(), 0.0), ("m1/good".to_string(), 0.0), ("m1/poor".to_string(), 1.0)]
    );
    assert_eq!(query(&node, &q("meeting_avg_latency_ms")).await, [("m1".to_string(), 450.0)]);

    // m2 has no later event: after 30 s without events (the pack's idle timeout), the leader's
    // ticks close its window.
    let m2 = wait_until(Duration::from_secs(60), || async {
        let r = query(&node, "max_over_time(meeting_active_users{meeting_id=\"m2\"}[10m])").await;
        (!r.is_empty()).then_some(r)
    })
    .await
    .expect("ticks close an idle meeting's window");
    assert_eq!(m2, [("m2".to_string(), 1.0)]);

    // The rules report themselves, with a late event past the allowed lateness counted.
    post_events(&node, &[user("m1", "late", "join", w - 600_000)]).await;
    let metrics = wait_until(Duration::from_secs(10), || async {
        let m = reqwest::get(node.url("/metrics")).await.ok()?.text().await.ok()?;
        m.contains(r#"collabstream_late_events_dropped_total{rule="meeting_active_users"} 1"#).then_some(m)
    })
    .await
    .expect("the late event is counted");
    assert!(metrics.contains(r#"collabstream_aggregation_open_keys{rule="meeting_health"}"#), "{metrics}");
    assert!(metrics.contains(r#"collabstream_aggregation_watermark_seconds{rule="meeting_churn_rate"}"#));
    let counter = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}{{rule=\"meeting_active_users\"}} ")))
            .and_then(|v| v.parse::<u64>().ok())
    };
    // The 6 + 1 events of the first two posts, then the late one (taken, and dropped).
    assert_eq!(counter("collabstream_aggregation_events_total"), Some(8), "{metrics}");
    assert!(counter("collabstream_aggregation_windows_emitted_total").is_some_and(|n| n >= 2), "{metrics}");

    // Killed and restarted: the same, from the log and the checkpoint.
    node.kill9();
    let node = Node::start(dir.path(), &[]).expect("node restarts");
    assert_eq!(query(&node, &q("meeting_active_users")).await, [("m1".to_string(), 4.0)]);
    assert_eq!(query(&node, &q("meeting_health_score")).await, [("m1".to_string(), 0.0)]);
}
