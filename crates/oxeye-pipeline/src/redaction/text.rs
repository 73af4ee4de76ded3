//! Free-text rules: key/value pairs written inside text, e-mail addresses, card numbers, SSNs and custom regexes,
//! found as byte spans and then merged into non-overlapping replacements.

use memchr::{memchr_iter, memchr2_iter};

use super::numbers::find_numbers;
use super::options::{EMAIL_REPLACEMENT, REDACTED};
use super::stats::{Rule, Tally};
use super::{KeyContext, Redactor};

/// One replacement of `text[start..end]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Replacement<'r> {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) text: &'r str,
}

#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
    rule: Rule,
}

/// What a `key=value` / `"key": value` / `key: value` pair found in text asks for.
enum PairFinding {
    /// The value span of a sensitive key.
    Redact(usize, usize),
    /// The value span of a kept e-mail key: e-mail addresses inside stay.
    KeepEmail(usize, usize),
    /// A trace or span id under its key: no rule touches it.
    KeepAll(usize, usize),
}

/// Whether `[start, end)` overlaps one of `intervals`, which are sorted and disjoint (so their ends are sorted
/// too): a binary search, keeping lines with many kept values linear-logarithmic.
fn overlaps_any(intervals: &[(usize, usize)], start: usize, end: usize) -> bool {
    let first_ending_after_start = intervals.partition_point(|&(_, interval_end)| interval_end <= start);
    intervals.get(first_ending_after_start).is_some_and(|&(interval_start, _)| interval_start < end)
}

/// Byte classes for the prefilters.
const CLASS_DIGIT: u8 = 1;
const CLASS_AT: u8 = 2;
const CLASS_DELIMITER: u8 = 4;
const CLASS_JOINER: u8 = 8;
/// Bytes of a key name as the line prefilter compares them: ASCII letters, digits, `_` and `-`.
const CLASS_NAME: u8 = 16;
const CLASS_BACKSLASH: u8 = 32;

/// Fewest digits (joined by spaces or dashes) that can hold an SSN or a card number.
const MIN_NUMBER_DIGITS: u32 = 9;

static BYTE_CLASSES: [u8; 256] = {
    let mut classes = [0u8; 256];
    let mut byte = 0usize;
    while byte < 256 {
        let ascii = byte as u8;
        if ascii.is_ascii_alphanumeric() || ascii == b'_' || ascii == b'-' {
            classes[byte] = CLASS_NAME;
        }
        if ascii.is_ascii_digit() {
            classes[byte] |= CLASS_DIGIT;
        }
        byte += 1;
    }
    classes[b'@' as usize] = CLASS_AT;
    classes[b'=' as usize] = CLASS_DELIMITER;
    classes[b':' as usize] = CLASS_DELIMITER;
    classes[b' ' as usize] = CLASS_JOINER;
    classes[b'-' as usize] |= CLASS_JOINER;
    classes[b'\\' as usize] = CLASS_BACKSLASH;
    classes
};

/// What one cheap pass over the text found: which detectors can possibly match.
struct TextFeatures {
    has_at: bool,
    has_delimiter: bool,
    /// Digits in the longest stretch of digits, spaces and dashes (an over-estimate of a run's digits).
    longest_digit_run: u32,
}

impl TextFeatures {
    fn scan(bytes: &[u8]) -> TextFeatures {
        let mut seen = 0u8;
        let mut run = 0u32;
        let mut longest = 0u32;
        for &byte in bytes {
            let class = BYTE_CLASSES[usize::from(byte)];
            seen |= class;
            if class & CLASS_DIGIT != 0 {
                run += 1;
                longest = longest.max(run);
            } else if class & CLASS_JOINER == 0 {
                run = 0;
            }
        }
        TextFeatures {
            has_at: seen & CLASS_AT != 0,
            has_delimiter: seen & CLASS_DELIMITER != 0,
            longest_digit_run: longest,
        }
    }
}

fn is_joinable(byte: u8) -> bool {
    byte.is_ascii_digit() || byte == b' ' || byte == b'-'
}

/// Whether `bytes` is a W3C trace id (32 hex digits) or span id (16 hex digits).
fn is_hex_id(bytes: &[u8]) -> bool {
    matches!(bytes.len(), 16 | 32) && bytes.iter().all(u8::is_ascii_hexdigit)
}

fn is_key_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.')
}

fn is_email_local_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_email_domain_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-')
}

/// Per-byte flags of a 64-byte block, bit `i` for byte `i`, computed eight bytes at a time (SWAR).
struct BlockMasks {
    /// ASCII letters, digits, `_` and `-`.
    name: u64,
    digit: u64,
    /// Digits, spaces and dashes: what a run of card or SSN digit groups is made of.
    joinable: u64,
}

const LOW_ONES: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// High bit of each byte set where the byte (of 7 bits) is at least `bound` (at most 0x80).
#[inline(always)]
fn bytes_at_least(seven_bits: u64, bound: u8) -> u64 {
    ((seven_bits | HIGH_BITS) - LOW_ONES * u64::from(bound)) & HIGH_BITS
}

/// High bit of each byte set where the byte equals `wanted`.
#[inline(always)]
fn bytes_equal(word: u64, wanted: u8) -> u64 {
    let difference = word ^ (LOW_ONES * u64::from(wanted));
    !(((difference & !HIGH_BITS) + !HIGH_BITS) | difference) & HIGH_BITS
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
fn block_tail_may_be_key(line: &[u8], name_run: usize, keys: &super::SensitiveKeys) -> bool {
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
    pub(crate) fn line_may_change(&self, line: &[u8]) -> bool {
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

    /// Applies the free-text rules to `text` and returns the replacements, sorted and non-overlapping, counting
    /// each contributing rule in `tally`.
    pub(crate) fn text_replacements(&self, text: &str, context: KeyContext, tally: &mut Tally) -> Vec<Replacement<'_>> {
        let bytes = text.as_bytes();
        if context == KeyContext::TraceId && is_hex_id(bytes) {
            return Vec::new();
        }
        let features = TextFeatures::scan(bytes);
        let wants_numbers = features.longest_digit_run >= MIN_NUMBER_DIGITS
            && (self.inner.options.card_numbers || self.inner.options.ssns);
        let wants_emails = features.has_at && self.inner.options.emails && context != KeyContext::KeepEmail;
        let wants_pairs = features.has_delimiter && self.has_key_rules();
        if !wants_numbers && !wants_emails && !wants_pairs && self.inner.custom_rules.is_empty() {
            return Vec::new();
        }
        let mut spans: Vec<Span> = Vec::new();
        let mut kept: Vec<(usize, usize)> = Vec::new();
        let mut ids: Vec<(usize, usize)> = Vec::new();

        if wants_pairs {
            // Delimiters inside a value already found are skipped, which keeps lines like
            // `password=password=password=...` or `email=email=...` linear.
            let mut found_up_to = 0;
            for delimiter in memchr2_iter(b'=', b':', bytes) {
                if delimiter < found_up_to {
                    continue;
                }
                match self.pair_at(bytes, delimiter) {
                    Some(PairFinding::Redact(start, end)) => {
                        found_up_to = end;
                        spans.push(Span { start, end, rule: Rule::SensitiveKey });
                    }
                    Some(PairFinding::KeepEmail(start, end)) => {
                        found_up_to = end;
                        kept.push((start, end));
                    }
                    Some(PairFinding::KeepAll(start, end)) => {
                        found_up_to = end;
                        ids.push((start, end));
                    }
                    None => {}
                }
            }
        }
        if wants_numbers {
            find_numbers(bytes, self.inner.options.card_numbers, self.inner.options.ssns, &mut |start, end, rule| {
                spans.push(Span { start, end, rule })
            });
        }
        if wants_emails {
            for at in memchr_iter(b'@', bytes) {
                if let Some((start, end)) = email_span(bytes, at) {
                    let inside_kept = overlaps_any(&kept, start, end);
                    if !inside_kept {
                        spans.push(Span { start, end, rule: Rule::Email });
                    }
                }
            }
        }
        for (index, rule) in self.inner.custom_rules.iter().enumerate() {
            for found in rule.regex.find_iter(text) {
                if found.start() < found.end() && found.as_str() != rule.replacement {
                    spans.push(Span { start: found.start(), end: found.end(), rule: Rule::Custom(index) });
                }
            }
        }
        if !ids.is_empty() {
            spans.retain(|span| !overlaps_any(&ids, span.start, span.end));
        }
        if spans.is_empty() {
            return Vec::new();
        }
        self.merge_spans(spans, tally)
    }

    fn replacement_text(&self, rule: Rule) -> &str {
        match rule {
            Rule::Email => EMAIL_REPLACEMENT,
            Rule::Custom(index) => {
                self.inner.custom_rules.get(index).map_or(REDACTED, |rule| rule.replacement.as_str())
            }
            Rule::SensitiveKey | Rule::CardNumber | Rule::Ssn => REDACTED,
        }
    }

    /// Merges overlapping spans (a card inside a password value, an e-mail overlapping a custom match) so nothing
    /// of either leaks; a merged span of different rules becomes [`REDACTED`]. A span wholly inside an earlier one
    /// is not counted.
    fn merge_spans(&self, mut spans: Vec<Span>, tally: &mut Tally) -> Vec<Replacement<'_>> {
        spans.sort_by(|left, right| left.start.cmp(&right.start).then(right.end.cmp(&left.end)));
        let mut replacements: Vec<Replacement<'_>> = Vec::with_capacity(spans.len());
        let mut current: Option<(usize, usize, Rule, bool)> = None;
        for span in spans {
            match current.as_mut() {
                Some((_, current_end, current_rule, mixed)) if span.start < *current_end => {
                    if span.end > *current_end {
                        *current_end = span.end;
                        tally.count(span.rule);
                    }
                    if span.rule != *current_rule {
                        *mixed = true;
                    }
                }
                _ => {
                    if let Some((start, end, rule, mixed)) = current.take() {
                        replacements.push(self.finish_replacement(start, end, rule, mixed));
                    }
                    tally.count(span.rule);
                    current = Some((span.start, span.end, span.rule, false));
                }
            }
        }
        if let Some((start, end, rule, mixed)) = current {
            replacements.push(self.finish_replacement(start, end, rule, mixed));
        }
        replacements
    }

    fn finish_replacement(&self, start: usize, end: usize, rule: Rule, mixed: bool) -> Replacement<'_> {
        let text = if mixed { REDACTED } else { self.replacement_text(rule) };
        Replacement { start, end, text }
    }

    /// Looks for a key ending just before the `=` or `:` at `delimiter` and, when the key is sensitive or kept,
    /// returns its value's span. Forms: `key=value`, `key="quoted value"`, `?key=value&...`, `"key": value`,
    /// `'key': 'value'`, `\"key\": \"value\"` (JSON inside a JSON string), `key: value up to , ; or end of line`,
    /// and `key:value` (sensitive keys only).
    fn pair_at(&self, bytes: &[u8], delimiter: usize) -> Option<PairFinding> {
        let delimiter_byte = *bytes.get(delimiter)?;
        let mut key_end = delimiter;
        while key_end > 0 && bytes[key_end - 1] == b' ' {
            key_end -= 1;
        }
        let last = *bytes.get(key_end.checked_sub(1)?)?;
        let (key_start, key_stop, key_quoted) = if last == b'"' || last == b'\'' {
            let close = key_end - 1;
            let escaped = close > 0 && bytes[close - 1] == b'\\';
            let key_stop = if escaped { close - 1 } else { close };
            let mut key_start = key_stop;
            while key_start > 0 && is_key_byte(bytes[key_start - 1]) {
                key_start -= 1;
            }
            if key_start == key_stop || key_start == 0 || bytes[key_start - 1] != last {
                return None;
            }
            if escaped && !(key_start >= 2 && bytes[key_start - 2] == b'\\') {
                return None;
            }
            (key_start, key_stop, true)
        } else {
            if key_end != delimiter || !is_key_byte(last) {
                return None;
            }
            let mut key_start = key_end;
            while key_start > 0 && is_key_byte(bytes[key_start - 1]) {
                key_start -= 1;
            }
            (key_start, key_end, false)
        };
        let key = std::str::from_utf8(bytes.get(key_start..key_stop)?).ok()?;
        let context = self.classify_key(key);
        if context == KeyContext::Plain {
            return None;
        }
        // `key:value` without a space is how hosts, ports, times and URLs look: only a sensitive key counts there.
        let tight_colon = delimiter_byte == b':'
            && !key_quoted
            && !matches!(bytes.get(delimiter + 1), Some(b' ' | b'\t' | b'"' | b'\''));
        if tight_colon && context != KeyContext::Sensitive {
            return None;
        }
        let query_context = !key_quoted && key_start > 0 && matches!(bytes[key_start - 1], b'?' | b'&');
        let form = if delimiter_byte == b'=' {
            ValueForm::Logfmt { query: query_context }
        } else if key_quoted || tight_colon || context != KeyContext::Sensitive {
            ValueForm::Token
        } else {
            ValueForm::RestOfClause
        };
        let (value_start, value_end) = value_span(bytes, delimiter, form)?;
        if value_start >= value_end {
            return None;
        }
        match context {
            KeyContext::Sensitive => {
                if bytes.get(value_start..value_end) == Some(REDACTED.as_bytes()) {
                    None
                } else {
                    Some(PairFinding::Redact(value_start, value_end))
                }
            }
            KeyContext::KeepEmail => Some(PairFinding::KeepEmail(value_start, value_end)),
            KeyContext::TraceId => {
                let is_id = bytes.get(value_start..value_end).is_some_and(is_hex_id);
                is_id.then_some(PairFinding::KeepAll(value_start, value_end))
            }
            KeyContext::Plain => None,
        }
    }
}

/// Where an unquoted value ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueForm {
    /// `key=value`: at whitespace (also at `&` and `#` in a URL query); `key= ` is an empty value.
    Logfmt { query: bool },
    /// `"key": value`, `password:value`, or a kept key's `key: value`: at whitespace, `,`, `}` or `]`.
    Token,
    /// A sensitive `key: value`: at `,`, `;` or the end of the line, so `Authorization: Bearer abc` goes whole.
    RestOfClause,
}

/// The span of the value after the delimiter: the inside of a quoted value, a bracketed value whole, or an
/// unquoted run up to the form's terminator.
fn value_span(bytes: &[u8], delimiter: usize, form: ValueForm) -> Option<(usize, usize)> {
    let mut start = delimiter + 1;
    if !matches!(form, ValueForm::Logfmt { .. }) {
        while matches!(bytes.get(start), Some(b' ' | b'\t')) {
            start += 1;
        }
    }
    let first = *bytes.get(start)?;
    match first {
        b'"' | b'\'' => {
            let content_start = start + 1;
            Some((content_start, closing_quote(bytes, content_start, first)))
        }
        b'\\' if bytes.get(start + 1) == Some(&b'"') => {
            let content_start = start + 2;
            let mut end = content_start;
            while end < bytes.len() && !(bytes[end] == b'\\' && bytes.get(end + 1) == Some(&b'"')) {
                end += 1;
            }
            Some((content_start, end))
        }
        b'{' | b'[' => Some((start, matching_bracket(bytes, start))),
        _ => {
            let mut end = start;
            while end < bytes.len() {
                let byte = bytes[end];
                let stops = match form {
                    ValueForm::Logfmt { query } => byte.is_ascii_whitespace() || (query && matches!(byte, b'&' | b'#')),
                    ValueForm::Token => byte.is_ascii_whitespace() || matches!(byte, b',' | b'}' | b']'),
                    ValueForm::RestOfClause => matches!(byte, b',' | b';' | b'\n' | b'\r'),
                };
                if stops {
                    break;
                }
                end += 1;
            }
            while end > start && bytes[end - 1] == b' ' {
                end -= 1;
            }
            Some((start, end))
        }
    }
}

/// The position of the quote closing a value whose content starts at `from`, honouring backslash escapes; the
/// end of the text when the quote is missing.
fn closing_quote(bytes: &[u8], from: usize, quote: u8) -> usize {
    let mut position = from;
    while position < bytes.len() {
        match bytes[position] {
            b'\\' => position += 2,
            byte if byte == quote => return position,
            _ => position += 1,
        }
    }
    bytes.len()
}

/// The end (exclusive) of the bracketed value opening at `open`, counting nesting and skipping quoted strings;
/// the end of the text when it is unbalanced.
fn matching_bracket(bytes: &[u8], open: usize) -> usize {
    let mut depth = 0usize;
    let mut position = open;
    while position < bytes.len() {
        match bytes[position] {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return position + 1;
                }
            }
            quote @ (b'"' | b'\'') => {
                position = closing_quote(bytes, position + 1, quote);
            }
            _ => {}
        }
        position += 1;
    }
    bytes.len()
}

/// The span of the e-mail address around the `@` at `at`: a local part of `[A-Za-z0-9._%+-]` and a domain of at
/// least two dot-separated labels whose last one has two or more letters.
fn email_span(bytes: &[u8], at: usize) -> Option<(usize, usize)> {
    let mut start = at;
    while start > 0 && is_email_local_byte(bytes[start - 1]) {
        start -= 1;
    }
    while start < at && bytes[start] == b'.' {
        start += 1;
    }
    if start == at {
        return None;
    }
    let domain_start = at + 1;
    let mut end = domain_start;
    while end < bytes.len() && is_email_domain_byte(bytes[end]) {
        end += 1;
    }
    while end > domain_start && matches!(bytes[end - 1], b'.' | b'-') {
        end -= 1;
    }
    let domain = bytes.get(domain_start..end)?;
    if !domain.first().is_some_and(u8::is_ascii_alphanumeric) {
        return None;
    }
    let last_dot = domain.iter().rposition(|byte| *byte == b'.')?;
    let top_level = domain.get(last_dot + 1..)?;
    let labels_ok = !domain.windows(2).any(|pair| pair == b"..");
    if labels_ok && top_level.len() >= 2 && top_level.iter().all(u8::is_ascii_alphabetic) {
        Some((start, end))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(text: &str) -> Option<&str> {
        let at = text.find('@')?;
        email_span(text.as_bytes(), at).map(|(start, end)| &text[start..end])
    }

    #[test]
    fn email_spans() {
        assert_eq!(email("for ann.buyer+88d89450@example.com;"), Some("ann.buyer+88d89450@example.com"));
        assert_eq!(email("<bob@mail.example.org>."), Some("bob@mail.example.org"));
        assert_eq!(email("user@localhost"), None);
        assert_eq!(email("@example.com"), None);
        assert_eq!(email("a@b..com"), None);
        assert_eq!(email("python@3.12"), None);
    }
}
