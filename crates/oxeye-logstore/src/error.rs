//! The crate's one error type.

use std::path::PathBuf;

use oxeye_model::storage::{ErrorKind, StorageError};

/// Why a log store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    /// The write-ahead log failed.
    #[error(transparent)]
    Wal(#[from] oxeye_wal::WalError),
    /// An I/O call on a chunk file failed; names the file and the operation.
    #[error("log store i/o error during {operation} on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done, e.g. `read chunk`.
        operation: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A chunk file or a WAL record does not decode; names the file (or `wal`) and the byte offset.
    #[error("corrupt log data in {path} at byte offset {offset}: {reason}")]
    Corrupt {
        /// The file, or `wal` for a WAL record.
        path: PathBuf,
        /// Byte offset of the damaged part within the file or record.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// An option is out of range; names the field.
    #[error("invalid log store option {field}: {reason}")]
    InvalidOption {
        /// The option's field name.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The store was closed.
    #[error("log store is closed")]
    Closed,
}

impl LogStoreError {
    /// The error's category.
    pub fn kind(&self) -> ErrorKind {
        match self {
            LogStoreError::Wal(error) => error.kind(),
            LogStoreError::Io { .. } | LogStoreError::Corrupt { .. } => ErrorKind::Internal,
            LogStoreError::InvalidOption { .. } => ErrorKind::BadData,
            LogStoreError::Closed => ErrorKind::Unavailable,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, operation: &'static str, source: std::io::Error) -> Self {
        LogStoreError::Io { path: path.into(), operation, source }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        LogStoreError::Corrupt { path: path.into(), offset, reason: reason.into() }
    }
}

impl From<LogStoreError> for StorageError {
    fn from(error: LogStoreError) -> Self {
        match error.kind() {
            ErrorKind::Unavailable => StorageError::Unavailable(error.to_string()),
            _ => StorageError::Io(error.to_string()),
        }
    }
}
