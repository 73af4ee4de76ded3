//! Span metrics: RED metrics from every span, aggregated in memory and appended to the metrics store
//! periodically under the names and labels of Tempo's metrics-generator span-metrics processor:
//!
//! - `traces_spanmetrics_calls_total` (counter): spans;
//! - `traces_spanmetrics_latency_bucket{le}` / `_sum` / `_count` (histogram, seconds): span durations;
//!
//! each with the labels `service` (the resource's `service.name`, `unknown_service` without one), `span_name`,
//! `span_kind` (`SPAN_KIND_SERVER`...) and `status_code` (`STATUS_CODE_ERROR`...). Errors are the
//! `status_code="STATUS_CODE_ERROR"` series, as in Tempo. Values are cumulative since the process started
//! (a restart is a counter reset, which `rate()` handles). Exemplars (label `traceID`, value the span's
//! duration in seconds, timestamp its end) are attached to `calls_total` and to the bucket the duration falls
//! in, only for traces the tail sampler kept, so every exemplar link opens a stored trace.

use std::collections::HashMap;

use oxeye_model::storage::Appender;
use oxeye_model::traces::{SpanKind, StatusCode, TraceId, id_to_hex};
use oxeye_model::{Exemplar, LabelRef, Labels, MetricMetadata, MetricType, Sample};

use super::options::SpanMetricsOptions;

/// The counter of spans.
pub const CALLS_TOTAL: &str = "traces_spanmetrics_calls_total";
/// The latency histogram's buckets (cumulative counts, label `le` in seconds).
pub const LATENCY_BUCKET: &str = "traces_spanmetrics_latency_bucket";
/// The latency histogram's sum, in seconds.
pub const LATENCY_SUM: &str = "traces_spanmetrics_latency_sum";
/// The latency histogram's count.
pub const LATENCY_COUNT: &str = "traces_spanmetrics_latency_count";
/// The exemplar label carrying the trace id (32 hex digits), as Tempo names it.
pub const EXEMPLAR_TRACE_ID_LABEL: &str = "traceID";
/// The `service` value of spans whose resource has no `service.name` (the OpenTelemetry SDK default).
pub const UNKNOWN_SERVICE: &str = "unknown_service";

const KINDS: usize = 6;
const STATUSES: usize = 3;
const NO_SLOT: u32 = u32::MAX;
const MAX_EXEMPLAR_CANDIDATES: usize = 4;

/// Whether an exemplar's trace was kept, as the tail sampler knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExemplarFate {
    /// Kept: write the exemplar.
    Kept,
    /// Dropped or unknown: forget the exemplar.
    Dropped,
    /// Still held: ask again at the next flush.
    Undecided,
}

#[derive(Debug, Clone, Copy)]
struct ExemplarCandidate {
    trace_id: TraceId,
    duration_seconds: f64,
    timestamp_ms: i64,
}

#[derive(Debug)]
struct SeriesState {
    service: String,
    span_name: String,
    kind: SpanKind,
    status: StatusCode,
    calls: u64,
    /// Spans per bucket (not cumulative); the last entry counts durations above every bound (`+Inf`).
    bucket_counts: Vec<u64>,
    sum_seconds: f64,
    last_update_ms: u64,
    exemplar_candidates: Vec<ExemplarCandidate>,
}

/// One span's contribution, resolved to its series while the spans are at hand and applied once the store
/// has acknowledged them.
#[derive(Debug, Clone, Copy)]
pub struct SpanObservation {
    slot: u32,
    duration_seconds: f64,
    trace_id: TraceId,
    end_ms: i64,
}

/// What a flush appended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpanMetricsFlush {
    /// Samples appended.
    pub samples: u64,
    /// Exemplars appended.
    pub exemplars: u64,
    /// Samples or exemplars the store refused (e.g. out of order after a clock step).
    pub refused: u64,
}

/// The in-memory aggregation of span metrics. Not synchronised: the pipeline keeps it behind a mutex.
#[derive(Debug)]
pub struct SpanMetricsAggregator {
    bucket_bounds_seconds: Vec<f64>,
    /// `le` label values, one per bound, then `+Inf`.
    bucket_labels: Vec<String>,
    max_series: usize,
    idle_timeout_ms: u64,
    /// service ▸ span name ▸ slot per (kind, status), [`NO_SLOT`] when absent: found from borrowed strings.
    index: HashMap<String, HashMap<String, [u32; KINDS * STATUSES]>>,
    series: Vec<SeriesState>,
    refused_spans: u64,
}

impl SpanMetricsAggregator {
    /// An empty aggregation with `options` (validated by the caller).
    pub fn new(options: &SpanMetricsOptions) -> Self {
        let mut bucket_labels: Vec<String> =
            options.latency_buckets_seconds.iter().map(|bound| format!("{bound}")).collect();
        bucket_labels.push("+Inf".to_string());
        SpanMetricsAggregator {
            bucket_bounds_seconds: options.latency_buckets_seconds.clone(),
            bucket_labels,
            max_series: options.max_series,
            idle_timeout_ms: u64::try_from(options.idle_timeout.as_millis()).unwrap_or(u64::MAX),
            index: HashMap::new(),
            series: Vec::new(),
            refused_spans: 0,
        }
    }

    /// Series combinations (service, span name, kind, status) tracked.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// Spans not aggregated because the series limit was reached.
    pub fn refused_spans(&self) -> u64 {
        self.refused_spans
    }

    /// Finds or creates the series of a span of `service`; `None` (counted) when the series limit is reached.
    pub fn resolve(
        &mut self,
        service: &str,
        span: &oxeye_model::traces::Span,
        trace_id: TraceId,
    ) -> Option<SpanObservation> {
        let position = usize::from(span.kind as u8) * STATUSES + usize::from(span.status_code as u8);
        let existing = self
            .index
            .get(service)
            .and_then(|names| names.get(span.name.as_str()))
            .and_then(|slots| slots.get(position))
            .copied()
            .filter(|slot| *slot != NO_SLOT);
        let slot = match existing {
            Some(slot) => slot,
            None => self.create_series(service, span, position)?,
        };
        Some(SpanObservation {
            slot,
            duration_seconds: span.duration_nanos() as f64 / 1e9,
            trace_id,
            end_ms: i64::try_from(span.end_time_unix_nano / 1_000_000).unwrap_or(i64::MAX),
        })
    }

    fn create_series(&mut self, service: &str, span: &oxeye_model::traces::Span, position: usize) -> Option<u32> {
        if self.series.len() >= self.max_series {
            self.refused_spans += 1;
            return None;
        }
        let slot = u32::try_from(self.series.len()).ok().filter(|slot| *slot != NO_SLOT)?;
        self.series.push(SeriesState {
            service: service.to_string(),
            span_name: span.name.clone(),
            kind: span.kind,
            status: span.status_code,
            calls: 0,
            bucket_counts: vec![0; self.bucket_labels.len()],
            sum_seconds: 0.0,
            last_update_ms: 0,
            exemplar_candidates: Vec::new(),
        });
        let slots = self
            .index
            .entry(service.to_string())
            .or_default()
            .entry(span.name.clone())
            .or_insert([NO_SLOT; KINDS * STATUSES]);
        if let Some(entry) = slots.get_mut(position) {
            *entry = slot;
        }
        Some(slot)
    }

    /// Adds resolved spans at `now_ms` (ms since the Unix epoch).
    pub fn record(&mut self, now_ms: u64, observations: &[SpanObservation]) {
        for observation in observations {
            let Some(series) = self.series.get_mut(observation.slot as usize) else {
                debug_assert!(false, "an observation resolved by this aggregator");
                continue;
            };
            let bucket = self.bucket_bounds_seconds.partition_point(|bound| *bound < observation.duration_seconds);
            if let Some(count) = series.bucket_counts.get_mut(bucket) {
                *count += 1;
            }
            series.calls += 1;
            series.sum_seconds += observation.duration_seconds;
            series.last_update_ms = now_ms;
            if series.exemplar_candidates.len() >= MAX_EXEMPLAR_CANDIDATES {
                series.exemplar_candidates.remove(0);
            }
            series.exemplar_candidates.push(ExemplarCandidate {
                trace_id: observation.trace_id,
                duration_seconds: observation.duration_seconds,
                timestamp_ms: observation.end_ms,
            });
        }
    }

    /// Appends every series updated within the idle timeout at `now_ms` to `appender` (samples stamped
    /// `now_ms`), with the family metadata and the exemplars of kept traces; `fate` tells what happened to
    /// each candidate's trace. Refusals are counted and skipped, the rest is appended.
    pub fn write(
        &mut self,
        appender: &mut dyn Appender,
        now_ms: u64,
        fate: &mut dyn FnMut(&TraceId) -> ExemplarFate,
    ) -> SpanMetricsFlush {
        let timestamp_ms = i64::try_from(now_ms).unwrap_or(i64::MAX);
        let mut flush = SpanMetricsFlush::default();
        let mut wrote_any = false;
        for series in &mut self.series {
            if series.calls == 0 || now_ms.saturating_sub(series.last_update_ms) > self.idle_timeout_ms {
                series.exemplar_candidates.clear();
                continue;
            }
            wrote_any = true;
            write_series(series, &self.bucket_bounds_seconds, &self.bucket_labels, appender, timestamp_ms, &mut flush);
            write_exemplars(series, &self.bucket_bounds_seconds, &self.bucket_labels, appender, fate, &mut flush);
        }
        if wrote_any {
            appender.update_metadata(
                "traces_spanmetrics_calls",
                MetricMetadata {
                    metric_type: MetricType::Counter,
                    help: "Spans received, by service, span name, kind and status (span metrics).".to_string(),
                    unit: String::new(),
                },
            );
            appender.update_metadata(
                "traces_spanmetrics_latency",
                MetricMetadata {
                    metric_type: MetricType::Histogram,
                    help: "Span durations in seconds, by service, span name, kind and status (span metrics)."
                        .to_string(),
                    unit: "seconds".to_string(),
                },
            );
        }
        flush
    }
}

/// The labels of one output series, sorted by name (`__name__` < `le` < `service` < `span_kind` <
/// `span_name` < `status_code`), empty values left out.
fn series_labels<'a>(metric_name: &'a str, le: Option<&'a str>, series: &'a SeriesState) -> Vec<LabelRef<'a>> {
    let candidates = [
        ("__name__", Some(metric_name)),
        ("le", le),
        ("service", Some(series.service.as_str())),
        ("span_kind", Some(series.kind.otlp_name())),
        ("span_name", Some(series.span_name.as_str())),
        ("status_code", Some(series.status.otlp_name())),
    ];
    candidates
        .into_iter()
        .filter_map(|(name, value)| value.filter(|value| !value.is_empty()).map(|value| LabelRef { name, value }))
        .collect()
}

fn append_one(appender: &mut dyn Appender, labels: &[LabelRef<'_>], sample: Sample, flush: &mut SpanMetricsFlush) {
    match appender.append_ref(labels, sample) {
        Ok(()) => flush.samples += 1,
        Err(_) => flush.refused += 1,
    }
}

fn write_series(
    series: &SeriesState,
    bounds: &[f64],
    bucket_labels: &[String],
    appender: &mut dyn Appender,
    timestamp_ms: i64,
    flush: &mut SpanMetricsFlush,
) {
    debug_assert_eq!(bounds.len() + 1, bucket_labels.len(), "one le label per bound plus +Inf");
    let calls = series.calls as f64;
    append_one(appender, &series_labels(CALLS_TOTAL, None, series), Sample { timestamp_ms, value: calls }, flush);
    let mut cumulative = 0u64;
    for (count, le) in series.bucket_counts.iter().zip(bucket_labels) {
        cumulative += count;
        let labels = series_labels(LATENCY_BUCKET, Some(le), series);
        append_one(appender, &labels, Sample { timestamp_ms, value: cumulative as f64 }, flush);
    }
    let sum = Sample { timestamp_ms, value: series.sum_seconds };
    append_one(appender, &series_labels(LATENCY_SUM, None, series), sum, flush);
    append_one(appender, &series_labels(LATENCY_COUNT, None, series), Sample { timestamp_ms, value: calls }, flush);
}

fn write_exemplars(
    series: &mut SeriesState,
    bounds: &[f64],
    bucket_labels: &[String],
    appender: &mut dyn Appender,
    fate: &mut dyn FnMut(&TraceId) -> ExemplarFate,
    flush: &mut SpanMetricsFlush,
) {
    let mut kept = Vec::new();
    series.exemplar_candidates.retain(|candidate| match fate(&candidate.trace_id) {
        ExemplarFate::Kept => {
            kept.push(*candidate);
            false
        }
        ExemplarFate::Dropped => false,
        ExemplarFate::Undecided => true,
    });
    kept.sort_by_key(|candidate| candidate.timestamp_ms);
    for candidate in kept {
        let exemplar = Exemplar {
            labels: Labels::from_pairs([(EXEMPLAR_TRACE_ID_LABEL, id_to_hex(&candidate.trace_id).as_str())]),
            value: candidate.duration_seconds,
            timestamp_ms: candidate.timestamp_ms,
        };
        let bucket = bounds.partition_point(|bound| *bound < candidate.duration_seconds);
        let le = bucket_labels.get(bucket).map(String::as_str);
        for labels in [series_labels(CALLS_TOTAL, None, series), series_labels(LATENCY_BUCKET, le, series)] {
            match appender.append_exemplar(&Labels::from_refs(&labels), exemplar.clone()) {
                Ok(()) => flush.exemplars += 1,
                Err(_) => flush.refused += 1,
            }
        }
    }
}
