//! The store's error type.

use std::path::{Path, PathBuf};

use oxeye_model::storage::{ErrorKind, StorageError};
use oxeye_wal::WalError;

/// Why opening, maintaining or reading the store failed.
#[derive(Debug, thiserror::Error)]
pub enum TsdbError {
    /// An option is out of range; names the field.
    #[error("invalid tsdb option {field}: {reason}")]
    InvalidOption {
        /// The option's field name in `TsdbOptions`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// An I/O call failed; names the file and the operation.
    #[error("tsdb i/o error during {operation} on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        operation: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The write-ahead log failed (including corruption in an older segment at startup).
    #[error(transparent)]
    Wal(#[from] WalError),
    /// A file is damaged or not in a format this version reads; names the file and what is wrong.
    #[error("corrupt tsdb file {path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the byte offset when known.
        reason: String,
    },
    /// Another process holds the data directory's lock file.
    #[error("tsdb data directory {path} is locked by another process")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A backfilled block was refused: its range is empty, overlaps a block, or reaches the head.
    #[error("backfill refused: {reason}")]
    Backfill {
        /// What overlaps, with the times in milliseconds.
        reason: String,
    },
    /// The store was closed.
    #[error("tsdb is closed")]
    Closed,
}

impl TsdbError {
    /// The error's category: options are bad data, a refused backfill invalid, a locked directory or a closed store is unavailable,
    /// the rest internal.
    pub fn kind(&self) -> ErrorKind {
        match self {
            TsdbError::InvalidOption { .. } => ErrorKind::BadData,
            TsdbError::Backfill { .. } => ErrorKind::Invalid,
            TsdbError::Locked { .. } | TsdbError::Closed => ErrorKind::Unavailable,
            TsdbError::Wal(error) => error.kind(),
            TsdbError::Io { .. } | TsdbError::Corrupt { .. } => ErrorKind::Internal,
        }
    }

    pub(crate) fn io(path: impl AsRef<Path>, operation: &'static str, source: std::io::Error) -> Self {
        TsdbError::Io { path: path.as_ref().to_path_buf(), operation, source }
    }

    pub(crate) fn corrupt(path: impl AsRef<Path>, reason: impl Into<String>) -> Self {
        TsdbError::Corrupt { path: path.as_ref().to_path_buf(), reason: reason.into() }
    }
}

impl From<TsdbError> for StorageError {
    fn from(error: TsdbError) -> Self {
        match error {
            TsdbError::Closed | TsdbError::Locked { .. } => StorageError::Unavailable(error.to_string()),
            other => StorageError::Io(other.to_string()),
        }
    }
}
