//! The Makefile's workflow, run for real with the tests' binary: `make cluster-up` starts three
//! nodes and names the web UI, `make cluster-status` shows the leader, `make producer` sends
//! meetings' events that the cluster stores, `make dashboard` finds the UI, `make logs` follows
//! the nodes' logs, `make cluster-down` stops every node by its pid. Every other target is a
//! thin call of a script that exists (`make -n`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use collabstream_tests::{binary, wait_until};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `make ARGS` in the repository with the cluster's environment; its output as text.
fn make(env: &[(&str, String)], args: &[&str]) -> (Output, String) {
    let out = Command::new("make")
        .args(["--no-print-directory", "-C"])
        .arg(repo())
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .output()
        .expect("make runs (scripts/install-deps.sh installs it)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out, text)
}

/// Stops the cluster however the test ends.
struct Cluster(Vec<(&'static str, String)>);

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = make(&self.0, &["cluster-down"]);
    }
}

#[test]
fn every_target_calls_a_script_that_exists() {
    let (out, help) = make(&[], &["help"]);
    assert!(out.status.success(), "{help}");
    let targets: Vec<&str> = help.lines().filter_map(|l| l.split_whitespace().next()).collect();
    for want in ["quickstart", "producer", "dashboard", "test", "lint", "logs", "cluster-up", "cluster-down"]
    {
        assert!(targets.contains(&want), "no `make {want}` in:\n{help}");
    }
    for target in targets.iter().filter(|t| **t != "help") {
        let (out, commands) = make(&[], &["-n", target]);
        assert!(out.status.success(), "make -n {target}: {commands}");
        let program = commands.split_whitespace().next().expect("a command");
        assert!(
            program == "cargo" || repo().join(program).is_file(),
            "make {target} runs {program}, which is not a script of this repository"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workflow_brings_up_feeds_shows_and_stops_a_cluster() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Ports base+10.. base+32, away from the ephemeral range other tests' port 0 draws from.
    let base = 10_000 + (std::process::id() as u16 % 500) * 40;
    let (http, grpc) = (base + 10, base + 11);
    let env = vec![
        ("COLLABSTREAM_BIN", binary().to_string_lossy().into_owned()),
        ("CLUSTER_DIR", dir.path().join("cluster").to_string_lossy().into_owned()),
        ("CLUSTER_PORT_BASE", base.to_string()),
    ];
    let cluster = Cluster(env.clone());
    let (out, up) = make(&env, &["cluster-up"]);
    assert!(out.status.success() && up.contains("leader: node"), "{up}");
    assert!(up.contains(&format!("web UI: http://127.0.0.1:{http}/ui/")), "{up}");
    let (out, status) = make(&env, &["cluster-status"]);
    assert!(out.status.success() && status.contains("leader: node"), "{status}");

    let target = format!("TARGET=http://127.0.0.1:{grpc}");
    let (out, produced) =
        make(&env, &["producer", &target, "MEETINGS=5", "PRODUCER_ARGS=--count 300 --speed 60"]);
    assert!(out.status.success(), "{produced}");
    let client = reqwest::Client::new();
    let stored = wait_until(Duration::from_secs(30), || async {
        let body = client
            .get(format!("http://127.0.0.1:{http}/api/v1/events/export?limit=1000"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        (body.lines().count() >= 300).then_some(())
    })
    .await;
    assert!(stored.is_some(), "the producer's events are not stored: {produced}");

    let ui = format!("UI=http://127.0.0.1:{http}/ui/");
    let (out, dashboard) = make(&env, &["dashboard", &ui]);
    assert!(out.status.success() && dashboard.contains("#/meetings"), "{dashboard}");

    follow_logs(&env, dir.path());

    let pids: Vec<u32> = (1..=3)
        .map(|n| {
            let pid =
                std::fs::read_to_string(dir.path().join(format!("cluster/node-{n}/pid"))).expect("pid file");
            pid.trim().parse().expect("a pid")
        })
        .collect();
    let (out, down) = make(&env, &["cluster-down"]);
    assert!(out.status.success(), "{down}");
    for pid in pids {
        assert!(exited(pid), "node pid {pid} still runs after cluster-down: {down}");
    }
    drop(cluster);
}

/// Whether process `pid` has exited: gone, or a zombie its new parent (the nodes outlive the
/// shell that started them) has not reaped yet.
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

/// `make logs` follows the three logs: started in a process group of its own, read for a
/// moment, then stopped by that group's id.
fn follow_logs(env: &[(&str, String)], dir: &Path) {
    use std::os::unix::process::CommandExt;
    let out = dir.join("logs.txt");
    let mut child = Command::new("make")
        .args(["--no-print-directory", "-C"])
        .arg(repo())
        .arg("logs")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("file"))
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("make logs");
    let mut text = String::new();
    for _ in 0..50 {
        text = std::fs::read_to_string(&out).unwrap_or_default();
        if (1..=3).all(|n| text.contains(&format!("node-{n}/node.log"))) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new("kill").arg("--").arg(format!("-{}", child.id())).status();
    let _ = child.wait();
    assert!((1..=3).all(|n| text.contains(&format!("node-{n}/node.log"))), "make logs showed:\n{text}");
    assert!(text.contains("collabstream node serving"), "make logs showed:\n{text}");
}
