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
    /// Starts the server, logging into `dir`, and waits until it accepts connections.
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        let port = free_port()?;
        let log = std::fs::File::create(dir.join("moto.log"))?;
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start moto_server: run scripts/install-deps.sh (PyPI moto[server])")?;
        let mut moto = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = moto.child.try_wait()? {
                bail!("moto_server exited with {status}");
            }
            if Instant::now() > deadline {
                bail!("moto_server did not listen on {port} within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
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
