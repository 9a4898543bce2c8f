//! One classification of failures for every crate, so that the mapping to gRPC codes and HTTP
//! statuses is decided in exactly one place.

/// What kind of failure an error is, independent of the crate that raised it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The caller sent something wrong; retrying the same request fails again.
    InvalidArgument,
    /// The request is larger than a configured limit.
    PayloadTooLarge,
    /// The request format or encoding is not one we speak.
    UnsupportedMediaType,
    /// A named thing does not exist.
    NotFound,
    /// A limit on work (samples, series, concurrency) was reached.
    ResourceExhausted,
    /// A well-formed query failed while running (say, many-to-many matching); Prometheus's
    /// `execution` error. Retrying fails again until the data or the query changes.
    Execution,
    /// The request took longer than allowed.
    Timeout,
    /// The node cannot serve right now (starting, shutting down, no leader); retry later.
    Unavailable,
    /// A fault on our side (disk, corruption, bug).
    Internal,
}

impl ErrorCode {
    /// Whether sending the same request again may succeed.
    pub fn retryable(self) -> bool {
        matches!(self, Self::Unavailable | Self::Timeout | Self::Internal)
    }

    /// The HTTP status for this code.
    pub fn http_status(self) -> u16 {
        match self {
            Self::InvalidArgument => 400,
            Self::NotFound => 404,
            Self::PayloadTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::ResourceExhausted | Self::Execution => 422,
            Self::Timeout => 503,
            Self::Unavailable => 503,
            Self::Internal => 500,
        }
    }

    /// The Prometheus API `errorType` for this code.
    pub fn prometheus_error_type(self) -> &'static str {
        match self {
            Self::InvalidArgument | Self::PayloadTooLarge | Self::UnsupportedMediaType => "bad_data",
            Self::NotFound => "not_found",
            Self::ResourceExhausted | Self::Execution => "execution",
            Self::Timeout => "timeout",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_server_side_faults_are_retryable() {
        assert!(!ErrorCode::InvalidArgument.retryable());
        assert!(!ErrorCode::PayloadTooLarge.retryable());
        assert!(ErrorCode::Unavailable.retryable());
        assert_eq!(ErrorCode::PayloadTooLarge.http_status(), 413);
        assert!(ErrorCode::Internal.http_status() >= 500);
    }
}
