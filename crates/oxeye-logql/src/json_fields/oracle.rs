//! The field walk as it stood before the 64-byte windows of [`super::SpecialBytes`] (session 14): the general
//! loop alone, each string's end found by its own search, kept as the oracle of the randomised comparison in
//! the parent module's tests.

use std::ops::ControlFlow;

use super::{
    EXPECTED_END_OF_LINE, JsonScalar, JsonSyntaxError, MAX_DEPTH, Scanner, SpecialBytes, TopLevelKey, byte_at,
    error_as_loki_reads_it, find_string_special_words, literal, skip_whitespace, unescape_into,
};

/// `visit_fields_where` before session 14.
pub(super) fn visit_fields_where<Visit: FnMut(&str, JsonScalar<'_>) -> ControlFlow<()>>(
    line: &str,
    path: &mut String,
    unwanted: impl Fn(TopLevelKey<'_>) -> bool,
    visit: &mut Visit,
) -> Result<(), JsonSyntaxError> {
    scan_object(line, path, unwanted, visit).map_err(|error| error_as_loki_reads_it(line, error))
}

/// The general loop of `scan_object` before session 14, with the errors as it finds them.
fn scan_object<Visit: FnMut(&str, JsonScalar<'_>) -> ControlFlow<()>>(
    line: &str,
    path: &mut String,
    unwanted: impl Fn(TopLevelKey<'_>) -> bool,
    visit: &mut Visit,
) -> Result<(), JsonSyntaxError> {
    path.clear();
    let bytes = line.as_bytes();
    let error = |position: usize, expected: &'static str| JsonSyntaxError { position, expected };
    let mut position = skip_whitespace(bytes, 0);
    if byte_at(bytes, position) != b'{' {
        return Err(error(position, "'{'"));
    }
    position = skip_whitespace(bytes, position + 1);
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
            let (key_end, key_escaped) = string_end(bytes, key_start)?;
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
                    let (end, escaped) = string_end(bytes, position + 1)?;
                    let raw = line.get(position + 1..end).unwrap_or_default();
                    position = end + 1;
                    if skipped {
                        ControlFlow::Continue(())
                    } else {
                        visit(name, JsonScalar::String { raw, escaped, known_ascii: false })
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
                    // Arrays are read by the window scan's `Scanner`, the one part not kept here as it was.
                    let specials = SpecialBytes::at(bytes, position);
                    let mut scanner =
                        Scanner { text: line, bytes, position, name: path, depth: parents.len(), specials };
                    let _always_continues =
                        scanner.value(None, &mut |_: &str, _: JsonScalar<'_>| ControlFlow::Continue(()))?;
                    position = scanner.position;
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

/// Finds the closing quote of a string whose contents start at `start`, checking its escapes; returns the
/// quote's position and whether the string holds an escape. Inlined into the object loop, which calls it for
/// every key and string value: as a call it cost 8-12% of a full-line `| json` scan (session 9).
#[inline(always)]
fn string_end(bytes: &[u8], start: usize) -> Result<(usize, bool), JsonSyntaxError> {
    let mut position = start;
    let mut escaped = false;
    loop {
        let Some(offset) = find_string_special_words(bytes.get(position..).unwrap_or_default()) else {
            return Err(JsonSyntaxError { position: bytes.len(), expected: "closing '\"'" });
        };
        position += offset;
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
