//! The `traces.sampling:` and `traces.span_metrics:` sections of the configuration file: tail sampling and
//! span metrics. Read into [`SamplingSection`] and [`SpanMetricsSection`] (human units as strings, unknown
//! fields rejected), validated together into [`oxeye_pipeline::traces::TracePipelineOptions`].

use std::collections::BTreeMap;
use std::time::Duration;

use oxeye_model::duration::parse_duration_ms;
use oxeye_pipeline::traces::{
    DEFAULT_LATENCY_BUCKETS_SECONDS, ServiceSamplingOptions, SpanMetricsOptions, TailSamplingOptions,
    TracePipelineOptions,
};
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// `traces:`: the trace store's own settings and what happens to spans on the way into it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracesSection {
    /// The trace store: retention, head cut, page and WAL segment sizes.
    pub storage: crate::config_traces::TraceStorageSection,
    /// Tail sampling.
    pub sampling: SamplingSection,
    /// Span metrics.
    pub span_metrics: SpanMetricsSection,
}

impl TracesSection {
    /// The trace pipeline's options (see [`trace_pipeline_options`]).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the field under `traces.`.
    pub fn pipeline_options(&self) -> Result<TracePipelineOptions, ConfigError> {
        trace_pipeline_options(&self.sampling, &self.span_metrics)
    }
}

/// `traces.sampling:`: tail sampling. Defaults keep every trace (development); production sets `rate: 0.1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplingSection {
    /// Off: every span is kept and nothing is held.
    pub enabled: bool,
    /// How long a trace waits for more spans before it is decided, a Prometheus duration.
    pub wait: String,
    /// The fraction of traces kept among those that are neither errors nor slow, `0.0..=1.0`.
    pub rate: f64,
    /// A trace whose root span lasts longer than this is always kept.
    pub slow_threshold: String,
    /// The most traces held undecided; beyond it the oldest is decided early (counted).
    pub max_held_traces: usize,
    /// How many recent decisions late spans can follow.
    pub decision_cache_size: usize,
    /// Per-service overrides by `service.name`.
    pub services: BTreeMap<String, ServiceSamplingSection>,
}

impl Default for SamplingSection {
    fn default() -> Self {
        let defaults = TailSamplingOptions::default();
        SamplingSection {
            enabled: defaults.enabled,
            wait: "10s".into(),
            rate: defaults.rate,
            slow_threshold: "2s".into(),
            max_held_traces: defaults.max_held_traces,
            decision_cache_size: defaults.decision_cache_size,
            services: BTreeMap::new(),
        }
    }
}

/// One `traces.sampling.services.<name>:` entry; absent fields use the global values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceSamplingSection {
    /// The service's keep fraction.
    pub rate: Option<f64>,
    /// The service's slow threshold, a Prometheus duration.
    pub slow_threshold: Option<String>,
}

/// `traces.span_metrics:`: Tempo-style span metrics written into the metrics store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpanMetricsSection {
    /// Off: no `traces_spanmetrics_*` series.
    pub enabled: bool,
    /// How often the aggregated values are appended, a Prometheus duration.
    pub flush_interval: String,
    /// Latency histogram bucket bounds in seconds, strictly increasing (`+Inf` is added).
    pub latency_buckets: Vec<f64>,
    /// The most (service, span name, kind, status) combinations tracked.
    pub max_series: usize,
    /// A combination without spans for this long is no longer written.
    pub idle_timeout: String,
}

impl Default for SpanMetricsSection {
    fn default() -> Self {
        let defaults = SpanMetricsOptions::default();
        SpanMetricsSection {
            enabled: defaults.enabled,
            flush_interval: "15s".into(),
            latency_buckets: DEFAULT_LATENCY_BUCKETS_SECONDS.to_vec(),
            max_series: defaults.max_series,
            idle_timeout: "15m".into(),
        }
    }
}

fn positive_duration(field: &str, text: &str) -> Result<Duration, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid { field: field.to_string(), message };
    let milliseconds = parse_duration_ms(text).map_err(|error| invalid(error.to_string()))?;
    if milliseconds <= 0 {
        return Err(invalid(format!("{text:?} must be greater than 0")));
    }
    Ok(Duration::from_millis(milliseconds.unsigned_abs()))
}

/// Validates both sections into the pipeline's options.
///
/// # Errors
/// [`ConfigError::Invalid`] naming the field under `traces.` (e.g. `traces.sampling.rate`,
/// `traces.sampling.services.celery.slow_threshold`, `traces.span_metrics.latency_buckets`).
pub fn trace_pipeline_options(
    sampling: &SamplingSection,
    span_metrics: &SpanMetricsSection,
) -> Result<TracePipelineOptions, ConfigError> {
    let mut services = BTreeMap::new();
    for (service, section) in &sampling.services {
        let slow_threshold = match &section.slow_threshold {
            Some(text) => Some(positive_duration(&format!("traces.sampling.services.{service}.slow_threshold"), text)?),
            None => None,
        };
        services.insert(service.clone(), ServiceSamplingOptions { rate: section.rate, slow_threshold });
    }
    let options = TracePipelineOptions {
        sampling: TailSamplingOptions {
            enabled: sampling.enabled,
            wait: positive_duration("traces.sampling.wait", &sampling.wait)?,
            rate: sampling.rate,
            slow_threshold: positive_duration("traces.sampling.slow_threshold", &sampling.slow_threshold)?,
            max_held_traces: sampling.max_held_traces,
            decision_cache_size: sampling.decision_cache_size,
            services,
        },
        span_metrics: SpanMetricsOptions {
            enabled: span_metrics.enabled,
            flush_interval: positive_duration("traces.span_metrics.flush_interval", &span_metrics.flush_interval)?,
            latency_buckets_seconds: span_metrics.latency_buckets.clone(),
            max_series: span_metrics.max_series,
            idle_timeout: positive_duration("traces.span_metrics.idle_timeout", &span_metrics.idle_timeout)?,
        },
    };
    options.validate().map_err(|error| match error {
        oxeye_pipeline::PipelineError::InvalidTraceOption { field, reason } => {
            ConfigError::Invalid { field: format!("traces.{field}"), message: reason }
        }
        other => ConfigError::Invalid { field: "traces".to_string(), message: other.to_string() },
    })?;
    Ok(options)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_to_the_pipeline_defaults() {
        let options = trace_pipeline_options(&SamplingSection::default(), &SpanMetricsSection::default()).unwrap();
        assert_eq!(options, TracePipelineOptions::default());
    }

    #[test]
    fn errors_name_the_field_under_traces() {
        let mut sampling = SamplingSection { rate: 2.0, ..SamplingSection::default() };
        let error = trace_pipeline_options(&sampling, &SpanMetricsSection::default()).unwrap_err();
        assert!(error.to_string().contains("traces.sampling.rate"), "{error}");
        sampling.rate = 0.1;
        sampling
            .services
            .insert("celery".into(), ServiceSamplingSection { rate: None, slow_threshold: Some("soon".into()) });
        let error = trace_pipeline_options(&sampling, &SpanMetricsSection::default()).unwrap_err();
        assert!(error.to_string().contains("traces.sampling.services.celery.slow_threshold"), "{error}");
        let span_metrics = SpanMetricsSection { flush_interval: "0s".into(), ..SpanMetricsSection::default() };
        let error = trace_pipeline_options(&SamplingSection::default(), &span_metrics).unwrap_err();
        assert!(error.to_string().contains("traces.span_metrics.flush_interval"), "{error}");
    }
}
