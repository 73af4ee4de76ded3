//! Chunks: the entries of one stream over a time range, encoded column by column ([`ChunkLayout::SEALED`];
//! row by row in chunk files of version 1, still read), compressed (zstd; LZ4 in chunks written before zstd,
//! still read) and paired with a bloom filter ([`crate::bloom`]). The encodings are described in
//! `docs/format.md` ("Chunk data").

use std::path::Path;

use memchr::memmem;
use oxeye_model::logs::{LineFieldExtractor, LogEntry, LogEntryRef};

use oxeye_model::LabelRef;

use crate::LogStoreError;
use crate::bloom::BloomBuilder;
use crate::encoding::{Reader, put_labels, put_uvarint, put_varint};
pub(crate) use crate::field_columns::{FieldColumns, field_columns};
use crate::field_columns::{encode_field_columns, field_column_ends};

/// How a chunk's decompressed data lays out its entries (`docs/format.md`, "Chunk data").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkLayout {
    /// Chunk files of version 1: the entries one after another in the entry encoding (timestamp delta,
    /// line, structured metadata), as in WAL records.
    Rows,
    /// Chunk files of version 2: the timestamp deltas, the line lengths and the structured metadata each
    /// in a section of its own, then the lines back to back. Keeping the varints out of the text lets zstd
    /// find longer matches across lines: 3–4 bytes fewer per stored line on seed-shaped JSON.
    Columns,
    /// Chunk files of version 3 and chunks cut since: as [`ChunkLayout::Columns`], with the timestamp
    /// deltas after the first counted in a unit (1 ns, 1 µs, 1 ms or 1 s) that divides all of them. Clients
    /// that stamp entries in micro- or milliseconds leave the low decimal digits of every nanosecond delta
    /// zero, which zstd cannot remove from varints: 1.4 bytes fewer per stored line on seed-shaped JSON.
    ColumnsTimestampUnit,
    /// Chunk files of version 4 and chunks cut since: as [`ChunkLayout::ColumnsTimestampUnit`], with a
    /// section of field columns before the lines: the labels a line parser gives each line, for the
    /// frequently read low-cardinality ones, dictionary-coded, so that a query needing only those reads
    /// no line (`docs/format.md`, "Field columns").
    ColumnsFields,
}

impl ChunkLayout {
    /// The layout [`SealedChunk::seal`] writes.
    pub const SEALED: ChunkLayout = ChunkLayout::ColumnsFields;

    /// Whether the header names a timestamp unit.
    fn timestamp_unit(self) -> TimestampUnit {
        match self {
            ChunkLayout::Rows | ChunkLayout::Columns => TimestampUnit::Absent,
            ChunkLayout::ColumnsTimestampUnit | ChunkLayout::ColumnsFields => TimestampUnit::InHeader,
        }
    }

    /// How many sections precede the lines (timestamps, line lengths, metadata, and the field columns).
    fn sections(self) -> usize {
        if self == ChunkLayout::ColumnsFields { 4 } else { 3 }
    }
}

/// An immutable, compressed chunk held in memory (cut from a head, or read back from a chunk file).
#[derive(Debug, Clone)]
pub struct SealedChunk {
    /// Oldest entry timestamp, nanoseconds.
    pub min_timestamp_ns: i64,
    /// Newest entry timestamp, nanoseconds.
    pub max_timestamp_ns: i64,
    /// Number of entries.
    pub entries: u32,
    /// Sum of the entries' line lengths, bytes.
    pub line_bytes: u64,
    /// The bloom filter bytes ([`crate::bloom::BloomBuilder::finish`]).
    pub bloom: Vec<u8>,
    /// A zstd frame recording its content size (see [`CHUNK_ZSTD_LEVEL`]); older chunks hold an LZ4 block
    /// with its uncompressed size prepended (u32 little endian). [`decode_chunk_data`] reads both.
    pub data: Vec<u8>,
}

/// The zstd level of chunk data. Level 1 stores seed-shaped structlog JSON at about 8% of its size (higher
/// levels gain a few percent for several times the CPU) and compresses at about 1 GB/s per core, so
/// compression stays a small share of ingest; LZ4 stored 14%.
pub const CHUNK_ZSTD_LEVEL: i32 = 1;

/// The first bytes of a zstd frame. An LZ4 chunk starts with its uncompressed size, which would have to be
/// over 4 GiB to look the same, so the two never mix up.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

impl SealedChunk {
    /// Encodes ([`ChunkLayout::SEALED`]) and compresses `entries`, which must be sorted by timestamp and
    /// non-empty, without field columns.
    pub fn seal(entries: &[LogEntry]) -> SealedChunk {
        SealedChunk::seal_with_fields(entries, None)
    }

    /// As [`SealedChunk::seal`], keeping in columns the low-cardinality labels `fields` finds in the lines
    /// (none when it is `None` or no parser it knows reads every line).
    pub fn seal_with_fields(entries: &[LogEntry], fields: Option<&dyn LineFieldExtractor>) -> SealedChunk {
        debug_assert!(entries.windows(2).all(|pair| pair[0].timestamp_ns <= pair[1].timestamp_ns));
        let mut bloom = BloomBuilder::with_line_capacity(entries.len());
        for entry in entries {
            bloom.add_line(&entry.line);
        }
        SealedChunk {
            min_timestamp_ns: entries.first().map_or(0, |entry| entry.timestamp_ns),
            max_timestamp_ns: entries.last().map_or(0, |entry| entry.timestamp_ns),
            entries: u32::try_from(entries.len()).unwrap_or(u32::MAX),
            line_bytes: entries.iter().map(|entry| entry.line.len() as u64).sum(),
            bloom: bloom.finish(),
            data: compress(&encode_columns(entries, fields)),
        }
    }
}

/// The coarsest timestamp unit tried for the deltas of [`ChunkLayout::ColumnsTimestampUnit`], in
/// nanoseconds; each finer unit is a thousandth of the previous one, down to 1 ns.
const COARSEST_TIMESTAMP_UNIT_NS: i64 = 1_000_000_000;

/// The largest of 1 s, 1 ms, 1 µs and 1 ns dividing every delta between consecutive `entries`.
fn timestamp_unit_ns(entries: &[LogEntry]) -> i64 {
    let mut unit_ns = COARSEST_TIMESTAMP_UNIT_NS;
    for pair in entries.windows(2) {
        let delta_ns = pair[1].timestamp_ns.wrapping_sub(pair[0].timestamp_ns);
        while unit_ns > 1 && delta_ns % unit_ns != 0 {
            unit_ns /= 1000;
        }
        if unit_ns == 1 {
            break;
        }
    }
    unit_ns
}

/// The [`ChunkLayout::ColumnsFields`] encoding of `entries`: `uvarint` entry count, `uvarint` timestamp
/// unit (ns), the byte lengths of the timestamp, line length, structured metadata and field column
/// sections (`uvarint` each), those four sections, then the lines. The timestamp section holds the first
/// timestamp in nanoseconds, then each later entry's delta from the previous one in the unit (`varint`
/// each); the field columns are [`encode_field_columns`]'s.
pub(crate) fn encode_columns(entries: &[LogEntry], fields: Option<&dyn LineFieldExtractor>) -> Vec<u8> {
    let line_bytes: usize = entries.iter().map(|entry| entry.line.len()).sum();
    let unit_ns = timestamp_unit_ns(entries);
    let mut timestamps = Vec::with_capacity(entries.len() * 3);
    let mut lengths = Vec::with_capacity(entries.len() * 2);
    let mut metadata = Vec::with_capacity(entries.len());
    let mut previous_timestamp_ns = None;
    for entry in entries {
        match previous_timestamp_ns {
            None => put_varint(&mut timestamps, entry.timestamp_ns),
            Some(previous) => put_varint(&mut timestamps, entry.timestamp_ns.wrapping_sub(previous) / unit_ns),
        }
        previous_timestamp_ns = Some(entry.timestamp_ns);
        put_uvarint(&mut lengths, entry.line.len() as u64);
        put_labels(&mut metadata, entry.structured_metadata.iter());
    }
    let field_columns = encode_field_columns(entries, fields);
    let mut encoded =
        Vec::with_capacity(32 + timestamps.len() + lengths.len() + metadata.len() + field_columns.len() + line_bytes);
    put_uvarint(&mut encoded, entries.len() as u64);
    put_uvarint(&mut encoded, unit_ns as u64);
    for section in [&timestamps, &lengths, &metadata, &field_columns] {
        put_uvarint(&mut encoded, section.len() as u64);
    }
    for section in [&timestamps, &lengths, &metadata, &field_columns] {
        encoded.extend_from_slice(section);
    }
    for entry in entries {
        encoded.extend_from_slice(entry.line.as_bytes());
    }
    encoded
}

/// Decodes decompressed chunk data of either layout (or the rows of a head batch), calling `visit` with
/// each entry's timestamp, line and structured metadata, borrowed from `encoded`; `path` only names the
/// source in errors.
///
/// # Errors
/// [`LogStoreError::Corrupt`] with the offset of the first byte that does not decode.
pub(crate) fn for_each_encoded_entry(
    encoded: &[u8],
    layout: ChunkLayout,
    path: &Path,
    visit: impl FnMut(i64, &str, &[LabelRef<'_>]),
) -> Result<(), LogStoreError> {
    let decoded = match layout {
        ChunkLayout::Rows => decode_rows(encoded, visit),
        _ => decode_columns(encoded, layout, LinesSection::Present, with_line(visit)),
    };
    decoded.map_err(|(offset, reason)| LogStoreError::corrupt(path, offset as u64, reason))
}

/// As [`for_each_encoded_entry`], visiting only the entries whose line holds `needle` (as bytes). Column-encoded
/// data is searched for the needle as a whole rather than line by line, and the other entries are passed by
/// unread: their lines and structured metadata are neither cut out nor checked as UTF-8, so damage confined
/// to them goes unnoticed (the chunk's CRC guards it on disk).
///
/// # Errors
/// As [`for_each_encoded_entry`].
pub(crate) fn for_each_encoded_entry_holding(
    encoded: &[u8],
    layout: ChunkLayout,
    path: &Path,
    needle: &memmem::Finder<'_>,
    mut visit: impl FnMut(i64, &str, &[LabelRef<'_>]),
) -> Result<(), LogStoreError> {
    let decoded = match layout {
        ChunkLayout::Rows => decode_rows(encoded, |timestamp_ns, line, metadata| {
            if needle.find(line.as_bytes()).is_some() {
                visit(timestamp_ns, line, metadata);
            }
        }),
        _ => decode_columns(encoded, layout, LinesSection::Holding(needle), with_line(visit)),
    };
    decoded.map_err(|(offset, reason)| LogStoreError::corrupt(path, offset as u64, reason))
}

/// As [`for_each_encoded_entry`] for column-encoded chunk data without its lines: `columns` holds the
/// data up to the end of its structured metadata section ([`columns_end`]) and `encoded_len` is the size
/// of the whole decompressed data. Each entry is visited with its line's length in bytes instead of the
/// line; the lengths are checked against the lines' bytes.
///
/// # Errors
/// [`LogStoreError::Corrupt`] as [`for_each_encoded_entry`], and for [`ChunkLayout::Rows`], which keeps
/// lines among the other fields.
pub(crate) fn for_each_encoded_entry_without_lines(
    columns: &[u8],
    encoded_len: usize,
    layout: ChunkLayout,
    path: &Path,
    mut visit: impl FnMut(i64, usize, &[LabelRef<'_>]),
) -> Result<(), LogStoreError> {
    let lines = LinesSection::Absent { bytes: encoded_len.saturating_sub(columns.len()) };
    let visit = |timestamp_ns: i64, _: &str, line_bytes: usize, metadata: &[LabelRef<'_>], _: usize| {
        visit(timestamp_ns, line_bytes, metadata)
    };
    let decoded = match layout {
        ChunkLayout::Rows => Err((0, "row-encoded chunk data cannot be read without its lines".to_string())),
        _ => decode_columns(columns, layout, lines, visit),
    };
    decoded.map_err(|(offset, reason)| LogStoreError::corrupt(path, offset as u64, reason))
}

/// As [`for_each_encoded_entry_without_lines`], handing each entry over with its values of the field
/// columns `fields` (read by [`field_columns`] from the same `columns`), in the order asked.
///
/// # Errors
/// As [`for_each_encoded_entry_without_lines`].
pub(crate) fn for_each_encoded_entry_with_fields<'a>(
    columns: &'a [u8],
    encoded_len: usize,
    layout: ChunkLayout,
    path: &Path,
    fields: &FieldColumns<'a>,
    mut visit: impl FnMut(i64, usize, &[LabelRef<'_>], &[Option<&str>]),
) -> Result<(), LogStoreError> {
    let lines = LinesSection::Absent { bytes: encoded_len.saturating_sub(columns.len()) };
    let mut values: Vec<Option<&str>> = Vec::with_capacity(fields.len());
    let visit = |timestamp_ns: i64, _: &str, line_bytes: usize, metadata: &[LabelRef<'_>], position: usize| {
        fields.values_at(position, &mut values);
        visit(timestamp_ns, line_bytes, metadata, &values)
    };
    decode_columns(columns, layout, lines, visit)
        .map_err(|(offset, reason)| LogStoreError::corrupt(path, offset as u64, reason))
}

/// The entry count at the start of column-encoded data.
fn entry_count(encoded: &[u8]) -> Option<usize> {
    usize::try_from(Reader::new(encoded).uvarint().ok()?).ok()
}

/// Where the end of the structured metadata section of column-encoded chunk data lies (the lines follow
/// it), read from the data's header in `prefix`; `None` when `prefix` is too short to hold the header, or
/// the header does not decode (a full decode then names the problem).
pub(crate) fn columns_end(prefix: &[u8], layout: ChunkLayout) -> Option<usize> {
    section_ends(prefix, layout).map(|ends| ends[SECTIONS_BEFORE_LINES])
}

/// The most sections column-encoded data holds before its lines ([`ChunkLayout::ColumnsFields`]).
const SECTIONS_BEFORE_LINES: usize = 4;

/// Where the header of column-encoded data of `layout` ends (index 0) and where each section before the
/// lines ends (indexes 1 to [`SECTIONS_BEFORE_LINES`]; a layout with fewer sections repeats its last end),
/// read from the header at the start of `prefix`; `None` for [`ChunkLayout::Rows`] or a header that does
/// not decode.
fn section_ends(prefix: &[u8], layout: ChunkLayout) -> Option<[usize; SECTIONS_BEFORE_LINES + 1]> {
    let mut header = Reader::new(prefix);
    header.uvarint().ok()?;
    match layout {
        ChunkLayout::Rows => return None,
        ChunkLayout::Columns => {}
        ChunkLayout::ColumnsTimestampUnit | ChunkLayout::ColumnsFields => {
            header.uvarint().ok()?;
        }
    }
    let mut lengths = [0usize; SECTIONS_BEFORE_LINES];
    for length in lengths.iter_mut().take(layout.sections()) {
        *length = usize::try_from(header.uvarint().ok()?).ok()?;
    }
    let mut ends = [header.offset(); SECTIONS_BEFORE_LINES + 1];
    for index in 1..ends.len() {
        ends[index] = ends[index - 1].checked_add(lengths[index - 1])?;
    }
    Some(ends)
}

/// Adapts an entry visitor to [`decode_columns`], which also hands over each line's length.
fn with_line(
    mut visit: impl FnMut(i64, &str, &[LabelRef<'_>]),
) -> impl FnMut(i64, &str, usize, &[LabelRef<'_>], usize) {
    move |timestamp_ns, line, _, metadata, _| visit(timestamp_ns, line, metadata)
}

fn decode_rows<'a>(
    encoded: &'a [u8],
    mut visit: impl FnMut(i64, &str, &[LabelRef<'_>]),
) -> Result<(), (usize, String)> {
    let mut reader = Reader::new(encoded);
    let mut metadata: Vec<LabelRef<'a>> = Vec::new();
    let mut previous_ns = 0i64;
    while !reader.is_empty() {
        let timestamp_ns = previous_ns.wrapping_add(reader.varint()?);
        previous_ns = timestamp_ns;
        let line = reader.str()?;
        read_metadata(&mut reader, None, &mut metadata)?;
        visit(timestamp_ns, line, &metadata);
    }
    Ok(())
}

/// Whether column-encoded chunk data names a timestamp unit in its header.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TimestampUnit {
    /// [`ChunkLayout::Columns`]: every delta in nanoseconds, the first from 0.
    Absent,
    /// [`ChunkLayout::ColumnsTimestampUnit`].
    InHeader,
}

/// Whether column-encoded chunk data is decoded with its lines.
#[derive(Clone, Copy)]
enum LinesSection<'n> {
    /// The lines follow the other sections.
    Present,
    /// The lines follow the other sections, and only the entries whose line holds the needle are visited:
    /// the needle is searched in the lines as a whole, and the other entries' lines and structured metadata
    /// are passed by without being cut out or checked as UTF-8.
    Holding(&'n memmem::Finder<'n>),
    /// The data stops after the structured metadata; the lines, `bytes` long in all, are not read.
    Absent { bytes: usize },
}

/// Decodes column-encoded chunk data of `layout` (not [`ChunkLayout::Rows`]), calling `visit` with each
/// entry's timestamp, line (empty with [`LinesSection::Absent`]), line length, metadata and position.
fn decode_columns<'a>(
    encoded: &'a [u8],
    layout: ChunkLayout,
    lines_section: LinesSection<'_>,
    mut visit: impl FnMut(i64, &str, usize, &[LabelRef<'_>], usize),
) -> Result<(), (usize, String)> {
    let mut lines = Reader::new(encoded);
    let count = lines.uvarint()?;
    let unit_ns = match layout.timestamp_unit() {
        TimestampUnit::Absent => 1,
        TimestampUnit::InHeader => {
            let unit_offset = lines.offset();
            match i64::try_from(lines.uvarint()?) {
                Ok(unit_ns) if (1..=COARSEST_TIMESTAMP_UNIT_NS).contains(&unit_ns) => unit_ns,
                _ => return Err((unit_offset, "timestamp unit out of range".to_string())),
            }
        }
    };
    let timestamps_len = lines.length()?;
    let lengths_len = lines.length()?;
    let metadata_len = lines.length()?;
    let fields_len = if layout.sections() == 4 { lines.length()? } else { 0 };
    let mut timestamps = lines.split_off(timestamps_len)?;
    let mut lengths = lines.split_off(lengths_len)?;
    let mut metadata_section = lines.split_off(metadata_len)?;
    // The field columns are read by `field_columns` when asked for; a full decode passes them by.
    lines.split_off(fields_len)?;
    // Entries without structured metadata hold a zero count each: a section of exactly one zero byte per
    // entry is passed over as a whole, each entry handed the empty list reading the counts would give
    // (about 50 instructions an entry less).
    let metadata_absent = only_empty_metadata(&metadata_section, metadata_len, count);
    if metadata_absent {
        metadata_section.take(metadata_len)?;
    }
    let needle = match lines_section {
        LinesSection::Holding(needle) => Some(needle),
        LinesSection::Present | LinesSection::Absent { .. } => None,
    };
    // The structured metadata too is checked as UTF-8 once, as a whole; its strings are then cut from it.
    // (Checking only the visited entries' strings one by one costs more: they are short.)
    let metadata_text = metadata_section.rest_as_str().map(|text| (text, metadata_section.offset()));
    let mut metadata: Vec<LabelRef<'a>> = Vec::new();
    let mut previous_ns = 0i64;
    // The lines are checked as UTF-8 all at once; each is then cut from the checked text at character
    // boundaries. Should the whole not be UTF-8, lines are checked one by one to name the bad one.
    let lines_start = lines.offset();
    let (lines_text, mut unread_line_bytes) = match lines_section {
        LinesSection::Present => (lines.rest_as_str(), None),
        LinesSection::Holding(_) => (None, None),
        LinesSection::Absent { bytes } => (None, Some(bytes)),
    };
    // With a needle: where in `encoded` its next occurrence at or after the current line's start begins
    // (`usize::MAX` when there is none). An occurrence running over a line's end is searched again from
    // the next line's start, so occurrences that overlap it are not missed.
    let all_lines = encoded.get(lines_start..).unwrap_or_default();
    let find_from = |from: usize, needle: &memmem::Finder<'_>| {
        all_lines.get(from - lines_start..).and_then(|rest| needle.find(rest)).map_or(usize::MAX, |found| from + found)
    };
    let mut next_hit = match needle {
        Some(needle) => find_from(lines_start, needle),
        None => usize::MAX,
    };
    for position in 0..count {
        let step = if position == 0 { 1 } else { unit_ns };
        let timestamp_ns = previous_ns.wrapping_add(timestamps.wide_varint()?.wrapping_mul(step));
        previous_ns = timestamp_ns;
        let line_length = lengths.length_of(unread_line_bytes.unwrap_or(lines.remaining()))?;
        if let Some(needle) = needle {
            let line_start = lines.offset();
            if next_hit < line_start {
                next_hit = find_from(line_start, needle);
            }
            if next_hit.saturating_add(needle.needle().len()) > line_start + line_length {
                lines.take(line_length)?;
                if !metadata_absent {
                    skip_metadata(&mut metadata_section)?;
                }
                continue;
            }
        }
        let line = match (lines_text, &mut unread_line_bytes) {
            (_, Some(unread)) => {
                *unread -= line_length;
                ""
            }
            (Some(text), None) => {
                let from = lines.offset() - lines_start;
                lines.take(line_length)?;
                text.get(from..from + line_length)
                    .ok_or_else(|| (lines_start + from, "line not on a character boundary".to_string()))?
            }
            (None, None) => lines.str_of(line_length)?,
        };
        if !metadata_absent {
            read_metadata(&mut metadata_section, metadata_text, &mut metadata)?;
        }
        visit(timestamp_ns, line, line_length, &metadata, position as usize);
    }
    for section in [&timestamps, &lengths, &metadata_section, &lines] {
        if !section.is_empty() {
            return Err((section.offset(), "bytes after the last entry".to_string()));
        }
    }
    if unread_line_bytes.is_some_and(|unread| unread > 0) {
        return Err((lines_start, "bytes after the last entry".to_string()));
    }
    Ok(())
}

/// True when the structured metadata section at `section` (`length` bytes) holds a zero count for each of
/// `count` entries and nothing else.
fn only_empty_metadata(section: &Reader<'_>, length: usize, count: u64) -> bool {
    #[cfg(test)]
    if column_tests::READ_EVERY_METADATA_COUNT.get() {
        return false;
    }
    let mut whole = section.clone();
    u64::try_from(length).is_ok_and(|length| length == count)
        && whole.take(length).is_ok_and(|bytes| bytes.iter().all(|byte| *byte == 0))
}

/// Moves `reader` past one entry's structured metadata without cutting out or checking its strings.
#[inline]
fn skip_metadata(reader: &mut Reader<'_>) -> Result<(), (usize, String)> {
    let count = reader.length()?;
    for _ in 0..count {
        reader.skip_bytes()?;
        reader.skip_bytes()?;
    }
    Ok(())
}

/// Reads one entry's structured metadata into `metadata`, borrowed; `checked` as for [`Reader::str_in`].
#[inline]
fn read_metadata<'a>(
    reader: &mut Reader<'a>,
    checked: Option<(&'a str, usize)>,
    metadata: &mut Vec<LabelRef<'a>>,
) -> Result<(), (usize, String)> {
    metadata.clear();
    if let Some((text, text_start)) = checked {
        // The common case first, without a `Result` per string (about 200 instructions an entry went into
        // them): a one-byte count, short strings cut from the checked text. Anything else is read again
        // below, which names the problem.
        let mut attempt = reader.clone();
        let mut read_all = || {
            let count = attempt.short_count()?;
            for _ in 0..count {
                let name = attempt.short_str_in(text, text_start)?;
                let value = attempt.short_str_in(text, text_start)?;
                metadata.push(LabelRef { name, value });
            }
            Some(())
        };
        if read_all().is_some() {
            *reader = attempt;
            return Ok(());
        }
        metadata.clear();
    }
    let count = reader.length()?;
    for _ in 0..count {
        let name = reader.str_in(checked)?;
        let value = reader.str_in(checked)?;
        metadata.push(LabelRef { name, value });
    }
    Ok(())
}

/// Compresses encoded entries ([`ChunkLayout::SEALED`]) into a zstd frame that records its content size,
/// ending a zstd block where the header and each section before the lines end. A block's literals and
/// sequences share one set of entropy tables; kept apart from the text, the varints and codes of each
/// section get tables of their own: on seed-shaped structlog JSON (`ingest_throughput`) the data is 0.9
/// bytes per line smaller (31.93 -> 31.03), and decompresses as fast. The frame is an ordinary one; readers
/// do not depend on where its blocks end. zstd reports errors only for invalid parameters or allocation
/// failure; should that happen the chunk is stored as LZ4 instead.
fn compress(encoded: &[u8]) -> Vec<u8> {
    let section_ends = section_ends(encoded, ChunkLayout::SEALED).unwrap_or_default();
    let mut block_ends = section_ends.to_vec();
    // Each field column's blocks too: a column's codes or values and the next's differ as much as two
    // sections do (0.19 bytes per line fewer with `path` and `duration_ms` columns on `ingest_throughput`).
    if let [.., fields_start, fields_end] = section_ends
        && let (Some(section), Some(count)) = (encoded.get(fields_start..fields_end), entry_count(encoded))
    {
        block_ends.extend(field_column_ends(section, count).into_iter().map(|end| fields_start + end));
        block_ends.sort_unstable();
    }
    let compressed = COMPRESSOR.with(|context| match context.try_borrow_mut() {
        Ok(mut context) => compress_in_blocks(&mut context, encoded, &block_ends),
        Err(_) => compress_in_blocks(&mut None, encoded, &block_ends),
    });
    match compressed {
        Ok(compressed) => compressed,
        Err(error) => {
            tracing::warn!(
                error = zstd::zstd_safe::get_error_name(error),
                "zstd compression failed; storing the chunk as LZ4"
            );
            lz4_flex::block::compress_prepend_size(encoded)
        }
    }
}

thread_local! {
    /// A compression context per thread, reused chunk after chunk (its parameters set once).
    static COMPRESSOR: std::cell::RefCell<Option<zstd::zstd_safe::CCtx<'static>>> = const { std::cell::RefCell::new(None) };
}

/// One zstd frame of `encoded` (level [`CHUNK_ZSTD_LEVEL`], content size recorded) whose blocks end at each
/// of `block_ends` (offsets into `encoded`, ascending; ends at 0 or past the data are passed by), then at
/// most every 128 KiB as zstd chooses. `context` is created when `None`.
fn compress_in_blocks(
    context: &mut Option<zstd::zstd_safe::CCtx<'static>>,
    encoded: &[u8],
    block_ends: &[usize],
) -> Result<Vec<u8>, zstd::zstd_safe::ErrorCode> {
    use zstd::zstd_safe::zstd_sys::ZSTD_EndDirective;
    use zstd::zstd_safe::{CCtx, CParameter, InBuffer, OutBuffer, ResetDirective, compress_bound};
    /// `ZSTD_error_memory_allocation`, for a context zstd could not create.
    const MEMORY_ALLOCATION_ERROR: usize = 64usize.wrapping_neg();
    let context = match context {
        Some(context) => {
            context.reset(ResetDirective::SessionOnly)?;
            context
        }
        empty => {
            let mut created = CCtx::try_create().ok_or(MEMORY_ALLOCATION_ERROR)?;
            created.set_parameter(CParameter::CompressionLevel(CHUNK_ZSTD_LEVEL))?;
            empty.insert(created)
        }
    };
    context.set_pledged_src_size(Some(encoded.len() as u64))?;
    // A flush that ends a block adds a 3-byte block header at most beyond the bound.
    let mut frame: Vec<u8> = Vec::with_capacity(compress_bound(encoded.len()) + 3 * block_ends.len() + 16);
    let mut position = 0;
    let cuts = block_ends.iter().copied().filter(|end| *end > 0 && *end < encoded.len());
    for (end, directive) in
        cuts.map(|end| (end, ZSTD_EndDirective::ZSTD_e_flush)).chain([(encoded.len(), ZSTD_EndDirective::ZSTD_e_end)])
    {
        if end < position {
            continue;
        }
        let mut input = InBuffer::around(encoded.get(..end).unwrap_or_default());
        input.set_pos(position);
        loop {
            if frame.capacity() == frame.len() {
                frame.reserve(1 << 16);
            }
            let written = frame.len();
            let mut output = OutBuffer::around_pos(&mut frame, written);
            let remaining = context.compress_stream2(&mut output, &mut input, directive)?;
            if remaining == 0 && input.pos() == end {
                break;
            }
        }
        position = end;
    }
    Ok(frame)
}

/// The largest uncompressed chunk we agree to inflate (a guard against a corrupt size prefix).
const MAX_UNCOMPRESSED_CHUNK_BYTES: usize = 1 << 30;

/// Decompresses chunk data into a reused buffer with a reused zstd context, so a scan allocates per query,
/// not per chunk. Reads both chunk data forms of `docs/format.md`: a zstd frame recording its content
/// size, or a size-prefixed LZ4 block.
pub(crate) struct ChunkInflater {
    zstd: Option<zstd::bulk::Decompressor<'static>>,
    /// For [`ChunkInflater::inflate_columns`], which stops inside a frame.
    zstd_stream: Option<zstd::zstd_safe::DCtx<'static>>,
    buffer: Vec<u8>,
    /// Where [`ChunkInflater::inflate_columns`] stopped in its frame: bytes of the frame read, bytes of data
    /// written into `buffer`, and the data's whole size; for [`ChunkInflater::inflate_rest`].
    stopped: Option<(usize, usize, usize)>,
}

/// Bytes enough for the header of column-encoded chunk data (six varints of at most ten bytes).
const COLUMNS_HEADER_BYTES: usize = 60;

/// How much of a zstd frame [`ChunkInflater::inflate_until`] hands zstd per call.
#[derive(Clone, Copy, PartialEq, Eq)]
enum InputStep {
    /// The next block (RFC 8878, 3.1.1.2): zstd decodes it whole and stops, having copied nothing (a block
    /// cut short would be copied into zstd's input buffer until its rest came).
    Block,
    /// All the rest.
    Rest,
}

/// Where the zstd block starting at `from` in the frame `data` ends (RFC 8878, 3.1.1.2: a 3-byte header,
/// then 1 byte for an RLE block, else the size the header names); `from` = 0 is the frame's start, where
/// the frame header (3.1.1.1) comes first. `None` when the bytes are too short or name a reserved type.
fn zstd_block_end(data: &[u8], from: usize) -> Option<usize> {
    let start = match from {
        0 => {
            let descriptor = *data.get(4)?;
            let single_segment = descriptor & 0x20 != 0;
            let window_len = usize::from(!single_segment);
            let dictionary_id_len = [0, 1, 2, 4][usize::from(descriptor & 3)];
            let content_size_len = match descriptor >> 6 {
                0 => usize::from(single_segment),
                flag => 1 << flag,
            };
            5 + window_len + dictionary_id_len + content_size_len
        }
        _ => from,
    };
    let header = data.get(start..start.checked_add(3)?)?;
    let header = u32::from(header[0]) | (u32::from(header[1]) << 8) | (u32::from(header[2]) << 16);
    let content_len = match (header >> 1) & 3 {
        1 => 1,
        3 => return None,
        _ => usize::try_from(header >> 3).ok()?,
    };
    start.checked_add(3)?.checked_add(content_len)
}

impl ChunkInflater {
    pub(crate) fn new() -> Self {
        ChunkInflater { zstd: None, zstd_stream: None, buffer: Vec::new(), stopped: None }
    }

    /// Decompresses column-encoded chunk data ([`ChunkLayout::Columns`] and later) only up to the end of
    /// its structured metadata, leaving the lines, which follow, compressed: zstd decodes a frame block by
    /// block (128 KiB of data at most each), so a reader of timestamps and metadata alone decompresses the
    /// blocks before the lines and the first block holding lines. Returns that start of the data
    /// ([`columns_end`] bytes) and the size of the whole data, for
    /// [`for_each_encoded_entry_without_lines`]; `None` when the data is not a zstd frame or its header does
    /// not decode (the caller then decompresses the whole chunk, which names any problem).
    ///
    /// # Errors
    /// [`LogStoreError::Corrupt`] when the frame does not decompress.
    pub(crate) fn inflate_columns(
        &mut self,
        data: &[u8],
        layout: ChunkLayout,
        path: &Path,
    ) -> Result<Option<(&[u8], usize)>, LogStoreError> {
        self.stopped = None;
        if layout == ChunkLayout::Rows || !data.starts_with(&ZSTD_MAGIC) {
            return Ok(None);
        }
        let Some(size) = zstd::decompressed_size(data)
            .and_then(|declared| usize::try_from(declared).ok())
            .filter(|size| *size <= MAX_UNCOMPRESSED_CHUNK_BYTES)
        else {
            return Ok(None);
        };
        self.buffer.clear();
        self.buffer.reserve(size);
        let (mut read, mut written) = (0usize, 0usize);
        let mut want = COLUMNS_HEADER_BYTES.min(size);
        let mut header_read = false;
        loop {
            if written < want {
                // The frame is handed over a step at a time: zstd decodes the whole blocks it has, straight
                // into the buffer, so it stops within a block's worth of data past `want`.
                (read, written) = self.inflate_until(data, path, (read, written), want, InputStep::Block)?;
            }
            if header_read {
                self.stopped = Some((read, written, size));
                // `want` is where the columns end; zstd may have written past it.
                return Ok(Some((self.buffer.get(..want).unwrap_or_default(), size)));
            }
            header_read = true;
            match columns_end(self.buffer.get(..written).unwrap_or_default(), layout).filter(|end| *end <= size) {
                Some(end) if end <= written => {
                    self.stopped = Some((read, written, size));
                    return Ok(Some((self.buffer.get(..end).unwrap_or_default(), size)));
                }
                Some(end) => want = end,
                None => return Ok(None),
            }
        }
    }

    /// Decompresses `data` on from `at` (bytes of the frame read, bytes of data in `buffer`) until `buffer`
    /// holds at least `want` bytes, handing zstd a block or the rest of the frame per call; returns the new
    /// position. zstd writes into `buffer`'s spare capacity, which must hold the whole frame and stay
    /// where it is (no other use of `buffer` in between) until the frame ends: it keeps no copy of its own
    /// ([`zstd::zstd_safe::DParameter::StableOutBuffer`]), so nothing is copied out of it.
    fn inflate_until(
        &mut self,
        data: &[u8],
        path: &Path,
        at: (usize, usize),
        want: usize,
        input_step: InputStep,
    ) -> Result<(usize, usize), LogStoreError> {
        use zstd::zstd_safe::{DCtx, DParameter, InBuffer, OutBuffer, ResetDirective, get_error_name};
        let corrupt = |reason: String| LogStoreError::corrupt(path, 0, reason);
        let zstd_error = |code: usize| corrupt(format!("zstd: {}", get_error_name(code)));
        let (mut read, mut written) = at;
        let decoder = match &mut self.zstd_stream {
            Some(decoder) => decoder,
            empty => {
                let mut decoder = DCtx::try_create().ok_or_else(|| corrupt("zstd context: out of memory".into()))?;
                decoder.set_parameter(DParameter::StableOutBuffer(true)).map_err(zstd_error)?;
                empty.insert(decoder)
            }
        };
        if at == (0, 0) {
            decoder.reset(ResetDirective::SessionOnly).map_err(zstd_error)?;
        }
        while written < want {
            // A block end that does not parse only means more input per call, which zstd copies as it must.
            let input_end = match input_step {
                InputStep::Block => zstd_block_end(data, read).map_or(data.len(), |end| end.min(data.len())),
                InputStep::Rest => data.len(),
            };
            let mut input = InBuffer::around(data.get(..input_end).unwrap_or_default());
            input.set_pos(read);
            let mut output = OutBuffer::around_pos(&mut self.buffer, written);
            decoder.decompress_stream(&mut output, &mut input).map_err(zstd_error)?;
            let progressed = input.pos() > read || output.pos() > written;
            (read, written) = (input.pos(), output.pos());
            if !progressed && read >= data.len() {
                return Err(corrupt("zstd chunk shorter than its content size".into()));
            }
        }
        Ok((read, written))
    }

    /// After [`ChunkInflater::inflate_columns`] of the same `data`, decompresses the rest of the frame (the
    /// lines) and returns the whole data, as [`ChunkInflater::inflate`] would, without decoding the start
    /// again; decompresses it all when the columns were not read that way.
    ///
    /// # Errors
    /// [`LogStoreError::Corrupt`] when the frame does not decompress.
    pub(crate) fn inflate_rest(&mut self, data: &[u8], path: &Path) -> Result<&[u8], LogStoreError> {
        let Some((read, written, size)) = self.stopped.take() else {
            return self.inflate(data, path);
        };
        let (_, written) = self.inflate_until(data, path, (read, written), size, InputStep::Rest)?;
        Ok(self.buffer.get(..written.min(size)).unwrap_or_default())
    }

    pub(crate) fn inflate(&mut self, data: &[u8], path: &Path) -> Result<&[u8], LogStoreError> {
        self.stopped = None;
        let corrupt = |reason: String| LogStoreError::corrupt(path, 0, reason);
        if data.starts_with(&ZSTD_MAGIC) {
            let declared =
                zstd::decompressed_size(data).ok_or_else(|| corrupt("zstd frame without a content size".into()))?;
            let size = usize::try_from(declared)
                .ok()
                .filter(|size| *size <= MAX_UNCOMPRESSED_CHUNK_BYTES)
                .ok_or_else(|| corrupt("oversized zstd chunk".into()))?;
            self.buffer.clear();
            self.buffer.reserve(size);
            let decompressor = match &mut self.zstd {
                Some(decompressor) => decompressor,
                empty => empty.insert(
                    zstd::bulk::Decompressor::new().map_err(|error| corrupt(format!("zstd context: {error}")))?,
                ),
            };
            let written = decompressor
                .decompress_to_buffer(data, &mut self.buffer)
                .map_err(|error| corrupt(format!("zstd: {error}")))?;
            if written != size {
                return Err(corrupt("zstd chunk shorter than its content size".into()));
            }
            return Ok(&self.buffer);
        }
        let declared = match data.get(..4) {
            Some(size) => u32::from_le_bytes([size[0], size[1], size[2], size[3]]) as usize,
            None => return Err(corrupt("missing chunk size prefix".into())),
        };
        if declared > MAX_UNCOMPRESSED_CHUNK_BYTES {
            return Err(corrupt("missing or oversized chunk size prefix".into()));
        }
        self.buffer.clear();
        self.buffer.resize(declared, 0);
        let written = lz4_flex::block::decompress_into(data.get(4..).unwrap_or_default(), &mut self.buffer)
            .map_err(|error| corrupt(format!("lz4: {error}")))?;
        self.buffer.truncate(written);
        Ok(&self.buffer)
    }
}

/// Decompresses and decodes chunk data of `layout`; `path` only names the source in errors.
///
/// # Errors
/// [`LogStoreError::Corrupt`] when the data does not decompress or decode.
pub fn decode_chunk_data(data: &[u8], layout: ChunkLayout, path: &Path) -> Result<Vec<LogEntry>, LogStoreError> {
    let mut inflater = ChunkInflater::new();
    let encoded = inflater.inflate(data, path)?;
    let mut entries = Vec::new();
    for_each_encoded_entry(encoded, layout, path, |timestamp_ns, line, structured_metadata| {
        entries.push(LogEntryRef { timestamp_ns, line, structured_metadata }.to_entry());
    })?;
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::put_entry;
    use oxeye_model::Label;

    #[test]
    fn seal_and_decode_round_trip() {
        let mut entries = vec![LogEntry::new(10, "first"), LogEntry::new(10, "second"), LogEntry::new(25, "third")];
        entries[1].structured_metadata.push(Label { name: "trace_id".into(), value: "ab".into() });
        let chunk = SealedChunk::seal(&entries);
        assert_eq!((chunk.min_timestamp_ns, chunk.max_timestamp_ns, chunk.entries), (10, 25, 3));
        assert_eq!(chunk.line_bytes, 16);
        assert_eq!(decode_chunk_data(&chunk.data, ChunkLayout::SEALED, Path::new("mem")).unwrap(), entries);
    }

    #[test]
    fn chunks_are_zstd_and_lz4_chunks_still_decode() {
        let entries: Vec<LogEntry> = (0..100)
            .map(|index| LogEntry::new(index, format!(r#"{{"event": "request_finished", "n": {index}}}"#)))
            .collect();
        let chunk = SealedChunk::seal(&entries);
        assert!(chunk.data.starts_with(&ZSTD_MAGIC));
        assert_eq!(decode_chunk_data(&chunk.data, ChunkLayout::SEALED, Path::new("mem")).unwrap(), entries);
        // A chunk written before zstd and columns: the same entries in rows, an LZ4 block with its size
        // prepended.
        let mut encoded = Vec::new();
        let mut previous_ns = 0;
        for entry in &entries {
            put_entry(&mut encoded, entry, previous_ns);
            previous_ns = entry.timestamp_ns;
        }
        let lz4 = lz4_flex::block::compress_prepend_size(&encoded);
        assert_eq!(decode_chunk_data(&lz4, ChunkLayout::Rows, Path::new("mem")).unwrap(), entries);
    }

    /// Where each zstd block of `frame` ends in the decompressed data: the frame fed to zstd a whole block
    /// at a time ([`zstd_block_end`]), each decoded whole.
    fn decompressed_block_ends(frame: &[u8]) -> Vec<usize> {
        use zstd::zstd_safe::{DCtx, InBuffer, OutBuffer};
        let mut decoder = DCtx::create();
        let mut output_bytes = vec![0u8; zstd::decompressed_size(frame).unwrap() as usize];
        let mut output = OutBuffer::around(output_bytes.as_mut_slice());
        let (mut read, mut ends) = (0, Vec::new());
        while read < frame.len() {
            let block_end = zstd_block_end(frame, read).unwrap().min(frame.len());
            let mut input = InBuffer::around(&frame[..block_end]);
            input.set_pos(read);
            while input.pos() < block_end {
                decoder.decompress_stream(&mut output, &mut input).unwrap();
            }
            read = block_end;
            ends.push(output.pos());
        }
        ends
    }

    #[test]
    fn sealed_frames_end_a_block_at_every_section_end() {
        let mut entries: Vec<LogEntry> = (0..4000)
            .map(|index| {
                LogEntry::new(
                    index * 1_000,
                    format!(r#"{{"event": "request_finished", "n": {}}}"#, index * 7919 % 4001),
                )
            })
            .collect();
        entries[5].structured_metadata.push(Label { name: "trace_id".into(), value: "ab".into() });
        for entries in [&entries[..], &entries[..1], &entries[..0]] {
            let chunk = SealedChunk::seal(entries);
            let encoded = encode_columns(entries, None);
            let block_ends = decompressed_block_ends(&chunk.data);
            let section_ends = section_ends(&encoded, ChunkLayout::SEALED).unwrap();
            for end in section_ends.iter().filter(|end| **end > 0 && **end < encoded.len()) {
                assert!(block_ends.contains(end), "section end {end} not a block end: {block_ends:?}");
            }
            assert_eq!(block_ends.last(), Some(&encoded.len()));
            assert_eq!(decode_chunk_data(&chunk.data, ChunkLayout::SEALED, Path::new("mem")).unwrap(), entries);
        }
    }

    #[test]
    fn corrupt_data_is_an_error() {
        let chunk = SealedChunk::seal(&[LogEntry::new(1, "line one line one line one")]);
        let mut data = chunk.data.clone();
        data.truncate(data.len() - 3);
        assert!(decode_chunk_data(&data, ChunkLayout::SEALED, Path::new("mem")).is_err());
        assert!(decode_chunk_data(&[1, 2], ChunkLayout::SEALED, Path::new("mem")).is_err());
    }
}

#[cfg(test)]
mod column_tests {
    use super::*;
    use crate::encoding::put_entry;
    use oxeye_model::Label;

    thread_local! {
        /// Set by a test: decoding reads every entry's metadata count, as before `only_empty_metadata`.
        pub(super) static READ_EVERY_METADATA_COUNT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// Entries without structured metadata: passing over their section of zero counts gives what reading
    /// count after count gives, entries visited and error alike, whatever byte is damaged or where the data
    /// is cut, with the lines read, searched for a needle or left unread.
    #[test]
    fn passing_over_empty_metadata_reads_as_counting_it() {
        let entries: Vec<LogEntry> =
            (0..40).map(|index| LogEntry::new(1_000 + index * 3, format!("line {index} é"))).collect();
        let encoded = encode_columns(&entries, None);
        let needle = memmem::Finder::new("1 é");
        let decode = |data: &[u8], read_every_count: bool| {
            READ_EVERY_METADATA_COUNT.set(read_every_count);
            let mut seen = Vec::new();
            let mut push = |timestamp_ns: i64, line: &str, metadata: &[LabelRef<'_>]| {
                seen.push(format!("{timestamp_ns} {line:?} {}", metadata.len()));
            };
            let full = for_each_encoded_entry(data, ChunkLayout::SEALED, Path::new("mem"), &mut push);
            let holding =
                for_each_encoded_entry_holding(data, ChunkLayout::SEALED, Path::new("mem"), &needle, &mut push);
            let columns = columns_end(data, ChunkLayout::SEALED).unwrap_or(0).min(data.len());
            let without = for_each_encoded_entry_without_lines(
                &data[..columns],
                data.len(),
                ChunkLayout::SEALED,
                Path::new("mem"),
                |timestamp_ns, bytes, metadata| seen.push(format!("{timestamp_ns} {bytes} {}", metadata.len())),
            );
            READ_EVERY_METADATA_COUNT.set(false);
            let outcome = |result: Result<(), LogStoreError>| result.map_err(|error| error.to_string());
            (seen, outcome(full), outcome(holding), outcome(without))
        };
        let ends = section_ends(&encoded, ChunkLayout::SEALED).unwrap();
        assert_eq!(encoded[ends[2]..ends[3]], [0u8; 40], "one zero count per entry");
        let (seen, full, _, _) = decode(&encoded, false);
        assert_eq!(seen.len(), 40 + 4 + 40, "{seen:?}");
        assert_eq!(full, Ok(()));
        assert_eq!(decode(&encoded, false), decode(&encoded, true));
        for cut in 0..encoded.len() {
            assert_eq!(decode(&encoded[..cut], false), decode(&encoded[..cut], true), "cut at {cut}");
        }
        for position in 0..encoded.len() {
            for flip in [0x01, 0x80, 0xa5] {
                let mut damaged = encoded.clone();
                damaged[position] ^= flip;
                assert_eq!(decode(&damaged, false), decode(&damaged, true), "byte {position} ^ {flip:#x}");
            }
        }
    }

    #[test]
    fn columns_round_trip_with_metadata_and_empty_lines() {
        let mut entries: Vec<LogEntry> =
            (0..50).map(|index| LogEntry::new(1_000 + index * 7, "x".repeat(index as usize % 5))).collect();
        entries[3].structured_metadata.push(Label { name: "trace_id".into(), value: "0af7651916cd43dd".into() });
        entries[4].structured_metadata.push(Label { name: "a".into(), value: String::new() });
        // Past the quick path for short metadata: a value of more than 16383 bytes (a three-byte length),
        // more than 127 labels (a two-byte count), multibyte names.
        entries[5].structured_metadata.push(Label { name: "body".into(), value: "é".repeat(9_000) });
        entries[6].structured_metadata =
            (0..130).map(|index| Label { name: format!("ключ_{index}"), value: index.to_string() }).collect();
        // Timestamp deltas of every length, the last ones with fewer than eight bytes behind them.
        for (index, entry) in entries.iter_mut().enumerate().skip(40) {
            entry.timestamp_ns = 1_000 + (1i64 << (6 * (index - 39))) + index as i64;
        }
        let encoded = encode_columns(&entries, None);
        let mut decoded = Vec::new();
        for_each_encoded_entry(&encoded, ChunkLayout::SEALED, Path::new("mem"), |timestamp_ns, line, metadata| {
            decoded.push(LogEntryRef { timestamp_ns, line, structured_metadata: metadata }.to_entry());
        })
        .unwrap();
        assert_eq!(decoded, entries);
    }

    #[test]
    fn timestamp_deltas_are_stored_in_the_coarsest_unit_dividing_them() {
        let at = |timestamps: &[i64]| -> Vec<LogEntry> {
            timestamps.iter().map(|timestamp_ns| LogEntry::new(*timestamp_ns, "line")).collect()
        };
        // An odd first timestamp does not matter: it is stored whole; the deltas decide.
        let cases: [(&[i64], i64); 6] = [
            (&[1_700_000_000_123_456_789, 1_700_000_000_123_457_789, 1_700_000_001_123_457_789], 1_000),
            (&[7, 2_000_000_007, 5_000_000_007], 1_000_000_000),
            (&[0, 3_000_000, 3_000_000, 4_000_000], 1_000_000),
            (&[10, 11, 1_000_010], 1),
            (&[42], COARSEST_TIMESTAMP_UNIT_NS),
            (&[-5_000_000, -3_000_000, 1_000_000], 1_000_000),
        ];
        for (timestamps, unit_ns) in cases {
            let entries = at(timestamps);
            assert_eq!(timestamp_unit_ns(&entries), unit_ns, "{timestamps:?}");
            let mut decoded = Vec::new();
            for_each_encoded_entry(
                &encode_columns(&entries, None),
                ChunkLayout::SEALED,
                Path::new("mem"),
                |ns, line, _| decoded.push(LogEntry::new(ns, line)),
            )
            .unwrap();
            assert_eq!(decoded, entries);
        }
    }

    #[test]
    fn version_2_columns_without_a_timestamp_unit_still_decode() {
        // Version 2 chunk data: count, three section lengths, nanosecond deltas from 0, lengths, metadata.
        let entries = [LogEntry::new(1_000_000_005, "first"), LogEntry::new(1_000_000_012, "second")];
        let mut timestamps = Vec::new();
        put_varint(&mut timestamps, 1_000_000_005);
        put_varint(&mut timestamps, 7);
        let lengths = [5u8, 6];
        let metadata = [0u8, 0];
        let mut encoded = Vec::new();
        put_uvarint(&mut encoded, 2);
        for length in [timestamps.len(), lengths.len(), metadata.len()] {
            put_uvarint(&mut encoded, length as u64);
        }
        encoded.extend_from_slice(&timestamps);
        encoded.extend_from_slice(&lengths);
        encoded.extend_from_slice(&metadata);
        encoded.extend_from_slice(b"firstsecond");
        let mut decoded = Vec::new();
        for_each_encoded_entry(&encoded, ChunkLayout::Columns, Path::new("mem"), |timestamp_ns, line, _| {
            decoded.push(LogEntry::new(timestamp_ns, line))
        })
        .unwrap();
        assert_eq!(decoded, entries);
    }

    #[test]
    fn multibyte_lines_decode_and_a_cut_inside_a_character_is_an_error() {
        let entries: Vec<LogEntry> = ["é", "naïve café", "", "日本語のログ", "plain"]
            .iter()
            .enumerate()
            .map(|(index, line)| LogEntry::new(index as i64, *line))
            .collect();
        let encoded = encode_columns(&entries, None);
        let mut lines = Vec::new();
        for_each_encoded_entry(&encoded, ChunkLayout::SEALED, Path::new("mem"), |_, line, _| {
            lines.push(line.to_string())
        })
        .unwrap();
        assert_eq!(lines, entries.iter().map(|entry| entry.line.clone()).collect::<Vec<_>>());
        // Some byte is the first line's length ("é", two bytes): given a length of one, the second line
        // starts inside the character, which is an error and no panic. So does the length of the (empty,
        // two-byte) field columns section made one: the lines then start a byte early, and the first line
        // ends inside "é".
        let boundary_errors = (0..encoded.len())
            .filter(|position| encoded[*position] == 2)
            .filter_map(|position| {
                let mut damaged = encoded.clone();
                damaged[position] = 1;
                for_each_encoded_entry(&damaged, ChunkLayout::SEALED, Path::new("mem"), |_, _, _| {}).err()
            })
            .filter(|error| error.to_string().contains("character boundary"))
            .count();
        assert_eq!(boundary_errors, 2);
    }

    /// Entries decoded from the start of a chunk's data (timestamps and metadata, lines left compressed)
    /// equal the full decode's but for their lines, over a chunk of many zstd blocks; the old LZ4 form
    /// and damaged frames fall back or fail without panics.
    #[test]
    fn columns_decode_without_lines_from_the_start_of_the_frame() {
        let entries: Vec<LogEntry> = (0..6000i64)
            .map(|index| {
                let mut entry = LogEntry::new(
                    1_700_000_000_000_000_000 + index * 1_000_000,
                    format!("line {index} {}", "ab".repeat((index % 97) as usize)),
                );
                if index % 3 == 0 {
                    entry
                        .structured_metadata
                        .push(Label { name: "trace_id".into(), value: format!("{:032x}", index * 7919) });
                }
                entry
            })
            .collect();
        let chunk = SealedChunk::seal(&entries);
        let encoded_len = encode_columns(&entries, None).len();
        assert!(encoded_len > 4 * 128 * 1024, "spans several zstd blocks");
        let mut inflater = ChunkInflater::new();
        let mut decoded = Vec::new();
        let (columns, total) =
            inflater.inflate_columns(&chunk.data, ChunkLayout::SEALED, Path::new("mem")).unwrap().unwrap();
        assert_eq!(total, encoded_len);
        assert!(columns.len() < encoded_len / 4, "{} of {encoded_len} bytes decompressed", columns.len());
        for_each_encoded_entry_without_lines(
            columns,
            total,
            ChunkLayout::SEALED,
            Path::new("mem"),
            |timestamp_ns, line_bytes, metadata| {
                // Each line stands in as its length in bytes.
                let line = "x".repeat(line_bytes);
                decoded.push(LogEntryRef { timestamp_ns, line: &line, structured_metadata: metadata }.to_entry());
            },
        )
        .unwrap();
        let lines_as_lengths: Vec<LogEntry> =
            entries.iter().map(|entry| LogEntry { line: "x".repeat(entry.line.len()), ..entry.clone() }).collect();
        assert_eq!(decoded, lines_as_lengths);
        // The inflater still decompresses whole chunks after stopping inside a frame.
        let whole = decode_chunk_data(&chunk.data, ChunkLayout::SEALED, Path::new("mem")).unwrap();
        assert_eq!(whole, entries);
        assert_eq!(inflater.inflate(&chunk.data, Path::new("mem")).unwrap().len(), encoded_len);
        // Line lengths that do not add up to the lines' bytes are an error.
        let (columns, total) =
            inflater.inflate_columns(&chunk.data, ChunkLayout::SEALED, Path::new("mem")).unwrap().unwrap();
        let columns = columns.to_vec();
        let count_entries = |columns: &[u8], total: usize| {
            let mut count = 0;
            for_each_encoded_entry_without_lines(columns, total, ChunkLayout::SEALED, Path::new("mem"), |_, _, _| {
                count += 1
            })
            .map(|()| count)
        };
        assert_eq!(count_entries(&columns, total).unwrap(), entries.len());
        for wrong_total in [total - 1, total + 1] {
            let result = count_entries(&columns, wrong_total);
            assert!(result.is_err(), "lines of {wrong_total} bytes instead of {total}");
        }
        // LZ4 chunks and rows are not read this way: the caller decompresses them whole.
        let lz4 = lz4_flex::block::compress_prepend_size(&encode_columns(&entries, None));
        assert!(inflater.inflate_columns(&lz4, ChunkLayout::SEALED, Path::new("mem")).unwrap().is_none());
        assert!(inflater.inflate_columns(&chunk.data, ChunkLayout::Rows, Path::new("mem")).unwrap().is_none());
        // Truncated or damaged frames: errors or a fallback, never a panic.
        for cut in [5, 20, 100, chunk.data.len() / 2] {
            let _ = inflater.inflate_columns(&chunk.data[..cut], ChunkLayout::SEALED, Path::new("mem"));
        }
        for position in (4..chunk.data.len()).step_by(97) {
            let mut damaged = chunk.data.clone();
            damaged[position] ^= 0x5a;
            if let Ok(Some((columns, total))) =
                inflater.inflate_columns(&damaged, ChunkLayout::SEALED, Path::new("mem"))
            {
                let _ = count_entries(columns, total);
            }
        }
    }

    /// One inflater reads the columns of chunk after chunk whose columns span several zstd blocks (a trace
    /// id of structured metadata per entry, as seed-shaped lines carry), of different sizes, between whole
    /// decodes.
    #[test]
    fn columns_of_many_blocks_decode_chunk_after_chunk() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut inflater = ChunkInflater::new();
        for (round, count) in [7000usize, 3000, 9000, 200, 7000].into_iter().enumerate() {
            let entries: Vec<LogEntry> = (0..count)
                .map(|index| {
                    let trace = format!("{:016x}{:016x}", next(), next());
                    let mut entry = LogEntry::new(
                        index as i64 * 113_906_123,
                        format!(
                            r#"{{"event": "request_finished", "trace_id": "{trace}", "user_id": {}, "n": {index}}}"#,
                            next() % 5000
                        ),
                    );
                    entry.structured_metadata.push(Label { name: "trace_id".into(), value: trace });
                    entry
                })
                .collect();
            let chunk = SealedChunk::seal(&entries);
            // The frame's blocks, walked from its header, end where it does.
            let mut block_end = 0;
            let mut blocks = 0;
            while block_end < chunk.data.len() {
                block_end = zstd_block_end(&chunk.data, block_end).unwrap();
                blocks += 1;
            }
            assert_eq!(block_end, chunk.data.len());
            assert!(count < 3000 || blocks > 2, "{blocks} blocks");
            let (columns, total) =
                inflater.inflate_columns(&chunk.data, ChunkLayout::SEALED, Path::new("mem")).unwrap().unwrap();
            let mut decoded = Vec::new();
            for_each_encoded_entry_without_lines(
                columns,
                total,
                ChunkLayout::SEALED,
                Path::new("mem"),
                |timestamp_ns, line_bytes, metadata| {
                    decoded.push((timestamp_ns, line_bytes, metadata.first().map(|label| label.value.to_string())))
                },
            )
            .unwrap();
            let expected: Vec<_> = entries
                .iter()
                .map(|entry| {
                    (entry.timestamp_ns, entry.line.len(), entry.structured_metadata.first().map(|l| l.value.clone()))
                })
                .collect();
            assert_eq!(decoded, expected, "round {round}");
            if round % 2 == 1 {
                assert_eq!(
                    inflater.inflate_rest(&chunk.data, Path::new("mem")).unwrap(),
                    encode_columns(&entries, None)
                );
            } else {
                assert_eq!(inflater.inflate(&chunk.data, Path::new("mem")).unwrap(), encode_columns(&entries, None));
            }
        }
    }

    /// A test parser: a line's `name=value` words are its labels; it fails on a line holding `!`.
    #[derive(Debug)]
    struct Words;

    impl LineFieldExtractor for Words {
        fn writes(&self, semantics: u32, _: &[String]) -> bool {
            semantics == 7
        }

        fn extract(&self, lines: &[&str], field: &mut dyn FnMut(usize, &str, &str)) -> Option<u32> {
            for (index, line) in lines.iter().enumerate() {
                if line.contains('!') {
                    return None;
                }
                for (name, value) in line.split(' ').filter_map(|word| word.split_once('=')) {
                    field(index, name, value);
                }
            }
            Some(7)
        }
    }

    /// The field values of each entry read from `chunk`'s columns `names`, or `None` when it has none.
    fn read_fields(chunk: &SealedChunk, semantics: u32, names: &[&str]) -> Option<Vec<Vec<Option<String>>>> {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let mut inflater = ChunkInflater::new();
        let path = Path::new("mem");
        let (columns, total) = inflater.inflate_columns(&chunk.data, ChunkLayout::SEALED, path).unwrap().unwrap();
        let found = field_columns(columns, ChunkLayout::SEALED, semantics, &names, path).unwrap()?;
        let mut rows = Vec::new();
        for_each_encoded_entry_with_fields(columns, total, ChunkLayout::SEALED, path, &found, |_, _, _, values| {
            rows.push(values.iter().map(|value| value.map(str::to_string)).collect())
        })
        .unwrap();
        Some(rows)
    }

    #[test]
    fn field_columns_hold_each_entrys_labels() {
        let lines: Vec<String> = (0..3000)
            .map(|index| match index % 4 {
                // `n` has 750 values: a values column, of numbers and strings.
                0 => match index % 5 {
                    0 => format!("level=info path=/a n={index}"),
                    1 => format!("level=info path=/a n={}.{}", index / 10, index % 100),
                    2 => format!("level=info path=/a n=0.0{index}"),
                    3 => format!("level=info path=/a n=0{index}"),
                    _ => format!("level=info path=/a n=caf\u{e9}\"{index}"),
                },
                1 => "level=error".to_string(),
                2 => format!("path=/b{} words only", index % 3),
                _ => String::new(),
            })
            .collect();
        let entries: Vec<LogEntry> =
            lines.iter().enumerate().map(|(index, line)| LogEntry::new(index as i64 * 1000, line.clone())).collect();
        let chunk = SealedChunk::seal_with_fields(&entries, Some(&Words));
        // The lines are unchanged, and a full decode passes the columns by.
        assert_eq!(decode_chunk_data(&chunk.data, ChunkLayout::SEALED, Path::new("mem")).unwrap(), entries);
        let rows = read_fields(&chunk, 7, &["path", "level", "n"]).unwrap();
        assert_eq!(rows.len(), entries.len());
        for (row, line) in rows.iter().zip(&lines) {
            let value = |name: &str| {
                line.split(' ')
                    .filter_map(|word| word.split_once('='))
                    .find(|(key, _)| *key == name)
                    .map(|(_, v)| v.to_string())
            };
            assert_eq!(row, &vec![value("path"), value("level"), value("n")], "{line}");
        }
        // Reading on past the columns gives the whole data, for chunks large and small.
        let small: Vec<LogEntry> = entries.iter().take(3).cloned().collect();
        for entries in [&entries, &small] {
            let chunk = SealedChunk::seal_with_fields(entries, Some(&Words));
            let mut inflater = ChunkInflater::new();
            let path = Path::new("mem");
            assert!(inflater.inflate_columns(&chunk.data, ChunkLayout::SEALED, path).unwrap().is_some());
            let whole = encode_columns(entries, Some(&Words));
            assert_eq!(inflater.inflate_rest(&chunk.data, path).unwrap(), whole.as_slice());
            // Without a stop before it, the whole frame.
            assert_eq!(inflater.inflate_rest(&chunk.data, path).unwrap(), whole.as_slice());
        }
        // Another semantics, or a name without a column: nothing.
        assert!(read_fields(&chunk, 8, &["level"]).is_none());
        assert!(read_fields(&chunk, 7, &["missing"]).is_none());
        // A line the parser fails on: no columns at all; no parser: none either.
        let mut failing = entries.clone();
        failing[1500].line = "level=info !".to_string();
        assert!(read_fields(&SealedChunk::seal_with_fields(&failing, Some(&Words)), 7, &["level"]).is_none());
        assert!(read_fields(&SealedChunk::seal(&entries), 7, &["level"]).is_none());
        // Damaged columns are errors or a fallback, never a panic.
        let names = vec!["level".to_string(), "path".to_string(), "n".to_string()];
        let encoded = encode_columns(&entries, Some(&Words));
        let end = columns_end(&encoded, ChunkLayout::SEALED).unwrap();
        for position in (0..end).step_by(7) {
            let mut damaged = encoded.clone();
            damaged[position] ^= 0x5a;
            if let Some(prefix) =
                damaged.get(..columns_end(&damaged, ChunkLayout::SEALED).unwrap_or(0).min(damaged.len()))
                && let Ok(Some(found)) = field_columns(prefix, ChunkLayout::SEALED, 7, &names, Path::new("mem"))
            {
                let _ = for_each_encoded_entry_with_fields(
                    prefix,
                    damaged.len(),
                    ChunkLayout::SEALED,
                    Path::new("mem"),
                    &found,
                    |_, _, _, _| {},
                );
            }
        }
    }

    /// The entries a needle search visits are exactly those whose line holds the needle, for needles that
    /// also occur across line boundaries, overlap themselves, or hold multibyte characters; in both layouts.
    #[test]
    fn needle_search_visits_exactly_the_lines_holding_the_needle() {
        let lines = [
            "a",
            "aa",
            "",
            "ab",
            "ba",
            "aaa",
            "xa",
            "ab",
            "café",
            "é",
            "naïve café au lait",
            "checkout",
            "check",
            "out",
            "checkoutcheckout",
            "/api/events/42/checkout/",
            "b",
        ];
        let entries: Vec<LogEntry> = lines
            .iter()
            .cycle()
            .take(lines.len() * 3)
            .enumerate()
            .map(|(index, line)| {
                let mut entry = LogEntry::new(index as i64 * 10, *line);
                if index % 2 == 0 {
                    entry.structured_metadata.push(Label { name: "trace_id".into(), value: format!("t{index}é") });
                }
                entry
            })
            .collect();
        let encoded = encode_columns(&entries, None);
        let mut rows = Vec::new();
        let mut previous_ns = 0;
        for entry in &entries {
            put_entry(&mut rows, entry, previous_ns);
            previous_ns = entry.timestamp_ns;
        }
        let needles = ["", "a", "aa", "aaa", "ab", "ba", "é", "café", "checkout", "outch", "kout/", "zzz", "b"];
        for needle in needles {
            let finder = memmem::Finder::new(needle.as_bytes());
            let expected: Vec<&LogEntry> = entries.iter().filter(|entry| entry.line.contains(needle)).collect();
            for (data, layout) in [(&encoded, ChunkLayout::SEALED), (&rows, ChunkLayout::Rows)] {
                let mut visited = Vec::new();
                for_each_encoded_entry_holding(
                    data,
                    layout,
                    Path::new("mem"),
                    &finder,
                    |timestamp_ns, line, metadata| {
                        visited.push(LogEntryRef { timestamp_ns, line, structured_metadata: metadata }.to_entry())
                    },
                )
                .unwrap();
                assert_eq!(visited.iter().collect::<Vec<_>>(), expected, "{needle:?} in {layout:?}");
            }
        }
    }

    /// A needle search checks only the lines it visits: invalid UTF-8 in a line holding the needle is an
    /// error, in another line it is passed by; a damaged layout is an error either way.
    #[test]
    fn needle_search_checks_the_lines_it_visits() {
        let entries: Vec<LogEntry> = ["one needle", "two", "three needle"]
            .iter()
            .enumerate()
            .map(|(i, line)| LogEntry::new(i as i64, *line))
            .collect();
        let encoded = encode_columns(&entries, None);
        let finder = memmem::Finder::new("needle");
        let count = |data: &[u8]| {
            let mut visited = 0;
            for_each_encoded_entry_holding(data, ChunkLayout::SEALED, Path::new("mem"), &finder, |_, _, _| visited += 1)
                .map(|()| visited)
        };
        assert_eq!(count(&encoded).unwrap(), 2);
        let line_at = |line: &str| {
            encoded.len() - "one needletwothree needle".len() + "one needletwothree needle".find(line).unwrap()
        };
        let mut bad_visited = encoded.clone();
        bad_visited[line_at("one")] = 0xff;
        assert!(count(&bad_visited).unwrap_err().to_string().contains("invalid UTF-8"));
        let mut bad_passed = encoded.clone();
        bad_passed[line_at("two")] = 0xff;
        assert_eq!(count(&bad_passed).unwrap(), 2);
        for cut in 0..encoded.len() {
            assert!(count(&encoded[..cut]).is_err(), "truncated at {cut}");
        }
        let mut extra = encoded;
        extra.push(b'!');
        assert!(count(&extra).is_err());
    }

    #[test]
    fn version_3_columns_without_field_columns_still_decode() {
        // Version 3 chunk data: count, unit, three section lengths, the sections, the lines.
        let entries = [LogEntry::new(1_000_000_000, "first"), LogEntry::new(3_000_000_000, "second")];
        let mut encoded = Vec::new();
        put_uvarint(&mut encoded, 2);
        put_uvarint(&mut encoded, 1_000_000_000);
        let mut timestamps = Vec::new();
        put_varint(&mut timestamps, 1_000_000_000);
        put_varint(&mut timestamps, 2);
        for length in [timestamps.len(), 2, 2] {
            put_uvarint(&mut encoded, length as u64);
        }
        encoded.extend_from_slice(&timestamps);
        encoded.extend_from_slice(&[5, 6, 0, 0]);
        encoded.extend_from_slice(b"firstsecond");
        let mut decoded = Vec::new();
        for_each_encoded_entry(
            &encoded,
            ChunkLayout::ColumnsTimestampUnit,
            Path::new("mem"),
            |timestamp_ns, line, _| decoded.push(LogEntry::new(timestamp_ns, line)),
        )
        .unwrap();
        assert_eq!(decoded, entries);
        assert_eq!(columns_end(&encoded, ChunkLayout::ColumnsTimestampUnit), Some(encoded.len() - 11));
        assert!(
            field_columns(&encoded, ChunkLayout::ColumnsTimestampUnit, 1, &[], Path::new("mem")).unwrap().is_none()
        );
    }

    #[test]
    fn damaged_columns_are_errors_not_panics() {
        let entries: Vec<LogEntry> =
            (0..20).map(|index| LogEntry::new(index, format!("line number {index}"))).collect();
        let encoded = encode_columns(&entries, None);
        for cut in 0..encoded.len() {
            let truncated = &encoded[..cut];
            let result = for_each_encoded_entry(truncated, ChunkLayout::SEALED, Path::new("mem"), |_, _, _| {});
            assert!(result.is_err(), "truncated at {cut} decoded");
        }
        for position in 0..encoded.len() {
            let mut damaged = encoded.clone();
            damaged[position] ^= 0xa5;
            // Any outcome but a panic is acceptable; most damage is reported.
            let _ = for_each_encoded_entry(&damaged, ChunkLayout::SEALED, Path::new("mem"), |_, _, _| {});
        }
        let mut extra = encoded;
        extra.push(b'!');
        let error = for_each_encoded_entry(&extra, ChunkLayout::SEALED, Path::new("mem"), |_, _, _| {}).unwrap_err();
        assert!(error.to_string().contains("after the last entry"), "{error}");
    }
}
