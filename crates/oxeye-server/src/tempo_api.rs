//! The Tempo API's trace-by-id half and its probes: `GET /api/traces/<id>`, `GET /api/v2/traces/<id>`,
//! `GET /api/echo`, `GET /api/status/buildinfo`. Search, tags and TraceQL live in `traceql_api.rs`.
//!
//! Source: <https://grafana.com/docs/tempo/latest/api_docs/> and Tempo's `pkg/tempopb/tempo.proto`
//! (shapes in `protocols.md` §4):
//! - `/api/traces/<id>?start=&end=` (unix seconds): `Accept: application/protobuf` → `tempopb.Trace`;
//!   otherwise JSON `{"batches":[ResourceSpans..]}` as Tempo writes it with Go's `jsonpb` marshaler: ids in
//!   standard base64 (not OTLP/JSON's hex; grafana/tempo#5437), enums by name (`SPAN_KIND_SERVER`,
//!   `STATUS_CODE_ERROR`), 64-bit integers as decimal strings.
//! - `/api/v2/traces/<id>`: `TraceByIDResponse`, JSON `{"trace":{"resourceSpans":[..]},"status":"COMPLETE"}`.
//! - A trace with no stored span: 404 `trace not found`; an id that is not 1-32 hex digits or is zero, or a
//!   bad `start`/`end`: 400 naming the problem; the store still starting: 503.
//!
//! Spans come from the trace reader slot ([`ServerState::trace_reader`]).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use oxeye_model::traces::{Attribute, AttributeValue, ResourceSpans, Span, SpanKind, Trace, trace_id_from_hex};
use oxeye_proto::otlp::common::{AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value};
use oxeye_proto::otlp::resource::Resource as WireResource;
use oxeye_proto::otlp::trace as wire;
use oxeye_proto::tempo::{PartialStatus, TraceByIdMetrics, TraceByIdResponse};
use prost::Message;
use serde_json::{Value, json};

use crate::ServerState;
use crate::error::write_status;

pub(crate) fn routes() -> Router<Arc<ServerState>> {
    Router::new()
        .route("/api/traces/{trace_id}", get(trace_by_id_v1))
        .route("/api/v2/traces/{trace_id}", get(trace_by_id_v2))
        .route("/api/echo", get(echo))
        .route("/api/status/buildinfo", get(buildinfo))
}

/// A Tempo API error: status and plain-text body, as Tempo answers.
pub(crate) struct TempoError {
    status: StatusCode,
    message: String,
}

impl TempoError {
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        TempoError { status: StatusCode::BAD_REQUEST, message: message.into() }
    }
}

impl From<oxeye_model::storage::StorageError> for TempoError {
    fn from(error: oxeye_model::storage::StorageError) -> Self {
        TempoError { status: write_status(error.kind()), message: error.to_string() }
    }
}

impl IntoResponse for TempoError {
    fn into_response(self) -> Response {
        (self.status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{}\n", self.message))
            .into_response()
    }
}

async fn echo() -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "echo").into_response()
}

async fn buildinfo(State(state): State<Arc<ServerState>>) -> Response {
    let body = json!({
        "version": state.options.version,
        "revision": "",
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    });
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// `start`/`end` of a by-id request, unix seconds.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct TraceByIdParams {
    start: Option<String>,
    end: Option<String>,
}

/// The window `[start s, end s]` as nanoseconds `[start, end + 1 s)`, or `None` when neither is given.
fn window_of(params: &TraceByIdParams) -> Result<Option<(u64, u64)>, TempoError> {
    let seconds = |name: &str, text: &Option<String>| -> Result<Option<u64>, TempoError> {
        match text.as_deref() {
            None | Some("") => Ok(None),
            Some(text) => text
                .parse::<u64>()
                .map(Some)
                .map_err(|_| TempoError::bad_request(format!("invalid {name} {text:?}: expected unix seconds"))),
        }
    };
    let start = seconds("start", &params.start)?;
    let end = seconds("end", &params.end)?;
    if start.is_none() && end.is_none() {
        return Ok(None);
    }
    let start_nanos = start.unwrap_or(0).saturating_mul(1_000_000_000);
    let end_nanos = end.map_or(u64::MAX, |end| end.saturating_add(1).saturating_mul(1_000_000_000));
    if start_nanos >= end_nanos {
        return Err(TempoError::bad_request("invalid start and end: start must be before end"));
    }
    Ok(Some((start_nanos, end_nanos)))
}

async fn find_trace(
    state: &Arc<ServerState>,
    trace_id_text: &str,
    params: &TraceByIdParams,
) -> Result<Trace, TempoError> {
    let trace_id = trace_id_from_hex(trace_id_text).ok_or_else(|| {
        TempoError::bad_request(format!(
            "invalid trace id {trace_id_text:?}: expected 1 to 32 hex digits, not all zero"
        ))
    })?;
    let window = window_of(params)?;
    let reader = state.trace_reader().cloned().ok_or_else(|| TempoError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: "trace storage is starting up (WAL replay in progress)".into(),
    })?;
    let found =
        tokio::task::spawn_blocking(move || reader.trace_by_id(&trace_id, window)).await.map_err(|error| {
            TempoError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message: format!("trace lookup task failed: {error}"),
            }
        })??;
    found.ok_or(TempoError { status: StatusCode::NOT_FOUND, message: "trace not found".into() })
}

fn wants_protobuf(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("application/protobuf") || accept.contains("application/x-protobuf"))
}

async fn trace_by_id_v1(
    State(state): State<Arc<ServerState>>,
    Path(trace_id): Path<String>,
    Query(params): Query<TraceByIdParams>,
    headers: HeaderMap,
) -> Response {
    let trace = match find_trace(&state, &trace_id, &params).await {
        Ok(trace) => trace,
        Err(error) => return error.into_response(),
    };
    if wants_protobuf(&headers) {
        let body = trace_to_wire(&trace).encode_to_vec();
        return (StatusCode::OK, [(header::CONTENT_TYPE, "application/protobuf")], body).into_response();
    }
    let batches: Vec<Value> = trace.resource_spans.iter().map(resource_spans_json).collect();
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], json!({ "batches": batches }).to_string())
        .into_response()
}

async fn trace_by_id_v2(
    State(state): State<Arc<ServerState>>,
    Path(trace_id): Path<String>,
    Query(params): Query<TraceByIdParams>,
    headers: HeaderMap,
) -> Response {
    let trace = match find_trace(&state, &trace_id, &params).await {
        Ok(trace) => trace,
        Err(error) => return error.into_response(),
    };
    if wants_protobuf(&headers) {
        let response = TraceByIdResponse {
            trace: Some(trace_to_wire(&trace)),
            metrics: Some(TraceByIdMetrics { inspected_bytes: 0 }),
            status: PartialStatus::Complete as i32,
            message: String::new(),
        };
        return (StatusCode::OK, [(header::CONTENT_TYPE, "application/protobuf")], response.encode_to_vec())
            .into_response();
    }
    let resource_spans: Vec<Value> = trace.resource_spans.iter().map(resource_spans_json).collect();
    let body = json!({ "trace": { "resourceSpans": resource_spans }, "metrics": {}, "status": "COMPLETE" });
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// An attribute value in OTLP/JSON form (`{"stringValue":".."}`, `{"intValue":"42"}`...).
pub(crate) fn attribute_value_json(value: &AttributeValue) -> Value {
    match value {
        AttributeValue::String(text) => json!({ "stringValue": text }),
        AttributeValue::Bool(flag) => json!({ "boolValue": flag }),
        AttributeValue::Int(number) => json!({ "intValue": number.to_string() }),
        AttributeValue::Double(number) => match serde_json::Number::from_f64(*number) {
            Some(number) => json!({ "doubleValue": number }),
            None => json!({ "doubleValue": number.to_string() }),
        },
        AttributeValue::Array(values) => {
            json!({ "arrayValue": { "values": values.iter().map(attribute_value_json).collect::<Vec<_>>() } })
        }
        AttributeValue::Map(attributes) => json!({ "kvlistValue": { "values": attributes_json(attributes) } }),
        AttributeValue::Bytes(bytes) => json!({ "bytesValue": base64(bytes) }),
    }
}

/// Attributes in OTLP/JSON form: `[{"key":"..","value":{..}}]`.
pub(crate) fn attributes_json(attributes: &[Attribute]) -> Vec<Value> {
    attributes
        .iter()
        .map(|attribute| json!({ "key": attribute.key, "value": attribute_value_json(&attribute.value) }))
        .collect()
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let first = chunk.first().copied().unwrap_or(0);
        let second = chunk.get(1).copied().unwrap_or(0);
        let third = chunk.get(2).copied().unwrap_or(0);
        let triple = u32::from(first) << 16 | u32::from(second) << 8 | u32::from(third);
        for position in 0..4 {
            if position <= chunk.len() {
                text.push(ALPHABET[((triple >> (18 - 6 * position)) & 0x3f) as usize] as char);
            } else {
                text.push('=');
            }
        }
    }
    text
}

fn insert_nonzero(object: &mut serde_json::Map<String, Value>, key: &str, count: u32) {
    if count != 0 {
        object.insert(key.into(), json!(count));
    }
}

/// An id (trace or span) as Tempo's JSON writes it: standard base64 with padding (`jsonpb` renders proto
/// `bytes` so), e.g. 16 bytes `0x01..` as `AQEBAQEBAQEBAQEBAQEBAQ==`.
fn id_to_base64(id: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(id)
}

/// One span in Tempo's JSON form (OTLP field names; base64 ids and enum names, see the module docs).
pub(crate) fn span_json(span: &Span) -> Value {
    let mut object = serde_json::Map::new();
    object.insert("traceId".into(), json!(id_to_base64(&span.trace_id)));
    object.insert("spanId".into(), json!(id_to_base64(&span.span_id)));
    if let Some(parent) = &span.parent_span_id {
        object.insert("parentSpanId".into(), json!(id_to_base64(parent)));
    }
    if !span.trace_state.is_empty() {
        object.insert("traceState".into(), json!(span.trace_state));
    }
    if span.flags != 0 {
        object.insert("flags".into(), json!(span.flags));
    }
    object.insert("name".into(), json!(span.name));
    if span.kind != SpanKind::Unspecified {
        object.insert("kind".into(), json!(span.kind.otlp_name()));
    }
    object.insert("startTimeUnixNano".into(), json!(span.start_time_unix_nano.to_string()));
    object.insert("endTimeUnixNano".into(), json!(span.end_time_unix_nano.to_string()));
    object.insert("attributes".into(), Value::Array(attributes_json(&span.attributes)));
    insert_nonzero(&mut object, "droppedAttributesCount", span.dropped_attributes_count);
    if !span.events.is_empty() {
        let events: Vec<Value> = span
            .events
            .iter()
            .map(|event| {
                let mut event_object = serde_json::Map::new();
                event_object.insert("timeUnixNano".into(), json!(event.time_unix_nano.to_string()));
                event_object.insert("name".into(), json!(event.name));
                event_object.insert("attributes".into(), Value::Array(attributes_json(&event.attributes)));
                insert_nonzero(&mut event_object, "droppedAttributesCount", event.dropped_attributes_count);
                Value::Object(event_object)
            })
            .collect();
        object.insert("events".into(), Value::Array(events));
    }
    insert_nonzero(&mut object, "droppedEventsCount", span.dropped_events_count);
    if !span.links.is_empty() {
        let links: Vec<Value> = span
            .links
            .iter()
            .map(|link| {
                let mut link_object = serde_json::Map::new();
                link_object.insert("traceId".into(), json!(id_to_base64(&link.trace_id)));
                link_object.insert("spanId".into(), json!(id_to_base64(&link.span_id)));
                if !link.trace_state.is_empty() {
                    link_object.insert("traceState".into(), json!(link.trace_state));
                }
                link_object.insert("attributes".into(), Value::Array(attributes_json(&link.attributes)));
                insert_nonzero(&mut link_object, "droppedAttributesCount", link.dropped_attributes_count);
                if link.flags != 0 {
                    link_object.insert("flags".into(), json!(link.flags));
                }
                Value::Object(link_object)
            })
            .collect();
        object.insert("links".into(), Value::Array(links));
    }
    insert_nonzero(&mut object, "droppedLinksCount", span.dropped_links_count);
    let mut status = serde_json::Map::new();
    if span.status_code as u8 != 0 {
        status.insert("code".into(), json!(span.status_code.otlp_name()));
    }
    if !span.status_message.is_empty() {
        status.insert("message".into(), json!(span.status_message));
    }
    object.insert("status".into(), Value::Object(status));
    Value::Object(object)
}

/// One resource's spans (a Tempo "batch") in OTLP/JSON form.
pub(crate) fn resource_spans_json(batch: &ResourceSpans) -> Value {
    let mut resource = serde_json::Map::new();
    resource.insert("attributes".into(), Value::Array(attributes_json(&batch.resource.attributes)));
    insert_nonzero(&mut resource, "droppedAttributesCount", batch.resource.dropped_attributes_count);
    let scope_spans: Vec<Value> = batch
        .scope_spans
        .iter()
        .map(|scope_spans| {
            let mut scope = serde_json::Map::new();
            scope.insert("name".into(), json!(scope_spans.scope.name));
            if !scope_spans.scope.version.is_empty() {
                scope.insert("version".into(), json!(scope_spans.scope.version));
            }
            if !scope_spans.scope.attributes.is_empty() {
                scope.insert("attributes".into(), Value::Array(attributes_json(&scope_spans.scope.attributes)));
            }
            let mut object = serde_json::Map::new();
            object.insert("scope".into(), Value::Object(scope));
            object.insert("spans".into(), Value::Array(scope_spans.spans.iter().map(span_json).collect()));
            if !scope_spans.schema_url.is_empty() {
                object.insert("schemaUrl".into(), json!(scope_spans.schema_url));
            }
            Value::Object(object)
        })
        .collect();
    let mut object = serde_json::Map::new();
    object.insert("resource".into(), Value::Object(resource));
    object.insert("scopeSpans".into(), Value::Array(scope_spans));
    if !batch.schema_url.is_empty() {
        object.insert("schemaUrl".into(), json!(batch.schema_url));
    }
    Value::Object(object)
}

fn any_value_wire(value: &AttributeValue) -> AnyValue {
    let value = match value {
        AttributeValue::String(text) => any_value::Value::StringValue(text.clone()),
        AttributeValue::Bool(flag) => any_value::Value::BoolValue(*flag),
        AttributeValue::Int(number) => any_value::Value::IntValue(*number),
        AttributeValue::Double(number) => any_value::Value::DoubleValue(*number),
        AttributeValue::Array(values) => {
            any_value::Value::ArrayValue(ArrayValue { values: values.iter().map(any_value_wire).collect() })
        }
        AttributeValue::Map(attributes) => {
            any_value::Value::KvlistValue(KeyValueList { values: key_values_wire(attributes) })
        }
        AttributeValue::Bytes(bytes) => any_value::Value::BytesValue(bytes.clone()),
    };
    AnyValue { value: Some(value) }
}

fn key_values_wire(attributes: &[Attribute]) -> Vec<KeyValue> {
    attributes
        .iter()
        .map(|attribute| KeyValue { key: attribute.key.clone(), value: Some(any_value_wire(&attribute.value)) })
        .collect()
}

fn span_wire(span: &Span) -> wire::Span {
    wire::Span {
        trace_id: span.trace_id.to_vec(),
        span_id: span.span_id.to_vec(),
        trace_state: span.trace_state.clone(),
        parent_span_id: span.parent_span_id.map(|parent| parent.to_vec()).unwrap_or_default(),
        flags: span.flags,
        name: span.name.clone(),
        kind: i32::from(span.kind as u8),
        start_time_unix_nano: span.start_time_unix_nano,
        end_time_unix_nano: span.end_time_unix_nano,
        attributes: key_values_wire(&span.attributes),
        dropped_attributes_count: span.dropped_attributes_count,
        events: span
            .events
            .iter()
            .map(|event| wire::span::Event {
                time_unix_nano: event.time_unix_nano,
                name: event.name.clone(),
                attributes: key_values_wire(&event.attributes),
                dropped_attributes_count: event.dropped_attributes_count,
            })
            .collect(),
        dropped_events_count: span.dropped_events_count,
        links: span
            .links
            .iter()
            .map(|link| wire::span::Link {
                trace_id: link.trace_id.to_vec(),
                span_id: link.span_id.to_vec(),
                trace_state: link.trace_state.clone(),
                attributes: key_values_wire(&link.attributes),
                dropped_attributes_count: link.dropped_attributes_count,
                flags: link.flags,
            })
            .collect(),
        dropped_links_count: span.dropped_links_count,
        status: Some(wire::Status { message: span.status_message.clone(), code: i32::from(span.status_code as u8) }),
    }
}

/// A trace as `tempopb.Trace` (= OTLP `TracesData`).
pub(crate) fn trace_to_wire(trace: &Trace) -> wire::TracesData {
    wire::TracesData {
        resource_spans: trace
            .resource_spans
            .iter()
            .map(|batch| wire::ResourceSpans {
                resource: Some(WireResource {
                    attributes: key_values_wire(&batch.resource.attributes),
                    dropped_attributes_count: batch.resource.dropped_attributes_count,
                }),
                scope_spans: batch
                    .scope_spans
                    .iter()
                    .map(|scope_spans| wire::ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: scope_spans.scope.name.clone(),
                            version: scope_spans.scope.version.clone(),
                            attributes: key_values_wire(&scope_spans.scope.attributes),
                            dropped_attributes_count: scope_spans.scope.dropped_attributes_count,
                        }),
                        spans: scope_spans.spans.iter().map(span_wire).collect(),
                        schema_url: scope_spans.schema_url.clone(),
                    })
                    .collect(),
                schema_url: batch.schema_url.clone(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(&[0xff, 0xfe]), "//4=");
    }

    #[test]
    fn windows_are_inclusive_seconds() {
        let params = TraceByIdParams { start: Some("10".into()), end: Some("20".into()) };
        assert_eq!(window_of(&params).ok().flatten(), Some((10_000_000_000, 21_000_000_000)));
        assert!(window_of(&TraceByIdParams::default()).ok().flatten().is_none());
        assert!(window_of(&TraceByIdParams { start: Some("x".into()), end: None }).is_err());
        assert!(window_of(&TraceByIdParams { start: Some("30".into()), end: Some("20".into()) }).is_err());
    }
}
