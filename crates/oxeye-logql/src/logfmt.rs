//! The logfmt scanner of `| logfmt` and `detected_fields`: splits a line into `key=value` pairs as Loki's
//! logfmt decoder (`pkg/logql/log/logfmt`, forked from go-logfmt) reads them.
//!
//! A line is read token by token, eight bytes a step: each token's end is the first byte of a small set
//! (whitespace, and `=` or `"` for keys), found with word arithmetic rather than byte by byte. The visitor
//! is a generic closure, so a parser's per-pair work is inlined into the scan.
//!
//! The pairs, for a line read left to right:
//! - whitespace (ASCII space, tab, line feed, form feed, carriage return) separates tokens;
//! - a key runs up to whitespace or `=`; a key holding `"` is skipped (an error when strict), a lone `=`
//!   is skipped (an error when strict);
//! - a key without `=` is a bare key, present with an empty value;
//! - a value runs up to whitespace, or, when it starts with `"`, up to the next unescaped `"` (`\n` and
//!   `\t` unescaped, any other escaped character kept as itself; an unterminated quote takes the rest of
//!   the line, an error when strict);
//! - a value holding U+FFFD (after unescaping) is empty, as Loki's parsers make it.

use std::borrow::Cow;
use std::ops::ControlFlow;

use crate::pipeline::holds_replacement_character;
use crate::swar::{HIGHS, ONES, bytes_below, bytes_equal};

/// The eight bytes at `position`, little-endian; past the end of `bytes`, spaces stand in, so that a scan
/// stops at the end as it stops at whitespace.
#[inline(always)]
fn word_at(bytes: &[u8], position: usize) -> u64 {
    const SPACES: u64 = ONES * b' ' as u64;
    let rest = bytes.get(position..).unwrap_or_default();
    if let Some(chunk) = rest.first_chunk::<8>() {
        return u64::from_le_bytes(*chunk);
    }
    match bytes.last_chunk::<8>() {
        // The last eight bytes shifted down to the 1 to 7 wanted: no copy of a slice of unknown length (a call
        // to `memcpy`, 11% of the samples of a hinted search whose last value ends the part searched).
        Some(last) if !rest.is_empty() => {
            let shift = 8 * (8 - rest.len() as u32);
            (u64::from_le_bytes(*last) >> shift) | (SPACES << (64 - shift))
        }
        _ => {
            let mut padded = [b' '; 8];
            for (slot, byte) in padded.iter_mut().zip(rest) {
                *slot = *byte;
            }
            u64::from_le_bytes(padded)
        }
    }
}

/// ASCII whitespace as Rust and Go's `unicode.IsSpace` agree on below 0x80, less vertical tab (go-logfmt
/// reads bytes up to a space as separators, but Loki's decoder keeps other control bytes in tokens).
#[inline(always)]
fn is_separator(byte: u8) -> bool {
    byte.is_ascii_whitespace()
}

/// Which bytes end a token, besides whitespace.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stops {
    /// Whitespace only (an unquoted value).
    Whitespace,
    /// Whitespace, `=` and `"` (a key: `"` makes it one to skip).
    Key,
}

/// The position of the first byte at or after `position` that is whitespace or, for [`Stops::Key`], `=` or
/// `"`; the length of `bytes` when there is none.
#[inline(always)]
fn token_end(bytes: &[u8], position: usize, stops: Stops) -> usize {
    token_end_and_high_bits(bytes, position, stops).0
}

/// [`token_end`], and the high bits of the words it read (the token's bytes and a few after it): zero when
/// every byte of the token is ASCII. A caller that drops them pays nothing for them once inlined.
#[inline(always)]
fn token_end_and_high_bits(bytes: &[u8], mut position: usize, stops: Stops) -> (usize, u64) {
    let mut high_bits = 0u64;
    loop {
        if position >= bytes.len() {
            return (bytes.len(), high_bits);
        }
        let word = word_at(bytes, position);
        high_bits |= word & HIGHS;
        let mut flagged = bytes_below(word, 0x21);
        if stops == Stops::Key {
            flagged |= bytes_equal(word, b'=') | bytes_equal(word, b'"');
        }
        if flagged == 0 {
            position += 8;
            continue;
        }
        let candidate = position + (flagged.trailing_zeros() / 8) as usize;
        match bytes.get(candidate) {
            None => return (bytes.len(), high_bits),
            Some(&byte) if is_separator(byte) || (stops == Stops::Key && (byte == b'=' || byte == b'"')) => {
                return (candidate, high_bits);
            }
            // A control byte that is no whitespace: part of the token. Bits above it may be borrows.
            Some(_) => position = candidate + 1,
        }
    }
}

/// The position of the first `"` or `\` at or after `position`, or `None`; and the high bits of the words
/// read (zero when every byte before that position is ASCII).
#[inline(always)]
fn quote_or_escape(bytes: &[u8], mut position: usize) -> (Option<usize>, u64) {
    let mut high_bits = 0u64;
    while position < bytes.len() {
        let word = word_at(bytes, position);
        high_bits |= word & HIGHS;
        let flagged = bytes_equal(word, b'"') | bytes_equal(word, b'\\');
        if flagged != 0 {
            let candidate = position + (flagged.trailing_zeros() / 8) as usize;
            // Padding past the end is spaces, never flagged.
            return ((candidate < bytes.len()).then_some(candidate), high_bits);
        }
        position += 8;
    }
    (None, high_bits)
}

/// `value`, or the empty value when it holds U+FFFD, as Loki's logfmt parsers empty it
/// ([`holds_replacement_character`]); `high_bits` are those of the words read over it (zero when it is
/// ASCII, which holds none: no check then).
#[inline(always)]
fn emptied_if_replacement(value: &str, high_bits: u64) -> &str {
    if high_bits != 0 && holds_replacement_character(value) { "" } else { value }
}

/// The position of the first whitespace or `=` at or after `position` (or the length of `bytes`):
/// the end of a key token whatever quotes it holds.
pub(crate) fn key_token_end(bytes: &[u8], mut position: usize) -> usize {
    loop {
        position = token_end(bytes, position, Stops::Key);
        match bytes.get(position) {
            Some(b'"') => position += 1,
            _ => return position,
        }
    }
}

/// The position of the first whitespace at or after `position`, or the length of `bytes`.
#[inline(always)]
pub(crate) fn value_token_end(bytes: &[u8], position: usize) -> usize {
    token_end(bytes, position, Stops::Whitespace)
}

/// [`value_token_end`], and the high bits of the words read (zero when the value is ASCII).
#[inline(always)]
fn value_token_end_and_high_bits(bytes: &[u8], position: usize) -> (usize, u64) {
    token_end_and_high_bits(bytes, position, Stops::Whitespace)
}

/// Calls `visit(key, value)` for each logfmt pair of `line` in order (see the module docs), until `visit`
/// breaks; values are borrowed unless quoted with escapes. A value holding U+FFFD is given empty, as Loki's
/// logfmt parsers empty it (`LogfmtParser.Process`: "rejected by Prometheus"), which each then treats as
/// any empty value; only values whose bytes are not all ASCII are checked.
///
/// # Errors
/// With `strict`, the `__error_details__` text of the first syntax error, as Loki words it (the pairs
/// before it have been visited).
#[inline(always)]
pub(crate) fn visit_pairs<'a>(
    line: &'a str,
    strict: bool,
    mut visit: impl FnMut(&'a str, Cow<'a, str>) -> ControlFlow<()>,
) -> Result<(), String> {
    let bytes = line.as_bytes();
    let mut position = 0;
    loop {
        while bytes.get(position).is_some_and(|byte| is_separator(*byte)) {
            position += 1;
        }
        if position >= bytes.len() {
            return Ok(());
        }
        let key_start = position;
        position = token_end(bytes, position, Stops::Key);
        let stop = bytes.get(position).copied();
        if stop == Some(b'"') {
            // A key cannot hold a quote (go-logfmt's "unexpected '\"'"); non-strict parsing skips the token.
            if strict {
                return Err(format!("logfmt syntax error at pos {} : unexpected '\"'", position + 1));
            }
            position = key_token_end(bytes, position);
            continue;
        }
        let Some(key) = line.get(key_start..position) else { return Ok(()) };
        if key.is_empty() {
            // Only `=` stops a token before its first byte here: whitespace was skipped.
            if strict {
                return Err(format!("logfmt syntax error at pos {position} : unexpected '='"));
            }
            position += 1;
            continue;
        }
        if stop != Some(b'=') {
            // A bare key: present with an empty value.
            if visit(key, Cow::Borrowed("")).is_break() {
                return Ok(());
            }
            continue;
        }
        position += 1;
        if bytes.get(position) != Some(&b'"') {
            let value_start = position;
            let high_bits;
            (position, high_bits) = value_token_end_and_high_bits(bytes, position);
            let value = emptied_if_replacement(line.get(value_start..position).unwrap_or_default(), high_bits);
            if visit(key, Cow::Borrowed(value)).is_break() {
                return Ok(());
            }
            continue;
        }
        position += 1;
        let value_start = position;
        let (quote_or_escape, high_bits) = quote_or_escape(bytes, position);
        if let Some(closing) = quote_or_escape.filter(|at| bytes.get(*at) == Some(&b'"')) {
            // No escape before the closing quote: borrow.
            let value = emptied_if_replacement(line.get(value_start..closing).unwrap_or_default(), high_bits);
            position = closing + 1;
            if visit(key, Cow::Borrowed(value)).is_break() {
                return Ok(());
            }
            continue;
        }
        let (mut value, end) = unescape_quoted(line, value_start, strict)?;
        position = end;
        if holds_replacement_character(&value) {
            value.clear();
        }
        if visit(key, Cow::Owned(value)).is_break() {
            return Ok(());
        }
    }
}

/// A quoted value holding escapes, from `start` (just past its opening quote): the value unescaped and the
/// position just past its closing quote (the line's length when unterminated).
///
/// # Errors
/// With `strict`, an unterminated quote, positioned as Loki's decoder reports it: one past the line's last
/// character, counted in characters from 1.
#[cold]
#[inline(never)]
fn unescape_quoted(line: &str, start: usize, strict: bool) -> Result<(String, usize), String> {
    let mut value = String::new();
    let mut characters = line.get(start..).unwrap_or_default().char_indices();
    while let Some((offset, character)) = characters.next() {
        match character {
            '"' => return Ok((value, start + offset + 1)),
            '\\' => match characters.next() {
                Some((_, escaped)) => value.push(match escaped {
                    'n' => '\n',
                    't' => '\t',
                    other => other,
                }),
                // A backslash ending the line stands for itself.
                None => value.push('\\'),
            },
            other => value.push(other),
        }
    }
    if strict {
        return Err(format!("logfmt syntax error at pos {} : unterminated quoted value", line.chars().count() + 1));
    }
    Ok((value, line.len()))
}

/// Finds the pairs of a few hinted label names without reading every pair of a line: each name is looked
/// for by the first run of ASCII letters and digits in it (`duration` for `duration_ms`), with a substring
/// search built once per query.
///
/// Exact, as [`visit_pairs`] followed by sanitizing keys into label names, for the part of a line before
/// its first `"` (the "plain part"; the whole line when it has none):
/// - a key that sanitizes into a name holds that run (sanitizing keeps ASCII letters and digits in order,
///   each other character becomes one `_`), so no key before the run's first occurrence gives the name;
/// - without quotes, the scan splits the plain part at whitespace into tokens, each read from its start as
///   a key (after any leading `=`, which it skips), then `=` and a value up to the next whitespace, so
///   the key holding an occurrence is found by reading back to the whitespace before it.
///
/// A token holding the first `"` starts where the plain part ends; a name not found before it is left for
/// [`visit_pairs`] to look for from there, which is where the scan would stand.
#[derive(Debug, Clone)]
pub(crate) struct HintedKeySearch {
    /// For each hinted name, in the hints' order, the searcher of its first run of letters and digits.
    runs: Vec<memchr::memmem::Finder<'static>>,
    /// The pairs found in the current line as (key start, name index, value start, value end), in the
    /// order of their keys in the line; reused from line to line.
    found: Vec<(usize, usize, usize, usize)>,
}

/// Where [`HintedKeySearch::find`] left a line.
pub(crate) struct PlainPart {
    /// The hinted names found (bit `i` for name `i`).
    pub(crate) found: u64,
    /// Where the plain part ends: a scan for the names not found goes on from here (the line's length when
    /// the line has no `"`).
    pub(crate) end: usize,
}

impl HintedKeySearch {
    /// The search for `names` (at most 64): `None` when a name is no valid label name (no key sanitizes into
    /// it) or holds no ASCII letter or digit.
    pub(crate) fn new(names: &[String]) -> Option<HintedKeySearch> {
        if names.len() > 64 {
            return None;
        }
        let mut runs = Vec::with_capacity(names.len());
        for name in names {
            if !crate::pipeline::is_valid_label_name(name) {
                return None;
            }
            let run = name.split('_').find(|run| !run.is_empty())?;
            runs.push(memchr::memmem::Finder::new(run.as_bytes()).into_owned());
        }
        Some(HintedKeySearch { runs, found: Vec::new() })
    }

    /// Looks for the first pair of each of `names` (those [`HintedKeySearch::new`] was given) in the plain
    /// part of `line` whose key sanitizes into the name and whose value is not empty (or whatever its value,
    /// with `keep_empty`; a value holding U+FFFD is empty, as [`visit_pairs`] gives it), and calls
    /// `found(index, value)` for each in the order of their keys in the line (the order a scan reads them in,
    /// which matters when two names come to one label, `x` and `x_extracted` with a stream label `x`).
    /// `sanitized` is a reused buffer.
    pub(crate) fn find<'a>(
        &mut self,
        line: &'a str,
        names: &[String],
        keep_empty: bool,
        sanitized: &mut String,
        mut found: impl FnMut(usize, &'a str),
    ) -> PlainPart {
        let bytes = line.as_bytes();
        let end = match memchr::memchr(b'"', bytes) {
            Some(quote) => token_start(bytes, quote),
            None => bytes.len(),
        };
        let plain = bytes.get(..end).unwrap_or_default();
        let mut found_names = 0u64;
        self.found.clear();
        for (index, (run, name)) in self.runs.iter().zip(names).enumerate() {
            let mut from = 0;
            while let Some(offset) = plain.get(from..).and_then(|rest| run.find(rest)) {
                let at = from + offset;
                let start = token_start(plain, at);
                let key_start = start
                    + plain.get(start..).map_or(0, |token| token.iter().take_while(|byte| **byte == b'=').count());
                let key_end = key_token_end(plain, key_start);
                if at >= key_end {
                    // In a value: go on past it.
                    from = value_token_end(plain, at);
                    continue;
                }
                let (value_end, high_bits) = match plain.get(key_end) {
                    Some(b'=') => value_token_end_and_high_bits(plain, key_end + 1),
                    _ => (key_end, 0),
                };
                from = value_end;
                let key = line.get(key_start..key_end).unwrap_or_default();
                if !sanitizes_into(key, name, sanitized) {
                    continue;
                }
                let value_start = (key_end + 1).min(value_end);
                let emptied =
                    high_bits != 0 && line.get(value_start..value_end).is_some_and(holds_replacement_character);
                if (value_start == value_end || emptied) && !keep_empty {
                    continue;
                }
                let value_end = if emptied { value_start } else { value_end };
                self.found.push((key_start, index, value_start, value_end));
                found_names |= 1 << index;
                break;
            }
        }
        if self.found.len() > 1 {
            self.found.sort_unstable();
        }
        for &(_, index, value_start, value_end) in &self.found {
            found(index, line.get(value_start..value_end).unwrap_or_default());
        }
        PlainPart { found: found_names, end }
    }
}

/// The start of the whitespace-separated token holding `position`.
fn token_start(bytes: &[u8], position: usize) -> usize {
    bytes.get(..position).and_then(|before| before.iter().rposition(|byte| is_separator(*byte))).map_or(0, |at| at + 1)
}

/// True when `key` sanitizes into the label name `name` (see `pipeline::sanitize_label_name`).
fn sanitizes_into(key: &str, name: &str, sanitized: &mut String) -> bool {
    // The names are valid label names ([`HintedKeySearch::new`]): a key equal to one is one. Compared in
    // line, as the occurrence found is most often the key itself.
    if crate::pipeline::same_short_bytes(key.as_bytes(), name.as_bytes()) {
        return true;
    }
    if crate::pipeline::is_valid_label_name(key) {
        return false;
    }
    crate::pipeline::sanitize_label_name_into(key, sanitized);
    sanitized == name
}

/// The pairs of a logfmt line, as [`visit_pairs`] visits them.
///
/// # Errors
/// As [`visit_pairs`].
pub(crate) fn pairs(line: &str, strict: bool) -> Result<Vec<(&str, Cow<'_, str>)>, String> {
    let mut found = Vec::new();
    visit_pairs(line, strict, |key, value| {
        found.push((key, value));
        ControlFlow::Continue(())
    })?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scanner as it was before word-at-a-time reading (session 11), byte by byte: the oracle the
    /// fast scanner must agree with on every line.
    fn reference_pairs(line: &str, strict: bool) -> Result<Vec<(String, String)>, String> {
        let token_end = |bytes: &[u8], mut position: usize, stop: Option<u8>| {
            while let Some(byte) = bytes.get(position) {
                if byte.is_ascii_whitespace() || Some(*byte) == stop {
                    break;
                }
                position += 1;
            }
            position
        };
        let mut pairs = Vec::new();
        let bytes = line.as_bytes();
        let mut position = 0;
        while position < bytes.len() {
            while position < bytes.len() && bytes[position].is_ascii_whitespace() {
                position += 1;
            }
            let key_start = position;
            position = token_end(bytes, position, Some(b'='));
            let key = &line[key_start..position];
            if let Some(quote) = key.bytes().position(|byte| byte == b'"') {
                if strict {
                    return Err(format!("logfmt syntax error at pos {} : unexpected '\"'", key_start + quote + 1));
                }
                continue;
            }
            if key.is_empty() {
                if position < bytes.len() && bytes[position] == b'=' {
                    if strict {
                        return Err(format!("logfmt syntax error at pos {position} : unexpected '='"));
                    }
                    position += 1;
                    continue;
                }
                break;
            }
            if position >= bytes.len() || bytes[position] != b'=' {
                pairs.push((key.to_string(), String::new()));
                continue;
            }
            position += 1;
            if position < bytes.len() && bytes[position] == b'"' {
                position += 1;
                let mut value = String::new();
                let mut closed = false;
                while position < bytes.len() {
                    let character = line[position..].chars().next().unwrap();
                    if character == '\\' && position + 1 < bytes.len() {
                        let escaped = line[position + 1..].chars().next().unwrap();
                        value.push(match escaped {
                            'n' => '\n',
                            't' => '\t',
                            other => other,
                        });
                        position += 1 + escaped.len_utf8();
                        continue;
                    }
                    position += character.len_utf8();
                    if character == '"' {
                        closed = true;
                        break;
                    }
                    value.push(character);
                }
                if !closed && strict {
                    let position = line.chars().count() + 1;
                    return Err(format!("logfmt syntax error at pos {position} : unterminated quoted value"));
                }
                pairs.push((key.to_string(), value));
            } else {
                let value_start = position;
                position = token_end(bytes, position, None);
                pairs.push((key.to_string(), line[value_start..position].to_string()));
            }
        }
        Ok(pairs)
    }

    fn owned_pairs(line: &str, strict: bool) -> Result<Vec<(String, String)>, String> {
        pairs(line, strict)
            .map(|found| found.into_iter().map(|(key, value)| (key.to_string(), value.into_owned())).collect())
    }

    #[test]
    fn token_ends_are_found_at_every_offset() {
        for length in 0..30 {
            for at in 0..length {
                for special in [b' ', b'\t', b'\n', 0x0c, b'\r', b'='] {
                    // Control bytes that are no whitespace, bytes just above a space, and multibyte text.
                    let mut bytes: Vec<u8> =
                        (0..length).map(|index| [b'a', 0x01, b'!', 0x0b, 0xc3, 0xa9][index % 6]).collect();
                    bytes[at] = special;
                    let expected_token = if special == b'=' { length } else { at };
                    assert_eq!(value_token_end(&bytes, 0), expected_token, "{bytes:?}");
                    assert_eq!(key_token_end(&bytes, 0), at, "{bytes:?}");
                }
            }
        }
    }

    #[test]
    fn pairs_of_typical_and_odd_lines() {
        let cases: [(&str, &[(&str, &str)]); 9] = [
            (r#"level=info msg="a b" n=1"#, &[("level", "info"), ("msg", "a b"), ("n", "1")]),
            ("key= bare other", &[("key", ""), ("bare", ""), ("other", "")]),
            (r#"a="x \"y\" \n\t\z" b=2"#, &[("a", "x \"y\" \n\tz"), ("b", "2")]),
            ("a=b=c d=\"e", &[("a", "b=c"), ("d", "e")]),
            // A skipped key or lone `=` leaves what follows the `=` to be read as a key.
            ("x\"y=1 =2 ok=3", &[("1", ""), ("2", ""), ("ok", "3")]),
            ("naïve=café ümlaut=ß", &[("naïve", "café"), ("ümlaut", "ß")]),
            ("a=1\u{b}b=2\tc=3", &[("a", "1\u{b}b=2"), ("c", "3")]),
            (r#"dup=1 dup=2 q="v"w=1"#, &[("dup", "1"), ("dup", "2"), ("q", "v"), ("w", "1")]),
            ("trailing=x\\", &[("trailing", "x\\")]),
        ];
        for (line, expected) in cases {
            let expected: Vec<(String, String)> =
                expected.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect();
            assert_eq!(owned_pairs(line, false), Ok(expected), "{line}");
            assert_eq!(owned_pairs(line, false), reference_pairs(line, false), "{line}");
            assert_eq!(owned_pairs(line, true), reference_pairs(line, true), "{line}");
        }
        assert_eq!(
            owned_pairs("a=\"open", true),
            Err("logfmt syntax error at pos 8 : unterminated quoted value".into())
        );
        assert_eq!(owned_pairs("a=1 =2", true), Err("logfmt syntax error at pos 4 : unexpected '='".into()));
        assert_eq!(owned_pairs("a=1 b\"c=2", true), Err("logfmt syntax error at pos 6 : unexpected '\"'".into()));
    }

    /// Random lines over the bytes that matter to the scanner (separators, `=`, quotes, escapes, control
    /// bytes, multibyte characters), of every length up to a few words: the scanner and the byte-by-byte
    /// reference give the same pairs and errors, strict or not.
    #[test]
    fn pairs_agree_with_the_byte_by_byte_reference() {
        let pieces = [
            "a", "key", "level", "=", "=", " ", " ", "  ", "\t", "\n", "\r", "\u{c}", "\u{b}", "\u{1}", "\"", "\"",
            "\\", "\\\"", "\\n", "é", "日本", "0", "_x", "!", "~",
        ];
        let mut next = crate::test_random::xorshift(0x2545_f491_4f6c_dd1d);
        for _ in 0..50_000 {
            let count = (next() % 24) as usize;
            let line: String = (0..count).map(|_| pieces[(next() % pieces.len() as u64) as usize]).collect();
            for strict in [false, true] {
                assert_eq!(owned_pairs(&line, strict), reference_pairs(&line, strict), "{line:?} strict {strict}");
            }
        }
    }

    #[test]
    fn a_visitor_that_breaks_stops_the_scan() {
        let mut seen = Vec::new();
        let outcome = visit_pairs("a=1 b=2 c=\"unterminated", true, |key, _| {
            seen.push(key);
            if key == "b" { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
        });
        assert_eq!((outcome, seen), (Ok(()), vec!["a", "b"]));
    }
}
