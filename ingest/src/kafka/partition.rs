//! [`PartitionConsumer`]: one partition, read from where its applied messages end, its messages
//! proposed in log entries with the span of offsets each covers, as far as the partitions'
//! [`Alignment`] lets them go.

use std::collections::{BTreeMap, VecDeque};
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

use super::alignment::Alignment;
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
    pub(crate) alignment: Arc<Alignment>,
    pub(crate) metrics: Arc<KafkaMetrics>,
}

/// A fetched message, read, waiting to be proposed.
struct Fetched {
    message: RecordAndOffset,
    /// The event, or why the message is poison.
    event: Result<v1::Event, String>,
}

impl Fetched {
    fn time_ms(&self) -> Option<i64> {
        self.event.as_ref().ok().and_then(collabstream_proto::events::timestamp_ms)
    }
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
        self.consume(&pc, &stop).await;
        // Stopped: it holds no other partition back any more.
        self.alignment.report(topic, partition, None);
    }

    async fn consume(&self, pc: &PartitionClient, stop: &CancellationToken) {
        let (topic, partition) = (self.topic.as_str(), self.partition);
        // Where the next batch's span starts (where the applied messages end), once known.
        let mut offset = None;
        let mut fetched: VecDeque<Fetched> = VecDeque::new();
        let (mut high, mut last_ms) = (0, None);
        let mut waiting_since = None;
        while !stop.is_cancelled() {
            let from = match offset {
                Some(o) => o,
                None => match or_stop(stop, self.resume_at(pc)).await {
                    None => return,
                    Some(Ok(o)) => *offset.insert(o),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, topic, partition, "kafka: no offset");
                        if pause(stop, Duration::from_secs(1)).await {
                            return;
                        }
                        continue;
                    }
                },
            };
            if fetched.is_empty() {
                // Between fetches, with messages still to read, the next event is no earlier
                // than the last one proposed.
                self.alignment.report(topic, partition, if high > from { last_ms } else { None });
                match self.fetch(pc, from, stop).await {
                    Fetch::Stopped => return,
                    Fetch::Again => {
                        offset = None;
                        continue;
                    }
                    Fetch::Got(messages, h) => {
                        high = h;
                        fetched = messages.into();
                    }
                }
                if fetched.is_empty() {
                    continue;
                }
            }
            // Only the events up to the bound every partition keeps to.
            let next_ms = fetched.iter().find_map(Fetched::time_ms);
            self.alignment.report(topic, partition, next_ms.or(last_ms));
            let limit = self.alignment.limit_ms();
            let n = fetched
                .iter()
                .take_while(|f| f.time_ms().zip(limit).is_none_or(|(t, limit)| t <= limit))
                .count();
            if n == 0 {
                let waiting = waiting_since.get_or_insert_with(std::time::Instant::now);
                if waiting.elapsed() > Duration::from_secs(10) {
                    tracing::info!(
                        topic,
                        partition,
                        next_ms,
                        limit,
                        "kafka: waiting for other partitions to catch up in event time"
                    );
                    *waiting = std::time::Instant::now();
                }
                if or_stop(stop, self.alignment.changed(Duration::from_millis(100))).await.is_none() {
                    return;
                }
                continue;
            }
            waiting_since = None;
            let batch: Vec<Fetched> = fetched.drain(..n).collect();
            let to = batch.last().map_or(from, |f| f.message.offset + 1);
            match self.propose(&batch, from, to).await {
                Proposed::Applied => {
                    offset = Some(to);
                    last_ms = batch.iter().filter_map(Fetched::time_ms).max().or(last_ms);
                    self.metrics.set_lag(topic, partition, high - to);
                }
                Proposed::Again => {
                    // Refused, or perhaps applied, perhaps not: the applied offsets tell.
                    offset = None;
                    fetched.clear();
                    if pause(stop, Duration::from_millis(200)).await {
                        return;
                    }
                }
                Proposed::Stop => return,
            }
        }
    }

    /// Fetches from `from` and reads the messages.
    async fn fetch(&self, pc: &PartitionClient, from: i64, stop: &CancellationToken) -> Fetch {
        let (topic, partition) = (self.topic.as_str(), self.partition);
        let max_bytes = i32::try_from(self.config.max_batch_bytes).unwrap_or(i32::MAX);
        let max_wait = i32::try_from(self.config.max_wait.as_millis()).unwrap_or(i32::MAX);
        let Some(fetched) = or_stop(stop, fetch_from(pc, from, max_bytes, max_wait)).await else {
            return Fetch::Stopped;
        };
        let (records, high) = match fetched {
            Ok(fetched) => fetched,
            Err(KafkaError::ServerError { protocol_error: ProtocolError::OffsetOutOfRange, .. }) => {
                // Retention removed what we had not read: start again from what is kept.
                tracing::warn!(topic, partition, from, "kafka: offset out of range");
                return Fetch::Again;
            }
            Err(e) => {
                tracing::warn!(error = %e, topic, partition, "kafka: fetch failed");
                return if pause(stop, Duration::from_secs(1)).await { Fetch::Stopped } else { Fetch::Again };
            }
        };
        self.metrics.set_lag(topic, partition, high - from);
        let mut out = Vec::with_capacity(records.len());
        for message in records {
            let value = message.record.value.as_deref().unwrap_or_default();
            let event = match self.decoder.decode(topic, value).await {
                Ok(e) => Ok(e),
                Err(Undecoded::Poison(why)) => {
                    tracing::warn!(
                        topic,
                        partition,
                        offset = message.offset,
                        why,
                        "kafka: poison message skipped"
                    );
                    Err(why)
                }
                Err(Undecoded::Retry(why)) => {
                    // No good message may be skipped for it: read them all again later.
                    tracing::warn!(topic, partition, why, "kafka: messages not read; trying again");
                    return if pause(stop, Duration::from_secs(1)).await {
                        Fetch::Stopped
                    } else {
                        Fetch::Again
                    };
                }
            };
            out.push(Fetched { message, event });
        }
        Fetch::Got(out, high)
    }

    /// Copies the poison among `batch` to the dead letters, then proposes its events with the
    /// span `[from, to)`.
    async fn propose(&self, batch: &[Fetched], from: i64, to: i64) -> Proposed {
        let (topic, partition) = (self.topic.as_str(), self.partition);
        let poison: Vec<Letter<'_>> = batch
            .iter()
            .filter_map(|f| {
                f.event.as_ref().err().map(|why| Letter { message: &f.message, why: why.clone() })
            })
            .collect();
        if let Some(dl) = &self.dead_letters
            && let Err(e) = dl.send(topic, partition, &poison).await
        {
            tracing::warn!(error = %e, topic, partition, dead_letters = dl.topic(), "kafka: dead letters not sent; trying again");
            return Proposed::Again;
        }
        let events: Vec<v1::Event> = batch.iter().filter_map(|f| f.event.as_ref().ok().cloned()).collect();
        let span = v1::SourceSpan { topic: topic.to_string(), partition, from_offset: from, to_offset: to };
        let write = v1::LogWrite { events, sources: vec![span], ..Default::default() };
        let events = write.events.len();
        match self.writer.propose_as_leader(write.encode_to_vec().into()).await {
            Ok(outcome) => match outcome.refused {
                None => {
                    self.count(batch, events, poison.len());
                    Proposed::Applied
                }
                Some(why) => {
                    // Logged by another leader already: read on from what was applied.
                    self.metrics.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(topic, partition, why, "kafka: batch refused");
                    Proposed::Again
                }
            },
            Err(RaftError::NotLeader | RaftError::ShuttingDown) => Proposed::Stop,
            Err(e) => {
                tracing::warn!(error = %e, topic, partition, "kafka: batch not committed");
                Proposed::Again
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

    /// Counts a batch once it is applied (a refused one was counted by the leader that logged it).
    fn count(&self, batch: &[Fetched], events: usize, poison: usize) {
        let m = &self.metrics;
        let bytes: usize = batch.iter().map(|f| f.message.record.value.as_ref().map_or(0, Vec::len)).sum();
        m.messages.fetch_add(batch.len() as u64, Ordering::Relaxed);
        m.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        m.events.fetch_add(events as u64, Ordering::Relaxed);
        m.poison.fetch_add(poison as u64, Ordering::Relaxed);
        if self.dead_letters.is_some() {
            m.dead_lettered.fetch_add(poison as u64, Ordering::Relaxed);
        }
    }
}

/// The messages from `from` on, in offset order, and the high watermark.
///
/// Asked for an offset inside a batch, a broker should answer with that batch (the client
/// skips what is before the offset). tansu 0.6 answers with the batches after it, which would
/// skip the rest of that batch, and a consumer resuming where a prefix of a fetch was applied
/// asks for such offsets. So when the first message is past `from`, the fetch is repeated from
/// further back until it holds `from`'s batch, or shows that the messages before the first are
/// gone (a compacted or truncated partition), at most 30 times.
async fn fetch_from(
    pc: &PartitionClient,
    from: i64,
    max_bytes: i32,
    max_wait: i32,
) -> Result<(Vec<RecordAndOffset>, i64), KafkaError> {
    let (mut records, high) = pc.fetch_records(from, 1..max_bytes, max_wait).await?;
    let first = records.iter().map(|r| r.offset).min();
    if let Some(first) = first.filter(|f| *f > from) {
        let (mut step, mut start, mut just_after_a_batch) = (1i64, (from - 1).max(0), false);
        for _ in 0..30 {
            let (earlier, _) = pc.fetch_records(start, 1..max_bytes, max_wait).await?;
            if earlier.iter().any(|r| (from..first).contains(&r.offset)) {
                records = earlier;
                break;
            }
            let lo = earlier.iter().map(|r| r.offset).min().unwrap_or(first);
            let hi = earlier.iter().map(|r| r.offset).max().unwrap_or(first);
            if lo >= first && start > 0 && !just_after_a_batch {
                // Still inside `from`'s batch (or later): further back.
                step = step.saturating_mul(4);
                start = (from - step).max(0);
            } else if hi < from {
                // Batches before `from`'s, cut short by max_bytes: `from`'s is the next one.
                start = hi + 1;
                just_after_a_batch = true;
            } else {
                // Nothing between: the messages before `first` are gone.
                break;
            }
        }
    }
    // A compressed batch may begin before the offset asked for; and batches do not always come
    // in offset order (tansu's did not), which a prefix proposed up to its last message relies on.
    records.retain(|r| r.offset >= from);
    records.sort_unstable_by_key(|r| r.offset);
    Ok((records, high))
}

enum Fetch {
    Got(Vec<Fetched>, i64),
    /// Nothing usable: find the offset again and fetch anew.
    Again,
    Stopped,
}

enum Proposed {
    Applied,
    /// Not applied, or not known to be: find the offset again and fetch anew.
    Again,
    /// No longer the leader, or shutting down.
    Stop,
}
