//! Background work: cutting blocks from the head, merging adjacent blocks into larger ranges, and
//! retention by time and size. [`Tsdb::run_maintenance`] runs one pass of each.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use oxeye_model::Labels;

use crate::block::{self, Block, BlockWriter, OwnedChunk};
use crate::chunkenc;
use crate::chunks::ChunkCaching;
use crate::db::{Shared, lock, write};
use crate::head::MemSeries;
use crate::head::resolve_chunks;
use crate::{Tsdb, TsdbError};

/// What one maintenance pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Blocks cut from the head.
    pub blocks_cut: u64,
    /// Blocks written by merging smaller blocks.
    pub blocks_compacted: u64,
    /// Blocks deleted by retention.
    pub blocks_deleted: u64,
    /// Closed head chunks moved from RAM to the head chunk files.
    pub head_chunks_moved_to_disk: u64,
    /// Whether a WAL checkpoint was written (after the head was truncated, or because the WAL grew well
    /// beyond the head's compressed size).
    pub checkpointed: bool,
}

impl Tsdb {
    /// One pass of background work, blocking (seconds for large heads; call it from a blocking thread,
    /// e.g. every minute):
    /// 1. while the head spans more than 1.5 × `block_duration_ms`, cut its oldest aligned
    ///    `block_duration_ms` into a block, drop those samples from the head and checkpoint the WAL
    ///    (also checkpoint without a cut once the WAL outgrows the head, see
    ///    [`crate::TsdbOptions::wal_checkpoint_min_bytes`]);
    /// 2. merge blocks that fill a completed compaction range (3×, 9×, ... the block duration);
    /// 3. delete blocks past `retention_ms`, then the oldest while over `retention_size_bytes`.
    ///
    /// Concurrent calls are serialised. Appends and queries continue meanwhile.
    ///
    /// # Errors
    /// [`TsdbError::Closed`], or I/O and corruption errors of the step that failed; later steps are
    /// skipped and the next pass retries.
    pub fn run_maintenance(&self) -> Result<MaintenanceReport, TsdbError> {
        let shared = &self.shared;
        let _maintenance = lock(&shared.maintenance_lock);
        if shared.closed.load(Ordering::Acquire) {
            return Err(TsdbError::Closed);
        }
        let result = run_pass(shared);
        if result.is_err() {
            shared.counters.maintenance_failures_total.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}

fn run_pass(shared: &Shared) -> Result<MaintenanceReport, TsdbError> {
    let mut report = MaintenanceReport::default();
    let block_duration_ms = shared.options.block_duration_ms;
    loop {
        let head = &shared.head;
        if head.is_empty() {
            break;
        }
        let head_max_ms = head.max_time_ms();
        let recorded_min_ms = head.min_time_ms().max(head.min_valid_time_ms());
        if head_max_ms.saturating_sub(recorded_min_ms) <= block_duration_ms / 2 * 3 {
            break;
        }
        // Start at the oldest sample actually present, so a gap (e.g. after one sample far in the
        // future) is skipped instead of cut into empty blocks one range at a time.
        let Some(head_min_ms) = head.oldest_sample_time_ms(recorded_min_ms) else { break };
        if head_max_ms.saturating_sub(head_min_ms) <= block_duration_ms / 2 * 3 {
            break;
        }
        let block_mint_ms = head_min_ms.div_euclid(block_duration_ms) * block_duration_ms;
        let block_maxt_ms = block_mint_ms + block_duration_ms;
        {
            // Commits in flight finish first; later ones see the new line and cannot add under it.
            let _gate = write(&shared.commit_gate);
            head.raise_min_valid_time(block_maxt_ms);
        }
        let mut block = cut_head_block(shared, block_mint_ms, block_maxt_ms)?;
        if let Some(block) = block.as_mut() {
            share_with_existing_blocks(shared, block);
        }
        {
            // Queries hold the block list for reading while they also read the head, so they see
            // either the old blocks with the untruncated head or the new block with the truncated head.
            let mut blocks = write(&shared.blocks);
            if let Some(block) = block {
                blocks.push(Arc::new(block));
                blocks.sort_by_key(|block| (block.meta.min_time_ms, block.meta.max_time_ms));
                report.blocks_cut += 1;
                shared.counters.head_compactions_total.fetch_add(1, Ordering::Relaxed);
            }
            head.truncate(block_maxt_ms);
        }
        report.checkpointed = true;
    }
    if !report.checkpointed {
        let written = shared.wal.stats().bytes_written_total;
        let since_checkpoint = written.saturating_sub(shared.wal_bytes_at_checkpoint.load(Ordering::Relaxed));
        // Replaying a checkpoint (series and whole chunks) is several times faster per byte than
        // replaying sample records, so a checkpoint pays off once the WAL since the last one reaches
        // half the head's size; this bounds the replay after a crash to about that much WAL.
        report.checkpointed = since_checkpoint > shared.options.wal_checkpoint_min_bytes
            && since_checkpoint > shared.head.approximate_chunk_bytes() / 2;
    }
    if report.checkpointed {
        crate::head_wal::checkpoint(shared)?;
    }
    // Closed chunks leave RAM for the head chunk files; files holding only truncated chunks go.
    report.head_chunks_moved_to_disk = shared.head.spill(&shared.head_chunks)?;
    shared.head_chunks.remove_before(shared.head.query_min_time_ms())?;
    while let Some(group) = plan_compaction(shared) {
        compact_blocks(shared, &group)?;
        report.blocks_compacted += 1;
    }
    report.blocks_deleted = apply_retention(shared)?;
    Ok(report)
}

/// The chunks of one head series within `[mint_ms, maxt_ms)`: whole chunks copied (an open one in
/// the appendable form closed), partial ones re-encoded.
fn head_chunks_in_range(
    shared: &Shared,
    series: &MemSeries,
    mint_ms: i64,
    maxt_ms: i64,
) -> Result<Vec<OwnedChunk>, TsdbError> {
    let pending = series.lock().pending_chunks(mint_ms, maxt_ms - 1);
    let mut chunks = Vec::new();
    let mut partial = Vec::new();
    for (encoding, chunk_mint, chunk_maxt, bytes) in resolve_chunks(pending, &shared.head_chunks)? {
        if chunk_mint >= mint_ms && chunk_maxt < maxt_ms {
            // An open chunk in its appendable form is closed for the block: blocks hold encodings 1 and 2.
            let (encoding, bytes) = if encoding == chunkenc::Encoding::ScaledIntAppendable {
                chunkenc::recode_closed(encoding, bytes)
            } else {
                (encoding, bytes)
            };
            chunks.push((encoding, chunk_mint, chunk_maxt, bytes));
        } else {
            chunkenc::decode_into(encoding, &bytes, mint_ms, maxt_ms - 1, &mut partial)
                .map_err(|error| TsdbError::corrupt("head", format!("series {}: {error}", series.series_ref)))?;
        }
    }
    if !partial.is_empty() {
        chunks.extend(
            chunkenc::encode_chunks(&partial)
                .into_iter()
                .map(|(mint, maxt, encoding, bytes)| (encoding, mint, maxt, bytes)),
        );
    }
    block::merge_chunks(chunks).map_err(|error| TsdbError::corrupt("head", error.to_string()))
}

/// Lets a new block share its index symbols and postings with an existing block whose are equal, the
/// newest first (see [`Block::share_index_labels`]); compared before the block list is locked.
pub(crate) fn share_with_existing_blocks(shared: &Shared, block: &mut Block) {
    let existing = shared.blocks();
    block.share_index_labels(existing.iter().rev().map(|other| other.as_ref()));
}

/// Writes the head's samples in `[mint_ms, maxt_ms)` as a level-1 block; `None` when there are none.
fn cut_head_block(shared: &Shared, mint_ms: i64, maxt_ms: i64) -> Result<Option<Block>, TsdbError> {
    // Sorted by their stored labels, compared without decoding: owned `Labels` for every series of a
    // large head would cost more memory than the head itself.
    let mut candidates: Vec<MemSeries> = shared
        .head
        .all_series()
        .into_iter()
        .filter(|series| {
            series.lock().chunks().any(|(_, chunk_mint, chunk_maxt, _)| chunk_maxt >= mint_ms && chunk_mint < maxt_ms)
        })
        .collect();
    candidates.sort_unstable_by(|left, right| left.cmp_labels(right));
    let mut writer = BlockWriter::create(&shared.options.data_dir)?;
    for series in candidates {
        let chunks = head_chunks_in_range(shared, &series, mint_ms, maxt_ms)?;
        writer.add_series(&series.labels(), &chunks)?;
    }
    match writer.finish(mint_ms, maxt_ms, 1, Vec::new(), Vec::new())? {
        Some(dir) => {
            let block = Block::open(&dir)?;
            tracing::info!(block = %block.meta.id, mint_ms, maxt_ms, series = block.meta.stats.num_series, "cut block from head");
            Ok(Some(block))
        }
        None => Ok(None),
    }
}

/// The first group of blocks to merge: for the smallest compaction range first, blocks inside one
/// aligned window of that range that has been completely cut (it ends at or before the newest block's
/// end), at least two of them.
fn plan_compaction(shared: &Shared) -> Option<Vec<Arc<Block>>> {
    let blocks = shared.blocks();
    let newest_end_ms = blocks.iter().map(|block| block.meta.max_time_ms).max()?;
    for range_ms in shared.options.compaction_ranges_ms() {
        let mut windows: BTreeMap<i64, Vec<Arc<Block>>> = BTreeMap::new();
        for block in &blocks {
            let window_start = block.meta.min_time_ms.div_euclid(range_ms) * range_ms;
            if block.meta.max_time_ms <= window_start + range_ms {
                windows.entry(window_start).or_default().push(Arc::clone(block));
            }
        }
        for (window_start, group) in windows {
            if group.len() >= 2 && window_start + range_ms <= newest_end_ms {
                return Some(group);
            }
        }
    }
    None
}

/// Merges `group` into one block and deletes the originals.
fn compact_blocks(shared: &Shared, group: &[Arc<Block>]) -> Result<(), TsdbError> {
    // Labels of every series of the group (chunk references are read again per series when written,
    // so only labels are held for the whole group).
    let mut series: BTreeMap<Labels, Vec<(usize, u32)>> = BTreeMap::new();
    for (position, block) in group.iter().enumerate() {
        let ids: Vec<u32> = (0..block.index.num_series() as u32).collect();
        for batch in ids.chunks(4096) {
            for (id, entry) in batch.iter().zip(block.index.read_series(batch)?) {
                series.entry(entry.labels).or_default().push((position, *id));
            }
        }
    }
    let mut writer = BlockWriter::create(&shared.options.data_dir)?;
    for (labels, members) in series {
        let mut chunks = Vec::new();
        for (position, id) in members {
            let block = &group[position];
            for entry in block.index.read_series(&[id])? {
                chunks.extend(block.series_chunks(&entry.chunks, ChunkCaching::Bypass)?);
            }
        }
        let merged =
            block::merge_chunks(chunks).map_err(|error| TsdbError::corrupt(&group[0].dir, error.to_string()))?;
        writer.add_series(&labels, &merged)?;
    }
    let min_time_ms = group.iter().map(|block| block.meta.min_time_ms).min().unwrap_or_default();
    let max_time_ms = group.iter().map(|block| block.meta.max_time_ms).max().unwrap_or_default();
    let level = group.iter().map(|block| block.meta.compaction.level).max().unwrap_or(1) + 1;
    let mut sources: Vec<String> =
        group.iter().flat_map(|block| block.meta.compaction.sources.iter().cloned()).collect();
    sources.sort();
    sources.dedup();
    let parents: Vec<String> = group.iter().map(|block| block.meta.id.clone()).collect();
    let new_block = match writer.finish(min_time_ms, max_time_ms, level, sources, parents.clone())? {
        Some(dir) => {
            let mut block = Block::open(&dir)?;
            share_with_existing_blocks(shared, &mut block);
            Some(block)
        }
        None => None,
    };
    {
        let mut blocks = write(&shared.blocks);
        blocks.retain(|block| !parents.contains(&block.meta.id));
        if let Some(new_block) = new_block {
            tracing::info!(block = %new_block.meta.id, level, min_time_ms, max_time_ms, merged = parents.len(), "compacted blocks");
            blocks.push(Arc::new(new_block));
        }
        blocks.sort_by_key(|block| (block.meta.min_time_ms, block.meta.max_time_ms));
    }
    for block in group {
        block::delete_block_dir(&block.dir)?;
    }
    shared.counters.compactions_total.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Deletes blocks past the time retention, then the oldest while over the size retention. Returns how
/// many were deleted.
fn apply_retention(shared: &Shared) -> Result<u64, TsdbError> {
    let blocks = shared.blocks();
    let Some(newest_block_end) = blocks.iter().map(|block| block.meta.max_time_ms).max() else { return Ok(0) };
    let newest_ms =
        if shared.head.is_empty() { newest_block_end } else { newest_block_end.max(shared.head.max_time_ms()) };
    let cutoff_ms = newest_ms.saturating_sub(shared.options.retention_ms);
    let mut doomed: Vec<Arc<Block>> =
        blocks.iter().filter(|block| block.meta.max_time_ms <= cutoff_ms).cloned().collect();
    if let Some(limit) = shared.options.retention_size_bytes {
        let mut total: u64 = blocks.iter().map(|block| block.size_bytes).sum::<u64>() + shared.wal.size_bytes()?;
        total -= doomed.iter().map(|block| block.size_bytes).sum::<u64>();
        for block in &blocks {
            if total <= limit {
                break;
            }
            if doomed.iter().any(|chosen| chosen.meta.id == block.meta.id) {
                continue;
            }
            total = total.saturating_sub(block.size_bytes);
            doomed.push(Arc::clone(block));
        }
    }
    if doomed.is_empty() {
        return Ok(0);
    }
    write(&shared.blocks).retain(|block| !doomed.iter().any(|chosen| chosen.meta.id == block.meta.id));
    for block in &doomed {
        tracing::info!(block = %block.meta.id, max_time_ms = block.meta.max_time_ms, "deleting block past retention");
        block::delete_block_dir(&block.dir)?;
    }
    let count = doomed.len() as u64;
    shared.counters.retention_deleted_blocks_total.fetch_add(count, Ordering::Relaxed);
    Ok(count)
}

/// A background thread running [`Tsdb::run_maintenance`] at a fixed interval; see
/// [`Tsdb::start_maintenance`]. Stop it with [`MaintenanceThread::stop`] (dropping it also stops it).
#[derive(Debug)]
pub struct MaintenanceThread {
    stop: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl MaintenanceThread {
    /// Asks the thread to stop and waits for it; a pass in progress finishes first.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        let (stopped, wake) = &*self.stop;
        *lock(stopped) = true;
        wake.notify_all();
        if let Some(handle) = self.handle.take() {
            // A panicking pass already reported itself; nothing is left to clean up.
            let _ = handle.join();
        }
    }
}

impl Drop for MaintenanceThread {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

impl Tsdb {
    /// Starts a thread (named `tsdb-maintenance`) that calls [`Tsdb::run_maintenance`] every
    /// `interval`, logging failures with `tracing::warn!`. It holds only a weak reference: it ends when
    /// stopped, when the store is closed, or when the last `Arc<Tsdb>` is dropped. An alternative to
    /// calling `run_maintenance` from your own scheduler.
    ///
    /// # Errors
    /// [`TsdbError::Io`] when the thread cannot be spawned.
    pub fn start_maintenance(self: &Arc<Self>, interval: std::time::Duration) -> Result<MaintenanceThread, TsdbError> {
        let stop = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let thread_stop = Arc::clone(&stop);
        let tsdb = Arc::downgrade(self);
        let handle = std::thread::Builder::new()
            .name("tsdb-maintenance".to_owned())
            .spawn(move || {
                let (stopped, wake) = &*thread_stop;
                loop {
                    {
                        let guard = lock(stopped);
                        let (guard, _) = wake
                            .wait_timeout_while(guard, interval, |stopped| !*stopped)
                            .unwrap_or_else(|poisoned| poisoned.into_inner());
                        if *guard {
                            return;
                        }
                    }
                    let Some(tsdb) = tsdb.upgrade() else { return };
                    match tsdb.run_maintenance() {
                        Ok(_) => {}
                        Err(TsdbError::Closed) => return,
                        Err(error) => tracing::warn!(%error, "tsdb maintenance failed; retrying next interval"),
                    }
                }
            })
            .map_err(|error| TsdbError::io(&self.shared.options.data_dir, "spawn maintenance thread", error))?;
        Ok(MaintenanceThread { stop, handle: Some(handle) })
    }
}
