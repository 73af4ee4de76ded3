//! Closed head chunks moved out of RAM: `<data_dir>/chunks_head/NNNNNN`, append-only files of chunk
//! entries in the block chunk-file entry format (see [`crate::chunks`]), read back with `pread`.
//!
//! The files are a cache, not a source of truth: the WAL and its checkpoints hold every sample, so the
//! files are not fsynced and are deleted at startup. A file is deleted once every chunk in it ends
//! before the head's cut line.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use crate::TsdbError;
use crate::chunkenc::Encoding;
use crate::chunks::{encode_entry, parse_entry};
use crate::db::{lock, read, write};

const HEAD_CHUNKS_MAGIC: u32 = 0x4f58_4843;
const HEAD_CHUNKS_VERSION: u8 = 1;
const HEADER_BYTES: u64 = 8;
/// A file is closed and the next one started beyond this size.
const MAX_FILE_BYTES: u64 = 256 << 20;

/// Where a closed head chunk lives on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DiskChunkRef {
    pub(crate) file: u32,
    pub(crate) offset: u32,
    pub(crate) length: u32,
}

#[derive(Debug)]
struct OpenFile {
    file: File,
    /// The newest chunk end written to the file, milliseconds.
    max_time_ms: i64,
}

#[derive(Debug)]
struct Writer {
    sequence: u32,
    offset: u64,
    buffer: Vec<u8>,
}

/// The head chunk files of one store.
#[derive(Debug)]
pub(crate) struct HeadChunkFiles {
    dir: PathBuf,
    writer: Mutex<Writer>,
    files: RwLock<BTreeMap<u32, OpenFile>>,
}

fn file_path(dir: &Path, sequence: u32) -> PathBuf {
    dir.join(format!("{sequence:06}"))
}

impl HeadChunkFiles {
    /// Starts with an empty directory (leftovers of an earlier run are deleted).
    pub(crate) fn open(dir: &Path) -> Result<Self, TsdbError> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|error| TsdbError::io(dir, "delete head chunks", error))?;
        }
        std::fs::create_dir_all(dir).map_err(|error| TsdbError::io(dir, "create directory", error))?;
        Ok(HeadChunkFiles {
            dir: dir.to_path_buf(),
            writer: Mutex::new(Writer { sequence: 0, offset: 0, buffer: Vec::new() }),
            files: RwLock::new(BTreeMap::new()),
        })
    }

    /// Starts a batch of writes; chunks become readable when [`SpillBatch::finish`] returns.
    pub(crate) fn batch(&self) -> SpillBatch<'_> {
        SpillBatch { files: self, writer: lock(&self.writer) }
    }

    /// Reads chunks, checksums verified, in the order asked; neighbouring entries are read together.
    pub(crate) fn read_many(&self, wanted: &[DiskChunkRef]) -> Result<Vec<(Encoding, Vec<u8>)>, TsdbError> {
        const MAX_GAP_BYTES: u32 = 64 << 10;
        const MAX_READ_BYTES: u32 = 8 << 20;
        let files = read(&self.files);
        let mut order: Vec<usize> = (0..wanted.len()).collect();
        order.sort_unstable_by_key(|position| (wanted[*position].file, wanted[*position].offset));
        let mut results: Vec<Option<(Encoding, Vec<u8>)>> = vec![None; wanted.len()];
        let mut buffer = Vec::new();
        let mut index = 0;
        while index < order.len() {
            let first = wanted[order[index]];
            let start = first.offset;
            let mut end = first.offset.saturating_add(first.length);
            let mut run_end = index + 1;
            while let Some(next) = order.get(run_end).map(|position| wanted[*position]) {
                let next_end = next.offset.saturating_add(next.length);
                if next.file != first.file
                    || next.offset > end.saturating_add(MAX_GAP_BYTES)
                    || next_end - start > MAX_READ_BYTES
                {
                    break;
                }
                end = end.max(next_end);
                run_end += 1;
            }
            let path = file_path(&self.dir, first.file);
            let open = files.get(&first.file).ok_or_else(|| TsdbError::corrupt(&path, "head chunk file is gone"))?;
            buffer.resize((end - start) as usize, 0);
            open.file
                .read_exact_at(&mut buffer, u64::from(start))
                .map_err(|error| TsdbError::io(&path, "read head chunks", error))?;
            for position in &order[index..run_end] {
                let chunk = wanted[*position];
                let relative = (chunk.offset - start) as usize;
                let entry = buffer
                    .get(relative..relative + chunk.length as usize)
                    .ok_or_else(|| TsdbError::corrupt(&path, "head chunk outside its read"))?;
                let parsed = parse_entry(entry)
                    .map_err(|reason| TsdbError::corrupt(&path, format!("head chunk at {}: {reason}", chunk.offset)))?;
                results[*position] = Some(parsed);
            }
            index = run_end;
        }
        results
            .into_iter()
            .map(|result| result.ok_or_else(|| TsdbError::corrupt(&self.dir, "head chunk read missing")))
            .collect()
    }

    /// Deletes every file (but the one being written) whose chunks all end before `mint_ms`.
    pub(crate) fn remove_before(&self, mint_ms: i64) -> Result<(), TsdbError> {
        let current = lock(&self.writer).sequence;
        let mut files = write(&self.files);
        let doomed: Vec<u32> = files
            .iter()
            .filter(|(sequence, open)| **sequence != current && open.max_time_ms < mint_ms)
            .map(|(sequence, _)| *sequence)
            .collect();
        for sequence in doomed {
            files.remove(&sequence);
            let path = file_path(&self.dir, sequence);
            std::fs::remove_file(&path).map_err(|error| TsdbError::io(&path, "delete head chunk file", error))?;
        }
        Ok(())
    }

    /// Bytes in the files.
    pub(crate) fn size_bytes(&self) -> u64 {
        read(&self.files).values().filter_map(|open| open.file.metadata().ok()).map(|metadata| metadata.len()).sum()
    }
}

/// Chunks being moved to disk; they are written and become readable on [`SpillBatch::finish`].
pub(crate) struct SpillBatch<'a> {
    files: &'a HeadChunkFiles,
    writer: std::sync::MutexGuard<'a, Writer>,
}

impl SpillBatch<'_> {
    /// Queues one chunk ending at `maxt_ms`; returns where it will be.
    pub(crate) fn add(&mut self, encoding: Encoding, bytes: &[u8], maxt_ms: i64) -> Result<DiskChunkRef, TsdbError> {
        let writer = &mut *self.writer;
        let entry_start = writer.buffer.len();
        encode_entry(&mut writer.buffer, encoding, bytes);
        let length = (writer.buffer.len() - entry_start) as u64;
        if writer.sequence == 0 || writer.offset + entry_start as u64 + length > MAX_FILE_BYTES {
            // Start a new file: flush what belongs to the current one first.
            let pending: Vec<u8> = writer.buffer.drain(..entry_start).collect();
            write_out(self.files, writer, &pending)?;
            let sequence = writer.sequence + 1;
            let path = file_path(&self.files.dir, sequence);
            let mut file = File::options()
                .create_new(true)
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|error| TsdbError::io(&path, "create head chunk file", error))?;
            let mut header = [0u8; HEADER_BYTES as usize];
            header[..4].copy_from_slice(&HEAD_CHUNKS_MAGIC.to_be_bytes());
            header[4] = HEAD_CHUNKS_VERSION;
            file.write_all(&header).map_err(|error| TsdbError::io(&path, "write head chunk file", error))?;
            write(&self.files.files).insert(sequence, OpenFile { file, max_time_ms: i64::MIN });
            writer.sequence = sequence;
            writer.offset = HEADER_BYTES;
        }
        let offset = writer.offset + (writer.buffer.len() as u64 - length);
        if let Some(open) = write(&self.files.files).get_mut(&writer.sequence) {
            open.max_time_ms = open.max_time_ms.max(maxt_ms);
        }
        Ok(DiskChunkRef {
            file: writer.sequence,
            offset: u32::try_from(offset)
                .map_err(|_| TsdbError::corrupt(&self.files.dir, "head chunk file too large"))?,
            length: length as u32,
        })
    }

    /// Writes the queued chunks; afterwards their references can be read.
    pub(crate) fn finish(mut self) -> Result<(), TsdbError> {
        let pending = std::mem::take(&mut self.writer.buffer);
        let result = write_out(self.files, &mut self.writer, &pending);
        self.writer.buffer = pending;
        self.writer.buffer.clear();
        result
    }
}

fn write_out(files: &HeadChunkFiles, writer: &mut Writer, bytes: &[u8]) -> Result<(), TsdbError> {
    if bytes.is_empty() {
        return Ok(());
    }
    let path = file_path(&files.dir, writer.sequence);
    let guard = read(&files.files);
    let open = guard.get(&writer.sequence).ok_or_else(|| TsdbError::corrupt(&path, "head chunk file not open"))?;
    open.file.write_all_at(bytes, writer.offset).map_err(|error| TsdbError::io(&path, "write head chunks", error))?;
    writer.offset += bytes.len() as u64;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spilled_chunks_read_back_and_old_files_go() {
        let dir = tempfile::tempdir().unwrap();
        let files = HeadChunkFiles::open(&dir.path().join("chunks_head")).unwrap();
        let mut batch = files.batch();
        let first = batch.add(Encoding::Xor, b"first chunk", 100).unwrap();
        let second = batch.add(Encoding::ScaledInt, &[9u8; 500], 200).unwrap();
        batch.finish().unwrap();
        let read_back = files.read_many(&[second, first]).unwrap();
        assert_eq!(read_back, vec![(Encoding::ScaledInt, vec![9u8; 500]), (Encoding::Xor, b"first chunk".to_vec())]);
        // The file being written is kept even when everything in it is old.
        files.remove_before(1_000).unwrap();
        assert_eq!(files.read_many(&[first]).unwrap().len(), 1);
        assert!(files.size_bytes() > 500);
    }
}
