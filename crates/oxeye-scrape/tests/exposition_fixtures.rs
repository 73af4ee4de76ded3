//! The parsers against real prometheus_client 0.26.0 output (see `fixtures/generate.py`), each parsed
//! with the parser its served `Content-Type` selects.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use oxeye_model::{Labels, MetricType};
use oxeye_scrape::exposition::{Exposition, ExpositionFormat, parse};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|error| panic!("reading {path}: {error}"))
}

fn format_of(name: &str) -> ExpositionFormat {
    let content_type = String::from_utf8(fixture(&format!("{name}.content_type"))).unwrap();
    ExpositionFormat::from_content_type(Some(content_type.trim()))
}

fn series_values(exposition: &Exposition<'_>) -> BTreeMap<String, f64> {
    exposition.samples.iter().map(|sample| (sample.to_labels().to_string(), sample.value)).collect()
}

fn value_of(exposition: &Exposition<'_>, series: &str) -> f64 {
    *series_values(exposition).get(series).unwrap_or_else(|| panic!("series {series} not found"))
}

#[test]
fn content_types_served_by_prometheus_client_select_the_matching_parser() {
    assert_eq!(format_of("django_text_0.0.4"), ExpositionFormat::PrometheusText004);
    assert_eq!(format_of("django_text_1.0.0"), ExpositionFormat::PrometheusText100);
    assert_eq!(format_of("django_openmetrics_1.0.0"), ExpositionFormat::OpenMetrics100);
    assert_eq!(format_of("utf8_openmetrics_1.0.0"), ExpositionFormat::OpenMetrics100);
}

#[test]
fn django_text_format_counters_histograms_summaries_and_escapes() {
    let body = fixture("django_text_0.0.4.txt");
    let exposition = parse(&body, format_of("django_text_0.0.4")).unwrap();
    assert_eq!(
        value_of(&exposition, r#"django_http_requests_total{method="GET", status="200", view="events:list"}"#),
        1027.0
    );
    assert_eq!(
        value_of(
            &exposition,
            r#"django_http_requests_latency_seconds_by_view_method_bucket{le="1.0", method="GET", view="events:list"}"#
        ),
        6.0
    );
    assert_eq!(
        value_of(
            &exposition,
            r#"django_http_requests_latency_seconds_by_view_method_bucket{le="+Inf", method="GET", view="events:list"}"#
        ),
        8.0
    );
    assert_eq!(
        value_of(&exposition, r#"django_http_requests_created{method="GET", status="200", view="events:list"}"#),
        1_700_000_123.456
    );
    // Integer-looking bounds written by other clients are normalised as Prometheus 3 does.
    assert_eq!(value_of(&exposition, r#"revel_celery_task_duration_seconds_bucket{le="1.0"}"#), 3.0);
    assert_eq!(value_of(&exposition, r#"revel_celery_task_duration_seconds_bucket{le="10.0"}"#), 5.0);
    assert_eq!(value_of(&exposition, r#"revel_llm_evaluation_duration_seconds{model="small", quantile="1.0"}"#), 9.0);
    let escaped = exposition
        .samples
        .iter()
        .find(|sample| sample.metric_name == "revel_event_capacity" && sample.value == 250.0)
        .unwrap();
    assert_eq!(escaped.labels[0].1, "Say \"hi\" \\ new\nline");
    assert!(exposition.samples.iter().any(|sample| sample.labels.iter().any(|(_, value)| value == "Café Zürich ☕")));
    let capacity = exposition.families.iter().find(|family| family.name == "revel_event_capacity").unwrap();
    assert_eq!(capacity.metadata.help, "Capacity with \\ backslash and\nnewline in help.");
    assert_eq!(capacity.metadata.metric_type, MetricType::Gauge);
    let requests = exposition.families.iter().find(|family| family.name == "django_http_requests_total").unwrap();
    assert_eq!(requests.metadata.metric_type, MetricType::Counter);
    assert!(exposition.samples.iter().all(|sample| sample.timestamp_ms.is_none() && sample.exemplar.is_none()));
}

#[test]
fn django_openmetrics_families_units_exemplars_and_eof() {
    let body = fixture("django_openmetrics_1.0.0.txt");
    let exposition = parse(&body, format_of("django_openmetrics_1.0.0")).unwrap();
    let family = |name: &str| exposition.families.iter().find(|family| family.name == name).unwrap().metadata.clone();
    assert_eq!(family("django_http_requests").metric_type, MetricType::Counter);
    assert_eq!(family("revel_tickets_sold").metric_type, MetricType::Counter);
    assert_eq!(family("revel_build").metric_type, MetricType::Info);
    assert_eq!(family("revel_payment_checkout_state").metric_type, MetricType::StateSet);
    assert_eq!(family("revel_celery_queue_wait_seconds").metric_type, MetricType::GaugeHistogram);
    assert_eq!(family("revel_upload_size_bytes").unit, "bytes");

    let sold = exposition
        .samples
        .iter()
        .find(|sample| sample.metric_name == "revel_tickets_sold_total" && sample.exemplar.is_some())
        .unwrap();
    assert_eq!(sold.metric_type, MetricType::Counter);
    let exemplar = sold.exemplar.as_ref().unwrap().to_exemplar(0);
    assert_eq!(exemplar.labels, Labels::from_pairs([("trace_id", "0af7651916cd43dd8448eb211c80319c")]));
    assert_eq!(exemplar.value, 2.0);
    assert_eq!(exemplar.timestamp_ms, 1_700_000_123_456);

    let bucket = exposition
        .samples
        .iter()
        .find(|sample| sample.metric_name.ends_with("_bucket") && sample.exemplar.is_some())
        .unwrap();
    let bucket_exemplar = bucket.exemplar.as_ref().unwrap();
    assert_eq!(bucket_exemplar.value, 0.67);
    assert!(bucket_exemplar.label_set_characters() <= 128);
    assert_eq!(
        bucket.to_labels().to_string(),
        r#"django_http_requests_latency_seconds_by_view_method_bucket{le="0.75", method="POST", view="tickets:checkout"}"#
    );
}

#[test]
fn text_and_openmetrics_output_of_one_registry_yield_the_same_series_and_values() {
    let text_body = fixture("django_text_0.0.4.txt");
    let openmetrics_body = fixture("django_openmetrics_1.0.0.txt");
    let text = series_values(&parse(&text_body, ExpositionFormat::PrometheusText004).unwrap());
    let openmetrics = series_values(&parse(&openmetrics_body, ExpositionFormat::OpenMetrics100).unwrap());
    assert_eq!(text.len(), openmetrics.len());
    assert_eq!(text.keys().collect::<Vec<_>>(), openmetrics.keys().collect::<Vec<_>>());
    for (series, value) in &text {
        assert_eq!(openmetrics[series], *value, "{series}");
    }
    // The 1.0.0 text output of a registry without UTF-8 names is the 0.0.4 output.
    let text_100_body = fixture("django_text_1.0.0.txt");
    let text_100 = series_values(&parse(&text_100_body, ExpositionFormat::PrometheusText100).unwrap());
    assert_eq!(text, text_100);
}

#[test]
fn utf8_names_in_text_1_0_0_and_openmetrics() {
    for name in ["utf8_text_1.0.0", "utf8_openmetrics_1.0.0"] {
        let body = fixture(&format!("{name}.txt"));
        let exposition = parse(&body, format_of(name)).unwrap();
        let values = series_values(&exposition);
        assert_eq!(values[r#"revel.payments.processed_total{payment.provider="stripe"}"#], 12.0, "{name}");
        assert_eq!(values[r#"revel_queue_depth{queue.name="emails"}"#], 4.0, "{name}");
        let dotted = exposition.samples.iter().find(|sample| sample.metric_name == "revel.payments.processed_total");
        assert_eq!(dotted.unwrap().metric_type, MetricType::Counter, "{name}");
    }
    let body = fixture("utf8_text_underscores.txt");
    let values = series_values(&parse(&body, ExpositionFormat::PrometheusText004).unwrap());
    assert_eq!(values[r#"revel_payments_processed_total{payment_provider="stripe"}"#], 12.0);
}
