//! [`DiskRetry`]: writes that fail for want of disk space wait for it instead of stopping the
//! node.
//!
//! RocksDB turns a full disk into a background error and refuses every write until its
//! `SstFileManager` sees free space again and resumes the database (it polls on its own).
//! A write of ours that fails meanwhile is retried, unchanged, until it succeeds: the log
//! writer's appends, apply's batch and a checkpoint's writes are the same bytes the second
//! time. A checkpoint changes its in-memory marks only once its write is done; apply has
//! already changed the in-memory state for its entry, and holds the writer lock until the
//! batch that goes with it is written, so nothing sees one without the other. Errors retrying
//! cannot fix (corruption, a bad argument) are returned at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rocksdb::ErrorKind;

/// Tracks failing writes for readiness and `/metrics`; shared by a store and its log.
#[derive(Debug, Default)]
pub struct DiskRetry {
    /// What is failing and why, while a write is being retried.
    failing: Mutex<Option<String>>,
    retries: AtomicU64,
}

/// The longest wait between two attempts.
const MAX_DELAY: Duration = Duration::from_secs(1);

/// How long a write is retried before it is given up on (the node then stops applying, as
/// for any other failed write, and says why).
const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);

fn retryable(e: &rocksdb::Error) -> bool {
    matches!(e.kind(), ErrorKind::IOError | ErrorKind::Busy | ErrorKind::TryAgain | ErrorKind::Incomplete)
}

impl DiskRetry {
    /// Runs `op` until it succeeds, fails with an error retrying cannot fix, or has failed
    /// for a day. `what` names the write in logs and in [`failing`](Self::failing).
    pub fn run<T>(
        &self,
        what: &str,
        mut op: impl FnMut() -> Result<T, rocksdb::Error>,
    ) -> Result<T, rocksdb::Error> {
        let started = Instant::now();
        let mut delay = Duration::from_millis(10);
        loop {
            match op() {
                Ok(v) => {
                    if self.failing.lock().take().is_some() {
                        tracing::info!(what, waited = ?started.elapsed(), "disk writes work again");
                    }
                    return Ok(v);
                }
                Err(e) if retryable(&e) && started.elapsed() < GIVE_UP_AFTER => {
                    let reason = format!("{what}: {e}");
                    let first = self.failing.lock().replace(reason.clone()).is_none();
                    if first {
                        tracing::error!(
                            error = %reason,
                            "a write to the data directory failed; retrying until it succeeds (free disk space?)"
                        );
                    }
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(MAX_DELAY);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// What is failing, while a write waits for the disk.
    pub fn failing(&self) -> Option<String> {
        self.failing.lock().clone()
    }

    /// Failed attempts retried since start.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_retried_until_they_pass_and_others_are_returned() {
        let retry = DiskRetry::default();
        let db_dir = tempfile::tempdir().unwrap();
        // A real I/O error from RocksDB: a database whose CURRENT is a directory.
        let odd = db_dir.path().join("odd");
        drop(rocksdb::DB::open_default(&odd).unwrap());
        std::fs::remove_file(odd.join("CURRENT")).unwrap();
        std::fs::create_dir(odd.join("CURRENT")).unwrap();
        let Err(io_error) = rocksdb::DB::open_default(&odd) else { panic!("CURRENT cannot be read") };
        assert_eq!(io_error.kind(), ErrorKind::IOError, "{io_error}");

        let mut attempts = 0;
        let out = retry.run("test write", || {
            attempts += 1;
            if attempts < 3 {
                assert!(attempts == 1 || retry.failing().is_some(), "failing while retried");
                Err(io_error.clone())
            } else {
                Ok(attempts)
            }
        });
        assert_eq!(out.unwrap(), 3);
        assert_eq!(retry.retries(), 2);
        assert!(retry.failing().is_none(), "cleared once the write passed");

        // Corruption is not retried: a database whose CURRENT file is garbage.
        let broken = db_dir.path().join("broken");
        drop(rocksdb::DB::open_default(&broken).unwrap());
        std::fs::write(broken.join("CURRENT"), b"garbage").unwrap();
        let Err(corrupt) = rocksdb::DB::open_default(&broken) else { panic!("a corrupt database opened") };
        assert_eq!(corrupt.kind(), ErrorKind::Corruption, "{corrupt}");
        let mut corrupt_attempts = 0;
        let out: Result<(), _> = retry.run("test write", || {
            corrupt_attempts += 1;
            Err(corrupt.clone())
        });
        assert!(out.is_err());
        assert_eq!(corrupt_attempts, 1);
    }
}
