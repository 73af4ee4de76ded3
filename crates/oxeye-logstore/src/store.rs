//! The log store: streams in memory (heads and cut chunks), chunk files on disk, the WAL, flushing and
//! retention.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use oxeye_model::Labels;
use oxeye_model::logs::{LineFieldExtractor, LogEntry, LogPushSummary, LogStream, LogWriter};
use oxeye_model::storage::StorageError;
use oxeye_wal::{Wal, WalOptions};

use crate::chunk::SealedChunk;
use crate::chunk_file::{ChunkFile, chunk_file_name, parse_chunk_file_name, write_chunk_file};
use crate::record::{decode_entries_record, encode_entries_record};
use crate::{LineTooLongPolicy, LogStoreError, LogStoreOptions};

mod postings;
mod read;

/// Checkpoint records are cut at about this size.
const CHECKPOINT_RECORD_BYTES: usize = 8 << 20;

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_nanos()).unwrap_or(i64::MAX))
}

/// Formats nanoseconds since the epoch as RFC 3339 in UTC with whole seconds (`2026-11-23T07:02:14Z`), as
/// Loki's refusal messages print timestamps.
pub(crate) fn format_rfc3339(timestamp_ns: i64) -> String {
    let seconds = timestamp_ns.div_euclid(1_000_000_000);
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian), after Howard Hinnant's algorithm.
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

fn read_lock<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write_lock<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Debug, Clone)]
struct StoredChunk {
    file: Arc<ChunkFile>,
    index: usize,
}

#[derive(Debug)]
struct StreamState {
    labels: Labels,
    /// Entries not yet cut, sorted by timestamp.
    head: Vec<LogEntry>,
    head_line_bytes: usize,
    /// Wall clock (ns) of the first append into the current head, and of the latest append.
    head_started_ns: i64,
    last_append_ns: i64,
    /// Cut chunks not yet written to a file.
    sealed: Vec<Arc<SealedChunk>>,
    stored: Vec<StoredChunk>,
    /// Newest entry timestamp ever accepted, for the out-of-order window.
    newest_ns: i64,
    min_ns: i64,
    max_ns: i64,
}

impl StreamState {
    fn new(labels: Labels) -> Self {
        StreamState {
            labels,
            head: Vec::new(),
            head_line_bytes: 0,
            head_started_ns: 0,
            last_append_ns: 0,
            sealed: Vec::new(),
            stored: Vec::new(),
            newest_ns: i64::MIN,
            min_ns: i64::MAX,
            max_ns: i64::MIN,
        }
    }

    fn overlaps(&self, start_ns: i64, end_ns: i64) -> bool {
        self.min_ns < end_ns && self.max_ns >= start_ns
    }

    fn is_head_duplicate(&self, entry: &LogEntry) -> bool {
        let position = self.head.partition_point(|existing| existing.timestamp_ns < entry.timestamp_ns);
        self.head[position..]
            .iter()
            .take_while(|existing| existing.timestamp_ns == entry.timestamp_ns)
            .any(|existing| existing.line == entry.line)
    }

    /// Inserts in timestamp order (after equal timestamps); false for a duplicate.
    fn insert(&mut self, entry: LogEntry, wall_ns: i64) -> bool {
        // Entries mostly come in order: one newer than the whole head is no duplicate and goes last,
        // without the two binary searches (each a chain of cache misses over a head of thousands).
        let newest_in_head = self.head.last().is_none_or(|last| last.timestamp_ns < entry.timestamp_ns);
        if !newest_in_head && self.is_head_duplicate(&entry) {
            return false;
        }
        if self.head.is_empty() {
            self.head_started_ns = wall_ns;
        }
        self.last_append_ns = wall_ns;
        self.newest_ns = self.newest_ns.max(entry.timestamp_ns);
        self.min_ns = self.min_ns.min(entry.timestamp_ns);
        self.max_ns = self.max_ns.max(entry.timestamp_ns);
        self.head_line_bytes += entry.line.len();
        let position = if newest_in_head {
            self.head.len()
        } else {
            self.head.partition_point(|existing| existing.timestamp_ns <= entry.timestamp_ns)
        };
        if position == self.head.len() {
            self.head.push(entry);
        } else {
            self.head.insert(position, entry);
        }
        true
    }

    /// Seals the head into a chunk, with field columns of `fields` when given.
    fn cut_head(&mut self, fields: Option<&dyn LineFieldExtractor>) {
        if self.head.is_empty() {
            return;
        }
        let chunk = SealedChunk::seal_with_fields(&self.head, fields);
        self.sealed.push(Arc::new(chunk));
        self.head.clear();
        self.head_line_bytes = 0;
    }
}

#[derive(Debug, Default)]
struct Inner {
    streams: Vec<StreamState>,
    by_labels: HashMap<Labels, usize>,
    files: Vec<Arc<ChunkFile>>,
    next_file_sequence: u64,
    /// Label name -> value -> stream ids, for selection and label lookups (`store/read.rs`).
    postings: postings::Postings,
}

impl Inner {
    fn stream_index(&mut self, labels: &Labels) -> usize {
        if let Some(index) = self.by_labels.get(labels) {
            return *index;
        }
        let index = self.streams.len();
        self.streams.push(StreamState::new(labels.clone()));
        self.by_labels.insert(labels.clone(), index);
        self.postings.add(labels, u32::try_from(index).unwrap_or(u32::MAX));
        index
    }
}

#[derive(Debug, Default)]
struct Counters {
    entries_accepted_total: AtomicU64,
    duplicates_total: AtomicU64,
    rejected_too_old_total: AtomicU64,
    rejected_too_long_total: AtomicU64,
    truncated_total: AtomicU64,
    rejected_invalid_total: AtomicU64,
    chunks_read_total: AtomicU64,
    chunks_skipped_total: AtomicU64,
    chunk_bytes_read_total: AtomicU64,
    flushes_total: AtomicU64,
    chunk_files_deleted_total: AtomicU64,
}

/// A snapshot of the store's counters and sizes, for self-monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStoreStats {
    /// Streams known.
    pub streams: u64,
    /// Entries in heads (not yet cut).
    pub head_entries: u64,
    /// Bytes of lines in heads (not yet cut).
    pub head_line_bytes: u64,
    /// Cut chunks, in memory awaiting a flush or in chunk files.
    pub chunks: u64,
    /// Chunk files on disk.
    pub chunk_files: u64,
    /// Bytes of chunk files on disk.
    pub chunk_file_bytes: u64,
    /// Entries stored since start.
    pub entries_accepted_total: u64,
    /// Duplicate entries dropped since start.
    pub duplicates_total: u64,
    /// Entries refused as too old (retention or out-of-order window).
    pub rejected_too_old_total: u64,
    /// Entries refused for a line over the maximum.
    pub rejected_too_long_total: u64,
    /// Entries stored with a truncated line.
    pub truncated_total: u64,
    /// Entries refused for invalid stream labels.
    pub rejected_invalid_total: u64,
    /// Chunks decompressed by queries.
    pub chunks_read_total: u64,
    /// Chunks skipped by queries thanks to their bloom filter.
    pub chunks_skipped_total: u64,
    /// Compressed chunk bytes read from disk by queries (bloom filters included).
    pub chunk_bytes_read_total: u64,
    /// Completed flushes.
    pub flushes_total: u64,
    /// Chunk files deleted by retention.
    pub chunk_files_deleted_total: u64,
}

/// What [`LogStore::flush`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Chunks written to a new chunk file.
    pub chunks_written: u64,
    /// Entries kept in heads and written to the WAL checkpoint.
    pub checkpointed_entries: u64,
    /// Chunk files deleted by retention.
    pub files_deleted: u64,
}

/// The log store. `Send + Sync`; share it with `Arc`.
///
/// Writes go to the WAL (group commit) and then into the stream's head; a head becomes a compressed
/// chunk when it reaches the target size, or at a flush once it is old or idle. Flushes write the cut
/// chunks into one chunk file, then checkpoint the heads and drop older WAL segments.
pub struct LogStore {
    options: LogStoreOptions,
    wal: Wal,
    wal_dir: PathBuf,
    chunks_dir: PathBuf,
    inner: RwLock<Inner>,
    /// Pushes hold it shared from WAL append to head insert; a flush holds it exclusively while it
    /// rotates the WAL and snapshots the heads, so the checkpoint and the new segments never both miss
    /// an entry.
    append_gate: RwLock<()>,
    flush_lock: Mutex<()>,
    counters: Counters,
    closed: AtomicBool,
    wal_dirty: AtomicBool,
    stop: Arc<(Mutex<bool>, Condvar)>,
    maintenance: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("LogStore").field("dir", &self.options.dir).finish_non_exhaustive()
    }
}

impl LogStore {
    /// Opens (or creates) the store in `options.dir`: loads the chunk files' indexes, replays the WAL
    /// checkpoint and segments into heads, then opens the WAL for writing. Starts the maintenance thread
    /// when `options.background_maintenance` is set.
    ///
    /// # Errors
    /// [`LogStoreError::InvalidOption`], [`LogStoreError::Io`], [`LogStoreError::Corrupt`] (a damaged chunk
    /// file or WAL record), [`LogStoreError::Wal`].
    pub fn open(options: LogStoreOptions) -> Result<Arc<LogStore>, LogStoreError> {
        options.validate()?;
        let wal_dir = options.dir.join("wal");
        let chunks_dir = options.dir.join("chunks");
        std::fs::create_dir_all(&chunks_dir).map_err(|error| LogStoreError::io(&chunks_dir, "create", error))?;
        let cutoff_ns = now_ns().saturating_sub(options.retention_ms.saturating_mul(1_000_000));
        let mut inner = Inner::default();
        load_chunk_files(&chunks_dir, cutoff_ns, &mut inner)?;
        oxeye_wal::checkpoint::remove_temporary_checkpoints(&wal_dir)?;
        let mut replay_into = |record: &[u8]| -> Result<(), LogStoreError> {
            let streams = decode_entries_record(record)
                .map_err(|(offset, reason)| LogStoreError::corrupt("wal", offset as u64, reason))?;
            let wall_ns = now_ns();
            for stream in streams {
                let index = inner.stream_index(&stream.labels);
                let state = &mut inner.streams[index];
                for entry in stream.entries {
                    if entry.timestamp_ns >= cutoff_ns {
                        state.insert(entry, wall_ns);
                    }
                    if state.head_line_bytes >= options.chunk_target_bytes {
                        state.cut_head(options.line_fields.as_deref());
                    }
                }
            }
            Ok(())
        };
        let mut first_segment = 0;
        if let Some((through, checkpoint_dir)) = oxeye_wal::checkpoint::last_checkpoint(&wal_dir)? {
            oxeye_wal::replay(&checkpoint_dir, 0, &mut replay_into)?;
            first_segment = through + 1;
        }
        let replayed = oxeye_wal::replay(&wal_dir, first_segment, &mut replay_into)?;
        if let Some(torn) = &replayed.torn_tail {
            tracing::warn!(path = %torn.path.display(), offset = torn.offset, "log WAL tail was torn and cut off");
        }
        let wal = Wal::open(WalOptions::new(&wal_dir))?;
        let store = Arc::new(LogStore {
            options,
            wal,
            wal_dir,
            chunks_dir,
            inner: RwLock::new(inner),
            append_gate: RwLock::new(()),
            flush_lock: Mutex::new(()),
            counters: Counters::default(),
            closed: AtomicBool::new(false),
            // The first flush always checkpoints, so a replayed checkpoint is replaced.
            wal_dirty: AtomicBool::new(true),
            stop: Arc::new((Mutex::new(false), Condvar::new())),
            maintenance: Mutex::new(None),
        });
        if store.options.background_maintenance {
            let weak = Arc::downgrade(&store);
            let stop = store.stop.clone();
            let interval = store.options.flush_interval;
            let handle = std::thread::Builder::new()
                .name("oxeye-logstore-maintenance".into())
                .spawn(move || maintenance_loop(weak, stop, interval))
                .map_err(|error| LogStoreError::io("oxeye-logstore-maintenance", "spawn thread", error))?;
            *store.maintenance.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(handle);
        }
        Ok(store)
    }

    /// The options the store runs with.
    pub fn options(&self) -> &LogStoreOptions {
        &self.options
    }

    /// Validates and stores `streams`; see [`LogWriter::push`].
    ///
    /// # Errors
    /// [`LogStoreError::Closed`], [`LogStoreError::Wal`].
    pub fn push_streams(&self, streams: Vec<LogStream>) -> Result<LogPushSummary, LogStoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(LogStoreError::Closed);
        }
        let mut summary = LogPushSummary::default();
        let wall_ns = now_ns();
        let cutoff_ns = wall_ns.saturating_sub(self.options.retention_ms.saturating_mul(1_000_000));
        let window_ns = self.options.unordered_window_ms.saturating_mul(1_000_000);
        let _gate = read_lock(&self.append_gate);
        let mut accepted_streams: Vec<LogStream> = Vec::with_capacity(streams.len());
        {
            let inner = read_lock(&self.inner);
            // Newest timestamps accepted so far in this push, for streams repeated within it.
            let mut pushed_newest_ns: HashMap<Labels, i64> = HashMap::new();
            for mut stream in streams {
                if stream.labels.is_empty() || stream.labels.first_invalid_name().is_some() {
                    let count = stream.entries.len() as u64;
                    summary.rejected_invalid += count;
                    summary.first_error.get_or_insert_with(|| {
                        format!("stream {}: at least one valid label pair is required per stream", stream.labels)
                    });
                    continue;
                }
                let stored_newest_ns =
                    inner.by_labels.get(&stream.labels).map_or(i64::MIN, |index| inner.streams[*index].newest_ns);
                let mut batch_newest_ns =
                    stored_newest_ns.max(pushed_newest_ns.get(&stream.labels).copied().unwrap_or(i64::MIN));
                let mut kept = Vec::with_capacity(stream.entries.len());
                for mut entry in std::mem::take(&mut stream.entries) {
                    if entry.line.len() > self.options.max_line_bytes {
                        match self.options.line_too_long {
                            LineTooLongPolicy::Reject => {
                                summary.rejected_too_long += 1;
                                summary.first_error.get_or_insert_with(|| {
                                    format!(
                                        "max entry size '{}' bytes exceeded for stream '{}' while adding an entry with length '{}' bytes",
                                        self.options.max_line_bytes,
                                        stream.labels,
                                        entry.line.len()
                                    )
                                });
                                continue;
                            }
                            LineTooLongPolicy::Truncate => {
                                let mut cut = self.options.max_line_bytes;
                                while !entry.line.is_char_boundary(cut) {
                                    cut -= 1;
                                }
                                entry.line.truncate(cut);
                                summary.truncated += 1;
                            }
                        }
                    }
                    let too_far_behind =
                        batch_newest_ns != i64::MIN && entry.timestamp_ns < batch_newest_ns.saturating_sub(window_ns);
                    if entry.timestamp_ns < cutoff_ns || too_far_behind {
                        summary.rejected_too_old += 1;
                        // Loki's messages for its two refusals (retention, then the unordered-write window).
                        summary.first_error.get_or_insert_with(|| {
                            if entry.timestamp_ns < cutoff_ns {
                                format!(
                                    "entry for stream '{}' has timestamp too old: {}, oldest acceptable timestamp is: {}",
                                    stream.labels,
                                    format_rfc3339(entry.timestamp_ns),
                                    format_rfc3339(cutoff_ns)
                                )
                            } else {
                                format!(
                                    "entry with timestamp {} ignored, reason: 'entry too far behind, entry timestamp is: {}, oldest acceptable timestamp is: {}' for stream: {}",
                                    format_rfc3339(entry.timestamp_ns),
                                    format_rfc3339(entry.timestamp_ns),
                                    format_rfc3339(batch_newest_ns.saturating_sub(window_ns)),
                                    stream.labels
                                )
                            }
                        });
                        continue;
                    }
                    batch_newest_ns = batch_newest_ns.max(entry.timestamp_ns);
                    kept.push(entry);
                }
                pushed_newest_ns.insert(stream.labels.clone(), batch_newest_ns);
                if !kept.is_empty() {
                    stream.entries = kept;
                    accepted_streams.push(stream);
                }
            }
        }
        if !accepted_streams.is_empty() {
            let record = encode_entries_record(&accepted_streams);
            self.wal.append(&record)?;
            self.wal_dirty.store(true, Ordering::Release);
            let mut inner = write_lock(&self.inner);
            for stream in accepted_streams {
                let index = inner.stream_index(&stream.labels);
                let state = &mut inner.streams[index];
                for entry in stream.entries {
                    if state.insert(entry, wall_ns) {
                        summary.accepted += 1;
                    } else {
                        summary.duplicates += 1;
                    }
                    if state.head_line_bytes >= self.options.chunk_target_bytes {
                        state.cut_head(self.options.line_fields.as_deref());
                    }
                }
            }
        }
        let counters = &self.counters;
        counters.entries_accepted_total.fetch_add(summary.accepted, Ordering::Relaxed);
        counters.duplicates_total.fetch_add(summary.duplicates, Ordering::Relaxed);
        counters.rejected_too_old_total.fetch_add(summary.rejected_too_old, Ordering::Relaxed);
        counters.rejected_too_long_total.fetch_add(summary.rejected_too_long, Ordering::Relaxed);
        counters.truncated_total.fetch_add(summary.truncated, Ordering::Relaxed);
        counters.rejected_invalid_total.fetch_add(summary.rejected_invalid, Ordering::Relaxed);
        Ok(summary)
    }

    /// Cuts heads that are old or idle (all heads when `cut_all`), writes every cut chunk into a new chunk
    /// file, checkpoints the remaining heads into the WAL and deletes older segments, then applies
    /// retention. Runs in the maintenance thread; tests call it directly.
    ///
    /// # Errors
    /// [`LogStoreError::Io`], [`LogStoreError::Wal`]; the store stays consistent (a later flush retries).
    pub fn flush(&self, cut_all: bool) -> Result<FlushReport, LogStoreError> {
        let _flushing = self.flush_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut report = FlushReport::default();
        let wall_ns = now_ns();
        let max_age_ns = self.options.max_chunk_age_ms.saturating_mul(1_000_000);
        let idle_ns = self.options.chunk_idle_ms.saturating_mul(1_000_000);
        let (to_write, snapshot, through_segment) = {
            let _gate = write_lock(&self.append_gate);
            let mut inner = write_lock(&self.inner);
            let mut to_write: Vec<(usize, Arc<SealedChunk>)> = Vec::new();
            for (index, stream) in inner.streams.iter_mut().enumerate() {
                let old = wall_ns.saturating_sub(stream.head_started_ns) >= max_age_ns;
                let idle = wall_ns.saturating_sub(stream.last_append_ns) >= idle_ns;
                if !stream.head.is_empty() && (cut_all || old || idle) {
                    stream.cut_head(self.options.line_fields.as_deref());
                }
                to_write.extend(stream.sealed.iter().map(|chunk| (index, chunk.clone())));
            }
            let through_segment = if self.wal_dirty.swap(false, Ordering::AcqRel) {
                Some(self.wal.rotate()?.saturating_sub(1))
            } else {
                None
            };
            let snapshot: Vec<LogStream> = match through_segment {
                Some(_) => inner
                    .streams
                    .iter()
                    .filter(|stream| !stream.head.is_empty())
                    .map(|stream| LogStream { labels: stream.labels.clone(), entries: stream.head.clone() })
                    .collect(),
                None => Vec::new(),
            };
            (to_write, snapshot, through_segment)
        };
        if !to_write.is_empty() {
            let sequence = {
                let mut inner = write_lock(&self.inner);
                let sequence = inner.next_file_sequence;
                inner.next_file_sequence += 1;
                sequence
            };
            let path = self.chunks_dir.join(chunk_file_name(sequence));
            let chunks: Vec<(Labels, &SealedChunk)> = {
                let inner = read_lock(&self.inner);
                to_write.iter().map(|(index, chunk)| (inner.streams[*index].labels.clone(), chunk.as_ref())).collect()
            };
            write_chunk_file(&path, &chunks)?;
            let file = Arc::new(ChunkFile::open(&path, sequence)?);
            let mut inner = write_lock(&self.inner);
            for (position, (index, chunk)) in to_write.iter().enumerate() {
                let stream = &mut inner.streams[*index];
                stream.sealed.retain(|sealed| !Arc::ptr_eq(sealed, chunk));
                stream.stored.push(StoredChunk { file: file.clone(), index: position });
            }
            inner.files.push(file);
            report.chunks_written = to_write.len() as u64;
        }
        if let Some(through_segment) = through_segment {
            let mut writer = oxeye_wal::checkpoint::CheckpointWriter::create(&self.wal_dir, through_segment)?;
            let mut batch: Vec<LogStream> = Vec::new();
            let mut batch_bytes = 0usize;
            for stream in snapshot {
                report.checkpointed_entries += stream.entries.len() as u64;
                batch_bytes += stream.entries.iter().map(|entry| entry.line.len() + 16).sum::<usize>();
                batch.push(stream);
                if batch_bytes >= CHECKPOINT_RECORD_BYTES {
                    writer.append(encode_entries_record(&batch))?;
                    batch.clear();
                    batch_bytes = 0;
                }
            }
            if !batch.is_empty() {
                writer.append(encode_entries_record(&batch))?;
            }
            writer.finish()?;
            self.wal.truncate_before(through_segment + 1)?;
        }
        report.files_deleted = self.apply_retention()?;
        self.counters.flushes_total.fetch_add(1, Ordering::Relaxed);
        Ok(report)
    }

    /// Deletes chunk files whose newest entry is older than retention and forgets their chunks; drops
    /// expired entries from memory. Returns the number of files deleted.
    fn apply_retention(&self) -> Result<u64, LogStoreError> {
        let cutoff_ns = now_ns().saturating_sub(self.options.retention_ms.saturating_mul(1_000_000));
        let expired: Vec<Arc<ChunkFile>> = {
            let mut inner = write_lock(&self.inner);
            let (expired, kept): (Vec<_>, Vec<_>) =
                std::mem::take(&mut inner.files).into_iter().partition(|file| file.max_timestamp_ns < cutoff_ns);
            inner.files = kept;
            for stream in &mut inner.streams {
                stream.stored.retain(|chunk| chunk.file.max_timestamp_ns >= cutoff_ns);
                stream.sealed.retain(|chunk| chunk.max_timestamp_ns >= cutoff_ns);
                if stream.head.first().is_some_and(|entry| entry.timestamp_ns < cutoff_ns) {
                    stream.head.retain(|entry| entry.timestamp_ns >= cutoff_ns);
                    stream.head_line_bytes = stream.head.iter().map(|entry| entry.line.len()).sum();
                }
                stream.min_ns = stream.min_ns.max(cutoff_ns);
            }
            expired
        };
        for file in &expired {
            std::fs::remove_file(&file.path).map_err(|error| LogStoreError::io(&file.path, "delete", error))?;
        }
        self.counters.chunk_files_deleted_total.fetch_add(expired.len() as u64, Ordering::Relaxed);
        Ok(expired.len() as u64)
    }

    /// Stops the maintenance thread, cuts and writes every head (so the next start replays nothing), and
    /// closes the WAL. Pushes fail with [`LogStoreError::Closed`] afterwards.
    ///
    /// # Errors
    /// As [`LogStore::flush`].
    pub fn close(&self) -> Result<(), LogStoreError> {
        {
            let (stopped, signal) = &*self.stop;
            *stopped.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = true;
            signal.notify_all();
        }
        let handle = self.maintenance.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.flush(true)?;
        self.wal.close()?;
        Ok(())
    }

    /// A snapshot of counters and sizes.
    pub fn stats(&self) -> LogStoreStats {
        let inner = read_lock(&self.inner);
        let counters = &self.counters;
        LogStoreStats {
            streams: inner.streams.len() as u64,
            head_entries: inner.streams.iter().map(|stream| stream.head.len() as u64).sum(),
            head_line_bytes: inner.streams.iter().map(|stream| stream.head_line_bytes as u64).sum(),
            chunks: inner.streams.iter().map(|stream| (stream.sealed.len() + stream.stored.len()) as u64).sum(),
            chunk_files: inner.files.len() as u64,
            chunk_file_bytes: inner.files.iter().map(|file| file.size_bytes).sum(),
            entries_accepted_total: counters.entries_accepted_total.load(Ordering::Relaxed),
            duplicates_total: counters.duplicates_total.load(Ordering::Relaxed),
            rejected_too_old_total: counters.rejected_too_old_total.load(Ordering::Relaxed),
            rejected_too_long_total: counters.rejected_too_long_total.load(Ordering::Relaxed),
            truncated_total: counters.truncated_total.load(Ordering::Relaxed),
            rejected_invalid_total: counters.rejected_invalid_total.load(Ordering::Relaxed),
            chunks_read_total: counters.chunks_read_total.load(Ordering::Relaxed),
            chunks_skipped_total: counters.chunks_skipped_total.load(Ordering::Relaxed),
            chunk_bytes_read_total: counters.chunk_bytes_read_total.load(Ordering::Relaxed),
            flushes_total: counters.flushes_total.load(Ordering::Relaxed),
            chunk_files_deleted_total: counters.chunk_files_deleted_total.load(Ordering::Relaxed),
        }
    }

    /// The WAL's counters (records, bytes, group commits and their fsync latency), for `/metrics`.
    pub fn wal_stats(&self) -> oxeye_wal::WalStats {
        self.wal.stats()
    }
}

fn maintenance_loop(
    store: std::sync::Weak<LogStore>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    interval: std::time::Duration,
) {
    let (stopped, signal) = &*stop;
    loop {
        {
            let guard = stopped.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let (guard, _) = signal
                .wait_timeout_while(guard, interval, |stopped| !*stopped)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if *guard {
                return;
            }
        }
        let Some(store) = store.upgrade() else { return };
        match store.flush(false) {
            Ok(report) => tracing::debug!(?report, "log store flush done"),
            Err(error) => tracing::warn!(%error, "log store flush failed; retrying next round"),
        }
    }
}

fn load_chunk_files(chunks_dir: &Path, cutoff_ns: i64, inner: &mut Inner) -> Result<(), LogStoreError> {
    let listing = std::fs::read_dir(chunks_dir).map_err(|error| LogStoreError::io(chunks_dir, "list", error))?;
    let mut files: Vec<(u64, PathBuf)> = Vec::new();
    for item in listing {
        let item = item.map_err(|error| LogStoreError::io(chunks_dir, "list", error))?;
        let name = item.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".tmp") {
            let path = item.path();
            std::fs::remove_file(&path).map_err(|error| LogStoreError::io(&path, "delete temporary", error))?;
            continue;
        }
        if let Some(sequence) = parse_chunk_file_name(name) {
            files.push((sequence, item.path()));
        }
    }
    files.sort();
    for (sequence, path) in files {
        inner.next_file_sequence = inner.next_file_sequence.max(sequence + 1);
        let file = Arc::new(ChunkFile::open(&path, sequence)?);
        if file.max_timestamp_ns < cutoff_ns {
            std::fs::remove_file(&path).map_err(|error| LogStoreError::io(&path, "delete", error))?;
            continue;
        }
        for (position, (labels, meta)) in file.chunks.iter().enumerate() {
            let index = inner.stream_index(labels);
            let stream = &mut inner.streams[index];
            stream.newest_ns = stream.newest_ns.max(meta.max_timestamp_ns);
            stream.min_ns = stream.min_ns.min(meta.min_timestamp_ns);
            stream.max_ns = stream.max_ns.max(meta.max_timestamp_ns);
            stream.stored.push(StoredChunk { file: file.clone(), index: position });
        }
        inner.files.push(file);
    }
    Ok(())
}

impl Drop for LogStore {
    fn drop(&mut self) {
        let (stopped, signal) = &*self.stop;
        *stopped.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = true;
        signal.notify_all();
    }
}

impl LogWriter for LogStore {
    fn push(&self, streams: Vec<LogStream>) -> Result<LogPushSummary, StorageError> {
        self.push_streams(streams).map_err(StorageError::from)
    }
}
