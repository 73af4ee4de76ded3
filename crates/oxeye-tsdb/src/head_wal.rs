//! Rebuilding the head from the WAL at startup, and checkpointing the head so old segments can go.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use oxeye_model::MetricMetadata;
use oxeye_wal::checkpoint::{self, CheckpointWriter};

use crate::TsdbError;
use crate::db::{Shared, lock, read, write};
use crate::exemplars::ExemplarStorage;
use crate::head::{Head, MemSeries, MixBuildHasher};
use crate::record::{self, Record, RefChunk, RefExemplar};

/// Series per series record in a checkpoint.
const CHECKPOINT_SERIES_PER_RECORD: usize = 1000;

/// What replay found.
#[derive(Debug, Default)]
pub(crate) struct ReplayOutcome {
    pub(crate) records: u64,
    pub(crate) checkpoint_through_segment: Option<u64>,
    pub(crate) unknown_series_refs: u64,
    pub(crate) undecodable_records: u64,
}

/// Samples handed to a replay worker: all samples of a series go to the same worker, in WAL order.
type SampleBatch = Vec<(Arc<MemSeries>, i64, f64)>;
const REPLAY_BATCH_SAMPLES: usize = 8192;

/// Applies samples on worker threads, sharded by series reference.
struct ReplayShards {
    senders: Vec<std::sync::mpsc::SyncSender<SampleBatch>>,
    buffers: Vec<SampleBatch>,
}

impl ReplayShards {
    fn push(&mut self, series: Arc<MemSeries>, timestamp_ms: i64, value: f64) {
        let shard = series.series_ref as usize % self.buffers.len();
        let buffer = &mut self.buffers[shard];
        buffer.push((series, timestamp_ms, value));
        if buffer.len() >= REPLAY_BATCH_SAMPLES {
            let full = std::mem::replace(buffer, Vec::with_capacity(REPLAY_BATCH_SAMPLES));
            // A worker only stops early if it panicked; the join below reports that.
            let _ = self.senders[shard].send(full);
        }
    }

    fn flush(&mut self) {
        for (buffer, sender) in self.buffers.iter_mut().zip(&self.senders) {
            if !buffer.is_empty() {
                let _ = sender.send(std::mem::take(buffer));
            }
        }
    }
}

/// Appends replayed samples; returns the time range of the samples appended.
fn apply_samples(batches: std::sync::mpsc::Receiver<SampleBatch>, chunk_range_ms: i64) -> (i64, i64) {
    let (mut min_time_ms, mut max_time_ms) = (i64::MAX, i64::MIN);
    for batch in batches {
        for (series, timestamp_ms, value) in batch {
            if series.lock().append(timestamp_ms, value, chunk_range_ms) == crate::head::SeriesAppend::Appended {
                min_time_ms = min_time_ms.min(timestamp_ms);
                max_time_ms = max_time_ms.max(timestamp_ms);
            }
        }
    }
    (min_time_ms, max_time_ms)
}

struct Replayer<'a> {
    head: &'a Head,
    shards: ReplayShards,
    exemplars: &'a mut ExemplarStorage,
    metadata: &'a mut BTreeMap<String, MetricMetadata>,
    /// Every reference seen in a series record, to the head series now holding those labels.
    series_by_ref: HashMap<u64, Arc<MemSeries>, MixBuildHasher>,
    outcome: ReplayOutcome,
    min_time_ms: i64,
    max_time_ms: i64,
}

impl Replayer<'_> {
    fn series(&mut self, series_ref: u64) -> Option<Arc<MemSeries>> {
        if let Some(series) = self.series_by_ref.get(&series_ref) {
            return Some(Arc::clone(series));
        }
        let series = u32::try_from(series_ref).ok().and_then(|series_ref| self.head.get_by_ref(series_ref));
        if series.is_none() {
            self.outcome.unknown_series_refs += 1;
        }
        series
    }

    fn apply(&mut self, bytes: &[u8]) -> Result<(), TsdbError> {
        self.outcome.records += 1;
        let record = match record::decode(bytes) {
            Ok(record) => record,
            Err(error) => {
                // The frame's checksum passed, so this is a bug or a newer format: skip it, loudly.
                tracing::warn!(%error, "skipping undecodable wal record");
                self.outcome.undecodable_records += 1;
                return Ok(());
            }
        };
        let min_valid_ms = self.head.min_valid_time_ms();
        match record {
            Record::Series(series) => {
                for entry in series {
                    let fixed_ref = u32::try_from(entry.series_ref).ok();
                    let created = self.head.get_or_create_encoded(entry.labels_encoded, &entry.pairs, fixed_ref);
                    let Ok(series) = created else { continue };
                    series.logged.store(true, Ordering::Release);
                    self.series_by_ref.insert(entry.series_ref, series);
                }
            }
            Record::Samples(samples) => {
                for sample in samples {
                    if sample.timestamp_ms < min_valid_ms {
                        continue;
                    }
                    let Some(series) = self.series(sample.series_ref) else { continue };
                    self.shards.push(series, sample.timestamp_ms, sample.value);
                }
            }
            Record::Exemplars(exemplars) => {
                for RefExemplar { series_ref, exemplar } in exemplars {
                    let Some(series) = self.series(series_ref) else { continue };
                    self.exemplars.add(series.series_ref, exemplar);
                }
            }
            Record::Metadata(entries) => {
                for (family, metadata) in entries {
                    self.metadata.insert(family, metadata);
                }
            }
            Record::SeriesChunks { series_ref, chunks } => {
                let Some(series) = self.series(series_ref) else { return Ok(()) };
                let chunks: Vec<_> = chunks
                    .into_iter()
                    .filter(|chunk| chunk.maxt_ms >= min_valid_ms)
                    .map(|chunk| (chunk.encoding, chunk.mint_ms, chunk.maxt_ms, chunk.bytes.to_vec()))
                    .collect();
                if let (Some(first), Some(last)) = (chunks.first(), chunks.last()) {
                    self.min_time_ms = self.min_time_ms.min(first.1.max(min_valid_ms));
                    self.max_time_ms = self.max_time_ms.max(last.2);
                }
                let restored = series.lock().restore_chunks(chunks);
                if let Err(error) = restored {
                    tracing::warn!(series_ref, %error, "skipping damaged chunk in wal checkpoint");
                    self.outcome.undecodable_records += 1;
                }
            }
        }
        Ok(())
    }
}

/// Replays the newest checkpoint and the segments after it into `head`.
pub(crate) fn replay(
    wal_dir: &Path,
    head: &Head,
    exemplars: &mut ExemplarStorage,
    metadata: &mut BTreeMap<String, MetricMetadata>,
) -> Result<ReplayOutcome, TsdbError> {
    checkpoint::remove_temporary_checkpoints(wal_dir)?;
    let workers = std::thread::available_parallelism().map(usize::from).unwrap_or(1).clamp(1, 8);
    let chunk_range_ms = head.chunk_range_ms;
    std::thread::scope(|scope| {
        let mut senders = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (sender, receiver) = std::sync::mpsc::sync_channel::<SampleBatch>(4);
            senders.push(sender);
            handles.push(scope.spawn(move || apply_samples(receiver, chunk_range_ms)));
        }
        let mut replayer = Replayer {
            head,
            shards: ReplayShards { senders, buffers: (0..workers).map(|_| Vec::new()).collect() },
            exemplars,
            metadata,
            series_by_ref: HashMap::default(),
            outcome: ReplayOutcome::default(),
            min_time_ms: i64::MAX,
            max_time_ms: i64::MIN,
        };
        let read_result = read_all(wal_dir, &mut replayer);
        replayer.shards.flush();
        // Closing the channels lets the workers finish.
        replayer.shards.senders.clear();
        for handle in handles {
            match handle.join() {
                Ok((min_time_ms, max_time_ms)) => {
                    replayer.min_time_ms = replayer.min_time_ms.min(min_time_ms);
                    replayer.max_time_ms = replayer.max_time_ms.max(max_time_ms);
                }
                Err(_) => return Err(TsdbError::corrupt(wal_dir, "a wal replay worker panicked")),
            }
        }
        read_result?;
        finish_replay(head, replayer)
    })
}

fn read_all(wal_dir: &Path, replayer: &mut Replayer<'_>) -> Result<(), TsdbError> {
    let mut first_segment = 0;
    if let Some((through, checkpoint_dir)) = checkpoint::last_checkpoint(wal_dir)? {
        oxeye_wal::replay::<TsdbError>(&checkpoint_dir, 0, |bytes| replayer.apply(bytes))?;
        replayer.outcome.checkpoint_through_segment = Some(through);
        first_segment = through + 1;
    }
    let summary = oxeye_wal::replay::<TsdbError>(wal_dir, first_segment, |bytes| replayer.apply(bytes))?;
    if let Some(torn) = &summary.torn_tail {
        tracing::warn!(path = %torn.path.display(), offset = torn.offset, "wal tail was torn; unacknowledged records dropped");
    }
    Ok(())
}

fn finish_replay(head: &Head, replayer: Replayer<'_>) -> Result<ReplayOutcome, TsdbError> {
    if replayer.outcome.unknown_series_refs > 0 {
        tracing::warn!(count = replayer.outcome.unknown_series_refs, "wal records referenced unknown series");
    }
    if replayer.min_time_ms <= replayer.max_time_ms {
        head.observe_time_range(replayer.min_time_ms, replayer.max_time_ms);
    }
    Ok(replayer.outcome)
}

/// Writes a checkpoint of the whole head (series, chunks, exemplars, metadata) covering every WAL segment
/// before a fresh one, then deletes those segments.
pub(crate) fn checkpoint(shared: &Shared) -> Result<(), TsdbError> {
    let new_segment = {
        // No commit may sit between its WAL write and its head update while segments are split.
        let _gate = write(&shared.commit_gate);
        shared.wal_bytes_at_checkpoint.store(shared.wal.stats().bytes_written_total, Ordering::Relaxed);
        shared.wal.rotate()?
    };
    let Some(through) = new_segment.checked_sub(1) else { return Ok(()) };
    let wal_dir = shared.wal_dir();
    let mut writer = CheckpointWriter::create(&wal_dir, through)?;
    let all_series = shared.head.all_series();
    for group in all_series.chunks(CHECKPOINT_SERIES_PER_RECORD) {
        let references: Vec<(u64, &[u8])> =
            group.iter().map(|series| (u64::from(series.series_ref), series.labels_encoded())).collect();
        writer.append(record::encode_series_encoded(&references))?;
        for series in group {
            let record = {
                let state = series.lock();
                let chunks: Vec<RefChunk<'_>> = state
                    .chunks()
                    .map(|(encoding, mint_ms, maxt_ms, bytes)| RefChunk { encoding, mint_ms, maxt_ms, bytes })
                    .collect();
                if chunks.is_empty() {
                    continue;
                }
                record::encode_series_chunks(u64::from(series.series_ref), &chunks)
            };
            writer.append(record)?;
        }
    }
    let exemplars: Vec<RefExemplar> = lock(&shared.exemplars)
        .iter()
        .map(|(series_ref, exemplar)| RefExemplar { series_ref: u64::from(*series_ref), exemplar: exemplar.clone() })
        .collect();
    for group in exemplars.chunks(10_000) {
        writer.append(record::encode_exemplars(group))?;
    }
    let metadata: Vec<(String, MetricMetadata)> =
        read(&shared.metadata).iter().map(|(family, metadata)| (family.clone(), metadata.clone())).collect();
    if !metadata.is_empty() {
        writer.append(record::encode_metadata(&metadata))?;
    }
    writer.finish()?;
    shared.wal.truncate_before(new_segment)?;
    shared.counters.checkpoints_total.fetch_add(1, Ordering::Relaxed);
    Ok(())
}
