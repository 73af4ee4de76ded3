//! Loki push bodies (`POST /loki/api/v1/push`) into `oxeye-model` log streams.
//!
//! Source: Loki's HTTP API reference (`loki-http-api.md`, "Ingest logs") and `pkg/push/push.proto`:
//! - JSON: `{"streams":[{"stream":{"job":"x"},"values":[["<ns string>","line"],["<ns>","line",{"trace_id":"…"}]]}]}`;
//!   the optional third element is structured metadata (a flat string map). Timestamps are strings of
//!   nanoseconds (numbers are accepted too).
//! - Protobuf: a snappy **block** of `PushRequest`; each stream's labels are selector text `{a="b"}`.
//!
//! A body that does not decode is refused whole ([`IngestError`] names the field), so nothing is stored.

use oxeye_model::logs::{LogEntry, LogStream};
use oxeye_model::{Label, Labels};
use oxeye_proto::loki::PushRequest;
use prost::Message;

use crate::IngestError;

fn json_error(field: String, reason: impl Into<String>) -> IngestError {
    IngestError::Json { field, reason: reason.into() }
}

/// Decodes a JSON push body (already gzip-decoded).
///
/// # Errors
/// [`IngestError::Json`] naming the path of the first bad value, e.g. `streams[0].values[3][0]`.
pub fn decode_push_json(body: &[u8]) -> Result<Vec<LogStream>, IngestError> {
    // The common shape is read by a decoder of its own; anything else (unknown or repeated keys, `\u`
    // escapes, numbers it does not take) goes to the typed decoder, which builds the streams straight from
    // the bytes; a body that refuses too goes through the tree decoder, which names the bad field.
    if let Some(streams) = plain::decode(body) {
        return Ok(streams);
    }
    if let Ok(typed) = serde_json::from_slice::<typed::Body>(body) {
        return Ok(typed
            .streams
            .into_iter()
            .map(|stream| LogStream {
                labels: Labels::from_pairs(stream.stream.0),
                entries: stream.values.into_iter().map(|entry| entry.0).collect(),
            })
            .collect());
    }
    decode_push_json_tree(body)
}

/// A decoder for push bodies of the shape clients send: `{"streams": [{"stream": {...}, "values": [[...]]}]}`
/// with no other keys, no key twice in an object, timestamps as strings or integers of nanoseconds, and
/// strings whose escapes are the two-character ones (`\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`).
/// It returns `None` for anything else, valid or not, and [`decode_push_json`] then runs the serde decoders;
/// what it returns is what they would return. A line is found, unescaped and checked in one pass over its
/// bytes (eight a step), and no visitor runs per value.
mod plain {
    use oxeye_model::logs::{LogEntry, LogStream};
    use oxeye_model::{Label, Labels};

    pub(super) fn decode(body: &[u8]) -> Option<Vec<LogStream>> {
        let mut parser = Parser { bytes: body, position: 0, scratch: Vec::new() };
        parser.expect(b'{')?;
        parser.key(b"streams")?;
        let streams = parser.array(Parser::stream)?;
        parser.expect(b'}')?;
        parser.whitespace();
        (parser.position == body.len()).then_some(streams)
    }

    struct Parser<'b> {
        bytes: &'b [u8],
        position: usize,
        /// Where escaped strings are unescaped before they are checked and copied out; it keeps its size
        /// from string to string (zeros or old bytes past what the current string wrote).
        scratch: Vec<u8>,
    }

    const LOW_ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

    /// The offset of the first `"`, `\\` or control character (below 0x20) at or after `from`, eight bytes a
    /// step: in each word, the lowest byte flagged by any of the three tests is exact (a test can only flag
    /// false bytes above its own first true one).
    fn next_quote_backslash_or_control(bytes: &[u8], from: usize) -> Option<usize> {
        let mut position = from;
        while let Some(eight) = bytes.get(position..position + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(eight);
            let found = quote_backslash_or_control_bits(u64::from_le_bytes(word));
            if found != 0 {
                return Some(position + (found.trailing_zeros() / 8) as usize);
            }
            position += 8;
        }
        let rest = bytes.get(position..)?;
        rest.iter().position(|byte| matches!(byte, b'"' | b'\\' | 0..=0x1f)).map(|offset| position + offset)
    }

    /// The bits of `word` flagged by [`next_quote_backslash_or_control`]'s three tests: the lowest one is the
    /// first `"`, `\\` or control byte of the word. Every such byte is flagged, and so may be a byte just above
    /// one (a borrow runs on): `#` above `"`, `]` above `\\`, a space above a control byte.
    fn quote_backslash_or_control_bits(word: u64) -> u64 {
        let zero_byte = |value: u64| value.wrapping_sub(LOW_ONES) & !value & HIGH_BITS;
        zero_byte(word ^ (LOW_ONES * u64::from(b'"')))
            | zero_byte(word ^ (LOW_ONES * u64::from(b'\\')))
            | (word.wrapping_sub(LOW_ONES * 0x20) & !word & HIGH_BITS)
    }

    /// The byte each two-character escape `\\x` stands for, indexed by `x`; 0 where `\\x` is none of them
    /// (`\\u` included: the plain decoder leaves those to serde).
    const UNESCAPED: [u8; 256] = {
        let mut table = [0u8; 256];
        table[b'"' as usize] = b'"';
        table[b'\\' as usize] = b'\\';
        table[b'/' as usize] = b'/';
        table[b'b' as usize] = 0x08;
        table[b'f' as usize] = 0x0c;
        table[b'n' as usize] = b'\n';
        table[b'r' as usize] = b'\r';
        table[b't' as usize] = b'\t';
        table
    };

    /// Makes `scratch` at least `needed` bytes long (it only grows, doubling, so a body's strings resize it a
    /// few times at most).
    #[cold]
    fn grow(scratch: &mut Vec<u8>, needed: usize) {
        scratch.resize(needed.max(2 * scratch.len()).max(256), 0);
    }

    /// Unescapes the string whose bytes start at `start` and whose first `"`, `\\` or control byte is at
    /// `first` into the front of `scratch`. Returns the offset of its closing quote and its unescaped length,
    /// or `None` at a control byte, an escape other than the two-character ones, or the end of `bytes`.
    /// UTF-8 is not checked here.
    ///
    /// The bytes are read eight at a time. Each word is stored whole where its bytes go, and its quotes,
    /// backslashes and control bytes are flagged at once; each escape in it then writes its byte and stores the
    /// rest of the word again one place further down, so a word with several escapes is loaded and tested once.
    /// Bytes stored past the end of the string are scratch and left there.
    fn unescape_into(bytes: &[u8], start: usize, first: usize, scratch: &mut Vec<u8>) -> Option<(usize, usize)> {
        let leading = bytes.get(start..first)?;
        if scratch.len() < leading.len() + 32 {
            grow(scratch, leading.len() + 32);
        }
        scratch.get_mut(..leading.len())?.copy_from_slice(leading);
        let mut length = leading.len();
        let mut position = first;
        loop {
            // A word stores at most 8 bytes past `length`, an escape 1 and then 8 more.
            if scratch.len() < length + 32 {
                grow(scratch, length + 32);
            }
            let out = scratch.as_mut_slice();
            // The last few bytes of the body are padded with zeros, which stop the string as control bytes.
            let word_bytes: [u8; 8] = match bytes.get(position..position + 8) {
                Some(eight) => eight.try_into().ok()?,
                None => padded_tail(bytes.get(position..)?),
            };
            let word = u64::from_le_bytes(word_bytes);
            out.get_mut(length..length + 8)?.copy_from_slice(&word_bytes);
            // Every quote, backslash and control byte is flagged; so may be a byte just above one (a borrow
            // runs on), which is let pass below.
            let mut flags = quote_backslash_or_control_bits(word);
            // Bytes of the word already taken (stored or unescaped).
            let mut taken = 0usize;
            loop {
                if flags == 0 {
                    length += 8 - taken;
                    position += 8;
                    break;
                }
                let at = (flags.trailing_zeros() / 8) as usize;
                let flagged = (word >> (8 * at)) as u8;
                if flagged != b'\\' {
                    match flagged {
                        b'"' => return Some((position + at, length + at - taken)),
                        0..=0x1f => return None,
                        _ => {
                            flags &= flags - 1;
                            continue;
                        }
                    }
                }
                length += at - taken;
                // The escaped byte is the next one, in this word or the first of the next.
                let escaped = if at < 7 { (word >> (8 * (at + 1))) as u8 } else { *bytes.get(position + 8)? };
                let unescaped = UNESCAPED[usize::from(escaped)];
                if unescaped == 0 {
                    return None;
                }
                *out.get_mut(length)? = unescaped;
                length += 1;
                taken = at + 2;
                if taken >= 8 {
                    position += taken;
                    break;
                }
                let rest = word >> (8 * taken);
                out.get_mut(length..length + 8)?.copy_from_slice(&rest.to_le_bytes());
                flags &= u64::MAX << (8 * taken);
            }
        }
    }

    /// `text` read as `i64::from_str` reads it. Up to 19 plain digits (every `i64` of 0 or more has at most 19)
    /// are summed here, where no `u64` overflows and no sign needs checking; anything else goes to `from_str`.
    fn parse_i64(text: &[u8]) -> Option<i64> {
        if text.is_empty() || text.len() > 19 || !text.iter().all(u8::is_ascii_digit) {
            return std::str::from_utf8(text).ok()?.parse().ok();
        }
        let value = text.iter().fold(0u64, |value, digit| value * 10 + u64::from(digit - b'0'));
        i64::try_from(value).ok()
    }

    /// The last fewer than 8 bytes of a body, padded with zeros to a word.
    #[cold]
    fn padded_tail(rest: &[u8]) -> [u8; 8] {
        let mut word = [0u8; 8];
        for (slot, byte) in word.iter_mut().zip(rest) {
            *slot = *byte;
        }
        word
    }

    impl Parser<'_> {
        fn whitespace(&mut self) {
            while matches!(self.bytes.get(self.position), Some(b' ' | b'\t' | b'\n' | b'\r')) {
                self.position += 1;
            }
        }

        /// Skips whitespace, then takes `byte`.
        fn expect(&mut self, byte: u8) -> Option<()> {
            self.whitespace();
            (self.bytes.get(self.position) == Some(&byte)).then(|| self.position += 1)
        }

        /// Skips whitespace, then takes `byte` if it is next.
        fn take(&mut self, byte: u8) -> bool {
            self.whitespace();
            let next = self.bytes.get(self.position) == Some(&byte);
            self.position += usize::from(next);
            next
        }

        /// `"name":` for exactly this name.
        fn key(&mut self, name: &[u8]) -> Option<()> {
            self.expect(b'"')?;
            let end = self.position + name.len();
            (self.bytes.get(self.position..end) == Some(name) && self.bytes.get(end) == Some(&b'"')).then_some(())?;
            self.position = end + 1;
            self.expect(b':')
        }

        /// `[item, item, ...]`.
        fn array<T>(&mut self, mut item: impl FnMut(&mut Self) -> Option<T>) -> Option<Vec<T>> {
            self.expect(b'[')?;
            let mut items = Vec::new();
            if self.take(b']') {
                return Some(items);
            }
            loop {
                items.push(item(self)?);
                if !self.take(b',') {
                    self.expect(b']')?;
                    return Some(items);
                }
            }
        }

        /// `{"stream": {...}, "values": [...]}`, the two keys in either order.
        fn stream(&mut self) -> Option<LogStream> {
            self.expect(b'{')?;
            let (labels, entries) = if self.peek_key(b"stream") {
                self.key(b"stream")?;
                let labels = self.string_pairs()?;
                self.expect(b',')?;
                self.key(b"values")?;
                (labels, self.array(Parser::entry)?)
            } else {
                self.key(b"values")?;
                let entries = self.array(Parser::entry)?;
                self.expect(b',')?;
                self.key(b"stream")?;
                (self.string_pairs()?, entries)
            };
            self.expect(b'}')?;
            Some(LogStream { labels: Labels::from_pairs(labels), entries })
        }

        fn peek_key(&mut self, name: &[u8]) -> bool {
            self.whitespace();
            let start = self.position + 1;
            self.bytes.get(self.position) == Some(&b'"')
                && self.bytes.get(start..start + name.len()) == Some(name)
                && self.bytes.get(start + name.len()) == Some(&b'"')
        }

        /// An object of string values, in order, no name twice.
        fn string_pairs(&mut self) -> Option<Vec<(String, String)>> {
            self.expect(b'{')?;
            let mut pairs: Vec<(String, String)> = Vec::new();
            if self.take(b'}') {
                return Some(pairs);
            }
            loop {
                let name = self.string()?;
                self.expect(b':')?;
                let value = self.string()?;
                if pairs.iter().any(|(seen, _)| *seen == name) {
                    return None;
                }
                pairs.push((name, value));
                if !self.take(b',') {
                    self.expect(b'}')?;
                    return Some(pairs);
                }
            }
        }

        /// `["<ns>", "line"]` or `["<ns>", "line", {metadata}]`.
        fn entry(&mut self) -> Option<LogEntry> {
            self.expect(b'[')?;
            let timestamp_ns = self.timestamp()?;
            self.expect(b',')?;
            let line = self.string()?;
            let structured_metadata = if self.take(b',') {
                self.string_pairs()?.into_iter().map(|(name, value)| Label { name, value }).collect()
            } else {
                Vec::new()
            };
            self.expect(b']')?;
            Some(LogEntry { timestamp_ns, line, structured_metadata })
        }

        /// A string of an integer as `i64::from_str` reads it, or a JSON integer without fraction or exponent.
        fn timestamp(&mut self) -> Option<i64> {
            self.whitespace();
            let start = self.position;
            if self.bytes.get(start) == Some(&b'"') {
                // A string with an escape, a control byte or invalid UTF-8 in it is no integer once unescaped
                // either, so the digits are read from the body without unescaping into a `String`.
                let digits_start = start + 1;
                let end = next_quote_backslash_or_control(self.bytes, digits_start)?;
                if self.bytes.get(end) != Some(&b'"') {
                    return None;
                }
                self.position = end + 1;
                return parse_i64(self.bytes.get(digits_start..end)?);
            }
            // Negative timestamps (and `-0`) are left to serde.
            let digits_start = start;
            let mut end = digits_start;
            while self.bytes.get(end).is_some_and(u8::is_ascii_digit) {
                end += 1;
            }
            let digits = self.bytes.get(digits_start..end)?;
            // JSON has no leading zeros, fractions or exponents here: leave those to serde.
            if digits.is_empty() || (digits.len() > 1 && digits[0] == b'0') {
                return None;
            }
            if matches!(self.bytes.get(end), Some(b'.' | b'e' | b'E')) {
                return None;
            }
            self.position = end;
            parse_i64(digits)
        }

        /// A JSON string, unescaped; `None` at a `\u` escape, a control character, invalid UTF-8 or the end
        /// of the body. A string without escapes is checked and copied straight from the body; any other is
        /// found and unescaped in one pass ([`unescape_into`]) into the scratch buffer, then checked and copied
        /// out. The check is one SIMD pass per string (`simdutf8`), and the `String` is allocated once, at its
        /// final size.
        fn string(&mut self) -> Option<String> {
            self.expect(b'"')?;
            let start = self.position;
            let first = next_quote_backslash_or_control(self.bytes, start)?;
            if *self.bytes.get(first)? == b'"' {
                self.position = first + 1;
                return simdutf8::basic::from_utf8(self.bytes.get(start..first)?).ok().map(str::to_owned);
            }
            let (end, length) = unescape_into(self.bytes, start, first, &mut self.scratch)?;
            self.position = end + 1;
            // Escapes only put ASCII bytes in, so the unescaped bytes are UTF-8 exactly when the raw ones are.
            simdutf8::basic::from_utf8(self.scratch.get(..length)?).ok().map(str::to_owned)
        }

        /// The string decoder before the one-pass [`Parser::string`] (measure, then copy, then check UTF-8 with
        /// `std`), kept as the oracle of its differential test.
        #[cfg(test)]
        fn string_oracle(&mut self) -> Option<String> {
            self.expect(b'"')?;
            let start = self.position;
            let mut end = start;
            let mut escapes = 0usize;
            loop {
                end = next_quote_backslash_or_control(self.bytes, end)?;
                match *self.bytes.get(end)? {
                    b'"' => break,
                    b'\\' => {
                        escapes += 1;
                        end += 2;
                    }
                    _ => return None,
                }
            }
            let raw = self.bytes.get(start..end)?;
            self.position = end + 1;
            if escapes == 0 {
                return std::str::from_utf8(raw).ok().map(str::to_owned);
            }
            // Eight bytes are copied at a time and the copy cut back at a backslash: escapes come every few
            // bytes in JSON lines, where a copy call per run between them costs more than the bytes. The
            // buffer has 8 bytes to spare for the last word's copy.
            let mut out = vec![0u8; raw.len() - escapes + 8];
            let mut length = 0usize;
            let mut position = 0usize;
            while position < raw.len() {
                if let Some(eight) = raw.get(position..position + 8) {
                    let mut word_bytes = [0u8; 8];
                    word_bytes.copy_from_slice(eight);
                    let word = u64::from_le_bytes(word_bytes);
                    let difference = word ^ (LOW_ONES * u64::from(b'\\'));
                    let backslashes = difference.wrapping_sub(LOW_ONES) & !difference & HIGH_BITS;
                    out.get_mut(length..length + 8)?.copy_from_slice(&word_bytes);
                    if backslashes == 0 {
                        position += 8;
                        length += 8;
                        continue;
                    }
                    let plain = (backslashes.trailing_zeros() / 8) as usize;
                    position += plain;
                    length += plain;
                } else if raw.get(position) != Some(&b'\\') {
                    *out.get_mut(length)? = *raw.get(position)?;
                    position += 1;
                    length += 1;
                    continue;
                }
                *out.get_mut(length)? = match *raw.get(position + 1)? {
                    b'"' => b'"',
                    b'\\' => b'\\',
                    b'/' => b'/',
                    b'b' => 0x08,
                    b'f' => 0x0c,
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    _ => return None,
                };
                length += 1;
                position += 2;
            }
            out.truncate(length);
            String::from_utf8(out).ok()
        }
    }

    #[cfg(test)]
    #[allow(clippy::unwrap_used)]
    mod tests {
        use super::Parser;
        use proptest::prelude::*;

        /// A value read, and where the parser stopped after it.
        type Read<T> = Option<(T, usize)>;

        /// What the one-pass decoder and the old one make of `body` read as a string: the string, and where
        /// the parser stops after it.
        fn both(body: &[u8]) -> (Read<String>, Read<String>) {
            let mut new = Parser { bytes: body, position: 0, scratch: Vec::new() };
            let mut old = Parser { bytes: body, position: 0, scratch: Vec::new() };
            let new_string = new.string().map(|string| (string, new.position));
            let old_string = old.string_oracle().map(|string| (string, old.position));
            (new_string, old_string)
        }

        /// What the timestamp reader makes of `body`, and what the old one (unescape into a `String`, then
        /// `i64::from_str`) made of it.
        fn both_timestamps(body: &[u8]) -> (Read<i64>, Read<i64>) {
            let mut new = Parser { bytes: body, position: 0, scratch: Vec::new() };
            let mut old = Parser { bytes: body, position: 0, scratch: Vec::new() };
            let new_timestamp = new.timestamp().map(|timestamp| (timestamp, new.position));
            let old_timestamp = old
                .string_oracle()
                .and_then(|text| text.parse::<i64>().ok())
                .map(|timestamp| (timestamp, old.position));
            (new_timestamp, old_timestamp)
        }

        /// Pieces of strings the plain decoder takes: plain text, every two-character escape (`\"` the most, as
        /// in JSON lines) and UTF-8 of every length.
        const TAKEN_PIECES: &[&[u8]] = &[
            b"a",
            b"event",
            b": ",
            b"#",
            b"]",
            b"\\\"",
            b"\\\"",
            b"\\\"",
            b"\\\\",
            b"\\/",
            b"\\b",
            b"\\f",
            b"\\n",
            b"\\r",
            b"\\t",
            b"\x7f",
            b"\xc3\xa9",
            b"\xe2\x82\xac",
            b"\xf0\x9f\x98\x80",
            b"{\\\"level\\\": \\\"info\\\", ",
        ];

        /// Pieces it leaves to serde or refuses: escapes serde reads (`\u`, surrogate pairs, lone surrogates),
        /// unknown escapes, raw control bytes, invalid UTF-8 (stray continuation, overlong, encoded surrogate,
        /// cut sequences), digits and signs for timestamps, and quotes that end the string early.
        const OTHER_PIECES: &[&[u8]] = &[
            b" ",
            b"0",
            b"7",
            b"1700000000000000001",
            b"+",
            b"-",
            b"\\u0041",
            b"\\u00e9",
            b"\\ud83d\\ude00",
            b"\\ud83d",
            b"\\ude00",
            b"\\x",
            b"\\'",
            b"\\",
            b"\\U0041",
            b"\x00",
            b"\x01",
            b"\x09",
            b"\x0a",
            b"\x1f",
            b"\xff",
            b"\x80",
            b"\xc3",
            b"\xe2\x82",
            b"\xf0\x9f\x98",
            b"\xc0\x80",
            b"\xed\xa0\x80",
            b"\xf4\x90\x80\x80",
            b"\"",
        ];

        /// Bodies of any string pieces, closed or not, with a little text after.
        fn any_string_body() -> impl Strategy<Value = Vec<u8>> {
            let piece = prop_oneof![
                2 => proptest::sample::select(TAKEN_PIECES).prop_map(<[u8]>::to_vec),
                2 => proptest::sample::select(OTHER_PIECES).prop_map(<[u8]>::to_vec),
                1 => any::<u8>().prop_map(|byte| vec![byte]),
                1 => "[ -~]{0,20}".prop_map(String::into_bytes),
            ];
            (proptest::collection::vec(piece, 0..40), any::<bool>(), "[ -~]{0,3}").prop_map(
                |(pieces, closed, after)| {
                    let mut body = vec![b'"'];
                    pieces.iter().for_each(|piece| body.extend_from_slice(piece));
                    if closed {
                        body.push(b'"');
                    }
                    body.extend_from_slice(after.as_bytes());
                    body
                },
            )
        }

        /// Bodies of strings the plain decoder takes: text, the two-character escapes and UTF-8, closed.
        fn any_taken_string_body() -> impl Strategy<Value = Vec<u8>> {
            let piece = prop_oneof![
                proptest::sample::select(TAKEN_PIECES).prop_map(<[u8]>::to_vec),
                "[ -!#-\\[\\]-~]{0,12}".prop_map(String::into_bytes),
            ];
            proptest::collection::vec(piece, 0..60).prop_map(|pieces| {
                let mut body = vec![b'"'];
                pieces.iter().for_each(|piece| body.extend_from_slice(piece));
                body.extend_from_slice(b"\",");
                body
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(4096))]

            #[test]
            fn taken_strings_decode_as_before(body in any_taken_string_body()) {
                let (new, old) = both(&body);
                prop_assert!(new.is_some(), "{:?}", String::from_utf8_lossy(&body));
                prop_assert_eq!(new, old, "{:?}", String::from_utf8_lossy(&body));
            }

            #[test]
            fn the_one_pass_string_decoder_agrees_with_the_old_one(body in any_string_body()) {
                let (new, old) = both(&body);
                prop_assert_eq!(new, old, "{:?}", String::from_utf8_lossy(&body));
            }

            #[test]
            fn timestamps_read_without_unescaping_agree_with_the_old_reader(body in any_string_body()) {
                let (new, old) = both_timestamps(&body);
                prop_assert_eq!(new, old, "{:?}", String::from_utf8_lossy(&body));
            }
        }

        /// Every string of one or two bytes, after 0 to 9 plain bytes (so the bytes fall at every place of the
        /// eight-byte words and of the byte-at-a-time tail), closed or not, followed by more text or not.
        #[test]
        fn every_short_string_decodes_as_before() {
            for padding in 0..10 {
                for first in 0..=255u8 {
                    for second in (0..=255u8).map(Some).chain([None]) {
                        for ending in [&b"\""[..], b"", b"\"x\"", b"\\\"\"", b"\"0123456789abcdef"] {
                            let mut body = vec![b'"'];
                            body.extend(std::iter::repeat_n(b'p', padding));
                            body.push(first);
                            body.extend(second);
                            body.extend_from_slice(ending);
                            let (new, old) = both(&body);
                            assert_eq!(new, old, "{body:?}");
                        }
                    }
                }
            }
        }

        #[test]
        fn timestamp_strings_read_as_before() {
            let bodies: [&[u8]; 12] = [
                b"\"1700000000000000001\"",
                b"\"+5\",",
                b"\"-0\"",
                b"\"-9223372036854775808\"",
                b"\"9223372036854775808\"",
                b"\"1\\n\"",
                b"\"1\\u0030\"",
                b"\"\\\"12\"",
                b"\"12",
                b"\"\"",
                b"\"1 2\"",
                b"\"\xef\xbc\x91\"",
            ];
            for body in bodies {
                let (new, old) = both_timestamps(body);
                assert_eq!(new, old, "{:?}", String::from_utf8_lossy(body));
            }
            assert_eq!(both_timestamps(b"\"+5\",").0, Some((5, 4)));
        }

        #[test]
        fn integers_read_as_from_str_reads_them() {
            let texts = [
                "0",
                "7",
                "007",
                "1700000000000000001",
                "9223372036854775807",
                "9223372036854775808",
                "9999999999999999999",
                "10000000000000000000",
                "00000000000000000001",
                "+5",
                "-5",
                "-0",
                "-9223372036854775808",
                "-9223372036854775809",
                "",
                "+",
                "-",
                "1a",
                " 1",
                "1.0",
                "\u{661}",
            ];
            for text in texts {
                assert_eq!(super::parse_i64(text.as_bytes()), text.parse::<i64>().ok(), "{text:?}");
            }
        }

        proptest! {
            #[test]
            fn integers_of_any_digits_read_as_from_str_reads_them(text in "[-+]?[0-9]{0,21}") {
                prop_assert_eq!(super::parse_i64(text.as_bytes()), text.parse::<i64>().ok(), "{:?}", text);
            }
        }

        #[test]
        fn long_escaped_strings_grow_the_scratch_buffer_and_keep_every_byte() {
            let line = "{\\\"event\\\": \\\"request handled\\\", \\\"path\\\": \\\"/api/v1/\u{e9}\\\"}\\n".repeat(200);
            let body = format!("\"{line}\" \"short \\\"one\\\"\" \"{line}x\"");
            let mut parser = Parser { bytes: body.as_bytes(), position: 0, scratch: Vec::new() };
            let expected = "{\"event\": \"request handled\", \"path\": \"/api/v1/\u{e9}\"}\n".repeat(200);
            assert_eq!(parser.string().unwrap(), expected);
            assert_eq!(parser.string().unwrap(), "short \"one\"");
            assert_eq!(parser.string().unwrap(), format!("{expected}x"));
            assert_eq!(parser.position, body.len());
        }
    }
}

/// Typed serde targets for a push body, so the happy path builds no `serde_json::Value` tree. They accept
/// exactly what [`decode_push_json_tree`] accepts: timestamps as strings or integers of nanoseconds, 2 or 3
/// elements per entry, string-valued label and metadata maps (a repeated key keeps its first position and its
/// last value, as the tree's ordered map does).
mod typed {
    use std::fmt;

    use oxeye_model::Label;
    use oxeye_model::logs::LogEntry;
    use serde::Deserialize;
    use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

    #[derive(Deserialize)]
    pub(super) struct Body {
        pub(super) streams: Vec<Stream>,
    }

    #[derive(Deserialize)]
    pub(super) struct Stream {
        pub(super) stream: StringPairs,
        pub(super) values: Vec<Entry>,
    }

    /// A JSON object of string values, in order.
    pub(super) struct StringPairs(pub(super) Vec<(String, String)>);

    impl<'de> Deserialize<'de> for StringPairs {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct PairsVisitor;
            impl<'de> Visitor<'de> for PairsVisitor {
                type Value = StringPairs;
                fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                    formatter.write_str("an object of strings")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StringPairs, A::Error> {
                    let mut pairs: Vec<(String, String)> = Vec::with_capacity(map.size_hint().unwrap_or(4));
                    while let Some((name, value)) = map.next_entry::<String, String>()? {
                        match pairs.iter_mut().find(|(seen, _)| *seen == name) {
                            Some(pair) => pair.1 = value,
                            None => pairs.push((name, value)),
                        }
                    }
                    Ok(StringPairs(pairs))
                }
            }
            deserializer.deserialize_map(PairsVisitor)
        }
    }

    /// `["<ns>", "line"]` or `["<ns>", "line", {metadata}]`.
    pub(super) struct Entry(pub(super) LogEntry);

    struct Timestamp(i64);

    impl<'de> Deserialize<'de> for Timestamp {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct TimestampVisitor;
            impl Visitor<'_> for TimestampVisitor {
                type Value = Timestamp;
                fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                    formatter.write_str("an integer of nanoseconds")
                }
                fn visit_str<E: de::Error>(self, text: &str) -> Result<Timestamp, E> {
                    text.parse().map(Timestamp).map_err(|_| E::custom("timestamp"))
                }
                fn visit_i64<E: de::Error>(self, value: i64) -> Result<Timestamp, E> {
                    Ok(Timestamp(value))
                }
                fn visit_u64<E: de::Error>(self, value: u64) -> Result<Timestamp, E> {
                    i64::try_from(value).map(Timestamp).map_err(|_| E::custom("timestamp"))
                }
            }
            deserializer.deserialize_any(TimestampVisitor)
        }
    }

    impl<'de> Deserialize<'de> for Entry {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct EntryVisitor;
            impl<'de> Visitor<'de> for EntryVisitor {
                type Value = Entry;
                fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                    formatter.write_str("an entry array")
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Entry, A::Error> {
                    let missing = || de::Error::custom("entry has fewer than 2 elements");
                    let Timestamp(timestamp_ns) = items.next_element()?.ok_or_else(missing)?;
                    let line: String = items.next_element()?.ok_or_else(missing)?;
                    let structured_metadata = match items.next_element::<StringPairs>()? {
                        None => Vec::new(),
                        Some(pairs) => pairs.0.into_iter().map(|(name, value)| Label { name, value }).collect(),
                    };
                    if items.next_element::<IgnoredAny>()?.is_some() {
                        return Err(de::Error::custom("entry has more than 3 elements"));
                    }
                    Ok(Entry(LogEntry { timestamp_ns, line, structured_metadata }))
                }
            }
            deserializer.deserialize_seq(EntryVisitor)
        }
    }
}

/// The tree decoder behind [`decode_push_json`]: slower, names the path of the first bad value.
fn decode_push_json_tree(body: &[u8]) -> Result<Vec<LogStream>, IngestError> {
    use serde_json::Value;
    let mut root: Value = serde_json::from_slice(body).map_err(|error| json_error("$".into(), error.to_string()))?;
    let Some(Value::Array(streams)) = root.get_mut("streams").map(Value::take) else {
        return Err(json_error("streams".into(), "missing or not an array"));
    };
    let mut result = Vec::with_capacity(streams.len());
    // Lines and metadata are moved out of the parsed tree, and error paths are formatted only on error:
    // this runs once per pushed line.
    for (stream_index, mut stream) in streams.into_iter().enumerate() {
        let path = || format!("streams[{stream_index}]");
        let Some(labels_object) = stream.get("stream").and_then(Value::as_object) else {
            return Err(json_error(format!("{}.stream", path()), "missing or not an object"));
        };
        let mut pairs = Vec::with_capacity(labels_object.len());
        for (name, value) in labels_object {
            let Some(value) = value.as_str() else {
                return Err(json_error(format!("{}.stream.{name}", path()), "label value is not a string"));
            };
            pairs.push((name.clone(), value.to_string()));
        }
        let labels = Labels::from_pairs(pairs);
        let Some(Value::Array(values)) = stream.get_mut("values").map(Value::take) else {
            return Err(json_error(format!("{}.values", path()), "missing or not an array"));
        };
        let mut entries = Vec::with_capacity(values.len());
        for (entry_index, value) in values.into_iter().enumerate() {
            let entry_path = || format!("{}.values[{entry_index}]", path());
            let Value::Array(items) = value else {
                return Err(json_error(entry_path(), "entry is not an array"));
            };
            if items.len() < 2 || items.len() > 3 {
                return Err(json_error(entry_path(), format!("entry has {} elements (expected 2 or 3)", items.len())));
            }
            let mut items = items.into_iter();
            let timestamp_ns = match items.next() {
                Some(Value::String(text)) => text.parse::<i64>().ok(),
                Some(Value::Number(number)) => number.as_i64(),
                _ => None,
            };
            let Some(timestamp_ns) = timestamp_ns else {
                return Err(json_error(format!("{}[0]", entry_path()), "timestamp is not an integer of nanoseconds"));
            };
            let Some(Value::String(line)) = items.next() else {
                return Err(json_error(format!("{}[1]", entry_path()), "line is not a string"));
            };
            let mut structured_metadata = Vec::new();
            if let Some(metadata) = items.next() {
                let Value::Object(metadata) = metadata else {
                    return Err(json_error(format!("{}[2]", entry_path()), "structured metadata is not an object"));
                };
                structured_metadata.reserve(metadata.len());
                for (name, value) in metadata {
                    let Value::String(value) = value else {
                        return Err(json_error(
                            format!("{}[2].{name}", entry_path()),
                            "structured metadata value is not a string",
                        ));
                    };
                    structured_metadata.push(Label { name, value });
                }
            }
            entries.push(LogEntry { timestamp_ns, line, structured_metadata });
        }
        result.push(LogStream { labels, entries });
    }
    Ok(result)
}

/// Decodes a protobuf push body: snappy block, then `PushRequest`.
///
/// # Errors
/// [`IngestError::Snappy`], [`IngestError::TooLarge`], [`IngestError::Protobuf`] (field `PushRequest`),
/// [`IngestError::Json`]-free: a stream's label text that does not parse is [`IngestError::Protobuf`]
/// naming `streams[i].labels`.
pub fn decode_push_protobuf(body: &[u8], max_decoded_bytes: usize) -> Result<Vec<LogStream>, IngestError> {
    let decoded = crate::compression::decode_snappy(body, max_decoded_bytes)?;
    let request = PushRequest::decode(decoded.as_slice())
        .map_err(|error| IngestError::Protobuf { field: "PushRequest".into(), reason: error.to_string() })?;
    let mut result = Vec::with_capacity(request.streams.len());
    for (index, stream) in request.streams.into_iter().enumerate() {
        let labels = parse_label_text(&stream.labels)
            .map_err(|reason| IngestError::Protobuf { field: format!("streams[{index}].labels"), reason })?;
        let entries = stream
            .entries
            .into_iter()
            .map(|entry| {
                let timestamp = entry.timestamp.unwrap_or_default();
                LogEntry {
                    timestamp_ns: timestamp
                        .seconds
                        .saturating_mul(1_000_000_000)
                        .saturating_add(i64::from(timestamp.nanos)),
                    line: entry.line,
                    structured_metadata: entry
                        .structured_metadata
                        .into_iter()
                        .map(|pair| Label { name: pair.name, value: pair.value })
                        .collect(),
                }
            })
            .collect();
        result.push(LogStream { labels, entries });
    }
    Ok(result)
}

/// Parses label selector text `{a="b", c="d"}` (Go-quoted values) into labels.
///
/// # Errors
/// A message with the byte offset of the problem.
pub fn parse_label_text(text: &str) -> Result<Labels, String> {
    let trimmed = text.trim();
    let inner = trimmed
        .strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
        .ok_or_else(|| format!("labels {text:?} are not enclosed in braces"))?;
    let characters: Vec<char> = inner.chars().collect();
    let mut position = 0;
    let mut pairs = Vec::new();
    let skip_space = |position: &mut usize| {
        while *position < characters.len() && characters[*position].is_whitespace() {
            *position += 1;
        }
    };
    loop {
        skip_space(&mut position);
        if position >= characters.len() {
            break;
        }
        let start = position;
        while position < characters.len()
            && (characters[position].is_alphanumeric() || matches!(characters[position], '_' | '.' | ':'))
        {
            position += 1;
        }
        let name: String = characters[start..position].iter().collect();
        if name.is_empty() {
            return Err(format!("expected a label name at position {start} of {text:?}"));
        }
        skip_space(&mut position);
        if characters.get(position) != Some(&'=') {
            return Err(format!("expected '=' at position {position} of {text:?}"));
        }
        position += 1;
        skip_space(&mut position);
        if characters.get(position) != Some(&'"') {
            return Err(format!("expected a quoted value at position {position} of {text:?}"));
        }
        position += 1;
        let mut value = String::new();
        loop {
            match characters.get(position) {
                None => return Err(format!("unterminated value in {text:?}")),
                Some('"') => {
                    position += 1;
                    break;
                }
                Some('\\') => {
                    position += 1;
                    match characters.get(position) {
                        Some('n') => value.push('\n'),
                        Some('t') => value.push('\t'),
                        Some(other) => value.push(*other),
                        None => return Err(format!("unterminated escape in {text:?}")),
                    }
                    position += 1;
                }
                Some(other) => {
                    value.push(*other);
                    position += 1;
                }
            }
        }
        pairs.push((name, value));
        skip_space(&mut position);
        match characters.get(position) {
            Some(',') => position += 1,
            None => break,
            Some(other) => return Err(format!("unexpected {other:?} at position {position} of {text:?}")),
        }
    }
    Ok(Labels::from_pairs(pairs))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use oxeye_proto::loki::{EntryAdapter, LabelPairAdapter, StreamAdapter, Timestamp};

    fn captures_dir() -> std::path::PathBuf {
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/conformance/captures")).to_path_buf()
    }

    #[test]
    fn json_with_structured_metadata() {
        let body = br#"{"streams":[{"stream":{"job":"x"},"values":[["1700000000000000001","a"],["1700000000000000002","b",{"trace_id":"abc"}]]}]}"#;
        let streams = decode_push_json(body).unwrap();
        assert_eq!(streams[0].labels, Labels::from_pairs([("job", "x")]));
        assert_eq!(streams[0].entries[0].timestamp_ns, 1_700_000_000_000_000_001);
        assert_eq!(streams[0].entries[1].metadata("trace_id"), Some("abc"));
    }

    #[test]
    fn typed_and_tree_decoders_agree() {
        let bodies: [&[u8]; 4] = [
            br#"{"streams":[{"values":[[1,"a"],["2","b",{"k":"1","j":"2","k":"3"}]],"stream":{"job":"x","a":"b"}}],"x":1}"#,
            br#"{"streams":[{"stream":{"job":"x"},"values":[]},{"stream":{},"values":[["3","c",{}]]}]}"#,
            br#"{"streams":[]}"#,
            br#"{"streams":[{"stream":{"job":"x"},"values":[["9223372036854775807","\u00e9\n"]]}]}"#,
        ];
        for body in bodies {
            let typed = decode_push_json(body).unwrap();
            assert_eq!(typed, decode_push_json_tree(body).unwrap(), "{}", String::from_utf8_lossy(body));
        }
        let refused: [&[u8]; 4] = [
            br#"{"streams":[{"stream":{"job":"x"},"values":[["1","a",{},"extra"]]}]}"#,
            br#"{"streams":[{"stream":{"job":"x"},"values":[["1"]]}]}"#,
            br#"{"streams":[{"stream":{"job":"x"},"values":[["9223372036854775808","a"]]}]}"#,
            br#"{"streams":[{"stream":{"job":"x"},"values":[["1","a",{"k":1}]]}]}"#,
        ];
        for body in refused {
            assert!(serde_json::from_slice::<typed::Body>(body).is_err());
            assert!(decode_push_json(body).is_err());
        }
    }

    /// What the serde decoders make of `body` (the plain decoder must return the same or nothing).
    fn by_serde(body: &[u8]) -> Option<Vec<LogStream>> {
        match serde_json::from_slice::<typed::Body>(body) {
            Ok(typed) => Some(
                typed
                    .streams
                    .into_iter()
                    .map(|stream| LogStream {
                        labels: Labels::from_pairs(stream.stream.0),
                        entries: stream.values.into_iter().map(|entry| entry.0).collect(),
                    })
                    .collect(),
            ),
            Err(_) => None,
        }
    }

    #[test]
    fn the_plain_decoder_reads_the_common_shape_and_leaves_the_rest_to_serde() {
        let read: [&[u8]; 5] = [
            br#"{"streams":[{"stream":{"job":"x"},"values":[["1700000000000000001","a"],["2","b",{"trace_id":"abc"}]]}]}"#,
            br#" { "streams" : [ { "values" : [ [ 17 , "{\"k\": \"v\\\/\b\f\n\r\t\"}" ] ] , "stream" : { } } ] } "#,
            br#"{"streams":[]}"#,
            "{\"streams\":[{\"stream\":{\"j\":\"\u{e9}\"},\"values\":[[\"+5\",\"\u{fc}n\u{ef}code \u{20ac}\"]]}]}".as_bytes(),
            br#"{"streams":[{"stream":{"job":"x"},"values":[[9223372036854775807,""]]}]}"#,
        ];
        for body in read {
            let plain = plain::decode(body);
            assert!(plain.is_some(), "{}", String::from_utf8_lossy(body));
            assert_eq!(plain, by_serde(body), "{}", String::from_utf8_lossy(body));
        }
        let left_to_serde: [&[u8]; 12] = [
            br#"{"streams":[{"stream":{"job":"x"},"values":[]}],"x":1}"#,
            br#"{"streams":[{"stream":{"job":"x","job":"y"},"values":[]}]}"#,
            br#"{"streams":[{"stream":{"job":"x"},"values":[["1","a\u0041"]]}]}"#,
            br#"{"streams":[{"stream":{"job":"x"},"values":[[-1,"a"]]}]}"#,
            br#"{"streams":[{"stream":{"job":"x"},"values":[[1.0,"a"]]}]}"#,
            br#"{"streams":[{"stream":{"job":"x"},"values":[[01,"a"]]}]}"#,
            br#"{"streams":[{"stream":{"job":"x"},"values":[[9223372036854775808,"a"]]}]}"#,
            br#"{"streams":[{"stream":{"job":"x"},"values":[["1","a",{},"extra"]]}]}"#,
            br#"{"streams":[{"stream":{"job":"x"},"values":[["1","a",null]]}]}"#,
            b"{\"streams\":[{\"stream\":{\"job\":\"x\"},\"values\":[[\"1\",\"tab\there\"]]}]}",
            b"{\"streams\":[{\"stream\":{\"job\":\"x\"},\"values\":[[\"1\",\"\xff\"]]}]}",
            br#"{"streams":[{"stream":{"job":"x"},"values":[["1","a"]]}]} x"#,
        ];
        for body in left_to_serde {
            assert_eq!(plain::decode(body), None, "{}", String::from_utf8_lossy(body));
        }
    }

    proptest::proptest! {
        #[test]
        fn the_plain_decoder_agrees_with_serde(
            streams in proptest::collection::vec(
                (
                    proptest::collection::vec(("[a-z_]{1,6}", ".{0,8}"), 0..3),
                    proptest::collection::vec((any_timestamp(), ".{0,40}", proptest::option::of(("[a-z]{1,4}", ".{0,6}"))), 0..4),
                ),
                0..3,
            ),
            numeric_timestamps in proptest::bool::ANY,
        ) {
            let streams: Vec<serde_json::Value> = streams
                .into_iter()
                .map(|(labels, entries)| {
                    let labels: serde_json::Map<String, serde_json::Value> =
                        labels.into_iter().map(|(name, value)| (name, serde_json::Value::String(value))).collect();
                    let values: Vec<serde_json::Value> = entries
                        .into_iter()
                        .map(|(timestamp, line, metadata)| {
                            let timestamp = if numeric_timestamps {
                                serde_json::json!(timestamp)
                            } else {
                                serde_json::json!(timestamp.to_string())
                            };
                            match metadata {
                                Some((name, value)) => serde_json::json!([timestamp, line, {name: value}]),
                                None => serde_json::json!([timestamp, line]),
                            }
                        })
                        .collect();
                    serde_json::json!({"stream": labels, "values": values})
                })
                .collect();
            let body = serde_json::to_vec(&serde_json::json!({"streams": streams})).unwrap();
            if let Some(plain) = plain::decode(&body) {
                proptest::prop_assert_eq!(Some(plain), by_serde(&body), "{}", String::from_utf8_lossy(&body));
            }
        }
    }

    fn any_timestamp() -> impl proptest::strategy::Strategy<Value = i64> {
        proptest::prop_oneof![
            0i64..10,
            1_700_000_000_000_000_000i64..1_800_000_000_000_000_000,
            proptest::num::i64::ANY
        ]
    }

    #[test]
    fn malformed_json_names_the_field() {
        let error = decode_push_json(br#"{"streams":[{"stream":{"job":"x"},"values":[[1.5e30,"a"]]}]}"#).unwrap_err();
        assert_eq!(error.to_string(), "json: timestamp is not an integer of nanoseconds at streams[0].values[0][0]");
        assert!(decode_push_json(b"{").is_err());
        assert!(decode_push_json(br#"{"streams":[{"stream":{"a":1},"values":[]}]}"#).is_err());
    }

    #[test]
    fn protobuf_round_trip() {
        let request = PushRequest {
            streams: vec![StreamAdapter {
                labels: r#"{service_name="boxoffice", env="a\"b"}"#.into(),
                entries: vec![EntryAdapter {
                    timestamp: Some(Timestamp { seconds: 1_700_000_000, nanos: 5 }),
                    line: "hello".into(),
                    structured_metadata: vec![LabelPairAdapter { name: "trace_id".into(), value: "t".into() }],
                    parsed: vec![],
                }],
                hash: 0,
            }],
        };
        let body = snap::raw::Encoder::new().compress_vec(&request.encode_to_vec()).unwrap();
        let streams = decode_push_protobuf(&body, 1 << 20).unwrap();
        assert_eq!(streams[0].labels.get("env"), Some("a\"b"));
        assert_eq!(streams[0].entries[0].timestamp_ns, 1_700_000_000_000_000_005);
        assert_eq!(streams[0].entries[0].metadata("trace_id"), Some("t"));
        assert!(decode_push_protobuf(b"not snappy", 1 << 20).is_err());
        assert!(parse_label_text("{a=b}").is_err());
    }

    #[test]
    fn captured_python_logging_loki_bodies_decode() {
        let dir = captures_dir();
        if !dir.exists() {
            println!("skipping: {} is absent", dir.display());
            return;
        }
        for kind in ["first", "error", "login"] {
            let body = std::fs::read(dir.join(format!("loki_api_v1_push.{kind}.bin"))).unwrap();
            let streams = decode_push_json(&body).unwrap();
            assert_eq!(streams.len(), 1, "{kind}");
            assert_eq!(streams[0].labels.get("service_name"), Some("boxoffice"));
            assert_eq!(streams[0].entries.len(), 1);
            let line: serde_json::Value = serde_json::from_str(&streams[0].entries[0].line).unwrap();
            assert!(line.get("event").is_some(), "{kind}: structlog line keeps its event");
        }
    }
}
