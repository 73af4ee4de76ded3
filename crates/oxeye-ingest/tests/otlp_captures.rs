//! Golden tests on the OTLP metrics the boxoffice test app really sent (opentelemetry-exporter-otlp-proto-http
//! 1.45.2; see `shared/conformance/captures/NOTES.md`): the exact Prometheus series that come out.

use oxeye_ingest::otlp_metrics::{OtlpFormat, OtlpTranslateOptions, TranslatedMetrics, decode_and_translate};
use oxeye_model::MetricType;
use std::path::PathBuf;

fn read_capture(name: &str) -> Option<Vec<u8>> {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/conformance/captures")).join(name);
    match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(error) => {
            println!("skipping: capture {} is absent ({error})", path.display());
            None
        }
    }
}

fn translate_capture() -> Option<TranslatedMetrics> {
    let body = read_capture("v1_metrics.first.bin")?;
    Some(
        decode_and_translate(&body, None, OtlpFormat::Protobuf, 64 << 20, &OtlpTranslateOptions::default())
            .expect("the capture decodes"),
    )
}

const INSTANCE: &str = "a48efe66-8af3-41d8-8568-4a22848a03e6";
const SCOPE: &str = r#"otel_scope_name="opentelemetry.instrumentation.django", otel_scope_schema_url="https://opentelemetry.io/schemas/1.11.0", otel_scope_version="0.66b2""#;

#[test]
fn capture_series_names_follow_the_prometheus_rules() {
    let Some(translated) = translate_capture() else { return };
    let mut names: Vec<&str> = translated.samples.iter().filter_map(|(labels, _)| labels.metric_name()).collect();
    names.dedup();
    assert_eq!(
        names,
        [
            "http_server_active_requests",
            "http_server_duration_milliseconds_sum",
            "http_server_duration_milliseconds_count",
            "http_server_duration_milliseconds_bucket",
            "http_server_duration_milliseconds_sum",
            "http_server_duration_milliseconds_count",
            "http_server_duration_milliseconds_bucket",
            "target_info",
        ]
    );
    // 1 gauge + 2 histogram points x (sum + count + 15 bounds + Inf) + 1 target_info.
    assert_eq!(translated.samples.len(), 1 + 2 * 18 + 1);
    assert_eq!(translated.rejected_data_points, 0);
    assert!(translated.partial_success().is_none());
}

#[test]
fn capture_gauge_series_has_exact_labels_and_exemplar() {
    let Some(translated) = translate_capture() else { return };
    let (labels, sample) = &translated.samples[0];
    assert_eq!(
        labels.to_string(),
        format!(
            r#"http_server_active_requests{{http_flavor="1.1", http_host="127.0.0.1:18000", http_method="GET", http_scheme="http", http_server_name="localhost", instance="{INSTANCE}", job="boxoffice", {SCOPE}}}"#
        )
    );
    // timeUnixNano 1795417332261777476 truncated to milliseconds.
    assert_eq!((sample.timestamp_ms, sample.value), (1_795_417_332_261, 0.0));
    let (exemplar_series, exemplar) = &translated.exemplars[0];
    assert_eq!(exemplar_series, labels);
    assert_eq!(exemplar.labels.get("trace_id"), Some("09effacd28c3412dbeef32997eb01bc9"));
    assert_eq!(exemplar.labels.get("span_id"), Some("be1d1708466da5bb"));
    assert_eq!((exemplar.value, exemplar.timestamp_ms), (-1.0, 1_795_417_332_112));
}

#[test]
fn capture_histogram_becomes_cumulative_buckets() {
    let Some(translated) = translate_capture() else { return };
    let healthz: Vec<_> =
        translated.samples.iter().filter(|(labels, _)| labels.get("http_target") == Some("healthz/")).collect();
    let buckets: Vec<(&str, f64)> = healthz
        .iter()
        .filter(|(labels, _)| labels.metric_name() == Some("http_server_duration_milliseconds_bucket"))
        .map(|(labels, sample)| (labels.get("le").unwrap_or("?"), sample.value))
        .collect();
    let expected_bounds =
        ["0", "5", "10", "25", "50", "75", "100", "250", "500", "750", "1000", "2500", "5000", "7500", "10000", "+Inf"];
    assert_eq!(buckets.iter().map(|(le, _)| *le).collect::<Vec<_>>(), expected_bounds);
    assert_eq!(buckets[0].1, 0.0, "nothing at or below 0 ms");
    assert!(buckets[1..].iter().all(|(_, count)| *count == 1.0), "the 2 ms request is in every bucket from 5 up");
    let sum = healthz.iter().find(|(labels, _)| labels.metric_name() == Some("http_server_duration_milliseconds_sum"));
    assert_eq!(sum.map(|(_, sample)| sample.value), Some(2.0));
    let (inf_labels, _) = healthz.iter().find(|(labels, _)| labels.get("le") == Some("+Inf")).expect("+Inf bucket");
    assert_eq!(
        inf_labels.to_string(),
        format!(
            r#"http_server_duration_milliseconds_bucket{{http_flavor="1.1", http_host="127.0.0.1:18000", http_method="GET", http_scheme="http", http_server_name="localhost", http_status_code="200", http_target="healthz/", instance="{INSTANCE}", job="boxoffice", le="+Inf", net_host_name="127.0.0.1:18000", net_host_port="18000", {SCOPE}}}"#
        )
    );
    let (bucket_of_exemplar, exemplar) = &translated.exemplars[1];
    assert_eq!((bucket_of_exemplar.get("le"), exemplar.value), (Some("5"), 2.0));
}

#[test]
fn capture_resource_becomes_target_info_and_metadata() {
    let Some(translated) = translate_capture() else { return };
    let (labels, sample) = translated.samples.last().expect("target_info");
    assert_eq!(
        labels.to_string(),
        format!(
            r#"target_info{{deployment_environment="acceptance", instance="{INSTANCE}", job="boxoffice", service_version="1.4.2", telemetry_sdk_language="python", telemetry_sdk_name="opentelemetry", telemetry_sdk_version="1.45.2"}}"#
        )
    );
    assert_eq!(sample.value, 1.0);
    let families: Vec<(&str, MetricType, &str)> = translated
        .metadata
        .iter()
        .map(|family| (family.metric_family_name.as_str(), family.metadata.metric_type, family.metadata.unit.as_str()))
        .collect();
    assert_eq!(
        families,
        [
            ("http_server_active_requests", MetricType::Gauge, ""),
            ("http_server_duration_milliseconds", MetricType::Histogram, "milliseconds"),
            ("target_info", MetricType::Gauge, ""),
        ]
    );
    assert_eq!(translated.metadata[1].metadata.help, "Measures the duration of inbound HTTP requests.");
}
