//! The crate's one error type.

use std::path::PathBuf;

use oxeye_model::storage::{ErrorKind, StorageError};

/// Why a trace store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TraceStoreError {
    /// The write-ahead log failed.
    #[error(transparent)]
    Wal(#[from] oxeye_wal::WalError),
    /// An I/O call on a block file failed; names the file and the operation.
    #[error("trace store i/o error during {operation} on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done, e.g. `read page`.
        operation: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A block file or a WAL record does not decode; names the file (or `wal`) and the byte offset.
    #[error("corrupt trace data in {path} at byte offset {offset}: {reason}")]
    Corrupt {
        /// The file, or `wal` for a WAL record.
        path: PathBuf,
        /// Byte offset of the damaged part within the file, page or record.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// An option is out of range; names the field.
    #[error("invalid trace store option {field}: {reason}")]
    InvalidOption {
        /// The option's field name.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The store was closed.
    #[error("trace store is closed")]
    Closed,
}

impl TraceStoreError {
    /// The error's category: WAL errors keep theirs, I/O and corruption are internal, a bad option is bad
    /// data, a closed store is unavailable.
    pub fn kind(&self) -> ErrorKind {
        match self {
            TraceStoreError::Wal(error) => error.kind(),
            TraceStoreError::Io { .. } | TraceStoreError::Corrupt { .. } => ErrorKind::Internal,
            TraceStoreError::InvalidOption { .. } => ErrorKind::BadData,
            TraceStoreError::Closed => ErrorKind::Unavailable,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, operation: &'static str, source: std::io::Error) -> Self {
        TraceStoreError::Io { path: path.into(), operation, source }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        TraceStoreError::Corrupt { path: path.into(), offset, reason: reason.into() }
    }
}

impl From<TraceStoreError> for StorageError {
    fn from(error: TraceStoreError) -> Self {
        match error.kind() {
            ErrorKind::Unavailable => StorageError::Unavailable(error.to_string()),
            _ => StorageError::Io(error.to_string()),
        }
    }
}
