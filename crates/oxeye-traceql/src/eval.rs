//! Evaluation of a TraceQL query on one trace.
//!
//! A trace enters the pipeline whole: the first spanset expression selects spans (one spanset per trace),
//! each stage then filters, splits (`by`) or merges (`coalesce`) spansets; the trace matches when a spanset
//! survives. Spans are identified by their index in [`TraceView::spans`] (the trace's storage order).
//!
//! Semantics (Tempo's TraceQL documentation):
//! - `.x` looks in the span's attributes, then its resource's; `event.x` and `link.x` hold when some event
//!   or link of the span satisfies the whole condition.
//! - A missing attribute makes every comparison false, except `= nil` (true) and `!= nil` (false).
//! - Integers, floats and durations compare as numbers, durations in nanoseconds. Strings compare with
//!   strings, booleans with booleans, statuses with statuses, kinds with kinds; other pairs are false.
//! - An array attribute satisfies a comparison when one of its elements does.
//! - `{a} && {b}`: both sides match in the trace; the result is every span of both. `{a} || {b}`: the spans
//!   of whichever side matched. `{a} > {b}`: the `b` spans whose parent is an `a` span (`>>` descendant,
//!   `<` parent, `<<` ancestor, `~` sibling); `!>` returns the `b` spans *not* in that relation, `&>` the
//!   spans of both sides that are.

use std::borrow::Cow;
use std::collections::HashMap;

use oxeye_model::traces::{
    Attribute, AttributeRegexHint, AttributeValue, NumericAttributeHint, Resource, Scope, Span, SpanEvent, SpanId,
    SpanKind, SpanLink, StatusCode, Trace, TraceScanHints, find_attribute, id_to_hex,
};

use crate::syntax::ast::*;

/// One span of a trace with where it came from.
#[derive(Debug, Clone, Copy)]
pub struct SpanContext<'t> {
    /// The span's resource (service).
    pub resource: &'t Resource,
    /// The instrumentation scope.
    pub scope: &'t Scope,
    /// The span.
    pub span: &'t Span,
}

/// A trace prepared for evaluation: spans flattened in storage order, with the parent of each.
#[derive(Debug)]
pub struct TraceView<'t> {
    /// The trace.
    pub trace: &'t Trace,
    /// Every span, in storage order.
    pub spans: Vec<SpanContext<'t>>,
    /// The index of each span's parent in `spans`, `None` for a root or an orphan (parent not stored).
    pub parents: Vec<Option<usize>>,
    /// The root span's index, if it arrived.
    pub root: Option<usize>,
    /// Earliest span start, nanoseconds since the epoch (0 for no spans).
    pub start_unix_nano: u64,
    /// From the earliest start to the latest end, nanoseconds.
    pub duration_nanos: u64,
}

impl<'t> TraceView<'t> {
    /// Flattens `trace` and links spans to their parents.
    pub fn new(trace: &'t Trace) -> Self {
        let mut spans = Vec::new();
        for batch in &trace.resource_spans {
            for scope_spans in &batch.scope_spans {
                for span in &scope_spans.spans {
                    spans.push(SpanContext { resource: &batch.resource, scope: &scope_spans.scope, span });
                }
            }
        }
        // Small traces (the common case) find parents by a linear search, cheaper than hashing.
        let by_id: Option<HashMap<SpanId, usize>> = (spans.len() > SMALL_TRACE_SPANS)
            .then(|| spans.iter().enumerate().map(|(index, context)| (context.span.span_id, index)).collect());
        let find = |id: &SpanId| match &by_id {
            Some(map) => map.get(id).copied(),
            None => spans.iter().position(|context| context.span.span_id == *id),
        };
        let parents = spans
            .iter()
            .enumerate()
            .map(|(index, context)| {
                let parent = find(context.span.parent_span_id.as_ref()?)?;
                // A span naming itself as parent would loop the ancestor walks.
                (parent != index).then_some(parent)
            })
            .collect();
        let root = spans.iter().position(|context| context.span.is_root());
        let start_unix_nano = spans.iter().map(|context| context.span.start_time_unix_nano).min().unwrap_or(0);
        let end = spans.iter().map(|context| context.span.end_time_unix_nano).max().unwrap_or(0);
        TraceView { trace, spans, parents, root, start_unix_nano, duration_nanos: end.saturating_sub(start_unix_nano) }
    }

    /// The root span's name, or Tempo's placeholder `<root span not yet received>`.
    pub fn root_name(&self) -> &str {
        self.root.and_then(|index| self.spans.get(index)).map_or(ROOT_NOT_RECEIVED, |context| &context.span.name)
    }

    /// The root span's `service.name`, or Tempo's placeholder `<root span not yet received>`.
    pub fn root_service_name(&self) -> &str {
        self.root
            .and_then(|index| self.spans.get(index))
            .map_or(Some(ROOT_NOT_RECEIVED), |context| context.resource.service_name())
            .unwrap_or(ROOT_NOT_RECEIVED)
    }

    fn ancestors(&self, index: usize) -> impl Iterator<Item = usize> + '_ {
        let mut current = self.parents.get(index).copied().flatten();
        let mut steps = 0;
        std::iter::from_fn(move || {
            let parent = current?;
            steps += 1;
            // Bounded: a cycle among stored parent ids must not hang the query.
            if steps > self.spans.len() {
                return None;
            }
            current = self.parents.get(parent).copied().flatten();
            Some(parent)
        })
    }
}

/// Up to this many spans, parents are found by a linear search.
const SMALL_TRACE_SPANS: usize = 32;

/// What Tempo reports as the root name and service while the root span is missing.
pub const ROOT_NOT_RECEIVED: &str = "<root span not yet received>";

/// A set of spans of one trace that matched, with the `by(...)` values that formed it.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanset {
    /// Indexes into [`TraceView::spans`], ascending.
    pub spans: Vec<usize>,
    /// `by(...)` groupings: (`by(resource.service.name)`, value).
    pub attributes: Vec<(String, FieldValue)>,
}

/// An owned field value: what `by`, `select` and metrics labels carry.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// A string.
    String(String),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A duration, nanoseconds.
    Duration(i64),
    /// A status.
    Status(StatusCode),
    /// A kind.
    Kind(SpanKind),
}

impl FieldValue {
    /// Tempo's type name in `/api/v2/search/tag/.../values`: `string`, `int`, `float`, `bool`, `duration`,
    /// `keyword` (status and kind).
    pub fn type_name(&self) -> &'static str {
        match self {
            FieldValue::String(_) => "string",
            FieldValue::Int(_) => "int",
            FieldValue::Float(_) => "float",
            FieldValue::Bool(_) => "bool",
            FieldValue::Duration(_) => "duration",
            FieldValue::Status(_) | FieldValue::Kind(_) => "keyword",
        }
    }

    /// The value as text: strings as they are, durations as `1.5s`, statuses and kinds by their TraceQL name.
    pub fn text(&self) -> String {
        match self {
            FieldValue::String(text) => text.clone(),
            FieldValue::Int(value) => value.to_string(),
            FieldValue::Float(value) => value.to_string(),
            FieldValue::Bool(value) => value.to_string(),
            FieldValue::Duration(nanos) => format_duration_nanos(*nanos),
            FieldValue::Status(status) => status.as_str().to_string(),
            FieldValue::Kind(kind) => kind.as_str().to_string(),
        }
    }

    /// The value as an OTLP attribute value (durations as integer nanoseconds, statuses and kinds as strings).
    pub fn to_attribute_value(&self) -> AttributeValue {
        match self {
            FieldValue::String(text) => AttributeValue::String(text.clone()),
            FieldValue::Int(value) | FieldValue::Duration(value) => AttributeValue::Int(*value),
            FieldValue::Float(value) => AttributeValue::Double(*value),
            FieldValue::Bool(value) => AttributeValue::Bool(*value),
            FieldValue::Status(_) | FieldValue::Kind(_) => AttributeValue::String(self.text()),
        }
    }

    /// The value as a number (durations in nanoseconds), if numeric.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            FieldValue::Int(value) | FieldValue::Duration(value) => Some(*value as f64),
            FieldValue::Float(value) => Some(*value),
            _ => None,
        }
    }
}

/// A value during evaluation, borrowing from the trace or the query.
#[derive(Debug, Clone)]
pub(crate) enum Value<'a> {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Duration(i64),
    Str(Cow<'a, str>),
    Status(StatusCode),
    Kind(SpanKind),
    Array(&'a [AttributeValue]),
}

impl<'a> Value<'a> {
    fn from_attribute(value: &'a AttributeValue) -> Value<'a> {
        match value {
            AttributeValue::String(text) => Value::Str(Cow::Borrowed(text)),
            AttributeValue::Bool(value) => Value::Bool(*value),
            AttributeValue::Int(value) => Value::Int(*value),
            AttributeValue::Double(value) => Value::Float(*value),
            AttributeValue::Array(values) => Value::Array(values),
            AttributeValue::Map(_) | AttributeValue::Bytes(_) => Value::Nil,
        }
    }

    fn from_literal(literal: &'a Literal) -> Value<'a> {
        match literal {
            Literal::String(text) => Value::Str(Cow::Borrowed(text)),
            Literal::Int(value) => Value::Int(*value),
            Literal::Float(value) => Value::Float(*value),
            Literal::Duration(value) => Value::Duration(*value),
            Literal::Bool(value) => Value::Bool(*value),
            Literal::Nil => Value::Nil,
            Literal::Status(status) => Value::Status(*status),
            Literal::Kind(kind) => Value::Kind(*kind),
        }
    }

    fn is_nil(&self) -> bool {
        matches!(self, Value::Nil)
    }

    fn truthy(&self) -> bool {
        matches!(self, Value::Bool(true))
    }

    fn number(&self) -> Option<f64> {
        match self {
            Value::Int(value) | Value::Duration(value) => Some(*value as f64),
            Value::Float(value) => Some(*value),
            _ => None,
        }
    }

    pub(crate) fn to_field_value(&self) -> Option<FieldValue> {
        Some(match self {
            Value::Nil => return None,
            Value::Bool(value) => FieldValue::Bool(*value),
            Value::Int(value) => FieldValue::Int(*value),
            Value::Float(value) => FieldValue::Float(*value),
            Value::Duration(value) => FieldValue::Duration(*value),
            Value::Str(text) => FieldValue::String(text.to_string()),
            Value::Status(status) => FieldValue::Status(*status),
            Value::Kind(kind) => FieldValue::Kind(*kind),
            Value::Array(values) => {
                let texts: Vec<String> = values.iter().map(attribute_text).collect();
                FieldValue::String(format!("[{}]", texts.join(",")))
            }
        })
    }
}

/// An attribute value as text (what the legacy `tags=` search and tag values compare).
pub fn attribute_text(value: &AttributeValue) -> String {
    match value {
        AttributeValue::String(text) => text.clone(),
        AttributeValue::Bool(value) => value.to_string(),
        AttributeValue::Int(value) => value.to_string(),
        AttributeValue::Double(value) => value.to_string(),
        AttributeValue::Array(values) => {
            format!("[{}]", values.iter().map(attribute_text).collect::<Vec<_>>().join(","))
        }
        AttributeValue::Map(entries) => {
            let parts: Vec<String> =
                entries.iter().map(|entry| format!("{}={}", entry.key, attribute_text(&entry.value))).collect();
            format!("{{{}}}", parts.join(","))
        }
        AttributeValue::Bytes(bytes) => id_to_hex(bytes),
    }
}

fn compare_values(op: CompareOp, lhs: &Value<'_>, rhs: &Value<'_>) -> bool {
    if let Value::Array(elements) = lhs {
        return elements.iter().any(|element| compare_values(op, &Value::from_attribute(element), rhs));
    }
    if let Value::Array(elements) = rhs {
        return elements.iter().any(|element| compare_values(op, lhs, &Value::from_attribute(element)));
    }
    let ordering = match (lhs, rhs) {
        (Value::Int(left), Value::Int(right)) | (Value::Duration(left), Value::Duration(right)) => left.cmp(right),
        (Value::Str(left), Value::Str(right)) => left.as_ref().cmp(right.as_ref()),
        (Value::Bool(left), Value::Bool(right)) if matches!(op, CompareOp::Eq | CompareOp::Ne) => left.cmp(right),
        (Value::Status(left), Value::Status(right)) if matches!(op, CompareOp::Eq | CompareOp::Ne) => left.cmp(right),
        (Value::Kind(left), Value::Kind(right)) if matches!(op, CompareOp::Eq | CompareOp::Ne) => left.cmp(right),
        _ => match (lhs.number(), rhs.number()) {
            (Some(left), Some(right)) => match left.partial_cmp(&right) {
                Some(ordering) => ordering,
                None => return false,
            },
            _ => return false,
        },
    };
    op.holds(ordering)
}

fn arithmetic<'a>(op: BinaryOp, lhs: Value<'a>, rhs: Value<'a>) -> Value<'a> {
    match (&lhs, &rhs) {
        (Value::Int(left), Value::Int(right)) if op != BinaryOp::Div && op != BinaryOp::Pow => {
            let result = match op {
                BinaryOp::Add => left.checked_add(*right),
                BinaryOp::Sub => left.checked_sub(*right),
                BinaryOp::Mul => left.checked_mul(*right),
                BinaryOp::Mod => left.checked_rem(*right),
                _ => None,
            };
            result.map_or(Value::Nil, Value::Int)
        }
        (Value::Duration(left), Value::Duration(right)) if matches!(op, BinaryOp::Add | BinaryOp::Sub) => {
            let result = if op == BinaryOp::Add { left.checked_add(*right) } else { left.checked_sub(*right) };
            result.map_or(Value::Nil, Value::Duration)
        }
        _ => {
            let (Some(left), Some(right)) = (lhs.number(), rhs.number()) else {
                return Value::Nil;
            };
            let result = match op {
                BinaryOp::Add => left + right,
                BinaryOp::Sub => left - right,
                BinaryOp::Mul => left * right,
                BinaryOp::Div => left / right,
                BinaryOp::Mod => left % right,
                BinaryOp::Pow => left.powf(right),
                _ => return Value::Nil,
            };
            if result.is_finite() { Value::Float(result) } else { Value::Nil }
        }
    }
}

/// Where a field is evaluated: a span, and the event or link being tried for `event.`/`link.` fields.
#[derive(Clone, Copy)]
struct Cursor<'v, 't> {
    view: &'v TraceView<'t>,
    index: usize,
    event: Option<&'t SpanEvent>,
    link: Option<&'t SpanLink>,
}

fn lookup<'t>(attributes: &'t [Attribute], name: &str) -> Value<'t> {
    find_attribute(attributes, name).map_or(Value::Nil, Value::from_attribute)
}

fn field<'a, 't: 'a>(expr: &'a FieldExpr, cursor: Cursor<'_, 't>) -> Value<'a> {
    let Some(context) = cursor.view.spans.get(cursor.index) else {
        return Value::Nil;
    };
    match expr {
        FieldExpr::Literal(literal) => Value::from_literal(literal),
        FieldExpr::Attribute(attribute) => match attribute.scope {
            AttributeScope::Span => lookup(&context.span.attributes, &attribute.name),
            AttributeScope::Resource => lookup(&context.resource.attributes, &attribute.name),
            AttributeScope::Unscoped => match lookup(&context.span.attributes, &attribute.name) {
                Value::Nil => lookup(&context.resource.attributes, &attribute.name),
                found => found,
            },
            AttributeScope::Event => {
                cursor.event.map_or(Value::Nil, |event| lookup(&event.attributes, &attribute.name))
            }
            AttributeScope::Link => cursor.link.map_or(Value::Nil, |link| lookup(&link.attributes, &attribute.name)),
            AttributeScope::Instrumentation => lookup(&context.scope.attributes, &attribute.name),
        },
        FieldExpr::Intrinsic(intrinsic) => intrinsic_value(*intrinsic, cursor, context),
        FieldExpr::Binary { op, lhs, rhs } => match op {
            BinaryOp::And => Value::Bool(field(lhs, cursor).truthy() && field(rhs, cursor).truthy()),
            BinaryOp::Or => Value::Bool(field(lhs, cursor).truthy() || field(rhs, cursor).truthy()),
            BinaryOp::Compare(compare) => {
                let left = field(lhs, cursor);
                let right = field(rhs, cursor);
                let nil_literal = |expr: &FieldExpr| matches!(expr, FieldExpr::Literal(Literal::Nil));
                if nil_literal(rhs) || nil_literal(lhs) {
                    let present = if nil_literal(rhs) { !left.is_nil() } else { !right.is_nil() };
                    return Value::Bool(match compare {
                        CompareOp::Eq => !present,
                        CompareOp::Ne => present,
                        _ => false,
                    });
                }
                if left.is_nil() || right.is_nil() {
                    return Value::Bool(false);
                }
                Value::Bool(compare_values(*compare, &left, &right))
            }
            _ => arithmetic(*op, field(lhs, cursor), field(rhs, cursor)),
        },
        FieldExpr::Regex { lhs, regex, negated, .. } => {
            let matches = |text: &str| regex.is_match(text) != *negated;
            Value::Bool(match field(lhs, cursor) {
                Value::Str(text) => matches(&text),
                Value::Array(elements) => elements.iter().any(|element| element.as_str().is_some_and(matches)),
                _ => false,
            })
        }
        FieldExpr::Not(inner) => match field(inner, cursor) {
            Value::Bool(value) => Value::Bool(!value),
            _ => Value::Nil,
        },
        FieldExpr::Negate(inner) => match field(inner, cursor) {
            Value::Int(value) => Value::Int(value.saturating_neg()),
            Value::Float(value) => Value::Float(-value),
            Value::Duration(value) => Value::Duration(value.saturating_neg()),
            _ => Value::Nil,
        },
    }
}

fn nanos_value(nanos: u64) -> Value<'static> {
    Value::Duration(i64::try_from(nanos).unwrap_or(i64::MAX))
}

fn intrinsic_value<'a, 't: 'a>(intrinsic: Intrinsic, cursor: Cursor<'_, 't>, context: &SpanContext<'t>) -> Value<'a> {
    let span = context.span;
    let view = cursor.view;
    match intrinsic {
        Intrinsic::Name => Value::Str(Cow::Borrowed(&span.name)),
        Intrinsic::Status => Value::Status(span.status_code),
        Intrinsic::StatusMessage => Value::Str(Cow::Borrowed(&span.status_message)),
        Intrinsic::Kind => Value::Kind(span.kind),
        Intrinsic::Duration => nanos_value(span.duration_nanos()),
        Intrinsic::SpanId => Value::Str(Cow::Owned(id_to_hex(&span.span_id))),
        Intrinsic::ParentId => span.parent_span_id.map_or(Value::Nil, |id| Value::Str(Cow::Owned(id_to_hex(&id)))),
        Intrinsic::TraceDuration => nanos_value(view.duration_nanos),
        Intrinsic::RootName => match view.root.and_then(|index| view.spans.get(index)) {
            Some(root) => Value::Str(Cow::Borrowed(&root.span.name)),
            None => Value::Nil,
        },
        Intrinsic::RootServiceName => match view.root.and_then(|index| view.spans.get(index)) {
            Some(root) => root.resource.service_name().map_or(Value::Nil, |name| Value::Str(Cow::Borrowed(name))),
            None => Value::Nil,
        },
        Intrinsic::TraceId => Value::Str(Cow::Owned(id_to_hex(&view.trace.trace_id))),
        Intrinsic::EventName => cursor.event.map_or(Value::Nil, |event| Value::Str(Cow::Borrowed(&event.name))),
        Intrinsic::EventTimeSinceStart => cursor
            .event
            .map_or(Value::Nil, |event| nanos_value(event.time_unix_nano.saturating_sub(span.start_time_unix_nano))),
        Intrinsic::LinkTraceId => {
            cursor.link.map_or(Value::Nil, |link| Value::Str(Cow::Owned(id_to_hex(&link.trace_id))))
        }
        Intrinsic::LinkSpanId => {
            cursor.link.map_or(Value::Nil, |link| Value::Str(Cow::Owned(id_to_hex(&link.span_id))))
        }
        Intrinsic::InstrumentationName => Value::Str(Cow::Borrowed(&context.scope.name)),
        Intrinsic::InstrumentationVersion => Value::Str(Cow::Borrowed(&context.scope.version)),
        Intrinsic::NestedSetParent => match view.parents.get(cursor.index).copied().flatten() {
            _ if span.is_root() => Value::Int(-1),
            Some(parent) => Value::Int(i64::try_from(parent).unwrap_or(i64::MAX).saturating_add(1)),
            // A parent that was not stored: not a root either.
            None => Value::Int(0),
        },
        Intrinsic::ChildCount => {
            let children = view.parents.iter().filter(|parent| **parent == Some(cursor.index)).count();
            Value::Int(i64::try_from(children).unwrap_or(i64::MAX))
        }
    }
}

/// Which per-event or per-link fields an expression reads.
#[derive(Default, Clone, Copy)]
struct Needs {
    event: bool,
    link: bool,
}

fn needs(expr: &FieldExpr) -> Needs {
    match expr {
        FieldExpr::Literal(_) => Needs::default(),
        FieldExpr::Attribute(attribute) => {
            Needs { event: attribute.scope == AttributeScope::Event, link: attribute.scope == AttributeScope::Link }
        }
        FieldExpr::Intrinsic(intrinsic) => Needs {
            event: matches!(intrinsic, Intrinsic::EventName | Intrinsic::EventTimeSinceStart),
            link: matches!(intrinsic, Intrinsic::LinkTraceId | Intrinsic::LinkSpanId),
        },
        FieldExpr::Binary { lhs, rhs, .. } => {
            let (left, right) = (needs(lhs), needs(rhs));
            Needs { event: left.event || right.event, link: left.link || right.link }
        }
        FieldExpr::Regex { lhs, .. } => needs(lhs),
        FieldExpr::Not(inner) | FieldExpr::Negate(inner) => needs(inner),
    }
}

/// Whether `condition` holds for span `index`: for `event.`/`link.` conditions, for some event or link.
fn holds(condition: &FieldExpr, needs: Needs, view: &TraceView<'_>, index: usize) -> bool {
    let Some(context) = view.spans.get(index) else {
        return false;
    };
    let base = Cursor { view, index, event: None, link: None };
    let events: Vec<Option<&SpanEvent>> = if needs.event && !context.span.events.is_empty() {
        context.span.events.iter().map(Some).collect()
    } else {
        vec![None]
    };
    let links: Vec<Option<&SpanLink>> = if needs.link && !context.span.links.is_empty() {
        context.span.links.iter().map(Some).collect()
    } else {
        vec![None]
    };
    events
        .iter()
        .any(|event| links.iter().any(|link| field(condition, Cursor { event: *event, link: *link, ..base }).truthy()))
}

/// The value of `expr` for span `index` (for event and link fields: the first event or link that has one),
/// `None` when missing.
pub fn field_value(expr: &FieldExpr, view: &TraceView<'_>, index: usize) -> Option<FieldValue> {
    let context = view.spans.get(index)?;
    let base = Cursor { view, index, event: None, link: None };
    let wants = needs(expr);
    if wants.event {
        return context
            .span
            .events
            .iter()
            .find_map(|event| field(expr, Cursor { event: Some(event), ..base }).to_field_value());
    }
    if wants.link {
        return context
            .span
            .links
            .iter()
            .find_map(|link| field(expr, Cursor { link: Some(link), ..base }).to_field_value());
    }
    field(expr, base).to_field_value()
}

/// The spans among `candidates` (ascending indexes) that `expr` selects.
fn spanset(expr: &SpansetExpr, view: &TraceView<'_>, candidates: &[usize]) -> Vec<usize> {
    match expr {
        SpansetExpr::Filter(FieldExpr::Literal(Literal::Bool(true))) => candidates.to_vec(),
        SpansetExpr::Filter(condition) => {
            let condition_needs = needs(condition);
            candidates.iter().copied().filter(|index| holds(condition, condition_needs, view, *index)).collect()
        }
        SpansetExpr::Binary { op, lhs, rhs } => {
            let left = spanset(lhs, view, candidates);
            match op {
                SpansetOp::And => {
                    if left.is_empty() {
                        return left;
                    }
                    let right = spanset(rhs, view, candidates);
                    if right.is_empty() { right } else { union(&left, &right) }
                }
                SpansetOp::Or => union(&left, &spanset(rhs, view, candidates)),
                SpansetOp::Structural { relation, mode } => {
                    let right = spanset(rhs, view, candidates);
                    structural(view, *relation, *mode, &left, &right)
                }
            }
        }
    }
}

fn union(left: &[usize], right: &[usize]) -> Vec<usize> {
    let mut merged: Vec<usize> = left.iter().chain(right).copied().collect();
    merged.sort_unstable();
    merged.dedup();
    merged
}

fn inverse(relation: Relation) -> Relation {
    match relation {
        Relation::Child => Relation::Parent,
        Relation::Parent => Relation::Child,
        Relation::Descendant => Relation::Ancestor,
        Relation::Ancestor => Relation::Descendant,
        Relation::Sibling => Relation::Sibling,
    }
}

/// For each of `targets`: whether some span of `sources` stands in `relation` to it, read as
/// `{sources} <relation> {target}` (for `Child`: the target's parent is a source).
fn related(view: &TraceView<'_>, relation: Relation, sources: &[usize], targets: &[usize]) -> Vec<bool> {
    let count = view.spans.len();
    let mut is_source = vec![false; count];
    for &index in sources {
        if let Some(slot) = is_source.get_mut(index) {
            *slot = true;
        }
    }
    let parent_of = |index: usize| view.parents.get(index).copied().flatten();
    match relation {
        Relation::Child => targets.iter().map(|&target| parent_of(target).is_some_and(|p| is_source[p])).collect(),
        Relation::Descendant => {
            targets.iter().map(|&target| view.ancestors(target).any(|ancestor| is_source[ancestor])).collect()
        }
        Relation::Parent => {
            let mut is_parent_of_source = vec![false; count];
            for &source in sources {
                if let Some(parent) = parent_of(source) {
                    is_parent_of_source[parent] = true;
                }
            }
            targets.iter().map(|&target| is_parent_of_source.get(target).copied().unwrap_or(false)).collect()
        }
        Relation::Ancestor => {
            let mut is_ancestor_of_source = vec![false; count];
            for &source in sources {
                for ancestor in view.ancestors(source) {
                    if is_ancestor_of_source[ancestor] {
                        break;
                    }
                    is_ancestor_of_source[ancestor] = true;
                }
            }
            targets.iter().map(|&target| is_ancestor_of_source.get(target).copied().unwrap_or(false)).collect()
        }
        Relation::Sibling => {
            let mut sources_per_parent: HashMap<usize, usize> = HashMap::new();
            for &source in sources {
                if let Some(parent) = parent_of(source) {
                    *sources_per_parent.entry(parent).or_default() += 1;
                }
            }
            targets
                .iter()
                .map(|&target| {
                    let Some(parent) = parent_of(target) else {
                        return false;
                    };
                    let same = sources_per_parent.get(&parent).copied().unwrap_or(0);
                    let itself = usize::from(is_source.get(target).copied().unwrap_or(false));
                    same > itself
                })
                .collect()
        }
    }
}

fn structural(
    view: &TraceView<'_>,
    relation: Relation,
    mode: StructuralMode,
    left: &[usize],
    right: &[usize],
) -> Vec<usize> {
    let right_related = related(view, relation, left, right);
    let pick = |indexes: &[usize], flags: &[bool], wanted: bool| -> Vec<usize> {
        indexes.iter().zip(flags).filter(|(_, flag)| **flag == wanted).map(|(index, _)| *index).collect()
    };
    match mode {
        StructuralMode::Right => pick(right, &right_related, true),
        StructuralMode::NotRight => pick(right, &right_related, false),
        StructuralMode::Union => {
            let right_kept = pick(right, &right_related, true);
            let left_related = related(view, inverse(relation), right, left);
            let left_kept = pick(left, &left_related, true);
            if right_kept.is_empty() { right_kept } else { union(&left_kept, &right_kept) }
        }
    }
}

fn aggregate_value(aggregate: &Aggregate, view: &TraceView<'_>, spans: &[usize]) -> Option<f64> {
    if aggregate.function == AggregateFunction::Count {
        return Some(spans.len() as f64);
    }
    let field = aggregate.field.as_ref()?;
    let values: Vec<f64> =
        spans.iter().filter_map(|index| field_value(field, view, *index).and_then(|value| value.as_f64())).collect();
    if values.is_empty() {
        return None;
    }
    Some(match aggregate.function {
        AggregateFunction::Count => values.len() as f64,
        AggregateFunction::Sum => values.iter().sum(),
        AggregateFunction::Avg => values.iter().sum::<f64>() / values.len() as f64,
        AggregateFunction::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
        AggregateFunction::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    })
}

fn literal_number(literal: &Literal) -> Option<f64> {
    match literal {
        Literal::Int(value) | Literal::Duration(value) => Some(*value as f64),
        Literal::Float(value) => Some(*value),
        _ => None,
    }
}

/// Runs the query's spanset expression and stages (not its metrics function) on a prepared trace.
pub fn evaluate_view(query: &Query, view: &TraceView<'_>) -> Vec<Spanset> {
    let all: Vec<usize> = (0..view.spans.len()).collect();
    let first = spanset(&query.spansets, view, &all);
    if first.is_empty() {
        return Vec::new();
    }
    let mut spansets = vec![Spanset { spans: first, attributes: Vec::new() }];
    for stage in &query.stages {
        spansets = apply_stage(stage, view, spansets);
        if spansets.is_empty() {
            break;
        }
    }
    spansets
}

/// Runs the query's spanset expression and stages on `trace`; span indexes refer to
/// `TraceView::new(trace).spans`. Empty when the trace does not match.
pub fn evaluate(query: &Query, trace: &Trace) -> Vec<Spanset> {
    evaluate_view(query, &TraceView::new(trace))
}

fn apply_stage(stage: &Stage, view: &TraceView<'_>, spansets: Vec<Spanset>) -> Vec<Spanset> {
    match stage {
        Stage::Spansets(expr) => spansets
            .into_iter()
            .filter_map(|set| {
                let spans = spanset(expr, view, &set.spans);
                (!spans.is_empty()).then_some(Spanset { spans, attributes: set.attributes })
            })
            .collect(),
        Stage::Scalar { aggregate, op, value } => spansets
            .into_iter()
            .filter(|set| {
                let (Some(left), Some(right)) = (aggregate_value(aggregate, view, &set.spans), literal_number(value))
                else {
                    return false;
                };
                left.partial_cmp(&right).is_some_and(|ordering| op.holds(ordering))
            })
            .collect(),
        Stage::By(expr) => {
            let key = format!("by({expr})");
            let mut grouped: Vec<Spanset> = Vec::new();
            for set in spansets {
                let mut groups: Vec<(FieldValue, Vec<usize>)> = Vec::new();
                for index in set.spans {
                    let Some(value) = field_value(expr, view, index) else {
                        continue;
                    };
                    match groups.iter_mut().find(|(existing, _)| *existing == value) {
                        Some((_, spans)) => spans.push(index),
                        None => groups.push((value, vec![index])),
                    }
                }
                for (value, spans) in groups {
                    let mut attributes = set.attributes.clone();
                    attributes.push((key.clone(), value));
                    grouped.push(Spanset { spans, attributes });
                }
            }
            grouped
        }
        Stage::Select(_) => spansets,
        Stage::Coalesce => {
            let mut spans: Vec<usize> = spansets.into_iter().flat_map(|set| set.spans).collect();
            spans.sort_unstable();
            spans.dedup();
            if spans.is_empty() { Vec::new() } else { vec![Spanset { spans, attributes: Vec::new() }] }
        }
    }
}

/// The conditions every trace matching `query` must meet, for a store to skip what cannot match.
///
/// Collected from the conjunctive parts only (`&&` inside a filter, `&&` and the positive structural
/// operators between spansets, later spanset stages): `resource.service.name = "x"`, `name = "x"`,
/// `duration > d` / `>= d`, `status = error` and `span.`/`resource.`/`.x = "string"`.
pub fn scan_hints(query: &Query) -> TraceScanHints {
    let mut hints = TraceScanHints::default();
    collect_spanset_hints(&query.spansets, &mut hints);
    for stage in &query.stages {
        if let Stage::Spansets(expr) = stage {
            collect_spanset_hints(expr, &mut hints);
        }
    }
    hints
}

fn collect_spanset_hints(expr: &SpansetExpr, hints: &mut TraceScanHints) {
    match expr {
        SpansetExpr::Filter(condition) => collect_field_hints(condition, hints),
        SpansetExpr::Binary { op, lhs, rhs } => match op {
            SpansetOp::Or => {}
            SpansetOp::And | SpansetOp::Structural { mode: StructuralMode::Right | StructuralMode::Union, .. } => {
                collect_spanset_hints(lhs, hints);
                collect_spanset_hints(rhs, hints);
            }
            SpansetOp::Structural { mode: StructuralMode::NotRight, .. } => collect_spanset_hints(rhs, hints),
        },
    }
}

/// Whether a hint on `attribute` may name any scope the store's trace-level check looks at (it checks every
/// attribute of the trace, whatever its scope, so only the scopes with a definite key qualify).
fn is_hinted_scope(attribute: &AttributeRef) -> bool {
    matches!(attribute.scope, AttributeScope::Span | AttributeScope::Resource | AttributeScope::Unscoped)
}

fn collect_field_hints(condition: &FieldExpr, hints: &mut TraceScanHints) {
    if let FieldExpr::Regex { lhs, regex, negated: false, .. } = condition
        && let FieldExpr::Attribute(attribute) = lhs.as_ref()
        && is_hinted_scope(attribute)
    {
        hints.attribute_regexes.push(AttributeRegexHint { key: attribute.name.clone(), regex: regex.clone() });
        return;
    }
    let FieldExpr::Binary { op, lhs, rhs } = condition else {
        return;
    };
    if let (BinaryOp::Compare(compare), FieldExpr::Attribute(attribute), FieldExpr::Literal(literal)) =
        (op, lhs.as_ref(), rhs.as_ref())
        && is_hinted_scope(attribute)
    {
        let bound = match literal {
            Literal::Int(value) => Some(*value as f64),
            Literal::Float(value) => Some(*value),
            _ => None,
        };
        let range = bound.and_then(|bound| match compare {
            CompareOp::Eq => Some((bound, bound)),
            CompareOp::Gt | CompareOp::Ge => Some((bound, f64::INFINITY)),
            CompareOp::Lt | CompareOp::Le => Some((f64::NEG_INFINITY, bound)),
            _ => None,
        });
        if let Some((min, max)) = range {
            hints.numeric_attributes.push(NumericAttributeHint { key: attribute.name.clone(), min, max });
            return;
        }
    }
    match (op, lhs.as_ref(), rhs.as_ref()) {
        (BinaryOp::And, _, _) => {
            collect_field_hints(lhs, hints);
            collect_field_hints(rhs, hints);
        }
        (
            BinaryOp::Compare(CompareOp::Eq),
            FieldExpr::Attribute(attribute),
            FieldExpr::Literal(Literal::String(value)),
        ) => {
            if attribute.scope == AttributeScope::Resource && attribute.name == "service.name" {
                hints.service_name.get_or_insert_with(|| value.clone());
            } else if matches!(
                attribute.scope,
                AttributeScope::Span | AttributeScope::Resource | AttributeScope::Unscoped
            ) {
                hints.string_attributes.push((attribute.name.clone(), value.clone()));
            }
        }
        (
            BinaryOp::Compare(CompareOp::Eq),
            FieldExpr::Intrinsic(Intrinsic::Name),
            FieldExpr::Literal(Literal::String(value)),
        ) => {
            hints.span_name.get_or_insert_with(|| value.clone());
        }
        (
            BinaryOp::Compare(CompareOp::Eq),
            FieldExpr::Intrinsic(Intrinsic::Status),
            FieldExpr::Literal(Literal::Status(StatusCode::Error)),
        ) => hints.has_error = true,
        (
            BinaryOp::Compare(compare @ (CompareOp::Gt | CompareOp::Ge)),
            FieldExpr::Intrinsic(Intrinsic::Duration),
            literal,
        ) => {
            let nanos = match literal {
                FieldExpr::Literal(Literal::Duration(nanos) | Literal::Int(nanos)) => *nanos,
                _ => return,
            };
            let minimum = if *compare == CompareOp::Gt { nanos.saturating_add(1) } else { nanos };
            let minimum = u64::try_from(minimum).unwrap_or(0);
            let current = hints.min_span_duration_nanos.unwrap_or(0);
            hints.min_span_duration_nanos = Some(current.max(minimum));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
