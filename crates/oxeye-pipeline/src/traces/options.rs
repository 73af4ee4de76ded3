//! The typed options of the trace pipeline: tail sampling and span metrics, with the defaults the issue and
//! the seeds ask for (keep everything in development; `rate: 0.1` in production keeps every error and every
//! request slower than 2 s plus a tenth of the rest).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::PipelineError;

/// Tempo's metrics-generator default latency buckets, in seconds: `0.002 * 2^i` for `i` in `0..12`
/// (`prometheus.ExponentialBuckets(0.002, 2, 12)`), i.e. 2 ms up to 4.096 s.
pub const DEFAULT_LATENCY_BUCKETS_SECONDS: [f64; 12] =
    [0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096];

/// Tail sampling: which traces stay in the store once they are complete.
///
/// A trace is held until no new span of it has arrived for [`TailSamplingOptions::wait`]; it is then kept if
/// any span has status error, else if its root span lasted longer than the slow threshold, else with
/// probability `rate` decided from a hash of the trace id (the same answer for every span of the trace and
/// across restarts). `services` overrides `rate` and `slow_threshold` by the `service.name` of the trace's
/// root span (or of its first span while the root has not arrived).
#[derive(Debug, Clone, PartialEq)]
pub struct TailSamplingOptions {
    /// Off: every span is kept and nothing is held.
    pub enabled: bool,
    /// How long a trace is held after its newest span arrived before it is decided. Default 10 s.
    pub wait: Duration,
    /// The fraction, `0.0..=1.0`, of traces kept among those that are neither errors nor slow. Default 1.0
    /// (development); 0.1 is the production setting the seeds use.
    pub rate: f64,
    /// A trace whose root span lasts longer than this is kept. Default 2 s.
    pub slow_threshold: Duration,
    /// The most traces held at once; when full, the trace closest to its deadline is decided at once by the
    /// same rules (counted as an early decision). Default 200,000 (about 25 MiB of state).
    pub max_held_traces: usize,
    /// How many recent decisions are remembered so that late spans of a decided trace follow its decision.
    /// Default 200,000.
    pub decision_cache_size: usize,
    /// Per-service overrides by `service.name`.
    pub services: BTreeMap<String, ServiceSamplingOptions>,
}

impl Default for TailSamplingOptions {
    fn default() -> Self {
        TailSamplingOptions {
            enabled: true,
            wait: Duration::from_secs(10),
            rate: 1.0,
            slow_threshold: Duration::from_secs(2),
            max_held_traces: 200_000,
            decision_cache_size: 200_000,
            services: BTreeMap::new(),
        }
    }
}

/// A service's overrides of the tail sampling rules; a field left `None` uses the global value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceSamplingOptions {
    /// The service's keep fraction, `0.0..=1.0`.
    pub rate: Option<f64>,
    /// The service's slow threshold.
    pub slow_threshold: Option<Duration>,
}

/// Span metrics: request counts and a latency histogram per service, span name, kind and status, written
/// into the metrics store under the names Tempo's metrics-generator uses (`traces_spanmetrics_calls_total`,
/// `traces_spanmetrics_latency_bucket`/`_sum`/`_count`).
#[derive(Debug, Clone, PartialEq)]
pub struct SpanMetricsOptions {
    /// Off: no series are written.
    pub enabled: bool,
    /// How often the aggregated values are appended to the metrics store. Default 15 s.
    pub flush_interval: Duration,
    /// Upper bounds of the latency histogram buckets, in seconds, strictly increasing, without `+Inf`
    /// (always added). Default [`DEFAULT_LATENCY_BUCKETS_SECONDS`].
    pub latency_buckets_seconds: Vec<f64>,
    /// The most (service, span name, kind, status) combinations tracked; spans of further combinations are
    /// counted as refused and not aggregated. Default 10,000.
    pub max_series: usize,
    /// A combination that received no span for this long is no longer written (its series go stale in
    /// queries). Default 15 min.
    pub idle_timeout: Duration,
}

impl Default for SpanMetricsOptions {
    fn default() -> Self {
        SpanMetricsOptions {
            enabled: true,
            flush_interval: Duration::from_secs(15),
            latency_buckets_seconds: DEFAULT_LATENCY_BUCKETS_SECONDS.to_vec(),
            max_series: 10_000,
            idle_timeout: Duration::from_secs(15 * 60),
        }
    }
}

/// Every option of the trace pipeline.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TracePipelineOptions {
    /// Tail sampling.
    pub sampling: TailSamplingOptions,
    /// Span metrics.
    pub span_metrics: SpanMetricsOptions,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> PipelineError {
    PipelineError::InvalidTraceOption { field: field.into(), reason: reason.into() }
}

fn check_rate(field: String, rate: f64) -> Result<(), PipelineError> {
    if (0.0..=1.0).contains(&rate) { Ok(()) } else { Err(invalid(field, format!("{rate} is not within 0.0..=1.0"))) }
}

impl TracePipelineOptions {
    /// Checks every field.
    ///
    /// # Errors
    /// [`PipelineError::InvalidTraceOption`] naming the field (as in the configuration file, e.g.
    /// `sampling.services.checkout.rate`): a rate outside `0.0..=1.0`, a zero wait, flush interval, held-trace
    /// limit or series limit, or latency buckets that are empty, not finite or not strictly increasing.
    pub fn validate(&self) -> Result<(), PipelineError> {
        let sampling = &self.sampling;
        check_rate("sampling.rate".to_string(), sampling.rate)?;
        if sampling.wait.is_zero() {
            return Err(invalid("sampling.wait", "must be positive"));
        }
        if sampling.max_held_traces == 0 {
            return Err(invalid("sampling.max_held_traces", "must be positive"));
        }
        for (service, overrides) in &sampling.services {
            if let Some(rate) = overrides.rate {
                check_rate(format!("sampling.services.{service}.rate"), rate)?;
            }
        }
        let span_metrics = &self.span_metrics;
        if span_metrics.flush_interval.is_zero() {
            return Err(invalid("span_metrics.flush_interval", "must be positive"));
        }
        if span_metrics.max_series == 0 {
            return Err(invalid("span_metrics.max_series", "must be positive"));
        }
        let buckets = &span_metrics.latency_buckets_seconds;
        if buckets.is_empty() {
            return Err(invalid("span_metrics.latency_buckets", "must not be empty"));
        }
        if buckets.iter().any(|bound| !bound.is_finite()) {
            return Err(invalid("span_metrics.latency_buckets", "must be finite (+Inf is always added)"));
        }
        if buckets.windows(2).any(|pair| pair[0] >= pair[1]) {
            return Err(invalid("span_metrics.latency_buckets", "must be strictly increasing"));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_tempo_buckets() {
        let options = TracePipelineOptions::default();
        options.validate().unwrap();
        assert_eq!(options.sampling.rate, 1.0);
        assert_eq!(options.sampling.wait, Duration::from_secs(10));
        assert_eq!(options.sampling.slow_threshold, Duration::from_secs(2));
        let expected: Vec<f64> = (0..12).map(|power| 0.002 * f64::from(1u32 << power)).collect();
        for (bound, want) in options.span_metrics.latency_buckets_seconds.iter().zip(&expected) {
            assert!((bound - want).abs() < 1e-12, "{bound} vs {want}");
        }
    }

    #[test]
    fn validation_names_the_field() {
        let mut options = TracePipelineOptions::default();
        options
            .sampling
            .services
            .insert("checkout".to_string(), ServiceSamplingOptions { rate: Some(1.5), slow_threshold: None });
        let message = options.validate().unwrap_err().to_string();
        assert!(message.contains("sampling.services.checkout.rate"), "{message}");

        let mut options = TracePipelineOptions::default();
        options.span_metrics.latency_buckets_seconds = vec![0.1, 0.1];
        let message = options.validate().unwrap_err().to_string();
        assert!(message.contains("span_metrics.latency_buckets"), "{message}");

        let mut options = TracePipelineOptions::default();
        options.sampling.rate = -0.1;
        assert!(options.validate().unwrap_err().to_string().contains("sampling.rate"));
    }
}
