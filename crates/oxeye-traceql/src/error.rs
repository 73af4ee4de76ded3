//! The one error type of the crate.

use oxeye_model::storage::{ErrorKind, StorageError};

/// Why a TraceQL query could not be parsed or run.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum TraceQlError {
    /// The query text does not parse. `line` and `column` are 1-based and point at the offending token, worded
    /// as Tempo words its parse errors (`parse error at line 1, col 12: syntax error: unexpected IDENTIFIER`).
    #[error("parse error at line {line}, col {column}: {message}")]
    Parse {
        /// 1-based line of the offending token.
        line: usize,
        /// 1-based column (in characters) of the offending token.
        column: usize,
        /// What is wrong, e.g. `syntax error: unexpected IDENTIFIER`.
        message: String,
    },
    /// The query parses but cannot be run where it was given, e.g. a metrics query sent to search, or a
    /// search query sent to the metrics API.
    #[error("invalid TraceQL query: {0}")]
    Unsupported(String),
    /// The trace store failed while the query was running.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl TraceQlError {
    /// The error's category: [`ErrorKind::BadData`] for parse and unsupported queries, the store's kind for
    /// storage failures.
    pub fn kind(&self) -> ErrorKind {
        match self {
            TraceQlError::Parse { .. } | TraceQlError::Unsupported(_) => ErrorKind::BadData,
            TraceQlError::Storage(error) => error.kind(),
        }
    }
}
