//! Blocks: immutable directories holding the samples of one time range, cut from the head or merged by
//! compaction.
//!
//! ```text
//! <data_dir>/<block id>/meta.json      what the block holds (this module)
//!                      /index          symbols, series, postings (crate::index)
//!                      /chunks/000001  encoded chunks (crate::chunks)
//! ```
//!
//! A block is written under `<id>.tmp`, fsynced, then renamed; deletion renames it to `<id>.deleted`
//! first. Leftovers of either are removed at startup.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use oxeye_model::{Labels, Matcher, Sample};
use serde::{Deserialize, Serialize};

use crate::TsdbError;
use crate::chunkenc::{self, Encoding};
use crate::chunks::{ChunkCaching, ChunkReader, ChunkWriter};
use crate::index::{self, BlockIndex, ChunkMeta, IndexSeries};

/// The `meta.json` format version written by this code.
pub const META_VERSION: u32 = 1;
const META_FILE: &str = "meta.json";
const INDEX_FILE: &str = "index";
const CHUNKS_DIR: &str = "chunks";
pub(crate) const TEMPORARY_SUFFIX: &str = ".tmp";
pub(crate) const DELETED_SUFFIX: &str = ".deleted";

/// Counts of what a block holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockStats {
    /// Series with at least one sample.
    pub num_series: u64,
    /// Samples.
    pub num_samples: u64,
    /// Chunks.
    pub num_chunks: u64,
}

/// How a block came to be.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockCompaction {
    /// 1 for a block cut from the head; one more than the highest source level after a merge.
    pub level: u32,
    /// Ids of the level-1 blocks whose data this block holds (itself for a level-1 block).
    pub sources: Vec<String>,
    /// Ids of the blocks merged into this one (empty for a level-1 block).
    #[serde(default)]
    pub parents: Vec<String>,
}

/// The content of `meta.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockMeta {
    /// Format version, [`META_VERSION`].
    pub version: u32,
    /// The block's id, also its directory name.
    pub id: String,
    /// Oldest sample time the block may hold, milliseconds, inclusive.
    pub min_time_ms: i64,
    /// End of the block's range, milliseconds, **exclusive** (as in Prometheus).
    pub max_time_ms: i64,
    /// What it holds.
    pub stats: BlockStats,
    /// Its compaction history.
    pub compaction: BlockCompaction,
}

static BLOCK_ID_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A new block id: creation time in milliseconds and a process-local counter, in hex, so ids sort by
/// creation time.
pub(crate) fn new_block_id() -> String {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or_default();
    let counter = BLOCK_ID_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{now_ms:012x}{:06x}{:06x}", std::process::id() & 0xff_ffff, counter & 0xff_ffff)
}

/// An open block.
#[derive(Debug)]
pub(crate) struct Block {
    pub(crate) dir: PathBuf,
    pub(crate) meta: BlockMeta,
    pub(crate) index: BlockIndex,
    chunks: ChunkReader,
    pub(crate) size_bytes: u64,
}

/// One chunk held in memory: encoding, first and last sample time (milliseconds, inclusive) and bytes.
pub(crate) type OwnedChunk = (Encoding, i64, i64, Vec<u8>);

/// One series read from a block (or the head) with its samples.
pub(crate) type SeriesSamples = (Labels, Vec<Sample>);

/// How many series [`Block::for_each_series`] reads from the index and chunk files at once: enough that
/// neighbouring chunks share one read and one inflated frame, few enough that a batch's labels and
/// samples stay small beside the query's own state.
const STREAM_BATCH_SERIES: usize = 512;

/// Selections of at most this many series keep their chunks in the block's chunk reader
/// ([`ChunkCaching::Remember`]): what a dashboard's joins and single-metric panels read again at each
/// refresh. Larger selections read past it, so they do not push those out.
const REMEMBERED_SELECTION_SERIES: usize = STREAM_BATCH_SERIES;

/// How a selection of `series` series reads its chunks.
fn chunk_caching(series: usize) -> ChunkCaching {
    if series <= REMEMBERED_SELECTION_SERIES { ChunkCaching::Remember } else { ChunkCaching::Bypass }
}

/// The series of one block that match a selection, each with its chunks overlapping a window, in label
/// order, read from the index [`STREAM_BATCH_SERIES`] series at a time: what a query merging several
/// blocks walks through side by side.
pub(crate) struct BlockSeriesCursor<'b> {
    block: &'b Block,
    ids: Vec<u32>,
    /// How many of `ids` were read from the index.
    read: usize,
    mint_ms: i64,
    maxt_ms: i64,
    batch: std::collections::VecDeque<(Labels, Vec<ChunkMeta>)>,
}

impl<'b> BlockSeriesCursor<'b> {
    /// A cursor over the series of `block` matching `matchers` with chunks overlapping `[mint_ms, maxt_ms]`.
    pub(crate) fn new(block: &'b Block, mint_ms: i64, maxt_ms: i64, matchers: &[Matcher]) -> Self {
        let ids = block.index.postings.select(matchers).iter().collect();
        BlockSeriesCursor { block, ids, read: 0, mint_ms, maxt_ms, batch: std::collections::VecDeque::new() }
    }

    /// Reads the next batch from the index when the current one is used up (and series remain).
    ///
    /// # Errors
    /// When the index cannot be read.
    pub(crate) fn fill(&mut self) -> Result<(), TsdbError> {
        while self.batch.is_empty() && self.read < self.ids.len() {
            let end = self.read.saturating_add(STREAM_BATCH_SERIES).min(self.ids.len());
            for entry in self.block.index.read_series(&self.ids[self.read..end])? {
                let overlapping: Vec<ChunkMeta> = entry
                    .chunks
                    .into_iter()
                    .filter(|chunk| chunk.maxt_ms >= self.mint_ms && chunk.mint_ms <= self.maxt_ms)
                    .collect();
                if !overlapping.is_empty() {
                    self.batch.push_back((entry.labels, overlapping));
                }
            }
            self.read = end;
        }
        Ok(())
    }

    /// The labels of the next series, `None` when none is left (or [`BlockSeriesCursor::fill`] was not
    /// called since the last [`BlockSeriesCursor::pop`]).
    pub(crate) fn peek(&self) -> Option<&Labels> {
        self.batch.front().map(|(labels, _)| labels)
    }

    /// Takes the next series and its chunks.
    pub(crate) fn pop(&mut self) -> Option<(Labels, Vec<ChunkMeta>)> {
        self.batch.pop_front()
    }

    /// The block read.
    pub(crate) fn block(&self) -> &'b Block {
        self.block
    }

    /// How this selection reads its chunks: remembered when it is small.
    pub(crate) fn chunk_caching(&self) -> ChunkCaching {
        chunk_caching(self.ids.len())
    }
}

/// Why [`Block::for_each_series`] stopped early.
#[derive(Debug)]
pub(crate) enum StreamError<E> {
    /// The block could not be read.
    Read(TsdbError),
    /// The visitor returned this.
    Visit(E),
}

impl Block {
    /// Opens the block in `dir`: reads `meta.json` and the index, opens the chunk files.
    pub(crate) fn open(dir: &Path) -> Result<Block, TsdbError> {
        Self::open_sharing(dir, &[])
    }

    /// As [`Block::open`], holding the index symbols and postings of the first of `others` whose are
    /// equal instead of reading its own (see [`BlockIndex::share_labels_with`]).
    pub(crate) fn open_sharing(dir: &Path, others: &[&Block]) -> Result<Block, TsdbError> {
        let meta_path = dir.join(META_FILE);
        let meta_bytes = std::fs::read(&meta_path).map_err(|error| TsdbError::io(&meta_path, "read", error))?;
        let meta: BlockMeta = serde_json::from_slice(&meta_bytes)
            .map_err(|error| TsdbError::corrupt(&meta_path, format!("invalid meta.json: {error}")))?;
        if meta.version != META_VERSION {
            return Err(TsdbError::corrupt(&meta_path, format!("unsupported meta.json version {}", meta.version)));
        }
        let shareable: Vec<&BlockIndex> = others.iter().map(|other| &other.index).collect();
        let index = index::read_index(&dir.join(INDEX_FILE), &shareable)?;
        let chunks = ChunkReader::open(&dir.join(CHUNKS_DIR))?;
        let size_bytes = directory_size_bytes(dir)?;
        Ok(Block { dir: dir.to_path_buf(), meta, index, chunks, size_bytes })
    }

    /// Shares this block's index symbols and postings with the first of `others` whose are equal (see
    /// [`BlockIndex::share_labels_with`]); call it before the block is shared itself.
    pub(crate) fn share_index_labels<'b>(&mut self, others: impl IntoIterator<Item = &'b Block>) {
        for other in others {
            if self.index.share_labels_with(&other.index) {
                return;
            }
        }
    }

    /// True when the block's range `[min, max)` overlaps the inclusive window.
    pub(crate) fn overlaps(&self, mint_ms: i64, maxt_ms: i64) -> bool {
        self.meta.min_time_ms <= maxt_ms && self.meta.max_time_ms > mint_ms
    }

    /// Series matching `matchers` with samples in `[mint_ms, maxt_ms]`, in label order. Without
    /// `with_samples`, the sample vectors are left empty but a series is still only returned when a
    /// chunk overlaps the window.
    pub(crate) fn select(
        &self,
        mint_ms: i64,
        maxt_ms: i64,
        matchers: &[Matcher],
        with_samples: bool,
    ) -> Result<Vec<SeriesSamples>, TsdbError> {
        let selected = self.select_chunks(mint_ms, maxt_ms, matchers)?;
        if !with_samples {
            return Ok(selected.into_iter().map(|(labels, _)| (labels, Vec::new())).collect());
        }
        let wanted: Vec<(u64, u32)> = selected
            .iter()
            .flat_map(|(_, chunks)| chunks.iter().map(|chunk| (chunk.chunk_ref, chunk.entry_bytes)))
            .collect();
        let mut chunk_data = self.chunks.read_many(&wanted, chunk_caching(selected.len()))?.into_iter();
        let mut out = Vec::with_capacity(selected.len());
        for (labels, chunks) in selected {
            let mut samples = Vec::new();
            for _ in 0..chunks.len() {
                let Some((encoding, bytes)) = chunk_data.next() else { break };
                chunkenc::decode_into(encoding, &bytes, mint_ms, maxt_ms, &mut samples)
                    .map_err(|error| TsdbError::corrupt(self.dir.join(CHUNKS_DIR), error.to_string()))?;
            }
            if !samples.is_empty() {
                out.push((labels, samples));
            }
        }
        Ok(out)
    }

    /// The series matching `matchers` with the metadata of their chunks overlapping `[mint_ms, maxt_ms]`
    /// (series with none are left out), in index order; no chunk is read.
    ///
    /// # Errors
    /// When the index cannot be read.
    pub(crate) fn select_chunks(
        &self,
        mint_ms: i64,
        maxt_ms: i64,
        matchers: &[Matcher],
    ) -> Result<Vec<(Labels, Vec<ChunkMeta>)>, TsdbError> {
        let ids: Vec<u32> = self.index.postings.select(matchers).iter().collect();
        let mut selected: Vec<(Labels, Vec<ChunkMeta>)> = Vec::new();
        for entry in self.index.read_series(&ids)? {
            let overlapping: Vec<ChunkMeta> =
                entry.chunks.into_iter().filter(|chunk| chunk.maxt_ms >= mint_ms && chunk.mint_ms <= maxt_ms).collect();
            if !overlapping.is_empty() {
                selected.push((entry.labels, overlapping));
            }
        }
        Ok(selected)
    }

    /// Calls `visit` with each series matching `matchers` that has samples in `[mint_ms, maxt_ms]`, in
    /// label order (the index's series order), reading index entries and chunks [`STREAM_BATCH_SERIES`]
    /// series at a time: a query over a block alone holds the labels and samples of one batch, not of
    /// every selected series, and its series need no sorting or merging. With `keep_label`, each series'
    /// labels hold only the labels whose name it accepts.
    ///
    /// # Errors
    /// When the index or a chunk cannot be read or decoded ([`StreamError::Read`]), or what `visit`
    /// returns ([`StreamError::Visit`]), which stops the reading.
    pub(crate) fn for_each_series<E>(
        &self,
        mint_ms: i64,
        maxt_ms: i64,
        matchers: &[Matcher],
        keep_label: Option<&dyn Fn(&str) -> bool>,
        visit: &mut dyn FnMut(Labels, Vec<Sample>) -> Result<(), E>,
    ) -> Result<(), StreamError<E>> {
        let ids: Vec<u32> = self.index.postings.select(matchers).iter().collect();
        let caching = chunk_caching(ids.len());
        let mut wanted: Vec<(u64, u32)> = Vec::new();
        for batch in ids.chunks(STREAM_BATCH_SERIES) {
            let entries = self.index.read_series_projected(batch, keep_label).map_err(StreamError::Read)?;
            wanted.clear();
            let mut chunk_counts = Vec::with_capacity(entries.len());
            for entry in &entries {
                let before = wanted.len();
                wanted.extend(
                    entry
                        .chunks
                        .iter()
                        .filter(|chunk| chunk.maxt_ms >= mint_ms && chunk.mint_ms <= maxt_ms)
                        .map(|chunk| (chunk.chunk_ref, chunk.entry_bytes)),
                );
                chunk_counts.push(wanted.len() - before);
            }
            let mut chunk_data = self.chunks.read_many(&wanted, caching).map_err(StreamError::Read)?.into_iter();
            for (entry, chunk_count) in entries.into_iter().zip(chunk_counts) {
                if chunk_count == 0 {
                    continue;
                }
                let mut samples = Vec::new();
                for (encoding, bytes) in chunk_data.by_ref().take(chunk_count) {
                    chunkenc::decode_into(encoding, &bytes, mint_ms, maxt_ms, &mut samples).map_err(|error| {
                        StreamError::Read(TsdbError::corrupt(self.dir.join(CHUNKS_DIR), error.to_string()))
                    })?;
                }
                if !samples.is_empty() {
                    visit(entry.labels, samples).map_err(StreamError::Visit)?;
                }
            }
        }
        Ok(())
    }

    /// Decodes the samples in `[mint_ms, maxt_ms]` of `chunks` (from [`Block::select_chunks`]) into `out`,
    /// reading the chunks with `caching`.
    ///
    /// # Errors
    /// When a chunk cannot be read or decoded.
    pub(crate) fn decode_chunks_into(
        &self,
        chunks: &[ChunkMeta],
        caching: ChunkCaching,
        mint_ms: i64,
        maxt_ms: i64,
        out: &mut Vec<Sample>,
    ) -> Result<(), TsdbError> {
        for (encoding, _, _, bytes) in self.series_chunks(chunks, caching)? {
            chunkenc::decode_into(encoding, &bytes, mint_ms, maxt_ms, out)
                .map_err(|error| TsdbError::corrupt(self.dir.join(CHUNKS_DIR), error.to_string()))?;
        }
        Ok(())
    }

    /// Every chunk of each series entry, read from disk (or the chunk reader's memory) with `caching`:
    /// `(encoding, mint, maxt, bytes)`.
    pub(crate) fn series_chunks(
        &self,
        chunks: &[ChunkMeta],
        caching: ChunkCaching,
    ) -> Result<Vec<OwnedChunk>, TsdbError> {
        let wanted: Vec<(u64, u32)> = chunks.iter().map(|chunk| (chunk.chunk_ref, chunk.entry_bytes)).collect();
        let data = self.chunks.read_many(&wanted, caching)?;
        Ok(chunks
            .iter()
            .zip(data)
            .map(|(chunk, (encoding, bytes))| (encoding, chunk.mint_ms, chunk.maxt_ms, bytes))
            .collect())
    }
}

/// Writes a new block: add series in label order, then [`BlockWriter::finish`].
#[derive(Debug)]
pub(crate) struct BlockWriter {
    id: String,
    temporary_dir: PathBuf,
    final_dir: PathBuf,
    chunk_writer: ChunkWriter,
    series: IndexSeries,
    /// The previous series' labels, to check the order.
    #[cfg(debug_assertions)]
    previous_labels: Option<Labels>,
    stats: BlockStats,
}

impl BlockWriter {
    pub(crate) fn create(data_dir: &Path) -> Result<Self, TsdbError> {
        let id = new_block_id();
        let temporary_dir = data_dir.join(format!("{id}{TEMPORARY_SUFFIX}"));
        let final_dir = data_dir.join(&id);
        std::fs::create_dir_all(&temporary_dir)
            .map_err(|error| TsdbError::io(&temporary_dir, "create directory", error))?;
        let chunk_writer = ChunkWriter::create(&temporary_dir.join(CHUNKS_DIR))?;
        Ok(BlockWriter {
            id,
            temporary_dir,
            final_dir,
            chunk_writer,
            series: IndexSeries::default(),
            #[cfg(debug_assertions)]
            previous_labels: None,
            stats: BlockStats::default(),
        })
    }

    /// Adds one series (labels strictly after the previous series') with its chunks, oldest first.
    pub(crate) fn add_series(&mut self, labels: &Labels, chunks: &[OwnedChunk]) -> Result<(), TsdbError> {
        if chunks.is_empty() {
            return Ok(());
        }
        // Open head chunks' appendable form is closed before it reaches a block (`docs/format.md`).
        debug_assert!(chunks.iter().all(|chunk| chunk.0 != Encoding::ScaledIntAppendable));
        #[cfg(debug_assertions)]
        {
            debug_assert!(
                self.previous_labels.as_ref().is_none_or(|previous| previous < labels),
                "series not in label order"
            );
            self.previous_labels = Some(labels.clone());
        }
        let mut metas = Vec::with_capacity(chunks.len());
        for (encoding, mint_ms, maxt_ms, bytes) in chunks {
            let chunk_ref = self.chunk_writer.write(*encoding, bytes)?;
            // The frame length is filled in by `finish`, once the frame is written.
            metas.push(ChunkMeta { mint_ms: *mint_ms, maxt_ms: *maxt_ms, chunk_ref, entry_bytes: 0 });
            self.stats.num_chunks += 1;
            self.stats.num_samples += u64::from(num_samples(bytes));
        }
        self.stats.num_series += 1;
        self.series.push(labels, metas);
        Ok(())
    }

    /// Writes the index and `meta.json`, fsyncs and renames the block into place. Returns `None` (and
    /// removes the temporary directory) when no series was added.
    pub(crate) fn finish(
        mut self,
        min_time_ms: i64,
        max_time_ms: i64,
        level: u32,
        sources: Vec<String>,
        parents: Vec<String>,
    ) -> Result<Option<PathBuf>, TsdbError> {
        let frames = self.chunk_writer.finish()?;
        for chunk in self.series.chunks_mut() {
            chunk.entry_bytes = frames.frame_bytes(chunk.chunk_ref).ok_or_else(|| {
                TsdbError::corrupt(&self.temporary_dir, format!("chunk {:#x} has no frame", chunk.chunk_ref))
            })?;
        }
        if self.series.is_empty() {
            std::fs::remove_dir_all(&self.temporary_dir)
                .map_err(|error| TsdbError::io(&self.temporary_dir, "delete directory", error))?;
            return Ok(None);
        }
        let index_path = self.temporary_dir.join(INDEX_FILE);
        let index_bytes =
            index::encode_index(&self.series).map_err(|reason| TsdbError::corrupt(&index_path, reason))?;
        write_synced(&index_path, &index_bytes)?;
        let sources = if sources.is_empty() { vec![self.id.clone()] } else { sources };
        let meta = BlockMeta {
            version: META_VERSION,
            id: self.id.clone(),
            min_time_ms,
            max_time_ms,
            stats: self.stats,
            compaction: BlockCompaction { level, sources, parents },
        };
        let meta_path = self.temporary_dir.join(META_FILE);
        let meta_bytes = serde_json::to_vec_pretty(&meta)
            .map_err(|error| TsdbError::corrupt(&meta_path, format!("cannot encode meta.json: {error}")))?;
        write_synced(&meta_path, &meta_bytes)?;
        sync_dir(&self.temporary_dir.join(CHUNKS_DIR))?;
        sync_dir(&self.temporary_dir)?;
        std::fs::rename(&self.temporary_dir, &self.final_dir)
            .map_err(|error| TsdbError::io(&self.final_dir, "rename block", error))?;
        if let Some(parent) = self.final_dir.parent() {
            sync_dir(parent)?;
        }
        Ok(Some(self.final_dir))
    }
}

fn num_samples(chunk_bytes: &[u8]) -> u16 {
    match chunk_bytes {
        [high, low, ..] => u16::from_be_bytes([*high, *low]),
        _ => 0,
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), TsdbError> {
    use std::io::Write;
    let mut file = std::fs::File::create(path).map_err(|error| TsdbError::io(path, "create", error))?;
    file.write_all(bytes).map_err(|error| TsdbError::io(path, "write", error))?;
    file.sync_all().map_err(|error| TsdbError::io(path, "fsync", error))
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), TsdbError> {
    let handle = std::fs::File::open(dir).map_err(|error| TsdbError::io(dir, "open directory", error))?;
    handle.sync_all().map_err(|error| TsdbError::io(dir, "fsync directory", error))
}

/// Deletes a block directory: renamed to `<id>.deleted` first so a crash midway leaves no half block
/// under a valid name.
pub(crate) fn delete_block_dir(dir: &Path) -> Result<(), TsdbError> {
    let mut deleted = dir.as_os_str().to_owned();
    deleted.push(DELETED_SUFFIX);
    let deleted = PathBuf::from(deleted);
    std::fs::rename(dir, &deleted).map_err(|error| TsdbError::io(dir, "rename block for deletion", error))?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    std::fs::remove_dir_all(&deleted).map_err(|error| TsdbError::io(&deleted, "delete block", error))
}

/// Sum of file sizes under `dir`, recursively.
pub(crate) fn directory_size_bytes(dir: &Path) -> Result<u64, TsdbError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(TsdbError::io(dir, "list directory", error)),
    };
    let mut total = 0;
    for entry in entries {
        let entry = entry.map_err(|error| TsdbError::io(dir, "list directory", error))?;
        let metadata = entry.metadata().map_err(|error| TsdbError::io(entry.path(), "stat", error))?;
        total += if metadata.is_dir() { directory_size_bytes(&entry.path())? } else { metadata.len() };
    }
    Ok(total)
}

/// Merges chunks of one series from several sources (each ascending) into chunks of one sorted run:
/// chunks that do not overlap in time are copied as they are; overlapping ones are decoded, merged
/// (the first source wins on equal timestamps) and re-encoded.
pub(crate) fn merge_chunks(mut chunks: Vec<OwnedChunk>) -> Result<Vec<OwnedChunk>, chunkenc::ChunkDecodeError> {
    chunks.sort_by_key(|(_, mint, _, _)| *mint);
    let disjoint = chunks.windows(2).all(|pair| pair[0].2 < pair[1].1);
    if disjoint {
        return Ok(chunks);
    }
    let mut samples = Vec::new();
    for (encoding, _, _, bytes) in &chunks {
        chunkenc::decode_into(*encoding, bytes, i64::MIN, i64::MAX, &mut samples)?;
    }
    samples.sort_by_key(|sample| sample.timestamp_ms);
    samples.dedup_by_key(|sample| sample.timestamp_ms);
    Ok(chunkenc::encode_chunks(&samples)
        .into_iter()
        .map(|(mint, maxt, encoding, bytes)| (encoding, mint, maxt, bytes))
        .collect())
}
