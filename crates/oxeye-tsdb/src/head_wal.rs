//! Rebuilding the head from the WAL at startup, and checkpointing the head so old segments can go.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::Ordering;

use oxeye_model::MetricMetadata;
use oxeye_wal::checkpoint::{self, CheckpointWriter};

use crate::TsdbError;
use crate::chunkenc::Encoding;
use crate::db::{Shared, lock, read, write};
use crate::exemplars::ExemplarStorage;
use crate::head::{Head, MemSeries, MixBuildHasher, resolve_chunks};
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

/// Work for a replay worker. Everything about one series (its definition, chunks and samples) goes to
/// the same worker, in WAL order, so workers never need each other's results.
enum Work {
    Series { series_ref: u64, labels_encoded: Box<[u8]> },
    Sample { series_ref: u64, timestamp_ms: i64, value: f64 },
    Chunks { series_ref: u64, chunks: Vec<(Encoding, i64, i64, Vec<u8>)> },
}

const REPLAY_BATCH: usize = 8192;
/// Work items whose series a replay worker loads together before applying them.
const PREFETCH_GROUP: usize = 16;

/// What one replay worker did.
#[derive(Debug)]
struct WorkerOutcome {
    min_time_ms: i64,
    max_time_ms: i64,
    unknown_series_refs: u64,
    damaged: u64,
    /// WAL references whose labels belong to a head series with another reference.
    aliases: Vec<(u64, u32)>,
}

/// A replay worker's series by WAL reference. References are allocated one after another, so most fall
/// in a dense range: a vector indexed by `reference / shards` (one pointer per slot, no hashing, and
/// neighbouring references in neighbouring slots) up to [`SeriesTable::DENSE_SLOTS`], a map beyond.
struct SeriesTable {
    shards: u64,
    dense: Vec<Option<MemSeries>>,
    sparse: HashMap<u64, MemSeries, MixBuildHasher>,
}

impl SeriesTable {
    /// 4 Mi slots (32 MiB) per worker at most: 8M series with two workers before the map takes over.
    const DENSE_SLOTS: u64 = 1 << 22;

    fn new(shards: usize) -> Self {
        SeriesTable { shards: shards.max(1) as u64, dense: Vec::new(), sparse: HashMap::default() }
    }

    fn get(&self, series_ref: u64) -> Option<&MemSeries> {
        let slot = series_ref / self.shards;
        if slot < Self::DENSE_SLOTS { self.dense.get(slot as usize)?.as_ref() } else { self.sparse.get(&series_ref) }
    }

    /// The series of `series_ref`: this worker's own, else the head's (a series a checkpoint or an
    /// earlier segment created under that reference), remembered.
    fn resolve(&mut self, head: &Head, series_ref: u64) -> Option<&MemSeries> {
        if self.get(series_ref).is_none() {
            let series = u32::try_from(series_ref).ok().and_then(|series_ref| head.get_by_ref(series_ref))?;
            self.insert(series_ref, series);
        }
        self.get(series_ref)
    }

    fn insert(&mut self, series_ref: u64, series: MemSeries) {
        let slot = series_ref / self.shards;
        if slot < Self::DENSE_SLOTS {
            let slot = slot as usize;
            if slot >= self.dense.len() {
                self.dense.resize(slot + 1, None);
            }
            self.dense[slot] = Some(series);
        } else {
            self.sparse.insert(series_ref, series);
        }
    }
}

/// Creates series, restores chunks and appends samples for one shard of series references.
fn replay_worker(head: &Head, shards: usize, batches: std::sync::mpsc::Receiver<Vec<Work>>) -> WorkerOutcome {
    let chunk_range_ms = head.chunk_range_ms;
    let mut outcome = WorkerOutcome {
        min_time_ms: i64::MAX,
        max_time_ms: i64::MIN,
        unknown_series_refs: 0,
        damaged: 0,
        aliases: Vec::new(),
    };
    let mut series_by_ref = SeriesTable::new(shards);
    for mut batch in batches {
        for group in batch.chunks_mut(PREFETCH_GROUP) {
            // At 1M series nearly every sample's series is out of the CPU caches, and locking it is one
            // full memory latency. Plain loads of the whole group's series first (independent, so the
            // CPU overlaps them) bring them in together; the locks below then hit the cache.
            for work in group.iter() {
                if let Work::Sample { series_ref, .. } = work
                    && let Some(series) = series_by_ref.get(*series_ref)
                {
                    series.touch();
                }
            }
            for work in group.iter_mut() {
                apply_work(head, chunk_range_ms, &mut series_by_ref, &mut outcome, work);
            }
        }
    }
    outcome
}

/// Applies one work item of a replay worker: creates a series, appends a sample or restores checkpointed
/// chunks, recording what it did in `outcome`.
fn apply_work(
    head: &Head,
    chunk_range_ms: i64,
    series_by_ref: &mut SeriesTable,
    outcome: &mut WorkerOutcome,
    work: &mut Work,
) {
    match work {
        Work::Series { series_ref, labels_encoded } => {
            let series_ref = *series_ref;
            let mut decoder = crate::encoding::Decoder::new(labels_encoded);
            let Ok((_, pairs)) = record::decode_label_pairs(&mut decoder, labels_encoded) else {
                outcome.damaged += 1;
                return;
            };
            let fixed_ref = u32::try_from(series_ref).ok();
            let Ok(series) = head.get_or_create_encoded(&pairs, fixed_ref) else {
                return;
            };
            series.mark_logged();
            if u64::from(series.series_ref) != series_ref {
                outcome.aliases.push((series_ref, series.series_ref));
            }
            series_by_ref.insert(series_ref, series);
        }
        Work::Sample { series_ref, timestamp_ms, value } => {
            let (series_ref, timestamp_ms, value) = (*series_ref, *timestamp_ms, *value);
            let Some(series) = series_by_ref.resolve(head, series_ref) else {
                outcome.unknown_series_refs += 1;
                return;
            };
            if series.lock().append(timestamp_ms, value, chunk_range_ms) == crate::head::SeriesAppend::Appended {
                outcome.min_time_ms = outcome.min_time_ms.min(timestamp_ms);
                outcome.max_time_ms = outcome.max_time_ms.max(timestamp_ms);
            }
        }
        Work::Chunks { series_ref, chunks } => {
            let (series_ref, chunks) = (*series_ref, std::mem::take(chunks));
            let Some(series) = series_by_ref.resolve(head, series_ref) else {
                outcome.unknown_series_refs += 1;
                return;
            };
            let range = chunks.first().map(|first| first.1).zip(chunks.last().map(|last| last.2));
            match series.lock().restore_chunks(chunks) {
                Ok(()) => {
                    if let Some((mint_ms, maxt_ms)) = range {
                        outcome.min_time_ms = outcome.min_time_ms.min(mint_ms);
                        outcome.max_time_ms = outcome.max_time_ms.max(maxt_ms);
                    }
                }
                Err(error) => {
                    tracing::warn!(series_ref, %error, "skipping damaged chunk in wal checkpoint");
                    outcome.damaged += 1;
                }
            }
        }
    }
}

/// Decodes records on the calling thread and hands series work to the workers.
struct Replayer<'a> {
    min_valid_ms: i64,
    senders: Vec<std::sync::mpsc::SyncSender<Vec<Work>>>,
    buffers: Vec<Vec<Work>>,
    pending_exemplars: Vec<RefExemplar>,
    metadata: &'a mut BTreeMap<String, MetricMetadata>,
    outcome: ReplayOutcome,
}

impl Replayer<'_> {
    fn push(&mut self, series_ref: u64, work: Work) {
        let shard = (series_ref % self.buffers.len() as u64) as usize;
        let buffer = &mut self.buffers[shard];
        buffer.push(work);
        if buffer.len() >= REPLAY_BATCH {
            let full = std::mem::replace(buffer, Vec::with_capacity(REPLAY_BATCH));
            // A worker only stops early if it panicked; the join reports that.
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
        let min_valid_ms = self.min_valid_ms;
        match record {
            Record::Series(series) => {
                for entry in series {
                    let work =
                        Work::Series { series_ref: entry.series_ref, labels_encoded: entry.labels_encoded.into() };
                    self.push(entry.series_ref, work);
                }
            }
            Record::Samples(samples) => {
                for sample in samples {
                    if sample.timestamp_ms >= min_valid_ms {
                        let work = Work::Sample {
                            series_ref: sample.series_ref,
                            timestamp_ms: sample.timestamp_ms,
                            value: sample.value,
                        };
                        self.push(sample.series_ref, work);
                    }
                }
            }
            Record::Exemplars(exemplars) => self.pending_exemplars.extend(exemplars),
            Record::Metadata(entries) => {
                for (family, metadata) in entries {
                    self.metadata.insert(family, metadata);
                }
            }
            Record::SeriesChunks { series_ref, chunks } => {
                let chunks: Vec<_> = chunks
                    .into_iter()
                    .filter(|chunk| chunk.maxt_ms >= min_valid_ms)
                    .map(|chunk| (chunk.encoding, chunk.mint_ms, chunk.maxt_ms, chunk.bytes.to_vec()))
                    .collect();
                if !chunks.is_empty() {
                    self.push(series_ref, Work::Chunks { series_ref, chunks });
                }
            }
        }
        Ok(())
    }
}

/// Replays the newest checkpoint and the segments after it into `head`: records are decoded on the
/// calling thread and applied by one worker per core, sharded by series reference.
pub(crate) fn replay(
    wal_dir: &Path,
    head: &Head,
    exemplars: &mut ExemplarStorage,
    metadata: &mut BTreeMap<String, MetricMetadata>,
) -> Result<ReplayOutcome, TsdbError> {
    checkpoint::remove_temporary_checkpoints(wal_dir)?;
    let workers = std::thread::available_parallelism().map(usize::from).unwrap_or(1).clamp(1, 8);
    std::thread::scope(|scope| {
        let mut senders = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (sender, receiver) = std::sync::mpsc::sync_channel::<Vec<Work>>(4);
            senders.push(sender);
            handles.push(scope.spawn(move || replay_worker(head, workers, receiver)));
        }
        let mut replayer = Replayer {
            min_valid_ms: head.min_valid_time_ms(),
            senders,
            buffers: (0..workers).map(|_| Vec::new()).collect(),
            pending_exemplars: Vec::new(),
            metadata,
            outcome: ReplayOutcome::default(),
        };
        let read_result = read_all(wal_dir, &mut replayer);
        replayer.flush();
        // Closing the channels lets the workers finish.
        replayer.senders.clear();
        let (mut min_time_ms, mut max_time_ms) = (i64::MAX, i64::MIN);
        let mut aliases: HashMap<u64, u32, MixBuildHasher> = HashMap::default();
        for handle in handles {
            let Ok(worker) = handle.join() else {
                return Err(TsdbError::corrupt(wal_dir, "a wal replay worker panicked"));
            };
            min_time_ms = min_time_ms.min(worker.min_time_ms);
            max_time_ms = max_time_ms.max(worker.max_time_ms);
            replayer.outcome.unknown_series_refs += worker.unknown_series_refs;
            replayer.outcome.undecodable_records += worker.damaged;
            aliases.extend(worker.aliases);
        }
        read_result?;
        head.index_unindexed_postings();
        for RefExemplar { series_ref, exemplar } in std::mem::take(&mut replayer.pending_exemplars) {
            let head_ref = aliases.get(&series_ref).copied().or_else(|| u32::try_from(series_ref).ok());
            if let Some(series) = head_ref.and_then(|head_ref| head.get_by_ref(head_ref)) {
                exemplars.add(series.series_ref, exemplar);
            }
        }
        if replayer.outcome.unknown_series_refs > 0 {
            tracing::warn!(count = replayer.outcome.unknown_series_refs, "wal records referenced unknown series");
        }
        if min_time_ms <= max_time_ms {
            head.observe_time_range(min_time_ms.max(replayer.min_valid_ms), max_time_ms);
        }
        Ok(replayer.outcome)
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
    let started = std::time::Instant::now();
    let wal_dir = shared.wal_dir();
    let mut writer = CheckpointWriter::create(&wal_dir, through)?;
    let mut group = Vec::with_capacity(CHECKPOINT_SERIES_PER_RECORD);
    let mut series_written = 0u64;
    for series in shared.head.series_in_stripes().flatten() {
        series_written += 1;
        group.push(series);
        if group.len() == CHECKPOINT_SERIES_PER_RECORD {
            write_checkpoint_group(shared, &mut writer, &group)?;
            group.clear();
        }
    }
    write_checkpoint_group(shared, &mut writer, &group)?;
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
    let checkpoint_dir = writer.finish()?;
    shared.wal.truncate_before(new_segment)?;
    shared.counters.checkpoints_total.fetch_add(1, Ordering::Relaxed);
    // When it ran and for how long: a checkpoint rewrites the whole head, so it shows in CPU and memory.
    tracing::info!(
        checkpoint = %checkpoint_dir.display(),
        series = series_written,
        seconds = started.elapsed().as_secs_f64(),
        "wal checkpoint written"
    );
    Ok(())
}

/// Writes one group of series to a checkpoint: their series record, then one chunks record per series
/// with chunks.
fn write_checkpoint_group(
    shared: &Shared,
    writer: &mut CheckpointWriter,
    group: &[MemSeries],
) -> Result<(), TsdbError> {
    if group.is_empty() {
        return Ok(());
    }
    let encoded: Vec<Vec<u8>> = group
        .iter()
        .map(|series| {
            let mut labels = Vec::new();
            series.encode_labels_record(&mut labels);
            labels
        })
        .collect();
    let references: Vec<(u64, &[u8])> =
        group.iter().zip(&encoded).map(|(series, labels)| (u64::from(series.series_ref), labels.as_slice())).collect();
    writer.append(record::encode_series_encoded(&references))?;
    let mut counts = Vec::with_capacity(group.len());
    let mut pending = Vec::new();
    for series in group {
        let chunks = series.lock().pending_chunks(i64::MIN, i64::MAX);
        counts.push(chunks.len());
        pending.extend(chunks);
    }
    let mut chunks = resolve_chunks(pending, &shared.head_chunks)?.into_iter();
    for (series, count) in group.iter().zip(counts) {
        if count == 0 {
            continue;
        }
        let owned: Vec<_> = chunks.by_ref().take(count).collect();
        let references: Vec<RefChunk<'_>> = owned
            .iter()
            .map(|(encoding, mint_ms, maxt_ms, bytes)| RefChunk {
                encoding: *encoding,
                mint_ms: *mint_ms,
                maxt_ms: *maxt_ms,
                bytes,
            })
            .collect();
        writer.append(record::encode_series_chunks(u64::from(series.series_ref), &references))?;
    }
    Ok(())
}
