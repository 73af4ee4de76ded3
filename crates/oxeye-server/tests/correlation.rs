//! Trace ↔ log correlation tested in-process: a trace's log entries found by structured metadata and by a
//! JSON `trace_id` field across streams with different labels, and traces found by `request_id`.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use oxeye_model::logs::{LogEntry, LogStream, LogWriter};
use oxeye_model::traces::{Attribute, Resource, ResourceSpans, ScopeSpans, Span, Trace, id_to_hex};
use oxeye_model::{Label, Labels};
use oxeye_promql::{Engine, EngineOptions};
use oxeye_server::{ServerOptions, ServerState, router};
use oxeye_traceql::testing::MemoryTraceStore;
use tower::ServiceExt;

const TRACE_ID: [u8; 16] =
    [0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36];
const OTHER_TRACE_ID: [u8; 16] = [7; 16];
const SECOND_NS: i64 = 1_000_000_000;

struct Harness {
    _directory: tempfile::TempDir,
    state: Arc<ServerState>,
    base_ns: i64,
}

fn span(trace_id: [u8; 16], span_index: u8, parent: Option<u8>, start_ns: i64, request_id: &str) -> Span {
    Span {
        trace_id,
        span_id: [span_index; 8],
        parent_span_id: parent.map(|parent| [parent; 8]),
        name: if parent.is_none() { "GET /api/events/{id}/checkout/".into() } else { "ticket.checkout".into() },
        start_time_unix_nano: start_ns as u64,
        end_time_unix_nano: (start_ns + SECOND_NS / 10) as u64,
        attributes: if request_id.is_empty() { Vec::new() } else { vec![Attribute::string("request_id", request_id)] },
        ..Span::default()
    }
}

fn trace(trace_id: [u8; 16], start_ns: i64, request_id: &str) -> Trace {
    Trace {
        trace_id,
        resource_spans: vec![ResourceSpans {
            resource: Resource {
                attributes: vec![Attribute::string("service.name", "boxoffice")],
                ..Resource::default()
            },
            scope_spans: vec![ScopeSpans {
                spans: vec![span(trace_id, 1, None, start_ns, request_id), span(trace_id, 2, Some(1), start_ns, "")],
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

fn harness() -> Harness {
    let directory = tempfile::tempdir().unwrap();
    let mut options = oxeye_logstore::LogStoreOptions::new(directory.path().join("logs"));
    options.background_maintenance = false;
    let logs = oxeye_logstore::LogStore::open(options).unwrap();
    let base_ns =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64 - 120 * SECOND_NS;
    let hex = id_to_hex(&TRACE_ID);
    let other_hex = id_to_hex(&OTHER_TRACE_ID);
    let entry_with_metadata = |offset: i64, line: &str, trace_hex: &str| LogEntry {
        timestamp_ns: base_ns + offset,
        line: line.to_string(),
        structured_metadata: vec![
            Label { name: "trace_id".into(), value: trace_hex.to_uppercase() },
            Label { name: "span_id".into(), value: "0101010101010101".into() },
        ],
    };
    let streams = vec![
        // OTLP logs: the id in structured metadata only (uppercase here: matched in any case).
        LogStream {
            labels: Labels::from_pairs([("service_name", "boxoffice"), ("level", "info")]),
            entries: vec![
                entry_with_metadata(SECOND_NS, "checkout started", &hex),
                entry_with_metadata(2 * SECOND_NS, "checkout of another trace", &other_hex),
            ],
        },
        // structlog JSON pushed to Loki by an app: the id in the line, on a stream without service_name.
        LogStream {
            labels: Labels::from_pairs([("application", "revel"), ("component", "celery")]),
            entries: vec![
                LogEntry::new(
                    base_ns + 3 * SECOND_NS,
                    format!(r#"{{"event": "task_sent", "trace_id": "{hex}", "request_id": "req-42"}}"#),
                ),
                LogEntry::new(base_ns + 4 * SECOND_NS, r#"{"event": "task_sent", "trace_id": "none"}"#),
            ],
        },
    ];
    let summary = logs.push(streams).unwrap();
    assert_eq!(summary.accepted, 4);
    let traces = MemoryTraceStore::with_traces(vec![
        trace(TRACE_ID, base_ns, "req-42"),
        trace(OTHER_TRACE_ID, base_ns + SECOND_NS, "req-43"),
    ]);
    let server_options = ServerOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        otlp_http_listen: None,
        otlp_grpc_listen: None,
        max_request_body_bytes: 1 << 20,
        version: "test".into(),
        storage_retention: "30d".into(),
        flags: Vec::new(),
        config_yaml: String::new(),
    };
    let state = ServerState::new(server_options, Engine::new(EngineOptions::default()));
    state.set_log_storage(logs);
    state.set_trace_reader(Arc::new(traces));
    Harness { _directory: directory, state, base_ns }
}

async fn get(state: &Arc<ServerState>, uri: &str) -> (StatusCode, serde_json::Value) {
    let request = Request::get(uri).body(Body::empty()).unwrap();
    let response = router(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn a_traces_logs_are_found_by_metadata_and_by_line_across_streams() {
    let harness = harness();
    let hex = id_to_hex(&TRACE_ID);
    let (status, body) = get(&harness.state, &format!("/api/traces/{hex}/logs")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "success");
    assert_eq!(body["data"]["traceID"], hex.as_str());
    let result = body["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 2, "{body}");
    let lines: Vec<&str> = result
        .iter()
        .flat_map(|stream| stream["values"].as_array().unwrap())
        .map(|value| value[1].as_str().unwrap())
        .collect();
    assert!(lines.contains(&"checkout started"), "{lines:?}");
    assert!(lines.iter().any(|line| line.contains("task_sent") && line.contains(&hex)), "{lines:?}");
    assert!(!lines.iter().any(|line| line.contains("another trace")));
    // The window defaults to the trace's time range widened by a minute.
    let start: i64 = body["data"]["start"].as_str().unwrap().parse().unwrap();
    assert_eq!(start, harness.base_ns / 1_000_000 * 1_000_000 - 60 * SECOND_NS);
    let otlp_stream = result.iter().find(|stream| stream["stream"]["service_name"] == "boxoffice").unwrap();
    assert_eq!(otlp_stream["values"][0][2]["structuredMetadata"]["span_id"], "0101010101010101");
}

#[tokio::test]
async fn trace_logs_refuse_bad_ids_and_honour_limit_and_window() {
    let harness = harness();
    let (status, body) = get(&harness.state, "/api/traces/not-hex/logs").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["errorType"], "bad_data");
    let hex = id_to_hex(&TRACE_ID);
    let (status, body) = get(&harness.state, &format!("/api/traces/{hex}/logs?limit=1")).await;
    assert_eq!(status, StatusCode::OK);
    let values: usize =
        body["data"]["result"].as_array().unwrap().iter().map(|s| s["values"].as_array().unwrap().len()).sum();
    assert_eq!(values, 1, "the newest entry only: {body}");
    assert!(body["data"]["result"][0]["values"][0][1].as_str().unwrap().contains("task_sent"));
    // A window before every entry finds nothing.
    let before = harness.base_ns / SECOND_NS - 3600;
    let (status, body) =
        get(&harness.state, &format!("/api/traces/{hex}/logs?start={before}&end={}", before + 60)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["result"], serde_json::json!([]));
}

#[tokio::test]
async fn traces_are_found_by_request_id() {
    let harness = harness();
    let (status, body) = get(&harness.state, "/api/correlate/request/req-42").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["requestID"], "req-42");
    let traces = body["traces"].as_array().unwrap();
    assert_eq!(traces.len(), 1, "{body}");
    assert_eq!(traces[0]["traceID"], id_to_hex(&TRACE_ID).as_str());
    assert_eq!(traces[0]["rootServiceName"], "boxoffice");
    assert_eq!(traces[0]["rootTraceName"], "GET /api/events/{id}/checkout/");
    assert_eq!(traces[0]["durationMs"], 100);
    let (_, body) = get(&harness.state, "/api/correlate/request/req-404").await;
    assert_eq!(body["traces"], serde_json::json!([]));
    let (status, _) = get(&harness.state, "/api/correlate/request/req-42?limit=zero").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
