//! A JSON object scanner for the `| json` parser: walks a line's bytes once, names each scalar field the way
//! Loki's json parser does (nested keys joined with `_`, arrays skipped), and hands the visitor the field's
//! name and raw value without building a tree. Only the values the visitor asks for are decoded, so a query
//! that needs two labels out of twenty allocates two strings per line.
//!
//! Follows RFC 8259 for the grammar (strings, escapes including surrogate pairs, numbers, literals); numbers
//! are handed on as their source text, as Loki's parser does.

use std::ops::ControlFlow;

use crate::swar::{HIGHS, ONES};
#[cfg(test)]
use crate::swar::{bytes_below, bytes_equal};

/// Deepest nesting of objects and arrays followed; deeper lines are rejected rather than overflow the stack.
const MAX_DEPTH: usize = 128;

/// A scalar JSON value, still in its source form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonScalar<'a> {
    /// A string's contents between the quotes; `escaped` is true when it holds a backslash escape,
    /// `known_ascii` when the scan saw that every byte of `raw` is ASCII (false when one is not or it did not
    /// look), so that a value known ASCII needs no check for U+FFFD.
    String { raw: &'a str, escaped: bool, known_ascii: bool },
    /// A number, `true` or `false`, as written in the line.
    Literal(&'a str),
    /// `null`.
    Null,
}

impl JsonScalar<'_> {
    /// Appends the label value to `out` ([`JsonScalar::to_label_value`] without allocating); false for
    /// `null`, which has none.
    pub(crate) fn write_label_value(self, out: &mut String) -> bool {
        match self {
            JsonScalar::String { raw, escaped: false, .. } | JsonScalar::Literal(raw) => out.push_str(raw),
            JsonScalar::String { raw, escaped: true, .. } => unescape_into(raw, out),
            JsonScalar::Null => return false,
        }
        true
    }

    /// The label value: strings unescaped, numbers and booleans as written; `None` for `null`.
    pub(crate) fn to_label_value(self) -> Option<String> {
        match self {
            JsonScalar::String { raw, escaped: false, .. } => Some(raw.to_string()),
            JsonScalar::String { raw, escaped: true, .. } => {
                let mut out = String::with_capacity(raw.len());
                unescape_into(raw, &mut out);
                Some(out)
            }
            JsonScalar::Literal(text) => Some(text.to_string()),
            JsonScalar::Null => None,
        }
    }
}

/// A top-level key as [`visit_fields_where`] shows it to its `unwanted` test.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TopLevelKey<'a> {
    /// The key's bytes between its quotes (it holds no escape).
    pub(crate) bytes: &'a [u8],
    /// True when the scan saw that every byte of the key is ASCII; false when one is not or it did not look.
    pub(crate) known_ascii: bool,
}

/// Why a line is not a JSON object, with the byte offset where scanning stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonSyntaxError {
    /// Byte offset in the line.
    pub(crate) position: usize,
    /// What was expected there.
    pub(crate) expected: &'static str,
}

impl std::fmt::Display for JsonSyntaxError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "invalid JSON at offset {}: expected {}", self.position, self.expected)
    }
}

/// What [`visit_fields_where`] expected when the top-level object closed and more than whitespace followed.
pub(crate) const EXPECTED_END_OF_LINE: &str = "end of line";
/// What [`visit_fields_where`] expected when a string value is cut off.
const EXPECTED_VALUE_QUOTE: &str = "closing '\"' of a string value";
/// What [`visit_fields_where`] expected when a top-level member's object never closes (its braces never
/// balance, as `jsonparser`'s `blockEnd` counts them); the error's position is then that object's `{`.
pub(crate) const EXPECTED_MEMBER_BRACE: &str = "'}' closing a nested object";

impl JsonSyntaxError {
    /// The `__error_details__` Loki gives for this error: the message of the `github.com/grafana/jsonparser`
    /// error its `ObjectEach` returns there (Loki's `JSONParser.Process`, pkg/logql/log/parser.go, walks the
    /// line with `jsonparser.ObjectEach`). `ObjectEach` finds each value's end before calling back: a string's
    /// closing quote, an object's balancing brace (so a nested object cut off yields none of its fields), a
    /// literal's end at whitespace, `,`, `}` or `]`; it says `Malformed JSON error` where the line ends after
    /// `{`, a key or `:`, and, by its own naming, the array message where it ends after a member.
    pub(crate) fn loki_details(&self, line: &str) -> &'static str {
        const MALFORMED_JSON: &str = "Malformed JSON error";
        const MALFORMED_OBJECT: &str = "Value looks like object, but can't find closing '}' symbol";
        const MALFORMED_ARRAY: &str = "Value is array, but can't find closing ']' symbol";
        let at_end = self.position >= line.len();
        let after = line.as_bytes().get(..self.position).unwrap_or_default();
        let previous = after.iter().rev().find(|byte| !matches!(byte, b' ' | b'\t' | b'\n' | b'\r'));
        match self.expected {
            "'{'" | EXPECTED_MEMBER_BRACE => MALFORMED_OBJECT,
            "'\"'" if at_end && previous == Some(&b',') => MALFORMED_ARRAY,
            "'\"'" if at_end => MALFORMED_JSON,
            "'\"'" => MALFORMED_OBJECT,
            "',' or '}'" if at_end => MALFORMED_ARRAY,
            "',' or '}'" => MALFORMED_OBJECT,
            "':'" | "closing '\"'" => MALFORMED_JSON,
            "a value" if at_end => MALFORMED_JSON,
            EXPECTED_VALUE_QUOTE => "Value is string, but can't find closing '\"' symbol",
            "',' or ']'" | "'['" => MALFORMED_ARRAY,
            "four hex digits after '\\u'" | "an escape character" => {
                "Encountered an invalid escape sequence in a string"
            }
            _ => "Unknown value type",
        }
    }
}

/// Where a nested object starting at `start` (its `{`) ends as `jsonparser`'s `blockEnd` finds it: braces
/// counted outside strings, a quote escaped by a backslash not ending a string. `None` when they never
/// balance.
fn block_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut level = 0usize;
    let mut position = start;
    while let Some(&byte) = bytes.get(position) {
        match byte {
            b'"' => {
                position += 1;
                loop {
                    match bytes.get(position)? {
                        b'\\' => position += 2,
                        b'"' => break,
                        _ => position += 1,
                    }
                }
            }
            b'{' => level += 1,
            b'}' => {
                level = level.checked_sub(1)?;
                if level == 0 {
                    return Some(position + 1);
                }
            }
            _ => {}
        }
        position += 1;
    }
    None
}

/// On the error path: the position of the `{` of the top-level member whose object is open at `end` (when
/// one is), and of the opening quote of a string that never closes (when one starts before `end`). Reads
/// the line as `jsonparser` skips it: strings (a backslash escaping the next byte) and brackets.
fn open_at(bytes: &[u8], end: usize) -> (Option<usize>, Option<usize>) {
    let mut open: Vec<(u8, usize)> = Vec::new();
    let member = |open: &[(u8, usize)]| open.get(1).filter(|(bracket, _)| *bracket == b'{').map(|(_, at)| *at);
    let mut position = 0;
    while position < end.min(bytes.len()) {
        match bytes[position] {
            b'"' => {
                let start = position;
                position += 1;
                loop {
                    match bytes.get(position) {
                        None => return (member(&open), Some(start)),
                        Some(b'\\') => position += 2,
                        Some(b'"') => break,
                        Some(_) => position += 1,
                    }
                }
            }
            byte @ (b'{' | b'[') => open.push((byte, position)),
            b'}' | b']' => {
                open.pop();
            }
            _ => {}
        }
        position += 1;
    }
    (member(&open), None)
}

/// Scans `line` as one JSON object (surrounding whitespace allowed) and calls `visit(name, value)` for each
/// scalar field, `name` being the field's path joined with `_` (not yet sanitized into a label name). The
/// visitor returns `ControlFlow::Break(())` to stop early (the rest of the line is then not checked).
///
/// `path` is a buffer for the field path, reused between lines (its contents are replaced).
///
/// Objects are walked in one loop (a stack of path lengths instead of recursion), positions kept in a local
/// and bytes read through [`byte_at`], whose 0 past the end no JSON token accepts: a field costs a few
/// comparisons besides finding its strings' ends in the mask of a 64-byte window ([`SpecialBytes`]), each
/// byte of the line classified once. Arrays, rare in log lines, are checked by the recursive [`Scanner`].
///
/// # Errors
/// [`JsonSyntaxError`] at the first byte that breaks the grammar; fields visited before it stay visited.
pub(crate) fn visit_fields<Visit: FnMut(&str, JsonScalar<'_>) -> ControlFlow<()>>(
    line: &str,
    path: &mut String,
    visit: &mut Visit,
) -> Result<(), JsonSyntaxError> {
    visit_fields_where(line, path, |_: TopLevelKey<'_>| false, visit)
}

/// [`visit_fields`] that does not call `visit` for a top-level scalar or array field whose key (unescaped)
/// `unwanted` rules out: the field is still checked. `unwanted` runs in the scanning loop, before the value
/// is read, so a cheap test there (a key's length, for a query reading a few labels) spares the visitor's
/// call for most fields.
///
/// # Errors
/// As [`visit_fields`].
pub(crate) fn visit_fields_where<Visit: FnMut(&str, JsonScalar<'_>) -> ControlFlow<()>>(
    line: &str,
    path: &mut String,
    unwanted: impl Fn(TopLevelKey<'_>) -> bool,
    visit: &mut Visit,
) -> Result<(), JsonSyntaxError> {
    scan_object(line, path, unwanted, visit, MemberScan::FlatFirst).map_err(|error| error_as_loki_reads_it(line, error))
}

/// Which loop [`scan_object`] reads a line's top-level members with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MemberScan {
    /// [`scan_flat_members`] as long as the members are flat, then the general loop.
    FlatFirst,
    /// The general loop alone (the tests compare the two).
    #[cfg_attr(not(test), allow(dead_code))]
    General,
}

/// The scanner's `error` restated where `jsonparser` sees another: a top-level member's nested object that
/// never closes ([`EXPECTED_MEMBER_BRACE`]), a string value cut off. Off the scan's path.
#[cold]
#[inline(never)]
fn error_as_loki_reads_it(line: &str, error: JsonSyntaxError) -> JsonSyntaxError {
    let bytes = line.as_bytes();
    let (member, string) = open_at(bytes, error.position);
    match member {
        Some(start) if block_end(bytes, start).is_none() => {
            JsonSyntaxError { position: start, expected: EXPECTED_MEMBER_BRACE }
        }
        _ if error.expected == "closing '\"'"
            && string.is_some_and(|start| {
                let before = bytes.get(..start).unwrap_or_default();
                before.iter().rev().find(|byte| !matches!(byte, b' ' | b'\t' | b'\n' | b'\r')) == Some(&b':')
            }) =>
        {
            JsonSyntaxError { position: error.position, expected: EXPECTED_VALUE_QUOTE }
        }
        _ => error,
    }
}

/// [`visit_fields_where`]'s scan, with the errors as the scanner finds them.
#[inline(always)]
fn scan_object<Visit: FnMut(&str, JsonScalar<'_>) -> ControlFlow<()>>(
    line: &str,
    path: &mut String,
    unwanted: impl Fn(TopLevelKey<'_>) -> bool,
    visit: &mut Visit,
    members: MemberScan,
) -> Result<(), JsonSyntaxError> {
    path.clear();
    let bytes = line.as_bytes();
    let error = |position: usize, expected: &'static str| JsonSyntaxError { position, expected };
    let mut position = skip_whitespace(bytes, 0);
    if byte_at(bytes, position) != b'{' {
        return Err(error(position, "'{'"));
    }
    position = skip_whitespace(bytes, position + 1);
    let mut specials = SpecialBytes::at(bytes, position);
    if members == MemberScan::FlatFirst && byte_at(bytes, position) == b'"' {
        match scan_flat_members(line, position, &mut specials, &unwanted, visit) {
            FlatScan::Done(outcome) => return outcome,
            FlatScan::Resume(member_start) => position = member_start,
        }
    }
    // The path length outside each open object; the top-level object's is 0.
    let mut parents: Vec<usize> = Vec::new();
    let mut empty_object = byte_at(bytes, position) == b'}';
    loop {
        if empty_object {
            // Its '}' is read below, as the end of a member would be.
            empty_object = false;
        } else {
            // A member: "key" : value.
            if byte_at(bytes, position) != b'"' {
                return Err(error(position, "'\"'"));
            }
            let key_start = position + 1;
            let (key_end, key_escaped) = string_end(bytes, &mut specials, key_start)?;
            position = skip_whitespace(bytes, key_end + 1);
            if byte_at(bytes, position) != b':' {
                return Err(error(position, "':'"));
            }
            position = skip_whitespace(bytes, position + 1);
            let key = line.get(key_start..key_end).unwrap_or_default();
            let value_byte = byte_at(bytes, position);
            let parent_length = path.len();
            // A top-level scalar or array is named by its key as it stands: no copy into the path.
            let named_by_key = parent_length == 0 && !key_escaped && value_byte != b'{';
            if !named_by_key {
                if parent_length > 0 {
                    path.push('_');
                }
                if key_escaped {
                    unescape_into(key, path);
                } else {
                    path.push_str(key);
                }
            }
            let name: &str = if named_by_key { key } else { path.as_str() };
            let skipped = named_by_key && unwanted(TopLevelKey { bytes: key.as_bytes(), known_ascii: false });
            let flow = match value_byte {
                b'"' => {
                    let (end, escaped) = string_end(bytes, &mut specials, position + 1)?;
                    let raw = line.get(position + 1..end).unwrap_or_default();
                    let known_ascii = specials.all_ascii_so_far();
                    position = end + 1;
                    if skipped {
                        ControlFlow::Continue(())
                    } else {
                        visit(name, JsonScalar::String { raw, escaped, known_ascii })
                    }
                }
                b'{' => {
                    if parents.len() >= MAX_DEPTH {
                        return Err(error(position, "nesting at most 128 deep"));
                    }
                    parents.push(parent_length);
                    position = skip_whitespace(bytes, position + 1);
                    empty_object = byte_at(bytes, position) == b'}';
                    continue;
                }
                b'[' => {
                    let mut scanner =
                        Scanner { text: line, bytes, position, name: path, depth: parents.len(), specials };
                    let _always_continues =
                        scanner.value(None, &mut |_: &str, _: JsonScalar<'_>| ControlFlow::Continue(()))?;
                    position = scanner.position;
                    specials = scanner.specials;
                    ControlFlow::Continue(())
                }
                _ => {
                    let (end, scalar) = literal(line, position)?;
                    position = end;
                    if skipped { ControlFlow::Continue(()) } else { visit(name, scalar) }
                }
            };
            path.truncate(parent_length);
            if flow.is_break() {
                return Ok(());
            }
        }
        // After a value: ',' and the next member, or '}' closing this object (and maybe more).
        loop {
            position = skip_whitespace(bytes, position);
            match byte_at(bytes, position) {
                b',' => {
                    position = skip_whitespace(bytes, position + 1);
                    break;
                }
                b'}' => {
                    position += 1;
                    let Some(parent_length) = parents.pop() else {
                        // The top-level object is closed: only whitespace may follow.
                        position = skip_whitespace(bytes, position);
                        if position != bytes.len() {
                            return Err(error(position, EXPECTED_END_OF_LINE));
                        }
                        return Ok(());
                    };
                    path.truncate(parent_length);
                }
                _ => return Err(error(position, "',' or '}'")),
            }
        }
    }
}

/// How [`scan_flat_members`] left a line.
enum FlatScan {
    /// The line is read: its outcome.
    Done(Result<(), JsonSyntaxError>),
    /// A member the flat scan does not read starts at this position (its key's opening quote), nothing of it
    /// visited: [`scan_object`]'s general loop reads on from there.
    Resume(usize),
}

/// The top-level members of a flat object, the shape of most log lines: keys and string values without
/// escapes or control characters, numbers, `true`, `false` and `null`, each string's end the next bit of
/// the window mask ([`SpecialBytes`]), the separators of the common spacings (`": "`, `, "`) read as one
/// word ([`word_at`]), no field path kept. `position` is at the first member's opening quote. At a member it
/// does not read (an escape, a nested object or array, a value that does not parse) it hands over to the
/// general loop before visiting that member, so every field is visited once and every error is the general
/// loop's; after a member only `,` or `}` may follow, as there.
#[inline(always)]
fn scan_flat_members<Visit: FnMut(&str, JsonScalar<'_>) -> ControlFlow<()>>(
    line: &str,
    mut position: usize,
    specials: &mut SpecialBytes,
    unwanted: &impl Fn(TopLevelKey<'_>) -> bool,
    visit: &mut Visit,
) -> FlatScan {
    let bytes = line.as_bytes();
    let error = |position: usize, expected: &'static str| JsonSyntaxError { position, expected };
    loop {
        debug_assert_eq!(byte_at(bytes, position), b'"');
        let member_start = position;
        let key_start = position + 1;
        let Some(key_end) = plain_string_end(bytes, specials, key_start) else { return FlatScan::Resume(member_start) };
        // Asked now, while the window still holds the key.
        let known_ascii = specials.ascii_from(key_start);
        // The key as a `&str` only for a field visited: slicing the line checks character boundaries.
        let key = || line.get(key_start..key_end).unwrap_or_default();
        let wanted =
            || !unwanted(TopLevelKey { bytes: bytes.get(key_start..key_end).unwrap_or_default(), known_ascii });
        // Most members are `"key": "value"` or `"key":"value"`: the key's closing quote, the colon (and a
        // space) and the value's opening quote read as one word.
        let after_key = word_at(bytes, key_end);
        position = if after_key == KEY_TO_STRING_SPACED {
            key_end + 3
        } else if after_key & 0xff_ffff == KEY_TO_STRING_TIGHT {
            key_end + 2
        } else {
            let colon = skip_whitespace(bytes, key_end + 1);
            if byte_at(bytes, colon) != b':' {
                return FlatScan::Resume(member_start);
            }
            skip_whitespace(bytes, colon + 1)
        };
        let flow = match byte_at(bytes, position) {
            b'"' => {
                let value_start = position + 1;
                let Some(value_end) = plain_string_end(bytes, specials, value_start) else {
                    return FlatScan::Resume(member_start);
                };
                position = value_end + 1;
                if wanted() {
                    let raw = line.get(value_start..value_end).unwrap_or_default();
                    let known_ascii = specials.all_ascii_so_far();
                    visit(key(), JsonScalar::String { raw, escaped: false, known_ascii })
                } else {
                    ControlFlow::Continue(())
                }
            }
            b'{' | b'[' => return FlatScan::Resume(member_start),
            _ => {
                let Ok((end, scalar)) = literal(line, position) else {
                    return FlatScan::Resume(member_start);
                };
                position = end;
                if wanted() { visit(key(), scalar) } else { ControlFlow::Continue(()) }
            }
        };
        if flow.is_break() {
            return FlatScan::Done(Ok(()));
        }
        // After a value: ',' and the next member's opening quote (most lines: read as one word), or '}'
        // closing the line's object.
        let after_value = word_at(bytes, position);
        if after_value & 0xff_ffff == NEXT_KEY_SPACED {
            position += 2;
            continue;
        }
        if after_value & 0xffff == NEXT_KEY_TIGHT {
            position += 1;
            continue;
        }
        position = skip_whitespace(bytes, position);
        match byte_at(bytes, position) {
            b',' => {
                position = skip_whitespace(bytes, position + 1);
                if byte_at(bytes, position) != b'"' {
                    return FlatScan::Done(Err(error(position, "'\"'")));
                }
            }
            b'}' => {
                position = skip_whitespace(bytes, position + 1);
                let outcome = if position == bytes.len() { Ok(()) } else { Err(error(position, EXPECTED_END_OF_LINE)) };
                return FlatScan::Done(outcome);
            }
            _ => return FlatScan::Done(Err(error(position, "',' or '}'"))),
        }
    }
}

/// `": "` as a [`word_at`]: a key's closing quote, the colon, a space and a string value's opening quote.
const KEY_TO_STRING_SPACED: u32 = u32::from_le_bytes(*b"\": \"");
/// `":"` as the low three bytes of a [`word_at`].
const KEY_TO_STRING_TIGHT: u32 = u32::from_le_bytes(*b"\":\"\0");
/// `, "` as the low three bytes of a [`word_at`]: the comma after a value, a space and the next key's quote.
const NEXT_KEY_SPACED: u32 = u32::from_le_bytes(*b", \"\0");
/// `,"` as the low two bytes of a [`word_at`].
const NEXT_KEY_TIGHT: u32 = u32::from_le_bytes(*b",\"\0\0");

/// The four bytes from `position` as a little-endian word; 0 (no token's bytes) when fewer remain.
#[inline(always)]
fn word_at(bytes: &[u8], position: usize) -> u32 {
    bytes.get(position..).and_then(<[u8]>::first_chunk::<4>).map_or(0, |word| u32::from_le_bytes(*word))
}

/// The position of the closing quote of a string whose contents start at `start`, when they hold no escape
/// and no control character; `None` otherwise (and for a string that does not end).
#[inline(always)]
fn plain_string_end(bytes: &[u8], specials: &mut SpecialBytes, start: usize) -> Option<usize> {
    let end = specials.next(bytes, start)?;
    (byte_at(bytes, end) == b'"').then_some(end)
}

/// The byte at `position`, or 0 (which no JSON token accepts) past the end.
fn byte_at(bytes: &[u8], position: usize) -> u8 {
    bytes.get(position).copied().unwrap_or(0)
}

/// The position of the first byte at or after `position` that is not JSON whitespace. Between the tokens
/// of most lines stands nothing or one space: those cases take a comparison or two (every whitespace byte
/// is at most `' '`), the rest a loop.
#[inline(always)]
fn skip_whitespace(bytes: &[u8], position: usize) -> usize {
    if byte_at(bytes, position) > b' ' {
        return position;
    }
    if byte_at(bytes, position) == b' ' && byte_at(bytes, position + 1) > b' ' {
        return position + 1;
    }
    skip_whitespace_run(bytes, position)
}

/// [`skip_whitespace`]'s loop.
fn skip_whitespace_run(bytes: &[u8], mut position: usize) -> usize {
    while matches!(byte_at(bytes, position), b' ' | b'\t' | b'\n' | b'\r') {
        position += 1;
    }
    position
}

/// Finds the closing quote of a string whose contents start at `start`, checking its escapes; returns the
/// quote's position and whether the string holds an escape. Inlined into the object loop, which calls it for
/// every key and string value: as a call it cost 8-12% of a full-line `| json` scan (session 9).
#[inline(always)]
fn string_end(bytes: &[u8], specials: &mut SpecialBytes, start: usize) -> Result<(usize, bool), JsonSyntaxError> {
    let mut position = start;
    let mut escaped = false;
    loop {
        let Some(special) = specials.next(bytes, position) else {
            return Err(JsonSyntaxError { position: bytes.len(), expected: "closing '\"'" });
        };
        position = special;
        match byte_at(bytes, position) {
            b'"' => return Ok((position, escaped)),
            b'\\' => {
                escaped = true;
                position += 1;
                match byte_at(bytes, position) {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => position += 1,
                    b'u' => {
                        let digits = bytes.get(position + 1..position + 5);
                        if !digits.is_some_and(|digits| digits.iter().all(u8::is_ascii_hexdigit)) {
                            return Err(JsonSyntaxError { position, expected: "four hex digits after '\\u'" });
                        }
                        position += 5;
                    }
                    _ => return Err(JsonSyntaxError { position, expected: "an escape character" }),
                }
            }
            _ => return Err(JsonSyntaxError { position: start, expected: "no control characters in a string" }),
        }
    }
}

/// The end of the digits starting at `position` (`position` itself when there are none).
fn digits_end(bytes: &[u8], mut position: usize) -> usize {
    while byte_at(bytes, position).is_ascii_digit() {
        position += 1;
    }
    position
}

/// Reads a number, `true`, `false` or `null` starting at `start`; returns its end and the scalar.
#[inline(always)]
fn literal(text: &str, start: usize) -> Result<(usize, JsonScalar<'_>), JsonSyntaxError> {
    let bytes = text.as_bytes();
    let word = match byte_at(bytes, start) {
        b't' => Some(("true", JsonScalar::Literal("true"))),
        b'f' => Some(("false", JsonScalar::Literal("false"))),
        b'n' => Some(("null", JsonScalar::Null)),
        _ => None,
    };
    if let Some((word, scalar)) = word {
        if !bytes.get(start..).unwrap_or_default().starts_with(word.as_bytes()) {
            return Err(JsonSyntaxError { position: start, expected: "a value" });
        }
        return Ok((start + word.len(), scalar));
    }
    let mut position = start;
    if byte_at(bytes, position) == b'-' {
        position += 1;
    }
    let mut end = digits_end(bytes, position);
    if end == position {
        return Err(JsonSyntaxError { position, expected: "a value" });
    }
    position = end;
    if byte_at(bytes, position) == b'.' {
        end = digits_end(bytes, position + 1);
        if end == position + 1 {
            return Err(JsonSyntaxError { position: end, expected: "a digit after '.'" });
        }
        position = end;
    }
    if matches!(byte_at(bytes, position), b'e' | b'E') {
        position += 1;
        if matches!(byte_at(bytes, position), b'+' | b'-') {
            position += 1;
        }
        end = digits_end(bytes, position);
        if end == position {
            return Err(JsonSyntaxError { position, expected: "a digit in the exponent" });
        }
        position = end;
    }
    Ok((position, JsonScalar::Literal(text.get(start..position).unwrap_or_default())))
}

/// The recursive scanner behind arrays: checks an array's values (objects inside included) and skips them.
struct Scanner<'a, 'p> {
    text: &'a str,
    bytes: &'a [u8],
    position: usize,
    /// The current field path, joined with `_`.
    name: &'p mut String,
    /// Objects and arrays open around the position.
    depth: usize,
    /// The special bytes ahead of the position.
    specials: SpecialBytes,
}

impl<'a> Scanner<'a, '_> {
    fn error(&self, expected: &'static str) -> JsonSyntaxError {
        JsonSyntaxError { position: self.position, expected }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.position).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.position += 1;
        }
    }

    fn expect(&mut self, byte: u8, expected: &'static str) -> Result<(), JsonSyntaxError> {
        self.skip_whitespace();
        if self.peek() != Some(byte) {
            return Err(self.error(expected));
        }
        self.position += 1;
        Ok(())
    }

    /// Reads a string starting at its opening quote (after whitespace); returns its raw contents and
    /// whether it has escapes.
    fn string(&mut self) -> Result<(&'a str, bool), JsonSyntaxError> {
        self.expect(b'"', "'\"'")?;
        let start = self.position;
        let (end, escaped) = string_end(self.bytes, &mut self.specials, start)?;
        self.position = end + 1;
        Ok((self.text.get(start..end).unwrap_or_default(), escaped))
    }

    /// Reads an object's members, the scanner standing on `{`.
    fn object<Visit: FnMut(&str, JsonScalar<'_>) -> ControlFlow<()>>(
        &mut self,
        visit: &mut Visit,
    ) -> Result<ControlFlow<()>, JsonSyntaxError> {
        self.expect(b'{', "'{'")?;
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.position += 1;
            return Ok(ControlFlow::Continue(()));
        }
        loop {
            let (key, key_escaped) = self.string()?;
            self.expect(b':', "':'")?;
            let parent_length = self.name.len();
            self.skip_whitespace();
            let flow = if parent_length == 0 && !key_escaped && self.peek() != Some(b'{') {
                // A top-level scalar or array is named by its key as it stands: no copy into the path.
                self.value(Some(key), visit)
            } else {
                if parent_length > 0 {
                    self.name.push('_');
                }
                if key_escaped {
                    unescape_into(key, self.name);
                } else {
                    self.name.push_str(key);
                }
                let flow = self.value(None, visit);
                self.name.truncate(parent_length);
                flow
            };
            if flow?.is_break() {
                return Ok(ControlFlow::Break(()));
            }
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => {
                    self.position += 1;
                    self.skip_whitespace();
                }
                Some(b'}') => {
                    self.position += 1;
                    return Ok(ControlFlow::Continue(()));
                }
                _ => return Err(self.error("',' or '}'")),
            }
        }
    }

    /// Reads one value; scalars go to the visitor under `name` or else the current path, objects recurse,
    /// arrays are checked and skipped (Loki's json parser extracts nothing from arrays without an
    /// expression).
    fn value<Visit: FnMut(&str, JsonScalar<'_>) -> ControlFlow<()>>(
        &mut self,
        name: Option<&str>,
        visit: &mut Visit,
    ) -> Result<ControlFlow<()>, JsonSyntaxError> {
        self.skip_whitespace();
        match self.peek() {
            Some(b'{' | b'[') if self.depth >= MAX_DEPTH => Err(self.error("nesting at most 128 deep")),
            Some(b'{') => {
                self.depth += 1;
                let flow = self.object(visit);
                self.depth -= 1;
                flow
            }
            Some(b'[') => {
                self.depth += 1;
                let checked = self.array();
                self.depth -= 1;
                checked?;
                Ok(ControlFlow::Continue(()))
            }
            Some(b'"') => {
                let (raw, escaped) = self.string()?;
                Ok(visit(name.unwrap_or(self.name), JsonScalar::String { raw, escaped, known_ascii: false }))
            }
            Some(_) => {
                let (end, scalar) = literal(self.text, self.position)?;
                self.position = end;
                Ok(visit(name.unwrap_or(self.name), scalar))
            }
            None => Err(self.error("a value")),
        }
    }

    fn array(&mut self) -> Result<(), JsonSyntaxError> {
        self.expect(b'[', "'['")?;
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.position += 1;
            return Ok(());
        }
        let mut ignore = |_: &str, _: JsonScalar<'_>| ControlFlow::Continue(());
        loop {
            // Objects inside arrays are checked with a throwaway visitor; their fields are not labels.
            let saved_name = self.name.len();
            let _always_continues = self.value(None, &mut ignore)?;
            self.name.truncate(saved_name);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.position += 1,
                Some(b']') => {
                    self.position += 1;
                    return Ok(());
                }
                _ => return Err(self.error("',' or ']'")),
            }
        }
    }
}

/// Bytes per window of [`SpecialBytes`].
const WINDOW: usize = 64;

/// A forward cursor over the bytes of a line that end or interrupt a JSON string's plain run: `"`, `\\`, or a
/// control character (below 0x20, which RFC 8259 section 7 forbids unescaped). It holds their mask over one
/// 64-byte window (bit `i` for the byte at `start + i`), so the ends of the several short keys and values in
/// a window are found with a shift and a count of trailing zeros, and each byte is classified once, not
/// once per search that starts before it.
#[derive(Debug, Clone, Copy)]
struct SpecialBytes {
    /// Position in the line of the window's first byte.
    start: usize,
    /// Bit `i` set when the byte at `start + i` is special; none for bytes past the line's end.
    mask: u64,
    /// Bit `i` set when the byte at `start + i` is not ASCII (0x80 or above).
    non_ascii: u64,
    /// Whether a window classified in this line so far held a byte that is not ASCII. Every byte of a string
    /// the scan found the end of lies in such windows (see [`SpecialBytes::all_ascii_so_far`]).
    non_ascii_seen: bool,
}

impl SpecialBytes {
    /// The window of `bytes` starting at `start` (an empty one at or past the end). Out of line: called
    /// about once per 64 bytes, it stays out of the member loop's code.
    #[inline(never)]
    fn at(bytes: &[u8], start: usize) -> SpecialBytes {
        let (mask, non_ascii) = match bytes.get(start..start + WINDOW) {
            Some(window) => window_masks(window),
            None => match bytes.len().checked_sub(WINDOW) {
                // The line's last 64 bytes, those before `start` shifted out.
                Some(last) if start < bytes.len() => {
                    let (mask, non_ascii) = window_masks(&bytes[last..]);
                    (mask >> (start - last), non_ascii >> (start - last))
                }
                Some(_) => (0, 0),
                None => {
                    // A line shorter than a window: its bytes from `start`, padded with spaces (no special).
                    let rest = bytes.get(start..).unwrap_or_default();
                    let mut padded = [b' '; WINDOW];
                    padded[..rest.len()].copy_from_slice(rest);
                    window_masks(&padded)
                }
            },
        };
        SpecialBytes { start, mask, non_ascii, non_ascii_seen: non_ascii != 0 }
    }

    /// True when the window starts at or before `start` and all its bytes are ASCII, so that the bytes from
    /// `start` to a special byte the window found are; false otherwise (most lines are ASCII throughout).
    #[inline(always)]
    fn ascii_from(&self, start: usize) -> bool {
        self.non_ascii == 0 && start >= self.start
    }

    /// True when every window classified so far in the line is ASCII: then so is every string whose end the
    /// scan found with these windows (its search classified every window from the string's start to its
    /// closing quote). Most lines are ASCII throughout, so most string values need no check for U+FFFD.
    #[inline(always)]
    fn all_ascii_so_far(&self) -> bool {
        !self.non_ascii_seen
    }

    /// The position of the first special byte at or after `from`, `None` when the line has none there. The
    /// window moves forward as needed (to `from` when it lies outside it).
    #[inline(always)]
    fn next(&mut self, bytes: &[u8], from: usize) -> Option<usize> {
        let mut search_from = from;
        loop {
            let offset = search_from.wrapping_sub(self.start);
            if offset < WINDOW {
                let ahead = self.mask >> offset;
                if ahead != 0 {
                    return Some(search_from + ahead.trailing_zeros() as usize);
                }
                search_from = self.start + WINDOW;
            }
            if search_from >= bytes.len() {
                return None;
            }
            let non_ascii_seen = self.non_ascii_seen;
            *self = SpecialBytes::at(bytes, search_from);
            self.non_ascii_seen |= non_ascii_seen;
        }
    }
}

/// The special-byte mask and the non-ASCII mask (see [`SpecialBytes`]) of a 64-byte window. On x86_64
/// sixteen bytes per step with SSE2 ([`sse2::window_masks`]); elsewhere eight with word-wide comparisons
/// ([`window_masks_words`]).
#[inline(always)]
fn window_masks(window: &[u8]) -> (u64, u64) {
    let Ok(window) = <&[u8; WINDOW]>::try_from(window) else { return (0, 0) };
    #[cfg(target_arch = "x86_64")]
    {
        sse2::window_masks(window)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        window_masks_words(window)
    }
}

/// [`window_masks`] eight bytes per step with word-wide comparisons, for targets without a vector path (and
/// the tests, which compare both). Each byte's flag is exact (no borrow runs between bytes), as the mask
/// needs every special byte, not only the first.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn window_masks_words(window: &[u8; WINDOW]) -> (u64, u64) {
    const LOW_SEVEN: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    // High bit of each byte below `n` (at most 0x80): the low seven bits plus `0x80 - n` reach 0x80 exactly
    // when they are at least `n`, and cannot carry into the next byte.
    let below = |word: u64, n: u8| !(((word & LOW_SEVEN) + ONES * u64::from(0x80 - n)) | word) & HIGHS;
    // Bit 8k+7 of `flags` to bit k of one byte: each shifted bit lands on its own place in the top byte.
    let byte_bits = |flags: u64| (flags >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56;
    let (mut mask, mut non_ascii) = (0u64, 0u64);
    for (index, chunk) in window.chunks_exact(8).enumerate() {
        let mut array = [0u8; 8];
        array.copy_from_slice(chunk);
        let word = u64::from_le_bytes(array);
        let flagged =
            below(word, 0x20) | below(word ^ (ONES * u64::from(b'"')), 1) | below(word ^ (ONES * u64::from(b'\\')), 1);
        mask |= byte_bits(flagged) << (8 * index);
        non_ascii |= byte_bits(word & HIGHS) << (8 * index);
    }
    (mask, non_ascii)
}

/// The offset of the first special byte of `bytes` (see [`SpecialBytes`]), eight bytes per step: the
/// search of the walk before session 14, for its oracle.
#[cfg(test)]
fn find_string_special_words(bytes: &[u8]) -> Option<usize> {
    let mut offset = 0;
    let mut words = bytes.chunks_exact(8);
    for chunk in &mut words {
        let Ok(array) = <[u8; 8]>::try_from(chunk) else { break };
        let word = u64::from_le_bytes(array);
        let flagged = bytes_below(word, 0x20) | bytes_equal(word, b'"') | bytes_equal(word, b'\\');
        if flagged != 0 {
            return Some(offset + (flagged.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    words
        .remainder()
        .iter()
        .position(|byte| *byte == b'"' || *byte == b'\\' || *byte < 0x20)
        .map(|position| offset + position)
}

/// The window mask with SSE2, which every x86_64 CPU has: sixteen bytes compared at once, four times.
#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set_epi64x, _mm_set1_epi8,
    };

    use super::WINDOW;

    /// Bytes per step.
    const BLOCK: usize = 16;

    /// See [`super::window_masks`].
    #[inline(always)]
    #[allow(unsafe_code)]
    pub(super) fn window_masks(window: &[u8; WINDOW]) -> (u64, u64) {
        // SAFETY: `masks` only needs SSE2, which is part of the x86_64 baseline: every CPU this code can
        // run on has it (the `#[target_feature]` is there so that the intrinsics may be called safely).
        unsafe { masks(window) }
    }

    /// The masks of the window's four blocks, joined.
    #[inline]
    #[target_feature(enable = "sse2")]
    fn masks(window: &[u8; WINDOW]) -> (u64, u64) {
        let (mut mask, mut non_ascii) = (0u64, 0u64);
        for (index, chunk) in window.chunks_exact(BLOCK).enumerate() {
            let Ok(block) = <&[u8; BLOCK]>::try_from(chunk) else { break };
            let (special, high) = block_masks(block);
            mask |= u64::from(special) << (BLOCK * index);
            non_ascii |= u64::from(high) << (BLOCK * index);
        }
        (mask, non_ascii)
    }

    /// Masks of the bytes of `block` (bit `i` for byte `i`): those that are `"`, `\\` or below 0x20, and those
    /// at 0x80 or above.
    #[inline]
    #[target_feature(enable = "sse2")]
    fn block_masks(block: &[u8; BLOCK]) -> (u32, u32) {
        let [low, high] = [&block[..8], &block[8..]].map(|half| {
            let mut word = [0u8; 8];
            word.copy_from_slice(half);
            i64::from_le_bytes(word)
        });
        let vector: __m128i = _mm_set_epi64x(high, low);
        let quotes = _mm_cmpeq_epi8(vector, _mm_set1_epi8(b'"' as i8));
        let backslashes = _mm_cmpeq_epi8(vector, _mm_set1_epi8(b'\\' as i8));
        // Unsigned `byte <= 0x1f` as `min(byte, 0x1f) == byte`.
        let controls = _mm_cmpeq_epi8(_mm_min_epu8(vector, _mm_set1_epi8(0x1f)), vector);
        let special = _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quotes, backslashes), controls)) as u32;
        (special, _mm_movemask_epi8(vector) as u32)
    }
}

/// Appends the unescaped form of a JSON string's raw contents (already checked by the scanner) to `out`.
/// An unpaired surrogate becomes U+FFFD.
fn unescape_into(raw: &str, out: &mut String) {
    let mut rest = raw;
    while let Some(backslash) = rest.find('\\') {
        out.push_str(&rest[..backslash]);
        let after = &rest[backslash + 1..];
        let Some(kind) = after.chars().next() else { break };
        rest = &after[kind.len_utf8()..];
        let simple = match kind {
            'n' => Some('\n'),
            't' => Some('\t'),
            'r' => Some('\r'),
            'b' => Some('\u{8}'),
            'f' => Some('\u{c}'),
            'u' => None,
            other => Some(other),
        };
        if let Some(character) = simple {
            out.push(character);
            continue;
        }
        let Some(high) = rest.get(..4).and_then(|digits| u32::from_str_radix(digits, 16).ok()) else { break };
        rest = &rest[4..];
        let code = if (0xD800..0xDC00).contains(&high) {
            let low = rest
                .strip_prefix("\\u")
                .and_then(|tail| tail.get(..4))
                .and_then(|digits| u32::from_str_radix(digits, 16).ok())
                .filter(|low| (0xDC00..0xE000).contains(low));
            match low {
                Some(low) => {
                    rest = &rest[6..];
                    0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                }
                None => 0xFFFD,
            }
        } else {
            high
        };
        out.push(char::from_u32(code).unwrap_or('\u{FFFD}'));
    }
    out.push_str(rest);
}

#[cfg(test)]
mod oracle;

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(line: &str) -> Result<Vec<(String, Option<String>)>, JsonSyntaxError> {
        let mut seen = Vec::new();
        visit_fields(line, &mut String::new(), &mut |name, value| {
            seen.push((name.to_string(), value.to_label_value()));
            ControlFlow::Continue(())
        })?;
        Ok(seen)
    }

    #[test]
    fn unwanted_top_level_fields_are_checked_but_not_visited() {
        let visited = |line: &str| {
            let mut seen = Vec::new();
            let outcome = visit_fields_where(
                line,
                &mut String::new(),
                |key: TopLevelKey<'_>| key.bytes.len() == 1,
                &mut |name, value| {
                    seen.push((name.to_string(), value.to_label_value()));
                    ControlFlow::Continue(())
                },
            );
            (outcome.map_err(|error| error.position), seen)
        };
        // Nested fields are named by their path, which the test does not see: they are visited.
        let (outcome, seen) = visited(r#"{"a":1,"bb":{"c":2},"d\u0065":"x","ee":"y","f":[1]}"#);
        assert_eq!(outcome, Ok(()));
        let names: Vec<&str> = seen.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["bb_c", "de", "ee"]);
        // A field passed over is still checked: its error fails the line.
        assert_eq!(visited(r#"{"a":tru,"bb":1}"#).0, Err(5));
        assert!(visited(r#"{"bb":1,"a":"x}"#).0.is_err());
    }

    #[test]
    fn flattens_nested_objects_and_skips_arrays() {
        let seen =
            fields(r#" {"a":"x","http":{"status":500,"ok":true},"tags":[1,{"b":2}],"n":null,"f":-1.5e3} "#).unwrap();
        let expected = [
            ("a", Some("x")),
            ("http_status", Some("500")),
            ("http_ok", Some("true")),
            ("n", None),
            ("f", Some("-1.5e3")),
        ];
        assert_eq!(
            seen,
            expected.iter().map(|(name, value)| (name.to_string(), value.map(str::to_string))).collect::<Vec<_>>()
        );
    }

    #[test]
    fn unescapes_strings_and_keys_like_serde_json() {
        let line = r#"{"m\u00e9":"a\"b\\c\nd\u00e9\ud83d\ude00","k":"plain"}"#;
        let expected: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line).unwrap();
        let seen = fields(line).unwrap();
        for (name, value) in seen {
            assert_eq!(expected.get(&name).and_then(|value| value.as_str()), value.as_deref());
        }
    }

    #[test]
    fn rejects_what_serde_json_rejects() {
        for broken in [
            "not json",
            "{",
            r#"{"a":}"#,
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{"a":"unterminated}"#,
            r#"{"a":1} trailing"#,
            r#"{"a":[1,2}"#,
            r#"{"a":tru}"#,
            r#"{"a":1.}"#,
            r#"{"a":"\x"}"#,
            "[1]",
            "",
        ] {
            assert!(serde_json::from_str::<serde_json::Value>(broken).map_or(true, |value| !value.is_object()));
            assert!(fields(broken).is_err(), "{broken:?} accepted");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(fields(&deep).unwrap_err().expected, "nesting at most 128 deep");
        let nested = format!("{}{{\"x\":1}}{}", "{\"a\":".repeat(100), "}".repeat(100));
        let seen = fields(&nested).unwrap();
        assert_eq!(seen, [(format!("{}x", "a_".repeat(100)), Some("1".to_string()))]);
    }

    #[test]
    fn string_specials_are_found_at_every_offset() {
        for length in 0..140 {
            for special in [b'"', b'\\', b'\n', 0x1f, 0] {
                for at in 0..length {
                    let mut bytes = vec![b'a'; length];
                    // Bytes just above the thresholds and multibyte text around the special byte.
                    for (index, byte) in bytes.iter_mut().enumerate() {
                        *byte = [b'a', b' ', b'#', b']', 0xc3, 0xa9, 0x20, 0x21, 0x5b, 0x5d, 0x7f, 0xff][index % 12];
                    }
                    bytes[at] = special;
                    assert_eq!(find_string_special_words(&bytes), Some(at), "{bytes:?}");
                    // From every start: the special byte ahead, whether or not the window already covers it.
                    for from in 0..=at {
                        assert_eq!(SpecialBytes::at(&bytes, from).next(&bytes, from), Some(at), "{bytes:?} {from}");
                        assert_eq!(SpecialBytes::at(&bytes, 0).next(&bytes, from), Some(at), "{bytes:?} {from}");
                    }
                    assert_eq!(SpecialBytes::at(&bytes, 0).next(&bytes, at + 1), None, "{bytes:?}");
                }
                let plain = vec![b'x'; length];
                assert_eq!(find_string_special_words(&plain), None);
                assert_eq!(SpecialBytes::at(&plain, 0).next(&plain, 0), None);
            }
        }
    }

    /// Every byte value at every place of a window, and windows full of special bytes: the word-wide mask
    /// is the vector one.
    #[test]
    fn window_masks_agree() {
        let mut random = 0x2545_f491_4f6c_dd1du64;
        for round in 0..2000 {
            let mut window = [0u8; WINDOW];
            for byte in &mut window {
                random ^= random << 13;
                random ^= random >> 7;
                random ^= random << 17;
                // Mostly bytes that matter to the mask, some of any value.
                let pick = (random >> 32) as usize;
                *byte = if round % 2 == 0 { pick as u8 } else { [b'"', b'\\', 0x1f, 0x20, b'a', 0x80, 0][pick % 7] };
            }
            let mask_of = |test: fn(u8) -> bool| {
                window
                    .iter()
                    .enumerate()
                    .filter(|(_, byte)| test(**byte))
                    .fold(0u64, |mask, (index, _)| mask | 1 << index)
            };
            let expected = (mask_of(|byte| byte == b'"' || byte == b'\\' || byte < 0x20), mask_of(|byte| byte >= 0x80));
            assert_eq!(window_masks(&window), expected, "{window:?}");
            assert_eq!(window_masks_words(&window), expected, "{window:?}");
        }
    }

    /// Lines cut short or with one byte replaced, around every kind of token: the scanner accepts exactly
    /// the objects serde_json accepts and names the same scalar fields with the same values.
    #[test]
    fn damaged_lines_are_accepted_and_read_as_serde_json_reads_them() {
        let line = r#" {"a": "x\"y", "n": {"b": [1, {"c": null}], "d": -1.5e+3, "g": {}}, "t": true, "f": false, "u": "\u00e9"} "#;
        for variant in damaged_variants(line) {
            let Ok(text) = std::str::from_utf8(&variant) else { continue };
            let expected = match serde_json::from_str::<serde_json::Value>(text) {
                Ok(serde_json::Value::Object(map)) => Some(flatten(&map)),
                _ => None,
            };
            let seen = fields(text).ok().map(|fields| {
                let mut fields: Vec<_> =
                    fields.into_iter().map(|(name, value)| (name, value.map(|value| same_number(&value)))).collect();
                fields.sort();
                fields
            });
            assert_eq!(seen, expected, "{text:?}");
        }
    }

    /// Flat members first (read by [`scan_flat_members`]), then each kind of member it hands over at, then
    /// flat ones again: cut short or with one byte replaced anywhere, the line gets the same visits (each field
    /// once, in order) and the same error from the flat scan as from the general loop alone, and is accepted
    /// exactly when serde_json accepts it.
    #[test]
    fn flat_members_are_read_as_the_general_loop_reads_them() {
        let lines = [
            r#" {"s": "plain", "n": -1.5e+3, "t": true, "f": false, "z": null, "u": "é", "q": "a\"b", "o": {"c": 1}, "a": [1, {"d": 2}], "k\u0061": "v", "w": 7} "#,
            r#"{"level":"info","path":"/api/events/42/","status_code":211,"duration_ms":1234.5,"m":"é ü","o":{}}"#,
            r#"{"a":"b","c":{"d":"e"}}"#,
            // No `0` digits: both loops accept a number with a leading zero (`"x": 00`), which serde_json
            // rejects, and replacing the digit before a `0` makes one.
            r#"{"a":1,"b":[]}"#,
            // Duplicate keys (each occurrence visited, in order) and whitespace around every token.
            "{\t\"a\" :\"x\" ,\n \"a\"\r: \"y\", \"b\": {\"a\": 1}, \"b_a\" : 2 } ",
        ];
        for line in lines {
            for variant in damaged_variants(line) {
                let Ok(text) = std::str::from_utf8(&variant) else { continue };
                let scan = |members: MemberScan| {
                    let mut seen = Vec::new();
                    let outcome = scan_object(
                        text,
                        &mut String::new(),
                        |key: TopLevelKey<'_>| key.bytes == b"w",
                        &mut |name, value| {
                            seen.push((name.to_string(), value.to_label_value()));
                            ControlFlow::Continue(())
                        },
                        members,
                    );
                    (outcome, seen)
                };
                let (flat, general) = (scan(MemberScan::FlatFirst), scan(MemberScan::General));
                assert_eq!(flat, general, "{text:?}");
                let accepted = matches!(serde_json::from_str(text), Ok(serde_json::Value::Object(_)));
                assert_eq!(flat.0.is_ok(), accepted, "{text:?}");
            }
        }
    }

    #[test]
    fn the_flat_scan_stops_when_the_visitor_breaks() {
        let mut seen = Vec::new();
        let outcome = visit_fields(r#"{"a": 1, "b": "x", "c": tru"#, &mut String::new(), &mut |name, _| {
            seen.push(name.to_string());
            if name == "b" { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
        });
        assert_eq!((outcome, seen), (Ok(()), vec!["a".to_string(), "b".to_string()]));
    }

    /// `line` cut short at every length, and with each byte replaced by each of a few bytes that matter to
    /// the grammar.
    fn damaged_variants(line: &str) -> Vec<Vec<u8>> {
        let replacements =
            [b'"', b'\\', b'{', b'}', b'[', b']', b':', b',', b' ', b'\n', 0x01, b'x', b'1', b'-', b'.', b'e'];
        let mut variants: Vec<Vec<u8>> = (0..=line.len()).map(|cut| line.as_bytes()[..cut].to_vec()).collect();
        for position in 0..line.len() {
            for replacement in replacements {
                let mut damaged = line.as_bytes().to_vec();
                damaged[position] = replacement;
                variants.push(damaged);
            }
        }
        variants
    }

    /// A number in one spelling (serde_json writes `-1.5e+3` as `-1500.0`), other values as they are.
    fn same_number(value: &str) -> String {
        value.parse::<f64>().map_or_else(|_| value.to_string(), |number| number.to_string())
    }

    /// The scalar fields of an object as the `| json` parser names them, sorted.
    fn flatten(map: &serde_json::Map<String, serde_json::Value>) -> Vec<(String, Option<String>)> {
        fn walk(
            prefix: &str,
            map: &serde_json::Map<String, serde_json::Value>,
            out: &mut Vec<(String, Option<String>)>,
        ) {
            for (key, value) in map {
                let name = if prefix.is_empty() { key.clone() } else { format!("{prefix}_{key}") };
                match value {
                    serde_json::Value::Object(inner) => walk(&name, inner, out),
                    serde_json::Value::Array(_) => {}
                    serde_json::Value::Null => out.push((name, None)),
                    serde_json::Value::String(text) => out.push((name, Some(text.clone()))),
                    other => out.push((name, Some(same_number(&other.to_string())))),
                }
            }
        }
        let mut out = Vec::new();
        walk("", map, &mut out);
        out.sort();
        out
    }

    /// A deterministic random source for the randomised comparison: numbers below a bound.
    struct Random(Box<dyn FnMut() -> u64>);

    impl Random {
        fn below(&mut self, bound: usize) -> usize {
            ((self.0)() % bound as u64) as usize
        }
    }

    /// A random JSON string (with its quotes): plain text of every length, multibyte text, escapes of each
    /// kind, now and then a raw control byte.
    fn random_string(random: &mut Random, out: &mut String) {
        out.push('"');
        let parts = [0, 1, 2, 3, 5, 8, 20, 70][random.below(8)];
        for _ in 0..parts {
            match random.below(12) {
                0 => out
                    .push_str(["\\\"", "\\\\", "\\n", "\\/", "\\u00e9", "\\ud83d\\ude00", "\\ud800"][random.below(7)]),
                1 => out.push_str(["é", "ü", "日本", "\u{7f}"][random.below(4)]),
                2 if random.below(20) == 0 => out.push('\t'),
                _ => out.push_str(
                    ["a", "id", "user_id", "request-", " ", "_", "x.y", "0", "{", "}", "[", ":", ","][random.below(13)],
                ),
            }
        }
        out.push('"');
    }

    /// A random JSON value, objects and arrays nested up to `depth` more levels.
    fn random_value(random: &mut Random, depth: usize, out: &mut String) {
        match random.below(if depth == 0 { 6 } else { 9 }) {
            0 | 1 => random_string(random, out),
            2 => out.push_str(["0", "-1.5e+3", "1234", "3.25", "-0", "1e9", "200"][random.below(7)]),
            3 => out.push_str(["true", "false", "null"][random.below(3)]),
            4 | 5 => out.push_str(&random.below(100_000).to_string()),
            6 | 7 => random_object(random, depth - 1, out),
            _ => {
                out.push('[');
                for index in 0..random.below(4) {
                    if index > 0 {
                        out.push(',');
                    }
                    random_value(random, depth - 1, out);
                }
                out.push(']');
            }
        }
    }

    /// A random JSON object: keys repeated now and then, whitespace of each kind around tokens.
    fn random_object(random: &mut Random, depth: usize, out: &mut String) {
        let space = |random: &mut Random, out: &mut String| {
            if random.below(3) == 0 {
                out.push_str([" ", "  ", "\t", "\n", "\r\n "][random.below(5)]);
            }
        };
        out.push('{');
        for index in 0..[0, 1, 2, 4, 8, 12][random.below(6)] {
            if index > 0 {
                out.push(',');
                space(random, out);
            }
            if random.below(4) == 0 {
                random_string(random, out);
            } else {
                let key = ["a", "b", "level", "user_id", "span_id", "k\\u0061", "a_b", "x.y", "é"][random.below(9)];
                out.push('"');
                out.push_str(key);
                out.push('"');
            }
            space(random, out);
            out.push(':');
            space(random, out);
            random_value(random, depth, out);
            space(random, out);
        }
        out.push('}');
    }

    /// Random lines, whole and damaged (cut short or a byte replaced), walked by the window scan and by the
    /// walk before it ([`oracle`]): the same visits in the same order and the same outcome, error positions
    /// included, with a visitor that stops at a field and a test that passes over others.
    #[test]
    fn the_walk_matches_the_walk_before_windows() {
        let mut random = Random(Box::new(crate::test_random::xorshift(0x9e37_79b9_7f4a_7c15)));
        let replacements = [b'"', b'\\', b'{', b'}', b'[', b']', b':', b',', b' ', b'\n', 0x01, b'x', b'1'];
        for _ in 0..20_000 {
            let mut line = String::new();
            if random.below(8) == 0 {
                line.push(' ');
            }
            random_object(&mut random, 3, &mut line);
            let mut bytes = line.into_bytes();
            match random.below(4) {
                0 => bytes.truncate(random.below(bytes.len() + 1)),
                1 => {
                    let at = random.below(bytes.len());
                    bytes[at] = replacements[random.below(replacements.len())];
                }
                _ => {}
            }
            let Ok(text) = std::str::from_utf8(&bytes) else { continue };
            let walk = |new: bool| {
                let mut seen = Vec::new();
                let unwanted = |key: TopLevelKey<'_>| {
                    // The scan's ASCII verdict is never wrong, only sometimes not given.
                    assert!(!key.known_ascii || key.bytes.is_ascii(), "{text:?}");
                    key.bytes.len() == 1
                };
                let mut visit = |name: &str, value: JsonScalar<'_>| {
                    if let JsonScalar::String { raw, known_ascii: true, .. } = value {
                        assert!(raw.is_ascii(), "{text:?}");
                    }
                    seen.push((name.to_string(), value.to_label_value()));
                    if name == "span_id" { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
                };
                let outcome = if new {
                    visit_fields_where(text, &mut String::new(), unwanted, &mut visit)
                } else {
                    oracle::visit_fields_where(text, &mut String::new(), unwanted, &mut visit)
                };
                (outcome, seen)
            };
            assert_eq!(walk(true), walk(false), "{text:?}");
        }
    }

    #[test]
    fn stops_when_the_visitor_breaks() {
        let mut count = 0;
        visit_fields(r#"{"a":1,"b":2, broken"#, &mut String::new(), &mut |_, _| {
            count += 1;
            ControlFlow::Break(())
        })
        .unwrap();
        assert_eq!(count, 1);
    }
}
