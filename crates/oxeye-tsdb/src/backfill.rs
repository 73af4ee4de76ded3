//! Backfill: writing blocks directly from samples that never went through the head, for history
//! imported from elsewhere (`oxeye tsdb create-blocks-from openmetrics`, after Prometheus'
//! `promtool tsdb create-blocks-from openmetrics`).
//!
//! A [`BlockBuilder`] collects the samples of one time range in compressed chunks (one open XOR chunk
//! per series, closed at [`crate::chunkenc::MAX_SAMPLES_PER_CHUNK`] samples and re-encoded in its
//! smallest encoding), then [`BlockBuilder::commit`] writes them as one level-1 block and adds it to
//! the open store, where queries and compaction see it like a block cut from the head. Memory is the
//! compressed samples of the range plus each series' labels: about 1–2 bytes per sample for regular
//! scrapes.
//!
//! A backfilled block must not overlap a block already in the store, nor end after the oldest sample
//! in the head: opening a data directory raises the head's lower bound to the newest block's end and
//! drops head samples below it, so such a block would hide acknowledged samples.

use std::collections::HashMap;
use std::sync::Arc;

use oxeye_model::Labels;

use crate::block::{Block, BlockWriter, OwnedChunk};
use crate::chunkenc::{self, Encoding, MAX_SAMPLES_PER_CHUNK, XorAppender};
use crate::db::{Shared, lock, write};
use crate::{Tsdb, TsdbError};

/// Identifies a series within one [`BlockBuilder`], from [`BlockBuilder::series`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BuilderSeriesId(u32);

/// Samples of one series being collected.
#[derive(Debug)]
struct BuilderSeries {
    labels: Labels,
    closed: Vec<OwnedChunk>,
    open: XorAppender,
    open_mint_ms: i64,
}

/// Collects the samples of `[min_time_ms, max_time_ms)` for one block; see the module docs.
#[derive(Debug)]
pub struct BlockBuilder {
    shared: Arc<Shared>,
    min_time_ms: i64,
    max_time_ms: i64,
    ids: HashMap<Labels, BuilderSeriesId>,
    series: Vec<BuilderSeries>,
    samples: u64,
    data_min_ms: i64,
    data_max_ms: i64,
}

/// Why a sample was refused by [`BlockBuilder::append`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackfillSampleError {
    /// The timestamp lies outside the builder's range.
    #[error("timestamp {timestamp_ms} ms is outside the block range [{min_time_ms}, {max_time_ms})")]
    OutOfRange {
        /// The sample's timestamp, milliseconds.
        timestamp_ms: i64,
        /// The range's start, inclusive.
        min_time_ms: i64,
        /// The range's end, exclusive.
        max_time_ms: i64,
    },
    /// The timestamp is not after the series' previous sample (samples of a series must ascend).
    #[error("timestamp {timestamp_ms} ms is not after the series' previous sample at {previous_ms} ms")]
    OutOfOrder {
        /// The sample's timestamp, milliseconds.
        timestamp_ms: i64,
        /// The series' newest timestamp so far.
        previous_ms: i64,
    },
}

impl Tsdb {
    /// A builder for one backfilled block holding samples in `[min_time_ms, max_time_ms)`.
    ///
    /// # Errors
    /// [`TsdbError::Closed`]; [`TsdbError::Backfill`] when the range is empty, overlaps a block in the
    /// store, or reaches the head's oldest sample.
    pub fn block_builder(&self, min_time_ms: i64, max_time_ms: i64) -> Result<BlockBuilder, TsdbError> {
        let shared = &self.shared;
        if shared.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(TsdbError::Closed);
        }
        if min_time_ms >= max_time_ms {
            return Err(TsdbError::Backfill { reason: format!("empty range [{min_time_ms}, {max_time_ms})") });
        }
        check_range_free(shared, min_time_ms, max_time_ms)?;
        Ok(BlockBuilder {
            shared: Arc::clone(shared),
            min_time_ms,
            max_time_ms,
            ids: HashMap::new(),
            series: Vec::new(),
            samples: 0,
            data_min_ms: i64::MAX,
            data_max_ms: i64::MIN,
        })
    }
}

/// Refuses a block range `[min_time_ms, max_time_ms)` that overlaps a block or reaches the head's data.
fn check_range_free(shared: &Shared, min_time_ms: i64, max_time_ms: i64) -> Result<(), TsdbError> {
    for block in shared.blocks() {
        if block.meta.min_time_ms < max_time_ms && block.meta.max_time_ms > min_time_ms {
            return Err(TsdbError::Backfill {
                reason: format!(
                    "range [{min_time_ms}, {max_time_ms}) overlaps block {} [{}, {})",
                    block.meta.id, block.meta.min_time_ms, block.meta.max_time_ms
                ),
            });
        }
    }
    let head = &shared.head;
    if !head.is_empty() && max_time_ms > head.min_time_ms() {
        return Err(TsdbError::Backfill {
            reason: format!(
                "range [{min_time_ms}, {max_time_ms}) reaches the head, whose oldest sample is at {} ms; \
                 only history older than the head can be backfilled",
                head.min_time_ms()
            ),
        });
    }
    Ok(())
}

impl BlockBuilder {
    /// The id of the series with `labels`, created on first use.
    pub fn series(&mut self, labels: Labels) -> BuilderSeriesId {
        if let Some(id) = self.ids.get(&labels) {
            return *id;
        }
        let id = BuilderSeriesId(self.series.len() as u32);
        self.series.push(BuilderSeries {
            labels: labels.clone(),
            closed: Vec::new(),
            open: XorAppender::new(),
            open_mint_ms: 0,
        });
        self.ids.insert(labels, id);
        id
    }

    /// Appends one sample to a series; its timestamp must be inside the builder's range and after the
    /// series' previous sample.
    ///
    /// # Errors
    /// [`BackfillSampleError`]; nothing is stored then.
    pub fn append(&mut self, id: BuilderSeriesId, timestamp_ms: i64, value: f64) -> Result<(), BackfillSampleError> {
        if timestamp_ms < self.min_time_ms || timestamp_ms >= self.max_time_ms {
            return Err(BackfillSampleError::OutOfRange {
                timestamp_ms,
                min_time_ms: self.min_time_ms,
                max_time_ms: self.max_time_ms,
            });
        }
        let Some(series) = self.series.get_mut(id.0 as usize) else {
            // Ids only come from `series`, so this is a caller mixing builders; refuse as out of range.
            return Err(BackfillSampleError::OutOfRange {
                timestamp_ms,
                min_time_ms: self.min_time_ms,
                max_time_ms: self.max_time_ms,
            });
        };
        let has_samples = series.open.num_samples() > 0 || !series.closed.is_empty();
        if has_samples {
            let previous_ms = if series.open.num_samples() > 0 {
                series.open.last_timestamp_ms()
            } else {
                series.closed.last().map_or(i64::MIN, |chunk| chunk.2)
            };
            if timestamp_ms <= previous_ms {
                return Err(BackfillSampleError::OutOfOrder { timestamp_ms, previous_ms });
            }
        }
        if series.open.num_samples() >= MAX_SAMPLES_PER_CHUNK {
            close_open_chunk(series);
        }
        if series.open.num_samples() == 0 {
            series.open_mint_ms = timestamp_ms;
        }
        series.open.append(timestamp_ms, value);
        self.samples += 1;
        self.data_min_ms = self.data_min_ms.min(timestamp_ms);
        self.data_max_ms = self.data_max_ms.max(timestamp_ms);
        Ok(())
    }

    /// Samples appended so far.
    pub fn num_samples(&self) -> u64 {
        self.samples
    }

    /// Series created so far.
    pub fn num_series(&self) -> usize {
        self.series.len()
    }

    /// Writes the samples as one level-1 block spanning the data actually appended (first sample to
    /// one past the last, as Prometheus' backfill does), and adds it to the store. Returns the block's
    /// id, or `None` when no sample was appended.
    ///
    /// # Errors
    /// [`TsdbError::Io`] when the block cannot be written; [`TsdbError::Backfill`] when a block or head
    /// data overlapping the range appeared since the builder was made. Nothing is added then (a partly
    /// written block directory is removed at the next open).
    pub fn commit(mut self) -> Result<Option<String>, TsdbError> {
        if self.samples == 0 {
            return Ok(None);
        }
        let shared = Arc::clone(&self.shared);
        let _maintenance = lock(&shared.maintenance_lock);
        let (min_time_ms, max_time_ms) = (self.data_min_ms, self.data_max_ms + 1);
        check_range_free(&shared, min_time_ms, max_time_ms)?;
        {
            // Appends below the block's end are refused from now on, as after a head cut.
            let _gate = write(&shared.commit_gate);
            shared.head.raise_min_valid_time(max_time_ms);
        }
        self.series.sort_unstable_by(|left, right| left.labels.cmp(&right.labels));
        let mut writer = BlockWriter::create(&shared.options.data_dir)?;
        for mut series in std::mem::take(&mut self.series) {
            close_open_chunk(&mut series);
            writer.add_series(&series.labels, &series.closed)?;
        }
        let Some(dir) = writer.finish(min_time_ms, max_time_ms, 1, Vec::new(), Vec::new())? else { return Ok(None) };
        let mut block = Block::open(&dir)?;
        crate::compact::share_with_existing_blocks(&shared, &mut block);
        let id = block.meta.id.clone();
        tracing::info!(block = %id, min_time_ms, max_time_ms, series = block.meta.stats.num_series, samples = block.meta.stats.num_samples, "backfilled block");
        let mut blocks = write(&shared.blocks);
        blocks.push(Arc::new(block));
        blocks.sort_by_key(|block| (block.meta.min_time_ms, block.meta.max_time_ms));
        Ok(Some(id))
    }
}

/// Moves a series' open chunk, re-encoded in its smallest encoding, to its closed chunks.
fn close_open_chunk(series: &mut BuilderSeries) {
    if series.open.num_samples() == 0 {
        return;
    }
    let maxt_ms = series.open.last_timestamp_ms();
    let bytes = std::mem::take(&mut series.open).into_bytes();
    let (encoding, bytes): (Encoding, Vec<u8>) = chunkenc::recode_closed(Encoding::Xor, bytes);
    series.closed.push((encoding, series.open_mint_ms, maxt_ms, bytes));
}

#[cfg(test)]
mod tests {
    use oxeye_model::storage::{MetricsStorage, Querier};
    use oxeye_model::{Matcher, Sample};

    use super::*;
    use crate::TsdbOptions;

    fn up(instance: &str) -> Labels {
        Labels::from_pairs([("__name__", "up"), ("instance", instance)])
    }

    #[test]
    fn a_backfilled_block_is_queried_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let tsdb = Tsdb::open(TsdbOptions::new(dir.path())).unwrap();
        let mut builder = tsdb.block_builder(0, 7_200_000).unwrap();
        // Two series appended in reverse label order, 300 samples each (three chunks).
        let b = builder.series(up("b"));
        let a = builder.series(up("a"));
        assert_eq!(builder.series(up("b")), b);
        for step in 0..300i64 {
            builder.append(b, 1_000 + step * 15_000, step as f64).unwrap();
            builder.append(a, 2_000 + step * 15_000, 0.5).unwrap();
        }
        assert_eq!(
            builder.append(a, 2_000, 1.0),
            Err(BackfillSampleError::OutOfOrder { timestamp_ms: 2_000, previous_ms: 2_000 + 299 * 15_000 })
        );
        assert!(matches!(builder.append(a, 7_200_000, 1.0), Err(BackfillSampleError::OutOfRange { .. })));
        assert_eq!(builder.num_samples(), 600);
        assert!(builder.commit().unwrap().is_some());
        let check = |tsdb: &Tsdb| {
            let series = tsdb.select(0, 7_200_000, &[Matcher::equal("__name__", "up")]).unwrap();
            assert_eq!(series.len(), 2);
            assert_eq!(series[0].labels, up("a"));
            assert_eq!(series[0].samples.len(), 300);
            assert_eq!(series[1].samples[299], Sample { timestamp_ms: 1_000 + 299 * 15_000, value: 299.0 });
        };
        check(&tsdb);
        // The block spans the data: an adjacent later range is free, an overlapping one is refused.
        assert!(tsdb.block_builder(2_000 + 299 * 15_000 + 1, 7_200_000).is_ok());
        assert!(matches!(tsdb.block_builder(1_000_000, 7_200_000), Err(TsdbError::Backfill { .. })));
        tsdb.close().unwrap();
        drop(tsdb);
        let reopened = Tsdb::open(TsdbOptions::new(dir.path())).unwrap();
        check(&reopened);
        reopened.close().unwrap();
    }

    #[test]
    fn a_range_reaching_the_head_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let tsdb = Tsdb::open(TsdbOptions::new(dir.path())).unwrap();
        let mut appender = tsdb.appender();
        appender.append(&up("a"), Sample { timestamp_ms: 100_000, value: 1.0 }).unwrap();
        appender.commit().unwrap();
        assert!(matches!(tsdb.block_builder(0, 100_001), Err(TsdbError::Backfill { .. })));
        let mut builder = tsdb.block_builder(0, 100_000).unwrap();
        let id = builder.series(up("a"));
        builder.append(id, 50_000, 2.0).unwrap();
        builder.commit().unwrap();
        let series = tsdb.select(0, 200_000, &[Matcher::equal("__name__", "up")]).unwrap();
        assert_eq!(series[0].samples.len(), 2);
        tsdb.close().unwrap();
    }
}
