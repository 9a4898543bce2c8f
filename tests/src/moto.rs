//! [`Moto`]: an S3-compatible server on loopback (`moto_server` from PyPI's `moto[server]`,
//! which `scripts/install-deps.sh` installs), started by a test, buckets in memory.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::free_port;

/// A running moto server. Dropping it kills the process by pid.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Moto {
    /// Starts the server, logging into `dir`, and waits until it answers as moto. A port taken
    /// between choosing it and moto binding it (tests run side by side) makes moto exit, and
    /// another listener there could answer the connect: the start is tried again on another.
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        let mut last = None;
        for _ in 0..3 {
            match Self::start_once(dir) {
                Ok(m) => return Ok(m),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("three attempts"))
    }

    fn start_once(dir: &Path) -> anyhow::Result<Self> {
        let port = free_port()?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("moto.log"))?;
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start moto_server: run scripts/install-deps.sh (PyPI moto[server])")?;
        let mut moto = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !answers_as_moto(port) {
            if let Some(status) = moto.child.try_wait()? {
                bail!("moto_server exited with {status}");
            }
            if Instant::now() > deadline {
                bail!("moto_server did not answer on {port} within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(status) = moto.child.try_wait()? {
            bail!("moto_server exited with {status} (another process answers on {port})");
        }
        Ok(moto)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates `bucket` (moto takes unsigned requests).
    pub async fn create_bucket(&self, bucket: &str) -> anyhow::Result<()> {
        let r = reqwest::Client::new().put(format!("{}/{bucket}", self.endpoint())).send().await?;
        if !r.status().is_success() {
            bail!("creating bucket {bucket}: {} {}", r.status(), r.text().await.unwrap_or_default());
        }
        Ok(())
    }
}

/// Whether what listens on `port` answers S3's ListBuckets as moto does.
fn answers_as_moto(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
    if c.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = c.read_to_string(&mut answer);
    answer.contains("ListAllMyBucketsResult")
}

impl Moto {
    /// The keys in `bucket` (ListObjectsV2, one page: tests hold fewer than 1,000 objects).
    pub async fn list(&self, bucket: &str) -> anyhow::Result<Vec<String>> {
        let url = format!("{}/{bucket}?list-type=2", self.endpoint());
        let r = reqwest::Client::new().get(url).send().await?;
        if !r.status().is_success() {
            bail!("listing {bucket}: {} {}", r.status(), r.text().await.unwrap_or_default());
        }
        let xml = r.text().await?;
        Ok(xml
            .split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split_once("</Key>").map(|(k, _)| k.to_string()))
            .collect())
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
