//! Byte-level helpers shared by the record, index and chunk file codecs: varints and a bounds-checked
//! decoding cursor that never panics on damaged input.

/// Appends `value` as an unsigned LEB128 varint.
pub(crate) fn put_uvarint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends `value` zigzag-encoded as an unsigned varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, value: i64) {
    put_uvarint(out, ((value << 1) ^ (value >> 63)) as u64);
}

/// Appends a length-prefixed byte string.
pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_uvarint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A decoding cursor over a byte slice; every read checks bounds and reports what was expected.
#[derive(Debug, Clone)]
pub(crate) struct Decoder<'a> {
    bytes: &'a [u8],
    position: usize,
}

/// Why bytes could not be decoded: what was expected and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError {
    pub(crate) position: usize,
    pub(crate) expected: &'static str,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "cannot decode {} at byte {}", self.expected, self.position)
    }
}

impl<'a> Decoder<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Decoder { bytes, position: 0 }
    }

    pub(crate) fn position(&self) -> usize {
        self.position
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.position >= self.bytes.len()
    }

    pub(crate) fn error(&self, expected: &'static str) -> DecodeError {
        DecodeError { position: self.position, expected }
    }

    pub(crate) fn u8(&mut self, expected: &'static str) -> Result<u8, DecodeError> {
        let byte = *self.bytes.get(self.position).ok_or_else(|| self.error(expected))?;
        self.position += 1;
        Ok(byte)
    }

    pub(crate) fn uvarint(&mut self, expected: &'static str) -> Result<u64, DecodeError> {
        let mut value: u64 = 0;
        let mut shift = 0u32;
        loop {
            let byte = self.u8(expected)?;
            if shift == 63 && byte > 1 {
                return Err(self.error(expected));
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
            shift += 7;
            if shift > 63 {
                return Err(self.error(expected));
            }
        }
    }

    /// Steps over `count` varints (signed or not) without decoding them; each must end within the input.
    pub(crate) fn skip_varints(&mut self, count: usize, expected: &'static str) -> Result<(), DecodeError> {
        for _ in 0..count {
            let rest = self.bytes.get(self.position..).unwrap_or_default();
            // A varint ends at its first byte below 0x80.
            let length = rest.iter().position(|byte| *byte < 0x80).ok_or_else(|| self.error(expected))? + 1;
            self.position += length;
        }
        Ok(())
    }

    pub(crate) fn varint(&mut self, expected: &'static str) -> Result<i64, DecodeError> {
        let raw = self.uvarint(expected)?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    /// A count that must fit in usize and be plausible for the remaining bytes (each item takes at least
    /// `min_item_bytes`), so damaged input cannot make us allocate without bound.
    pub(crate) fn count(&mut self, min_item_bytes: usize, expected: &'static str) -> Result<usize, DecodeError> {
        let raw = self.uvarint(expected)?;
        let remaining = self.bytes.len().saturating_sub(self.position);
        let count = usize::try_from(raw).map_err(|_| self.error(expected))?;
        if count.saturating_mul(min_item_bytes.max(1)) > remaining && min_item_bytes > 0 {
            return Err(self.error(expected));
        }
        Ok(count)
    }

    pub(crate) fn take(&mut self, length: usize, expected: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = self.position.checked_add(length).ok_or_else(|| self.error(expected))?;
        let slice = self.bytes.get(self.position..end).ok_or_else(|| self.error(expected))?;
        self.position = end;
        Ok(slice)
    }

    pub(crate) fn bytes(&mut self, expected: &'static str) -> Result<&'a [u8], DecodeError> {
        let length = self.uvarint(expected)?;
        let length = usize::try_from(length).map_err(|_| self.error(expected))?;
        self.take(length, expected)
    }

    pub(crate) fn str(&mut self, expected: &'static str) -> Result<&'a str, DecodeError> {
        let start = self.position;
        let bytes = self.bytes(expected)?;
        std::str::from_utf8(bytes).map_err(|_| DecodeError { position: start, expected })
    }

    pub(crate) fn u64_le(&mut self, expected: &'static str) -> Result<u64, DecodeError> {
        let bytes = self.take(8, expected)?;
        let mut array = [0u8; 8];
        array.copy_from_slice(bytes);
        Ok(u64::from_le_bytes(array))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_the_extremes() {
        let mut out = Vec::new();
        for value in [0i64, 1, -1, 63, -64, i64::MAX, i64::MIN] {
            put_varint(&mut out, value);
        }
        put_uvarint(&mut out, u64::MAX);
        let mut decoder = Decoder::new(&out);
        for value in [0i64, 1, -1, 63, -64, i64::MAX, i64::MIN] {
            assert_eq!(decoder.varint("value").unwrap(), value);
        }
        assert_eq!(decoder.uvarint("max").unwrap(), u64::MAX);
        assert!(decoder.is_empty());
        assert!(Decoder::new(&[0xff; 11]).uvarint("overlong").is_err());
        assert!(Decoder::new(&[5, b'a']).bytes("short").is_err());
    }
}
