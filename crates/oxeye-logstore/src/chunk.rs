//! Chunks: the entries of one stream over a time range, encoded, compressed (zstd; LZ4 in chunks written
//! before zstd, still read) and paired with a bloom filter ([`crate::bloom`]). The encoding is described in
//! `docs/format.md` ("Chunk data").

use std::path::Path;

use oxeye_model::logs::LogEntry;

use crate::LogStoreError;
use crate::bloom::BloomBuilder;
use crate::encoding::{Reader, put_entry};

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
    /// Encodes and compresses `entries`, which must be sorted by timestamp and non-empty.
    pub fn seal(entries: &[LogEntry]) -> SealedChunk {
        debug_assert!(entries.windows(2).all(|pair| pair[0].timestamp_ns <= pair[1].timestamp_ns));
        let mut encoded = Vec::with_capacity(entries.iter().map(|entry| entry.line.len() + 8).sum());
        let mut bloom = BloomBuilder::default();
        let mut previous_ns = 0;
        let mut line_bytes = 0u64;
        for entry in entries {
            put_entry(&mut encoded, entry, previous_ns);
            previous_ns = entry.timestamp_ns;
            line_bytes += entry.line.len() as u64;
            bloom.add_line(&entry.line);
        }
        SealedChunk {
            min_timestamp_ns: entries.first().map_or(0, |entry| entry.timestamp_ns),
            max_timestamp_ns: entries.last().map_or(0, |entry| entry.timestamp_ns),
            entries: u32::try_from(entries.len()).unwrap_or(u32::MAX),
            line_bytes,
            bloom: bloom.finish(),
            data: compress(&encoded),
        }
    }
}

/// Compresses encoded entries into a zstd frame that records its content size. zstd reports errors only for
/// invalid parameters or allocation failure; should that happen the chunk is stored as LZ4 instead.
fn compress(encoded: &[u8]) -> Vec<u8> {
    match zstd::bulk::compress(encoded, CHUNK_ZSTD_LEVEL) {
        Ok(compressed) => compressed,
        Err(error) => {
            tracing::warn!(%error, "zstd compression failed; storing the chunk as LZ4");
            lz4_flex::block::compress_prepend_size(encoded)
        }
    }
}

/// The largest uncompressed chunk we agree to inflate (a guard against a corrupt size prefix).
const MAX_UNCOMPRESSED_CHUNK_BYTES: usize = 1 << 30;

fn decompress(data: &[u8], path: &Path) -> Result<Vec<u8>, LogStoreError> {
    if data.starts_with(&ZSTD_MAGIC) {
        let declared = zstd::decompressed_size(data)
            .ok_or_else(|| LogStoreError::corrupt(path, 0, "zstd frame without a content size"))?;
        let size = usize::try_from(declared).ok().filter(|size| *size <= MAX_UNCOMPRESSED_CHUNK_BYTES);
        let size = size.ok_or_else(|| LogStoreError::corrupt(path, 0, "oversized zstd chunk"))?;
        let decoded = zstd::bulk::decompress(data, size)
            .map_err(|error| LogStoreError::corrupt(path, 0, format!("zstd: {error}")))?;
        if decoded.len() != size {
            return Err(LogStoreError::corrupt(path, 0, "zstd chunk shorter than its content size"));
        }
        return Ok(decoded);
    }
    let declared = data.get(..4).map(|size| u32::from_le_bytes([size[0], size[1], size[2], size[3]]) as usize);
    match declared {
        Some(size) if size <= MAX_UNCOMPRESSED_CHUNK_BYTES => {}
        _ => return Err(LogStoreError::corrupt(path, 0, "missing or oversized chunk size prefix")),
    }
    lz4_flex::block::decompress_size_prepended(data)
        .map_err(|error| LogStoreError::corrupt(path, 0, format!("lz4: {error}")))
}

/// Decompresses and decodes chunk data; `path` only names the source in errors.
///
/// # Errors
/// [`LogStoreError::Corrupt`] when the data does not decompress or decode.
pub fn decode_chunk_data(data: &[u8], path: &Path) -> Result<Vec<LogEntry>, LogStoreError> {
    let encoded = decompress(data, path)?;
    let mut reader = Reader::new(&encoded);
    let mut entries = Vec::new();
    let mut previous_ns = 0;
    while !reader.is_empty() {
        let entry = reader
            .entry(previous_ns)
            .map_err(|(offset, reason)| LogStoreError::corrupt(path, offset as u64, reason))?;
        previous_ns = entry.timestamp_ns;
        entries.push(entry);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxeye_model::Label;

    #[test]
    fn seal_and_decode_round_trip() {
        let mut entries = vec![LogEntry::new(10, "first"), LogEntry::new(10, "second"), LogEntry::new(25, "third")];
        entries[1].structured_metadata.push(Label { name: "trace_id".into(), value: "ab".into() });
        let chunk = SealedChunk::seal(&entries);
        assert_eq!((chunk.min_timestamp_ns, chunk.max_timestamp_ns, chunk.entries), (10, 25, 3));
        assert_eq!(chunk.line_bytes, 16);
        assert_eq!(decode_chunk_data(&chunk.data, Path::new("mem")).unwrap(), entries);
    }

    #[test]
    fn chunks_are_zstd_and_lz4_chunks_still_decode() {
        let entries: Vec<LogEntry> = (0..100)
            .map(|index| LogEntry::new(index, format!(r#"{{"event": "request_finished", "n": {index}}}"#)))
            .collect();
        let chunk = SealedChunk::seal(&entries);
        assert!(chunk.data.starts_with(&ZSTD_MAGIC));
        assert_eq!(decode_chunk_data(&chunk.data, Path::new("mem")).unwrap(), entries);
        // A chunk written before zstd: the same entries as an LZ4 block with its size prepended.
        let mut encoded = Vec::new();
        let mut previous_ns = 0;
        for entry in &entries {
            put_entry(&mut encoded, entry, previous_ns);
            previous_ns = entry.timestamp_ns;
        }
        let lz4 = lz4_flex::block::compress_prepend_size(&encoded);
        assert_eq!(decode_chunk_data(&lz4, Path::new("mem")).unwrap(), entries);
    }

    #[test]
    fn corrupt_data_is_an_error() {
        let chunk = SealedChunk::seal(&[LogEntry::new(1, "line one line one line one")]);
        let mut data = chunk.data.clone();
        data.truncate(data.len() - 3);
        assert!(decode_chunk_data(&data, Path::new("mem")).is_err());
        assert!(decode_chunk_data(&[1, 2], Path::new("mem")).is_err());
    }
}
