//! The LogQL parser: recursive descent over [`super::lexer`] tokens.
//!
//! Grammar (Loki's `pkg/logql/syntax` documentation, <https://grafana.com/docs/loki/latest/query/>):
//! a query is a log expression `{selector} stages*` or a metric expression built from range aggregations
//! `f([param,] log_range) [by|without (...)]`, vector aggregations, `vector(n)`, numbers, `label_replace`,
//! and binary operators with PromQL precedence.

use oxeye_model::{MatchOp, Matcher};

use super::ParseError;
use super::ast::*;
use super::lexer::{Spanned, Token, tokenize};

/// Parses a LogQL query.
///
/// # Errors
/// [`ParseError`] with the line and column of the offending token.
pub fn parse_expr(input: &str) -> std::result::Result<Expr, ParseError> {
    let tokens = tokenize(input)?;
    let mut parser = Parser { input, tokens, position: 0 };
    let expr = parser.expr()?;
    parser.expect_eof()?;
    Ok(expr)
}

struct Parser<'a> {
    input: &'a str,
    tokens: Vec<Spanned>,
    position: usize,
}

type Result<T> = std::result::Result<T, ParseError>;

/// Parses a duration like `5m`, `1h30m`, `250ms`, `1.5s` into milliseconds.
pub fn parse_duration_text_ms(text: &str) -> Option<i64> {
    let mut total = 0f64;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_end = rest.find(|character: char| !(character.is_ascii_digit() || character == '.'))?;
        if number_end == 0 {
            return None;
        }
        let value: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end =
            rest.find(|character: char| character.is_ascii_digit() || character == '.').unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let factor = match unit {
            "ns" => 1e-6,
            "us" | "µs" => 1e-3,
            "ms" => 1.0,
            "s" => 1000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            "d" => 86_400_000.0,
            "w" => 604_800_000.0,
            "y" => 31_536_000_000.0,
            _ => return None,
        };
        total += value * factor;
    }
    Some(total.round() as i64)
}

/// Parses a byte size like `10KB`, `1.5MiB`, `42B` into bytes (SI and IEC units, as Loki's humanize).
pub fn parse_bytes_text(text: &str) -> Option<f64> {
    let number_end = text.find(|character: char| !(character.is_ascii_digit() || character == '.'))?;
    let value: f64 = text[..number_end].parse().ok()?;
    let unit = text[number_end..].to_ascii_lowercase();
    let factor = match unit.as_str() {
        "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" | "t" => 1e12,
        "pb" | "p" => 1e15,
        "kib" | "ki" => 1024.0,
        "mib" | "mi" => 1_048_576.0,
        "gib" | "gi" => 1_073_741_824.0,
        "tib" | "ti" => 1_099_511_627_776.0,
        "pib" | "pi" => 1_125_899_906_842_624.0,
        _ => return None,
    };
    Some(value * factor)
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        self.tokens.get(self.position).map_or(&Token::Eof, |spanned| &spanned.token)
    }

    fn peek_at(&self, ahead: usize) -> &Token {
        self.tokens.get(self.position + ahead).map_or(&Token::Eof, |spanned| &spanned.token)
    }

    fn offset(&self) -> usize {
        self.tokens.get(self.position).map_or(self.input.len(), |spanned| spanned.offset)
    }

    fn advance(&mut self) -> Token {
        let token = self.peek().clone();
        if self.position < self.tokens.len() {
            self.position += 1;
        }
        token
    }

    fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError::new(self.input, self.offset(), message)
    }

    fn unexpected(&self, wanted: &str) -> ParseError {
        self.error(format!("syntax error: unexpected {}, expecting {wanted}", self.peek().describe()))
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Token::Op(found) if *found == op)
    }

    fn is_ident(&self, name: &str) -> bool {
        matches!(self.peek(), Token::Ident(found) if found == name)
    }

    fn eat_op(&mut self, op: &str) -> bool {
        if self.is_op(op) {
            self.position += 1;
            true
        } else {
            false
        }
    }

    fn eat_ident(&mut self, name: &str) -> bool {
        if self.is_ident(name) {
            self.position += 1;
            true
        } else {
            false
        }
    }

    fn expect_op(&mut self, op: &str) -> Result<()> {
        if self.eat_op(op) { Ok(()) } else { Err(self.unexpected(&format!("{op:?}"))) }
    }

    fn expect_eof(&self) -> Result<()> {
        if matches!(self.peek(), Token::Eof) { Ok(()) } else { Err(self.unexpected("end of input")) }
    }

    fn ident(&mut self) -> Result<String> {
        match self.peek().clone() {
            Token::Ident(name) => {
                self.position += 1;
                Ok(name)
            }
            _ => Err(self.unexpected("an identifier")),
        }
    }

    fn string(&mut self) -> Result<String> {
        match self.peek().clone() {
            Token::Str(text) => {
                self.position += 1;
                Ok(text)
            }
            _ => Err(self.unexpected("a string")),
        }
    }

    fn duration(&mut self) -> Result<i64> {
        let offset = self.offset();
        let token = self.advance();
        let text = match &token {
            Token::Unit(text) => text.clone(),
            _ => {
                return Err(ParseError::new(
                    self.input,
                    offset,
                    format!("syntax error: unexpected {}, expecting a duration", token.describe()),
                ));
            }
        };
        parse_duration_text_ms(&text)
            .ok_or_else(|| ParseError::new(self.input, offset, format!("invalid duration {text:?}")))
    }

    // ---- expressions ----

    fn expr(&mut self) -> Result<Expr> {
        if self.is_op("{") {
            let log = self.log_expr()?;
            if matches!(self.peek(), Token::Eof | Token::Op(")")) {
                return Ok(Expr::Log(log));
            }
            return Err(self.unexpected("a pipeline stage or end of input"));
        }
        Ok(Expr::Metric(self.binary(0)?))
    }

    fn binary_op(&self) -> Option<BinaryOp> {
        Some(match self.peek() {
            Token::Op("+") => BinaryOp::Add,
            Token::Op("-") => BinaryOp::Sub,
            Token::Op("*") => BinaryOp::Mul,
            Token::Op("/") => BinaryOp::Div,
            Token::Op("%") => BinaryOp::Mod,
            Token::Op("^") => BinaryOp::Pow,
            Token::Op("==") => BinaryOp::Compare(CompareOp::Eq),
            Token::Op("!=") => BinaryOp::Compare(CompareOp::Ne),
            Token::Op(">") => BinaryOp::Compare(CompareOp::Gt),
            Token::Op(">=") => BinaryOp::Compare(CompareOp::Ge),
            Token::Op("<") => BinaryOp::Compare(CompareOp::Lt),
            Token::Op("<=") => BinaryOp::Compare(CompareOp::Le),
            Token::Ident(name) if name == "and" => BinaryOp::And,
            Token::Ident(name) if name == "or" => BinaryOp::Or,
            Token::Ident(name) if name == "unless" => BinaryOp::Unless,
            _ => return None,
        })
    }

    fn binary(&mut self, minimum_precedence: u8) -> Result<MetricExpr> {
        let mut lhs = self.unary()?;
        while let Some(op) = self.binary_op() {
            let precedence = op.precedence();
            if precedence < minimum_precedence {
                break;
            }
            self.position += 1;
            let return_bool = self.eat_ident("bool");
            let mut matching = VectorMatching::default();
            if self.is_ident("on") || self.is_ident("ignoring") {
                matching.on = self.is_ident("on");
                self.position += 1;
                matching.labels = Some(self.label_list()?);
            }
            if self.is_ident("group_left") || self.is_ident("group_right") {
                let right = self.is_ident("group_right");
                self.position += 1;
                let labels = if self.is_op("(") { self.label_list()? } else { Vec::new() };
                matching.group = Some((right, labels));
            }
            // `^` is right associative, everything else left associative.
            let next_minimum = if op == BinaryOp::Pow { precedence } else { precedence + 1 };
            let rhs = self.binary(next_minimum)?;
            lhs = MetricExpr::Binary { op, return_bool, matching, lhs: Box::new(lhs), rhs: Box::new(rhs) };
        }
        Ok(lhs)
    }

    fn unary(&mut self) -> Result<MetricExpr> {
        if self.eat_op("-") {
            let inner = self.unary()?;
            return Ok(match inner {
                MetricExpr::Literal(value) => MetricExpr::Literal(-value),
                other => MetricExpr::Binary {
                    op: BinaryOp::Mul,
                    return_bool: false,
                    matching: VectorMatching::default(),
                    lhs: Box::new(MetricExpr::Literal(-1.0)),
                    rhs: Box::new(other),
                },
            });
        }
        if self.eat_op("+") {
            return self.unary();
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<MetricExpr> {
        match self.peek().clone() {
            Token::Number(value) => {
                self.position += 1;
                Ok(MetricExpr::Literal(value))
            }
            Token::Op("(") => {
                self.position += 1;
                let inner = self.binary(0)?;
                self.expect_op(")")?;
                Ok(MetricExpr::Paren(Box::new(inner)))
            }
            Token::Ident(name) => {
                if let Some((op, _)) = RangeOp::ALL.iter().find(|(_, known)| *known == name) {
                    self.position += 1;
                    return self.range_aggregation(*op);
                }
                if let Some((op, _)) = VectorOp::ALL.iter().find(|(_, known)| *known == name) {
                    self.position += 1;
                    return self.vector_aggregation(*op);
                }
                match name.as_str() {
                    "vector" => {
                        self.position += 1;
                        self.expect_op("(")?;
                        let value = self.number()?;
                        self.expect_op(")")?;
                        Ok(MetricExpr::Vector(value))
                    }
                    "label_replace" => {
                        self.position += 1;
                        self.expect_op("(")?;
                        let inner = self.binary(0)?;
                        let mut strings = Vec::new();
                        for _ in 0..4 {
                            self.expect_op(",")?;
                            strings.push(self.string()?);
                        }
                        self.expect_op(")")?;
                        let regex = strings.pop().unwrap_or_default();
                        let source = strings.pop().unwrap_or_default();
                        let replacement = strings.pop().unwrap_or_default();
                        let destination = strings.pop().unwrap_or_default();
                        if let Err(error) = regex::Regex::new(&format!("^(?s:{regex})$")) {
                            return Err(self.error(format!("invalid regular expression in label_replace: {error}")));
                        }
                        Ok(MetricExpr::LabelReplace { inner: Box::new(inner), destination, replacement, source, regex })
                    }
                    "NaN" | "nan" => {
                        self.position += 1;
                        Ok(MetricExpr::Literal(f64::NAN))
                    }
                    "Inf" | "inf" => {
                        self.position += 1;
                        Ok(MetricExpr::Literal(f64::INFINITY))
                    }
                    _ => Err(self.unexpected("a metric expression")),
                }
            }
            Token::Op("{") => Err(self.error(
                "syntax error: a log query cannot be combined here; wrap it in a range aggregation such as count_over_time({...}[5m])",
            )),
            _ => Err(self.unexpected("a metric expression")),
        }
    }

    fn number(&mut self) -> Result<f64> {
        let negative = self.eat_op("-");
        match self.peek().clone() {
            Token::Number(value) => {
                self.position += 1;
                Ok(if negative { -value } else { value })
            }
            _ => Err(self.unexpected("a number")),
        }
    }

    fn label_list(&mut self) -> Result<Vec<String>> {
        self.expect_op("(")?;
        let mut labels = Vec::new();
        while !self.is_op(")") {
            labels.push(self.ident()?);
            if !self.eat_op(",") {
                break;
            }
        }
        self.expect_op(")")?;
        Ok(labels)
    }

    fn grouping(&mut self) -> Result<Option<Grouping>> {
        if self.is_ident("by") || self.is_ident("without") {
            let without = self.is_ident("without");
            self.position += 1;
            let labels = self.label_list()?;
            return Ok(Some(Grouping { without, labels }));
        }
        Ok(None)
    }

    fn range_aggregation(&mut self, op: RangeOp) -> Result<MetricExpr> {
        self.expect_op("(")?;
        let param = if op == RangeOp::QuantileOverTime {
            let value = self.number()?;
            self.expect_op(",")?;
            Some(value)
        } else {
            None
        };
        let range_offset = self.offset();
        let range = self.log_range()?;
        self.expect_op(")")?;
        let grouping = self.grouping()?;
        if op.needs_unwrap() && range.unwrap.is_none() {
            return Err(ParseError::new(
                self.input,
                range_offset,
                format!("invalid aggregation {} without unwrap", op.name()),
            ));
        }
        if !op.needs_unwrap() && op != RangeOp::Rate && range.unwrap.is_some() {
            return Err(ParseError::new(
                self.input,
                range_offset,
                format!("invalid aggregation {} with unwrap", op.name()),
            ));
        }
        if grouping.is_some() && range.unwrap.is_none() {
            return Err(self.error(format!("grouping not allowed for {} aggregation", op.name())));
        }
        Ok(MetricExpr::RangeAggregation { op, param, range: Box::new(range), grouping })
    }

    fn vector_aggregation(&mut self, op: VectorOp) -> Result<MetricExpr> {
        let mut grouping = self.grouping()?;
        self.expect_op("(")?;
        let param = if matches!(op, VectorOp::Topk | VectorOp::Bottomk) {
            let value = self.number()?;
            self.expect_op(",")?;
            Some(value)
        } else {
            None
        };
        let inner = self.binary(0)?;
        self.expect_op(")")?;
        if grouping.is_none() {
            grouping = self.grouping()?;
        }
        Ok(MetricExpr::VectorAggregation { op, param, inner: Box::new(inner), grouping })
    }

    /// `log_expr [range] [offset]`, with the range either right after the selector or after the pipeline.
    fn log_range(&mut self) -> Result<LogRange> {
        if self.eat_op("(") {
            let range = self.log_range()?;
            self.expect_op(")")?;
            return Ok(range);
        }
        let matchers = self.selector()?;
        let mut range_ms = None;
        if self.eat_op("[") {
            range_ms = Some(self.duration()?);
            self.expect_op("]")?;
        }
        let (pipeline, unwrap) = self.pipeline(true)?;
        if range_ms.is_none() {
            if !self.eat_op("[") {
                return Err(self.unexpected("a range like [5m]"));
            }
            range_ms = Some(self.duration()?);
            self.expect_op("]")?;
        }
        let mut offset_ms = 0;
        if self.eat_ident("offset") {
            offset_ms = self.duration()?;
        }
        Ok(LogRange { log: LogExpr { matchers, pipeline }, range_ms: range_ms.unwrap_or(0), offset_ms, unwrap })
    }

    fn log_expr(&mut self) -> Result<LogExpr> {
        let matchers = self.selector()?;
        let (pipeline, unwrap) = self.pipeline(false)?;
        debug_assert!(unwrap.is_none());
        Ok(LogExpr { matchers, pipeline })
    }

    fn selector(&mut self) -> Result<Vec<Matcher>> {
        let start = self.offset();
        self.expect_op("{")?;
        let mut matchers = Vec::new();
        while !self.is_op("}") {
            let name = self.ident()?;
            let op_offset = self.offset();
            let op = match self.advance() {
                Token::Op("=") => MatchOp::Equal,
                Token::Op("!=") => MatchOp::NotEqual,
                Token::Op("=~") => MatchOp::Regex,
                Token::Op("!~") => MatchOp::NotRegex,
                other => {
                    return Err(ParseError::new(
                        self.input,
                        op_offset,
                        format!("syntax error: unexpected {}, expecting = or != or =~ or !~", other.describe()),
                    ));
                }
            };
            let value = self.string()?;
            let matcher = Matcher::new(op, name, value)
                .map_err(|error| ParseError::new(self.input, op_offset, error.to_string()))?;
            matchers.push(matcher);
            if !self.eat_op(",") {
                break;
            }
        }
        self.expect_op("}")?;
        if matchers.is_empty() {
            return Err(ParseError::new(self.input, start, "syntax error: unexpected }, expecting IDENTIFIER"));
        }
        if matchers.iter().all(Matcher::matches_empty) {
            return Err(ParseError::new(
                self.input,
                start,
                "queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~\".*\" does not meet this requirement, but app=~\".+\" will",
            ));
        }
        Ok(matchers)
    }

    fn line_filter_op(&self) -> Option<LineFilterOp> {
        Some(match self.peek() {
            Token::Op("|=") => LineFilterOp::Contains,
            Token::Op("!=") => LineFilterOp::NotContains,
            Token::Op("|~") => LineFilterOp::Regex,
            Token::Op("!~") => LineFilterOp::NotRegex,
            Token::Op("|>") => LineFilterOp::Pattern,
            Token::Op("!>") => LineFilterOp::NotPattern,
            _ => return None,
        })
    }

    /// Stages until something that is not a stage; with `allow_unwrap`, a trailing `| unwrap ...`.
    fn pipeline(&mut self, allow_unwrap: bool) -> Result<(Vec<Stage>, Option<Unwrap>)> {
        let mut stages = Vec::new();
        loop {
            if let Some(op) = self.line_filter_op() {
                self.position += 1;
                let mut values = vec![self.line_filter_value(op)?];
                while self.is_ident("or") && matches!(self.peek_at(1), Token::Str(_)) {
                    self.position += 1;
                    values.push(self.line_filter_value(op)?);
                }
                stages.push(Stage::LineFilter(LineFilter { op, values }));
                continue;
            }
            if !self.is_op("|") {
                return Ok((stages, None));
            }
            self.position += 1;
            let stage_offset = self.offset();
            let name = match self.peek().clone() {
                Token::Ident(name) => name,
                _ => return Err(self.unexpected("a pipeline stage")),
            };
            // A label filter starts with an identifier followed by a comparison.
            let is_label_filter =
                matches!(self.peek_at(1), Token::Op("=" | "!=" | "=~" | "!~" | "==" | ">" | ">=" | "<" | "<="))
                    || self.is_op("(");
            if is_label_filter {
                stages.push(Stage::LabelFilter(self.label_filter_or()?));
                continue;
            }
            self.position += 1;
            match name.as_str() {
                "json" => stages.push(Stage::Parser(ParserStage::Json(self.extraction_params()?))),
                "logfmt" => {
                    let mut strict = false;
                    let mut keep_empty = false;
                    while self.is_op("-") && matches!(self.peek_at(1), Token::Op("-")) {
                        self.position += 2;
                        let flag = self.ident()?;
                        match flag.as_str() {
                            "strict" => strict = true,
                            "keep-empty" | "keep" => {
                                keep_empty = true;
                                if flag == "keep" {
                                    self.expect_op("-")?;
                                    let rest = self.ident()?;
                                    if rest != "empty" {
                                        return Err(self.error(format!("unknown logfmt flag --keep-{rest}")));
                                    }
                                }
                            }
                            other => return Err(self.error(format!("unknown logfmt flag --{other}"))),
                        }
                    }
                    let params = self.extraction_params()?;
                    stages.push(Stage::Parser(ParserStage::Logfmt { strict, keep_empty, params }));
                }
                "regexp" => {
                    let offset = self.offset();
                    let regex = self.string()?;
                    let compiled = regex::Regex::new(&regex)
                        .map_err(|error| ParseError::new(self.input, offset, format!("invalid regexp: {error}")))?;
                    if compiled.capture_names().flatten().next().is_none() {
                        return Err(ParseError::new(self.input, offset, "at least one named capture must be supplied"));
                    }
                    stages.push(Stage::Parser(ParserStage::Regexp(regex)));
                }
                "pattern" => {
                    let offset = self.offset();
                    let pattern = self.string()?;
                    crate::pattern::Pattern::parse(&pattern)
                        .map_err(|message| ParseError::new(self.input, offset, message))?;
                    stages.push(Stage::Parser(ParserStage::Pattern(pattern)));
                }
                "unpack" => stages.push(Stage::Parser(ParserStage::Unpack)),
                "line_format" => {
                    let offset = self.offset();
                    let template = self.string()?;
                    crate::template::Template::parse(&template)
                        .map_err(|message| ParseError::new(self.input, offset, message))?;
                    stages.push(Stage::LineFormat(template));
                }
                "label_format" => {
                    let mut items = Vec::new();
                    loop {
                        let destination = self.ident()?;
                        self.expect_op("=")?;
                        match self.peek().clone() {
                            Token::Str(template) => {
                                let offset = self.offset();
                                self.position += 1;
                                crate::template::Template::parse(&template)
                                    .map_err(|message| ParseError::new(self.input, offset, message))?;
                                items.push(LabelFormatItem::Template { destination, template });
                            }
                            Token::Ident(source) => {
                                self.position += 1;
                                items.push(LabelFormatItem::Rename { destination, source });
                            }
                            _ => return Err(self.unexpected("a label name or a template string")),
                        }
                        if !self.eat_op(",") {
                            break;
                        }
                    }
                    stages.push(Stage::LabelFormat(items));
                }
                "drop" | "keep" => {
                    let mut items = Vec::new();
                    loop {
                        let label = self.ident()?;
                        let op_text = match self.peek() {
                            Token::Op(op @ ("=" | "!=" | "=~" | "!~")) => Some(*op),
                            _ => None,
                        };
                        match op_text.and_then(string_match_op) {
                            Some(op) => {
                                self.position += 1;
                                let offset = self.offset();
                                let value = self.string()?;
                                let matcher = Matcher::new(op, label, value)
                                    .map_err(|error| ParseError::new(self.input, offset, error.to_string()))?;
                                items.push(LabelItem::Matcher(matcher));
                            }
                            None => items.push(LabelItem::Name(label)),
                        }
                        if !self.eat_op(",") {
                            break;
                        }
                    }
                    stages.push(if name == "drop" { Stage::Drop(items) } else { Stage::Keep(items) });
                }
                "decolorize" => stages.push(Stage::Decolorize),
                "unwrap" => {
                    if !allow_unwrap {
                        return Err(ParseError::new(
                            self.input,
                            stage_offset,
                            "unwrap is only allowed inside a range aggregation",
                        ));
                    }
                    let first = self.ident()?;
                    let (label, conversion) = if self.eat_op("(") {
                        let label = self.ident()?;
                        self.expect_op(")")?;
                        let conversion = match first.as_str() {
                            "duration" | "duration_seconds" => UnwrapConversion::Duration,
                            "bytes" => UnwrapConversion::Bytes,
                            other => return Err(self.error(format!("invalid unwrap conversion {other:?}"))),
                        };
                        (label, conversion)
                    } else {
                        (first, UnwrapConversion::Number)
                    };
                    let mut post_filters = Vec::new();
                    while self.is_op("|") {
                        self.position += 1;
                        post_filters.push(self.label_filter_or()?);
                    }
                    return Ok((stages, Some(Unwrap { label, conversion, post_filters })));
                }
                _ => {
                    return Err(ParseError::new(
                        self.input,
                        stage_offset,
                        format!(
                            "syntax error: unexpected identifier {name:?}, expecting a parser, formatter or label filter"
                        ),
                    ));
                }
            }
        }
    }

    fn line_filter_value(&mut self, op: LineFilterOp) -> Result<String> {
        let offset = self.offset();
        if self.is_ident("ip") {
            return Err(self.error("ip() line filters are not supported"));
        }
        let value = self.string()?;
        match op {
            LineFilterOp::Regex | LineFilterOp::NotRegex => {
                regex::Regex::new(&value)
                    .map_err(|error| ParseError::new(self.input, offset, format!("invalid regexp: {error}")))?;
            }
            LineFilterOp::Pattern | LineFilterOp::NotPattern => {
                crate::pattern::Pattern::parse(&value)
                    .map_err(|message| ParseError::new(self.input, offset, message))?;
            }
            LineFilterOp::Contains | LineFilterOp::NotContains => {}
        }
        Ok(value)
    }

    fn extraction_params(&mut self) -> Result<Vec<(String, String)>> {
        let mut params = Vec::new();
        while let Token::Ident(label) = self.peek().clone() {
            // `json | x=...` is a stage boundary, not a parameter: parameters come right after the parser.
            let next = self.peek_at(1).clone();
            match next {
                Token::Op("=") if matches!(self.peek_at(2), Token::Str(_)) => {
                    self.position += 2;
                    let expression = self.string()?;
                    params.push((label, expression));
                }
                Token::Op(",") | Token::Op("|") | Token::Op(")") | Token::Op("[") | Token::Eof => {
                    self.position += 1;
                    params.push((label.clone(), label));
                }
                _ => {
                    if matches!(next, Token::Op("|=" | "!=" | "|~" | "!~" | "|>" | "!>")) {
                        self.position += 1;
                        params.push((label.clone(), label));
                    } else {
                        break;
                    }
                }
            }
            if !self.eat_op(",") {
                break;
            }
        }
        Ok(params)
    }

    fn label_filter_or(&mut self) -> Result<LabelFilter> {
        let mut left = self.label_filter_and()?;
        while self.is_ident("or") && !matches!(self.peek_at(1), Token::Str(_)) {
            self.position += 1;
            let right = self.label_filter_and()?;
            left = LabelFilter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn label_filter_and(&mut self) -> Result<LabelFilter> {
        let mut left = self.label_filter_primary()?;
        loop {
            if self.is_ident("and") || self.is_op(",") {
                self.position += 1;
            } else if matches!(self.peek(), Token::Ident(name) if name != "or" && name != "offset")
                && matches!(self.peek_at(1), Token::Op("=" | "!=" | "=~" | "!~" | "==" | ">" | ">=" | "<" | "<="))
            {
                // Juxtaposed filters (`| a="x" b="y"`) are ANDed.
            } else {
                return Ok(left);
            }
            let right = self.label_filter_primary()?;
            left = LabelFilter::And(Box::new(left), Box::new(right));
        }
    }

    fn label_filter_primary(&mut self) -> Result<LabelFilter> {
        if self.eat_op("(") {
            let inner = self.label_filter_or()?;
            self.expect_op(")")?;
            return Ok(LabelFilter::Paren(Box::new(inner)));
        }
        let name = self.ident()?;
        let op_offset = self.offset();
        let op_text = match self.advance() {
            Token::Op(op) => op,
            other => {
                return Err(ParseError::new(
                    self.input,
                    op_offset,
                    format!("syntax error: unexpected {}, expecting a comparison", other.describe()),
                ));
            }
        };
        let value_offset = self.offset();
        match self.peek().clone() {
            Token::Str(value) => {
                self.position += 1;
                let Some(op) = string_match_op(op_text) else {
                    return Err(ParseError::new(
                        self.input,
                        op_offset,
                        format!("syntax error: operator {op_text} cannot compare a string"),
                    ));
                };
                let matcher = Matcher::new(op, name, value)
                    .map_err(|error| ParseError::new(self.input, value_offset, error.to_string()))?;
                Ok(LabelFilter::Matcher(matcher))
            }
            Token::Ident(function) if function == "ip" => {
                self.position += 1;
                self.expect_op("(")?;
                let pattern = self.string()?;
                self.expect_op(")")?;
                let negated = match op_text {
                    "=" | "==" => false,
                    "!=" => true,
                    _ => return Err(ParseError::new(self.input, op_offset, "ip() needs = or !=")),
                };
                crate::pipeline::IpMatcher::parse(&pattern)
                    .map_err(|message| ParseError::new(self.input, value_offset, message))?;
                Ok(LabelFilter::Ip { name, negated, pattern })
            }
            Token::Number(value) => {
                self.position += 1;
                let op = compare_op(op_text)
                    .ok_or_else(|| ParseError::new(self.input, op_offset, format!("invalid operator {op_text}")))?;
                Ok(LabelFilter::Number { name, op, value, kind: NumberKind::Number, literal: format!("{value}") })
            }
            Token::Op("-") if matches!(self.peek_at(1), Token::Number(_)) => {
                self.position += 1;
                let value = match self.advance() {
                    Token::Number(value) => -value,
                    _ => 0.0,
                };
                let op = compare_op(op_text)
                    .ok_or_else(|| ParseError::new(self.input, op_offset, format!("invalid operator {op_text}")))?;
                Ok(LabelFilter::Number { name, op, value, kind: NumberKind::Number, literal: format!("{value}") })
            }
            Token::Unit(text) => {
                self.position += 1;
                let op = compare_op(op_text)
                    .ok_or_else(|| ParseError::new(self.input, op_offset, format!("invalid operator {op_text}")))?;
                if let Some(milliseconds) = parse_duration_text_ms(&text) {
                    let seconds = milliseconds as f64 / 1000.0;
                    // Sub-millisecond durations keep their precision.
                    let seconds = parse_duration_seconds_precise(&text).unwrap_or(seconds);
                    return Ok(LabelFilter::Number {
                        name,
                        op,
                        value: seconds,
                        kind: NumberKind::Duration,
                        literal: text,
                    });
                }
                if let Some(bytes) = parse_bytes_text(&text) {
                    return Ok(LabelFilter::Number { name, op, value: bytes, kind: NumberKind::Bytes, literal: text });
                }
                Err(ParseError::new(self.input, value_offset, format!("invalid duration or byte size {text:?}")))
            }
            _ => Err(self.unexpected("a string, number, duration or byte size")),
        }
    }
}

fn compare_op(text: &str) -> Option<CompareOp> {
    Some(match text {
        "=" | "==" => CompareOp::Eq,
        "!=" => CompareOp::Ne,
        ">" => CompareOp::Gt,
        ">=" => CompareOp::Ge,
        "<" => CompareOp::Lt,
        "<=" => CompareOp::Le,
        _ => return None,
    })
}

/// A duration in seconds with sub-millisecond precision (`250us`), or `None` when it does not parse.
pub fn parse_duration_seconds_precise(text: &str) -> Option<f64> {
    let mut total = 0f64;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_end = rest.find(|character: char| !(character.is_ascii_digit() || character == '.'))?;
        if number_end == 0 {
            return None;
        }
        let value: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end =
            rest.find(|character: char| character.is_ascii_digit() || character == '.').unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let factor = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            "w" => 604_800.0,
            "y" => 31_536_000.0,
            _ => return None,
        };
        total += value * factor;
    }
    Some(total)
}
