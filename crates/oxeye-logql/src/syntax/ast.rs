//! The LogQL abstract syntax tree, and its printer (`Display` writes a query that parses back to the
//! same tree).

use std::fmt;

use oxeye_model::{MatchOp, Matcher};

/// A whole query: a log query (streams) or a metric query (samples).
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// `{selector} | pipeline`.
    Log(LogExpr),
    /// Anything producing numbers.
    Metric(MetricExpr),
}

/// A stream selector and its pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct LogExpr {
    /// The stream matchers inside `{}`.
    pub matchers: Vec<Matcher>,
    /// The stages after the selector, in order.
    pub pipeline: Vec<Stage>,
}

/// Line filter operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineFilterOp {
    /// `|=`: contains.
    Contains,
    /// `!=`: does not contain.
    NotContains,
    /// `|~`: matches the regex (unanchored).
    Regex,
    /// `!~`: does not match the regex.
    NotRegex,
    /// `|>`: matches the pattern.
    Pattern,
    /// `!>`: does not match the pattern.
    NotPattern,
}

impl LineFilterOp {
    /// As written.
    pub fn as_str(self) -> &'static str {
        match self {
            LineFilterOp::Contains => "|=",
            LineFilterOp::NotContains => "!=",
            LineFilterOp::Regex => "|~",
            LineFilterOp::NotRegex => "!~",
            LineFilterOp::Pattern => "|>",
            LineFilterOp::NotPattern => "!>",
        }
    }

    /// True for the negative operators.
    pub fn is_negative(self) -> bool {
        matches!(self, LineFilterOp::NotContains | LineFilterOp::NotRegex | LineFilterOp::NotPattern)
    }
}

/// One line filter: `op "a" or "b"`; a line passes a positive filter when it matches any value, a
/// negative one when it matches none.
#[derive(Debug, Clone, PartialEq)]
pub struct LineFilter {
    /// The operator.
    pub op: LineFilterOp,
    /// The values joined by `or`.
    pub values: Vec<String>,
}

/// Parser stages.
#[derive(Debug, Clone, PartialEq)]
pub enum ParserStage {
    /// `json` or `json a="path.to[0]", b`.
    Json(Vec<(String, String)>),
    /// `logfmt [--strict] [--keep-empty] [a="key", b]`.
    Logfmt {
        /// `--strict`: stop at the first malformed pair with an error.
        strict: bool,
        /// `--keep-empty`: keep pairs with an empty value.
        keep_empty: bool,
        /// Extractions.
        params: Vec<(String, String)>,
    },
    /// `regexp "(?P<name>...)"`.
    Regexp(String),
    /// `pattern "<ip> - <_>"`.
    Pattern(String),
    /// `unpack`.
    Unpack,
}

/// Comparison operators of label filters and binary expressions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// `==` (or `=` in label filters).
    Eq,
    /// `!=`.
    Ne,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
}

impl CompareOp {
    /// As written.
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "==",
            CompareOp::Ne => "!=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
        }
    }

    /// Applies the comparison.
    pub fn compare(self, left: f64, right: f64) -> bool {
        match self {
            CompareOp::Eq => left == right,
            CompareOp::Ne => left != right,
            CompareOp::Gt => left > right,
            CompareOp::Ge => left >= right,
            CompareOp::Lt => left < right,
            CompareOp::Le => left <= right,
        }
    }
}

/// How a numeric label filter reads the label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberKind {
    /// A plain number.
    Number,
    /// A duration (`250ms`), compared in seconds.
    Duration,
    /// A byte size (`10KB`), compared in bytes.
    Bytes,
}

/// A label filter expression.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelFilter {
    /// Both must hold (`and`, `,` or juxtaposition).
    And(Box<LabelFilter>, Box<LabelFilter>),
    /// Either holds.
    Or(Box<LabelFilter>, Box<LabelFilter>),
    /// A string matcher `name op "value"`.
    Matcher(Matcher),
    /// `name op number`, with the number as written for printing.
    Number {
        /// The label.
        name: String,
        /// The comparison.
        op: CompareOp,
        /// The value: seconds for durations, bytes for sizes.
        value: f64,
        /// How to read the label.
        kind: NumberKind,
        /// The literal as written.
        literal: String,
    },
    /// `name = ip("cidr")` or `name != ip("...")`.
    Ip {
        /// The label.
        name: String,
        /// True for `!=`.
        negated: bool,
        /// The address, range or CIDR as written.
        pattern: String,
    },
    /// Parenthesised, kept for printing.
    Paren(Box<LabelFilter>),
}

/// One `label_format` item.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelFormatItem {
    /// `dst=src`: rename.
    Rename {
        /// The new label.
        destination: String,
        /// The label renamed.
        source: String,
    },
    /// `dst="{{template}}"`.
    Template {
        /// The label set.
        destination: String,
        /// The template text.
        template: String,
    },
}

/// A `drop`/`keep` item: a bare name or a matcher.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelItem {
    /// Every label with this name.
    Name(String),
    /// Labels matching.
    Matcher(Matcher),
}

/// A pipeline stage.
#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    /// A line filter.
    LineFilter(LineFilter),
    /// A parser.
    Parser(ParserStage),
    /// `| label filter`.
    LabelFilter(LabelFilter),
    /// `| line_format "template"`.
    LineFormat(String),
    /// `| label_format a=b, c="{{.x}}"`.
    LabelFormat(Vec<LabelFormatItem>),
    /// `| drop a, b="x"`.
    Drop(Vec<LabelItem>),
    /// `| keep a, b="x"`.
    Keep(Vec<LabelItem>),
    /// `| decolorize`.
    Decolorize,
}

/// How `unwrap` converts the label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnwrapConversion {
    /// A plain number.
    Number,
    /// `duration(x)` / `duration_seconds(x)`: seconds.
    Duration,
    /// `bytes(x)`.
    Bytes,
}

/// `| unwrap [conversion(]label[)]` with the label filters after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Unwrap {
    /// The label.
    pub label: String,
    /// The conversion.
    pub conversion: UnwrapConversion,
    /// Filters after the unwrap (`| __error__=""`).
    pub post_filters: Vec<LabelFilter>,
}

/// A log expression over a range: `{...} | ... [5m] offset 1h`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRange {
    /// The log expression.
    pub log: LogExpr,
    /// The range in milliseconds.
    pub range_ms: i64,
    /// The offset in milliseconds (0 without `offset`).
    pub offset_ms: i64,
    /// The unwrap, for unwrapped range aggregations.
    pub unwrap: Option<Unwrap>,
}

/// Range aggregation functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeOp {
    /// `count_over_time`.
    CountOverTime,
    /// `rate`.
    Rate,
    /// `rate_counter`.
    RateCounter,
    /// `bytes_over_time`.
    BytesOverTime,
    /// `bytes_rate`.
    BytesRate,
    /// `absent_over_time`.
    AbsentOverTime,
    /// `sum_over_time`.
    SumOverTime,
    /// `avg_over_time`.
    AvgOverTime,
    /// `min_over_time`.
    MinOverTime,
    /// `max_over_time`.
    MaxOverTime,
    /// `stddev_over_time`.
    StddevOverTime,
    /// `stdvar_over_time`.
    StdvarOverTime,
    /// `quantile_over_time`.
    QuantileOverTime,
    /// `first_over_time`.
    FirstOverTime,
    /// `last_over_time`.
    LastOverTime,
}

impl RangeOp {
    /// Every operator with its name.
    pub const ALL: [(RangeOp, &'static str); 15] = [
        (RangeOp::CountOverTime, "count_over_time"),
        (RangeOp::Rate, "rate"),
        (RangeOp::RateCounter, "rate_counter"),
        (RangeOp::BytesOverTime, "bytes_over_time"),
        (RangeOp::BytesRate, "bytes_rate"),
        (RangeOp::AbsentOverTime, "absent_over_time"),
        (RangeOp::SumOverTime, "sum_over_time"),
        (RangeOp::AvgOverTime, "avg_over_time"),
        (RangeOp::MinOverTime, "min_over_time"),
        (RangeOp::MaxOverTime, "max_over_time"),
        (RangeOp::StddevOverTime, "stddev_over_time"),
        (RangeOp::StdvarOverTime, "stdvar_over_time"),
        (RangeOp::QuantileOverTime, "quantile_over_time"),
        (RangeOp::FirstOverTime, "first_over_time"),
        (RangeOp::LastOverTime, "last_over_time"),
    ];

    /// The function name.
    pub fn name(self) -> &'static str {
        RangeOp::ALL.iter().find(|(op, _)| *op == self).map_or("", |(_, name)| name)
    }

    /// True when the function needs an `unwrap` (`rate` works both ways).
    pub fn needs_unwrap(self) -> bool {
        !matches!(
            self,
            RangeOp::CountOverTime
                | RangeOp::Rate
                | RangeOp::BytesOverTime
                | RangeOp::BytesRate
                | RangeOp::AbsentOverTime
        )
    }
}

/// Vector aggregation operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorOp {
    /// `sum`.
    Sum,
    /// `avg`.
    Avg,
    /// `min`.
    Min,
    /// `max`.
    Max,
    /// `stddev`.
    Stddev,
    /// `stdvar`.
    Stdvar,
    /// `count`.
    Count,
    /// `topk`.
    Topk,
    /// `bottomk`.
    Bottomk,
    /// `sort`.
    Sort,
    /// `sort_desc`.
    SortDesc,
}

impl VectorOp {
    /// Every operator with its name.
    pub const ALL: [(VectorOp, &'static str); 11] = [
        (VectorOp::Sum, "sum"),
        (VectorOp::Avg, "avg"),
        (VectorOp::Min, "min"),
        (VectorOp::Max, "max"),
        (VectorOp::Stddev, "stddev"),
        (VectorOp::Stdvar, "stdvar"),
        (VectorOp::Count, "count"),
        (VectorOp::Topk, "topk"),
        (VectorOp::Bottomk, "bottomk"),
        (VectorOp::Sort, "sort"),
        (VectorOp::SortDesc, "sort_desc"),
    ];

    /// The operator name.
    pub fn name(self) -> &'static str {
        VectorOp::ALL.iter().find(|(op, _)| *op == self).map_or("", |(_, name)| name)
    }
}

/// `by (a, b)` or `without (a)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grouping {
    /// True for `without`.
    pub without: bool,
    /// The labels.
    pub labels: Vec<String>,
}

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// `+`.
    Add,
    /// `-`.
    Sub,
    /// `*`.
    Mul,
    /// `/`.
    Div,
    /// `%`.
    Mod,
    /// `^`.
    Pow,
    /// A comparison.
    Compare(CompareOp),
    /// `and`.
    And,
    /// `or`.
    Or,
    /// `unless`.
    Unless,
}

impl BinaryOp {
    /// As written.
    pub fn as_str(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Mod => "%",
            BinaryOp::Pow => "^",
            BinaryOp::Compare(op) => op.as_str(),
            BinaryOp::And => "and",
            BinaryOp::Or => "or",
            BinaryOp::Unless => "unless",
        }
    }

    /// Binding strength, higher binds tighter (PromQL's table).
    pub fn precedence(self) -> u8 {
        match self {
            BinaryOp::Or => 1,
            BinaryOp::And | BinaryOp::Unless => 2,
            BinaryOp::Compare(_) => 3,
            BinaryOp::Add | BinaryOp::Sub => 4,
            BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod => 5,
            BinaryOp::Pow => 6,
        }
    }
}

/// Vector matching of a binary operation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VectorMatching {
    /// `on(...)` (true) or `ignoring(...)` (false) when `labels` is given.
    pub on: bool,
    /// The labels of `on`/`ignoring`; `None` when neither is written.
    pub labels: Option<Vec<String>>,
    /// `group_left` (Some(false)) or `group_right` (Some(true)) with their extra labels.
    pub group: Option<(bool, Vec<String>)>,
}

/// An expression producing numbers.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricExpr {
    /// `op(param, log range) by (...)`.
    RangeAggregation {
        /// The function.
        op: RangeOp,
        /// `quantile_over_time`'s quantile.
        param: Option<f64>,
        /// The log range.
        range: Box<LogRange>,
        /// Grouping (unwrapped functions only).
        grouping: Option<Grouping>,
    },
    /// `op by (...) (param, expr)`.
    VectorAggregation {
        /// The operator.
        op: VectorOp,
        /// `topk`/`bottomk`'s k.
        param: Option<f64>,
        /// The aggregated expression.
        inner: Box<MetricExpr>,
        /// Grouping.
        grouping: Option<Grouping>,
    },
    /// `lhs op rhs`.
    Binary {
        /// The operator.
        op: BinaryOp,
        /// `bool` modifier of comparisons.
        return_bool: bool,
        /// Matching modifiers.
        matching: VectorMatching,
        /// Left side.
        lhs: Box<MetricExpr>,
        /// Right side.
        rhs: Box<MetricExpr>,
    },
    /// A number.
    Literal(f64),
    /// `vector(n)`.
    Vector(f64),
    /// `label_replace(expr, "dst", "replacement", "src", "regex")`.
    LabelReplace {
        /// The expression.
        inner: Box<MetricExpr>,
        /// The label written.
        destination: String,
        /// The replacement with `$1` references.
        replacement: String,
        /// The label read.
        source: String,
        /// The anchored regex.
        regex: String,
    },
    /// `( expr )`, kept for printing.
    Paren(Box<MetricExpr>),
}

fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            other => out.push(other),
        }
    }
    out.push('"');
    out
}

/// Formats milliseconds as a LogQL duration (`5m`, `1h30m`, `250ms`).
pub fn format_duration_ms(milliseconds: i64) -> String {
    if milliseconds == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    let mut rest = milliseconds.unsigned_abs();
    if milliseconds < 0 {
        out.push('-');
    }
    for (unit, size) in [("d", 86_400_000u64), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

fn write_matcher(formatter: &mut fmt::Formatter<'_>, matcher: &Matcher) -> fmt::Result {
    write!(formatter, "{}{}{}", matcher.name, matcher.op.as_str(), quote(&matcher.value))
}

impl fmt::Display for LogExpr {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("{")?;
        for (index, matcher) in self.matchers.iter().enumerate() {
            if index > 0 {
                formatter.write_str(", ")?;
            }
            write_matcher(formatter, matcher)?;
        }
        formatter.write_str("}")?;
        for stage in &self.pipeline {
            write!(formatter, " {stage}")?;
        }
        Ok(())
    }
}

fn write_params(formatter: &mut fmt::Formatter<'_>, params: &[(String, String)]) -> fmt::Result {
    for (index, (label, expression)) in params.iter().enumerate() {
        formatter.write_str(if index == 0 { " " } else { ", " })?;
        write!(formatter, "{label}={}", quote(expression))?;
    }
    Ok(())
}

impl fmt::Display for LabelFilter {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabelFilter::And(left, right) => write!(formatter, "{left} and {right}"),
            LabelFilter::Or(left, right) => write!(formatter, "{left} or {right}"),
            LabelFilter::Matcher(matcher) => write_matcher(formatter, matcher),
            LabelFilter::Number { name, op, literal, .. } => write!(formatter, "{name}{}{literal}", op.as_str()),
            LabelFilter::Ip { name, negated, pattern } => {
                write!(formatter, "{name}{}ip({})", if *negated { "!=" } else { "=" }, quote(pattern))
            }
            LabelFilter::Paren(inner) => write!(formatter, "({inner})"),
        }
    }
}

impl fmt::Display for LabelItem {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabelItem::Name(name) => formatter.write_str(name),
            LabelItem::Matcher(matcher) => write_matcher(formatter, matcher),
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stage::LineFilter(filter) => {
                let values: Vec<String> = filter.values.iter().map(|value| quote(value)).collect();
                write!(formatter, "{} {}", filter.op.as_str(), values.join(" or "))
            }
            Stage::Parser(ParserStage::Json(params)) => {
                formatter.write_str("| json")?;
                write_params(formatter, params)
            }
            Stage::Parser(ParserStage::Logfmt { strict, keep_empty, params }) => {
                formatter.write_str("| logfmt")?;
                if *strict {
                    formatter.write_str(" --strict")?;
                }
                if *keep_empty {
                    formatter.write_str(" --keep-empty")?;
                }
                write_params(formatter, params)
            }
            Stage::Parser(ParserStage::Regexp(regex)) => write!(formatter, "| regexp {}", quote(regex)),
            Stage::Parser(ParserStage::Pattern(pattern)) => write!(formatter, "| pattern {}", quote(pattern)),
            Stage::Parser(ParserStage::Unpack) => formatter.write_str("| unpack"),
            Stage::LabelFilter(filter) => write!(formatter, "| {filter}"),
            Stage::LineFormat(template) => write!(formatter, "| line_format {}", quote(template)),
            Stage::LabelFormat(items) => {
                formatter.write_str("| label_format ")?;
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        formatter.write_str(", ")?;
                    }
                    match item {
                        LabelFormatItem::Rename { destination, source } => write!(formatter, "{destination}={source}")?,
                        LabelFormatItem::Template { destination, template } => {
                            write!(formatter, "{destination}={}", quote(template))?
                        }
                    }
                }
                Ok(())
            }
            Stage::Drop(items) | Stage::Keep(items) => {
                formatter.write_str(if matches!(self, Stage::Drop(_)) { "| drop " } else { "| keep " })?;
                let items: Vec<String> = items.iter().map(ToString::to_string).collect();
                formatter.write_str(&items.join(", "))
            }
            Stage::Decolorize => formatter.write_str("| decolorize"),
        }
    }
}

impl fmt::Display for LogRange {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.log)?;
        if let Some(unwrap) = &self.unwrap {
            match unwrap.conversion {
                UnwrapConversion::Number => write!(formatter, " | unwrap {}", unwrap.label)?,
                UnwrapConversion::Duration => write!(formatter, " | unwrap duration({})", unwrap.label)?,
                UnwrapConversion::Bytes => write!(formatter, " | unwrap bytes({})", unwrap.label)?,
            }
            for filter in &unwrap.post_filters {
                write!(formatter, " | {filter}")?;
            }
        }
        write!(formatter, " [{}]", format_duration_ms(self.range_ms))?;
        if self.offset_ms != 0 {
            write!(formatter, " offset {}", format_duration_ms(self.offset_ms))?;
        }
        Ok(())
    }
}

impl fmt::Display for Grouping {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{} ({})", if self.without { "without" } else { "by" }, self.labels.join(", "))
    }
}

fn format_number(value: f64) -> String {
    if value.is_infinite() {
        if value > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else if value.is_nan() {
        "NaN".into()
    } else {
        format!("{value}")
    }
}

impl fmt::Display for MetricExpr {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricExpr::RangeAggregation { op, param, range, grouping } => {
                write!(formatter, "{}(", op.name())?;
                if let Some(param) = param {
                    write!(formatter, "{}, ", format_number(*param))?;
                }
                write!(formatter, "{range})")?;
                if let Some(grouping) = grouping {
                    write!(formatter, " {grouping}")?;
                }
                Ok(())
            }
            MetricExpr::VectorAggregation { op, param, inner, grouping } => {
                formatter.write_str(op.name())?;
                if let Some(grouping) = grouping {
                    write!(formatter, " {grouping} ")?;
                }
                formatter.write_str("(")?;
                if let Some(param) = param {
                    write!(formatter, "{}, ", format_number(*param))?;
                }
                write!(formatter, "{inner})")
            }
            MetricExpr::Binary { op, return_bool, matching, lhs, rhs } => {
                write!(formatter, "{lhs} {}", op.as_str())?;
                if *return_bool {
                    formatter.write_str(" bool")?;
                }
                if let Some(labels) = &matching.labels {
                    write!(formatter, " {}({})", if matching.on { "on" } else { "ignoring" }, labels.join(", "))?;
                }
                if let Some((right, labels)) = &matching.group {
                    write!(formatter, " {}", if *right { "group_right" } else { "group_left" })?;
                    if !labels.is_empty() {
                        write!(formatter, "({})", labels.join(", "))?;
                    }
                }
                write!(formatter, " {rhs}")
            }
            MetricExpr::Literal(value) => formatter.write_str(&format_number(*value)),
            MetricExpr::Vector(value) => write!(formatter, "vector({})", format_number(*value)),
            MetricExpr::LabelReplace { inner, destination, replacement, source, regex } => write!(
                formatter,
                "label_replace({inner}, {}, {}, {}, {})",
                quote(destination),
                quote(replacement),
                quote(source),
                quote(regex)
            ),
            MetricExpr::Paren(inner) => write!(formatter, "({inner})"),
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Log(log) => write!(formatter, "{log}"),
            Expr::Metric(metric) => write!(formatter, "{metric}"),
        }
    }
}

/// Builds a string matcher for label filters, mapping the operator.
pub(crate) fn string_match_op(op: &str) -> Option<MatchOp> {
    match op {
        "=" | "==" => Some(MatchOp::Equal),
        "!=" => Some(MatchOp::NotEqual),
        "=~" => Some(MatchOp::Regex),
        "!~" => Some(MatchOp::NotRegex),
        _ => None,
    }
}
