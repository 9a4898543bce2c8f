//! The replication layer's error type.

use collabstream_common::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("store")]
    Store(#[from] collabstream_store::Error),
    #[error("the node is shutting down; retry against another node or after restart")]
    ShuttingDown,
    #[error("the writer stopped after a storage fault; see the node's log")]
    WriterFailed,
    #[error("undecodable log entry {index}")]
    Decode { index: u64, source: prost::DecodeError },
}

impl Error {
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Store(e) => e.code(),
            Error::ShuttingDown => ErrorCode::Unavailable,
            Error::WriterFailed | Error::Decode { .. } => ErrorCode::Internal,
        }
    }
}
