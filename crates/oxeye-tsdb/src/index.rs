//! The index file of a block: symbols, series (labels and chunk references) and postings.
//!
//! Layout (all integers big-endian unless varint; details in `docs/format.md`):
//!
//! ```text
//! header  : magic "OXIX" u32 │ version u8 │ 3 zero bytes
//! section : stored length u32 │ stored │ CRC32 (IEEE) of stored u32      × 3: symbols, series, postings
//! TOC     : symbols offset u64 │ series offset u64 │ postings offset u64 │ CRC32 of these 24 bytes u32
//! ```
//!
//! Version 2 (written) compresses: the symbols and postings sections store `content length u32 │ raw
//! DEFLATE of the content`, and the series section stores groups of consecutive series entries, each
//! group deflated on its own so a query inflates only the groups it needs. Version 1 (still read)
//! stores every section's content as is.
//!
//! Series are stored sorted by labels; a series' id in the block is its position, so postings of
//! ascending ids list series in label order.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use oxeye_model::{Label, Labels};
use roaring::RoaringBitmap;

use crate::TsdbError;
use crate::deflate;
use crate::encoding::{DecodeError, Decoder, put_bytes, put_uvarint, put_varint};
use crate::postings::MemPostings;

const INDEX_MAGIC: u32 = 0x4f58_4958;
/// The index version written.
const INDEX_VERSION: u8 = 2;
/// Uncompressed sections; series entries at file offsets.
const INDEX_VERSION_1: u8 = 1;
/// A series group is closed once its uncompressed entries reach this many bytes.
const SERIES_GROUP_BYTES: usize = 16 << 10;
const HEADER_BYTES: usize = 8;
const TOC_BYTES: usize = 28;

/// Where one chunk of a block series is and which time it spans (inclusive, milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkMeta {
    pub(crate) mint_ms: i64,
    pub(crate) maxt_ms: i64,
    pub(crate) chunk_ref: u64,
    /// Length of the chunk's entry in its chunk file, in bytes.
    pub(crate) entry_bytes: u32,
}

/// One series of a block, read from the index: its labels and chunks, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SeriesEntry {
    pub(crate) labels: Labels,
    pub(crate) chunks: Vec<ChunkMeta>,
}

/// Where series entries are read from.
#[derive(Debug)]
enum IndexSource {
    File {
        path: PathBuf,
        file: std::fs::File,
    },
    #[cfg(test)]
    Memory(Vec<u8>),
}

/// One deflated group of consecutive series entries (index version 2).
#[derive(Debug, Clone, Copy)]
struct SeriesGroup {
    /// Id of the group's first series.
    first_id: u32,
    /// File offset of the deflated bytes.
    offset: u64,
    compressed_bytes: u32,
    content_bytes: u32,
}

/// Where the series entries are in the file.
#[derive(Debug)]
enum SeriesLayout {
    /// Version 1: the file offset of each series entry, then the end of the last one.
    Plain(Vec<u64>),
    /// Version 2: deflated groups, ascending by first id.
    Grouped(Vec<SeriesGroup>),
}

/// A block index. Symbols, postings and where the series entries are stay in memory (a few bytes per
/// group of series); series entries (labels and chunk references) are read from the file when a
/// query needs them, so a long retention does not hold every chunk reference in RAM.
#[derive(Debug)]
pub(crate) struct BlockIndex {
    /// Shared with other blocks whose symbols and postings are equal (see
    /// [`BlockIndex::share_labels_with`]).
    symbols: Arc<Vec<String>>,
    series_count: usize,
    series_layout: SeriesLayout,
    /// Shared like `symbols`.
    pub(crate) postings: Arc<MemPostings>,
    source: IndexSource,
    /// The last [`RECENT_GROUPS`] series groups inflated (version 2), newest last: a dashboard asks the
    /// same small selections again and again, and inflating their group costs more than reading them.
    recent_groups: Mutex<Vec<(usize, Arc<InflatedGroup>)>>,
}

/// One series group inflated: its entries back to back, and where each starts in them.
#[derive(Debug)]
struct InflatedGroup {
    content: Vec<u8>,
    starts: Vec<u32>,
}

/// Inflated series groups (at most about 16 KiB each) a [`BlockIndex`] keeps across reads.
const RECENT_GROUPS: usize = 4;

impl BlockIndex {
    /// Takes `other`'s symbols and postings when they equal this index's, so that blocks of one stable
    /// set of series (every 2 h block of a fleet that did not change, and the blocks compacted from them:
    /// series ids are positions in label order, so equal series sets give equal postings) hold one copy
    /// between them instead of one each (about 2 MiB per block at 100k series). Returns whether they
    /// are shared now.
    pub(crate) fn share_labels_with(&mut self, other: &BlockIndex) -> bool {
        let shared = Arc::ptr_eq(&self.postings, &other.postings) && Arc::ptr_eq(&self.symbols, &other.symbols);
        if shared {
            return true;
        }
        if self.series_count != other.series_count || self.symbols != other.symbols || self.postings != other.postings {
            return false;
        }
        self.symbols = Arc::clone(&other.symbols);
        self.postings = Arc::clone(&other.postings);
        true
    }

    /// Number of series in the block.
    pub(crate) fn num_series(&self) -> usize {
        self.series_count
    }

    fn resolve_labels(&self, label_symbols: &[(u32, u32)], keep_label: Option<&dyn Fn(&str) -> bool>) -> Labels {
        let symbol = |id: u32| self.symbols.get(id as usize).map(String::as_str).unwrap_or_default();
        let labels = label_symbols
            .iter()
            .filter(|(name, _)| keep_label.is_none_or(|keep| keep(symbol(*name))))
            .map(|(name, value)| Label { name: symbol(*name).to_string(), value: symbol(*value).to_string() })
            .collect();
        Labels::from_sorted(labels)
    }

    fn path(&self) -> PathBuf {
        match &self.source {
            IndexSource::File { path, .. } => path.clone(),
            #[cfg(test)]
            IndexSource::Memory(_) => PathBuf::from("index"),
        }
    }

    fn read_at(&self, start: u64, buffer: &mut [u8]) -> Result<(), TsdbError> {
        match &self.source {
            IndexSource::File { path, file } => {
                use std::os::unix::fs::FileExt;
                file.read_exact_at(buffer, start).map_err(|error| TsdbError::io(path, "read index", error))
            }
            #[cfg(test)]
            IndexSource::Memory(bytes) => {
                let slice = usize::try_from(start)
                    .ok()
                    .and_then(|start| bytes.get(start..start + buffer.len()))
                    .ok_or_else(|| TsdbError::corrupt("index", "read past the end"))?;
                buffer.copy_from_slice(slice);
                Ok(())
            }
        }
    }

    /// The entries of series `ids` (ascending ids read fastest), in the order given. Neighbouring
    /// entries are read with one `pread`; each group (version 2) is inflated once per run of ids in it.
    pub(crate) fn read_series(&self, ids: &[u32]) -> Result<Vec<SeriesEntry>, TsdbError> {
        self.read_series_projected(ids, None)
    }

    /// As [`BlockIndex::read_series`], each entry's labels holding only those whose name `keep_label`
    /// accepts (all of them when it is `None`): the label strings a query does not look at are never
    /// copied out of the symbol table.
    pub(crate) fn read_series_projected(
        &self,
        ids: &[u32],
        keep_label: Option<&dyn Fn(&str) -> bool>,
    ) -> Result<Vec<SeriesEntry>, TsdbError> {
        match &self.series_layout {
            SeriesLayout::Plain(offsets) => self.read_series_plain(offsets, ids, keep_label),
            SeriesLayout::Grouped(groups) => self.read_series_grouped(groups, ids, keep_label),
        }
    }

    fn read_series_grouped(
        &self,
        groups: &[SeriesGroup],
        ids: &[u32],
        keep_label: Option<&dyn Fn(&str) -> bool>,
    ) -> Result<Vec<SeriesEntry>, TsdbError> {
        let mut out = Vec::with_capacity(ids.len());
        // The inflated group last used, with where each of its entries starts; only the entries asked for
        // are parsed.
        let mut current: Option<(usize, Arc<InflatedGroup>)> = None;
        for id in ids {
            let position = groups.partition_point(|group| group.first_id <= *id);
            let group_position = match position.checked_sub(1) {
                Some(group_position) if (*id as usize) < self.series_count => group_position,
                _ => return Err(TsdbError::corrupt(self.path(), format!("series id {id} out of range"))),
            };
            let group = groups[group_position];
            if current.as_ref().is_none_or(|(cached, _)| *cached != group_position) {
                current = Some((group_position, self.inflated_group(group_position, group)?));
            }
            let Some((_, inflated)) = current.as_ref() else { continue };
            let start = inflated
                .starts
                .get((id - group.first_id) as usize)
                .copied()
                .ok_or_else(|| TsdbError::corrupt(self.path(), format!("series id {id} missing from its group")))?;
            let mut decoder = Decoder::new(inflated.content.get(start as usize..).unwrap_or_default());
            let (label_symbols, chunks) = parse_series_entry(&mut decoder, self.symbols.len() as u64)
                .map_err(|reason| TsdbError::corrupt(self.path(), format!("series {id}: {reason}")))?;
            out.push(SeriesEntry { labels: self.resolve_labels(&label_symbols, keep_label), chunks });
        }
        Ok(out)
    }

    /// Series group `position` inflated, with the start of each entry (found by stepping over the
    /// entries, which allocates nothing), from the recent groups or from the file.
    fn inflated_group(&self, position: usize, group: SeriesGroup) -> Result<Arc<InflatedGroup>, TsdbError> {
        let lock = || self.recent_groups.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, inflated)) = lock().iter().find(|(cached, _)| *cached == position) {
            return Ok(Arc::clone(inflated));
        }
        let group_error =
            |reason: String| TsdbError::corrupt(self.path(), format!("series group of {}: {reason}", group.first_id));
        let mut compressed = vec![0; group.compressed_bytes as usize];
        self.read_at(group.offset, &mut compressed)?;
        let content = deflate::decompress_exact(&compressed, group.content_bytes as usize).map_err(group_error)?;
        let mut starts = Vec::new();
        let mut decoder = Decoder::new(&content);
        while !decoder.is_empty() {
            // A group's content length is a u32, so positions in it fit 32 bits.
            starts.push(decoder.position() as u32);
            skip_series_entry(&mut decoder).map_err(group_error)?;
        }
        let inflated = Arc::new(InflatedGroup { content, starts });
        let mut recent = lock();
        if recent.len() >= RECENT_GROUPS {
            recent.remove(0);
        }
        recent.push((position, Arc::clone(&inflated)));
        Ok(inflated)
    }

    fn read_series_plain(
        &self,
        offsets: &[u64],
        ids: &[u32],
        keep_label: Option<&dyn Fn(&str) -> bool>,
    ) -> Result<Vec<SeriesEntry>, TsdbError> {
        const MAX_GAP_BYTES: u64 = 64 << 10;
        const MAX_READ_BYTES: u64 = 16 << 20;
        let span = |id: u32| -> Result<(u64, u64), TsdbError> {
            let position = id as usize;
            match (offsets.get(position), offsets.get(position + 1)) {
                (Some(start), Some(end)) => Ok((*start, *end)),
                _ => Err(TsdbError::corrupt(self.path(), format!("series id {id} out of range"))),
            }
        };
        let mut out = Vec::with_capacity(ids.len());
        let mut buffer = Vec::new();
        let mut index = 0;
        while index < ids.len() {
            let (start, mut end) = span(ids[index])?;
            let mut run_end = index + 1;
            while let Some(next) = ids.get(run_end) {
                let (next_start, next_end) = span(*next)?;
                if next_start < start || next_start > end + MAX_GAP_BYTES || next_end - start > MAX_READ_BYTES {
                    break;
                }
                end = end.max(next_end);
                run_end += 1;
            }
            buffer.resize((end - start) as usize, 0);
            self.read_at(start, &mut buffer)?;
            for id in &ids[index..run_end] {
                let (entry_start, entry_end) = span(*id)?;
                let entry = &buffer[(entry_start - start) as usize..(entry_end - start) as usize];
                let mut decoder = Decoder::new(entry);
                let (label_symbols, chunks) = parse_series_entry(&mut decoder, self.symbols.len() as u64)
                    .map_err(|reason| TsdbError::corrupt(self.path(), format!("series {id}: {reason}")))?;
                out.push(SeriesEntry { labels: self.resolve_labels(&label_symbols, keep_label), chunks });
            }
            index = run_end;
        }
        Ok(out)
    }
}

/// A series entry as stored: `(name, value)` symbol ids and chunk references.
type RawSeriesEntry = (Vec<(u32, u32)>, Vec<ChunkMeta>);

/// Steps over one series entry as [`parse_series_entry`] would read it, without decoding or keeping it:
/// a label count and two varints per label, a chunk count and four varints per chunk.
fn skip_series_entry(decoder: &mut Decoder<'_>) -> Result<(), String> {
    let label_count = decoder.count(2, "label count").map_err(|error| decode_error("series", error))?;
    decoder.skip_varints(label_count * 2, "label").map_err(|error| decode_error("series", error))?;
    let chunk_count = decoder.count(4, "chunk count").map_err(|error| decode_error("series", error))?;
    decoder.skip_varints(chunk_count * 4, "chunk").map_err(|error| decode_error("series", error))
}

/// Parses one series entry: label symbol ids and chunk references.
fn parse_series_entry(decoder: &mut Decoder<'_>, symbol_count: u64) -> Result<RawSeriesEntry, String> {
    let symbol = |decoder: &mut Decoder<'_>| -> Result<u32, String> {
        let id = decoder.uvarint("symbol id").map_err(|error| decode_error("series", error))?;
        if id >= symbol_count {
            return Err(format!("series section: symbol id {id} out of range at byte {}", decoder.position()));
        }
        Ok(id as u32)
    };
    let label_count = decoder.count(2, "label count").map_err(|error| decode_error("series", error))?;
    let mut label_symbols = Vec::with_capacity(label_count);
    for _ in 0..label_count {
        let name = symbol(decoder)?;
        let value = symbol(decoder)?;
        label_symbols.push((name, value));
    }
    let chunk_count = decoder.count(4, "chunk count").map_err(|error| decode_error("series", error))?;
    let mut chunks: Vec<ChunkMeta> = Vec::with_capacity(chunk_count);
    for _ in 0..chunk_count {
        let chunk = match chunks.last() {
            None => {
                let mint_ms = decoder.varint("chunk mint").map_err(|error| decode_error("series", error))?;
                let span = decoder.uvarint("chunk span").map_err(|error| decode_error("series", error))?;
                let chunk_ref = decoder.uvarint("chunk ref").map_err(|error| decode_error("series", error))?;
                let entry_bytes = entry_length(decoder)?;
                ChunkMeta { mint_ms, maxt_ms: mint_ms.wrapping_add(span as i64), chunk_ref, entry_bytes }
            }
            Some(before) => {
                let gap = decoder.varint("chunk mint").map_err(|error| decode_error("series", error))?;
                let span = decoder.uvarint("chunk span").map_err(|error| decode_error("series", error))?;
                let ref_delta = decoder.varint("chunk ref").map_err(|error| decode_error("series", error))?;
                let mint_ms = before.maxt_ms.wrapping_add(gap);
                let entry_bytes = entry_length(decoder)?;
                ChunkMeta {
                    mint_ms,
                    maxt_ms: mint_ms.wrapping_add(span as i64),
                    chunk_ref: before.chunk_ref.wrapping_add(ref_delta as u64),
                    entry_bytes,
                }
            }
        };
        chunks.push(chunk);
    }
    Ok((label_symbols, chunks))
}

fn write_section(out: &mut Vec<u8>, content: &[u8]) -> Result<u64, String> {
    let offset = out.len() as u64;
    let length = u32::try_from(content.len()).map_err(|_| "index section larger than 4 GiB".to_owned())?;
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(content);
    out.extend_from_slice(&crc32fast::hash(content).to_be_bytes());
    Ok(offset)
}

/// The series of a block being written, in label order, with their labels interned: a block writer
/// holds every series until the index is written, and at 1M series owned `Labels` (two `String`s per
/// label) would cost several times the strings' own bytes; here each distinct name or value is held once
/// and a series holds `(name, value)` symbol ids.
#[derive(Debug, Default)]
pub(crate) struct IndexSeries {
    symbol_ids: HashMap<Box<str>, u32>,
    /// Per series: `[name id, value id, ...]` in label order, and its chunks.
    series: Vec<(Box<[u32]>, Vec<ChunkMeta>)>,
}

impl IndexSeries {
    fn intern(&mut self, symbol: &str) -> u32 {
        if let Some(id) = self.symbol_ids.get(symbol) {
            return *id;
        }
        let id = self.symbol_ids.len() as u32;
        self.symbol_ids.insert(symbol.into(), id);
        id
    }

    /// Adds a series after the previous ones (the caller keeps label order).
    pub(crate) fn push(&mut self, labels: &Labels, chunks: Vec<ChunkMeta>) {
        let ids: Box<[u32]> = labels
            .iter()
            .flat_map(|label| [label.name.as_str(), label.value.as_str()])
            .map(|symbol| self.intern(symbol))
            .collect();
        self.series.push((ids, chunks));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Every chunk of every series, for filling in what is known only after the chunks are written.
    pub(crate) fn chunks_mut(&mut self) -> impl Iterator<Item = &mut ChunkMeta> {
        self.series.iter_mut().flat_map(|(_, chunks)| chunks.iter_mut())
    }
}

/// Encodes an index for `series` (added in label order). Returns the file's bytes.
pub(crate) fn encode_index(index_series: &IndexSeries) -> Result<Vec<u8>, String> {
    // Symbols sorted; `renumber[interned id]` is the symbol's position in the sorted table.
    let mut symbol_set: Vec<(&str, u32)> =
        index_series.symbol_ids.iter().map(|(symbol, id)| (symbol.as_ref(), *id)).collect();
    symbol_set.sort_unstable();
    let mut renumber = vec![0u32; symbol_set.len()];
    for (position, (_, id)) in symbol_set.iter().enumerate() {
        renumber[*id as usize] = position as u32;
    }
    let series = &index_series.series;

    let mut out = Vec::new();
    out.extend_from_slice(&INDEX_MAGIC.to_be_bytes());
    out.extend_from_slice(&[INDEX_VERSION, 0, 0, 0]);

    let mut content = Vec::new();
    put_uvarint(&mut content, symbol_set.len() as u64);
    for (symbol, _) in &symbol_set {
        put_bytes(&mut content, symbol.as_bytes());
    }
    let symbols_offset = write_section(&mut out, &deflate_section(&content)?)?;

    // Series: entries gathered into groups of about SERIES_GROUP_BYTES, each deflated.
    let mut groups = Vec::new();
    let mut group_series = 0u64;
    let mut group_count = 0u64;
    let mut compressed = Vec::new();
    let mut finish_group = |content: &mut Vec<u8>, group_series: &mut u64, groups: &mut Vec<u8>| {
        if *group_series == 0 {
            return;
        }
        compressed.clear();
        deflate::compress_into(content, deflate::INDEX_LEVEL, &mut compressed);
        put_uvarint(groups, *group_series);
        put_uvarint(groups, content.len() as u64);
        put_bytes(groups, &compressed);
        content.clear();
        *group_series = 0;
        group_count += 1;
    };
    content.clear();
    let mut postings: HashMap<(u32, u32), RoaringBitmap> = HashMap::new();
    for (position, (label_ids, chunks)) in series.iter().enumerate() {
        if content.len() >= SERIES_GROUP_BYTES {
            finish_group(&mut content, &mut group_series, &mut groups);
        }
        group_series += 1;
        let id = u32::try_from(position).map_err(|_| "more than 2^32 series in one block".to_owned())?;
        put_uvarint(&mut content, (label_ids.len() / 2) as u64);
        for pair in label_ids.chunks_exact(2) {
            let name = renumber.get(pair[0] as usize).copied().unwrap_or_default();
            let value = renumber.get(pair[1] as usize).copied().unwrap_or_default();
            put_uvarint(&mut content, u64::from(name));
            put_uvarint(&mut content, u64::from(value));
            postings.entry((name, value)).or_default().insert(id);
        }
        put_uvarint(&mut content, chunks.len() as u64);
        let mut previous: Option<&ChunkMeta> = None;
        for chunk in chunks {
            match previous {
                None => {
                    put_varint(&mut content, chunk.mint_ms);
                    put_uvarint(&mut content, chunk.maxt_ms.wrapping_sub(chunk.mint_ms) as u64);
                    put_uvarint(&mut content, chunk.chunk_ref);
                }
                Some(before) => {
                    put_varint(&mut content, chunk.mint_ms.wrapping_sub(before.maxt_ms));
                    put_uvarint(&mut content, chunk.maxt_ms.wrapping_sub(chunk.mint_ms) as u64);
                    put_varint(&mut content, chunk.chunk_ref.wrapping_sub(before.chunk_ref) as i64);
                }
            }
            put_uvarint(&mut content, u64::from(chunk.entry_bytes));
            previous = Some(chunk);
        }
    }
    finish_group(&mut content, &mut group_series, &mut groups);
    content.clear();
    put_uvarint(&mut content, series.len() as u64);
    put_uvarint(&mut content, group_count);
    content.extend_from_slice(&groups);
    let series_offset = write_section(&mut out, &content)?;

    content.clear();
    let mut postings: Vec<((u32, u32), RoaringBitmap)> = postings.into_iter().collect();
    postings.sort_unstable_by_key(|(key, _)| *key);
    put_uvarint(&mut content, postings.len() as u64);
    let mut bitmap_bytes = Vec::new();
    for ((name, value), bitmap) in &postings {
        put_uvarint(&mut content, u64::from(*name));
        put_uvarint(&mut content, u64::from(*value));
        bitmap_bytes.clear();
        bitmap.serialize_into(&mut bitmap_bytes).map_err(|error| error.to_string())?;
        put_bytes(&mut content, &bitmap_bytes);
    }
    let postings_offset = write_section(&mut out, &deflate_section(&content)?)?;

    let toc_start = out.len();
    out.extend_from_slice(&symbols_offset.to_be_bytes());
    out.extend_from_slice(&series_offset.to_be_bytes());
    out.extend_from_slice(&postings_offset.to_be_bytes());
    let toc_crc = crc32fast::hash(&out[toc_start..]);
    out.extend_from_slice(&toc_crc.to_be_bytes());
    Ok(out)
}

/// A version-2 symbols or postings section's stored form: `content length u32 │ raw DEFLATE`.
fn deflate_section(content: &[u8]) -> Result<Vec<u8>, String> {
    let length = u32::try_from(content.len()).map_err(|_| "index section larger than 4 GiB".to_owned())?;
    let mut stored = length.to_be_bytes().to_vec();
    deflate::compress_into(content, deflate::INDEX_LEVEL, &mut stored);
    Ok(stored)
}

/// A zeroed buffer of `length` bytes outside the allocator (an anonymous mapping) for what is read once
/// while a block opens: its pages go back to the system when it is dropped. A heap buffer of the same
/// size stayed resident as allocator garbage until jemalloc's decay, seconds after start-up
/// (BENCHMARKS.md, "PromQL memory, session 9").
fn transient_buffer(length: usize) -> std::io::Result<TransientBuffer> {
    if length == 0 {
        return Ok(TransientBuffer::Empty([]));
    }
    memmap2::MmapMut::map_anon(length).map(TransientBuffer::Mapped)
}

/// See [`transient_buffer`].
enum TransientBuffer {
    /// A mapping cannot be empty.
    Empty([u8; 0]),
    Mapped(memmap2::MmapMut),
}

impl std::ops::Deref for TransientBuffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            TransientBuffer::Empty(empty) => empty,
            TransientBuffer::Mapped(mapped) => mapped,
        }
    }
}

impl std::ops::DerefMut for TransientBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self {
            TransientBuffer::Empty(empty) => empty,
            TransientBuffer::Mapped(mapped) => mapped,
        }
    }
}

/// Inverse of [`deflate_section`], into a [`transient_buffer`]: a section's content is needed only while
/// the block's index is decoded (the postings' about 1 MB at 100k series).
fn inflate_section(stored: &[u8], name: &str) -> Result<TransientBuffer, String> {
    let (length, compressed) =
        stored.split_first_chunk::<4>().ok_or_else(|| format!("{name} section shorter than its length"))?;
    let mut buffer = transient_buffer(u32::from_be_bytes(*length) as usize)
        .map_err(|error| format!("{name} section: no memory to inflate it: {error}"))?;
    deflate::decompress_exact_into(compressed, &mut buffer).map_err(|reason| format!("{name} section: {reason}"))?;
    Ok(buffer)
}

fn read_section<'a>(bytes: &'a [u8], offset: u64, name: &str) -> Result<&'a [u8], String> {
    let start = usize::try_from(offset).map_err(|_| format!("{name} section offset out of range"))?;
    let length_bytes =
        bytes.get(start..start + 4).ok_or_else(|| format!("{name} section offset {offset} out of range"))?;
    let length = u32::from_be_bytes([length_bytes[0], length_bytes[1], length_bytes[2], length_bytes[3]]) as usize;
    let content =
        bytes.get(start + 4..start + 4 + length).ok_or_else(|| format!("{name} section at {offset} truncated"))?;
    let crc_bytes = bytes
        .get(start + 4 + length..start + 8 + length)
        .ok_or_else(|| format!("{name} section at {offset} lacks its checksum"))?;
    let stored = u32::from_be_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
    if crc32fast::hash(content) != stored {
        return Err(format!("{name} section at offset {offset}: checksum mismatch"));
    }
    Ok(content)
}

fn entry_length(decoder: &mut Decoder<'_>) -> Result<u32, String> {
    let length = decoder.uvarint("chunk entry length").map_err(|error| decode_error("series", error))?;
    u32::try_from(length).map_err(|_| format!("series section: chunk entry length {length} too large"))
}

fn decode_error(section: &str, error: DecodeError) -> String {
    format!("{section} section: {error}")
}

/// Decodes an index file's bytes (verifying every checksum and series entry) into the in-memory part
/// of a [`BlockIndex`] reading series from `source`, holding the symbols and postings of the first of
/// `shareable` whose are equal instead of its own copy.
fn decode_index_with(bytes: &[u8], source: IndexSource, shareable: &[&BlockIndex]) -> Result<BlockIndex, String> {
    if bytes.len() < HEADER_BYTES + TOC_BYTES {
        return Err(format!("index of {} bytes is too short", bytes.len()));
    }
    if bytes[..4] != INDEX_MAGIC.to_be_bytes() {
        return Err("bad index magic".to_owned());
    }
    let version = bytes[4];
    if version != INDEX_VERSION && version != INDEX_VERSION_1 {
        return Err(format!("unsupported index version {version}"));
    }
    let toc = &bytes[bytes.len() - TOC_BYTES..];
    let toc_crc = u32::from_be_bytes([toc[24], toc[25], toc[26], toc[27]]);
    if crc32fast::hash(&toc[..24]) != toc_crc {
        return Err("index table of contents checksum mismatch".to_owned());
    }
    let offset_at = |position: usize| {
        let mut array = [0u8; 8];
        array.copy_from_slice(&toc[position..position + 8]);
        u64::from_be_bytes(array)
    };

    let inflated;
    let mut content = read_section(bytes, offset_at(0), "symbols")?;
    if version != INDEX_VERSION_1 {
        inflated = inflate_section(content, "symbols")?;
        content = &inflated;
    }
    let mut decoder = Decoder::new(content);
    let count = decoder.count(1, "symbol count").map_err(|error| decode_error("symbols", error))?;
    let mut symbols = Vec::with_capacity(count);
    for _ in 0..count {
        symbols.push(decoder.str("symbol").map_err(|error| decode_error("symbols", error))?);
    }
    let symbol_count = symbols.len() as u64;

    let series_section_offset = offset_at(8);
    let content = read_section(bytes, series_section_offset, "series")?;
    let content_start = series_section_offset + 4;
    let mut decoder = Decoder::new(content);
    let (count, series_layout) = if version == INDEX_VERSION_1 {
        let count = decoder.count(2, "series count").map_err(|error| decode_error("series", error))?;
        let mut series_offsets = Vec::with_capacity(count + 1);
        for _ in 0..count {
            series_offsets.push(content_start + decoder.position() as u64);
            parse_series_entry(&mut decoder, symbol_count)?;
        }
        series_offsets.push(content_start + decoder.position() as u64);
        (count, SeriesLayout::Plain(series_offsets))
    } else {
        let count = decoder.uvarint("series count").map_err(|error| decode_error("series", error))?;
        let count = u32::try_from(count).map_err(|_| format!("series section: {count} series is too many"))?;
        let group_count = decoder.count(3, "group count").map_err(|error| decode_error("series", error))?;
        let mut groups = Vec::with_capacity(group_count);
        let mut first_id = 0u32;
        for _ in 0..group_count {
            let group_series = decoder.uvarint("group series count").map_err(|error| decode_error("series", error))?;
            let content_bytes = decoder.uvarint("group length").map_err(|error| decode_error("series", error))?;
            let content_bytes = u32::try_from(content_bytes)
                .map_err(|_| format!("series section: group length {content_bytes} too large"))?;
            let compressed = decoder.bytes("group").map_err(|error| decode_error("series", error))?;
            let offset = content_start + (decoder.position() - compressed.len()) as u64;
            let group_content = deflate::decompress_exact(compressed, content_bytes as usize)
                .map_err(|reason| format!("series group of {first_id}: {reason}"))?;
            let mut group_decoder = Decoder::new(&group_content);
            let mut parsed = 0u64;
            while !group_decoder.is_empty() {
                parse_series_entry(&mut group_decoder, symbol_count)?;
                parsed += 1;
            }
            if parsed != group_series || group_series == 0 {
                return Err(format!(
                    "series group of {first_id}: holds {parsed} series, its header says {group_series}"
                ));
            }
            groups.push(SeriesGroup { first_id, offset, compressed_bytes: compressed.len() as u32, content_bytes });
            first_id = u32::try_from(u64::from(first_id) + group_series)
                .ok()
                .filter(|next| *next <= count)
                .ok_or_else(|| "series section: groups hold more series than its count".to_owned())?;
        }
        if first_id != count {
            return Err(format!("series section: groups hold {first_id} series, its count says {count}"));
        }
        if !decoder.is_empty() {
            return Err("series section: bytes after the last group".to_owned());
        }
        (count as usize, SeriesLayout::Grouped(groups))
    };

    let inflated;
    let mut content = read_section(bytes, offset_at(16), "postings")?;
    if version != INDEX_VERSION_1 {
        inflated = inflate_section(content, "postings")?;
        content = &inflated;
    }
    // An earlier block of the same series (every 2 h block of a stable fleet) is compared entry by entry
    // before anything is built, so equal postings are never built twice only to be dropped: the freed
    // copies stayed resident in the allocator after start-up (BENCHMARKS.md, "PromQL memory, session 9").
    let equal_labels = shareable.iter().find(|other| {
        other.series_count == count
            && other.symbols.len() == symbols.len()
            && other.symbols.iter().zip(&symbols).all(|(held, read)| held == read)
    });
    let mut shared = None;
    if let Some(other) = equal_labels {
        let mut pairs = 0usize;
        let all_equal = for_each_postings_entry(content, &symbols, count, |name, value, bitmap| {
            pairs += 1;
            other.postings.get(name, value).is_some_and(|held| held.len() == bitmap.len() && bitmap.is_subset(held))
        })?;
        if all_equal && pairs == other.postings.pair_count() {
            shared = Some((Arc::clone(&other.symbols), Arc::clone(&other.postings)));
        }
    }
    let (symbols, postings) = match shared {
        Some(shared) => shared,
        None => {
            let mut postings = MemPostings::new();
            for_each_postings_entry(content, &symbols, count, |name, value, mut bitmap| {
                bitmap.optimize();
                postings.insert_bitmap(name, value, bitmap);
                true
            })?;
            postings.run_compress();
            (Arc::new(symbols.into_iter().map(str::to_owned).collect()), Arc::new(postings))
        }
    };
    Ok(BlockIndex {
        symbols,
        series_count: count,
        series_layout,
        postings,
        source,
        recent_groups: Mutex::new(Vec::new()),
    })
}

/// Decodes every entry of a postings section's content, checking its symbol ids and series ids, and
/// hands each to `visit` until it returns false. Returns whether every entry was visited.
fn for_each_postings_entry(
    content: &[u8],
    symbols: &[&str],
    series_count: usize,
    mut visit: impl FnMut(&str, &str, RoaringBitmap) -> bool,
) -> Result<bool, String> {
    let mut decoder = Decoder::new(content);
    let postings_count = decoder.count(3, "postings count").map_err(|error| decode_error("postings", error))?;
    for _ in 0..postings_count {
        let mut symbol = |what: &'static str| -> Result<&str, String> {
            let id = decoder.uvarint(what).map_err(|error| decode_error("postings", error))?;
            symbols.get(id as usize).copied().ok_or_else(|| format!("postings section: symbol id {id} out of range"))
        };
        let name = symbol("name symbol")?;
        let value = symbol("value symbol")?;
        let bitmap_bytes = decoder.bytes("postings bitmap").map_err(|error| decode_error("postings", error))?;
        let bitmap = RoaringBitmap::deserialize_from(bitmap_bytes)
            .map_err(|error| format!("postings section: bad bitmap: {error}"))?;
        if bitmap.max().is_some_and(|max| max as usize >= series_count) {
            return Err("postings section: series id out of range".to_owned());
        }
        if !visit(name, value, bitmap) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Decodes index bytes held in memory.
#[cfg(test)]
pub(crate) fn decode_index(bytes: &[u8]) -> Result<BlockIndex, String> {
    decode_index_with(bytes, IndexSource::Memory(bytes.to_vec()), &[])
}

/// Opens the index file at `path`: reads and verifies it once, keeps symbols, postings and series
/// offsets, and reads series entries from the file afterwards. Symbols and postings equal to those of
/// one of `shareable` are that index's, shared.
pub(crate) fn read_index(path: &Path, shareable: &[&BlockIndex]) -> Result<BlockIndex, TsdbError> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path).map_err(|error| TsdbError::io(path, "open index", error))?;
    let length = file.metadata().map_err(|error| TsdbError::io(path, "read index", error))?.len();
    let length = usize::try_from(length).map_err(|_| TsdbError::corrupt(path, "index larger than memory"))?;
    let mut bytes = transient_buffer(length).map_err(|error| TsdbError::io(path, "read index", error))?;
    file.read_exact_at(&mut bytes, 0).map_err(|error| TsdbError::io(path, "read index", error))?;
    decode_index_with(&bytes, IndexSource::File { path: path.to_path_buf(), file }, shareable)
        .map_err(|reason| TsdbError::corrupt(path, reason))
}

#[cfg(test)]
mod tests {
    use oxeye_model::Matcher;

    use super::*;

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_index_decoder(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = decode_index(&bytes);
            // Also with a valid header and table of contents around the noise.
            let mut framed = INDEX_MAGIC.to_be_bytes().to_vec();
            framed.extend_from_slice(&[INDEX_VERSION, 0, 0, 0]);
            framed.extend_from_slice(&bytes);
            let mut toc = Vec::new();
            for offset in [8u64, 9, 10] {
                toc.extend_from_slice(&offset.to_be_bytes());
            }
            let crc = crc32fast::hash(&toc);
            framed.extend_from_slice(&toc);
            framed.extend_from_slice(&crc.to_be_bytes());
            let _ = decode_index(&framed);
        }
    }

    /// Series entries are found by stepping over the others in their group: ids asked for in any order,
    /// twice, or across several groups must still come back exactly as written.
    #[test]
    fn series_read_from_several_groups_in_any_order() {
        let series: Vec<(Labels, Vec<ChunkMeta>)> = (0..3_000u64)
            .map(|number| {
                let labels = Labels::from_pairs([("__name__", "m".to_owned()), ("id", format!("{number:05}"))]);
                let chunks = (0..(number % 4))
                    .map(|chunk| ChunkMeta {
                        mint_ms: (chunk * 1_000) as i64,
                        maxt_ms: (chunk * 1_000 + 900) as i64,
                        chunk_ref: (number << 20) | chunk,
                        entry_bytes: (number % 300) as u32,
                    })
                    .collect();
                (labels, chunks)
            })
            .collect();
        let mut index_series = IndexSeries::default();
        for (labels, chunks) in &series {
            index_series.push(labels, chunks.clone());
        }
        let index = decode_index(&encode_index(&index_series).unwrap()).unwrap();
        assert!(matches!(&index.series_layout, SeriesLayout::Grouped(groups) if groups.len() > 2));
        let ids = [2_999u32, 0, 1_500, 1_500, 7, 2_998, 1, 0];
        let entries = index.read_series(&ids).unwrap();
        for (id, entry) in ids.iter().zip(entries) {
            let (labels, chunks) = &series[*id as usize];
            assert_eq!(entry, SeriesEntry { labels: labels.clone(), chunks: chunks.clone() }, "series {id}");
        }
    }

    #[test]
    fn index_round_trips_and_detects_damage() {
        let series = vec![
            (
                Labels::from_pairs([("__name__", "a"), ("job", "x")]),
                vec![
                    ChunkMeta { mint_ms: 0, maxt_ms: 100, chunk_ref: (1 << 32) | 8, entry_bytes: 52 },
                    ChunkMeta { mint_ms: 150, maxt_ms: 300, chunk_ref: (1 << 32) | 60, entry_bytes: 7 },
                ],
            ),
            (
                Labels::from_pairs([("__name__", "b"), ("job", "x")]),
                vec![ChunkMeta { mint_ms: -5, maxt_ms: 5, chunk_ref: 99, entry_bytes: 300 }],
            ),
        ];
        let mut index_series = IndexSeries::default();
        for (labels, chunks) in &series {
            index_series.push(labels, chunks.clone());
        }
        let bytes = encode_index(&index_series).unwrap();
        let index = decode_index(&bytes).unwrap();
        assert_eq!(index.num_series(), 2);
        let entries = index.read_series(&[1, 0]).unwrap();
        assert_eq!(entries[0], SeriesEntry { labels: series[1].0.clone(), chunks: series[1].1.clone() });
        assert_eq!(entries[1], SeriesEntry { labels: series[0].0.clone(), chunks: series[0].1.clone() });
        assert!(index.read_series(&[2]).is_err());
        assert_eq!(index.postings.select(&[Matcher::equal("job", "x")]).len(), 2);
        assert_eq!(index.postings.select(&[Matcher::equal("__name__", "b")]).iter().collect::<Vec<_>>(), [1]);

        for position in [0, 9, 20, bytes.len() - 30, bytes.len() - 1] {
            let mut damaged = bytes.clone();
            damaged[position] ^= 0x10;
            assert!(decode_index(&damaged).is_err(), "flip at {position}");
        }
        assert!(decode_index(&bytes[..bytes.len() - 1]).is_err());
    }

    /// Series sorted by labels put each metric name on consecutive ids: its postings must be held as
    /// runs (a few bytes) rather than one entry per series, and still select the same series.
    #[test]
    fn block_postings_are_held_as_runs() {
        let mut index_series = IndexSeries::default();
        for name in ["a", "b"] {
            for number in 0..5_000u32 {
                let labels = Labels::from_pairs([("__name__", name.to_owned()), ("id", format!("{number:05}"))]);
                index_series.push(&labels, Vec::new());
            }
        }
        let index = decode_index(&encode_index(&index_series).unwrap()).unwrap();
        let name_b = index.postings.get("__name__", "b").unwrap();
        assert_eq!(name_b.len(), 5_000);
        assert_eq!(name_b.min(), Some(5_000));
        assert!(name_b.serialized_size() < 64, "{} bytes", name_b.serialized_size());
        assert!(index.postings.all().serialized_size() < 64);
        assert_eq!(index.postings.select(&[Matcher::equal("__name__", "b")]).len(), 5_000);
        assert_eq!(index.postings.select(&[Matcher::equal("id", "00007")]).iter().collect::<Vec<_>>(), [7, 5_007]);
    }

    /// A block read after another of the same series takes that block's symbols and postings while it
    /// is decoded (nothing built twice); a block that differs in one series' label, or in which series
    /// carry a value, builds its own.
    #[test]
    fn an_index_read_after_an_equal_one_shares_its_labels() {
        let encoded = |series: &[(&str, &str)]| {
            let mut index_series = IndexSeries::default();
            for (name, job) in series {
                let chunk = ChunkMeta { mint_ms: 0, maxt_ms: 10, chunk_ref: 1, entry_bytes: 9 };
                index_series.push(&Labels::from_pairs([("__name__", *name), ("job", *job)]), vec![chunk]);
            }
            encode_index(&index_series).unwrap()
        };
        let decode_sharing = |bytes: &[u8], shareable: &[&BlockIndex]| {
            decode_index_with(bytes, IndexSource::Memory(bytes.to_vec()), shareable).unwrap()
        };
        let first = decode_index(&encoded(&[("a", "x"), ("b", "y")])).unwrap();
        let next = decode_sharing(&encoded(&[("a", "x"), ("b", "y")]), &[&first]);
        assert!(Arc::ptr_eq(&next.postings, &first.postings) && Arc::ptr_eq(&next.symbols, &first.symbols));
        // The same symbols, other postings: the jobs swapped.
        let swapped = decode_sharing(&encoded(&[("a", "y"), ("b", "x")]), &[&first]);
        assert_eq!(swapped.symbols, first.symbols);
        assert!(!Arc::ptr_eq(&swapped.postings, &first.postings));
        assert_eq!(swapped.postings.select(&[Matcher::equal("job", "y")]).iter().collect::<Vec<_>>(), [0]);
        let more = decode_sharing(&encoded(&[("a", "x"), ("b", "y"), ("c", "y")]), &[&swapped, &first]);
        assert!(!Arc::ptr_eq(&more.postings, &first.postings) && !Arc::ptr_eq(&more.postings, &swapped.postings));
        assert_eq!(more.postings.select(&[Matcher::equal("job", "y")]).iter().collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn blocks_of_the_same_series_share_symbols_and_postings() {
        let index_of = |series: &[(&str, &str, u64)]| {
            let mut index_series = IndexSeries::default();
            for (name, job, chunk_ref) in series {
                let chunk = ChunkMeta { mint_ms: 0, maxt_ms: 10, chunk_ref: *chunk_ref, entry_bytes: 9 };
                index_series.push(&Labels::from_pairs([("__name__", *name), ("job", *job)]), vec![chunk]);
            }
            decode_index(&encode_index(&index_series).unwrap()).unwrap()
        };
        // Same series, other chunks: the next 2 h block of a stable fleet.
        let first = index_of(&[("a", "x", 1), ("b", "x", 2)]);
        let mut next = index_of(&[("a", "x", 7), ("b", "x", 8)]);
        let mut other = index_of(&[("a", "x", 1), ("b", "y", 2)]);
        assert!(!other.share_labels_with(&first));
        assert!(!Arc::ptr_eq(&other.postings, &first.postings));
        assert!(next.share_labels_with(&first));
        assert!(Arc::ptr_eq(&next.postings, &first.postings) && Arc::ptr_eq(&next.symbols, &first.symbols));
        // Series entries stay the block's own.
        assert_eq!(next.read_series(&[1]).unwrap()[0].chunks[0].chunk_ref, 8);
        assert_eq!(next.postings.select(&[Matcher::equal("__name__", "b")]).iter().collect::<Vec<_>>(), [1]);
    }
}
