//! [`KafkaProducer`]: sends events to Kafka the way the origin project's producers did: each
//! event type to its topic (`user_events`, `chat_events`, `meeting_events`), keyed by meeting
//! id, as JSON (or protobuf) — what the Kafka ingest of a node reads.
//!
//! Topics that do not exist yet are created with [`KafkaProducer::NEW_TOPIC_PARTITIONS`]
//! partitions. A meeting's events go to the partition Kafka's own default partitioner would
//! pick for its key, so they stay in order and land where Java or librdkafka producers would put
//! them.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use collabstream_proto::kafka_message::{self, KafkaFormat, KafkaTopics};
use collabstream_proto::v1;
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;
use tokio::sync::Mutex;

use crate::error::Error;

fn err(what: impl std::fmt::Display) -> Error {
    Error::Produce(format!("kafka: {what}"))
}

/// A producer of events to a Kafka cluster (any Kafka-protocol broker).
pub(crate) struct KafkaProducer {
    client: Client,
    brokers: Vec<String>,
    topics: KafkaTopics,
    format: KafkaFormat,
    /// Each topic's partition clients, in partition order, opened on first use.
    partitions: Mutex<HashMap<String, Vec<PartitionClient>>>,
}

impl std::fmt::Debug for KafkaProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaProducer").field("brokers", &self.brokers).field("format", &self.format).finish()
    }
}

impl KafkaProducer {
    /// Partitions of a topic this producer creates.
    pub(crate) const NEW_TOPIC_PARTITIONS: i32 = 3;

    /// Connects to the bootstrap `brokers` (`host:port`).
    pub(crate) async fn connect(
        brokers: Vec<String>,
        topics: KafkaTopics,
        format: KafkaFormat,
    ) -> Result<Self, Error> {
        let connect = ClientBuilder::new(brokers.clone()).build();
        let client = tokio::time::timeout(Duration::from_secs(30), connect)
            .await
            .map_err(|_| {
                err(format!("no broker of {brokers:?} answered within 30 s; is Kafka running there?"))
            })?
            .map_err(|e| err(format!("cannot connect to {brokers:?}: {e}")))?;
        Ok(Self { client, brokers, topics, format, partitions: Mutex::new(HashMap::new()) })
    }

    /// The partition clients of `topic`, creating the topic if it does not exist.
    async fn open(&self, topic: &str) -> Result<Vec<PartitionClient>, Error> {
        let listed = self.client.list_topics().await.map_err(|e| err(format!("cannot list topics: {e}")))?;
        let count = match listed.iter().find(|t| t.name == topic) {
            Some(t) => t.partitions.len() as i32,
            None => {
                let controller = self.client.controller_client().map_err(err)?;
                match controller.create_topic(topic, Self::NEW_TOPIC_PARTITIONS, 1, 5_000).await {
                    Ok(()) => {}
                    // Another producer created it meanwhile.
                    Err(rskafka::client::error::Error::ServerError {
                        protocol_error: rskafka::client::error::ProtocolError::TopicAlreadyExists,
                        ..
                    }) => {}
                    Err(e) => return Err(err(format!("cannot create topic {topic}: {e}"))),
                }
                tracing::info!(topic, partitions = Self::NEW_TOPIC_PARTITIONS, "created kafka topic");
                Self::NEW_TOPIC_PARTITIONS
            }
        };
        if count < 1 {
            return Err(err(format!("topic {topic} has no partitions")));
        }
        let mut clients = Vec::with_capacity(count as usize);
        for p in 0..count {
            clients.push(
                self.client
                    .partition_client(topic, p, UnknownTopicHandling::Retry)
                    .await
                    .map_err(|e| err(format!("cannot open {topic}/{p}: {e}")))?,
            );
        }
        Ok(clients)
    }

    /// Produces `events`, each to its topic and partition; returns how many the brokers took.
    pub(crate) async fn send(&self, events: &[v1::Event]) -> Result<u64, Error> {
        let mut by_topic: BTreeMap<&str, Vec<&v1::Event>> = BTreeMap::new();
        for e in events {
            let topic =
                self.topics.topic_for(e).ok_or_else(|| err("an event without a type cannot be produced"))?;
            by_topic.entry(topic).or_default().push(e);
        }
        let mut sent = 0u64;
        let mut partitions = self.partitions.lock().await;
        for (topic, events) in by_topic {
            if !partitions.contains_key(topic) {
                let opened = self.open(topic).await?;
                partitions.insert(topic.to_string(), opened);
            }
            let clients = &partitions[topic];
            let mut batches: Vec<Vec<Record>> = vec![Vec::new(); clients.len()];
            for e in events {
                let key = kafka_message::key(e);
                let p = kafka_message::partition_for(&key, clients.len() as i32) as usize;
                batches[p].push(Record {
                    key: Some(key),
                    value: Some(kafka_message::encode(e, self.format)),
                    headers: BTreeMap::new(),
                    // The event's own time (Kafka's CreateTime).
                    timestamp: collabstream_proto::events::timestamp_ms(e)
                        .and_then(rskafka::chrono::DateTime::from_timestamp_millis)
                        .unwrap_or_default(),
                });
            }
            for (client, records) in clients.iter().zip(batches) {
                let n = records.len() as u64;
                if n == 0 {
                    continue;
                }
                client
                    .produce(records, Compression::NoCompression)
                    .await
                    .map_err(|e| err(format!("producing to {topic}/{}: {e}", client.partition())))?;
                sent += n;
            }
        }
        Ok(sent)
    }
}
