//! The query error type, answered in the Prometheus error envelope.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use collabstream_common::ErrorCode;

use crate::promql::EvalError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid parameter {name:?}: {reason}")]
    BadParam { name: &'static str, reason: String },
    /// A request Prometheus refuses with exactly this message (`bad_data`).
    #[error("{0}")]
    BadData(String),
    #[error(transparent)]
    Store(#[from] collabstream_store::Error),
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error("query timed out in {0}; retry later or raise query.max_concurrency")]
    QueueTimeout(&'static str),
    #[error("query task failed: {0}")]
    Task(String),
    #[error("cannot read consistently right now: {0}; retry, or read with consistency=local")]
    Unavailable(String),
}

impl Error {
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::BadParam { .. } | Error::BadData(_) => ErrorCode::InvalidArgument,
            Error::Store(e) => e.code(),
            Error::Eval(e) => e.code(),
            Error::QueueTimeout(_) => ErrorCode::Timeout,
            Error::Task(_) => ErrorCode::Internal,
            Error::Unavailable(_) => ErrorCode::Unavailable,
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let code = self.code();
        let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut message = self.to_string();
        if let Error::Store(e) = &self
            && let Some(source) = std::error::Error::source(e)
        {
            message = format!("{message}: {source}");
        }
        let body = serde_json::json!({ "status": "error", "errorType": code.prometheus_error_type(), "error": message });
        (status, Json(body)).into_response()
    }
}
