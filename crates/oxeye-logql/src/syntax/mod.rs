//! The LogQL language apart from its evaluation: [`lexer`], [`ast`] (with its printer), [`parser`].

pub mod ast;
pub mod lexer;
pub mod parser;

pub use ast::*;
pub use parser::parse_expr;

/// A query that does not parse: the message with the line and column (1-based, in characters) of the
/// offending token, worded as Loki: `parse error at line 1, col 12: syntax error: unexpected ...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parse error at line {line}, col {column}: {message}")]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// Byte offset in the query.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

impl ParseError {
    /// An error at byte `offset` of `input`.
    pub fn new(input: &str, offset: usize, message: impl Into<String>) -> Self {
        let offset = offset.min(input.len());
        let before = input.get(..offset).unwrap_or(input);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |index| index + 1);
        let column = before[line_start..].chars().count() + 1;
        ParseError { line, column, offset, message: message.into() }
    }
}
