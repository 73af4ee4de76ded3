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

use crate::block::SeriesSamples;
use crate::chunkenc;
use crate::db::{Shared, lock, read};
use crate::head::{MemSeries, resolve_chunks};
use crate::head_append::TsdbAppender;
use crate::index::ChunkMeta;
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
    fn head_series_overlapping(&self, mint_ms: i64, maxt_ms: i64, matchers: &[Matcher]) -> Vec<Arc<MemSeries>> {
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
        let mut merged: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
        // Held until the head is read too: a block cut swaps blocks and truncates the head under the
        // write lock, so this query sees one consistent state.
        let blocks = read(&self.blocks);
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

/// Puts a series' samples gathered from several sources in time order, one per timestamp (sources that
/// still overlap, before compaction removes a superseded block, hold some twice).
fn sort_and_dedup(samples: &mut Vec<Sample>) {
    if !samples.windows(2).all(|pair| pair[0].timestamp_ms < pair[1].timestamp_ms) {
        samples.sort_by_key(|sample| sample.timestamp_ms);
        samples.dedup_by_key(|sample| sample.timestamp_ms);
    }
}

/// Where the samples of one selected series are: chunks of a block (by its index in the block list), or
/// a head series.
enum SampleSource {
    Block(usize, Vec<ChunkMeta>),
    Head(Arc<MemSeries>),
}

impl Shared {
    /// [`Querier::select_each`]: the series of [`Shared::select_merged`] in the same order, each decoded
    /// only when its turn comes. Selecting keeps labels and chunk references of every series, not samples.
    /// The block list stays read-locked until the last series was visited, so the query sees one state of
    /// blocks and head, as `select_merged` does (a block cut waits for it).
    fn select_each(
        &self,
        mint_ms: i64,
        maxt_ms: i64,
        matchers: &[Matcher],
        visit: &mut dyn FnMut(Series) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let mut sources: BTreeMap<Labels, Vec<SampleSource>> = BTreeMap::new();
        let blocks = read(&self.blocks);
        for (block_index, block) in blocks.iter().enumerate() {
            if !block.overlaps(mint_ms, maxt_ms) {
                continue;
            }
            for (labels, chunks) in block.select_chunks(mint_ms, maxt_ms, matchers)? {
                sources.entry(labels).or_default().push(SampleSource::Block(block_index, chunks));
            }
        }
        let head_window = self.head_window(mint_ms, maxt_ms);
        // Only used for head sources, which exist only when the head has something in the window.
        let head_mint_ms = head_window.unwrap_or(mint_ms);
        if head_window.is_some() {
            for series in self.head_series_overlapping(head_mint_ms, maxt_ms, matchers) {
                sources.entry(series.labels()).or_default().push(SampleSource::Head(series));
            }
        }
        for (labels, series_sources) in sources {
            let mut samples = Vec::new();
            for source in series_sources {
                match source {
                    SampleSource::Block(block_index, chunks) => {
                        if let Some(block) = blocks.get(block_index) {
                            block.decode_chunks_into(&chunks, mint_ms, maxt_ms, &mut samples)?;
                        }
                    }
                    SampleSource::Head(series) => {
                        let pending = series.lock().pending_chunks(head_mint_ms, maxt_ms);
                        for (encoding, _, _, bytes) in resolve_chunks(pending, &self.head_chunks)? {
                            chunkenc::decode_into(encoding, &bytes, head_mint_ms, maxt_ms, &mut samples).map_err(
                                |error| TsdbError::corrupt("head", format!("series {}: {error}", series.series_ref)),
                            )?;
                        }
                    }
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
        self.shared.select_each(mint_ms, maxt_ms, matchers, visit)
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
