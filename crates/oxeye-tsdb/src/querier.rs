//! Reading: the [`Querier`] and [`MetricsStorage`] implementations, merging the head and the blocks.
//!
//! Blocks cover `[min, max)` ranges cut from the head; the head serves samples at or after its cut line
//! (`min_valid_time`), so a sample lives in exactly one place. Series are merged by labels; when sources
//! still overlap (e.g. before compaction removes a superseded block) samples are sorted and deduplicated
//! by timestamp.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use oxeye_model::storage::{Appender, MetricsStorage, Querier, Series, SeriesExemplars, StorageError};
use oxeye_model::{Labels, Matcher, MetricMetadata, Sample};

use crate::block::{Block, BlockSeriesCursor, SeriesSamples, StreamError};
use crate::chunkenc;
use crate::db::{Shared, lock, read};
use crate::head::{MemSeries, resolve_chunks};
use crate::head_append::TsdbAppender;
use crate::{Tsdb, TsdbError};

impl Shared {
    /// The head's part of a `[mint_ms, maxt_ms]` query: the window clipped to the head's queryable start
    /// (`query_min_time_ms`), or `None` when the head is empty or holds nothing in it.
    fn head_window(&self, mint_ms: i64, maxt_ms: i64) -> Option<i64> {
        let head = &self.head;
        let mint_ms = mint_ms.max(head.query_min_time_ms());
        let empty =
            head.is_empty() || mint_ms > maxt_ms || head.max_time_ms() < mint_ms || head.min_time_ms() > maxt_ms;
        (!empty).then_some(mint_ms)
    }

    /// Head series matching `matchers` with a chunk overlapping `[mint_ms, maxt_ms]` (a window already
    /// clipped by [`Shared::head_window`]), in postings order; no samples are decoded.
    fn head_series_overlapping(&self, mint_ms: i64, maxt_ms: i64, matchers: &[Matcher]) -> Vec<MemSeries> {
        let head = &self.head;
        head.postings()
            .select(matchers)
            .into_iter()
            .filter_map(|id| head.get_by_ref(id))
            .filter(|series| {
                series
                    .lock()
                    .chunks()
                    .any(|(_, chunk_mint, chunk_maxt, _)| chunk_maxt >= mint_ms && chunk_mint <= maxt_ms)
            })
            .collect()
    }

    /// Head series matching `matchers` with samples in the window (sample vectors filled only with
    /// `with_samples`).
    fn head_select(
        &self,
        mint_ms: i64,
        maxt_ms: i64,
        matchers: &[Matcher],
        with_samples: bool,
    ) -> Result<Vec<SeriesSamples>, TsdbError> {
        let Some(mint_ms) = self.head_window(mint_ms, maxt_ms) else { return Ok(Vec::new()) };
        if !with_samples {
            let series = self.head_series_overlapping(mint_ms, maxt_ms, matchers);
            return Ok(series.into_iter().map(|series| (series.labels(), Vec::new())).collect());
        }
        let head = &self.head;
        let ids = head.postings().select(matchers);
        // Copy what each series has in the window under its lock, then read chunks moved to disk for all
        // series at once.
        let mut selected = Vec::new();
        let mut pending = Vec::new();
        for id in ids {
            let Some(series) = head.get_by_ref(id) else { continue };
            let chunks = series.lock().pending_chunks(mint_ms, maxt_ms);
            if !chunks.is_empty() {
                selected.push((series, chunks.len()));
                pending.extend(chunks);
            }
        }
        let mut chunks = resolve_chunks(pending, &self.head_chunks)?.into_iter();
        let mut out = Vec::with_capacity(selected.len());
        for (series, count) in selected {
            let mut samples = Vec::new();
            for (encoding, _, _, bytes) in chunks.by_ref().take(count) {
                chunkenc::decode_into(encoding, &bytes, mint_ms, maxt_ms, &mut samples)
                    .map_err(|error| TsdbError::corrupt("head", format!("series {}: {error}", series.series_ref)))?;
            }
            if !samples.is_empty() {
                out.push((series.labels(), samples));
            }
        }
        Ok(out)
    }

    /// Series from blocks and head, merged by labels and sorted by labels.
    pub(crate) fn select_merged(
        &self,
        mint_ms: i64,
        maxt_ms: i64,
        matchers: &[Matcher],
        with_samples: bool,
    ) -> Result<Vec<(Labels, Vec<Sample>)>, TsdbError> {
        // Held until the head is read too: a block cut swaps blocks and truncates the head under the
        // write lock, so this query sees one consistent state.
        let blocks = read(&self.blocks);
        if self.head_window(mint_ms, maxt_ms).is_none()
            && let Some(block) = only_overlapping_block(&blocks, mint_ms, maxt_ms)
        {
            // One source: its series come in label order and need no merging.
            let mut selected = block.select(mint_ms, maxt_ms, matchers, with_samples)?;
            selected.iter_mut().for_each(|(_, samples)| sort_and_dedup(samples));
            return Ok(selected);
        }
        let mut merged: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
        for block in blocks.iter() {
            if !block.overlaps(mint_ms, maxt_ms) {
                continue;
            }
            for (labels, samples) in block.select(mint_ms, maxt_ms, matchers, with_samples)? {
                merged.entry(labels).or_default().extend(samples);
            }
        }
        for (labels, samples) in self.head_select(mint_ms, maxt_ms, matchers, with_samples)? {
            merged.entry(labels).or_default().extend(samples);
        }
        drop(blocks);
        Ok(merged
            .into_iter()
            .map(|(labels, mut samples)| {
                sort_and_dedup(&mut samples);
                (labels, samples)
            })
            .collect())
    }
}

/// The block overlapping `[mint_ms, maxt_ms]` when exactly one does.
fn only_overlapping_block(blocks: &[Arc<Block>], mint_ms: i64, maxt_ms: i64) -> Option<&Block> {
    let mut overlapping = blocks.iter().filter(|block| block.overlaps(mint_ms, maxt_ms));
    let block = overlapping.next()?;
    overlapping.next().is_none().then_some(block.as_ref())
}

/// Puts a series' samples gathered from several sources in time order, one per timestamp (sources that
/// still overlap, before compaction removes a superseded block, hold some twice).
fn sort_and_dedup(samples: &mut Vec<Sample>) {
    if !samples.windows(2).all(|pair| pair[0].timestamp_ms < pair[1].timestamp_ms) {
        samples.sort_by_key(|sample| sample.timestamp_ms);
        samples.dedup_by_key(|sample| sample.timestamp_ms);
    }
}

/// Which source [`Shared::select_each`] takes the next series from.
#[derive(Debug, Clone, Copy)]
enum NextSource {
    Block(usize),
    Head,
}

impl Shared {
    /// [`Querier::select_each`]: the series of [`Shared::select_merged`] in the same order, each decoded
    /// only when its turn comes (with `keep_label`, see [`Querier::select_each_projected`]). A window in
    /// one block alone streams that block's series in index order; otherwise the blocks' series (read
    /// from their indexes a batch at a time, each block in label order) and the head's (sorted by labels)
    /// are merged side by side, so only head series are held all at once.
    /// The block list stays read-locked until the last series was visited, so the query sees one state of
    /// blocks and head, as `select_merged` does (a block cut waits for it).
    fn select_each(
        &self,
        mint_ms: i64,
        maxt_ms: i64,
        matchers: &[Matcher],
        keep_label: Option<&dyn Fn(&str) -> bool>,
        visit: &mut dyn FnMut(Series) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let blocks = read(&self.blocks);
        let head_window = self.head_window(mint_ms, maxt_ms);
        if head_window.is_none()
            && let Some(block) = only_overlapping_block(&blocks, mint_ms, maxt_ms)
        {
            // One source: its series come in label order and need no merging.
            return block
                .for_each_series(mint_ms, maxt_ms, matchers, keep_label, &mut |labels, mut samples| {
                    sort_and_dedup(&mut samples);
                    visit(Series { labels, samples })
                })
                .map_err(|error| match error {
                    StreamError::Read(error) => error.into(),
                    StreamError::Visit(error) => error,
                });
        }
        let mut cursors: Vec<BlockSeriesCursor<'_>> = blocks
            .iter()
            .filter(|block| block.overlaps(mint_ms, maxt_ms))
            .map(|block| BlockSeriesCursor::new(block, mint_ms, maxt_ms, matchers))
            .collect();
        // Only used for head sources, which exist only when the head has something in the window.
        let head_mint_ms = head_window.unwrap_or(mint_ms);
        let mut head_series: Vec<(Labels, MemSeries)> = match head_window {
            Some(_) => self
                .head_series_overlapping(head_mint_ms, maxt_ms, matchers)
                .into_iter()
                .map(|series| (series.labels(), series))
                .collect(),
            None => Vec::new(),
        };
        head_series.sort_unstable_by(|left, right| left.0.cmp(&right.0));
        let mut head_series = head_series.into_iter().peekable();
        loop {
            for cursor in &mut cursors {
                cursor.fill()?;
            }
            let mut next: Option<(NextSource, &Labels)> = None;
            for (position, cursor) in cursors.iter().enumerate() {
                if let Some(labels) = cursor.peek()
                    && next.is_none_or(|(_, smallest)| labels < smallest)
                {
                    next = Some((NextSource::Block(position), labels));
                }
            }
            if let Some((labels, _)) = head_series.peek()
                && next.is_none_or(|(_, smallest)| labels < smallest)
            {
                next = Some((NextSource::Head, labels));
            }
            let Some((source, _)) = next else { break };
            let (labels, mut first_chunks) = match source {
                NextSource::Block(position) => match cursors.get_mut(position).and_then(BlockSeriesCursor::pop) {
                    Some((labels, chunks)) => (labels, Some((position, chunks))),
                    None => break,
                },
                NextSource::Head => match head_series.peek() {
                    Some((labels, _)) => (labels.clone(), None),
                    None => break,
                },
            };
            // Blocks in list order, then the head, as the samples were always gathered. The source
            // chosen is the first holding the smallest labels: only sources after it can hold them too.
            let mut samples = Vec::new();
            for (position, cursor) in cursors.iter_mut().enumerate() {
                let chunks = if first_chunks.as_ref().is_some_and(|(first_position, _)| *first_position == position) {
                    first_chunks.take().map(|(_, chunks)| chunks)
                } else if cursor.peek() == Some(&labels) {
                    cursor.pop().map(|(_, chunks)| chunks)
                } else {
                    None
                };
                if let Some(chunks) = chunks {
                    cursor.block().decode_chunks_into(
                        &chunks,
                        cursor.chunk_caching(),
                        mint_ms,
                        maxt_ms,
                        &mut samples,
                    )?;
                }
            }
            if head_series.peek().is_some_and(|(head_labels, _)| *head_labels == labels)
                && let Some((_, series)) = head_series.next()
            {
                let pending = series.lock().pending_chunks(head_mint_ms, maxt_ms);
                for (encoding, _, _, bytes) in resolve_chunks(pending, &self.head_chunks)? {
                    chunkenc::decode_into(encoding, &bytes, head_mint_ms, maxt_ms, &mut samples).map_err(|error| {
                        TsdbError::corrupt("head", format!("series {}: {error}", series.series_ref))
                    })?;
                }
            }
            if samples.is_empty() {
                continue;
            }
            sort_and_dedup(&mut samples);
            visit(Series { labels, samples })?;
        }
        drop(blocks);
        Ok(())
    }
}

impl Querier for Tsdb {
    fn select(&self, mint_ms: i64, maxt_ms: i64, matchers: &[Matcher]) -> Result<Vec<Series>, StorageError> {
        let merged = self.shared.select_merged(mint_ms, maxt_ms, matchers, true)?;
        Ok(merged.into_iter().map(|(labels, samples)| Series { labels, samples }).collect())
    }

    fn select_each(
        &self,
        mint_ms: i64,
        maxt_ms: i64,
        matchers: &[Matcher],
        visit: &mut dyn FnMut(Series) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        self.shared.select_each(mint_ms, maxt_ms, matchers, None, visit)
    }

    /// Series read from one block alone carry only the labels `keep_label` accepts; series merged from
    /// several sources keep all of theirs (merging needs them).
    fn select_each_projected(
        &self,
        mint_ms: i64,
        maxt_ms: i64,
        matchers: &[Matcher],
        keep_label: &dyn Fn(&str) -> bool,
        visit: &mut dyn FnMut(Series) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        self.shared.select_each(mint_ms, maxt_ms, matchers, Some(keep_label), visit)
    }

    fn series(&self, mint_ms: i64, maxt_ms: i64, matchers: &[Matcher]) -> Result<Vec<Labels>, StorageError> {
        let merged = self.shared.select_merged(mint_ms, maxt_ms, matchers, false)?;
        Ok(merged.into_iter().map(|(labels, _)| labels).collect())
    }

    fn label_names(&self, mint_ms: i64, maxt_ms: i64, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        let mut names = BTreeSet::new();
        if matchers.is_empty() {
            for block in self.shared.blocks() {
                if block.overlaps(mint_ms, maxt_ms) {
                    names.extend(block.index.postings.label_names());
                }
            }
            if !self.shared.head.is_empty() {
                names.extend(self.shared.head.postings().label_names());
            }
        } else {
            for labels in self.series(mint_ms, maxt_ms, matchers)? {
                names.extend(labels.iter().map(|label| label.name.clone()));
            }
        }
        Ok(names.into_iter().collect())
    }

    fn label_values(
        &self,
        mint_ms: i64,
        maxt_ms: i64,
        name: &str,
        matchers: &[Matcher],
    ) -> Result<Vec<String>, StorageError> {
        let mut values = BTreeSet::new();
        if matchers.is_empty() {
            for block in self.shared.blocks() {
                if block.overlaps(mint_ms, maxt_ms) {
                    values.extend(block.index.postings.label_values(name));
                }
            }
            if !self.shared.head.is_empty() {
                values.extend(self.shared.head.postings().label_values(name));
            }
        } else {
            for labels in self.series(mint_ms, maxt_ms, matchers)? {
                if let Some(value) = labels.get(name) {
                    values.insert(value.to_owned());
                }
            }
        }
        Ok(values.into_iter().collect())
    }
}

impl MetricsStorage for Tsdb {
    fn appender(&self) -> Box<dyn Appender> {
        Box::new(TsdbAppender::new(Arc::clone(&self.shared)))
    }

    fn metadata(&self, metric_family_name: Option<&str>, limit: Option<usize>) -> Vec<(String, MetricMetadata)> {
        let metadata = read(&self.shared.metadata);
        let selected = metadata
            .iter()
            .filter(|(family, _)| metric_family_name.is_none_or(|wanted| wanted == family.as_str()))
            .map(|(family, metadata)| (family.clone(), metadata.clone()));
        match limit {
            Some(limit) => selected.take(limit).collect(),
            None => selected.collect(),
        }
    }

    fn exemplars(
        &self,
        mint_ms: i64,
        maxt_ms: i64,
        matcher_sets: &[Vec<Matcher>],
    ) -> Result<Vec<SeriesExemplars>, StorageError> {
        let head = &self.shared.head;
        let mut wanted: HashSet<u32> = HashSet::new();
        {
            let postings = head.postings();
            for matchers in matcher_sets {
                wanted.extend(postings.select(matchers).iter());
            }
        }
        let mut by_series: BTreeMap<u32, Vec<oxeye_model::Exemplar>> = BTreeMap::new();
        for (series_ref, exemplar) in lock(&self.shared.exemplars).iter() {
            if wanted.contains(series_ref) && exemplar.timestamp_ms >= mint_ms && exemplar.timestamp_ms <= maxt_ms {
                by_series.entry(*series_ref).or_default().push(exemplar.clone());
            }
        }
        let mut out: Vec<SeriesExemplars> = by_series
            .into_iter()
            .filter_map(|(series_ref, mut exemplars)| {
                let series = head.get_by_ref(series_ref)?;
                exemplars.sort_by_key(|exemplar| exemplar.timestamp_ms);
                Some(SeriesExemplars { series_labels: series.labels(), exemplars })
            })
            .collect();
        out.sort_by(|left, right| left.series_labels.cmp(&right.series_labels));
        Ok(out)
    }
}
