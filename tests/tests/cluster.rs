//! Three real nodes in one Raft cluster on loopback: writes through any node, a killed
//! leader, a partitioned follower that catches up (from the log or a snapshot), a full
//! restart, a learner promoted to voter, and a minority that never acknowledges.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use collabstream_proto::v1::admin_service_client::AdminServiceClient;
use collabstream_proto::v1::ingest_service_client::IngestServiceClient;
use collabstream_proto::v1::{self, event::Event as Ev};
use collabstream_tests::{Node, Proxy, TestCluster, wait_until};

const T0: i64 = 1_732_780_800_000;

/// One cluster at a time: three nodes per test already fill the machine's two cores, and
/// elections in overlapping clusters would time out for reasons no user would see.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const WAIT: Duration = Duration::from_secs(20);

/// Fast elections, small snapshots, short waits for a leader: set for every node.
fn config(dir: &std::path::Path) -> String {
    let path = dir.join("cluster.toml");
    std::fs::write(
        &path,
        "[raft]\nheartbeat_interval = \"100ms\"\nelection_timeout = \"600ms\"\nsnapshot_after_entries = 10\n\
         keep_entries = 2\nleader_wait = \"3s\"\n",
    )
    .expect("config");
    path.to_str().expect("utf-8").to_string()
}

/// One cluster at a time (see [`SERIAL`]), three nodes with [`config`], and its leader. The
/// guard and the directory must live as long as the cluster.
async fn three_nodes() -> (tokio::sync::MutexGuard<'static, ()>, tempfile::TempDir, String, TestCluster, usize)
{
    let serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    let cluster = TestCluster::start(dir.path(), 3, &["--config", &cfg]).await.expect("cluster starts");
    let leader = cluster.wait_leader(&[0, 1, 2], WAIT).await.expect("leader");
    (serial, dir, cfg, cluster, leader)
}

/// Batch `k`: one sample of `cl_total` at T0 + k s (value k) and one chat event with id `k`.
fn batch(k: i64) -> v1::WriteRequest {
    v1::WriteRequest {
        batch_id: format!("batch-{k}"),
        series: vec![v1::TimeSeries {
            labels: vec![
                v1::Label { name: "__name__".into(), value: "cl_total".into() },
                v1::Label { name: "job".into(), value: "cluster".into() },
            ],
            samples: vec![v1::Sample { timestamp_ms: T0 + k * 1000, value: k as f64 }],
        }],
        events: vec![v1::Event {
            event: Some(Ev::Chat(v1::ChatEvent {
                meeting_id: "m1".into(),
                user_id: "u1".into(),
                message_id: format!("msg-{k}"),
                length: 1,
                timestamp_ms: T0 + k * 1000,
                ..Default::default()
            })),
        }],
    }
}

async fn write(node: &Node, k: i64) -> Result<v1::WriteResponse, tonic::Status> {
    let mut client = IngestServiceClient::connect(node.grpc_url())
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    client.write(batch(k)).await.map(|r| r.into_inner())
}

/// The samples of `cl_total` on `node`: timestamp → value.
async fn samples(node: &Node) -> BTreeMap<i64, f64> {
    node.export("cl_total").await.into_values().next().unwrap_or_default()
}

/// Waits until `node` holds exactly the batches `ks` (samples and each event once).
async fn assert_holds(node: &Node, ks: &[i64], what: &str) {
    let want: BTreeMap<i64, f64> = ks.iter().map(|k| (T0 + k * 1000, *k as f64)).collect();
    let got = wait_until(WAIT, || async {
        let s = samples(node).await;
        (s == want).then_some(s)
    })
    .await;
    assert!(got.is_some(), "{what}: samples differ: want {} got {:?}", want.len(), samples(node).await.len());
    let events = node.chat_message_counts().await;
    for k in ks {
        assert_eq!(events.get(&format!("msg-{k}")), Some(&1), "{what}: event msg-{k} stored once");
    }
    assert_eq!(events.len(), ks.len(), "{what}: no other events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_a_follower_are_readable_on_every_node() {
    let (_serial, _dir, _cfg, cluster, leader) = three_nodes().await;
    let follower = (leader + 1) % 3;
    for k in 0..5 {
        let r = write(cluster.node(follower), k).await.expect("a follower accepts writes");
        assert_eq!((r.samples_accepted, r.events_accepted), (1, 1));
    }
    // The leader logs no forwarded write it cannot read whole: a bad one is refused up front.
    let mut raft = v1::raft_service_client::RaftServiceClient::connect(cluster.node(leader).grpc_url())
        .await
        .expect("raft client");
    let refused = raft.forward(v1::ForwardRequest { write: vec![0x12, 0x7f, 0x0a].into() }).await;
    assert_eq!(refused.expect_err("refused").code(), tonic::Code::InvalidArgument);
    // A strong read on the other follower sees every acknowledged write at once.
    let other = (leader + 2) % 3;
    let url = cluster.node(other).url("/api/v1/query");
    let at = ((T0 + 10_000) / 1000).to_string();
    let params =
        [("query", "count_over_time(cl_total[1h])"), ("time", at.as_str()), ("consistency", "strong")];
    let body: serde_json::Value = reqwest::Client::new()
        .get(&url)
        .query(&params)
        .send()
        .await
        .expect("query")
        .json()
        .await
        .expect("json");
    assert_eq!(body["data"]["result"][0]["value"][1], "5", "{body}");
    let bad =
        reqwest::Client::new().get(&url).query(&[("query", "1"), ("consistency", "eventual")]).send().await;
    assert_eq!(bad.expect("query").status().as_u16(), 400);
    let ks: Vec<i64> = (0..5).collect();
    for i in 0..3 {
        assert_holds(cluster.node(i), &ks, &format!("node {}", i + 1)).await;
    }
    let status = cluster.status(leader).await.expect("status");
    assert_eq!(status.members.len(), 3);
    assert!(status.members.iter().all(|m| m.role == "voter" && m.lag.is_some()), "{status:?}");

    // The operator's view, through a follower: `collabstream cluster status`.
    let out = std::process::Command::new(collabstream_tests::binary())
        .args(["cluster", "status", "--endpoint", &cluster.node(follower).grpc.to_string()])
        .output()
        .expect("the CLI runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(&format!("leader: node {}", leader + 1)), "{text}");
    assert_eq!(text.lines().filter(|l| l.contains("voter")).count(), 3, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_under_load_loses_no_acknowledged_write() {
    let (_serial, _dir, _cfg, mut cluster, leader) = three_nodes().await;
    let urls: Vec<String> = (0..3).map(|i| cluster.node(i).grpc_url()).collect();

    // A client writing batches one after another to the nodes in turn; a batch is retried
    // (same id) on the next node until acknowledged. Bounded in count and time.
    // What every failed attempt met is kept, to show if the load does not get through.
    let load = tokio::spawn(async move {
        let mut acked = Vec::new();
        let mut failures = Vec::new();
        let started = Instant::now();
        let mut next_node = 0;
        for k in 0..120i64 {
            loop {
                if started.elapsed() > Duration::from_secs(60) {
                    return (acked, failures);
                }
                let node = next_node % urls.len();
                next_node += 1;
                let attempt = Instant::now();
                let result = match IngestServiceClient::connect(urls[node].clone()).await {
                    Ok(mut c) => c.write(batch(k)).await.map(drop).map_err(|s| s.message().to_string()),
                    Err(e) => Err(format!("connect: {e}")),
                };
                match result {
                    Ok(()) => {
                        acked.push(k);
                        break;
                    }
                    Err(e) => failures.push(format!(
                        "{:.1?} batch {k} node {} after {:.1?}: {e}",
                        started.elapsed(),
                        node + 1,
                        attempt.elapsed()
                    )),
                }
            }
        }
        (acked, failures)
    });
    // Kill the leader once some writes went through.
    let first = cluster.wait_applied(leader, 40, WAIT).await.expect("load is running");
    assert!(first.applied_index.unwrap_or(0) >= 40);
    cluster.kill(leader);
    let (acked, failures) = load.await.expect("load task");
    if acked.len() != 120 {
        let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
        panic!(
            "only {} of 120 batches were acknowledged within 60 s; failed attempts:\n{}\n{}",
            acked.len(),
            failures.join("\n"),
            cluster.describe(&survivors).await
        );
    }
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    cluster.wait_leader(&survivors, WAIT).await.expect("a new leader");
    for &i in &survivors {
        assert_holds(cluster.node(i), &acked, &format!("survivor {}", i + 1)).await;
    }
    cluster.restart(leader).expect("old leader restarts");
    assert_holds(cluster.node(leader), &acked, "restarted old leader").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_follower_catches_up_through_a_snapshot() {
    let (_serial, _dir, _cfg, cluster, leader) = three_nodes().await;
    let follower = (leader + 1) % 3;
    write(cluster.node(leader), 0).await.expect("write");
    assert_holds(cluster.node(follower), &[0], "before the cut").await;
    let applied_before = cluster.status(follower).await.expect("status").applied_index.unwrap_or(0);

    cluster.isolate(follower);
    let ks: Vec<i64> = (0..40).collect();
    for &k in &ks[1..] {
        write(cluster.node(leader), k).await.expect("the majority keeps accepting writes");
    }
    // The leader snapshots and drops the log the follower would need.
    let purged = wait_until(WAIT, || async {
        let s = cluster.status(leader).await.ok()?;
        (s.purged_index.unwrap_or(0) > applied_before + 1).then_some(s)
    })
    .await;
    assert!(purged.is_some(), "the leader purged its log behind a snapshot");
    assert_eq!(samples(cluster.node(follower)).await.len(), 1, "the cut-off follower saw nothing new");

    cluster.heal(follower);
    assert_holds(cluster.node(follower), &ks, "healed follower").await;
    assert!(cluster.node(follower).log().contains("snapshot installed"), "it caught up through a snapshot");
    // And it keeps up with new writes from the log.
    write(cluster.node(leader), 40).await.expect("write");
    let all: Vec<i64> = (0..41).collect();
    assert_holds(cluster.node(follower), &all, "after the snapshot").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_cluster_restart_recovers_everything() {
    let (_serial, _dir, _cfg, mut cluster, leader) = three_nodes().await;
    let ks: Vec<i64> = (0..25).collect();
    for &k in &ks {
        write(cluster.node((leader + k as usize) % 3), k).await.expect("write");
    }
    for i in 0..3 {
        cluster.kill(i);
    }
    for i in 0..3 {
        cluster.restart(i).expect("restarts");
    }
    cluster.wait_leader(&[0, 1, 2], WAIT).await.expect("a leader after the restart");
    for i in 0..3 {
        assert_holds(cluster.node(i), &ks, &format!("node {} after restart", i + 1)).await;
    }
    write(cluster.node(0), 25).await.expect("writes after the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_catches_up_and_is_promoted() {
    let (_serial, dir, cfg, cluster, leader) = three_nodes().await;
    let ks: Vec<i64> = (0..15).collect();
    for &k in &ks {
        write(cluster.node(leader), k).await.expect("write");
    }
    // Node 4 starts knowing the cluster; it does not form one of its own. It is known by a
    // relay address, bound before it starts on ports of its own choosing.
    let front = Proxy::bind().await.expect("relay");
    let addr = front.addr.to_string();
    let mut peers: Vec<String> = (0..3).map(|i| format!("{}={}", i + 1, cluster.member_addr(i))).collect();
    peers.push(format!("4={addr}"));
    let peers = peers.join(",");
    let learner =
        Node::start(&dir.path().join("node-4"), &["--node-id", "4", "--peers", &peers, "--config", &cfg])
            .expect("node 4 starts");
    front.set_target(learner.grpc);
    // Added through a follower: the request is passed to the leader.
    let mut admin =
        AdminServiceClient::connect(cluster.node((leader + 1) % 3).grpc_url()).await.expect("admin");
    admin.add_learner(v1::AddLearnerRequest { node_id: 4, addr: addr.clone() }).await.expect("learner added");
    assert_holds(&learner, &ks, "learner").await;
    let resp = admin.promote(v1::MembershipRequest { node_id: 4 }).await.expect("promoted").into_inner();
    let status = resp.status.expect("status");
    let m4 = status.members.iter().find(|m| m.id == 4).expect("node 4 is a member");
    assert_eq!(m4.role, "voter", "{status:?}");
    // A write now needs node 4 or two of the others; it lands on node 4 too.
    write(cluster.node(leader), 15).await.expect("write");
    let all: Vec<i64> = (0..16).collect();
    assert_holds(&learner, &all, "promoted node").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_never_acknowledges_a_write() {
    let (_serial, _dir, _cfg, cluster, old) = three_nodes().await;
    write(cluster.node(old), 0).await.expect("write");
    cluster.isolate(old);
    // The cut-off leader cannot commit: the write is refused (503), not acknowledged.
    let refused = write(cluster.node(old), 1).await;
    assert!(refused.is_err(), "a write to the minority was acknowledged: {refused:?}");
    assert_eq!(refused.unwrap_err().code(), tonic::Code::Unavailable);
    // Nor a change of its own making: a rule change is answered 503 within leader_wait (3 s),
    // as the write was. Unbounded, it waited until the heal, and a configuration proposal
    // left so held every write of a new leader back.
    let rule = serde_json::json!({
        "name": "chat_length", "events": "chat", "value": "length",
        "group_by": ["meeting_id"], "window": "10s", "outputs": ["count"],
    });
    let answer = reqwest::Client::new()
        .post(cluster.node(old).url("/api/v1/aggregations"))
        .json(&rule)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("the cut-off leader answers a rule change within 10 s");
    assert_eq!(answer.status(), 503, "{}", answer.text().await.unwrap_or_default());
    let majority: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    let new = cluster.wait_leader(&majority, WAIT).await.expect("the majority elects a leader");
    write(cluster.node(new), 2).await.expect("the majority accepts writes");
    cluster.heal(old);
    for i in 0..3 {
        assert_holds(cluster.node(i), &[0, 2], &format!("node {} after the heal", i + 1)).await;
    }
}

/// Issue 5's SDK promise: with every node as an endpoint, writes survive a leader change
/// (retried with their batch ids, so none is stored twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_writes_survive_a_leader_change() {
    let _serial = SERIAL.lock().await;
    use collabstream_sdk::{Client, ClientConfig};
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    let mut cluster = TestCluster::start(dir.path(), 3, &["--config", &cfg]).await.expect("cluster starts");
    let leader = cluster.wait_leader(&[0, 1, 2], WAIT).await.expect("leader");
    let mut config = ClientConfig::new((0..3).map(|i| cluster.node(i).grpc_url()));
    config.initial_backoff = Duration::from_millis(50);
    config.max_backoff = Duration::from_millis(500);
    config.max_attempts = 80;
    let client = Client::connect(config).expect("client");
    let ks: Vec<i64> = (0..60).collect();
    for &k in &ks {
        if k == 20 {
            cluster.kill(leader);
        }
        client.write(batch(k)).await.unwrap_or_else(|e| panic!("batch {k} failed: {e}"));
    }
    for i in (0..3).filter(|i| *i != leader) {
        assert_holds(cluster.node(i), &ks, &format!("survivor {}", i + 1)).await;
    }
}

/// One write larger than an append request's share (4 MiB) still reaches the followers: it
/// goes alone. It used to be refused as too large at every try, even alone, so the cluster
/// never committed it (nor anything after it) and every client waited out `leader_wait`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_larger_than_an_append_request_commits_on_every_node() {
    let (_serial, _dir, _cfg, cluster, leader) = three_nodes().await;
    let n = 24_000usize;
    let pad = "x".repeat(200);
    let events: Vec<v1::Event> = (0..n)
        .map(|i| v1::Event {
            event: Some(Ev::Chat(v1::ChatEvent {
                meeting_id: "m1".into(),
                user_id: "u1".into(),
                message_id: format!("big-{i}-{pad}"),
                length: 1,
                timestamp_ms: T0 + i as i64,
                ..Default::default()
            })),
        })
        .collect();
    let request = v1::WriteRequest { batch_id: "big".into(), series: vec![], events };
    assert!(prost::Message::encoded_len(&request) > 5 << 20, "larger than an append request");
    let mut client = IngestServiceClient::connect(cluster.node(leader).grpc_url())
        .await
        .expect("connect")
        .max_encoding_message_size(64 << 20);
    let r = client.write(request).await.expect("the large write commits").into_inner();
    assert_eq!(r.events_accepted, n as u64);
    // And the cluster goes on committing after it.
    write(cluster.node(leader), 1).await.expect("a write after the large one");
    for i in 0..3 {
        let held = wait_until(WAIT, || async {
            let c = cluster.node(i).chat_message_counts().await;
            (c.len() == n + 1).then_some(c)
        })
        .await;
        assert!(held.is_some(), "node {} holds the large write and the next", i + 1);
    }
}
