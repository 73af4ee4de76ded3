//! Little helpers for the byte formats: unsigned LEB128 varints, zigzag, length-prefixed strings, and a
//! bounds-checked reader that names the offset of whatever it cannot read.

use oxeye_model::logs::LogEntry;
use oxeye_model::{Label, Labels};

/// Appends `value` as an unsigned LEB128 varint.
pub(crate) fn put_uvarint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends `value` zigzag-encoded as a varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, value: i64) {
    put_uvarint(out, ((value << 1) ^ (value >> 63)) as u64);
}

/// Appends a varint length and the bytes.
pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_uvarint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Appends a label set: count, then name and value of each label.
pub(crate) fn put_labels<'a>(out: &mut Vec<u8>, labels: impl ExactSizeIterator<Item = &'a Label>) {
    put_uvarint(out, labels.len() as u64);
    for label in labels {
        put_bytes(out, label.name.as_bytes());
        put_bytes(out, label.value.as_bytes());
    }
}

/// Appends one entry; `previous_ns` is the timestamp the delta is taken from (0 for an absolute value).
pub(crate) fn put_entry(out: &mut Vec<u8>, entry: &LogEntry, previous_ns: i64) {
    put_varint(out, entry.timestamp_ns.wrapping_sub(previous_ns));
    put_bytes(out, entry.line.as_bytes());
    put_labels(out, entry.structured_metadata.iter());
}

/// A varint of up to eight bytes from the eight bytes `window` starting with it: its value and length in
/// bytes, or `None` when it runs longer. Its last byte is the first without the high bit, and the 7-bit
/// groups below it are packed together in three steps.
#[inline(always)]
fn decode_word_uvarint(window: [u8; 8]) -> Option<(u64, usize)> {
    let word = u64::from_le_bytes(window);
    let last_bytes = !word & 0x8080_8080_8080_8080;
    if last_bytes == 0 {
        return None;
    }
    let length = (last_bytes.trailing_zeros() / 8 + 1) as usize;
    let groups = (word & (u64::MAX >> (64 - 8 * length))) & 0x7f7f_7f7f_7f7f_7f7f;
    let pairs = (groups & 0x007f_007f_007f_007f) | ((groups & 0x7f00_7f00_7f00_7f00) >> 1);
    let quads = (pairs & 0x0000_3fff_0000_3fff) | ((pairs & 0x3fff_0000_3fff_0000) >> 2);
    let value = (quads & 0x0000_0000_0fff_ffff) | ((quads & 0x0fff_ffff_0000_0000) >> 4);
    Some((value, length))
}

/// A cursor over bytes whose every read is bounds-checked; errors carry the offset.
#[derive(Clone)]
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, offset: 0 }
    }

    pub(crate) fn offset(&self) -> usize {
        self.offset
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.offset >= self.bytes.len()
    }

    /// Inlined up to two bytes (scans read several varints per entry); longer ones in [`Reader::long_uvarint`].
    #[inline(always)]
    pub(crate) fn uvarint(&mut self) -> Result<u64, (usize, String)> {
        // Most varints of chunk data (line lengths, timestamp deltas, string lengths) take one or two bytes.
        if let Some(&first) = self.bytes.get(self.offset) {
            if first < 0x80 {
                self.offset += 1;
                return Ok(u64::from(first));
            }
            if let Some(&second) = self.bytes.get(self.offset + 1).filter(|second| **second < 0x80) {
                self.offset += 2;
                return Ok(u64::from(first & 0x7f) | (u64::from(second) << 7));
            }
        }
        self.long_uvarint()
    }

    #[inline(never)]
    fn long_uvarint(&mut self) -> Result<u64, (usize, String)> {
        // Timestamps in nanoseconds take four to nine bytes. With eight bytes left, a varint of up to eight
        // bytes is decoded from one little-endian word.
        let window = self.offset.checked_add(8).and_then(|end| self.bytes.get(self.offset..end));
        if let Some((value, length)) = window.and_then(|window| decode_word_uvarint(window.try_into().ok()?)) {
            self.offset += length;
            return Ok(value);
        }
        let mut value: u64 = 0;
        let mut shift = 0u32;
        loop {
            let Some(&byte) = self.bytes.get(self.offset) else {
                return Err((self.offset, "truncated varint".to_string()));
            };
            self.offset += 1;
            if shift >= 64 {
                return Err((self.offset, "varint overflows 64 bits".to_string()));
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
            shift += 7;
        }
    }

    pub(crate) fn varint(&mut self) -> Result<i64, (usize, String)> {
        let raw = self.uvarint()?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.offset)
    }

    /// A reader over the next `length` bytes (offsets stay those of the whole buffer); this reader moves
    /// past them.
    pub(crate) fn split_off(&mut self, length: usize) -> Result<Reader<'a>, (usize, String)> {
        let start = self.offset;
        self.take(length)?;
        Ok(Reader { bytes: &self.bytes[..start + length], offset: start })
    }

    /// A varint length that must not exceed `limit` (the bytes left where it will be taken from). Inlined:
    /// chunk decoding reads one per entry.
    #[inline(always)]
    pub(crate) fn length_of(&mut self, limit: usize) -> Result<usize, (usize, String)> {
        let start = self.offset;
        let length = self.uvarint()?;
        match usize::try_from(length) {
            Ok(length) if length <= limit => Ok(length),
            _ => Err((start, format!("length {length} exceeds the {limit} remaining bytes"))),
        }
    }

    /// The next `length` bytes as UTF-8.
    pub(crate) fn str_of(&mut self, length: usize) -> Result<&'a str, (usize, String)> {
        let start = self.offset;
        let bytes = self.take(length)?;
        std::str::from_utf8(bytes).map_err(|_| (start, "invalid UTF-8".to_string()))
    }

    /// The bytes not read yet as one string, when they are all UTF-8 (`None` otherwise). Validating a run of
    /// lines at once costs less than line by line, and a piece of valid UTF-8 cut at character boundaries
    /// is valid UTF-8 itself. The check runs 32 bytes a step with SIMD (`simdutf8`, the instruction set
    /// chosen at run time): a chunk's lines cost about a third of the instructions `std::str::from_utf8`
    /// takes on them.
    pub(crate) fn rest_as_str(&self) -> Option<&'a str> {
        simdutf8::basic::from_utf8(self.bytes.get(self.offset..)?).ok()
    }

    /// A varint length, then that many bytes as UTF-8, borrowed.
    pub(crate) fn str(&mut self) -> Result<&'a str, (usize, String)> {
        let length = self.length()?;
        self.str_of(length)
    }

    /// As [`Reader::str`], but cut from `checked` when given: this reader's bytes from offset
    /// `checked.1` on, already checked as UTF-8 as a whole ([`Reader::rest_as_str`]), so only the cut's
    /// ends are checked to fall on character boundaries.
    #[inline]
    pub(crate) fn str_in(&mut self, checked: Option<(&'a str, usize)>) -> Result<&'a str, (usize, String)> {
        let Some((text, text_start)) = checked else { return self.str() };
        // `text` ends where this reader's bytes do, so cutting it checks the length against the bytes left
        // as well as the character boundaries.
        debug_assert_eq!(text_start.checked_add(text.len()), Some(self.bytes.len()));
        let length_offset = self.offset;
        let length = self.uvarint()?;
        let from = self.offset.wrapping_sub(text_start);
        let to = usize::try_from(length).ok().and_then(|length| from.checked_add(length));
        match to.and_then(|to| Some((to, text.get(from..to)?))) {
            Some((to, string)) => {
                self.offset = text_start + to;
                Ok(string)
            }
            None => {
                // Read again to name the problem: a length past the end, or a cut inside a character.
                self.offset = length_offset;
                self.str()?;
                Err((length_offset, "string not on a character boundary".to_string()))
            }
        }
    }

    /// The next varint as a count when it takes one byte (below 128); `None`, the reader left where it was,
    /// otherwise.
    #[inline(always)]
    pub(crate) fn short_count(&mut self) -> Option<usize> {
        let first = *self.bytes.get(self.offset).filter(|first| **first < 0x80)?;
        self.offset += 1;
        Some(usize::from(first))
    }

    /// [`Reader::str_in`]'s common case in a form cheaper to call per entry: a length of one or two bytes,
    /// then the string cut from `text` (this reader's bytes from offset `text_start` on, checked as UTF-8 as
    /// a whole). `None`, the reader left where it was, for anything else (a longer length, a length past the
    /// end, a cut inside a character): [`Reader::str_in`] then reads it or names the problem.
    #[inline(always)]
    pub(crate) fn short_str_in(&mut self, text: &'a str, text_start: usize) -> Option<&'a str> {
        let first = *self.bytes.get(self.offset)?;
        let (length, length_bytes) = if first < 0x80 {
            (usize::from(first), 1)
        } else {
            let second = *self.bytes.get(self.offset + 1).filter(|second| **second < 0x80)?;
            (usize::from(first & 0x7f) | (usize::from(second) << 7), 2)
        };
        let from = (self.offset + length_bytes).wrapping_sub(text_start);
        let to = from.checked_add(length)?;
        let string = text.get(from..to)?;
        self.offset = text_start + to;
        Some(string)
    }

    /// A zigzag varint as [`Reader::varint`], for varints that mostly take three to eight bytes (timestamp
    /// deltas in nanoseconds): with eight bytes left it is decoded from one word in line, without
    /// [`Reader::uvarint`]'s one- and two-byte tests first.
    #[inline(always)]
    pub(crate) fn wide_varint(&mut self) -> Result<i64, (usize, String)> {
        let word = self.offset.checked_add(8).and_then(|end| self.bytes.get(self.offset..end));
        let raw = match word.and_then(|window| decode_word_uvarint(window.try_into().ok()?)) {
            Some((value, length)) => {
                self.offset += length;
                value
            }
            None => self.uvarint()?,
        };
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    #[inline]
    pub(crate) fn length(&mut self) -> Result<usize, (usize, String)> {
        let start = self.offset;
        let length = self.uvarint()?;
        let remaining = self.bytes.len().saturating_sub(self.offset);
        match usize::try_from(length) {
            Ok(length) if length <= remaining => Ok(length),
            _ => Err((start, format!("length {length} exceeds the {remaining} remaining bytes"))),
        }
    }

    #[inline(always)]
    pub(crate) fn take(&mut self, length: usize) -> Result<&'a [u8], (usize, String)> {
        let end = self.offset.checked_add(length).filter(|end| *end <= self.bytes.len());
        match end {
            Some(end) => {
                let slice = &self.bytes[self.offset..end];
                self.offset = end;
                Ok(slice)
            }
            None => Err((self.offset, format!("{length} bytes past the end"))),
        }
    }

    /// Moves past a varint length and that many bytes, as [`Reader::bytes`] without handing them out.
    #[inline]
    pub(crate) fn skip_bytes(&mut self) -> Result<(), (usize, String)> {
        let start = self.offset;
        let length = self.uvarint()?;
        let end = usize::try_from(length).ok().and_then(|length| self.offset.checked_add(length));
        match end.filter(|end| *end <= self.bytes.len()) {
            Some(end) => {
                self.offset = end;
                Ok(())
            }
            None => {
                // Read again to name the problem.
                self.offset = start;
                self.bytes().map(|_| ())
            }
        }
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], (usize, String)> {
        let length = self.length()?;
        self.take(length)
    }

    pub(crate) fn string(&mut self) -> Result<String, (usize, String)> {
        let start = self.offset;
        let bytes = self.bytes()?;
        String::from_utf8(bytes.to_vec()).map_err(|_| (start, "invalid UTF-8 in string".to_string()))
    }

    pub(crate) fn u8(&mut self) -> Result<u8, (usize, String)> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u32_le(&mut self) -> Result<u32, (usize, String)> {
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    pub(crate) fn u64_le(&mut self) -> Result<u64, (usize, String)> {
        let bytes = self.take(8)?;
        let mut array = [0u8; 8];
        array.copy_from_slice(bytes);
        Ok(u64::from_le_bytes(array))
    }

    pub(crate) fn label_pairs(&mut self) -> Result<Vec<Label>, (usize, String)> {
        let count = self.length()?;
        let mut labels = Vec::with_capacity(count.min(64));
        for _ in 0..count {
            let name = self.string()?;
            let value = self.string()?;
            labels.push(Label { name, value });
        }
        Ok(labels)
    }

    pub(crate) fn labels(&mut self) -> Result<Labels, (usize, String)> {
        let pairs = self.label_pairs()?;
        Ok(Labels::from_pairs(pairs.into_iter().map(|label| (label.name, label.value))))
    }

    pub(crate) fn entry(&mut self, previous_ns: i64) -> Result<LogEntry, (usize, String)> {
        let timestamp_ns = previous_ns.wrapping_add(self.varint()?);
        let line = self.string()?;
        let structured_metadata = self.label_pairs()?;
        Ok(LogEntry { timestamp_ns, line, structured_metadata })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_truncation_is_reported() {
        let mut out = Vec::new();
        for value in [0i64, 1, -1, 300, i64::MIN, i64::MAX] {
            put_varint(&mut out, value);
        }
        let mut reader = Reader::new(&out);
        for value in [0i64, 1, -1, 300, i64::MIN, i64::MAX] {
            assert_eq!(reader.varint().unwrap(), value);
        }
        assert!(reader.is_empty());
        let mut truncated = Reader::new(&[0x80]);
        assert_eq!(truncated.uvarint().unwrap_err().1, "truncated varint");
        // Every length of varint, with ten bytes or more behind it and without.
        let values = (0..64).flat_map(|bits| [(1u64 << bits) | 1, u64::MAX >> bits, 0x5555_5555_5555_5555 >> bits]);
        for value in values {
            let mut encoded = Vec::new();
            put_uvarint(&mut encoded, value);
            let length = encoded.len();
            encoded.extend_from_slice(&[0x80; 10]);
            for available in [length, encoded.len()] {
                let mut reader = Reader::new(&encoded[..available]);
                assert_eq!(reader.uvarint().unwrap(), value);
                assert_eq!(reader.offset(), length);
            }
        }
        // Eleven bytes without a terminator overflow, within a longer buffer too.
        assert_eq!(Reader::new(&[0xff; 20]).uvarint().unwrap_err().1, "varint overflows 64 bits");
    }

    #[test]
    fn oversized_length_is_refused() {
        let mut out = Vec::new();
        put_uvarint(&mut out, 1000);
        out.extend_from_slice(b"abc");
        assert!(Reader::new(&out).bytes().is_err());
    }
}
