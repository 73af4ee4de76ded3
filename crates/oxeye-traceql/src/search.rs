//! Trace search as Tempo's `/api/search` does it, and the tag names and values behind its autocomplete.
//!
//! A search runs a TraceQL query (or the legacy `tags=` form) on every trace the store yields for the time
//! window, newest first, until `limit` traces matched. Each result carries up to `spans_per_spanset` spans
//! of each matching spanset and the spanset's full `matched` count, as Tempo's `spss` parameter works.

use std::collections::{BTreeSet, HashSet};

use oxeye_model::traces::{
    Attribute, AttributeValue, SpanId, StatusCode, Trace, TraceId, TraceReader, TraceScanHints, find_attribute,
};

use crate::error::TraceQlError;
use crate::eval::{FieldValue, Spanset, TraceView, attribute_text, evaluate_view, field_value, scan_hints};
use crate::syntax::ast::*;

/// What to look for.
#[derive(Debug, Clone)]
pub enum SearchQuery {
    /// A TraceQL query (not a metrics query), boxed as it is much larger than the legacy form.
    TraceQl(Box<Query>),
    /// Tempo's legacy search: `tags=` logfmt pairs that one span must all carry (span or resource attribute
    /// whose value reads as the given text; `name` is the span name, `status.code` the status). No pairs
    /// matches every trace.
    Tags(Vec<(String, String)>),
}

/// A search request.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    /// What to look for.
    pub query: SearchQuery,
    /// Window start, nanoseconds since the epoch (inclusive): traces with a span starting in the window.
    pub start_unix_nano: u64,
    /// Window end, nanoseconds since the epoch (exclusive).
    pub end_unix_nano: u64,
    /// Only traces at least this long (earliest start to latest end), nanoseconds.
    pub min_duration_nanos: Option<u64>,
    /// Only traces at most this long, nanoseconds.
    pub max_duration_nanos: Option<u64>,
    /// The most traces returned (Tempo's default is 20).
    pub limit: usize,
    /// The most spans listed per spanset (Tempo's `spss`, default 3).
    pub spans_per_spanset: usize,
}

/// One span of a result spanset.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanSummary {
    /// The span id.
    pub span_id: SpanId,
    /// The span name.
    pub name: String,
    /// Start, nanoseconds since the epoch.
    pub start_unix_nano: u64,
    /// Duration, nanoseconds.
    pub duration_nanos: u64,
    /// The attributes the query's conditions and `select(...)` named, with the span's values.
    pub attributes: Vec<Attribute>,
}

/// One spanset of a matching trace.
#[derive(Debug, Clone, PartialEq)]
pub struct SpansetSummary {
    /// Up to `spans_per_spanset` spans.
    pub spans: Vec<SpanSummary>,
    /// How many spans matched in the spanset.
    pub matched: usize,
    /// The `by(...)` values that formed the spanset.
    pub attributes: Vec<Attribute>,
}

/// One matching trace.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSummary {
    /// The trace id.
    pub trace_id: TraceId,
    /// The root span's service, or `<root span not yet received>`.
    pub root_service_name: String,
    /// The root span's name, or `<root span not yet received>`.
    pub root_trace_name: String,
    /// Earliest span start, nanoseconds since the epoch.
    pub start_unix_nano: u64,
    /// Earliest start to latest end, nanoseconds.
    pub duration_nanos: u64,
    /// The matching spansets.
    pub spansets: Vec<SpansetSummary>,
}

/// What a search looked at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchMetrics {
    /// Traces evaluated.
    pub inspected_traces: u64,
    /// Spans in the traces evaluated.
    pub inspected_spans: u64,
}

/// The result of a search.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchResponse {
    /// Matching traces, newest first.
    pub traces: Vec<TraceSummary>,
    /// What was inspected.
    pub metrics: SearchMetrics,
}

/// Parses Tempo's legacy `tags` parameter: logfmt `key=value` pairs separated by spaces, values optionally
/// double-quoted (`service.name="box office" http.status_code=500`).
///
/// Errors: [`TraceQlError::Unsupported`] naming the pair without `=` or the unterminated quote.
pub fn parse_logfmt_tags(text: &str) -> Result<Vec<(String, String)>, TraceQlError> {
    let mut pairs = Vec::new();
    let mut characters = text.chars().peekable();
    loop {
        while characters.peek().is_some_and(|c| c.is_whitespace()) {
            characters.next();
        }
        if characters.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(&character) = characters.peek() {
            if character == '=' || character.is_whitespace() {
                break;
            }
            key.push(character);
            characters.next();
        }
        if characters.next() != Some('=') {
            return Err(TraceQlError::Unsupported(format!("tags: {key:?} has no value (expected key=value)")));
        }
        let mut value = String::new();
        if characters.peek() == Some(&'"') {
            characters.next();
            loop {
                match characters.next() {
                    Some('"') => break,
                    Some('\\') => value.extend(characters.next()),
                    Some(character) => value.push(character),
                    None => return Err(TraceQlError::Unsupported(format!("tags: unterminated quote in {key:?}"))),
                }
            }
        } else {
            while let Some(&character) = characters.peek() {
                if character.is_whitespace() {
                    break;
                }
                value.push(character);
                characters.next();
            }
        }
        pairs.push((key, value));
    }
}

fn legacy_tag_holds(view: &TraceView<'_>, index: usize, key: &str, value: &str) -> bool {
    let Some(context) = view.spans.get(index) else {
        return false;
    };
    match key {
        "name" => context.span.name == value,
        "status.code" | "status" => {
            context.span.status_code.as_str() == value || context.span.status_code.otlp_name() == value
        }
        "kind" => context.span.kind.as_str() == value,
        _ => find_attribute(&context.span.attributes, key)
            .or_else(|| find_attribute(&context.resource.attributes, key))
            .is_some_and(|found| attribute_text(found) == value),
    }
}

fn legacy_spansets(view: &TraceView<'_>, tags: &[(String, String)]) -> Vec<Spanset> {
    let spans: Vec<usize> = (0..view.spans.len())
        .filter(|index| tags.iter().all(|(key, value)| legacy_tag_holds(view, *index, key, value)))
        .collect();
    if spans.is_empty() { Vec::new() } else { vec![Spanset { spans, attributes: Vec::new() }] }
}

/// Hints for the legacy form: every `service.name` and string pair must be present.
fn legacy_hints(tags: &[(String, String)]) -> TraceScanHints {
    let mut hints = TraceScanHints::default();
    for (key, value) in tags {
        match key.as_str() {
            "name" => hints.span_name = Some(value.clone()),
            "status.code" | "status" if value == "error" || value == "STATUS_CODE_ERROR" => hints.has_error = true,
            "status.code" | "status" | "kind" => {}
            _ if value.parse::<f64>().is_ok() || value == "true" || value == "false" => {}
            _ => hints.string_attributes.push((key.clone(), value.clone())),
        }
    }
    hints
}

/// The fields whose values result spans carry: attributes named by conditions, intrinsics other than name and
/// duration named by conditions, and every `select(...)` field.
fn output_fields(query: &Query) -> Vec<FieldExpr> {
    fn from_field(expr: &FieldExpr, fields: &mut Vec<FieldExpr>) {
        match expr {
            FieldExpr::Attribute(attribute)
                if !matches!(attribute.scope, AttributeScope::Event | AttributeScope::Link) =>
            {
                push_unique(fields, expr.clone());
            }
            FieldExpr::Intrinsic(Intrinsic::Status | Intrinsic::StatusMessage | Intrinsic::Kind) => {
                push_unique(fields, expr.clone());
            }
            FieldExpr::Binary { lhs, rhs, .. } => {
                from_field(lhs, fields);
                from_field(rhs, fields);
            }
            FieldExpr::Regex { lhs, .. } | FieldExpr::Not(lhs) | FieldExpr::Negate(lhs) => from_field(lhs, fields),
            _ => {}
        }
    }
    fn from_spansets(expr: &SpansetExpr, fields: &mut Vec<FieldExpr>) {
        match expr {
            SpansetExpr::Filter(condition) => from_field(condition, fields),
            SpansetExpr::Binary { lhs, rhs, .. } => {
                from_spansets(lhs, fields);
                from_spansets(rhs, fields);
            }
        }
    }
    fn push_unique(fields: &mut Vec<FieldExpr>, field: FieldExpr) {
        if !fields.contains(&field) {
            fields.push(field);
        }
    }
    let mut fields = Vec::new();
    from_spansets(&query.spansets, &mut fields);
    for stage in &query.stages {
        if let Stage::Spansets(expr) = stage {
            from_spansets(expr, &mut fields);
        }
    }
    for field in query.selected_fields() {
        if !matches!(field, FieldExpr::Intrinsic(Intrinsic::Name | Intrinsic::Duration)) {
            push_unique(&mut fields, field.clone());
        }
    }
    fields
}

/// The key a field's value is listed under in a result span: the attribute key, or the intrinsic's name.
fn output_key(field: &FieldExpr) -> String {
    match field {
        FieldExpr::Attribute(attribute) => attribute.name.clone(),
        other => other.to_string(),
    }
}

fn summarize(
    view: &TraceView<'_>,
    spansets: Vec<Spanset>,
    fields: &[FieldExpr],
    spans_per_spanset: usize,
) -> TraceSummary {
    let spansets = spansets
        .into_iter()
        .map(|set| {
            let spans = set
                .spans
                .iter()
                .take(spans_per_spanset)
                .filter_map(|&index| {
                    let context = view.spans.get(index)?;
                    let attributes = fields
                        .iter()
                        .filter_map(|field| {
                            let value = field_value(field, view, index)?;
                            Some(Attribute { key: output_key(field), value: value.to_attribute_value() })
                        })
                        .collect();
                    Some(SpanSummary {
                        span_id: context.span.span_id,
                        name: context.span.name.clone(),
                        start_unix_nano: context.span.start_time_unix_nano,
                        duration_nanos: context.span.duration_nanos(),
                        attributes,
                    })
                })
                .collect();
            SpansetSummary {
                spans,
                matched: set.spans.len(),
                attributes: set
                    .attributes
                    .iter()
                    .map(|(key, value)| Attribute { key: key.clone(), value: value.to_attribute_value() })
                    .collect(),
            }
        })
        .collect();
    TraceSummary {
        trace_id: view.trace.trace_id,
        root_service_name: view.root_service_name().to_string(),
        root_trace_name: view.root_name().to_string(),
        start_unix_nano: view.start_unix_nano,
        duration_nanos: view.duration_nanos,
        spansets,
    }
}

/// Runs a search over `reader`.
///
/// Errors: [`TraceQlError::Unsupported`] for a metrics query; [`TraceQlError::Storage`] when the store
/// fails.
pub fn search(reader: &dyn TraceReader, request: &SearchRequest) -> Result<SearchResponse, TraceQlError> {
    let (hints, fields) = match &request.query {
        SearchQuery::TraceQl(query) => {
            if query.is_metrics() {
                return Err(TraceQlError::Unsupported(
                    "metrics queries are answered by /api/metrics/query_range, not search".into(),
                ));
            }
            (scan_hints(query), output_fields(query))
        }
        SearchQuery::Tags(tags) => (legacy_hints(tags), Vec::new()),
    };
    let mut response = SearchResponse::default();
    if request.limit == 0 {
        return Ok(response);
    }
    let mut returned: HashSet<TraceId> = HashSet::new();
    let mut visit = |trace: &Trace| -> bool {
        let view = TraceView::new(trace);
        response.metrics.inspected_traces += 1;
        response.metrics.inspected_spans += view.spans.len() as u64;
        if request.min_duration_nanos.is_some_and(|minimum| view.duration_nanos < minimum)
            || request.max_duration_nanos.is_some_and(|maximum| view.duration_nanos > maximum)
        {
            return true;
        }
        let spansets = match &request.query {
            SearchQuery::TraceQl(query) => evaluate_view(query, &view),
            SearchQuery::Tags(tags) => legacy_spansets(&view, tags),
        };
        // A store may yield a trace once per part (head and blocks); the first matching part answers.
        if !spansets.is_empty() && returned.insert(trace.trace_id) {
            response.traces.push(summarize(&view, spansets, &fields, request.spans_per_spanset));
        }
        response.traces.len() < request.limit
    };
    reader.scan_traces(request.start_unix_nano, request.end_unix_nano, &hints, &mut visit)?;
    response.traces.sort_by_key(|trace| std::cmp::Reverse(trace.start_unix_nano));
    Ok(response)
}

/// Attribute scopes of the tag APIs (`scope=` of `/api/search/tags` and `/api/v2/search/tags`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TagScope {
    /// Resource attributes.
    Resource,
    /// Span attributes.
    Span,
    /// Event attributes.
    Event,
    /// Link attributes.
    Link,
    /// Instrumentation scope attributes.
    Instrumentation,
    /// The intrinsics (fixed list).
    Intrinsic,
}

impl TagScope {
    /// The scope for its API name (`resource`, `span`, `event`, `link`, `instrumentation`, `intrinsic`).
    pub fn from_name(name: &str) -> Option<TagScope> {
        Some(match name {
            "resource" => TagScope::Resource,
            "span" => TagScope::Span,
            "event" => TagScope::Event,
            "link" => TagScope::Link,
            "instrumentation" => TagScope::Instrumentation,
            "intrinsic" => TagScope::Intrinsic,
            _ => return None,
        })
    }

    /// The API name.
    pub fn name(self) -> &'static str {
        match self {
            TagScope::Resource => "resource",
            TagScope::Span => "span",
            TagScope::Event => "event",
            TagScope::Link => "link",
            TagScope::Instrumentation => "instrumentation",
            TagScope::Intrinsic => "intrinsic",
        }
    }
}

/// Attribute keys seen per scope (intrinsics are [`Intrinsic::ALL_NAMES`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TagNames {
    /// Keys per scope, sorted.
    pub scopes: Vec<(TagScope, BTreeSet<String>)>,
}

/// Where to look for tag names and values.
#[derive(Debug, Clone)]
pub struct TagRequest {
    /// Window start, nanoseconds since the epoch (inclusive).
    pub start_unix_nano: u64,
    /// Window end, nanoseconds since the epoch (exclusive).
    pub end_unix_nano: u64,
    /// Only spans this spanset expression selects (the `q` parameter of the v2 APIs).
    pub filter: Option<SpansetExpr>,
    /// The most traces read; tags are collected from the newest traces up to this bound.
    pub max_traces: usize,
    /// The most values returned by [`tag_values`].
    pub max_values: usize,
}

fn for_each_filtered_span(
    reader: &dyn TraceReader,
    request: &TagRequest,
    visit_span: &mut dyn FnMut(&TraceView<'_>, usize),
) -> Result<(), TraceQlError> {
    let query = request.filter.clone().map(|spansets| Query { spansets, stages: Vec::new(), metrics: None });
    let hints = query.as_ref().map(scan_hints).unwrap_or_default();
    let mut traces_read = 0usize;
    let mut visit = |trace: &Trace| -> bool {
        traces_read += 1;
        let view = TraceView::new(trace);
        match &query {
            Some(query) => {
                for set in evaluate_view(query, &view) {
                    for index in set.spans {
                        visit_span(&view, index);
                    }
                }
            }
            None => {
                for index in 0..view.spans.len() {
                    visit_span(&view, index);
                }
            }
        }
        traces_read < request.max_traces
    };
    reader.scan_traces(request.start_unix_nano, request.end_unix_nano, &hints, &mut visit)?;
    Ok(())
}

/// The attribute keys of the spans in the window (those `request.filter` selects), for the given scopes
/// (every attribute scope when `scopes` is empty; the intrinsic scope is not scanned).
///
/// Errors: [`TraceQlError::Storage`] when the store fails.
pub fn tag_names(
    reader: &dyn TraceReader,
    request: &TagRequest,
    scopes: &[TagScope],
) -> Result<TagNames, TraceQlError> {
    let wanted: Vec<TagScope> = if scopes.is_empty() {
        vec![TagScope::Resource, TagScope::Span, TagScope::Event, TagScope::Link, TagScope::Instrumentation]
    } else {
        scopes.iter().copied().filter(|scope| *scope != TagScope::Intrinsic).collect()
    };
    let mut sets: Vec<(TagScope, BTreeSet<String>)> = wanted.iter().map(|scope| (*scope, BTreeSet::new())).collect();
    let mut visit = |view: &TraceView<'_>, index: usize| {
        let Some(context) = view.spans.get(index) else {
            return;
        };
        for (scope, names) in sets.iter_mut() {
            let mut add = |attributes: &[Attribute]| {
                for attribute in attributes {
                    if !names.contains(&attribute.key) {
                        names.insert(attribute.key.clone());
                    }
                }
            };
            match scope {
                TagScope::Resource => add(&context.resource.attributes),
                TagScope::Span => add(&context.span.attributes),
                TagScope::Event => context.span.events.iter().for_each(|event| add(&event.attributes)),
                TagScope::Link => context.span.links.iter().for_each(|link| add(&link.attributes)),
                TagScope::Instrumentation => add(&context.scope.attributes),
                TagScope::Intrinsic => {}
            }
        }
    };
    for_each_filtered_span(reader, request, &mut visit)?;
    Ok(TagNames { scopes: sets })
}

/// The field a tag name of the values APIs denotes: an intrinsic (`name`, `status`, `span:name`), a scoped
/// attribute (`resource.service.name`, `span.http.route`), an unscoped one (`.x`), or, as the v1 API names
/// them, a bare key (`service.name`, looked up like `.service.name`).
pub fn tag_field(tag: &str) -> FieldExpr {
    if let Some(intrinsic) = Intrinsic::from_name(tag) {
        return FieldExpr::Intrinsic(intrinsic);
    }
    let scoped = [
        ("span.", AttributeScope::Span),
        ("resource.", AttributeScope::Resource),
        ("event.", AttributeScope::Event),
        ("link.", AttributeScope::Link),
        ("instrumentation.", AttributeScope::Instrumentation),
        (".", AttributeScope::Unscoped),
    ];
    for (prefix, scope) in scoped {
        if let Some(name) = tag.strip_prefix(prefix) {
            return FieldExpr::Attribute(AttributeRef { scope, name: name.to_string() });
        }
    }
    FieldExpr::Attribute(AttributeRef { scope: AttributeScope::Unscoped, name: tag.to_string() })
}

/// The distinct values `field` takes on the spans in the window (those `request.filter` selects), in the
/// order first seen, at most `request.max_values`. For `status` and `kind`, every value seen is listed.
///
/// Errors: [`TraceQlError::Storage`] when the store fails.
pub fn tag_values(
    reader: &dyn TraceReader,
    request: &TagRequest,
    field: &FieldExpr,
) -> Result<Vec<FieldValue>, TraceQlError> {
    let mut seen: HashSet<(&'static str, String)> = HashSet::new();
    let mut values = Vec::new();
    let event_or_link_scoped = matches!(field, FieldExpr::Attribute(attribute) if matches!(attribute.scope, AttributeScope::Event | AttributeScope::Link));
    let mut visit = |view: &TraceView<'_>, index: usize| {
        if values.len() >= request.max_values {
            return;
        }
        let mut add = |value: FieldValue| {
            if values.len() < request.max_values && seen.insert((value.type_name(), value.text())) {
                values.push(value);
            }
        };
        if event_or_link_scoped {
            // Every event's (or link's) value, not only the first.
            let Some(context) = view.spans.get(index) else {
                return;
            };
            let FieldExpr::Attribute(attribute) = field else {
                return;
            };
            let lists: Vec<&[Attribute]> = if attribute.scope == AttributeScope::Event {
                context.span.events.iter().map(|event| event.attributes.as_slice()).collect()
            } else {
                context.span.links.iter().map(|link| link.attributes.as_slice()).collect()
            };
            for attributes in lists {
                if let Some(value) = find_attribute(attributes, &attribute.name) {
                    add(owned_attribute_value(value));
                }
            }
            return;
        }
        if let Some(value) = field_value(field, view, index) {
            add(value);
        }
    };
    for_each_filtered_span(reader, request, &mut visit)?;
    Ok(values)
}

fn owned_attribute_value(value: &AttributeValue) -> FieldValue {
    match value {
        AttributeValue::String(text) => FieldValue::String(text.clone()),
        AttributeValue::Bool(value) => FieldValue::Bool(*value),
        AttributeValue::Int(value) => FieldValue::Int(*value),
        AttributeValue::Double(value) => FieldValue::Float(*value),
        other => FieldValue::String(attribute_text(other)),
    }
}

/// Parses a Go duration as Tempo's parameters take them (`minDuration=1.5s`, `step=30s`, `100ms`,
/// `1h30m`, `250us`/`250µs`, `10ns`) into nanoseconds; a plain number is seconds. `None` when it does not
/// parse or is negative.
pub fn parse_go_duration_nanos(text: &str) -> Option<u64> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0 && seconds * 1e9 < u64::MAX as f64)
            .then(|| (seconds * 1e9).round() as u64);
    }
    let mut total = 0f64;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest.get(..number_end)?.parse().ok()?;
        rest = rest.get(number_end..)?;
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = rest.get(..unit_end)?;
        rest = rest.get(unit_end..)?;
        let nanos_per_unit = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += number * nanos_per_unit;
    }
    (total.is_finite() && total < u64::MAX as f64).then(|| total.round() as u64)
}

/// The status values Tempo always offers for `status` (`error`, `ok`, `unset`).
pub const STATUS_VALUES: [StatusCode; 3] = [StatusCode::Error, StatusCode::Ok, StatusCode::Unset];

#[cfg(test)]
mod tests;
