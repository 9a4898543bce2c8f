//! Aggregation rules through the front doors of a three-node cluster: from the TOML, through
//! `/api/v1/aggregations` on any node and the Admin gRPC service, the same on every node, with
//! their outputs visible to PromQL everywhere, and kept across a SIGKILL.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use collabstream_proto::v1;
use collabstream_proto::v1::admin_service_client::AdminServiceClient;
use collabstream_tests::{TestCluster, wait_until};
use serde_json::{Value, json};

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_millis() as i64
}

const CONFIG: &str = r#"
[[aggregations]]
name = "chat_length"
events = "chat"
value = "length"
group_by = ["meeting_id"]
window = "10s"
outputs = ["count", "sum"]
"#;

async fn rules(url: String) -> Value {
    reqwest::get(url).await.expect("listed").json().await.expect("json")
}

/// The users' rule names node `i` lists.
async fn names(cluster: &TestCluster, i: usize) -> Vec<String> {
    let body = rules(cluster.node(i).url("/api/v1/aggregations")).await;
    body["data"]["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str().map(String::from))
        .collect()
}

async fn post(url: String, rule: &Value) -> (u16, Value) {
    let r = reqwest::Client::new().post(url).json(rule).send().await.expect("answered");
    (r.status().as_u16(), r.json().await.expect("json"))
}

/// The first result's value of `query` at `time` (unix seconds).
async fn instant(url: &str, query: &str, time: f64) -> Option<f64> {
    let request = reqwest::Client::new().get(url).query(&[("query", query), ("time", &time.to_string())]);
    let body: Value = request.send().await.ok()?.json().await.ok()?;
    body["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

fn latency_rule() -> Value {
    json!({
        "name": "quality_latency",
        "events": "meeting",
        "actions": ["quality"],
        "value": "latency_ms",
        "group_by": ["meeting_id"],
        "window": "10s",
        "outputs": ["count", "avg", "max", "quantile(0.5)"],
        "allowed_lateness": "1m",
    })
}

fn quality(meeting: &str, latency: f64, ts: i64) -> String {
    format!(
        r#"{{"type":"meeting","meeting_id":"{meeting}","user_id":"p","kind":"quality","latency_ms":{latency},"jitter_ms":1,"packet_loss_pct":0,"timestamp":{ts}}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_are_the_same_on_every_node_and_their_outputs_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("rules.toml");
    std::fs::write(&config, CONFIG).expect("config written");
    let config = config.display().to_string();
    let mut cluster = TestCluster::start(dir.path(), 3, &["--config", &config]).await.expect("cluster");
    let leader = cluster.wait_leader(&[0, 1, 2], Duration::from_secs(20)).await.expect("a leader");
    let follower = (leader + 1) % 3;

    // The configured rule, proposed by the leader, on every node; the pack listed beside it.
    for i in 0..3 {
        let listed = wait_until(Duration::from_secs(20), || async {
            (names(&cluster, i).await == ["chat_length"]).then_some(())
        })
        .await;
        assert!(listed.is_some(), "node {} lists {:?}", i + 1, names(&cluster, i).await);
    }
    let body = rules(cluster.node(leader).url("/api/v1/aggregations")).await;
    assert_eq!(body["data"]["rules"][0]["window"], "10s", "{body}");
    assert!(
        body["data"]["packs"]["meetings"].as_array().unwrap().iter().any(|n| n == "meeting_health"),
        "{body}"
    );

    // A rule created on a follower; again, unchanged; otherwise defined, a conflict.
    let url = cluster.node(follower).url("/api/v1/aggregations");
    let (status, body) = post(url.clone(), &latency_rule()).await;
    assert_eq!((status, &body["data"]["changed"]), (200, &json!(true)), "{body}");
    let (status, body) = post(url.clone(), &latency_rule()).await;
    assert_eq!((status, &body["data"]["changed"]), (200, &json!(false)), "{body}");
    let mut other = latency_rule();
    other["window"] = json!("20s");
    let (status, body) = post(url.clone(), &other).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("delete it first"), "{body}");
    // Bad rules: 400, Prometheus-style, naming the field.
    let mut bad = latency_rule();
    bad["group_by"] = json!(["room"]);
    let (status, body) = post(url.clone(), &bad).await;
    assert_eq!((status, &body["errorType"]), (400, &json!("bad_data")), "{body}");
    assert!(body["error"].as_str().unwrap().contains("group_by: unknown text field \"room\""), "{body}");
    let (status, body) = post(url.clone(), &json!({"name": "x", "outputs": ["count"], "windw": "1m"})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("windw"), "{body}");
    let r = reqwest::Client::new().delete(format!("{url}/meeting_health")).send().await.expect("answered");
    assert_eq!(r.status(), 409);
    // And through the Admin service: INVALID_ARGUMENT with the reason.
    let mut admin = AdminServiceClient::connect(cluster.node(follower).grpc_url()).await.expect("admin");
    let bad_rule = v1::AggregationRule { name: "g".into(), origin: "api".into(), ..Default::default() };
    let err =
        admin.create_aggregation(v1::CreateAggregationRequest { rule: Some(bad_rule) }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().contains("events: unknown event kind"), "{err}");
    let listed = admin.list_aggregations(v1::ListAggregationsRequest {}).await.expect("listed").into_inner();
    let listed: Vec<_> = listed.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(listed, ["chat_length", "quality_latency"]);

    // Events into a third node: 100, 200 and 300 ms in one 10 s window of m1, closed by a
    // report 5 s (the default out-of-orderness) past its end.
    let w = (now_ms() - 120_000).div_euclid(10_000) * 10_000;
    let lines =
        [quality("m1", 100.0, w + 1_000), quality("m1", 300.0, w + 2_000), quality("m1", 200.0, w + 3_000)];
    let mut lines = lines.to_vec();
    lines.push(quality("m2", 1.0, w + 15_000));
    let writer = (leader + 2) % 3;
    let r = reqwest::Client::new()
        .post(cluster.node(writer).url("/api/v1/events"))
        .body(lines.join("\n"))
        .send()
        .await;
    assert_eq!(r.expect("events").status(), 200);
    let at = (w + 10_000) as f64 / 1000.0 + 1.0;
    for i in 0..3 {
        let url = cluster.node(i).url("/api/v1/query");
        let q = |metric: &str| format!(r#"{metric}{{meeting_id="m1"}}"#);
        let avg_query = q("quality_latency_avg");
        let avg = wait_until(Duration::from_secs(20), || instant(&url, &avg_query, at)).await;
        assert_eq!(avg, Some(200.0), "node {}", i + 1);
        assert_eq!(instant(&url, &q("quality_latency_max"), at).await, Some(300.0));
        assert_eq!(instant(&url, &q("quality_latency_count"), at).await, Some(3.0));
        let median = r#"quality_latency_quantile{meeting_id="m1",quantile="0.5"}"#;
        let median = instant(&url, median, at).await.expect("a median");
        assert!((median - 200.0).abs() <= 2.0, "within DDSketch's 1 %: {median}");
    }

    // The rule's rows: one per group and window, on any node.
    let url = cluster.node(follower).url("/api/v1/aggregations/quality_latency/rows");
    let body: Value = reqwest::Client::new()
        .get(&url)
        .query(&[("start", (w as f64 / 1000.0).to_string()), ("end", at.to_string())])
        .send()
        .await
        .expect("rows answered")
        .json()
        .await
        .expect("json");
    assert_eq!(
        body["data"]["columns"],
        json!([
            "quality_latency_count",
            "quality_latency_avg",
            "quality_latency_max",
            "quality_latency_quantile_0_5"
        ]),
        "{body}"
    );
    let row = &body["data"]["rows"][0];
    assert_eq!(row["group"], json!({"meeting_id": "m1"}), "{body}");
    assert_eq!(
        (row["start"].as_f64(), row["end"].as_f64()),
        (Some(w as f64 / 1000.0), Some(at - 1.0)),
        "{body}"
    );
    assert_eq!(
        row["values"].as_array().map(|v| v[..3].to_vec()),
        Some(vec![json!(3.0), json!(200.0), json!(300.0)]),
        "{body}"
    );
    let r = reqwest::get(format!("{url}?start=soon")).await.expect("answered");
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.expect("json");
    assert!(body["error"].as_str().unwrap().contains("start: \"soon\" is neither"), "{body}");
    let r = reqwest::get(cluster.node(follower).url("/api/v1/aggregations/nothing/rows"))
        .await
        .expect("answered");
    assert_eq!(r.status(), 404);

    // Deleted through another node: gone everywhere; kept so across a SIGKILL and restart.
    let r = reqwest::Client::new()
        .delete(cluster.node(writer).url("/api/v1/aggregations?name=quality_latency"))
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status(), 200);
    cluster.kill(follower);
    cluster.restart(follower).expect("restarts");
    for i in 0..3 {
        let listed = wait_until(Duration::from_secs(30), || async {
            (names(&cluster, i).await == ["chat_length"]).then_some(())
        })
        .await;
        assert!(listed.is_some(), "node {} lists {:?}", i + 1, names(&cluster, i).await);
    }
}
