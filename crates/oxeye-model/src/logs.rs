//! The log storage interface: log entries grouped into streams, and what writers (Loki push, OTLP logs,
//! file tailing) and readers (LogQL, the Loki HTTP API) need from a log store.
//!
//! Shaped after Loki's model: a **stream** is identified by its label set ([`Labels`]); each **entry** has
//! a timestamp in **nanoseconds** since the Unix epoch, a line, and optional **structured metadata**
//! (name/value pairs stored beside the entry, not indexed). Windows are `[start_ns, end_ns)`: start
//! inclusive, end exclusive, as Loki's `query_range`.

use crate::storage::StorageError;
use crate::{Label, Labels, Matcher};

/// One log entry of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// When the entry was logged, in nanoseconds since the Unix epoch.
    pub timestamp_ns: i64,
    /// The log line, e.g. a structlog JSON object.
    pub line: String,
    /// Structured metadata: name/value pairs kept per entry (e.g. `trace_id`), in the order received.
    pub structured_metadata: Vec<Label>,
}

impl LogEntry {
    /// An entry without structured metadata.
    pub fn new(timestamp_ns: i64, line: impl Into<String>) -> Self {
        LogEntry { timestamp_ns, line: line.into(), structured_metadata: Vec::new() }
    }

    /// The value of structured metadata `name`, if present.
    pub fn metadata(&self, name: &str) -> Option<&str> {
        self.structured_metadata.iter().find(|label| label.name == name).map(|label| label.value.as_str())
    }
}

/// Entries of one stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogStream {
    /// The stream's label set (its identity).
    pub labels: Labels,
    /// The entries. On push in any order; from [`LogReader::select`] in ascending timestamp order.
    pub entries: Vec<LogEntry>,
}

/// What a [`LogWriter::push`] stored and what it refused, entry by entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogPushSummary {
    /// Entries stored.
    pub accepted: u64,
    /// Entries dropped because the stream already holds the same timestamp and line (not an error).
    pub duplicates: u64,
    /// Entries refused because they are older than retention or than the stream's out-of-order window.
    pub rejected_too_old: u64,
    /// Entries refused because their line is longer than the configured maximum.
    pub rejected_too_long: u64,
    /// Entries stored with their line truncated to the configured maximum.
    pub truncated: u64,
    /// Entries refused because their stream's labels are invalid (empty set, bad name).
    pub rejected_invalid: u64,
    /// The first refusal, worded for the client (e.g. `entry for stream {job="x"} has timestamp too old`).
    pub first_error: Option<String>,
}

impl LogPushSummary {
    /// Entries refused for any reason.
    pub fn rejected(&self) -> u64 {
        self.rejected_too_old + self.rejected_too_long + self.rejected_invalid
    }
}

/// A read of entries: the streams matching `matchers`, entries in `[start_ns, end_ns)`.
#[derive(Debug, Clone, Default)]
pub struct LogSelection {
    /// Window start, inclusive, in nanoseconds.
    pub start_ns: i64,
    /// Window end, exclusive, in nanoseconds.
    pub end_ns: i64,
    /// Stream matchers, all of which must match (at least one that does not match the empty string).
    pub matchers: Vec<Matcher>,
    /// Case-sensitive substrings every wanted line contains. A store may skip chunks that cannot hold
    /// them and drop entries without them; callers still apply their own filters.
    pub line_contains: Vec<String>,
}

/// Sizes of the data a selection would read, as Loki's `/loki/api/v1/index/stats` reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogIndexStats {
    /// Streams with entries in the window.
    pub streams: u64,
    /// Chunks (stored and in memory) overlapping the window.
    pub chunks: u64,
    /// Entries in those chunks.
    pub entries: u64,
    /// Bytes of log lines in those chunks (uncompressed).
    pub bytes: u64,
}

/// Writes log entries; implemented by `oxeye-logstore`.
pub trait LogWriter: Send + Sync {
    /// Stores the entries of `streams`: durable (in the WAL, fsynced) before it returns. Entries that
    /// cannot be stored are counted in the summary and the others are stored, as Loki does.
    ///
    /// # Errors
    /// [`StorageError::Io`] when the WAL cannot be written (nothing is then stored);
    /// [`StorageError::Unavailable`] after close.
    fn push(&self, streams: Vec<LogStream>) -> Result<LogPushSummary, StorageError>;
}

/// Reads log entries; implemented by `oxeye-logstore`. All windows are `[start_ns, end_ns)` in
/// nanoseconds.
pub trait LogReader: Send + Sync {
    /// The matching streams with their entries in the window, oldest first, streams ordered by labels.
    /// Streams without entries in the window are omitted.
    ///
    /// # Errors
    /// [`StorageError::Io`] when a chunk cannot be read or is corrupt.
    fn select(&self, selection: &LogSelection) -> Result<Vec<LogStream>, StorageError>;

    /// The label sets of streams matching all `matchers` (all streams when empty) with data in the
    /// window, ordered by labels.
    ///
    /// # Errors
    /// [`StorageError::Io`].
    fn series(&self, start_ns: i64, end_ns: i64, matchers: &[Matcher]) -> Result<Vec<Labels>, StorageError>;

    /// Sorted, distinct label names of the matching streams with data in the window.
    ///
    /// # Errors
    /// [`StorageError::Io`].
    fn label_names(&self, start_ns: i64, end_ns: i64, matchers: &[Matcher]) -> Result<Vec<String>, StorageError>;

    /// Sorted, distinct values of label `name` over the matching streams with data in the window.
    ///
    /// # Errors
    /// [`StorageError::Io`].
    fn label_values(
        &self,
        start_ns: i64,
        end_ns: i64,
        name: &str,
        matchers: &[Matcher],
    ) -> Result<Vec<String>, StorageError>;

    /// Streams, chunks, entries and bytes overlapping the window for the matching streams.
    ///
    /// # Errors
    /// [`StorageError::Io`].
    fn index_stats(&self, start_ns: i64, end_ns: i64, matchers: &[Matcher]) -> Result<LogIndexStats, StorageError>;
}

/// A log store: both ends.
pub trait LogStorage: LogWriter + LogReader {}

impl<T: LogWriter + LogReader> LogStorage for T {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_metadata_lookup_and_rejected_total() {
        let mut entry = LogEntry::new(1, "line");
        entry.structured_metadata.push(Label { name: "trace_id".into(), value: "abc".into() });
        assert_eq!(entry.metadata("trace_id"), Some("abc"));
        assert_eq!(entry.metadata("span_id"), None);
        let summary = LogPushSummary { rejected_too_old: 2, rejected_too_long: 1, ..Default::default() };
        assert_eq!(summary.rejected(), 3);
    }
}
