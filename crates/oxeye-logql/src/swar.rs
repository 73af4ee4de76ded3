//! Byte tests on eight bytes at once in a `u64` ("SIMD within a register"), shared by the scanners of
//! `| logfmt` ([`crate::logfmt`]) and `| json` ([`crate::json_fields`]) where no vector path is used.
//!
//! A test sets the high bit of each flagged byte. Borrows only run towards higher bytes, so bits above a
//! flagged byte may be wrong, but the lowest flagged byte is always a true one: read the result with
//! `trailing_zeros() / 8`.

/// `0x01` in every byte.
pub(crate) const ONES: u64 = 0x0101_0101_0101_0101;
/// `0x80` in every byte.
pub(crate) const HIGHS: u64 = 0x8080_8080_8080_8080;

/// High bits of the bytes of `word` below `n` (`n` at most 0x80), the lowest one exact (see the module docs).
#[inline(always)]
pub(crate) fn bytes_below(word: u64, n: u8) -> u64 {
    word.wrapping_sub(ONES * u64::from(n)) & !word & HIGHS
}

/// High bits of the bytes of `word` equal to `byte`, the lowest one exact as in [`bytes_below`].
#[inline(always)]
pub(crate) fn bytes_equal(word: u64, byte: u8) -> u64 {
    bytes_below(word ^ (ONES * u64::from(byte)), 1)
}

/// High bits of the bytes of `word` at or above `n` (`n` from 1 to 0x80), exact for every byte when all of
/// `word`'s bytes are ASCII (below 0x80): adding `0x80 - n` then carries out of no byte.
#[inline(always)]
pub(crate) fn ascii_bytes_at_least(word: u64, n: u8) -> u64 {
    word.wrapping_add(ONES * u64::from(0x80 - n)) & HIGHS
}

/// High bits of the bytes of `word` that are ASCII letters, digits or `_` (the bytes of a valid label
/// name), exact for every byte when all of `word`'s bytes are ASCII.
#[inline(always)]
pub(crate) fn ascii_label_name_bytes(word: u64) -> u64 {
    let within = |low: u8, high: u8| ascii_bytes_at_least(word, low) & !ascii_bytes_at_least(word, high + 1);
    let underscores = !ascii_bytes_at_least(word ^ (ONES * u64::from(b'_')), 1) & HIGHS;
    within(b'0', b'9') | within(b'A', b'Z') | within(b'a', b'z') | underscores
}
