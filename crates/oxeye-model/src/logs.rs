//! The log storage interface: log entries grouped into streams, and what writers (Loki push, OTLP logs,
//! file tailing) and readers (LogQL, the Loki HTTP API) need from a log store.
//!
//! Shaped after Loki's model: a **stream** is identified by its label set ([`Labels`]); each **entry** has
//! a timestamp in **nanoseconds** since the Unix epoch, a line, and optional **structured metadata**
//! (name/value pairs stored beside the entry, not indexed). Windows are `[start_ns, end_ns)`: start
//! inclusive, end exclusive, as Loki's `query_range`.

use crate::storage::StorageError;
use crate::{Label, LabelRef, Labels, Matcher};

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

/// A borrowed view of one log entry, handed to a [`LogVisitor`] so a scan allocates nothing per entry.
#[derive(Debug, Clone, Copy)]
pub struct LogEntryRef<'a> {
    /// When the entry was logged, in nanoseconds since the Unix epoch.
    pub timestamp_ns: i64,
    /// The log line.
    pub line: &'a str,
    /// Structured metadata in the order received.
    pub structured_metadata: &'a [LabelRef<'a>],
}

impl LogEntryRef<'_> {
    /// An owned copy.
    pub fn to_entry(&self) -> LogEntry {
        LogEntry {
            timestamp_ns: self.timestamp_ns,
            line: self.line.to_string(),
            structured_metadata: self
                .structured_metadata
                .iter()
                .map(|label| Label { name: label.name.to_string(), value: label.value.to_string() })
                .collect(),
        }
    }
}

/// The order in which [`LogReader::scan`] visits batches of entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScanOrder {
    /// Batches by ascending oldest timestamp.
    #[default]
    Forward,
    /// Batches by descending newest timestamp, so a reader wanting the newest `limit` entries can stop
    /// early.
    Backward,
}

/// What [`LogReader::scan`] calls back.
pub trait LogVisitor {
    /// Asked before a batch (a chunk, or a stream's in-memory head) of `stream` whose entries all lie in
    /// `[min_ns, max_ns]` (nanoseconds, inclusive); returning false skips the batch unread. The default
    /// reads every batch.
    fn wants_batch(&mut self, stream: &Labels, min_ns: i64, max_ns: i64) -> bool {
        let _ = (stream, min_ns, max_ns);
        true
    }

    /// Whether the visitor reads the entries' lines. When it does not, a reader may leave the lines unread
    /// and hand entries over through [`LogVisitor::entry_without_line`] instead (the log store then
    /// decompresses only a chunk's timestamps, line lengths and structured metadata): `count_over_time`
    /// and `bytes_over_time` of a stream selector need nothing else. Asked once per scan, before the first
    /// batch; a selection with `line_contains` needles reads lines anyway. The default reads them.
    fn reads_lines(&self) -> bool {
        true
    }

    /// One entry of `stream` inside the selection's window whose line was left unread (only when
    /// [`LogVisitor::reads_lines`] is false): `line_bytes` is the line's length in bytes. The default
    /// hands the entry to [`LogVisitor::entry`] with an empty line.
    fn entry_without_line(
        &mut self,
        stream: &Labels,
        timestamp_ns: i64,
        line_bytes: usize,
        structured_metadata: &[LabelRef<'_>],
    ) {
        let _ = line_bytes;
        self.entry(stream, LogEntryRef { timestamp_ns, line: "", structured_metadata });
    }

    /// Parsed fields the visitor can take instead of lines: `Some((semantics, names))` when every entry's
    /// line matters to it only through the labels `names` that the parser identified by `semantics`
    /// ([`LineFieldExtractor::extract`]) gives the line. A store holding those fields in columns for a
    /// chunk, written by an extractor of the same semantics, may then leave the chunk's lines unread and
    /// hand its entries over through [`LogVisitor::entry_with_fields`]; other chunks come through
    /// [`LogVisitor::entry`] as usual. Asked once per scan, before the first batch; a selection with
    /// `line_contains` needles reads lines anyway. The default: none.
    fn line_fields(&self) -> Option<(u32, &[String])> {
        None
    }

    /// One entry of `stream` inside the selection's window whose line was left unread (only when
    /// [`LogVisitor::line_fields`] named fields): `line_bytes` is the line's length in bytes, and `fields`
    /// holds, for each name [`LogVisitor::line_fields`] gave (same order), the label value the parser
    /// gives the line, or `None` where it gives no such label. The line is known to parse without error.
    /// The default hands the entry to [`LogVisitor::entry_without_line`].
    fn entry_with_fields(
        &mut self,
        stream: &Labels,
        timestamp_ns: i64,
        line_bytes: usize,
        structured_metadata: &[LabelRef<'_>],
        fields: &[Option<&str>],
    ) {
        let _ = fields;
        self.entry_without_line(stream, timestamp_ns, line_bytes, structured_metadata);
    }

    /// One entry of `stream` inside the selection's window. Within a batch, entries come oldest first;
    /// batches come in the [`ScanOrder`] asked for, so entries of a scan are not globally sorted. Every
    /// entry belongs to the batch [`LogVisitor::wants_batch`] last accepted (`stream` is that batch's).
    fn entry(&mut self, stream: &Labels, entry: LogEntryRef<'_>);
}

/// Finds, for a log store cutting a chunk, the labels a line parser (`| json` or `| logfmt` of LogQL, say)
/// gives each line, so the store can keep the frequently read ones in columns beside the lines
/// (`oxeye-logstore`'s `docs/format.md`, "Field columns") and a reader asking for them
/// ([`LogVisitor::line_fields`]) need not decompress the lines. An extractor may know several parsers and
/// choose one per chunk. Implemented by `oxeye-logql`.
pub trait LineFieldExtractor: Send + Sync + std::fmt::Debug {
    /// Whether this extractor writes columns of every one of `names` with `semantics` (when the lines
    /// allow): a store asks its chunks for columns only then, since a chunk without them is read more
    /// slowly after the attempt (its frame decompressed in two steps).
    fn writes(&self, semantics: u32, names: &[String]) -> bool;

    /// Calls `field(index, name, value)` for each label one parser gives `lines[index]` (names as the
    /// parser gives them before any rename on collision with stream labels; values unescaped; a line's
    /// names distinct), a subset of them at the extractor's choice, and returns that parser's semantics: a
    /// number naming the parser and the version of its rules, stored with the columns and compared with the
    /// reader's ([`LogVisitor::line_fields`]); never 0. An extractor changes a parser's semantics whenever
    /// the labels the parser gives any line change, so that columns written before are no longer taken for
    /// its answers. Returns `None` when no parser it knows reads every line without error (sets no
    /// `__error__`) or its labels would be ambiguous: the store then keeps no columns, and ignores the calls
    /// made. When it returns a semantics, every call it made was for that parser.
    fn extract(&self, lines: &[&str], field: &mut dyn FnMut(usize, &str, &str)) -> Option<u32>;
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

    /// Visits the entries [`LogReader::select`] would return, batch by batch, without collecting them:
    /// `visitor` is asked for each batch ([`LogVisitor::wants_batch`]) and then given its entries in the
    /// window (which contain every `line_contains` needle, when the store filters by them). Duplicates
    /// are dropped as `select` drops them. The default implementation runs `select` and hands each stream
    /// over as one batch.
    ///
    /// # Errors
    /// As [`LogReader::select`].
    fn scan(
        &self,
        selection: &LogSelection,
        order: ScanOrder,
        visitor: &mut dyn LogVisitor,
    ) -> Result<(), StorageError> {
        let mut streams = self.select(selection)?;
        if order == ScanOrder::Backward {
            streams.sort_by_key(|stream| {
                std::cmp::Reverse(stream.entries.last().map_or(i64::MIN, |entry| entry.timestamp_ns))
            });
        }
        for stream in &streams {
            let (Some(first), Some(last)) = (stream.entries.first(), stream.entries.last()) else { continue };
            if !visitor.wants_batch(&stream.labels, first.timestamp_ns, last.timestamp_ns) {
                continue;
            }
            let mut metadata: Vec<LabelRef<'_>> = Vec::new();
            for entry in &stream.entries {
                metadata.clear();
                metadata.extend(
                    entry.structured_metadata.iter().map(|label| LabelRef { name: &label.name, value: &label.value }),
                );
                visitor.entry(
                    &stream.labels,
                    LogEntryRef { timestamp_ns: entry.timestamp_ns, line: &entry.line, structured_metadata: &metadata },
                );
            }
        }
        Ok(())
    }

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

    /// Bytes of log lines per time bucket for each matching stream with data in `[start_ns, end_ns)`, read
    /// from chunk sizes without decoding chunks, as Loki's `index/volume` endpoints read its index.
    /// `bucket_ends_ns` are the buckets' inclusive ends, ascending, the last at or past `end_ns - 1`; bucket
    /// `i` covers `(bucket_ends_ns[i - 1], bucket_ends_ns[i]]` within the window. A chunk overlapping
    /// several buckets is shared between them in proportion to the time it spans in each, as Loki prorates
    /// chunk stats, so a chunk's bytes are counted once in all. Returns, per stream with bytes, its labels
    /// and one byte count per bucket. The default implementation reads the entries through
    /// [`LogReader::select`] and counts each line in its own bucket.
    ///
    /// # Errors
    /// [`StorageError::Io`].
    fn volume(
        &self,
        start_ns: i64,
        end_ns: i64,
        matchers: &[Matcher],
        bucket_ends_ns: &[i64],
    ) -> Result<Vec<(Labels, Vec<u64>)>, StorageError> {
        let selection = LogSelection { start_ns, end_ns, matchers: matchers.to_vec(), line_contains: Vec::new() };
        let mut volumes = Vec::new();
        for stream in self.select(&selection)? {
            let mut buckets = vec![0u64; bucket_ends_ns.len()];
            for entry in &stream.entries {
                let length = entry.line.len() as u64;
                share_by_time(length, entry.timestamp_ns, entry.timestamp_ns, start_ns, bucket_ends_ns, &mut buckets);
            }
            if buckets.iter().any(|bytes| *bytes > 0) {
                volumes.push((stream.labels, buckets));
            }
        }
        Ok(volumes)
    }
}

/// Shares `bytes` spread evenly over `[min_ns, max_ns]` (inclusive) among buckets with inclusive ends
/// `bucket_ends_ns` (ascending, the first bucket starting at `start_ns`; see [`LogReader::volume`]), adding
/// each bucket's share to `buckets` (one per end). Time outside the buckets takes its share away with it;
/// shares are whole bytes handed out by cumulative time, so rounding never loses or adds a byte within the
/// buckets. A span of one instant goes wholly to its bucket.
pub fn share_by_time(bytes: u64, min_ns: i64, max_ns: i64, start_ns: i64, bucket_ends_ns: &[i64], buckets: &mut [u64]) {
    // The bytes logged at or before `time_ns`.
    let cumulative = |time_ns: i64| -> u64 {
        if time_ns < min_ns {
            0
        } else if time_ns >= max_ns {
            bytes
        } else {
            let elapsed = (time_ns - min_ns) as u128;
            let span = (max_ns - min_ns) as u128;
            (u128::from(bytes) * elapsed / span) as u64
        }
    };
    let mut before = cumulative(start_ns.saturating_sub(1));
    for (end_ns, bucket) in bucket_ends_ns.iter().zip(buckets.iter_mut()) {
        let through = cumulative(*end_ns);
        *bucket += through - before;
        before = through;
        if *end_ns >= max_ns {
            return;
        }
    }
}

/// A log store: both ends.
pub trait LogStorage: LogWriter + LogReader {}

impl<T: LogWriter + LogReader> LogStorage for T {}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn shares_by_time_add_up_and_leave_out_time_outside_the_buckets() {
        let ends = [9, 19, 29];
        let mut buckets = [0u64; 3];
        // 1000 bytes over [5, 25]: 4 of its 20 ns up to the first end, 10 more to the second, 6 to the third.
        share_by_time(1000, 5, 25, 0, &ends, &mut buckets);
        assert_eq!(buckets, [200, 500, 300]);
        // The span's time before the window start (up to -1: 9 of 20 ns) is not counted.
        let mut clipped = [0u64; 3];
        share_by_time(100, -10, 10, 0, &ends, &mut clipped);
        assert_eq!(clipped, [50, 5, 0]);
        // One instant goes wholly to its bucket; one after the last bucket to none.
        let mut instants = [0u64; 3];
        share_by_time(7, 19, 19, 0, &ends, &mut instants);
        share_by_time(7, 30, 30, 0, &ends, &mut instants);
        assert_eq!(instants, [0, 7, 0]);
        // Odd sizes: no byte lost or added.
        let mut odd = [0u64; 3];
        share_by_time(1001, 0, 29, 0, &ends, &mut odd);
        assert_eq!(odd.iter().sum::<u64>(), 1001);
    }

    #[test]
    fn entry_metadata_lookup_and_rejected_total() {
        let mut entry = LogEntry::new(1, "line");
        entry.structured_metadata.push(Label { name: "trace_id".into(), value: "abc".into() });
        assert_eq!(entry.metadata("trace_id"), Some("abc"));
        assert_eq!(entry.metadata("span_id"), None);
        let summary = LogPushSummary { rejected_too_old: 2, rejected_too_long: 1, ..Default::default() };
        assert_eq!(summary.rejected(), 3);
    }

    struct VecReader(Vec<LogStream>);

    impl LogReader for VecReader {
        fn select(&self, _: &LogSelection) -> Result<Vec<LogStream>, StorageError> {
            Ok(self.0.clone())
        }
        fn series(&self, _: i64, _: i64, _: &[Matcher]) -> Result<Vec<Labels>, StorageError> {
            Ok(Vec::new())
        }
        fn label_names(&self, _: i64, _: i64, _: &[Matcher]) -> Result<Vec<String>, StorageError> {
            Ok(Vec::new())
        }
        fn label_values(&self, _: i64, _: i64, _: &str, _: &[Matcher]) -> Result<Vec<String>, StorageError> {
            Ok(Vec::new())
        }
        fn index_stats(&self, _: i64, _: i64, _: &[Matcher]) -> Result<LogIndexStats, StorageError> {
            Ok(LogIndexStats::default())
        }
    }

    struct Collect {
        skip_older_than_ns: i64,
        seen: Vec<(String, i64, String, usize)>,
    }

    impl LogVisitor for Collect {
        fn wants_batch(&mut self, _: &Labels, _: i64, max_ns: i64) -> bool {
            max_ns >= self.skip_older_than_ns
        }
        fn entry(&mut self, stream: &Labels, entry: LogEntryRef<'_>) {
            let owned = entry.to_entry();
            self.seen.push((stream.to_string(), owned.timestamp_ns, owned.line, owned.structured_metadata.len()));
        }
    }

    #[test]
    fn default_scan_visits_streams_newest_first_and_skips_unwanted_batches() {
        let mut with_metadata = LogEntry::new(5, "b");
        with_metadata.structured_metadata.push(Label { name: "trace_id".into(), value: "ab".into() });
        let reader = VecReader(vec![
            LogStream { labels: Labels::from_pairs([("job", "old")]), entries: vec![LogEntry::new(1, "a")] },
            LogStream {
                labels: Labels::from_pairs([("job", "new")]),
                entries: vec![LogEntry::new(3, "c"), with_metadata],
            },
        ]);
        let mut visitor = Collect { skip_older_than_ns: 0, seen: Vec::new() };
        reader.scan(&LogSelection::default(), ScanOrder::Backward, &mut visitor).unwrap();
        let streams: Vec<&str> = visitor.seen.iter().map(|seen| seen.0.as_str()).collect();
        assert_eq!(streams, [r#"{job="new"}"#, r#"{job="new"}"#, r#"{job="old"}"#]);
        assert_eq!(visitor.seen[1], (r#"{job="new"}"#.to_string(), 5, "b".to_string(), 1));
        let mut visitor = Collect { skip_older_than_ns: 2, seen: Vec::new() };
        reader.scan(&LogSelection::default(), ScanOrder::Forward, &mut visitor).unwrap();
        assert_eq!(visitor.seen.len(), 2);
    }
}
