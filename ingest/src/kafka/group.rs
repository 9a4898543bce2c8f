//! [`GroupCommitter`]: the leader's applied offsets, committed to the consumer group every few
//! seconds, only so that Kafka's own tools (`kafka-consumer-groups --describe`, lag exporters)
//! see our progress. Nothing reads them back: a new leader resumes from the replicated offsets.
//!
//! rskafka has no consumer-group calls, so the two requests needed are written here:
//! FindCoordinator v0 and OffsetCommit v2 as a "simple" commit (generation -1, no member),
//! which brokers accept for groups with no members. Over TLS when `[kafka.tls]` is set, and
//! with `[kafka.sasl]`'s mechanism (PLAIN or SCRAM, run by rsasl as rskafka runs it).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use collabstream_raft::Writer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::config::{KafkaConfig, SaslSettings};
use super::leader::pause;
use super::metrics::KafkaMetrics;

/// How often the applied offsets are committed.
const EVERY: Duration = Duration::from_secs(2);
/// A request's whole round trip, connection included.
const DEADLINE: Duration = Duration::from_secs(10);

type Offsets = BTreeMap<(String, i32), i64>;

pub(crate) struct GroupCommitter {
    config: Arc<KafkaConfig>,
    writer: Writer,
    metrics: Arc<KafkaMetrics>,
    /// Made once a term (from `[kafka.tls]`, checked at start), not at every connection.
    tls: Option<tokio_rustls::TlsConnector>,
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

impl GroupCommitter {
    /// Fails if the TLS settings do not hold (`KafkaConfig::validate` checked them at start).
    pub(crate) fn new(
        config: &Arc<KafkaConfig>,
        writer: Writer,
        metrics: Arc<KafkaMetrics>,
    ) -> Result<Self, String> {
        let tls = match &config.tls {
            Some(t) => Some(tokio_rustls::TlsConnector::from(Arc::new(super::config::client_tls(t)?))),
            None => None,
        };
        Ok(Self { config: config.clone(), writer, metrics, tls })
    }

    pub(crate) async fn run(self, stop: CancellationToken) {
        let mut committed = Offsets::new();
        let mut failing = false;
        while !pause(&stop, EVERY).await {
            let topics = self.config.topics.all();
            let applied: Offsets = self
                .writer
                .store()
                .source_offsets()
                .into_iter()
                .filter(|((t, _), _)| topics.contains(&t.as_str()))
                .collect();
            if applied == committed {
                continue;
            }
            match tokio::time::timeout(DEADLINE, self.commit(&applied))
                .await
                .unwrap_or_else(|_| Err("timed out".into()))
            {
                Ok(()) => {
                    committed = applied;
                    failing = false;
                }
                Err(e) => {
                    self.metrics.group_commit_failures.fetch_add(1, Ordering::Relaxed);
                    if !failing {
                        tracing::warn!(
                            error = e,
                            group = self.config.group,
                            "kafka: offsets not committed to the group; retrying"
                        );
                    }
                    failing = true;
                }
            }
        }
    }

    async fn commit(&self, offsets: &Offsets) -> Result<(), String> {
        let group = self.config.group.as_str();
        let mut last_error = "no brokers".to_string();
        for broker in self.config.brokers_or_env() {
            let found = async {
                let mut conn = self.connect(&broker).await?;
                let mut body = Vec::new();
                put_str(&mut body, group);
                let mut r = conn.call(10, 0, &body).await?;
                let (error, _node) = (r.i16()?, r.i32()?);
                let (host, port) = (r.string()?, r.i32()?);
                if error != 0 {
                    return Err(format!("FindCoordinator answered error {error}"));
                }
                Ok::<_, String>(format!("{host}:{port}"))
            };
            match found.await {
                Ok(coordinator) => return self.offset_commit(&coordinator, offsets).await,
                Err(e) => last_error = format!("{broker}: {e}"),
            }
        }
        Err(last_error)
    }

    async fn offset_commit(&self, coordinator: &str, offsets: &Offsets) -> Result<(), String> {
        let mut by_topic: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
        for ((t, p), o) in offsets {
            by_topic.entry(t).or_default().push((*p, *o));
        }
        let mut body = Vec::new();
        put_str(&mut body, &self.config.group);
        body.extend((-1i32).to_be_bytes()); // generation: none (a simple commit)
        put_str(&mut body, ""); // member: none
        body.extend((-1i64).to_be_bytes()); // retention: the broker's
        body.extend((by_topic.len() as i32).to_be_bytes());
        for (topic, partitions) in &by_topic {
            put_str(&mut body, topic);
            body.extend((partitions.len() as i32).to_be_bytes());
            for (p, o) in partitions {
                body.extend(p.to_be_bytes());
                body.extend(o.to_be_bytes());
                body.extend((-1i16).to_be_bytes()); // metadata: null
            }
        }
        let mut conn = self.connect(coordinator).await?;
        // Version 2's answer has no throttle time (that came with version 3).
        let mut r = conn.call(8, 2, &body).await?;
        for _ in 0..r.i32()? {
            let topic = r.string()?;
            for _ in 0..r.i32()? {
                let (p, error) = (r.i32()?, r.i16()?);
                if error != 0 {
                    return Err(format!("OffsetCommit of {topic}/{p} answered error {error}"));
                }
            }
        }
        Ok(())
    }

    async fn connect(&self, addr: &str) -> Result<Conn, String> {
        let tcp = TcpStream::connect(addr).await.map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let stream: Box<dyn Stream> = match &self.tls {
            None => Box::new(tcp),
            Some(tls) => {
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).to_string();
                let name =
                    rustls::pki_types::ServerName::try_from(host).map_err(|e| format!("{addr}: {e}"))?;
                Box::new(tls.connect(name, tcp).await.map_err(|e| format!("TLS with {addr}: {e}"))?)
            }
        };
        let mut conn = Conn { stream, correlation: 0 };
        if let Some(sasl) = &self.config.sasl {
            conn.authenticate(sasl).await?;
        }
        Ok(conn)
    }
}

/// One connection to a broker: size-prefixed requests (header v1), answers (header v0).
struct Conn {
    stream: Box<dyn Stream>,
    correlation: i32,
}

impl Conn {
    async fn call(&mut self, api_key: i16, version: i16, body: &[u8]) -> Result<Reader, String> {
        self.correlation += 1;
        let mut request = Vec::with_capacity(body.len() + 32);
        request.extend(api_key.to_be_bytes());
        request.extend(version.to_be_bytes());
        request.extend(self.correlation.to_be_bytes());
        put_str(&mut request, "collabstream");
        request.extend(body);
        let mut framed = (request.len() as i32).to_be_bytes().to_vec();
        framed.extend(request);
        let io = |e: std::io::Error| format!("broker connection: {e}");
        self.stream.write_all(&framed).await.map_err(io)?;
        let len = self.stream.read_i32().await.map_err(io)?;
        if !(4..=(1 << 20)).contains(&len) {
            return Err(format!("implausible answer of {len} bytes"));
        }
        let mut answer = vec![0; len as usize];
        self.stream.read_exact(&mut answer).await.map_err(io)?;
        let mut r = Reader { buf: answer, at: 0, api_key };
        if r.i32()? != self.correlation {
            return Err("an answer to another request".into());
        }
        Ok(r)
    }
}

impl Conn {
    /// SaslHandshake v1, then SaslAuthenticate v0 for each message the mechanism sends (one
    /// for PLAIN, two for SCRAM, whose last answer rsasl checks: the broker proves it knows
    /// the password too).
    async fn authenticate(&mut self, sasl: &SaslSettings) -> Result<(), String> {
        use rsasl::prelude::{Mechname, SASLClient, SASLConfig};

        let mechanism = sasl.mechanism_name();
        let mut body = Vec::new();
        put_str(&mut body, &mechanism);
        let mut r = self.call(17, 1, &body).await?;
        if r.i16()? != 0 {
            let offered = (0..r.i32()?).map(|_| r.string()).collect::<Result<Vec<_>, _>>()?;
            return Err(format!("the broker does not take SASL {mechanism}; it offers {offered:?}"));
        }
        let failed = |e: &dyn std::fmt::Display| format!("SASL {mechanism}: {e}");
        let config = SASLConfig::with_credentials(None, sasl.username.clone(), sasl.password()?)
            .map_err(|e| failed(&e))?;
        let name = Mechname::parse(mechanism.as_bytes()).map_err(|e| failed(&e))?;
        let mut session = SASLClient::new(config).start_suggested(&[name]).map_err(|e| failed(&e))?;
        let mut received: Option<Vec<u8>> = None;
        loop {
            let mut message = Vec::new();
            let state = session.step(received.as_deref(), &mut message).map_err(|e| failed(&e))?;
            if state.has_sent_message() {
                let mut body = (message.len() as i32).to_be_bytes().to_vec();
                body.extend(&message);
                let mut r = self.call(36, 0, &body).await?;
                let (error, text) = (r.i16()?, r.string()?);
                if error != 0 {
                    return Err(format!("SASL {mechanism} refused (error {error}): {text}"));
                }
                received = Some(r.bytes()?);
            }
            if state.is_finished() {
                return Ok(());
            }
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as i16).to_be_bytes());
    out.extend(s.as_bytes());
}

struct Reader {
    buf: Vec<u8>,
    at: usize,
    api_key: i16,
}

impl Reader {
    fn short(&self) -> String {
        format!("a short answer to API {} ({} bytes): {:02x?}", self.api_key, self.buf.len(), self.buf)
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let bytes = self.buf.get(self.at..self.at + N).ok_or_else(|| self.short())?;
        self.at += N;
        Ok(bytes.try_into().expect("N bytes"))
    }
    fn i16(&mut self) -> Result<i16, String> {
        self.take().map(i16::from_be_bytes)
    }
    fn i32(&mut self) -> Result<i32, String> {
        self.take().map(i32::from_be_bytes)
    }
    /// Bytes (an `i32` length), or nullable ones (null reads as empty).
    fn bytes(&mut self) -> Result<Vec<u8>, String> {
        let len = self.i32()?;
        if len < 0 {
            return Ok(Vec::new());
        }
        let bytes = self.buf.get(self.at..self.at + len as usize).ok_or_else(|| self.short())?;
        self.at += len as usize;
        Ok(bytes.to_vec())
    }
    /// A string, or a nullable one (null reads as empty).
    fn string(&mut self) -> Result<String, String> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(String::new());
        }
        let bytes = self.buf.get(self.at..self.at + len as usize).ok_or_else(|| self.short())?;
        self.at += len as usize;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }
}
