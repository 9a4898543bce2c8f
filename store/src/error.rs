//! The store's one error type.

use collabstream_common::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("rocksdb")]
    Rocks(#[from] rocksdb::Error),
    #[error(transparent)]
    Chunk(#[from] crate::chunk::ChunkError),
    #[error("corrupt {what} record")]
    Corrupt { what: &'static str },
    #[error("invalid regex {pattern:?} in matcher")]
    Regex { pattern: String, source: Box<regex::Error> },
    #[error("reading would hold more than {limit} samples; narrow the selector or the time range")]
    TooManySamples { limit: usize },
    #[error("log entry {index} is not after the last applied index {applied}")]
    OutOfOrderApply { index: u64, applied: u64 },
    #[error(
        "log entry {index} cannot be applied by this version ({reason}): it was written by a newer \
         version of collabstream; upgrade this node and restart it"
    )]
    UnknownEntry { index: u64, reason: String },
    #[error(
        "the state machine stopped ({reason}); fix the cause (a full disk? a node older than its log?) and \
         restart the node: it recovers from its last checkpoint and the log"
    )]
    Stopped { reason: String },
    /// Another source behind the read seam (the cold tier's object store) could not be read;
    /// trying again later may work.
    #[error("cold data unavailable: {0}")]
    Unavailable(String),
    /// A fault injected by a test (feature `failpoints`).
    #[cfg(any(test, feature = "failpoints"))]
    #[error("injected fault: {0}")]
    Injected(&'static str),
}

impl Error {
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Regex { .. } => ErrorCode::InvalidArgument,
            Error::TooManySamples { .. } => ErrorCode::ResourceExhausted,
            Error::Unavailable(_) => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error with its causes, on one line.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
