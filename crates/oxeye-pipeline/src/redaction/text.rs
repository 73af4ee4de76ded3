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

/// Whether `bytes` is a W3C trace id (32 hex digits) or span id (16 hex digits).
fn is_hex_id(bytes: &[u8]) -> bool {
    matches!(bytes.len(), 16 | 32) && bytes.iter().all(u8::is_ascii_hexdigit)
}

pub(super) fn is_key_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.')
}

fn is_email_local_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_email_domain_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-')
}

impl Redactor {
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
pub(super) fn email_span(bytes: &[u8], at: usize) -> Option<(usize, usize)> {
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
