//! The LogQL lexer: text into tokens with their byte offsets.

use crate::syntax::ParseError;

/// A token kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    /// An identifier or keyword (`sum`, `json`, `by`, `status_code`).
    Ident(String),
    /// A quoted string, unescaped (double quotes with Go escapes, or backticks raw).
    Str(String),
    /// A number (`5`, `0.5`, `1e3`).
    Number(f64),
    /// A number with a unit suffix (`5m`, `1h30m`, `10KB`, `1.5MiB`), as written.
    Unit(String),
    /// Punctuation or an operator, as written (`{`, `|=`, `!~`, `>=`, `|`).
    Op(&'static str),
    /// End of input.
    Eof,
}

impl Token {
    /// How the token is named in error messages.
    pub fn describe(&self) -> String {
        match self {
            Token::Ident(name) => format!("identifier {name:?}"),
            Token::Str(text) => format!("string {text:?}"),
            Token::Number(value) => format!("number {value}"),
            Token::Unit(text) => format!("{text:?}"),
            Token::Op(op) => format!("{op:?}"),
            Token::Eof => "end of input".to_string(),
        }
    }
}

/// A token and where it starts (byte offset).
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned {
    /// The token.
    pub token: Token,
    /// Byte offset of its first character.
    pub offset: usize,
}

const OPERATORS: &[&str] = &[
    "|=", "|~", "|>", "!=", "!~", "!>", "=~", "==", ">=", "<=", "{", "}", "(", ")", "[", "]", ",", "=", "|", ">", "<",
    "+", "-", "*", "/", "%", "^", "@",
];

/// Splits `input` into tokens, ending with [`Token::Eof`]. `#` starts a comment to the end of the line.
///
/// # Errors
/// [`ParseError`] at the offset of an unterminated string, a bad escape or an unexpected character.
pub fn tokenize(input: &str) -> Result<Vec<Spanned>, ParseError> {
    let bytes = input.as_bytes();
    let mut tokens = Vec::new();
    let mut position = 0;
    while position < bytes.len() {
        let byte = bytes[position];
        if byte.is_ascii_whitespace() {
            position += 1;
            continue;
        }
        if byte == b'#' {
            while position < bytes.len() && bytes[position] != b'\n' {
                position += 1;
            }
            continue;
        }
        let start = position;
        if byte == b'"' {
            let (text, end) = lex_quoted(input, position)?;
            tokens.push(Spanned { token: Token::Str(text), offset: start });
            position = end;
            continue;
        }
        if byte == b'`' {
            let Some(length) = input[position + 1..].find('`') else {
                return Err(ParseError::new(input, start, "unterminated raw string"));
            };
            tokens.push(Spanned {
                token: Token::Str(input[position + 1..position + 1 + length].to_string()),
                offset: start,
            });
            position += length + 2;
            continue;
        }
        if byte.is_ascii_digit() || (byte == b'.' && bytes.get(position + 1).is_some_and(u8::is_ascii_digit)) {
            let mut end = position;
            while end < bytes.len() && (bytes[end].is_ascii_digit() || bytes[end] == b'.') {
                end += 1;
            }
            // Exponent, but not a unit starting with e (there is none in LogQL).
            if end < bytes.len()
                && (bytes[end] == b'e' || bytes[end] == b'E')
                && bytes.get(end + 1).is_some_and(|next| next.is_ascii_digit() || *next == b'+' || *next == b'-')
            {
                end += 2;
                while end < bytes.len() && bytes[end].is_ascii_digit() {
                    end += 1;
                }
            }
            if end < bytes.len() && bytes[end].is_ascii_alphabetic() {
                // A unit: letters and further number-unit pairs (1h30m, 10KiB).
                while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'.') {
                    end += 1;
                }
                tokens.push(Spanned { token: Token::Unit(input[start..end].to_string()), offset: start });
            } else {
                let text = &input[start..end];
                let value: f64 =
                    text.parse().map_err(|_| ParseError::new(input, start, format!("invalid number {text:?}")))?;
                tokens.push(Spanned { token: Token::Number(value), offset: start });
            }
            position = end;
            continue;
        }
        if byte.is_ascii_alphabetic() || byte == b'_' {
            let mut end = position;
            while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_' || bytes[end] == b'.')
            {
                end += 1;
            }
            // `--strict` style flags are lexed by the parser from `-` tokens; identifiers never end in `.`.
            while end > start + 1 && bytes[end - 1] == b'.' {
                end -= 1;
            }
            tokens.push(Spanned { token: Token::Ident(input[start..end].to_string()), offset: start });
            position = end;
            continue;
        }
        let rest = &input[position..];
        let Some(op) = OPERATORS.iter().find(|op| rest.starts_with(**op)) else {
            let character = rest.chars().next().unwrap_or('?');
            return Err(ParseError::new(input, start, format!("unexpected character {character:?}")));
        };
        tokens.push(Spanned { token: Token::Op(op), offset: start });
        position += op.len();
    }
    tokens.push(Spanned { token: Token::Eof, offset: input.len() });
    Ok(tokens)
}

/// Reads a double-quoted string starting at `start`; returns the unescaped text and the offset after it.
fn lex_quoted(input: &str, start: usize) -> Result<(String, usize), ParseError> {
    let mut text = String::new();
    let mut characters = input[start + 1..].char_indices();
    while let Some((index, character)) = characters.next() {
        match character {
            '"' => return Ok((text, start + 1 + index + 1)),
            '\\' => {
                let Some((escape_index, escaped)) = characters.next() else { break };
                match escaped {
                    'n' => text.push('\n'),
                    't' => text.push('\t'),
                    'r' => text.push('\r'),
                    '\\' => text.push('\\'),
                    '"' => text.push('"'),
                    '\'' => text.push('\''),
                    'a' => text.push('\u{7}'),
                    'b' => text.push('\u{8}'),
                    'f' => text.push('\u{c}'),
                    'v' => text.push('\u{b}'),
                    'u' | 'x' | 'U' => {
                        let digits = match escaped {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let mut value = 0u32;
                        for _ in 0..digits {
                            let digit = characters.next().and_then(|(_, digit)| digit.to_digit(16));
                            let Some(digit) = digit else {
                                return Err(ParseError::new(input, start + 1 + escape_index, "invalid escape"));
                            };
                            value = value * 16 + digit;
                        }
                        match char::from_u32(value) {
                            Some(decoded) => text.push(decoded),
                            None => return Err(ParseError::new(input, start + 1 + escape_index, "invalid escape")),
                        }
                    }
                    other => {
                        // Go's strconv.Unquote rejects unknown escapes; regexes are commonly written with
                        // backticks, so keep the backslash for anything else to be forgiving.
                        text.push('\\');
                        text.push(other);
                    }
                }
            }
            other => text.push(other),
        }
    }
    Err(ParseError::new(input, start, "unterminated string"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(input: &str) -> Vec<Token> {
        tokenize(input).unwrap().into_iter().map(|spanned| spanned.token).collect()
    }

    #[test]
    fn selector_filters_and_units() {
        assert_eq!(
            kinds(r#"{app="a\"b"} |= `x\y` [5m] # comment"#),
            vec![
                Token::Op("{"),
                Token::Ident("app".into()),
                Token::Op("="),
                Token::Str("a\"b".into()),
                Token::Op("}"),
                Token::Op("|="),
                Token::Str("x\\y".into()),
                Token::Op("["),
                Token::Unit("5m".into()),
                Token::Op("]"),
                Token::Eof
            ]
        );
        assert_eq!(
            kinds("1.5e3 10KiB 1h30m")[..3],
            [Token::Number(1500.0), Token::Unit("10KiB".into()), Token::Unit("1h30m".into())]
        );
    }

    #[test]
    fn errors_carry_positions() {
        let error = tokenize(r#"{app="x}"#).unwrap_err();
        assert_eq!((error.line, error.column), (1, 6));
        let error = tokenize("{app=\"x\"}\n  $").unwrap_err();
        assert_eq!((error.line, error.column), (2, 3));
    }
}
