//! [`KafkaBroker`]: a real Kafka-protocol broker on loopback, started by a test: tansu
//! (`cargo install tansu --locked --features dynostore`, which `scripts/install-deps.sh` does)
//! with its in-memory storage.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use rskafka::client::ClientBuilder;
use rskafka::client::partition::UnknownTopicHandling;

use crate::free_port;

/// A running broker. Dropping it kills the process by pid.
#[derive(Debug)]
pub struct KafkaBroker {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

/// Where tansu is: on `PATH` or in cargo's bin directory.
fn tansu() -> anyhow::Result<PathBuf> {
    let cargo_bin = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|h| Path::new(&h).join(".cargo")))
        .map(|p| p.join("bin"))
        .unwrap_or_default();
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(PathBuf::from)
        .chain([cargo_bin])
        .map(|d| d.join("tansu"))
        .find(|p| p.is_file())
        .context("the tansu broker is not installed: run scripts/install-deps.sh")
}

impl KafkaBroker {
    /// Starts a broker keeping its data in memory, logging into `dir`, and waits until it
    /// accepts connections.
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        let port = free_port()?;
        let url = format!("tcp://127.0.0.1:{port}");
        let log = dir.join("tansu.log");
        let out = std::fs::File::create(&log)?;
        let child = Command::new(tansu()?)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            // Its flags also come from these; none of the caller's may leak in.
            .env_remove("STORAGE_ENGINE")
            .env_remove("LISTENER_URL")
            .env_remove("ADVERTISED_LISTENER_URL")
            .env_remove("SCHEMA_REGISTRY")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("cannot start tansu")?;
        let mut broker = Self { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = broker.child.try_wait()? {
                bail!("tansu exited with {status}:\n{}", broker.log());
            }
            if Instant::now() > deadline {
                bail!("tansu did not listen on {port} within 30 s:\n{}", broker.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(broker)
    }

    /// `host:port` for clients.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// What the broker printed.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Every message the broker holds: by topic, its partition count and its messages as
    /// (partition, key, value), in offset order within each partition.
    pub async fn messages(&self) -> BTreeMap<String, (i32, Vec<KafkaMessage>)> {
        let client = ClientBuilder::new(vec![self.addr()]).build().await.expect("connect");
        let mut out = BTreeMap::new();
        for topic in client.list_topics().await.expect("list topics") {
            let mut messages = Vec::new();
            for &p in &topic.partitions {
                let pc = client
                    .partition_client(&topic.name, p, UnknownTopicHandling::Error)
                    .await
                    .expect("partition");
                let mut offset = 0;
                // Bounded: each fetch returns at least one record until the high watermark.
                for _ in 0..10_000 {
                    let (records, high) = pc.fetch_records(offset, 1..1_000_000, 100).await.expect("fetch");
                    for r in records {
                        offset = r.offset + 1;
                        messages.push(KafkaMessage {
                            partition: p,
                            key: r.record.key.unwrap_or_default(),
                            value: r.record.value.unwrap_or_default(),
                        });
                    }
                    if offset >= high {
                        break;
                    }
                }
            }
            out.insert(topic.name, (topic.partitions.len() as i32, messages));
        }
        out
    }
}

/// One message read back from the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaMessage {
    pub partition: i32,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
