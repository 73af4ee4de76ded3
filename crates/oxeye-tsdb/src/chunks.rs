//! Chunk files of a block: `chunks/000001`, `chunks/000002`, ... holding encoded chunks back to back.
//!
//! File: an 8-byte header (magic `OXCH` as u32 big-endian, version byte, three zero bytes), then
//! entries `length uvarint │ encoding u8 │ data (length bytes) │ CRC32 (IEEE) of encoding + data, u32
//! big-endian`. A chunk reference is `file sequence << 32 | byte offset of the entry`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::TsdbError;
use crate::chunkenc::Encoding;
use crate::encoding::{Decoder, put_uvarint};

const CHUNKS_MAGIC: u32 = 0x4f58_4348;
const CHUNKS_VERSION: u8 = 1;
const HEADER_BYTES: u64 = 8;
/// A chunk file is closed and the next one started beyond this size.
const MAX_CHUNK_FILE_BYTES: u64 = 512 << 20;

fn chunk_file_path(chunks_dir: &Path, sequence: u32) -> PathBuf {
    chunks_dir.join(format!("{sequence:06}"))
}

/// Writes the chunk files of a new block.
#[derive(Debug)]
pub(crate) struct ChunkWriter {
    chunks_dir: PathBuf,
    sequence: u32,
    file: Option<BufWriter<File>>,
    offset: u64,
    scratch: Vec<u8>,
}

impl ChunkWriter {
    pub(crate) fn create(chunks_dir: &Path) -> Result<Self, TsdbError> {
        std::fs::create_dir_all(chunks_dir).map_err(|error| TsdbError::io(chunks_dir, "create directory", error))?;
        Ok(ChunkWriter {
            chunks_dir: chunks_dir.to_path_buf(),
            sequence: 0,
            file: None,
            offset: 0,
            scratch: Vec::new(),
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

    /// Writes one chunk and returns its reference and the length of its entry in bytes.
    pub(crate) fn write(&mut self, encoding: Encoding, bytes: &[u8]) -> Result<(u64, u32), TsdbError> {
        if self.file.is_none() || self.offset >= MAX_CHUNK_FILE_BYTES {
            self.start_file()?;
        }
        self.scratch.clear();
        encode_entry(&mut self.scratch, encoding, bytes);
        let chunk_ref = (u64::from(self.sequence) << 32) | self.offset;
        let path = chunk_file_path(&self.chunks_dir, self.sequence);
        let Some(file) = self.file.as_mut() else {
            return Err(TsdbError::corrupt(&path, "chunk file not open"));
        };
        file.write_all(&self.scratch).map_err(|error| TsdbError::io(&path, "write chunk file", error))?;
        self.offset += self.scratch.len() as u64;
        let entry_bytes =
            u32::try_from(self.scratch.len()).map_err(|_| TsdbError::corrupt(&path, "chunk larger than 4 GiB"))?;
        Ok((chunk_ref, entry_bytes))
    }

    /// Flushes and fsyncs the last file.
    pub(crate) fn finish(mut self) -> Result<(), TsdbError> {
        self.finish_file()
    }
}

/// Reads chunks of one block by reference.
#[derive(Debug)]
pub(crate) struct ChunkReader {
    files: Vec<(PathBuf, File)>,
}

impl ChunkReader {
    pub(crate) fn open(chunks_dir: &Path) -> Result<Self, TsdbError> {
        let mut files = Vec::new();
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
            if header[4] != CHUNKS_VERSION {
                return Err(TsdbError::corrupt(&path, format!("unsupported chunk file version {}", header[4])));
            }
            files.push((path, file));
            sequence += 1;
        }
        Ok(ChunkReader { files })
    }

    /// The encoding and bytes of chunk `chunk_ref`, checksum verified.
    #[cfg(test)]
    pub(crate) fn read(&self, chunk_ref: u64) -> Result<(Encoding, Vec<u8>), TsdbError> {
        let (path, file) = self.file(chunk_ref)?;
        let offset = chunk_ref & 0xffff_ffff;
        let mut head = [0u8; 11];
        let head_length =
            read_up_to(file, &mut head, offset).map_err(|error| TsdbError::io(path, "read chunk", error))?;
        let mut decoder = Decoder::new(&head[..head_length]);
        let length = decoder.uvarint("chunk length").map_err(|error| TsdbError::corrupt(path, error.to_string()))?;
        let entry_bytes = decoder.position() as u64 + 1 + length + 4;
        let entry_bytes = u32::try_from(entry_bytes).map_err(|_| TsdbError::corrupt(path, "chunk too large"))?;
        self.read_many(&[(chunk_ref, entry_bytes)]).map(|mut chunks| chunks.remove(0))
    }

    fn file(&self, chunk_ref: u64) -> Result<&(PathBuf, File), TsdbError> {
        let sequence = (chunk_ref >> 32) as usize;
        sequence.checked_sub(1).and_then(|index| self.files.get(index)).ok_or_else(|| TsdbError::Corrupt {
            path: PathBuf::from("chunks"),
            reason: format!("chunk reference {chunk_ref:#x} names a missing chunk file"),
        })
    }

    /// Reads chunks given as `(chunk reference, entry length in bytes)`, checksums verified, in the
    /// order asked. Neighbouring entries of one file are read with one `pread` (gaps up to 64 KiB are
    /// read through), so a query touching many series costs few system calls.
    pub(crate) fn read_many(&self, wanted: &[(u64, u32)]) -> Result<Vec<(Encoding, Vec<u8>)>, TsdbError> {
        const MAX_GAP_BYTES: u64 = 64 << 10;
        const MAX_READ_BYTES: u64 = 16 << 20;
        let mut order: Vec<usize> = (0..wanted.len()).collect();
        order.sort_unstable_by_key(|position| wanted[*position].0);
        let mut results: Vec<Option<(Encoding, Vec<u8>)>> = vec![None; wanted.len()];
        let mut buffer = Vec::new();
        let mut index = 0;
        while index < order.len() {
            // One run: entries of one file, close together.
            let (first_ref, first_length) = wanted[order[index]];
            let file_sequence = first_ref >> 32;
            let start = first_ref & 0xffff_ffff;
            let mut end = start + u64::from(first_length);
            let mut run_end = index + 1;
            while let Some(next) = order.get(run_end) {
                let (next_ref, next_length) = wanted[*next];
                let next_offset = next_ref & 0xffff_ffff;
                let next_end = next_offset + u64::from(next_length);
                if next_ref >> 32 != file_sequence
                    || next_offset > end + MAX_GAP_BYTES
                    || next_end - start > MAX_READ_BYTES
                {
                    break;
                }
                end = end.max(next_end);
                run_end += 1;
            }
            let (path, file) = self.file(first_ref)?;
            buffer.resize((end - start) as usize, 0);
            file.read_exact_at(&mut buffer, start).map_err(|error| TsdbError::io(path, "read chunks", error))?;
            for position in &order[index..run_end] {
                let (chunk_ref, length) = wanted[*position];
                let relative = ((chunk_ref & 0xffff_ffff) - start) as usize;
                let entry = buffer
                    .get(relative..relative + length as usize)
                    .ok_or_else(|| TsdbError::corrupt(path, format!("chunk {chunk_ref:#x} outside its read")))?;
                results[*position] = Some(parse_entry(entry).map_err(|reason| {
                    TsdbError::corrupt(path, format!("chunk at offset {}: {reason}", chunk_ref & 0xffff_ffff))
                })?);
            }
            index = run_end;
        }
        results
            .into_iter()
            .map(|result| result.ok_or_else(|| TsdbError::corrupt("chunks", "chunk read missing")))
            .collect()
    }
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
fn read_up_to(file: &File, buffer: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        let read = file.read_at(&mut buffer[filled..], offset + filled as u64)?;
        if read == 0 {
            break;
        }
        filled += read;
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_round_trip_and_damage_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let chunks_dir = dir.path().join("chunks");
        let mut writer = ChunkWriter::create(&chunks_dir).unwrap();
        let (first, first_length) = writer.write(Encoding::Xor, b"abc").unwrap();
        let (second, second_length) = writer.write(Encoding::Xor, &[7u8; 300]).unwrap();
        writer.finish().unwrap();
        let reader = ChunkReader::open(&chunks_dir).unwrap();
        assert_eq!(reader.read(first).unwrap(), (Encoding::Xor, b"abc".to_vec()));
        assert_eq!(reader.read(second).unwrap().1, vec![7u8; 300]);
        assert!(reader.read(5 << 32).is_err());
        let both = reader.read_many(&[(second, second_length), (first, first_length)]).unwrap();
        assert_eq!(both, vec![(Encoding::Xor, vec![7u8; 300]), (Encoding::Xor, b"abc".to_vec())]);

        let path = chunk_file_path(&chunks_dir, 1);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER_BYTES as usize + 3] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let reader = ChunkReader::open(&chunks_dir).unwrap();
        let error = reader.read(first).unwrap_err().to_string();
        assert!(error.contains("checksum"), "{error}");
    }
}
