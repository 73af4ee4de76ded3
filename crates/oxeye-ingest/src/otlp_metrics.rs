//! OTLP metrics (`POST /v1/metrics`, gRPC `MetricsService/Export`) into Prometheus series, following
//! Prometheus 3's OTLP receiver (`storage/remote/otlptranslator/prometheusremotewrite`) with the
//! `UnderscoreEscapingWithSuffixes` naming strategy.
//!
//! What each OTLP metric becomes (`name` is [`prometheus_names::metric_name`]):
//! - gauge → gauge `name` (with `_ratio` for unit `1`); non-monotonic cumulative sum → gauge `name`;
//!   monotonic cumulative sum → counter `name` ending in `_total`.
//! - histogram (cumulative) → `name_bucket{le}` with cumulative counts and `le="+Inf"` = count,
//!   `name_sum` (when the point has a sum) and `name_count`.
//! - summary → `name{quantile}`, `name_sum`, `name_count`.
//! - exponential histogram (cumulative) → **a classic histogram**, because `oxeye-model` has no native
//!   histograms yet: buckets are merged down to scale 0 (power-of-two bounds, so the set of `le` values
//!   stays stable when the SDK rescales) — or kept at their scale when it is already coarser — and
//!   emitted as `name_bucket{le}`: the negative buckets (`le` = −2^k), the zero bucket
//!   (`le` = zero threshold), the positive buckets (`le` = 2^k) and `+Inf`; plus `_sum` and `_count`.
//!   Counts are exact at every emitted bound; only the resolution is reduced.
//! - **delta** (and unspecified) temporality sums, histograms and exponential histograms are dropped and
//!   counted in [`TranslatedMetrics::rejected_data_points`], as Prometheus does without its experimental
//!   delta features: accumulating deltas needs state across requests, which a pure decoder cannot keep.
//!
//! Labels of every series: the data point's attributes (names sanitised by
//! [`prometheus_names::label_name`], values of colliding names joined with `;` in key order), then
//! `otel_scope_name`, `otel_scope_version`, `otel_scope_schema_url` and `otel_scope_<attribute>` (when
//! [`OtlpTranslateOptions::promote_scope_metadata`]), then `job` = `service.namespace/service.name` and
//! `instance` = `service.instance.id`, then `le`/`quantile` and `__name__`; later ones win. Other resource
//! attributes go to one `target_info` gauge per resource (value 1, with `job` and `instance`), sampled from
//! the resource's earliest to its latest data point every half lookback delta.
//!
//! Data points flagged "no recorded value" become the staleness marker [`oxeye_model::STALE_NAN`].
//! Timestamps go from nanoseconds to **milliseconds** (truncating). Exemplars carry `trace_id` and
//! `span_id` (hex) and their filtered attributes when all fit in 128 characters; on histograms they attach
//! to the first bucket whose bound is at least the exemplar's value.
//!
//! Sources: <https://opentelemetry.io/docs/specs/otel/compatibility/prometheus_and_openmetrics/>,
//! Prometheus `storage/remote/otlptranslator/prometheusremotewrite/helper.go`.

pub use crate::otlp::{OtlpFormat, decode_metrics_request};
use crate::prometheus_names::{self, NamedMetricKind};
use crate::remote_write::FamilyMetadata;
use crate::{IngestError, compression};
use oxeye_model::{Exemplar, Label, Labels, METRIC_NAME_LABEL, MetricMetadata, MetricType, STALE_NAN, Sample};
use oxeye_proto::otlp::collector::{ExportMetricsPartialSuccess, ExportMetricsServiceRequest};
use oxeye_proto::otlp::common::{AnyValue, InstrumentationScope, KeyValue, any_value};
use oxeye_proto::otlp::metrics::{
    self, AggregationTemporality, DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK, ExponentialHistogramDataPoint,
    HistogramDataPoint, Metric, NumberDataPoint, SummaryDataPoint, metric::Data,
};
use oxeye_proto::otlp::resource::Resource;
use std::collections::BTreeMap;

/// Settings of the translation; [`Default`] matches the behaviour described in the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpTranslateOptions {
    /// Add `otel_scope_*` labels from the instrumentation scope. Default `true`.
    pub promote_scope_metadata: bool,
    /// Emit `target_info` per resource. Default `true`.
    pub target_info: bool,
    /// The query lookback delta in milliseconds; `target_info` gets a sample every half of it between a
    /// resource's earliest and latest data point. Default 300 000 (5 m).
    pub lookback_delta_ms: i64,
}

impl Default for OtlpTranslateOptions {
    fn default() -> Self {
        OtlpTranslateOptions { promote_scope_metadata: true, target_info: true, lookback_delta_ms: 300_000 }
    }
}

/// The result of translating one export request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TranslatedMetrics {
    /// One entry per Prometheus sample, in request order: the series' labels and the sample
    /// (timestamp in milliseconds).
    pub samples: Vec<(Labels, Sample)>,
    /// Exemplars with the labels of the series they belong to.
    pub exemplars: Vec<(Labels, Exemplar)>,
    /// Metadata per metric family (family name as Prometheus names it: `x_total` for counters, the base
    /// name for histograms and summaries), first occurrence wins.
    pub metadata: Vec<FamilyMetadata>,
    /// Data points that were not translated (delta temporality, invalid names, unknown metric kinds).
    pub rejected_data_points: u64,
    /// One message per rejected metric, for the partial-success `error_message`.
    pub rejection_messages: Vec<String>,
}

impl TranslatedMetrics {
    /// The OTLP `partial_success` to answer with: `None` when nothing was rejected. The message joins the
    /// first ten rejection messages with `; `.
    pub fn partial_success(&self) -> Option<ExportMetricsPartialSuccess> {
        if self.rejected_data_points == 0 && self.rejection_messages.is_empty() {
            return None;
        }
        let mut error_message = self.rejection_messages.iter().take(10).cloned().collect::<Vec<_>>().join("; ");
        if self.rejection_messages.len() > 10 {
            error_message.push_str(&format!("; and {} more", self.rejection_messages.len() - 10));
        }
        Some(ExportMetricsPartialSuccess {
            rejected_data_points: i64::try_from(self.rejected_data_points).unwrap_or(i64::MAX),
            error_message,
        })
    }
}

/// Undoes `Content-Encoding` (identity or gzip, capped at `max_decoded_bytes`), decodes and translates an
/// OTLP/HTTP metrics body.
///
/// # Errors
/// [`IngestError::TooLarge`] past the cap (HTTP 413), [`IngestError::UnsupportedEncoding`],
/// [`IngestError::Gzip`], and the errors of [`decode_metrics_request`].
pub fn decode_and_translate(
    body: &[u8],
    content_encoding: Option<&str>,
    format: OtlpFormat,
    max_decoded_bytes: usize,
    options: &OtlpTranslateOptions,
) -> Result<TranslatedMetrics, IngestError> {
    let decoded = compression::decode_content_encoding(content_encoding, body, max_decoded_bytes)?;
    let request = decode_metrics_request(&decoded, format)?;
    Ok(translate_metrics(&request, options))
}

/// Translates a decoded request into Prometheus samples, exemplars and metadata; never fails (what
/// cannot be translated is counted in [`TranslatedMetrics::rejected_data_points`]).
pub fn translate_metrics(request: &ExportMetricsServiceRequest, options: &OtlpTranslateOptions) -> TranslatedMetrics {
    let mut output = TranslatedMetrics::default();
    for resource_metrics in &request.resource_metrics {
        let empty_resource = Resource::default();
        let resource = resource_metrics.resource.as_ref().unwrap_or(&empty_resource);
        let identity = ResourceIdentity::of(resource);
        let mut time_range_ns: Option<(u64, u64)> = None;
        for scope_metrics in &resource_metrics.scope_metrics {
            let scope_labels = if options.promote_scope_metadata {
                scope_labels(scope_metrics.scope.as_ref(), &scope_metrics.schema_url)
            } else {
                Vec::new()
            };
            for metric in &scope_metrics.metrics {
                if let Some((earliest, latest)) = metric_time_range(metric) {
                    time_range_ns = Some(match time_range_ns {
                        Some((current_earliest, current_latest)) => {
                            (current_earliest.min(earliest), current_latest.max(latest))
                        }
                        None => (earliest, latest),
                    });
                }
                let context = MetricContext { identity: &identity, scope_labels: &scope_labels };
                translate_metric(metric, &context, &mut output);
            }
        }
        if options.target_info
            && let Some((earliest_ns, latest_ns)) = time_range_ns
        {
            add_target_info(resource, &identity, earliest_ns, latest_ns, options.lookback_delta_ms, &mut output);
        }
    }
    output
}

/// `job` and `instance` of a resource.
struct ResourceIdentity {
    job: Option<String>,
    instance: Option<String>,
}

const SERVICE_NAME: &str = "service.name";
const SERVICE_NAMESPACE: &str = "service.namespace";
const SERVICE_INSTANCE_ID: &str = "service.instance.id";

impl ResourceIdentity {
    fn of(resource: &Resource) -> Self {
        let attribute = |key: &str| {
            resource
                .attributes
                .iter()
                .find(|attribute| attribute.key == key)
                .map(|attribute| value_as_string(attribute.value.as_ref()))
        };
        let job = attribute(SERVICE_NAME).map(|name| match attribute(SERVICE_NAMESPACE) {
            Some(namespace) => format!("{namespace}/{name}"),
            None => name,
        });
        ResourceIdentity { job, instance: attribute(SERVICE_INSTANCE_ID) }
    }
}

struct MetricContext<'a> {
    identity: &'a ResourceIdentity,
    scope_labels: &'a [(String, String)],
}

fn scope_labels(scope: Option<&InstrumentationScope>, schema_url: &str) -> Vec<(String, String)> {
    let Some(scope) = scope.filter(|scope| !scope.name.is_empty()) else { return Vec::new() };
    let mut labels = vec![
        ("otel_scope_name".to_string(), scope.name.clone()),
        ("otel_scope_version".to_string(), scope.version.clone()),
        ("otel_scope_schema_url".to_string(), schema_url.to_string()),
    ];
    for attribute in &scope.attributes {
        if let Some(name) = prometheus_names::label_name(&format!("otel_scope_{}", attribute.key)) {
            labels.push((name, value_as_string(attribute.value.as_ref())));
        }
    }
    labels
}

/// An attribute value as a label value, as the OpenTelemetry collector's `AsString` renders it: strings
/// as they are, booleans `true`/`false`, integers in decimal, doubles in the shortest decimal form
/// (`NaN`, `+Inf`, `-Inf`), bytes in standard base64, arrays and maps as JSON, empty as `""`.
pub fn value_as_string(value: Option<&AnyValue>) -> String {
    match value.and_then(|value| value.value.as_ref()) {
        None => String::new(),
        Some(any_value::Value::StringValue(text)) => text.clone(),
        Some(any_value::Value::BoolValue(flag)) => flag.to_string(),
        Some(any_value::Value::IntValue(number)) => number.to_string(),
        Some(any_value::Value::DoubleValue(number)) => format_float(*number),
        Some(any_value::Value::BytesValue(bytes)) => encode_base64(bytes),
        Some(other @ (any_value::Value::ArrayValue(_) | any_value::Value::KvlistValue(_))) => {
            value_as_json(Some(&AnyValue { value: Some(other.clone()) })).to_string()
        }
    }
}

fn value_as_json(value: Option<&AnyValue>) -> serde_json::Value {
    match value.and_then(|value| value.value.as_ref()) {
        None => serde_json::Value::Null,
        Some(any_value::Value::StringValue(text)) => serde_json::Value::String(text.clone()),
        Some(any_value::Value::BoolValue(flag)) => serde_json::Value::Bool(*flag),
        Some(any_value::Value::IntValue(number)) => serde_json::Value::from(*number),
        Some(any_value::Value::DoubleValue(number)) => serde_json::Number::from_f64(*number)
            .map_or_else(|| serde_json::Value::String(format_float(*number)), serde_json::Value::Number),
        Some(any_value::Value::BytesValue(bytes)) => serde_json::Value::String(encode_base64(bytes)),
        Some(any_value::Value::ArrayValue(array)) => {
            serde_json::Value::Array(array.values.iter().map(|item| value_as_json(Some(item))).collect())
        }
        Some(any_value::Value::KvlistValue(list)) => serde_json::Value::Object(
            list.values.iter().map(|pair| (pair.key.clone(), value_as_json(pair.value.as_ref()))).collect(),
        ),
    }
}

/// The shortest decimal form without exponent (Go's `strconv.FormatFloat(v, 'f', -1, 64)`), with
/// Prometheus' spellings of the special values.
pub fn format_float(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value == f64::INFINITY {
        "+Inf".into()
    } else if value == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        value.to_string()
    }
}

fn encode_base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut encoded = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let triple = match chunk {
            [first, second, third] => u32::from(*first) << 16 | u32::from(*second) << 8 | u32::from(*third),
            [first, second] => u32::from(*first) << 16 | u32::from(*second) << 8,
            [first] => u32::from(*first) << 16,
            _ => 0,
        };
        for position in 0..4 {
            if position <= chunk.len() {
                encoded.push(char::from(ALPHABET[(triple >> (18 - 6 * position) & 0x3f) as usize]));
            } else {
                encoded.push('=');
            }
        }
    }
    encoded
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut encoded = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        encoded.push(char::from(DIGITS[usize::from(byte >> 4)]));
        encoded.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    encoded
}

/// The label set of one data point without `__name__`: attributes, scope labels, job and instance.
/// Returned as a map so that extra labels (`le`, `quantile`, `__name__`) can be added last.
fn base_labels(attributes: &[KeyValue], context: &MetricContext<'_>) -> BTreeMap<String, String> {
    let mut sorted: Vec<&KeyValue> = attributes.iter().collect();
    sorted.sort_by(|left, right| left.key.cmp(&right.key));
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    for attribute in sorted {
        let Some(name) = prometheus_names::label_name(&attribute.key) else { continue };
        let value = value_as_string(attribute.value.as_ref());
        labels
            .entry(name)
            .and_modify(|existing| {
                existing.push(';');
                existing.push_str(&value);
            })
            .or_insert(value);
    }
    for (name, value) in context.scope_labels {
        labels.insert(name.clone(), value.clone());
    }
    if let Some(job) = &context.identity.job {
        labels.insert("job".into(), job.clone());
    }
    if let Some(instance) = &context.identity.instance {
        labels.insert("instance".into(), instance.clone());
    }
    labels
}

/// Builds the series labels from the base labels plus `__name__` and an optional extra label (`le` or
/// `quantile`), which replace base labels of the same name; empty values are dropped.
fn series_labels(base: &BTreeMap<String, String>, metric_name: &str, extra: Option<(&str, &str)>) -> Labels {
    let mut labels: Vec<Label> = Vec::with_capacity(base.len() + 2);
    for (name, value) in base {
        let replaced = name == METRIC_NAME_LABEL || extra.is_some_and(|(extra_name, _)| extra_name == name);
        if !replaced && !value.is_empty() {
            labels.push(Label { name: name.clone(), value: value.clone() });
        }
    }
    labels.push(Label { name: METRIC_NAME_LABEL.to_string(), value: metric_name.to_string() });
    if let Some((extra_name, extra_value)) = extra {
        labels.push(Label { name: extra_name.to_string(), value: extra_value.to_string() });
    }
    labels.sort_by(|left, right| left.name.cmp(&right.name));
    Labels::from_sorted(labels)
}

fn timestamp_ms(time_unix_nano: u64) -> i64 {
    (time_unix_nano / 1_000_000) as i64
}

fn no_recorded_value(flags: u32) -> bool {
    flags & DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK != 0
}

fn translate_exemplar(exemplar: &metrics::Exemplar) -> Exemplar {
    const MAX_EXEMPLAR_RUNES: usize = 128;
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut runes = 0;
    if !exemplar.trace_id.is_empty() {
        let value = hex(&exemplar.trace_id);
        runes += "trace_id".len() + value.len();
        pairs.push(("trace_id".into(), value));
    }
    if !exemplar.span_id.is_empty() {
        let value = hex(&exemplar.span_id);
        runes += "span_id".len() + value.len();
        pairs.push(("span_id".into(), value));
    }
    let mut attribute_pairs = Vec::new();
    for attribute in &exemplar.filtered_attributes {
        let value = value_as_string(attribute.value.as_ref());
        runes += attribute.key.chars().count() + value.chars().count();
        attribute_pairs.push((attribute.key.clone(), value));
    }
    if runes <= MAX_EXEMPLAR_RUNES {
        pairs.extend(attribute_pairs);
    }
    let value = match exemplar.value {
        Some(metrics::exemplar::Value::AsDouble(number)) => number,
        Some(metrics::exemplar::Value::AsInt(number)) => number as f64,
        None => 0.0,
    };
    Exemplar { labels: Labels::from_pairs(pairs), value, timestamp_ms: timestamp_ms(exemplar.time_unix_nano) }
}

fn metric_time_range(metric: &Metric) -> Option<(u64, u64)> {
    let times: Vec<u64> = match &metric.data {
        Some(Data::Gauge(gauge)) => gauge.data_points.iter().map(|point| point.time_unix_nano).collect(),
        Some(Data::Sum(sum)) => sum.data_points.iter().map(|point| point.time_unix_nano).collect(),
        Some(Data::Histogram(histogram)) => histogram.data_points.iter().map(|point| point.time_unix_nano).collect(),
        Some(Data::ExponentialHistogram(histogram)) => {
            histogram.data_points.iter().map(|point| point.time_unix_nano).collect()
        }
        Some(Data::Summary(summary)) => summary.data_points.iter().map(|point| point.time_unix_nano).collect(),
        None => Vec::new(),
    };
    Some((*times.iter().min()?, *times.iter().max()?))
}

fn data_point_count(metric: &Metric) -> usize {
    match &metric.data {
        Some(Data::Gauge(gauge)) => gauge.data_points.len(),
        Some(Data::Sum(sum)) => sum.data_points.len(),
        Some(Data::Histogram(histogram)) => histogram.data_points.len(),
        Some(Data::ExponentialHistogram(histogram)) => histogram.data_points.len(),
        Some(Data::Summary(summary)) => summary.data_points.len(),
        None => 0,
    }
}

fn reject(output: &mut TranslatedMetrics, metric: &Metric, reason: &str) {
    let points = data_point_count(metric);
    output.rejected_data_points += points as u64;
    output.rejection_messages.push(format!("metric {:?}: {reason} ({points} data points dropped)", metric.name));
}

fn temporality_name(value: i32) -> &'static str {
    match AggregationTemporality::try_from(value) {
        Ok(AggregationTemporality::Delta) => "delta",
        Ok(AggregationTemporality::Cumulative) => "cumulative",
        _ => "unspecified",
    }
}

fn translate_metric(metric: &Metric, context: &MetricContext<'_>, output: &mut TranslatedMetrics) {
    let Some(data) = &metric.data else {
        reject(output, metric, "no data (unknown or empty metric kind)");
        return;
    };
    let cumulative = AggregationTemporality::Cumulative as i32;
    let (kind, metric_type) = match data {
        Data::Gauge(_) => (NamedMetricKind::Gauge, MetricType::Gauge),
        Data::Sum(sum) if sum.aggregation_temporality != cumulative => {
            let temporality = temporality_name(sum.aggregation_temporality);
            reject(output, metric, &format!("{temporality} temporality sums are not supported"));
            return;
        }
        Data::Sum(sum) if sum.is_monotonic => (NamedMetricKind::MonotonicCounter, MetricType::Counter),
        Data::Sum(_) => (NamedMetricKind::NonMonotonicCounter, MetricType::Gauge),
        Data::Histogram(histogram) if histogram.aggregation_temporality != cumulative => {
            let temporality = temporality_name(histogram.aggregation_temporality);
            reject(output, metric, &format!("{temporality} temporality histograms are not supported"));
            return;
        }
        Data::ExponentialHistogram(histogram) if histogram.aggregation_temporality != cumulative => {
            let temporality = temporality_name(histogram.aggregation_temporality);
            reject(output, metric, &format!("{temporality} temporality exponential histograms are not supported"));
            return;
        }
        Data::Histogram(_) | Data::ExponentialHistogram(_) => (NamedMetricKind::Other, MetricType::Histogram),
        Data::Summary(_) => (NamedMetricKind::Other, MetricType::Summary),
    };
    let Some(family_name) = prometheus_names::metric_name(&metric.name, &metric.unit, kind) else {
        reject(output, metric, "the name has no valid characters");
        return;
    };
    if !output.metadata.iter().any(|family| family.metric_family_name == family_name) {
        output.metadata.push(FamilyMetadata {
            metric_family_name: family_name.clone(),
            metadata: MetricMetadata {
                metric_type,
                help: metric.description.clone(),
                unit: prometheus_names::unit_name(&metric.unit),
            },
        });
    }
    match data {
        Data::Gauge(gauge) => add_number_points(&gauge.data_points, &family_name, context, output),
        Data::Sum(sum) => add_number_points(&sum.data_points, &family_name, context, output),
        Data::Histogram(histogram) => {
            for point in &histogram.data_points {
                add_histogram_point(point, &family_name, context, output);
            }
        }
        Data::ExponentialHistogram(histogram) => {
            for point in &histogram.data_points {
                add_exponential_histogram_point(point, &family_name, context, output);
            }
        }
        Data::Summary(summary) => {
            for point in &summary.data_points {
                add_summary_point(point, &family_name, context, output);
            }
        }
    }
}

fn add_number_points(
    points: &[NumberDataPoint],
    family_name: &str,
    context: &MetricContext<'_>,
    output: &mut TranslatedMetrics,
) {
    for point in points {
        let base = base_labels(&point.attributes, context);
        let labels = series_labels(&base, family_name, None);
        let value = if no_recorded_value(point.flags) {
            STALE_NAN
        } else {
            match point.value {
                Some(metrics::number_data_point::Value::AsDouble(number)) => number,
                Some(metrics::number_data_point::Value::AsInt(number)) => number as f64,
                None => 0.0,
            }
        };
        for exemplar in &point.exemplars {
            output.exemplars.push((labels.clone(), translate_exemplar(exemplar)));
        }
        output.samples.push((labels, Sample { timestamp_ms: timestamp_ms(point.time_unix_nano), value }));
    }
}

/// Emits `_bucket` series for cumulative `(upper bound, cumulative count)` pairs plus `+Inf`, `_sum`
/// (when present), `_count`, and places exemplars on the first bucket whose bound is at least their value.
#[allow(clippy::too_many_arguments)]
fn add_bucketed_series(
    base: &BTreeMap<String, String>,
    family_name: &str,
    timestamp_ms: i64,
    stale: bool,
    cumulative_buckets: &[(f64, u64)],
    count: u64,
    sum: Option<f64>,
    exemplars: &[metrics::Exemplar],
    output: &mut TranslatedMetrics,
) {
    let value_or_stale = |value: f64| if stale { STALE_NAN } else { value };
    if let Some(sum) = sum {
        let labels = series_labels(base, &format!("{family_name}_sum"), None);
        output.samples.push((labels, Sample { timestamp_ms, value: value_or_stale(sum) }));
    }
    let count_labels = series_labels(base, &format!("{family_name}_count"), None);
    output.samples.push((count_labels, Sample { timestamp_ms, value: value_or_stale(count as f64) }));
    let bucket_name = format!("{family_name}_bucket");
    let mut bucket_labels: Vec<(f64, Labels)> = Vec::with_capacity(cumulative_buckets.len() + 1);
    for &(bound, cumulative_count) in cumulative_buckets {
        let labels = series_labels(base, &bucket_name, Some(("le", &format_float(bound))));
        output.samples.push((labels.clone(), Sample { timestamp_ms, value: value_or_stale(cumulative_count as f64) }));
        bucket_labels.push((bound, labels));
    }
    let infinity_labels = series_labels(base, &bucket_name, Some(("le", "+Inf")));
    output.samples.push((infinity_labels.clone(), Sample { timestamp_ms, value: value_or_stale(count as f64) }));
    bucket_labels.push((f64::INFINITY, infinity_labels));
    bucket_labels.sort_by(|left, right| left.0.total_cmp(&right.0));
    for exemplar in exemplars {
        let translated = translate_exemplar(exemplar);
        let target = bucket_labels.iter().find(|(bound, _)| *bound >= translated.value).or(bucket_labels.last());
        if let Some((_, labels)) = target {
            output.exemplars.push((labels.clone(), translated));
        }
    }
}

fn add_histogram_point(
    point: &HistogramDataPoint,
    family_name: &str,
    context: &MetricContext<'_>,
    output: &mut TranslatedMetrics,
) {
    let base = base_labels(&point.attributes, context);
    let mut cumulative = 0u64;
    let buckets: Vec<(f64, u64)> = point
        .explicit_bounds
        .iter()
        .zip(&point.bucket_counts)
        .map(|(bound, count)| {
            cumulative = cumulative.saturating_add(*count);
            (*bound, cumulative)
        })
        .collect();
    add_bucketed_series(
        &base,
        family_name,
        timestamp_ms(point.time_unix_nano),
        no_recorded_value(point.flags),
        &buckets,
        point.count,
        point.sum,
        &point.exemplars,
        output,
    );
}

/// Turns an exponential histogram point into cumulative classic buckets at scale `min(scale, 0)`; see the
/// module docs.
fn exponential_to_classic_buckets(point: &ExponentialHistogramDataPoint) -> Vec<(f64, u64)> {
    let target_scale = point.scale.min(0);
    let shift = (point.scale - target_scale).clamp(0, 63) as u32;
    // At scale s <= 0 the upper bound of bucket index i is 2^((i + 1) * 2^-s).
    let width = 1i64 << (-target_scale).clamp(0, 62);
    let merge = |buckets: Option<&metrics::exponential_histogram_data_point::Buckets>| -> BTreeMap<i64, u64> {
        let mut merged = BTreeMap::new();
        if let Some(buckets) = buckets {
            for (position, count) in buckets.bucket_counts.iter().enumerate() {
                if *count == 0 {
                    continue;
                }
                let index = i64::from(buckets.offset) + position as i64;
                *merged.entry(index >> shift).or_insert(0u64) += count;
            }
        }
        merged
    };
    let positive = merge(point.positive.as_ref());
    let negative = merge(point.negative.as_ref());
    let bound_at = |exponent: i64| -> f64 { (exponent.saturating_mul(width) as f64).exp2() };
    let mut buckets = Vec::with_capacity(positive.len() + negative.len() + 1);
    let mut cumulative = 0u64;
    // Negative bucket i covers [-2^((i+1)w), -2^(iw)): its upper bound is -2^(iw); most negative first.
    for (index, count) in negative.iter().rev() {
        cumulative = cumulative.saturating_add(*count);
        buckets.push((-bound_at(*index), cumulative));
    }
    cumulative = cumulative.saturating_add(point.zero_count);
    let first_positive_bound = positive.keys().next().map(|index| bound_at(*index + 1));
    if first_positive_bound.is_none_or(|bound| point.zero_threshold < bound) {
        buckets.push((point.zero_threshold, cumulative));
    }
    for (index, count) in &positive {
        cumulative = cumulative.saturating_add(*count);
        let bound = bound_at(*index + 1);
        if bound.is_finite() {
            buckets.push((bound, cumulative));
        }
    }
    buckets
}

fn add_exponential_histogram_point(
    point: &ExponentialHistogramDataPoint,
    family_name: &str,
    context: &MetricContext<'_>,
    output: &mut TranslatedMetrics,
) {
    let base = base_labels(&point.attributes, context);
    let buckets = exponential_to_classic_buckets(point);
    add_bucketed_series(
        &base,
        family_name,
        timestamp_ms(point.time_unix_nano),
        no_recorded_value(point.flags),
        &buckets,
        point.count,
        point.sum,
        &point.exemplars,
        output,
    );
}

fn add_summary_point(
    point: &SummaryDataPoint,
    family_name: &str,
    context: &MetricContext<'_>,
    output: &mut TranslatedMetrics,
) {
    let base = base_labels(&point.attributes, context);
    let timestamp = timestamp_ms(point.time_unix_nano);
    let stale = no_recorded_value(point.flags);
    let value_or_stale = |value: f64| if stale { STALE_NAN } else { value };
    let sum_labels = series_labels(&base, &format!("{family_name}_sum"), None);
    output.samples.push((sum_labels, Sample { timestamp_ms: timestamp, value: value_or_stale(point.sum) }));
    let count_labels = series_labels(&base, &format!("{family_name}_count"), None);
    output.samples.push((count_labels, Sample { timestamp_ms: timestamp, value: value_or_stale(point.count as f64) }));
    for quantile in &point.quantile_values {
        let labels = series_labels(&base, family_name, Some(("quantile", &format_float(quantile.quantile))));
        output.samples.push((labels, Sample { timestamp_ms: timestamp, value: value_or_stale(quantile.value) }));
    }
}

fn add_target_info(
    resource: &Resource,
    identity: &ResourceIdentity,
    earliest_ns: u64,
    latest_ns: u64,
    lookback_delta_ms: i64,
    output: &mut TranslatedMetrics,
) {
    let identifying = [SERVICE_NAME, SERVICE_NAMESPACE, SERVICE_INSTANCE_ID];
    let others: Vec<KeyValue> = resource
        .attributes
        .iter()
        .filter(|attribute| !identifying.contains(&attribute.key.as_str()))
        .cloned()
        .collect();
    if others.is_empty() || (identity.job.is_none() && identity.instance.is_none()) {
        return;
    }
    let context = MetricContext { identity, scope_labels: &[] };
    let base = base_labels(&others, &context);
    let labels = series_labels(&base, "target_info", None);
    let earliest_ms = timestamp_ms(earliest_ns);
    let latest_ms = timestamp_ms(latest_ns);
    let interval_ms = (lookback_delta_ms / 2).max(1);
    let mut timestamp = earliest_ms;
    while timestamp < latest_ms {
        output.samples.push((labels.clone(), Sample { timestamp_ms: timestamp, value: 1.0 }));
        timestamp = timestamp.saturating_add(interval_ms);
    }
    output.samples.push((labels, Sample { timestamp_ms: latest_ms, value: 1.0 }));
    if !output.metadata.iter().any(|family| family.metric_family_name == "target_info") {
        output.metadata.push(FamilyMetadata {
            metric_family_name: "target_info".into(),
            metadata: MetricMetadata {
                metric_type: MetricType::Gauge,
                help: "Target metadata".into(),
                unit: String::new(),
            },
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxeye_model::is_stale_nan;
    use oxeye_proto::otlp::metrics::{
        ExponentialHistogram, Gauge, Histogram, ResourceMetrics, ScopeMetrics, Sum, Summary,
        exponential_histogram_data_point::Buckets, summary_data_point::ValueAtQuantile,
    };
    use prost::Message;

    fn string_attribute(key: &str, value: &str) -> KeyValue {
        KeyValue { key: key.into(), value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }) }
    }

    fn request(metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![
                        string_attribute("service.name", "boxoffice"),
                        string_attribute("service.namespace", "shop"),
                        string_attribute("service.instance.id", "pod-1"),
                        string_attribute("deployment.environment", "acceptance"),
                    ],
                    dropped_attributes_count: 0,
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "boxoffice".into(),
                        version: "1.0".into(),
                        ..Default::default()
                    }),
                    metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    fn number_point(value: f64, time_ns: u64, attributes: Vec<KeyValue>) -> NumberDataPoint {
        NumberDataPoint {
            attributes,
            time_unix_nano: time_ns,
            value: Some(metrics::number_data_point::Value::AsDouble(value)),
            ..Default::default()
        }
    }

    fn names(translated: &TranslatedMetrics) -> Vec<String> {
        translated.samples.iter().map(|(labels, _)| labels.to_string()).collect()
    }

    #[test]
    fn monotonic_sum_becomes_a_total_counter_with_job_instance_and_scope() {
        let metric = Metric {
            name: "boxoffice.checkout.attempts".into(),
            unit: "1".into(),
            description: "Checkout attempts.".into(),
            data: Some(Data::Sum(Sum {
                data_points: vec![number_point(
                    3.0,
                    1_700_000_000_123_456_789,
                    vec![string_attribute("outcome", "ok")],
                )],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            })),
            metadata: vec![],
        };
        let translated = translate_metrics(&request(vec![metric]), &OtlpTranslateOptions::default());
        let (labels, sample) = &translated.samples[0];
        assert_eq!(
            labels.to_string(),
            r#"boxoffice_checkout_attempts_total{instance="pod-1", job="shop/boxoffice", otel_scope_name="boxoffice", otel_scope_version="1.0", outcome="ok"}"#
        );
        assert_eq!(*sample, Sample { timestamp_ms: 1_700_000_000_123, value: 3.0 });
        assert_eq!(
            translated.metadata[0],
            FamilyMetadata {
                metric_family_name: "boxoffice_checkout_attempts_total".into(),
                metadata: MetricMetadata {
                    metric_type: MetricType::Counter,
                    help: "Checkout attempts.".into(),
                    unit: String::new()
                }
            }
        );
        assert_eq!(
            translated.samples[1].0.to_string(),
            r#"target_info{deployment_environment="acceptance", instance="pod-1", job="shop/boxoffice"}"#
        );
        assert_eq!(translated.partial_success(), None);
    }

    #[test]
    fn gauge_with_unit_one_gets_ratio_and_flag_gives_stale_marker() {
        let mut stale_point = number_point(0.5, 2_000_000, vec![]);
        stale_point.flags = DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK;
        let metric = Metric {
            name: "system.cpu.utilization".into(),
            unit: "1".into(),
            data: Some(Data::Gauge(Gauge { data_points: vec![number_point(0.25, 1_000_000, vec![]), stale_point] })),
            ..Default::default()
        };
        let options = OtlpTranslateOptions { promote_scope_metadata: false, target_info: false, ..Default::default() };
        let translated = translate_metrics(&request(vec![metric]), &options);
        assert_eq!(translated.samples.len(), 2);
        assert_eq!(
            translated.samples[0].0.to_string(),
            r#"system_cpu_utilization_ratio{instance="pod-1", job="shop/boxoffice"}"#
        );
        assert_eq!(translated.samples[0].1.value, 0.25);
        assert!(is_stale_nan(translated.samples[1].1.value));
        assert_eq!(translated.samples[1].1.timestamp_ms, 2);
    }

    #[test]
    fn histogram_buckets_are_cumulative_with_exemplars_on_the_right_bucket() {
        let point = HistogramDataPoint {
            time_unix_nano: 5_000_000,
            count: 6,
            sum: Some(42.0),
            bucket_counts: vec![1, 2, 3],
            explicit_bounds: vec![0.5, 10.0],
            exemplars: vec![metrics::Exemplar {
                value: Some(metrics::exemplar::Value::AsDouble(7.0)),
                trace_id: vec![0xab; 16],
                span_id: vec![0x01; 8],
                time_unix_nano: 4_000_000,
                ..Default::default()
            }],
            ..Default::default()
        };
        let metric = Metric {
            name: "http.server.duration".into(),
            unit: "ms".into(),
            data: Some(Data::Histogram(Histogram {
                data_points: vec![point],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        };
        let options = OtlpTranslateOptions { promote_scope_metadata: false, target_info: false, ..Default::default() };
        let translated = translate_metrics(&request(vec![metric]), &options);
        let rendered: Vec<(String, f64)> =
            translated.samples.iter().map(|(labels, sample)| (labels.to_string(), sample.value)).collect();
        let suffix = r#"instance="pod-1", job="shop/boxoffice""#;
        assert_eq!(
            rendered,
            [
                (format!("http_server_duration_milliseconds_sum{{{suffix}}}"), 42.0),
                (format!("http_server_duration_milliseconds_count{{{suffix}}}"), 6.0),
                (format!("http_server_duration_milliseconds_bucket{{{suffix}, le=\"0.5\"}}"), 1.0),
                (format!("http_server_duration_milliseconds_bucket{{{suffix}, le=\"10\"}}"), 3.0),
                (format!("http_server_duration_milliseconds_bucket{{{suffix}, le=\"+Inf\"}}"), 6.0),
            ]
        );
        let (exemplar_series, exemplar) = &translated.exemplars[0];
        assert_eq!(exemplar_series.get("le"), Some("10"));
        assert_eq!(exemplar.labels.get("trace_id"), Some("abababababababababababababababab"));
        assert_eq!(exemplar.labels.get("span_id"), Some("0101010101010101"));
        assert_eq!(exemplar.timestamp_ms, 4);
        assert_eq!(translated.metadata[0].metadata.unit, "milliseconds");
        assert_eq!(translated.metadata[0].metadata.metric_type, MetricType::Histogram);
    }

    #[test]
    fn summary_quantiles_sum_and_count() {
        let metric = Metric {
            name: "rpc.latency".into(),
            unit: "s".into(),
            data: Some(Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    time_unix_nano: 1_000_000,
                    count: 10,
                    sum: 2.5,
                    quantile_values: vec![
                        ValueAtQuantile { quantile: 0.5, value: 0.2 },
                        ValueAtQuantile { quantile: 0.99, value: 0.9 },
                    ],
                    ..Default::default()
                }],
            })),
            ..Default::default()
        };
        let options = OtlpTranslateOptions { promote_scope_metadata: false, target_info: false, ..Default::default() };
        let translated = translate_metrics(&request(vec![metric]), &options);
        assert_eq!(
            names(&translated),
            [
                r#"rpc_latency_seconds_sum{instance="pod-1", job="shop/boxoffice"}"#,
                r#"rpc_latency_seconds_count{instance="pod-1", job="shop/boxoffice"}"#,
                r#"rpc_latency_seconds{instance="pod-1", job="shop/boxoffice", quantile="0.5"}"#,
                r#"rpc_latency_seconds{instance="pod-1", job="shop/boxoffice", quantile="0.99"}"#,
            ]
        );
    }

    #[test]
    fn exponential_histogram_becomes_power_of_two_classic_buckets() {
        // Scale 1: base sqrt(2). Positive indexes 0..4 cover (1, 1.41], (1.41, 2], (2, 2.83], (2.83, 4].
        let point = ExponentialHistogramDataPoint {
            time_unix_nano: 1_000_000,
            count: 11,
            sum: Some(20.0),
            scale: 1,
            zero_count: 1,
            positive: Some(Buckets { offset: 0, bucket_counts: vec![1, 2, 3, 4] }),
            negative: Some(Buckets { offset: 0, bucket_counts: vec![0, 0] }),
            ..Default::default()
        };
        assert_eq!(exponential_to_classic_buckets(&point), [(0.0, 1), (2.0, 4), (4.0, 11)]);
        let negative = ExponentialHistogramDataPoint {
            count: 3,
            scale: 0,
            negative: Some(Buckets { offset: 1, bucket_counts: vec![2] }),
            zero_count: 1,
            zero_threshold: 1e-9,
            ..Default::default()
        };
        // Negative index 1 covers [-4, -2): upper bound -2.
        assert_eq!(exponential_to_classic_buckets(&negative), [(-2.0, 2), (1e-9, 3)]);
        let metric = Metric {
            name: "rpc.duration".into(),
            unit: "ms".into(),
            data: Some(Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![point],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        };
        let options = OtlpTranslateOptions { promote_scope_metadata: false, target_info: false, ..Default::default() };
        let translated = translate_metrics(&request(vec![metric]), &options);
        let les: Vec<&str> = translated.samples.iter().filter_map(|(labels, _)| labels.get("le")).collect();
        assert_eq!(les, ["0", "2", "4", "+Inf"]);
    }

    #[test]
    fn delta_sums_are_rejected_with_a_count_and_message() {
        let metric = Metric {
            name: "jobs.processed".into(),
            data: Some(Data::Sum(Sum {
                data_points: vec![number_point(1.0, 1, vec![]), number_point(2.0, 2, vec![])],
                aggregation_temporality: AggregationTemporality::Delta as i32,
                is_monotonic: true,
            })),
            ..Default::default()
        };
        let translated = translate_metrics(&request(vec![metric]), &OtlpTranslateOptions::default());
        assert_eq!(translated.rejected_data_points, 2);
        let partial = translated.partial_success().expect("partial success");
        assert_eq!(partial.rejected_data_points, 2);
        assert_eq!(
            partial.error_message,
            "metric \"jobs.processed\": delta temporality sums are not supported (2 data points dropped)"
        );
        assert!(translated.samples.iter().all(|(labels, _)| labels.metric_name() == Some("target_info")));
    }

    #[test]
    fn colliding_attribute_names_join_values_and_reserved_names_are_replaced() {
        let metric = Metric {
            name: "queue.depth".into(),
            data: Some(Data::Gauge(Gauge {
                data_points: vec![number_point(
                    1.0,
                    1,
                    vec![
                        string_attribute("a.b", "dot"),
                        string_attribute("a_b", "underscore"),
                        string_attribute("job", "ignored"),
                        string_attribute("__name__", "ignored"),
                        KeyValue {
                            key: "count".into(),
                            value: Some(AnyValue { value: Some(any_value::Value::IntValue(7)) }),
                        },
                    ],
                )],
            })),
            ..Default::default()
        };
        let options = OtlpTranslateOptions { promote_scope_metadata: false, target_info: false, ..Default::default() };
        let translated = translate_metrics(&request(vec![metric]), &options);
        assert_eq!(
            translated.samples[0].0.to_string(),
            r#"queue_depth{a_b="dot;underscore", count="7", instance="pod-1", job="shop/boxoffice"}"#
        );
    }

    #[test]
    fn attribute_values_render_like_the_collector() {
        let array = AnyValue {
            value: Some(any_value::Value::ArrayValue(oxeye_proto::otlp::common::ArrayValue {
                values: vec![
                    AnyValue { value: Some(any_value::Value::IntValue(1)) },
                    AnyValue { value: Some(any_value::Value::StringValue("x".into())) },
                ],
            })),
        };
        assert_eq!(value_as_string(Some(&array)), r#"[1,"x"]"#);
        assert_eq!(value_as_string(Some(&AnyValue { value: Some(any_value::Value::DoubleValue(0.1)) })), "0.1");
        assert_eq!(value_as_string(Some(&AnyValue { value: Some(any_value::Value::BoolValue(true)) })), "true");
        assert_eq!(
            value_as_string(Some(&AnyValue { value: Some(any_value::Value::BytesValue(b"hi!".to_vec())) })),
            "aGkh"
        );
        assert_eq!(encode_base64(b"hello"), "aGVsbG8=");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(1e21), "1000000000000000000000");
        assert_eq!(format_float(0.000001), "0.000001");
    }

    #[test]
    fn json_body_translates_like_protobuf() {
        let body = br#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},
            "scopeMetrics":[{"metrics":[{"name":"my.counter","unit":"1","sum":{"aggregationTemporality":2,"isMonotonic":true,
            "dataPoints":[{"asInt":"5","timeUnixNano":"1544712660300000000"}]}}]}]}]}"#;
        let translated = decode_and_translate(body, None, OtlpFormat::Json, 1 << 20, &OtlpTranslateOptions::default())
            .expect("decodes");
        assert_eq!(names(&translated), [r#"my_counter_total{job="svc"}"#]);
        assert_eq!(translated.samples[0].1, Sample { timestamp_ms: 1_544_712_660_300, value: 5.0 });
        let protobuf = decode_metrics_request_json_for_test(body).encode_to_vec();
        let from_protobuf =
            decode_and_translate(&protobuf, None, OtlpFormat::Protobuf, 1 << 20, &OtlpTranslateOptions::default())
                .expect("decodes");
        assert_eq!(from_protobuf, translated);
    }

    #[test]
    fn metrics_example_json_keeps_gauges_and_rejects_deltas() {
        let body = crate::otlp_json::tests::METRICS_EXAMPLE.as_bytes();
        let translated = decode_and_translate(body, None, OtlpFormat::Json, 1 << 20, &OtlpTranslateOptions::default())
            .expect("decodes");
        assert_eq!(
            names(&translated),
            [
                r#"my_gauge_ratio{job="my.service", my_gauge_attr="some value", otel_scope_my_scope_attribute="some scope attribute", otel_scope_name="my.library", otel_scope_version="1.0.0"}"#
            ]
        );
        assert_eq!(translated.samples[0].1, Sample { timestamp_ms: 1_544_712_660_300, value: 10.0 });
        let partial = translated.partial_success().expect("deltas rejected");
        assert_eq!(partial.rejected_data_points, 3);
        assert_eq!(
            partial.error_message,
            "metric \"my.counter\": delta temporality sums are not supported (1 data points dropped); \
             metric \"my.histogram\": delta temporality histograms are not supported (1 data points dropped); \
             metric \"my.exponential.histogram\": delta temporality exponential histograms are not supported (1 data points dropped)"
        );
    }

    fn decode_metrics_request_json_for_test(body: &[u8]) -> ExportMetricsServiceRequest {
        crate::otlp_json::decode_metrics_request_json(body).expect("json decodes")
    }

    #[test]
    fn malformed_and_oversized_bodies_are_errors() {
        let error = decode_metrics_request(&[0x0a, 0x05, 0x01], OtlpFormat::Protobuf).expect_err("truncated");
        assert!(
            matches!(&error, IngestError::Protobuf { field, .. } if field == "ExportMetricsServiceRequest"),
            "{error}"
        );
        let error = decode_and_translate(&[0u8; 100], None, OtlpFormat::Protobuf, 10, &OtlpTranslateOptions::default())
            .expect_err("too large");
        assert_eq!(error, IngestError::TooLarge { limit_bytes: 10 });
    }

    proptest::proptest! {
        #[test]
        fn protobuf_decode_and_translate_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            if let Ok(request) = decode_metrics_request(&bytes, OtlpFormat::Protobuf) {
                let _ = translate_metrics(&request, &OtlpTranslateOptions::default());
            }
        }
    }
}
