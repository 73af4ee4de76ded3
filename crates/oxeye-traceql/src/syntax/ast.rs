//! The TraceQL syntax tree, as the parser builds it and the evaluator walks it.
//!
//! A query is a [`Query`]: a first spanset expression followed by pipeline stages, optionally ending in a
//! metrics function (`{ } | rate() by (resource.service.name)`).

use std::fmt;

use oxeye_model::traces::{SpanKind, StatusCode};
use regex::Regex;

/// A parsed TraceQL query.
#[derive(Debug, Clone)]
pub struct Query {
    /// The first element of the pipeline, e.g. `{ status = error } && { name = "x" }`.
    pub spansets: SpansetExpr,
    /// The stages after it, in order (`| count() > 2 | by(...)`).
    pub stages: Vec<Stage>,
    /// The metrics function that ends the pipeline, for TraceQL metrics queries.
    pub metrics: Option<MetricsFunction>,
}

impl Query {
    /// Whether the query ends in a metrics function (and so belongs to `/api/metrics/*`, not search).
    pub fn is_metrics(&self) -> bool {
        self.metrics.is_some()
    }

    /// The fields named in `select(...)` stages, in order.
    pub fn selected_fields(&self) -> impl Iterator<Item = &FieldExpr> {
        self.stages.iter().flat_map(|stage| match stage {
            Stage::Select(fields) => fields.as_slice(),
            _ => &[],
        })
    }
}

/// An expression over spansets: filters combined by logical and structural operators.
#[derive(Debug, Clone)]
pub enum SpansetExpr {
    /// `{ condition }`: the spans of the trace for which the condition holds (`{}` holds for every span).
    Filter(FieldExpr),
    /// `lhs op rhs` between spansets.
    Binary {
        /// The operator.
        op: SpansetOp,
        /// Left operand.
        lhs: Box<SpansetExpr>,
        /// Right operand.
        rhs: Box<SpansetExpr>,
    },
}

/// Operators between spansets (TraceQL "spanset operators" and "structural operators").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpansetOp {
    /// `&&`: both sides match somewhere in the trace; the result is the union of both.
    And,
    /// `||`: either side matches; the result is the union of what matched.
    Or,
    /// A structural relation between spans matched by each side.
    Structural {
        /// Which relation.
        relation: Relation,
        /// What the operator returns.
        mode: StructuralMode,
    },
}

/// The structural relation named by `>`, `>>`, `<`, `<<`, `~`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// `{a} > {b}`: b spans whose parent is an a span.
    Child,
    /// `{a} >> {b}`: b spans with an a span among their ancestors.
    Descendant,
    /// `{a} < {b}`: b spans that are the parent of an a span.
    Parent,
    /// `{a} << {b}`: b spans that are an ancestor of an a span.
    Ancestor,
    /// `{a} ~ {b}`: b spans with a sibling (same parent, another span) that is an a span.
    Sibling,
}

/// What a structural operator returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StructuralMode {
    /// `>`: the right-hand spans in the relation.
    Right,
    /// `!>`: the right-hand spans *not* in the relation.
    NotRight,
    /// `&>`: the spans of both sides that are in the relation.
    Union,
}

/// One pipeline stage after the first spanset expression.
#[derive(Debug, Clone)]
pub enum Stage {
    /// `| { ... }`: keeps, within each spanset, the spans the expression matches.
    Spansets(SpansetExpr),
    /// `| count() > 2`: keeps the spansets for which the comparison holds.
    Scalar {
        /// The aggregate on the left.
        aggregate: Aggregate,
        /// The comparison.
        op: CompareOp,
        /// The literal on the right.
        value: Literal,
    },
    /// `| by(field)`: splits each spanset by the field's value.
    By(FieldExpr),
    /// `| select(fields)`: adds the fields to the spans returned.
    Select(Vec<FieldExpr>),
    /// `| coalesce()`: merges every spanset of a trace into one.
    Coalesce,
}

/// An aggregate over the spans of a spanset.
#[derive(Debug, Clone)]
pub struct Aggregate {
    /// Which aggregate.
    pub function: AggregateFunction,
    /// Its argument (`None` for `count()`).
    pub field: Option<FieldExpr>,
}

/// The aggregates of scalar filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateFunction {
    /// `count()`: spans in the spanset.
    Count,
    /// `avg(field)`.
    Avg,
    /// `min(field)`.
    Min,
    /// `max(field)`.
    Max,
    /// `sum(field)`.
    Sum,
}

/// The metrics function ending a metrics query.
#[derive(Debug, Clone)]
pub struct MetricsFunction {
    /// Which function.
    pub kind: MetricsKind,
    /// Fields to group series by (`by(resource.service.name)`), possibly none.
    pub by: Vec<FieldExpr>,
    /// `| topk(n)` or `| bottomk(n)` after the function, if any.
    pub second_stage: Option<SecondStage>,
}

/// A stage after a metrics function, applied per step to the series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondStage {
    /// `topk(n)`: at each step, the samples of the `n` largest series.
    TopK(usize),
    /// `bottomk(n)`: at each step, the samples of the `n` smallest series.
    BottomK(usize),
}

/// TraceQL metrics functions.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricsKind {
    /// `rate()`: matching spans per second.
    Rate,
    /// `count_over_time()`: matching spans per step.
    CountOverTime,
    /// `min_over_time(field)`.
    MinOverTime(FieldExpr),
    /// `max_over_time(field)`.
    MaxOverTime(FieldExpr),
    /// `avg_over_time(field)`.
    AvgOverTime(FieldExpr),
    /// `sum_over_time(field)`.
    SumOverTime(FieldExpr),
    /// `quantile_over_time(field, q...)` with quantiles in `[0, 1]`.
    QuantileOverTime(FieldExpr, Vec<f64>),
    /// `histogram_over_time(field)`: counts per power-of-two bucket.
    HistogramOverTime(FieldExpr),
}

impl PartialEq for FieldExpr {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

/// An expression evaluated on one span: conditions, attributes, intrinsics, literals.
#[derive(Debug, Clone)]
pub enum FieldExpr {
    /// A literal.
    Literal(Literal),
    /// An attribute such as `span.http.route`, `resource.service.name` or `.request_id`.
    Attribute(AttributeRef),
    /// An intrinsic such as `duration` or `span:name`.
    Intrinsic(Intrinsic),
    /// A binary operation.
    Binary {
        /// The operator.
        op: BinaryOp,
        /// Left operand.
        lhs: Box<FieldExpr>,
        /// Right operand.
        rhs: Box<FieldExpr>,
    },
    /// `lhs =~ "re"` or `lhs !~ "re"`, compiled once. The regex is fully anchored, as Tempo's
    /// (`^(?s:pattern)$`).
    Regex {
        /// The operand matched.
        lhs: Box<FieldExpr>,
        /// The pattern as written.
        pattern: String,
        /// The compiled, anchored pattern.
        regex: Regex,
        /// `!~`.
        negated: bool,
    },
    /// `!expr`.
    Not(Box<FieldExpr>),
    /// `-expr`.
    Negate(Box<FieldExpr>),
}

/// A literal value.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `"text"` (escapes `\"`, `\\`, `\n`, `\t` decoded).
    String(String),
    /// `42`.
    Int(i64),
    /// `4.2`.
    Float(f64),
    /// `150ms`, in nanoseconds.
    Duration(i64),
    /// `true` / `false`.
    Bool(bool),
    /// `nil`: compares equal to a missing attribute.
    Nil,
    /// `ok`, `error`, `unset`.
    Status(StatusCode),
    /// `server`, `client`, `producer`, `consumer`, `internal`, `unspecified`.
    Kind(SpanKind),
}

/// Where an attribute is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AttributeScope {
    /// `.x`: the span's attributes, then its resource's.
    Unscoped,
    /// `span.x`.
    Span,
    /// `resource.x`.
    Resource,
    /// `event.x`: any event of the span.
    Event,
    /// `link.x`: any link of the span.
    Link,
    /// `instrumentation.x`: the instrumentation scope's attributes.
    Instrumentation,
}

impl AttributeScope {
    /// The scope's prefix as written (`""` for unscoped).
    pub fn prefix(self) -> &'static str {
        match self {
            AttributeScope::Unscoped => "",
            AttributeScope::Span => "span",
            AttributeScope::Resource => "resource",
            AttributeScope::Event => "event",
            AttributeScope::Link => "link",
            AttributeScope::Instrumentation => "instrumentation",
        }
    }
}

/// An attribute reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttributeRef {
    /// Where it is looked up.
    pub scope: AttributeScope,
    /// The key, e.g. `http.route`.
    pub name: String,
}

/// Intrinsic fields of spans and traces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Intrinsic {
    /// `name` / `span:name`.
    Name,
    /// `status` / `span:status`.
    Status,
    /// `statusMessage` / `span:statusMessage`.
    StatusMessage,
    /// `kind` / `span:kind`.
    Kind,
    /// `duration` / `span:duration`, nanoseconds.
    Duration,
    /// `span:id`, hex.
    SpanId,
    /// `span:parentID`, hex (nil for a root span).
    ParentId,
    /// `traceDuration` / `trace:duration`.
    TraceDuration,
    /// `rootName` / `trace:rootName`.
    RootName,
    /// `rootServiceName` / `trace:rootService`.
    RootServiceName,
    /// `trace:id`, hex.
    TraceId,
    /// `event:name`.
    EventName,
    /// `event:timeSinceStart`, from the span's start to the event.
    EventTimeSinceStart,
    /// `link:traceID`.
    LinkTraceId,
    /// `link:spanID`.
    LinkSpanId,
    /// `instrumentation:name`.
    InstrumentationName,
    /// `instrumentation:version`.
    InstrumentationVersion,
    /// `nestedSetParent`: negative (-1) for a root span, positive otherwise. Tempo numbers spans in a nested
    /// set; Grafana's Traces Drilldown only asks `nestedSetParent < 0` ("root spans"), which this keeps.
    NestedSetParent,
    /// `span:childCount`: how many stored spans name this span as parent.
    ChildCount,
}

impl Intrinsic {
    /// The intrinsic for a name as written (`name`, `span:name`, `trace:rootService`...).
    pub fn from_name(name: &str) -> Option<Intrinsic> {
        Some(match name {
            "name" | "span:name" => Intrinsic::Name,
            "status" | "span:status" => Intrinsic::Status,
            "statusMessage" | "span:statusMessage" => Intrinsic::StatusMessage,
            "kind" | "span:kind" => Intrinsic::Kind,
            "duration" | "span:duration" => Intrinsic::Duration,
            "span:id" => Intrinsic::SpanId,
            "span:parentID" => Intrinsic::ParentId,
            "traceDuration" | "trace:duration" => Intrinsic::TraceDuration,
            "rootName" | "trace:rootName" => Intrinsic::RootName,
            "rootServiceName" | "trace:rootService" => Intrinsic::RootServiceName,
            "trace:id" => Intrinsic::TraceId,
            "event:name" => Intrinsic::EventName,
            "event:timeSinceStart" => Intrinsic::EventTimeSinceStart,
            "link:traceID" => Intrinsic::LinkTraceId,
            "link:spanID" => Intrinsic::LinkSpanId,
            "instrumentation:name" => Intrinsic::InstrumentationName,
            "instrumentation:version" => Intrinsic::InstrumentationVersion,
            "nestedSetParent" => Intrinsic::NestedSetParent,
            "span:childCount" => Intrinsic::ChildCount,
            _ => return None,
        })
    }

    /// The canonical name, as Tempo lists it in `/api/v2/search/tags?scope=intrinsic`.
    pub fn name(self) -> &'static str {
        match self {
            Intrinsic::Name => "name",
            Intrinsic::Status => "status",
            Intrinsic::StatusMessage => "statusMessage",
            Intrinsic::Kind => "kind",
            Intrinsic::Duration => "duration",
            Intrinsic::SpanId => "span:id",
            Intrinsic::ParentId => "span:parentID",
            Intrinsic::TraceDuration => "traceDuration",
            Intrinsic::RootName => "rootName",
            Intrinsic::RootServiceName => "rootServiceName",
            Intrinsic::TraceId => "trace:id",
            Intrinsic::EventName => "event:name",
            Intrinsic::EventTimeSinceStart => "event:timeSinceStart",
            Intrinsic::LinkTraceId => "link:traceID",
            Intrinsic::LinkSpanId => "link:spanID",
            Intrinsic::InstrumentationName => "instrumentation:name",
            Intrinsic::InstrumentationVersion => "instrumentation:version",
            Intrinsic::NestedSetParent => "nestedSetParent",
            Intrinsic::ChildCount => "span:childCount",
        }
    }

    /// Every intrinsic name Tempo lists for `scope=intrinsic`, sorted.
    pub const ALL_NAMES: &'static [&'static str] = &[
        "duration",
        "event:name",
        "event:timeSinceStart",
        "instrumentation:name",
        "instrumentation:version",
        "kind",
        "link:spanID",
        "link:traceID",
        "name",
        "rootName",
        "rootServiceName",
        "span:duration",
        "span:id",
        "span:kind",
        "span:name",
        "span:parentID",
        "span:status",
        "span:statusMessage",
        "status",
        "statusMessage",
        "trace:duration",
        "trace:id",
        "trace:rootName",
        "trace:rootService",
        "traceDuration",
    ];
}

/// Binary operators inside a spanset filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// `&&`.
    And,
    /// `||`.
    Or,
    /// A comparison.
    Compare(CompareOp),
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
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// `=`.
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
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            CompareOp::Eq => "=",
            CompareOp::Ne => "!=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
        }
    }

    /// Whether `ordering` (of lhs against rhs) satisfies the operator.
    pub fn holds(self, ordering: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            CompareOp::Eq => ordering == Equal,
            CompareOp::Ne => ordering != Equal,
            CompareOp::Gt => ordering == Greater,
            CompareOp::Ge => ordering != Less,
            CompareOp::Lt => ordering == Less,
            CompareOp::Le => ordering != Greater,
        }
    }
}

impl BinaryOp {
    fn symbol(self) -> &'static str {
        match self {
            BinaryOp::And => "&&",
            BinaryOp::Or => "||",
            BinaryOp::Compare(op) => op.symbol(),
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Mod => "%",
            BinaryOp::Pow => "^",
        }
    }
}

/// Formats a duration in nanoseconds the way TraceQL writes it (`1.5s`, `150ms`, `0s`).
pub fn format_duration_nanos(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".to_string();
    }
    let (sign, magnitude) = if nanos < 0 { ("-", nanos.unsigned_abs()) } else { ("", nanos.unsigned_abs()) };
    let units: [(u64, &str); 6] = [
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "µs"),
        (1, "ns"),
    ];
    for (size, unit) in units {
        if magnitude >= size {
            let value = magnitude as f64 / size as f64;
            return format!("{sign}{}{unit}", trim_float(value));
        }
    }
    format!("{sign}{magnitude}ns")
}

fn trim_float(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::String(text) => write!(f, "{text:?}"),
            Literal::Int(value) => write!(f, "{value}"),
            Literal::Float(value) => write!(f, "{value}"),
            Literal::Duration(nanos) => f.write_str(&format_duration_nanos(*nanos)),
            Literal::Bool(value) => write!(f, "{value}"),
            Literal::Nil => f.write_str("nil"),
            Literal::Status(status) => f.write_str(status.as_str()),
            Literal::Kind(kind) => f.write_str(kind.as_str()),
        }
    }
}

impl fmt::Display for AttributeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plain = !self.name.is_empty()
            && self.name.chars().all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':'));
        f.write_str(self.scope.prefix())?;
        if plain { write!(f, ".{}", self.name) } else { write!(f, ".{:?}", self.name) }
    }
}

impl fmt::Display for FieldExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldExpr::Literal(literal) => write!(f, "{literal}"),
            FieldExpr::Attribute(attribute) => write!(f, "{attribute}"),
            FieldExpr::Intrinsic(intrinsic) => f.write_str(intrinsic.name()),
            FieldExpr::Binary { op, lhs, rhs } => write!(f, "({lhs} {} {rhs})", op.symbol()),
            FieldExpr::Regex { lhs, pattern, negated, .. } => {
                write!(f, "({lhs} {} {pattern:?})", if *negated { "!~" } else { "=~" })
            }
            FieldExpr::Not(inner) => write!(f, "!{inner}"),
            FieldExpr::Negate(inner) => write!(f, "-{inner}"),
        }
    }
}

impl fmt::Display for SpansetExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpansetExpr::Filter(FieldExpr::Literal(Literal::Bool(true))) => f.write_str("{ }"),
            SpansetExpr::Filter(condition) => write!(f, "{{ {condition} }}"),
            SpansetExpr::Binary { op, lhs, rhs } => {
                let symbol = match op {
                    SpansetOp::And => "&&".to_string(),
                    SpansetOp::Or => "||".to_string(),
                    SpansetOp::Structural { relation, mode } => {
                        let base = match relation {
                            Relation::Child => ">",
                            Relation::Descendant => ">>",
                            Relation::Parent => "<",
                            Relation::Ancestor => "<<",
                            Relation::Sibling => "~",
                        };
                        match mode {
                            StructuralMode::Right => base.to_string(),
                            StructuralMode::NotRight => format!("!{base}"),
                            StructuralMode::Union => format!("&{base}"),
                        }
                    }
                };
                write!(f, "({lhs} {symbol} {rhs})")
            }
        }
    }
}
