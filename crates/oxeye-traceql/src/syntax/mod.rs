//! The language: tokens, syntax tree and parser, apart from evaluation.

pub mod ast;
mod lexer;
mod parser;

pub use parser::{parse, parse_spanset};
