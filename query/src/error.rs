//! The query error type, answered in the Prometheus error envelope.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use collabstream_common::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid parameter {name:?}: {reason}")]
    BadParam { name: &'static str, reason: String },
    #[error(transparent)]
    Store(#[from] collabstream_store::Error),
}

impl Error {
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::BadParam { .. } => ErrorCode::InvalidArgument,
            Error::Store(e) => e.code(),
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
