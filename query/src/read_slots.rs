//! [`ReadSlots`]: the pool of read slots (`query.max_concurrency`) that queries and exports
//! share, and the time (`query.timeout`) a read has for waiting and answering.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_stream::StreamExt;

use crate::config::QueryConfig;
use crate::error::Error;

#[derive(Clone)]
pub(crate) struct ReadSlots {
    pool: Arc<Semaphore>,
    timeout: Duration,
}

/// A slot taken for a read, and when its time is up.
pub(crate) struct ReadSlot {
    _permit: OwnedSemaphorePermit,
    deadline: Instant,
    timeout: Duration,
}

impl ReadSlots {
    pub(crate) fn new(config: &QueryConfig) -> Self {
        Self { pool: Arc::new(Semaphore::new(config.max_concurrency.max(1))), timeout: config.timeout }
    }

    /// `query.timeout`: the most a read may take.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Waits for a slot, at most `timeout` (at most `query.timeout`); the read has what is
    /// left of it to answer. `what` names the queue in the timeout error.
    pub(crate) async fn take(&self, what: &'static str, timeout: Duration) -> Result<ReadSlot, Error> {
        let timeout = timeout.min(self.timeout);
        let started = Instant::now();
        let permit = tokio::time::timeout(timeout, self.pool.clone().acquire_owned())
            .await
            .map_err(|_| Error::QueueTimeout(what))?
            .map_err(|_| Error::Task("the read limiter is closed".into()))?;
        Ok(ReadSlot { _permit: permit, deadline: started + timeout, timeout })
    }
}

impl ReadSlot {
    /// What is left of the read's time.
    pub(crate) fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Sends the pieces `pieces` makes on a blocking thread into a streamed body, holding the
    /// slot until the last is sent. A client that does not read the answer before the deadline
    /// gets an error in the stream (the connection is cut), not a silently shorter answer.
    pub(crate) fn stream(
        self,
        pieces: impl FnOnce(&mut dyn FnMut(String) -> bool) + Send + 'static,
    ) -> axum::body::Body {
        let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        // Why the answer was cut, for the stream to end with an error rather than end early.
        let failure: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
        let failed = failure.clone();
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let slot = self;
            let mut send = |piece: String| -> bool {
                let left = slot.left();
                match runtime.block_on(tx.send_timeout(Ok(Bytes::from(piece)), left)) {
                    Ok(()) => true,
                    Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                        let why = format!(
                            "the export took longer than query.timeout ({:?}); narrow it or raise the timeout",
                            slot.timeout
                        );
                        *failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(why);
                        false
                    }
                    Err(mpsc::error::SendTimeoutError::Closed(_)) => false, // The client went away.
                }
            };
            pieces(&mut send);
        });
        let tail = tokio_stream::iter([()]).filter_map(move |()| {
            let why = failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
            why.map(|w| Err(std::io::Error::other(w)))
        });
        axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx).chain(tail))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(timeout_ms: u64) -> ReadSlots {
        ReadSlots::new(&QueryConfig {
            max_concurrency: 1,
            timeout: Duration::from_millis(timeout_ms),
            ..Default::default()
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_export_waits_for_a_slot_then_times_out() {
        let slots = slots(300);
        let held = slots.take("the export queue", Duration::MAX).await.expect("a free slot");
        let started = Instant::now();
        let second = slots.take("the export queue", Duration::MAX).await;
        assert!(matches!(second, Err(Error::QueueTimeout(_))), "no slot within the timeout");
        assert!(started.elapsed() >= Duration::from_millis(300));
        drop(held);
        assert!(slots.take("the export queue", Duration::MAX).await.is_ok(), "free again");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_does_not_read_loses_its_slot_and_gets_an_error_not_a_short_answer() {
        let slots = slots(400);
        let slot = slots.take("the export queue", Duration::MAX).await.expect("a free slot");
        let body = slot.stream(|send| {
            for i in 0..1000 {
                if !send(format!("piece {i}\n")) {
                    return;
                }
            }
        });
        // Nobody reads for longer than the timeout (400 ms from the first take): the slot comes
        // back, to a take that waits from 100 ms to 500 ms.
        let started = Instant::now();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let again = slots.take("the export queue", Duration::MAX).await;
        assert!(again.is_ok(), "the slot was released");
        assert!(started.elapsed() < Duration::from_millis(500));
        // ...and the answer, read now, ends with an error after what was sent in time.
        let mut stream = body.into_data_stream();
        let (mut pieces, mut error) = (0, None);
        while let Some(item) = stream.next().await {
            match item {
                Ok(_) => pieces += 1,
                Err(e) => error = Some(e.to_string()),
            }
        }
        assert!(pieces < 1000, "not everything was sent: {pieces}");
        assert!(error.is_some_and(|e| e.contains("query.timeout")), "the stream ends with the reason");
    }
}
