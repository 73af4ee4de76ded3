//! The line prefilter: proves, as cheaply as it can, that no built-in rule would change a line, so the JSON
//! scanner and the per-value rules run only on the few lines that may hold something to redact.

use memchr::{memchr2_iter, memrchr};

use super::numbers::find_numbers;
use super::text::{email_span, is_key_byte};
use super::{Redactor, SensitiveKeys};

/// Fewest digits of an SSN.
const MIN_NUMBER_DIGITS: usize = 9;

/// Fewest digits of a card number.
const MIN_CARD_DIGITS: usize = 13;

/// Fewest bytes of a run of digits, spaces and dashes that can hold an SSN (`ddd-dd-dddd`) or a card number
/// (13 digits or more): shorter runs, like a date's `2026-11-25`, are never looked at.
const MIN_RUN_BYTES: usize = 11;

pub(super) const LOW_ONES: u64 = 0x0101_0101_0101_0101;
pub(super) const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// High bit of each byte set where the byte equals `wanted`.
#[inline(always)]
pub(super) fn bytes_equal(word: u64, wanted: u8) -> u64 {
    let difference = word ^ (LOW_ONES * u64::from(wanted));
    !(((difference & !HIGH_BITS) + !HIGH_BITS) | difference) & HIGH_BITS
}

/// High bit of each byte set where the byte is an ASCII digit, a space or a dash: what a run of card or SSN
/// digit groups is made of.
#[inline(always)]
fn joinable_bytes(word: u64) -> u64 {
    // `0`..`9` become 0..9; adding 0x76 to the low 7 bits sets a byte's high bit exactly when it is 10 or more
    // (no carry leaves a byte), and bytes of 0x80 and above keep their high bit through the `|`.
    let digit_values = word ^ (LOW_ONES * u64::from(b'0'));
    let digit = !(((digit_values & !HIGH_BITS) + LOW_ONES * 0x76) | digit_values) & HIGH_BITS;
    digit | bytes_equal(word, b' ') | bytes_equal(word, b'-')
}

/// Bytes read per step of [`NumberScan::may_find`]: four words, classified in a loop of their own so the
/// compiler can do two at a time.
const BLOCK_BYTES: usize = 32;

/// The number part of the prefilter: which of the two rules are on.
struct NumberScan {
    cards: bool,
    ssns: bool,
}

impl NumberScan {
    /// Whether card numbers or SSNs may be found in `line`: some maximal run of digits, spaces and dashes in
    /// which [`find_numbers`], given the run alone, finds one. Each word of eight bytes gets a mask of the bytes
    /// that cannot join a number (SWAR); a run is looked at once it holds [`MIN_RUN_BYTES`] bytes.
    fn may_find(&self, line: &[u8]) -> bool {
        // Joinable bytes just before the word at hand, back to the start of their run.
        let mut open = 0usize;
        // The end of the last run looked at: words after it that are still inside it are not looked at again.
        let mut checked_up_to = 0usize;
        let mut padded = [0u8; BLOCK_BYTES];
        for (block_index, block) in line.chunks(BLOCK_BYTES).enumerate() {
            let block_start = block_index * BLOCK_BYTES;
            let block: &[u8] = if block.len() == BLOCK_BYTES {
                block
            } else {
                // Zero is neither a delimiter nor joinable.
                padded.get_mut(..block.len()).unwrap_or_default().copy_from_slice(block);
                &padded
            };
            let mut others = [0u64; BLOCK_BYTES / 8];
            for (other, eight) in others.iter_mut().zip(block.chunks_exact(8)) {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(eight);
                *other = !joinable_bytes(u64::from_le_bytes(bytes)) & HIGH_BITS;
            }
            for (word_index, other) in others.iter().enumerate() {
                let leading = (other.trailing_zeros() / 8) as usize;
                if open + leading >= MIN_RUN_BYTES {
                    let run_start = block_start + word_index * 8 - open;
                    if run_start >= checked_up_to && self.number_in_run(line, run_start, &mut checked_up_to) {
                        return true;
                    }
                }
                open = if *other == 0 { open + 8 } else { (other.leading_zeros() / 8) as usize };
            }
        }
        false
    }

    /// Whether [`find_numbers`] finds something in the maximal run of joinable bytes starting at `run_start`,
    /// given alone; sets `checked_up_to` to the run's end. The detector runs only when the run holds enough
    /// digits for a card (13), or enough for an SSN (9) and two dashes.
    #[cold]
    fn number_in_run(&self, line: &[u8], run_start: usize, checked_up_to: &mut usize) -> bool {
        let tail = line.get(run_start..).unwrap_or_default();
        let mut digits = 0usize;
        let mut dashes = 0usize;
        let mut run_length = 0usize;
        for byte in tail {
            match byte {
                b'0'..=b'9' => digits += 1,
                b'-' => dashes += 1,
                b' ' => {}
                _ => break,
            }
            run_length += 1;
        }
        *checked_up_to = run_start + run_length;
        let card_possible = self.cards && digits >= MIN_CARD_DIGITS;
        let ssn_possible = self.ssns && digits >= MIN_NUMBER_DIGITS && dashes >= 2;
        if !card_possible && !ssn_possible {
            return false;
        }
        let mut found = false;
        find_numbers(tail.get(..run_length).unwrap_or_default(), self.cards, self.ssns, &mut |_, _, _| found = true);
        found
    }
}

/// Bytes of a key name as the prefilter compares them: ASCII letters, digits, `_` and `-`.
static NAME_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0usize;
    while byte < 256 {
        let ascii = byte as u8;
        table[byte] = ascii.is_ascii_alphanumeric() || ascii == b'_' || ascii == b'-';
        byte += 1;
    }
    table
};

/// Whether the `=` or `:` at `delimiter` follows a sensitive key: after skipping JSON whitespace and one quote
/// backwards, the maximal run of name bytes ending there equals a key (normalised).
#[inline(always)]
fn sensitive_key_before(line: &[u8], delimiter: usize, keys: &SensitiveKeys) -> bool {
    let mut end = delimiter;
    while end > 0 && matches!(line.get(end - 1), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        end -= 1;
    }
    if end > 0 && matches!(line.get(end - 1), Some(b'"' | b'\'')) {
        end -= 1;
    }
    let Some(&last) = line.get(end.wrapping_sub(1)) else { return false };
    let before_last = line.get(end.wrapping_sub(2)).copied();
    if !keys.may_end_with_pair(before_last, last) {
        return false;
    }
    let mut start = end - 1;
    if !NAME_BYTES[usize::from(last)] {
        return false;
    }
    while start > 0 && line.get(start - 1).is_some_and(|byte| NAME_BYTES[usize::from(*byte)]) {
        start -= 1;
    }
    keys.may_end_with(end - start, last) && keys.matches_exactly(line.get(start..end).unwrap_or_default())
}

impl Redactor {
    /// Whether any built-in rule could change `line`; `false` means [`Redactor::line_with_tally`] would return
    /// the line unchanged with nothing counted, so the JSON scanner and the per-value rules need not run.
    /// Always `true` with custom rules, or when a sensitive key has a byte other than ASCII letters, digits,
    /// `_` and `-` (see [`SensitiveKeys::name_bytes_only`]).
    ///
    /// Why `false` is safe: every rule needs something this looks for in the whole line.
    /// - JSON escapes (`\u0040` is `@`) are the one way a decoded value holds what the raw line does not, so any
    ///   backslash sends the line down the full path; without one, every `"` opens or closes a string.
    /// - A sensitive key is found by both paths only before a delimiter: a JSON object key is followed by JSON
    ///   whitespace and `:`, a key in text by spaces and `=` or `:`, either one after a closing quote or not.
    ///   The key (or its last `.` segment) is then the maximal run of name bytes that ends there, which is what
    ///   is compared at every `=` and `:`, after a two-byte ending filter.
    /// - E-mail addresses are looked for by the rule's own detector in the whole line (quotes end an address as
    ///   a JSON string value's own ends do). One is left alone only when it is the whole value of a kept key
    ///   written `"email": "address"` (spaces only around the `:`) and the key's opening quote starts the line
    ///   after `{` or follows ASCII whitespace: in valid JSON that string is then an object key (a string
    ///   followed by `:`); as text, `pair_at` finds the same key and value, and no earlier value can reach
    ///   over the `:` without reaching over the address too (an unquoted value ends at whitespace, a quoted
    ///   one at the next quote, a bracketed one at its bracket or the line's end). Anything else inside it
    ///   (digits) is left to the number check.
    /// - Card numbers and SSNs are looked for by the rule's own detector in each run of digits, spaces and
    ///   dashes taken alone (so no neighbouring byte can block one), when the run can hold one: 11 bytes or
    ///   more, and 13 digits, or 9 digits and two dashes.
    ///
    /// Costs per line: one `memchr2` pass over `\` and `@`, one `memchr2` pass over `=` and `:` with a table
    /// lookup of the two bytes ending the name before each, and one pass of four eight-byte words per step
    /// ([`NumberScan`]) for digit runs. `line_may_change_before_session_14` (tests only) is the block-mask
    /// version this replaced, kept as the tests' oracle.
    pub(crate) fn line_may_change(&self, line: &[u8]) -> bool {
        let inner = &self.inner;
        if !inner.custom_rules.is_empty() || !inner.sensitive_keys.name_bytes_only() {
            return true;
        }
        let options = &inner.options;
        // One pass for both rare bytes: any backslash, or an `@` with an address around it that is not a kept
        // member's value.
        for found in memchr2_iter(b'\\', b'@', line) {
            if line.get(found) == Some(&b'\\') {
                return true;
            }
            if options.emails
                && let Some((start, end)) = email_span(line, found)
                && !self.is_kept_email_value(line, start, end)
            {
                return true;
            }
        }
        let keys = &inner.sensitive_keys;
        if !keys.is_empty()
            && memchr2_iter(b'=', b':', line).any(|delimiter| sensitive_key_before(line, delimiter, keys))
        {
            return true;
        }
        let numbers = NumberScan { cards: options.card_numbers, ssns: options.ssns };
        (numbers.cards || numbers.ssns) && numbers.may_find(line)
    }

    /// Whether `line[start..end]`, an e-mail address, is the whole string value of a kept e-mail key in the
    /// one shape [`Redactor::line_may_change`] trusts: `"email": "address"` with only spaces around the `:`,
    /// the key's opening quote preceded by ASCII whitespace or being the second byte after a leading `{`. The
    /// line holds no backslash.
    fn is_kept_email_value(&self, line: &[u8], start: usize, end: usize) -> bool {
        if line.get(end) != Some(&b'"') || start == 0 || line.get(start - 1) != Some(&b'"') {
            return false;
        }
        let mut position = start - 1;
        while position > 0 && line.get(position - 1) == Some(&b' ') {
            position -= 1;
        }
        if position == 0 || line.get(position - 1) != Some(&b':') {
            return false;
        }
        position -= 1;
        while position > 0 && line.get(position - 1) == Some(&b' ') {
            position -= 1;
        }
        if position == 0 || line.get(position - 1) != Some(&b'"') {
            return false;
        }
        let key_end = position - 1;
        let Some(key_open) = memrchr(b'"', line.get(..key_end).unwrap_or_default()) else { return false };
        let key = line.get(key_open + 1..key_end).unwrap_or_default();
        let opens_cleanly = match key_open.checked_sub(1).and_then(|before| line.get(before)) {
            Some(before) => before.is_ascii_whitespace() || (key_open == 1 && *before == b'{'),
            None => false,
        };
        opens_cleanly
            && !key.is_empty()
            && key.iter().all(|byte| is_key_byte(*byte))
            && self.inner.options.kept_email_keys.iter().any(|kept| kept.as_bytes() == key)
    }
}
