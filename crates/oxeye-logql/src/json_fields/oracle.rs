//! The field walk as it stood before the 64-byte windows of [`super::SpecialBytes`] (session 14): the general
//! loop alone, each string's end found by its own search, kept as the oracle of the randomised comparison in
//! the parent module's tests.

use std::ops::ControlFlow;

use super::{
    EXPECTED_END_OF_LINE, JsonScalar, JsonSyntaxError, MAX_DEPTH, TopLevelKey, byte_at, error_as_loki_reads_it,
    find_string_special_words, literal, skip_whitespace, unescape_into,
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
                    if skipped { ControlFlow::Continue(()) } else { visit(name, JsonScalar::String { raw, escaped }) }
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
                    let mut scanner = Scanner { text: line, bytes, position, name: path, depth: parents.len() };
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

/// The recursive scanner behind arrays: checks an array's values (objects inside included) and skips them.
struct Scanner<'a, 'p> {
    text: &'a str,
    bytes: &'a [u8],
    position: usize,
    /// The current field path, joined with `_`.
    name: &'p mut String,
    /// Objects and arrays open around the position.
    depth: usize,
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
        let (end, escaped) = string_end(self.bytes, start)?;
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
                Ok(visit(name.unwrap_or(self.name), JsonScalar::String { raw, escaped }))
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
