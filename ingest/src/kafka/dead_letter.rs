//! [`DeadLetters`]: poison messages copied to the dead-letter topic, before the batch that
//! skips them is proposed.
//!
//! Each copy keeps the message's key, value and timestamp, and says where it came from in
//! headers (`collabstream.topic`, `collabstream.partition`, `collabstream.offset`) and why it
//! was refused (`collabstream.error`). Copies are at least once: a leader that dies after the
//! copy and before its batch commits leaves the next leader to copy the same messages again.
//! The topic is created (one partition) when it does not exist.

use std::sync::Arc;

use rskafka::client::Client;
use rskafka::client::error::Error as KafkaError;
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::record::{Record, RecordAndOffset};
use tokio::sync::OnceCell;

/// At most this much in one produce request.
const MAX_REQUEST_BYTES: usize = 900 << 10;

pub(crate) struct DeadLetters {
    client: Arc<Client>,
    topic: String,
    partition: OnceCell<PartitionClient>,
}

/// One refused message and why.
pub(crate) struct Letter<'a> {
    pub(crate) message: &'a RecordAndOffset,
    pub(crate) why: String,
}

impl DeadLetters {
    pub(crate) fn new(client: Arc<Client>, topic: String) -> Self {
        Self { client, topic, partition: OnceCell::new() }
    }

    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    /// Copies `letters` from `topic`'s `partition`; an error means none may be assumed sent.
    pub(crate) async fn send(
        &self,
        topic: &str,
        partition: i32,
        letters: &[Letter<'_>],
    ) -> Result<(), KafkaError> {
        if letters.is_empty() {
            return Ok(());
        }
        let pc = self.partition.get_or_try_init(|| self.connect()).await?;
        let mut records: Vec<Record> = letters
            .iter()
            .map(|l| {
                let mut r: Record = l.message.record.clone();
                if r.approximate_size() > MAX_REQUEST_BYTES {
                    // Too large for a broker's default message size: where it came from is kept.
                    r.value = None;
                    r.headers.insert("collabstream.value_dropped".into(), b"too large".to_vec());
                }
                r.headers.insert("collabstream.topic".into(), topic.as_bytes().to_vec());
                r.headers.insert("collabstream.partition".into(), partition.to_string().into_bytes());
                r.headers.insert("collabstream.offset".into(), l.message.offset.to_string().into_bytes());
                r.headers.insert("collabstream.error".into(), l.why.clone().into_bytes());
                r
            })
            .collect();
        // Produce requests under the brokers' default limit (message.max.bytes, ~1 MiB).
        while !records.is_empty() {
            let (mut size, mut n) = (0, 0);
            for r in &records {
                if n > 0 && size + r.approximate_size() > MAX_REQUEST_BYTES {
                    break;
                }
                (size, n) = (size + r.approximate_size(), n + 1);
            }
            let rest = records.split_off(n);
            pc.produce(records, Compression::NoCompression).await?;
            records = rest;
        }
        Ok(())
    }

    async fn connect(&self) -> Result<PartitionClient, KafkaError> {
        let exists = self.client.list_topics().await?.iter().any(|t| t.name == self.topic);
        if !exists {
            tracing::info!(topic = self.topic, "kafka: creating the dead-letter topic");
            match self.client.controller_client()?.create_topic(&self.topic, 1, 1, 10_000).await {
                // Another leader (or an operator) made it meanwhile.
                Ok(())
                | Err(KafkaError::ServerError {
                    protocol_error: rskafka::client::error::ProtocolError::TopicAlreadyExists,
                    ..
                }) => {}
                Err(e) => return Err(e),
            }
        }
        self.client.partition_client(self.topic.clone(), 0, UnknownTopicHandling::Retry).await
    }
}
