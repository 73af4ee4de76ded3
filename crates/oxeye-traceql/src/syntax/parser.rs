//! The TraceQL parser: recursive descent for the pipeline, precedence climbing for expressions.
//!
//! Precedence, loosest first. Between spansets: `||`, then `&&`, then the structural operators (`>` `>>` `<`
//! `<<` `~` and their `!`/`&` forms), all left-associative, so `{a} && {b} >> {c}` is `{a} && ({b} >> {c})`
//! as in Tempo. Inside a filter: `||`, `&&`, comparisons and regex matches, `+ -`, `* / %`, `^`
//! (right-associative), then the prefix `!` and `-`. (Tempo's grammar gives `&&` and `||` one level; here
//! `&&` binds tighter, as in most languages; parenthesize mixed conditions to be portable.)

use oxeye_model::traces::{SpanKind, StatusCode};
use regex::Regex;

use super::ast::*;
use super::lexer::{Spanned, Token, tokenize};
use crate::error::TraceQlError;

/// Parses a TraceQL query: a search query (`{ status = error } | count() > 1`) or a metrics query
/// (`{ } | rate() by (resource.service.name)`).
///
/// Errors: [`TraceQlError::Parse`] with the 1-based line and column of the offending token, worded as Tempo
/// (`parse error at line 1, col 12: syntax error: unexpected IDENTIFIER`); regexes that do not compile and
/// quantiles outside `[0, 1]` are parse errors at their literal.
pub fn parse(text: &str) -> Result<Query, TraceQlError> {
    let tokens = tokenize(text)?;
    let mut parser = Parser { tokens, position: 0 };
    let query = parser.query()?;
    Ok(query)
}

/// Parses one spanset filter expression such as `{ resource.service.name = "x" && status = error }`, as the
/// `q` parameter of the tag-values API carries it.
///
/// Errors: as [`parse`], plus an error when the text is a pipeline rather than one spanset expression.
pub fn parse_spanset(text: &str) -> Result<SpansetExpr, TraceQlError> {
    let query = parse(text)?;
    if !query.stages.is_empty() || query.metrics.is_some() {
        return Err(TraceQlError::Unsupported("expected a spanset expression without a pipeline".into()));
    }
    Ok(query.spansets)
}

struct Parser {
    tokens: Vec<Spanned>,
    position: usize,
}

const METRICS_FUNCTIONS: &[&str] = &[
    "rate",
    "count_over_time",
    "min_over_time",
    "max_over_time",
    "avg_over_time",
    "sum_over_time",
    "quantile_over_time",
    "histogram_over_time",
];

impl Parser {
    fn peek(&self) -> &Token {
        self.tokens.get(self.position).map_or(&Token::End, |spanned| &spanned.token)
    }

    fn advance(&mut self) -> Token {
        let token = self.peek().clone();
        if self.position < self.tokens.len() {
            self.position += 1;
        }
        token
    }

    fn error_here(&self, message: impl Into<String>) -> TraceQlError {
        let (line, column) = self.tokens.get(self.position).map_or((1, 1), |spanned| (spanned.line, spanned.column));
        TraceQlError::Parse { line, column, message: message.into() }
    }

    fn unexpected(&self) -> TraceQlError {
        self.error_here(format!("syntax error: unexpected {}", self.peek().describe()))
    }

    fn unexpected_expecting(&self, expected: &Token) -> TraceQlError {
        self.error_here(format!(
            "syntax error: unexpected {}, expecting {}",
            self.peek().describe(),
            expected.describe()
        ))
    }

    fn expect(&mut self, expected: Token) -> Result<(), TraceQlError> {
        if *self.peek() == expected {
            self.advance();
            Ok(())
        } else {
            Err(self.unexpected_expecting(&expected))
        }
    }

    fn peek_word(&self) -> Option<&str> {
        match self.peek() {
            Token::Word(word) => Some(word),
            _ => None,
        }
    }

    fn query(&mut self) -> Result<Query, TraceQlError> {
        let spansets = self.spanset_expr(0)?;
        let mut stages = Vec::new();
        let mut metrics = None;
        while *self.peek() == Token::Pipe {
            self.advance();
            if let Some(word) = self.peek_word()
                && METRICS_FUNCTIONS.contains(&word)
            {
                metrics = Some(self.metrics_function()?);
                break;
            }
            stages.push(self.stage()?);
        }
        if *self.peek() != Token::End {
            return Err(self.unexpected());
        }
        Ok(Query { spansets, stages, metrics })
    }

    fn stage(&mut self) -> Result<Stage, TraceQlError> {
        if matches!(self.peek(), Token::OpenBrace | Token::OpenParen) {
            return Ok(Stage::Spansets(self.spanset_expr(0)?));
        }
        let Some(word) = self.peek_word().map(str::to_string) else {
            return Err(self.unexpected());
        };
        let function = match word.as_str() {
            "count" => AggregateFunction::Count,
            "avg" => AggregateFunction::Avg,
            "min" => AggregateFunction::Min,
            "max" => AggregateFunction::Max,
            "sum" => AggregateFunction::Sum,
            "by" => {
                self.advance();
                self.expect(Token::OpenParen)?;
                let field = self.field_expr(0)?;
                self.expect(Token::CloseParen)?;
                return Ok(Stage::By(field));
            }
            "select" => {
                self.advance();
                let fields = self.field_list()?;
                return Ok(Stage::Select(fields));
            }
            "coalesce" => {
                self.advance();
                self.expect(Token::OpenParen)?;
                self.expect(Token::CloseParen)?;
                return Ok(Stage::Coalesce);
            }
            _ => return Err(self.unexpected()),
        };
        self.advance();
        self.expect(Token::OpenParen)?;
        let field = if function == AggregateFunction::Count { None } else { Some(self.field_expr(0)?) };
        self.expect(Token::CloseParen)?;
        let op = match self.advance() {
            Token::Eq => CompareOp::Eq,
            Token::Ne => CompareOp::Ne,
            Token::Gt => CompareOp::Gt,
            Token::Ge => CompareOp::Ge,
            Token::Lt => CompareOp::Lt,
            Token::Le => CompareOp::Le,
            _ => {
                self.position -= 1;
                return Err(self.unexpected());
            }
        };
        let negative = if *self.peek() == Token::Minus {
            self.advance();
            true
        } else {
            false
        };
        let value = match (self.advance(), negative) {
            (Token::Int(value), false) => Literal::Int(value),
            (Token::Int(value), true) => Literal::Int(-value),
            (Token::Float(value), false) => Literal::Float(value),
            (Token::Float(value), true) => Literal::Float(-value),
            (Token::Duration(value), false) => Literal::Duration(value),
            (Token::Duration(value), true) => Literal::Duration(-value),
            _ => {
                self.position -= 1;
                return Err(self.unexpected());
            }
        };
        Ok(Stage::Scalar { aggregate: Aggregate { function, field }, op, value })
    }

    /// `( field, field... )`.
    fn field_list(&mut self) -> Result<Vec<FieldExpr>, TraceQlError> {
        self.expect(Token::OpenParen)?;
        let mut fields = vec![self.field_expr(0)?];
        while *self.peek() == Token::Comma {
            self.advance();
            fields.push(self.field_expr(0)?);
        }
        self.expect(Token::CloseParen)?;
        Ok(fields)
    }

    fn metrics_function(&mut self) -> Result<MetricsFunction, TraceQlError> {
        let Token::Word(name) = self.advance() else {
            return Err(self.unexpected());
        };
        self.expect(Token::OpenParen)?;
        let kind = match name.as_str() {
            "rate" => MetricsKind::Rate,
            "count_over_time" => MetricsKind::CountOverTime,
            _ => {
                let field = self.field_expr(0)?;
                match name.as_str() {
                    "min_over_time" => MetricsKind::MinOverTime(field),
                    "max_over_time" => MetricsKind::MaxOverTime(field),
                    "avg_over_time" => MetricsKind::AvgOverTime(field),
                    "sum_over_time" => MetricsKind::SumOverTime(field),
                    "histogram_over_time" => MetricsKind::HistogramOverTime(field),
                    _ => {
                        let mut quantiles = Vec::new();
                        while *self.peek() == Token::Comma {
                            self.advance();
                            let quantile = match self.peek() {
                                Token::Float(value) => *value,
                                Token::Int(value) => *value as f64,
                                _ => return Err(self.unexpected()),
                            };
                            if !(0.0..=1.0).contains(&quantile) {
                                return Err(self.error_here(format!("quantile {quantile} is not between 0 and 1")));
                            }
                            self.advance();
                            quantiles.push(quantile);
                        }
                        if quantiles.is_empty() {
                            return Err(self.unexpected_expecting(&Token::Comma));
                        }
                        MetricsKind::QuantileOverTime(field, quantiles)
                    }
                }
            }
        };
        self.expect(Token::CloseParen)?;
        let mut by = Vec::new();
        if self.peek_word() == Some("by") {
            self.advance();
            by = self.field_list()?;
        }
        // `with(sample=true, ...)`: query hints for Tempo's planner; accepted and ignored.
        if self.peek_word() == Some("with") {
            self.advance();
            self.expect(Token::OpenParen)?;
            while *self.peek() != Token::CloseParen {
                match self.advance() {
                    Token::Word(_) | Token::Eq | Token::Comma | Token::Int(_) | Token::Float(_) | Token::String(_) => {}
                    Token::Duration(_) => {}
                    _ => {
                        self.position -= 1;
                        return Err(self.unexpected());
                    }
                }
            }
            self.advance();
        }
        let mut second_stage = None;
        if *self.peek() == Token::Pipe {
            self.advance();
            let largest = match self.peek_word() {
                Some("topk") => true,
                Some("bottomk") => false,
                _ => return Err(self.unexpected()),
            };
            self.advance();
            self.expect(Token::OpenParen)?;
            let count = match self.peek() {
                Token::Int(count) if *count > 0 => usize::try_from(*count).unwrap_or(usize::MAX),
                _ => return Err(self.unexpected()),
            };
            self.advance();
            self.expect(Token::CloseParen)?;
            second_stage = Some(if largest { SecondStage::TopK(count) } else { SecondStage::BottomK(count) });
        }
        Ok(MetricsFunction { kind, by, second_stage })
    }

    fn spanset_binding_power(&self) -> Option<(u8, SpansetOp)> {
        use Relation::*;
        use StructuralMode::*;
        let structural = |relation, mode| Some((3, SpansetOp::Structural { relation, mode }));
        match self.peek() {
            Token::Or => Some((1, SpansetOp::Or)),
            Token::And => Some((2, SpansetOp::And)),
            Token::Gt => structural(Child, Right),
            Token::Descendant => structural(Descendant, Right),
            Token::Lt => structural(Parent, Right),
            Token::Ancestor => structural(Ancestor, Right),
            Token::Tilde => structural(Sibling, Right),
            Token::NotChild => structural(Child, NotRight),
            Token::NotDescendant => structural(Descendant, NotRight),
            Token::NotParent => structural(Parent, NotRight),
            Token::NotAncestor => structural(Ancestor, NotRight),
            Token::Nre => structural(Sibling, NotRight),
            Token::UnionChild => structural(Child, Union),
            Token::UnionDescendant => structural(Descendant, Union),
            Token::UnionParent => structural(Parent, Union),
            Token::UnionAncestor => structural(Ancestor, Union),
            Token::UnionSibling => structural(Sibling, Union),
            _ => None,
        }
    }

    fn spanset_expr(&mut self, min_power: u8) -> Result<SpansetExpr, TraceQlError> {
        let mut lhs = self.spanset_primary()?;
        while let Some((power, op)) = self.spanset_binding_power() {
            if power <= min_power {
                break;
            }
            self.advance();
            let rhs = self.spanset_expr(power)?;
            lhs = SpansetExpr::Binary { op, lhs: Box::new(lhs), rhs: Box::new(rhs) };
        }
        Ok(lhs)
    }

    fn spanset_primary(&mut self) -> Result<SpansetExpr, TraceQlError> {
        match self.peek() {
            Token::OpenBrace => {
                self.advance();
                if *self.peek() == Token::CloseBrace {
                    self.advance();
                    return Ok(SpansetExpr::Filter(FieldExpr::Literal(Literal::Bool(true))));
                }
                let condition = self.field_expr(0)?;
                if *self.peek() != Token::CloseBrace {
                    return Err(self.unexpected_expecting(&Token::CloseBrace));
                }
                if !may_be_boolean(&condition) {
                    return Err(self.error_here("invalid spanset filter: the condition is not a boolean expression"));
                }
                self.advance();
                Ok(SpansetExpr::Filter(condition))
            }
            Token::OpenParen => {
                self.advance();
                let inner = self.spanset_expr(0)?;
                self.expect(Token::CloseParen)?;
                Ok(inner)
            }
            _ => Err(self.unexpected_expecting(&Token::OpenBrace)),
        }
    }

    fn field_binding_power(&self) -> Option<(u8, BinaryOp)> {
        Some(match self.peek() {
            Token::Or => (1, BinaryOp::Or),
            Token::And => (2, BinaryOp::And),
            Token::Eq => (3, BinaryOp::Compare(CompareOp::Eq)),
            Token::Ne => (3, BinaryOp::Compare(CompareOp::Ne)),
            Token::Gt => (3, BinaryOp::Compare(CompareOp::Gt)),
            Token::Ge => (3, BinaryOp::Compare(CompareOp::Ge)),
            Token::Lt => (3, BinaryOp::Compare(CompareOp::Lt)),
            Token::Le => (3, BinaryOp::Compare(CompareOp::Le)),
            // Regex operators share the comparison level; the operator value is unused for them.
            Token::Re | Token::Nre => (3, BinaryOp::Compare(CompareOp::Eq)),
            Token::Plus => (4, BinaryOp::Add),
            Token::Minus => (4, BinaryOp::Sub),
            Token::Star => (5, BinaryOp::Mul),
            Token::Slash => (5, BinaryOp::Div),
            Token::Percent => (5, BinaryOp::Mod),
            Token::Caret => (6, BinaryOp::Pow),
            _ => return None,
        })
    }

    fn field_expr(&mut self, min_power: u8) -> Result<FieldExpr, TraceQlError> {
        let mut lhs = self.field_prefix()?;
        while let Some((power, op)) = self.field_binding_power() {
            if power <= min_power {
                break;
            }
            let operator = self.advance();
            if matches!(operator, Token::Re | Token::Nre) {
                let Token::String(pattern) = self.peek().clone() else {
                    return Err(self.unexpected_expecting(&Token::String(String::new())));
                };
                let regex = Regex::new(&format!("^(?s:{pattern})$"))
                    .map_err(|error| self.error_here(format!("error parsing regexp: {error}")))?;
                self.advance();
                lhs = FieldExpr::Regex { lhs: Box::new(lhs), pattern, regex, negated: operator == Token::Nre };
                continue;
            }
            // `^` is right-associative: its right operand may hold another `^`.
            let next_min = if op == BinaryOp::Pow { power - 1 } else { power };
            let rhs = self.field_expr(next_min)?;
            lhs = FieldExpr::Binary { op, lhs: Box::new(lhs), rhs: Box::new(rhs) };
        }
        Ok(lhs)
    }

    fn field_prefix(&mut self) -> Result<FieldExpr, TraceQlError> {
        match self.peek() {
            Token::Not => {
                self.advance();
                Ok(FieldExpr::Not(Box::new(self.field_expr(6)?)))
            }
            Token::Minus => {
                self.advance();
                match self.peek().clone() {
                    Token::Int(value) => {
                        self.advance();
                        Ok(FieldExpr::Literal(Literal::Int(-value)))
                    }
                    Token::Float(value) => {
                        self.advance();
                        Ok(FieldExpr::Literal(Literal::Float(-value)))
                    }
                    Token::Duration(value) => {
                        self.advance();
                        Ok(FieldExpr::Literal(Literal::Duration(-value)))
                    }
                    _ => Ok(FieldExpr::Negate(Box::new(self.field_expr(6)?))),
                }
            }
            Token::OpenParen => {
                self.advance();
                let inner = self.field_expr(0)?;
                self.expect(Token::CloseParen)?;
                Ok(inner)
            }
            _ => self.field_primary(),
        }
    }

    fn field_primary(&mut self) -> Result<FieldExpr, TraceQlError> {
        let literal = match self.peek().clone() {
            Token::String(text) => Literal::String(text),
            Token::Int(value) => Literal::Int(value),
            Token::Float(value) => Literal::Float(value),
            Token::Duration(value) => Literal::Duration(value),
            Token::Attribute(attribute) => {
                self.advance();
                return Ok(FieldExpr::Attribute(attribute));
            }
            Token::ScopedIntrinsic(name) => {
                let Some(intrinsic) = Intrinsic::from_name(&name) else {
                    return Err(self.unexpected());
                };
                self.advance();
                return Ok(FieldExpr::Intrinsic(intrinsic));
            }
            Token::Word(word) => match word.as_str() {
                "true" => Literal::Bool(true),
                "false" => Literal::Bool(false),
                "nil" => Literal::Nil,
                "ok" => Literal::Status(StatusCode::Ok),
                "error" => Literal::Status(StatusCode::Error),
                "unset" => Literal::Status(StatusCode::Unset),
                "server" => Literal::Kind(SpanKind::Server),
                "client" => Literal::Kind(SpanKind::Client),
                "producer" => Literal::Kind(SpanKind::Producer),
                "consumer" => Literal::Kind(SpanKind::Consumer),
                "internal" => Literal::Kind(SpanKind::Internal),
                "unspecified" => Literal::Kind(SpanKind::Unspecified),
                other => {
                    let Some(intrinsic) = Intrinsic::from_name(other) else {
                        return Err(self.unexpected());
                    };
                    self.advance();
                    return Ok(FieldExpr::Intrinsic(intrinsic));
                }
            },
            _ => return Err(self.unexpected()),
        };
        self.advance();
        Ok(FieldExpr::Literal(literal))
    }
}

/// Whether a filter condition can evaluate to a boolean (rejects `{ 1 + 2 }`, `{ "x" }`).
fn may_be_boolean(condition: &FieldExpr) -> bool {
    match condition {
        FieldExpr::Literal(literal) => matches!(literal, Literal::Bool(_)),
        FieldExpr::Binary { op, .. } => matches!(op, BinaryOp::And | BinaryOp::Or | BinaryOp::Compare(_)),
        FieldExpr::Negate(_) => false,
        FieldExpr::Attribute(_) | FieldExpr::Intrinsic(_) | FieldExpr::Regex { .. } | FieldExpr::Not(_) => true,
    }
}

#[cfg(test)]
mod tests;
