//! Appending to the head: the [`Appender`] implementation.
//!
//! `append` finds (or creates) the series and checks the sample against the series' newest sample and
//! the head's window; `commit` writes the batch's WAL records (new series, samples, exemplars, changed
//! metadata) with one group-committed fsync and only then applies the samples to the head.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use oxeye_model::storage::{self, Appender, CommitSummary, StorageError};
use oxeye_model::{Exemplar, LabelRef, Labels, MetricMetadata, Sample};

use crate::db::{Shared, lock, read, write};
use crate::exemplars::ExemplarCheck;
use crate::head::{MemSeries, MixBuildHasher, SeriesAppend, check_order};
use crate::record::{self, RecordType, RefExemplar, RefSample};

/// A series this batch holds, with its newest sample in the batch.
#[derive(Debug)]
struct HeldSeries {
    series: MemSeries,
    /// Newest `(timestamp_ms, value bits)` appended by this batch.
    newest_in_batch: Option<(i64, u64)>,
}

/// The reusable allocations of an appender: kept warm in a small pool so a new batch does not touch
/// freshly allocated pages for its series map and sample list.
#[derive(Debug, Default)]
pub(crate) struct AppenderBuffers {
    held: Vec<HeldSeries>,
    samples_record: Vec<u8>,
    held_by_ref: HashMap<u32, usize, MixBuildHasher>,
    samples: Vec<(usize, i64, f64)>,
}

/// Buffers kept for reuse at most.
const POOLED_BUFFERS: usize = 32;
/// Buffers larger than this many entries are not pooled, so one huge batch does not pin its memory.
const MAX_POOLED_ENTRIES: usize = 1 << 16;

/// One batch of samples, exemplars and metadata for one atomic commit. Create with
/// `MetricsStorage::appender`.
#[derive(Debug)]
pub struct TsdbAppender {
    shared: Arc<Shared>,
    min_valid_time_ms: i64,
    held: Vec<HeldSeries>,
    held_by_ref: HashMap<u32, usize, MixBuildHasher>,
    /// `(position in held, timestamp_ms, value)`.
    samples: Vec<(usize, i64, f64)>,
    /// The encoded samples record, kept for reuse.
    samples_record: Vec<u8>,
    exemplars: Vec<(usize, Exemplar)>,
    metadata: Vec<(String, MetricMetadata)>,
    series_created: u64,
    finished: bool,
}

impl TsdbAppender {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let min_valid_time_ms = shared.head.appendable_min_valid_time_ms();
        // Batches from one source have similar sizes: start at the last batch's size.
        let capacity = shared.last_batch_samples.load(Ordering::Relaxed).min(MAX_POOLED_ENTRIES);
        let buffers = lock(&shared.appender_buffers).pop().unwrap_or_default();
        TsdbAppender {
            shared,
            min_valid_time_ms,
            held: if buffers.held.capacity() > 0 { buffers.held } else { Vec::with_capacity(capacity) },
            held_by_ref: buffers.held_by_ref,
            samples: buffers.samples,
            samples_record: buffers.samples_record,
            exemplars: Vec::new(),
            metadata: Vec::new(),
            series_created: 0,
            finished: false,
        }
    }

    /// Finds or creates the series and holds it for this batch; returns its position in `held`.
    fn hold_series(&mut self, labels: &Labels) -> Result<usize, StorageError> {
        let head = &self.shared.head;
        let hash = crate::head::label_hash(labels);
        let series = match head.get_by_labels(labels, hash, true) {
            Some(series) => series,
            None => {
                validate_labels(labels)?;
                let (series, created) = head.get_or_create(labels, None, true).map_err(|_| {
                    StorageError::LimitExceeded("series references exhausted; restart compacts them".to_owned())
                })?;
                if created {
                    self.series_created += 1;
                }
                series
            }
        };
        Ok(self.hold(series))
    }

    /// Holds a series found (and marked held) in the head for this batch; returns its position in `held`.
    fn hold(&mut self, series: MemSeries) -> usize {
        if let Some(position) = self.held_by_ref.get(&series.series_ref) {
            // Already held by this batch: give back the extra hold.
            series.release();
            return *position;
        }
        let position = self.held.len();
        self.held_by_ref.insert(series.series_ref, position);
        self.held.push(HeldSeries { series, newest_in_batch: None });
        position
    }

    /// Refuses a sample older than the head accepts; `series_text` names the series in the error.
    fn check_bounds(&self, sample: Sample, series_text: impl FnOnce() -> String) -> Result<(), StorageError> {
        if self.finished {
            return Err(StorageError::Unavailable("appender already committed or rolled back".to_owned()));
        }
        if sample.timestamp_ms < self.min_valid_time_ms {
            self.shared.head.counters.out_of_bounds_samples_total.fetch_add(1, Ordering::Relaxed);
            return Err(StorageError::OutOfBounds {
                series: series_text(),
                timestamp_ms: sample.timestamp_ms,
                min_valid_timestamp_ms: self.min_valid_time_ms,
            });
        }
        Ok(())
    }

    /// Appends to the held series at `position`; `series_text` names the series in errors.
    fn append_at(
        &mut self,
        position: usize,
        sample: Sample,
        series_text: impl FnOnce(&MemSeries) -> String,
    ) -> Result<(), StorageError> {
        let value_bits = sample.value.to_bits();
        let held = &mut self.held[position];
        let outcome = match held.newest_in_batch {
            Some((newest_ms, newest_bits)) => check_order(newest_ms, newest_bits, sample.timestamp_ms, value_bits),
            None => held.series.lock().check(sample.timestamp_ms, value_bits),
        };
        let counters = &self.shared.head.counters;
        match outcome {
            SeriesAppend::Appended => {
                held.newest_in_batch = Some((sample.timestamp_ms, value_bits));
                self.samples.push((position, sample.timestamp_ms, sample.value));
                Ok(())
            }
            SeriesAppend::DuplicateIgnored => Ok(()),
            SeriesAppend::OutOfOrder { newest_timestamp_ms } => {
                counters.out_of_order_samples_total.fetch_add(1, Ordering::Relaxed);
                Err(StorageError::OutOfOrderSample {
                    series: series_text(&held.series),
                    timestamp_ms: sample.timestamp_ms,
                    newest_timestamp_ms,
                })
            }
            SeriesAppend::DuplicateDifferentValue => {
                counters.duplicate_samples_total.fetch_add(1, Ordering::Relaxed);
                Err(StorageError::DuplicateSampleForTimestamp {
                    series: series_text(&held.series),
                    timestamp_ms: sample.timestamp_ms,
                })
            }
        }
    }

    fn release(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        for held in self.held.drain(..) {
            held.series.release();
        }
        self.held_by_ref.clear();
        self.samples.clear();
        self.exemplars.clear();
        self.metadata.clear();
        if self.held.capacity() <= MAX_POOLED_ENTRIES
            && self.samples.capacity() <= MAX_POOLED_ENTRIES
            && self.samples_record.capacity() <= MAX_POOLED_ENTRIES * 16
        {
            let buffers = AppenderBuffers {
                held: std::mem::take(&mut self.held),
                samples_record: std::mem::take(&mut self.samples_record),
                held_by_ref: std::mem::take(&mut self.held_by_ref),
                samples: std::mem::take(&mut self.samples),
            };
            let mut pool = lock(&self.shared.appender_buffers);
            if pool.len() < POOLED_BUFFERS {
                pool.push(buffers);
            }
        }
    }

    fn commit_inner(&mut self) -> Result<CommitSummary, StorageError> {
        let shared = Arc::clone(&self.shared);
        shared.last_batch_samples.store(self.samples.len(), Ordering::Relaxed);
        if self.samples.is_empty() && self.exemplars.is_empty() && self.metadata.is_empty() {
            return Ok(CommitSummary { series_created: self.series_created, ..CommitSummary::default() });
        }
        let mut records: Vec<Vec<u8>> = Vec::with_capacity(4);
        let unlogged_labels: Vec<(u64, Vec<u8>)> = self
            .held
            .iter()
            .filter(|held| !held.series.is_logged())
            .map(|held| {
                let mut labels = Vec::new();
                held.series.encode_labels_record(&mut labels);
                (u64::from(held.series.series_ref), labels)
            })
            .collect();
        let unlogged: Vec<(u64, &[u8])> =
            unlogged_labels.iter().map(|(series_ref, labels)| (*series_ref, labels.as_slice())).collect();
        if !unlogged.is_empty() {
            records.push(record::encode_series_encoded(&unlogged));
        }
        let mut batch_min_ms = i64::MAX;
        let mut batch_max_ms = i64::MIN;
        if !self.samples.is_empty() {
            let held = &self.held;
            let samples = self.samples.iter().map(|(position, timestamp_ms, value)| {
                batch_min_ms = batch_min_ms.min(*timestamp_ms);
                batch_max_ms = batch_max_ms.max(*timestamp_ms);
                RefSample {
                    series_ref: u64::from(held[*position].series.series_ref),
                    timestamp_ms: *timestamp_ms,
                    value: *value,
                }
            });
            let mut samples_record = std::mem::take(&mut self.samples_record);
            record::encode_samples_into(&mut samples_record, self.samples.len(), samples);
            records.push(samples_record);
        }
        if !self.exemplars.is_empty() {
            let exemplars: Vec<RefExemplar> = self
                .exemplars
                .iter()
                .map(|(position, exemplar)| RefExemplar {
                    series_ref: u64::from(self.held[*position].series.series_ref),
                    exemplar: exemplar.clone(),
                })
                .collect();
            records.push(record::encode_exemplars(&exemplars));
        }
        let changed_metadata: Vec<(String, MetricMetadata)> = {
            let current = read(&shared.metadata);
            self.metadata.iter().filter(|(family, metadata)| current.get(family) != Some(metadata)).cloned().collect()
        };
        if !changed_metadata.is_empty() {
            records.push(record::encode_metadata(&changed_metadata));
        }

        let gate = read(&shared.commit_gate);
        if shared.closed.load(Ordering::Acquire) {
            return Err(StorageError::Unavailable("tsdb is closed".to_owned()));
        }
        // A block may have been cut since `append` checked: refuse rather than lose samples under it.
        let min_valid_ms = shared.head.min_valid_time_ms();
        if batch_min_ms < min_valid_ms
            && let Some((position, timestamp_ms, _)) =
                self.samples.iter().find(|(_, timestamp_ms, _)| *timestamp_ms < min_valid_ms)
        {
            shared.head.counters.out_of_bounds_samples_total.fetch_add(1, Ordering::Relaxed);
            return Err(StorageError::OutOfBounds {
                series: self.held[*position].series.labels().to_string(),
                timestamp_ms: *timestamp_ms,
                min_valid_timestamp_ms: min_valid_ms,
            });
        }
        let slices: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        let written = shared.wal.append_batch(&slices);
        // Give the samples record's buffer back for the next batch.
        if let Some(position) =
            records.iter().position(|bytes| bytes.first() == Some(&(RecordType::CompactSamples as u8)))
        {
            self.samples_record = records.swap_remove(position);
        }
        if let Err(error) = written {
            shared.counters.commit_failures_total.fetch_add(1, Ordering::Relaxed);
            return Err(StorageError::Io(error.to_string()));
        }

        let chunk_range_ms = shared.head.chunk_range_ms;
        let counters = &shared.head.counters;
        let mut appended = 0u64;
        for (position, timestamp_ms, value) in &self.samples {
            let outcome = self.held[*position].series.lock().append(*timestamp_ms, *value, chunk_range_ms);
            match outcome {
                SeriesAppend::Appended => appended += 1,
                SeriesAppend::DuplicateIgnored => {}
                // Another batch for the same series committed newer samples in between.
                SeriesAppend::OutOfOrder { .. } => {
                    counters.out_of_order_samples_total.fetch_add(1, Ordering::Relaxed);
                }
                SeriesAppend::DuplicateDifferentValue => {
                    counters.duplicate_samples_total.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if batch_min_ms <= batch_max_ms {
            shared.head.observe_time_range(batch_min_ms, batch_max_ms);
        }
        counters.samples_appended_total.fetch_add(appended, Ordering::Relaxed);
        for held in &self.held {
            held.series.mark_logged();
        }
        let exemplar_count = self.exemplars.len() as u64;
        if !self.exemplars.is_empty() {
            let mut storage = lock(&shared.exemplars);
            for (position, exemplar) in self.exemplars.drain(..) {
                storage.add(self.held[position].series.series_ref, exemplar);
            }
        }
        if !changed_metadata.is_empty() {
            let mut current = write(&shared.metadata);
            for (family, metadata) in changed_metadata {
                current.insert(family, metadata);
            }
        }
        drop(gate);
        shared.counters.commits_total.fetch_add(1, Ordering::Relaxed);
        Ok(CommitSummary { samples: appended, exemplars: exemplar_count, series_created: self.series_created })
    }
}

fn validate_labels(labels: &Labels) -> Result<(), StorageError> {
    let invalid = |reason: &str| StorageError::InvalidLabels { series: labels.to_string(), reason: reason.to_owned() };
    if labels.is_empty() {
        return Err(invalid("empty label set"));
    }
    if labels.metric_name().is_none() {
        return Err(invalid("missing metric name"));
    }
    if let Some(name) = labels.first_invalid_name() {
        return Err(invalid(&format!("invalid label name {name:?}")));
    }
    Ok(())
}

impl Appender for TsdbAppender {
    fn append(&mut self, labels: &Labels, sample: Sample) -> Result<(), StorageError> {
        self.check_bounds(sample, || labels.to_string())?;
        let position = self.hold_series(labels)?;
        self.append_at(position, sample, |_| labels.to_string())
    }

    /// Finds an existing series from borrowed labels without allocating; only a new series builds its
    /// [`Labels`] (through [`Appender::append`]).
    fn append_ref(&mut self, labels: &[LabelRef<'_>], sample: Sample) -> Result<(), StorageError> {
        self.check_bounds(sample, || Labels::from_refs(labels).to_string())?;
        let hash = crate::head::label_hash_refs(labels);
        match self.shared.head.get_by_label_refs(labels, hash) {
            Some(series) => {
                let position = self.hold(series);
                self.append_at(position, sample, |_| Labels::from_refs(labels).to_string())
            }
            None => self.append(&Labels::from_refs(labels), sample),
        }
    }

    /// Looks the keys up in the head's series cache (see `series_cache`): one hash of the raw bytes and
    /// one comparison with the stored labels each, in passes over the whole batch.
    fn hold_protobuf_labels_batch(&mut self, keys: &[&[u8]], held: &mut Vec<Option<storage::HeldSeries>>) {
        if self.finished {
            held.extend(keys.iter().map(|_| None));
            return;
        }
        let mut found = Vec::with_capacity(keys.len());
        self.shared.head.series_cache.hold_all(&self.shared.head.by_ref, keys, &mut found);
        for series in found {
            let position = series.and_then(|series| u32::try_from(self.hold(series)).ok());
            held.push(position.map(storage::HeldSeries));
        }
    }

    fn cache_protobuf_labels(&mut self, protobuf_labels: &[u8], labels: &[LabelRef<'_>]) {
        if self.finished {
            return;
        }
        let hash = crate::head::label_hash_refs(labels);
        // Held while it is cached, so garbage collection cannot remove it in between.
        if let Some(series) = self.shared.head.get_by_label_refs(labels, hash) {
            self.shared.head.series_cache.insert(protobuf_labels, &series);
            self.hold(series);
        }
    }

    fn append_held(&mut self, series: storage::HeldSeries, sample: Sample) -> Result<(), StorageError> {
        let position = series.0 as usize;
        let Some(held) = self.held.get(position) else {
            return Err(StorageError::Unavailable(format!("series {position} is not held by this appender")));
        };
        self.check_bounds(sample, || held.series.labels().to_string())?;
        self.append_at(position, sample, |series| series.labels().to_string())
    }

    fn append_exemplar(&mut self, labels: &Labels, exemplar: Exemplar) -> Result<(), StorageError> {
        if self.finished {
            return Err(StorageError::Unavailable("appender already committed or rolled back".to_owned()));
        }
        let position = self.hold_series(labels)?;
        let series_ref = self.held[position].series.series_ref;
        let newest_in_batch =
            self.exemplars.iter().rev().find(|(held, _)| *held == position).map(|(_, exemplar)| exemplar.timestamp_ms);
        let check = match newest_in_batch {
            Some(newest) if exemplar.timestamp_ms < newest => ExemplarCheck::OutOfOrder { newest_timestamp_ms: newest },
            Some(newest) if exemplar.timestamp_ms == newest => ExemplarCheck::Duplicate,
            _ => lock(&self.shared.exemplars).check(series_ref, &exemplar),
        };
        match check {
            ExemplarCheck::Accept => {
                self.exemplars.push((position, exemplar));
                Ok(())
            }
            ExemplarCheck::Duplicate => Ok(()),
            ExemplarCheck::OutOfOrder { newest_timestamp_ms } => Err(StorageError::OutOfOrderSample {
                series: labels.to_string(),
                timestamp_ms: exemplar.timestamp_ms,
                newest_timestamp_ms,
            }),
        }
    }

    fn update_metadata(&mut self, metric_family_name: &str, metadata: MetricMetadata) {
        if let Some(existing) = self.metadata.iter_mut().find(|(family, _)| family == metric_family_name) {
            existing.1 = metadata;
        } else {
            self.metadata.push((metric_family_name.to_owned(), metadata));
        }
    }

    fn commit(mut self: Box<Self>) -> Result<CommitSummary, StorageError> {
        let result = self.commit_inner();
        self.release();
        result
    }

    fn rollback(mut self: Box<Self>) {
        self.release();
    }
}

impl Drop for TsdbAppender {
    fn drop(&mut self) {
        self.release();
    }
}
