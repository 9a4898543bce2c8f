//! [`BatchWriter`]: collects samples and events and sends them in batches, by size or after
//! a delay, in the background.

use std::time::Duration;

use collabstream_proto::v1;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::client::Client;
use crate::error::Error;

/// When a batch is sent.
#[derive(Debug, Clone, Copy)]
pub struct BatchOptions {
    /// Send once this many samples and events are waiting.
    pub max_items: usize,
    /// Send at the latest this long after the first item of a batch arrived.
    pub max_delay: Duration,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self { max_items: 5_000, max_delay: Duration::from_secs(1) }
    }
}

/// What a batch writer sent, over its lifetime.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BatchStats {
    pub batches: u64,
    pub samples_accepted: u64,
    pub events_accepted: u64,
    /// Items the cluster refused, with reasons (indexes refer to the batch they were in).
    pub rejected: Vec<v1::Rejection>,
}

enum Msg {
    Series(v1::TimeSeries),
    Event(v1::Event),
    Flush(oneshot::Sender<Result<(), String>>),
}

/// A background batcher over a [`Client`]. Must be created inside a Tokio runtime.
#[derive(Debug)]
pub struct BatchWriter {
    tx: mpsc::Sender<Msg>,
    task: JoinHandle<(BatchStats, Option<String>)>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

impl BatchWriter {
    pub fn new(client: Client, options: BatchOptions) -> Self {
        let (tx, rx) = mpsc::channel(options.max_items.max(1) * 2);
        let task = tokio::spawn(run(client, options, rx));
        Self { tx, task }
    }

    pub async fn add_series(&self, series: v1::TimeSeries) -> Result<(), Error> {
        self.tx.send(Msg::Series(series)).await.map_err(|_| Error::Closed)
    }

    pub async fn add_event(&self, event: v1::Event) -> Result<(), Error> {
        self.tx.send(Msg::Event(event)).await.map_err(|_| Error::Closed)
    }

    /// Sends what is waiting and returns once it is acknowledged.
    pub async fn flush(&self) -> Result<(), Error> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Msg::Flush(reply)).await.map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?.map_err(Error::Background)
    }

    /// Sends what is waiting, stops, and reports everything sent.
    pub async fn close(self) -> Result<BatchStats, Error> {
        drop(self.tx);
        let (stats, failure) = self.task.await.map_err(|_| Error::Closed)?;
        match failure {
            Some(e) => Err(Error::Background(e)),
            None => Ok(stats),
        }
    }
}

async fn run(
    client: Client,
    options: BatchOptions,
    mut rx: mpsc::Receiver<Msg>,
) -> (BatchStats, Option<String>) {
    let mut stats = BatchStats::default();
    let mut failure: Option<String> = None;
    let mut pending = v1::WriteRequest::default();
    let mut items = 0usize;
    let mut deadline: Option<Instant> = None;
    loop {
        let msg = match deadline {
            Some(d) => tokio::select! {
                m = rx.recv() => m,
                _ = tokio::time::sleep_until(d) => {
                    send(&client, &mut pending, &mut items, &mut stats, &mut failure).await;
                    deadline = None;
                    continue;
                }
            },
            None => rx.recv().await,
        };
        match msg {
            None => break,
            Some(Msg::Flush(reply)) => {
                send(&client, &mut pending, &mut items, &mut stats, &mut failure).await;
                deadline = None;
                let _ = reply.send(failure.clone().map_or(Ok(()), Err));
                continue;
            }
            Some(Msg::Series(s)) => {
                items += s.samples.len().max(1);
                pending.series.push(s);
            }
            Some(Msg::Event(e)) => {
                items += 1;
                pending.events.push(e);
            }
        }
        deadline.get_or_insert_with(|| Instant::now() + options.max_delay);
        if items >= options.max_items {
            send(&client, &mut pending, &mut items, &mut stats, &mut failure).await;
            deadline = None;
        }
    }
    send(&client, &mut pending, &mut items, &mut stats, &mut failure).await;
    (stats, failure)
}

async fn send(
    client: &Client,
    pending: &mut v1::WriteRequest,
    items: &mut usize,
    stats: &mut BatchStats,
    failure: &mut Option<String>,
) {
    if *items == 0 {
        return;
    }
    *items = 0;
    let request = std::mem::take(pending);
    stats.batches += 1;
    match client.write(request).await {
        Ok(resp) => {
            stats.samples_accepted += resp.samples_accepted;
            stats.events_accepted += resp.events_accepted;
        }
        Err(Error::Rejected { response, .. }) => {
            stats.samples_accepted += response.samples_accepted;
            stats.events_accepted += response.events_accepted;
            stats.rejected.extend(response.rejected);
        }
        Err(e) => {
            tracing::warn!(error = %e, "batch could not be written");
            failure.get_or_insert(e.to_string());
        }
    }
}
