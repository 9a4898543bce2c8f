//! The web UI in a real browser (Debian's Chromium, headless, driven by `ui/test/browser.mjs`
//! through playwright-core): on `collabstream demo`, the meetings view, the PromQL explorer
//! and the cluster page each load without a console error or a failed request and show the
//! demo's data; on three nodes with one stopped, the cluster page shows the leader and names
//! the stopped member unreachable. Screenshots are kept in
//! `$CARGO_TARGET_DIR/ui-screenshots/` (or `target/ui-screenshots/`).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use collabstream_tests::{Demo, TestCluster, wait_until};

fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("ui-screenshots")
}

/// Runs the browser script over `pages` of the UI at `base`; panics with its output on failure.
fn browse(base: &str, shots: &std::path::Path, pages: &[&str]) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ui/test/browser.mjs");
    let out = Command::new("node")
        .arg(&script)
        .arg(base)
        .arg(shots)
        .args(pages)
        .output()
        .expect("node runs (scripts/install-deps.sh installs Node.js, Chromium and ui/'s packages)");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the browser test failed (screenshots in {}):\n{said}", shots.display());
    for page in pages {
        let name = page.split(':').next().expect("a page");
        assert!(said.contains(&format!("ok {name}:")), "{name} not checked:\n{said}");
        assert!(shots.join(format!("{name}.png")).exists(), "no screenshot of {name}");
    }
    println!("{said}");
}

async fn cluster_status(url: &str) -> serde_json::Value {
    reqwest::get(url).await.expect("status").json().await.expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_loads_without_errors_and_shows_the_demos_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = Demo::start(dir.path()).expect("demo");
    let ui = demo
        .banner
        .iter()
        .find_map(|l| l.strip_prefix("web UI:").and_then(|r| r.split_whitespace().next()))
        .expect("the banner names the web UI");
    let base = ui.trim_end_matches('/').trim_end_matches("/ui").to_string();
    let client = reqwest::Client::new();
    // The root and the UI's own files answer; an unknown one is a 404.
    let root = client.get(format!("{base}/")).send().await.expect("GET /");
    assert_eq!(root.url().path(), "/ui/", "/ redirects to the UI");
    assert!(root.text().await.expect("body").contains("app.js"));
    let missing = client.get(format!("{base}/ui/nope.js")).send().await.expect("GET");
    assert_eq!(missing.status(), 404);
    // The browser waits for data itself; this only saves it a minute of empty pages.
    let meetings = wait_until(Duration::from_secs(90), || async {
        let body: serde_json::Value = client
            .get(format!("{base}/api/v1/query"))
            .query(&[("query", "count(meeting_active_users)")])
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        body["data"]["result"].as_array().filter(|r| !r.is_empty()).map(|_| ())
    })
    .await;
    assert!(meetings.is_some(), "the demo's meetings never reported; its log:\n{}", demo.log());
    let shots = screenshots().join("demo");
    browse(&base, &shots, &["meetings", "query", "cluster:1"]);
    drop(demo);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_page_shows_every_member_and_which_one_is_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = TestCluster::start(dir.path(), 3, &[]).await.expect("cluster");
    let leader = cluster.wait_leader(&[0, 1, 2], Duration::from_secs(30)).await.expect("a leader");
    // Stop a follower; the page is read through the leader, which still has a majority.
    let down = (leader + 1) % 3;
    cluster.kill(down);
    // Each member is asked with a timeout; on a loaded machine a live one can miss it once (seen
    // in CI, two tests and a browser on two cores), so the view is read until it settles and the
    // last one read is what is checked.
    let url = cluster.node(leader).url("/api/v1/status/cluster");
    let settled = |body: &serde_json::Value| {
        body["data"]["members"]
            .as_array()
            .is_some_and(|ms| ms.iter().all(|m| m["reachable"] == (m["id"] != (down + 1) as u64)))
    };
    let mut body = cluster_status(&url).await;
    for _ in 0..30 {
        if settled(&body) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        body = cluster_status(&url).await;
    }
    let members = body["data"]["members"].as_array().expect("members");
    assert_eq!(members.len(), 3, "{body}");
    for m in members {
        let stopped = m["id"] == (down + 1) as u64;
        assert_eq!(m["reachable"], !stopped, "{m}");
        if !stopped {
            assert_eq!(m["leader_id"], (leader + 1) as u64, "every live member names the leader: {m}");
            assert!(m["applied_index"].as_u64().is_some(), "{m}");
        }
    }
    let base = format!("http://{}", cluster.node(leader).http);
    browse(&base, &screenshots().join("cluster"), &[&format!("cluster:3:down={}", down + 1)]);
}
