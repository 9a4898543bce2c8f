//! Why a PromQL query failed, classified the way Prometheus's API reports it.

use collabstream_common::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The query text or a parameter is wrong (`bad_data`, 400).
    #[error("{0}")]
    BadData(String),
    /// A well-formed query failed on the data (`execution`, 422).
    #[error("{0}")]
    Execution(String),
    /// Over `max_samples`: Prometheus's message, so dashboards show the familiar text.
    #[error(
        "query processing would load too many samples into memory in {0}; narrow the time range, \
         raise the step, or raise query.max_samples"
    )]
    TooManySamples(&'static str),
    #[error("query timed out in {0}; narrow the query or raise query.timeout")]
    Timeout(&'static str),
    #[error("reading series failed: {0}")]
    Store(#[from] collabstream_store::Error),
}

impl EvalError {
    pub fn code(&self) -> ErrorCode {
        match self {
            EvalError::BadData(_) => ErrorCode::InvalidArgument,
            EvalError::Execution(_) => ErrorCode::Execution,
            EvalError::TooManySamples(_) => ErrorCode::ResourceExhausted,
            EvalError::Timeout(_) => ErrorCode::Timeout,
            EvalError::Store(e) => e.code(),
        }
    }
}

pub type Result<T> = std::result::Result<T, EvalError>;

pub(crate) fn exec(msg: impl Into<String>) -> EvalError {
    EvalError::Execution(msg.into())
}

/// Two samples with the same labels at one time: Prometheus's error, since merging them would
/// answer with one series holding both samples.
pub(crate) fn duplicate_labelset() -> EvalError {
    exec("vector cannot contain metrics with the same labelset")
}
