//! The router tested in-process (`tower::ServiceExt::oneshot`) over a real TSDB in a temporary directory:
//! response shapes, status codes and "nothing of a refused request is stored".

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use oxeye_model::storage::Querier;
use oxeye_model::{Matcher, Sample};
use oxeye_promql::{Engine, EngineOptions};
use oxeye_proto::prometheus::{Label, Sample as WireSample, TimeSeries, WriteRequest};
use oxeye_server::{ServerOptions, ServerState, router};
use prost::Message;
use tower::ServiceExt;

struct Harness {
    _directory: tempfile::TempDir,
    storage: Arc<oxeye_tsdb::Tsdb>,
    state: Arc<ServerState>,
}

fn harness() -> Harness {
    let directory = tempfile::tempdir().expect("temporary directory");
    let storage = oxeye_tsdb::Tsdb::open(oxeye_tsdb::TsdbOptions::new(directory.path())).expect("tsdb opens");
    let options = ServerOptions {
        listen: "127.0.0.1:0".parse().expect("address"),
        otlp_http_listen: None,
        otlp_grpc_listen: None,
        max_request_body_bytes: 1 << 20,
        version: "test".into(),
        storage_retention: "30d".into(),
        flags: vec![("storage.tsdb.path".into(), "data".into())],
        config_yaml: "version: 1\n".into(),
    };
    let state = ServerState::new(options, Engine::new(EngineOptions::default()));
    state.set_storage(storage.clone(), Box::new(|_| {}));
    Harness { _directory: directory, storage, state }
}

async fn send(state: &Arc<ServerState>, request: Request<Body>) -> (StatusCode, String) {
    let response = router(state.clone()).oneshot(request).await.expect("router answers");
    let status = response.status();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn form_post(uri: &str, form: &str) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form.to_string()))
        .expect("request")
}

/// One series for a remote_write body: metric name, label pairs, samples as (milliseconds, value).
type SeriesSpec<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [(i64, f64)]);

fn remote_write_body(series: &[SeriesSpec<'_>]) -> Vec<u8> {
    let request = WriteRequest {
        timeseries: series
            .iter()
            .map(|(name, labels, samples)| TimeSeries {
                labels: std::iter::once(Label { name: "__name__".into(), value: (*name).into() })
                    .chain(labels.iter().map(|(name, value)| Label { name: (*name).into(), value: (*value).into() }))
                    .collect(),
                samples: samples
                    .iter()
                    .map(|(timestamp, value)| WireSample { value: *value, timestamp: *timestamp })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        metadata: Vec::new(),
    };
    snap::raw::Encoder::new().compress_vec(&request.encode_to_vec()).expect("snappy")
}

fn remote_write(body: Vec<u8>) -> Request<Body> {
    Request::post("/api/v1/write")
        .header(header::CONTENT_TYPE, "application/x-protobuf")
        .header(header::CONTENT_ENCODING, "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(Body::from(body))
        .expect("request")
}

fn stored_samples(storage: &oxeye_tsdb::Tsdb, metric: &str) -> Vec<Sample> {
    storage
        .select(i64::MIN / 2, i64::MAX / 2, &[Matcher::equal("__name__", metric)])
        .expect("select")
        .into_iter()
        .flat_map(|series| series.samples)
        .collect()
}

#[tokio::test]
async fn grafana_save_and_test_gets_the_exact_scalar() {
    let harness = harness();
    let (status, body) = send(&harness.state, form_post("/api/v1/query", "query=1%2B1&time=4")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, r#"{"status":"success","data":{"resultType":"scalar","result":[4,"2"]}}"#);
    let (status, body) =
        send(&harness.state, Request::get("/api/v1/status/buildinfo").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains(r#""version":"test""#) && !body.contains("features"), "{body}");
}

#[tokio::test]
async fn invalid_promql_is_bad_data_with_position() {
    let harness = harness();
    let (status, body) = send(&harness.state, form_post("/api/v1/query", "query=sum(rate(up%5B5m%5D)&time=4")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains(r#""errorType":"bad_data""#) && body.contains("1:"), "{body}");
}

#[tokio::test]
async fn query_range_validates_like_prometheus() {
    let harness = harness();
    let cases = [
        ("query=up&start=10&end=5&step=1", "end timestamp must not be before start time"),
        ("query=up&start=0&end=5&step=0", "zero or negative query resolution step widths are not accepted"),
        ("query=up&start=0&end=100000&step=1", "exceeded maximum resolution of 11,000 points per timeseries"),
        ("query=up&start=yesterday&end=5&step=1", "invalid parameter \\\"start\\\""),
    ];
    for (form, expected) in cases {
        let (status, body) = send(&harness.state, form_post("/api/v1/query_range", form)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{form}: {body}");
        assert!(body.contains(expected), "{form}: {body}");
    }
}

#[tokio::test]
async fn remote_write_stores_and_queries_back() {
    let harness = harness();
    let body = remote_write_body(&[
        (
            "django_http_requests_total_by_method_total",
            &[("method", "GET"), ("job", "django")],
            &[(1_000, 1.0), (16_000, 5.0)],
        ),
        ("revel_tickets_sold_total", &[("job", "django")], &[(16_000, 42.0)]),
    ]);
    let (status, body) = send(&harness.state, remote_write(body)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) =
        send(&harness.state, form_post("/api/v1/query", "query=revel_tickets_sold_total&time=16")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"revel_tickets_sold_total","job":"django"},"value":[16,"42"]}]}}"#
    );
    let (_, body) = send(
        &harness.state,
        Request::get("/api/v1/series?match%5B%5D=%7Bjob%3D%22django%22%7D").body(Body::empty()).unwrap(),
    )
    .await;
    assert!(
        body.contains("django_http_requests_total_by_method_total") && body.contains("revel_tickets_sold_total"),
        "{body}"
    );
    let (_, body) =
        send(&harness.state, Request::get("/api/v1/label/method/values").body(Body::empty()).unwrap()).await;
    assert_eq!(body, r#"{"status":"success","data":["GET"]}"#);
}

#[tokio::test]
async fn out_of_order_remote_write_is_refused_whole() {
    let harness = harness();
    let first = remote_write_body(&[("up", &[("job", "a")], &[(10_000, 1.0)])]);
    assert_eq!(send(&harness.state, remote_write(first)).await.0, StatusCode::NO_CONTENT);
    // One good series and one out-of-order sample in the same request: nothing of it is stored.
    let second = remote_write_body(&[
        ("revel_events_created_total", &[("job", "a")], &[(20_000, 3.0)]),
        ("up", &[("job", "a")], &[(5_000, 0.0)]),
    ]);
    let (status, body) = send(&harness.state, remote_write(second)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("out of order sample") && body.contains("nothing of this request was stored"), "{body}");
    assert!(stored_samples(&harness.storage, "revel_events_created_total").is_empty());
    assert_eq!(stored_samples(&harness.storage, "up"), [Sample { timestamp_ms: 10_000, value: 1.0 }]);
}

#[tokio::test]
async fn known_series_keep_every_refusal_of_the_first_request() {
    // The second and later requests for a series find it by its raw label bytes (no label decoding):
    // order, duplicates and invalid labels must be refused exactly as on first sight.
    let harness = harness();
    let series = |timestamp_ms: i64, value: f64| {
        remote_write_body(&[
            ("up", &[("job", "api")], &[(timestamp_ms, value)]),
            ("up", &[("job", "web")], &[(timestamp_ms, 1.0)]),
        ])
    };
    for (timestamp_ms, value) in [(1_000, 1.0), (2_000, 2.0), (3_000, 3.0)] {
        assert_eq!(send(&harness.state, remote_write(series(timestamp_ms, value))).await.0, StatusCode::NO_CONTENT);
    }
    let (status, body) = send(&harness.state, remote_write(series(2_500, 9.0))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("out of order sample") && body.contains(r#"up{job="api"}"#), "{body}");
    let (status, body) = send(&harness.state, remote_write(series(3_000, 4.0))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("duplicate sample"), "{body}");
    // The known series' bytes with one value byte made invalid UTF-8: a new series, refused on sight.
    let mut invalid = snap::raw::Decoder::new().decompress_vec(&series(4_000, 5.0)).expect("snappy");
    let position = invalid.windows(3).rposition(|window| window == b"web").expect("value");
    invalid[position] = 0xff;
    let invalid = snap::raw::Encoder::new().compress_vec(&invalid).expect("snappy");
    let (status, body) = send(&harness.state, remote_write(invalid)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("invalid UTF-8") && body.contains("nothing of this request was stored"), "{body}");
    let expected: Vec<Sample> =
        [(1_000, 1.0), (2_000, 2.0), (3_000, 3.0)].map(|(timestamp_ms, value)| Sample { timestamp_ms, value }).into();
    let api = harness
        .storage
        .select(0, 10_000, &[Matcher::equal("job", "api")])
        .expect("select")
        .into_iter()
        .flat_map(|series| series.samples)
        .collect::<Vec<_>>();
    assert_eq!(api, expected);
    assert_eq!(stored_samples(&harness.storage, "up").len(), 6);
}

#[tokio::test]
async fn malformed_remote_write_bodies_are_400_and_name_the_problem() {
    let harness = harness();
    let (status, body) = send(&harness.state, remote_write(b"definitely not snappy".to_vec())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.to_lowercase().contains("snappy"), "{body}");
    let truncated_protobuf = snap::raw::Encoder::new().compress_vec(&[0x0a, 0x20, 0x0a]).expect("snappy");
    let (status, body) = send(&harness.state, remote_write(truncated_protobuf)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let duplicate_label = remote_write_body(&[("up", &[("job", "a"), ("job", "b")], &[(1_000, 1.0)])]);
    let (status, body) = send(&harness.state, remote_write(duplicate_label)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("duplicate label name"), "{body}");
    assert!(stored_samples(&harness.storage, "up").is_empty());
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let harness = harness();
    let (status, _) = send(&harness.state, remote_write(vec![0u8; 2 << 20])).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn otlp_capture_from_the_python_sdk_is_stored() {
    // Reads ../shared (the captured request body of opentelemetry-exporter-otlp-proto-http 1.45.2).
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/conformance/captures/v1_metrics.first.bin");
    let Ok(capture) = std::fs::read(path) else {
        eprintln!("skipping: {path} is absent (the shared/ folder beside the repo)");
        return;
    };
    let harness = harness();
    let request = Request::post("/v1/metrics")
        .header(header::CONTENT_TYPE, "application/x-protobuf")
        .body(Body::from(capture))
        .expect("request");
    let (status, body) = send(&harness.state, request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, names) =
        send(&harness.state, Request::get("/api/v1/label/__name__/values").body(Body::empty()).unwrap()).await;
    assert!(names.contains("http_server_duration_milliseconds_bucket"), "{names}");
    assert!(names.contains("target_info"), "{names}");
}

#[tokio::test]
async fn malformed_otlp_is_400_with_a_google_rpc_status() {
    let harness = harness();
    let request = Request::post("/v1/metrics")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"resourceMetrics\": [ {\"scopeMetrics\": 7 } ]}"))
        .expect("request");
    let (status, body) = send(&harness.state, request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("\"code\":3") && body.contains("scopeMetrics"), "{body}");
}

#[tokio::test]
async fn not_ready_storage_answers_503() {
    let options = ServerOptions {
        listen: "127.0.0.1:0".parse().expect("address"),
        otlp_http_listen: None,
        otlp_grpc_listen: None,
        max_request_body_bytes: 1 << 20,
        version: "test".into(),
        storage_retention: "30d".into(),
        flags: vec![("storage.tsdb.path".into(), "data".into())],
        config_yaml: "version: 1\n".into(),
    };
    let state = ServerState::new(options, Engine::new(EngineOptions::default()));
    let (status, _) = send(&state, Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, body) = send(&state, form_post("/api/v1/query", "query=up")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("unavailable"), "{body}");
    let (status, _) = send(&state, Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn format_and_status_endpoints() {
    let harness = harness();
    let (status, body) = send(
        &harness.state,
        Request::get("/api/v1/format_query?query=sum(rate(up%5B5m%5D))by(job)").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, r#"{"status":"success","data":"sum by (job) (rate(up[5m]))"}"#);
    let (status, body) =
        send(&harness.state, Request::get("/api/v1/parse_query?query=up").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("vectorSelector"), "{body}");
    let (_, body) = send(&harness.state, Request::get("/api/v1/status/flags").body(Body::empty()).unwrap()).await;
    assert_eq!(body, r#"{"status":"success","data":{"storage.tsdb.path":"data"}}"#);
    let (_, body) = send(&harness.state, Request::get("/api/v1/status/config").body(Body::empty()).unwrap()).await;
    assert_eq!(body, r#"{"status":"success","data":{"yaml":"version: 1\n"}}"#);
    let (_, body) = send(&harness.state, Request::get("/api/v1/status/runtimeinfo").body(Body::empty()).unwrap()).await;
    assert!(body.contains(r#""storageRetention":"30d""#), "{body}");
    let write =
        remote_write_body(&[("up", &[("job", "a")], &[(1_000, 1.0)]), ("up", &[("job", "b")], &[(1_000, 1.0)])]);
    assert_eq!(send(&harness.state, remote_write(write)).await.0, StatusCode::NO_CONTENT);
    let (_, body) = send(&harness.state, Request::get("/api/v1/status/tsdb").body(Body::empty()).unwrap()).await;
    assert!(body.contains(r#""headStats":{"numSeries":2"#), "{body}");
    assert!(body.contains(r#""seriesCountByMetricName":[{"name":"up","value":2}]"#), "{body}");
}

/// A harness whose engine has `options` (for the query limits).
fn harness_with_engine(options: EngineOptions) -> Harness {
    let base = harness();
    let state = ServerState::new(
        ServerOptions {
            listen: "127.0.0.1:0".parse().expect("address"),
            otlp_http_listen: None,
            otlp_grpc_listen: None,
            max_request_body_bytes: 1 << 20,
            version: "test".into(),
            storage_retention: "30d".into(),
            flags: Vec::new(),
            config_yaml: "version: 1\n".into(),
        },
        Engine::new(options),
    );
    state.set_storage(base.storage.clone(), Box::new(|_| {}));
    Harness { _directory: base._directory, storage: base.storage, state }
}

async fn store_counter(state: &Arc<ServerState>) {
    let samples: Vec<(i64, f64)> = (0..=20).map(|index| (index * 15_000, index as f64 * 3.0)).collect();
    let body = remote_write_body(&[("http_requests_total", &[("job", "api")], &samples)]);
    let (status, body) = send(state, remote_write(body)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
}

#[tokio::test]
async fn stats_all_reports_timings_and_samples_per_step() {
    let harness = harness();
    store_counter(&harness.state).await;
    let (status, body) = send(
        &harness.state,
        form_post("/api/v1/query_range", "query=rate(http_requests_total%5B1m%5D)&start=60&end=240&step=60&stats=all"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let stats = &json["data"]["stats"];
    for timing in
        ["evalTotalTime", "resultSortTime", "queryPreparationTime", "innerEvalTime", "execQueueTime", "execTotalTime"]
    {
        assert!(stats["timings"][timing].is_number(), "{timing}: {body}");
    }
    // A 1m window holds 4 samples at 15 s (the one at the window's start is excluded): 4 per step.
    assert_eq!(stats["samples"]["totalQueryableSamples"], 16, "{body}");
    assert_eq!(
        stats["samples"]["totalQueryableSamplesPerStep"],
        serde_json::json!([[60, 4], [120, 4], [180, 4], [240, 4]]),
        "{body}"
    );
    assert!(stats["samples"]["peakSamples"].as_u64().is_some_and(|peak| peak > 0), "{body}");

    // Any other value gives the totals without the steps; no parameter gives no stats.
    let (_, body) =
        send(&harness.state, form_post("/api/v1/query", "query=http_requests_total&time=300&stats=true")).await;
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(json["data"]["stats"]["samples"]["totalQueryableSamples"], 1, "{body}");
    assert!(json["data"]["stats"]["samples"].get("totalQueryableSamplesPerStep").is_none(), "{body}");
    let (_, body) = send(&harness.state, form_post("/api/v1/query", "query=http_requests_total&time=300")).await;
    assert!(!body.contains("stats"), "{body}");
}

#[tokio::test]
async fn query_limits_answer_with_prometheus_error_types() {
    let limited = harness_with_engine(EngineOptions { max_samples: 3, ..EngineOptions::default() });
    store_counter(&limited.state).await;
    let (status, body) =
        send(&limited.state, form_post("/api/v1/query_range", "query=http_requests_total&start=0&end=300&step=15"))
            .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains(r#""errorType":"execution""#), "{body}");
    assert!(body.contains("query processing would load too many samples into memory in query execution"), "{body}");

    let hurried = harness_with_engine(EngineOptions { timeout: std::time::Duration::ZERO, ..EngineOptions::default() });
    store_counter(&hurried.state).await;
    let (status, body) = send(&hurried.state, form_post("/api/v1/query", "query=http_requests_total&time=300")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains(r#""errorType":"timeout""#), "{body}");
    assert!(body.contains("query timed out in expression evaluation"), "{body}");
}

#[tokio::test]
async fn grammar_errors_name_the_offending_token_and_its_position() {
    let harness = harness();
    let cases = [
        ("query=foo%20bar", "1:5: parse error: unexpected identifier \\\"bar\\\""),
        ("query=rate(foo%5B5m%5D)%20by%20(a)", "1:15: parse error: unexpected \u{3c}by\u{3e}"),
        ("query=foo%20%2B", "1:6: parse error: unexpected end of input"),
    ];
    for (form, expected) in cases {
        let (status, body) = send(&harness.state, form_post("/api/v1/query", &format!("{form}&time=4"))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{form}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        let message = json["error"].as_str().unwrap_or_default().replace('"', "\\\"");
        assert!(message.ends_with(expected), "{form}: {body}");
    }
}
