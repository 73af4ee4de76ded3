//! WAL records of the log store (layout in `docs/format.md`, "WAL records").

use oxeye_model::logs::LogStream;

use crate::encoding::{Reader, put_entry, put_labels, put_uvarint};

/// Record type byte of an entries record.
pub const RECORD_ENTRIES: u8 = 1;

/// Encodes streams with their entries into one record.
pub fn encode_entries_record(streams: &[LogStream]) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        16 + streams.iter().flat_map(|stream| &stream.entries).map(|entry| entry.line.len() + 12).sum::<usize>(),
    );
    out.push(RECORD_ENTRIES);
    put_uvarint(&mut out, streams.len() as u64);
    for stream in streams {
        put_labels(&mut out, stream.labels.iter());
        put_uvarint(&mut out, stream.entries.len() as u64);
        let mut previous_ns = 0;
        for entry in &stream.entries {
            put_entry(&mut out, entry, previous_ns);
            previous_ns = entry.timestamp_ns;
        }
    }
    out
}

/// Decodes an entries record.
///
/// # Errors
/// The byte offset and what is wrong.
pub fn decode_entries_record(record: &[u8]) -> Result<Vec<LogStream>, (usize, String)> {
    let mut reader = Reader::new(record);
    let kind = reader.u8()?;
    if kind != RECORD_ENTRIES {
        return Err((0, format!("unknown record type {kind}")));
    }
    let stream_count = reader.length()?;
    let mut streams = Vec::with_capacity(stream_count.min(1024));
    for _ in 0..stream_count {
        let labels = reader.labels()?;
        let entry_count = reader.length()?;
        let mut entries = Vec::with_capacity(entry_count.min(1 << 16));
        let mut previous_ns = 0;
        for _ in 0..entry_count {
            let entry = reader.entry(previous_ns)?;
            previous_ns = entry.timestamp_ns;
            entries.push(entry);
        }
        streams.push(LogStream { labels, entries });
    }
    Ok(streams)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxeye_model::Labels;
    use oxeye_model::logs::LogEntry;

    #[test]
    fn entries_record_round_trip() {
        let streams = vec![LogStream {
            labels: Labels::from_pairs([("job", "x")]),
            entries: vec![LogEntry::new(30, "b"), LogEntry::new(10, "a")],
        }];
        let record = encode_entries_record(&streams);
        assert_eq!(decode_entries_record(&record).unwrap(), streams);
        assert!(decode_entries_record(&record[..record.len() - 1]).is_err());
        assert!(decode_entries_record(&[9]).is_err());
    }
}
