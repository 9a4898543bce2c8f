//! The SDK's error type.

use collabstream_proto::v1;
use prost::Message;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Some items were refused (the others were written); `response` lists each with its
    /// reason. Sending the same items again fails again.
    #[error("{message}")]
    Rejected { message: String, response: v1::WriteResponse },
    /// The request failed and retrying did not help within the configured attempts.
    #[error("write failed after {attempts} attempt(s): {last}")]
    Exhausted { attempts: u32, last: tonic::Status },
    /// A failure retrying cannot fix (bad configuration, request too large, …).
    #[error("write refused: {0}")]
    Refused(tonic::Status),
    /// The batch writer stopped.
    #[error("the batch writer is closed")]
    Closed,
    /// A background batch failed for good; see the message.
    #[error("a batch failed: {0}")]
    Background(String),
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
}

impl Error {
    pub(crate) fn from_status(status: tonic::Status) -> Self {
        if status.code() == tonic::Code::InvalidArgument
            && let Ok(response) = v1::WriteResponse::decode(status.details())
        {
            return Error::Rejected { message: status.message().to_string(), response };
        }
        Error::Refused(status)
    }
}

/// Whether the same request may succeed if sent again (possibly to another node).
pub(crate) fn retryable(code: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(code, Unavailable | DeadlineExceeded | Aborted | Internal | Unknown | Cancelled)
}
