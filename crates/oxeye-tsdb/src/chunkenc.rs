//! Chunk encodings: how a run of samples of one series is compressed.
//!
//! [`Encoding::Xor`] is the Gorilla scheme (Pelkonen et al., VLDB 2015) as Prometheus adapted it:
//! delta-of-delta timestamps in variable bit widths, values XORed with the previous value and stored as
//! the meaningful bits only. A regular scrape costs one bit per timestamp and an unchanged value one bit,
//! so constant series cost about 0.25 bytes per sample. The exact bit layout is in `docs/format.md`.
//!
//! A chunk's bytes start with the number of samples (`u16`, big-endian) followed by the bit stream.
//! Chunks hold at most [`MAX_SAMPLES_PER_CHUNK`] samples; the head also starts a new chunk past
//! [`MAX_CHUNK_BYTES`] bytes and at block boundaries.

use std::fmt;

/// The head starts a new chunk after this many samples (Prometheus' 120).
pub const MAX_SAMPLES_PER_CHUNK: u16 = 120;
/// The head starts a new chunk once the current one is this large, in bytes.
pub const MAX_CHUNK_BYTES: usize = 1024;

/// A chunk's encoding, stored as one byte beside the chunk's data in WAL checkpoints and chunk files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Gorilla XOR: delta-of-delta timestamps, XOR floats.
    Xor,
}

impl Encoding {
    /// The byte stored on disk.
    pub fn to_byte(self) -> u8 {
        match self {
            Encoding::Xor => 1,
        }
    }

    /// The encoding for a stored byte; `None` for an unknown one.
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Encoding::Xor),
            _ => None,
        }
    }
}

/// A chunk's bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkDecodeError {
    /// What was wrong.
    pub reason: &'static str,
}

impl fmt::Display for ChunkDecodeError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "corrupt chunk: {}", self.reason)
    }
}

/// A bit stream writer, most significant bit first.
#[derive(Debug, Clone, Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Unused low bits in the last byte (0 when the last byte is full or there is none).
    free_bits: u32,
}

impl BitWriter {
    fn write_bit(&mut self, bit: bool) {
        if self.free_bits == 0 {
            self.bytes.push(0);
            self.free_bits = 8;
        }
        self.free_bits -= 1;
        if bit && let Some(last) = self.bytes.last_mut() {
            *last |= 1 << self.free_bits;
        }
    }

    /// Writes the low `count` bits of `value` (count <= 64).
    fn write_bits(&mut self, value: u64, count: u32) {
        let mut remaining = count;
        while remaining > 0 {
            if self.free_bits == 0 {
                self.bytes.push(0);
                self.free_bits = 8;
            }
            let take = self.free_bits.min(remaining);
            let shift = remaining - take;
            let piece = ((value >> shift) & ((1u64 << take) - 1)) as u8;
            if let Some(last) = self.bytes.last_mut() {
                *last |= piece << (self.free_bits - take);
            }
            self.free_bits -= take;
            remaining -= take;
        }
    }
}

/// A bit stream reader over a byte slice, most significant bit first.
#[derive(Debug, Clone)]
struct BitReader<'a> {
    bytes: &'a [u8],
    /// Position in bits from the start of `bytes`.
    position: usize,
}

impl<'a> BitReader<'a> {
    fn read_bit(&mut self) -> Result<bool, ChunkDecodeError> {
        let byte = self.bytes.get(self.position / 8).ok_or(ChunkDecodeError { reason: "bit stream ends early" })?;
        let bit = (byte >> (7 - (self.position % 8))) & 1 == 1;
        self.position += 1;
        Ok(bit)
    }

    fn read_bits(&mut self, count: u32) -> Result<u64, ChunkDecodeError> {
        let mut value: u64 = 0;
        let mut remaining = count;
        while remaining > 0 {
            let byte =
                *self.bytes.get(self.position / 8).ok_or(ChunkDecodeError { reason: "bit stream ends early" })?;
            let offset = (self.position % 8) as u32;
            let available = 8 - offset;
            let take = available.min(remaining);
            let piece = (u64::from(byte) >> (available - take)) & ((1u64 << take) - 1);
            value = if take == 64 { piece } else { (value << take) | piece };
            self.position += take as usize;
            remaining -= take;
        }
        Ok(value)
    }
}

/// Delta-of-delta buckets: prefix length in bits, prefix value, payload bits. The last bucket takes any
/// 64-bit value.
const DOD_BUCKETS: [(u32, u64, u32); 3] = [(2, 0b10, 14), (3, 0b110, 17), (4, 0b1110, 20)];

fn fits_signed(value: i64, bits: u32) -> bool {
    let bound = 1i64 << (bits - 1);
    (-bound..bound).contains(&value)
}

fn write_dod(writer: &mut BitWriter, dod: i64) {
    if dod == 0 {
        writer.write_bit(false);
        return;
    }
    for (prefix_bits, prefix, payload_bits) in DOD_BUCKETS {
        if fits_signed(dod, payload_bits) {
            writer.write_bits(prefix, prefix_bits);
            writer.write_bits(dod as u64 & ((1u64 << payload_bits) - 1), payload_bits);
            return;
        }
    }
    writer.write_bits(0b1111, 4);
    writer.write_bits(dod as u64, 64);
}

fn read_dod(reader: &mut BitReader<'_>) -> Result<i64, ChunkDecodeError> {
    let mut ones = 0;
    while ones < 4 && reader.read_bit()? {
        ones += 1;
    }
    let payload_bits = match ones {
        0 => return Ok(0),
        1 => 14,
        2 => 17,
        3 => 20,
        _ => return Ok(reader.read_bits(64)? as i64),
    };
    let raw = reader.read_bits(payload_bits)?;
    // Sign-extend the payload.
    let shift = 64 - payload_bits;
    Ok(((raw << shift) as i64) >> shift)
}

/// "No previous XOR window" marker for `leading`.
const NO_WINDOW: u8 = 0xff;

/// The state both the appender and the iterator carry from sample to sample.
#[derive(Debug, Clone, Copy)]
struct XorState {
    timestamp_ms: i64,
    delta_ms: i64,
    value_bits: u64,
    leading: u8,
    trailing: u8,
}

fn write_value(writer: &mut BitWriter, state: &mut XorState, value_bits: u64) {
    let xor = value_bits ^ state.value_bits;
    if xor == 0 {
        writer.write_bit(false);
        return;
    }
    writer.write_bit(true);
    let leading = (xor.leading_zeros() as u8).min(31);
    let trailing = xor.trailing_zeros() as u8;
    if state.leading != NO_WINDOW && leading >= state.leading && trailing >= state.trailing {
        writer.write_bit(false);
        let significant = 64 - u32::from(state.leading) - u32::from(state.trailing);
        writer.write_bits(xor >> state.trailing, significant);
    } else {
        writer.write_bit(true);
        let significant = 64 - u32::from(leading) - u32::from(trailing);
        writer.write_bits(u64::from(leading), 5);
        // 64 significant bits are written as 0: six bits hold 0..=63.
        writer.write_bits(u64::from(significant % 64), 6);
        writer.write_bits(xor >> trailing, significant);
        state.leading = leading;
        state.trailing = trailing;
    }
    state.value_bits = value_bits;
}

fn read_value(reader: &mut BitReader<'_>, state: &mut XorState) -> Result<(), ChunkDecodeError> {
    if !reader.read_bit()? {
        return Ok(());
    }
    if reader.read_bit()? {
        let leading = reader.read_bits(5)? as u8;
        let mut significant = reader.read_bits(6)? as u8;
        if significant == 0 {
            significant = 64;
        }
        if u32::from(leading) + u32::from(significant) > 64 {
            return Err(ChunkDecodeError { reason: "xor window exceeds 64 bits" });
        }
        state.leading = leading;
        state.trailing = 64 - leading - significant;
    } else if state.leading == NO_WINDOW {
        return Err(ChunkDecodeError { reason: "xor window reused before it was set" });
    }
    let significant = 64 - u32::from(state.leading) - u32::from(state.trailing);
    let bits = reader.read_bits(significant)?;
    let xor = if state.trailing >= 64 { 0 } else { bits << state.trailing };
    state.value_bits ^= xor;
    Ok(())
}

/// Appends samples to an XOR chunk. Timestamps must ascend; the caller checks order.
#[derive(Debug, Clone)]
pub struct XorAppender {
    writer: BitWriter,
    num_samples: u16,
    state: XorState,
}

impl Default for XorAppender {
    fn default() -> Self {
        Self::new()
    }
}

impl XorAppender {
    /// An empty chunk.
    pub fn new() -> Self {
        let writer = BitWriter { bytes: vec![0, 0], free_bits: 0 };
        XorAppender {
            writer,
            num_samples: 0,
            state: XorState { timestamp_ms: 0, delta_ms: 0, value_bits: 0, leading: NO_WINDOW, trailing: 0 },
        }
    }

    /// Continues an existing chunk (e.g. read back from a checkpoint).
    ///
    /// # Errors
    /// [`ChunkDecodeError`] when `bytes` is not a valid XOR chunk.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ChunkDecodeError> {
        let mut iterator = XorIterator::new(bytes)?;
        while iterator.next_sample()?.is_some() {}
        let used_bits = iterator.reader.position;
        let used_bytes = used_bits.div_ceil(8);
        let mut data =
            bytes.get(..2 + used_bytes).ok_or(ChunkDecodeError { reason: "chunk shorter than its bits" })?.to_vec();
        // Clear any junk after the last used bit so later writes can OR into the byte.
        let free_bits = (used_bytes * 8 - used_bits) as u32;
        if free_bits > 0
            && let Some(last) = data.last_mut()
        {
            *last &= !((1u16 << free_bits) - 1) as u8;
        }
        Ok(XorAppender {
            writer: BitWriter { bytes: data, free_bits },
            num_samples: iterator.total,
            state: iterator.state,
        })
    }

    /// Number of samples in the chunk.
    pub fn num_samples(&self) -> u16 {
        self.num_samples
    }

    /// The chunk's current size in bytes.
    pub fn size_bytes(&self) -> usize {
        self.writer.bytes.len()
    }

    /// The chunk's bytes (sample count header included).
    pub fn bytes(&self) -> &[u8] {
        &self.writer.bytes
    }

    /// Consumes the appender into the chunk's bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.writer.bytes
    }

    /// Appends one sample; the value is stored by its bits, so every NaN (the staleness marker included)
    /// comes back bit for bit. Must not be called with more than `u16::MAX` samples.
    pub fn append(&mut self, timestamp_ms: i64, value: f64) {
        let value_bits = value.to_bits();
        match self.num_samples {
            0 => {
                let mut varint = Vec::with_capacity(10);
                crate::encoding::put_varint(&mut varint, timestamp_ms);
                for byte in varint {
                    self.writer.write_bits(u64::from(byte), 8);
                }
                self.writer.write_bits(value_bits, 64);
                self.state.timestamp_ms = timestamp_ms;
                self.state.value_bits = value_bits;
            }
            _ => {
                let delta = timestamp_ms.wrapping_sub(self.state.timestamp_ms);
                let dod = delta.wrapping_sub(self.state.delta_ms);
                write_dod(&mut self.writer, dod);
                write_value(&mut self.writer, &mut self.state, value_bits);
                self.state.timestamp_ms = timestamp_ms;
                self.state.delta_ms = delta;
            }
        }
        self.num_samples = self.num_samples.saturating_add(1);
        let header = self.num_samples.to_be_bytes();
        if let Some(slot) = self.writer.bytes.get_mut(..2) {
            slot.copy_from_slice(&header);
        }
    }
}

/// Iterates the samples of an XOR chunk, oldest first.
#[derive(Debug, Clone)]
pub struct XorIterator<'a> {
    reader: BitReader<'a>,
    total: u16,
    read: u16,
    state: XorState,
}

impl<'a> XorIterator<'a> {
    /// Starts reading `bytes` (sample count header included).
    ///
    /// # Errors
    /// [`ChunkDecodeError`] when the header is missing.
    pub fn new(bytes: &'a [u8]) -> Result<Self, ChunkDecodeError> {
        let header = bytes.get(..2).ok_or(ChunkDecodeError { reason: "chunk shorter than its header" })?;
        let total = u16::from_be_bytes([header[0], header[1]]);
        Ok(XorIterator {
            reader: BitReader { bytes: &bytes[2..], position: 0 },
            total,
            read: 0,
            state: XorState { timestamp_ms: 0, delta_ms: 0, value_bits: 0, leading: NO_WINDOW, trailing: 0 },
        })
    }

    /// The number of samples the chunk says it holds.
    pub fn num_samples(&self) -> u16 {
        self.total
    }

    /// The next sample as `(timestamp_ms, value)`, `None` after the last one.
    ///
    /// # Errors
    /// [`ChunkDecodeError`] when the bit stream is damaged.
    pub fn next_sample(&mut self) -> Result<Option<(i64, f64)>, ChunkDecodeError> {
        if self.read >= self.total {
            return Ok(None);
        }
        if self.read == 0 {
            let mut raw: u64 = 0;
            let mut shift = 0u32;
            loop {
                let byte = self.reader.read_bits(8)?;
                raw |= (byte & 0x7f) << shift;
                if byte < 0x80 {
                    break;
                }
                shift += 7;
                if shift > 63 {
                    return Err(ChunkDecodeError { reason: "first timestamp varint too long" });
                }
            }
            self.state.timestamp_ms = ((raw >> 1) as i64) ^ -((raw & 1) as i64);
            self.state.value_bits = self.reader.read_bits(64)?;
        } else {
            let dod = read_dod(&mut self.reader)?;
            self.state.delta_ms = self.state.delta_ms.wrapping_add(dod);
            self.state.timestamp_ms = self.state.timestamp_ms.wrapping_add(self.state.delta_ms);
            read_value(&mut self.reader, &mut self.state)?;
        }
        self.read += 1;
        Ok(Some((self.state.timestamp_ms, f64::from_bits(self.state.value_bits))))
    }
}

/// Decodes every sample of a chunk of the given encoding into `out`, keeping those with
/// `mint_ms <= timestamp_ms <= maxt_ms`.
///
/// # Errors
/// [`ChunkDecodeError`] when the chunk is damaged.
pub fn decode_into(
    encoding: Encoding,
    bytes: &[u8],
    mint_ms: i64,
    maxt_ms: i64,
    out: &mut Vec<oxeye_model::Sample>,
) -> Result<(), ChunkDecodeError> {
    match encoding {
        Encoding::Xor => {
            let mut iterator = XorIterator::new(bytes)?;
            while let Some((timestamp_ms, value)) = iterator.next_sample()? {
                if timestamp_ms > maxt_ms {
                    break;
                }
                if timestamp_ms >= mint_ms {
                    out.push(oxeye_model::Sample { timestamp_ms, value });
                }
            }
            Ok(())
        }
    }
}

/// Encodes ascending samples into chunks of at most [`MAX_SAMPLES_PER_CHUNK`] samples or
/// [`MAX_CHUNK_BYTES`] bytes; returns `(mint_ms, maxt_ms, encoding, bytes)` per chunk.
pub fn encode_chunks(samples: &[oxeye_model::Sample]) -> Vec<(i64, i64, Encoding, Vec<u8>)> {
    let mut chunks = Vec::new();
    let mut appender = XorAppender::new();
    let mut mint = 0;
    let mut maxt = 0;
    for sample in samples {
        if appender.num_samples() >= MAX_SAMPLES_PER_CHUNK || appender.size_bytes() >= MAX_CHUNK_BYTES {
            chunks.push((mint, maxt, Encoding::Xor, std::mem::take(&mut appender).into_bytes()));
        }
        if appender.num_samples() == 0 {
            mint = sample.timestamp_ms;
        }
        appender.append(sample.timestamp_ms, sample.value);
        maxt = sample.timestamp_ms;
    }
    if appender.num_samples() > 0 {
        chunks.push((mint, maxt, Encoding::Xor, appender.into_bytes()));
    }
    chunks
}

#[cfg(test)]
mod tests {
    use oxeye_model::{STALE_NAN_BITS, Sample};
    use proptest::prelude::*;

    use super::*;

    fn decode_all(bytes: &[u8]) -> Vec<(i64, u64)> {
        let mut iterator = XorIterator::new(bytes).unwrap();
        let mut out = Vec::new();
        while let Some((timestamp_ms, value)) = iterator.next_sample().unwrap() {
            out.push((timestamp_ms, value.to_bits()));
        }
        out
    }

    fn special_value() -> impl Strategy<Value = u64> {
        prop_oneof![
            Just(STALE_NAN_BITS),
            Just(f64::NAN.to_bits()),
            Just(f64::INFINITY.to_bits()),
            Just(f64::NEG_INFINITY.to_bits()),
            Just(0f64.to_bits()),
            Just((-0f64).to_bits()),
            Just(f64::MIN_POSITIVE.to_bits()),
            Just(f64::MAX.to_bits()),
            (0u32..1_000_000).prop_map(|integer| f64::from(integer).to_bits()),
            any::<u64>(),
        ]
    }

    fn timestamp_step() -> impl Strategy<Value = i64> {
        prop_oneof![Just(15_000i64), Just(15_001), 0i64..100, 0i64..10_000_000, 0i64..(i64::MAX / 256),]
    }

    proptest! {
        #[test]
        fn xor_round_trips_any_values_and_gaps(
            start in any::<i64>().prop_map(|start| start / 2),
            steps in proptest::collection::vec(timestamp_step(), 0..200),
            values in proptest::collection::vec(special_value(), 200),
        ) {
            let mut appender = XorAppender::new();
            let mut expected = Vec::new();
            let mut timestamp = start;
            for (step, value_bits) in steps.iter().zip(values.iter()) {
                timestamp = timestamp.saturating_add(*step);
                appender.append(timestamp, f64::from_bits(*value_bits));
                expected.push((timestamp, *value_bits));
            }
            prop_assert_eq!(decode_all(appender.bytes()), expected.clone());
            // Continuing a chunk read back from bytes gives the same result as never stopping.
            let mut continued = XorAppender::from_bytes(appender.bytes()).unwrap();
            let mut reference = appender.clone();
            continued.append(timestamp.saturating_add(1), 42.5);
            reference.append(timestamp.saturating_add(1), 42.5);
            prop_assert_eq!(continued.bytes(), reference.bytes());
        }

        #[test]
        fn damaged_chunks_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(mut iterator) = XorIterator::new(&bytes) {
                while let Ok(Some(_)) = iterator.next_sample() {}
            }
        }
    }

    #[test]
    fn extreme_timestamps_round_trip() {
        let mut appender = XorAppender::new();
        let samples = [(i64::MIN, 1.0), (-1, 2.0), (0, 3.0), (i64::MAX, 4.0)];
        for (timestamp, value) in samples {
            appender.append(timestamp, value);
        }
        let decoded = decode_all(appender.bytes());
        assert_eq!(decoded, samples.iter().map(|(t, v)| (*t, v.to_bits())).collect::<Vec<_>>());
    }

    #[test]
    fn regular_constant_series_cost_about_two_bits_per_sample() {
        let mut appender = XorAppender::new();
        for index in 0..120 {
            appender.append(1_700_000_000_000 + index * 15_000, 1.0);
        }
        // 2 header bytes + ~14 bytes for the first sample and delta, then 2 bits per sample.
        assert!(appender.size_bytes() < 50, "{} bytes", appender.size_bytes());
    }

    #[test]
    fn encode_chunks_splits_and_decodes() {
        let samples: Vec<Sample> =
            (0..300).map(|index| Sample { timestamp_ms: index * 1000, value: index as f64 }).collect();
        let chunks = encode_chunks(&samples);
        assert_eq!(chunks.len(), 3);
        let mut decoded = Vec::new();
        for (mint, maxt, encoding, bytes) in &chunks {
            decode_into(*encoding, bytes, *mint, *maxt, &mut decoded).unwrap();
        }
        assert_eq!(decoded, samples);
    }
}
