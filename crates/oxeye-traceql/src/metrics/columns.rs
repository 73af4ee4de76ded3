//! Metrics over span columns: which queries a store's per-block span columns can answer, and the one-span
//! trace each row is evaluated on.

use oxeye_model::traces::{
    Attribute, AttributeValue, Resource, ResourceSpans, ScopeSpans, Span, SpanColumnSet, SpanColumnsRow, Trace,
};

use crate::syntax::ast::*;

/// The span columns `query` reads when it can run on span columns alone: a single spanset filter without
/// further stages, whose condition, `by` fields and value field use only `name`, `status`, `kind`,
/// `duration`, `resource.service.name` and literals. `None` when it needs whole traces (attributes, events,
/// trace-level intrinsics, structure, pipeline stages).
pub(crate) fn span_columns_for(query: &Query) -> Option<SpanColumnSet> {
    let function = query.metrics.as_ref()?;
    if !query.stages.is_empty() {
        return None;
    }
    let SpansetExpr::Filter(condition) = &query.spansets else {
        return None;
    };
    let mut columns = SpanColumnSet::default();
    add_columns(condition, &mut columns)?;
    for field in &function.by {
        add_columns(field, &mut columns)?;
    }
    match &function.kind {
        MetricsKind::Rate | MetricsKind::CountOverTime => {}
        MetricsKind::MinOverTime(field)
        | MetricsKind::MaxOverTime(field)
        | MetricsKind::AvgOverTime(field)
        | MetricsKind::SumOverTime(field)
        | MetricsKind::QuantileOverTime(field, _)
        | MetricsKind::HistogramOverTime(field) => add_columns(field, &mut columns)?,
    }
    Some(columns)
}

/// Adds the columns `expr` reads; `None` when it reads something span columns do not hold.
fn add_columns(expr: &FieldExpr, columns: &mut SpanColumnSet) -> Option<()> {
    match expr {
        FieldExpr::Literal(_) => {}
        FieldExpr::Intrinsic(Intrinsic::Name) => columns.name = true,
        FieldExpr::Intrinsic(Intrinsic::Status) => columns.status_code = true,
        FieldExpr::Intrinsic(Intrinsic::Kind) => columns.kind = true,
        FieldExpr::Intrinsic(Intrinsic::Duration) => columns.duration = true,
        FieldExpr::Intrinsic(_) => return None,
        FieldExpr::Attribute(attribute) => {
            if attribute.scope != AttributeScope::Resource || attribute.name != "service.name" {
                return None;
            }
            columns.service_name = true;
        }
        FieldExpr::Binary { lhs, rhs, .. } => {
            add_columns(lhs, columns)?;
            add_columns(rhs, columns)?;
        }
        FieldExpr::Regex { lhs, .. } => add_columns(lhs, columns)?,
        FieldExpr::Not(inner) | FieldExpr::Negate(inner) => add_columns(inner, columns)?,
    }
    Some(())
}

/// A one-span trace refilled from each span row, so rows are evaluated by the same code as stored traces
/// without allocating a trace per row.
#[derive(Debug)]
pub(crate) struct RowTrace {
    trace: Trace,
}

impl Default for RowTrace {
    fn default() -> Self {
        let batch = ResourceSpans {
            scope_spans: vec![ScopeSpans { spans: vec![Span::default()], ..ScopeSpans::default() }],
            ..ResourceSpans::default()
        };
        RowTrace { trace: Trace { resource_spans: vec![batch], ..Trace::default() } }
    }
}

impl RowTrace {
    /// The trace holding `row` as its only span, under a resource with just the row's `service.name`.
    pub(crate) fn fill(&mut self, row: &SpanColumnsRow<'_>) -> &Trace {
        if let Some(batch) = self.trace.resource_spans.first_mut() {
            fill_resource(&mut batch.resource, row.service_name);
            if let Some(span) = batch.scope_spans.first_mut().and_then(|scope_spans| scope_spans.spans.first_mut()) {
                span.name.clear();
                span.name.push_str(row.name);
                span.kind = row.kind;
                span.status_code = row.status_code;
                span.start_time_unix_nano = row.start_time_unix_nano;
                span.end_time_unix_nano = row.start_time_unix_nano.saturating_add(row.duration_nanos);
            }
        }
        &self.trace
    }
}

fn fill_resource(resource: &mut Resource, service_name: Option<&AttributeValue>) {
    let Some(value) = service_name else {
        resource.attributes.clear();
        return;
    };
    match (resource.attributes.first_mut(), value) {
        (Some(Attribute { value: AttributeValue::String(held), .. }), AttributeValue::String(name)) => {
            held.clear();
            held.push_str(name);
        }
        _ => resource.attributes = vec![Attribute { key: "service.name".into(), value: value.clone() }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::parse;

    fn columns(query: &str) -> Option<SpanColumnSet> {
        span_columns_for(&parse(query).unwrap())
    }

    #[test]
    fn intrinsic_only_metrics_name_the_columns_they_read() {
        assert_eq!(columns("{ } | rate()"), Some(SpanColumnSet::default()));
        assert_eq!(
            columns("{ } | rate() by (resource.service.name)"),
            Some(SpanColumnSet { service_name: true, ..SpanColumnSet::default() })
        );
        assert_eq!(
            columns("{ kind = server } | quantile_over_time(duration, .5, .99)"),
            Some(SpanColumnSet { kind: true, duration: true, ..SpanColumnSet::default() })
        );
        assert_eq!(
            columns(r#"{ status = error && name =~ "GET.*" } | count_over_time() by (status)"#),
            Some(SpanColumnSet { status_code: true, name: true, ..SpanColumnSet::default() })
        );
    }

    #[test]
    fn queries_needing_whole_traces_are_not_column_scans() {
        assert_eq!(columns(r#"{ span.http.route = "/x" } | rate()"#), None);
        assert_eq!(columns("{ } | rate() by (span.http.route)"), None);
        assert_eq!(columns(r#"{ .service.name = "boxoffice" } | rate()"#), None);
        assert_eq!(columns("{ traceDuration > 1s } | rate()"), None);
        assert_eq!(columns("{ } >> { kind = client } | rate()"), None);
        assert_eq!(columns("{ kind = server } && { kind = client } | rate()"), None);
        assert_eq!(columns("{ } | count() > 2 | rate()"), None);
        assert_eq!(columns("{ } | avg_over_time(span.http.status_code)"), None);
    }

    #[test]
    fn a_row_trace_holds_the_row_and_forgets_the_previous_one() {
        let mut row_trace = RowTrace::default();
        let boxoffice = AttributeValue::String("boxoffice".into());
        let row = SpanColumnsRow {
            start_time_unix_nano: 1_000,
            duration_nanos: 500,
            service_name: Some(&boxoffice),
            name: "GET /events/",
            kind: oxeye_model::traces::SpanKind::Server,
            status_code: oxeye_model::traces::StatusCode::Error,
        };
        let trace = row_trace.fill(&row);
        let (resource, span) = trace.root().unwrap();
        assert_eq!(resource.service_name(), Some("boxoffice"));
        assert_eq!((span.name.as_str(), span.duration_nanos()), ("GET /events/", 500));
        let trace = row_trace.fill(&SpanColumnsRow { service_name: None, name: "x", ..row });
        let (resource, span) = trace.root().unwrap();
        assert_eq!(resource.service_name(), None);
        assert_eq!(span.name, "x");
        let numeric = AttributeValue::Int(7);
        let trace = row_trace.fill(&SpanColumnsRow { service_name: Some(&numeric), ..row });
        let (resource, _) = trace.root().unwrap();
        assert_eq!(oxeye_model::traces::find_attribute(&resource.attributes, "service.name"), Some(&numeric));
    }
}
