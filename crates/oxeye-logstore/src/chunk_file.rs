//! Chunk files: every flush writes the chunks it cut into one immutable file `chunks/NNNNNNNN.chunks`,
//! ending in an index and a footer, so opening reads only the index. Layout in `docs/format.md`.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use oxeye_model::Labels;

use crate::LogStoreError;
use crate::chunk::{ChunkLayout, SealedChunk};
use crate::encoding::{Reader, put_labels, put_uvarint, put_varint};

/// The file's first eight bytes.
pub const HEADER_MAGIC: &[u8; 8] = b"OXLOGCHK";
/// The last four bytes.
pub const FOOTER_MAGIC: &[u8; 4] = b"OXLC";
/// The format version written in header and footer: 4 since chunk data holds field columns
/// ([`ChunkLayout::ColumnsFields`]); files of version 3 ([`ChunkLayout::ColumnsTimestampUnit`]), 2
/// ([`ChunkLayout::Columns`]) and 1 ([`ChunkLayout::Rows`]) are still read.
pub const FORMAT_VERSION: u32 = 4;
const HEADER_BYTES: usize = 16;
const FOOTER_BYTES: usize = 24;

/// Where one chunk lives in its file, and what it holds.
#[derive(Debug, Clone)]
pub struct ChunkMeta {
    /// Oldest entry timestamp, nanoseconds.
    pub min_timestamp_ns: i64,
    /// Newest entry timestamp, nanoseconds.
    pub max_timestamp_ns: i64,
    /// Entries in the chunk.
    pub entries: u32,
    /// Line bytes (uncompressed).
    pub line_bytes: u64,
    /// Offset of the bloom filter from the start of the file.
    pub bloom_offset: u64,
    /// Length of the bloom filter.
    pub bloom_len: u32,
    /// CRC32 (IEEE) of the bloom filter.
    pub bloom_crc: u32,
    /// Offset of the compressed data.
    pub data_offset: u64,
    /// Length of the compressed data.
    pub data_len: u32,
    /// CRC32 (IEEE) of the compressed data.
    pub data_crc: u32,
}

/// The file name of chunk file `sequence`.
pub fn chunk_file_name(sequence: u64) -> String {
    format!("{sequence:08}.chunks")
}

/// Parses a chunk file name back into its sequence number.
pub fn parse_chunk_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".chunks")?;
    (digits.len() == 8 && digits.bytes().all(|byte| byte.is_ascii_digit())).then(|| digits.parse().ok()).flatten()
}

/// Writes `chunks` to `path` (through a temporary file, fsynced and renamed) and returns the metadata
/// of each, in order.
///
/// # Errors
/// [`LogStoreError::Io`] naming the file.
pub fn write_chunk_file(path: &Path, chunks: &[(Labels, &SealedChunk)]) -> Result<Vec<ChunkMeta>, LogStoreError> {
    let mut bytes = Vec::with_capacity(
        HEADER_BYTES + chunks.iter().map(|(_, chunk)| chunk.bloom.len() + chunk.data.len() + 64).sum::<usize>(),
    );
    bytes.extend_from_slice(HEADER_MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    let mut metas = Vec::with_capacity(chunks.len());
    for (_, chunk) in chunks {
        let bloom_offset = bytes.len() as u64;
        bytes.extend_from_slice(&chunk.bloom);
        let data_offset = bytes.len() as u64;
        bytes.extend_from_slice(&chunk.data);
        metas.push(ChunkMeta {
            min_timestamp_ns: chunk.min_timestamp_ns,
            max_timestamp_ns: chunk.max_timestamp_ns,
            entries: chunk.entries,
            line_bytes: chunk.line_bytes,
            bloom_offset,
            bloom_len: u32::try_from(chunk.bloom.len()).unwrap_or(u32::MAX),
            bloom_crc: crc32fast::hash(&chunk.bloom),
            data_offset,
            data_len: u32::try_from(chunk.data.len()).unwrap_or(u32::MAX),
            data_crc: crc32fast::hash(&chunk.data),
        });
    }
    let index_offset = bytes.len() as u64;
    let mut index = Vec::new();
    put_uvarint(&mut index, chunks.len() as u64);
    for ((labels, _), meta) in chunks.iter().zip(&metas) {
        put_labels(&mut index, labels.iter());
        put_varint(&mut index, meta.min_timestamp_ns);
        put_varint(&mut index, meta.max_timestamp_ns);
        put_uvarint(&mut index, u64::from(meta.entries));
        put_uvarint(&mut index, meta.line_bytes);
        put_uvarint(&mut index, meta.bloom_offset);
        put_uvarint(&mut index, u64::from(meta.bloom_len));
        index.extend_from_slice(&meta.bloom_crc.to_le_bytes());
        put_uvarint(&mut index, meta.data_offset);
        put_uvarint(&mut index, u64::from(meta.data_len));
        index.extend_from_slice(&meta.data_crc.to_le_bytes());
    }
    bytes.extend_from_slice(&index);
    bytes.extend_from_slice(&index_offset.to_le_bytes());
    bytes.extend_from_slice(&u32::try_from(index.len()).unwrap_or(u32::MAX).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&index).to_le_bytes());
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(FOOTER_MAGIC);

    let temporary = path.with_extension("chunks.tmp");
    let mut file = File::create(&temporary).map_err(|error| LogStoreError::io(&temporary, "create", error))?;
    file.write_all(&bytes).map_err(|error| LogStoreError::io(&temporary, "write", error))?;
    file.sync_all().map_err(|error| LogStoreError::io(&temporary, "fsync", error))?;
    std::fs::rename(&temporary, path).map_err(|error| LogStoreError::io(path, "rename", error))?;
    if let Some(parent) = path.parent() {
        File::open(parent)
            .and_then(|directory| directory.sync_all())
            .map_err(|error| LogStoreError::io(parent, "fsync directory", error))?;
    }
    Ok(metas)
}

/// An open chunk file: its index in memory, its data read on demand.
#[derive(Debug)]
pub struct ChunkFile {
    /// The file's path.
    pub path: PathBuf,
    /// The sequence number from its name.
    pub sequence: u64,
    file: File,
    /// Every chunk with its stream labels, in file order.
    pub chunks: Vec<(Labels, ChunkMeta)>,
    /// The newest timestamp of any chunk (nanoseconds), for retention.
    pub max_timestamp_ns: i64,
    /// The file's size in bytes.
    pub size_bytes: u64,
    /// How its chunks' data is laid out (from the file's version).
    pub layout: ChunkLayout,
}

impl ChunkFile {
    /// Opens `path` and reads its footer and index.
    ///
    /// # Errors
    /// [`LogStoreError::Io`], or [`LogStoreError::Corrupt`] for a bad magic, version or checksum, with the
    /// offset.
    pub fn open(path: &Path, sequence: u64) -> Result<ChunkFile, LogStoreError> {
        let file = File::open(path).map_err(|error| LogStoreError::io(path, "open", error))?;
        let size_bytes = file.metadata().map_err(|error| LogStoreError::io(path, "stat", error))?.len();
        if size_bytes < (HEADER_BYTES + FOOTER_BYTES) as u64 {
            return Err(LogStoreError::corrupt(path, 0, format!("file of {size_bytes} bytes is too short")));
        }
        let mut header = [0u8; HEADER_BYTES];
        file.read_exact_at(&mut header, 0).map_err(|error| LogStoreError::io(path, "read header", error))?;
        if &header[..8] != HEADER_MAGIC {
            return Err(LogStoreError::corrupt(path, 0, "bad header magic"));
        }
        let mut footer = [0u8; FOOTER_BYTES];
        let footer_offset = size_bytes - FOOTER_BYTES as u64;
        file.read_exact_at(&mut footer, footer_offset)
            .map_err(|error| LogStoreError::io(path, "read footer", error))?;
        let corrupt_footer = |reason: String| LogStoreError::corrupt(path, footer_offset, reason);
        let mut reader = Reader::new(&footer);
        let (index_offset, index_len, index_crc, version) =
            (|| Ok::<_, (usize, String)>((reader.u64_le()?, reader.u32_le()?, reader.u32_le()?, reader.u32_le()?)))()
                .map_err(|(_, reason)| corrupt_footer(reason))?;
        if &footer[20..] != FOOTER_MAGIC {
            return Err(corrupt_footer("bad footer magic".into()));
        }
        let layout = match version {
            1 => ChunkLayout::Rows,
            2 => ChunkLayout::Columns,
            3 => ChunkLayout::ColumnsTimestampUnit,
            FORMAT_VERSION => ChunkLayout::ColumnsFields,
            _ => return Err(corrupt_footer(format!("unsupported version {version}"))),
        };
        if index_offset.saturating_add(u64::from(index_len)) > footer_offset {
            return Err(corrupt_footer("index extends past the footer".into()));
        }
        let mut index = vec![0u8; index_len as usize];
        file.read_exact_at(&mut index, index_offset).map_err(|error| LogStoreError::io(path, "read index", error))?;
        if crc32fast::hash(&index) != index_crc {
            return Err(LogStoreError::corrupt(path, index_offset, "index checksum mismatch"));
        }
        let chunks = parse_index(&index).map_err(|(offset, reason)| {
            LogStoreError::corrupt(path, index_offset + offset as u64, format!("index: {reason}"))
        })?;
        for (_, meta) in &chunks {
            let bloom_end = meta.bloom_offset.saturating_add(u64::from(meta.bloom_len));
            let data_end = meta.data_offset.saturating_add(u64::from(meta.data_len));
            if bloom_end > index_offset || data_end > index_offset {
                return Err(LogStoreError::corrupt(path, index_offset, "chunk extends into the index"));
            }
        }
        let max_timestamp_ns = chunks.iter().map(|(_, meta)| meta.max_timestamp_ns).max().unwrap_or(i64::MIN);
        Ok(ChunkFile { path: path.to_path_buf(), sequence, file, chunks, max_timestamp_ns, size_bytes, layout })
    }

    fn read_checked(&self, offset: u64, length: u32, crc: u32, what: &'static str) -> Result<Vec<u8>, LogStoreError> {
        let mut bytes = Vec::new();
        self.read_checked_into(offset, length, crc, what, &mut bytes)?;
        Ok(bytes)
    }

    /// Reads `length` bytes at `offset` into `bytes` (its old contents replaced) and checks their CRC.
    fn read_checked_into(
        &self,
        offset: u64,
        length: u32,
        crc: u32,
        what: &'static str,
        bytes: &mut Vec<u8>,
    ) -> Result<(), LogStoreError> {
        // Only bytes beyond the old length are zeroed before the read overwrites them all: a scan reading
        // chunk after chunk into one buffer zeroes it once, not per chunk.
        let length = length as usize;
        if bytes.len() < length {
            bytes.resize(length, 0);
        } else {
            bytes.truncate(length);
        }
        self.file.read_exact_at(bytes, offset).map_err(|error| LogStoreError::io(&self.path, what, error))?;
        if crc32fast::hash(bytes) != crc {
            return Err(LogStoreError::corrupt(&self.path, offset, format!("{what}: checksum mismatch")));
        }
        Ok(())
    }

    /// Reads and checks a chunk's bloom filter.
    ///
    /// # Errors
    /// [`LogStoreError::Io`], [`LogStoreError::Corrupt`] on a checksum mismatch.
    pub fn read_bloom(&self, meta: &ChunkMeta) -> Result<Vec<u8>, LogStoreError> {
        self.read_checked(meta.bloom_offset, meta.bloom_len, meta.bloom_crc, "read bloom")
    }

    /// Reads and checks a chunk's compressed data.
    ///
    /// # Errors
    /// [`LogStoreError::Io`], [`LogStoreError::Corrupt`] on a checksum mismatch.
    pub fn read_data(&self, meta: &ChunkMeta) -> Result<Vec<u8>, LogStoreError> {
        self.read_checked(meta.data_offset, meta.data_len, meta.data_crc, "read chunk")
    }

    /// As [`ChunkFile::read_data`], into `data` (its old contents replaced), so that a scan reads every chunk
    /// into one buffer.
    ///
    /// # Errors
    /// As [`ChunkFile::read_data`].
    pub(crate) fn read_data_into(&self, meta: &ChunkMeta, data: &mut Vec<u8>) -> Result<(), LogStoreError> {
        self.read_checked_into(meta.data_offset, meta.data_len, meta.data_crc, "read chunk", data)
    }
}

fn parse_index(index: &[u8]) -> Result<Vec<(Labels, ChunkMeta)>, (usize, String)> {
    let mut reader = Reader::new(index);
    let count = reader.length()?;
    let mut chunks = Vec::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        let labels = reader.labels()?;
        let min_timestamp_ns = reader.varint()?;
        let max_timestamp_ns = reader.varint()?;
        let entries =
            u32::try_from(reader.uvarint()?).map_err(|_| (reader.offset(), "entries overflow".to_string()))?;
        let line_bytes = reader.uvarint()?;
        let bloom_offset = reader.uvarint()?;
        let bloom_len = u32::try_from(reader.uvarint()?).map_err(|_| (reader.offset(), "bloom length".to_string()))?;
        let bloom_crc = reader.u32_le()?;
        let data_offset = reader.uvarint()?;
        let data_len = u32::try_from(reader.uvarint()?).map_err(|_| (reader.offset(), "data length".to_string()))?;
        let data_crc = reader.u32_le()?;
        chunks.push((
            labels,
            ChunkMeta {
                min_timestamp_ns,
                max_timestamp_ns,
                entries,
                line_bytes,
                bloom_offset,
                bloom_len,
                bloom_crc,
                data_offset,
                data_len,
                data_crc,
            },
        ));
    }
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::decode_chunk_data;
    use oxeye_model::logs::LogEntry;

    #[test]
    fn written_file_reads_back_and_detects_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(chunk_file_name(3));
        let entries = vec![LogEntry::new(5, "alpha"), LogEntry::new(9, "beta")];
        let chunk = SealedChunk::seal(&entries);
        let labels = Labels::from_pairs([("service_name", "boxoffice")]);
        write_chunk_file(&path, &[(labels.clone(), &chunk)]).unwrap();
        assert_eq!(parse_chunk_file_name("00000003.chunks"), Some(3));
        let file = ChunkFile::open(&path, 3).unwrap();
        assert_eq!(file.chunks.len(), 1);
        assert_eq!(file.chunks[0].0, labels);
        assert_eq!(file.max_timestamp_ns, 9);
        let data = file.read_data(&file.chunks[0].1).unwrap();
        assert_eq!(decode_chunk_data(&data, file.layout, &path).unwrap(), entries);
        assert_eq!(file.read_bloom(&file.chunks[0].1).unwrap(), chunk.bloom);

        let mut bytes = std::fs::read(&path).unwrap();
        let data_offset = file.chunks[0].1.data_offset as usize;
        bytes[data_offset + 2] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let damaged = ChunkFile::open(&path, 3).unwrap();
        let error = damaged.read_data(&damaged.chunks[0].1).unwrap_err().to_string();
        assert!(error.contains("checksum mismatch"), "{error}");
        let last = bytes.len() - 1;
        bytes[last] = b'X';
        std::fs::write(&path, &bytes).unwrap();
        assert!(ChunkFile::open(&path, 3).unwrap_err().to_string().contains("footer magic"));
    }

    #[test]
    fn version_1_files_with_row_chunks_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(chunk_file_name(1));
        let mut entries = vec![LogEntry::new(5, "alpha"), LogEntry::new(9, "beta")];
        entries[1].structured_metadata.push(oxeye_model::Label { name: "trace_id".into(), value: "ab".into() });
        // A version 1 file: row-encoded zstd chunk data, version 1 in header and footer.
        let mut rows = Vec::new();
        let mut previous_ns = 0;
        for entry in &entries {
            crate::encoding::put_entry(&mut rows, entry, previous_ns);
            previous_ns = entry.timestamp_ns;
        }
        let mut chunk = SealedChunk::seal(&entries);
        chunk.data = zstd::bulk::compress(&rows, 1).unwrap();
        write_chunk_file(&path, &[(Labels::from_pairs([("job", "a")]), &chunk)]).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let footer_version = bytes.len() - 8;
        bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
        bytes[footer_version..footer_version + 4].copy_from_slice(&1u32.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();

        let file = ChunkFile::open(&path, 1).unwrap();
        assert_eq!(file.layout, ChunkLayout::Rows);
        let data = file.read_data(&file.chunks[0].1).unwrap();
        assert_eq!(decode_chunk_data(&data, file.layout, &path).unwrap(), entries);
    }
}
