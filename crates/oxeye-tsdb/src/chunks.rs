//! Chunk files of a block: `chunks/000001`, `chunks/000002`, ... holding encoded chunks.
//!
//! Version 2 (written): an 8-byte header (magic `OXCH` as u32 big-endian, version byte 2, three zero
//! bytes), then **frames** back to back. A frame is `compressed length u32 │ content length u32 │
//! CRC32 (IEEE) of the 8 length bytes and the compressed bytes, u32 │ compressed bytes` (big-endian;
//! the compressed bytes are a raw DEFLATE stream of the content). The content is chunk entries
//! `length uvarint │ encoding u8 │ data` back to back, at most 64 KiB unless a single entry is larger.
//! A chunk reference is `file sequence << 48 | frame offset << 16 | entry position in the content`,
//! and the index stores the frame's length in bytes (header included) next to it, so a reader fetches
//! and inflates whole frames.
//!
//! Version 1 (still read): the same header with version 1, then entries `length uvarint │ encoding u8
//! │ data │ CRC32 of encoding + data, u32 big-endian`, uncompressed; a chunk reference is `file
//! sequence << 32 | byte offset of the entry` and the index stores the entry's length.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::TsdbError;
use crate::chunkenc::Encoding;
use crate::deflate;
use crate::encoding::{Decoder, put_uvarint};

const CHUNKS_MAGIC: u32 = 0x4f58_4348;
/// The chunk file version written.
const CHUNKS_VERSION: u8 = 2;
/// The uncompressed, CRC-per-entry layout of earlier blocks.
const CHUNKS_VERSION_1: u8 = 1;
const HEADER_BYTES: u64 = 8;
const FRAME_HEADER_BYTES: usize = 12;
/// A frame's content is closed before an entry would take it beyond this many bytes, so every entry
/// position fits the 16 bits the chunk reference has for it.
const FRAME_CONTENT_BYTES: usize = 1 << 16;
/// A chunk file is closed and the next one started beyond this size.
const MAX_CHUNK_FILE_BYTES: u64 = 512 << 20;

fn chunk_file_path(chunks_dir: &Path, sequence: u32) -> PathBuf {
    chunks_dir.join(format!("{sequence:06}"))
}

/// The frame lengths of a finished chunk writer: what the index stores beside each chunk reference.
#[derive(Debug, Default)]
pub(crate) struct FrameTable {
    /// `(file sequence << 32 | frame offset, frame length in bytes)`, ascending.
    frames: Vec<(u64, u32)>,
}

impl FrameTable {
    /// The length in bytes (header included) of the frame holding chunk `chunk_ref`.
    pub(crate) fn frame_bytes(&self, chunk_ref: u64) -> Option<u32> {
        let key = frame_key(chunk_ref);
        self.frames.binary_search_by_key(&key, |(frame, _)| *frame).ok().map(|position| self.frames[position].1)
    }
}

/// `file sequence << 32 | frame offset` of a version-2 chunk reference.
fn frame_key(chunk_ref: u64) -> u64 {
    ((chunk_ref >> 48) << 32) | ((chunk_ref >> 16) & 0xffff_ffff)
}

/// Writes the chunk files of a new block.
#[derive(Debug)]
pub(crate) struct ChunkWriter {
    chunks_dir: PathBuf,
    sequence: u32,
    file: Option<BufWriter<File>>,
    /// File offset of the next frame.
    offset: u64,
    /// Content of the open frame.
    frame: Vec<u8>,
    compressed: Vec<u8>,
    table: FrameTable,
}

impl ChunkWriter {
    pub(crate) fn create(chunks_dir: &Path) -> Result<Self, TsdbError> {
        std::fs::create_dir_all(chunks_dir).map_err(|error| TsdbError::io(chunks_dir, "create directory", error))?;
        Ok(ChunkWriter {
            chunks_dir: chunks_dir.to_path_buf(),
            sequence: 0,
            file: None,
            offset: 0,
            frame: Vec::with_capacity(FRAME_CONTENT_BYTES),
            compressed: Vec::new(),
            table: FrameTable::default(),
        })
    }

    fn start_file(&mut self) -> Result<(), TsdbError> {
        self.finish_file()?;
        self.sequence += 1;
        let path = chunk_file_path(&self.chunks_dir, self.sequence);
        let file = File::create(&path).map_err(|error| TsdbError::io(&path, "create chunk file", error))?;
        let mut writer = BufWriter::with_capacity(1 << 20, file);
        let mut header = [0u8; HEADER_BYTES as usize];
        header[..4].copy_from_slice(&CHUNKS_MAGIC.to_be_bytes());
        header[4] = CHUNKS_VERSION;
        writer.write_all(&header).map_err(|error| TsdbError::io(&path, "write chunk file", error))?;
        self.file = Some(writer);
        self.offset = HEADER_BYTES;
        Ok(())
    }

    fn finish_file(&mut self) -> Result<(), TsdbError> {
        if let Some(writer) = self.file.take() {
            let path = chunk_file_path(&self.chunks_dir, self.sequence);
            let file =
                writer.into_inner().map_err(|error| TsdbError::io(&path, "flush chunk file", error.into_error()))?;
            file.sync_all().map_err(|error| TsdbError::io(&path, "fsync", error))?;
        }
        Ok(())
    }

    /// Compresses the open frame and writes it.
    fn flush_frame(&mut self) -> Result<(), TsdbError> {
        if self.frame.is_empty() {
            return Ok(());
        }
        let path = chunk_file_path(&self.chunks_dir, self.sequence);
        self.compressed.clear();
        self.compressed.extend_from_slice(&[0u8; FRAME_HEADER_BYTES]);
        deflate::compress_into(&self.frame, deflate::CHUNK_LEVEL, &mut self.compressed);
        let compressed_bytes = u32::try_from(self.compressed.len() - FRAME_HEADER_BYTES)
            .map_err(|_| TsdbError::corrupt(&path, "chunk frame larger than 4 GiB"))?;
        let content_bytes =
            u32::try_from(self.frame.len()).map_err(|_| TsdbError::corrupt(&path, "chunk frame larger than 4 GiB"))?;
        self.compressed[..4].copy_from_slice(&compressed_bytes.to_be_bytes());
        self.compressed[4..8].copy_from_slice(&content_bytes.to_be_bytes());
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&self.compressed[..8]);
        hasher.update(&self.compressed[FRAME_HEADER_BYTES..]);
        let crc = hasher.finalize();
        self.compressed[8..12].copy_from_slice(&crc.to_be_bytes());
        let Some(file) = self.file.as_mut() else {
            return Err(TsdbError::corrupt(&path, "chunk file not open"));
        };
        file.write_all(&self.compressed).map_err(|error| TsdbError::io(&path, "write chunk file", error))?;
        let frame_bytes = u32::try_from(self.compressed.len())
            .map_err(|_| TsdbError::corrupt(&path, "chunk frame larger than 4 GiB"))?;
        self.table.frames.push(((u64::from(self.sequence) << 32) | self.offset, frame_bytes));
        self.offset += self.compressed.len() as u64;
        self.frame.clear();
        Ok(())
    }

    /// Adds one chunk and returns its reference. Its frame's length is known once the writer is
    /// finished ([`FrameTable::frame_bytes`]).
    pub(crate) fn write(&mut self, encoding: Encoding, bytes: &[u8]) -> Result<u64, TsdbError> {
        let entry_bytes = uvarint_len(bytes.len() as u64) + 1 + bytes.len();
        if !self.frame.is_empty() && self.frame.len() + entry_bytes > FRAME_CONTENT_BYTES {
            self.flush_frame()?;
        }
        if self.frame.is_empty() && (self.file.is_none() || self.offset >= MAX_CHUNK_FILE_BYTES) {
            self.start_file()?;
        }
        if self.offset >= 1 << 32 || self.sequence >= 1 << 16 {
            return Err(TsdbError::corrupt(&self.chunks_dir, "block chunk files exceed the chunk reference range"));
        }
        let chunk_ref = (u64::from(self.sequence) << 48) | (self.offset << 16) | self.frame.len() as u64;
        put_uvarint(&mut self.frame, bytes.len() as u64);
        self.frame.push(encoding.to_byte());
        self.frame.extend_from_slice(bytes);
        Ok(chunk_ref)
    }

    /// Writes the last frame, flushes and fsyncs the last file; returns every frame's length.
    pub(crate) fn finish(mut self) -> Result<FrameTable, TsdbError> {
        self.flush_frame()?;
        self.finish_file()?;
        Ok(std::mem::take(&mut self.table))
    }
}

fn uvarint_len(mut value: u64) -> usize {
    let mut length = 1;
    while value >= 0x80 {
        value >>= 7;
        length += 1;
    }
    length
}

/// Inflated frames a [`ChunkReader`] keeps across calls.
const RECENT_FRAMES: usize = 4;

/// The most bytes of chunk data (plus [`REMEMBERED_ENTRY_OVERHEAD_BYTES`] per chunk) a [`ChunkReader`]
/// keeps for [`ChunkCaching::Remember`] reads. A dashboard's small selection (a join's 100 float series,
/// about 1 KiB per XOR chunk) fits; its frames would take 64 KiB each.
const REMEMBERED_CHUNK_BYTES: usize = 256 << 10;

/// What one remembered chunk costs beside its data: the map entry, the order entry and the allocation.
const REMEMBERED_ENTRY_OVERHEAD_BYTES: usize = 48;

/// Whether [`ChunkReader::read_many`] keeps the chunks it reads for later calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChunkCaching {
    /// Keep them (oldest dropped first beyond [`REMEMBERED_CHUNK_BYTES`]): a small selection that a
    /// dashboard repeats, whose chunks are spread over more frames than [`RECENT_FRAMES`].
    Remember,
    /// Keep nothing: a large selection, whose chunks would only push out the small ones, or compaction.
    Bypass,
}

/// Chunks a [`ChunkReader`] returned for [`ChunkCaching::Remember`] reads, by chunk reference, with the
/// order they came in (the oldest is dropped first).
#[derive(Debug, Default)]
struct RememberedChunks {
    by_ref: std::collections::HashMap<u64, (Encoding, Box<[u8]>)>,
    order: std::collections::VecDeque<u64>,
    /// Data bytes plus [`REMEMBERED_ENTRY_OVERHEAD_BYTES`] per chunk.
    bytes: usize,
}

impl RememberedChunks {
    fn cost(data: &[u8]) -> usize {
        data.len() + REMEMBERED_ENTRY_OVERHEAD_BYTES
    }

    /// Keeps `chunks` (`(chunk reference, encoding, data)`), dropping the oldest beyond the budget. A set
    /// larger than the whole budget is not kept at all, so it cannot push out what fits.
    fn remember<'c>(&mut self, chunks: impl Iterator<Item = (u64, Encoding, &'c [u8])> + Clone) {
        let total: usize = chunks.clone().map(|(_, _, data)| Self::cost(data)).sum();
        if total > REMEMBERED_CHUNK_BYTES {
            return;
        }
        for (chunk_ref, encoding, data) in chunks {
            if self.by_ref.contains_key(&chunk_ref) {
                continue;
            }
            while self.bytes + Self::cost(data) > REMEMBERED_CHUNK_BYTES {
                let Some(oldest) = self.order.pop_front() else { break };
                if let Some((_, dropped)) = self.by_ref.remove(&oldest) {
                    self.bytes -= Self::cost(&dropped);
                }
            }
            self.bytes += Self::cost(data);
            self.by_ref.insert(chunk_ref, (encoding, data.into()));
            self.order.push_back(chunk_ref);
        }
    }
}

/// An inflated frame: `(file sequence, frame offset)` and its content.
type InflatedFrame = (u64, u64, Arc<Vec<u8>>);

/// Reads chunks of one block by reference.
#[derive(Debug)]
pub(crate) struct ChunkReader {
    /// The version of every file of the block (files of one block never mix versions).
    version: u8,
    files: Vec<(PathBuf, File)>,
    /// The last [`RECENT_FRAMES`] frames inflated, newest last. Streamed queries read one series at a
    /// time, and a 64 KiB frame holds the chunks of tens to hundreds of neighbouring series: without
    /// it every series' read inflates its frame again (measured: 73% of a query's CPU in inflate).
    recent: Mutex<Vec<InflatedFrame>>,
    /// Chunks of recent [`ChunkCaching::Remember`] reads.
    remembered: Mutex<RememberedChunks>,
}

impl ChunkReader {
    pub(crate) fn open(chunks_dir: &Path) -> Result<Self, TsdbError> {
        let mut files = Vec::new();
        let mut version = CHUNKS_VERSION;
        let mut sequence = 1;
        loop {
            let path = chunk_file_path(chunks_dir, sequence);
            let file = match File::open(&path) {
                Ok(file) => file,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => break,
                Err(error) => return Err(TsdbError::io(&path, "open chunk file", error)),
            };
            let mut header = [0u8; HEADER_BYTES as usize];
            file.read_exact_at(&mut header, 0)
                .map_err(|error| TsdbError::io(&path, "read chunk file header", error))?;
            if header[..4] != CHUNKS_MAGIC.to_be_bytes() {
                return Err(TsdbError::corrupt(&path, "bad chunk file magic"));
            }
            if header[4] != CHUNKS_VERSION && header[4] != CHUNKS_VERSION_1 {
                return Err(TsdbError::corrupt(&path, format!("unsupported chunk file version {}", header[4])));
            }
            if files.is_empty() {
                version = header[4];
            } else if header[4] != version {
                return Err(TsdbError::corrupt(&path, "chunk files of one block with different versions"));
            }
            files.push((path, file));
            sequence += 1;
        }
        Ok(ChunkReader {
            version,
            files,
            recent: Mutex::new(Vec::with_capacity(RECENT_FRAMES)),
            remembered: Mutex::new(RememberedChunks::default()),
        })
    }

    /// `(file sequence, byte offset)` of what to read for `chunk_ref`: the entry (version 1) or
    /// its frame (version 2).
    fn location(&self, chunk_ref: u64) -> (u64, u64) {
        if self.version == CHUNKS_VERSION_1 {
            (chunk_ref >> 32, chunk_ref & 0xffff_ffff)
        } else {
            (chunk_ref >> 48, (chunk_ref >> 16) & 0xffff_ffff)
        }
    }

    fn file(&self, sequence: u64) -> Result<&(PathBuf, File), TsdbError> {
        (sequence as usize).checked_sub(1).and_then(|index| self.files.get(index)).ok_or_else(|| TsdbError::Corrupt {
            path: PathBuf::from("chunks"),
            reason: format!("chunk reference names the missing chunk file {sequence}"),
        })
    }

    /// Reads chunks given as `(chunk reference, length in bytes stored in the index)`, checksums
    /// verified, in the order asked. Neighbouring entries or frames of one file are read with one
    /// `pread` (gaps up to 64 KiB are read through), so a query touching many series costs few system
    /// calls; each frame is inflated once per call, and neither read nor inflated while it is among the
    /// reader's recently inflated frames. Chunks remembered from earlier [`ChunkCaching::Remember`] reads
    /// are copied from memory; with `caching` [`ChunkCaching::Remember`] the chunks this call reads are
    /// remembered too.
    pub(crate) fn read_many(
        &self,
        wanted: &[(u64, u32)],
        caching: ChunkCaching,
    ) -> Result<Vec<(Encoding, Vec<u8>)>, TsdbError> {
        const MAX_GAP_BYTES: u64 = 64 << 10;
        const MAX_READ_BYTES: u64 = 16 << 20;
        let mut order: Vec<usize> = (0..wanted.len()).collect();
        order.sort_unstable_by_key(|position| wanted[*position].0);
        let mut results: Vec<Option<(Encoding, Vec<u8>)>> = vec![None; wanted.len()];
        {
            let remembered = self.remembered.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if !remembered.by_ref.is_empty() {
                order.retain(|position| match remembered.by_ref.get(&wanted[*position].0) {
                    Some((encoding, data)) => {
                        results[*position] = Some((*encoding, data.to_vec()));
                        false
                    }
                    None => true,
                });
            }
        }
        // What this call reads from disk, to remember afterwards (nothing to keep for a bypassing read).
        let unremembered = if caching == ChunkCaching::Remember { order.clone() } else { Vec::new() };
        if self.version != CHUNKS_VERSION_1 {
            // Chunks in recently inflated frames are taken from them without reading the file.
            let mut unread = Vec::with_capacity(order.len());
            for position in order {
                let chunk_ref = wanted[position].0;
                let (file_sequence, offset) = self.location(chunk_ref);
                match self.recent_frame(file_sequence, offset) {
                    Some(content) => {
                        let chunk = parse_frame_entry(&content, (chunk_ref & 0xffff) as usize).map_err(|reason| {
                            TsdbError::corrupt("chunks", format!("chunk {chunk_ref:#x}: {reason}"))
                        })?;
                        results[position] = Some(chunk);
                    }
                    None => unread.push(position),
                }
            }
            order = unread;
        }
        let mut buffer = Vec::new();
        // The last inflated frame: its offset and content.
        let mut frame: Option<InflatedFrame> = None;
        let mut index = 0;
        while index < order.len() {
            // One run: entries of one file, close together.
            let (first_ref, first_length) = wanted[order[index]];
            let (file_sequence, start) = self.location(first_ref);
            let mut end = start + u64::from(first_length);
            let mut run_end = index + 1;
            while let Some(next) = order.get(run_end) {
                let (next_ref, next_length) = wanted[*next];
                let (next_sequence, next_offset) = self.location(next_ref);
                let next_end = next_offset + u64::from(next_length);
                if next_sequence != file_sequence
                    || next_offset > end + MAX_GAP_BYTES
                    || next_end - start > MAX_READ_BYTES
                {
                    break;
                }
                end = end.max(next_end);
                run_end += 1;
            }
            let (path, file) = self.file(file_sequence)?;
            buffer.resize((end - start) as usize, 0);
            file.read_exact_at(&mut buffer, start).map_err(|error| TsdbError::io(path, "read chunks", error))?;
            for position in &order[index..run_end] {
                let (chunk_ref, length) = wanted[*position];
                let (_, offset) = self.location(chunk_ref);
                let relative = (offset - start) as usize;
                let stored = buffer
                    .get(relative..relative + length as usize)
                    .ok_or_else(|| TsdbError::corrupt(path, format!("chunk {chunk_ref:#x} outside its read")))?;
                let chunk = if self.version == CHUNKS_VERSION_1 {
                    parse_entry(stored)
                        .map_err(|reason| TsdbError::corrupt(path, format!("chunk at offset {offset}: {reason}")))?
                } else {
                    let cached = frame.as_ref().is_some_and(|(sequence, frame_offset, _)| {
                        *sequence == file_sequence && *frame_offset == offset
                    });
                    if !cached {
                        // Not among the recent frames (the pass above took those): inflate and keep it.
                        let content = Arc::new(parse_frame(stored).map_err(|reason| {
                            TsdbError::corrupt(path, format!("frame at offset {offset}: {reason}"))
                        })?);
                        self.remember_frame(file_sequence, offset, &content);
                        frame = Some((file_sequence, offset, content));
                    }
                    let content = frame.as_ref().map(|(_, _, content)| content.as_slice()).unwrap_or_default();
                    parse_frame_entry(content, (chunk_ref & 0xffff) as usize).map_err(|reason| {
                        TsdbError::corrupt(path, format!("chunk {chunk_ref:#x} in frame at offset {offset}: {reason}"))
                    })?
                };
                results[*position] = Some(chunk);
            }
            index = run_end;
        }
        if !unremembered.is_empty() {
            let read = unremembered.iter().filter_map(|position| {
                let (encoding, data) = results[*position].as_ref()?;
                Some((wanted[*position].0, *encoding, data.as_slice()))
            });
            self.remembered.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remember(read);
        }
        results
            .into_iter()
            .map(|result| result.ok_or_else(|| TsdbError::corrupt("chunks", "chunk read missing")))
            .collect()
    }
}

impl ChunkReader {
    /// The content of a recently inflated frame.
    fn recent_frame(&self, file_sequence: u64, offset: u64) -> Option<Arc<Vec<u8>>> {
        let recent = self.recent.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        recent
            .iter()
            .find(|(sequence, at, _)| *sequence == file_sequence && *at == offset)
            .map(|(_, _, content)| Arc::clone(content))
    }

    /// Keeps an inflated frame among the recent ones, dropping the oldest beyond [`RECENT_FRAMES`].
    fn remember_frame(&self, file_sequence: u64, offset: u64, content: &Arc<Vec<u8>>) {
        let mut recent = self.recent.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if recent.len() >= RECENT_FRAMES {
            recent.remove(0);
        }
        recent.push((file_sequence, offset, Arc::clone(content)));
    }
}

/// Verifies and inflates one version-2 frame (header and compressed bytes, exactly).
fn parse_frame(frame: &[u8]) -> Result<Vec<u8>, String> {
    let header = frame.get(..FRAME_HEADER_BYTES).ok_or("frame shorter than its header")?;
    let compressed_bytes = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let content_bytes = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
    let stored_crc = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
    if frame.len() != FRAME_HEADER_BYTES + compressed_bytes {
        return Err(format!("frame length {} does not match its header", frame.len()));
    }
    let compressed = &frame[FRAME_HEADER_BYTES..];
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[..8]);
    hasher.update(compressed);
    if hasher.finalize() != stored_crc {
        return Err("checksum mismatch".to_owned());
    }
    deflate::decompress_exact(compressed, content_bytes)
}

/// The chunk entry (`length uvarint │ encoding │ data`) at `position` of a frame's content.
fn parse_frame_entry(content: &[u8], position: usize) -> Result<(Encoding, Vec<u8>), String> {
    let entry = content.get(position..).ok_or("entry position beyond the frame")?;
    let mut decoder = Decoder::new(entry);
    let length = decoder.uvarint("chunk length").map_err(|error| error.to_string())?;
    let encoding_byte = decoder.u8("chunk encoding").map_err(|error| error.to_string())?;
    let encoding = Encoding::from_byte(encoding_byte).ok_or("unknown encoding")?;
    let length = usize::try_from(length).map_err(|_| "length too large")?;
    let data = decoder.take(length, "chunk data").map_err(|error| error.to_string())?;
    Ok((encoding, data.to_vec()))
}

/// Appends one chunk file entry (length, encoding, data, CRC) to `out`.
pub(crate) fn encode_entry(out: &mut Vec<u8>, encoding: Encoding, bytes: &[u8]) {
    put_uvarint(out, bytes.len() as u64);
    out.push(encoding.to_byte());
    out.extend_from_slice(bytes);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&[encoding.to_byte()]);
    hasher.update(bytes);
    out.extend_from_slice(&hasher.finalize().to_be_bytes());
}

/// Parses one chunk file entry: length, encoding, data, CRC.
pub(crate) fn parse_entry(entry: &[u8]) -> Result<(Encoding, Vec<u8>), String> {
    let mut decoder = Decoder::new(entry);
    let length = decoder.uvarint("chunk length").map_err(|error| error.to_string())?;
    let encoding_byte = decoder.u8("chunk encoding").map_err(|error| error.to_string())?;
    let encoding = Encoding::from_byte(encoding_byte).ok_or("unknown encoding")?;
    let length = usize::try_from(length).map_err(|_| "length too large")?;
    let data = decoder.take(length, "chunk data").map_err(|error| error.to_string())?;
    let crc_bytes = decoder.take(4, "chunk checksum").map_err(|error| error.to_string())?;
    let stored_crc = u32::from_be_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&[encoding_byte]);
    hasher.update(data);
    if hasher.finalize() != stored_crc {
        return Err("checksum mismatch".to_owned());
    }
    Ok((encoding, data.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_chunks(chunks_dir: &Path, chunks: &[(Encoding, Vec<u8>)]) -> Vec<(u64, u32)> {
        let mut writer = ChunkWriter::create(chunks_dir).unwrap();
        let refs: Vec<u64> = chunks.iter().map(|(encoding, bytes)| writer.write(*encoding, bytes).unwrap()).collect();
        let table = writer.finish().unwrap();
        refs.iter().map(|chunk_ref| (*chunk_ref, table.frame_bytes(*chunk_ref).unwrap())).collect()
    }

    #[test]
    fn chunks_round_trip_and_damage_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let chunks_dir = dir.path().join("chunks");
        let chunks = vec![(Encoding::Xor, b"abc".to_vec()), (Encoding::ScaledInt, vec![7u8; 300])];
        let refs = write_chunks(&chunks_dir, &chunks);
        assert_eq!(refs[0].1, refs[1].1, "both chunks share one frame");
        let reader = ChunkReader::open(&chunks_dir).unwrap();
        assert_eq!(reader.read_many(&refs[..1], ChunkCaching::Bypass).unwrap(), chunks[..1]);
        assert_eq!(
            reader.read_many(&[refs[1], refs[0]], ChunkCaching::Bypass).unwrap(),
            vec![chunks[1].clone(), chunks[0].clone()]
        );
        assert!(reader.read_many(&[(5 << 48, 20)], ChunkCaching::Bypass).is_err());

        let path = chunk_file_path(&chunks_dir, 1);
        let original = std::fs::read(&path).unwrap();
        for position in
            [HEADER_BYTES as usize, HEADER_BYTES as usize + 5, HEADER_BYTES as usize + 9, original.len() - 1]
        {
            let mut bytes = original.clone();
            bytes[position] ^= 1;
            std::fs::write(&path, bytes).unwrap();
            let reader = ChunkReader::open(&chunks_dir).unwrap();
            assert!(reader.read_many(&refs[..1], ChunkCaching::Bypass).is_err(), "flip at {position}");
        }
    }

    #[test]
    fn many_chunks_span_frames_and_read_back_in_any_order() {
        let dir = tempfile::tempdir().unwrap();
        let chunks_dir = dir.path().join("chunks");
        // 2,000 chunks of up to ~1 KiB: several frames; one chunk larger than a frame.
        let mut chunks: Vec<(Encoding, Vec<u8>)> = (0..2000u32)
            .map(|n| (Encoding::Xor, (0..(n * 7919) % 1100).map(|byte| (byte ^ n) as u8).collect()))
            .collect();
        chunks.insert(1000, (Encoding::ScaledInt, vec![1u8; 100_000]));
        let refs = write_chunks(&chunks_dir, &chunks);
        let frames: std::collections::BTreeSet<u64> = refs.iter().map(|(chunk_ref, _)| frame_key(*chunk_ref)).collect();
        assert!(frames.len() > 10, "{} frames", frames.len());
        let reader = ChunkReader::open(&chunks_dir).unwrap();
        assert_eq!(reader.read_many(&refs, ChunkCaching::Bypass).unwrap(), chunks);
        let reversed: Vec<(u64, u32)> = refs.iter().rev().copied().collect();
        let mut expected = chunks.clone();
        expected.reverse();
        assert_eq!(reader.read_many(&reversed, ChunkCaching::Bypass).unwrap(), expected);
        let sparse: Vec<(u64, u32)> = refs.iter().step_by(97).copied().collect();
        let expected: Vec<_> = chunks.iter().step_by(97).cloned().collect();
        assert_eq!(reader.read_many(&sparse, ChunkCaching::Bypass).unwrap(), expected);
        // One chunk per call, as streamed queries read: later chunks of a frame come from the frames
        // kept across calls, forwards and backwards.
        for (chunk_ref, chunk) in refs.iter().zip(&chunks).chain(refs.iter().zip(&chunks).rev()) {
            assert_eq!(
                reader.read_many(std::slice::from_ref(chunk_ref), ChunkCaching::Bypass).unwrap(),
                std::slice::from_ref(chunk)
            );
        }
        assert!(lock_recent(&reader).len() <= RECENT_FRAMES);
    }

    #[test]
    fn remembered_chunks_are_served_from_memory_within_their_budget() {
        let dir = tempfile::tempdir().unwrap();
        let chunks_dir = dir.path().join("chunks");
        // 400 chunks of 1,000 bytes in about seven frames: more frames than a reader keeps inflated.
        let chunks: Vec<(Encoding, Vec<u8>)> = (0..400u32)
            .map(|n| (Encoding::Xor, (0..1000u32).map(|byte| ((byte * 31) ^ (n * 7)) as u8).collect()))
            .collect();
        let refs = write_chunks(&chunks_dir, &chunks);
        let reader = ChunkReader::open(&chunks_dir).unwrap();
        let every_fourth: Vec<(u64, u32)> = refs.iter().step_by(4).copied().collect();
        let expected: Vec<_> = chunks.iter().step_by(4).cloned().collect();
        assert_eq!(reader.read_many(&every_fourth, ChunkCaching::Remember).unwrap(), expected);
        assert_eq!(lock_remembered(&reader).by_ref.len(), 100);
        // A read larger than the whole budget is returned but not remembered.
        assert_eq!(reader.read_many(&refs, ChunkCaching::Remember).unwrap(), chunks);
        assert_eq!(lock_remembered(&reader).by_ref.len(), 100);
        // With the file gone, remembered chunks are still served; the others fail.
        std::fs::write(chunk_file_path(&chunks_dir, 1), b"").unwrap();
        let reader_without_file = ChunkReader {
            files: vec![(chunk_file_path(&chunks_dir, 1), File::open(chunk_file_path(&chunks_dir, 1)).unwrap())],
            ..reader
        };
        lock_recent(&reader_without_file).clear();
        assert_eq!(reader_without_file.read_many(&every_fourth, ChunkCaching::Bypass).unwrap(), expected);
        assert!(reader_without_file.read_many(&refs[1..2], ChunkCaching::Bypass).is_err());
        // Past the budget the oldest chunks go first.
        let mut remembered = RememberedChunks::default();
        let big = vec![0u8; REMEMBERED_CHUNK_BYTES / 4];
        remembered.remember((0..5u64).map(|chunk_ref| (chunk_ref, Encoding::Xor, big.as_slice())).take(2));
        remembered.remember((2..4u64).map(|chunk_ref| (chunk_ref, Encoding::Xor, big.as_slice())));
        let mut kept: Vec<u64> = remembered.by_ref.keys().copied().collect();
        kept.sort_unstable();
        assert_eq!(kept, vec![1, 2, 3]);
        assert!(remembered.bytes <= REMEMBERED_CHUNK_BYTES);
    }

    fn lock_remembered(reader: &ChunkReader) -> std::sync::MutexGuard<'_, RememberedChunks> {
        reader.remembered.lock().unwrap()
    }

    fn lock_recent(reader: &ChunkReader) -> std::sync::MutexGuard<'_, Vec<InflatedFrame>> {
        reader.recent.lock().unwrap()
    }

    #[test]
    fn version_1_chunk_files_are_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let chunks_dir = dir.path().join("chunks");
        std::fs::create_dir_all(&chunks_dir).unwrap();
        let mut bytes = CHUNKS_MAGIC.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[CHUNKS_VERSION_1, 0, 0, 0]);
        let first_offset = bytes.len() as u64;
        encode_entry(&mut bytes, Encoding::Xor, b"abc");
        let second_offset = bytes.len() as u64;
        encode_entry(&mut bytes, Encoding::ScaledInt, &[9u8; 200]);
        let end = bytes.len() as u64;
        std::fs::write(chunk_file_path(&chunks_dir, 1), &bytes).unwrap();
        let reader = ChunkReader::open(&chunks_dir).unwrap();
        let read = reader
            .read_many(
                &[
                    ((1 << 32) | second_offset, (end - second_offset) as u32),
                    ((1 << 32) | first_offset, (second_offset - first_offset) as u32),
                ],
                ChunkCaching::Bypass,
            )
            .unwrap();
        assert_eq!(read, vec![(Encoding::ScaledInt, vec![9u8; 200]), (Encoding::Xor, b"abc".to_vec())]);
    }
}
