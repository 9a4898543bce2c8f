//! Aggregation through leader failures: the same meeting events sent to a three-node cluster
//! whose leader is SIGKILLed twice mid-stream, and to a single node that is never disturbed.
//! Every output series (the meetings pack's and a rule of our own) is the same on every node
//! of the cluster as on the single node: no window lost, no event counted twice, whether a
//! restarted node recovers from its checkpoint or from a snapshot.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use collabstream_tests::{Exported, Node, TestCluster};

// Checkpoints every second and snapshots every few entries: a restarted node replays from a
// checkpoint with the window state it wrote, or installs a snapshot carrying it.
const CONFIG: &str = r#"
[store]
checkpoint_interval = "1s"

[raft]
snapshot_after_entries = 20
keep_entries = 5

[[aggregations]]
name = "chat_length"
events = "chat"
value = "length"
distinct = "user_id"
group_by = ["meeting_id"]
window = "10s"
hop = "5s"
outputs = ["count", "sum", "distinct", "quantile(0.9)"]
"#;

const BATCHES: i64 = 45;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_millis() as i64
}

/// A small deterministic generator (the same stream in every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

/// Batch `k`: 80 events around `base + k` seconds, some out of order and a few late (up to
/// 20 s behind the newest: corrections of windows already emitted).
fn batch(rng: &mut Lcg, base: i64, k: i64) -> String {
    let mut lines = Vec::new();
    for _ in 0..80 {
        let late = if rng.next(20) == 0 { 20_000 } else { 3_000 };
        let ts = base + k * 1_000 - rng.next(late) as i64;
        let (m, u) = (format!("m{}", rng.next(6)), format!("u{}", rng.next(40)));
        lines.push(match rng.next(3) {
            0 => {
                let action = ["join", "leave", "mute", "unmute", "camera_on"][rng.next(5) as usize];
                format!(r#"{{"type":"user","meeting_id":"{m}","user_id":"{u}","action":"{action}","timestamp":{ts}}}"#)
            }
            1 => format!(
                r#"{{"type":"chat","meeting_id":"{m}","user_id":"{u}","message_id":"{k}-{ts}","length":{},"timestamp":{ts}}}"#,
                rng.next(200)
            ),
            _ => format!(
                r#"{{"type":"meeting","meeting_id":"{m}","user_id":"{u}","kind":"quality","latency_ms":{},"jitter_ms":{},"packet_loss_pct":{},"timestamp":{ts}}}"#,
                rng.next(500),
                rng.next(120),
                rng.next(70) as f64 / 10.0
            ),
        });
    }
    lines.join("\n")
}

/// Posts `body` under `key` to the first node that takes it, trying the others (the same key:
/// a batch applied before its answer was lost is not applied again). Bounded in time; the
/// error names the last answer.
async fn send(nodes: &[&Node], key: &str, body: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let client = reqwest::Client::new();
    let mut last = String::new();
    for node in nodes.iter().cycle() {
        if Instant::now() >= deadline {
            return Err(format!("batch {key} not accepted within 60 s; the last answer: {last}"));
        }
        let sent = client
            .post(node.url("/api/v1/events"))
            .header("Idempotency-Key", key)
            .timeout(Duration::from_secs(15))
            .body(body.to_string())
            .send()
            .await;
        match sent {
            Ok(r) if r.status() == 200 => return Ok(()),
            Ok(r) if r.status().is_client_error() => {
                panic!("batch {key} refused: {}", r.text().await.unwrap_or_default())
            }
            Ok(r) => {
                last = format!("{} from {}: {}", r.status(), node.url(""), r.text().await.unwrap_or_default())
            }
            Err(e) => last = format!("{} from {}", e, node.url("")),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("batch {key}: no node to send it to"))
}

/// Sends `key` to the cluster's running nodes; a batch not taken fails the test with what each
/// node says of itself.
async fn send_to_cluster(cluster: &TestCluster, key: &str, body: &str) {
    let running: Vec<usize> = (0..3).filter(|i| cluster.is_running(*i)).collect();
    let alive: Vec<&Node> = running.iter().map(|i| cluster.node(*i)).collect();
    if let Err(e) = send(&alive, key, body).await {
        panic!("{e}\n{}", cluster.describe(&running).await);
    }
}

async fn outputs(node: &Node) -> Exported {
    node.export(r#"{__name__=~"meeting_.+|chat_length_.+"}"#).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_after_two_leader_kills_equal_a_single_nodes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("rules.toml");
    std::fs::write(&config, CONFIG).expect("config written");
    let config = config.display().to_string();
    let reference_dir = dir.path().join("reference");
    std::fs::create_dir_all(&reference_dir).expect("dir");
    let mut reference = Node::start(&reference_dir, &["--config", &config]).expect("reference node");
    let mut cluster =
        TestCluster::start(&dir.path().join("cluster"), 3, &["--config", &config]).await.expect("cluster");
    let leader = cluster.wait_leader(&[0, 1, 2], Duration::from_secs(20)).await.expect("a leader");
    // The configured rule in force on both before the first event.
    for url in [reference.url("/api/v1/aggregations"), cluster.node(leader).url("/api/v1/aggregations")] {
        let listed = collabstream_tests::wait_until(Duration::from_secs(20), || async {
            let body = reqwest::get(url.clone()).await.ok()?.text().await.ok()?;
            body.contains("chat_length").then_some(())
        })
        .await;
        assert!(listed.is_some(), "{url} lists no chat_length");
    }

    let base = now_ms() - 60_000;
    let mut rng = Lcg(7);
    let mut killed = Vec::new();
    for k in 0..BATCHES {
        let body = batch(&mut rng, base, k);
        let key = format!("batch-{k}");
        send(&[&reference], &key, &body).await.expect("the single node takes every batch");
        if k == BATCHES / 3 || k == 2 * BATCHES / 3 {
            // The one killed before comes back first, so a majority remains.
            for i in killed.drain(..) {
                cluster.restart(i).expect("restarts");
            }
            let leader = cluster.wait_leader(&[0, 1, 2], Duration::from_secs(30)).await.expect("a leader");
            cluster.kill(leader);
            killed.push(leader);
        }
        send_to_cluster(&cluster, &key, &body).await;
    }
    // One event ten minutes on closes every window still open (and their lateness too).
    let closing = format!(
        r#"{{"type":"user","meeting_id":"zz","user_id":"z","action":"join","timestamp":{}}}"#,
        base + BATCHES * 1_000 + 600_000
    );
    send(&[&reference], "closing", &closing).await.expect("the single node takes the closing event");
    send_to_cluster(&cluster, "closing", &closing).await;
    for i in killed.drain(..) {
        cluster.restart(i).expect("restarts");
    }

    let want = outputs(&reference).await;
    for metric in
        ["meeting_active_users", "meeting_health_score", "meeting_churn_rate", "chat_length_quantile"]
    {
        let prefix = format!("__name__={metric},");
        assert!(want.keys().any(|k| k.starts_with(&prefix)), "the reference has no {metric}");
    }
    for i in 0..3 {
        let same = collabstream_tests::wait_until(Duration::from_secs(30), || async {
            (outputs(cluster.node(i)).await == want).then_some(())
        })
        .await;
        if same.is_none() {
            let got = outputs(cluster.node(i)).await;
            let differ: Vec<_> = want
                .keys()
                .chain(got.keys())
                .filter(|k| want.get(*k) != got.get(*k))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            panic!(
                "node {} differs from the single node in {} series, e.g. {:?}",
                i + 1,
                differ.len(),
                &differ[..differ.len().min(5)]
            );
        }
    }
    reference.terminate(Duration::from_secs(10)).expect("reference stops");
}
