//! The oxeye metrics store, shaped after Prometheus' TSDB.
//!
//! In reading order:
//! - [`Tsdb::open`] with [`TsdbOptions`] opens a data directory and returns an `Arc<Tsdb>`, which
//!   implements [`oxeye_model::storage::MetricsStorage`]: `appender()` for writes, the
//!   [`oxeye_model::storage::Querier`] methods for reads, plus metadata and exemplars.
//! - Writes go to the **head** (`head`): every series' recent samples in compressed chunks
//!   ([`chunkenc`]: delta-of-delta timestamps with scaled-integer values appended in sample order while
//!   the values are exact decimals, XOR values otherwise; re-encoded as scaled integers in two streams
//!   with zero runs when a chunk closes and its values allow), held in a paged array by series reference
//!   (`head_refs`) and found by a label-hash map of references and by postings ([`postings`]). A commit first writes WAL records (`record`) through `oxeye-wal`'s group commit, and
//!   returns only after the fsync.
//! - [`Tsdb::run_maintenance`] (or a thread from [`Tsdb::start_maintenance`]) cuts the oldest part of
//!   the head into an immutable **block** ([`block`]: `meta.json`, an index with postings, chunk
//!   files), checkpoints the WAL so restarts replay only the recent tail, merges blocks into larger
//!   ranges and applies retention.
//! - [`Tsdb::block_builder`] writes a block directly from imported history (`backfill`), older than
//!   the head.
//! - Queries merge blocks and head by labels.
//! - [`Tsdb::stats`] reports counters for self-monitoring; [`Tsdb::close`] shuts down gracefully.
//!
//! Every file's byte layout is in `docs/format.md`.
//!
//! Invariants:
//! - A commit returns only after its WAL records are fsynced; the head is updated after that.
//! - A sample lives in exactly one place: blocks hold `[min_time, max_time)` ranges below the head's
//!   cut line (`min_valid_time`), and the head serves only samples at or after it. Appends below the cut
//!   line are refused (`OutOfBounds`).
//! - WAL segments are deleted only after a checkpoint covering them is durable under its final name,
//!   and a checkpoint is taken only when no commit sits between its WAL write and its head update.
//! - Series references are never reused within a data directory (so WAL records stay unambiguous).
//! - Closed chunks and blocks never change; compaction writes new blocks and then deletes the old ones.
//!
//! Deliberately absent for now: out-of-order ingestion (refused as in Prometheus' default), deletion
//! and tombstones, native histograms. Closed head chunks are moved to `chunks_head/` files by
//! maintenance and read back with `pread` (no `mmap`: the crate has no unsafe code).
//!
//! ```
//! use oxeye_model::storage::{MetricsStorage, Querier};
//! use oxeye_model::{Labels, Matcher, Sample};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let tsdb = oxeye_tsdb::Tsdb::open(oxeye_tsdb::TsdbOptions::new(dir.path()))?;
//! let labels = Labels::from_pairs([("__name__", "up"), ("job", "api")]);
//! let mut appender = tsdb.appender();
//! appender.append(&labels, Sample { timestamp_ms: 1_000, value: 1.0 })?;
//! appender.commit()?; // durable (fsynced) when this returns
//! let series = tsdb.select(0, 2_000, &[Matcher::equal("__name__", "up")])?;
//! assert_eq!(series[0].samples, [Sample { timestamp_ms: 1_000, value: 1.0 }]);
//! tsdb.close()?;
//! # Ok(()) }
//! ```

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod backfill;
pub mod block;
pub mod chunkenc;
mod chunks;
mod compact;
mod db;
mod deflate;
mod encoding;
mod error;
mod exemplars;
mod head;
mod head_append;
mod head_chunks;
mod head_refs;
mod head_wal;
mod index;
mod options;
pub mod postings;
mod querier;
mod record;
mod series_cache;
mod symbols;

pub use backfill::{BackfillSampleError, BlockBuilder, BuilderSeriesId};
pub use compact::{MaintenanceReport, MaintenanceThread};
pub use db::{Tsdb, TsdbStats};
pub use error::TsdbError;
pub use head::HeadMemory;
pub use head_append::TsdbAppender;
pub use options::{
    DEFAULT_BLOCK_DURATION_MS, DEFAULT_MAX_BLOCK_DURATION_MS, DEFAULT_MAX_EXEMPLARS, DEFAULT_RETENTION_MS,
    DEFAULT_WAL_CHECKPOINT_MIN_BYTES, TsdbOptions,
};

#[cfg(test)]
mod tests;
