//! A segmented, checksummed write-ahead log (WAL) of opaque byte records, with group commit.
//!
//! Every oxeye store writes what it accepts here before it acknowledges a write, and replays it on start.
//! The log knows nothing about what a record means: the metrics store puts series and sample records in
//! it, the log and trace stores their own.
//!
//! In reading order:
//! - [`Wal`]: the writer. [`Wal::append_batch`] may be called from many threads at once; whichever caller
//!   finds no write in progress becomes the leader and writes and fsyncs every record queued so far in one
//!   `write` + `fdatasync`, so a thousand concurrent commits cost one fsync. Each caller returns only once
//!   its own records are on stable storage.
//! - [`replay`]: reads records back, oldest first, from a given segment on. A torn or corrupt tail of the
//!   **last** segment (a crash in the middle of a write) is cut off with a `tracing::warn!`; damage in an
//!   older segment is an error naming the file and the byte offset, because records after it were
//!   acknowledged.
//! - [`checkpoint`]: the directory convention for checkpoints (`checkpoint.NNNNNNNN`), which let a store
//!   drop old segments once their content is summarised elsewhere.
//! - [`WalStats`]: counters and fsync latency buckets for self-monitoring.
//!
//! The byte layout (segment header, record framing with CRC32) is described in [`segment`] and in
//! `crates/oxeye-tsdb/docs/format.md`.
//!
//! ```
//! # fn main() -> Result<(), oxeye_wal::WalError> {
//! let dir = tempfile::tempdir().map_err(|error| oxeye_wal::WalError::Io {
//!     path: std::path::PathBuf::new(), operation: "tempdir", source: error })?;
//! let wal = oxeye_wal::Wal::open(oxeye_wal::WalOptions::new(dir.path()))?;
//! wal.append_batch(&[b"first".as_slice(), b"second".as_slice()])?; // durable when this returns
//! wal.close()?;
//! let mut records = Vec::new();
//! oxeye_wal::replay::<oxeye_wal::WalError>(dir.path(), 0, |record| {
//!     records.push(record.to_vec());
//!     Ok(())
//! })?;
//! assert_eq!(records, [b"first".to_vec(), b"second".to_vec()]);
//! # Ok(()) }
//! ```

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod checkpoint;
mod error;
mod reader;
pub mod segment;
mod stats;
mod writer;

pub use error::WalError;
pub use reader::{ReplaySummary, TornTail, replay};
pub use stats::{FSYNC_LATENCY_BUCKETS_SECONDS, WalStats};
pub use writer::{DEFAULT_SEGMENT_SIZE_BYTES, Wal, WalOptions};
