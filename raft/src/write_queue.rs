//! [`WriteQueue`]: a bound, in bytes, on the writes waiting to be logged on a node.
//!
//! Without it, a burst of clients (or followers forwarding theirs) could queue thousands of
//! writes of up to the request size each in the proposer's channel. A write takes a share of
//! the budget equal to its size (a write larger than the whole budget takes all of it, and so
//! goes alone) until it is answered; a write that cannot get its share within the wait fails as
//! overloaded, a retryable 503, instead of growing memory.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::Error;

#[derive(Debug)]
pub(crate) struct WriteQueue {
    /// One permit per byte.
    budget: Arc<Semaphore>,
    max: usize,
}

impl WriteQueue {
    /// A queue of at most `max_bytes` (at least 1, at most `u32::MAX`: a semaphore acquires
    /// at most that many permits at once).
    pub(crate) fn new(max_bytes: usize) -> Self {
        let max = max_bytes.clamp(1, u32::MAX as usize);
        Self { budget: Arc::new(Semaphore::new(max)), max }
    }

    /// Waits up to `wait` for room for a write of `bytes`; the room is freed when the permit
    /// is dropped.
    pub(crate) async fn admit(&self, bytes: usize, wait: Duration) -> Result<OwnedSemaphorePermit, Error> {
        let want = bytes.clamp(1, self.max) as u32;
        match tokio::time::timeout(wait, self.budget.clone().acquire_many_owned(want)).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(Error::ShuttingDown),
            Err(_) => Err(Error::Overloaded { queued_bytes: self.queued_bytes() }),
        }
    }

    /// Bytes of the writes admitted and not yet answered.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.max.saturating_sub(self.budget.available_permits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_refuses_after_the_wait_and_takes_writes_again_once_drained() {
        let q = WriteQueue::new(1000);
        let first = q.admit(600, Duration::ZERO).await.unwrap();
        let second = q.admit(400, Duration::ZERO).await.unwrap();
        assert_eq!(q.queued_bytes(), 1000);
        let err = q.admit(1, Duration::from_millis(20)).await.unwrap_err();
        assert!(matches!(err, Error::Overloaded { queued_bytes: 1000 }), "{err}");
        assert_eq!(err.code(), collabstream_common::ErrorCode::Unavailable, "retryable");
        drop(first);
        // A write larger than the whole budget waits for all of it and then goes alone.
        let big = tokio::spawn({
            let budget = q.budget.clone();
            async move { budget.acquire_many_owned(1000).await.unwrap() }
        });
        drop(second);
        let big = big.await.unwrap();
        assert!(q.admit(5_000, Duration::from_millis(20)).await.is_err());
        drop(big);
        let alone = q.admit(5_000, Duration::ZERO).await.unwrap();
        assert_eq!(q.queued_bytes(), 1000);
        drop(alone);
        assert_eq!(q.queued_bytes(), 0);
    }
}
