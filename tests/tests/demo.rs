//! `collabstream demo`: the PromQL queries its banner prints over the meetings pack's series
//! return data within a minute of its start, as the banner promises.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use collabstream_tests::{binary, wait_until};

/// The (URL, query) of each banner line that queries a meetings series.
fn meeting_queries(banner: &[String]) -> Vec<(String, String)> {
    banner
        .iter()
        .filter(|l| l.contains("query=") && l.contains("meeting_"))
        .filter_map(|l| {
            let url = l.split("curl -s '").nth(1)?.split('\'').next()?.to_string();
            let query = l.split("query=").nth(1)?.rsplit_once('\'')?.0.to_string();
            Some((url, query))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_banners_meeting_queries_return_data_within_a_minute() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = std::fs::File::create(dir.path().join("demo.log")).expect("log file");
    let started = Instant::now();
    let mut child = Command::new(binary())
        .args(["demo", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--http-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0"])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("demo starts");
    // The banner, read on a thread (bounded: it ends with the line about Ctrl-C).
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut banner = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let last = line.contains("Ctrl-C");
            banner.push(line);
            if last {
                break;
            }
        }
        let _ = tx.send(banner);
    });
    let banner = rx.recv_timeout(Duration::from_secs(60)).expect("the banner is printed");
    let queries = meeting_queries(&banner);
    let named: Vec<&str> = queries.iter().map(|(_, q)| q.as_str()).collect();
    for metric in ["meeting_active_users", "meeting_health_score", "meeting_engagement_score"] {
        assert!(named.iter().any(|q| q.contains(metric)), "no query over {metric} in {banner:#?}");
    }
    let client = reqwest::Client::new();
    for (url, query) in &queries {
        let left = Duration::from_secs(60).saturating_sub(started.elapsed());
        let data = wait_until(left, || async {
            let body: serde_json::Value =
                client.get(url).query(&[("query", query)]).send().await.ok()?.json().await.ok()?;
            body["data"]["result"].as_array().filter(|r| !r.is_empty()).map(|r| r.len())
        })
        .await;
        assert!(data.is_some(), "{query} returned no data within a minute of the demo's start");
    }
    child.kill().expect("demo stopped");
    child.wait().expect("demo reaped");
}
