//! Immutable blocks: one file of traces sorted by trace id, in LZ4-compressed pages, with a trace-id index
//! (sorted ids → page, binary search) and a summary (time range, service and span names, duration range,
//! error flag, a bloom filter of string attributes) that lets search skip the block, and (version 2) span
//! columns: start, duration, service, name, kind and status of every span, each compressed on its own, so
//! TraceQL metrics over intrinsics read a few small columns instead of every page. `docs/format.md` draws
//! the file byte by byte.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use oxeye_model::traces::{
    AttributeValue, SpanColumnSet, SpanColumnsRow, SpanKind, StatusCode, Trace, TraceId, TraceScanHints, find_attribute,
};

use crate::TraceStoreError;
use crate::encoding::{self, BlockStrings, PageFilter, put_uvarint};

/// The first 8 bytes of a block file.
pub(crate) const BLOCK_MAGIC: &[u8; 8] = b"OXTBLK\x00\x01";
/// The last 8 bytes of a block file.
pub(crate) const FOOTER_MAGIC: &[u8; 8] = b"OXTBEND\x01";
/// The block format version written in the footer: 2 adds span columns; version 1 files are still read.
pub(crate) const BLOCK_VERSION: u32 = 2;
/// The first version, without span columns.
const BLOCK_VERSION_WITHOUT_COLUMNS: u32 = 1;
/// zstd level of span columns: sorted start deltas and small dictionary indexes compress well at a cheap level.
const COLUMN_ZSTD_LEVEL: i32 = 3;
/// No span column holds more than this many bytes per span uncompressed (a 10-byte varint).
const MAX_COLUMN_BYTES_PER_SPAN: u64 = 10;
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

/// The span columns of a version 2 block, in the order of their ids on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColumnId {
    /// `uvarint` start minus the previous row's start (the first: minus the block's minimum start).
    Start = 0,
    /// `uvarint` duration, ns.
    Duration = 1,
    /// `uvarint` index + 1 into the summary's service names, 0 when the resource has no `service.name`.
    Service = 2,
    /// `uvarint` index into the summary's span names.
    Name = 3,
    /// 1 byte: kind (OTLP wire value) in the low 4 bits, status code in the high 4 bits.
    KindStatus = 4,
}

const COLUMN_IDS: [ColumnId; 5] =
    [ColumnId::Start, ColumnId::Duration, ColumnId::Service, ColumnId::Name, ColumnId::KindStatus];

/// Where one span column lies in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ColumnLocation {
    offset: u64,
    compressed_length: u32,
    uncompressed_length: u32,
    crc: u32,
}

/// One span's row before the columns are written.
struct ColumnRow {
    start: u64,
    duration: u64,
    service: u64,
    name: u64,
    kind_status: u8,
}

/// The uncompressed span columns of `traces`, rows sorted by start, or `None` when the summary cannot name
/// every service and span (too many names) or a resource's `service.name` is not a string (the columns
/// could not say what `resource.service.name` evaluates to).
fn span_columns(traces: &[&Trace], summary: &BlockSummary, strings: &BlockStrings<'_>) -> Option<[Vec<u8>; 5]> {
    if !summary.names_complete {
        return None;
    }
    // Each distinct name is looked up in the sorted list once, not once per span.
    let name_ranks = strings
        .span_names
        .iter()
        .map(|name| summary.span_names.binary_search_by(|candidate| candidate.as_str().cmp(*name)).ok())
        .collect::<Option<Vec<usize>>>()?;
    debug_assert_eq!(strings.span_name_ids.len() as u64, summary.span_count, "one name per span, in span order");
    let mut span_name_ids = strings.span_name_ids.iter();
    let mut rows = Vec::with_capacity(usize::try_from(summary.span_count).unwrap_or(0));
    for trace in traces {
        for batch in &trace.resource_spans {
            let service = match find_attribute(&batch.resource.attributes, "service.name") {
                None => 0,
                Some(AttributeValue::String(name)) => summary.service_names.binary_search(name).ok()? as u64 + 1,
                Some(_) => return None,
            };
            for span in batch.spans() {
                rows.push(ColumnRow {
                    start: span.start_time_unix_nano,
                    duration: span.duration_nanos(),
                    service,
                    name: *name_ranks.get(*span_name_ids.next()? as usize)? as u64,
                    kind_status: (span.kind as u8) | ((span.status_code as u8) << 4),
                });
            }
        }
    }
    rows.sort_unstable_by_key(|row| row.start);
    let mut columns: [Vec<u8>; 5] = Default::default();
    let mut previous = summary.min_start_unix_nano;
    for row in &rows {
        put_uvarint(&mut columns[ColumnId::Start as usize], row.start - previous);
        previous = row.start;
        put_uvarint(&mut columns[ColumnId::Duration as usize], row.duration);
        put_uvarint(&mut columns[ColumnId::Service as usize], row.service);
        put_uvarint(&mut columns[ColumnId::Name as usize], row.name);
        columns[ColumnId::KindStatus as usize].push(row.kind_status);
    }
    Some(columns)
}

fn encode_column_directory(columns: &[(ColumnId, ColumnLocation)], out: &mut Vec<u8>) {
    out.push(columns.len() as u8);
    for (id, location) in columns {
        out.push(*id as u8);
        out.extend_from_slice(&location.offset.to_le_bytes());
        out.extend_from_slice(&location.compressed_length.to_le_bytes());
        out.extend_from_slice(&location.uncompressed_length.to_le_bytes());
        out.extend_from_slice(&location.crc.to_le_bytes());
    }
}

/// Builds a summary over traces, whose attribute pairs and span names the page encoder gathered in `strings`.
fn summarize(traces: &[&Trace], wal_through_segment: u64, strings: &BlockStrings<'_>) -> BlockSummary {
    let mut summary = BlockSummary {
        min_start_unix_nano: u64::MAX,
        min_span_duration_nanos: u64::MAX,
        wal_through_segment,
        trace_count: traces.len() as u64,
        ..BlockSummary::default()
    };
    // A hash set, sorted once at the end: a tree set compared strings for every batch.
    let mut services: foldhash::HashSet<&str> = foldhash::HashSet::default();
    for trace in traces {
        for batch in &trace.resource_spans {
            if let Some(service) = batch.resource.service_name() {
                services.insert(service);
            }
            for span in batch.spans() {
                summary.span_count += 1;
                summary.min_start_unix_nano = summary.min_start_unix_nano.min(span.start_time_unix_nano);
                summary.max_end_unix_nano = summary.max_end_unix_nano.max(span.end_time_unix_nano);
                summary.min_span_duration_nanos = summary.min_span_duration_nanos.min(span.duration_nanos());
                summary.max_span_duration_nanos = summary.max_span_duration_nanos.max(span.duration_nanos());
                summary.has_error |= span.status_code == StatusCode::Error;
            }
        }
    }
    if summary.span_count == 0 {
        summary.min_start_unix_nano = 0;
        summary.min_span_duration_nanos = 0;
    }
    summary.names_complete = services.len() <= MAX_SUMMARY_NAMES && strings.span_names.len() <= MAX_SUMMARY_NAMES;
    if summary.names_complete {
        let sorted = |names: &mut dyn Iterator<Item = &str>| {
            let mut sorted: Vec<String> = names.map(str::to_string).collect();
            sorted.sort_unstable();
            sorted
        };
        summary.service_names = sorted(&mut services.into_iter());
        summary.span_names = sorted(&mut strings.span_names.iter().copied());
    }
    let bits = (strings.attribute_pairs.len() * BLOOM_BITS_PER_ENTRY).max(64).next_multiple_of(8);
    let mut bloom = vec![0u8; bits / 8];
    for &(key, value) in &strings.attribute_pairs {
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
    traces.sort_unstable_by_key(|trace| trace.trace_id);
    let mut file_bytes = Vec::new();
    file_bytes.extend_from_slice(BLOCK_MAGIC);
    let mut pages: Vec<(u64, u32, u32)> = Vec::new();
    let mut index: Vec<(TraceId, u32)> = Vec::with_capacity(traces.len());
    // One pass: each trace is encoded once, into the open page, which closes when its exact encoded size
    // reaches the target (one trace may exceed it alone).
    let mut page_encoder = encoding::TraceSetEncoder::for_pages();
    let mut block_strings = BlockStrings::default();
    let mut page_start = 0;
    let mut scratch = Vec::new();
    for (position, trace) in traces.iter().enumerate() {
        page_encoder.push(trace);
        let is_last = position + 1 == traces.len();
        if !is_last && page_encoder.encoded_len() < page_bytes {
            continue;
        }
        debug_assert_eq!(page_encoder.trace_count() as usize, position + 1 - page_start);
        scratch.clear();
        page_encoder.finish_page_into(&mut scratch, &mut block_strings);
        let compressed = lz4_flex::compress_prepend_size(&scratch);
        let page_number = pages.len() as u32;
        pages.push((file_bytes.len() as u64, compressed.len() as u32, crc32fast::hash(&compressed)));
        file_bytes.extend_from_slice(&compressed);
        for trace in &traces[page_start..=position] {
            index.push((trace.trace_id, page_number));
        }
        page_start = position + 1;
    }
    let summary = summarize(&traces, wal_through_segment, &block_strings);
    let mut column_directory = Vec::new();
    if let Some(columns) = span_columns(&traces, &summary, &block_strings) {
        for (id, column) in COLUMN_IDS.into_iter().zip(columns) {
            let compressed = zstd::bulk::compress(&column, COLUMN_ZSTD_LEVEL)
                .map_err(|error| TraceStoreError::io(path, "compress span column", error))?;
            column_directory.push((
                id,
                ColumnLocation {
                    offset: file_bytes.len() as u64,
                    compressed_length: compressed.len() as u32,
                    uncompressed_length: column.len() as u32,
                    crc: crc32fast::hash(&compressed),
                },
            ));
            file_bytes.extend_from_slice(&compressed);
        }
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
    encode_column_directory(&column_directory, &mut file_bytes);
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
    /// Span column locations by [`ColumnId`]; empty for version 1 blocks and blocks written without columns.
    columns: Vec<ColumnLocation>,
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
        if version != BLOCK_VERSION && version != BLOCK_VERSION_WITHOUT_COLUMNS {
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
        let mut columns = Vec::new();
        if version >= BLOCK_VERSION {
            let count = reader.fixed::<1>()?[0] as usize;
            if count != 0 && count != COLUMN_IDS.len() {
                return Err(TraceStoreError::corrupt(path, summary_offset, format!("{count} span columns, not 5")));
            }
            let most_bytes = summary.span_count.saturating_mul(MAX_COLUMN_BYTES_PER_SPAN);
            for expected in COLUMN_IDS.iter().take(count) {
                let id = reader.fixed::<1>()?[0];
                let location = ColumnLocation {
                    offset: reader.u64()?,
                    compressed_length: reader.u32()?,
                    uncompressed_length: reader.u32()?,
                    crc: reader.u32()?,
                };
                if id != *expected as u8
                    || location.offset.saturating_add(u64::from(location.compressed_length)) > index_offset
                    || u64::from(location.uncompressed_length) > most_bytes
                {
                    return Err(TraceStoreError::corrupt(path, summary_offset, format!("bad span column entry {id}")));
                }
                columns.push(location);
            }
        }
        Ok(Block { path: path.to_path_buf(), file, pages, trace_ids, trace_pages, summary, size_bytes, columns })
    }

    /// Reads, checks and decompresses one span column.
    fn read_column(&self, id: ColumnId) -> Result<Vec<u8>, TraceStoreError> {
        let Some(location) = self.columns.get(id as usize) else {
            return Err(TraceStoreError::corrupt(&self.path, 0, format!("no span column {}", id as u8)));
        };
        let mut compressed = vec![0u8; location.compressed_length as usize];
        read_at(&self.file, &mut compressed, location.offset)
            .map_err(|error| TraceStoreError::io(&self.path, "read span column", error))?;
        if crc32fast::hash(&compressed) != location.crc {
            return Err(TraceStoreError::corrupt(&self.path, location.offset, "span column CRC mismatch"));
        }
        let column = zstd::bulk::decompress(&compressed, location.uncompressed_length as usize).map_err(|error| {
            TraceStoreError::corrupt(&self.path, location.offset, format!("span column does not decompress: {error}"))
        })?;
        if column.len() != location.uncompressed_length as usize {
            return Err(TraceStoreError::corrupt(&self.path, location.offset, "span column length mismatch"));
        }
        Ok(column)
    }

    /// Whether the block has span columns (version 2 blocks whose names fit the summary).
    pub(crate) fn has_span_columns(&self) -> bool {
        !self.columns.is_empty()
    }

    /// Calls `visit` with the row of every span starting in `[start, end)` from the span columns, reading only
    /// the columns in `wanted` (and the start); returns whether the visit ran to the end. A block without
    /// columns visits nothing (see [`Block::has_span_columns`]).
    ///
    /// # Errors
    /// [`TraceStoreError::Io`] or [`TraceStoreError::Corrupt`] naming the file and offset.
    pub(crate) fn for_each_span_row(
        &self,
        start_unix_nano: u64,
        end_unix_nano: u64,
        wanted: SpanColumnSet,
        visit: &mut dyn FnMut(&SpanColumnsRow<'_>) -> bool,
    ) -> Result<bool, TraceStoreError> {
        if !self.has_span_columns() {
            return Ok(true);
        }
        let span_count = usize::try_from(self.summary.span_count).unwrap_or(usize::MAX);
        let corrupt = |id: ColumnId, reason: &str| {
            let offset = self.columns.get(id as usize).map_or(0, |location| location.offset);
            TraceStoreError::corrupt(&self.path, offset, format!("span column {}: {reason}", id as u8))
        };
        let varints = |id: ColumnId| -> Result<Vec<u64>, TraceStoreError> {
            let bytes = self.read_column(id)?;
            let mut reader = Reader { bytes: &bytes, position: 0, path: &self.path, base: 0 };
            let mut values = Vec::with_capacity(span_count.min(bytes.len()));
            while reader.position < bytes.len() {
                values.push(reader.uvarint()?);
            }
            if values.len() != span_count {
                return Err(corrupt(id, "row count differs from the span count"));
            }
            Ok(values)
        };
        let start_deltas = varints(ColumnId::Start)?;
        let durations = if wanted.duration { varints(ColumnId::Duration)? } else { Vec::new() };
        let services = if wanted.service_name { varints(ColumnId::Service)? } else { Vec::new() };
        let names = if wanted.name { varints(ColumnId::Name)? } else { Vec::new() };
        let kind_status = if wanted.kind || wanted.status_code {
            let bytes = self.read_column(ColumnId::KindStatus)?;
            if bytes.len() != span_count {
                return Err(corrupt(ColumnId::KindStatus, "row count differs from the span count"));
            }
            bytes
        } else {
            Vec::new()
        };
        // Rows carry the service as a value; the block's names become values once per call.
        let service_values: Vec<AttributeValue> = if wanted.service_name {
            self.summary.service_names.iter().map(|name| AttributeValue::String(name.clone())).collect()
        } else {
            Vec::new()
        };
        let mut start = self.summary.min_start_unix_nano;
        for (row, delta) in start_deltas.iter().enumerate() {
            start = start.saturating_add(*delta);
            if start < start_unix_nano {
                continue;
            }
            // Rows are sorted by start: nothing further is in the window.
            if start >= end_unix_nano {
                break;
            }
            let service_name = match services.get(row).copied() {
                None | Some(0) => None,
                Some(index) => Some(
                    service_values
                        .get((index - 1) as usize)
                        .ok_or_else(|| corrupt(ColumnId::Service, "service index out of range"))?,
                ),
            };
            let name = match names.get(row) {
                None => "",
                Some(index) => self
                    .summary
                    .span_names
                    .get(*index as usize)
                    .ok_or_else(|| corrupt(ColumnId::Name, "name index out of range"))?
                    .as_str(),
            };
            let packed = kind_status.get(row).copied().unwrap_or(0);
            let span_row = SpanColumnsRow {
                start_time_unix_nano: start,
                duration_nanos: durations.get(row).copied().unwrap_or(0),
                service_name,
                name,
                kind: SpanKind::from_wire(i32::from(packed & 0x0f)),
                status_code: StatusCode::from_wire(i32::from(packed >> 4)),
            };
            if !visit(&span_row) {
                return Ok(false);
            }
        }
        Ok(true)
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
        let corrupt =
            |error: encoding::DecodeError| TraceStoreError::corrupt(&self.path, error.offset as u64, error.reason);
        for _ in 0..count {
            if decoder.next_trace_id().as_ref() == Some(trace_id) {
                return decoder.trace().map(Some).map_err(corrupt);
            }
            decoder.skip_trace().map_err(corrupt)?;
        }
        Ok(None)
    }

    /// Calls `visit` with every trace of the block that may match `hints`, page by page, until it returns
    /// `false`; returns whether the visit ran to the end. Traces the hints rule out are walked over in their
    /// encoded form and never built (a page whose string table lacks a hinted string is not walked at all).
    pub(crate) fn for_each_trace(
        &self,
        hints: &TraceScanHints,
        visit: &mut dyn FnMut(Trace) -> bool,
    ) -> Result<bool, TraceStoreError> {
        let corrupt =
            |error: encoding::DecodeError| TraceStoreError::corrupt(&self.path, error.offset as u64, error.reason);
        for page in 0..self.pages.len() {
            let bytes = self.read_page(page)?;
            let (mut decoder, count) = encoding::open_traces(&bytes).map_err(corrupt)?;
            let Some(mut filter) = PageFilter::new(hints, decoder.strings().to_vec()) else { continue };
            let filtering = !filter.is_empty();
            for _ in 0..count {
                if filtering {
                    let start = decoder.position();
                    if !decoder.next_trace_may_match(&mut filter).map_err(corrupt)? {
                        continue;
                    }
                    decoder.rewind(start);
                }
                if !visit(decoder.trace().map_err(corrupt)?) {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }
}
