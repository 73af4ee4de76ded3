//! The Loki API tested in-process over a real log store: push (JSON, protobuf), query_range streams,
//! labels, series, the Grafana health check, metric queries, OTLP logs and refusals.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use oxeye_promql::{Engine, EngineOptions};
use oxeye_server::{ServerOptions, ServerState, router};
use prost::Message;
use tower::ServiceExt;

struct Harness {
    _directory: tempfile::TempDir,
    state: Arc<ServerState>,
}

fn harness() -> Harness {
    let directory = tempfile::tempdir().expect("temporary directory");
    let mut options = oxeye_logstore::LogStoreOptions::new(directory.path().join("logs"));
    options.background_maintenance = false;
    options.max_line_bytes = 1000;
    let logs = oxeye_logstore::LogStore::open(options).expect("log store opens");
    let tsdb = oxeye_tsdb::Tsdb::open(oxeye_tsdb::TsdbOptions::new(directory.path())).expect("tsdb opens");
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
    state.set_log_storage(logs);
    Harness { _directory: directory, state }
}

async fn send(state: &Arc<ServerState>, request: Request<Body>) -> (StatusCode, String) {
    let response = router(state.clone()).oneshot(request).await.expect("router answers");
    let status = response.status();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).expect("request")
}

fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos() as i64
}

fn push_json(body: String) -> Request<Body> {
    Request::post("/loki/api/v1/push")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("request")
}

/// A POST of `body` to `uri` with this content type and, when given, content encoding.
fn post(uri: &str, content_type: &str, encoding: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut request = Request::post(uri).header(header::CONTENT_TYPE, content_type);
    if let Some(encoding) = encoding {
        request = request.header(header::CONTENT_ENCODING, encoding);
    }
    request.body(body.into()).expect("request")
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).expect("json body")
}

#[tokio::test]
async fn grafana_health_check_returns_two() {
    let harness = harness();
    let uri = format!("/loki/api/v1/query?query={}&time={}", encode("vector(1)+vector(1)"), 4_000_000_000i64);
    let (status, body) = send(&harness.state, get(&uri)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let body = json(&body);
    assert_eq!(body["status"], "success");
    assert_eq!(body["data"]["resultType"], "vector");
    assert_eq!(body["data"]["result"], serde_json::json!([{"metric": {}, "value": [4, "2"]}]));
}

#[tokio::test]
async fn pushed_lines_come_back_through_query_range_labels_and_series() {
    let harness = harness();
    let base = now_ns() - 60_000_000_000;
    let body = format!(
        r#"{{"streams":[{{"stream":{{"service_name":"boxoffice","env":"acceptance"}},"values":[
            ["{}","{{\"event\": \"request_finished\", \"status_code\": 200, \"path\": \"/healthz/\"}}"],
            ["{}","{{\"event\": \"checkout_failed\", \"status_code\": 500, \"path\": \"/api/events/3/checkout/\"}}",{{"trace_id":"81d8"}}]]}},
          {{"stream":{{"service_name":"worker"}},"values":[["{}","task done"]]}}]}}"#,
        base,
        base + 1_000_000_000,
        base + 2_000_000_000
    );
    let (status, text) = send(&harness.state, push_json(body)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{text}");

    let query = encode(r#"{service_name="boxoffice"} |= "checkout""#);
    let uri = format!("/loki/api/v1/query_range?query={query}&start={}&end={}", base - 1, base + 10_000_000_000);
    let (status, text) = send(&harness.state, get(&uri)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let body = json(&text);
    assert_eq!(body["data"]["resultType"], "streams");
    let result = body["data"]["result"].as_array().expect("result");
    assert_eq!(result.len(), 1);
    assert_eq!(result[0]["stream"]["trace_id"], "81d8");
    assert_eq!(result[0]["values"][0][0], (base + 1_000_000_000).to_string());

    let query = encode(r#"{env="acceptance"} | json | status_code >= 200"#);
    let uri = format!(
        "/loki/api/v1/query_range?query={query}&start={}&end={}&direction=forward&limit=1",
        base - 1,
        base + 10_000_000_000
    );
    let body = json(&send(&harness.state, get(&uri)).await.1);
    let result = body["data"]["result"].as_array().expect("result");
    assert_eq!(result.len(), 1);
    assert_eq!(result[0]["stream"]["event"], "request_finished");

    let query = encode(r#"sum by (service_name) (count_over_time({service_name=~".+"}[1m]))"#);
    let uri = format!(
        "/loki/api/v1/query_range?query={query}&start={}&end={}&step=60",
        base + 5_000_000_000,
        base + 5_000_000_000
    );
    let body = json(&send(&harness.state, get(&uri)).await.1);
    assert_eq!(body["data"]["resultType"], "matrix");
    let result = body["data"]["result"].as_array().expect("result");
    assert_eq!(result[0]["metric"]["service_name"], "boxoffice");
    assert_eq!(result[0]["values"][0][1], "2");
    assert_eq!(result[1]["values"][0][1], "1");

    let window = format!("start={}&end={}", base - 1, base + 10_000_000_000);
    let body = json(&send(&harness.state, get(&format!("/loki/api/v1/labels?{window}"))).await.1);
    assert_eq!(body, serde_json::json!({"status": "success", "data": ["env", "service_name"]}));
    let body = json(&send(&harness.state, get(&format!("/loki/api/v1/label/service_name/values?{window}"))).await.1);
    assert_eq!(body["data"], serde_json::json!(["boxoffice", "worker"]));
    let uri = format!("/loki/api/v1/series?match[]={}&{window}", encode(r#"{service_name="worker"}"#));
    let body = json(&send(&harness.state, get(&uri)).await.1);
    assert_eq!(body["data"], serde_json::json!([{"service_name": "worker"}]));
    let uri = format!("/loki/api/v1/index/stats?query={}&{window}", encode(r#"{service_name="boxoffice"}"#));
    let body = json(&send(&harness.state, get(&uri)).await.1);
    assert_eq!((body["streams"].as_u64(), body["entries"].as_u64()), (Some(1), Some(2)));
}

#[tokio::test]
async fn protobuf_push_is_stored() {
    use oxeye_proto::loki::{EntryAdapter, PushRequest, StreamAdapter, Timestamp};
    let harness = harness();
    let now = now_ns();
    let request = PushRequest {
        streams: vec![StreamAdapter {
            labels: r#"{job="promtail"}"#.into(),
            entries: vec![EntryAdapter {
                timestamp: Some(Timestamp { seconds: now / 1_000_000_000, nanos: (now % 1_000_000_000) as i32 }),
                line: "level=info msg=hello".into(),
                structured_metadata: vec![],
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
    let query = encode(r#"{job="promtail"} | logfmt | line_format "{{.msg}}""#);
    let body = json(&send(&harness.state, get(&format!("/loki/api/v1/query_range?query={query}"))).await.1);
    assert_eq!(body["data"]["result"][0]["values"][0][1], "hello");
}

#[tokio::test]
async fn malformed_bodies_too_long_lines_and_bad_queries_are_400() {
    let harness = harness();
    let (status, text) =
        send(&harness.state, push_json(r#"{"streams":[{"stream":{"a":"b"},"values":[["x","line"]]}]}"#.into())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("streams[0].values[0][0]"), "{text}");
    let long = "x".repeat(2000);
    let body = format!(
        r#"{{"streams":[{{"stream":{{"a":"b"}},"values":[["{}","{long}"],["{}","ok"]]}}]}}"#,
        now_ns(),
        now_ns()
    );
    let (status, text) = send(&harness.state, push_json(body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("1 entries rejected") && text.contains("max entry size"), "{text}");
    let uri = format!("/loki/api/v1/query_range?query={}", encode(r#"{a="b"} |= "ok""#));
    let body = json(&send(&harness.state, get(&uri)).await.1);
    assert_eq!(body["data"]["result"].as_array().map(Vec::len), Some(1), "the valid entry is stored");
    let uri = format!("/loki/api/v1/query_range?query={}", encode(r#"{a="b"} |= "#));
    let (status, text) = send(&harness.state, get(&uri)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.starts_with("parse error at line 1, col"), "{text}");
    let uri = format!("/loki/api/v1/query?query={}", encode(r#"{a="b"}"#));
    let (status, _) = send(&harness.state, get(&uri)).await;
    assert_eq!(status, StatusCode::OK, "log queries on /query answer streams");
}

#[tokio::test]
async fn otlp_logs_become_streams_with_service_name() {
    let harness = harness();
    let now = now_ns();
    let body = format!(
        r#"{{"resourceLogs":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"boxoffice"}}}}]}},
          "scopeLogs":[{{"logRecords":[{{"timeUnixNano":"{now}","severityNumber":17,
          "body":{{"kvlistValue":{{"values":[{{"key":"event","value":{{"stringValue":"checkout_failed"}}}}]}}}}}}]}}]}}]}}"#
    );
    let request = Request::post("/v1/logs")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("request");
    let (status, text) = send(&harness.state, request).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let query = encode(r#"{service_name="boxoffice"} | detected_level="error" | json"#);
    let body = json(&send(&harness.state, get(&format!("/loki/api/v1/query_range?query={query}"))).await.1);
    assert_eq!(body["data"]["result"][0]["stream"]["event"], "checkout_failed");
}

fn push_lines(state: &Arc<ServerState>, service: &str, lines: &[(i64, &str)]) {
    push_stream(state, &[("service_name", service), ("level", "info")], lines);
}

#[tokio::test]
async fn patterns_cluster_lines_with_counts_per_step() {
    let harness = harness();
    let base = (now_ns() / 60_000_000_000 - 5) * 60_000_000_000;
    push_lines(
        &harness.state,
        "worker",
        &[
            (base + 1_000_000_000, "task notify_event_open done in 12ms for user alice"),
            (base + 2_000_000_000, "task notify_event_open done in 40ms for user bob"),
            (base + 15_000_000_000, "task send_receipt done in 7ms for user carol"),
            (base + 16_000_000_000, "cache miss key=events"),
        ],
    );
    let uri = format!(
        "/loki/api/v1/patterns?query={}&start={}&end={}&step=10s",
        encode(r#"{service_name="worker"}"#),
        base,
        base + 60_000_000_000
    );
    let (status, body) = send(&harness.state, get(&uri)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let body = json(&body);
    assert_eq!(body["status"], "success");
    let first = &body["data"][0];
    assert_eq!(first["pattern"], "task <_> done in <_> for user <_>");
    assert_eq!(first["level"], "info");
    let base_seconds = base / 1_000_000_000;
    assert_eq!(first["samples"], serde_json::json!([[base_seconds, 2], [base_seconds + 10, 1]]));
    assert_eq!(body["data"][1]["pattern"], "cache miss key=events");
}

#[tokio::test]
async fn tail_streams_new_entries_over_a_real_websocket() {
    use futures_util::{SinkExt, StreamExt};
    let harness = harness();
    let start = now_ns() - 10_000_000_000;
    push_lines(&harness.state, "boxoffice", &[(start + 1_000_000_000, "first line")]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let app = router(harness.state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    // Bad parameters are refused before the upgrade.
    let refused = tokio_tungstenite::connect_async(format!(
        "ws://{address}/loki/api/v1/tail?query={}&delay_for=9",
        encode(r#"{service_name="boxoffice"}"#)
    ))
    .await;
    assert!(refused.is_err(), "delay_for over 5 is refused");

    let url = format!(
        "ws://{address}/loki/api/v1/tail?query={}&start={start}&limit=10",
        encode(r#"{service_name="boxoffice"} |= "line""#)
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("websocket handshake");
    let mut next_message = async || -> serde_json::Value {
        loop {
            let message = tokio::time::timeout(std::time::Duration::from_secs(30), socket.next())
                .await
                .expect("a tail message arrives")
                .expect("socket open")
                .expect("message");
            if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
                return json(text.as_str());
            }
        }
    };
    let first = next_message().await;
    assert_eq!(first["streams"][0]["stream"]["service_name"], "boxoffice");
    assert_eq!(first["streams"][0]["values"][0][1], "first line");
    assert_eq!(first["streams"][0]["values"][0][0], (start + 1_000_000_000).to_string());
    assert!(first["dropped_entries"].is_null());
    push_lines(&harness.state, "boxoffice", &[(now_ns(), "second line"), (now_ns() + 1, "not matching")]);
    let second = next_message().await;
    let values = second["streams"][0]["values"].as_array().expect("values").clone();
    assert_eq!(values.len(), 1, "{second}");
    assert_eq!(values[0][1], "second line");
    socket.send(tokio_tungstenite::tungstenite::Message::Close(None)).await.expect("close");
}

fn push_stream(state: &Arc<ServerState>, labels: &[(&str, &str)], lines: &[(i64, &str)]) {
    let storage = state.log_storage().expect("log storage set");
    let entries = lines.iter().map(|(time, line)| oxeye_model::logs::LogEntry::new(*time, *line)).collect::<Vec<_>>();
    let labels = oxeye_model::Labels::from_pairs(labels.iter().copied());
    let summary = storage.push(vec![oxeye_model::logs::LogStream { labels, entries }]).expect("push");
    assert_eq!(summary.accepted as usize, lines.len());
}

/// The shapes Grafana's Logs Drilldown reads from `index/volume`, `index/volume_range` and
/// `detected_labels`, as Loki's `pkg/querier/queryrange/volume.go` and `pkg/querier/querier.go` answer.
#[tokio::test]
async fn volume_and_detected_labels_answer_in_lokis_shapes() {
    let harness = harness();
    // Whole minutes, so the ten-second volume buckets below fall on known boundaries.
    let base = (now_ns() / 60_000_000_000 - 2) * 60_000_000_000;
    let second = 1_000_000_000i64;
    let long = "a".repeat(300);
    let boxoffice = [("service_name", "boxoffice"), ("env", "prod")];
    push_stream(&harness.state, &boxoffice, &[(base + second, long.as_str()), (base + 15 * second, "bb")]);
    let worker = [("service_name", "worker"), ("env", "prod"), ("pod", "17")];
    push_stream(&harness.state, &worker, &[(base + 2 * second, "c".repeat(100).as_str())]);
    let window = format!("start={}&end={}", base, base + 30 * second - 1);

    // Instant volume: a vector, largest first, grouped by the labels the selector names.
    let uri = format!("/loki/api/v1/index/volume?query={}&{window}", encode(r#"{service_name=~".+"}"#));
    let body = json(&send(&harness.state, get(&uri)).await.1);
    assert_eq!(body["data"]["resultType"], "vector");
    let result = body["data"]["result"].as_array().expect("result");
    let groups: Vec<(&str, &str)> = result
        .iter()
        .map(|item| (item["metric"]["service_name"].as_str().unwrap_or(""), item["value"][1].as_str().unwrap_or("")))
        .collect();
    assert_eq!(groups, [("boxoffice", "302"), ("worker", "100")]);
    assert!(result[0]["metric"].get("env").is_none());
    // limit keeps the largest; aggregateBy=labels reports label names with empty values.
    let uri = format!("/loki/api/v1/index/volume?query={}&{window}&limit=1", encode(r#"{service_name=~".+"}"#));
    let body = json(&send(&harness.state, get(&uri)).await.1);
    assert_eq!(body["data"]["result"].as_array().map(Vec::len), Some(1));
    let uri = format!("/loki/api/v1/index/volume?query={}&{window}&aggregateBy=labels", encode("{}"));
    let body = json(&send(&harness.state, get(&uri)).await.1);
    let metrics: Vec<&serde_json::Value> =
        body["data"]["result"].as_array().expect("result").iter().map(|item| &item["metric"]).collect();
    let expected =
        [serde_json::json!({"env": ""}), serde_json::json!({"service_name": ""}), serde_json::json!({"pod": ""})];
    assert_eq!(metrics, expected.iter().collect::<Vec<_>>());
    let uri = format!("/loki/api/v1/index/volume?query={}&{window}&aggregateBy=x", encode("{}"));
    assert_eq!(send(&harness.state, get(&uri)).await.0, StatusCode::BAD_REQUEST);

    // Range volume: buckets aligned to the step, each sample at its bucket's end (one millisecond before
    // the next step), the last at the window's end.
    let uri = format!(
        "/loki/api/v1/index/volume_range?query={}&{window}&step=10s&targetLabels=service_name",
        encode(r#"{env="prod"}"#)
    );
    let body = json(&send(&harness.state, get(&uri)).await.1);
    assert_eq!(body["data"]["resultType"], "matrix", "{body}");
    let first = &body["data"]["result"][0];
    assert_eq!(first["metric"], serde_json::json!({"service_name": "boxoffice"}));
    let base_seconds = (base / second) as f64;
    assert_eq!(first["values"], serde_json::json!([[base_seconds + 9.999, "300"], [base_seconds + 19.999, "2"]]));
    let uri = format!("/loki/api/v1/index/volume_range?query={}&{window}&step=0.001", encode("{}"));
    assert_eq!(send(&harness.state, get(&uri)).await.0, StatusCode::BAD_REQUEST);

    // detected_labels leaves out labels whose values are all ids, unless Loki always lists them (pod).
    push_stream(
        &harness.state,
        &[("service_name", "ids"), ("request_id", "3f2b8c1e-7d4a-4e9b-a1c2-0d5e6f7a8b9c")],
        &[(base, "x")],
    );
    let body = json(&send(&harness.state, get(&format!("/loki/api/v1/detected_labels?{window}"))).await.1);
    let labels: Vec<&str> =
        body["detectedLabels"].as_array().expect("labels").iter().filter_map(|label| label["label"].as_str()).collect();
    assert_eq!(labels, ["env", "pod", "service_name"]);
}

/// The values of a `query_range` answer's first stream, as `[timestamp, line]` pairs.
async fn first_stream_values(state: &Arc<ServerState>, query: &str) -> serde_json::Value {
    let body = json(&send(state, get(&format!("/loki/api/v1/query_range?query={}", encode(query)))).await.1);
    body["data"]["result"][0]["values"].clone()
}

/// Sends `request`, asserts a 400 and that `selector` then finds nothing; returns the error text.
async fn refused_and_nothing_stored(state: &Arc<ServerState>, request: Request<Body>, selector: &str) -> String {
    let (status, text) = send(state, request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert_eq!(first_stream_values(state, selector).await, serde_json::Value::Null, "{selector} stored");
    text
}

#[tokio::test]
async fn gzip_push_bodies_are_stored_as_loki_stores_them() {
    let harness = harness();
    let now = now_ns();
    let body = format!(r#"{{"streams":[{{"stream":{{"service_name":"gz"}},"values":[["{now}","gzipped line"]]}}]}}"#);
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut encoder, body.as_bytes()).expect("gzip");
    let request = post("/loki/api/v1/push", "application/json", Some("gzip"), encoder.finish().expect("gzip"));
    let (status, text) = send(&harness.state, request).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{text}");
    assert_eq!(first_stream_values(&harness.state, r#"{service_name="gz"}"#).await[0][1], "gzipped line");

    // A body that claims gzip but is not: 400, nothing stored.
    let request = post("/loki/api/v1/push", "application/json", Some("gzip"), body.replace("gz\"", "plain\""));
    refused_and_nothing_stored(&harness.state, request, r#"{service_name="plain"}"#).await;
}

#[tokio::test]
async fn malformed_otlp_logs_are_400_and_store_nothing() {
    let harness = harness();
    let request = post("/v1/logs", "application/x-protobuf", None, vec![0x0a, 0xff, 0xff, 0xff]);
    let (status, text) = send(&harness.state, request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    // The first record is valid, the second's timestamp is not a number: the whole request is refused.
    let now = now_ns();
    let body = format!(
        r#"{{"resourceLogs":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"half"}}}}]}},
          "scopeLogs":[{{"logRecords":[{{"timeUnixNano":"{now}","body":{{"stringValue":"first"}}}},
                                       {{"timeUnixNano":"soon","body":{{"stringValue":"second"}}}}]}}]}}]}}"#
    );
    let request = post("/v1/logs", "application/json", None, body);
    refused_and_nothing_stored(&harness.state, request, r#"{service_name="half"}"#).await;
}

#[tokio::test]
async fn buildinfo_answers_in_lokis_shape() {
    let harness = harness();
    let (status, text) = send(&harness.state, get("/loki/api/v1/status/buildinfo")).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let body = json(&text);
    assert_eq!(body["version"], "test");
    for key in ["revision", "branch", "buildUser", "buildDate", "goVersion"] {
        assert!(body[key].is_string(), "{key} missing in {text}");
    }
}

#[tokio::test]
async fn a_push_with_one_malformed_stream_stores_none_of_its_streams() {
    let harness = harness();
    let body = format!(
        r#"{{"streams":[{{"stream":{{"service_name":"whole"}},"values":[["{}","valid line"]]}},
                        {{"stream":{{"service_name":"whole"}},"values":[["{}"]]}}]}}"#,
        now_ns(),
        now_ns()
    );
    let text = refused_and_nothing_stored(&harness.state, push_json(body), r#"{service_name="whole"}"#).await;
    assert!(text.contains("streams[1].values[0]"), "{text}");
}

/// A parsed label or structured metadata named like a stream label gets `_extracted`; a parsed label named
/// like structured metadata replaces it (grafana/loki `pkg/logql/log/labels.go`: `BaseHas` sees stream labels only, `LabelsBuilder.Set` of a
/// `ParsedLabel` deletes the `StructuredMetadataLabel` of its name); a pattern naming a capture twice is
/// refused (`pkg/logql/log/pattern/ast.go`, `expr.validate`).
#[tokio::test]
async fn parsed_labels_collide_with_stream_labels_and_structured_metadata_as_in_loki() {
    let harness = harness();
    let now = now_ns();
    let body = format!(
        r#"{{"streams":[{{"stream":{{"service_name":"shop","level":"stream"}},"values":[["{now}","level=warn trace_id=from-line","#
    ) + r#"{"trace_id":"from-metadata","level":"from-metadata"}]]}]}"#;
    let (status, text) = send(&harness.state, push_json(body)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{text}");
    let query = |query: &str| {
        let uri = format!("/loki/api/v1/query_range?query={}&start={}&end={}", encode(query), now - 1, now + 1);
        get(&uri)
    };
    let body = json(&send(&harness.state, query(r#"{service_name="shop"}"#)).await.1);
    let stream = &body["data"]["result"][0]["stream"];
    assert_eq!((&stream["trace_id"], &stream["level"]), (&"from-metadata".into(), &"stream".into()));
    // Structured metadata named like a stream label takes the suffix too (`LabelsBuilder.Add`).
    assert_eq!(stream["level_extracted"], "from-metadata");
    for parser in
        ["logfmt", r#"pattern "level=<level> trace_id=<trace_id>""#, r#"regexp "trace_id=(?P<trace_id>\\S+)""#]
    {
        let body = json(&send(&harness.state, query(&format!(r#"{{service_name="shop"}} | {parser}"#))).await.1);
        let stream = &body["data"]["result"][0]["stream"];
        assert_eq!((&stream["level"], &stream["trace_id"]), (&"stream".into(), &"from-line".into()), "{parser}");
    }
    let body = json(&send(&harness.state, query(r#"{service_name="shop"} | logfmt"#)).await.1);
    assert_eq!(body["data"]["result"][0]["stream"]["level_extracted"], "warn");
    let (status, text) = send(&harness.state, query(r#"{service_name="shop"} | pattern "<a> <a>""#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("duplicate capture name (a)"), "{text}");
}
