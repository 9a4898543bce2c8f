//! The replication layer's error type.

use collabstream_common::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("store")]
    Store(#[from] collabstream_store::Error),
    #[error("the node is shutting down; retry against another node or after restart")]
    ShuttingDown,
    #[error("this node is not the leader")]
    NotLeader,
    #[error(
        "no leader is known after waiting {waited_ms} ms; the cluster may have lost its majority, retry later"
    )]
    NoLeader { waited_ms: u64 },
    #[error(
        "the write was not committed within {waited_ms} ms (no majority reachable, or this node stopped \
         leading); it may still be applied: retry with the same batch id"
    )]
    NotCommitted { waited_ms: u64 },
    #[error(
        "the leader has not brought its configuration (store settings, configured aggregation rules) in force \
         within {waited_ms} ms, and takes no write before it does; retry later, and see its log for why"
    )]
    NotConfigured { waited_ms: u64 },
    #[error(
        "{queued_bytes} bytes of writes are already waiting to be logged on this node (raft.max_queued_bytes); \
         retry later or send smaller batches"
    )]
    Overloaded { queued_bytes: usize },
    #[error("forwarding the write to the leader (node {leader}) failed: {reason}")]
    Forward { leader: u64, reason: String },
    #[error("replication failed: {0}")]
    Raft(String),
    #[error("invalid cluster configuration: {0}")]
    Config(String),
    #[error("membership change refused: {0}")]
    Membership(String),
    #[error("snapshot directory: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// The same answer for each write of a group whose proposal failed (the error is not
    /// `Clone`: a store or I/O error is carried as its message).
    pub(crate) fn for_another_caller(&self) -> Error {
        match self {
            Error::ShuttingDown => Error::ShuttingDown,
            Error::NotLeader => Error::NotLeader,
            Error::NotCommitted { waited_ms } => Error::NotCommitted { waited_ms: *waited_ms },
            Error::Raft(msg) => Error::Raft(msg.clone()),
            other => Error::Raft(other.to_string()),
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Store(e) => e.code(),
            Error::ShuttingDown
            | Error::NotLeader
            | Error::NoLeader { .. }
            | Error::Forward { .. }
            | Error::NotCommitted { .. }
            | Error::NotConfigured { .. }
            // Retryable: remote-write senders retry a 503 and drop a 4xx.
            | Error::Overloaded { .. } => ErrorCode::Unavailable,
            Error::Config(_) | Error::Membership(_) => ErrorCode::InvalidArgument,
            Error::Raft(_) | Error::Io(_) => ErrorCode::Internal,
        }
    }

    pub fn to_status(&self) -> tonic::Status {
        let msg = self.to_string();
        match self.code() {
            ErrorCode::Unavailable => tonic::Status::unavailable(msg),
            ErrorCode::InvalidArgument => tonic::Status::invalid_argument(msg),
            _ => tonic::Status::internal(msg),
        }
    }
}
