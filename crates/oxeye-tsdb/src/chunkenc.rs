//! Chunk encodings: how a run of samples of one series is compressed.
//!
//! [`Encoding::Xor`] is the Gorilla scheme (Pelkonen et al., VLDB 2015) as Prometheus adapted it:
//! delta-of-delta timestamps in variable bit widths, values XORed with the previous value and stored as
//! the meaningful bits only. A regular scrape costs one bit per timestamp and an unchanged value one bit.
//! The head appends in this encoding when values are not exact decimals.
//!
//! [`Encoding::ScaledInt`] is for closed chunks whose values are all exact decimals `n / 10^k`
//! (integer counters, gauges with a few decimals): the integers `n` as deltas or deltas of deltas, and
//! runs of zeros (unchanged values, perfectly regular timestamps) collapsed, so a constant series costs
//! about a byte per ten samples. [`encode_best`] and [`recode_closed`] pick the smaller encoding.
//!
//! [`Encoding::ScaledIntAppendable`] is the head's open-chunk form of the same integers, written sample
//! by sample ([`HeadAppender`]); closed chunks are re-encoded out of it, so blocks never hold it.
//! The exact bit layouts are in `docs/format.md`.
//!
//! A chunk's bytes start with the number of samples (`u16`, big-endian) followed by the bit stream.
//! Chunks hold at most [`MAX_SAMPLES_PER_CHUNK`] samples; the head also starts a new chunk past
//! [`MAX_CHUNK_BYTES`] bytes and at block boundaries.

use std::fmt;

mod appendable;

pub use appendable::{HeadAppender, ScaledIntAppendableIterator};

/// The head starts a new chunk after this many samples (Prometheus' 120).
pub const MAX_SAMPLES_PER_CHUNK: u16 = 120;
/// The head starts a new chunk once the current one is this large, in bytes. One sample adds at most
/// 19 bytes, so an open chunk's buffer never outgrows 512 bytes: the open chunk is what an active
/// series keeps in RAM (closed chunks move to disk).
pub const MAX_CHUNK_BYTES: usize = 480;

/// A chunk's encoding, stored as one byte beside the chunk's data in WAL checkpoints and chunk files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Gorilla XOR: delta-of-delta timestamps, XOR floats.
    Xor,
    /// Values that are all exact decimals `n / 10^k` (integers for k = 0): delta-of-delta timestamps,
    /// and the integers `n` as deltas or deltas of deltas in variable bit widths. Closed chunks are
    /// re-encoded this way when it is smaller than XOR.
    ScaledInt,
    /// The same integers in append order, for open head chunks ([`HeadAppender`]): per sample the
    /// timestamp's delta of delta (left out while the timestamps stay evenly spaced) and the integer's
    /// delta of delta. In WAL checkpoints, never in blocks.
    ScaledIntAppendable,
}

impl Encoding {
    /// The byte stored on disk.
    pub fn to_byte(self) -> u8 {
        match self {
            Encoding::Xor => 1,
            Encoding::ScaledInt => 2,
            Encoding::ScaledIntAppendable => 3,
        }
    }

    /// The encoding for a stored byte; `None` for an unknown one.
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Encoding::Xor),
            2 => Some(Encoding::ScaledInt),
            3 => Some(Encoding::ScaledIntAppendable),
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
        if count == 0 {
            return;
        }
        let value = if count == 64 { value } else { value & ((1u64 << count) - 1) };
        let mut remaining = count;
        if self.free_bits > 0 {
            let take = self.free_bits.min(remaining);
            let piece = ((value >> (remaining - take)) & ((1u64 << take) - 1)) as u8;
            if let Some(last) = self.bytes.last_mut() {
                *last |= piece << (self.free_bits - take);
            }
            self.free_bits -= take;
            remaining -= take;
        }
        while remaining >= 8 {
            remaining -= 8;
            self.bytes.push((value >> remaining) as u8);
        }
        if remaining > 0 {
            // The low `remaining` bits move to the top of a new byte; `as u8` drops the rest.
            self.bytes.push((value << (8 - remaining)) as u8);
            self.free_bits = 8 - remaining;
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
    const ENDS_EARLY: ChunkDecodeError = ChunkDecodeError { reason: "bit stream ends early" };

    /// The next 64 bits from the current position, most significant first, without consuming them;
    /// bits past the end of the stream read as zeros.
    fn peek_word(&self) -> u64 {
        let byte = self.position / 8;
        let mut word = [0u8; 8];
        match self.bytes.get(byte..byte + 8) {
            Some(bytes) => word.copy_from_slice(bytes),
            None => {
                let rest = self.bytes.get(byte..).unwrap_or_default();
                word[..rest.len()].copy_from_slice(rest);
            }
        }
        u64::from_be_bytes(word) << (self.position % 8)
    }

    /// Consumes `count` bits, failing when fewer remain.
    fn advance(&mut self, count: usize) -> Result<(), ChunkDecodeError> {
        let position = self.position + count;
        if position > self.bytes.len() * 8 {
            return Err(Self::ENDS_EARLY);
        }
        self.position = position;
        Ok(())
    }

    fn read_bits(&mut self, count: u32) -> Result<u64, ChunkDecodeError> {
        if count == 0 {
            return Ok(0);
        }
        // A word peeked at a position that is not byte-aligned holds at least 57 bits of the stream.
        if count > 56 {
            let high = self.read_bits(count - 32)?;
            let low = self.read_bits(32)?;
            return Ok((high << 32) | low);
        }
        let value = self.peek_word() >> (64 - count);
        self.advance(count as usize)?;
        Ok(value)
    }
}

/// Variable-width integer buckets: prefix bits, prefix value, payload bits. Zero is the single bit `0`;
/// values outside every bucket take the prefix `111111` and 64 bits.
const VARBIT_BUCKETS: [(u32, u64, u32); 5] =
    [(2, 0b10, 3), (3, 0b110, 7), (4, 0b1110, 13), (5, 0b11110, 20), (6, 0b111110, 32)];
const VARBIT_WIDE_PREFIX: (u32, u64) = (6, 0b111111);

fn fits_signed(value: i64, bits: u32) -> bool {
    let bound = 1i64 << (bits - 1);
    (-bound..bound).contains(&value)
}

/// Bits [`write_varbit`] uses for `value`.
fn varbit_cost(value: i64) -> u32 {
    if value == 0 {
        return 1;
    }
    VARBIT_BUCKETS
        .iter()
        .find(|(_, _, payload_bits)| fits_signed(value, *payload_bits))
        .map(|(prefix_bits, _, payload_bits)| prefix_bits + payload_bits)
        .unwrap_or(VARBIT_WIDE_PREFIX.0 + 64)
}

/// Writes a signed integer in the smallest bucket that holds it (two's complement payload).
fn write_varbit(writer: &mut BitWriter, value: i64) {
    if value == 0 {
        writer.write_bit(false);
        return;
    }
    for (prefix_bits, prefix, payload_bits) in VARBIT_BUCKETS {
        if fits_signed(value, payload_bits) {
            writer.write_bits(prefix, prefix_bits);
            writer.write_bits(value as u64 & ((1u64 << payload_bits) - 1), payload_bits);
            return;
        }
    }
    writer.write_bits(VARBIT_WIDE_PREFIX.1, VARBIT_WIDE_PREFIX.0);
    writer.write_bits(value as u64, 64);
}

/// Reads a varbit written by [`write_varbit`]: prefix and payload come from one peeked word (a prefix
/// of at most 6 bits and a payload of at most 32 fit the 57 bits a peek holds), only the 64-bit form
/// reads further.
fn read_varbit(reader: &mut BitReader<'_>) -> Result<i64, ChunkDecodeError> {
    let word = reader.peek_word();
    read_peeked_varbit(reader, word)
}

/// [`read_varbit`] with the reader's next 64 bits already peeked into `word`.
fn read_peeked_varbit(reader: &mut BitReader<'_>, word: u64) -> Result<i64, ChunkDecodeError> {
    if word >> 63 == 0 {
        reader.advance(1)?;
        return Ok(0);
    }
    let ones = (!word).leading_zeros().min(VARBIT_WIDE_PREFIX.0);
    let Some((_, _, payload_bits)) = VARBIT_BUCKETS.get(ones as usize - 1) else {
        reader.advance(VARBIT_WIDE_PREFIX.0 as usize)?;
        return Ok(reader.read_bits(64)? as i64);
    };
    // The ones and the zero that ends them.
    let prefix_bits = ones + 1;
    reader.advance((prefix_bits + payload_bits) as usize)?;
    let raw = (word << prefix_bits) >> (64 - payload_bits);
    // Sign-extend the payload.
    let shift = 64 - payload_bits;
    Ok(((raw << shift) as i64) >> shift)
}

/// The longest zero run one run token holds.
const MAX_ZERO_RUN: usize = 129;

/// Bits [`write_zero_run_stream`] uses for `values`.
fn zero_run_cost(values: &[i64]) -> u32 {
    let mut bits = 0;
    let mut run = 0usize;
    let run_cost = |run: usize| -> u32 {
        let full = (run / MAX_ZERO_RUN) as u32 * 9;
        full + match run % MAX_ZERO_RUN {
            0 => 0,
            1 => 2,
            _ => 9,
        }
    };
    for value in values {
        if *value == 0 {
            run += 1;
        } else {
            bits += run_cost(run) + varbit_cost(*value);
            run = 0;
        }
    }
    bits + run_cost(run)
}

/// Writes integers with runs of zeros collapsed: a run is `0` followed by `0` (one zero) or `1` and
/// 7 bits (2 to 129 zeros); any other value is a varbit, whose first bit is `1`.
fn write_zero_run_stream(writer: &mut BitWriter, values: &[i64]) {
    let mut run = 0usize;
    let flush = |writer: &mut BitWriter, mut run: usize| {
        while run > 0 {
            let piece = run.min(MAX_ZERO_RUN);
            writer.write_bit(false);
            if piece == 1 {
                writer.write_bit(false);
            } else {
                writer.write_bit(true);
                writer.write_bits((piece - 2) as u64, 7);
            }
            run -= piece;
        }
    };
    for value in values {
        if *value == 0 {
            run += 1;
        } else {
            flush(writer, run);
            run = 0;
            write_varbit(writer, *value);
        }
    }
    flush(writer, run);
}

fn read_zero_run_stream(reader: &mut BitReader<'_>, count: usize, out: &mut Vec<i64>) -> Result<(), ChunkDecodeError> {
    let mut stream = IntegerStream::new(true, count);
    for _ in 0..count {
        out.push(stream.next(reader)?);
    }
    Ok(())
}

fn read_plain_stream(reader: &mut BitReader<'_>, count: usize, out: &mut Vec<i64>) -> Result<(), ChunkDecodeError> {
    for _ in 0..count {
        out.push(read_varbit(reader)?);
    }
    Ok(())
}

fn write_varint_bits(writer: &mut BitWriter, value: i64) {
    let mut varint = Vec::with_capacity(10);
    crate::encoding::put_varint(&mut varint, value);
    for byte in varint {
        writer.write_bits(u64::from(byte), 8);
    }
}

fn read_varint_bits(reader: &mut BitReader<'_>) -> Result<i64, ChunkDecodeError> {
    let mut raw: u64 = 0;
    let mut shift = 0u32;
    loop {
        let byte = reader.read_bits(8)?;
        raw |= (byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
        shift += 7;
        if shift > 63 {
            return Err(ChunkDecodeError { reason: "varint too long" });
        }
    }
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

/// How [`write_value`] stores a value against the previous one: `xor` is the two values' bits XORed.
#[derive(Debug, Clone, Copy)]
enum ValueCode {
    /// `0`: the same bits.
    Unchanged,
    /// `10` and the XOR's bits inside the previous window.
    InWindow { significant: u32 },
    /// `11`, 5 bits of leading zeros, 6 bits of window length, the window's bits.
    NewWindow { leading: u8, trailing: u8, significant: u32 },
}

impl ValueCode {
    fn of(state: &XorState, xor: u64) -> Self {
        if xor == 0 {
            return ValueCode::Unchanged;
        }
        let leading = (xor.leading_zeros() as u8).min(31);
        let trailing = xor.trailing_zeros() as u8;
        if state.leading != NO_WINDOW && leading >= state.leading && trailing >= state.trailing {
            ValueCode::InWindow { significant: 64 - u32::from(state.leading) - u32::from(state.trailing) }
        } else {
            ValueCode::NewWindow { leading, trailing, significant: 64 - u32::from(leading) - u32::from(trailing) }
        }
    }

    /// Bits the code takes in the stream.
    fn bits(self) -> u32 {
        match self {
            ValueCode::Unchanged => 1,
            ValueCode::InWindow { significant } => 2 + significant,
            ValueCode::NewWindow { significant, .. } => 2 + 5 + 6 + significant,
        }
    }
}

fn write_value(writer: &mut BitWriter, state: &mut XorState, value_bits: u64) {
    let xor = value_bits ^ state.value_bits;
    match ValueCode::of(state, xor) {
        ValueCode::Unchanged => {
            writer.write_bit(false);
            return;
        }
        ValueCode::InWindow { significant } => {
            writer.write_bits(0b10, 2);
            writer.write_bits(xor >> state.trailing, significant);
        }
        ValueCode::NewWindow { leading, trailing, significant } => {
            writer.write_bits(0b11, 2);
            writer.write_bits(u64::from(leading), 5);
            // 64 significant bits are written as 0: six bits hold 0..=63.
            writer.write_bits(u64::from(significant % 64), 6);
            writer.write_bits(xor >> trailing, significant);
            state.leading = leading;
            state.trailing = trailing;
        }
    }
    state.value_bits = value_bits;
}

/// Reads one value written by [`write_value`]. The control bits (and a new window's 11 bits) come from
/// one peeked word: at most 13 bits, well inside the 57 a peek holds.
fn read_value(reader: &mut BitReader<'_>, state: &mut XorState) -> Result<(), ChunkDecodeError> {
    let word = reader.peek_word();
    if word >> 63 == 0 {
        return reader.advance(1);
    }
    if (word >> 62) & 1 == 1 {
        let leading = ((word >> 57) & 0x1f) as u8;
        // 64 significant bits are written as 0.
        let significant = match ((word >> 51) & 0x3f) as u8 {
            0 => 64,
            bits => bits,
        };
        if u32::from(leading) + u32::from(significant) > 64 {
            return Err(ChunkDecodeError { reason: "xor window exceeds 64 bits" });
        }
        reader.advance(2 + 5 + 6)?;
        state.leading = leading;
        state.trailing = 64 - leading - significant;
    } else {
        if state.leading == NO_WINDOW {
            return Err(ChunkDecodeError { reason: "xor window reused before it was set" });
        }
        reader.advance(2)?;
    }
    let significant = 64 - u32::from(state.leading) - u32::from(state.trailing);
    let bits = reader.read_bits(significant)?;
    let xor = if state.trailing >= 64 { 0 } else { bits << state.trailing };
    state.value_bits ^= xor;
    Ok(())
}

/// The most bytes one sample adds to an XOR chunk. Timestamp: at most 6 prefix bits and 64 bits (or a
/// 10-byte varint for the first sample); value: at most 2 control bits, 5 + 6 window bits and 64 bits.
const MAX_SAMPLE_BYTES: usize = 20;

/// The size class jemalloc (the binary's allocator) serves a request of `bytes` from: classes are 8
/// and 16 bytes, then multiples of 16 up to 128, then four per doubling (160, 192, 224, 256, 320, ...).
/// A buffer may use its whole class at no cost; other allocators are served no worse for it.
fn allocator_size_class(bytes: usize) -> usize {
    if bytes <= 16 {
        return bytes.next_multiple_of(8).max(8);
    }
    let below = 1usize << (bytes - 1).ilog2();
    bytes.next_multiple_of((below / 4).max(16))
}

/// Appends samples to an XOR chunk of any timestamps (imported history, re-encoding). Timestamps must
/// ascend; the caller checks order. The head's open chunks use [`HeadAppender`], which falls back to the
/// same XOR stream. The sample count lives in the chunk's own header bytes.
#[derive(Debug, Clone)]
pub struct XorAppender {
    /// The chunk's bytes, then zeroed room for the next samples: the buffer's length is its capacity, so
    /// no separate capacity field is stored.
    buffer: Box<[u8]>,
    /// Bytes of `buffer` holding the chunk.
    used: u32,
    timestamp_ms: i64,
    delta_ms: i64,
    value_bits: u64,
    free_bits: u8,
    leading: u8,
    trailing: u8,
}

impl Default for XorAppender {
    fn default() -> Self {
        Self::new()
    }
}

impl XorAppender {
    /// An empty chunk.
    pub fn new() -> Self {
        // Room for the header and the first samples, so a new chunk does not reallocate at every byte.
        XorAppender {
            buffer: vec![0; 32].into_boxed_slice(),
            used: 2,
            timestamp_ms: 0,
            delta_ms: 0,
            value_bits: 0,
            free_bits: 0,
            leading: NO_WINDOW,
            trailing: 0,
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
        let free_bits = (used_bytes * 8 - used_bits) as u8;
        if free_bits > 0
            && let Some(last) = data.last_mut()
        {
            *last &= !((1u16 << free_bits) - 1) as u8;
        }
        let state = iterator.state;
        let used = u32::try_from(data.len()).map_err(|_| ChunkDecodeError { reason: "chunk too large" })?;
        Ok(XorAppender {
            buffer: data.into_boxed_slice(),
            used,
            timestamp_ms: state.timestamp_ms,
            delta_ms: state.delta_ms,
            value_bits: state.value_bits,
            free_bits,
            leading: state.leading,
            trailing: state.trailing,
        })
    }

    /// Number of samples in the chunk.
    pub fn num_samples(&self) -> u16 {
        match self.bytes() {
            [high, low, ..] => u16::from_be_bytes([*high, *low]),
            _ => 0,
        }
    }

    /// The bits of the newest sample's value (0 for an empty chunk).
    pub fn last_value_bits(&self) -> u64 {
        self.value_bits
    }

    /// The newest sample's timestamp in milliseconds (0 for an empty chunk).
    pub fn last_timestamp_ms(&self) -> i64 {
        self.timestamp_ms
    }

    /// The oldest sample's timestamp in milliseconds (0 for an empty chunk): read from the chunk's
    /// first bytes (the first timestamp is a byte-aligned varint after the header), so every open head
    /// chunk saves keeping it.
    pub fn first_timestamp_ms(&self) -> i64 {
        first_timestamp_ms(self.bytes(), 2)
    }

    /// The chunk's current size in bytes.
    pub fn size_bytes(&self) -> usize {
        self.used as usize
    }

    /// The capacity of the chunk's buffer in bytes (its size plus room reserved for the next samples).
    pub fn capacity_bytes(&self) -> usize {
        self.buffer.len()
    }

    /// The chunk's bytes (sample count header included).
    pub fn bytes(&self) -> &[u8] {
        &self.buffer[..self.used as usize]
    }

    /// Consumes the appender into the chunk's bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        chunk_of_buffer(self.buffer, self.used)
    }

    fn state(&self) -> XorState {
        XorState {
            timestamp_ms: self.timestamp_ms,
            delta_ms: self.delta_ms,
            value_bits: self.value_bits,
            leading: self.leading,
            trailing: self.trailing,
        }
    }

    /// Bits the sample after the current ones takes in the stream (for the first sample, the most any
    /// sample takes).
    #[cfg(test)]
    fn sample_bits(&self, num_samples: u16, timestamp_ms: i64, value_bits: u64) -> u32 {
        xor_sample_bits(&self.state(), num_samples, timestamp_ms, value_bits)
    }

    /// Appends one sample; the value is stored by its bits, so every NaN (the staleness marker included)
    /// comes back bit for bit. Must not be called with more than `u16::MAX` samples.
    pub fn append(&mut self, timestamp_ms: i64, value: f64) {
        let num_samples = self.num_samples();
        let mut state = self.state();
        (self.used, self.free_bits) = append_xor_sample(
            &mut self.buffer,
            self.used,
            self.free_bits,
            num_samples,
            &mut state,
            timestamp_ms,
            value,
        );
        self.timestamp_ms = state.timestamp_ms;
        self.delta_ms = state.delta_ms;
        self.value_bits = state.value_bits;
        self.leading = state.leading;
        self.trailing = state.trailing;
    }
}

/// Appends one sample to the XOR chunk in `buffer` (`used` bytes, `free_bits` unused in the last) with
/// `num_samples` samples before it, and advances `state` to it; returns the new `used` and `free_bits`.
fn append_xor_sample(
    buffer: &mut Box<[u8]>,
    used: u32,
    free_bits: u8,
    num_samples: u16,
    state: &mut XorState,
    timestamp_ms: i64,
    value: f64,
) -> (u32, u8) {
    let value_bits = value.to_bits();
    let room = ChunkRoom { num_samples, first_sample_end: xor_first_sample_end };
    let sample_bits = || xor_sample_bits(state, num_samples, timestamp_ms, value_bits);
    let mut writer = room.writer(buffer, used, free_bits, sample_bits);
    write_xor_sample(&mut writer, state, num_samples, timestamp_ms, value_bits);
    set_sample_count(&mut writer, num_samples.saturating_add(1));
    room.store(writer, buffer)
}

/// The first timestamp of a chunk whose stream starts with it as a varint after `header_bytes`, 0
/// for a chunk without samples.
fn first_timestamp_ms(bytes: &[u8], header_bytes: usize) -> i64 {
    let has_samples = matches!(bytes, [high, low, ..] if (*high, *low) != (0, 0));
    let Some(stream) = bytes.get(header_bytes..).filter(|_| has_samples) else { return 0 };
    // Byte by byte (the head reads it at every append); an appender wrote it, so it ends within 10 bytes.
    let mut raw = 0u64;
    for (index, byte) in stream.iter().take(10).enumerate() {
        raw |= u64::from(byte & 0x7f) << (7 * index);
        if *byte < 0x80 {
            return ((raw >> 1) as i64) ^ -((raw & 1) as i64);
        }
    }
    0
}

/// An open chunk's bytes out of its buffer (`used` bytes, then room).
fn chunk_of_buffer(buffer: Box<[u8]>, used: u32) -> Vec<u8> {
    let mut bytes = buffer.into_vec();
    bytes.truncate(used as usize);
    bytes
}

/// Bits an XOR sample takes after `num_samples` others (for the first sample, the most any sample takes).
fn xor_sample_bits(state: &XorState, num_samples: u16, timestamp_ms: i64, value_bits: u64) -> u32 {
    if num_samples == 0 {
        return MAX_SAMPLE_BYTES as u32 * 8;
    }
    let delta = timestamp_ms.wrapping_sub(state.timestamp_ms);
    varbit_cost(delta.wrapping_sub(state.delta_ms)) + ValueCode::of(state, value_bits ^ state.value_bits).bits()
}

/// Writes one XOR sample after `num_samples` others and advances `state` to it.
fn write_xor_sample(
    writer: &mut BitWriter,
    state: &mut XorState,
    num_samples: u16,
    timestamp_ms: i64,
    value_bits: u64,
) {
    if num_samples == 0 {
        write_varint_bits(writer, timestamp_ms);
        writer.write_bits(value_bits, 64);
        state.value_bits = value_bits;
    } else {
        let delta = timestamp_ms.wrapping_sub(state.timestamp_ms);
        write_varbit(writer, delta.wrapping_sub(state.delta_ms));
        write_value(writer, state, value_bits);
        state.delta_ms = delta;
    }
    state.timestamp_ms = timestamp_ms;
}

/// Where the first sample of an XOR chunk ends: the header, the varint timestamp and the raw value.
fn xor_first_sample_end(bytes: &[u8]) -> usize {
    2 + varint_length(bytes.get(2..).unwrap_or_default()) + 8
}

/// The bytes of the varint at the start of `bytes` (its last byte is below `0x80`).
fn varint_length(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|byte| **byte >= 0x80).count() + 1
}

/// Writes the sample count into a chunk's first two bytes.
fn set_sample_count(writer: &mut BitWriter, num_samples: u16) {
    if let Some(slot) = writer.bytes.get_mut(..2) {
        slot.copy_from_slice(&num_samples.to_be_bytes());
    }
}

/// How an open chunk's buffer makes room for its next sample: the buffer's length is its capacity, the
/// chunk is its first `used` bytes, and the rest is zeroed room.
struct ChunkRoom<F> {
    /// Samples in the chunk before this one.
    num_samples: u16,
    /// Where the chunk's first sample ends, from its bytes: the first sample costs far more than the
    /// others, so projections leave it out.
    first_sample_end: F,
}

impl<F: Fn(&[u8]) -> usize> ChunkRoom<F> {
    /// The chunk as a bit writer with room for the next sample, whose exact size `sample_bits` gives
    /// (asked only when the worst case might not fit: most samples skip it).
    fn writer(&self, buffer: &mut Box<[u8]>, used: u32, free_bits: u8, sample_bits: impl FnOnce() -> u32) -> BitWriter {
        let used = used as usize;
        let needed_bytes = if buffer.len() - used >= MAX_SAMPLE_BYTES {
            0
        } else {
            sample_bits().saturating_sub(u32::from(free_bits)).div_ceil(8) as usize
        };
        let mut bytes = std::mem::take(buffer).into_vec();
        bytes.truncate(used);
        self.reserve_for_sample(&mut bytes, needed_bytes);
        BitWriter { bytes, free_bits: u32::from(free_bits) }
    }

    /// Puts the written chunk back into `buffer`; returns its used bytes and free bits.
    fn store(&self, writer: BitWriter, buffer: &mut Box<[u8]>) -> (u32, u8) {
        let BitWriter { mut bytes, free_bits } = writer;
        // A chunk stays far below 4 GiB (at most `u16::MAX` samples of at most 20 bytes).
        let used = bytes.len() as u32;
        // Zero the room behind the chunk and keep it: a full-length boxed slice keeps the capacity.
        bytes.resize(bytes.capacity(), 0);
        *buffer = bytes.into_boxed_slice();
        (used, free_bits as u8)
    }

    /// Grows the buffer, if needed, so that `needed_bytes` more bytes fit. A head chunk stays open for
    /// its whole life (up to [`MAX_SAMPLES_PER_CHUNK`] samples), so past its first samples the buffer is
    /// sized to what the chunk is projected to need: the bytes per sample so far times the samples
    /// still to come, less a sixteenth, rounded up to the allocator's size class (room the allocator
    /// hands out anyway). Projected short rather than long: a chunk that outgrows its projection is
    /// projected again from more samples (one copy of a few hundred bytes), while room never used costs
    /// every open chunk all its life (100k series of the fleet workload: 176.2 bytes of capacity for
    /// 138.1 used with a sixteenth added, 168.4 with none, 163.2 with a sixteenth taken off). The room
    /// is checked against the sample's exact size, so no worst-case sample's room is kept spare. One or
    /// two reallocations per chunk: growing in many small steps instead leaves a partly used slab of the
    /// allocator behind in every size class passed (1M series measured: more resident memory than
    /// doubling), and doubling leaves up to half of it unused.
    ///
    /// Every chunk leaves the class of its first samples ([`EARLY_CLASSES`]) at its
    /// [`PROJECT_AFTER_SAMPLES`]th sample, even one that still fits, and no projection returns to them:
    /// the chunks of every active series start there at about the same time, so a tenth of them staying
    /// (series whose value never changes fit in 32 bytes) would keep nearly every slab of those classes
    /// resident. `oxeye serve` at 1M series: 7,812 slabs of 32 bytes (32 MB) for 3.2 MB of live chunks.
    fn reserve_for_sample(&self, bytes: &mut Vec<u8>, needed_bytes: usize) {
        let num_samples = self.num_samples;
        let used = bytes.len();
        let leaves_early_class = num_samples == PROJECT_AFTER_SAMPLES && EARLY_CLASSES.contains(&bytes.capacity());
        if bytes.capacity() - used >= needed_bytes && !leaves_early_class {
            return;
        }
        let projecting = (PROJECT_AFTER_SAMPLES..MAX_SAMPLES_PER_CHUNK).contains(&num_samples);
        let wanted = if projecting && used < MAX_CHUNK_BYTES {
            let first = (self.first_sample_end)(bytes);
            let per_sample = used.saturating_sub(first) as f64 / f64::from(num_samples - 1);
            let projected = used + (per_sample * f64::from(MAX_SAMPLES_PER_CHUNK - num_samples)) as usize;
            (projected - projected / 16).min(MAX_CHUNK_BYTES + MAX_SAMPLE_BYTES)
        } else {
            // A new chunk starts with room for its first samples, so it does not reallocate at every byte.
            (bytes.capacity() * 2).max(EARLY_CLASSES[0])
        };
        let mut capacity = allocator_size_class(wanted.max(used + needed_bytes));
        if projecting {
            while EARLY_CLASSES.contains(&capacity) {
                capacity = allocator_size_class(capacity + 1);
            }
        }
        if capacity > bytes.capacity() {
            bytes.reserve_exact(capacity - used);
        } else if leaves_early_class {
            let mut moved = Vec::with_capacity(capacity);
            moved.extend_from_slice(bytes);
            *bytes = moved;
        }
    }
}

/// Samples an open chunk holds before its buffer is sized by projection.
const PROJECT_AFTER_SAMPLES: u16 = 16;

/// The size classes an open chunk's buffer leaves at [`PROJECT_AFTER_SAMPLES`] samples: its first, 32
/// bytes. It doubles to 64 and maybe 128 before that, but chunks projected to 64 bytes are common enough
/// to refill those slabs (keeping them out of 64 bytes put 31 MB more in the 80-byte class at 1M).
const EARLY_CLASSES: [usize; 1] = [32];

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
            self.state.timestamp_ms = read_varint_bits(&mut self.reader)?;
            self.state.value_bits = self.reader.read_bits(64)?;
        } else {
            self.read_later_sample()?;
        }
        self.read += 1;
        Ok(Some((self.state.timestamp_ms, f64::from_bits(self.state.value_bits))))
    }

    /// Reads a sample after the first into the state. A regular timestamp (delta of delta `0`) followed
    /// by an unchanged value (`0`) or by a value inside the previous window (`10`) whose bits fit the
    /// same peeked word is the common case of a scrape (every sample of a steady series, and the
    /// samples a windowed read steps over): it takes one peek and one advance.
    fn read_later_sample(&mut self) -> Result<(), ChunkDecodeError> {
        let word = self.reader.peek_word();
        if word >> 63 == 0 {
            self.state.timestamp_ms = self.state.timestamp_ms.wrapping_add(self.state.delta_ms);
            let value_word = word << 1;
            if value_word >> 63 == 0 {
                return self.reader.advance(2);
            }
            if (value_word >> 62) & 1 == 0 && self.state.leading != NO_WINDOW {
                let significant = 64 - u32::from(self.state.leading) - u32::from(self.state.trailing);
                // A peek holds at least 57 bits: the timestamp's one, the two control bits and the window.
                if significant <= 57 - 3 {
                    let bits = (value_word << 2) >> (64 - significant);
                    self.reader.advance(3 + significant as usize)?;
                    self.state.value_bits ^= bits << self.state.trailing;
                    return Ok(());
                }
            }
            self.reader.advance(1)?;
            return read_value(&mut self.reader, &mut self.state);
        }
        let dod = read_peeked_varbit(&mut self.reader, word)?;
        self.state.delta_ms = self.state.delta_ms.wrapping_add(dod);
        self.state.timestamp_ms = self.state.timestamp_ms.wrapping_add(self.state.delta_ms);
        read_value(&mut self.reader, &mut self.state)
    }
}

/// Exact powers of ten for the decimal scales of [`Encoding::ScaledInt`].
const POWERS_OF_TEN: [f64; 7] = [1.0, 10.0, 100.0, 1_000.0, 10_000.0, 100_000.0, 1_000_000.0];
/// Integers up to 2^53 are exact in an f64.
const MAX_EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;

/// `value` as the integer `n` with `n / 10^scale == value` bit for bit, if there is one.
fn to_scaled(value: f64, scale: usize) -> Option<i64> {
    let power = *POWERS_OF_TEN.get(scale)?;
    let scaled = (value * power).round();
    if scaled.is_nan() || scaled.abs() >= MAX_EXACT_INTEGER {
        return None;
    }
    let integer = scaled as i64;
    ((integer as f64 / power).to_bits() == value.to_bits()).then_some(integer)
}

/// The smallest decimal scale at which every value is an exact scaled integer.
fn decimal_scale(samples: &[oxeye_model::Sample]) -> Option<usize> {
    let mut scale = 0;
    for sample in samples {
        while to_scaled(sample.value, scale).is_none() {
            scale += 1;
            if scale >= POWERS_OF_TEN.len() {
                return None;
            }
        }
    }
    Some(scale)
}

/// Flag bits of an [`Encoding::ScaledInt`] chunk header.
const FLAG_VALUE_DELTA_OF_DELTA: u8 = 1;
const FLAG_TIMESTAMP_ZERO_RUNS: u8 = 2;
const FLAG_VALUE_ZERO_RUNS: u8 = 4;

fn delta_of_delta_into(out: &mut Vec<i64>, values: impl Iterator<Item = i64>) {
    out.clear();
    let (mut previous, mut previous_delta) = (None, 0i64);
    for value in values {
        if let Some(before) = previous {
            let delta = i64::wrapping_sub(value, before);
            out.push(delta.wrapping_sub(previous_delta));
            previous_delta = delta;
        }
        previous = Some(value);
    }
}

fn deltas_into(out: &mut Vec<i64>, values: &[i64]) {
    out.clear();
    out.extend(values.windows(2).map(|pair| pair[1].wrapping_sub(pair[0])));
}

/// Reusable buffers for re-encoding, kept per thread: closing a chunk happens in the commit path, and
/// fresh buffers there would churn (and fragment) the allocator.
#[derive(Debug, Default)]
struct Scratch {
    samples: Vec<oxeye_model::Sample>,
    integers: Vec<i64>,
    timestamp_stream: Vec<i64>,
    value_deltas: Vec<i64>,
    value_delta_of_deltas: Vec<i64>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Encodes samples whose values are all exact at `scale`, choosing per stream the cheaper of plain and
/// zero-run coding and for values the cheaper of deltas and deltas of deltas.
fn encode_scaled(samples: &[oxeye_model::Sample], scale: usize, scratch: &mut Scratch) -> Option<Vec<u8>> {
    let count = u16::try_from(samples.len()).ok()?;
    let (first, _) = samples.split_first()?;
    let Scratch { integers, timestamp_stream, value_deltas, value_delta_of_deltas, .. } = scratch;
    integers.clear();
    for sample in samples {
        integers.push(to_scaled(sample.value, scale)?);
    }
    delta_of_delta_into(timestamp_stream, samples.iter().map(|sample| sample.timestamp_ms));
    let timestamp_plain: u32 = timestamp_stream.iter().map(|value| varbit_cost(*value)).sum();
    let timestamp_runs = timestamp_stream.len() > 1 && zero_run_cost(timestamp_stream) < timestamp_plain;
    let mut flags = if timestamp_runs { FLAG_TIMESTAMP_ZERO_RUNS } else { 0 };

    deltas_into(value_deltas, integers);
    delta_of_delta_into(value_delta_of_deltas, integers.iter().copied());
    let mut best: Option<(u32, u8, &Vec<i64>)> = None;
    for (mode_flag, stream) in [(0, &*value_deltas), (FLAG_VALUE_DELTA_OF_DELTA, &*value_delta_of_deltas)] {
        let plain: u32 = stream.iter().map(|value| varbit_cost(*value)).sum();
        let runs = zero_run_cost(stream);
        let (cost, run_flag) = if runs < plain { (runs, FLAG_VALUE_ZERO_RUNS) } else { (plain, 0) };
        if best.is_none_or(|(best_cost, _, _)| cost < best_cost) {
            best = Some((cost, mode_flag | run_flag, stream));
        }
    }
    let (_, value_flags, value_stream) = best?;
    flags |= value_flags;

    let mut writer = BitWriter { bytes: Vec::with_capacity(16 + samples.len()), free_bits: 0 };
    writer.bytes.extend_from_slice(&count.to_be_bytes());
    writer.bytes.push(scale as u8);
    writer.bytes.push(flags);
    write_varint_bits(&mut writer, first.timestamp_ms);
    write_varint_bits(&mut writer, integers[0]);
    if timestamp_runs {
        write_zero_run_stream(&mut writer, timestamp_stream);
    } else {
        timestamp_stream.iter().for_each(|value| write_varbit(&mut writer, *value));
    }
    if flags & FLAG_VALUE_ZERO_RUNS != 0 {
        write_zero_run_stream(&mut writer, value_stream);
    } else {
        value_stream.iter().for_each(|value| write_varbit(&mut writer, *value));
    }
    Some(writer.bytes)
}

/// Iterates the samples of a [`Encoding::ScaledInt`] chunk (decoded whole when created, as its
/// timestamps and values are separate streams).
#[derive(Debug, Clone)]
pub struct ScaledIntIterator {
    samples: std::vec::IntoIter<(i64, f64)>,
}

impl ScaledIntIterator {
    /// Decodes `bytes` (header included).
    ///
    /// # Errors
    /// [`ChunkDecodeError`] when the chunk is damaged.
    pub fn new(bytes: &[u8]) -> Result<Self, ChunkDecodeError> {
        let ScaledIntHeader { count, power, flags } = ScaledIntHeader::read(bytes)?;
        if count == 0 {
            return Ok(ScaledIntIterator { samples: Vec::new().into_iter() });
        }
        let mut reader = BitReader { bytes: &bytes[4..], position: 0 };
        let first_timestamp = read_varint_bits(&mut reader)?;
        let first_integer = read_varint_bits(&mut reader)?;
        let mut timestamp_stream = Vec::with_capacity(count - 1);
        if flags & FLAG_TIMESTAMP_ZERO_RUNS != 0 {
            read_zero_run_stream(&mut reader, count - 1, &mut timestamp_stream)?;
        } else {
            read_plain_stream(&mut reader, count - 1, &mut timestamp_stream)?;
        }
        let mut value_stream = Vec::with_capacity(count - 1);
        if flags & FLAG_VALUE_ZERO_RUNS != 0 {
            read_zero_run_stream(&mut reader, count - 1, &mut value_stream)?;
        } else {
            read_plain_stream(&mut reader, count - 1, &mut value_stream)?;
        }
        let mut samples = Vec::with_capacity(count);
        let (mut timestamp, mut delta_ms) = (first_timestamp, 0i64);
        let (mut integer, mut integer_delta) = (first_integer, 0i64);
        samples.push((timestamp, integer as f64 / power));
        for (dod, stored) in timestamp_stream.iter().zip(&value_stream) {
            delta_ms = delta_ms.wrapping_add(*dod);
            timestamp = timestamp.wrapping_add(delta_ms);
            integer_delta =
                if flags & FLAG_VALUE_DELTA_OF_DELTA != 0 { integer_delta.wrapping_add(*stored) } else { *stored };
            integer = integer.wrapping_add(integer_delta);
            samples.push((timestamp, integer as f64 / power));
        }
        Ok(ScaledIntIterator { samples: samples.into_iter() })
    }

    /// The next sample as `(timestamp_ms, value)`, `None` after the last one.
    ///
    /// # Errors
    /// Never; the signature matches the other iterators.
    pub fn next_sample(&mut self) -> Result<Option<(i64, f64)>, ChunkDecodeError> {
        Ok(self.samples.next())
    }
}

/// The 4-byte header of an [`Encoding::ScaledInt`] chunk.
struct ScaledIntHeader {
    count: usize,
    /// `10^scale`: stored integers are divided by it.
    power: f64,
    flags: u8,
}

impl ScaledIntHeader {
    fn read(bytes: &[u8]) -> Result<Self, ChunkDecodeError> {
        let header = bytes.get(..4).ok_or(ChunkDecodeError { reason: "chunk shorter than its header" })?;
        let count = u16::from_be_bytes([header[0], header[1]]) as usize;
        let power =
            *POWERS_OF_TEN.get(header[2] as usize).ok_or(ChunkDecodeError { reason: "unknown decimal scale" })?;
        let flags = header[3];
        if flags & !(FLAG_VALUE_DELTA_OF_DELTA | FLAG_TIMESTAMP_ZERO_RUNS | FLAG_VALUE_ZERO_RUNS) != 0 {
            return Err(ChunkDecodeError { reason: "unknown chunk flags" });
        }
        Ok(ScaledIntHeader { count, power, flags })
    }
}

/// Reads the integers of one stream of an [`Encoding::ScaledInt`] chunk one at a time, as
/// [`read_zero_run_stream`] (with `zero_runs`) or [`read_plain_stream`] would read them all.
struct IntegerStream {
    zero_runs: bool,
    /// Zeros of the current run not yet returned.
    pending_zeros: usize,
    /// Integers the stream still holds.
    remaining: usize,
}

impl IntegerStream {
    fn new(zero_runs: bool, count: usize) -> Self {
        IntegerStream { zero_runs, pending_zeros: 0, remaining: count }
    }

    /// The next integer; call at most `count` times.
    fn next(&mut self, reader: &mut BitReader<'_>) -> Result<i64, ChunkDecodeError> {
        self.remaining = self.remaining.saturating_sub(1);
        if !self.zero_runs {
            return read_varbit(reader);
        }
        if self.pending_zeros > 0 {
            self.pending_zeros -= 1;
            return Ok(0);
        }
        // A varbit starts with `1` (zero itself is never written as one here); a run with `0`, then `0`
        // for one zero or `1` and 7 bits for 2 to 129.
        let word = reader.peek_word();
        if word >> 63 == 1 {
            return read_varbit(reader);
        }
        let run = if (word >> 62) & 1 == 0 {
            reader.advance(2)?;
            1
        } else {
            reader.advance(9)?;
            ((word >> 55) & 0x7f) as usize + 2
        };
        if run - 1 > self.remaining {
            return Err(ChunkDecodeError { reason: "zero run past the sample count" });
        }
        self.pending_zeros = run - 1;
        Ok(0)
    }

    /// The next stretch of the stream with one peek: `(0, n)` for the `n` zeros (at most `max`) that
    /// stand next (the rest of a run, a new run, or in a plain stream consecutive `0` bits), otherwise
    /// `(integer, 1)`. What [`IntegerStream::next`] would return over as many calls, so a decoder can step
    /// over a regular stretch of a chunk with one multiplication.
    fn next_stretch(&mut self, reader: &mut BitReader<'_>, max: usize) -> Result<(i64, usize), ChunkDecodeError> {
        let max = max.min(self.remaining).max(1);
        if self.pending_zeros > 0 {
            let taken = self.pending_zeros.min(max);
            self.pending_zeros -= taken;
            self.remaining = self.remaining.saturating_sub(taken);
            return Ok((0, taken));
        }
        let word = reader.peek_word();
        if !self.zero_runs || word >> 63 == 1 {
            // A plain zero is the single bit `0`; bits past the end peek as zeros, and `advance` refuses
            // them. Anything else is a varbit (in a zero-run stream, only varbits start with `1`).
            let zeros = if self.zero_runs { 0 } else { (word.leading_zeros() as usize).min(max) };
            if zeros > 0 {
                reader.advance(zeros)?;
                self.remaining = self.remaining.saturating_sub(zeros);
                return Ok((0, zeros));
            }
            self.remaining = self.remaining.saturating_sub(1);
            return Ok((read_peeked_varbit(reader, word)?, 1));
        }
        let run = if (word >> 62) & 1 == 0 {
            reader.advance(2)?;
            1
        } else {
            reader.advance(9)?;
            ((word >> 55) & 0x7f) as usize + 2
        };
        if run > self.remaining {
            return Err(ChunkDecodeError { reason: "zero run past the sample count" });
        }
        let taken = run.min(max);
        self.pending_zeros = run - taken;
        self.remaining -= taken;
        Ok((0, taken))
    }
}

impl IntegerStream {
    /// Reads the next `count` integers of the stream (at most what it still holds) and calls `visit`
    /// with them as [`IntegerStream::next_stretch`] would return them, stretch by stretch, in one loop
    /// that keeps the bit position in a register: the value stream of a chunk is read up to the last
    /// sample kept, which for a window at the end of a chunk is nearly all of it. A stream that ends
    /// early or holds a zero run past its count is an error found after the loop (bits past the end read
    /// as zeros meanwhile, and every integer consumes at least one bit, so the loop still ends), and
    /// `visit` may have been called with integers read past the end by then.
    fn for_each_stretch(
        &mut self,
        reader: &mut BitReader<'_>,
        count: usize,
        mut visit: impl FnMut(i64, usize),
    ) -> Result<(), ChunkDecodeError> {
        debug_assert!(count <= self.remaining);
        let mut left = count.min(self.remaining);
        if self.pending_zeros > 0 && left > 0 {
            let taken = self.pending_zeros.min(left);
            self.pending_zeros -= taken;
            self.remaining -= taken;
            left -= taken;
            visit(0, taken);
        }
        let bytes = reader.bytes;
        let mut position = reader.position;
        let mut run_past_count = false;
        while left > 0 {
            let word = peek_word_at(bytes, position);
            if word >> 63 == 1 {
                // A varbit: as many ones as the bucket's number (at most 5 here), a zero, the payload.
                let ones = (!word).leading_zeros();
                if ones >= VARBIT_WIDE_PREFIX.0 {
                    reader.position = position;
                    let value = read_peeked_varbit(reader, word)?;
                    position = reader.position;
                    self.remaining -= 1;
                    left -= 1;
                    visit(value, 1);
                    continue;
                }
                let payload_bits = ((VARBIT_PAYLOAD_BITS >> (8 * (ones - 1))) & 0xff) as u32;
                let prefix_bits = ones + 1;
                position += (prefix_bits + payload_bits) as usize;
                // The payload stands first after the prefix: an arithmetic shift sign-extends it.
                let value = ((word << prefix_bits) as i64) >> (64 - payload_bits);
                self.remaining -= 1;
                left -= 1;
                visit(value, 1);
                continue;
            }
            let zeros = if self.zero_runs {
                // A run token: `00` for one zero, `01` and 7 bits for 2 to 129.
                let run = if (word >> 62) & 1 == 0 {
                    position += 2;
                    1
                } else {
                    position += 9;
                    ((word >> 55) & 0x7f) as usize + 2
                };
                if run > self.remaining {
                    run_past_count = true;
                    break;
                }
                let taken = run.min(left);
                self.pending_zeros = run - taken;
                taken
            } else {
                // Plain zeros are single `0` bits.
                let zeros = (word.leading_zeros() as usize).min(left);
                position += zeros;
                zeros
            };
            self.remaining -= zeros;
            left -= zeros;
            visit(0, zeros);
        }
        if run_past_count {
            return Err(ChunkDecodeError { reason: "zero run past the sample count" });
        }
        if position > bytes.len() * 8 {
            return Err(BitReader::ENDS_EARLY);
        }
        reader.position = position;
        Ok(())
    }
}

/// The payload bits of the varbit buckets, one byte per bucket ([`VARBIT_BUCKETS`]), the first bucket's
/// in the lowest byte: a shift instead of a table lookup in [`IntegerStream::for_each_stretch`].
const VARBIT_PAYLOAD_BITS: u64 = {
    let mut packed = 0u64;
    let mut bucket = 0;
    while bucket < VARBIT_BUCKETS.len() {
        packed |= (VARBIT_BUCKETS[bucket].2 as u64) << (8 * bucket);
        bucket += 1;
    }
    packed
};

/// The 64 bits of `bytes` from bit `position` on, most significant first, zeros past the end (as
/// [`BitReader::peek_word`]).
#[inline]
fn peek_word_at(bytes: &[u8], position: usize) -> u64 {
    let byte = position / 8;
    let word = match bytes.get(byte..byte + 8) {
        Some(word) => u64::from_be_bytes([word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7]]),
        None => {
            let mut word = [0u8; 8];
            let rest = bytes.get(byte..).unwrap_or_default();
            word[..rest.len()].copy_from_slice(rest);
            u64::from_be_bytes(word)
        }
    };
    word << (position % 8)
}

/// How many of the timestamps `start_ms + step_ms × k`, `k = 1..=count`, lie before `mint_ms`, for a
/// positive `step_ms` (the timestamps ascend).
fn steps_before(start_ms: i64, step_ms: i64, count: usize, mint_ms: i64) -> usize {
    debug_assert!(step_ms > 0);
    let gap = i128::from(mint_ms) - i128::from(start_ms) - 1;
    if gap < 0 {
        return 0;
    }
    usize::try_from(gap / i128::from(step_ms)).map_or(count, |before| before.min(count))
}

/// The samples [`decode_scaled_into`] keeps, by chunk position: `first_kept..past_kept`. Timestamps
/// ascend within a chunk, so they are one run, from the first sample at or after `mint_ms` up to the
/// first after `maxt_ms`.
struct KeptRun {
    mint_ms: i64,
    maxt_ms: i64,
    first_kept: Option<usize>,
    past_kept: usize,
    /// The run ended: later samples are not kept.
    stopped: bool,
}

impl KeptRun {
    /// Visits the sample at `position`: kept (pushed with its value still unset) when it is in the window
    /// and the run has not ended.
    fn keep(&mut self, position: usize, timestamp_ms: i64, out: &mut Vec<oxeye_model::Sample>) {
        // A sample before the window after one inside it (timestamps out of order) also ends the run.
        let ends_run = timestamp_ms > self.maxt_ms || (self.first_kept.is_some() && timestamp_ms < self.mint_ms);
        self.stopped |= ends_run;
        if self.stopped || timestamp_ms < self.mint_ms {
            return;
        }
        self.first_kept.get_or_insert(position);
        self.past_kept = position + 1;
        out.push(oxeye_model::Sample { timestamp_ms, value: 0.0 });
    }
}

/// [`decode_into`] for an [`Encoding::ScaledInt`] chunk without decoding it whole first: the
/// timestamps in the window become samples, then their values are filled in from the value stream,
/// which is read no further than the last sample kept. Timestamps ascend within a chunk, so the
/// samples kept are one run: from the first at or after `mint_ms` up to the first after `maxt_ms`.
fn decode_scaled_into(
    bytes: &[u8],
    mint_ms: i64,
    maxt_ms: i64,
    out: &mut Vec<oxeye_model::Sample>,
) -> Result<(), ChunkDecodeError> {
    let ScaledIntHeader { count, power, flags } = ScaledIntHeader::read(bytes)?;
    if count == 0 {
        return Ok(());
    }
    let mut reader = BitReader { bytes: &bytes[4..], position: 0 };
    let first_timestamp = read_varint_bits(&mut reader)?;
    let first_integer = read_varint_bits(&mut reader)?;
    let base = out.len();
    let mut run = KeptRun { mint_ms, maxt_ms, first_kept: None, past_kept: 0, stopped: false };
    run.keep(0, first_timestamp, out);
    let mut timestamps = IntegerStream::new(flags & FLAG_TIMESTAMP_ZERO_RUNS != 0, count - 1);
    let (mut timestamp, mut delta_ms) = (first_timestamp, 0i64);
    let mut position = 1;
    while position < count {
        let (dod, repeat) = timestamps.next_stretch(&mut reader, count - position)?;
        if dod != 0 {
            delta_ms = delta_ms.wrapping_add(dod);
            timestamp = timestamp.wrapping_add(delta_ms);
            run.keep(position, timestamp, out);
            position += repeat;
            continue;
        }
        // A run of zero deltas of deltas is a regular stretch: the samples before the window and after it
        // are stepped over with one multiplication, only those that may be kept are visited.
        let skipped = if delta_ms > 0 && run.first_kept.is_none() {
            steps_before(timestamp, delta_ms, repeat, mint_ms)
        } else {
            0
        };
        timestamp = timestamp.wrapping_add(delta_ms.wrapping_mul(skipped as i64));
        for offset in skipped..repeat {
            if run.stopped && delta_ms > 0 {
                timestamp = timestamp.wrapping_add(delta_ms.wrapping_mul((repeat - offset) as i64));
                break;
            }
            timestamp = timestamp.wrapping_add(delta_ms);
            run.keep(position + offset, timestamp, out);
        }
        position += repeat;
    }
    let (Some(first_kept_position), past_kept) = (run.first_kept, run.past_kept) else { return Ok(()) };
    let mut values = IntegerStream::new(flags & FLAG_VALUE_ZERO_RUNS != 0, count - 1);
    let scale_is_zero = power == 1.0;
    let delta_of_delta = flags & FLAG_VALUE_DELTA_OF_DELTA != 0;
    let set_value = |position: usize, integer: i64, out: &mut Vec<oxeye_model::Sample>| {
        if position >= first_kept_position
            && let Some(sample) = out.get_mut(base + position - first_kept_position)
        {
            // Integer counters (scale 0) skip the division.
            sample.value = if scale_is_zero { integer as f64 } else { integer as f64 / power };
        }
    };
    let (mut integer, mut integer_delta) = (first_integer, 0i64);
    set_value(0, integer, out);
    // The values before the window only add up to the first kept one: summed without looking at positions.
    let mut position = first_kept_position.max(1);
    values.for_each_stretch(&mut reader, position - 1, |stored, repeat| {
        if stored != 0 {
            integer_delta = if delta_of_delta { integer_delta.wrapping_add(stored) } else { stored };
            integer = integer.wrapping_add(integer_delta);
        } else if delta_of_delta {
            integer = integer.wrapping_add(integer_delta.wrapping_mul(repeat as i64));
        } else {
            integer_delta = 0;
        }
    })?;
    // The kept ones. A zero stored value repeats the previous delta (deltas of deltas) or leaves the value
    // as it is (deltas).
    values.for_each_stretch(&mut reader, past_kept - position, |stored, repeat| {
        if stored != 0 {
            integer_delta = if delta_of_delta { integer_delta.wrapping_add(stored) } else { stored };
            integer = integer.wrapping_add(integer_delta);
            set_value(position, integer, out);
            position += repeat;
            return;
        }
        if !delta_of_delta {
            integer_delta = 0;
        }
        for offset in 0..repeat {
            integer = integer.wrapping_add(integer_delta);
            set_value(position + offset, integer, out);
        }
        position += repeat;
    })
}

/// Iterates the samples of a chunk of any encoding, oldest first.
#[derive(Debug, Clone)]
pub enum ChunkIterator<'a> {
    /// An [`Encoding::Xor`] chunk.
    Xor(XorIterator<'a>),
    /// An [`Encoding::ScaledInt`] chunk.
    ScaledInt(ScaledIntIterator),
    /// An [`Encoding::ScaledIntAppendable`] chunk.
    ScaledIntAppendable(ScaledIntAppendableIterator<'a>),
}

impl<'a> ChunkIterator<'a> {
    /// Starts reading a chunk.
    ///
    /// # Errors
    /// [`ChunkDecodeError`] when the header is damaged.
    pub fn new(encoding: Encoding, bytes: &'a [u8]) -> Result<Self, ChunkDecodeError> {
        Ok(match encoding {
            Encoding::Xor => ChunkIterator::Xor(XorIterator::new(bytes)?),
            Encoding::ScaledInt => ChunkIterator::ScaledInt(ScaledIntIterator::new(bytes)?),
            Encoding::ScaledIntAppendable => {
                ChunkIterator::ScaledIntAppendable(ScaledIntAppendableIterator::new(bytes)?)
            }
        })
    }

    /// The next sample as `(timestamp_ms, value)`, `None` after the last one.
    ///
    /// # Errors
    /// [`ChunkDecodeError`] when the chunk is damaged.
    pub fn next_sample(&mut self) -> Result<Option<(i64, f64)>, ChunkDecodeError> {
        match self {
            ChunkIterator::Xor(iterator) => iterator.next_sample(),
            ChunkIterator::ScaledInt(iterator) => iterator.next_sample(),
            ChunkIterator::ScaledIntAppendable(iterator) => iterator.next_sample(),
        }
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
    if encoding == Encoding::ScaledInt {
        return decode_scaled_into(bytes, mint_ms, maxt_ms, out);
    }
    let mut iterator = ChunkIterator::new(encoding, bytes)?;
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

/// The smallest encoding of ascending `samples` (at most `u16::MAX`): XOR, or scaled integers as
/// deltas or deltas of deltas when every value is an exact decimal with at most 6 fraction digits.
pub fn encode_best(samples: &[oxeye_model::Sample]) -> (Encoding, Vec<u8>) {
    let mut xor = XorAppender::new();
    for sample in samples {
        xor.append(sample.timestamp_ms, sample.value);
    }
    let mut best = (Encoding::Xor, xor.into_bytes());
    if let Some(scale) = decimal_scale(samples)
        && let Some(bytes) = SCRATCH.with(|scratch| encode_scaled(samples, scale, &mut scratch.borrow_mut()))
        && bytes.len() < best.1.len()
    {
        best = (Encoding::ScaledInt, bytes);
    }
    best
}

/// Re-encodes a closed chunk into its smallest encoding: an XOR chunk into scaled integers when that
/// is smaller, an [`Encoding::ScaledIntAppendable`] one always into [`Encoding::ScaledInt`] (or XOR), so
/// closed chunks and blocks hold only encodings 1 and 2. Returns the input when XOR stays smallest or
/// the chunk cannot be read.
pub fn recode_closed(encoding: Encoding, bytes: Vec<u8>) -> (Encoding, Vec<u8>) {
    let appendable = encoding == Encoding::ScaledIntAppendable;
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let mut samples = std::mem::take(&mut scratch.samples);
        samples.clear();
        let recoded = if decode_into(encoding, &bytes, i64::MIN, i64::MAX, &mut samples).is_err() {
            None
        } else if let Some(scale) = decimal_scale(&samples)
            && let Some(scaled) = encode_scaled(&samples, scale, &mut scratch)
            && (appendable || scaled.len() < bytes.len())
        {
            Some((Encoding::ScaledInt, scaled))
        } else if appendable {
            // Not `encode_best`: it takes the scratch buffers this closure holds.
            let mut xor = XorAppender::new();
            for sample in &samples {
                xor.append(sample.timestamp_ms, sample.value);
            }
            Some((Encoding::Xor, xor.into_bytes()))
        } else {
            None
        };
        scratch.samples = samples;
        recoded.unwrap_or((encoding, bytes))
    })
}

/// Encodes ascending samples into chunks of at most [`MAX_SAMPLES_PER_CHUNK`] samples, each in its
/// smallest encoding; returns `(mint_ms, maxt_ms, encoding, bytes)` per chunk.
pub fn encode_chunks(samples: &[oxeye_model::Sample]) -> Vec<(i64, i64, Encoding, Vec<u8>)> {
    samples
        .chunks(MAX_SAMPLES_PER_CHUNK as usize)
        .filter_map(|run| {
            let (first, last) = (run.first()?, run.last()?);
            let (encoding, bytes) = encode_best(run);
            Some((first.timestamp_ms, last.timestamp_ms, encoding, bytes))
        })
        .collect()
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

    #[test]
    fn open_chunk_buffer_is_sized_to_the_projected_chunk_in_few_steps() {
        for (label, value_of) in [
            ("constant", (|_| 1.0) as fn(i64) -> f64),
            ("counter", |index| (index * index) as f64),
            ("noisy float", |index| (index as f64).sin() * 1e6),
        ] {
            let mut appender = XorAppender::new();
            let mut capacities = vec![appender.capacity_bytes()];
            let mut appended = 0;
            // As the head fills a chunk: up to the sample count or the byte size that cut it.
            for index in 0..i64::from(MAX_SAMPLES_PER_CHUNK) {
                if appender.size_bytes() >= MAX_CHUNK_BYTES {
                    break;
                }
                appended += 1;
                // Jittered scrape times, so timestamps cost bits too.
                appender.append(1_700_000_000_000 + index * 15_000 + (index * 7919) % 13, value_of(index));
                if capacities.last() != Some(&appender.capacity_bytes()) {
                    capacities.push(appender.capacity_bytes());
                }
            }
            let used = appender.size_bytes();
            let capacity = appender.capacity_bytes();
            // At most the size class of an eighth above the full chunk, or 80 bytes for a small one (past
            // its early classes).
            assert!(
                capacity <= allocator_size_class(used + used / 8).max(80),
                "{label}: {capacity} bytes for {used} ({capacities:?})"
            );
            assert!(capacities.len() <= 5, "{label}: buffer sizes {capacities:?}");
            assert_eq!(decode_all(appender.bytes()).len(), appended, "{label}");
        }
    }

    /// A chunk whose value never changes fits in 32 bytes; it still leaves the early size classes at its
    /// projection, so the slabs every chunk started in can empty (see `ChunkRoom::reserve_for_sample`).
    #[test]
    fn small_chunks_leave_the_early_size_classes() {
        for value in [0.0, 1.0, 0.5, f64::NAN] {
            let mut appender = HeadAppender::new();
            let mut capacities = Vec::new();
            for index in 0..i64::from(MAX_SAMPLES_PER_CHUNK) {
                appender.append(1_700_000_000_000 + index * 15_000, value);
                capacities.push(appender.capacity_bytes());
            }
            let last = appender.capacity_bytes();
            assert!(!EARLY_CLASSES.contains(&last), "{value}: {last} bytes ({capacities:?})");
            assert!(last <= 80, "{value}: {last} bytes for {} ({capacities:?})", appender.size_bytes());
        }
    }

    #[test]
    fn allocator_size_classes_are_jemallocs() {
        let classes: Vec<usize> = [1, 8, 9, 17, 33, 49, 64, 65, 97, 128, 129, 161, 255, 257, 500, 513]
            .into_iter()
            .map(allocator_size_class)
            .collect();
        assert_eq!(classes, [8, 8, 16, 32, 48, 64, 64, 80, 112, 128, 160, 192, 256, 320, 512, 640]);
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
                let bits_before = appender.size_bytes() * 8 - usize::from(appender.free_bits);
                let projected_bits = appender.sample_bits(appender.num_samples(), timestamp, *value_bits);
                appender.append(timestamp, f64::from_bits(*value_bits));
                let bits_after = appender.size_bytes() * 8 - usize::from(appender.free_bits);
                if !expected.is_empty() {
                    // The room check before a write relies on this being exact.
                    prop_assert_eq!(bits_after - bits_before, projected_bits as usize);
                }
                prop_assert!(appender.capacity_bytes() >= appender.size_bytes());
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
        fn best_encoding_round_trips_bit_for_bit(
            start in -1_000_000_000_000i64..2_000_000_000_000,
            steps in proptest::collection::vec(timestamp_step(), 1..121),
            shape in 0u8..4,
            seed in any::<u64>(),
            values in proptest::collection::vec(special_value(), 121),
        ) {
            let mut timestamp = start;
            let mut counter = seed % 1000;
            let samples: Vec<Sample> = steps.iter().zip(values.iter()).map(|(step, value_bits)| {
                timestamp = timestamp.saturating_add(*step);
                counter += seed.rotate_left(timestamp as u32 % 64) % 50;
                let value = match shape {
                    0 => counter as f64,
                    1 => counter as f64 / 100.0,
                    2 => -(counter as f64) / 1000.0 + 0.5,
                    _ => f64::from_bits(*value_bits),
                };
                Sample { timestamp_ms: timestamp, value }
            }).collect();
            let (encoding, bytes) = encode_best(&samples);
            let mut decoded = Vec::new();
            decode_into(encoding, &bytes, i64::MIN, i64::MAX, &mut decoded).unwrap();
            let expected: Vec<(i64, u64)> = samples.iter().map(|sample| (sample.timestamp_ms, sample.value.to_bits())).collect();
            let actual: Vec<(i64, u64)> = decoded.iter().map(|sample| (sample.timestamp_ms, sample.value.to_bits())).collect();
            prop_assert_eq!(actual, expected);
        }

        #[test]
        fn windowed_decoding_keeps_what_the_iterator_gives_in_the_window(
            steps in proptest::collection::vec(1i64..40_000, 1..121),
            deltas in proptest::collection::vec(0u64..5, 121),
            scale in 0u8..3,
            window_start in 0i64..2_500_000,
            window_length in 0i64..2_500_000,
        ) {
            let mut timestamp = 1_000_000i64;
            let mut counter = 0u64;
            let samples: Vec<Sample> = steps.iter().zip(&deltas).map(|(step, delta)| {
                timestamp += step;
                counter += delta;
                Sample { timestamp_ms: timestamp, value: counter as f64 / 10f64.powi(i32::from(scale)) }
            }).collect();
            let (encoding, bytes) = encode_best(&samples);
            let (mint_ms, maxt_ms) = (1_000_000 + window_start, 1_000_000 + window_start + window_length);
            let mut decoded = vec![Sample { timestamp_ms: -1, value: -1.0 }];
            decode_into(encoding, &bytes, mint_ms, maxt_ms, &mut decoded).unwrap();
            let mut expected = vec![(-1, (-1.0f64).to_bits())];
            let mut iterator = ChunkIterator::new(encoding, &bytes).unwrap();
            while let Some((timestamp_ms, value)) = iterator.next_sample().unwrap() {
                if (mint_ms..=maxt_ms).contains(&timestamp_ms) {
                    expected.push((timestamp_ms, value.to_bits()));
                }
            }
            let actual: Vec<(i64, u64)> = decoded.iter().map(|sample| (sample.timestamp_ms, sample.value.to_bits())).collect();
            prop_assert_eq!(actual, expected);
        }

        /// Scrape-shaped chunks: mostly one interval with some jitter, values that stand still or grow by
        /// one step for a while, so both streams hold zero runs that windowed decoding steps over at once.
        #[test]
        fn windowed_decoding_steps_over_regular_stretches(
            jitter in proptest::collection::vec(prop_oneof![8 => Just(0i64), 1 => -3i64..4, 1 => Just(-15_000i64)], 1..121),
            increments in proptest::collection::vec(prop_oneof![4 => Just(0u64), 4 => Just(3u64), 1 => 0u64..1_000], 121),
            scale in 0u8..3,
            window_start in -20_000i64..2_000_000,
            window_length in 0i64..600_000,
        ) {
            let mut timestamp = 1_000_000i64;
            let mut counter = 0u64;
            let samples: Vec<Sample> = jitter.iter().zip(&increments).map(|(jitter, increment)| {
                // A jitter of one interval back repeats the previous timestamp; decoding must still agree.
                timestamp += 15_000 + jitter;
                counter += increment;
                Sample { timestamp_ms: timestamp, value: counter as f64 / 10f64.powi(i32::from(scale)) }
            }).collect();
            let (encoding, bytes) = encode_best(&samples);
            let (mint_ms, maxt_ms) = (1_000_000 + window_start, 1_000_000 + window_start + window_length);
            let mut decoded = Vec::new();
            decode_into(encoding, &bytes, mint_ms, maxt_ms, &mut decoded).unwrap();
            let mut expected = Vec::new();
            let mut iterator = ChunkIterator::new(encoding, &bytes).unwrap();
            while let Some((timestamp_ms, value)) = iterator.next_sample().unwrap() {
                if timestamp_ms > maxt_ms {
                    break;
                }
                if timestamp_ms >= mint_ms {
                    expected.push((timestamp_ms, value.to_bits()));
                }
            }
            let actual: Vec<(i64, u64)> = decoded.iter().map(|sample| (sample.timestamp_ms, sample.value.to_bits())).collect();
            prop_assert_eq!(actual, expected);
        }

        #[test]
        fn damaged_chunks_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            for encoding in [Encoding::Xor, Encoding::ScaledInt, Encoding::ScaledIntAppendable] {
                if let Ok(mut iterator) = ChunkIterator::new(encoding, &bytes) {
                    while let Ok(Some(_)) = iterator.next_sample() {}
                }
                let _ = decode_into(encoding, &bytes, i64::MIN, i64::MAX, &mut Vec::new());
                let _ = decode_into(encoding, &bytes, 0, 1 << 40, &mut Vec::new());
            }
        }
    }

    /// Deltas beyond 32 bits take the 64-bit varbit form, which the value loop of windowed decoding reads
    /// apart from the buckets; windows before, across and after them must still agree with the iterator.
    #[test]
    fn windowed_decoding_reads_wide_value_deltas() {
        let jumps = [0i64, 1 << 40, 3, -(1 << 41), 0, 0, 7, 1 << 35, 0, 1];
        let mut value = 0i64;
        let samples: Vec<Sample> = (0..120)
            .map(|index| {
                value += jumps[index % jumps.len()] + (index as i64 % 3);
                Sample { timestamp_ms: 1_000_000 + index as i64 * 15_000, value: value as f64 }
            })
            .collect();
        let (encoding, bytes) = encode_best(&samples);
        assert_eq!(encoding, Encoding::ScaledInt);
        for first_kept in [0, 1, 5, 60, 100, 119] {
            let mint_ms = samples[first_kept].timestamp_ms;
            let mut decoded = Vec::new();
            decode_into(encoding, &bytes, mint_ms, i64::MAX, &mut decoded).unwrap();
            assert_eq!(decoded, samples[first_kept..], "window from sample {first_kept}");
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
        // 2 header bytes + ~17 bytes for the first two samples, then 2 bits per sample.
        assert!(appender.size_bytes() < 50, "{} bytes", appender.size_bytes());
        let samples: Vec<Sample> =
            (0..120).map(|index| Sample { timestamp_ms: 1_700_000_000_000 + index * 15_000, value: 1.0 }).collect();
        let (encoding, bytes) = encode_best(&samples);
        assert_eq!(encoding, Encoding::ScaledInt);
        // Zero runs: a regular, constant series costs a header and a few bytes per chunk.
        assert!(bytes.len() < 20, "{} bytes", bytes.len());
    }

    #[test]
    fn integer_and_decimal_series_choose_scaled_integers() {
        let counter: Vec<Sample> = (0..120)
            .map(|index| Sample { timestamp_ms: index * 15_000 + index % 3, value: (index * 7 + index % 5) as f64 })
            .collect();
        let (encoding, bytes) = encode_best(&counter);
        assert_eq!(encoding, Encoding::ScaledInt);
        let mut xor = XorAppender::new();
        for sample in &counter {
            xor.append(sample.timestamp_ms, sample.value);
        }
        assert!(bytes.len() * 3 < xor.size_bytes() * 2, "{} vs {}", bytes.len(), xor.size_bytes());
        let decimals: Vec<Sample> =
            (0..120).map(|index| Sample { timestamp_ms: index * 15_000, value: (index % 17) as f64 / 100.0 }).collect();
        assert_eq!(encode_best(&decimals).0, Encoding::ScaledInt);
        let negative_zero = [Sample { timestamp_ms: 0, value: -0.0 }, Sample { timestamp_ms: 1, value: 1.0 }];
        assert_eq!(encode_best(&negative_zero).0, Encoding::Xor);
        let stale = [Sample { timestamp_ms: 0, value: 1.0 }, Sample { timestamp_ms: 1, value: oxeye_model::STALE_NAN }];
        assert_eq!(encode_best(&stale).0, Encoding::Xor);
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
