//! Redaction of JSON log lines by a single-pass scanner that keeps every byte it does not replace.
//!
//! The scanner walks the value grammar of RFC 8259 without building a tree. Values under a sensitive key are
//! replaced whole with `"[REDACTED]"` (objects, arrays and numbers too); string values get the free-text rules;
//! integer numbers that are card numbers become `"[REDACTED]"`. A string holding escapes is decoded, redacted
//! and re-encoded by `serde_json` only when something in it changes. Anything that is not valid JSON makes the
//! scanner give up, and the caller treats the line as text.

use super::numbers::is_card_number_digits;
use super::options::REDACTED;
use super::stats::{Rule, Tally};
use super::{KeyContext, Redactor};

/// Deepest nesting the scanner follows; deeper lines are treated as text.
const MAX_DEPTH: usize = 128;

/// One replacement of `line[start..end]`.
#[derive(Debug)]
pub(crate) struct Edit {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) text: String,
}

/// The line is not JSON (or nests too deep).
#[derive(Debug)]
pub(crate) struct NotJson;

/// How a value is visited: with the rules for the key it sits under, or only skipped over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Visit {
    Redact(KeyContext),
    Skip,
}

pub(crate) struct JsonScanner<'r, 'l> {
    redactor: &'r Redactor,
    line: &'l str,
    bytes: &'l [u8],
    position: usize,
    pub(crate) edits: Vec<Edit>,
    pub(crate) tally: Tally,
}

impl<'r, 'l> JsonScanner<'r, 'l> {
    pub(crate) fn new(redactor: &'r Redactor, line: &'l str) -> JsonScanner<'r, 'l> {
        JsonScanner { redactor, line, bytes: line.as_bytes(), position: 0, edits: Vec::new(), tally: Tally::default() }
    }

    /// Scans the whole line as one JSON value, collecting edits in line order.
    pub(crate) fn scan(&mut self) -> Result<(), NotJson> {
        self.value(Visit::Redact(KeyContext::Plain), 0)?;
        self.skip_whitespace();
        if self.position == self.bytes.len() { Ok(()) } else { Err(NotJson) }
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.bytes.get(self.position), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.position += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.position).copied()
    }

    fn expect(&mut self, byte: u8) -> Result<(), NotJson> {
        if self.peek() == Some(byte) {
            self.position += 1;
            Ok(())
        } else {
            Err(NotJson)
        }
    }

    fn value(&mut self, visit: Visit, depth: usize) -> Result<(), NotJson> {
        if depth > MAX_DEPTH {
            return Err(NotJson);
        }
        self.skip_whitespace();
        match self.peek().ok_or(NotJson)? {
            b'{' => self.object(visit, depth),
            b'[' => self.array(visit, depth),
            b'"' => self.string_value(visit),
            b'-' | b'0'..=b'9' => self.number(visit),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => Err(NotJson),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), NotJson> {
        if self.bytes.get(self.position..self.position + word.len()) == Some(word) {
            self.position += word.len();
            Ok(())
        } else {
            Err(NotJson)
        }
    }

    fn object(&mut self, visit: Visit, depth: usize) -> Result<(), NotJson> {
        self.expect(b'{')?;
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.position += 1;
            return Ok(());
        }
        loop {
            self.skip_whitespace();
            let (key_start, key_end, key_escaped) = self.string_token()?;
            let member_visit = match visit {
                Visit::Skip => Visit::Skip,
                Visit::Redact(_) => {
                    let raw_key = self.line.get(key_start + 1..key_end - 1).ok_or(NotJson)?;
                    let context = if key_escaped {
                        let decoded: String = serde_json::from_str(self.line.get(key_start..key_end).ok_or(NotJson)?)
                            .map_err(|_| NotJson)?;
                        self.redactor.classify_key(&decoded)
                    } else {
                        self.redactor.classify_key(raw_key)
                    };
                    Visit::Redact(context)
                }
            };
            self.skip_whitespace();
            self.expect(b':')?;
            self.skip_whitespace();
            if member_visit == Visit::Redact(KeyContext::Sensitive) {
                self.sensitive_value(depth)?;
            } else {
                self.value(member_visit, depth + 1)?;
            }
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.position += 1,
                Some(b'}') => {
                    self.position += 1;
                    return Ok(());
                }
                _ => return Err(NotJson),
            }
        }
    }

    fn array(&mut self, visit: Visit, depth: usize) -> Result<(), NotJson> {
        self.expect(b'[')?;
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.position += 1;
            return Ok(());
        }
        loop {
            // Elements keep the key the array sits under, so `"email": ["a@x.org"]` stays kept.
            self.value(visit, depth + 1)?;
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.position += 1,
                Some(b']') => {
                    self.position += 1;
                    return Ok(());
                }
                _ => return Err(NotJson),
            }
        }
    }

    /// Replaces the value under a sensitive key with `"[REDACTED]"`, unless it is `null`, `""` or already that.
    fn sensitive_value(&mut self, depth: usize) -> Result<(), NotJson> {
        let start = self.position;
        self.value(Visit::Skip, depth + 1)?;
        let raw = self.line.get(start..self.position).ok_or(NotJson)?;
        let already_redacted = raw.len() == REDACTED.len() + 2 && raw.get(1..raw.len() - 1) == Some(REDACTED);
        if raw != "null" && raw != "\"\"" && !already_redacted {
            self.edits.push(Edit { start, end: self.position, text: format!("\"{REDACTED}\"") });
            self.tally.count(Rule::SensitiveKey);
        }
        Ok(())
    }

    /// Reads a string token at the position; returns (opening quote, one past the closing quote, has escapes).
    fn string_token(&mut self) -> Result<(usize, usize, bool), NotJson> {
        let start = self.position;
        self.expect(b'"')?;
        let mut escaped = false;
        loop {
            let offset = memchr::memchr3(b'"', b'\\', b'\n', &self.bytes[self.position..]).ok_or(NotJson)?;
            self.position += offset;
            match self.bytes[self.position] {
                b'"' => {
                    self.position += 1;
                    return Ok((start, self.position, escaped));
                }
                b'\\' => {
                    escaped = true;
                    self.position += 2;
                    if self.position > self.bytes.len() {
                        return Err(NotJson);
                    }
                }
                _ => return Err(NotJson),
            }
        }
    }

    fn string_value(&mut self, visit: Visit) -> Result<(), NotJson> {
        let (start, end, escaped) = self.string_token()?;
        let Visit::Redact(context) = visit else {
            return Ok(());
        };
        if !escaped {
            let content = self.line.get(start + 1..end - 1).ok_or(NotJson)?;
            let replacements = self.redactor.text_replacements(content, context, &mut self.tally);
            for replacement in replacements {
                self.edits.push(Edit {
                    start: start + 1 + replacement.start,
                    end: start + 1 + replacement.end,
                    text: replacement.text.to_string(),
                });
            }
            return Ok(());
        }
        let decoded: String = serde_json::from_str(self.line.get(start..end).ok_or(NotJson)?).map_err(|_| NotJson)?;
        let replacements = self.redactor.text_replacements(&decoded, context, &mut self.tally);
        if !replacements.is_empty() {
            let redacted = super::apply_replacements(&decoded, &replacements);
            let encoded = serde_json::to_string(&redacted).map_err(|_| NotJson)?;
            self.edits.push(Edit { start, end, text: encoded });
        }
        Ok(())
    }

    fn number(&mut self, visit: Visit) -> Result<(), NotJson> {
        let start = self.position;
        if self.peek() == Some(b'-') {
            self.position += 1;
        }
        let digits_start = self.position;
        while self.peek().is_some_and(|byte| byte.is_ascii_digit()) {
            self.position += 1;
        }
        if self.position == digits_start {
            return Err(NotJson);
        }
        let digits_end = self.position;
        let mut integer = true;
        if self.peek() == Some(b'.') {
            integer = false;
            self.position += 1;
            let fraction_start = self.position;
            while self.peek().is_some_and(|byte| byte.is_ascii_digit()) {
                self.position += 1;
            }
            if self.position == fraction_start {
                return Err(NotJson);
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            integer = false;
            self.position += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.position += 1;
            }
            let exponent_start = self.position;
            while self.peek().is_some_and(|byte| byte.is_ascii_digit()) {
                self.position += 1;
            }
            if self.position == exponent_start {
                return Err(NotJson);
            }
        }
        let is_card = matches!(visit, Visit::Redact(_))
            && self.redactor.inner.options.card_numbers
            && integer
            && start == digits_start
            && self.line.get(digits_start..digits_end).is_some_and(is_card_number_digits);
        if is_card {
            self.edits.push(Edit { start, end: self.position, text: format!("\"{REDACTED}\"") });
            self.tally.count(Rule::CardNumber);
        }
        Ok(())
    }
}
