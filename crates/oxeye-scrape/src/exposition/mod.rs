//! Parsers for what a scrape target serves: the Prometheus text format (0.0.4, and 1.0.0 with quoted
//! UTF-8 names) and OpenMetrics 1.0, plus the content negotiation that picks one.
//!
//! Sources: Prometheus `docs/instrumenting/exposition_formats.md` and `content_negotiation.md`,
//! the OpenMetrics 1.0 specification, and the behaviour of Prometheus 3's `model/textparse` package
//! (normalised `le`/`quantile` values, `_created` series kept as ordinary samples).
//!
//! The parsers are one pass over the body, borrowing names and values from it unless an escape
//! sequence forces a copy. The result is an [`Exposition`]: samples in body order and the metadata of
//! each metric family.
//!
//! ```
//! use oxeye_scrape::exposition::{parse, ExpositionFormat};
//! let body = b"# TYPE django_http_requests_total counter\n\
//!              django_http_requests_total{method=\"GET\",status=\"200\"} 1027 1700000000000\n";
//! let format = ExpositionFormat::from_content_type(Some("text/plain; version=0.0.4; charset=utf-8"));
//! let exposition = parse(body, format).unwrap();
//! assert_eq!(exposition.samples[0].metric_name, "django_http_requests_total");
//! assert_eq!(exposition.samples[0].value, 1027.0);
//! assert_eq!(exposition.samples[0].timestamp_ms, Some(1_700_000_000_000));
//! ```

mod float;
mod parser;

use std::borrow::Cow;

use oxeye_model::{Exemplar, Labels, LabelsBuilder, METRIC_NAME_LABEL, MetricMetadata, MetricType};

use crate::ScrapeError;

pub use float::{format_openmetrics_float, parse_float};

/// The `Accept` header Prometheus 3 sends when scraping, in its order of preference: OpenMetrics 1.0.0
/// (then 0.0.1), the text format 1.0.0 (UTF-8 names allowed), the text format 0.0.4, then anything.
pub const ACCEPT_HEADER: &str = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,\
application/openmetrics-text;version=0.0.1;q=0.4,\
text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,\
text/plain;version=0.0.4;q=0.2,*/*;q=0.1";

/// An exposition format the scraper can parse, chosen from the response's `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpositionFormat {
    /// `text/plain; version=0.0.4`: the classic Prometheus text format. Also the fallback for a missing
    /// or unknown content type (where Prometheus 3 fails the scrape, we parse as 0.0.4).
    PrometheusText004,
    /// `text/plain; version=1.0.0`: the text format with quoted UTF-8 metric and label names,
    /// `{"my.metric","a.b"="x"} 1`. prometheus_client 0.26's default.
    PrometheusText100,
    /// `application/openmetrics-text; version=1.0.0` (or `0.0.1`): OpenMetrics text, ending in `# EOF`,
    /// with `# UNIT`, exemplars and timestamps in seconds.
    OpenMetrics100,
}

impl ExpositionFormat {
    /// Picks the parser for a response's `Content-Type` header value (`None` when the header is
    /// missing). Media types and parameters are compared case-insensitively; anything that is neither
    /// `application/openmetrics-text` nor `text/plain` is parsed as text 0.0.4.
    pub fn from_content_type(content_type: Option<&str>) -> ExpositionFormat {
        ExpositionFormat::from_content_type_or(content_type, ExpositionFormat::PrometheusText004)
    }

    /// As [`ExpositionFormat::from_content_type`], with `fallback` for a missing header or a media type
    /// that is neither `application/openmetrics-text` nor `text/plain` (a scrape config's
    /// `fallback_scrape_protocol`). `text/plain` without `version=1.0.0` is text 0.0.4.
    pub fn from_content_type_or(content_type: Option<&str>, fallback: ExpositionFormat) -> ExpositionFormat {
        let Some(content_type) = content_type else {
            return fallback;
        };
        let mut parts = content_type.split(';');
        let media_type = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let version = parts.find_map(|parameter| {
            let (name, value) = parameter.split_once('=')?;
            name.trim().eq_ignore_ascii_case("version").then(|| value.trim().trim_matches('"').to_string())
        });
        match media_type.as_str() {
            "application/openmetrics-text" => ExpositionFormat::OpenMetrics100,
            "text/plain" if version.as_deref() == Some("1.0.0") => ExpositionFormat::PrometheusText100,
            "text/plain" => ExpositionFormat::PrometheusText004,
            _ => fallback,
        }
    }

    /// The canonical content type of the format, e.g. `text/plain; version=0.0.4`.
    pub fn content_type(self) -> &'static str {
        match self {
            ExpositionFormat::PrometheusText004 => "text/plain; version=0.0.4",
            ExpositionFormat::PrometheusText100 => "text/plain; version=1.0.0",
            ExpositionFormat::OpenMetrics100 => "application/openmetrics-text; version=1.0.0",
        }
    }
}

/// A parsed scrape body: samples in body order and metadata per metric family.
#[derive(Debug, Clone, PartialEq)]
pub struct Exposition<'body> {
    /// Every sample line, in the order of the body.
    pub samples: Vec<ScrapedSample<'body>>,
    /// One entry per metric family that had a `# HELP`, `# TYPE` or `# UNIT` line, in order of first
    /// appearance.
    pub families: Vec<MetricFamilyMetadata>,
}

/// The metadata of one metric family, from its `# HELP`, `# TYPE` and `# UNIT` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricFamilyMetadata {
    /// The family name as written: `django_http_requests` for an OpenMetrics counter whose samples are
    /// `django_http_requests_total`, `django_http_requests_total` in the text format.
    pub name: String,
    /// Type, help (unescaped) and unit; defaults for lines that were absent.
    pub metadata: MetricMetadata,
}

/// One sample line of a scrape body. Names and values borrow from the body unless unescaping copied
/// them.
#[derive(Debug, Clone, PartialEq)]
pub struct ScrapedSample<'body> {
    /// The metric name, e.g. `django_http_requests_total`.
    pub metric_name: Cow<'body, str>,
    /// The labels in written order, without the metric name, values unescaped. `le` of histograms and
    /// `quantile` of summaries are normalised with [`format_openmetrics_float`] as Prometheus 3 does.
    pub labels: Vec<(Cow<'body, str>, Cow<'body, str>)>,
    /// The value; may be NaN or ±Inf.
    pub value: f64,
    /// The explicit timestamp in milliseconds since the Unix epoch (the text formats write ms, OpenMetrics
    /// writes seconds, converted here), or `None` when the line had none.
    pub timestamp_ms: Option<i64>,
    /// The OpenMetrics exemplar attached to the line, if any.
    pub exemplar: Option<ScrapedExemplar<'body>>,
    /// The type of the family the sample belongs to ([`MetricType::Unknown`] when no `# TYPE` line
    /// covers its name).
    pub metric_type: MetricType,
    /// The series as written: the metric name and label set, without value, timestamp or exemplar.
    /// The same text (under the same `metric_type`) always yields the same [`ScrapedSample::to_labels`],
    /// so a scraper can cache its per-series work by it.
    pub series_text: &'body str,
    /// The 1-based line number in the body.
    pub line_number: usize,
}

/// An OpenMetrics exemplar: `# {trace_id="…"} 0.67 1700000123.456` after a sample.
#[derive(Debug, Clone, PartialEq)]
pub struct ScrapedExemplar<'body> {
    /// The exemplar's labels in written order.
    pub labels: Vec<(Cow<'body, str>, Cow<'body, str>)>,
    /// The observed value.
    pub value: f64,
    /// Milliseconds since the Unix epoch, or `None` when the exemplar had no timestamp.
    pub timestamp_ms: Option<i64>,
}

impl ScrapedSample<'_> {
    /// The sample's series labels, metric name included as `__name__`.
    pub fn to_labels(&self) -> Labels {
        let mut builder = LabelsBuilder::new();
        builder.set(METRIC_NAME_LABEL, self.metric_name.as_ref());
        for (name, value) in &self.labels {
            builder.set(name.as_ref(), value.as_ref());
        }
        builder.build()
    }
}

impl ScrapedExemplar<'_> {
    /// The exemplar as a model value; `default_timestamp_ms` stands in for a missing timestamp (the
    /// scraper passes the sample's timestamp, as Prometheus does).
    pub fn to_exemplar(&self, default_timestamp_ms: i64) -> Exemplar {
        Exemplar {
            labels: Labels::from_pairs(self.labels.iter().map(|(name, value)| (name.as_ref(), value.as_ref()))),
            value: self.value,
            timestamp_ms: self.timestamp_ms.unwrap_or(default_timestamp_ms),
        }
    }

    /// The number of UTF-8 characters in the exemplar's label names and values, which OpenMetrics
    /// limits to 128.
    pub fn label_set_characters(&self) -> usize {
        self.labels.iter().map(|(name, value)| name.chars().count() + value.chars().count()).sum()
    }
}

/// Parses a scrape body in `format`.
///
/// # Errors
/// [`ScrapeError::Parse`] naming the 1-based line and what is wrong there: invalid UTF-8, a malformed
/// metric name, label, value or timestamp, a duplicate label name, an unknown `# TYPE`, and for
/// OpenMetrics a missing `# EOF`, data after it, blank lines or unknown comments.
pub fn parse(body: &[u8], format: ExpositionFormat) -> Result<Exposition<'_>, ScrapeError> {
    parser::parse(body, format)
}
