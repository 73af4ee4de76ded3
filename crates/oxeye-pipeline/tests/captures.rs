//! The captured boxoffice payloads (`/work/shared/conformance/captures`) hold deliberately unredacted passwords,
//! card numbers and e-mails. Their decoded views are redacted through the public API the way the ingest paths
//! will call it, and every raw secret must be gone while the `email` field stays.

use std::path::{Path, PathBuf};

use oxeye_pipeline::testing::SEED_EXAMPLES;
use oxeye_pipeline::{RedactionOptions, Redactor, StructuredValue, ValueMut};
use serde_json::Value;

fn captures_dir() -> Option<PathBuf> {
    let directory = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/conformance/captures"));
    if directory.is_dir() {
        Some(directory.to_path_buf())
    } else {
        println!("skipping: {} is absent", directory.display());
        None
    }
}

fn read_decoded(directory: &Path, name: &str) -> Value {
    let text = std::fs::read_to_string(directory.join(name)).unwrap_or_else(|error| panic!("{name}: {error}"));
    let mut document: Value = serde_json::from_str(&text).unwrap_or_else(|error| panic!("{name}: {error}"));
    document.get_mut("decoded").map(Value::take).unwrap_or_else(|| panic!("{name}: no decoded view"))
}

fn redactor() -> Redactor {
    Redactor::new(RedactionOptions::default()).unwrap_or_else(|error| panic!("{error}"))
}

/// An OTLP `AnyValue` as the ingest crate holds it, converted from and back to the OTLP/JSON view: the shape a
/// `StructuredValue` implementation for the prost type has.
#[derive(Debug)]
enum AnyValue {
    String(String),
    Int(i64),
    KvList(Vec<(String, AnyValue)>),
    Array(Vec<AnyValue>),
    Other(Value),
}

impl AnyValue {
    fn from_json(value: &Value) -> AnyValue {
        let Some(object) = value.as_object() else { return AnyValue::Other(value.clone()) };
        if let Some(text) = object.get("stringValue").and_then(Value::as_str) {
            return AnyValue::String(text.to_string());
        }
        if let Some(integer) = object.get("intValue").and_then(|integer| match integer {
            Value::String(text) => text.parse().ok(),
            other => other.as_i64(),
        }) {
            return AnyValue::Int(integer);
        }
        if let Some(values) = object.get("kvlistValue").and_then(|list| list.get("values")).and_then(Value::as_array) {
            return AnyValue::KvList(values.iter().filter_map(key_value).collect());
        }
        if let Some(values) = object.get("arrayValue").and_then(|list| list.get("values")).and_then(Value::as_array) {
            return AnyValue::Array(values.iter().map(AnyValue::from_json).collect());
        }
        AnyValue::Other(value.clone())
    }

    fn to_json(&self) -> Value {
        match self {
            AnyValue::String(text) => serde_json::json!({ "stringValue": text }),
            AnyValue::Int(integer) => serde_json::json!({ "intValue": integer.to_string() }),
            AnyValue::KvList(members) => serde_json::json!({ "kvlistValue": { "values": members.iter()
                .map(|(key, value)| serde_json::json!({ "key": key, "value": value.to_json() })).collect::<Vec<_>>() } }),
            AnyValue::Array(elements) => {
                serde_json::json!({ "arrayValue": { "values": elements.iter().map(AnyValue::to_json).collect::<Vec<_>>() } })
            }
            AnyValue::Other(value) => value.clone(),
        }
    }
}

/// `{"key": k, "value": v}`; the trimmed views' `"... 6 more"` markers are dropped.
fn key_value(member: &Value) -> Option<(String, AnyValue)> {
    let key = member.get("key")?.as_str()?.to_string();
    Some((key, AnyValue::from_json(member.get("value")?)))
}

impl StructuredValue for AnyValue {
    fn value_mut(&mut self) -> ValueMut<'_> {
        match self {
            AnyValue::String(text) => ValueMut::Text(text),
            AnyValue::Int(integer) => ValueMut::Int(*integer),
            AnyValue::KvList(_) | AnyValue::Array(_) => ValueMut::Container,
            AnyValue::Other(_) => ValueMut::Scalar,
        }
    }

    fn for_each_child_mut(&mut self, visit: &mut dyn FnMut(Option<&str>, &mut Self)) {
        match self {
            AnyValue::KvList(members) => members.iter_mut().for_each(|(key, value)| visit(Some(key), value)),
            AnyValue::Array(elements) => elements.iter_mut().for_each(|element| visit(None, element)),
            _ => {}
        }
    }

    fn set_text(&mut self, text: &str) {
        *self = AnyValue::String(text.to_string());
    }
}

/// Redacts every attribute list, log body and status message of an OTLP/JSON logs or traces view in place.
fn redact_otlp_view(redactor: &Redactor, value: &mut Value) {
    match value {
        Value::Object(object) => {
            let keys: Vec<String> = object.keys().cloned().collect();
            for key in keys {
                let Some(child) = object.get_mut(&key) else { continue };
                if key == "body" {
                    let mut body = AnyValue::from_json(child);
                    redactor.redact_structured(None, &mut body);
                    *child = body.to_json();
                } else if key == "attributes" {
                    if let Some(attributes) = child.as_array_mut() {
                        for attribute in attributes.iter_mut() {
                            if let Some((attribute_key, mut attribute_value)) = key_value(attribute) {
                                redactor.redact_structured(Some(&attribute_key), &mut attribute_value);
                                *attribute =
                                    serde_json::json!({ "key": attribute_key, "value": attribute_value.to_json() });
                            }
                        }
                    }
                } else if let (Value::String(text), "message") = (&mut *child, key.as_str()) {
                    // A span's status message is free text too (it repeats the exception message).
                    let redacted = redactor.redact_text(Some("message"), text).into_owned();
                    *text = redacted;
                } else {
                    redact_otlp_view(redactor, child);
                }
            }
        }
        Value::Array(elements) => elements.iter_mut().for_each(|element| redact_otlp_view(redactor, element)),
        _ => {}
    }
}

/// The string values under sensitive keys of kvlist bodies, found in the unredacted view.
fn sensitive_values(redactor: &Redactor, value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            if let (Some(Value::String(key)), Some(inner)) = (object.get("key"), object.get("value"))
                && redactor.is_sensitive_key(key)
            {
                match inner.get("stringValue").or_else(|| inner.get("intValue")) {
                    Some(Value::String(secret)) => out.push(secret.clone()),
                    Some(other) => out.push(other.to_string()),
                    None => {}
                }
            }
            object.values().for_each(|child| sensitive_values(redactor, child, out));
        }
        Value::Array(elements) => elements.iter().for_each(|element| sensitive_values(redactor, element, out)),
        _ => {}
    }
}

#[test]
fn otlp_log_captures_lose_every_password_and_card_number() {
    let Some(directory) = captures_dir() else { return };
    let redactor = redactor();
    for name in ["v1_logs.login.json", "v1_logs.error.json", "v1_traces.error.json"] {
        let mut view = read_decoded(&directory, name);
        let mut secrets = Vec::new();
        sensitive_values(&redactor, &view, &mut secrets);
        let original = view.to_string();
        redact_otlp_view(&redactor, &mut view);
        let redacted = view.to_string();
        for secret in &secrets {
            assert!(original.contains(secret.as_str()), "{name}: {secret}");
            assert!(!redacted.contains(secret.as_str()), "{name}: raw secret {secret:?} survived redaction");
        }
        for free_text_email in ["declined for bob.fan+88d89450@example.com", "for ann.buyer+88d89450@example.com"] {
            assert!(!redacted.contains(free_text_email), "{name}: {free_text_email}");
        }
        match name {
            "v1_logs.login.json" => {
                assert!(secrets.contains(&"s3cr3t-88d89450-correct".to_string()), "{secrets:?}");
                assert!(secrets.contains(&"Tr0ub4dor&3-88d89450".to_string()), "{secrets:?}");
                // The `email` field is kept for correlation.
                assert!(
                    redacted.contains(r#"{"key":"email","value":{"stringValue":"ann.buyer+88d89450@example.com"}}"#)
                );
            }
            "v1_logs.error.json" => {
                assert!(secrets.contains(&"5555555555554444".to_string()), "{secrets:?}");
                assert!(redacted.contains(r#"{"key":"email","value":{"stringValue":"bob.fan+88d89450@example.com"}}"#));
            }
            _ => {
                assert!(original.contains("card declined for bob.fan+88d89450@example.com"));
                assert!(redacted.contains("card declined for [EMAIL]"));
            }
        }
        // Trace ids, span ids and timestamps are untouched.
        assert_eq!(original.matches("traceId").count(), redacted.matches("traceId").count(), "{name}");
        for id in ["DikojjOvzP5y7ceGBMcIFQ==", "1795417334099727616", "EMnMVY7beuIDJxRqFXDKOw=="] {
            assert_eq!(original.contains(id), redacted.contains(id), "{name}: {id}");
        }
    }
    let stats = redactor.stats();
    assert!(stats.redactions("sensitive_key") >= 7, "{stats:?}");
    assert!(stats.redactions("email") >= 1, "{stats:?}");
}

#[test]
fn loki_push_captures_lose_every_password_card_number_and_free_text_email() {
    let Some(directory) = captures_dir() else { return };
    let redactor = redactor();
    let expectations: [(&str, &[&str], &[&str]); 2] = [
        (
            "loki_api_v1_push.login.json",
            &["s3cr3t-88d89450-correct"],
            &[r#""email": "ann.buyer+88d89450@example.com""#],
        ),
        (
            "loki_api_v1_push.error.json",
            &["4000000000000002", "declined for bob.fan+88d89450@example.com", "contacted at bob.fan"],
            &[r#""email": "bob.fan+88d89450@example.com""#, r#""card_number": "[REDACTED]""#],
        ),
    ];
    for (name, secrets, kept) in expectations {
        let view = read_decoded(&directory, name);
        let streams = view.get("streams").and_then(Value::as_array).unwrap_or_else(|| panic!("{name}: streams"));
        let mut lines = 0;
        for stream in streams {
            for entry in stream.get("values").and_then(Value::as_array).into_iter().flatten() {
                let line = entry.get(1).and_then(Value::as_str).unwrap_or_else(|| panic!("{name}: entry line"));
                lines += 1;
                let redacted = redactor.redact_line(line);
                for secret in secrets {
                    assert!(line.contains(secret), "{name}: the capture should hold {secret}");
                    assert!(!redacted.contains(secret), "{name}: raw secret {secret:?} survived: {redacted}");
                }
                for kept_text in kept {
                    assert!(redacted.contains(kept_text), "{name}: {kept_text} missing from {redacted}");
                }
                // Every other byte is as sent: the line is still the same JSON apart from the replaced values.
                let parsed: Value = serde_json::from_str(&redacted).unwrap_or_else(|error| panic!("{name}: {error}"));
                assert_eq!(
                    parsed.get("trace_id"),
                    serde_json::from_str::<Value>(line).ok().as_ref().and_then(|v| v.get("trace_id"))
                );
            }
        }
        assert_eq!(lines, 1, "{name}: python-logging-loki sends one record per request");
    }
}

#[test]
fn seed_examples_lose_their_secrets_and_keep_their_correlation_fields() {
    let redactor = redactor();
    for example in SEED_EXAMPLES {
        let redacted = redactor.redact_line(example.line);
        for secret in example.secrets {
            assert!(example.line.contains(secret), "{}: example must hold {secret}", example.name);
            assert!(!redacted.contains(secret), "{}: {secret:?} survived: {redacted}", example.name);
        }
        for kept in example.kept {
            assert!(redacted.contains(kept), "{}: {kept:?} lost: {redacted}", example.name);
        }
        assert_eq!(redactor.redact_line(&redacted), redacted, "{}: not idempotent", example.name);
    }
}
