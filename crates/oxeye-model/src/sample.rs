//! Samples, exemplars and metric metadata.

use crate::Labels;

/// The bit pattern of Prometheus' staleness marker, a signalling NaN distinct from every NaN that
/// arithmetic produces. Compare bits, never values: `NaN != NaN`.
///
/// Source: Prometheus `model/value/value.go` (`StaleNaN`).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The staleness marker as an `f64`; see [`STALE_NAN_BITS`].
pub const STALE_NAN: f64 = f64::from_bits(STALE_NAN_BITS);

/// True when `value` is the staleness marker (by bits).
pub fn is_stale_nan(value: f64) -> bool {
    value.to_bits() == STALE_NAN_BITS
}

/// One float sample: a timestamp in **milliseconds** since the Unix epoch and a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The value; may be NaN, ±Inf, or [`STALE_NAN`].
    pub value: f64,
}

/// An exemplar: a sample of a single event (typically with `trace_id`/`span_id` labels) attached to a
/// series, from OpenMetrics exposition, OTLP or remote_write.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    /// The exemplar's own labels, e.g. `{trace_id="…"}`; at most 128 UTF-8 characters in total by the
    /// OpenMetrics rule.
    pub labels: Labels,
    /// The observed value.
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

/// A metric family's type, as in remote_write's `MetricMetadata.MetricType` and the text formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MetricType {
    /// Unknown or untyped.
    #[default]
    Unknown,
    /// A monotonic counter.
    Counter,
    /// A gauge.
    Gauge,
    /// A classic histogram (`_bucket`, `_sum`, `_count`).
    Histogram,
    /// An OpenMetrics gauge histogram.
    GaugeHistogram,
    /// A summary (`{quantile}`, `_sum`, `_count`).
    Summary,
    /// An OpenMetrics info metric.
    Info,
    /// An OpenMetrics state set.
    StateSet,
}

impl MetricType {
    /// The name used in `/api/v1/metadata` and `# TYPE` lines: `counter`, `gauge`, `histogram`,
    /// `gaugehistogram`, `summary`, `info`, `stateset` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Unknown => "unknown",
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
        }
    }

    /// Parses a `# TYPE` word (`untyped` is [`MetricType::Unknown`]); `None` for anything else.
    pub fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "gaugehistogram" => MetricType::GaugeHistogram,
            "summary" => MetricType::Summary,
            "info" => MetricType::Info,
            "stateset" => MetricType::StateSet,
            "untyped" | "unknown" => MetricType::Unknown,
            _ => return None,
        })
    }
}

/// Metadata of one metric family, as `/api/v1/metadata` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetricMetadata {
    /// The family's type.
    pub metric_type: MetricType,
    /// The `# HELP` text, unescaped.
    pub help: String,
    /// The `# UNIT` (OpenMetrics) or OTLP unit translated to Prometheus words, e.g. `seconds`; may be empty.
    pub unit: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_marker_is_recognised_by_bits_only() {
        assert!(is_stale_nan(STALE_NAN));
        assert!(STALE_NAN.is_nan());
        assert!(!is_stale_nan(f64::NAN));
        assert!(!is_stale_nan(1.0));
    }
}
