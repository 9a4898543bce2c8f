//! The ingest error type and the one mapping from error codes to HTTP and gRPC statuses.

use axum::http::StatusCode;
use collabstream_common::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("request body is {size} bytes, over the limit of {limit}; send smaller batches")]
    TooLarge { size: u64, limit: u64 },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Write(#[from] collabstream_raft::Error),
}

impl Error {
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::TooLarge { .. } => ErrorCode::PayloadTooLarge,
            Error::BadRequest(_) => ErrorCode::InvalidArgument,
            Error::Unsupported(_) => ErrorCode::UnsupportedMediaType,
            Error::Write(e) => e.code(),
        }
    }

    /// The message with its sources, for a client.
    pub fn message(&self) -> String {
        let mut msg = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            source = s.source();
        }
        msg
    }
}

pub fn http_status(code: ErrorCode) -> StatusCode {
    StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

pub fn grpc_status(code: ErrorCode, message: impl Into<String>) -> tonic::Status {
    let message = message.into();
    match code {
        ErrorCode::InvalidArgument | ErrorCode::UnsupportedMediaType | ErrorCode::Execution => {
            tonic::Status::invalid_argument(message)
        }
        ErrorCode::PayloadTooLarge | ErrorCode::ResourceExhausted => {
            tonic::Status::resource_exhausted(message)
        }
        ErrorCode::NotFound => tonic::Status::not_found(message),
        ErrorCode::Timeout => tonic::Status::deadline_exceeded(message),
        ErrorCode::Unavailable => tonic::Status::unavailable(message),
        ErrorCode::Internal => tonic::Status::internal(message),
    }
}

/// The Prometheus API error envelope.
pub fn prometheus_error_body(code: ErrorCode, message: &str) -> serde_json::Value {
    serde_json::json!({
        "status": "error",
        "errorType": code.prometheus_error_type(),
        "error": message,
    })
}
