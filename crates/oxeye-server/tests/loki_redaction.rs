//! PII redaction on every log ingest path, tested in-process over a real log store: Loki push (JSON and
//! snappy protobuf) and OTLP/HTTP logs (JSON body maps, string bodies, attributes) are redacted before the
//! WAL, `/metrics` counts redactions per rule, and a disabled redactor stores lines as sent.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use oxeye_pipeline::{CustomRedactionRule, RedactionOptions, Redactor};
use oxeye_promql::{Engine, EngineOptions};
use oxeye_server::{ServerOptions, ServerState, router};
use prost::Message;
use tower::ServiceExt;

struct Harness {
    directory: tempfile::TempDir,
    state: Arc<ServerState>,
    logs: Arc<oxeye_logstore::LogStore>,
}

fn harness(redactor: Option<Redactor>) -> Harness {
    let directory = tempfile::tempdir().expect("temporary directory");
    let mut options = oxeye_logstore::LogStoreOptions::new(directory.path().join("logs"));
    options.background_maintenance = false;
    let logs = oxeye_logstore::LogStore::open(options).expect("log store opens");
    let tsdb = oxeye_tsdb::Tsdb::open(oxeye_tsdb::TsdbOptions::new(directory.path().join("metrics"))).expect("tsdb");
    let server_options = ServerOptions {
        listen: "127.0.0.1:0".parse().expect("address"),
        otlp_http_listen: None,
        otlp_grpc_listen: None,
        max_request_body_bytes: 1 << 20,
        version: "test".into(),
        storage_retention: "30d".into(),
        flags: Vec::new(),
        config_yaml: String::new(),
    };
    let state = ServerState::new(server_options, Engine::new(EngineOptions::default()));
    state.set_storage(tsdb, Box::new(|_| {}));
    state.set_log_storage(logs.clone());
    if let Some(redactor) = redactor {
        state.set_log_redactor(redactor);
    }
    Harness { directory, state, logs }
}

async fn send(state: &Arc<ServerState>, request: Request<Body>) -> (StatusCode, String) {
    let response = router(state.clone()).oneshot(request).await.expect("router answers");
    let status = response.status();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos() as i64
}

fn push_json(lines: &[&str], metadata: serde_json::Value) -> Request<Body> {
    let now = now_ns();
    let values: Vec<serde_json::Value> = lines
        .iter()
        .enumerate()
        .map(|(index, line)| serde_json::json!([(now + index as i64).to_string(), line, metadata]))
        .collect();
    let body = serde_json::json!({"streams": [{"stream": {"service_name": "boxoffice"}, "values": values}]});
    Request::post("/loki/api/v1/push")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("request")
}

/// Every stored line and structured metadata value, read back through the store.
fn stored_text(logs: &oxeye_logstore::LogStore) -> String {
    let selection = oxeye_model::logs::LogSelection {
        start_ns: 0,
        end_ns: i64::MAX,
        matchers: vec![oxeye_model::Matcher::equal("service_name", "boxoffice")],
        line_contains: vec![],
    };
    let mut text = String::new();
    for stream in logs.select_streams(&selection).expect("select") {
        for entry in stream.entries {
            text.push_str(&entry.line);
            for metadata in entry.structured_metadata {
                text.push_str(&format!(" {}={}", metadata.name, metadata.value));
            }
            text.push('\n');
        }
    }
    text
}

#[tokio::test]
async fn loki_json_push_redacts_seed_examples_before_the_wal() {
    let harness = harness(None);
    let lines: Vec<&str> = oxeye_pipeline::testing::SEED_EXAMPLES.iter().map(|example| example.line).collect();
    let metadata = serde_json::json!({"authorization": "Bearer sk_live_metadata_secret", "user_email": "x@y.io"});
    let (status, body) = send(&harness.state, push_json(&lines, metadata)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let stored = stored_text(&harness.logs);
    let stored_lines: Vec<&str> = stored.lines().collect();
    assert_eq!(stored_lines.len(), oxeye_pipeline::testing::SEED_EXAMPLES.len(), "{stored}");
    for (example, line) in oxeye_pipeline::testing::SEED_EXAMPLES.iter().zip(&stored_lines) {
        for secret in example.secrets {
            assert!(!line.contains(secret), "{}: secret {secret:?} stored: {line}", example.name);
        }
        for kept in example.kept {
            assert!(line.contains(kept), "{}: kept value {kept:?} lost: {line}", example.name);
        }
        assert!(line.contains("authorization=[REDACTED]") && line.contains("user_email=[EMAIL]"), "{line}");
    }
    // Secrets that no example keeps elsewhere (an address redacted in free text may be a kept `email` field
    // of another line) must be nowhere in the data directory, WAL included.
    let kept: Vec<&str> =
        oxeye_pipeline::testing::SEED_EXAMPLES.iter().flat_map(|example| example.kept.iter().copied()).collect();
    let wal_secrets: Vec<&str> = oxeye_pipeline::testing::SEED_EXAMPLES
        .iter()
        .flat_map(|example| example.secrets.iter().copied())
        .filter(|secret| !kept.iter().any(|kept| kept.contains(secret)))
        .chain(["sk_live_metadata_secret"])
        .collect();
    let found = oxeye_pipeline::testing::find_secrets_on_disk(harness.directory.path(), &wal_secrets).expect("grep");
    assert!(found.is_empty(), "secrets on disk: {found:?}");
    let (_, metrics) = send(&harness.state, Request::get("/metrics").body(Body::empty()).expect("request")).await;
    assert!(metrics.contains("# TYPE oxeye_redactions_total counter"), "{metrics}");
    let counted = |rule: &str| -> f64 {
        let prefix = format!("oxeye_redactions_total{{rule=\"{rule}\"}} ");
        metrics.lines().find_map(|line| line.strip_prefix(&prefix)).and_then(|value| value.parse().ok()).unwrap_or(0.0)
    };
    // Sensitive keys: 7 `authorization` metadata values + 11 keys in the lines; card numbers and SSNs under
    // their own keys count as sensitive keys, the 2 of each in free text under their rule; e-mail: 7
    // `user_email` metadata values + 5 addresses in free text.
    assert_eq!(["sensitive_key", "card_number", "ssn", "email"].map(counted), [18.0, 2.0, 2.0, 12.0], "{metrics}");
}

#[tokio::test]
async fn loki_protobuf_push_is_redacted() {
    let harness = harness(None);
    let now = now_ns();
    let request = oxeye_proto::loki::PushRequest {
        streams: vec![oxeye_proto::loki::StreamAdapter {
            labels: r#"{service_name="boxoffice"}"#.into(),
            entries: vec![oxeye_proto::loki::EntryAdapter {
                timestamp: Some(prost_types_timestamp(now)),
                line: "login password=pr0tobuf-secret ok".into(),
                structured_metadata: vec![oxeye_proto::loki::LabelPairAdapter {
                    name: "token".into(),
                    value: "tok-pr0tobuf".into(),
                }],
                parsed: vec![],
            }],
            hash: 0,
        }],
    };
    let body = snap::raw::Encoder::new().compress_vec(&request.encode_to_vec()).expect("snappy");
    let push = Request::post("/loki/api/v1/push")
        .header(header::CONTENT_TYPE, "application/x-protobuf")
        .body(Body::from(body))
        .expect("request");
    let (status, text) = send(&harness.state, push).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{text}");
    let stored = stored_text(&harness.logs);
    assert!(stored.contains("login password=[REDACTED] ok token=[REDACTED]"), "{stored}");
}

fn prost_types_timestamp(timestamp_ns: i64) -> oxeye_proto::loki::Timestamp {
    oxeye_proto::loki::Timestamp {
        seconds: timestamp_ns.div_euclid(1_000_000_000),
        nanos: timestamp_ns.rem_euclid(1_000_000_000) as i32,
    }
}

#[tokio::test]
async fn otlp_bodies_and_attributes_are_redacted() {
    let harness = harness(None);
    let now = now_ns();
    let body = format!(
        r#"{{"resourceLogs":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"boxoffice"}}}},
              {{"key":"deployment.secret","value":{{"stringValue":"resource-s3cret"}}}}]}},
          "scopeLogs":[{{"logRecords":[
            {{"timeUnixNano":"{now}","severityNumber":17,
              "attributes":[{{"key":"http.request.header.authorization","value":{{"stringValue":"Bearer otlp-bearer-secret"}}}},
                            {{"key":"note","value":{{"stringValue":"ssn 219-09-9999"}}}}],
              "body":{{"kvlistValue":{{"values":[{{"key":"event","value":{{"stringValue":"checkout_failed"}}}},
                {{"key":"card_number","value":{{"stringValue":"4000000000000002"}}}},
                {{"key":"email","value":{{"stringValue":"kept@example.com"}}}},
                {{"key":"message","value":{{"stringValue":"mail me at leak@example.com"}}}}]}}}}}},
            {{"timeUnixNano":"{later}","body":{{"stringValue":"{{\"event\": \"login\", \"password\": \"otlp-string-pw\"}}"}}}}
          ]}}]}}]}}"#,
        later = now + 1
    );
    let request = Request::post("/v1/logs")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("request");
    let (status, text) = send(&harness.state, request).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let stored = stored_text(&harness.logs);
    for secret in
        ["resource-s3cret", "otlp-bearer-secret", "219-09-9999", "4000000000000002", "leak@", "otlp-string-pw"]
    {
        assert!(!stored.contains(secret), "secret {secret:?} stored:\n{stored}");
    }
    assert!(stored.contains("kept@example.com"), "{stored}");
    assert!(stored.contains("checkout_failed"), "{stored}");
}

#[tokio::test]
async fn disabled_redaction_stores_lines_as_sent_and_custom_rules_count() {
    let disabled = harness(Some(Redactor::new(RedactionOptions::disabled()).expect("disabled builds")));
    let (status, _) = send(&disabled.state, push_json(&["password=kept-as-sent"], serde_json::json!({}))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(stored_text(&disabled.logs).contains("password=kept-as-sent"));

    let mut options = RedactionOptions::default();
    options.custom_rules.push(CustomRedactionRule::new("internal_ticket", r"TICKET-\d{6}"));
    let custom = harness(Some(Redactor::new(options).expect("custom rule builds")));
    let (status, _) = send(&custom.state, push_json(&["escalated TICKET-123456 today"], serde_json::json!({}))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(stored_text(&custom.logs).contains("escalated [REDACTED] today"));
    let (_, metrics) = send(&custom.state, Request::get("/metrics").body(Body::empty()).expect("request")).await;
    assert!(metrics.contains("oxeye_redactions_total{rule=\"internal_ticket\"} 1"), "{metrics}");
}
