//! Options of a [`crate::Tsdb`].

use std::path::PathBuf;

use crate::TsdbError;

/// Default retention by time: 30 days, in milliseconds.
pub const DEFAULT_RETENTION_MS: i64 = 30 * 24 * 3600 * 1000;
/// Default block duration (and head chunk range): 2 hours, in milliseconds.
pub const DEFAULT_BLOCK_DURATION_MS: i64 = 2 * 3600 * 1000;
/// Default WAL volume (bytes) after which maintenance considers a checkpoint between block cuts.
pub const DEFAULT_WAL_CHECKPOINT_MIN_BYTES: u64 = 64 << 20;
/// Default capacity of the in-memory exemplar ring.
pub const DEFAULT_MAX_EXEMPLARS: usize = 100_000;
/// Largest block compaction produces by default: 31 days, in milliseconds (capped further at a tenth of
/// the retention).
pub const DEFAULT_MAX_BLOCK_DURATION_MS: i64 = 31 * 24 * 3600 * 1000;

/// How a [`crate::Tsdb`] is set up; build with [`TsdbOptions::new`] and adjust fields.
#[derive(Debug, Clone, PartialEq)]
pub struct TsdbOptions {
    /// Directory of blocks (`<id>/`), the WAL (`wal/`) and the lock file (`lock`); created when missing.
    pub data_dir: PathBuf,
    /// Blocks that end more than this many milliseconds before the newest sample are deleted.
    /// Default [`DEFAULT_RETENTION_MS`] (30 days).
    pub retention_ms: i64,
    /// When set, the oldest blocks are deleted while blocks plus WAL exceed this many bytes.
    pub retention_size_bytes: Option<u64>,
    /// Time range of a block cut from the head, in milliseconds; also the head's chunk range. A block is
    /// cut once the head spans more than 1.5 × this. The head accepts samples no older than half of it
    /// before its newest sample. Default [`DEFAULT_BLOCK_DURATION_MS`] (2 h).
    pub block_duration_ms: i64,
    /// Largest block that compaction produces, in milliseconds; `None` means the smaller of
    /// [`DEFAULT_MAX_BLOCK_DURATION_MS`] and a tenth of `retention_ms` (at least `block_duration_ms`).
    pub max_block_duration_ms: Option<i64>,
    /// WAL segment size in bytes. Default 128 MiB.
    pub wal_segment_size_bytes: u64,
    /// Maintenance also checkpoints the WAL between block cuts once this many bytes were written since
    /// the last checkpoint and they exceed half the head's size (series and chunks), which bounds the WAL's disk
    /// use and the replay after a crash. Default [`DEFAULT_WAL_CHECKPOINT_MIN_BYTES`] (64 MiB).
    pub wal_checkpoint_min_bytes: u64,
    /// Capacity of the in-memory exemplar ring (oldest evicted first). Default 100 000.
    pub max_exemplars: usize,
}

impl TsdbOptions {
    /// Default options for `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        TsdbOptions {
            data_dir: data_dir.into(),
            retention_ms: DEFAULT_RETENTION_MS,
            retention_size_bytes: None,
            block_duration_ms: DEFAULT_BLOCK_DURATION_MS,
            max_block_duration_ms: None,
            wal_segment_size_bytes: oxeye_wal::DEFAULT_SEGMENT_SIZE_BYTES,
            wal_checkpoint_min_bytes: DEFAULT_WAL_CHECKPOINT_MIN_BYTES,
            max_exemplars: DEFAULT_MAX_EXEMPLARS,
        }
    }

    /// Checks ranges.
    ///
    /// # Errors
    /// [`TsdbError::InvalidOption`] naming the field: a non-positive duration or retention, a zero WAL
    /// segment size, or an empty `data_dir`.
    pub fn validate(&self) -> Result<(), TsdbError> {
        let invalid = |field: &'static str, reason: &str| TsdbError::InvalidOption { field, reason: reason.to_owned() };
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }
        if self.retention_ms <= 0 {
            return Err(invalid("retention_ms", "must be positive"));
        }
        if self.block_duration_ms <= 0 {
            return Err(invalid("block_duration_ms", "must be positive"));
        }
        if self.max_block_duration_ms.is_some_and(|maximum| maximum < self.block_duration_ms) {
            return Err(invalid("max_block_duration_ms", "must be at least block_duration_ms"));
        }
        if self.wal_segment_size_bytes == 0 {
            return Err(invalid("wal_segment_size_bytes", "must be positive"));
        }
        Ok(())
    }

    /// The effective largest compacted block duration, in milliseconds.
    pub fn effective_max_block_duration_ms(&self) -> i64 {
        self.max_block_duration_ms
            .unwrap_or_else(|| DEFAULT_MAX_BLOCK_DURATION_MS.min(self.retention_ms / 10))
            .max(self.block_duration_ms)
    }

    /// Block ranges that compaction merges into: 3×, 9×, 27×... the block duration, up to the maximum.
    pub fn compaction_ranges_ms(&self) -> Vec<i64> {
        let maximum = self.effective_max_block_duration_ms();
        let mut ranges = Vec::new();
        let mut range = self.block_duration_ms.saturating_mul(3);
        while range <= maximum && ranges.len() < 10 {
            ranges.push(range);
            range = range.saturating_mul(3);
        }
        ranges
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_ranges_grow_by_three() {
        let options = TsdbOptions::new("/tmp/x");
        options.validate().unwrap();
        // 30 d retention caps blocks at 3 d: 6 h, 18 h, 54 h.
        assert_eq!(options.compaction_ranges_ms(), [6 * 3_600_000, 18 * 3_600_000, 54 * 3_600_000]);
        let mut bad = options.clone();
        bad.block_duration_ms = 0;
        assert!(bad.validate().unwrap_err().to_string().contains("block_duration_ms"));
    }
}
