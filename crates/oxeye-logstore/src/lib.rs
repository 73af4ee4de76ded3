//! oxeye's log store: streams keyed by their label set, compressed chunks per stream and time window with
//! structured metadata beside each entry, a WAL with group commit, retention, and per-chunk bloom filters
//! so a needle search skips most chunks.
//!
//! In reading order:
//! - [`LogStoreOptions`]: directory, retention (default 30 days), maximum line length and what to do
//!   with longer lines ([`LineTooLongPolicy`]), chunk size and age.
//! - [`LogStore`]: [`LogStore::open`] loads chunk files and replays the WAL; it implements
//!   `oxeye_model::logs::{LogWriter, LogReader}`. A push is validated (retention, the out-of-order window,
//!   line length, duplicates), written to the WAL (group commit: concurrent pushes share one fsync), then
//!   inserted into the stream's **head**. A head becomes a [`chunk::SealedChunk`] (zstd data plus a
//!   [`bloom`] filter) once it reaches the target size; [`LogStore::flush`] cuts old or idle heads, writes
//!   cut chunks into one immutable [`chunk_file`], checkpoints the remaining heads and deletes the WAL
//!   segments they cover, and applies retention.
//! - Reads ([`LogStore::select_streams`]) take the matching streams' chunks overlapping the window; for a
//!   selection with `line_contains` needles, a stored chunk's bloom filter is read first and the chunk is
//!   skipped when it cannot hold a needle.
//!
//! Byte layouts: `docs/format.md`.
//!
//! ```
//! use oxeye_logstore::{LogStore, LogStoreOptions};
//! use oxeye_model::logs::{LogEntry, LogReader, LogSelection, LogStream, LogWriter};
//! use oxeye_model::{Labels, Matcher};
//! let dir = tempfile::tempdir().unwrap();
//! let mut options = LogStoreOptions::new(dir.path());
//! options.background_maintenance = false;
//! let store = LogStore::open(options).unwrap();
//! let now_ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
//! let labels = Labels::from_pairs([("service_name", "boxoffice")]);
//! let entry = LogEntry::new(now_ns, r#"{"event": "request_finished"}"#);
//! store.push(vec![LogStream { labels: labels.clone(), entries: vec![entry] }]).unwrap();
//! let selection = LogSelection {
//!     start_ns: now_ns - 1,
//!     end_ns: now_ns + 1,
//!     matchers: vec![Matcher::equal("service_name", "boxoffice")],
//!     line_contains: vec![],
//! };
//! assert_eq!(store.select(&selection).unwrap()[0].entries.len(), 1);
//! store.close().unwrap();
//! ```

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod bloom;
pub mod chunk;
pub mod chunk_file;
mod encoding;
mod error;
mod field_columns;
mod options;
pub mod record;
mod store;
#[cfg(test)]
mod tests;

pub use error::LogStoreError;
pub use options::{
    DEFAULT_CHUNK_IDLE_MS, DEFAULT_CHUNK_TARGET_BYTES, DEFAULT_FLUSH_INTERVAL, DEFAULT_MAX_CHUNK_AGE_MS,
    DEFAULT_MAX_LINE_BYTES, DEFAULT_RETENTION_MS, DEFAULT_UNORDERED_WINDOW_MS, LineTooLongPolicy, LogStoreOptions,
};
pub use store::{FlushReport, LogStore, LogStoreStats};
