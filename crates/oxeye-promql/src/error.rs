//! The one error type of the crate.

use oxeye_model::storage::{ErrorKind, StorageError};

/// Why a query failed, with the Prometheus HTTP API error type of each case.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum QueryError {
    /// The query text is not valid PromQL; the message starts with `line:column: parse error:` like
    /// Prometheus' `ParseErr` (the position is best effort, `1:1` when the parser gives none).
    #[error("{line}:{column}: parse error: {message}")]
    Parse {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The query parsed but a query parameter (time range, step) is not acceptable.
    #[error("{0}")]
    BadParameter(String),
    /// Evaluation failed (for example many-to-many vector matching, or duplicate output series).
    #[error("{0}")]
    Execution(String),
    /// The query ran longer than [`crate::EngineOptions::timeout`].
    #[error("query timed out in {0}")]
    Timeout(&'static str),
    /// The query would hold more than [`crate::EngineOptions::max_samples`] samples at once.
    #[error("query processing would load too many samples into memory in {0}")]
    TooManySamples(&'static str),
    /// The store failed to answer a select.
    #[error("{0}")]
    Storage(StorageError),
}

impl QueryError {
    /// The error's category: parse and parameter errors are bad data, execution errors are invalid
    /// (HTTP 422), timeouts and sample limits are limits, storage errors keep their own kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            QueryError::Parse { .. } | QueryError::BadParameter(_) => ErrorKind::BadData,
            QueryError::Execution(_) => ErrorKind::Invalid,
            QueryError::Timeout(_) | QueryError::TooManySamples(_) => ErrorKind::Limit,
            QueryError::Storage(error) => error.kind(),
        }
    }

    /// The `errorType` of Prometheus' HTTP API JSON body: `bad_data`, `execution`, `timeout` or
    /// `internal`/`unavailable` for storage failures.
    pub fn prometheus_error_type(&self) -> &'static str {
        match self {
            QueryError::Parse { .. } | QueryError::BadParameter(_) => "bad_data",
            QueryError::Execution(_) | QueryError::TooManySamples(_) => "execution",
            QueryError::Timeout(_) => "timeout",
            QueryError::Storage(error) => match error.kind() {
                ErrorKind::Unavailable => "unavailable",
                ErrorKind::BadData => "bad_data",
                _ => "internal",
            },
        }
    }
}

impl From<StorageError> for QueryError {
    fn from(error: StorageError) -> Self {
        QueryError::Storage(error)
    }
}

/// Shorthand for an execution error with a formatted message.
pub(crate) fn execution(message: impl Into<String>) -> QueryError {
    QueryError::Execution(message.into())
}
