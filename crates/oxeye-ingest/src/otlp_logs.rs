//! OTLP logs (`ExportLogsServiceRequest`) into log streams, mapped the way Loki's OTLP receiver maps them
//! (<https://grafana.com/docs/loki/latest/send-data/otel/>):
//! - index-worthy resource attributes ([`INDEX_LABEL_ATTRIBUTES`]) become stream labels with `.` → `_`
//!   (`service.name` → `service_name`; `unknown_service` when absent);
//! - every other resource attribute, the scope (`scope_name`, `scope_version`, scope attributes) and
//!   each record's attributes become structured metadata, names sanitised the same way;
//! - `trace_id`/`span_id` (hex), `severity_text`, `severity_number` are kept per entry, and the severity
//!   becomes `detected_level` (and `level` when the record has no `level` attribute);
//! - the body becomes the line: a string as is, a map (structlog's event dict) as a JSON object.

use oxeye_model::logs::{LogEntry, LogStream};
use oxeye_model::{Label, Labels};
use oxeye_proto::otlp::collector::ExportLogsServiceRequest;
use oxeye_proto::otlp::common::{AnyValue, KeyValue, any_value::Value};

/// Resource attributes that become stream labels, as in Loki's default `otlp_config`.
pub const INDEX_LABEL_ATTRIBUTES: &[&str] = &[
    "service.name",
    "service.namespace",
    "service.instance.id",
    "deployment.environment",
    "deployment.environment.name",
    "cloud.region",
    "cloud.availability_zone",
    "k8s.cluster.name",
    "k8s.namespace.name",
    "k8s.pod.name",
    "k8s.container.name",
    "container.name",
    "k8s.replicaset.name",
    "k8s.deployment.name",
    "k8s.statefulset.name",
    "k8s.daemonset.name",
    "k8s.cronjob.name",
    "k8s.job.name",
];

/// Turns an attribute name into a label name: characters outside `[a-zA-Z0-9_]` become `_`.
pub fn attribute_label_name(key: &str) -> String {
    let mut name: String = key
        .chars()
        .map(|character| if character.is_ascii_alphanumeric() || character == '_' { character } else { '_' })
        .collect();
    if name.starts_with(|character: char| character.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name
}

fn any_value_json(value: &AnyValue) -> serde_json::Value {
    match &value.value {
        None => serde_json::Value::Null,
        Some(Value::StringValue(text)) => serde_json::Value::String(text.clone()),
        Some(Value::BoolValue(flag)) => serde_json::Value::Bool(*flag),
        Some(Value::IntValue(number)) => serde_json::Value::from(*number),
        Some(Value::DoubleValue(number)) => {
            serde_json::Number::from_f64(*number).map_or(serde_json::Value::Null, serde_json::Value::Number)
        }
        Some(Value::ArrayValue(array)) => serde_json::Value::Array(array.values.iter().map(any_value_json).collect()),
        Some(Value::KvlistValue(list)) => serde_json::Value::Object(
            list.values
                .iter()
                .map(|pair| (pair.key.clone(), pair.value.as_ref().map_or(serde_json::Value::Null, any_value_json)))
                .collect(),
        ),
        Some(Value::BytesValue(bytes)) => serde_json::Value::String(hex(bytes)),
    }
}

/// The text of an attribute value: strings as is, everything else as JSON.
pub fn any_value_text(value: &AnyValue) -> String {
    match &value.value {
        Some(Value::StringValue(text)) => text.clone(),
        None => String::new(),
        _ => any_value_json(value).to_string(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn push_attributes(attributes: &[KeyValue], prefix: &str, out: &mut Vec<Label>) {
    for attribute in attributes {
        let value = attribute.value.as_ref().map(any_value_text).unwrap_or_default();
        if value.is_empty() {
            continue;
        }
        out.push(Label { name: attribute_label_name(&format!("{prefix}{}", attribute.key)), value });
    }
}

/// The level name of an OTLP severity number (1-4 trace, 5-8 debug, 9-12 info, 13-16 warn, 17-20 error,
/// 21-24 fatal), or `None` when unspecified.
pub fn severity_level(severity_number: i32) -> Option<&'static str> {
    Some(match severity_number {
        1..=4 => "trace",
        5..=8 => "debug",
        9..=12 => "info",
        13..=16 => "warn",
        17..=20 => "error",
        21..=24 => "fatal",
        _ => return None,
    })
}

/// Maps the request into streams (one per distinct label set, entries in request order).
pub fn otlp_logs_to_streams(request: &ExportLogsServiceRequest) -> Vec<LogStream> {
    let mut streams: Vec<LogStream> = Vec::new();
    for resource_logs in &request.resource_logs {
        let resource_attributes: &[KeyValue] =
            resource_logs.resource.as_ref().map_or(&[], |resource| &resource.attributes);
        let mut label_pairs: Vec<(String, String)> = Vec::new();
        let mut resource_metadata: Vec<Label> = Vec::new();
        for attribute in resource_attributes {
            let value = attribute.value.as_ref().map(any_value_text).unwrap_or_default();
            if INDEX_LABEL_ATTRIBUTES.contains(&attribute.key.as_str()) {
                label_pairs.push((attribute_label_name(&attribute.key), value));
            } else if !value.is_empty() {
                resource_metadata.push(Label { name: attribute_label_name(&attribute.key), value });
            }
        }
        if !label_pairs.iter().any(|(name, value)| name == "service_name" && !value.is_empty()) {
            label_pairs.push(("service_name".into(), "unknown_service".into()));
        }
        let labels = Labels::from_pairs(label_pairs);
        let stream_index = match streams.iter().position(|stream| stream.labels == labels) {
            Some(index) => index,
            None => {
                streams.push(LogStream { labels: labels.clone(), entries: Vec::new() });
                streams.len() - 1
            }
        };
        for scope_logs in &resource_logs.scope_logs {
            let mut scope_metadata = Vec::new();
            if let Some(scope) = &scope_logs.scope {
                if !scope.name.is_empty() {
                    scope_metadata.push(Label { name: "scope_name".into(), value: scope.name.clone() });
                }
                if !scope.version.is_empty() {
                    scope_metadata.push(Label { name: "scope_version".into(), value: scope.version.clone() });
                }
                push_attributes(&scope.attributes, "", &mut scope_metadata);
            }
            for record in &scope_logs.log_records {
                let timestamp_ns =
                    if record.time_unix_nano != 0 { record.time_unix_nano } else { record.observed_time_unix_nano };
                let line = match record.body.as_ref().map(|body| &body.value) {
                    Some(Some(Value::StringValue(text))) => text.clone(),
                    Some(Some(_)) => {
                        record.body.as_ref().map(any_value_json).map(|json| json.to_string()).unwrap_or_default()
                    }
                    _ => String::new(),
                };
                let mut metadata = resource_metadata.clone();
                metadata.extend(scope_metadata.iter().cloned());
                push_attributes(&record.attributes, "", &mut metadata);
                if !record.trace_id.is_empty() {
                    metadata.push(Label { name: "trace_id".into(), value: hex(&record.trace_id) });
                }
                if !record.span_id.is_empty() {
                    metadata.push(Label { name: "span_id".into(), value: hex(&record.span_id) });
                }
                if !record.severity_text.is_empty() {
                    metadata.push(Label { name: "severity_text".into(), value: record.severity_text.clone() });
                }
                if record.severity_number != 0 {
                    metadata.push(Label { name: "severity_number".into(), value: record.severity_number.to_string() });
                }
                let level = severity_level(record.severity_number)
                    .map(str::to_string)
                    .or_else(|| (!record.severity_text.is_empty()).then(|| record.severity_text.to_lowercase()));
                if let Some(level) = level {
                    if !metadata.iter().any(|label| label.name == "level") {
                        metadata.push(Label { name: "level".into(), value: level.clone() });
                    }
                    metadata.push(Label { name: "detected_level".into(), value: level });
                }
                if !record.event_name.is_empty() {
                    metadata.push(Label { name: "event_name".into(), value: record.event_name.clone() });
                }
                streams[stream_index].entries.push(LogEntry {
                    timestamp_ns: i64::try_from(timestamp_ns).unwrap_or(i64::MAX),
                    line,
                    structured_metadata: metadata,
                });
            }
        }
    }
    streams.retain(|stream| !stream.entries.is_empty());
    streams
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::otlp::{OtlpFormat, decode_logs_request};

    #[test]
    fn resource_attributes_split_into_labels_and_metadata() {
        let body = br#"{"resourceLogs":[{"resource":{"attributes":[
            {"key":"service.name","value":{"stringValue":"boxoffice"}},
            {"key":"deployment.environment","value":{"stringValue":"acceptance"}},
            {"key":"service.version","value":{"stringValue":"1.4.2"}}]},
          "scopeLogs":[{"scope":{"name":"boxoffice.request"},"logRecords":[{
            "timeUnixNano":"1700000000000000000","severityNumber":17,"severityText":"ERROR",
            "traceId":"95a3c3b70468058d1315f7725d8ef0b9","spanId":"7212355044a4376c",
            "body":{"kvlistValue":{"values":[{"key":"event","value":{"stringValue":"checkout_failed"}},{"key":"event_id","value":{"intValue":"3"}}]}},
            "attributes":[{"key":"code.function","value":{"stringValue":"checkout"}}]}]}]}]}"#;
        let request = decode_logs_request(body, OtlpFormat::Json).unwrap();
        let streams = otlp_logs_to_streams(&request);
        assert_eq!(streams.len(), 1);
        assert_eq!(
            streams[0].labels,
            Labels::from_pairs([("service_name", "boxoffice"), ("deployment_environment", "acceptance")])
        );
        let entry = &streams[0].entries[0];
        assert_eq!(entry.line, r#"{"event":"checkout_failed","event_id":3}"#);
        assert_eq!(entry.metadata("service_version"), Some("1.4.2"));
        assert_eq!(entry.metadata("scope_name"), Some("boxoffice.request"));
        assert_eq!(entry.metadata("code_function"), Some("checkout"));
        assert_eq!(entry.metadata("trace_id"), Some("95a3c3b70468058d1315f7725d8ef0b9"));
        assert_eq!(entry.metadata("span_id"), Some("7212355044a4376c"));
        assert_eq!(entry.metadata("detected_level"), Some("error"));
        assert_eq!(entry.metadata("level"), Some("error"));
        assert_eq!(entry.timestamp_ns, 1_700_000_000_000_000_000);
    }

    #[test]
    fn captured_python_exporter_bodies_map() {
        let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/conformance/captures"));
        if !dir.exists() {
            println!("skipping: {} is absent", dir.display());
            return;
        }
        for kind in ["first", "error", "login"] {
            let body = std::fs::read(dir.join(format!("v1_logs.{kind}.bin"))).unwrap();
            let request = decode_logs_request(&body, OtlpFormat::Protobuf).unwrap();
            let streams = otlp_logs_to_streams(&request);
            assert!(!streams.is_empty(), "{kind}");
            assert_eq!(streams[0].labels.get("service_name"), Some("boxoffice"));
            let entry = &streams[0].entries[0];
            assert!(entry.metadata("detected_level").is_some(), "{kind}");
            assert!(entry.metadata("service_instance_id").is_none(), "service.instance.id is a label, not metadata");
            assert!(streams[0].labels.get("service_instance_id").is_some());
        }
    }
}
