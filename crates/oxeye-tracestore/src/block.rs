//! Immutable blocks: one file of traces sorted by trace id, in LZ4-compressed pages, with a trace-id index
//! (sorted ids → page, binary search) and a summary (time range, service and span names, duration range,
//! error flag, a bloom filter of string attributes) that lets search skip the block. `docs/format.md`
//! draws the file byte by byte.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use oxeye_model::traces::{StatusCode, Trace, TraceId, TraceScanHints};

use crate::TraceStoreError;
use crate::encoding::{self, put_uvarint};

/// The first 8 bytes of a block file.
pub(crate) const BLOCK_MAGIC: &[u8; 8] = b"OXTBLK\x00\x01";
/// The last 8 bytes of a block file.
pub(crate) const FOOTER_MAGIC: &[u8; 8] = b"OXTBEND\x01";
/// The block format version written in the footer.
pub(crate) const BLOCK_VERSION: u32 = 1;
/// Footer: index offset (u64), summary offset (u64), CRC32 (u32), version (u32), magic (8 bytes).
const FOOTER_BYTES: usize = 32;
/// File name suffix of a block.
pub(crate) const BLOCK_SUFFIX: &str = ".oxtb";
/// At most this many distinct service or span names are listed in a summary; beyond, the list is marked
/// incomplete and search cannot skip the block by name.
const MAX_SUMMARY_NAMES: usize = 4096;
/// Bloom filter: bits per distinct string attribute, and hash functions.
const BLOOM_BITS_PER_ENTRY: usize = 10;
const BLOOM_HASHES: u32 = 4;

/// What search may use to skip a block.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BlockSummary {
    /// Earliest span start, ns.
    pub min_start_unix_nano: u64,
    /// Latest span end, ns.
    pub max_end_unix_nano: u64,
    /// Spans in the block.
    pub span_count: u64,
    /// Traces in the block.
    pub trace_count: u64,
    /// WAL segments below this index hold nothing that is not in this or an older block.
    pub wal_through_segment: u64,
    /// Shortest and longest span duration, ns.
    pub min_span_duration_nanos: u64,
    /// Longest span duration, ns.
    pub max_span_duration_nanos: u64,
    /// Whether some span has status error.
    pub has_error: bool,
    /// Distinct `service.name` values (sorted), complete when `names_complete`.
    pub service_names: Vec<String>,
    /// Distinct span names (sorted), complete when `names_complete`.
    pub span_names: Vec<String>,
    /// Whether both name lists are complete.
    pub names_complete: bool,
    /// Bloom filter over `key=value` of every string attribute of spans and resources.
    pub attribute_bloom: Vec<u8>,
}

fn fnv1a(bytes: &[u8], seed: u64) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

fn bloom_positions(key: &str, value: &str, bits: u64) -> impl Iterator<Item = u64> {
    let mut text = Vec::with_capacity(key.len() + value.len() + 1);
    text.extend_from_slice(key.as_bytes());
    text.push(b'=');
    text.extend_from_slice(value.as_bytes());
    let first = fnv1a(&text, 0);
    let second = fnv1a(&text, 1) | 1;
    (0..u64::from(BLOOM_HASHES)).map(move |round| first.wrapping_add(round.wrapping_mul(second)) % bits)
}

impl BlockSummary {
    /// Whether a trace matching `hints` may be in this block (false only when it certainly is not).
    pub fn may_match(&self, hints: &TraceScanHints) -> bool {
        if let Some(minimum) = hints.min_span_duration_nanos
            && self.max_span_duration_nanos < minimum
        {
            return false;
        }
        if hints.has_error && !self.has_error {
            return false;
        }
        if self.names_complete {
            if let Some(service) = &hints.service_name
                && self.service_names.binary_search(service).is_err()
            {
                return false;
            }
            if let Some(name) = &hints.span_name
                && self.span_names.binary_search(name).is_err()
            {
                return false;
            }
        }
        let bits = (self.attribute_bloom.len() * 8) as u64;
        if bits > 0 {
            for (key, value) in &hints.string_attributes {
                let present = bloom_positions(key, value, bits).all(|bit| {
                    self.attribute_bloom.get((bit / 8) as usize).is_some_and(|byte| byte & (1 << (bit % 8)) != 0)
                });
                if !present {
                    return false;
                }
            }
        }
        true
    }
}

/// Builds a summary over traces.
fn summarize(traces: &[&Trace], wal_through_segment: u64) -> BlockSummary {
    let mut summary = BlockSummary {
        min_start_unix_nano: u64::MAX,
        min_span_duration_nanos: u64::MAX,
        wal_through_segment,
        trace_count: traces.len() as u64,
        ..BlockSummary::default()
    };
    let mut services = BTreeSet::new();
    let mut names = BTreeSet::new();
    let mut attribute_pairs: BTreeSet<(&str, &str)> = BTreeSet::new();
    for trace in traces {
        for batch in &trace.resource_spans {
            if let Some(service) = batch.resource.service_name() {
                services.insert(service);
            }
            for attribute in &batch.resource.attributes {
                if let Some(value) = attribute.value.as_str() {
                    attribute_pairs.insert((&attribute.key, value));
                }
            }
            for span in batch.spans() {
                summary.span_count += 1;
                summary.min_start_unix_nano = summary.min_start_unix_nano.min(span.start_time_unix_nano);
                summary.max_end_unix_nano = summary.max_end_unix_nano.max(span.end_time_unix_nano);
                summary.min_span_duration_nanos = summary.min_span_duration_nanos.min(span.duration_nanos());
                summary.max_span_duration_nanos = summary.max_span_duration_nanos.max(span.duration_nanos());
                summary.has_error |= span.status_code == StatusCode::Error;
                names.insert(span.name.as_str());
                for attribute in &span.attributes {
                    if let Some(value) = attribute.value.as_str() {
                        attribute_pairs.insert((&attribute.key, value));
                    }
                }
            }
        }
    }
    if summary.span_count == 0 {
        summary.min_start_unix_nano = 0;
        summary.min_span_duration_nanos = 0;
    }
    summary.names_complete = services.len() <= MAX_SUMMARY_NAMES && names.len() <= MAX_SUMMARY_NAMES;
    if summary.names_complete {
        summary.service_names = services.into_iter().map(str::to_string).collect();
        summary.span_names = names.into_iter().map(str::to_string).collect();
    }
    let bits = (attribute_pairs.len() * BLOOM_BITS_PER_ENTRY).max(64).next_multiple_of(8);
    let mut bloom = vec![0u8; bits / 8];
    for (key, value) in attribute_pairs {
        for bit in bloom_positions(key, value, bits as u64) {
            if let Some(byte) = bloom.get_mut((bit / 8) as usize) {
                *byte |= 1 << (bit % 8);
            }
        }
    }
    summary.attribute_bloom = bloom;
    summary
}

fn put_string(out: &mut Vec<u8>, text: &str) {
    put_uvarint(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

fn encode_summary(summary: &BlockSummary, out: &mut Vec<u8>) {
    for value in [
        summary.min_start_unix_nano,
        summary.max_end_unix_nano,
        summary.span_count,
        summary.trace_count,
        summary.wal_through_segment,
        summary.min_span_duration_nanos,
        summary.max_span_duration_nanos,
    ] {
        out.extend_from_slice(&value.to_le_bytes());
    }
    out.push(u8::from(summary.has_error));
    out.push(u8::from(summary.names_complete));
    for names in [&summary.service_names, &summary.span_names] {
        put_uvarint(out, names.len() as u64);
        for name in names {
            put_string(out, name);
        }
    }
    put_uvarint(out, summary.attribute_bloom.len() as u64);
    out.extend_from_slice(&summary.attribute_bloom);
}

/// Writes `traces` (any order; sorted here by id) as a block file at `path` (via a temporary file and a
/// rename, fsynced), pages of about `page_bytes` uncompressed bytes.
///
/// # Errors
/// [`TraceStoreError::Io`] naming the file.
pub(crate) fn write_block(
    path: &Path,
    mut traces: Vec<&Trace>,
    page_bytes: usize,
    wal_through_segment: u64,
) -> Result<BlockSummary, TraceStoreError> {
    traces.sort_unstable_by(|left, right| left.trace_id.cmp(&right.trace_id));
    let summary = summarize(&traces, wal_through_segment);
    let mut file_bytes = Vec::new();
    file_bytes.extend_from_slice(BLOCK_MAGIC);
    let mut pages: Vec<(u64, u32, u32)> = Vec::new();
    let mut index: Vec<(TraceId, u32)> = Vec::with_capacity(traces.len());
    let mut page_start = 0;
    let mut scratch = Vec::new();
    while page_start < traces.len() {
        // Grow the page trace by trace until it reaches the target size (one trace may exceed it alone).
        let mut page_end = page_start;
        let mut estimate = 0usize;
        while page_end < traces.len() && (page_end == page_start || estimate < page_bytes) {
            scratch.clear();
            encoding::encode_traces(std::iter::once(traces[page_end]), &mut scratch);
            estimate += scratch.len();
            page_end += 1;
        }
        scratch.clear();
        encoding::encode_traces(traces[page_start..page_end].iter().copied(), &mut scratch);
        let compressed = lz4_flex::compress_prepend_size(&scratch);
        let page_number = pages.len() as u32;
        pages.push((file_bytes.len() as u64, compressed.len() as u32, crc32fast::hash(&compressed)));
        file_bytes.extend_from_slice(&compressed);
        for trace in &traces[page_start..page_end] {
            index.push((trace.trace_id, page_number));
        }
        page_start = page_end;
    }
    let index_offset = file_bytes.len() as u64;
    file_bytes.extend_from_slice(&(pages.len() as u32).to_le_bytes());
    for (offset, length, crc) in &pages {
        file_bytes.extend_from_slice(&offset.to_le_bytes());
        file_bytes.extend_from_slice(&length.to_le_bytes());
        file_bytes.extend_from_slice(&crc.to_le_bytes());
    }
    file_bytes.extend_from_slice(&(index.len() as u32).to_le_bytes());
    for (trace_id, page) in &index {
        file_bytes.extend_from_slice(trace_id);
        file_bytes.extend_from_slice(&page.to_le_bytes());
    }
    let summary_offset = file_bytes.len() as u64;
    encode_summary(&summary, &mut file_bytes);
    let crc = crc32fast::hash(&file_bytes[index_offset as usize..]);
    file_bytes.extend_from_slice(&index_offset.to_le_bytes());
    file_bytes.extend_from_slice(&summary_offset.to_le_bytes());
    file_bytes.extend_from_slice(&crc.to_le_bytes());
    file_bytes.extend_from_slice(&BLOCK_VERSION.to_le_bytes());
    file_bytes.extend_from_slice(FOOTER_MAGIC);

    let temporary = path.with_extension("tmp");
    let mut file = File::create(&temporary).map_err(|error| TraceStoreError::io(&temporary, "create block", error))?;
    file.write_all(&file_bytes).map_err(|error| TraceStoreError::io(&temporary, "write block", error))?;
    file.sync_all().map_err(|error| TraceStoreError::io(&temporary, "fsync block", error))?;
    drop(file);
    std::fs::rename(&temporary, path).map_err(|error| TraceStoreError::io(path, "rename block", error))?;
    if let Some(directory) = path.parent() {
        File::open(directory)
            .and_then(|handle| handle.sync_all())
            .map_err(|error| TraceStoreError::io(directory, "fsync block directory", error))?;
    }
    Ok(summary)
}

/// An open block: the index and summary in memory, pages read on demand.
#[derive(Debug)]
pub(crate) struct Block {
    pub(crate) path: PathBuf,
    file: File,
    /// Per page: file offset, compressed length, CRC32 of the compressed bytes.
    pages: Vec<(u64, u32, u32)>,
    trace_ids: Vec<TraceId>,
    trace_pages: Vec<u32>,
    pub(crate) summary: BlockSummary,
    pub(crate) size_bytes: u64,
}

struct Reader<'b> {
    bytes: &'b [u8],
    position: usize,
    path: &'b Path,
    base: u64,
}

impl Reader<'_> {
    fn take(&mut self, length: usize) -> Result<&[u8], TraceStoreError> {
        let end = self.position.checked_add(length).filter(|end| *end <= self.bytes.len()).ok_or_else(|| {
            TraceStoreError::corrupt(self.path, self.base + self.position as u64, "metadata is truncated")
        })?;
        let slice = &self.bytes[self.position..end];
        self.position = end;
        Ok(slice)
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], TraceStoreError> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    fn u32(&mut self) -> Result<u32, TraceStoreError> {
        Ok(u32::from_le_bytes(self.fixed::<4>()?))
    }

    fn u64(&mut self) -> Result<u64, TraceStoreError> {
        Ok(u64::from_le_bytes(self.fixed::<8>()?))
    }

    fn uvarint(&mut self) -> Result<u64, TraceStoreError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.fixed::<1>()?[0];
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(TraceStoreError::corrupt(self.path, self.base + self.position as u64, "varint longer than 10 bytes"))
    }

    fn string(&mut self) -> Result<String, TraceStoreError> {
        let length = self.uvarint()? as usize;
        let offset = self.base + self.position as u64;
        let raw = self.take(length)?;
        String::from_utf8(raw.to_vec()).map_err(|_| TraceStoreError::corrupt(self.path, offset, "name is not UTF-8"))
    }
}

#[cfg(unix)]
fn read_at(file: &File, buffer: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buffer, offset)
}

impl Block {
    /// Opens a block file: checks magic, footer and metadata CRC, and loads index and summary.
    ///
    /// # Errors
    /// [`TraceStoreError::Io`] or [`TraceStoreError::Corrupt`] naming the file and offset.
    pub(crate) fn open(path: &Path) -> Result<Block, TraceStoreError> {
        let file = File::open(path).map_err(|error| TraceStoreError::io(path, "open block", error))?;
        let size_bytes = file.metadata().map_err(|error| TraceStoreError::io(path, "stat block", error))?.len();
        if size_bytes < (BLOCK_MAGIC.len() + FOOTER_BYTES) as u64 {
            return Err(TraceStoreError::corrupt(path, 0, format!("file of {size_bytes} bytes is too short")));
        }
        let mut magic = [0u8; 8];
        read_at(&file, &mut magic, 0).map_err(|error| TraceStoreError::io(path, "read block header", error))?;
        if &magic != BLOCK_MAGIC {
            return Err(TraceStoreError::corrupt(path, 0, "bad block magic"));
        }
        let footer_offset = size_bytes - FOOTER_BYTES as u64;
        let mut footer = [0u8; FOOTER_BYTES];
        read_at(&file, &mut footer, footer_offset).map_err(|error| TraceStoreError::io(path, "read footer", error))?;
        let mut footer_reader = Reader { bytes: &footer, position: 0, path, base: footer_offset };
        let index_offset = footer_reader.u64()?;
        let summary_offset = footer_reader.u64()?;
        let crc = footer_reader.u32()?;
        let version = footer_reader.u32()?;
        if footer_reader.fixed::<8>()? != *FOOTER_MAGIC {
            return Err(TraceStoreError::corrupt(path, footer_offset + 24, "bad footer magic"));
        }
        if version != BLOCK_VERSION {
            return Err(TraceStoreError::corrupt(path, footer_offset + 20, format!("unknown block version {version}")));
        }
        if !(BLOCK_MAGIC.len() as u64 <= index_offset
            && index_offset <= summary_offset
            && summary_offset <= footer_offset)
        {
            return Err(TraceStoreError::corrupt(path, footer_offset, "section offsets out of order"));
        }
        let mut metadata = vec![0u8; (footer_offset - index_offset) as usize];
        read_at(&file, &mut metadata, index_offset).map_err(|error| TraceStoreError::io(path, "read index", error))?;
        if crc32fast::hash(&metadata) != crc {
            return Err(TraceStoreError::corrupt(path, index_offset, "index and summary CRC mismatch"));
        }
        let mut reader = Reader { bytes: &metadata, position: 0, path, base: index_offset };
        let page_count = reader.u32()? as usize;
        let mut pages = Vec::with_capacity(page_count.min(metadata.len() / 16));
        for _ in 0..page_count {
            let offset = reader.u64()?;
            let length = reader.u32()?;
            let page_crc = reader.u32()?;
            if offset.saturating_add(u64::from(length)) > index_offset {
                return Err(TraceStoreError::corrupt(path, offset, "page extends past the data section"));
            }
            pages.push((offset, length, page_crc));
        }
        let trace_count = reader.u32()? as usize;
        let mut trace_ids = Vec::with_capacity(trace_count.min(metadata.len() / 20));
        let mut trace_pages = Vec::with_capacity(trace_count.min(metadata.len() / 20));
        for _ in 0..trace_count {
            trace_ids.push(reader.fixed::<16>()?);
            let page = reader.u32()?;
            if page as usize >= pages.len() {
                return Err(TraceStoreError::corrupt(
                    path,
                    index_offset + reader.position as u64,
                    "page number out of range",
                ));
            }
            trace_pages.push(page);
        }
        if (index_offset + reader.position as u64) != summary_offset {
            return Err(TraceStoreError::corrupt(path, summary_offset, "index does not end at the summary"));
        }
        let mut summary = BlockSummary {
            min_start_unix_nano: reader.u64()?,
            max_end_unix_nano: reader.u64()?,
            span_count: reader.u64()?,
            trace_count: reader.u64()?,
            wal_through_segment: reader.u64()?,
            min_span_duration_nanos: reader.u64()?,
            max_span_duration_nanos: reader.u64()?,
            has_error: reader.fixed::<1>()?[0] != 0,
            names_complete: reader.fixed::<1>()?[0] != 0,
            ..BlockSummary::default()
        };
        for list in 0..2 {
            let count = reader.uvarint()? as usize;
            let mut names = Vec::with_capacity(count.min(MAX_SUMMARY_NAMES));
            for _ in 0..count {
                names.push(reader.string()?);
            }
            if list == 0 {
                summary.service_names = names;
            } else {
                summary.span_names = names;
            }
        }
        let bloom_length = reader.uvarint()? as usize;
        summary.attribute_bloom = reader.take(bloom_length)?.to_vec();
        Ok(Block { path: path.to_path_buf(), file, pages, trace_ids, trace_pages, summary, size_bytes })
    }

    /// Reads and decompresses page `page`, checking its CRC.
    fn read_page(&self, page: usize) -> Result<Vec<u8>, TraceStoreError> {
        let Some(&(offset, length, crc)) = self.pages.get(page) else {
            return Err(TraceStoreError::corrupt(&self.path, 0, format!("no page {page}")));
        };
        let mut compressed = vec![0u8; length as usize];
        read_at(&self.file, &mut compressed, offset)
            .map_err(|error| TraceStoreError::io(&self.path, "read page", error))?;
        if crc32fast::hash(&compressed) != crc {
            return Err(TraceStoreError::corrupt(&self.path, offset, "page CRC mismatch"));
        }
        lz4_flex::decompress_size_prepended(&compressed)
            .map_err(|error| TraceStoreError::corrupt(&self.path, offset, format!("page does not decompress: {error}")))
    }

    /// The trace with `trace_id` if this block holds spans of it.
    pub(crate) fn trace(&self, trace_id: &TraceId) -> Result<Option<Trace>, TraceStoreError> {
        let Ok(position) = self.trace_ids.binary_search(trace_id) else { return Ok(None) };
        let Some(&page) = self.trace_pages.get(position) else { return Ok(None) };
        let bytes = self.read_page(page as usize)?;
        let (mut decoder, count) = encoding::open_traces(&bytes)
            .map_err(|error| TraceStoreError::corrupt(&self.path, error.offset as u64, error.reason))?;
        for _ in 0..count {
            let is_wanted = decoder.next_trace_id().as_ref() == Some(trace_id);
            let trace = decoder
                .trace()
                .map_err(|error| TraceStoreError::corrupt(&self.path, error.offset as u64, error.reason))?;
            if is_wanted {
                return Ok(Some(trace));
            }
        }
        Ok(None)
    }

    /// Calls `visit` with every trace of the block, page by page, until it returns `false`; returns whether
    /// the visit ran to the end.
    pub(crate) fn for_each_trace(&self, visit: &mut dyn FnMut(Trace) -> bool) -> Result<bool, TraceStoreError> {
        for page in 0..self.pages.len() {
            let bytes = self.read_page(page)?;
            let traces = encoding::decode_traces(&bytes)
                .map_err(|error| TraceStoreError::corrupt(&self.path, error.offset as u64, error.reason))?;
            for trace in traces {
                if !visit(trace) {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }
}
