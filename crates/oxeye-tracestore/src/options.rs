//! How a [`crate::TraceStore`] is set up.

use std::path::PathBuf;
use std::time::Duration;

use crate::TraceStoreError;

/// Default retention: 30 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// Default head size at which a block is cut: 100,000 spans.
pub const DEFAULT_MAX_HEAD_SPANS: u64 = 100_000;
/// Default head age at which a block is cut: 5 minutes.
pub const DEFAULT_MAX_HEAD_AGE: Duration = Duration::from_secs(300);
/// Default uncompressed page size in blocks: 80 KiB, the size pages had when the writer still closed them on
/// the sum of each trace's size encoded alone (about 3x the shared-table size), so by-id reads decompress
/// as much as before.
pub const DEFAULT_PAGE_BYTES: usize = 80 << 10;
/// Default WAL segment size: 64 MiB.
pub const DEFAULT_WAL_SEGMENT_SIZE_BYTES: u64 = 64 << 20;

/// Options of a trace store.
#[derive(Debug, Clone)]
pub struct TraceStoreOptions {
    /// The store's directory (`wal/` and `blocks/` inside); created when missing.
    pub dir: PathBuf,
    /// Spans that ended longer ago are refused on push, and blocks whose newest span ended longer ago are
    /// deleted. Default [`DEFAULT_RETENTION`].
    pub retention: Duration,
    /// The head is cut into a block once it holds this many spans. Default [`DEFAULT_MAX_HEAD_SPANS`].
    pub max_head_spans: u64,
    /// ... or once its first span arrived this long ago ([`crate::TraceStore::maintain`]). Default
    /// [`DEFAULT_MAX_HEAD_AGE`].
    pub max_head_age: Duration,
    /// Target uncompressed size of a block page, bytes: larger compresses better, smaller makes by-id reads
    /// cheaper. Default [`DEFAULT_PAGE_BYTES`].
    pub page_bytes: usize,
    /// WAL segment size, bytes. Default [`DEFAULT_WAL_SEGMENT_SIZE_BYTES`].
    pub wal_segment_size_bytes: u64,
}

impl TraceStoreOptions {
    /// Defaults for `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        TraceStoreOptions {
            dir: dir.into(),
            retention: DEFAULT_RETENTION,
            max_head_spans: DEFAULT_MAX_HEAD_SPANS,
            max_head_age: DEFAULT_MAX_HEAD_AGE,
            page_bytes: DEFAULT_PAGE_BYTES,
            wal_segment_size_bytes: DEFAULT_WAL_SEGMENT_SIZE_BYTES,
        }
    }

    /// Checks ranges.
    ///
    /// # Errors
    /// [`TraceStoreError::InvalidOption`] naming the field: zero retention, head size or age, a page under
    /// 1 KiB or over 64 MiB, a WAL segment under 1 MiB.
    pub fn validate(&self) -> Result<(), TraceStoreError> {
        let invalid = |field: &'static str, reason: &str| {
            Err(TraceStoreError::InvalidOption { field, reason: reason.to_string() })
        };
        if self.retention.is_zero() {
            return invalid("retention", "must be positive");
        }
        if self.max_head_spans == 0 {
            return invalid("max_head_spans", "must be positive");
        }
        if self.max_head_age.is_zero() {
            return invalid("max_head_age", "must be positive");
        }
        if !(1 << 10..=64 << 20).contains(&self.page_bytes) {
            return invalid("page_bytes", "must be between 1 KiB and 64 MiB");
        }
        if self.wal_segment_size_bytes < 1 << 20 {
            return invalid("wal_segment_size_bytes", "must be at least 1 MiB");
        }
        Ok(())
    }
}
