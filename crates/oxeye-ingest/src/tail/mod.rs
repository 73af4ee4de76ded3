//! Tailing log files: JSON-lines or plain-text files named by globs, read into log streams, surviving
//! rotation by rename and by truncation, with positions that survive restarts.
//!
//! A [`Tailer`] is driven by its owner (the server's runner task) in a loop:
//! 1. [`Tailer::poll`] finds the files (globs expanded on every call), reads the complete lines appended
//!    since the last poll (at most `max_batch_bytes`) and returns them as [`LogStream`]s;
//! 2. the owner stores them durably (the log store's push returns after the WAL fsync);
//! 3. then [`Tailer::commit`] advances the saved positions and writes the positions file, or
//!    [`Tailer::rollback`] rewinds to the last commit when the push failed.
//!
//! So a position on disk never runs ahead of what is stored: after a crash, lines are read again rather
//! than skipped, and the store drops such re-reads as duplicates when the line carries its own timestamp
//! (same timestamp and line).
//!
//! Files are tracked by identity (device and inode), not by path: a file renamed by rotation (`app.log` →
//! `app.log.1`) keeps being read through its open handle until its end, and when the new name also matches
//! a glob it is recognised rather than read again. A file whose size drops below the read offset, or
//! whose first bytes change, was truncated or replaced and is read again from the start. A file that no
//! glob matches any more is read to its end (a final line without a newline included) and then dropped.
//! On start, a saved position is used only when the file with that identity still starts with the same
//! bytes (a fingerprint of the first [`positions::FINGERPRINT_BYTES`] bytes), so a reused inode is read
//! from the start. Include rotated names in the glob (`app.log*`) so lines written while oxeye was down
//! and then rotated away are not missed.
//!
//! Lines become entries as follows. Text: the line as is, timestamped when read. JSON (an object per
//! line): the line as is, timestamped from its `timestamp`, `time`, `ts` or `@timestamp` field when that is
//! RFC 3339 (else when read); the fields named in `json_labels` become stream labels and the `level` (or
//! `severity`, `levelname`) field becomes the `detected_level` structured metadata. Every entry carries the
//! file's current path as the `filename` structured metadata; streams without a `service_name` label get
//! `unknown_service`, as Loki names streams it cannot attribute.

pub mod glob;
pub mod positions;

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use oxeye_model::logs::{LogEntry, LogStream};
use oxeye_model::{Label, Labels};

use crate::IngestError;
use glob::FileGlob;
use positions::{FINGERPRINT_BYTES, FileId, Fingerprint, SavedPosition, load_positions, save_positions};

/// Default most bytes read by one [`Tailer::poll`]: 4 MiB.
pub const DEFAULT_MAX_BATCH_BYTES: usize = 4 << 20;

/// How a tailed file's lines are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailFormat {
    /// One JSON object per line (structlog's JSON renderer); other lines are taken as text.
    Json,
    /// Plain text lines.
    Text,
}

/// A set of files tailed with the same labels (one `logs.files[]` entry of the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailSource {
    /// Globs; wildcards (`*`, `?`, `[...]`) only in the last path component.
    pub globs: Vec<String>,
    /// Static stream labels.
    pub labels: Vec<(String, String)>,
    /// Top-level JSON fields promoted to stream labels ([`TailFormat::Json`] only).
    pub json_labels: Vec<String>,
    /// The line format.
    pub format: TailFormat,
}

/// What a [`Tailer`] needs besides its sources.
#[derive(Debug, Clone)]
pub struct TailerOptions {
    /// The positions file (see [`positions`]); its directory must exist.
    pub positions_path: PathBuf,
    /// The most bytes one [`Tailer::poll`] reads; default [`DEFAULT_MAX_BATCH_BYTES`]. A line longer than
    /// this is cut into pieces of this size.
    pub max_batch_bytes: usize,
}

impl TailerOptions {
    /// Defaults with `positions_path`.
    pub fn new(positions_path: impl Into<PathBuf>) -> TailerOptions {
        TailerOptions { positions_path: positions_path.into(), max_batch_bytes: DEFAULT_MAX_BATCH_BYTES }
    }
}

/// What one [`Tailer::poll`] read.
#[derive(Debug, Default)]
pub struct TailBatch {
    /// The entries, grouped by stream, in file order within each stream.
    pub streams: Vec<LogStream>,
    /// Lines read.
    pub lines: u64,
    /// Bytes read, newlines included.
    pub bytes: u64,
}

impl TailBatch {
    /// True when nothing was read.
    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }
}

#[derive(Debug)]
struct TrackedFile {
    source: usize,
    path: PathBuf,
    id: FileId,
    file: File,
    fingerprint: Fingerprint,
    /// Offset up to which lines are durably stored.
    committed: u64,
    /// Offset up to which lines were handed out by `poll`.
    pending: u64,
    /// Whether the last discovery found it under a matching name.
    seen: bool,
    /// Not matched any more and read to its end: dropped at the next commit.
    finished: bool,
}

/// Reads the files of its sources; see the module docs for the poll/commit protocol.
#[derive(Debug)]
pub struct Tailer {
    sources: Vec<(TailSource, Vec<FileGlob>)>,
    files: Vec<TrackedFile>,
    saved: HashMap<FileId, SavedPosition>,
    options: TailerOptions,
    last_timestamp_ns: i64,
    /// What the positions file holds, so an idle commit writes (and fsyncs) nothing.
    written: Option<Vec<SavedPosition>>,
}

fn tail_error(path: &Path, operation: &'static str, error: std::io::Error) -> IngestError {
    IngestError::Tail { path: path.display().to_string(), operation, reason: error.to_string() }
}

fn file_id(metadata: &std::fs::Metadata) -> FileId {
    FileId { device: metadata.dev(), inode: metadata.ino() }
}

/// Reads up to `length` bytes at `offset` (fewer at the end of the file).
fn read_at(file: &File, offset: u64, length: usize) -> std::io::Result<Vec<u8>> {
    let mut buffer = vec![0u8; length];
    let mut filled = 0;
    while filled < length {
        let read = file.read_at(&mut buffer[filled..], offset + filled as u64)?;
        if read == 0 {
            break;
        }
        filled += read;
    }
    buffer.truncate(filled);
    Ok(buffer)
}

fn fingerprint_of(file: &File, size: u64) -> std::io::Result<Fingerprint> {
    let length = usize::try_from(size).unwrap_or(usize::MAX).min(FINGERPRINT_BYTES);
    Ok(Fingerprint::of(&read_at(file, 0, length)?))
}

impl Tailer {
    /// Checks the globs and loads the positions file.
    ///
    /// # Errors
    /// [`IngestError::Tail`] for a glob with a wildcard in its directory part, or an unreadable positions file.
    pub fn new(sources: Vec<TailSource>, options: TailerOptions) -> Result<Tailer, IngestError> {
        let mut compiled = Vec::with_capacity(sources.len());
        for source in sources {
            let mut globs = Vec::with_capacity(source.globs.len());
            for text in &source.globs {
                let glob = FileGlob::new(text).ok_or_else(|| IngestError::Tail {
                    path: text.clone(),
                    operation: "parse glob",
                    reason: "wildcards are allowed only in the file name".into(),
                })?;
                globs.push(glob);
            }
            compiled.push((source, globs));
        }
        let saved = load_positions(&options.positions_path)?.into_iter().map(|saved| (saved.id, saved)).collect();
        Ok(Tailer { sources: compiled, files: Vec::new(), saved, options, last_timestamp_ns: i64::MIN, written: None })
    }

    /// The tracked files and their committed offsets, for status and tests.
    pub fn positions(&self) -> Vec<(PathBuf, u64)> {
        self.files.iter().map(|file| (file.path.clone(), file.committed)).collect()
    }

    fn discover(&mut self) {
        for file in &mut self.files {
            file.seen = false;
        }
        for source_index in 0..self.sources.len() {
            let mut paths: Vec<(std::time::SystemTime, PathBuf)> = self.sources[source_index]
                .1
                .iter()
                .flat_map(FileGlob::expand)
                .map(|path| {
                    let modified = std::fs::metadata(&path)
                        .and_then(|metadata| metadata.modified())
                        .unwrap_or(std::time::UNIX_EPOCH);
                    (modified, path)
                })
                .collect();
            // Oldest first, so rotated files (`app.log.2`, `app.log.1`) are read before the live one and a
            // stream's entries arrive roughly in time order.
            paths.sort();
            let paths: Vec<PathBuf> = paths.into_iter().map(|(_, path)| path).collect();
            for path in paths {
                let Ok(metadata) = std::fs::metadata(&path) else { continue };
                let id = file_id(&metadata);
                if let Some(tracked) = self.files.iter_mut().find(|tracked| tracked.id == id) {
                    if !tracked.seen {
                        tracked.seen = true;
                        tracked.path = path;
                    }
                    continue;
                }
                let Ok(file) = File::open(&path) else { continue };
                // The name may have moved to another file between stat and open: trust the handle.
                let Ok(opened) = file.metadata() else { continue };
                if file_id(&opened) != id {
                    continue;
                }
                let size = opened.len();
                let Ok(fingerprint) = fingerprint_of(&file, size) else { continue };
                let offset = match self.saved.remove(&id) {
                    Some(saved) if saved.offset <= size && saved.fingerprint.length <= fingerprint.length => {
                        let prefix = read_at(&file, 0, saved.fingerprint.length).unwrap_or_default();
                        if Fingerprint::of(&prefix) == saved.fingerprint { saved.offset } else { 0 }
                    }
                    _ => 0,
                };
                self.files.push(TrackedFile {
                    source: source_index,
                    path,
                    id,
                    file,
                    fingerprint,
                    committed: offset,
                    pending: offset,
                    seen: true,
                    finished: false,
                });
            }
        }
    }

    fn next_timestamp_ns(&mut self) -> i64 {
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| i64::try_from(elapsed.as_nanos()).unwrap_or(i64::MAX));
        self.last_timestamp_ns = now_ns.max(self.last_timestamp_ns.saturating_add(1));
        self.last_timestamp_ns
    }

    /// Finds files and reads the complete lines appended since the last poll.
    ///
    /// # Errors
    /// [`IngestError::Tail`] when a tracked file cannot be read (the others are read next time).
    pub fn poll(&mut self) -> Result<TailBatch, IngestError> {
        self.discover();
        let mut budget = self.options.max_batch_bytes;
        let mut batch = TailBatch::default();
        let mut grouped: Vec<(Labels, Vec<LogEntry>)> = Vec::new();
        let mut group_index: HashMap<Labels, usize> = HashMap::new();
        for index in 0..self.files.len() {
            if budget == 0 {
                break;
            }
            let (lines, source, path) = {
                let tracked = &mut self.files[index];
                if tracked.finished {
                    continue;
                }
                let size = tracked.file.metadata().map_err(|error| tail_error(&tracked.path, "stat", error))?.len();
                let current =
                    fingerprint_of(&tracked.file, size).map_err(|error| tail_error(&tracked.path, "read", error))?;
                let prefix_changed = current.length >= tracked.fingerprint.length
                    && Fingerprint::of(
                        &read_at(&tracked.file, 0, tracked.fingerprint.length)
                            .map_err(|error| tail_error(&tracked.path, "read", error))?,
                    ) != tracked.fingerprint;
                if size < tracked.pending || prefix_changed || current.length < tracked.fingerprint.length {
                    // Truncated (copytruncate) or rewritten in place: read it again from the start.
                    tracked.pending = 0;
                    tracked.committed = 0;
                }
                tracked.fingerprint = current;
                let available = usize::try_from(size - tracked.pending).unwrap_or(usize::MAX);
                let length = available.min(budget);
                let data = read_at(&tracked.file, tracked.pending, length)
                    .map_err(|error| tail_error(&tracked.path, "read", error))?;
                let at_end = tracked.pending + data.len() as u64 >= size;
                let consumed = match memchr::memrchr(b'\n', &data) {
                    Some(last_newline) => last_newline + 1,
                    // A line longer than the batch is cut; the unterminated last line of a file no glob
                    // matches any more is complete.
                    None if data.len() >= self.options.max_batch_bytes => data.len(),
                    None if !tracked.seen && at_end => data.len(),
                    None => 0,
                };
                tracked.pending += consumed as u64;
                if !tracked.seen && tracked.pending >= size && (consumed == data.len()) {
                    tracked.finished = true;
                }
                budget = budget.saturating_sub(consumed);
                batch.bytes += consumed as u64;
                let lines: Vec<String> = data[..consumed]
                    .split(|byte| *byte == b'\n')
                    .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
                    .filter(|line| !line.is_empty())
                    .map(|line| String::from_utf8_lossy(line).into_owned())
                    .collect();
                (lines, tracked.source, tracked.path.display().to_string())
            };
            for line in lines {
                batch.lines += 1;
                let (labels, entry) = self.entry_for(source, &path, line);
                let slot = *group_index.entry(labels.clone()).or_insert_with(|| {
                    grouped.push((labels, Vec::new()));
                    grouped.len() - 1
                });
                grouped[slot].1.push(entry);
            }
        }
        batch.streams = grouped.into_iter().map(|(labels, entries)| LogStream { labels, entries }).collect();
        Ok(batch)
    }

    fn entry_for(&mut self, source: usize, path: &str, line: String) -> (Labels, LogEntry) {
        let (config, _) = &self.sources[source];
        let mut label_pairs: Vec<(String, String)> = config.labels.clone();
        let mut metadata = vec![Label { name: "filename".into(), value: path.to_string() }];
        let mut timestamp_ns = None;
        if config.format == TailFormat::Json
            && line.trim_start().starts_with('{')
            && let Ok(serde_json::Value::Object(fields)) = serde_json::from_str::<serde_json::Value>(&line)
        {
            timestamp_ns = ["timestamp", "time", "ts", "@timestamp"]
                .iter()
                .find_map(|key| fields.get(*key).and_then(serde_json::Value::as_str).and_then(parse_rfc3339_ns));
            for name in &config.json_labels {
                let value = match fields.get(name) {
                    Some(serde_json::Value::String(text)) => text.clone(),
                    Some(serde_json::Value::Number(number)) => number.to_string(),
                    Some(serde_json::Value::Bool(flag)) => flag.to_string(),
                    _ => continue,
                };
                label_pairs.retain(|(existing, _)| existing != name);
                label_pairs.push((name.clone(), value));
            }
            if let Some(level) = ["level", "severity", "levelname"]
                .iter()
                .find_map(|key| fields.get(*key).and_then(serde_json::Value::as_str))
            {
                metadata.push(Label { name: "detected_level".into(), value: level.to_ascii_lowercase() });
            }
        }
        if !label_pairs.iter().any(|(name, value)| name == "service_name" && !value.is_empty()) {
            label_pairs.push(("service_name".into(), "unknown_service".into()));
        }
        let timestamp_ns = match timestamp_ns {
            Some(timestamp) => timestamp,
            None => self.next_timestamp_ns(),
        };
        let entry = LogEntry { timestamp_ns, line, structured_metadata: metadata };
        (Labels::from_pairs(label_pairs), entry)
    }

    /// Marks everything the last [`Tailer::poll`] returned as durably stored: advances the offsets, drops
    /// finished files and writes the positions file (only when it would change).
    ///
    /// # Errors
    /// [`IngestError::Tail`] when the positions file cannot be written (the offsets stay advanced in
    /// memory; the next commit retries the write).
    pub fn commit(&mut self) -> Result<(), IngestError> {
        for file in &mut self.files {
            file.committed = file.pending;
        }
        self.files.retain(|file| !file.finished);
        // Saved positions no discovery matched belong to files that are gone.
        self.saved.clear();
        let positions: Vec<SavedPosition> = self
            .files
            .iter()
            .map(|file| SavedPosition {
                path: file.path.clone(),
                id: file.id,
                fingerprint: file.fingerprint,
                offset: file.committed,
            })
            .collect();
        if self.written.as_ref() == Some(&positions) {
            return Ok(());
        }
        save_positions(&self.options.positions_path, &positions)?;
        self.written = Some(positions);
        Ok(())
    }

    /// Forgets what the last [`Tailer::poll`] returned (its push failed): the next poll reads it again.
    pub fn rollback(&mut self) {
        for file in &mut self.files {
            file.pending = file.committed;
            file.finished = false;
        }
    }
}

/// Parses an RFC 3339 timestamp (`2026-11-23T07:02:14.099679Z`, `...+01:00`, a space for `T` accepted)
/// into nanoseconds since the epoch; `None` for anything else.
pub fn parse_rfc3339_ns(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let slice = bytes.get(range)?;
        if slice.is_empty() || !slice.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(slice).ok()?.parse().ok()
    };
    let year = digits(0..4)?;
    let month = digits(5..7)?;
    let day = digits(8..10)?;
    let hour = digits(11..13)?;
    let minute = digits(14..16)?;
    let second = digits(17..19)?;
    let separators_ok = bytes.get(4) == Some(&b'-')
        && bytes.get(7) == Some(&b'-')
        && matches!(bytes.get(10), Some(b'T' | b't' | b' '))
        && bytes.get(13) == Some(&b':')
        && bytes.get(16) == Some(&b':');
    if !separators_ok
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut at = 19;
    let mut nanos: i64 = 0;
    if bytes.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while bytes.get(at).is_some_and(u8::is_ascii_digit) {
            if at - start < 9 {
                nanos = nanos * 10 + i64::from(bytes[at] - b'0');
            }
            at += 1;
        }
        if at == start {
            return None;
        }
        for _ in (at - start).min(9)..9 {
            nanos *= 10;
        }
    }
    let offset_seconds = match bytes.get(at) {
        Some(b'Z' | b'z') if at + 1 == bytes.len() => 0,
        Some(sign @ (b'+' | b'-')) if at + 6 == bytes.len() && bytes.get(at + 3) == Some(&b':') => {
            let minutes = digits(at + 1..at + 3)? * 60 + digits(at + 4..at + 6)?;
            if *sign == b'+' { minutes * 60 } else { -minutes * 60 }
        }
        _ => return None,
    };
    // Days from the civil date (proleptic Gregorian), after Howard Hinnant's algorithm.
    let shifted_year = if month <= 2 { year - 1 } else { year };
    let era = shifted_year.div_euclid(400);
    let year_of_era = shifted_year - era * 400;
    let month_index = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    seconds.checked_mul(1_000_000_000)?.checked_add(nanos)
}

#[cfg(test)]
mod tests;
