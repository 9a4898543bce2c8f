//! [`CoreRuntime`]: a thread of its own for openraft's tasks.
//!
//! openraft runs its core, its state-machine worker and its replication streams as tasks on
//! the runtime that creates the `Raft`. On the server's runtime they queued behind request
//! handlers, which do CPU work between awaits (decompressing and re-encoding remote-write
//! bodies): each of the core's steps for an entry (append, see it flushed, commit, hand it to
//! apply, answer) waited for a worker, and an entry spent about a third of its time in those
//! waits. Here they run on one thread that does nothing else, so a step runs as soon as the
//! operating system schedules that thread.

use std::future::Future;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// The runtime's thread runs until this is dropped.
#[derive(Debug)]
pub(crate) struct CoreRuntime {
    handle: Handle,
    stop: CancellationToken,
}

impl CoreRuntime {
    pub(crate) fn start() -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let handle = rt.handle().clone();
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        // The runtime is dropped on its own thread: dropping it inside another runtime's task
        // would panic.
        std::thread::Builder::new()
            .name("raft-core".into())
            .spawn(move || rt.block_on(stopped.cancelled()))?;
        Ok(Self { handle, stop })
    }

    /// Runs `f` on the core's thread, so that every task it spawns runs there too.
    pub(crate) async fn run<F>(&self, f: F) -> Result<F::Output, tokio::task::JoinError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(f).await
    }
}

impl Drop for CoreRuntime {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
