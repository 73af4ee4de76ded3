//! Replaying a WAL directory.

use std::path::{Path, PathBuf};

use crate::WalError;
use crate::segment::{self, FRAME_HEADER_BYTES, Frame, MAX_RECORD_BYTES, SEGMENT_HEADER_BYTES};

/// A torn or corrupt tail cut off the last segment during replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file.
    pub path: PathBuf,
    /// The offset the file was truncated to, in bytes.
    pub offset: u64,
    /// How many bytes were cut off.
    pub dropped_bytes: u64,
    /// What was wrong with the first dropped frame.
    pub reason: String,
}

/// What [`replay`] read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Segments read.
    pub segments: u64,
    /// Records handed to the visitor.
    pub records: u64,
    /// Bytes of segment files read.
    pub bytes: u64,
    /// Index of the last segment read, if any.
    pub last_segment: Option<u64>,
    /// The tail cut off the last segment, if it was torn.
    pub torn_tail: Option<TornTail>,
}

/// Hands every record of the segments in `dir` with an index `>= first_segment` to `visit`, oldest
/// first. An absent directory holds no records.
///
/// A damaged frame or header in the **last** segment is taken for a write torn by a crash: the file is
/// truncated just before it (a file with a damaged header is deleted) and a `tracing::warn!` says so;
/// records before it are delivered. Damage in any older segment fails with [`WalError::Corrupt`] naming the file
/// and byte offset. A visitor error stops replay and is returned as is.
///
/// # Errors
/// [`WalError::Io`], [`WalError::Corrupt`], or the visitor's error.
pub fn replay<E: From<WalError>>(
    dir: &Path,
    first_segment: u64,
    mut visit: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<ReplaySummary, E> {
    let indexes: Vec<u64> = segment::list_segments(dir)?.into_iter().filter(|index| *index >= first_segment).collect();
    let mut summary = ReplaySummary::default();
    let Some(&last_index) = indexes.last() else {
        return Ok(summary);
    };
    for index in indexes {
        let path = segment::segment_path(dir, index);
        let is_last = index == last_index;
        let mut segment = SegmentReader::open(&path)?;
        let length = segment.length;
        summary.segments += 1;
        summary.bytes += length;
        summary.last_segment = Some(index);
        segment.fill_to(SEGMENT_HEADER_BYTES)?;
        if let Err(reason) = segment::check_header(segment.window()) {
            if !is_last {
                return Err(WalError::Corrupt { path, offset: 0, reason }.into());
            }
            summary.torn_tail = Some(cut_tail(&path, 0, length, reason)?);
            continue;
        }
        segment.consume(SEGMENT_HEADER_BYTES);
        loop {
            segment.fill_frame()?;
            let offset = segment.offset();
            match segment::decode_frame(segment.window(), 0) {
                Frame::Record { payload, next_offset } => {
                    visit(payload)?;
                    summary.records += 1;
                    segment.consume(next_offset);
                }
                Frame::End => break,
                Frame::Damaged(reason) => {
                    if !is_last {
                        return Err(WalError::Corrupt { path, offset, reason }.into());
                    }
                    summary.torn_tail = Some(cut_tail(&path, offset, length, reason)?);
                    break;
                }
            }
        }
    }
    Ok(summary)
}

/// Reads one segment front to back through a window of [`SegmentReader::WINDOW_BYTES`] (grown only to
/// hold a larger record), so replay holds one window instead of a whole segment (128 MiB by default).
struct SegmentReader<'a> {
    path: &'a Path,
    file: std::fs::File,
    /// The file's length when opened, in bytes.
    length: u64,
    buffer: Vec<u8>,
    /// Window `buffer[start..end]` holds the file's bytes from offset `read - (end - start)` on.
    start: usize,
    end: usize,
    /// Bytes read from the file so far.
    read: u64,
}

impl<'a> SegmentReader<'a> {
    const WINDOW_BYTES: usize = 1 << 20;

    fn open(path: &'a Path) -> Result<Self, WalError> {
        let file = std::fs::File::open(path).map_err(|error| WalError::io(path, "open segment", error))?;
        let length = file.metadata().map_err(|error| WalError::io(path, "stat segment", error))?.len();
        Ok(SegmentReader { path, file, length, buffer: Vec::new(), start: 0, end: 0, read: 0 })
    }

    /// The bytes read but not consumed yet.
    fn window(&self) -> &[u8] {
        &self.buffer[self.start..self.end]
    }

    /// The file offset of the window's first byte.
    fn offset(&self) -> u64 {
        self.read - (self.end - self.start) as u64
    }

    fn consume(&mut self, bytes: usize) {
        self.start = (self.start + bytes).min(self.end);
    }

    /// Reads until the window holds `wanted` bytes or the file ends.
    fn fill_to(&mut self, wanted: usize) -> Result<(), WalError> {
        if self.end - self.start >= wanted {
            return Ok(());
        }
        // Move what is left to the front, then read behind it.
        self.buffer.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        let capacity = wanted.max(Self::WINDOW_BYTES);
        if self.buffer.len() < capacity {
            self.buffer.resize(capacity, 0);
        }
        while self.end < wanted {
            let count = std::io::Read::read(&mut self.file, &mut self.buffer[self.end..])
                .map_err(|error| WalError::io(self.path, "read segment", error))?;
            if count == 0 {
                break;
            }
            self.end += count;
            self.read += count as u64;
        }
        Ok(())
    }

    /// Reads until the window holds the whole next frame (as its header gives its length), or the file
    /// ends. A length beyond the maximum is left for [`segment::decode_frame`] to report.
    fn fill_frame(&mut self) -> Result<(), WalError> {
        self.fill_to(FRAME_HEADER_BYTES)?;
        let Some(header) = self.window().get(..4) else { return Ok(()) };
        let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if length > MAX_RECORD_BYTES {
            return Ok(());
        }
        // Never more than the file holds, whatever a damaged length says.
        let remaining = self.length.saturating_sub(self.offset());
        let wanted = (FRAME_HEADER_BYTES + length).min(usize::try_from(remaining).unwrap_or(usize::MAX));
        self.fill_to(wanted)
    }
}

fn cut_tail(path: &Path, offset: u64, length: u64, reason: String) -> Result<TornTail, WalError> {
    tracing::warn!(
        path = %path.display(),
        offset,
        dropped_bytes = length - offset,
        %reason,
        "truncating torn tail of the last wal segment"
    );
    if offset == 0 {
        // Not even the header survived: remove the file, so that once newer segments exist it cannot
        // be mistaken for a damaged older segment.
        std::fs::remove_file(path).map_err(|error| WalError::io(path, "delete torn segment", error))?;
        if let Some(dir) = path.parent() {
            crate::segment::sync_dir(dir)?;
        }
        return Ok(TornTail { path: path.to_path_buf(), offset, dropped_bytes: length, reason });
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|error| WalError::io(path, "open segment for repair", error))?;
    file.set_len(offset).map_err(|error| WalError::io(path, "truncate segment", error))?;
    file.sync_all().map_err(|error| WalError::io(path, "fsync", error))?;
    Ok(TornTail { path: path.to_path_buf(), offset, dropped_bytes: length - offset, reason })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{Wal, WalOptions};

    fn collect(dir: &Path) -> Result<(Vec<Vec<u8>>, ReplaySummary), WalError> {
        let mut records = Vec::new();
        let summary = replay::<WalError>(dir, 0, |record| {
            records.push(record.to_vec());
            Ok(())
        })?;
        Ok((records, summary))
    }

    fn record(index: usize) -> Vec<u8> {
        format!("record number {index}").into_bytes()
    }

    #[test]
    fn appended_records_replay_in_order_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(WalOptions { dir: dir.path().to_path_buf(), segment_size_bytes: 100 }).unwrap();
        for index in 0..20 {
            wal.append(&record(index)).unwrap();
        }
        wal.close().unwrap();
        assert!(segment::list_segments(dir.path()).unwrap().len() > 3);
        let (records, summary) = collect(dir.path()).unwrap();
        assert_eq!(records, (0..20).map(record).collect::<Vec<_>>());
        assert_eq!(summary.torn_tail, None);
    }

    #[test]
    fn records_across_window_edges_and_larger_than_the_window_replay_whole() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(WalOptions::new(dir.path())).unwrap();
        // Sizes that straddle the read window's edges at many offsets, and one record of 2.5 windows.
        let records: Vec<Vec<u8>> = (0..400u32)
            .map(|index| {
                let length =
                    if index == 200 { SegmentReader::WINDOW_BYTES * 5 / 2 } else { 3001 + index as usize * 37 };
                (0..length).map(|byte| (byte as u32 ^ index) as u8).collect()
            })
            .collect();
        for record in &records {
            wal.append(record).unwrap();
        }
        wal.close().unwrap();
        let (replayed, summary) = collect(dir.path()).unwrap();
        assert_eq!(replayed.len(), records.len());
        assert!(replayed == records, "replayed records differ");
        assert_eq!(summary.torn_tail, None);
    }

    #[test]
    fn torn_last_record_is_truncated_at_every_byte_offset() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(WalOptions::new(dir.path())).unwrap();
        for index in 0..3 {
            wal.append(&record(index)).unwrap();
        }
        wal.close().unwrap();
        let path = segment::segment_path(dir.path(), 0);
        let full = std::fs::read(&path).unwrap();
        let last_record_start = full.len() - FRAME_HEADER_BYTES - record(2).len();
        for cut in last_record_start..full.len() {
            std::fs::write(&path, &full[..cut]).unwrap();
            let (records, summary) = collect(dir.path()).unwrap();
            assert_eq!(records, vec![record(0), record(1)], "cut at {cut}");
            let expected_torn = cut > last_record_start;
            assert_eq!(summary.torn_tail.is_some(), expected_torn, "cut at {cut}");
            assert_eq!(std::fs::metadata(&path).unwrap().len(), last_record_start as u64, "cut at {cut}");
        }
        // A flipped payload bit in the last record is also a torn tail.
        let mut flipped = full.clone();
        let last_byte = flipped.len() - 1;
        flipped[last_byte] ^= 0x40;
        std::fs::write(&path, &flipped).unwrap();
        let (records, summary) = collect(dir.path()).unwrap();
        assert_eq!(records.len(), 2);
        assert!(summary.torn_tail.unwrap().reason.contains("checksum"));
    }

    #[test]
    fn reopened_wal_appends_after_a_repaired_tail() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(WalOptions::new(dir.path())).unwrap();
        wal.append(&record(0)).unwrap();
        wal.append(&record(1)).unwrap();
        wal.close().unwrap();
        let path = segment::segment_path(dir.path(), 0);
        let full = std::fs::read(&path).unwrap();
        std::fs::write(&path, &full[..full.len() - 3]).unwrap();
        collect(dir.path()).unwrap();
        let reopened = Wal::open(WalOptions::new(dir.path())).unwrap();
        assert_eq!(reopened.current_segment(), 1);
        reopened.append(&record(2)).unwrap();
        reopened.close().unwrap();
        let (records, summary) = collect(dir.path()).unwrap();
        assert_eq!(records, vec![record(0), record(2)]);
        assert_eq!(summary.torn_tail, None);
    }

    #[test]
    fn corrupt_older_segment_is_an_error_naming_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(WalOptions { dir: dir.path().to_path_buf(), segment_size_bytes: 60 }).unwrap();
        for index in 0..6 {
            wal.append(&record(index)).unwrap();
        }
        wal.close().unwrap();
        let first = segment::segment_path(dir.path(), 0);
        let mut bytes = std::fs::read(&first).unwrap();
        let damaged_offset = SEGMENT_HEADER_BYTES + FRAME_HEADER_BYTES + 2;
        bytes[damaged_offset] ^= 0xff;
        std::fs::write(&first, &bytes).unwrap();
        let error = collect(dir.path()).unwrap_err();
        match &error {
            WalError::Corrupt { path, offset, .. } => {
                assert_eq!(path, &first);
                assert_eq!(*offset, SEGMENT_HEADER_BYTES as u64);
            }
            other => panic!("expected corruption, got {other}"),
        }
        assert!(error.to_string().contains("00000000"), "{error}");
    }

    #[test]
    fn torn_header_of_last_segment_is_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(WalOptions::new(dir.path())).unwrap();
        wal.append(&record(0)).unwrap();
        wal.close().unwrap();
        std::fs::write(segment::segment_path(dir.path(), 1), b"OXWAL").unwrap();
        let (records, summary) = collect(dir.path()).unwrap();
        assert_eq!(records, vec![record(0)]);
        assert_eq!(summary.torn_tail.unwrap().offset, 0);
        // The header-less file is gone, so a later segment does not turn it into "corruption".
        assert_eq!(segment::list_segments(dir.path()).unwrap(), vec![0]);
        let reopened = Wal::open(WalOptions::new(dir.path())).unwrap();
        reopened.append(&record(1)).unwrap();
        reopened.close().unwrap();
        let (records, summary) = collect(dir.path()).unwrap();
        assert_eq!(records, vec![record(0), record(1)]);
        assert_eq!(summary.torn_tail, None);
    }

    #[test]
    fn concurrent_appenders_are_group_committed_and_all_durable() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Arc::new(Wal::open(WalOptions::new(dir.path())).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|thread| {
                let wal = Arc::clone(&wal);
                std::thread::spawn(move || {
                    for index in 0..200 {
                        wal.append(format!("{thread}:{index}").as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let stats = wal.stats();
        assert_eq!(stats.records_total, 1600);
        assert!(stats.fsyncs_total >= 1 && stats.fsyncs_total <= 1600);
        assert_eq!(stats.fsync_latency_cumulative_counts.last().copied(), Some(stats.fsyncs_total));
        wal.close().unwrap();
        let (records, _) = collect(dir.path()).unwrap();
        assert_eq!(records.len(), 1600);
        // Each thread's records stay in its own order.
        for thread in 0..8 {
            let prefix = format!("{thread}:");
            let own: Vec<usize> = records
                .iter()
                .filter_map(|record| std::str::from_utf8(record).ok()?.strip_prefix(&prefix)?.parse().ok())
                .collect();
            assert_eq!(own, (0..200).collect::<Vec<_>>());
        }
    }

    #[test]
    fn truncate_before_keeps_the_current_segment() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(WalOptions::new(dir.path())).unwrap();
        wal.append(&record(0)).unwrap();
        let next = wal.rotate().unwrap();
        wal.append(&record(1)).unwrap();
        wal.truncate_before(next + 5).unwrap();
        assert_eq!(segment::list_segments(dir.path()).unwrap(), vec![next]);
        let (records, _) = collect(dir.path()).unwrap();
        assert_eq!(records, vec![record(1)]);
        assert!(wal.append(&[]).is_ok());
        wal.close().unwrap();
        assert!(matches!(wal.append(b"late"), Err(WalError::Closed)));
    }
}
