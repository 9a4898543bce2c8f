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
use rskafka::client::error::Error as KafkaError;
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use tokio_util::sync::CancellationToken;

use super::alignment::Alignment;
use super::config::KafkaConfig;
use super::dead_letter::{DeadLetters, Letter};
use super::decode::Decoder;
use super::fetcher::{Ahead, Fetch, Fetched, Fetcher};
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
        self.consume(Arc::new(pc), &stop).await;
        // Stopped: it holds no other partition back any more.
        self.alignment.report(topic, partition, None);
    }

    async fn consume(&self, pc: Arc<PartitionClient>, stop: &CancellationToken) {
        let (topic, partition) = (self.topic.as_str(), self.partition);
        // Where the next batch's span starts (where the applied messages end), once known.
        let mut offset = None;
        // The fetcher reading ahead of `fetched`, from where `fetched` ends.
        let mut ahead: Option<Ahead> = None;
        let mut fetched: VecDeque<Fetched> = VecDeque::new();
        let (mut high, mut last_ms) = (0, None);
        let (mut caught_up, mut ready_for_more) = (false, true);
        let mut waiting_since = None;
        while !stop.is_cancelled() {
            let from = match offset {
                Some(o) => o,
                None => match or_stop(stop, self.resume_at(&pc)).await {
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
            let fetches = &mut ahead.get_or_insert_with(|| self.fetcher(&pc).start(from, stop)).fetches;
            let fetch = if fetched.is_empty() {
                // Between fetches, with messages still to read, the next event is no earlier
                // than the last one proposed; with nothing more to fetch for now (the last
                // fetch was empty), it holds no one back.
                let behind = high > from && !caught_up;
                self.alignment.report(topic, partition, if behind { last_ms } else { None });
                or_stop(stop, fetches.recv()).await.flatten()
            } else if ready_for_more {
                // Only when all that waits may go: a partition held back reads no further.
                fetches.try_recv().ok()
            } else {
                None
            };
            match fetch {
                None if stop.is_cancelled() => return,
                None if fetched.is_empty() => {
                    // The fetcher ended (it sends Again or Stopped before it does): start anew.
                    ahead = None;
                    continue;
                }
                None => {}
                Some(Fetch::Stopped) => return,
                Some(Fetch::Again) => {
                    (ahead, offset) = (None, None);
                    fetched.clear();
                    continue;
                }
                Some(Fetch::OutOfRange) => {
                    (ahead, offset) = (None, None);
                    fetched.clear();
                    if self.skip_to_earliest(&pc, from).await.is_none()
                        || pause(stop, Duration::from_secs(1)).await
                    {
                        return;
                    }
                    continue;
                }
                Some(Fetch::Got(messages, h)) => {
                    high = h;
                    caught_up = messages.is_empty();
                    self.metrics.set_lag(topic, partition, high - from);
                    fetched.extend(messages);
                }
            }
            if fetched.is_empty() {
                continue;
            }
            // Only the events up to the bound every partition keeps to.
            let next_ms = fetched.iter().find_map(Fetched::time_ms);
            self.alignment.report(topic, partition, next_ms.or(last_ms));
            let (limit, version) = self.alignment.limit_ms();
            // …and at most max_batch_bytes of them in one entry (at least one message).
            let (mut bytes, mut taken) = (0, 0);
            let n = fetched
                .iter()
                .take_while(|f| f.time_ms().zip(limit).is_none_or(|(t, limit)| t <= limit))
                .take_while(|f| {
                    let fits = taken == 0 || bytes + f.bytes <= self.config.max_batch_bytes;
                    (bytes, taken) = (bytes + f.bytes, taken + 1);
                    fits
                })
                .count();
            ready_for_more = n == fetched.len();
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
                if or_stop(stop, self.alignment.changed(version, Duration::from_secs(1))).await.is_none() {
                    return;
                }
                continue;
            }
            waiting_since = None;
            let batch: Vec<Fetched> = fetched.drain(..n).collect();
            let to = batch.last().map_or(from, |f| f.offset + 1);
            // Said before the batch is applied, so that the others need not wait for that: a
            // batch that does not apply only makes the bound looser for a moment.
            let batch_ms = batch.iter().filter_map(Fetched::time_ms).max();
            let after = fetched.iter().find_map(Fetched::time_ms).or(batch_ms).or(last_ms);
            self.alignment.report(topic, partition, after);
            match self.propose(&batch, from, to).await {
                Proposed::Applied => {
                    offset = Some(to);
                    last_ms = batch_ms.or(last_ms);
                    self.metrics.set_lag(topic, partition, high - to);
                }
                Proposed::Again => {
                    // Refused, or perhaps applied, perhaps not: the applied offsets tell.
                    (ahead, offset) = (None, None);
                    fetched.clear();
                    if pause(stop, Duration::from_millis(200)).await {
                        return;
                    }
                }
                Proposed::Stop => {
                    // No longer the leader: the whole term ends (a new one starts every
                    // partition again if this node leads again).
                    stop.cancel();
                    return;
                }
            }
        }
    }

    /// After `from` fell out of the partition: if retention removed messages not yet read,
    /// proposes a span without events up to the earliest kept one (they are lost, loudly);
    /// if the partition now ends before `from` (recreated?), it cannot go on: says so and
    /// waits. `None` once stopped.
    async fn skip_to_earliest(&self, pc: &PartitionClient, from: i64) -> Option<()> {
        let (topic, partition) = (self.topic.as_str(), self.partition);
        let earliest = match pc.get_offset(OffsetAt::Earliest).await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, topic, partition, "kafka: offset out of range, and no earliest offset");
                return Some(());
            }
        };
        if earliest <= from {
            tracing::error!(
                topic,
                partition,
                applied = from,
                earliest,
                "kafka: the partition ends before the offsets applied (was the topic recreated?); it is not read until it reaches them"
            );
            return Some(());
        }
        tracing::error!(
            topic,
            partition,
            applied = from,
            earliest,
            lost = earliest - from,
            "kafka: messages removed by retention before they were read; going on from the earliest kept"
        );
        match self.propose(&[], from, earliest).await {
            Proposed::Applied => {
                self.metrics.lost.fetch_add((earliest - from) as u64, Ordering::Relaxed);
                Some(())
            }
            Proposed::Again => Some(()),
            Proposed::Stop => None,
        }
    }

    /// Copies the poison among `batch` to the dead letters, then proposes its events with the
    /// span `[from, to)`.
    async fn propose(&self, batch: &[Fetched], from: i64, to: i64) -> Proposed {
        let (topic, partition) = (self.topic.as_str(), self.partition);
        let poison: Vec<Letter<'_>> = batch
            .iter()
            .filter_map(|f| {
                f.event.as_ref().err().map(|poison| Letter { message: &poison.0, why: poison.1.clone() })
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

    fn fetcher(&self, pc: &Arc<PartitionClient>) -> Fetcher {
        Fetcher {
            pc: pc.clone(),
            decoder: self.decoder.clone(),
            topic: self.topic.clone(),
            partition: self.partition,
            max_bytes: i32::try_from(self.config.max_batch_bytes).unwrap_or(i32::MAX),
            max_wait: i32::try_from(self.config.max_wait.as_millis()).unwrap_or(i32::MAX),
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
        let bytes: usize = batch.iter().map(|f| f.bytes).sum();
        m.messages.fetch_add(batch.len() as u64, Ordering::Relaxed);
        m.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        m.events.fetch_add(events as u64, Ordering::Relaxed);
        m.poison.fetch_add(poison as u64, Ordering::Relaxed);
        if self.dead_letters.is_some() {
            m.dead_lettered.fetch_add(poison as u64, Ordering::Relaxed);
        }
    }
}

enum Proposed {
    Applied,
    /// Not applied, or not known to be: find the offset again and fetch anew.
    Again,
    /// No longer the leader, or shutting down.
    Stop,
}
