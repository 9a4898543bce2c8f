//! `/metrics` of a node: the process, Raft and HTTP request families hold plausible values, and the whole
//! page passes `promtool check metrics` (Debian's Prometheus package, the reference for the
//! exposition format's conventions: HELP and TYPE for every family, counters ending in `_total`,
//! units in names).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use collabstream_tests::{Node, wait_until};

fn value(page: &str, series: &str) -> Option<f64> {
    page.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_follows_prometheus_conventions_and_tells_the_process_and_raft_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(dir.path(), &[]).expect("node");
    let url = node.url("/metrics");
    // A single node elects itself: wait until it says it leads.
    let page = wait_until(Duration::from_secs(30), || async {
        let page = reqwest::get(&url).await.ok()?.text().await.ok()?;
        (value(&page, "collabstream_raft_is_leader") == Some(1.0)).then_some(page)
    })
    .await
    .expect("the node leads within 30 s");

    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs_f64();
    let start = value(&page, "process_start_time_seconds").expect("start time");
    assert!(start <= now + 1.0 && start > now - 600.0, "started at {start}, now {now}");
    assert!(value(&page, "process_resident_memory_bytes").expect("rss") > 1e6);
    assert!(value(&page, "process_virtual_memory_bytes").expect("vsz") > 1e6);
    let fds = value(&page, "process_open_fds").expect("fds");
    assert!(fds > 3.0 && fds <= value(&page, "process_max_fds").expect("max fds"));
    // Ticks of 10 ms: a fresh node may have used none yet.
    let cpu = value(&page, "process_cpu_seconds_total").expect("cpu");
    assert!(cpu >= 0.0);
    assert!(value(&page, "collabstream_raft_term").expect("term") >= 1.0);
    assert_eq!(value(&page, "collabstream_raft_leader_id"), Some(1.0));
    let last = value(&page, "collabstream_raft_last_log_index").expect("last index");
    assert!(last >= 1.0, "{last}");
    assert!(value(&page, "collabstream_raft_member_matched_index{member=\"1\"}").is_some(), "{page}");
    // RocksDB's compaction and stall figures: nothing stalls an idle node.
    assert_eq!(value(&page, "collabstream_rocksdb_write_stopped"), Some(0.0));
    assert_eq!(value(&page, "collabstream_rocksdb_delayed_write_rate_bytes"), Some(0.0));
    for family in ["running_compactions", "running_flushes", "pending_compaction_bytes"] {
        assert!(value(&page, &format!("collabstream_rocksdb_{family}")).is_some(), "no {family}: {page}");
    }

    // Requests are counted by route pattern and status, and timed.
    let client = reqwest::Client::new();
    for q in ["up", "up{", "up"] {
        client.get(node.url("/api/v1/query")).query(&[("query", q)]).send().await.expect("query");
    }
    client.get(node.url("/api/v1/label/job/values")).send().await.expect("values");
    let event =
        r#"{"type":"chat","meeting_id":"m1","user_id":"u1","message_id":"x","length":3,"timestamp":1}"#;
    let r = client.post(node.url("/api/v1/events")).body(event).send().await.expect("events");
    assert!(r.status().is_success(), "{}", r.text().await.unwrap_or_default());
    let page = reqwest::get(&url).await.expect("metrics").text().await.expect("page");
    // PromQL evaluations by kind and outcome (a parse error is one that failed), and the
    // write's way through Raft: proposed, committed, applied.
    let promql = |outcome: &str| {
        value(&page, &format!("collabstream_promql_queries_total{{kind=\"instant\",outcome=\"{outcome}\"}}"))
    };
    assert_eq!((promql("ok"), promql("error")), (Some(2.0), Some(1.0)), "{page}");
    assert_eq!(value(&page, "collabstream_promql_query_duration_seconds_count{kind=\"instant\"}"), Some(3.0));
    assert!(value(&page, "collabstream_promql_query_samples_total").is_some(), "{page}");
    assert!(
        value(&page, "collabstream_raft_commit_duration_seconds_count").expect("commits") >= 1.0,
        "{page}"
    );
    assert!(value(&page, "collabstream_raft_apply_duration_seconds_count").expect("applies") >= 1.0);
    assert!(value(&page, "collabstream_raft_applied_entries_total").expect("entries") >= 2.0);
    for family in
        ["checkpoints", "checkpoint_seconds", "checkpoint_apply_wait_seconds", "checkpoint_written_bytes"]
    {
        assert!(value(&page, &format!("collabstream_{family}_total")).is_some(), "no {family}: {page}");
    }
    for counter in ["snapshots_built", "snapshots_installed", "leader_changes"] {
        assert!(
            value(&page, &format!("collabstream_raft_{counter}_total")).is_some(),
            "no {counter}: {page}"
        );
    }
    let requests = |route: &str, code: u16| {
        value(&page, &format!("collabstream_http_requests_total{{handler=\"{route}\",code=\"{code}\"}}"))
    };
    assert_eq!(requests("/api/v1/query", 200), Some(2.0), "{page}");
    assert_eq!(requests("/api/v1/query", 400), Some(1.0), "{page}");
    assert_eq!(requests("/api/v1/label/{name}/values", 200), Some(1.0), "by pattern, not by path: {page}");
    assert!(value(&page, "process_cpu_seconds_total").expect("cpu") >= cpu, "a counter");
    let timed = |suffix: &str| {
        value(
            &page,
            &format!("collabstream_http_request_duration_seconds{suffix}{{handler=\"/api/v1/query\"}}"),
        )
    };
    assert_eq!(timed("_count"), Some(3.0));
    assert!(timed("_sum").expect("sum") > 0.0);
    assert_eq!(
        value(
            &page,
            "collabstream_http_request_duration_seconds_bucket{handler=\"/api/v1/query\",le=\"+Inf\"}"
        ),
        Some(3.0)
    );

    // docs/metrics.md lists every family the page serves.
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/metrics.md"))
        .expect("doc");
    for family in page.lines().filter_map(|l| l.strip_prefix("# HELP ")).filter_map(|l| l.split(' ').next()) {
        assert!(doc.contains(&format!("| `{family}` |")), "docs/metrics.md does not list {family}");
    }
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (Debian's prometheus package, installed by scripts/install-deps.sh)");
    check.stdin.take().expect("stdin").write_all(page.as_bytes()).expect("page to promtool");
    let out = check.wait_with_output().expect("promtool");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
