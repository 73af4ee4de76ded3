//! OTLP traces (`ExportTraceServiceRequest`, already decoded by [`crate::otlp::decode_trace_request`]) into
//! the span model of `oxeye_model::traces`, checking each span's ids as the OTLP spec requires
//! (`opentelemetry/proto/trace/v1/trace.proto`: a trace id is 16 bytes, a span id 8 bytes, both non-zero;
//! `parent_span_id` is empty for a root span or 8 bytes).
//!
//! A span with invalid ids is refused alone and counted in [`TraceConversion::rejected_spans`], which the
//! server reports as OTLP partial success (`ExportTracePartialSuccess.rejected_spans`); the other spans of
//! the request are kept. Resources and scopes left without spans are dropped.
//!
//! ```
//! use oxeye_ingest::otlp::{OtlpFormat, decode_trace_request};
//! use oxeye_ingest::otlp_traces::otlp_traces_to_model;
//! let body = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"boxoffice"}}]},
//!   "scopeSpans":[{"spans":[
//!     {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"ticket.checkout",
//!      "startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000250000000","kind":2},
//!     {"traceId":"00000000000000000000000000000000","spanId":"eee19b7ec3c1b175","name":"bad"}]}]}]}"#;
//! let request = decode_trace_request(body, OtlpFormat::Json).unwrap();
//! let converted = otlp_traces_to_model(request);
//! assert_eq!(converted.accepted_spans, 1);
//! assert_eq!(converted.rejected_spans, 1);
//! assert_eq!(converted.batches[0].resource.service_name(), Some("boxoffice"));
//! assert_eq!(converted.batches[0].scope_spans[0].spans[0].duration_nanos(), 250_000_000);
//! ```

use oxeye_model::traces::{
    Attribute, AttributeValue, Resource, ResourceSpans, Scope, ScopeSpans, Span, SpanEvent, SpanId, SpanKind, SpanLink,
    StatusCode, TraceId,
};
use oxeye_proto::otlp::collector::ExportTraceServiceRequest;
use oxeye_proto::otlp::common::{AnyValue, KeyValue, any_value};
use oxeye_proto::otlp::trace as wire;

/// The spans of one export request in model form, with what was refused.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceConversion {
    /// The valid spans, grouped by resource and scope as received (empty groups dropped).
    pub batches: Vec<ResourceSpans>,
    /// How many spans are in [`TraceConversion::batches`].
    pub accepted_spans: u64,
    /// Spans refused for invalid ids.
    pub rejected_spans: u64,
    /// The first refusal, worded for the client, e.g.
    /// `span "GET /" (resourceSpans[0].scopeSpans[1].spans[3]): trace id must be 16 bytes, not all zero (got 0)`.
    pub first_error: Option<String>,
}

/// Why a span's ids are invalid, or `None` when they are fine.
fn id_problem(span: &wire::Span) -> Option<String> {
    if span.trace_id.len() != 16 || span.trace_id.iter().all(|byte| *byte == 0) {
        return Some(format!("trace id must be 16 bytes, not all zero (got {} bytes)", span.trace_id.len()));
    }
    if span.span_id.len() != 8 || span.span_id.iter().all(|byte| *byte == 0) {
        return Some(format!("span id must be 8 bytes, not all zero (got {} bytes)", span.span_id.len()));
    }
    if !span.parent_span_id.is_empty() && span.parent_span_id.len() != 8 {
        return Some(format!("parent span id must be empty or 8 bytes (got {} bytes)", span.parent_span_id.len()));
    }
    None
}

fn trace_id_of(bytes: &[u8]) -> TraceId {
    let mut id = [0u8; 16];
    if bytes.len() == 16 {
        id.copy_from_slice(bytes);
    }
    id
}

fn span_id_of(bytes: &[u8]) -> SpanId {
    let mut id = [0u8; 8];
    if bytes.len() == 8 {
        id.copy_from_slice(bytes);
    }
    id
}

/// Converts an OTLP `AnyValue`; an unset value becomes an empty string (OTLP: "empty value").
pub fn attribute_value(value: Option<AnyValue>) -> AttributeValue {
    match value.and_then(|value| value.value) {
        None => AttributeValue::String(String::new()),
        Some(any_value::Value::StringValue(text)) => AttributeValue::String(text),
        Some(any_value::Value::BoolValue(flag)) => AttributeValue::Bool(flag),
        Some(any_value::Value::IntValue(number)) => AttributeValue::Int(number),
        Some(any_value::Value::DoubleValue(number)) => AttributeValue::Double(number),
        Some(any_value::Value::ArrayValue(array)) => {
            AttributeValue::Array(array.values.into_iter().map(|item| attribute_value(Some(item))).collect())
        }
        Some(any_value::Value::KvlistValue(list)) => AttributeValue::Map(attributes(list.values)),
        Some(any_value::Value::BytesValue(bytes)) => AttributeValue::Bytes(bytes),
    }
}

/// Converts OTLP key/values, keeping their order.
pub fn attributes(key_values: Vec<KeyValue>) -> Vec<Attribute> {
    key_values
        .into_iter()
        .map(|key_value| Attribute { key: key_value.key, value: attribute_value(key_value.value) })
        .collect()
}

fn span_of(span: wire::Span) -> Span {
    let parent_span_id = (span.parent_span_id.len() == 8 && span.parent_span_id.iter().any(|byte| *byte != 0))
        .then(|| span_id_of(&span.parent_span_id));
    let (status_code, status_message) = match span.status {
        Some(status) => (StatusCode::from_wire(status.code), status.message),
        None => (StatusCode::Unset, String::new()),
    };
    Span {
        trace_id: trace_id_of(&span.trace_id),
        span_id: span_id_of(&span.span_id),
        parent_span_id,
        trace_state: span.trace_state,
        name: span.name,
        kind: SpanKind::from_wire(span.kind),
        start_time_unix_nano: span.start_time_unix_nano,
        end_time_unix_nano: span.end_time_unix_nano,
        attributes: attributes(span.attributes),
        dropped_attributes_count: span.dropped_attributes_count,
        events: span
            .events
            .into_iter()
            .map(|event| SpanEvent {
                time_unix_nano: event.time_unix_nano,
                name: event.name,
                attributes: attributes(event.attributes),
                dropped_attributes_count: event.dropped_attributes_count,
            })
            .collect(),
        dropped_events_count: span.dropped_events_count,
        // A link with malformed ids cannot point anywhere; it is dropped, and counted as a dropped link.
        links: span
            .links
            .into_iter()
            .filter(|link| link.trace_id.len() == 16 && link.span_id.len() == 8)
            .map(|link| SpanLink {
                trace_id: trace_id_of(&link.trace_id),
                span_id: span_id_of(&link.span_id),
                trace_state: link.trace_state,
                attributes: attributes(link.attributes),
                dropped_attributes_count: link.dropped_attributes_count,
                flags: link.flags,
            })
            .collect(),
        dropped_links_count: span.dropped_links_count,
        status_code,
        status_message,
        flags: span.flags,
    }
}

/// Converts `request` into model spans, refusing spans with invalid ids one by one (see the module docs).
pub fn otlp_traces_to_model(request: ExportTraceServiceRequest) -> TraceConversion {
    let mut conversion = TraceConversion::default();
    for (resource_index, resource_spans) in request.resource_spans.into_iter().enumerate() {
        let resource = resource_spans
            .resource
            .map(|resource| Resource {
                attributes: attributes(resource.attributes),
                dropped_attributes_count: resource.dropped_attributes_count,
            })
            .unwrap_or_default();
        let mut scope_spans_out = Vec::with_capacity(resource_spans.scope_spans.len());
        for (scope_index, scope_spans) in resource_spans.scope_spans.into_iter().enumerate() {
            let scope = scope_spans
                .scope
                .map(|scope| Scope {
                    name: scope.name,
                    version: scope.version,
                    attributes: attributes(scope.attributes),
                    dropped_attributes_count: scope.dropped_attributes_count,
                })
                .unwrap_or_default();
            let mut spans = Vec::with_capacity(scope_spans.spans.len());
            for (span_index, span) in scope_spans.spans.into_iter().enumerate() {
                if let Some(problem) = id_problem(&span) {
                    conversion.rejected_spans += 1;
                    if conversion.first_error.is_none() {
                        conversion.first_error = Some(format!(
                            "span {:?} (resourceSpans[{resource_index}].scopeSpans[{scope_index}].spans[{span_index}]): {problem}",
                            span.name
                        ));
                    }
                    continue;
                }
                spans.push(span_of(span));
            }
            if spans.is_empty() {
                continue;
            }
            conversion.accepted_spans += spans.len() as u64;
            scope_spans_out.push(ScopeSpans { scope, spans, schema_url: scope_spans.schema_url });
        }
        if scope_spans_out.is_empty() {
            continue;
        }
        conversion.batches.push(ResourceSpans {
            resource,
            scope_spans: scope_spans_out,
            schema_url: resource_spans.schema_url,
        });
    }
    conversion
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::otlp::{OtlpFormat, decode_trace_request};
    use oxeye_model::traces::find_attribute;
    use oxeye_proto::otlp::trace::{ResourceSpans as WireResourceSpans, ScopeSpans as WireScopeSpans};

    fn wire_span(trace_id: Vec<u8>, span_id: Vec<u8>, parent: Vec<u8>) -> wire::Span {
        wire::Span { trace_id, span_id, parent_span_id: parent, name: "s".into(), ..wire::Span::default() }
    }

    #[test]
    fn invalid_ids_are_rejected_one_by_one() {
        let request = ExportTraceServiceRequest {
            resource_spans: vec![WireResourceSpans {
                resource: None,
                scope_spans: vec![WireScopeSpans {
                    scope: None,
                    spans: vec![
                        wire_span(vec![1; 16], vec![2; 8], vec![]),
                        wire_span(vec![0; 16], vec![2; 8], vec![]),
                        wire_span(vec![1; 15], vec![2; 8], vec![]),
                        wire_span(vec![1; 16], vec![0; 8], vec![]),
                        wire_span(vec![1; 16], vec![2; 7], vec![]),
                        wire_span(vec![1; 16], vec![3; 8], vec![9; 4]),
                        wire_span(vec![1; 16], vec![4; 8], vec![2; 8]),
                    ],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        let converted = otlp_traces_to_model(request);
        assert_eq!(converted.accepted_spans, 2);
        assert_eq!(converted.rejected_spans, 5);
        assert_eq!(
            converted.first_error.as_deref(),
            Some(
                "span \"s\" (resourceSpans[0].scopeSpans[0].spans[1]): trace id must be 16 bytes, not all zero (got 16 bytes)"
            )
        );
        let spans = &converted.batches[0].scope_spans[0].spans;
        assert_eq!(spans[0].parent_span_id, None);
        assert_eq!(spans[1].parent_span_id, Some([2; 8]));
    }

    #[test]
    fn a_request_of_only_invalid_spans_keeps_no_batch() {
        let request = ExportTraceServiceRequest {
            resource_spans: vec![WireResourceSpans {
                resource: None,
                scope_spans: vec![WireScopeSpans {
                    scope: None,
                    spans: vec![wire_span(vec![], vec![], vec![])],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        let converted = otlp_traces_to_model(request);
        assert!(converted.batches.is_empty());
        assert_eq!(converted.rejected_spans, 1);
    }

    #[test]
    fn json_enums_by_name_and_attribute_types_convert() {
        let body = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"boxoffice"}}]},
          "scopeSpans":[{"scope":{"name":"boxoffice.tickets","version":"1.0"},"spans":[{
            "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","parentSpanId":"eee19b7ec3c1b173",
            "name":"eligibility.check_membership","kind":"SPAN_KIND_INTERNAL",
            "startTimeUnixNano":1700000000000000000,"endTimeUnixNano":"1700000000100000000",
            "attributes":[{"key":"event_id","value":{"intValue":"42"}},{"key":"member","value":{"boolValue":true}},
              {"key":"ratio","value":{"doubleValue":0.5}},{"key":"tags","value":{"arrayValue":{"values":[{"stringValue":"a"}]}}}],
            "events":[{"timeUnixNano":"1700000000050000000","name":"exception","attributes":[{"key":"exception.type","value":{"stringValue":"ValueError"}}]}],
            "status":{"code":"STATUS_CODE_ERROR","message":"not a member"}}]}]}]}"#;
        let converted = otlp_traces_to_model(decode_trace_request(body, OtlpFormat::Json).unwrap());
        let batch = &converted.batches[0];
        assert_eq!(batch.scope_spans[0].scope.name, "boxoffice.tickets");
        let span = &batch.scope_spans[0].spans[0];
        assert_eq!(span.kind, SpanKind::Internal);
        assert_eq!(span.status_code, StatusCode::Error);
        assert_eq!(span.status_message, "not a member");
        assert_eq!(span.parent_span_id.map(|id| id[7]), Some(0x73));
        assert_eq!(find_attribute(&span.attributes, "event_id"), Some(&AttributeValue::Int(42)));
        assert_eq!(find_attribute(&span.attributes, "member"), Some(&AttributeValue::Bool(true)));
        assert_eq!(find_attribute(&span.attributes, "ratio"), Some(&AttributeValue::Double(0.5)));
        assert_eq!(
            find_attribute(&span.attributes, "tags"),
            Some(&AttributeValue::Array(vec![AttributeValue::String("a".into())]))
        );
        assert_eq!(span.events[0].name, "exception");
        assert_eq!(span.duration_nanos(), 100_000_000);
    }

    /// Golden test on bodies the Python OTLP exporter sent (captured for the conformance suite): the
    /// protobuf and JSON renderings of each capture convert to the same spans.
    #[test]
    fn captured_python_exporter_traces_convert() {
        let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/conformance/captures"));
        if !dir.exists() {
            println!("skipping: {} is absent", dir.display());
            return;
        }
        let mut span_names = Vec::new();
        for kind in ["first", "checkout", "error", "slow"] {
            let protobuf = std::fs::read(dir.join(format!("v1_traces.{kind}.bin"))).unwrap();
            let converted = otlp_traces_to_model(decode_trace_request(&protobuf, OtlpFormat::Protobuf).unwrap());
            assert_eq!(converted.rejected_spans, 0, "{kind}");
            assert!(converted.accepted_spans > 0, "{kind}");
            assert_eq!(converted.batches[0].resource.service_name(), Some("boxoffice"), "{kind}");
            for batch in &converted.batches {
                for span in batch.spans() {
                    assert!(span.end_time_unix_nano >= span.start_time_unix_nano, "{kind}: {}", span.name);
                    span_names.push(span.name.clone());
                }
            }
            if kind == "error" {
                let has_error = converted
                    .batches
                    .iter()
                    .flat_map(|batch| batch.spans())
                    .any(|span| span.status_code == StatusCode::Error);
                assert!(has_error, "the error capture has an error span");
            }
        }
        assert!(span_names.iter().any(|name| name == "ticket.checkout"), "{span_names:?}");
    }
}
