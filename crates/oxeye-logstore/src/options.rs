//! How a [`crate::LogStore`] is set up.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use oxeye_model::logs::LineFieldExtractor;

use crate::LogStoreError;

/// Default retention: 30 days, in milliseconds.
pub const DEFAULT_RETENTION_MS: i64 = 30 * 24 * 3600 * 1000;
/// Default maximum line length: 256 KiB (Loki's `max_line_size`).
pub const DEFAULT_MAX_LINE_BYTES: usize = 256 << 10;
/// Default uncompressed size at which a stream's head is cut into a chunk: 2 MiB of encoded entries. On
/// seed-shaped JSON, 2 MiB chunks store about 1 byte per line less than 1 MiB chunks (zstd finds more
/// matches, and the bloom filter holds each common minimizer once for twice the lines); Loki's own target
/// is larger still (1.5 MB compressed).
pub const DEFAULT_CHUNK_TARGET_BYTES: usize = 2 << 20;
/// Default longest time a head stays open before it is cut at the next flush: 2 hours (Loki's
/// `max_chunk_age`). Entries older than half of it behind a stream's newest entry are refused as out of
/// order, as Loki does.
pub const DEFAULT_MAX_CHUNK_AGE_MS: i64 = 2 * 3600 * 1000;
/// Default unordered-write window: entries up to 1 hour (half of [`DEFAULT_MAX_CHUNK_AGE_MS`], as Loki
/// derives it) behind their stream's newest entry are accepted; older ones are refused as too old.
pub const DEFAULT_UNORDERED_WINDOW_MS: i64 = DEFAULT_MAX_CHUNK_AGE_MS / 2;
/// Default time without appends after which a head is cut at the next flush: 30 minutes (Loki's
/// `chunk_idle_period`).
pub const DEFAULT_CHUNK_IDLE_MS: i64 = 30 * 60 * 1000;
/// Default interval of the background flush (chunk files, WAL checkpoint) and retention: 1 minute.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(60);

/// What happens to a line longer than [`LogStoreOptions::max_line_bytes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LineTooLongPolicy {
    /// The entry is refused and counted (Loki's default).
    #[default]
    Reject,
    /// The line is cut to the maximum (at a character boundary), stored and counted.
    Truncate,
}

/// Options of a log store; build with [`LogStoreOptions::new`] and adjust fields.
#[derive(Debug, Clone)]
pub struct LogStoreOptions {
    /// The directory holding `wal/` and `chunks/`; created when missing.
    pub dir: PathBuf,
    /// Entries older than this (relative to now) are refused, and chunk files entirely older are
    /// deleted. Milliseconds; default [`DEFAULT_RETENTION_MS`].
    pub retention_ms: i64,
    /// The longest accepted line, bytes; default [`DEFAULT_MAX_LINE_BYTES`].
    pub max_line_bytes: usize,
    /// What to do with longer lines.
    pub line_too_long: LineTooLongPolicy,
    /// Head size that triggers a cut, bytes of lines; default [`DEFAULT_CHUNK_TARGET_BYTES`].
    pub chunk_target_bytes: usize,
    /// Milliseconds; default [`DEFAULT_MAX_CHUNK_AGE_MS`].
    pub max_chunk_age_ms: i64,
    /// How far behind its stream's newest accepted entry an entry may be and still be accepted (Loki's
    /// unordered writes); older entries are refused as too old. Milliseconds; default
    /// [`DEFAULT_UNORDERED_WINDOW_MS`].
    pub unordered_window_ms: i64,
    /// Milliseconds; default [`DEFAULT_CHUNK_IDLE_MS`].
    pub chunk_idle_ms: i64,
    /// Background flush and retention period; default [`DEFAULT_FLUSH_INTERVAL`].
    pub flush_interval: Duration,
    /// Whether [`crate::LogStore::open`] starts the background maintenance thread (tests turn it off and
    /// call [`crate::LogStore::flush`] themselves).
    pub background_maintenance: bool,
    /// The line parser whose labels chunks keep in field columns at each cut (`docs/format.md`, "Field
    /// columns"), so scans needing only those labels leave the lines compressed; `None` (the default)
    /// writes no columns. The server sets LogQL's `| json`.
    pub line_fields: Option<Arc<dyn LineFieldExtractor>>,
}

impl LogStoreOptions {
    /// Defaults for `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LogStoreOptions {
            dir: dir.into(),
            retention_ms: DEFAULT_RETENTION_MS,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            line_too_long: LineTooLongPolicy::Reject,
            chunk_target_bytes: DEFAULT_CHUNK_TARGET_BYTES,
            max_chunk_age_ms: DEFAULT_MAX_CHUNK_AGE_MS,
            unordered_window_ms: DEFAULT_UNORDERED_WINDOW_MS,
            chunk_idle_ms: DEFAULT_CHUNK_IDLE_MS,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            background_maintenance: true,
            line_fields: None,
        }
    }

    /// Checks ranges.
    ///
    /// # Errors
    /// [`LogStoreError::InvalidOption`] naming the field.
    pub fn validate(&self) -> Result<(), LogStoreError> {
        let invalid = |field, reason: &str| Err(LogStoreError::InvalidOption { field, reason: reason.to_string() });
        if self.retention_ms <= 0 {
            return invalid("retention_ms", "must be positive");
        }
        if self.max_line_bytes == 0 {
            return invalid("max_line_bytes", "must be positive");
        }
        if self.chunk_target_bytes == 0 {
            return invalid("chunk_target_bytes", "must be positive");
        }
        if self.max_chunk_age_ms <= 0 {
            return invalid("max_chunk_age_ms", "must be positive");
        }
        if self.unordered_window_ms < 0 {
            return invalid("unordered_window_ms", "must not be negative");
        }
        if self.flush_interval.is_zero() {
            return invalid("flush_interval", "must be positive");
        }
        Ok(())
    }
}
