//! The cold tier end to end, on an S3-compatible server (moto) on loopback: blocks of samples
//! and of raw events move and answer as before, through an outage in the middle of a pass, a restart and cold retention;
//! a new cluster on the same prefix deletes none of the old one's objects;
//! and on three nodes, a leader killed between an upload and its manifest commit leaves no
//! duplicate and loses nothing.

use std::path::Path;
use std::time::Duration;

use collabstream_proto::v1::{self, ingest_service_client::IngestServiceClient};
use collabstream_tests::{Exported, Moto, Node, Proxy, TestCluster, wait_until};

use serde_json::Value;

const SELECTOR: &str = "{__name__=~\"ct_.*\"}";
const BLOCK_MS: i64 = 600_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64
}

/// A node config: 10-minute blocks, 30 minutes hot, passes only when the test asks.
fn config(dir: &Path, endpoint: &str, extra: &str) -> String {
    let path = dir.join("node.toml");
    std::fs::write(
        &path,
        format!(
            "[store]\nblock_duration = \"10m\"\n[tiering]\nhot_retention = \"30m\"\ninterval = \"1h\"\n{extra}\n\
             [object_store]\nurl = \"s3://cold/tier\"\nendpoint = \"{endpoint}\"\nallow_http = true\n\
             access_key = \"test\"\nsecret_key = \"test\"\n"
        ),
    )
    .expect("config");
    path.to_string_lossy().into_owned()
}

/// Four hours of 20 series (a counter and a gauge on 10 instances), every 30 s, up to `end`,
/// and of two meetings' chat messages, one each a minute.
async fn write_history(grpc: &str, end: i64) {
    let mut client = IngestServiceClient::connect(grpc.to_string()).await.expect("grpc");
    let start = end - 4 * 3_600_000;
    for batch in 0..8i64 {
        let times: Vec<i64> = (0..60).map(|k| start + (batch * 60 + k) * 30_000).collect();
        let mut series = Vec::new();
        for i in 0..10 {
            for (name, value) in [("ct_requests_total", 1.0), ("ct_temperature", 0.25)] {
                series.push(v1::TimeSeries {
                    labels: vec![
                        v1::Label { name: "__name__".into(), value: name.into() },
                        v1::Label { name: "instance".into(), value: format!("i{i}") },
                    ],
                    samples: times
                        .iter()
                        .map(|t| v1::Sample {
                            timestamp_ms: *t,
                            value: value * ((t / 30_000) % 1000 + i) as f64,
                        })
                        .collect(),
                });
            }
        }
        let events = times
            .iter()
            .step_by(2)
            .flat_map(|t| {
                ["m1", "m2"].map(|m| v1::Event {
                    event: Some(v1::event::Event::Chat(v1::ChatEvent {
                        meeting_id: m.into(),
                        user_id: format!("u{}", t / 60_000 % 7),
                        message_id: format!("{m}-{t}"),
                        length: (t / 60_000 % 90) as u32,
                        timestamp_ms: *t,
                        ..Default::default()
                    })),
                })
            })
            .collect();
        let r = client
            .write(v1::WriteRequest { batch_id: format!("history-{batch}"), series, events })
            .await
            .expect("write")
            .into_inner();
        assert_eq!((r.samples_accepted, r.events_accepted), (20 * 60, 60), "{r:?}");
    }
}

/// Waits (polling closely, up to 30 s) until the bucket holds more than `n` objects.
async fn objects_beyond(moto: &Moto, n: usize) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if moto.list("cold").await.is_ok_and(|k| k.len() > n) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

async fn run_pass(node: &Node) -> (u16, Value) {
    let r = reqwest::Client::new().post(node.url("/api/v1/admin/tiering/run")).send().await.expect("run");
    (r.status().as_u16(), r.json().await.expect("JSON"))
}

async fn manifest(node: &Node) -> Value {
    reqwest::get(node.url("/api/v1/admin/tiering")).await.expect("manifest").json().await.expect("JSON")
}

/// Blocks the manifest lists (both tables), each once, each table's one after the other
/// without gaps (the tests' data has samples and events in every block).
fn check_blocks(m: &Value) -> usize {
    let blocks = m["data"]["blocks"].as_array().expect("blocks");
    let mut paths: Vec<&str> = blocks.iter().map(|b| b["path"].as_str().expect("path")).collect();
    for (table, until) in [("samples", "cold_until_ms"), ("events", "events_cold_until_ms")] {
        let of: Vec<&Value> = blocks.iter().filter(|b| b["table"] == table).collect();
        for w in of.windows(2) {
            assert_eq!(
                w[0]["to_ms"].as_i64(),
                w[1]["from_ms"].as_i64(),
                "{table} blocks overlap or leave a gap: {m}"
            );
        }
        if let (Some(last), Some(until)) = (of.last(), m["data"][until].as_i64()) {
            assert_eq!(
                last["to_ms"].as_i64(),
                Some(until),
                "the last {table} block ends where its cold tier does: {m}"
            );
        }
    }
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), blocks.len(), "an object listed twice: {m}");
    blocks.len()
}

/// Every object the manifest names (blocks' files and their series indexes), sorted.
fn named_objects(m: &Value) -> Vec<String> {
    let mut named: Vec<String> = m["data"]["blocks"]
        .as_array()
        .expect("blocks")
        .iter()
        .flat_map(|b| [&b["path"], &b["index_path"]])
        .filter_map(|p| p.as_str().filter(|p| !p.is_empty()).map(str::to_string))
        .collect();
    named.sort();
    named
}

async fn bucket(moto: &Moto) -> Vec<String> {
    let mut keys = moto.list("cold").await.expect("list");
    keys.sort();
    keys
}

async fn range_sum(node: &Node, end: i64) -> Value {
    let q = [
        ("query", "sum(rate(ct_requests_total[5m]))".to_string()),
        ("start", format!("{}", (end - 4 * 3_600_000) / 1000)),
        ("end", format!("{}", end / 1000)),
        ("step", "60".to_string()),
    ];
    let v: Value = reqwest::Client::new()
        .get(node.url("/api/v1/query_range"))
        .query(&q)
        .send()
        .await
        .expect("query")
        .json()
        .await
        .expect("JSON");
    assert_eq!(v["status"], "success", "{v}");
    v["data"].clone()
}

fn since(all: &Exported, from: i64) -> Exported {
    all.iter()
        .map(|(k, s)| (k.clone(), s.range(from..).map(|(t, v)| (*t, *v)).collect()))
        .filter(|(_, s): &(String, std::collections::BTreeMap<i64, f64>)| !s.is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_move_to_s3_through_an_outage_a_restart_and_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let moto = Moto::start(dir.path()).expect("moto");
    moto.create_bucket("cold").await.expect("bucket");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", moto.port).parse().expect("addr");
    let s3 = Proxy::start(addr).await.expect("proxy");
    let endpoint = format!("http://{}", s3.addr);
    let args_for = |extra: &str| {
        let config = config(dir.path(), &endpoint, extra);
        vec!["--config".to_string(), config]
    };
    let args = args_for("");
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let data = dir.path().join("node");
    let mut node = Node::start(&data, &argv).expect("node");
    let end = now_ms() / 30_000 * 30_000;
    write_history(&node.grpc_url(), end).await;
    let before = node.export(SELECTOR).await;
    let before_sum = range_sum(&node, end).await;
    assert_eq!(before.values().map(|s| s.len()).sum::<usize>(), 20 * 480);
    let before_events = node.events_export().await;
    assert_eq!(before_events.lines().count(), 480);

    // The S3 endpoint goes away once the first block is committed: the pass fails part way.
    let pass = {
        let url = node.url("/api/v1/admin/tiering/run");
        tokio::spawn(async move {
            let r = reqwest::Client::new().post(url).send().await.expect("run");
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while check_blocks(&manifest(&node).await) == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    s3.cut();
    let (status, body) = pass.await.expect("pass");
    assert_eq!(status, 503, "the outage came after the pass ended; {body}");
    assert!(body.contains("nothing is lost"), "{body}");
    assert!(node.metric("collabstream_tiering_failures_total").await >= 1.0);
    let ready = reqwest::get(node.url("/readyz")).await.expect("readyz");
    assert_eq!(ready.status().as_u16(), 200, "an object-store outage does not make the node unready");
    let partial = check_blocks(&manifest(&node).await);
    assert!(partial >= 1, "the first block was committed");
    // Meanwhile what is hot answers, and what is cold fails clearly (503) rather than partly.
    let hot_from = manifest(&node).await["data"]["cold_until_ms"].as_i64().expect("cold until");
    let recent = reqwest::Client::new()
        .get(node.url("/api/v1/export"))
        .query(&[("match[]", SELECTOR.to_string()), ("start", format!("{}", hot_from / 1000))])
        .send()
        .await
        .expect("export");
    assert_eq!(recent.status().as_u16(), 200);
    let old = reqwest::Client::new()
        .get(node.url("/api/v1/query"))
        .query(&[
            ("query", "count_over_time(ct_temperature[4h])".to_string()),
            ("time", format!("{}", end / 1000)),
        ])
        .send()
        .await
        .expect("query");
    assert_eq!(old.status().as_u16(), 503);
    let why = old.text().await.unwrap_or_default();
    assert!(why.contains("unavailable") && why.contains("tier/samples/"), "{why}");

    // Back: the next pass moves the rest.
    s3.heal();
    let (status, report) = run_pass(&node).await;
    assert_eq!(status, 200, "{report}");
    let m = manifest(&node).await;
    let blocks = check_blocks(&m);
    let cold_until = m["data"]["cold_until_ms"].as_i64().expect("cold until");
    assert!(cold_until >= end - 40 * 60_000 && blocks > partial, "{m}");
    assert_eq!(bucket(&moto).await, named_objects(&m), "every object in the manifest");
    assert!(named_objects(&m).iter().any(|p| p.ends_with(".idx")), "series indexes: {m}");
    let events_until = m["data"]["events_cold_until_ms"].as_i64().expect("events cold until");
    assert_eq!(events_until, cold_until, "events moved with the samples: {m}");
    assert!(m["data"]["blocks"].as_array().expect("blocks").iter().any(|b| b["table"] == "events"), "{m}");
    assert_eq!(node.export(SELECTOR).await, before);
    assert_eq!(range_sum(&node, end).await, before_sum);
    assert_eq!(node.events_export().await, before_events);

    // A late sample for a cold block is refused, with the reason, and counted.
    let mut client = IngestServiceClient::connect(node.grpc_url()).await.expect("grpc");
    let late = v1::TimeSeries {
        labels: vec![
            v1::Label { name: "__name__".into(), value: "ct_temperature".into() },
            v1::Label { name: "instance".into(), value: "i0".into() },
        ],
        samples: vec![v1::Sample { timestamp_ms: end - 3 * 3_600_000 + 1, value: -1.0 }],
    };
    let refused = client
        .write(v1::WriteRequest { batch_id: "late".into(), series: vec![late], events: vec![] })
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(refused.message().contains("sealed for the cold tier"), "{refused:?}");
    assert_eq!(node.metric("collabstream_samples_refused_cold_total").await, 1.0);
    let late_event = v1::Event {
        event: Some(v1::event::Event::Chat(v1::ChatEvent {
            meeting_id: "m1".into(),
            user_id: "u1".into(),
            message_id: "late".into(),
            timestamp_ms: end - 3 * 3_600_000 + 1,
            ..Default::default()
        })),
    };
    let refused = client
        .write(v1::WriteRequest { batch_id: "late-event".into(), series: vec![], events: vec![late_event] })
        .await
        .expect_err("refused");
    assert!(refused.message().contains("sealed for the cold tier"), "{refused:?}");
    assert_eq!(node.metric("collabstream_events_refused_cold_total").await, 1.0);
    // The hot copies go.
    let dropped = wait_until(Duration::from_secs(30), || async {
        let d = node.metric("collabstream_cold_dropped_chunks_total").await;
        (d > 0.0).then_some(d)
    })
    .await;
    assert!(dropped.is_some(), "the tiered blocks were not dropped from the hot store; log:\n{}", node.log());
    let dropped_events = wait_until(Duration::from_secs(30), || async {
        let d = node.metric("collabstream_cold_dropped_events_total").await;
        (d > 0.0).then_some(d)
    })
    .await;
    assert!(dropped_events.is_some(), "the tiered events were not dropped from the hot store");
    assert_eq!(node.export(SELECTOR).await, before);
    assert_eq!(node.events_export().await, before_events);

    // A restart reads the same manifest, and the same answers.
    node.terminate(Duration::from_secs(30)).expect("stops");
    let node = Node::start(&data, &argv).expect("restarts");
    assert_eq!(check_blocks(&manifest(&node).await), blocks);
    assert_eq!(node.export(SELECTOR).await, before);
    assert_eq!(range_sum(&node, end).await, before_sum);
    assert_eq!(node.events_export().await, before_events);

    // Cold retention of three hours: the older blocks leave the manifest, then the store.
    drop(node);
    let args = args_for("cold_retention = \"3h\"\norphan_age = \"1s\"");
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let node = Node::start(&data, &argv).expect("restarts");
    let (status, report) = run_pass(&node).await;
    assert_eq!(status, 200, "{report}");
    let expired: Vec<&str> =
        report["data"]["expired"].as_array().expect("expired").iter().filter_map(Value::as_str).collect();
    assert!(!expired.is_empty(), "{report}");
    // Their objects go at the next pass, once every replica has stopped reading them.
    let (status, next) = run_pass(&node).await;
    assert_eq!(status, 200, "{next}");
    assert_eq!(next["data"]["orphans_deleted"].as_array().map(Vec::len), Some(expired.len()), "{next}");
    let keys = moto.list("cold").await.expect("list");
    assert!(expired.iter().all(|p| !keys.iter().any(|k| k == p)), "expired objects deleted");
    let m = manifest(&node).await;
    check_blocks(&m);
    assert_eq!(bucket(&moto).await, named_objects(&m));
    // Objects are named <block start>-<token>-<checksum>: what is left starts after the newest
    // expired.
    let gone_until = expired
        .iter()
        .filter_map(|p| p.rsplit('/').next()?.split('-').next()?.parse::<i64>().ok())
        .max()
        .expect("block starts")
        + BLOCK_MS;
    assert_eq!(node.export(SELECTOR).await, since(&before, gone_until));
    let events_left: Vec<&str> = before_events
        .lines()
        .filter(|l| {
            serde_json::from_str::<Value>(l).expect("event")["timestamp"].as_i64() >= Some(gone_until)
        })
        .collect();
    assert!(expired.iter().any(|p| p.contains("/events/")), "{report}");
    assert_eq!(node.events_export().await.lines().collect::<Vec<_>>(), events_left);

    // A new cluster on the same prefix (this one's data directory wiped): every object there
    // carries the old cluster's token, so the new one's passes leave them all alone.
    let token = m["data"]["object_token"].as_str().expect("token").to_string();
    let kept = bucket(&moto).await;
    assert!(!kept.is_empty() && kept.iter().all(|k| k.contains(&format!("-{token}-"))), "{token}: {kept:?}");
    drop(node);
    std::fs::remove_dir_all(&data).expect("wipe the data directory");
    let node = Node::start(&data, &argv).expect("a new cluster");
    let (status, report) = run_pass(&node).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["data"]["orphans_deleted"].as_array().map(Vec::len), Some(0), "{report}");
    assert_ne!(manifest(&node).await["data"]["object_token"].as_str(), Some(token.as_str()));
    assert_eq!(bucket(&moto).await, kept, "the old cluster's objects are all there");
    assert_eq!(node.metric("collabstream_tiering_foreign_objects").await, kept.len() as f64);
    drop(node);
    drop(s3);
    drop(moto);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_between_upload_and_commit_leaves_no_duplicate_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let moto = Moto::start(dir.path()).expect("moto");
    moto.create_bucket("cold").await.expect("bucket");
    let config = config(dir.path(), &moto.endpoint(), "orphan_age = \"1s\"");
    let mut cluster = TestCluster::start(dir.path(), 3, &["--config", &config]).await.expect("cluster");
    let all = [0, 1, 2];
    let leader = cluster.wait_leader(&all, Duration::from_secs(30)).await.expect("leader");
    let end = now_ms() / 30_000 * 30_000;
    write_history(&cluster.node(leader).grpc_url(), end).await;
    let applied = cluster.status(leader).await.expect("status").applied_index.unwrap_or(0);
    for i in all {
        cluster.wait_applied(i, applied, Duration::from_secs(30)).await.expect("applied");
    }
    let before = cluster.node(leader).export(SELECTOR).await;
    assert_eq!(before.values().map(|s| s.len()).sum::<usize>(), 20 * 480);
    let before_events = cluster.node(leader).events_export().await;

    // The leader's pass: once its first object is up, it is cut off from the others, so the
    // commit of a block it uploads cannot complete; it is killed once such an upload exists.
    let pass = {
        let url = cluster.node(leader).url("/api/v1/admin/tiering/run");
        tokio::spawn(async move { reqwest::Client::new().post(url).send().await.map(|r| r.status()) })
    };
    assert!(objects_beyond(&moto, 0).await, "no block reached the object store within 30 s");
    cluster.isolate(leader);
    let uncommitted = wait_until(Duration::from_secs(30), || async {
        let keys = moto.list("cold").await.ok()?;
        // The leader's own manifest: what it committed (and applied) before it was cut off.
        let leader_manifest = manifest(cluster.node(leader)).await;
        check_blocks(&leader_manifest);
        let committed = named_objects(&leader_manifest).len();
        (keys.len() > committed).then_some((keys, committed))
    })
    .await;
    let (keys, committed) = uncommitted.expect("an upload whose commit cannot complete");
    cluster.kill(leader);
    pass.abort();
    cluster.heal(leader);
    assert!(committed < keys.len());

    // A new leader tiers the rest, the uploaded block again among them, once; asked through
    // the other node, a follower, which passes the call on.
    let others: Vec<usize> = all.iter().copied().filter(|i| *i != leader).collect();
    let new_leader = cluster.wait_leader(&others, Duration::from_secs(30)).await.expect("new leader");
    let follower = others.iter().copied().find(|i| *i != new_leader).expect("a follower");
    let (status, report) = run_pass(cluster.node(follower)).await;
    assert_eq!(status, 200, "{report}");
    assert!(!report["data"]["tiered"].as_array().expect("tiered").is_empty(), "{report}");
    let m = manifest(cluster.node(new_leader)).await;
    let blocks = check_blocks(&m);
    assert!(m["data"]["cold_until_ms"].as_i64().expect("cold until") >= end - 40 * 60_000, "{m}");
    let applied = cluster.status(new_leader).await.expect("status").applied_index.unwrap_or(0);

    // Every replica, the old leader restarted too, holds the same manifest, answers from the
    // cold tier as before, and drops its hot copies.
    cluster.restart(leader).expect("restarts");
    for i in all {
        cluster.wait_applied(i, applied, Duration::from_secs(60)).await.expect("applied");
        let node = cluster.node(i);
        assert_eq!(manifest(node).await["data"]["blocks"], m["data"]["blocks"], "node {}", i + 1);
        assert_eq!(node.export(SELECTOR).await, before, "node {}", i + 1);
        assert_eq!(node.events_export().await, before_events, "node {}", i + 1);
        let dropped = wait_until(Duration::from_secs(30), || async {
            let d = node.metric("collabstream_cold_dropped_chunks_total").await;
            (d > 0.0).then_some(d)
        })
        .await;
        assert!(dropped.is_some(), "node {} kept its hot copies", i + 1);
    }

    // The new leader's export of the block the killed one uploaded is the same bytes (same
    // data, same writer), so it lands on the same key; were it named otherwise, the killed
    // leader's object would be an orphan, deleted by a later pass (the orphan collection
    // itself is tested in tiering/tests/tiering_pass.rs). Either way the bucket ends up
    // holding exactly the manifest's objects.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (status, report) = run_pass(cluster.node(new_leader)).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        bucket(&moto).await,
        named_objects(&m),
        "objects are exactly the manifest's ({blocks} blocks)"
    );
    drop(cluster);
    drop(moto);
}
