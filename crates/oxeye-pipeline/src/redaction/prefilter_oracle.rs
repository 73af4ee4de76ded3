//! The line prefilter as it was before session 14 (64-byte blocks of SWAR masks, every run of name bytes
//! compared), kept unchanged as the oracle the randomised tests compare [`Redactor::line_may_change`] with.

use memchr::memchr_iter;

use super::numbers::find_numbers;
use super::prefilter::{HIGH_BITS, LOW_ONES, bytes_equal};
use super::text::email_span;
use super::{Redactor, SensitiveKeys};

fn is_joinable(byte: u8) -> bool {
    byte.is_ascii_digit() || byte == b' ' || byte == b'-'
}

/// Fewest digits (joined by spaces or dashes) that can hold an SSN or a card number.
const MIN_NUMBER_DIGITS: u32 = 9;

/// Per-byte flags of a 64-byte block, bit `i` for byte `i`, computed eight bytes at a time (SWAR).
struct BlockMasks {
    /// ASCII letters, digits, `_` and `-`.
    name: u64,
    digit: u64,
    /// Digits, spaces and dashes: what a run of card or SSN digit groups is made of.
    joinable: u64,
}

/// High bit of each byte set where the byte (of 7 bits) is at least `bound` (at most 0x80).
#[inline(always)]
fn bytes_at_least(seven_bits: u64, bound: u8) -> u64 {
    ((seven_bits | HIGH_BITS) - LOW_ONES * u64::from(bound)) & HIGH_BITS
}

/// The high bits of the eight bytes as eight bits (byte `i` to bit `i`): each product term lands on its own bit.
#[inline(always)]
fn pack_high_bits(high_bits: u64) -> u64 {
    (high_bits >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56
}

impl BlockMasks {
    #[inline(always)]
    fn of(block: &[u8]) -> BlockMasks {
        let mut masks = BlockMasks { name: 0, digit: 0, joinable: 0 };
        for (index, eight) in block.chunks_exact(8).enumerate() {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(eight);
            let word = u64::from_le_bytes(bytes);
            let ascii = !word & HIGH_BITS;
            let seven_bits = word & !HIGH_BITS;
            let digit = bytes_at_least(seven_bits, b'0') & !bytes_at_least(seven_bits, b'9' + 1) & ascii;
            let folded = seven_bits | (LOW_ONES * 0x20);
            let letter = bytes_at_least(folded, b'a') & !bytes_at_least(folded, b'z' + 1) & ascii;
            let dash = bytes_equal(word, b'-');
            let name = letter | digit | dash | bytes_equal(word, b'_');
            let joinable = digit | dash | bytes_equal(word, b' ');
            let shift = 8 * index;
            masks.name |= pack_high_bits(name) << shift;
            masks.digit |= pack_high_bits(digit) << shift;
            masks.joinable |= pack_high_bits(joinable) << shift;
        }
        masks
    }
}

/// Finds runs of joinable bytes (digits, spaces, dashes) with at least [`MIN_NUMBER_DIGITS`] digits, block by
/// block, carrying the run still open at a block's end into the next.
#[derive(Default)]
struct DigitRuns {
    /// Digits in the run open at the end of the previous block, and where that run started in the line.
    open_digits: u32,
    open_start: usize,
    /// The previous block's joinable bytes.
    previous_joinable: u64,
}

impl DigitRuns {
    /// Calls `long_run(start)` with the line offset where each run holding enough digits starts, once per run.
    fn scan_block(&mut self, block_start: usize, joinable: u64, digit: u64, long_run: &mut impl FnMut(usize)) {
        // Most blocks hold no 9 joinable bytes in a row (with the previous block's tail), so no run with 9 digits
        // ends in them: then only the run open at the block's end is carried.
        let joined = (u128::from(joinable) << 64) | u128::from(self.previous_joinable);
        self.previous_joinable = joinable;
        let mut nine_in_a_row = joined & (joined >> 1);
        nine_in_a_row &= nine_in_a_row >> 2;
        nine_in_a_row &= nine_in_a_row >> 4;
        nine_in_a_row &= joined >> 8;
        if nine_in_a_row >> 56 == 0 {
            let open_length = joinable.leading_ones();
            self.open_start = block_start + 64 - open_length as usize;
            self.open_digits = match open_length {
                0 => 0,
                length => (digit & (u64::MAX << (64 - length))).count_ones(),
            };
            return;
        }
        let mut digits = self.open_digits;
        let mut start = self.open_start;
        let mut position = 0u32;
        loop {
            if position >= 64 {
                self.open_digits = digits;
                self.open_start = start;
                return;
            }
            let rest = joinable >> position;
            let gap = rest.trailing_zeros();
            if gap > 0 {
                digits = 0;
                position = (position + gap).min(64);
                start = block_start + position as usize;
                continue;
            }
            let length = (!rest).trailing_zeros().min(64 - position);
            let run = if length >= 64 { u64::MAX } else { ((1u64 << length) - 1) << position };
            let digits_before = digits;
            digits += (digit & run).count_ones();
            if digits_before < MIN_NUMBER_DIGITS && digits >= MIN_NUMBER_DIGITS {
                long_run(start);
            }
            position += length;
        }
    }
}

/// Whether the run of name bytes that ends the line may be a key.
fn block_tail_may_be_key(line: &[u8], name_run: usize, keys: &SensitiveKeys) -> bool {
    let length = name_run.min(line.len());
    if !line.len().is_multiple_of(64) {
        // The padded last block ended the run at the line's end already.
        return false;
    }
    keys.may_end_with(length, line.last().copied().unwrap_or_default())
        && keys.matches_exactly(line.get(line.len() - length..).unwrap_or_default())
}

impl Redactor {
    /// Whether any built-in rule could change `line`, decided by one pass over its bytes; `false` means
    /// [`Redactor::line_with_tally`] would return the line unchanged, so the JSON scanner and the per-value
    /// rules need not run. Always `true` with custom rules, or when a sensitive key has a byte other than
    /// ASCII letters, digits, `_` and `-` (see [`SensitiveKeys::name_bytes_only`]).
    ///
    /// Why `false` is safe: every rule needs something this pass looks for in the whole line. A sensitive
    /// key (in a JSON key, a `key=value` or `"key": value` pair, or as the last `.` segment of one) is a
    /// maximal run of name bytes equal to a sensitive key once normalised. E-mail addresses, card numbers and
    /// SSNs are looked for by the same detectors the rules use: e-mails in the whole line (a JSON string
    /// value is delimited by quotes, which end an address as the value's own ends do), numbers in each run of
    /// digits, spaces and dashes holding 9 digits or more, taken alone (so no neighbouring byte can block
    /// one). JSON escapes (`\\u0040` is `@`) are the one way a decoded value holds what the raw line does not,
    /// so any backslash sends the line down the full path.
    ///
    /// The line is read 64 bytes at a time: one mask per byte class, eight bytes per step (SWAR), then runs
    /// are walked bit by bit; only a run of name bytes whose length and last byte fit a key is compared.
    pub(crate) fn line_may_change_before_session_14(&self, line: &[u8]) -> bool {
        let inner = &self.inner;
        if !inner.custom_rules.is_empty() || !inner.sensitive_keys.name_bytes_only() {
            return true;
        }
        let keys = &inner.sensitive_keys;
        let options = &inner.options;
        if memchr::memchr(b'\\', line).is_some() {
            return true;
        }
        if options.emails && memchr_iter(b'@', line).any(|at| email_span(line, at).is_some()) {
            return true;
        }
        let numbers_wanted = options.card_numbers || options.ssns;
        let mut name_run = 0usize;
        let mut digit_runs = DigitRuns::default();
        let mut long_run_starts: Vec<usize> = Vec::new();
        let mut padded = [0u8; 64];
        for (block_index, block) in line.chunks(64).enumerate() {
            let block_start = block_index * 64;
            let block: &[u8] = if block.len() == 64 {
                block
            } else {
                padded[..block.len()].copy_from_slice(block);
                &padded
            };
            let masks = BlockMasks::of(block);
            // Name runs: bit p of `ended` is set when byte p is the first byte after a run of name bytes.
            let mut ended = !masks.name & ((masks.name << 1) | u64::from(name_run != 0));
            while ended != 0 {
                let position = ended.trailing_zeros() as usize;
                ended &= ended - 1;
                let before = !masks.name & ((1u64 << position) - 1);
                let length =
                    if before == 0 { position + name_run } else { position - (64 - before.leading_zeros() as usize) };
                let end = block_start + position;
                if end <= line.len()
                    && keys.may_end_with(length, line.get(end.saturating_sub(1)).copied().unwrap_or_default())
                    && keys.matches_exactly(line.get(end - length..end).unwrap_or_default())
                {
                    return true;
                }
            }
            name_run = if masks.name == u64::MAX { name_run + 64 } else { masks.name.leading_ones() as usize };
            if numbers_wanted {
                digit_runs.scan_block(block_start, masks.joinable, masks.digit, &mut |start| {
                    long_run_starts.push(start);
                });
            }
        }
        if block_tail_may_be_key(line, name_run, keys) {
            return true;
        }
        // Each long run alone, without the bytes around it: the detectors then see no boundary that could
        // block a number, so they find at least what they find in the whole line.
        let mut has_number = false;
        for start in long_run_starts {
            let length = line.get(start..).unwrap_or_default().iter().take_while(|byte| is_joinable(**byte)).count();
            let run = line.get(start..start + length).unwrap_or_default();
            find_numbers(run, options.card_numbers, options.ssns, &mut |_, _, _| has_number = true);
            if has_number {
                return true;
            }
        }
        false
    }
}
