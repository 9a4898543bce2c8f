//! A node whose disk fills up stops acknowledging writes and says why on `/readyz`, then goes
//! on by itself once space is freed, having lost nothing it acknowledged and stored nothing
//! twice.
//!
//! The data directory is a tmpfs of a few MiB mounted by the test (it must run as root, as
//! `.ci/run` does); a filler file takes the rest of its space and is removed to give it back.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use collabstream_tests::Node;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size_mib: u32) -> Tmpfs {
        std::fs::create_dir_all(at).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(at)
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs and must run as root (as .ci/run does): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system of `path` with a file until it is full; returns the file.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("filler");
    let block = vec![0xa5u8; 64 << 10];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
    path
}

fn event(k: u64) -> String {
    format!(
        r#"{{"type":"chat","meeting_id":"disk","user_id":"u{}","message_id":"m-{k}","length":{},"timestamp":{}}}"#,
        k % 7,
        k % 100,
        1_732_780_800_000 + k as i64
    )
}

/// Posts event `k` with its own idempotency key; whether it was acknowledged.
async fn post(client: &reqwest::Client, node: &Node, k: u64) -> bool {
    let sent = client
        .post(node.url("/api/v1/events"))
        .header("Idempotency-Key", format!("disk-{k}"))
        .body(event(k))
        .send()
        .await;
    matches!(sent, Ok(r) if r.status().is_success())
}

async fn readyz(client: &reqwest::Client, node: &Node) -> (u16, String) {
    match client.get(node.url("/readyz")).send().await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_makes_the_node_unready_and_it_recovers_when_space_returns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let _mount = Tmpfs::mount(&data, 96);
    let config = dir.path().join("node.toml");
    std::fs::write(&config, "[store]\ncheckpoint_interval = \"1s\"\n").expect("config");
    let mut node = Node::start(&data, &["--config", &config.display().to_string()]).expect("node starts");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("client");

    let mut acked = Vec::new();
    let mut pending = Vec::new();
    for k in 0..200 {
        assert!(post(&client, &node, k).await, "write {k} before the disk fills");
        acked.push(k);
    }

    // The disk fills up: writes stop being acknowledged, /readyz says why.
    let filler = fill(&data);
    let started = Instant::now();
    let mut k = 200;
    let reason = loop {
        assert!(started.elapsed() < Duration::from_secs(90), "the node never noticed the full disk");
        if post(&client, &node, k).await {
            acked.push(k)
        } else {
            pending.push(k)
        }
        k += 1;
        let (status, body) = readyz(&client, &node).await;
        if status == 503 {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("not ready after {:?} and {} more writes: {reason}", started.elapsed(), k - 200);
    assert!(reason.contains("retried") && reason.contains("free disk space"), "{reason}");
    let metrics = client.get(node.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("collabstream_disk_writes_failing 1"), "{metrics}");
    // While it lasts, writes are not acknowledged (they wait, then time out).
    for _ in 0..3 {
        if post(&client, &node, k).await {
            acked.push(k)
        } else {
            pending.push(k)
        }
        k += 1;
    }
    assert_eq!(readyz(&client, &node).await.0, 503);

    // Space returns: the node becomes ready again without a restart and takes writes.
    std::fs::remove_file(&filler).expect("remove the filler");
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the node did not recover after space returned: {:?}\n{}",
            readyz(&client, &node).await,
            node.log()
        );
        if readyz(&client, &node).await.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("ready again {:?} after space returned", started.elapsed());
    // Writes that were never answered are retried with their keys, as a client would.
    for p in std::mem::take(&mut pending) {
        let started = Instant::now();
        while !post(&client, &node, p).await {
            assert!(started.elapsed() < Duration::from_secs(30), "write {p} is not taken after recovery");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        acked.push(p);
    }
    for _ in 0..50 {
        assert!(post(&client, &node, k).await, "write {k} after recovery");
        acked.push(k);
        k += 1;
    }

    let check = |counts: std::collections::BTreeMap<String, usize>, when: &str| {
        for a in &acked {
            assert_eq!(counts.get(&format!("m-{a}")), Some(&1), "event {a} {when}");
        }
        assert_eq!(counts.len(), acked.len(), "{when}: nothing else stored");
    };
    check(node.chat_message_counts().await, "after recovery");
    // And all of it is durable.
    assert!(node.terminate(Duration::from_secs(30)).expect("stops"), "clean exit");
    let node = Node::start(&data, &["--config", &config.display().to_string()]).expect("node restarts");
    check(node.chat_message_counts().await, "after a restart");
}
