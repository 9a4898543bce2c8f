//! [`Fetcher`]: reads a partition ahead of what is proposed, in a task of its own, so that the
//! next messages are fetched and read while the ones before are applied (without it every
//! partition stopped at the end of each fetch, and held the others back through the
//! alignment while it fetched and read 4 MiB: the node used 1.0 core of 2 instead of 1.4).

use std::sync::Arc;
use std::time::Duration;

use collabstream_proto::v1;
use rskafka::client::error::{Error as KafkaError, ProtocolError};
use rskafka::client::partition::PartitionClient;
use rskafka::record::RecordAndOffset;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::decode::{Decoder, Undecoded};
use super::leader::{or_stop, pause};

/// A fetched message, read, waiting to be proposed. An event's message is not kept (only its
/// size): up to three fetches a partition wait in memory.
pub(crate) struct Fetched {
    pub(crate) offset: i64,
    /// The size of the message's value.
    pub(crate) bytes: usize,
    /// The event, or the poison message (for the dead letters) and why.
    pub(crate) event: Result<v1::Event, Box<(RecordAndOffset, String)>>,
}

impl Fetched {
    pub(crate) fn time_ms(&self) -> Option<i64> {
        self.event.as_ref().ok().and_then(collabstream_proto::events::timestamp_ms)
    }
}

/// What the fetcher hands over.
pub(crate) enum Fetch {
    /// Messages in offset order (perhaps none), and the partition's high watermark.
    Got(Vec<Fetched>, i64),
    /// The offset asked for is no longer (or not yet) in the partition.
    OutOfRange,
    /// Nothing usable: find the offset again and fetch anew.
    Again,
    Stopped,
}

/// Reads one partition ahead, from a given offset on, until dropped.
pub(crate) struct Fetcher {
    pub(crate) pc: Arc<PartitionClient>,
    pub(crate) decoder: Arc<Decoder>,
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) max_bytes: i32,
    pub(crate) max_wait: i32,
}

/// A running fetcher: its fetches, one waiting while it makes the next. Dropping it stops the
/// task.
pub(crate) struct Ahead {
    pub(crate) fetches: mpsc::Receiver<Fetch>,
    task: JoinHandle<()>,
}

impl Drop for Ahead {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Fetcher {
    /// Starts reading from `from`.
    pub(crate) fn start(self, from: i64, stop: &CancellationToken) -> Ahead {
        let (tx, fetches) = mpsc::channel(1);
        let stop = stop.clone();
        let task = tokio::spawn(async move {
            let (mut from, mut first) = (from, true);
            loop {
                let asked = std::time::Instant::now();
                let fetch = self.fetch(from, first, &stop).await;
                first = false;
                let end = match &fetch {
                    Fetch::Got(messages, _) => messages.last().map(|m| m.offset + 1),
                    _ => None,
                };
                let go_on = matches!(fetch, Fetch::Got(..));
                if tx.send(fetch).await.is_err() || !go_on {
                    return;
                }
                match end {
                    Some(end) => from = end,
                    // Nothing, and perhaps at once (a partition ending in a transaction marker,
                    // which the client drops, answers at once): no faster than max_wait.
                    None => {
                        let wait = Duration::from_millis(self.max_wait.max(0) as u64)
                            .saturating_sub(asked.elapsed());
                        if pause(&stop, wait).await {
                            return;
                        }
                    }
                }
            }
        });
        Ahead { fetches, task }
    }

    /// Fetches from `from` and reads the messages.
    async fn fetch(&self, from: i64, first: bool, stop: &CancellationToken) -> Fetch {
        let pc = &*self.pc;
        let (topic, partition) = (self.topic.as_str(), self.partition);
        let fetch = fetch_from(pc, from, first, self.max_bytes, self.max_wait);
        let Some(fetched) = or_stop(stop, fetch).await else {
            return Fetch::Stopped;
        };
        let (records, high) = match fetched {
            Ok(fetched) => fetched,
            Err(KafkaError::ServerError { protocol_error: ProtocolError::OffsetOutOfRange, .. }) => {
                return Fetch::OutOfRange;
            }
            Err(e) => {
                tracing::warn!(error = %e, topic, partition, "kafka: fetch failed");
                return if pause(stop, Duration::from_secs(1)).await { Fetch::Stopped } else { Fetch::Again };
            }
        };
        let mut out = Vec::with_capacity(records.len());
        for message in records {
            let value = message.record.value.as_deref().unwrap_or_default();
            let (offset, bytes) = (message.offset, value.len());
            let event = match self.decoder.decode(topic, value).await {
                Ok(e) => Ok(e),
                Err(Undecoded::Poison(why)) => {
                    tracing::warn!(topic, partition, offset, why, "kafka: poison message skipped");
                    Err(Box::new((message, why)))
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
            out.push(Fetched { offset, bytes, event });
        }
        Fetch::Got(out, high)
    }
}

/// The messages from `from` on, in offset order, and the high watermark.
///
/// Asked for an offset inside a batch, a broker should answer with that batch (the client
/// skips what is before the offset). tansu 0.6 answers with the batches after it, which would
/// skip the rest of that batch, and a consumer resuming where a prefix of a fetch was applied
/// asks for such offsets. So when the first message is past `from`, the fetch is repeated from
/// further back until it holds `from`'s batch, or shows that the messages before the first are
/// gone (a compacted or truncated partition, or a transaction marker), at most 30 times. Only
/// a fetcher's first fetch can start inside a batch: the next ones start where a fetch ended.
async fn fetch_from(
    pc: &PartitionClient,
    from: i64,
    first_fetch: bool,
    max_bytes: i32,
    max_wait: i32,
) -> Result<(Vec<RecordAndOffset>, i64), KafkaError> {
    let (mut records, high) = pc.fetch_records(from, 1..max_bytes, max_wait).await?;
    let first = records.iter().map(|r| r.offset).min();
    if let Some(first) = first.filter(|f| *f > from && first_fetch) {
        let (mut step, mut start, mut just_after_a_batch) = (1i64, (from - 1).max(0), false);
        for _ in 0..30 {
            // Out of range further back (the partition starts at `from`), or failing: what the
            // first fetch gave stands.
            let Ok((earlier, _)) = pc.fetch_records(start, 1..max_bytes, max_wait).await else { break };
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
