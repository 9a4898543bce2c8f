//! [`PartitionConsumer`]: one partition, read from where its applied messages end, each fetch
//! proposed as one log entry with the span of offsets it covers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use collabstream_proto::v1;
use collabstream_raft::{Error as RaftError, Writer};
use prost::Message;
use rskafka::client::Client;
use rskafka::client::error::{Error as KafkaError, ProtocolError};
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::record::RecordAndOffset;
use tokio_util::sync::CancellationToken;

use super::config::KafkaConfig;
use super::dead_letter::{DeadLetters, Letter};
use super::decode::{Decoder, Undecoded};
use super::leader::{or_stop, pause};
use super::metrics::KafkaMetrics;

pub(crate) struct PartitionConsumer {
    pub(crate) writer: Writer,
    pub(crate) client: Arc<Client>,
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) config: Arc<KafkaConfig>,
    pub(crate) decoder: Arc<Decoder>,
    pub(crate) dead_letters: Option<Arc<DeadLetters>>,
    pub(crate) metrics: Arc<KafkaMetrics>,
}

/// What a fetch gave, ready to propose.
struct Batch<'a> {
    write: v1::LogWrite,
    poison: Vec<Letter<'a>>,
}

impl PartitionConsumer {
    pub(crate) async fn run(self, stop: CancellationToken) {
        let (topic, partition) = (self.topic.as_str(), self.partition);
        let pc = loop {
            let made = self.client.partition_client(topic, partition, UnknownTopicHandling::Retry);
            match or_stop(&stop, made).await {
                None => return,
                Some(Ok(pc)) => break pc,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, topic, partition, "kafka: no partition client");
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
                        tracing::warn!(error = %e, topic, partition, "kafka: no offset");
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
                    tracing::warn!(topic, partition, from, "kafka: offset out of range");
                    offset = None;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, topic, partition, "kafka: fetch failed");
                    if pause(&stop, Duration::from_secs(1)).await {
                        return;
                    }
                    continue;
                }
            };
            // A compressed batch may begin before the offset asked for.
            let records: Vec<_> = records.into_iter().filter(|r| r.offset >= from).collect();
            self.metrics.set_lag(topic, partition, high - from);
            let Some(last) = records.iter().map(|r| r.offset).max() else { continue };
            let to = last + 1;
            let batch = match self.batch(&records, from, to).await {
                Ok(b) => b,
                Err(why) => {
                    tracing::warn!(topic, partition, why, "kafka: batch not read; trying again");
                    if pause(&stop, Duration::from_secs(1)).await {
                        return;
                    }
                    continue;
                }
            };
            if let Some(dl) = &self.dead_letters
                && let Err(e) = dl.send(topic, partition, &batch.poison).await
            {
                tracing::warn!(error = %e, topic, partition, dead_letters = dl.topic(), "kafka: dead letters not sent; trying again");
                if pause(&stop, Duration::from_secs(1)).await {
                    return;
                }
                continue;
            }
            match self.writer.propose_as_leader(batch.write.encode_to_vec().into()).await {
                Ok(outcome) => match outcome.refused {
                    None => {
                        self.count(&records, &batch);
                        offset = Some(to);
                        self.metrics.set_lag(topic, partition, high - to);
                    }
                    Some(why) => {
                        // Logged by another leader already: read on from what was applied.
                        self.metrics.refused.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(topic, partition, why, "kafka: batch refused");
                        offset = None;
                    }
                },
                Err(RaftError::NotLeader | RaftError::ShuttingDown) => return,
                Err(e) => {
                    // Perhaps applied, perhaps not: the applied offsets tell.
                    tracing::warn!(error = %e, topic, partition, "kafka: batch not committed");
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

    /// The log write of messages `[from, to)` (their events, and the span), and the poison
    /// among them. An error (the schema registry failed) means: read the batch again later.
    async fn batch<'a>(
        &self,
        records: &'a [RecordAndOffset],
        from: i64,
        to: i64,
    ) -> Result<Batch<'a>, String> {
        let mut events = Vec::with_capacity(records.len());
        let mut poison = Vec::new();
        for r in records {
            let value = r.record.value.as_deref().unwrap_or_default();
            match self.decoder.decode(&self.topic, value).await {
                Ok(e) => events.push(e),
                Err(Undecoded::Retry(why)) => return Err(why),
                Err(Undecoded::Poison(why)) => {
                    tracing::warn!(
                        topic = self.topic,
                        partition = self.partition,
                        offset = r.offset,
                        why,
                        "kafka: poison message skipped"
                    );
                    poison.push(Letter { message: r, why });
                }
            }
        }
        let span = v1::SourceSpan {
            topic: self.topic.clone(),
            partition: self.partition,
            from_offset: from,
            to_offset: to,
        };
        Ok(Batch { write: v1::LogWrite { events, sources: vec![span], ..Default::default() }, poison })
    }

    /// Counts a batch once it is applied (a refused one was counted by the leader that logged it).
    fn count(&self, records: &[RecordAndOffset], batch: &Batch<'_>) {
        let m = &self.metrics;
        let bytes: usize = records.iter().map(|r| r.record.value.as_ref().map_or(0, Vec::len)).sum();
        m.messages.fetch_add(records.len() as u64, Ordering::Relaxed);
        m.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        m.events.fetch_add(batch.write.events.len() as u64, Ordering::Relaxed);
        m.poison.fetch_add(batch.poison.len() as u64, Ordering::Relaxed);
        if self.dead_letters.is_some() {
            m.dead_lettered.fetch_add(batch.poison.len() as u64, Ordering::Relaxed);
        }
    }
}
