//! Finding where a query stops being PromQL, for parse errors that promql-parser reports without a
//! position (its grammar errors all read "invalid promql query").
//!
//! A small lexer splits the query into tokens with byte offsets (the token kinds of Prometheus'
//! `promql/parser/lex.go`). The offending token is the first one after which the text can no longer be
//! completed into a query: each prefix is tried with a few completions (an operand, a duration, a
//! matcher value, a grouping list...) followed by the closing brackets still open, and is viable when
//! promql-parser gets past its grammar on one of them (a type error later still counts as viable). The
//! message then names the token as Prometheus' parser does: `unexpected identifier "bar"`,
//! `unexpected <by>`, `unexpected <op:+>`, `unexpected "("`, or `unexpected end of input`.

use promql_parser::parser;

/// The most tokens a query may have for the search (each prefix costs a few parses).
const MAX_TOKENS: usize = 400;

/// What a lexed token is, in the terms of Prometheus' `ItemType.desc()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenKind {
    Identifier,
    MetricIdentifier,
    Number,
    Duration,
    String,
    /// `by`, `offset`, `bool`, ...: described as `<by>`.
    Keyword,
    /// Arithmetic, comparison and set operators: described as `<op:+>`.
    Operator,
    /// `sum`, `topk`, ...: described as `<aggr:sum>`.
    Aggregator,
    /// `(`, `)`, `{`, `}`, `[`, `]`, `,`, `:`, `@`: described as `"("`.
    Punctuation,
}

#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    kind: TokenKind,
    text: &'a str,
    start: usize,
    end: usize,
}

impl Token<'_> {
    /// Prometheus' `Item.desc()`.
    fn describe(&self) -> String {
        match self.kind {
            TokenKind::Identifier => format!("identifier {:?}", self.text),
            TokenKind::MetricIdentifier => format!("metric identifier {:?}", self.text),
            TokenKind::Number => format!("number {:?}", self.text),
            TokenKind::Duration => format!("duration {:?}", self.text),
            TokenKind::String => format!("string {:?}", self.text),
            TokenKind::Keyword => format!("<{}>", self.text.to_ascii_lowercase()),
            TokenKind::Operator => format!("<op:{}>", self.text.to_ascii_lowercase()),
            TokenKind::Aggregator => format!("<aggr:{}>", self.text.to_ascii_lowercase()),
            TokenKind::Punctuation => format!("{:?}", self.text),
        }
    }
}

const KEYWORDS: &[&str] = &["offset", "by", "without", "on", "ignoring", "group_left", "group_right", "bool"];
const WORD_OPERATORS: &[&str] = &["and", "or", "unless", "atan2"];
const AGGREGATORS: &[&str] = &[
    "sum",
    "avg",
    "count",
    "min",
    "max",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "count_values",
    "quantile",
    "limitk",
    "limit_ratio",
];
const SYMBOL_OPERATORS: &[&str] = &["==", "!=", ">=", "<=", "=~", "!~", "+", "-", "*", "/", "%", "^", "=", "<", ">"];

/// Splits `query` into tokens; `None` when it holds something the lexer cannot read (promql-parser's
/// own lexer messages cover those).
fn lex(query: &str) -> Option<Vec<Token<'_>>> {
    let bytes = query.as_bytes();
    let mut tokens = Vec::new();
    let mut index = 0usize;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte.is_ascii_whitespace() {
            index += 1;
            continue;
        }
        if byte == b'#' {
            while index < bytes.len() && bytes[index] != b'\n' {
                index += 1;
            }
            continue;
        }
        let start = index;
        let kind = if byte == b'"' || byte == b'\'' || byte == b'`' {
            index += 1;
            loop {
                let current = *bytes.get(index)?;
                index += 1;
                if current == b'\\' && byte != b'`' {
                    index += 1;
                } else if current == byte {
                    break;
                }
            }
            TokenKind::String
        } else if byte.is_ascii_digit() || (byte == b'.' && bytes.get(index + 1).is_some_and(u8::is_ascii_digit)) {
            let mut letters = false;
            while index < bytes.len() && (bytes[index].is_ascii_alphanumeric() || matches!(bytes[index], b'.' | b'_')) {
                // An exponent sign belongs to the number (`1e-3`).
                if matches!(bytes[index], b'e' | b'E')
                    && !query[start..index].starts_with("0x")
                    && matches!(bytes.get(index + 1), Some(b'+' | b'-'))
                {
                    index += 2;
                    continue;
                }
                letters |= bytes[index].is_ascii_alphabetic() && !matches!(bytes[index], b'e' | b'E' | b'x' | b'X');
                index += 1;
            }
            let hexadecimal = query[start..index].starts_with("0x") || query[start..index].starts_with("0X");
            if letters && !hexadecimal { TokenKind::Duration } else { TokenKind::Number }
        } else if byte.is_ascii_alphabetic() || byte == b'_' {
            while index < bytes.len() && (bytes[index].is_ascii_alphanumeric() || matches!(bytes[index], b'_' | b':')) {
                index += 1;
            }
            let word = &query[start..index];
            let lower = word.to_ascii_lowercase();
            if KEYWORDS.contains(&lower.as_str()) {
                TokenKind::Keyword
            } else if WORD_OPERATORS.contains(&lower.as_str()) {
                TokenKind::Operator
            } else if AGGREGATORS.contains(&lower.as_str()) {
                TokenKind::Aggregator
            } else if matches!(lower.as_str(), "inf" | "nan") {
                TokenKind::Number
            } else if word.contains(':') {
                TokenKind::MetricIdentifier
            } else {
                TokenKind::Identifier
            }
        } else if let Some(operator) = SYMBOL_OPERATORS.iter().find(|operator| query[index..].starts_with(**operator)) {
            index += operator.len();
            TokenKind::Operator
        } else if matches!(byte, b'(' | b')' | b'{' | b'}' | b'[' | b']' | b',' | b':' | b'@') {
            index += 1;
            TokenKind::Punctuation
        } else {
            return None;
        };
        tokens.push(Token { kind, text: &query[start..index], start, end: index });
        if tokens.len() > MAX_TOKENS {
            return None;
        }
    }
    Some(tokens)
}

/// Whether promql-parser's message is a grammar error (as opposed to a type or value error found after
/// the text parsed).
fn is_grammar_error(message: &str) -> bool {
    message == "invalid promql query"
        || message.contains("end of input")
        || message.starts_with("unclosed left")
        || message.starts_with("unexpected right")
        || message.starts_with("unexpected character")
        || message.starts_with("unexpected second colon")
}

/// The closing brackets for the brackets `prefix` leaves open, innermost first.
fn closers(prefix: &[Token<'_>]) -> Option<String> {
    let mut open = Vec::new();
    for token in prefix {
        match token.text {
            "(" | "{" | "[" if token.kind == TokenKind::Punctuation => open.push(token.text),
            ")" | "}" | "]" if token.kind == TokenKind::Punctuation => {
                let expected = match token.text {
                    ")" => "(",
                    "}" => "{",
                    _ => "[",
                };
                if open.pop() != Some(expected) {
                    return None;
                }
            }
            _ => {}
        }
    }
    Some(
        open.iter()
            .rev()
            .map(|bracket| match *bracket {
                "(" => ")",
                "{" => "}",
                _ => "]",
            })
            .collect(),
    )
}

/// Whether the text up to the end of `prefix` can still become a query.
fn is_viable(query: &str, prefix: &[Token<'_>]) -> bool {
    let Some(last) = prefix.last() else { return true };
    let Some(closing) = closers(prefix) else { return false };
    let head = &query[..last.end];
    let inside_braces = prefix.iter().rev().find_map(|token| match token.text {
        "{" if token.kind == TokenKind::Punctuation => Some(true),
        "}" if token.kind == TokenKind::Punctuation => Some(false),
        _ => None,
    }) == Some(true);
    let completions: &[&str] = if inside_braces {
        &["", "=\"\"", "\"\"", " a=\"\"", "a"]
    } else {
        &["", " x", " 1", " 5m", " 5m]", " (x)", " (x) (x)", "(x)", "(1, x)", " x]", " 5m:1m]", " 5m) (x)"]
    };
    // A grouping list closed by `closing` still needs its aggregated expression: ` (x)` after it.
    completions.iter().any(|completion| {
        ["", " (x)"].iter().any(|tail| {
            let candidate = format!("{head}{completion}{closing}{tail}");
            match parser::parse(&candidate) {
                Ok(_) => true,
                Err(message) => !is_grammar_error(&message),
            }
        })
    })
}

/// For a grammar error without a position: the byte offset of the offending token and Prometheus'
/// wording for it. `None` when the query cannot be lexed or every prefix looks viable.
pub(crate) fn locate_unexpected_token(query: &str) -> Option<(usize, String)> {
    let tokens = lex(query)?;
    if tokens.is_empty() {
        return None;
    }
    for end in 1..=tokens.len() {
        if !is_viable(query, &tokens[..end]) {
            let token = tokens[end - 1];
            return Some((token.start, format!("unexpected {}", token.describe())));
        }
    }
    // Every prefix can be completed: the query just ends too early.
    Some((query.trim_end().len(), "unexpected end of input".to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_prometheus_descriptions() {
        let tokens = lex("sum by (job) (rate(a:b{x=~\"y\"}[5m] offset 1h)) > bool 1e-3 and on() 0x1F").unwrap();
        let described: Vec<String> = tokens.iter().map(Token::describe).collect();
        assert_eq!(
            described,
            [
                "<aggr:sum>",
                "<by>",
                "\"(\"",
                "identifier \"job\"",
                "\")\"",
                "\"(\"",
                "identifier \"rate\"",
                "\"(\"",
                "metric identifier \"a:b\"",
                "\"{\"",
                "identifier \"x\"",
                "<op:=~>",
                "string \"\\\"y\\\"\"",
                "\"}\"",
                "\"[\"",
                "duration \"5m\"",
                "\"]\"",
                "<offset>",
                "duration \"1h\"",
                "\")\"",
                "\")\"",
                "<op:>>",
                "<bool>",
                "number \"1e-3\"",
                "<op:and>",
                "<on>",
                "\"(\"",
                "\")\"",
                "number \"0x1F\"",
            ]
        );
    }

    #[test]
    fn offending_tokens_are_found() {
        let cases = [
            ("foo bar", 4, "unexpected identifier \"bar\""),
            ("sum by (a) rate(foo[5m])", 11, "unexpected identifier \"rate\""),
            ("rate(foo[5m]) by (a)", 14, "unexpected <by>"),
            ("3 ^^ 2", 3, "unexpected <op:^>"),
            ("foo{a=\"b\",,c=\"d\"}", 10, "unexpected \",\""),
            ("foo @ bar", 6, "unexpected identifier \"bar\""),
            ("foo +", 5, "unexpected end of input"),
            ("sum(foo) without", 16, "unexpected end of input"),
            ("max(foo) + on(a) group_left(b) group_left(c) bar", 31, "unexpected <group_left>"),
        ];
        for (query, offset, message) in cases {
            assert_eq!(locate_unexpected_token(query), Some((offset, message.to_string())), "{query}");
        }
    }
}
