//! Checkpoints: a summary of every segment up to an index, so those segments can be deleted.
//!
//! A checkpoint is a directory `checkpoint.NNNNNNNN` beside the segments, holding its own segment files
//! (same format). `NNNNNNNN` is the index of the last segment it summarises: replay reads the newest
//! checkpoint, then the segments after `NNNNNNNN`. It is written under `checkpoint.NNNNNNNN.tmp` and
//! renamed when complete, so a crash never leaves a half-written checkpoint under the final name.

use std::path::{Path, PathBuf};

use crate::segment::{self, MAX_RECORD_BYTES};
use crate::{Wal, WalError, WalOptions};

const CHECKPOINT_PREFIX: &str = "checkpoint.";
const TEMPORARY_SUFFIX: &str = ".tmp";
/// Records are handed to the checkpoint's log in groups of about this many bytes. The log fsyncs once per
/// segment, not per group ([`Wal::open_durable_at_close`]), so the groups can be small: the writer's buffer
/// and the log's two group buffers are what a checkpoint adds to the process' memory (at 4 MiB groups
/// fsynced one by one, about 12 MiB on top of a 1M-series head, the peak of `oxeye serve`'s ingest; at
/// 1 MiB groups about 3 MiB, still the transient that tops a 1M head's peak when the checkpoint runs
/// late in ingest). 128 KiB groups cost one `write` per 128 KiB, a few hundred per checkpoint.
const FLUSH_THRESHOLD_BYTES: usize = 128 << 10;

/// The directory name of the checkpoint covering segments up to `through_segment`.
pub fn checkpoint_dir_name(through_segment: u64) -> String {
    format!("{CHECKPOINT_PREFIX}{through_segment:08}")
}

/// The newest complete checkpoint in `wal_dir`: the last segment index it covers and its directory.
///
/// # Errors
/// [`WalError::Io`] when the directory cannot be listed.
pub fn last_checkpoint(wal_dir: &Path) -> Result<Option<(u64, PathBuf)>, WalError> {
    Ok(list_checkpoints(wal_dir)?.pop())
}

fn list_checkpoints(wal_dir: &Path) -> Result<Vec<(u64, PathBuf)>, WalError> {
    let entries = match std::fs::read_dir(wal_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(WalError::io(wal_dir, "list directory", error)),
    };
    let mut checkpoints = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| WalError::io(wal_dir, "list directory", error))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(digits) = name.strip_prefix(CHECKPOINT_PREFIX) else { continue };
        if digits.len() == 8
            && digits.bytes().all(|byte| byte.is_ascii_digit())
            && let Ok(index) = digits.parse::<u64>()
        {
            checkpoints.push((index, entry.path()));
        }
    }
    checkpoints.sort_unstable();
    Ok(checkpoints)
}

/// Deletes every checkpoint older than `keep_from` and any leftover temporary checkpoint directory.
///
/// # Errors
/// [`WalError::Io`] naming the directory that could not be removed.
pub fn delete_checkpoints_before(wal_dir: &Path, keep_from: u64) -> Result<(), WalError> {
    for (index, path) in list_checkpoints(wal_dir)? {
        if index < keep_from {
            std::fs::remove_dir_all(&path).map_err(|error| WalError::io(&path, "delete checkpoint", error))?;
        }
    }
    remove_temporary_checkpoints(wal_dir)
}

/// Removes `checkpoint.*.tmp` directories left by a crash during a checkpoint.
///
/// # Errors
/// [`WalError::Io`] naming the directory that could not be removed.
pub fn remove_temporary_checkpoints(wal_dir: &Path) -> Result<(), WalError> {
    let entries = match std::fs::read_dir(wal_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(WalError::io(wal_dir, "list directory", error)),
    };
    for entry in entries {
        let entry = entry.map_err(|error| WalError::io(wal_dir, "list directory", error))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(CHECKPOINT_PREFIX) && name.ends_with(TEMPORARY_SUFFIX) {
            let path = entry.path();
            std::fs::remove_dir_all(&path).map_err(|error| WalError::io(&path, "delete checkpoint", error))?;
        }
    }
    Ok(())
}

/// Writes one checkpoint. Append records, then [`CheckpointWriter::finish`]; dropping it unfinished
/// leaves only a temporary directory that the next checkpoint removes.
#[derive(Debug)]
pub struct CheckpointWriter {
    wal: Wal,
    buffered: Vec<Vec<u8>>,
    buffered_bytes: usize,
    temporary_dir: PathBuf,
    final_dir: PathBuf,
    wal_dir: PathBuf,
    through_segment: u64,
}

impl CheckpointWriter {
    /// Starts the checkpoint covering segments up to `through_segment` of `wal_dir`.
    ///
    /// # Errors
    /// [`WalError::Io`] when the temporary directory cannot be created.
    pub fn create(wal_dir: &Path, through_segment: u64) -> Result<Self, WalError> {
        let final_dir = wal_dir.join(checkpoint_dir_name(through_segment));
        let temporary_dir = wal_dir.join(format!("{}{TEMPORARY_SUFFIX}", checkpoint_dir_name(through_segment)));
        if temporary_dir.exists() {
            std::fs::remove_dir_all(&temporary_dir)
                .map_err(|error| WalError::io(&temporary_dir, "delete checkpoint", error))?;
        }
        let wal = Wal::open_durable_at_close(WalOptions::new(&temporary_dir))?;
        Ok(CheckpointWriter {
            wal,
            buffered: Vec::new(),
            buffered_bytes: 0,
            temporary_dir,
            final_dir,
            wal_dir: wal_dir.to_path_buf(),
            through_segment,
        })
    }

    /// Adds one record.
    ///
    /// # Errors
    /// [`WalError::RecordTooLarge`], [`WalError::Io`].
    pub fn append(&mut self, record: Vec<u8>) -> Result<(), WalError> {
        if record.len() > MAX_RECORD_BYTES {
            return Err(WalError::RecordTooLarge { length: record.len(), maximum: MAX_RECORD_BYTES });
        }
        self.buffered_bytes += record.len();
        self.buffered.push(record);
        if self.buffered_bytes >= FLUSH_THRESHOLD_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), WalError> {
        let slices: Vec<&[u8]> = self.buffered.iter().map(Vec::as_slice).collect();
        self.wal.append_batch(&slices)?;
        self.buffered.clear();
        self.buffered_bytes = 0;
        Ok(())
    }

    /// Makes the checkpoint durable under its final name and deletes older checkpoints. Returns the
    /// checkpoint's directory. The caller then deletes the covered segments
    /// ([`Wal::truncate_before`] with `through_segment + 1`).
    ///
    /// # Errors
    /// [`WalError::Io`].
    pub fn finish(mut self) -> Result<PathBuf, WalError> {
        self.flush()?;
        self.wal.close()?;
        segment::sync_dir(&self.temporary_dir)?;
        std::fs::rename(&self.temporary_dir, &self.final_dir)
            .map_err(|error| WalError::io(&self.final_dir, "rename checkpoint", error))?;
        segment::sync_dir(&self.wal_dir)?;
        delete_checkpoints_before(&self.wal_dir, self.through_segment)?;
        Ok(self.final_dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_durable_at_close_fsyncs_per_segment_and_keeps_every_record() {
        let dir = tempfile::tempdir().unwrap();
        let options = WalOptions { dir: dir.path().to_path_buf(), segment_size_bytes: 64 };
        let wal = Wal::open_durable_at_close(options).unwrap();
        let records: Vec<Vec<u8>> = (0u8..20).map(|index| vec![index; 40]).collect();
        for pair in records.chunks(2) {
            wal.append_batch(&[&pair[0], &pair[1]]).unwrap();
        }
        // Ten groups over several segments: none fsynced one by one.
        assert_eq!(wal.stats().fsyncs_total, 0);
        assert!(wal.stats().segments_created_total > 2);
        wal.close().unwrap();
        let mut read = Vec::new();
        crate::replay::<WalError>(dir.path(), 0, |record| {
            read.push(record.to_vec());
            Ok(())
        })
        .unwrap();
        assert_eq!(read, records);
    }

    #[test]
    fn checkpoint_replaces_older_segments() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(WalOptions::new(dir.path())).unwrap();
        wal.append(b"old").unwrap();
        let next = wal.rotate().unwrap();
        wal.append(b"new").unwrap();
        let mut writer = CheckpointWriter::create(dir.path(), next - 1).unwrap();
        writer.append(b"summary".to_vec()).unwrap();
        let checkpoint_dir = writer.finish().unwrap();
        wal.truncate_before(next).unwrap();
        wal.close().unwrap();

        let (index, found) = last_checkpoint(dir.path()).unwrap().unwrap();
        assert_eq!((index, &found), (next - 1, &checkpoint_dir));
        let mut records = Vec::new();
        crate::replay::<WalError>(&found, 0, |record| {
            records.push(record.to_vec());
            Ok(())
        })
        .unwrap();
        crate::replay::<WalError>(dir.path(), index + 1, |record| {
            records.push(record.to_vec());
            Ok(())
        })
        .unwrap();
        assert_eq!(records, vec![b"summary".to_vec(), b"new".to_vec()]);
        // A reopened log continues after the checkpoint even with no segment left before it.
        let reopened = Wal::open(WalOptions::new(dir.path())).unwrap();
        assert!(reopened.current_segment() > next);
    }
}
