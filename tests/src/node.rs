//! [`Node`]: a `collabstream server` child process on loopback ports chosen by the kernel.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};

/// Flags that bind every listener of a node on a loopback port the kernel picks (the start-up
/// line says which).
pub(crate) const LOOPBACK: [&str; 6] =
    ["--http-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0", "--pg-listen", "127.0.0.1:0"];

/// The `collabstream` binary: `$COLLABSTREAM_BIN`, or the one cargo built next to this test.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("COLLABSTREAM_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> → target/<profile>/collabstream
    exe.parent().and_then(Path::parent).expect("target dir").join("collabstream")
}

/// A running node. Dropping it kills the process (SIGKILL) by pid.
#[derive(Debug)]
pub struct Node {
    child: Option<Child>,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    /// SQL over the PostgreSQL wire protocol.
    pub pg: SocketAddr,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
}

impl Node {
    /// Starts a node that binds its listeners on `127.0.0.1:0` before serving, and waits
    /// (bounded) for the start-up line that says where.
    pub fn start(data_dir: &Path, extra_args: &[&str]) -> anyhow::Result<Node> {
        let bin = binary();
        if !bin.exists() {
            bail!("{} not found: build it first with `cargo build --bin collabstream`", bin.display());
        }
        std::fs::create_dir_all(data_dir)?;
        let log_path = data_dir.join(format!("node-{}.log", std::process::id()));
        let mut child = Command::new(&bin)
            .arg("server")
            .arg("--data-dir")
            .arg(data_dir)
            .args(LOOPBACK)
            .args(extra_args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = mpsc::channel();
        let log = log_path.clone();
        // Keep draining stderr into a file so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut file = std::fs::OpenOptions::new().create(true).append(true).open(log).ok();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(f) = file.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                if line.contains("collabstream node serving") {
                    let _ = tx.send((field(&line, "http="), field(&line, "grpc="), field(&line, "pg=")));
                }
            }
        });
        let mut node = Node {
            child: Some(child),
            http: ([0, 0, 0, 0], 0).into(),
            grpc: ([0, 0, 0, 0], 0).into(),
            pg: ([0, 0, 0, 0], 0).into(),
            data_dir: data_dir.to_path_buf(),
            log_path,
        };
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok((Some(http), Some(grpc), Some(pg))) => {
                node.http = http.parse()?;
                node.grpc = grpc.parse()?;
                node.pg = pg.parse()?;
                Ok(node)
            }
            _ => bail!("node did not start within 60 s; its log:\n{}", node.log()),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// Samples of the series matching `selector`, read back with `GET /api/v1/export`: series
    /// key ([`series_key`]) → timestamp → value.
    pub async fn export(&self, selector: &str) -> Exported {
        let body = reqwest::Client::new()
            .get(self.url("/api/v1/export"))
            .query(&[("match[]", selector)])
            .send()
            .await
            .expect("export request")
            .text()
            .await
            .expect("export body");
        let mut out = Exported::new();
        for line in body.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let metric = v["metric"].as_object().expect("metric");
            let key = series_key(metric.iter().map(|(k, v)| (k.as_str(), v.as_str().unwrap_or(""))));
            let e = out.entry(key).or_default();
            let ts = v["timestamps"].as_array().expect("timestamps");
            for (t, x) in ts.iter().zip(v["values"].as_array().expect("values")) {
                // Non-finite values are exported as strings ("NaN", "+Inf", "-Inf").
                let value =
                    x.as_f64().or_else(|| x.as_str().and_then(|s| s.parse().ok())).unwrap_or(f64::NAN);
                e.insert(t.as_i64().expect("timestamp"), value);
            }
        }
        out
    }

    /// The answer of `GET /api/v1/query` for `query`, at `time` (Unix seconds) or now.
    pub async fn query(&self, query: &str, time: Option<f64>) -> serde_json::Value {
        let mut params = vec![("query", query.to_string())];
        if let Some(t) = time {
            params.push(("time", format!("{t:.3}")));
        }
        reqwest::Client::new()
            .get(self.url("/api/v1/query"))
            .query(&params)
            .send()
            .await
            .expect("query answered")
            .json()
            .await
            .expect("query JSON")
    }

    /// Every event the node stores, read back with `GET /api/v1/events/export`, each encoded as
    /// a protobuf `v1.Event`, sorted: comparable with what was sent, as a multiset.
    pub async fn stored_events(&self) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = self
            .events_export()
            .await
            .lines()
            .map(|l| {
                let e = collabstream_proto::events_json::parse_event(l, None).expect("exported JSON");
                prost::Message::encode_to_vec(&e)
            })
            .collect();
        out.sort();
        out
    }

    /// Waits up to `timeout` until the node stores as many events as `want` (as
    /// [`stored_events`](Self::stored_events) gives them), then asserts they are `want`; on
    /// timeout, panics with the node's Kafka log lines.
    pub async fn wait_for_events(&self, want: &[Vec<u8>], timeout: Duration) {
        let got = crate::wait_until(timeout, || async {
            let got = self.stored_events().await;
            (got.len() >= want.len()).then_some(got)
        })
        .await;
        let Some(got) = got else {
            let log = self.log();
            let kafka: Vec<&str> = log.lines().filter(|l| l.contains("kafka")).collect();
            panic!(
                "{} of {} events in time:\n{}",
                self.stored_events().await.len(),
                want.len(),
                kafka.join("\n")
            )
        };
        assert_eq!(got, want, "each event once");
    }

    /// The body of `GET /api/v1/events/export` (every event, one JSON object a line).
    /// Every stored event (up to a million), as `GET /api/v1/events/export` answers: JSON
    /// lines, oldest first.
    pub async fn events_export(&self) -> String {
        reqwest::get(self.url("/api/v1/events/export?limit=1000000"))
            .await
            .expect("events export request")
            .text()
            .await
            .expect("events export body")
    }

    /// `POST /api/v1/sql` with `statement`: the status and the JSON answer.
    pub async fn sql(&self, statement: &str) -> (u16, serde_json::Value) {
        let r = reqwest::Client::new()
            .post(self.url("/api/v1/sql"))
            .json(&serde_json::json!({ "query": statement }))
            .send()
            .await
            .expect("sql");
        (r.status().as_u16(), r.json().await.expect("JSON"))
    }

    /// The value of an unlabelled series on `/metrics`; NaN when it is not there.
    pub async fn metric(&self, name: &str) -> f64 {
        let body = reqwest::get(self.url("/metrics")).await.expect("metrics").text().await.expect("body");
        body.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')).and_then(|v| v.parse().ok()))
            .unwrap_or(f64::NAN)
    }

    /// How often each chat message id is stored, read back with `GET /api/v1/events/export`.
    pub async fn chat_message_counts(&self) -> BTreeMap<String, usize> {
        let body = self.events_export().await;
        let mut out = BTreeMap::new();
        for line in body.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("event JSON");
            if let Some(id) = v["message_id"].as_str() {
                *out.entry(id.to_string()).or_insert(0) += 1;
            }
        }
        out
    }

    /// Posts a snappy-compressed remote-write body; the status and the answer's text.
    pub async fn remote_write(&self, body: Vec<u8>) -> (u16, String) {
        let r = reqwest::Client::new()
            .post(self.url("/api/v1/write"))
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .body(body)
            .send()
            .await
            .expect("remote write request");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits up to `timeout` for a clean exit; returns whether it exited 0.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<bool> {
        let Some(mut c) = self.child.take() else { return Ok(false) };
        send_signal(c.id(), "TERM");
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = c.try_wait()? {
                return Ok(status.success());
            }
            if std::time::Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                bail!("node did not exit within {timeout:?} after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Exported samples: series key → timestamp → value.
pub type Exported = BTreeMap<String, BTreeMap<i64, f64>>;

/// A label set as one comparable string, `a=1,b=2` sorted by name.
pub fn series_key<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut pairs: Vec<String> = pairs.map(|(k, v)| format!("{k}={v}")).collect();
    pairs.sort();
    pairs.join(",")
}

fn field(line: &str, key: &str) -> Option<String> {
    let start = line.find(key)? + key.len();
    Some(line[start..].split_whitespace().next()?.to_string())
}

/// Signals a child by pid with the system's `kill` (unsafe code is forbidden in this workspace).
fn send_signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}
