//! Segment files: naming, header and record framing.
//!
//! A WAL directory holds segment files named by an 8-digit, zero-padded decimal index (`00000000`,
//! `00000001`, ...). Each segment is:
//!
//! ```text
//! ┌──────────────────────────┬────────────────┬─────────────────┬─────────────────┐
//! │ magic "OXWALSEG" (8 B)   │ version u16 LE │ reserved u16 LE │ CRC32 u32 LE     │  header, 16 bytes
//! ├──────────────────────────┴────────────────┴─────────────────┴─────────────────┤
//! │ record frame 1 │ record frame 2 │ ...                                          │
//! └────────────────────────────────────────────────────────────────────────────────┘
//! record frame: length u32 LE │ CRC32 u32 LE │ payload (length bytes)
//! ```
//!
//! The header CRC covers its first 12 bytes. A frame's CRC covers the 4 length bytes and the payload,
//! so a zero-filled tail (a length of 0 with a CRC of 0) never passes as a record. CRC32 is the IEEE
//! polynomial (`crc32fast`), as in zlib and Ethernet.

use std::path::{Path, PathBuf};

use crate::WalError;

/// The first 8 bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"OXWALSEG";
/// The segment format version written by this code.
pub const SEGMENT_VERSION: u16 = 1;
/// Size of the segment header in bytes.
pub const SEGMENT_HEADER_BYTES: usize = 16;
/// Size of a record frame's header (length + CRC) in bytes.
pub const FRAME_HEADER_BYTES: usize = 8;
/// The largest record payload accepted, in bytes (256 MiB).
pub const MAX_RECORD_BYTES: usize = 256 << 20;

/// The 16-byte header of a segment.
pub fn encode_header() -> [u8; SEGMENT_HEADER_BYTES] {
    let mut header = [0u8; SEGMENT_HEADER_BYTES];
    header[..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..10].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    let crc = crc32fast::hash(&header[..12]);
    header[12..16].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Checks a segment header; `Err` carries the reason.
pub fn check_header(bytes: &[u8]) -> Result<(), String> {
    let Some(header) = bytes.get(..SEGMENT_HEADER_BYTES) else {
        return Err(format!("segment header truncated at {} bytes", bytes.len()));
    };
    if header[..8] != SEGMENT_MAGIC {
        return Err("bad segment magic".to_owned());
    }
    let stored_crc = u32::from_le_bytes([header[12], header[13], header[14], header[15]]);
    if crc32fast::hash(&header[..12]) != stored_crc {
        return Err("segment header checksum mismatch".to_owned());
    }
    let version = u16::from_le_bytes([header[8], header[9]]);
    if version != SEGMENT_VERSION {
        return Err(format!("unsupported segment version {version}"));
    }
    Ok(())
}

/// Appends one framed record to `out`.
pub fn encode_frame(payload: &[u8], out: &mut Vec<u8>) -> Result<(), WalError> {
    if payload.len() > MAX_RECORD_BYTES {
        return Err(WalError::RecordTooLarge { length: payload.len(), maximum: MAX_RECORD_BYTES });
    }
    // The bound above keeps the length within u32.
    let length = payload.len() as u32;
    let length_bytes = length.to_le_bytes();
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&length_bytes);
    hasher.update(payload);
    out.extend_from_slice(&length_bytes);
    out.extend_from_slice(&hasher.finalize().to_le_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// The outcome of decoding one frame at an offset.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A valid record and the offset just past it.
    Record {
        /// The payload.
        payload: &'a [u8],
        /// Offset of the next frame.
        next_offset: usize,
    },
    /// The offset is exactly the end of the data.
    End,
    /// The frame is incomplete or fails its checksum; the reason says which.
    Damaged(String),
}

/// Decodes the frame starting at `offset` of a segment's bytes.
pub fn decode_frame(bytes: &[u8], offset: usize) -> Frame<'_> {
    let Some(rest) = bytes.get(offset..) else {
        return Frame::Damaged("offset past the end".to_owned());
    };
    if rest.is_empty() {
        return Frame::End;
    }
    let Some(header) = rest.get(..FRAME_HEADER_BYTES) else {
        return Frame::Damaged(format!("frame header truncated at {} bytes", rest.len()));
    };
    let length_bytes = [header[0], header[1], header[2], header[3]];
    let length = u32::from_le_bytes(length_bytes) as usize;
    let stored_crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if length > MAX_RECORD_BYTES {
        return Frame::Damaged(format!("record length {length} exceeds the maximum"));
    }
    let Some(payload) = rest.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + length) else {
        return Frame::Damaged(format!(
            "record of {length} bytes truncated at {} bytes",
            rest.len() - FRAME_HEADER_BYTES
        ));
    };
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&length_bytes);
    hasher.update(payload);
    if hasher.finalize() != stored_crc {
        return Frame::Damaged("record checksum mismatch".to_owned());
    }
    Frame::Record { payload, next_offset: offset + FRAME_HEADER_BYTES + length }
}

/// The file name of segment `index`.
pub fn segment_file_name(index: u64) -> String {
    format!("{index:08}")
}

/// The path of segment `index` in `dir`.
pub fn segment_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(segment_file_name(index))
}

/// The segment indexes present in `dir`, ascending; other files are ignored. An absent directory has
/// none.
///
/// # Errors
/// [`WalError::Io`] when the directory cannot be listed.
pub fn list_segments(dir: &Path) -> Result<Vec<u64>, WalError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(WalError::io(dir, "list directory", error)),
    };
    let mut indexes = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| WalError::io(dir, "list directory", error))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.len() == 8
            && name.bytes().all(|byte| byte.is_ascii_digit())
            && let Ok(index) = name.parse::<u64>()
        {
            indexes.push(index);
        }
    }
    indexes.sort_unstable();
    Ok(indexes)
}

/// Fsyncs a directory so that file creations, renames and deletions in it are durable.
///
/// # Errors
/// [`WalError::Io`] naming the directory.
pub fn sync_dir(dir: &Path) -> Result<(), WalError> {
    let handle = std::fs::File::open(dir).map_err(|error| WalError::io(dir, "open directory", error))?;
    handle.sync_all().map_err(|error| WalError::io(dir, "fsync directory", error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trip_and_zero_fill_is_damaged() {
        let mut bytes = Vec::new();
        encode_frame(b"hello", &mut bytes).unwrap();
        encode_frame(b"", &mut bytes).unwrap();
        let Frame::Record { payload, next_offset } = decode_frame(&bytes, 0) else { panic!("first frame") };
        assert_eq!(payload, b"hello");
        let Frame::Record { payload, next_offset } = decode_frame(&bytes, next_offset) else { panic!("second frame") };
        assert_eq!(payload, b"");
        assert_eq!(decode_frame(&bytes, next_offset), Frame::End);
        assert!(matches!(decode_frame(&[0u8; 32], 0), Frame::Damaged(_)));
    }

    #[test]
    fn header_checks_magic_crc_and_version() {
        let header = encode_header();
        assert!(check_header(&header).is_ok());
        let mut bad = header;
        bad[0] = b'X';
        assert!(check_header(&bad).is_err());
        let mut bad_crc = header;
        bad_crc[13] ^= 1;
        assert!(check_header(&bad_crc).is_err());
        assert!(check_header(&header[..10]).is_err());
    }
}
