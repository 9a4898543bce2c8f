//! [`System`]: one store under test, started on loopback with a fresh data directory and
//! stopped by its pid: ours (this very binary), VictoriaMetrics 1.79 or Prometheus 2.42 from
//! Debian's packages. Each knows how to make its ingested data queryable and durable, and how
//! big it is on disk, the way its own operators would measure it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::Error;

fn err(what: impl std::fmt::Display) -> Error {
    Error::Bench(what.to_string())
}

/// A system the benchmark runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// This store.
    #[value(name = "collabstream")]
    Collabstream,
    /// Debian's VictoriaMetrics 1.79.
    #[value(name = "victoria-metrics")]
    VictoriaMetrics,
    /// Debian's Prometheus 2.42.
    Prometheus,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Collabstream => "Collaborate-Stream",
            Kind::VictoriaMetrics => "VictoriaMetrics",
            Kind::Prometheus => "Prometheus",
        }
    }
}

/// A running system. Dropping it kills the process.
#[derive(Debug)]
pub(crate) struct System {
    pub(crate) kind: Kind,
    child: Option<Child>,
    pub(crate) base: String,
    data_dir: PathBuf,
    http: reqwest::Client,
}

/// The binaries of the reference systems (Debian's packages).
const VICTORIA_METRICS: &str = "/usr/bin/victoria-metrics";
const PROMETHEUS: &str = "/usr/bin/prometheus";

/// A loopback port that was free a moment ago. The reference systems cannot report a port
/// they chose themselves, so this is the one place a port is picked for another process.
fn free_port() -> Result<u16, Error> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(err)?;
    Ok(l.local_addr().map_err(err)?.port())
}

impl System {
    /// Starts `kind` with its data in `dir` (created) and waits until it is ready.
    pub(crate) async fn start(kind: Kind, dir: &Path) -> Result<System, Error> {
        std::fs::create_dir_all(dir).map_err(err)?;
        let log = std::fs::File::create(dir.with_extension("log")).map_err(err)?;
        let data_dir = dir.join("data");
        let (child, base) = match kind {
            Kind::Collabstream => {
                let exe = std::env::current_exe().map_err(err)?;
                let mut child = Command::new(exe)
                    .arg("server")
                    .arg("--data-dir")
                    .arg(&data_dir)
                    .args([
                        "--http-listen",
                        "127.0.0.1:0",
                        "--grpc-listen",
                        "127.0.0.1:0",
                        "--pg-listen",
                        "127.0.0.1:0",
                    ])
                    .env("RUST_LOG", "warn,collabstream_server=info")
                    .env("NO_COLOR", "1")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(err)?;
                let http = serving_address(&mut child, log)?;
                (child, format!("http://{http}"))
            }
            Kind::VictoriaMetrics => {
                let port = free_port()?;
                let child = Command::new(VICTORIA_METRICS)
                    .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
                    .arg(format!("-storageDataPath={}", data_dir.display()))
                    // Keep everything; answer queries with the newest data (the default hides
                    // the last 30 s); no result cache, so repeated queries are really run.
                    .args(["-retentionPeriod=100y", "-search.latencyOffset=0s", "-search.disableCache"])
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().map_err(err)?)
                    .stderr(log)
                    .spawn()
                    .map_err(|e| {
                        err(format!(
                            "cannot start {VICTORIA_METRICS} ({e}); install Debian's victoria-metrics"
                        ))
                    })?;
                (child, format!("http://127.0.0.1:{port}"))
            }
            Kind::Prometheus => {
                let port = free_port()?;
                let config = dir.join("prometheus.yml");
                std::fs::write(&config, "global:\n  scrape_interval: 1h\nscrape_configs: []\n")
                    .map_err(err)?;
                let child = Command::new(PROMETHEUS)
                    .arg(format!("--config.file={}", config.display()))
                    .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                    .arg(format!("--storage.tsdb.path={}", data_dir.display()))
                    .args([
                        "--storage.tsdb.retention.time=100y",
                        "--web.enable-remote-write-receiver",
                        "--web.enable-admin-api",
                    ])
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().map_err(err)?)
                    .stderr(log)
                    .spawn()
                    .map_err(|e| {
                        err(format!("cannot start {PROMETHEUS} ({e}); install Debian's prometheus"))
                    })?;
                (child, format!("http://127.0.0.1:{port}"))
            }
        };
        let http = reqwest::Client::builder().timeout(Duration::from_secs(600)).build().map_err(err)?;
        let system = System { kind, child: Some(child), base, data_dir, http };
        system.wait_ready().await?;
        Ok(system)
    }

    pub(crate) fn write_url(&self) -> String {
        format!("{}/api/v1/write", self.base)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    async fn wait_ready(&self) -> Result<(), Error> {
        let path = match self.kind {
            Kind::Collabstream => "/readyz",
            Kind::VictoriaMetrics => "/health",
            Kind::Prometheus => "/-/ready",
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(r) = self.http.get(format!("{}{path}", self.base)).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(err(format!("{} did not become ready within 60 s", self.kind.name())))
    }

    async fn call(&self, method: reqwest::Method, path: &str) -> Result<String, Error> {
        let resp = self.http.request(method, format!("{}{path}", self.base)).send().await.map_err(err)?;
        let status = resp.status();
        let body = resp.text().await.map_err(err)?;
        if !status.is_success() {
            return Err(err(format!("{} {path}: {status}: {body}", self.kind.name())));
        }
        Ok(body)
    }

    /// Makes everything acknowledged queryable. VictoriaMetrics acknowledges writes before
    /// they are searchable; the others answer after the data is readable.
    pub(crate) async fn make_queryable(&self) -> Result<(), Error> {
        if self.kind == Kind::VictoriaMetrics {
            self.call(reqwest::Method::GET, "/internal/force_flush").await?;
        }
        Ok(())
    }

    /// Bytes on disk of the ingested data in its compacted, long-term form, the way each
    /// system's operators would see it after a flush:
    /// - ours: a checkpoint and a full RocksDB compaction, the SST files of the data (the
    ///   replicated log, which is dropped behind snapshots, is reported by [`Self::live_bytes`]);
    /// - VictoriaMetrics: force_merge of every monthly partition, then the files on disk;
    /// - Prometheus: a TSDB snapshot, which writes the in-memory head as a compacted block.
    pub(crate) async fn compacted_bytes(&self, months: &[String]) -> Result<u64, Error> {
        match self.kind {
            Kind::Collabstream => {
                let body = self.call(reqwest::Method::POST, "/api/v1/admin/compact").await?;
                let v: serde_json::Value = serde_json::from_str(&body).map_err(err)?;
                let sst = v["data"]["sst_bytes"].as_u64().unwrap_or(0);
                let log = v["data"]["log_sst_bytes"].as_u64().unwrap_or(0);
                Ok(sst.saturating_sub(log))
            }
            Kind::VictoriaMetrics => {
                for month in months {
                    self.call(
                        reqwest::Method::GET,
                        &format!("/internal/force_merge?partition_prefix={month}"),
                    )
                    .await?;
                }
                // The merged part is moved out of its tmp directory just after the call returns.
                tokio::time::sleep(Duration::from_secs(2)).await;
                Ok(file_bytes(&self.data_dir, &[]))
            }
            Kind::Prometheus => {
                let body = self.call(reqwest::Method::POST, "/api/v1/admin/tsdb/snapshot").await?;
                let v: serde_json::Value = serde_json::from_str(&body).map_err(err)?;
                let name =
                    v["data"]["name"].as_str().ok_or_else(|| err("snapshot answered without a name"))?;
                let dir = self.data_dir.join("snapshots").join(name);
                let bytes = file_bytes(&dir, &[]);
                let _ = std::fs::remove_dir_all(&dir);
                Ok(bytes)
            }
        }
    }

    /// Every file of the data directory as it stands (write-ahead logs included).
    pub(crate) fn live_bytes(&self) -> u64 {
        file_bytes(&self.data_dir, &["queries.active"])
    }

    /// Resident memory now and at its peak, from `/proc/<pid>/status`.
    pub(crate) fn memory(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let kb = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        (kb("VmRSS:"), kb("VmHWM:"))
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// SIGTERM, up to 30 s for a clean exit, then SIGKILL.
    pub(crate) fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for System {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Reads our node's start-up line for its HTTP address, then keeps copying its log to `log`
/// so it never blocks on a full pipe.
fn serving_address(child: &mut Child, mut log: std::fs::File) -> Result<String, Error> {
    use std::io::Write;
    let stderr = child.stderr.take().ok_or_else(|| err("no stderr"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = writeln!(log, "{line}");
            if line.contains("collabstream node serving")
                && let Some(addr) = line.split_whitespace().find_map(|w| w.strip_prefix("http="))
            {
                let _ = tx.send(addr.to_string());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .map_err(|_| err("our node did not start within 60 s; see its log"))
}

/// The total size of the regular files under `dir` (not `du`: directory entries would count
/// 4 KiB each), skipping top-level entries named in `skip`. A file with several links (our
/// snapshots link the store's files) counts once, as it does on the disk.
pub(crate) fn file_bytes(dir: &Path, skip: &[&str]) -> u64 {
    file_bytes_once(dir, skip, &mut std::collections::HashSet::new())
}

fn file_bytes_once(dir: &Path, skip: &[&str], seen: &mut std::collections::HashSet<(u64, u64)>) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut total = 0;
    for e in entries.flatten() {
        if skip.iter().any(|s| e.file_name() == *s) {
            continue;
        }
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_dir() {
            total += file_bytes_once(&e.path(), &[], seen);
        } else if meta.is_file() && (meta.nlink() == 1 || seen.insert((meta.dev(), meta.ino()))) {
            total += meta.len();
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_linked_twice_counts_once_and_skipped_entries_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("snapshots")).unwrap();
        std::fs::write(dir.path().join("a.sst"), vec![0u8; 1000]).unwrap();
        std::fs::hard_link(dir.path().join("a.sst"), dir.path().join("snapshots/a.sst")).unwrap();
        std::fs::write(dir.path().join("snapshots/MANIFEST"), vec![0u8; 10]).unwrap();
        std::fs::write(dir.path().join("queries.active"), vec![0u8; 100]).unwrap();
        assert_eq!(file_bytes(dir.path(), &["queries.active"]), 1010);
    }
}
