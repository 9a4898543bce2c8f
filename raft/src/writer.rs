//! [`Writer`]: the single-node write path with group commit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use collabstream_common::Clock;
use collabstream_proto::v1;
use collabstream_store::{ApplyOutcome, LogStore, Store};
use prost::Message;
use tokio::sync::{mpsc, oneshot};

use crate::error::Error;

/// Tuning of the write path.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Proposals waiting for the writer before `propose` waits too (backpressure).
    pub queue: usize,
    /// At most this many proposals share one fsync.
    pub max_group: usize,
    /// Checkpoint the store (and drop the log behind it) this often while writes arrive.
    pub checkpoint_interval: Duration,
    /// ...or once this many log bytes were written since the last checkpoint.
    pub checkpoint_bytes: u64,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            queue: 4096,
            max_group: 512,
            checkpoint_interval: Duration::from_secs(60),
            checkpoint_bytes: 256 << 20,
        }
    }
}

type Reply = oneshot::Sender<Result<ApplyOutcome, Error>>;

enum Msg {
    Propose { cmd: v1::Command, bytes: Vec<u8>, reply: Reply },
    Tick,
    Shutdown,
}

/// Proposes writes; cheap to clone. Acknowledges a write only after its log entry is fsynced
/// and applied.
#[derive(Debug, Clone)]
pub struct Writer {
    tx: mpsc::Sender<Msg>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Msg::Propose { .. } => "Propose",
            Msg::Tick => "Tick",
            Msg::Shutdown => "Shutdown",
        })
    }
}

/// Owns the writer and ticker threads; [`WriterHandle::shutdown`] drains and checkpoints.
#[derive(Debug)]
pub struct WriterHandle {
    tx: mpsc::Sender<Msg>,
    thread: Option<JoinHandle<()>>,
    ticker: Option<JoinHandle<()>>,
    stop_ticker: Arc<AtomicBool>,
}

impl Writer {
    /// Replays the log after the store's checkpoint, then starts the writer thread.
    pub fn start(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        options: WriterOptions,
    ) -> Result<(Writer, WriterHandle), Error> {
        let log = store.log();
        let replayed = replay(&store, &log)?;
        let next = store.applied_index().max(log.last_index()?) + 1;
        tracing::info!(replayed, next_index = next, "log replayed");

        let (tx, rx) = mpsc::channel(options.queue.max(1));
        let thread = std::thread::Builder::new()
            .name("collabstream-writer".into())
            .spawn(move || run(store, log, rx, next, options))
            .map_err(|_| Error::WriterFailed)?;

        let stop_ticker = Arc::new(AtomicBool::new(false));
        let ticker = {
            let tx = tx.clone();
            let stop = stop_ticker.clone();
            std::thread::Builder::new()
                .name("collabstream-writer-tick".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(200));
                        // A full queue means the writer is busy and will checkpoint anyway.
                        if tx.try_send(Msg::Tick).is_err() && tx.is_closed() {
                            break;
                        }
                    }
                })
                .map_err(|_| Error::WriterFailed)?
        };
        let handle = WriterHandle { tx: tx.clone(), thread: Some(thread), ticker: Some(ticker), stop_ticker };
        Ok((Writer { tx, clock }, handle))
    }

    /// Proposes a validated write and waits until it is durable and applied.
    pub async fn propose(&self, write: v1::WriteRequest) -> Result<ApplyOutcome, Error> {
        let cmd = v1::Command {
            leader_time_ms: self.clock.now_ms(),
            payload: Some(v1::command::Payload::Write(write)),
        };
        // Encoding here, on the caller's task, keeps the single writer thread for I/O and apply.
        let bytes = cmd.encode_to_vec();
        let (reply, rx) = oneshot::channel();
        self.tx.send(Msg::Propose { cmd, bytes, reply }).await.map_err(|_| Error::ShuttingDown)?;
        rx.await.map_err(|_| Error::ShuttingDown)?
    }
}

impl WriterHandle {
    /// Applies what was proposed before this call, checkpoints, and stops. Proposals after it
    /// fail with [`Error::ShuttingDown`].
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            // blocking_send is not allowed inside a runtime; the queue drains quickly.
            let mut msg = Msg::Shutdown;
            loop {
                match self.tx.try_send(msg) {
                    Ok(()) => break,
                    Err(mpsc::error::TrySendError::Full(m)) => {
                        msg = m;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => break,
                }
            }
            if t.join().is_err() {
                tracing::error!("writer thread panicked");
            }
        }
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

impl Drop for WriterHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

fn replay(store: &Store, log: &LogStore) -> Result<u64, Error> {
    let mut n = 0;
    for item in log.read_from(store.checkpointed_index() + 1) {
        let (index, bytes) = item?;
        if index <= store.applied_index() {
            continue;
        }
        let cmd = v1::Command::decode(&*bytes).map_err(|source| Error::Decode { index, source })?;
        store.apply(index, &cmd)?;
        n += 1;
    }
    Ok(n)
}

fn run(store: Arc<Store>, log: LogStore, mut rx: mpsc::Receiver<Msg>, mut next: u64, options: WriterOptions) {
    let mut last_checkpoint = Instant::now();
    let mut bytes_since = 0u64;
    let mut group: Vec<(v1::Command, Vec<u8>, Reply)> = Vec::with_capacity(options.max_group);
    let mut shutting_down = false;
    while !shutting_down {
        let Some(first) = rx.blocking_recv() else { break };
        let mut msgs = vec![first];
        while msgs.len() < options.max_group {
            match rx.try_recv() {
                Ok(m) => msgs.push(m),
                Err(_) => break,
            }
        }
        for m in msgs {
            match m {
                Msg::Propose { reply, .. } if shutting_down => {
                    let _ = reply.send(Err(Error::ShuttingDown));
                }
                Msg::Propose { cmd, bytes, reply } => group.push((cmd, bytes, reply)),
                Msg::Tick => {}
                Msg::Shutdown => shutting_down = true,
            }
        }
        if !group.is_empty() {
            let (outcomes, failure) = commit_group(&store, &log, next, &group);
            next += group.len() as u64;
            bytes_since += group.iter().map(|g| g.1.len() as u64).sum::<u64>();
            let mut outcomes = outcomes.into_iter();
            for (_, _, reply) in group.drain(..) {
                // Entries applied before a failure are acknowledged; the rest are not (they
                // are in the log and will be applied when the node restarts).
                let _ = reply.send(outcomes.next().ok_or(Error::WriterFailed));
            }
            if let Some(e) = failure {
                tracing::error!(error = %e, "write path failed; the writer stops");
                return;
            }
        }
        if last_checkpoint.elapsed() >= options.checkpoint_interval || bytes_since >= options.checkpoint_bytes
        {
            if let Err(e) = checkpoint(&store, &log) {
                tracing::error!(error = %e, "checkpoint failed; will retry");
            }
            last_checkpoint = Instant::now();
            bytes_since = 0;
        }
    }
    // Refuse what arrives after the shutdown message; apply nothing more.
    rx.close();
    while let Ok(m) = rx.try_recv() {
        if let Msg::Propose { reply, .. } = m {
            let _ = reply.send(Err(Error::ShuttingDown));
        }
    }
    if let Err(e) = checkpoint(&store, &log) {
        tracing::error!(error = %e, "final checkpoint failed; the log will be replayed at start");
    }
}

/// One fsync for the whole group, then apply in log order. Returns the outcomes of the entries
/// applied and, if one failed, why.
fn commit_group(
    store: &Store,
    log: &LogStore,
    first: u64,
    group: &[(v1::Command, Vec<u8>, Reply)],
) -> (Vec<ApplyOutcome>, Option<Error>) {
    if let Err(e) = log.append(group.iter().enumerate().map(|(i, g)| (first + i as u64, g.1.as_slice()))) {
        return (Vec::new(), Some(e.into()));
    }
    let mut out = Vec::with_capacity(group.len());
    for (i, (cmd, _, _)) in group.iter().enumerate() {
        match store.apply(first + i as u64, cmd) {
            Ok(o) => out.push(o),
            Err(e) => return (out, Some(e.into())),
        }
    }
    (out, None)
}

fn checkpoint(store: &Store, log: &LogStore) -> Result<(), Error> {
    let upto = store.checkpoint()?;
    log.purge(upto)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use collabstream_common::{SystemClock, TimeRange};
    use collabstream_store::StoreConfig;

    fn write(job: &str, t: i64) -> v1::WriteRequest {
        v1::WriteRequest {
            series: vec![v1::TimeSeries {
                labels: vec![
                    v1::Label { name: "__name__".into(), value: "up".into() },
                    v1::Label { name: "job".into(), value: job.into() },
                ],
                samples: vec![v1::Sample { timestamp_ms: t, value: 1.0 }],
            }],
            ..Default::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_are_applied_and_survive_restart() {
        let dir = tempfile::tempdir().unwrap();
        let open = || Arc::new(Store::open(dir.path(), StoreConfig::default()).unwrap());
        let store = open();
        let (writer, handle) =
            Writer::start(store.clone(), Arc::new(SystemClock), WriterOptions::default()).unwrap();
        let mut tasks = Vec::new();
        for i in 0..200 {
            let w = writer.clone();
            tasks.push(tokio::spawn(async move { w.propose(write(&format!("j{}", i % 7), i)).await }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().samples_accepted, 1);
        }
        // Fewer entries than proposals would mean coalescing; equal count is fine too, but
        // every proposal got its own index.
        assert_eq!(store.applied_index(), 200);
        handle.shutdown();
        assert!(writer.propose(write("late", 1)).await.is_err());
        assert_eq!(store.checkpointed_index(), 200);
        drop(store);

        let store = open();
        let samples: usize = store.select(&[], TimeRange::ALL).unwrap().iter().map(|s| s.samples.len()).sum();
        assert_eq!(samples, 200);
        assert_eq!(store.log().last_index().unwrap(), 0, "log purged behind the checkpoint");
    }
}
