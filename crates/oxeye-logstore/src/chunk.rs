//! Chunks: the entries of one stream over a time range, encoded, LZ4-compressed and paired with a bloom
//! filter ([`crate::bloom`]). The encoding is described in `docs/format.md` ("Chunk data").

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
    /// LZ4 block with its uncompressed size prepended (u32 little endian).
    pub data: Vec<u8>,
}

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
            data: lz4_flex::block::compress_prepend_size(&encoded),
        }
    }
}

/// The largest uncompressed chunk we agree to inflate (a guard against a corrupt size prefix).
const MAX_UNCOMPRESSED_CHUNK_BYTES: usize = 1 << 30;

/// Decompresses and decodes chunk data; `path` only names the source in errors.
///
/// # Errors
/// [`LogStoreError::Corrupt`] when the data does not decompress or decode.
pub fn decode_chunk_data(data: &[u8], path: &Path) -> Result<Vec<LogEntry>, LogStoreError> {
    let declared = data.get(..4).map(|size| u32::from_le_bytes([size[0], size[1], size[2], size[3]]) as usize);
    match declared {
        Some(size) if size <= MAX_UNCOMPRESSED_CHUNK_BYTES => {}
        _ => return Err(LogStoreError::corrupt(path, 0, "missing or oversized chunk size prefix")),
    }
    let encoded = lz4_flex::block::decompress_size_prepended(data)
        .map_err(|error| LogStoreError::corrupt(path, 0, format!("lz4: {error}")))?;
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
    fn corrupt_data_is_an_error() {
        let chunk = SealedChunk::seal(&[LogEntry::new(1, "line one line one line one")]);
        let mut data = chunk.data.clone();
        data.truncate(data.len() - 3);
        assert!(decode_chunk_data(&data, Path::new("mem")).is_err());
        assert!(decode_chunk_data(&[1, 2], Path::new("mem")).is_err());
    }
}
