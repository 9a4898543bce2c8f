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
    #[error("log entry {index} is not after the last applied index {applied}")]
    OutOfOrderApply { index: u64, applied: u64 },
}

impl Error {
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Regex { .. } => ErrorCode::InvalidArgument,
            _ => ErrorCode::Internal,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
