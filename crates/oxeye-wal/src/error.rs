//! The WAL's error type.

use std::path::PathBuf;

use oxeye_model::storage::ErrorKind;

/// Why a WAL operation failed.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// An I/O call failed; names the file or directory and the operation.
    #[error("wal i/o error during {operation} on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done, e.g. `fsync`.
        operation: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A segment that is not the last one is damaged: acknowledged records may be lost, so replay refuses
    /// to go on.
    #[error("corrupt wal segment {path} at byte offset {offset}: {reason}")]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Byte offset of the damaged header or record frame from the start of the file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A record is larger than the framing allows ([`crate::segment::MAX_RECORD_BYTES`]).
    #[error("wal record of {length} bytes exceeds the maximum of {maximum} bytes")]
    RecordTooLarge {
        /// The record's length in bytes.
        length: usize,
        /// The maximum in bytes.
        maximum: usize,
    },
    /// An earlier write or fsync failed; the log refuses further writes because what is on disk after
    /// the failure is unknown. Restarting replays and repairs it.
    #[error("wal is unusable after an earlier write failure: {0}")]
    Failed(String),
    /// The log was closed.
    #[error("wal is closed")]
    Closed,
}

impl WalError {
    /// The error's category: I/O failures and corruption are internal errors, a failed or closed log is
    /// unavailable, an oversized record is bad data.
    pub fn kind(&self) -> ErrorKind {
        match self {
            WalError::Io { .. } | WalError::Corrupt { .. } => ErrorKind::Internal,
            WalError::RecordTooLarge { .. } => ErrorKind::BadData,
            WalError::Failed(_) | WalError::Closed => ErrorKind::Unavailable,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, operation: &'static str, source: std::io::Error) -> Self {
        WalError::Io { path: path.into(), operation, source }
    }
}
