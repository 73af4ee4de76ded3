//! Property tests: the parsers never panic, and what the text format 1.0.0 writes reads back exactly.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use oxeye_scrape::exposition::{ExpositionFormat, parse};
use proptest::prelude::*;

fn is_legacy_name(name: &str, allow_colon: bool) -> bool {
    let mut characters = name.chars();
    let Some(first) = characters.next() else {
        return false;
    };
    let valid_first = first.is_ascii_alphabetic() || first == '_' || (allow_colon && first == ':');
    valid_first
        && characters
            .all(|character| character.is_ascii_alphanumeric() || character == '_' || (allow_colon && character == ':'))
}

fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[derive(Debug, Clone)]
struct GeneratedSample {
    metric_name: String,
    labels: BTreeMap<String, String>,
    value: f64,
    timestamp_ms: Option<i64>,
}

fn render(sample: &GeneratedSample) -> String {
    let mut line = String::new();
    let mut parts: Vec<String> = Vec::new();
    if is_legacy_name(&sample.metric_name, true) {
        line.push_str(&sample.metric_name);
    } else {
        parts.push(format!("\"{}\"", escape(&sample.metric_name)));
    }
    for (name, value) in &sample.labels {
        let written_name = if is_legacy_name(name, false) { name.clone() } else { format!("\"{}\"", escape(name)) };
        parts.push(format!("{written_name}=\"{}\"", escape(value)));
    }
    if !parts.is_empty() {
        line.push('{');
        line.push_str(&parts.join(","));
        line.push('}');
    }
    line.push_str(&format!(" {}", sample.value));
    if let Some(timestamp_ms) = sample.timestamp_ms {
        line.push_str(&format!(" {timestamp_ms}"));
    }
    line.push('\n');
    line
}

fn generated_sample() -> impl Strategy<Value = GeneratedSample> {
    (
        prop_oneof!["[a-zA-Z_:][a-zA-Z0-9_:]{0,20}", "[a-z.é☕ ]{1,12}"],
        prop::collection::btree_map(prop_oneof!["[a-zA-Z_][a-zA-Z0-9_]{0,10}", "[a-z.é-]{1,8}"], "(?s).{0,16}", 0..5),
        prop::num::f64::NORMAL | prop::num::f64::ZERO | prop::num::f64::SUBNORMAL | prop::num::f64::INFINITE,
        prop::option::of(any::<i64>()),
    )
        .prop_map(|(metric_name, labels, value, timestamp_ms)| GeneratedSample {
            metric_name,
            labels,
            value,
            timestamp_ms,
        })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
        for format in [ExpositionFormat::PrometheusText004, ExpositionFormat::PrometheusText100, ExpositionFormat::OpenMetrics100] {
            let _ = parse(&body, format);
        }
    }

    #[test]
    fn exposition_like_text_never_panics(body in "[a-z_{}=\",# \\\\\n.0-9e+-]{0,200}") {
        for format in [ExpositionFormat::PrometheusText004, ExpositionFormat::OpenMetrics100] {
            let _ = parse(body.as_bytes(), format);
        }
    }

    #[test]
    fn text_1_0_0_round_trips(samples in prop::collection::vec(generated_sample(), 1..20)) {
        let body: String = samples.iter().map(render).collect();
        let exposition = parse(body.as_bytes(), ExpositionFormat::PrometheusText100)
            .map_err(|error| TestCaseError::fail(format!("{error} in body {body:?}")))?;
        prop_assert_eq!(exposition.samples.len(), samples.len());
        for (parsed, generated) in exposition.samples.iter().zip(&samples) {
            prop_assert_eq!(parsed.metric_name.as_ref(), generated.metric_name.as_str());
            let parsed_labels: BTreeMap<String, String> =
                parsed.labels.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect();
            prop_assert_eq!(&parsed_labels, &generated.labels);
            prop_assert_eq!(parsed.value.to_bits(), generated.value.to_bits());
            prop_assert_eq!(parsed.timestamp_ms, generated.timestamp_ms);
        }
    }
}
