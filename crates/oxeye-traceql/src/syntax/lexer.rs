//! The TraceQL lexer: text to tokens with 1-based line and column positions.
//!
//! Attribute names run from the scope's dot to the next space or one of `{}()=~!<>&|^,` (or are quoted:
//! `span."with space"`), as in Tempo, so `span.http.status_code` is one token. A `.` followed by a digit
//! starts a number (`.5`).

use super::ast::{AttributeRef, AttributeScope};
use crate::error::TraceQlError;

/// A token's kind and payload.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Token {
    OpenBrace,
    CloseBrace,
    OpenParen,
    CloseParen,
    Comma,
    Pipe,
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Re,
    Nre,
    Descendant,
    Ancestor,
    Tilde,
    NotChild,
    NotDescendant,
    NotParent,
    NotAncestor,
    UnionChild,
    UnionDescendant,
    UnionParent,
    UnionAncestor,
    UnionSibling,
    And,
    Or,
    Not,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Caret,
    String(String),
    Int(i64),
    Float(f64),
    Duration(i64),
    /// A bare word: keyword, intrinsic, function or enum value.
    Word(String),
    /// `span:name`, `trace:rootService`...
    ScopedIntrinsic(String),
    Attribute(AttributeRef),
    End,
}

impl Token {
    /// The token's name in parse errors, as Tempo's grammar names its tokens.
    pub(crate) fn describe(&self) -> String {
        let name = match self {
            Token::OpenBrace => "OPEN_BRACE",
            Token::CloseBrace => "CLOSE_BRACE",
            Token::OpenParen => "OPEN_PARENS",
            Token::CloseParen => "CLOSE_PARENS",
            Token::Comma => "COMMA",
            Token::Pipe => "PIPE",
            Token::Eq => "EQ",
            Token::Ne => "NEQ",
            Token::Gt => "GT",
            Token::Ge => "GTE",
            Token::Lt => "LT",
            Token::Le => "LTE",
            Token::Re => "RE",
            Token::Nre => "NRE",
            Token::Descendant => "DESC",
            Token::Ancestor => "ANCE",
            Token::Tilde => "SIBL",
            Token::NotChild => "NOT_CHILD",
            Token::NotDescendant => "NOT_DESC",
            Token::NotParent => "NOT_PARENT",
            Token::NotAncestor => "NOT_ANCE",
            Token::UnionChild => "UNION_CHILD",
            Token::UnionDescendant => "UNION_DESC",
            Token::UnionParent => "UNION_PARENT",
            Token::UnionAncestor => "UNION_ANCE",
            Token::UnionSibling => "UNION_SIBL",
            Token::And => "AND",
            Token::Or => "OR",
            Token::Not => "NOT",
            Token::Plus => "ADD",
            Token::Minus => "SUB",
            Token::Star => "MUL",
            Token::Slash => "DIV",
            Token::Percent => "MOD",
            Token::Caret => "POW",
            Token::String(_) => "STRING",
            Token::Int(_) => "INTEGER",
            Token::Float(_) => "FLOAT",
            Token::Duration(_) => "DURATION",
            Token::Word(word) => return keyword_token_name(word),
            Token::ScopedIntrinsic(_) | Token::Attribute(_) => "IDENTIFIER",
            Token::End => "$end",
        };
        name.to_string()
    }
}

fn keyword_token_name(word: &str) -> String {
    const KEYWORDS: &[&str] = &[
        "true",
        "false",
        "nil",
        "ok",
        "error",
        "unset",
        "server",
        "client",
        "producer",
        "consumer",
        "internal",
        "unspecified",
        "count",
        "avg",
        "min",
        "max",
        "sum",
        "by",
        "select",
        "coalesce",
        "rate",
        "with",
    ];
    if KEYWORDS.contains(&word) || word.ends_with("_over_time") {
        word.to_ascii_uppercase()
    } else {
        "IDENTIFIER".to_string()
    }
}

/// A token with where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Spanned {
    pub token: Token,
    pub line: usize,
    pub column: usize,
}

struct Lexer<'a> {
    chars: Vec<char>,
    position: usize,
    line: usize,
    column: usize,
    _text: &'a str,
}

/// Splits `text` into tokens, ending with [`Token::End`].
///
/// Errors: [`TraceQlError::Parse`] at an unknown character, an unterminated string, a bad escape or a
/// number out of range.
pub(crate) fn tokenize(text: &str) -> Result<Vec<Spanned>, TraceQlError> {
    let mut lexer = Lexer { chars: text.chars().collect(), position: 0, line: 1, column: 1, _text: text };
    let mut tokens = Vec::new();
    loop {
        lexer.skip_whitespace();
        let (line, column) = (lexer.line, lexer.column);
        let token = lexer.next_token()?;
        let done = token == Token::End;
        tokens.push(Spanned { token, line, column });
        if done {
            return Ok(tokens);
        }
    }
}

fn is_attribute_terminator(character: char) -> bool {
    character.is_whitespace() || "{}()=~!<>&|^,\"".contains(character)
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.position).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.position + offset).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let character = self.peek()?;
        self.position += 1;
        if character == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(character)
    }

    fn error(&self, line: usize, column: usize, message: impl Into<String>) -> TraceQlError {
        TraceQlError::Parse { line, column, message: message.into() }
    }

    fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    /// Consumes `expected` if it comes next.
    fn eat(&mut self, expected: &str) -> bool {
        let matches = expected.chars().enumerate().all(|(offset, character)| self.peek_at(offset) == Some(character));
        if matches {
            for _ in expected.chars() {
                self.bump();
            }
        }
        matches
    }

    fn next_token(&mut self) -> Result<Token, TraceQlError> {
        let (line, column) = (self.line, self.column);
        let Some(character) = self.peek() else {
            return Ok(Token::End);
        };
        // Multi-character operators first, longest first.
        const OPERATORS: &[(&str, Token)] = &[
            ("&>>", Token::UnionDescendant),
            ("&<<", Token::UnionAncestor),
            ("!>>", Token::NotDescendant),
            ("!<<", Token::NotAncestor),
            ("&&", Token::And),
            ("||", Token::Or),
            ("&>", Token::UnionChild),
            ("&<", Token::UnionParent),
            ("&~", Token::UnionSibling),
            ("!>", Token::NotChild),
            ("!<", Token::NotParent),
            ("!=", Token::Ne),
            ("!~", Token::Nre),
            ("=~", Token::Re),
            (">>", Token::Descendant),
            ("<<", Token::Ancestor),
            (">=", Token::Ge),
            ("<=", Token::Le),
            ("{", Token::OpenBrace),
            ("}", Token::CloseBrace),
            ("(", Token::OpenParen),
            (")", Token::CloseParen),
            (",", Token::Comma),
            ("|", Token::Pipe),
            ("=", Token::Eq),
            (">", Token::Gt),
            ("<", Token::Lt),
            ("~", Token::Tilde),
            ("!", Token::Not),
            ("+", Token::Plus),
            ("-", Token::Minus),
            ("*", Token::Star),
            ("/", Token::Slash),
            ("%", Token::Percent),
            ("^", Token::Caret),
        ];
        if character == '"' || character == '`' {
            return self.string(line, column).map(Token::String);
        }
        if character.is_ascii_digit() || (character == '.' && self.peek_at(1).is_some_and(|c| c.is_ascii_digit())) {
            return self.number(line, column);
        }
        if character == '.' {
            self.bump();
            let name = self.attribute_name(line, column)?;
            return Ok(Token::Attribute(AttributeRef { scope: AttributeScope::Unscoped, name }));
        }
        if character.is_alphabetic() || character == '_' {
            return self.word(line, column);
        }
        for (text, token) in OPERATORS {
            if self.eat(text) {
                return Ok(token.clone());
            }
        }
        Err(self.error(line, column, format!("syntax error: unexpected character {character:?}")))
    }

    fn string(&mut self, line: usize, column: usize) -> Result<String, TraceQlError> {
        let Some(quote) = self.bump() else {
            return Err(self.error(line, column, "syntax error: unexpected $end"));
        };
        let mut text = String::new();
        loop {
            let Some(character) = self.bump() else {
                return Err(self.error(line, column, "syntax error: unterminated string"));
            };
            if character == quote {
                return Ok(text);
            }
            if character == '\\' && quote == '"' {
                let (escape_line, escape_column) = (self.line, self.column - 1);
                match self.bump() {
                    Some('"') => text.push('"'),
                    Some('\\') => text.push('\\'),
                    Some('n') => text.push('\n'),
                    Some('t') => text.push('\t'),
                    _ => return Err(self.error(escape_line, escape_column, "invalid char escape")),
                }
                continue;
            }
            text.push(character);
        }
    }

    fn number(&mut self, line: usize, column: usize) -> Result<Token, TraceQlError> {
        let start = self.position;
        let mut is_float = false;
        while let Some(character) = self.peek() {
            if character.is_ascii_digit() {
                self.bump();
            } else if character == '.' && !is_float && self.peek_at(1).is_some_and(|c| c.is_ascii_digit()) {
                is_float = true;
                self.bump();
            } else {
                break;
            }
        }
        let digits: String = self.chars[start..self.position].iter().collect();
        if self.peek().is_some_and(|c| c.is_alphabetic()) {
            return self.duration(digits, line, column);
        }
        if is_float {
            let value: f64 =
                digits.parse().map_err(|_| self.error(line, column, format!("invalid number {digits:?}")))?;
            return Ok(Token::Float(value));
        }
        match digits.parse::<i64>() {
            Ok(value) => Ok(Token::Int(value)),
            Err(_) => Err(self.error(line, column, format!("integer {digits} out of range"))),
        }
    }

    /// A duration like `150ms`, `1.5s` or `1h30m` whose first number is `digits` (already read).
    fn duration(&mut self, first_digits: String, line: usize, column: usize) -> Result<Token, TraceQlError> {
        let mut total_nanos: f64 = 0.0;
        let mut digits = first_digits;
        loop {
            let unit_start = self.position;
            while self.peek().is_some_and(|c| c.is_alphabetic()) {
                self.bump();
            }
            let unit: String = self.chars[unit_start..self.position].iter().collect();
            let nanos_per_unit = match unit.as_str() {
                "ns" => 1.0,
                "us" | "µs" => 1e3,
                "ms" => 1e6,
                "s" => 1e9,
                "m" => 60e9,
                "h" => 3600e9,
                "d" => 86_400e9,
                _ => return Err(self.error(line, column, format!("invalid duration unit {unit:?}"))),
            };
            let value: f64 =
                digits.parse().map_err(|_| self.error(line, column, format!("invalid duration {digits:?}")))?;
            total_nanos += value * nanos_per_unit;
            if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                break;
            }
            let start = self.position;
            while self.peek().is_some_and(|c| c.is_ascii_digit() || c == '.') {
                self.bump();
            }
            digits = self.chars[start..self.position].iter().collect();
        }
        if !total_nanos.is_finite() || total_nanos > i64::MAX as f64 {
            return Err(self.error(line, column, "duration out of range"));
        }
        Ok(Token::Duration(total_nanos.round() as i64))
    }

    fn attribute_name(&mut self, line: usize, column: usize) -> Result<String, TraceQlError> {
        if self.peek() == Some('"') {
            return self.string(line, column);
        }
        let start = self.position;
        while self.peek().is_some_and(|c| !is_attribute_terminator(c)) {
            self.bump();
        }
        if self.position == start {
            return Err(self.error(line, column, "syntax error: attribute name expected after '.'"));
        }
        Ok(self.chars[start..self.position].iter().collect())
    }

    fn word(&mut self, line: usize, column: usize) -> Result<Token, TraceQlError> {
        let start = self.position;
        while self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_') {
            self.bump();
        }
        let word: String = self.chars[start..self.position].iter().collect();
        let scope = match word.as_str() {
            "span" => Some(AttributeScope::Span),
            "resource" => Some(AttributeScope::Resource),
            "event" => Some(AttributeScope::Event),
            "link" => Some(AttributeScope::Link),
            "instrumentation" => Some(AttributeScope::Instrumentation),
            _ => None,
        };
        if let Some(scope) = scope
            && self.peek() == Some('.')
        {
            self.bump();
            let name = self.attribute_name(line, column)?;
            return Ok(Token::Attribute(AttributeRef { scope, name }));
        }
        let intrinsic_scope = matches!(word.as_str(), "span" | "trace" | "event" | "link" | "instrumentation");
        if intrinsic_scope && self.peek() == Some(':') {
            self.bump();
            let name_start = self.position;
            while self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_') {
                self.bump();
            }
            let name: String = self.chars[name_start..self.position].iter().collect();
            return Ok(Token::ScopedIntrinsic(format!("{word}:{name}")));
        }
        Ok(Token::Word(word))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(text: &str) -> Vec<Token> {
        tokenize(text).unwrap().into_iter().map(|spanned| spanned.token).collect()
    }

    #[test]
    fn attributes_run_to_the_next_operator_and_quoted_names_keep_spaces() {
        assert_eq!(
            tokens(r#"{span.http.status_code>=500&&resource."k 8s"=~"a.*"}"#),
            vec![
                Token::OpenBrace,
                Token::Attribute(AttributeRef { scope: AttributeScope::Span, name: "http.status_code".into() }),
                Token::Ge,
                Token::Int(500),
                Token::And,
                Token::Attribute(AttributeRef { scope: AttributeScope::Resource, name: "k 8s".into() }),
                Token::Re,
                Token::String("a.*".into()),
                Token::CloseBrace,
                Token::End,
            ]
        );
    }

    #[test]
    fn numbers_durations_and_leading_dot_floats() {
        assert_eq!(
            tokens("1.5s 150ms 1h30m .5 42 2.25 100us"),
            vec![
                Token::Duration(1_500_000_000),
                Token::Duration(150_000_000),
                Token::Duration(5_400_000_000_000),
                Token::Float(0.5),
                Token::Int(42),
                Token::Float(2.25),
                Token::Duration(100_000),
                Token::End,
            ]
        );
    }

    #[test]
    fn structural_operators_and_scoped_intrinsics() {
        assert_eq!(
            tokens("} >> { } !> { } &~ { trace:rootService span:parentID"),
            vec![
                Token::CloseBrace,
                Token::Descendant,
                Token::OpenBrace,
                Token::CloseBrace,
                Token::NotChild,
                Token::OpenBrace,
                Token::CloseBrace,
                Token::UnionSibling,
                Token::OpenBrace,
                Token::ScopedIntrinsic("trace:rootService".into()),
                Token::ScopedIntrinsic("span:parentID".into()),
                Token::End,
            ]
        );
    }

    #[test]
    fn positions_are_one_based_lines_and_columns() {
        let spanned = tokenize("{\n  name = \"x\" }").unwrap();
        assert_eq!((spanned[1].line, spanned[1].column), (2, 3));
        assert_eq!((spanned[3].line, spanned[3].column), (2, 10));
    }

    #[test]
    fn string_escapes_follow_tempo() {
        assert_eq!(tokens(r#""a\"b\\c\n""#)[0], Token::String("a\"b\\c\n".into()));
        let error = tokenize(r#"{ .x = "a\.b" }"#).unwrap_err();
        assert_eq!(error.to_string(), "parse error at line 1, col 10: invalid char escape");
        assert!(tokenize(r#"{ .x = "abc }"#).is_err());
        assert!(tokenize("{ 5xs }").is_err());
        assert!(tokenize("{ # }").is_err());
    }
}
