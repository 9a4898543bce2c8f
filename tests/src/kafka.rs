//! [`KafkaBroker`]: a real Kafka-protocol broker on loopback, started by a test: tansu
//! (`cargo install tansu --locked --features dynostore`, which `scripts/install-deps.sh` does)
//! with its in-memory storage, or on an S3-compatible store ([`crate::Moto`]) when it must
//! survive a restart.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio_rustls::rustls;

use anyhow::{Context, bail};
use collabstream_proto::kafka_message::{self, KafkaFormat, KafkaTopics};
use collabstream_proto::v1;
use rskafka::client::ClientBuilder;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;

use crate::free_port;

/// A running broker. Dropping it kills the process by pid.
#[derive(Debug)]
pub struct KafkaBroker {
    child: Child,
    pub port: u16,
    log: PathBuf,
    command: Command,
}

/// Starts `command`, appending its output to `log`.
fn spawn(command: &mut Command, log: &Path) -> anyhow::Result<Child> {
    let out = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    command.stdout(out.try_clone()?).stderr(out).spawn().context("cannot start tansu")
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
        Self::start_with(dir, "memory://tansu/", &[], None, free_port()?)
    }

    /// Starts a broker in memory that tells clients to reach it at `advertised` (`host:port`,
    /// e.g. a TLS relay in front of it) instead of its own port.
    pub fn start_advertising(dir: &Path, advertised: &str) -> anyhow::Result<Self> {
        Self::start_with(dir, "memory://tansu/", &[], Some(advertised), free_port()?)
    }

    /// [`start_advertising`](Self::start_advertising), listening on `port` (for a relay that
    /// must know where the broker will be before it starts).
    pub fn start_advertising_on(dir: &Path, port: u16, advertised: &str) -> anyhow::Result<Self> {
        Self::start_with(dir, "memory://tansu/", &[], Some(advertised), port)
    }

    /// Starts a broker keeping its data in `bucket` of an S3-compatible store (moto), so that
    /// it can be killed and [restarted](Self::restart) without losing a message.
    pub fn start_on_s3(dir: &Path, endpoint: &str, bucket: &str) -> anyhow::Result<Self> {
        let env = [
            ("AWS_ENDPOINT", endpoint),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_ALLOW_HTTP", "true"),
        ];
        Self::start_with(dir, &format!("s3://{bucket}/"), &env, None, free_port()?)
    }

    fn start_with(
        dir: &Path,
        storage: &str,
        env: &[(&str, &str)],
        advertised: Option<&str>,
        port: u16,
    ) -> anyhow::Result<Self> {
        let mut command = Command::new(tansu()?);
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised = advertised.map_or_else(|| url.clone(), |a| format!("tcp://{a}"));
        command
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &advertised])
            .args(["--storage-engine", storage])
            // Its flags also come from these; none of the caller's may leak in.
            .env_remove("STORAGE_ENGINE")
            .env_remove("LISTENER_URL")
            .env_remove("ADVERTISED_LISTENER_URL")
            .env_remove("SCHEMA_REGISTRY")
            .envs(env.iter().copied())
            .stdin(Stdio::null());
        let log = dir.join("tansu.log");
        let mut broker = Self { child: spawn(&mut command, &log)?, port, log, command };
        broker.wait_listening()?;
        Ok(broker)
    }

    /// SIGKILLs the broker, and starts it again on the same port and storage after `down`.
    pub fn restart(&mut self, down: Duration) -> anyhow::Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(down);
        self.child = spawn(&mut self.command, &self.log)?;
        self.wait_listening()
    }

    fn wait_listening(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.try_wait()? {
                bail!("tansu exited with {status}:\n{}", self.log());
            }
            if Instant::now() > deadline {
                bail!("tansu did not listen on {} within 30 s:\n{}", self.port, self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Creates `topic` with `partitions` (tansu creates none on its own).
    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        let client = ClientBuilder::new(vec![self.addr()]).build().await.expect("connect");
        let controller = client.controller_client().expect("controller");
        controller.create_topic(topic, partitions, 1, 10_000).await.expect("topic created");
    }

    /// `events` into their topics (which must exist with `partitions` each) as JSON, keyed and
    /// partitioned by meeting as our producer does, the partitions written concurrently.
    pub async fn produce_events(&self, events: &[v1::Event], partitions: i32) {
        let topics = KafkaTopics::default();
        let client = ClientBuilder::new(vec![self.addr()]).build().await.expect("connect");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970");
        let stamp = rskafka::chrono::DateTime::from_timestamp_millis(now.as_millis() as i64).expect("a time");
        let mut by_partition: BTreeMap<(String, i32), Vec<Record>> = BTreeMap::new();
        for e in events {
            let key = kafka_message::key(e);
            let partition = kafka_message::partition_for(&key, partitions);
            let topic = topics.topic_for(e).expect("an event with a type").to_string();
            by_partition.entry((topic, partition)).or_default().push(Record {
                key: Some(key),
                value: Some(kafka_message::encode(e, KafkaFormat::Json)),
                headers: Default::default(),
                timestamp: stamp,
            });
        }
        let mut tasks = Vec::new();
        for ((topic, partition), records) in by_partition {
            let pc = client
                .partition_client(topic, partition, UnknownTopicHandling::Error)
                .await
                .expect("partition");
            tasks.push(tokio::spawn(async move {
                for chunk in records.chunks(2_000) {
                    pc.produce(chunk.to_vec(), Compression::NoCompression).await.expect("produced");
                }
            }));
        }
        for t in tasks {
            t.await.expect("producer");
        }
    }

    /// The broker's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
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
        self.messages_via(&self.addr(), None).await
    }

    /// [`messages`](Self::messages), read through `bootstrap` (over TLS trusting the PEM file
    /// `ca`, if given): for a broker that advertises a relay in front of it.
    pub async fn messages_via(
        &self,
        bootstrap: &str,
        ca: Option<&str>,
    ) -> BTreeMap<String, (i32, Vec<KafkaMessage>)> {
        let mut builder = ClientBuilder::new(vec![bootstrap.to_string()]);
        if let Some(ca) = ca {
            builder = builder.tls_config(Arc::new(client_tls(ca)));
        }
        let client = builder.build().await.expect("connect");
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
                            offset: r.offset,
                            key: r.record.key.unwrap_or_default(),
                            value: r.record.value.unwrap_or_default(),
                            headers: r.record.headers,
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

/// A TLS client configuration trusting the PEM certificates in `ca`.
fn client_tls(ca: &str) -> rustls::ClientConfig {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("CA file") {
        roots.add(cert.expect("a certificate")).expect("a CA");
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// One message read back from the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaMessage {
    pub partition: i32,
    pub offset: i64,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub headers: BTreeMap<String, Vec<u8>>,
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
