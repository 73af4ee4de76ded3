//! The store: opening a data directory, shared state, stats and shutdown.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use oxeye_model::MetricMetadata;
use oxeye_wal::{Wal, WalOptions, WalStats};

use crate::block::{self, Block};
use crate::exemplars::ExemplarStorage;
use crate::head::Head;
use crate::head_chunks::HeadChunkFiles;
use crate::{TsdbError, TsdbOptions};

const WAL_DIR: &str = "wal";
const HEAD_CHUNKS_DIR: &str = "chunks_head";
const LOCK_FILE: &str = "lock";

/// A snapshot of the store's counters and sizes, for `/metrics`. `_total` fields only grow while the
/// process runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TsdbStats {
    /// Series in the head.
    pub head_series: u64,
    /// Series created in the head.
    pub head_series_created_total: u64,
    /// Series removed from the head by garbage collection after a block cut.
    pub head_series_removed_total: u64,
    /// Samples appended to the head by commits (WAL replay not included).
    pub head_samples_appended_total: u64,
    /// Samples refused because they were older than their series' newest sample.
    pub out_of_order_samples_total: u64,
    /// Samples refused because they were older than the head accepts.
    pub out_of_bounds_samples_total: u64,
    /// Samples refused for another value at an existing timestamp.
    pub duplicate_samples_total: u64,
    /// Oldest sample time in the head, milliseconds; `None` when empty.
    pub head_min_time_ms: Option<i64>,
    /// Newest sample time in the head, milliseconds; `None` when empty.
    pub head_max_time_ms: Option<i64>,
    /// Successful commits.
    pub commits_total: u64,
    /// Commits that failed to write the WAL.
    pub commit_failures_total: u64,
    /// WAL counters, fsync latency included.
    pub wal: WalStats,
    /// Seconds spent replaying the WAL when the store opened.
    pub wal_replay_seconds: f64,
    /// Records read from the WAL and checkpoint when the store opened.
    pub wal_replay_records: u64,
    /// Blocks on disk.
    pub blocks: u64,
    /// Bytes of the blocks on disk.
    pub blocks_bytes: u64,
    /// Bytes of the WAL directory (segments and checkpoint).
    pub wal_bytes: u64,
    /// Bytes of the head chunk files (closed head chunks moved out of RAM; a cache rebuilt at start).
    pub head_chunk_files_bytes: u64,
    /// Samples stored in blocks.
    pub blocks_samples: u64,
    /// Blocks cut from the head.
    pub head_compactions_total: u64,
    /// Blocks produced by merging blocks.
    pub compactions_total: u64,
    /// Blocks deleted by retention (time or size).
    pub retention_deleted_blocks_total: u64,
    /// WAL checkpoints written.
    pub checkpoints_total: u64,
    /// Exemplars held in the ring.
    pub exemplars: u64,
    /// Failed maintenance runs.
    pub maintenance_failures_total: u64,
}

#[derive(Debug, Default)]
pub(crate) struct DbCounters {
    pub(crate) commits_total: AtomicU64,
    pub(crate) commit_failures_total: AtomicU64,
    pub(crate) head_compactions_total: AtomicU64,
    pub(crate) compactions_total: AtomicU64,
    pub(crate) retention_deleted_blocks_total: AtomicU64,
    pub(crate) checkpoints_total: AtomicU64,
    pub(crate) maintenance_failures_total: AtomicU64,
}

/// State shared by the store, its appenders and queriers.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) options: TsdbOptions,
    pub(crate) head: Head,
    /// Closed head chunks moved out of RAM.
    pub(crate) head_chunks: HeadChunkFiles,
    pub(crate) wal: Wal,
    /// Commits hold it for reading from their WAL write to their head update; a checkpoint takes it for
    /// writing around the WAL rotation, so every record in an older segment is already in the head.
    pub(crate) commit_gate: RwLock<()>,
    pub(crate) blocks: RwLock<Vec<Arc<Block>>>,
    pub(crate) exemplars: Mutex<ExemplarStorage>,
    pub(crate) metadata: RwLock<BTreeMap<String, MetricMetadata>>,
    pub(crate) maintenance_lock: Mutex<()>,
    pub(crate) closed: AtomicBool,
    pub(crate) counters: DbCounters,
    pub(crate) wal_replay_seconds: f64,
    pub(crate) wal_replay_records: u64,
    /// Samples in the last committed batch: the next appender's initial capacity.
    pub(crate) last_batch_samples: AtomicUsize,
    /// `WalStats::bytes_written_total` when the last checkpoint started.
    pub(crate) wal_bytes_at_checkpoint: AtomicU64,
    /// Warm allocations for appenders.
    pub(crate) appender_buffers: Mutex<Vec<crate::head_append::AppenderBuffers>>,
    _lock_file: File,
}

pub(crate) fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    pub(crate) fn wal_dir(&self) -> PathBuf {
        self.options.data_dir.join(WAL_DIR)
    }

    /// The open blocks, sorted by time.
    pub(crate) fn blocks(&self) -> Vec<Arc<Block>> {
        read(&self.blocks).clone()
    }
}

/// The metrics store. `Send + Sync`; share it as `Arc<Tsdb>`. It implements
/// [`oxeye_model::storage::MetricsStorage`] (appenders, queries, metadata, exemplars).
#[derive(Debug)]
pub struct Tsdb {
    pub(crate) shared: Arc<Shared>,
}

impl Tsdb {
    /// Opens (or creates) the store in `options.data_dir`: takes the directory lock, removes leftovers of
    /// interrupted block writes, opens the blocks, replays the WAL checkpoint and segments into the head
    /// (cutting a torn last record with a warning) and starts a new WAL segment.
    ///
    /// # Errors
    /// [`TsdbError::InvalidOption`], [`TsdbError::Locked`] when another process has the directory,
    /// [`TsdbError::Io`], [`TsdbError::Corrupt`] for a damaged block, [`TsdbError::Wal`] for damage in
    /// an older WAL segment.
    pub fn open(options: TsdbOptions) -> Result<Arc<Tsdb>, TsdbError> {
        options.validate()?;
        let data_dir = options.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(|error| TsdbError::io(&data_dir, "create directory", error))?;
        let lock_path = data_dir.join(LOCK_FILE);
        let lock_file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|error| TsdbError::io(&lock_path, "open lock file", error))?;
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(TsdbError::Locked { path: lock_path }),
            Err(std::fs::TryLockError::Error(error)) => return Err(TsdbError::io(&lock_path, "lock", error)),
        }

        let blocks = open_blocks(&data_dir)?;
        let head = Head::new(options.block_duration_ms);
        let blocks_end_ms = blocks.iter().map(|block| block.meta.max_time_ms).max();
        if let Some(end_ms) = blocks_end_ms {
            head.raise_min_valid_time(end_ms);
        }
        let mut exemplars = ExemplarStorage::new(options.max_exemplars);
        let mut metadata = BTreeMap::new();
        let wal_dir = data_dir.join(WAL_DIR);
        let replay_started = Instant::now();
        let replay = crate::head_wal::replay(&wal_dir, &head, &mut exemplars, &mut metadata)?;
        let wal_replay_seconds = replay_started.elapsed().as_secs_f64();
        if let Some(end_ms) = blocks_end_ms {
            // Samples already in blocks (a crash between cutting a block and the checkpoint) leave the head.
            head.truncate(end_ms);
        }
        tracing::info!(
            records = replay.records,
            series = head.num_series(),
            seconds = wal_replay_seconds,
            blocks = blocks.len(),
            "tsdb opened"
        );
        let wal = Wal::open(WalOptions { dir: wal_dir.clone(), segment_size_bytes: options.wal_segment_size_bytes })?;
        if let Some(through) = replay.checkpoint_through_segment {
            wal.truncate_before(through + 1)?;
        }
        let head_chunks = HeadChunkFiles::open(&data_dir.join(HEAD_CHUNKS_DIR))?;
        let shared = Shared {
            options,
            head,
            head_chunks,
            wal,
            commit_gate: RwLock::new(()),
            blocks: RwLock::new(blocks),
            exemplars: Mutex::new(exemplars),
            metadata: RwLock::new(metadata),
            maintenance_lock: Mutex::new(()),
            closed: AtomicBool::new(false),
            counters: DbCounters::default(),
            wal_replay_seconds,
            wal_replay_records: replay.records,
            last_batch_samples: AtomicUsize::new(0),
            appender_buffers: Mutex::new(Vec::new()),
            wal_bytes_at_checkpoint: AtomicU64::new(0),
            _lock_file: lock_file,
        };
        Ok(Arc::new(Tsdb { shared: Arc::new(shared) }))
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &TsdbOptions {
        &self.shared.options
    }

    /// A snapshot of counters and sizes. Lists the WAL directory, so call it at scrape frequency, not
    /// per request.
    pub fn stats(&self) -> TsdbStats {
        let shared = &self.shared;
        let head = &shared.head;
        let counters = &head.counters;
        let blocks = shared.blocks();
        let wal_bytes = shared.wal.size_bytes().unwrap_or_default();
        TsdbStats {
            head_series: head.num_series(),
            head_series_created_total: counters.series_created_total.load(Ordering::Relaxed),
            head_series_removed_total: counters.series_removed_total.load(Ordering::Relaxed),
            head_samples_appended_total: counters.samples_appended_total.load(Ordering::Relaxed),
            out_of_order_samples_total: counters.out_of_order_samples_total.load(Ordering::Relaxed),
            out_of_bounds_samples_total: counters.out_of_bounds_samples_total.load(Ordering::Relaxed),
            duplicate_samples_total: counters.duplicate_samples_total.load(Ordering::Relaxed),
            head_min_time_ms: (!head.is_empty()).then(|| head.min_time_ms()),
            head_max_time_ms: (!head.is_empty()).then(|| head.max_time_ms()),
            commits_total: shared.counters.commits_total.load(Ordering::Relaxed),
            commit_failures_total: shared.counters.commit_failures_total.load(Ordering::Relaxed),
            wal: shared.wal.stats(),
            wal_replay_seconds: shared.wal_replay_seconds,
            wal_replay_records: shared.wal_replay_records,
            blocks: blocks.len() as u64,
            blocks_bytes: blocks.iter().map(|block| block.size_bytes).sum(),
            wal_bytes,
            head_chunk_files_bytes: shared.head_chunks.size_bytes(),
            blocks_samples: blocks.iter().map(|block| block.meta.stats.num_samples).sum(),
            head_compactions_total: shared.counters.head_compactions_total.load(Ordering::Relaxed),
            compactions_total: shared.counters.compactions_total.load(Ordering::Relaxed),
            retention_deleted_blocks_total: shared.counters.retention_deleted_blocks_total.load(Ordering::Relaxed),
            checkpoints_total: shared.counters.checkpoints_total.load(Ordering::Relaxed),
            exemplars: lock(&shared.exemplars).len() as u64,
            maintenance_failures_total: shared.counters.maintenance_failures_total.load(Ordering::Relaxed),
        }
    }

    /// Approximate bytes of memory held by head series and their chunks (postings and maps excluded);
    /// walks every series, so it is meant for tests and benchmarks.
    pub fn head_chunk_bytes(&self) -> u64 {
        self.shared.head.approximate_chunk_bytes()
    }

    /// Estimated heap bytes of the head by component (series structures, labels, chunks, indexes,
    /// postings); walks every series, so call it for benchmarks and diagnostics, not per request.
    pub fn head_memory(&self) -> crate::HeadMemory {
        self.shared.head.memory()
    }

    /// Graceful shutdown: refuses new commits (they fail with `StorageError::Unavailable`), waits for
    /// commits in flight, writes a WAL checkpoint of the head so the next start replays little, and
    /// fsyncs and closes the WAL. Idempotent.
    ///
    /// # Errors
    /// [`TsdbError::Io`] or [`TsdbError::Wal`] when the checkpoint or the final fsync fails (everything
    /// acknowledged is in the WAL regardless).
    pub fn close(&self) -> Result<(), TsdbError> {
        if self.shared.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let _maintenance = lock(&self.shared.maintenance_lock);
        crate::head_wal::checkpoint(&self.shared)?;
        self.shared.wal.close()?;
        Ok(())
    }
}

/// Opens every block directory in `data_dir`, removing leftovers (`*.tmp`, `*.deleted`) and blocks
/// whose data a compacted block already holds.
fn open_blocks(data_dir: &Path) -> Result<Vec<Arc<Block>>, TsdbError> {
    let entries = std::fs::read_dir(data_dir).map_err(|error| TsdbError::io(data_dir, "list directory", error))?;
    let mut blocks = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| TsdbError::io(data_dir, "list directory", error))?;
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(block::TEMPORARY_SUFFIX) || name.ends_with(block::DELETED_SUFFIX) {
            tracing::info!(path = %path.display(), "removing leftover of an interrupted block write or deletion");
            std::fs::remove_dir_all(&path).map_err(|error| TsdbError::io(&path, "delete directory", error))?;
            continue;
        }
        if name == WAL_DIR || name == HEAD_CHUNKS_DIR || !path.join("meta.json").exists() {
            continue;
        }
        let block = Block::open_sharing(&path, &blocks.iter().collect::<Vec<_>>())?;
        blocks.push(block);
    }
    let replaced: std::collections::HashSet<String> =
        blocks.iter().flat_map(|block| block.meta.compaction.parents.iter().cloned()).collect();
    let mut kept = Vec::new();
    for block in blocks {
        if replaced.contains(&block.meta.id) {
            tracing::info!(block = %block.meta.id, "removing block already merged into a compacted block");
            block::delete_block_dir(&block.dir)?;
        } else {
            let mut block = block;
            block.share_index_labels(kept.iter().map(|kept: &Arc<Block>| kept.as_ref()));
            kept.push(Arc::new(block));
        }
    }
    kept.sort_by_key(|block| (block.meta.min_time_ms, block.meta.max_time_ms));
    Ok(kept)
}
