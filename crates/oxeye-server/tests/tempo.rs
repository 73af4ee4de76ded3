//! OTLP traces ingest and the Tempo trace-by-id API, in-process over an in-memory trace store: partial
//! success for invalid ids, 400 with nothing stored for malformed bodies, by-id in JSON and protobuf, 404
//! and 400 bodies, echo and buildinfo.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use oxeye_model::storage::StorageError;
use oxeye_model::traces::{ResourceSpans, Trace, TraceId, TracePushSummary, TraceReader, TraceScanHints, TraceWriter};
use oxeye_promql::{Engine, EngineOptions};
use oxeye_proto::otlp::collector::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use oxeye_proto::otlp::common::{AnyValue, KeyValue, any_value};
use oxeye_proto::otlp::resource::Resource;
use oxeye_proto::otlp::trace::{ResourceSpans as WireResourceSpans, ScopeSpans, Span, Status, TracesData};
use oxeye_proto::tempo::TraceByIdResponse;
use oxeye_server::{ServerOptions, ServerState, router};
use prost::Message;
use tower::ServiceExt;

/// Keeps pushed batches in memory; by id returns every batch holding a span of the trace.
#[derive(Default)]
struct MemoryTraces {
    batches: Mutex<Vec<ResourceSpans>>,
}

impl TraceWriter for MemoryTraces {
    fn push(&self, batches: Vec<ResourceSpans>) -> Result<TracePushSummary, StorageError> {
        let accepted_spans = batches.iter().map(|batch| batch.spans().count() as u64).sum();
        self.batches.lock().expect("lock").extend(batches);
        Ok(TracePushSummary { accepted_spans, ..TracePushSummary::default() })
    }

    fn drop_traces(&self, _trace_ids: &[TraceId]) -> Result<(), StorageError> {
        Ok(())
    }
}

impl TraceReader for MemoryTraces {
    fn trace_by_id(&self, trace_id: &TraceId, _window: Option<(u64, u64)>) -> Result<Option<Trace>, StorageError> {
        let batches: Vec<ResourceSpans> = self
            .batches
            .lock()
            .expect("lock")
            .iter()
            .filter(|batch| batch.spans().any(|span| &span.trace_id == trace_id))
            .cloned()
            .collect();
        Ok((!batches.is_empty()).then_some(Trace { trace_id: *trace_id, resource_spans: batches }))
    }

    fn scan_traces(
        &self,
        _start_unix_nano: u64,
        _end_unix_nano: u64,
        _hints: &TraceScanHints,
        _visit: &mut dyn FnMut(&Trace) -> bool,
    ) -> Result<(), StorageError> {
        Ok(())
    }
}

fn state_with(traces: Arc<MemoryTraces>) -> Arc<ServerState> {
    let options = ServerOptions {
        listen: "127.0.0.1:0".parse().expect("address"),
        otlp_http_listen: None,
        otlp_grpc_listen: None,
        max_request_body_bytes: 1 << 20,
        version: "9.9.9-test".into(),
        storage_retention: "30d".into(),
        flags: Vec::new(),
        config_yaml: String::new(),
    };
    let state = ServerState::new(options, Engine::new(EngineOptions::default()));
    state.set_trace_writer(traces.clone());
    state.set_trace_reader(traces);
    state
}

async fn send(state: &Arc<ServerState>, request: Request<Body>) -> (StatusCode, Option<String>, Vec<u8>) {
    let response = router(state.clone()).oneshot(request).await.expect("router answers");
    let status = response.status();
    let content_type =
        response.headers().get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).map(str::to_string);
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    (status, content_type, bytes.to_vec())
}

fn string_attribute(key: &str, value: &str) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }) }
}

fn checkout_request() -> ExportTraceServiceRequest {
    let span = |id: u8, parent: Option<u8>, name: &str| Span {
        trace_id: vec![0xab; 16],
        span_id: vec![id; 8],
        parent_span_id: parent.map(|parent| vec![parent; 8]).unwrap_or_default(),
        name: name.into(),
        kind: 1,
        start_time_unix_nano: 1_700_000_000_000_000_000 + u64::from(id) * 1_000,
        end_time_unix_nano: 1_700_000_000_500_000_000,
        attributes: vec![string_attribute("request_id", "req-1")],
        ..Span::default()
    };
    let mut invalid = span(9, None, "invalid");
    invalid.trace_id = vec![0; 16];
    let mut failing = span(3, Some(2), "eligibility.check_membership");
    failing.status = Some(Status { message: "not a member".into(), code: 2 });
    ExportTraceServiceRequest {
        resource_spans: vec![WireResourceSpans {
            resource: Some(Resource {
                attributes: vec![string_attribute("service.name", "boxoffice")],
                dropped_attributes_count: 0,
            }),
            scope_spans: vec![ScopeSpans {
                scope: None,
                spans: vec![
                    span(1, None, "ticket.checkout"),
                    span(2, Some(1), "ticket.check_eligibility"),
                    failing,
                    invalid,
                ],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

#[tokio::test]
async fn protobuf_export_reports_invalid_spans_and_the_trace_comes_back_by_id() {
    let traces = Arc::new(MemoryTraces::default());
    let state = state_with(traces.clone());
    let request = Request::post("/v1/traces")
        .header(header::CONTENT_TYPE, "application/x-protobuf")
        .body(Body::from(checkout_request().encode_to_vec()))
        .expect("request");
    let (status, content_type, body) = send(&state, request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type.as_deref(), Some("application/x-protobuf"));
    let response = ExportTraceServiceResponse::decode(body.as_slice()).expect("response decodes");
    let partial = response.partial_success.expect("partial success");
    assert_eq!(partial.rejected_spans, 1);
    assert!(partial.error_message.contains("trace id must be 16 bytes"), "{}", partial.error_message);
    assert_eq!(traces.batches.lock().expect("lock")[0].spans().count(), 3);

    let trace_id = "ab".repeat(16);
    let (status, content_type, body) =
        send(&state, Request::get(format!("/api/traces/{trace_id}")).body(Body::empty()).expect("request")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type.as_deref(), Some("application/json"));
    let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let batch = &json["batches"][0];
    assert_eq!(batch["resource"]["attributes"][0]["value"]["stringValue"], "boxoffice");
    let spans = batch["scopeSpans"][0]["spans"].as_array().expect("spans");
    assert_eq!(spans.len(), 3);
    // Tempo's JSON (Go jsonpb): ids in base64, enums by name.
    assert_eq!(spans[0]["traceId"], "q6urq6urq6urq6urq6urqw==");
    assert_eq!(spans[0]["spanId"], "AQEBAQEBAQE=");
    assert!(spans[0].get("parentSpanId").is_none());
    assert_eq!(spans[1]["parentSpanId"], "AQEBAQEBAQE=");
    assert_eq!(spans[2]["status"]["code"], "STATUS_CODE_ERROR");
    assert_eq!(spans[2]["status"]["message"], "not a member");
    assert_eq!(spans[0]["startTimeUnixNano"], "1700000000000001000");
    assert_eq!(spans[0]["kind"], "SPAN_KIND_INTERNAL");

    let protobuf_request = Request::get(format!("/api/traces/{trace_id}?start=1699999000&end=1700001000"))
        .header(header::ACCEPT, "application/protobuf")
        .body(Body::empty())
        .expect("request");
    let (status, content_type, body) = send(&state, protobuf_request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type.as_deref(), Some("application/protobuf"));
    let trace = TracesData::decode(body.as_slice()).expect("tempopb.Trace decodes");
    assert_eq!(trace.resource_spans[0].scope_spans[0].spans[2].name, "eligibility.check_membership");

    let v2_request = Request::get(format!("/api/v2/traces/{trace_id}"))
        .header(header::ACCEPT, "application/protobuf")
        .body(Body::empty())
        .expect("request");
    let (status, _, body) = send(&state, v2_request).await;
    assert_eq!(status, StatusCode::OK);
    let response = TraceByIdResponse::decode(body.as_slice()).expect("TraceByIDResponse decodes");
    assert_eq!(response.status, 0);
    assert_eq!(response.trace.expect("trace").resource_spans[0].scope_spans[0].spans.len(), 3);

    let (status, _, body) =
        send(&state, Request::get(format!("/api/v2/traces/{trace_id}")).body(Body::empty()).expect("request")).await;
    assert_eq!(status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(json["trace"]["resourceSpans"][0]["scopeSpans"][0]["spans"][1]["name"], "ticket.check_eligibility");
}

#[tokio::test]
async fn json_export_with_partial_success_in_json() {
    let traces = Arc::new(MemoryTraces::default());
    let state = state_with(traces.clone());
    let body = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[
        {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"ok"},
        {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"0000000000000000","name":"zero span id"}]}]}]}"#;
    let request = Request::post("/v1/traces")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("request");
    let (status, content_type, body) = send(&state, request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type.as_deref(), Some("application/json"));
    let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(json["partialSuccess"]["rejectedSpans"], "1");
    assert_eq!(traces.batches.lock().expect("lock").len(), 1);
}

#[tokio::test]
async fn malformed_bodies_are_400_and_store_nothing() {
    let traces = Arc::new(MemoryTraces::default());
    let state = state_with(traces.clone());
    let request = Request::post("/v1/traces")
        .header(header::CONTENT_TYPE, "application/x-protobuf")
        .body(Body::from(vec![0x0a, 0x05, 0x01]))
        .expect("request");
    let (status, _, body) = send(&state, request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let rpc_status = oxeye_proto::google_rpc::Status::decode(body.as_slice()).expect("google.rpc.Status");
    assert_eq!(rpc_status.code, 3);
    assert!(rpc_status.message.contains("ExportTraceServiceRequest"), "{}", rpc_status.message);
    let request = Request::post("/v1/traces")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}"#))
        .expect("request");
    let (status, _, body) = send(&state, request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("traceId"));
    assert!(traces.batches.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn missing_and_bad_ids_echo_and_buildinfo() {
    let state = state_with(Arc::new(MemoryTraces::default()));
    let (status, _, body) =
        send(&state, Request::get("/api/traces/0123456789abcdef").body(Body::empty()).expect("request")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(String::from_utf8_lossy(&body), "trace not found\n");
    let (status, _, body) =
        send(&state, Request::get("/api/v2/traces/xyz").body(Body::empty()).expect("request")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("invalid trace id"));
    let (status, _, _) = send(&state, Request::get("/api/traces/00").body(Body::empty()).expect("request")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, body) = send(&state, Request::get("/api/echo").body(Body::empty()).expect("request")).await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, b"echo".as_slice()));
    let (status, _, body) =
        send(&state, Request::get("/api/status/buildinfo").body(Body::empty()).expect("request")).await;
    assert_eq!(status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(json["version"], "9.9.9-test");
}

#[tokio::test]
async fn exports_before_the_store_is_ready_are_503() {
    let options = ServerOptions {
        listen: "127.0.0.1:0".parse().expect("address"),
        otlp_http_listen: None,
        otlp_grpc_listen: None,
        max_request_body_bytes: 1 << 20,
        version: "test".into(),
        storage_retention: "30d".into(),
        flags: Vec::new(),
        config_yaml: String::new(),
    };
    let state = ServerState::new(options, Engine::new(EngineOptions::default()));
    let request = Request::post("/v1/traces")
        .header(header::CONTENT_TYPE, "application/x-protobuf")
        .body(Body::from(checkout_request().encode_to_vec()))
        .expect("request");
    let (status, _, _) = send(&state, request).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}
