//! Parsing with promql-parser, made to report errors as Prometheus does (`line:column: parse error: ...`)
//! and to read `\xNN` string escapes as Go does.

use promql_parser::parser::{self, Expr};

use crate::error::QueryError;

/// Parses a query with promql-parser and turns its error into Prometheus' `line:column: parse error:` form.
pub(crate) fn parse_query(query: &str) -> Result<Expr, QueryError> {
    let normalized = decode_byte_escapes(query);
    parser::parse(&normalized).map_err(|message| parse_error(query, message))
}

/// Go decodes `\xNN` escapes in PromQL strings to bytes, so `"\xc3\xa9"` is `é` and `"\xff"` is an invalid
/// byte; promql-parser decodes each escape to the code point U+00NN instead. This rewrites runs of
/// non-ASCII byte escapes inside quoted strings into the characters they encode, with U+FFFD for bytes
/// that are not valid UTF-8 (label names containing it are then rejected, as Go rejects invalid UTF-8).
fn decode_byte_escapes(query: &str) -> std::borrow::Cow<'_, str> {
    if !query.contains("\\x") {
        return std::borrow::Cow::Borrowed(query);
    }
    let bytes = query.as_bytes();
    let mut output = String::with_capacity(query.len());
    let mut quote: Option<u8> = None;
    let mut index = 0;
    let hex_byte = |at: usize| -> Option<u8> {
        if bytes.get(at) == Some(&b'\\') && bytes.get(at + 1) == Some(&b'x') {
            let digits = query.get(at + 2..at + 4)?;
            return u8::from_str_radix(digits, 16).ok();
        }
        None
    };
    while index < bytes.len() {
        let byte = bytes[index];
        match quote {
            None => {
                if byte == b'"' || byte == b'\'' || byte == b'`' {
                    quote = Some(byte);
                }
            }
            Some(b'`') => {
                if byte == b'`' {
                    quote = None;
                }
            }
            Some(active) => {
                if byte == active {
                    quote = None;
                } else if byte == b'\\' {
                    let mut decoded = Vec::new();
                    let mut cursor = index;
                    while let Some(value) = hex_byte(cursor) {
                        decoded.push(value);
                        cursor += 4;
                    }
                    if decoded.iter().any(|value| *value >= 0x80) {
                        for character in String::from_utf8_lossy(&decoded).chars() {
                            match character {
                                '\\' => output.push_str("\\\\"),
                                '"' if active == b'"' => output.push_str("\\\""),
                                '\'' if active == b'\'' => output.push_str("\\'"),
                                other if other.is_control() => output.push_str(&format!("\\u{:04x}", other as u32)),
                                other => output.push(other),
                            }
                        }
                        index = cursor;
                        continue;
                    }
                    // Any other escape: copy the backslash and the escaped character unchanged.
                    if let Some(next) = query[index + 1..].chars().next() {
                        output.push('\\');
                        output.push(next);
                        index += 1 + next.len_utf8();
                        continue;
                    }
                }
            }
        }
        let character = query[index..].chars().next().unwrap_or('\u{fffd}');
        output.push(character);
        index += character.len_utf8().max(1);
    }
    std::borrow::Cow::Owned(output)
}

fn parse_error(query: &str, message: String) -> QueryError {
    let (offset, message) = locate_parse_error(query, message);
    let before = &query[..offset.min(query.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map(|newline| newline + 1).unwrap_or(0) + 1;
    QueryError::Parse { line, column, message }
}

/// promql-parser reports no positions, where Prometheus points at the offending token. This finds the
/// byte offset Prometheus would report for the messages whose token can be found again in the text,
/// and rewords the parser's generic "invalid promql query" when the input simply ends too early.
fn locate_parse_error(query: &str, message: String) -> (usize, String) {
    let end_of_input = query.trim_end().len();
    if message.contains("end of input") {
        return (end_of_input, message);
    }
    if message == "invalid promql query" {
        // A grammar error: find the token the query goes wrong at, as Prometheus' parser reports it.
        return crate::parse_position::locate_unexpected_token(query).unwrap_or((0, message));
    }
    let offset = if message.starts_with("unterminated quoted string") {
        unterminated_quote(query)
    } else if message.starts_with("unclosed left parenthesis") {
        unmatched_open(query, '(', ')')
    } else if message.starts_with("unexpected right brace") {
        query.find('}')
    } else if message.starts_with("unexpected right parenthesis") {
        query.find(')')
    } else if let Some(token) = message.strip_prefix("bad number or duration syntax: ") {
        query.find(token.trim())
    } else if let Some(rest) = message.strip_prefix("unknown function with name '") {
        rest.strip_suffix('\'').and_then(|name| query.find(name))
    } else {
        None
    };
    (offset.unwrap_or(0), message)
}

/// Where the string that is still open at the end of `query` starts.
fn unterminated_quote(query: &str) -> Option<usize> {
    let mut open: Option<(usize, char)> = None;
    let mut escaped = false;
    for (offset, character) in query.char_indices() {
        match open {
            Some((_, quote)) => {
                if escaped {
                    escaped = false;
                } else if character == '\\' && quote != '`' {
                    escaped = true;
                } else if character == quote {
                    open = None;
                }
            }
            None if matches!(character, '"' | '\'' | '`') => open = Some((offset, character)),
            None => {}
        }
    }
    open.map(|(offset, _)| offset)
}

/// The innermost `open` character left unmatched at the end of `query` (outside strings).
fn unmatched_open(query: &str, open: char, close: char) -> Option<usize> {
    let mut stack = Vec::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (offset, character) in query.char_indices() {
        if let Some(active) = quote {
            if escaped {
                escaped = false;
            } else if character == '\\' && active != '`' {
                escaped = true;
            } else if character == active {
                quote = None;
            }
            continue;
        }
        if matches!(character, '"' | '\'' | '`') {
            quote = Some(character);
        } else if character == open {
            stack.push(offset);
        } else if character == close {
            stack.pop();
        }
    }
    stack.last().copied()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn grammar_errors_point_at_the_offending_token() {
        let cases = [
            ("foo bar", "1:5: parse error: unexpected identifier \"bar\""),
            ("rate(foo[5m]) by (a)", "1:15: parse error: unexpected <by>"),
            ("sum(foo) without", "1:17: parse error: unexpected end of input"),
            ("foo{a=\"b\",,c=\"d\"}", "1:11: parse error: unexpected \",\""),
            ("up\n  + on(job) foo bar", "2:17: parse error: unexpected identifier \"bar\""),
            ("foo +", "1:6: parse error: unexpected end of input"),
        ];
        for (query, expected) in cases {
            assert_eq!(parse_query(query).unwrap_err().to_string(), expected, "{query}");
        }
    }

    #[test]
    fn byte_escapes_decode_as_go_does() {
        assert_eq!(decode_byte_escapes(r#"foo{a="\xc3\xa9"}"#), "foo{a=\"é\"}");
        assert_eq!(decode_byte_escapes(r#"x("\xff", '\x41')"#), "x(\"\u{fffd}\", '\\x41')");
        assert_eq!(decode_byte_escapes(r#"a{b="\\x\n"}"#), r#"a{b="\\x\n"}"#);
        assert_eq!(decode_byte_escapes("`\\xff`"), "`\\xff`");
    }
}
