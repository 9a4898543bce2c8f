//! The Kafka consumer: on the Raft leader only, each partition of the event topics is read from
//! where its applied messages end, and each fetched batch goes into one log entry with the
//! span of offsets it covers (`LogWrite.sources`), so the events and the offsets they advance
//! are applied together, once (see `collabstream_store`'s `source_offsets`).
//!
//! Offsets live in the replicated state, not in a consumer group: a new leader resumes from
//! what the cluster applied. A deposed leader's consumer may still get a batch logged after
//! the new leader logged the same messages; apply refuses it, on every replica alike. A
//! message that is not an event (poison) is logged with its topic, partition and offset,
//! counted, and skipped: its offset is still covered by the batch's span, so the partition
//! moves on.
//!
//! Not here yet (issue 14): Avro and a schema registry, a dead-letter topic, SASL and TLS,
//! offsets committed to a consumer group for Kafka's lag tools, partitions added while a
//! leader consumes, compressed batches (rskafka is built without its codecs).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use collabstream_proto::kafka_message::{self, KafkaFormat, KafkaTopics};
use collabstream_proto::v1;
use collabstream_raft::{Error as RaftError, Writer};
use prost::Message;
use rskafka::BackoffConfig;
use rskafka::client::error::{Error as KafkaError, ProtocolError};
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// `[kafka]`: where the events come from. No brokers (here or in `KAFKA_BOOTSTRAP_SERVERS`):
/// no consumer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port` of the bootstrap brokers.
    pub brokers: Vec<String>,
    pub topics: KafkaTopics,
    pub format: KafkaFormat,
    /// At most this many bytes of messages a fetch (and so a log entry) from one partition.
    pub max_batch_bytes: usize,
    /// How long a fetch waits for messages when a partition has none.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: Vec::new(),
            topics: KafkaTopics::default(),
            format: KafkaFormat::Json,
            max_batch_bytes: 4 << 20,
            max_wait: Duration::from_millis(500),
        }
    }
}

impl KafkaConfig {
    /// The brokers configured, else those in `KAFKA_BOOTSTRAP_SERVERS` (comma-separated).
    pub fn brokers_or_env(&self) -> Vec<String> {
        if !self.brokers.is_empty() {
            return self.brokers.clone();
        }
        std::env::var("KAFKA_BOOTSTRAP_SERVERS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .map(String::from)
            .collect()
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(1024..=(256 << 20)).contains(&self.max_batch_bytes) {
            return Err("kafka.max_batch_bytes must be between 1 KiB and 256 MiB".into());
        }
        if self.max_wait < Duration::from_millis(1) || self.max_wait > Duration::from_secs(60) {
            return Err("kafka.max_wait must be between 1ms and 60s".into());
        }
        Ok(())
    }
}

/// The consumer's counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct KafkaMetrics {
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
    pub events: AtomicU64,
    pub poison: AtomicU64,
    /// Batches apply refused because another leader had logged their messages already.
    pub refused: AtomicU64,
    /// (topic, partition) → messages in the partition not yet applied, as of the last fetch;
    /// empty while this node does not lead.
    pub lag: std::sync::Mutex<BTreeMap<(String, i32), i64>>,
}

impl KafkaMetrics {
    fn set_lag(&self, topic: &str, partition: i32, lag: i64) {
        let mut l = self.lag.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        l.insert((topic.to_string(), partition), lag.max(0));
    }

    /// Each partition's lag, for `/metrics`.
    pub fn lags(&self) -> BTreeMap<(String, i32), i64> {
        self.lag.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// Consumes while this node leads, until `stop`.
pub async fn run(writer: Writer, config: KafkaConfig, metrics: Arc<KafkaMetrics>, stop: CancellationToken) {
    let brokers = config.brokers_or_env();
    let config = Arc::new(config);
    while !stop.is_cancelled() {
        if !writer.is_leader() {
            if pause(&stop, Duration::from_millis(200)).await {
                return;
            }
            continue;
        }
        // This term's consumers, stopped as soon as the node no longer leads.
        let term = stop.child_token();
        let mut tasks = JoinSet::new();
        tasks.spawn(lead(writer.clone(), brokers.clone(), config.clone(), metrics.clone(), term.clone()));
        while writer.is_leader() && !stop.is_cancelled() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        term.cancel();
        while tasks.join_next().await.is_some() {}
        metrics.lag.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
        tracing::info!("kafka consumer stopped: this node no longer leads");
    }
}

/// One term of leadership: connects, finds the topics' partitions and consumes each.
async fn lead(
    writer: Writer,
    brokers: Vec<String>,
    config: Arc<KafkaConfig>,
    metrics: Arc<KafkaMetrics>,
    stop: CancellationToken,
) {
    // The client's own retries end after a while, so that the log says why nothing comes (by
    // default they go on for ever, backing off up to 500 s).
    let retries = BackoffConfig {
        init_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(2),
        base: 2.0,
        deadline: Some(Duration::from_secs(10)),
    };
    let client = loop {
        let client = ClientBuilder::new(brokers.clone()).backoff_config(retries.clone());
        let Some(built) = or_stop(&stop, client.build()).await else { return };
        match built {
            Ok(c) => break Arc::new(c),
            Err(e) => {
                tracing::warn!(error = %e, ?brokers, "kafka: cannot connect; retrying");
                if pause(&stop, Duration::from_secs(1)).await {
                    return;
                }
            }
        }
    };
    let topics = &config.topics;
    let mut partitions = JoinSet::new();
    for topic in [&topics.user, &topics.chat, &topics.meeting] {
        let ids = loop {
            let Some(listed) = or_stop(&stop, client.list_topics()).await else { return };
            match listed {
                Ok(list) => {
                    if let Some(t) = list.into_iter().find(|t| &t.name == topic) {
                        break t.partitions;
                    }
                    tracing::debug!(topic, "kafka: topic not there yet");
                }
                Err(e) => tracing::warn!(error = %e, "kafka: listing topics failed; retrying"),
            }
            if pause(&stop, Duration::from_secs(1)).await {
                return;
            }
        };
        tracing::info!(topic, partitions = ids.len(), "kafka: consuming");
        for p in ids {
            let c = Consumer {
                writer: writer.clone(),
                client: client.clone(),
                topic: topic.clone(),
                partition: p,
                config: config.clone(),
                metrics: metrics.clone(),
            };
            partitions.spawn(c.run(stop.clone()));
        }
    }
    while partitions.join_next().await.is_some() {}
}

/// `f`'s output, or `None` once stopped: the client's calls retry on their own for as long as
/// the brokers are unreachable, and a node that no longer leads (or shuts down) must not wait.
async fn or_stop<T>(stop: &CancellationToken, f: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::select! {
        out = f => Some(out),
        _ = stop.cancelled() => None,
    }
}

/// Sleeps `d`; true if stopped meanwhile.
async fn pause(stop: &CancellationToken, d: Duration) -> bool {
    or_stop(stop, tokio::time::sleep(d)).await.is_none()
}

struct Consumer {
    writer: Writer,
    client: Arc<Client>,
    topic: String,
    partition: i32,
    config: Arc<KafkaConfig>,
    metrics: Arc<KafkaMetrics>,
}

impl Consumer {
    async fn run(self, stop: CancellationToken) {
        let pc = loop {
            let made =
                self.client.partition_client(self.topic.clone(), self.partition, UnknownTopicHandling::Retry);
            let Some(made) = or_stop(&stop, made).await else { return };
            match made {
                Ok(pc) => break pc,
                Err(e) => {
                    tracing::warn!(error = %e, topic = self.topic, partition = self.partition, "kafka: no partition client");
                    if pause(&stop, Duration::from_secs(1)).await {
                        return;
                    }
                }
            }
        };
        let mut offset = None;
        while !stop.is_cancelled() {
            let from = match offset {
                Some(o) => o,
                None => match or_stop(&stop, self.resume_at(&pc)).await {
                    None => return,
                    Some(Ok(o)) => *offset.insert(o),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, topic = self.topic, partition = self.partition, "kafka: no offset");
                        if pause(&stop, Duration::from_secs(1)).await {
                            return;
                        }
                        continue;
                    }
                },
            };
            let max_bytes = i32::try_from(self.config.max_batch_bytes).unwrap_or(i32::MAX);
            let max_wait = i32::try_from(self.config.max_wait.as_millis()).unwrap_or(i32::MAX);
            let fetch = pc.fetch_records(from, 1..max_bytes, max_wait);
            let Some(fetched) = or_stop(&stop, fetch).await else { return };
            let (records, high) = match fetched {
                Ok(fetched) => fetched,
                Err(KafkaError::ServerError { protocol_error: ProtocolError::OffsetOutOfRange, .. }) => {
                    // Retention removed what we had not read: start again from what is kept.
                    tracing::warn!(
                        topic = self.topic,
                        partition = self.partition,
                        from,
                        "kafka: offset out of range"
                    );
                    offset = None;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, topic = self.topic, partition = self.partition, "kafka: fetch failed");
                    if pause(&stop, Duration::from_secs(1)).await {
                        return;
                    }
                    continue;
                }
            };
            self.metrics.set_lag(&self.topic, self.partition, high - from);
            let Some(last) = records.iter().map(|r| r.offset).max() else { continue };
            let to = last + 1;
            let write = self.batch(&records, from, to);
            match self.writer.propose_as_leader(write.encode_to_vec().into()).await {
                Ok(outcome) => match outcome.refused {
                    None => {
                        offset = Some(to);
                        self.metrics.set_lag(&self.topic, self.partition, high - to);
                    }
                    Some(why) => {
                        // Logged by another leader already: read on from what was applied.
                        self.metrics.refused.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(
                            topic = self.topic,
                            partition = self.partition,
                            why,
                            "kafka: batch refused"
                        );
                        offset = None;
                    }
                },
                Err(RaftError::NotLeader | RaftError::ShuttingDown) => return,
                Err(e) => {
                    // Perhaps applied, perhaps not: the applied offsets tell.
                    tracing::warn!(error = %e, topic = self.topic, partition = self.partition, "kafka: batch not committed");
                    offset = None;
                    if pause(&stop, Duration::from_millis(200)).await {
                        return;
                    }
                }
            }
        }
    }

    /// Where the partition's applied messages end, else its earliest kept message.
    async fn resume_at(&self, pc: &PartitionClient) -> Result<i64, KafkaError> {
        let applied: BTreeMap<_, _> = self.writer.store().source_offsets();
        match applied.get(&(self.topic.clone(), self.partition)) {
            Some(&o) => Ok(o),
            None => pc.get_offset(OffsetAt::Earliest).await,
        }
    }

    /// The log write of messages `[from, to)`: their events, and the span.
    fn batch(&self, records: &[rskafka::record::RecordAndOffset], from: i64, to: i64) -> v1::LogWrite {
        let mut events = Vec::with_capacity(records.len());
        for r in records {
            let value = r.record.value.as_deref().unwrap_or_default();
            self.metrics.messages.fetch_add(1, Ordering::Relaxed);
            self.metrics.bytes.fetch_add(value.len() as u64, Ordering::Relaxed);
            let event = kafka_message::decode(&self.config.topics, &self.topic, value, self.config.format)
                .and_then(|e| {
                    collabstream_proto::events::validate(&e).map(|()| e).map_err(|e| e.to_string())
                });
            match event {
                Ok(e) => events.push(e),
                Err(why) => {
                    self.metrics.poison.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        topic = self.topic,
                        partition = self.partition,
                        offset = r.offset,
                        why,
                        "kafka: poison message skipped"
                    );
                }
            }
        }
        self.metrics.events.fetch_add(events.len() as u64, Ordering::Relaxed);
        let span = v1::SourceSpan {
            topic: self.topic.clone(),
            partition: self.partition,
            from_offset: from,
            to_offset: to,
        };
        v1::LogWrite { events, sources: vec![span], ..Default::default() }
    }
}
