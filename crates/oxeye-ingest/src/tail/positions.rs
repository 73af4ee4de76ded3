//! The positions file: how far each tailed file has been read and stored, with the file's identity, so a
//! restart resumes exactly where the last durable push ended.
//!
//! Format: one JSON object, `{"version": 1, "files": [{"path", "device", "inode", "fingerprint_bytes",
//! "fingerprint", "offset"}]}`; `fingerprint` is the FNV-1a 64 hash of the file's first `fingerprint_bytes`
//! bytes (at most [`FINGERPRINT_BYTES`]), which tells a reused inode from the file it once was. Written to a
//! temporary file, fsynced, renamed over the old one, and the directory fsynced.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::IngestError;

/// How many leading bytes of a file its fingerprint covers.
pub const FINGERPRINT_BYTES: usize = 256;

/// A file's identity: device and inode, plus a fingerprint of its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    /// `st_dev`.
    pub device: u64,
    /// `st_ino`.
    pub inode: u64,
}

/// The fingerprint of a file's first `length` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    /// Bytes covered (at most [`FINGERPRINT_BYTES`]).
    pub length: usize,
    /// FNV-1a 64 of those bytes.
    pub hash: u64,
}

impl Fingerprint {
    /// The fingerprint of `prefix` (the caller passes at most [`FINGERPRINT_BYTES`] bytes).
    pub fn of(prefix: &[u8]) -> Fingerprint {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in prefix {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        Fingerprint { length: prefix.len(), hash }
    }
}

/// One saved position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedPosition {
    /// The path the file had when saved (informational: files are found again by identity).
    pub path: PathBuf,
    /// The file's identity.
    pub id: FileId,
    /// Its fingerprint when saved.
    pub fingerprint: Fingerprint,
    /// Bytes read and durably stored, from the start of the file.
    pub offset: u64,
}

fn io_error(path: &Path, operation: &'static str, error: std::io::Error) -> IngestError {
    IngestError::Tail { path: path.display().to_string(), operation, reason: error.to_string() }
}

/// Reads the positions file; a missing file is an empty list.
///
/// # Errors
/// [`IngestError::Tail`] when the file cannot be read or is not the format above.
pub fn load_positions(path: &Path) -> Result<Vec<SavedPosition>, IngestError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(io_error(path, "read", error)),
    };
    let malformed = |reason: String| IngestError::Tail { path: path.display().to_string(), operation: "parse", reason };
    let document: Value = serde_json::from_str(&text).map_err(|error| malformed(error.to_string()))?;
    let files = document.get("files").and_then(Value::as_array).ok_or_else(|| malformed("no files array".into()))?;
    let mut positions = Vec::with_capacity(files.len());
    for (index, file) in files.iter().enumerate() {
        let number = |field: &str| {
            file.get(field).and_then(Value::as_u64).ok_or_else(|| malformed(format!("files[{index}].{field} missing")))
        };
        let fingerprint_hex = file
            .get("fingerprint")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed(format!("files[{index}].fingerprint missing")))?;
        let hash = u64::from_str_radix(fingerprint_hex, 16)
            .map_err(|_| malformed(format!("files[{index}].fingerprint is not hex")))?;
        positions.push(SavedPosition {
            path: PathBuf::from(file.get("path").and_then(Value::as_str).unwrap_or_default()),
            id: FileId { device: number("device")?, inode: number("inode")? },
            fingerprint: Fingerprint {
                length: usize::try_from(number("fingerprint_bytes")?).unwrap_or(usize::MAX),
                hash,
            },
            offset: number("offset")?,
        });
    }
    Ok(positions)
}

/// Replaces the positions file atomically and durably (temporary file, fsync, rename, directory fsync).
///
/// # Errors
/// [`IngestError::Tail`] naming the failed operation.
pub fn save_positions(path: &Path, positions: &[SavedPosition]) -> Result<(), IngestError> {
    let files: Vec<Value> = positions
        .iter()
        .map(|position| {
            json!({
                "path": position.path.display().to_string(),
                "device": position.id.device,
                "inode": position.id.inode,
                "fingerprint_bytes": position.fingerprint.length,
                "fingerprint": format!("{:016x}", position.fingerprint.hash),
                "offset": position.offset,
            })
        })
        .collect();
    let text = json!({"version": 1, "files": files}).to_string();
    let temporary = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&temporary).map_err(|error| io_error(&temporary, "create", error))?;
    file.write_all(text.as_bytes()).map_err(|error| io_error(&temporary, "write", error))?;
    file.sync_all().map_err(|error| io_error(&temporary, "fsync", error))?;
    drop(file);
    std::fs::rename(&temporary, path).map_err(|error| io_error(path, "rename", error))?;
    if let Some(directory) = path.parent() {
        let directory = if directory.as_os_str().is_empty() { Path::new(".") } else { directory };
        if let Ok(handle) = std::fs::File::open(directory) {
            handle.sync_all().map_err(|error| io_error(directory, "fsync", error))?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tail-positions.json");
        assert!(load_positions(&path).unwrap().is_empty());
        let positions = vec![SavedPosition {
            path: PathBuf::from("/var/log/app.log"),
            id: FileId { device: 2049, inode: 131_075 },
            fingerprint: Fingerprint::of(b"{\"event\": \"start\"}\n"),
            offset: 4096,
        }];
        save_positions(&path, &positions).unwrap();
        assert_eq!(load_positions(&path).unwrap(), positions);
        std::fs::write(&path, "{\"files\": [{\"path\": \"x\"}]}").unwrap();
        assert!(load_positions(&path).unwrap_err().to_string().contains("files[0]"));
    }

    #[test]
    fn fingerprints_differ_by_content_and_length() {
        assert_ne!(Fingerprint::of(b"abc"), Fingerprint::of(b"abd"));
        assert_ne!(Fingerprint::of(b"abc"), Fingerprint::of(b"ab"));
        assert_eq!(Fingerprint::of(b"abc"), Fingerprint::of(b"abc"));
    }
}
