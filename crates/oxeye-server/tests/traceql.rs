//! The Tempo search API tested in-process over the seed-shaped traces in an in-memory trace store:
//! `/api/search` (TraceQL and legacy tags), tag names and values v1/v2, TraceQL metrics, and refusals.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use oxeye_promql::{Engine, EngineOptions};
use oxeye_server::{ServerOptions, ServerState, router};
use oxeye_traceql::testing::{MemoryTraceStore, seed_traces};
use serde_json::Value;
use tower::ServiceExt;

/// Traces start at BASE_SECONDS + 0..5 s.
const BASE_SECONDS: u64 = 1_700_000_004;
const BASE: u64 = BASE_SECONDS * 1_000_000_000;

fn state(with_store: bool) -> Arc<ServerState> {
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
    if with_store {
        state.set_trace_reader(Arc::new(MemoryTraceStore::with_traces(seed_traces(BASE))));
    }
    state
}

async fn get(state: &Arc<ServerState>, uri: &str) -> (StatusCode, String) {
    let request = Request::get(uri).body(Body::empty()).expect("request");
    let response = router(state.clone()).oneshot(request).await.expect("router answers");
    let status = response.status();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

async fn get_json(state: &Arc<ServerState>, uri: &str) -> Value {
    let (status, body) = get(state, uri).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    serde_json::from_str(&body).expect("json body")
}

fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn window() -> String {
    format!("start={BASE_SECONDS}&end={}", BASE_SECONDS + 60)
}

fn search_uri(query: &str, extra: &str) -> String {
    format!("/api/search?q={}&{}{extra}", encode(query), window())
}

fn trace_ids(body: &Value) -> Vec<String> {
    body["traces"]
        .as_array()
        .expect("traces")
        .iter()
        .map(|trace| trace["traceID"].as_str().unwrap_or("").to_string())
        .collect()
}

fn seed_id(n: u8) -> String {
    format!("5e{}{n:02x}", "0".repeat(28))
}

#[tokio::test]
async fn search_answers_tempo_shape_for_the_error_trace() {
    let state = state(true);
    let body = get_json(&state, &search_uri("{ status = error && kind = server }", "")).await;
    assert_eq!(trace_ids(&body), vec![seed_id(2)]);
    let trace = &body["traces"][0];
    assert_eq!(trace["rootServiceName"], "boxoffice");
    assert_eq!(trace["rootTraceName"], "POST /tickets/checkout/");
    assert_eq!(trace["startTimeUnixNano"], (BASE + 1_000_000_000).to_string());
    assert_eq!(trace["durationMs"], 300);
    let spanset = &trace["spanSets"][0];
    assert_eq!(spanset["matched"], 1);
    assert_eq!(trace["spanSet"], *spanset);
    let span = &spanset["spans"][0];
    assert_eq!(span["spanID"], "0200000000000001");
    assert_eq!(span["name"], "POST /tickets/checkout/");
    assert_eq!(span["startTimeUnixNano"], (BASE + 1_000_000_000).to_string());
    assert_eq!(span["durationNanos"], "300000000");
    assert_eq!(
        span["attributes"],
        serde_json::json!([
            {"key": "status", "value": {"stringValue": "error"}},
            {"key": "kind", "value": {"stringValue": "server"}},
        ])
    );
    assert_eq!(body["metrics"]["inspectedTraces"], 1);
}

#[tokio::test]
async fn search_is_newest_first_with_limit_spss_and_durations() {
    let state = state(true);
    let all = get_json(&state, &search_uri("{ }", "")).await;
    assert_eq!(trace_ids(&all), (1..=6).rev().map(seed_id).collect::<Vec<_>>());
    let limited = get_json(&state, &search_uri("{ }", "&limit=2&spss=1")).await;
    assert_eq!(trace_ids(&limited), vec![seed_id(6), seed_id(5)]);
    assert_eq!(limited["traces"][1]["spanSets"][0]["spans"].as_array().map(Vec::len), Some(1));
    assert_eq!(limited["traces"][1]["spanSets"][0]["matched"], 2);
    let slow = get_json(&state, &search_uri("{ }", "&minDuration=2s")).await;
    assert_eq!(trace_ids(&slow), vec![seed_id(3)]);
    let fast = get_json(&state, &search_uri("{ }", "&maxDuration=100ms")).await;
    assert_eq!(trace_ids(&fast), vec![seed_id(6), seed_id(5)]);
    // The window: only the traces starting in the first two seconds.
    let early =
        get_json(&state, &format!("/api/search?q={}&start={BASE_SECONDS}&end={}", encode("{ }"), BASE_SECONDS + 1))
            .await;
    assert_eq!(trace_ids(&early), vec![seed_id(2), seed_id(1)]);
    // Without a window, the last 24 hours: the seed traces are older.
    let recent = get_json(&state, &format!("/api/search?q={}", encode("{ }"))).await;
    assert_eq!(trace_ids(&recent), Vec::<String>::new());
}

#[tokio::test]
async fn search_structural_pipeline_and_by() {
    let state = state(true);
    let body = get_json(
        &state,
        &search_uri(r#"{ name = "ticket.checkout" } >> { name = "eligibility.check_membership" }"#, ""),
    )
    .await;
    assert_eq!(trace_ids(&body), vec![seed_id(2)]);
    let body = get_json(&state, &search_uri("{ } | count() > 4", "")).await;
    assert_eq!(trace_ids(&body), vec![seed_id(2)]);
    let body = get_json(&state, &search_uri("{ kind = server } | avg(duration) > 1s", "")).await;
    assert_eq!(trace_ids(&body), vec![seed_id(3)]);
    let body = get_json(&state, &search_uri("{ } | by(resource.service.name)", "&limit=1")).await;
    assert_eq!(body["traces"][0]["spanSets"][0]["attributes"][0]["key"], "by(resource.service.name)");
    let body = get_json(&state, &search_uri(r#"{ span.http.route = "/events/" } | select(span.request_id)"#, "")).await;
    let attributes = &body["traces"][0]["spanSets"][0]["spans"][0]["attributes"];
    assert_eq!(attributes[0], serde_json::json!({"key": "http.route", "value": {"stringValue": "/events/"}}));
    assert_eq!(attributes[1], serde_json::json!({"key": "request_id", "value": {"stringValue": "req-3"}}));
}

#[tokio::test]
async fn legacy_tags_search() {
    let state = state(true);
    let uri = format!("/api/search?tags={}&{}", encode("service.name=boxoffice http.status_code=500"), window());
    assert_eq!(trace_ids(&get_json(&state, &uri).await), vec![seed_id(2)]);
    let uri = format!("/api/search?tags={}&minDuration=2s&{}", encode(r#"http.method="GET""#), window());
    assert_eq!(trace_ids(&get_json(&state, &uri).await), vec![seed_id(3)]);
    let uri = format!("/api/search?{}&limit=3", window());
    assert_eq!(trace_ids(&get_json(&state, &uri).await).len(), 3);
}

#[tokio::test]
async fn invalid_traceql_is_400_with_the_position() {
    let state = state(true);
    let (status, body) = get(&state, &search_uri("{ .a = 1 } foo", "")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body.trim(),
        "invalid TraceQL query: parse error at line 1, col 12: syntax error: unexpected IDENTIFIER"
    );
    let (status, body) = get(&state, &search_uri("{ } | rate()", "")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = get(&state, &search_uri("{ }", "&minDuration=fast")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = get(&state, &search_uri("{ }", "&limit=-1")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = get(&state, &format!("/api/search?q={}&start=20&end=10", encode("{ }"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = get(&state, &format!("/api/search?tags={}", encode("novalue"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn without_a_trace_store_the_api_answers_503() {
    let state = state(false);
    let (status, _) = get(&state, &search_uri("{ }", "")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, _) = get(&state, "/api/v2/search/tags").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn tag_names_v1_and_v2() {
    let state = state(true);
    let v1 = get_json(&state, &format!("/api/search/tags?{}", window())).await;
    let names: Vec<&str> = v1["tagNames"].as_array().expect("names").iter().filter_map(Value::as_str).collect();
    assert!(names.contains(&"service.name") && names.contains(&"http.route") && names.contains(&"request_id"));
    let resource = get_json(&state, &format!("/api/search/tags?scope=resource&{}", window())).await;
    assert_eq!(resource["tagNames"], serde_json::json!(["deployment.environment", "service.name"]));
    let intrinsic = get_json(&state, "/api/search/tags?scope=intrinsic").await;
    assert!(intrinsic["tagNames"].as_array().expect("names").contains(&Value::from("traceDuration")));

    let v2 = get_json(&state, &format!("/api/v2/search/tags?{}", window())).await;
    let scopes: Vec<&str> =
        v2["scopes"].as_array().expect("scopes").iter().filter_map(|scope| scope["name"].as_str()).collect();
    assert_eq!(scopes, vec!["resource", "span", "event", "link", "intrinsic"]);
    assert_eq!(v2["scopes"][2]["tags"], serde_json::json!(["exception.message", "exception.type"]));
    let filtered =
        get_json(&state, &format!("/api/v2/search/tags?scope=span&q={}&{}", encode("{ kind = consumer }"), window()))
            .await;
    assert_eq!(filtered["scopes"], serde_json::json!([{"name": "span", "tags": ["celery.state", "celery.task_name"]}]));
    // An unparsable `q` lists unfiltered.
    let unfiltered =
        get_json(&state, &format!("/api/v2/search/tags?scope=span&q={}&{}", encode("{ kind = "), window())).await;
    assert!(unfiltered["scopes"][0]["tags"].as_array().expect("tags").len() > 2);
    let (status, _) = get(&state, "/api/v2/search/tags?scope=bogus").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn tag_values_v1_and_v2() {
    let state = state(true);
    let v1 = get_json(&state, &format!("/api/search/tag/service.name/values?{}", window())).await;
    assert_eq!(v1["tagValues"], serde_json::json!(["boxoffice", "boxoffice-worker"]));
    let v2 = get_json(&state, &format!("/api/v2/search/tag/resource.service.name/values?{}", window())).await;
    assert_eq!(
        v2["tagValues"],
        serde_json::json!([{"type": "string", "value": "boxoffice"}, {"type": "string", "value": "boxoffice-worker"}])
    );
    let codes = get_json(&state, &format!("/api/v2/search/tag/span.http.status_code/values?{}", window())).await;
    assert_eq!(codes["tagValues"][0], serde_json::json!({"type": "int", "value": "200"}));
    let status = get_json(&state, "/api/v2/search/tag/status/values").await;
    assert_eq!(
        status["tagValues"],
        serde_json::json!([{"type": "keyword", "value": "error"}, {"type": "keyword", "value": "ok"}, {"type": "keyword", "value": "unset"}])
    );
    let filtered = get_json(
        &state,
        &format!(
            "/api/v2/search/tag/name/values?q={}&{}",
            encode(r#"{ resource.service.name = "boxoffice-worker" }"#),
            window()
        ),
    )
    .await;
    assert_eq!(filtered["tagValues"], serde_json::json!([{"type": "string", "value": "run/send_confirmation_email"}]));
}

#[tokio::test]
async fn metrics_query_range_and_instant() {
    let state = state(true);
    let uri = format!(
        "/api/metrics/query_range?q={}&start={BASE_SECONDS}&end={}&step=2s",
        encode("{ kind = server } | rate() by (resource.service.name)"),
        BASE_SECONDS + 5
    );
    let body = get_json(&state, &uri).await;
    let series = &body["series"][0];
    assert_eq!(
        series["labels"],
        serde_json::json!([{"key": "resource.service.name", "value": {"stringValue": "boxoffice"}}])
    );
    assert_eq!(series["promLabels"], r#"{resource.service.name="boxoffice"}"#);
    // `end` covers its whole second: six steps of... three steps of 2 s from BASE.
    let samples = series["samples"].as_array().expect("samples");
    assert_eq!(samples[0], serde_json::json!({"timestampMs": (BASE / 1_000_000).to_string(), "value": 1.0}));
    assert_eq!(
        samples.iter().map(|sample| sample["value"].as_f64().unwrap_or(-1.0)).collect::<Vec<_>>(),
        vec![1.0, 1.0, 0.5]
    );

    let uri = format!(
        "/api/metrics/query_range?q={}&start={BASE_SECONDS}&end={}&step=10s",
        encode("{ } | quantile_over_time(duration, .9)"),
        BASE_SECONDS + 5
    );
    let body = get_json(&state, &uri).await;
    assert_eq!(body["series"][0]["promLabels"], r#"{__name__="quantile_over_time", p="0.9"}"#);

    let uri = format!(
        "/api/metrics/query?q={}&start={BASE_SECONDS}&end={}",
        encode("{ status = error } | count_over_time()"),
        BASE_SECONDS + 5
    );
    let body = get_json(&state, &uri).await;
    assert_eq!(body["series"][0]["value"], 2.0);

    let (status, body) = get(&state, &format!("/api/metrics/query_range?q={}&{}", encode("{ }"), window())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) =
        get(&state, &format!("/api/metrics/query_range?q={}&{}&step=1ms", encode("{ } | rate()"), window())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
