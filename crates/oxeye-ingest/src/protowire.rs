//! A minimal protobuf wire reader for the hot remote_write path: it borrows strings from the request
//! buffer instead of allocating, and reports errors with the field path and the byte position.
//!
//! Wire format: <https://protobuf.dev/programming-guides/encoding/>.

use std::fmt;

/// A protobuf wire type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireType {
    Varint = 0,
    Fixed64 = 1,
    LengthDelimited = 2,
    Fixed32 = 5,
}

/// One field value as it appears on the wire.
#[derive(Debug, Clone, Copy)]
pub(crate) enum WireValue<'a> {
    Varint(u64),
    Fixed64(u64),
    LengthDelimited(&'a [u8]),
    Fixed32(#[allow(dead_code)] u32),
}

impl WireValue<'_> {
    pub(crate) fn wire_type(&self) -> WireType {
        match self {
            WireValue::Varint(_) => WireType::Varint,
            WireValue::Fixed64(_) => WireType::Fixed64,
            WireValue::LengthDelimited(_) => WireType::LengthDelimited,
            WireValue::Fixed32(_) => WireType::Fixed32,
        }
    }
}

/// A decoding failure: a reason and the path of the field, built from the inside out as the error
/// travels up through the nested messages.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WireError {
    pub(crate) path: String,
    pub(crate) reason: String,
}

impl WireError {
    pub(crate) fn new(reason: impl Into<String>) -> Self {
        WireError { path: String::new(), reason: reason.into() }
    }

    /// Prefixes the path with `segment` (e.g. `timeseries[3]`).
    pub(crate) fn within(mut self, segment: impl fmt::Display) -> Self {
        self.path = if self.path.is_empty() {
            segment.to_string()
        } else if self.path.starts_with('[') {
            format!("{segment}{}", self.path)
        } else {
            format!("{segment}.{}", self.path)
        };
        self
    }

    /// An error for a known field that arrived with the wrong wire type.
    pub(crate) fn wrong_wire_type(field: &str, found: WireType, expected: WireType) -> Self {
        WireError::new(format!("invalid wire type {} (expected {})", found as u8, expected as u8)).within(field)
    }
}

/// Reads fields one after another from a message's bytes. `base` is the message's offset in the whole
/// body, so positions in errors are absolute.
pub(crate) struct FieldReader<'a> {
    bytes: &'a [u8],
    position: usize,
    base: usize,
}

impl<'a> FieldReader<'a> {
    pub(crate) fn new(bytes: &'a [u8], base: usize) -> Self {
        FieldReader { bytes, position: 0, base }
    }

    /// The absolute offset of the next unread byte.
    pub(crate) fn absolute_position(&self) -> usize {
        self.base + self.position
    }

    /// The next field number and value, or `None` at the end of the message.
    #[inline]
    pub(crate) fn next_field(&mut self) -> Result<Option<(u32, WireValue<'a>)>, WireError> {
        if self.position >= self.bytes.len() {
            return Ok(None);
        }
        let key_position = self.absolute_position();
        let key = self.read_short_varint()?;
        let field_number = key >> 3;
        if field_number == 0 || field_number > u64::from(u32::MAX >> 3) {
            return Err(WireError::new(format!("invalid field number {field_number} at byte {key_position}")));
        }
        let value = match key & 7 {
            0 => WireValue::Varint(self.read_varint()?),
            1 => WireValue::Fixed64(u64::from_le_bytes(self.read_array::<8>()?)),
            2 => {
                let length_position = self.absolute_position();
                let length = self.read_short_varint()?;
                let start = self.position;
                let end = usize::try_from(length)
                    .ok()
                    .and_then(|length| start.checked_add(length))
                    .filter(|end| *end <= self.bytes.len())
                    .ok_or_else(|| {
                        WireError::new(format!(
                            "length {length} at byte {length_position} runs past the end of the message at byte {}",
                            self.base + self.bytes.len()
                        ))
                    })?;
                self.position = end;
                WireValue::LengthDelimited(&self.bytes[start..end])
            }
            5 => WireValue::Fixed32(u32::from_le_bytes(self.read_array::<4>()?)),
            other => {
                return Err(WireError::new(format!(
                    "unsupported wire type {other} (field {field_number}) at byte {key_position}"
                )));
            }
        };
        Ok(Some((field_number as u32, value)))
    }

    /// A varint that is almost always one byte (keys, short lengths): a fast path for that case.
    #[inline(always)]
    fn read_short_varint(&mut self) -> Result<u64, WireError> {
        match self.bytes.get(self.position) {
            Some(&byte) if byte < 0x80 => {
                self.position += 1;
                Ok(u64::from(byte))
            }
            _ => self.read_varint(),
        }
    }

    #[inline]
    fn read_varint(&mut self) -> Result<u64, WireError> {
        let start = self.position;
        let mut value: u64 = 0;
        for shift_index in 0..10 {
            let Some(&byte) = self.bytes.get(self.position) else {
                return Err(WireError::new(format!("truncated varint at byte {}", self.base + start)));
            };
            self.position += 1;
            value |= u64::from(byte & 0x7f) << (7 * shift_index);
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(WireError::new(format!("varint longer than 10 bytes at byte {}", self.base + start)))
    }

    #[inline]
    fn read_array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let start = self.position;
        let slice = self
            .bytes
            .get(start..start + N)
            .ok_or_else(|| WireError::new(format!("truncated {N}-byte value at byte {}", self.base + start)))?;
        self.position += N;
        let mut array = [0u8; N];
        array.copy_from_slice(slice);
        Ok(array)
    }
}

/// Reads a length-delimited value as a message: its bytes and their absolute offset.
#[inline]
pub(crate) fn sub_message<'a>(
    reader: &FieldReader<'a>,
    value: WireValue<'a>,
    field: &str,
) -> Result<(&'a [u8], usize), WireError> {
    match value {
        WireValue::LengthDelimited(bytes) => Ok((bytes, reader.absolute_position() - bytes.len())),
        other => Err(WireError::wrong_wire_type(field, other.wire_type(), WireType::LengthDelimited)),
    }
}

/// Reads a length-delimited value as raw bytes.
#[inline]
pub(crate) fn bytes_field<'a>(value: WireValue<'a>, field: &str) -> Result<&'a [u8], WireError> {
    match value {
        WireValue::LengthDelimited(bytes) => Ok(bytes),
        other => Err(WireError::wrong_wire_type(field, other.wire_type(), WireType::LengthDelimited)),
    }
}

/// Reads a varint value.
#[inline]
pub(crate) fn varint_field(value: WireValue<'_>, field: &str) -> Result<u64, WireError> {
    match value {
        WireValue::Varint(number) => Ok(number),
        other => Err(WireError::wrong_wire_type(field, other.wire_type(), WireType::Varint)),
    }
}

/// Reads a `double` value.
#[inline]
pub(crate) fn double_field(value: WireValue<'_>, field: &str) -> Result<f64, WireError> {
    match value {
        WireValue::Fixed64(bits) => Ok(f64::from_bits(bits)),
        other => Err(WireError::wrong_wire_type(field, other.wire_type(), WireType::Fixed64)),
    }
}

/// Appends the values of a `repeated uint32` field, packed or not.
pub(crate) fn repeated_u32_field(value: WireValue<'_>, field: &str, into: &mut Vec<u32>) -> Result<(), WireError> {
    match value {
        WireValue::Varint(number) => {
            into.push(number as u32);
            Ok(())
        }
        WireValue::LengthDelimited(bytes) => {
            let mut position = 0;
            while position < bytes.len() {
                let mut number: u64 = 0;
                let mut shift_index = 0;
                loop {
                    let Some(&byte) = bytes.get(position) else {
                        return Err(WireError::new("truncated packed varint").within(field));
                    };
                    position += 1;
                    if shift_index >= 10 {
                        return Err(WireError::new("packed varint longer than 10 bytes").within(field));
                    }
                    number |= u64::from(byte & 0x7f) << (7 * shift_index);
                    shift_index += 1;
                    if byte < 0x80 {
                        break;
                    }
                }
                into.push(number as u32);
            }
            Ok(())
        }
        other => Err(WireError::wrong_wire_type(field, other.wire_type(), WireType::Varint)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_and_reports_truncation_positions() {
        // field 1 varint 150, field 2 bytes "hi", field 3 fixed64.
        let mut bytes = vec![0x08, 0x96, 0x01, 0x12, 0x02, b'h', b'i', 0x19];
        bytes.extend_from_slice(&1.5f64.to_le_bytes());
        let mut reader = FieldReader::new(&bytes, 0);
        assert!(matches!(reader.next_field(), Ok(Some((1, WireValue::Varint(150))))));
        assert!(matches!(reader.next_field(), Ok(Some((2, WireValue::LengthDelimited(b"hi"))))));
        assert!(matches!(reader.next_field(), Ok(Some((3, WireValue::Fixed64(bits)))) if f64::from_bits(bits) == 1.5));
        assert!(matches!(reader.next_field(), Ok(None)));

        let mut reader = FieldReader::new(&[0x08, 0x96], 10);
        assert_eq!(reader.next_field().expect_err("truncated").reason, "truncated varint at byte 11");
        let mut reader = FieldReader::new(&[0x12, 0x05, b'a'], 0);
        let error = reader.next_field().expect_err("past end");
        assert_eq!(error.reason, "length 5 at byte 1 runs past the end of the message at byte 3");
    }

    #[test]
    fn error_paths_compose_from_the_inside_out() {
        let error = WireError::new("bad").within("value").within("samples[0]").within("timeseries[3]");
        assert_eq!(error.path, "timeseries[3].samples[0].value");
    }
}
