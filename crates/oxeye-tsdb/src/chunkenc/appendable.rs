//! The head's appender: open chunks in [`Encoding::ScaledIntAppendable`] while their values are exact
//! decimals, in [`Encoding::Xor`] otherwise.
//!
//! [`Encoding::ScaledInt`] stores a chunk's timestamps and values as two streams, so it can only be
//! written once the chunk is complete. The appendable form keeps each sample's bits together, so an open
//! chunk grows at its end: per sample the timestamp's delta of delta (left out while the timestamps
//! stay evenly spaced from the chunk's start) and the delta of delta of the scaled integer `n`. On the
//! fleet workload (100k series x 120 scrapes) an open chunk costs about 89 bytes this way against 150 in
//! XOR; the closed form ([`super::recode_closed`]) is smaller still. The layout is in `docs/format.md`.

use oxeye_model::Sample;

use super::{
    BitReader, ChunkDecodeError, ChunkRoom, Encoding, MAX_SAMPLE_BYTES, NO_WINDOW, POWERS_OF_TEN, XorAppender,
    XorState, append_xor_sample, chunk_of_buffer, first_timestamp_ms, read_varbit, read_varint_bits, set_sample_count,
    to_scaled, varbit_cost, varint_length, write_varbit, write_varint_bits,
};

/// Bytes before the bit stream of an [`Encoding::ScaledIntAppendable`] chunk: the sample count (`u16`),
/// the decimal scale (`u8`) and the length of the evenly spaced start (`u16`), big-endian.
const HEADER_BYTES: usize = 5;

/// Appends samples to the open chunk of a head series: scaled integers (see the module docs) chosen by
/// the first value's decimal scale, re-encoded at a larger scale when a later value needs one, and as
/// XOR (re-encoding what the chunk holds) from the first value that no scale up to 6 holds exactly
/// (NaN, the staleness marker, ±Inf, −0, long fractions) or whose integer moves by 2^15 or more in one
/// step.
///
/// Timestamps must ascend by less than 2^32 ms, and a chunk stays below 4 KiB
/// ([`HeadAppender::can_append`]): the head cuts a new chunk long before either. That keeps the
/// appender in 40 bytes, as every active series holds one. The newest timestamp is kept whole in the
/// struct: the head checks each sample's order against it when the sample arrives, before the commit
/// that writes it, and reading the chunk's bytes there would cost a cache miss per sample.
#[derive(Debug, Clone)]
pub struct HeadAppender {
    /// The chunk's bytes, then zeroed room for the next samples (the buffer's length is its capacity).
    buffer: Box<[u8]>,
    /// The newest sample's timestamp, milliseconds.
    timestamp_ms: i64,
    /// XOR: the newest value's bits. Scaled integers: the newest integer `n`, as `i64` bits.
    value: u64,
    /// The newest timestamp minus the one before it, milliseconds (0 with fewer than two samples).
    delta_ms: u32,
    /// Bits of `buffer` holding the chunk (below [`SCALED_FORM`]), plus [`SCALED_FORM`] for a chunk in
    /// [`Encoding::ScaledIntAppendable`].
    used_bits_and_form: u16,
    /// Scaled integers: the newest integer minus the one before it, as `i16` bits. XOR: the current
    /// window, its leading zeros in the high byte ([`NO_WINDOW`] before the first) and its trailing
    /// zeros in the low byte.
    value_delta_or_window: u16,
}

/// The bit of [`HeadAppender::used_bits_and_form`] set for the scaled-integer form.
const SCALED_FORM: u16 = 1 << 15;
/// The most bytes a [`HeadAppender`] chunk holds: its length in bits stays below [`SCALED_FORM`].
const MAX_APPENDER_BYTES: usize = (SCALED_FORM as usize - 1) / 8;

impl Default for HeadAppender {
    fn default() -> Self {
        Self::new()
    }
}

impl HeadAppender {
    /// An empty chunk; its encoding is chosen by its first value.
    pub fn new() -> Self {
        HeadAppender {
            buffer: Box::default(),
            timestamp_ms: 0,
            value: 0,
            delta_ms: 0,
            used_bits_and_form: SCALED_FORM,
            value_delta_or_window: u16::from(NO_WINDOW) << 8,
        }
    }

    /// An empty chunk in `encoding` whose buffer holds its header.
    fn empty(encoding: Encoding, header: &[u8]) -> Self {
        let mut appender = Self::new();
        appender.buffer = header.into();
        appender.set_encoding(encoding);
        appender.set_used(header.len() as u32, 0);
        appender
    }

    /// Continues a chunk read back (from a checkpoint) in either of the head's encodings; `None` when the
    /// chunk is valid but cannot stay open (another encoding, 4 KiB or more, its last samples 2^32 ms or
    /// more apart, or its last integers 2^15 or more apart).
    ///
    /// # Errors
    /// [`ChunkDecodeError`] when the chunk is damaged.
    pub fn from_bytes(encoding: Encoding, bytes: &[u8]) -> Result<Option<Self>, ChunkDecodeError> {
        let (mut appender, last_timestamp_ms) = match encoding {
            Encoding::Xor => {
                let xor = XorAppender::from_bytes(bytes)?;
                let Ok(delta_ms) = u32::try_from(xor.delta_ms) else { return Ok(None) };
                let mut appender = HeadAppender { delta_ms, value: xor.value_bits, ..Self::new() };
                appender.set_window(xor.leading, xor.trailing);
                appender.set_encoding(Encoding::Xor);
                appender.set_used(xor.used, xor.free_bits);
                appender.buffer = xor.buffer;
                (appender, xor.timestamp_ms)
            }
            Encoding::ScaledIntAppendable => {
                let mut iterator = ScaledIntAppendableIterator::new(bytes)?;
                while iterator.next_sample()?.is_some() {}
                let (Ok(delta_ms), Ok(value_delta)) =
                    (u32::try_from(iterator.delta_ms), i16::try_from(iterator.integer_delta))
                else {
                    return Ok(None);
                };
                let used_bits = iterator.reader.position;
                let mut data = bytes
                    .get(..HEADER_BYTES + used_bits.div_ceil(8))
                    .ok_or(ChunkDecodeError { reason: "chunk shorter than its bits" })?
                    .to_vec();
                // Clear any junk after the last used bit so later writes can OR into the byte.
                let free_bits = (used_bits.div_ceil(8) * 8 - used_bits) as u8;
                if let Some(last) = data.last_mut().filter(|_| free_bits > 0) {
                    *last &= !((1u16 << free_bits) - 1) as u8;
                }
                // A run of evenly spaced timestamps stays open only while it covers every sample.
                let regular = iterator.regular.min(iterator.total);
                data[3..HEADER_BYTES].copy_from_slice(&regular.to_be_bytes());
                if data.len() > MAX_APPENDER_BYTES {
                    return Ok(None);
                }
                let mut appender = HeadAppender {
                    delta_ms,
                    value: iterator.integer as u64,
                    value_delta_or_window: value_delta as u16,
                    ..Self::new()
                };
                appender.set_used(data.len() as u32, free_bits);
                appender.buffer = data.into_boxed_slice();
                (appender, iterator.timestamp_ms)
            }
            Encoding::ScaledInt => return Ok(None),
        };
        if appender.buffer.len() > MAX_APPENDER_BYTES {
            return Ok(None);
        }
        appender.timestamp_ms = last_timestamp_ms;
        Ok(Some(appender))
    }

    /// The chunk's encoding: [`Encoding::ScaledIntAppendable`] or [`Encoding::Xor`].
    pub fn encoding(&self) -> Encoding {
        if self.used_bits_and_form & SCALED_FORM != 0 { Encoding::ScaledIntAppendable } else { Encoding::Xor }
    }

    fn set_encoding(&mut self, encoding: Encoding) {
        let form = if encoding == Encoding::ScaledIntAppendable { SCALED_FORM } else { 0 };
        self.used_bits_and_form = (self.used_bits_and_form & !SCALED_FORM) | form;
    }

    /// Bits of the buffer holding the chunk.
    fn used_bits(&self) -> u32 {
        u32::from(self.used_bits_and_form & !SCALED_FORM)
    }

    /// Bytes of the buffer holding the chunk.
    fn used(&self) -> u32 {
        self.used_bits().div_ceil(8)
    }

    /// Unused low bits of the chunk's last byte.
    fn free_bits(&self) -> u8 {
        (self.used() * 8 - self.used_bits()) as u8
    }

    fn set_used(&mut self, used: u32, free_bits: u8) {
        let bits = used * 8 - u32::from(free_bits);
        debug_assert!(bits < u32::from(SCALED_FORM), "{bits} bits");
        self.used_bits_and_form = (self.used_bits_and_form & SCALED_FORM) | bits as u16;
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
        match self.encoding() {
            Encoding::ScaledIntAppendable if self.num_samples() > 0 => {
                scaled_value(self.value as i64, self.power_of_ten()).to_bits()
            }
            _ => self.value,
        }
    }

    /// The newest sample's timestamp in milliseconds (0 for an empty chunk).
    pub fn last_timestamp_ms(&self) -> i64 {
        self.timestamp_ms
    }

    /// The oldest sample's timestamp in milliseconds (0 for an empty chunk), read from the chunk's first
    /// bytes (a byte-aligned varint after the header).
    pub fn first_timestamp_ms(&self) -> i64 {
        let header_bytes = match self.encoding() {
            Encoding::ScaledIntAppendable => HEADER_BYTES,
            _ => 2,
        };
        first_timestamp_ms(self.bytes(), header_bytes)
    }

    /// True when a sample at `timestamp_ms` may follow: after the newest by less than 2^32 ms, and with
    /// room below 4 KiB for the largest sample.
    pub fn can_append(&self, timestamp_ms: i64) -> bool {
        if self.num_samples() == 0 {
            return true;
        }
        timestamp_ms.checked_sub(self.timestamp_ms).is_some_and(|delta| delta > 0 && u32::try_from(delta).is_ok())
            && self.size_bytes() + MAX_SAMPLE_BYTES <= MAX_APPENDER_BYTES
    }

    /// The chunk's current size in bytes.
    pub fn size_bytes(&self) -> usize {
        self.used() as usize
    }

    /// The capacity of the chunk's buffer in bytes (its size plus room reserved for the next samples).
    pub fn capacity_bytes(&self) -> usize {
        self.buffer.len()
    }

    /// The chunk's bytes (header included).
    pub fn bytes(&self) -> &[u8] {
        &self.buffer[..self.size_bytes()]
    }

    /// Consumes the appender into the chunk's bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        let used = self.used();
        chunk_of_buffer(self.buffer, used)
    }

    /// An empty scaled-integer chunk at decimal `scale` (values stored as `value * 10^scale`).
    fn empty_scaled(scale: usize) -> Self {
        Self::empty(Encoding::ScaledIntAppendable, &[0, 0, scale as u8, 0, 0])
    }

    /// The decimal scale of a scaled-integer chunk, from its header.
    fn scale(&self) -> usize {
        usize::from(self.buffer.get(2).copied().unwrap_or(0))
    }

    /// `10^scale` of a scaled-integer chunk.
    fn power_of_ten(&self) -> f64 {
        POWERS_OF_TEN.get(self.scale()).copied().unwrap_or(1.0)
    }

    /// Appends one sample, when [`Self::can_append`] allows it; values are kept bit for bit.
    pub fn append(&mut self, timestamp_ms: i64, value: f64) {
        debug_assert!(self.can_append(timestamp_ms));
        if self.num_samples() == 0 {
            *self = match super::decimal_scale(&[Sample { timestamp_ms, value }]) {
                Some(scale) => Self::empty_scaled(scale),
                None => Self::empty(Encoding::Xor, &[0, 0]),
            };
        }
        if self.encoding() == Encoding::Xor {
            self.append_xor(timestamp_ms, value);
        } else if !self.try_append_scaled(timestamp_ms, value) {
            // Re-encode what the chunk holds with the new sample: at the scale that holds every value, or
            // as XOR.
            let mut samples = Vec::with_capacity(usize::from(self.num_samples()) + 1);
            super::decode_into(self.encoding(), self.bytes(), i64::MIN, i64::MAX, &mut samples)
                .unwrap_or_else(|_| unreachable!("the appender's own chunk decodes"));
            samples.push(Sample { timestamp_ms, value });
            *self = Self::rebuilt(&samples);
        }
    }

    /// A chunk of `samples`, in scaled integers when every value allows it, else XOR.
    fn rebuilt(samples: &[Sample]) -> Self {
        if let Some(scale) = super::decimal_scale(samples) {
            let mut scaled = Self::empty_scaled(scale);
            if samples.iter().all(|sample| scaled.try_append_scaled(sample.timestamp_ms, sample.value)) {
                return scaled;
            }
        }
        let mut xor = Self::empty(Encoding::Xor, &[0, 0]);
        for sample in samples {
            xor.append_xor(sample.timestamp_ms, sample.value);
        }
        xor
    }

    fn set_window(&mut self, leading: u8, trailing: u8) {
        self.value_delta_or_window = u16::from(leading) << 8 | u16::from(trailing);
    }

    fn append_xor(&mut self, timestamp_ms: i64, value: f64) {
        let mut state = XorState {
            timestamp_ms: self.last_timestamp_ms(),
            delta_ms: i64::from(self.delta_ms),
            value_bits: self.value,
            leading: (self.value_delta_or_window >> 8) as u8,
            trailing: self.value_delta_or_window as u8,
        };
        let num_samples = self.num_samples();
        let (used, free_bits) = (self.used(), self.free_bits());
        let (used, free_bits) =
            append_xor_sample(&mut self.buffer, used, free_bits, num_samples, &mut state, timestamp_ms, value);
        self.set_used(used, free_bits);
        self.timestamp_ms = timestamp_ms;
        // `can_append` keeps the interval within 32 bits.
        self.delta_ms = u32::try_from(state.delta_ms).unwrap_or(u32::MAX);
        self.value = state.value_bits;
        self.set_window(state.leading, state.trailing);
    }

    /// Appends a sample to a scaled-integer chunk; false (nothing written) when its value is not an
    /// exact decimal at the chunk's scale or its integer moves by 2^15 or more.
    fn try_append_scaled(&mut self, timestamp_ms: i64, value: f64) -> bool {
        let Some(integer) = to_scaled(value, self.scale()) else { return false };
        let num_samples = self.num_samples();
        let last_integer = self.value as i64;
        let (value_delta, value_code) = if num_samples == 0 {
            (0, 0)
        } else {
            let Ok(delta) = i16::try_from(integer - last_integer) else { return false };
            (delta, i64::from(delta) - i64::from(self.value_delta_or_window as i16))
        };
        let regular = self.regular();
        let delta_ms = timestamp_ms.wrapping_sub(self.last_timestamp_ms());
        // The timestamp's code: none for a sample that continues the evenly spaced start.
        let timestamp_code = match num_samples {
            0 | 1 => Some(delta_ms),
            _ if regular == num_samples && delta_ms == i64::from(self.delta_ms) => None,
            _ => Some(delta_ms - i64::from(self.delta_ms)),
        };
        let room = ChunkRoom { num_samples, first_sample_end: scaled_first_sample_end };
        let sample_bits = || match num_samples {
            0 => MAX_SAMPLE_BYTES as u32 * 8,
            _ => timestamp_code.map_or(0, varbit_cost) + varbit_cost(value_code),
        };
        let (used, free_bits) = (self.used(), self.free_bits());
        let mut writer = room.writer(&mut self.buffer, used, free_bits, sample_bits);
        if num_samples == 0 {
            write_varint_bits(&mut writer, timestamp_ms);
            write_varint_bits(&mut writer, integer);
        } else {
            if let Some(code) = timestamp_code {
                write_varbit(&mut writer, code);
            }
            write_varbit(&mut writer, value_code);
        }
        let count = num_samples.saturating_add(1);
        set_sample_count(&mut writer, count);
        if regular == num_samples && timestamp_code.is_none_or(|_| num_samples < 2) {
            writer.bytes[3..HEADER_BYTES].copy_from_slice(&count.to_be_bytes());
        }
        let (used, free_bits) = room.store(writer, &mut self.buffer);
        self.set_used(used, free_bits);
        if num_samples > 0 {
            // Ascending timestamps less than 2^32 ms apart (`can_append`).
            self.delta_ms = u32::try_from(delta_ms).unwrap_or(u32::MAX);
        }
        self.timestamp_ms = timestamp_ms;
        self.value = integer as u64;
        self.value_delta_or_window = value_delta as u16;
        true
    }

    /// Samples from the start of a scaled-integer chunk whose timestamps are evenly spaced.
    fn regular(&self) -> u16 {
        match self.bytes() {
            [_, _, _, high, low, ..] => u16::from_be_bytes([*high, *low]),
            _ => 0,
        }
    }
}

/// Where the first sample of a scaled-integer appendable chunk ends: the header, then the varint
/// timestamp and the varint integer.
fn scaled_first_sample_end(bytes: &[u8]) -> usize {
    let timestamp_end = HEADER_BYTES + varint_length(bytes.get(HEADER_BYTES..).unwrap_or_default());
    timestamp_end + varint_length(bytes.get(timestamp_end..).unwrap_or_default())
}

/// The value of scaled integer `integer` at `power` (`10^scale`), as the encoder checked it.
fn scaled_value(integer: i64, power: f64) -> f64 {
    integer as f64 / power
}

/// Iterates the samples of an [`Encoding::ScaledIntAppendable`] chunk, oldest first.
#[derive(Debug, Clone)]
pub struct ScaledIntAppendableIterator<'a> {
    reader: BitReader<'a>,
    total: u16,
    read: u16,
    /// Samples from the start whose timestamps are evenly spaced (no timestamp bits from the third on).
    regular: u16,
    /// `10^scale`.
    power: f64,
    timestamp_ms: i64,
    delta_ms: i64,
    integer: i64,
    integer_delta: i64,
}

impl<'a> ScaledIntAppendableIterator<'a> {
    /// Starts reading `bytes` (header included).
    ///
    /// # Errors
    /// [`ChunkDecodeError`] when the header is missing or names an unknown scale.
    pub fn new(bytes: &'a [u8]) -> Result<Self, ChunkDecodeError> {
        let header = bytes.get(..HEADER_BYTES).ok_or(ChunkDecodeError { reason: "chunk shorter than its header" })?;
        let power =
            *POWERS_OF_TEN.get(usize::from(header[2])).ok_or(ChunkDecodeError { reason: "unknown decimal scale" })?;
        Ok(ScaledIntAppendableIterator {
            reader: BitReader { bytes: &bytes[HEADER_BYTES..], position: 0 },
            total: u16::from_be_bytes([header[0], header[1]]),
            read: 0,
            regular: u16::from_be_bytes([header[3], header[4]]),
            power,
            timestamp_ms: 0,
            delta_ms: 0,
            integer: 0,
            integer_delta: 0,
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
            self.timestamp_ms = read_varint_bits(&mut self.reader)?;
            self.integer = read_varint_bits(&mut self.reader)?;
        } else {
            if self.read == 1 || self.read >= self.regular {
                self.delta_ms = self.delta_ms.wrapping_add(read_varbit(&mut self.reader)?);
            }
            self.timestamp_ms = self.timestamp_ms.wrapping_add(self.delta_ms);
            self.integer_delta = self.integer_delta.wrapping_add(read_varbit(&mut self.reader)?);
            self.integer = self.integer.wrapping_add(self.integer_delta);
        }
        self.read += 1;
        Ok(Some((self.timestamp_ms, scaled_value(self.integer, self.power))))
    }
}

#[cfg(test)]
mod tests {
    use oxeye_model::STALE_NAN_BITS;
    use proptest::prelude::*;

    use super::*;
    use crate::chunkenc::{ChunkIterator, MAX_SAMPLES_PER_CHUNK, decode_into, recode_closed};

    fn decoded(appender: &HeadAppender) -> Vec<(i64, u64)> {
        let mut iterator = ChunkIterator::new(appender.encoding(), appender.bytes()).unwrap();
        let mut out = Vec::new();
        while let Some((timestamp_ms, value)) = iterator.next_sample().unwrap() {
            out.push((timestamp_ms, value.to_bits()));
        }
        out
    }

    fn value_strategy() -> impl Strategy<Value = f64> {
        prop_oneof![
            8 => (0u32..40).prop_map(f64::from),
            2 => (0u32..100_000).prop_map(|hundredths| f64::from(hundredths) / 100.0),
            1 => (0u64..(1 << 40)).prop_map(|integer| integer as f64),
            1 => Just(f64::from_bits(STALE_NAN_BITS)),
            1 => Just(-0.0),
            1 => Just(0.1 + 0.2),
            1 => any::<f64>(),
        ]
    }

    proptest! {
        /// Round trips of any mix of values, including the re-encodings to a larger scale and to XOR,
        /// and continuing a chunk read back from its bytes.
        #[test]
        fn appended_chunks_round_trip_bit_for_bit(
            start in -1_000_000_000_000i64..2_000_000_000_000,
            steps in proptest::collection::vec(prop_oneof![4 => Just(15_000i64), 1 => 1i64..100_000, 1 => Just(i64::from(u32::MAX))], 1..150),
            increments in proptest::collection::vec(prop_oneof![6 => 0u32..5, 1 => Just(0u32)], 150),
            values in proptest::collection::vec(value_strategy(), 150),
            counter_like in any::<bool>(),
        ) {
            let mut appender = HeadAppender::new();
            let mut expected = Vec::new();
            let mut timestamp_ms = start;
            let mut counter = 0.0;
            for ((step, increment), value) in steps.iter().zip(&increments).zip(&values) {
                timestamp_ms += step;
                counter += f64::from(*increment);
                let value = if counter_like && increment % 3 != 0 { counter } else { *value };
                prop_assert!(appender.can_append(timestamp_ms));
                appender.append(timestamp_ms, value);
                expected.push((timestamp_ms, value.to_bits()));
                prop_assert_eq!(appender.last_timestamp_ms(), timestamp_ms);
                prop_assert_eq!(appender.last_value_bits(), value.to_bits());
                prop_assert_eq!(appender.first_timestamp_ms(), expected[0].0);
                prop_assert!(appender.capacity_bytes() >= appender.size_bytes());
            }
            prop_assert_eq!(decoded(&appender), expected.clone());
            let mut windowed = Vec::new();
            decode_into(appender.encoding(), appender.bytes(), i64::MIN, i64::MAX, &mut windowed).unwrap();
            prop_assert_eq!(windowed.len(), expected.len());
            // Continuing a chunk read back from bytes gives the same chunk as never stopping.
            let mut continued = HeadAppender::from_bytes(appender.encoding(), appender.bytes()).unwrap().unwrap();
            let mut reference = appender.clone();
            for (offset, value) in [(15_000, 7.0), (30_000, 7.5), (45_000, f64::NAN)] {
                continued.append(timestamp_ms + offset, value);
                reference.append(timestamp_ms + offset, value);
                prop_assert_eq!(continued.bytes(), reference.bytes());
            }
            // The closed form holds the same samples.
            let (closed_encoding, closed_bytes) = recode_closed(appender.encoding(), appender.bytes().to_vec());
            prop_assert_ne!(closed_encoding, Encoding::ScaledIntAppendable);
            let mut closed = Vec::new();
            decode_into(closed_encoding, &closed_bytes, i64::MIN, i64::MAX, &mut closed).unwrap();
            let closed: Vec<(i64, u64)> = closed.iter().map(|sample| (sample.timestamp_ms, sample.value.to_bits())).collect();
            prop_assert_eq!(closed, expected);
        }

        #[test]
        fn damaged_appendable_chunks_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(mut iterator) = ScaledIntAppendableIterator::new(&bytes) {
                while let Ok(Some(_)) = iterator.next_sample() {}
            }
            let _ = HeadAppender::from_bytes(Encoding::ScaledIntAppendable, &bytes);
        }
    }

    #[test]
    fn counters_append_as_scaled_integers_smaller_than_xor() {
        let mut appender = HeadAppender::new();
        let mut xor = XorAppender::new();
        for index in 0..i64::from(MAX_SAMPLES_PER_CHUNK) {
            let value = (1_000 + index * 3 + index % 4) as f64;
            appender.append(1_700_000_000_000 + index * 15_000, value);
            xor.append(1_700_000_000_000 + index * 15_000, value);
        }
        assert_eq!(appender.encoding(), Encoding::ScaledIntAppendable);
        assert_eq!(appender.regular(), MAX_SAMPLES_PER_CHUNK);
        assert!(appender.size_bytes() * 3 < xor.size_bytes() * 2, "{} vs {}", appender.size_bytes(), xor.size_bytes());
    }

    #[test]
    fn a_finer_decimal_rescales_and_a_fraction_falls_back_to_xor() {
        let mut appender = HeadAppender::new();
        appender.append(1_000, 12.0);
        appender.append(2_000, 12.5);
        assert_eq!((appender.encoding(), appender.bytes()[2]), (Encoding::ScaledIntAppendable, 1));
        appender.append(3_000, 12.25);
        assert_eq!((appender.encoding(), appender.bytes()[2]), (Encoding::ScaledIntAppendable, 2));
        appender.append(4_500, f64::from_bits(STALE_NAN_BITS));
        assert_eq!(appender.encoding(), Encoding::Xor);
        appender.append(5_000, 13.0);
        assert_eq!(
            decoded(&appender),
            [
                (1_000, 12f64.to_bits()),
                (2_000, 12.5f64.to_bits()),
                (3_000, 12.25f64.to_bits()),
                (4_500, STALE_NAN_BITS),
                (5_000, 13f64.to_bits())
            ]
        );
    }

    #[test]
    fn samples_follow_by_less_than_2_to_the_32_milliseconds() {
        let mut appender = HeadAppender::new();
        appender.append(1_000, 1.0);
        assert!(appender.can_append(1_000 + i64::from(u32::MAX)));
        assert!(!appender.can_append(1_001 + i64::from(u32::MAX)));
        assert!(!appender.can_append(1_000));
        appender.append(1_000 + i64::from(u32::MAX), 2.0);
        assert_eq!(appender.last_timestamp_ms(), 1_000 + i64::from(u32::MAX));
    }

    #[test]
    fn an_integer_step_of_2_to_the_15_falls_back_to_xor() {
        let mut appender = HeadAppender::new();
        for (index, value) in [0.0, 32_767.0, 32_767.0 * 2.0].into_iter().enumerate() {
            appender.append(index as i64 * 1_000, value);
        }
        assert_eq!(appender.encoding(), Encoding::ScaledIntAppendable);
        appender.append(3_000, 32_767.0 * 3.0 + 1.0);
        assert_eq!(appender.encoding(), Encoding::Xor);
        assert_eq!(decoded(&appender).len(), 4);
    }

    #[test]
    fn an_irregular_timestamp_ends_the_evenly_spaced_start() {
        let mut appender = HeadAppender::new();
        for timestamp_ms in [0, 10, 20, 30, 41, 51, 61] {
            appender.append(timestamp_ms, 1.0);
        }
        assert_eq!(appender.regular(), 4);
        assert_eq!(
            decoded(&appender).iter().map(|(timestamp_ms, _)| *timestamp_ms).collect::<Vec<_>>(),
            [0, 10, 20, 30, 41, 51, 61]
        );
    }

    #[test]
    fn the_head_appender_fits_in_40_bytes() {
        assert!(std::mem::size_of::<HeadAppender>() <= 40, "{}", std::mem::size_of::<HeadAppender>());
    }
}
