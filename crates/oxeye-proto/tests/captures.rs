//! Decodes the OTLP payloads the boxoffice test app really sent (see `shared/conformance/captures/NOTES.md`)
//! with our hand-written structs, to prove their field numbers right.

use oxeye_proto::otlp::collector::{ExportLogsServiceRequest, ExportMetricsServiceRequest, ExportTraceServiceRequest};
use oxeye_proto::otlp::common::any_value::Value;
use oxeye_proto::otlp::common::{AnyValue, KeyValue};
use oxeye_proto::otlp::metrics::metric::Data;
use oxeye_proto::otlp::trace::span::SpanKind;
use prost::Message;
use std::path::PathBuf;

fn captures_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/conformance/captures"));
    if dir.is_dir() {
        Some(dir)
    } else {
        println!("skipping: {} is absent", dir.display());
        None
    }
}

fn read_capture(name: &str) -> Option<Vec<u8>> {
    let dir = captures_dir()?;
    match std::fs::read(dir.join(name)) {
        Ok(bytes) => Some(bytes),
        Err(error) => {
            println!("skipping: cannot read capture {name}: {error}");
            None
        }
    }
}

fn string_attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes.iter().find(|attribute| attribute.key == key).and_then(|attribute| match attribute.value.as_ref() {
        Some(AnyValue { value: Some(Value::StringValue(text)) }) => Some(text.as_str()),
        _ => None,
    })
}

#[test]
fn metrics_capture_decodes_with_expected_metrics() {
    let Some(bytes) = read_capture("v1_metrics.first.bin") else { return };
    let request = ExportMetricsServiceRequest::decode(bytes.as_slice()).expect("capture decodes");
    assert_eq!(request.encode_to_vec().len(), bytes.len(), "re-encoding keeps every field");
    let resource_metrics = &request.resource_metrics[0];
    let resource = resource_metrics.resource.as_ref().expect("resource");
    assert_eq!(string_attribute(&resource.attributes, "service.name"), Some("boxoffice"));
    let scope_metrics = &resource_metrics.scope_metrics[0];
    assert_eq!(
        scope_metrics.scope.as_ref().map(|scope| scope.name.as_str()),
        Some("opentelemetry.instrumentation.django")
    );
    let names: Vec<&str> = scope_metrics.metrics.iter().map(|metric| metric.name.as_str()).collect();
    assert_eq!(names, ["http.server.active_requests", "http.server.duration"]);
    let duration = &scope_metrics.metrics[1];
    assert_eq!(duration.unit, "ms");
    let Some(Data::Histogram(histogram)) = &duration.data else { panic!("histogram expected") };
    assert_eq!(histogram.aggregation_temporality, 2);
    let point = &histogram.data_points[0];
    assert_eq!(point.explicit_bounds.len() + 1, point.bucket_counts.len());
    assert_eq!(point.explicit_bounds[1], 5.0);
    assert_eq!(point.sum, Some(2.0));
    assert_eq!(point.min, Some(2.0));
    let Some(Data::Sum(sum)) = &scope_metrics.metrics[0].data else { panic!("sum expected") };
    let exemplar = &sum.data_points[0].exemplars[0];
    assert_eq!(exemplar.trace_id.len(), 16);
    assert_eq!(exemplar.span_id.len(), 8);
}

#[test]
fn trace_captures_decode_with_span_names() {
    let mut all_names = Vec::new();
    for name in ["v1_traces.first.bin", "v1_traces.checkout.bin", "v1_traces.error.bin", "v1_traces.slow.bin"] {
        let Some(bytes) = read_capture(name) else { return };
        let request = ExportTraceServiceRequest::decode(bytes.as_slice()).expect("capture decodes");
        assert_eq!(request.encode_to_vec().len(), bytes.len(), "{name}: re-encoding keeps every field");
        for resource_spans in &request.resource_spans {
            for scope_spans in &resource_spans.scope_spans {
                for span in &scope_spans.spans {
                    assert_eq!(span.trace_id.len(), 16, "{name}: trace id length");
                    assert_eq!(span.span_id.len(), 8, "{name}: span id length");
                    assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
                    assert!(span.kind() != SpanKind::Unspecified);
                    all_names.push(span.name.clone());
                }
            }
        }
    }
    assert!(all_names.iter().any(|name| name == "ticket.checkout"), "names: {all_names:?}");
    assert!(all_names.iter().any(|name| name == "llm.api_call"), "names: {all_names:?}");
}

#[test]
fn error_trace_capture_has_error_status() {
    let Some(bytes) = read_capture("v1_traces.error.bin") else { return };
    let request = ExportTraceServiceRequest::decode(bytes.as_slice()).expect("capture decodes");
    let has_error = request
        .resource_spans
        .iter()
        .flat_map(|resource_spans| &resource_spans.scope_spans)
        .flat_map(|scope_spans| &scope_spans.spans)
        .any(|span| span.status.as_ref().is_some_and(|status| status.code == 2));
    assert!(has_error, "the error capture holds a span with STATUS_CODE_ERROR");
}

#[test]
fn log_captures_decode_with_bodies_and_trace_context() {
    for name in ["v1_logs.first.bin", "v1_logs.error.bin", "v1_logs.login.bin"] {
        let Some(bytes) = read_capture(name) else { return };
        let request = ExportLogsServiceRequest::decode(bytes.as_slice()).expect("capture decodes");
        assert_eq!(request.encode_to_vec().len(), bytes.len(), "{name}: re-encoding keeps every field");
        let records: Vec<_> = request
            .resource_logs
            .iter()
            .flat_map(|resource_logs| &resource_logs.scope_logs)
            .flat_map(|scope_logs| &scope_logs.log_records)
            .collect();
        assert!(!records.is_empty(), "{name}: has records");
        for record in &records {
            assert!(record.time_unix_nano > 0 || record.observed_time_unix_nano > 0);
            assert!(record.body.is_some(), "{name}: body present");
            assert!(record.trace_id.is_empty() || record.trace_id.len() == 16);
        }
    }
    let Some(bytes) = read_capture("v1_logs.first.bin") else { return };
    let request = ExportLogsServiceRequest::decode(bytes.as_slice()).expect("capture decodes");
    let record = &request.resource_logs[0].scope_logs[0].log_records[0];
    assert!(matches!(record.body.as_ref().and_then(|body| body.value.as_ref()), Some(Value::KvlistValue(_))));
    assert_eq!(record.trace_id.len(), 16);
}
