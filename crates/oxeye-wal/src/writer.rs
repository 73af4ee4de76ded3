//! The WAL writer with group commit.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use crate::segment::{self, SEGMENT_HEADER_BYTES};
use crate::stats::StatsCounters;
use crate::{WalError, WalStats, checkpoint};

/// Default segment size at which the writer moves to a new segment: 128 MiB.
pub const DEFAULT_SEGMENT_SIZE_BYTES: u64 = 128 << 20;

/// How a [`Wal`] is set up.
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// The directory holding the segment files; created when missing.
    pub dir: PathBuf,
    /// A new segment is started before a group commit that would make the current one larger than this
    /// many bytes (a single group may still exceed it). Default [`DEFAULT_SEGMENT_SIZE_BYTES`].
    pub segment_size_bytes: u64,
}

impl WalOptions {
    /// Options for `dir` with default sizes.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        WalOptions { dir: dir.into(), segment_size_bytes: DEFAULT_SEGMENT_SIZE_BYTES }
    }
}

/// State shared by appending threads, guarded by one mutex: the queue of framed records not yet written
/// and the sequence numbers that tell a waiting caller whether its records are durable.
#[derive(Debug, Default)]
struct CommitQueue {
    pending: Vec<u8>,
    /// A written group's buffer kept for the next group, so steady ingest does not churn the allocator.
    spare: Vec<u8>,
    pending_records: u64,
    /// Sequence number of the most recently queued batch.
    queued_sequence: u64,
    /// Every batch with a sequence number up to this one is fsynced.
    durable_sequence: u64,
    leader_active: bool,
    failure: Option<String>,
    closed: bool,
}

#[derive(Debug)]
struct SegmentWriter {
    dir: PathBuf,
    segment_size_bytes: u64,
    index: u64,
    file: File,
    written_bytes: u64,
    /// Whether each group commit is fsynced ([`Durability::EachCommit`]) or only the segment's end.
    durability: Durability,
}

/// When a [`Wal`]'s appends become durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// Every group commit is fsynced before its appends return.
    EachCommit,
    /// Appends return once written; a segment is fsynced when it ends and at [`Wal::close`].
    AtClose,
}

impl SegmentWriter {
    fn create(dir: &Path, index: u64, segment_size_bytes: u64, durability: Durability) -> Result<Self, WalError> {
        let path = segment::segment_path(dir, index);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|error| WalError::io(&path, "create segment", error))?;
        file.write_all(&segment::encode_header()).map_err(|error| WalError::io(&path, "write header", error))?;
        file.sync_all().map_err(|error| WalError::io(&path, "fsync", error))?;
        segment::sync_dir(dir)?;
        Ok(SegmentWriter {
            dir: dir.to_path_buf(),
            segment_size_bytes,
            index,
            file,
            written_bytes: SEGMENT_HEADER_BYTES as u64,
            durability,
        })
    }

    fn path(&self) -> PathBuf {
        segment::segment_path(&self.dir, self.index)
    }

    fn rotate(&mut self, stats: &StatsCounters) -> Result<(), WalError> {
        self.file.sync_all().map_err(|error| WalError::io(self.path(), "fsync", error))?;
        let next = SegmentWriter::create(&self.dir, self.index + 1, self.segment_size_bytes, self.durability)?;
        *self = next;
        stats.segments_created_total.fetch_add(1, Ordering::Relaxed);
        stats.current_segment.store(self.index, Ordering::Relaxed);
        stats.bytes_written_total.fetch_add(SEGMENT_HEADER_BYTES as u64, Ordering::Relaxed);
        Ok(())
    }

    fn write_and_sync(&mut self, bytes: &[u8], stats: &StatsCounters) -> Result<(), WalError> {
        let grown = self.written_bytes + bytes.len() as u64;
        if grown > self.segment_size_bytes && self.written_bytes > SEGMENT_HEADER_BYTES as u64 {
            self.rotate(stats)?;
        }
        self.file.write_all(bytes).map_err(|error| WalError::io(self.path(), "write", error))?;
        self.written_bytes += bytes.len() as u64;
        if self.durability == Durability::EachCommit {
            let started = Instant::now();
            self.file.sync_data().map_err(|error| WalError::io(self.path(), "fsync", error))?;
            stats.observe_fsync(started.elapsed());
        }
        stats.bytes_written_total.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// A write-ahead log open for appending. `Send + Sync`: share it by reference or `Arc`.
///
/// Opening always starts a new segment after the newest existing one (or after the newest checkpoint),
/// so a torn tail left by a crash is never appended to. Run [`crate::replay`] **before** opening: replay
/// is what repairs a torn tail.
#[derive(Debug)]
pub struct Wal {
    queue: Mutex<CommitQueue>,
    durable: Condvar,
    writer: Mutex<SegmentWriter>,
    stats: StatsCounters,
    dir: PathBuf,
}

impl Wal {
    /// Opens the log in `options.dir` (created when missing) and starts a new segment.
    ///
    /// # Errors
    /// [`WalError::Io`] when the directory or the segment cannot be created.
    pub fn open(options: WalOptions) -> Result<Wal, WalError> {
        Self::open_with(options, Durability::EachCommit)
    }

    /// Opens the log as [`Wal::open`] does, for a log that is only read after [`Wal::close`] returned
    /// (a checkpoint, renamed into place afterwards): appends return once their group is written, not
    /// fsynced; each segment is fsynced when it ends and the last one at `close`. One fsync per segment
    /// instead of one per group, so the writer can flush in small groups and hold little memory.
    ///
    /// # Errors
    /// As [`Wal::open`].
    pub fn open_durable_at_close(options: WalOptions) -> Result<Wal, WalError> {
        Self::open_with(options, Durability::AtClose)
    }

    fn open_with(options: WalOptions, durability: Durability) -> Result<Wal, WalError> {
        std::fs::create_dir_all(&options.dir).map_err(|error| WalError::io(&options.dir, "create directory", error))?;
        let segments = segment::list_segments(&options.dir)?;
        let after_checkpoint = checkpoint::last_checkpoint(&options.dir)?.map(|(index, _)| index + 1);
        let after_segments = segments.last().map(|index| index + 1);
        let first = after_segments.max(after_checkpoint).unwrap_or(0);
        let writer = SegmentWriter::create(&options.dir, first, options.segment_size_bytes.max(1), durability)?;
        let stats = StatsCounters::default();
        stats.segments_created_total.fetch_add(1, Ordering::Relaxed);
        stats.current_segment.store(first, Ordering::Relaxed);
        stats.bytes_written_total.fetch_add(SEGMENT_HEADER_BYTES as u64, Ordering::Relaxed);
        Ok(Wal {
            queue: Mutex::new(CommitQueue::default()),
            durable: Condvar::new(),
            writer: Mutex::new(writer),
            stats,
            dir: options.dir,
        })
    }

    /// The directory of the segment files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends one record and returns once it is fsynced. See [`Wal::append_batch`].
    ///
    /// # Errors
    /// As [`Wal::append_batch`].
    pub fn append(&self, record: &[u8]) -> Result<(), WalError> {
        self.append_batch(&[record])
    }

    /// Appends records, contiguously and in order, and returns once all of them are fsynced.
    ///
    /// Concurrent callers are batched: the first caller to find no write in progress writes everything
    /// queued so far with one `write` and one `fdatasync`, then wakes the others. An empty `records`
    /// returns at once.
    ///
    /// # Errors
    /// [`WalError::RecordTooLarge`] (nothing is queued), [`WalError::Io`] when the write or fsync fails
    /// (the log then refuses further writes with [`WalError::Failed`]), [`WalError::Closed`].
    pub fn append_batch(&self, records: &[&[u8]]) -> Result<(), WalError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut queue = self.lock_queue();
        if queue.closed {
            return Err(WalError::Closed);
        }
        if let Some(failure) = &queue.failure {
            return Err(WalError::Failed(failure.clone()));
        }
        let rollback_length = queue.pending.len();
        for record in records {
            if let Err(error) = segment::encode_frame(record, &mut queue.pending) {
                queue.pending.truncate(rollback_length);
                return Err(error);
            }
        }
        queue.pending_records += records.len() as u64;
        queue.queued_sequence += 1;
        let my_sequence = queue.queued_sequence;
        loop {
            if queue.durable_sequence >= my_sequence {
                return Ok(());
            }
            if let Some(failure) = &queue.failure {
                return Err(WalError::Failed(failure.clone()));
            }
            if !queue.leader_active {
                queue = self.lead_group_commit(queue)?;
                continue;
            }
            queue = self.durable.wait(queue).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// Writes and fsyncs everything queued, as the leader of one group commit.
    fn lead_group_commit<'a>(
        &'a self,
        mut queue: MutexGuard<'a, CommitQueue>,
    ) -> Result<MutexGuard<'a, CommitQueue>, WalError> {
        queue.leader_active = true;
        let spare = std::mem::take(&mut queue.spare);
        let group = std::mem::replace(&mut queue.pending, spare);
        let group_records = std::mem::take(&mut queue.pending_records);
        let group_sequence = queue.queued_sequence;
        drop(queue);

        let result = {
            let mut writer = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            writer.write_and_sync(&group, &self.stats)
        };

        let mut queue = self.lock_queue();
        queue.leader_active = false;
        let outcome = match result {
            Ok(()) => {
                queue.durable_sequence = group_sequence;
                self.stats.records_total.fetch_add(group_records, Ordering::Relaxed);
                // Keep the allocation for the next group (buffers beyond 64 MiB are let go).
                let mut reusable = group;
                reusable.clear();
                if reusable.capacity() <= 64 << 20 {
                    if queue.pending.is_empty() && queue.pending.capacity() < reusable.capacity() {
                        queue.pending = reusable;
                    } else if queue.spare.capacity() < reusable.capacity() {
                        queue.spare = reusable;
                    }
                }
                Ok(queue)
            }
            Err(error) => {
                tracing::error!(%error, "wal group commit failed; refusing further writes");
                queue.failure = Some(error.to_string());
                self.durable.notify_all();
                return Err(error);
            }
        };
        self.durable.notify_all();
        outcome
    }

    fn lock_queue(&self) -> MutexGuard<'_, CommitQueue> {
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Finishes the current segment (fsynced) and starts the next one; returns the new segment's index.
    /// Every record appended before the call is in a segment with a smaller index.
    ///
    /// # Errors
    /// [`WalError::Io`] when the fsync or the new segment fails.
    pub fn rotate(&self) -> Result<u64, WalError> {
        let mut writer = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        writer.rotate(&self.stats)?;
        Ok(writer.index)
    }

    /// The index of the segment being written.
    pub fn current_segment(&self) -> u64 {
        self.stats.current_segment.load(Ordering::Relaxed)
    }

    /// Deletes every segment with an index below `segment` (never the one being written), after a
    /// checkpoint made them unnecessary.
    ///
    /// # Errors
    /// [`WalError::Io`] naming the file that could not be deleted.
    pub fn truncate_before(&self, segment: u64) -> Result<(), WalError> {
        let current = self.current_segment();
        let mut removed_any = false;
        for index in segment::list_segments(&self.dir)? {
            if index >= segment || index >= current {
                break;
            }
            let path = segment::segment_path(&self.dir, index);
            std::fs::remove_file(&path).map_err(|error| WalError::io(&path, "delete segment", error))?;
            removed_any = true;
        }
        if removed_any {
            segment::sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> WalStats {
        self.stats.snapshot()
    }

    /// Total size in bytes of the segment files and checkpoints in the directory.
    ///
    /// # Errors
    /// [`WalError::Io`] when the directory cannot be listed.
    pub fn size_bytes(&self) -> Result<u64, WalError> {
        directory_size_bytes(&self.dir)
    }

    /// Waits for queued records to be written, fsyncs and refuses further appends with
    /// [`WalError::Closed`]. Idempotent.
    ///
    /// # Errors
    /// [`WalError::Io`] when the final fsync fails.
    pub fn close(&self) -> Result<(), WalError> {
        let mut queue = self.lock_queue();
        while queue.leader_active || !queue.pending.is_empty() {
            if !queue.leader_active {
                queue = self.lead_group_commit(queue)?;
                continue;
            }
            queue = self.durable.wait(queue).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        queue.closed = true;
        drop(queue);
        let writer = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        writer.file.sync_all().map_err(|error| WalError::io(writer.path(), "fsync", error))
    }
}

/// Sum of file sizes under `dir`, recursively; an absent directory is 0 bytes.
pub(crate) fn directory_size_bytes(dir: &Path) -> Result<u64, WalError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(WalError::io(dir, "list directory", error)),
    };
    let mut total = 0;
    for entry in entries {
        let entry = entry.map_err(|error| WalError::io(dir, "list directory", error))?;
        let metadata = entry.metadata().map_err(|error| WalError::io(entry.path(), "stat", error))?;
        if metadata.is_dir() {
            total += directory_size_bytes(&entry.path())?;
        } else {
            total += metadata.len();
        }
    }
    Ok(total)
}
