//! TraceQL metrics: `{ filter } | rate() by (field)` and friends, computed from the spans of matching
//! spansets whose start falls in each step, as Tempo's `/api/metrics/query_range` answers them.
//!
//! - Steps start at `start` rounded down to a multiple of `step`; a sample's timestamp is its step's start.
//! - `rate()` is spans per second of step; `count_over_time()` spans per step. Both list every step of a
//!   series (0 where no span fell); the others list only steps that had values.
//! - Durations become seconds (`quantile_over_time(duration, .9)` is in seconds, as in Tempo).
//! - Quantiles are exact (nearest rank, linear interpolation between ranks) over the step's values.
//! - `histogram_over_time(x)` counts values per power-of-two bucket, labelled `__bucket` with the bucket's
//!   upper bound (seconds for durations).
//! - Series are labelled by the `by(...)` fields (a span without the field has no such label); without
//!   `by`, by `__name__` = the function name. Quantile series also carry `p` = the quantile.

use std::collections::BTreeMap;

use oxeye_model::traces::TraceReader;

use crate::error::TraceQlError;
use crate::eval::{FieldValue, TraceView, evaluate_view, field_value, scan_hints};
use crate::syntax::ast::*;
use columns::{RowTrace, span_columns_for};

/// One label of a metrics series.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesLabel {
    /// The label name: a `by` field as written (`resource.service.name`), `__name__`, `p` or `__bucket`.
    pub name: String,
    /// Its value.
    pub value: FieldValue,
}

/// One series of a metrics result.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSeries {
    /// Its labels, in `by` order then `p` or `__bucket`.
    pub labels: Vec<SeriesLabel>,
    /// `(timestamp in milliseconds since the epoch, value)`, ascending.
    pub samples: Vec<(i64, f64)>,
}

impl MetricsSeries {
    /// The labels in Prometheus text form, `{resource.service.name="boxoffice", p="0.9"}` (Tempo's
    /// `promLabels`).
    pub fn prom_labels(&self) -> String {
        let parts: Vec<String> = self
            .labels
            .iter()
            .map(|label| {
                format!("{}=\"{}\"", label.name, label.value.text().replace('\\', "\\\\").replace('"', "\\\""))
            })
            .collect();
        format!("{{{}}}", parts.join(", "))
    }
}

/// A metrics request over a time range.
#[derive(Debug, Clone, Copy)]
pub struct MetricsRange {
    /// Start, nanoseconds since the epoch (inclusive).
    pub start_unix_nano: u64,
    /// End, nanoseconds since the epoch (exclusive).
    pub end_unix_nano: u64,
    /// Step, nanoseconds (> 0).
    pub step_nanos: u64,
}

impl MetricsRange {
    /// A step for `start..end` giving about `points` samples, at least 1 ms.
    pub fn default_step_nanos(start_unix_nano: u64, end_unix_nano: u64, points: u64) -> u64 {
        (end_unix_nano.saturating_sub(start_unix_nano) / points.max(1)).max(1_000_000)
    }
}

/// The most series a query may produce before it is refused.
pub const MAX_SERIES: usize = 10_000;

#[derive(Default)]
struct Cell {
    count: u64,
    values: Vec<f64>,
}

fn seconds_if_duration(value: &FieldValue) -> Option<f64> {
    match value {
        FieldValue::Duration(nanos) => Some(*nanos as f64 / 1e9),
        other => other.as_f64(),
    }
}

fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = q * (sorted.len() - 1) as f64;
    let lower = rank.floor() as usize;
    let upper = rank.ceil() as usize;
    let low = *sorted.get(lower)?;
    let high = *sorted.get(upper)?;
    Some(low + (high - low) * (rank - lower as f64))
}

fn bucket_upper_bound(value: f64, is_duration: bool) -> f64 {
    if is_duration {
        // Powers of two in nanoseconds, shown in seconds.
        let nanos = (value * 1e9).max(1.0).ceil() as u64;
        nanos.checked_next_power_of_two().unwrap_or(u64::MAX) as f64 / 1e9
    } else if value <= 1.0 {
        1.0
    } else {
        2f64.powf(value.log2().ceil())
    }
}

fn function_name(kind: &MetricsKind) -> &'static str {
    match kind {
        MetricsKind::Rate => "rate",
        MetricsKind::CountOverTime => "count_over_time",
        MetricsKind::MinOverTime(_) => "min_over_time",
        MetricsKind::MaxOverTime(_) => "max_over_time",
        MetricsKind::AvgOverTime(_) => "avg_over_time",
        MetricsKind::SumOverTime(_) => "sum_over_time",
        MetricsKind::QuantileOverTime(..) => "quantile_over_time",
        MetricsKind::HistogramOverTime(_) => "histogram_over_time",
    }
}

/// Runs a metrics query over `range`.
///
/// Errors: [`TraceQlError::Unsupported`] when the query has no metrics function, the step is 0 or the
/// range is empty, or more than [`MAX_SERIES`] series would be produced; [`TraceQlError::Storage`] when the
/// store fails.
pub fn query_range(
    reader: &dyn TraceReader,
    query: &Query,
    range: MetricsRange,
) -> Result<Vec<MetricsSeries>, TraceQlError> {
    compute(reader, query, range, StepAlignment::MultipleOfStep)
}

/// Where the first step starts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum StepAlignment {
    /// At `start` rounded down to a multiple of the step (range queries, stable across refreshes).
    MultipleOfStep,
    /// At `start` itself (instant queries: one step covering the window exactly).
    WindowStart,
}

fn compute(
    reader: &dyn TraceReader,
    query: &Query,
    range: MetricsRange,
    alignment: StepAlignment,
) -> Result<Vec<MetricsSeries>, TraceQlError> {
    let Some(function) = &query.metrics else {
        return Err(TraceQlError::Unsupported("a metrics query ends in a function such as | rate()".into()));
    };
    if range.step_nanos == 0 {
        return Err(TraceQlError::Unsupported("step must be positive".into()));
    }
    if range.end_unix_nano <= range.start_unix_nano {
        return Err(TraceQlError::Unsupported("end must be after start".into()));
    }
    let aligned_start = match alignment {
        StepAlignment::MultipleOfStep => range.start_unix_nano - range.start_unix_nano % range.step_nanos,
        StepAlignment::WindowStart => range.start_unix_nano,
    };
    let intervals = (range.end_unix_nano - aligned_start).div_ceil(range.step_nanos);
    let value_field: Option<&FieldExpr> = match &function.kind {
        MetricsKind::Rate | MetricsKind::CountOverTime => None,
        MetricsKind::MinOverTime(field)
        | MetricsKind::MaxOverTime(field)
        | MetricsKind::AvgOverTime(field)
        | MetricsKind::SumOverTime(field)
        | MetricsKind::QuantileOverTime(field, _)
        | MetricsKind::HistogramOverTime(field) => Some(field),
    };
    let by_names: Vec<String> = function.by.iter().map(ToString::to_string).collect();
    let mut groups: BTreeMap<String, (Vec<SeriesLabel>, BTreeMap<u64, Cell>)> = BTreeMap::new();
    let mut is_duration = false;
    let mut too_many = false;
    // Adds span `index` of `view` to its series; `false` stops the scan (too many series).
    let mut record = |view: &TraceView<'_>, index: usize| -> bool {
        let Some(context) = view.spans.get(index) else {
            return true;
        };
        let start = context.span.start_time_unix_nano;
        if start < range.start_unix_nano || start >= range.end_unix_nano {
            return true;
        }
        let interval = (start - aligned_start) / range.step_nanos;
        let value = match value_field {
            Some(field) => {
                let Some(value) = field_value(field, view, index) else {
                    return true;
                };
                is_duration |= matches!(value, FieldValue::Duration(_));
                let Some(number) = seconds_if_duration(&value) else {
                    return true;
                };
                Some(number)
            }
            None => None,
        };
        let values: Vec<Option<FieldValue>> = function.by.iter().map(|field| field_value(field, view, index)).collect();
        // One string per span identifies the group: each value's type and text, or a mark for missing.
        let mut key = String::new();
        for value in &values {
            match value {
                Some(value) => {
                    key.push_str(value.type_name());
                    key.push('\u{1}');
                    key.push_str(&value.text());
                }
                None => key.push('\u{2}'),
            }
            key.push('\u{0}');
        }
        if !groups.contains_key(&key) && groups.len() >= MAX_SERIES {
            too_many = true;
            return false;
        }
        let (_, cells) = groups.entry(key).or_insert_with(|| {
            let labels = by_names
                .iter()
                .zip(values)
                .filter_map(|(name, value)| Some(SeriesLabel { name: name.clone(), value: value? }))
                .collect();
            (labels, BTreeMap::new())
        });
        let cell = cells.entry(interval).or_default();
        cell.count += 1;
        if let Some(value) = value {
            cell.values.push(value);
        }

        true
    };
    match span_columns_for(query) {
        Some(columns) => {
            // The query reads only span intrinsics: each row becomes a one-span trace the evaluator runs on,
            // so the filter, `by` and value fields mean exactly what they mean on whole traces.
            let mut row_trace = RowTrace::default();
            reader.scan_span_columns(range.start_unix_nano, range.end_unix_nano, columns, &mut |row| {
                let view = TraceView::new(row_trace.fill(row));
                if evaluate_view(query, &view).iter().any(|set| !set.spans.is_empty()) {
                    record(&view, 0)
                } else {
                    true
                }
            })?;
        }
        None => {
            let hints = scan_hints(query);
            reader.scan_traces(range.start_unix_nano, range.end_unix_nano, &hints, &mut |trace| {
                let view = TraceView::new(trace);
                let mut spans: Vec<usize> = evaluate_view(query, &view).into_iter().flat_map(|set| set.spans).collect();
                spans.sort_unstable();
                spans.dedup();
                spans.into_iter().all(|index| record(&view, index))
            })?;
        }
    }
    if too_many {
        return Err(TraceQlError::Unsupported(format!("the query produces more than {MAX_SERIES} series")));
    }
    let timestamp_ms = |interval: u64| ((aligned_start + interval * range.step_nanos) / 1_000_000) as i64;
    let step_seconds = range.step_nanos as f64 / 1e9;
    let mut series = Vec::new();
    for (_, (mut labels, cells)) in groups {
        if function.by.is_empty() {
            labels.push(SeriesLabel {
                name: "__name__".into(),
                value: FieldValue::String(function_name(&function.kind).into()),
            });
        }
        match &function.kind {
            MetricsKind::Rate | MetricsKind::CountOverTime => {
                let per_second = matches!(function.kind, MetricsKind::Rate);
                let samples = (0..intervals)
                    .map(|interval| {
                        let count = cells.get(&interval).map_or(0, |cell| cell.count) as f64;
                        (timestamp_ms(interval), if per_second { count / step_seconds } else { count })
                    })
                    .collect();
                series.push(MetricsSeries { labels, samples });
            }
            MetricsKind::MinOverTime(_)
            | MetricsKind::MaxOverTime(_)
            | MetricsKind::AvgOverTime(_)
            | MetricsKind::SumOverTime(_) => {
                let samples = cells
                    .iter()
                    .filter(|(_, cell)| !cell.values.is_empty())
                    .map(|(interval, cell)| {
                        let values = &cell.values;
                        let value = match function.kind {
                            MetricsKind::MinOverTime(_) => values.iter().copied().fold(f64::INFINITY, f64::min),
                            MetricsKind::MaxOverTime(_) => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                            MetricsKind::AvgOverTime(_) => values.iter().sum::<f64>() / values.len() as f64,
                            _ => values.iter().sum(),
                        };
                        (timestamp_ms(*interval), value)
                    })
                    .collect();
                series.push(MetricsSeries { labels, samples });
            }
            MetricsKind::QuantileOverTime(_, quantiles) => {
                let sorted: Vec<(u64, Vec<f64>)> = cells
                    .iter()
                    .filter(|(_, cell)| !cell.values.is_empty())
                    .map(|(interval, cell)| {
                        let mut values = cell.values.clone();
                        values.sort_by(f64::total_cmp);
                        (*interval, values)
                    })
                    .collect();
                for q in quantiles {
                    let mut quantile_labels = labels.clone();
                    quantile_labels.push(SeriesLabel { name: "p".into(), value: FieldValue::Float(*q) });
                    let samples = sorted
                        .iter()
                        .filter_map(|(interval, values)| Some((timestamp_ms(*interval), quantile(values, *q)?)))
                        .collect();
                    series.push(MetricsSeries { labels: quantile_labels, samples });
                }
            }
            MetricsKind::HistogramOverTime(_) => {
                let mut buckets: BTreeMap<u64, BTreeMap<u64, f64>> = BTreeMap::new();
                for (interval, cell) in &cells {
                    for value in &cell.values {
                        let bound = bucket_upper_bound(*value, is_duration);
                        *buckets.entry(bound.to_bits()).or_default().entry(*interval).or_default() += 1.0;
                    }
                }
                let mut ordered: Vec<(f64, BTreeMap<u64, f64>)> =
                    buckets.into_iter().map(|(bits, counts)| (f64::from_bits(bits), counts)).collect();
                ordered.sort_by(|left, right| left.0.total_cmp(&right.0));
                for (bound, counts) in ordered {
                    let mut bucket_labels = labels.clone();
                    bucket_labels.push(SeriesLabel { name: "__bucket".into(), value: FieldValue::Float(bound) });
                    let samples = counts.into_iter().map(|(interval, count)| (timestamp_ms(interval), count)).collect();
                    series.push(MetricsSeries { labels: bucket_labels, samples });
                }
            }
        }
    }
    if let Some(stage) = function.second_stage {
        series = keep_extreme_series(series, stage);
    }
    Ok(series)
}

/// Applies `topk(n)` / `bottomk(n)`: at each timestamp keeps the samples of the `n` largest (smallest) series;
/// series left without samples are dropped.
fn keep_extreme_series(mut series: Vec<MetricsSeries>, stage: SecondStage) -> Vec<MetricsSeries> {
    let (count, largest) = match stage {
        SecondStage::TopK(count) => (count, true),
        SecondStage::BottomK(count) => (count, false),
    };
    let mut timestamps: Vec<i64> = series.iter().flat_map(|one| one.samples.iter().map(|(ts, _)| *ts)).collect();
    timestamps.sort_unstable();
    timestamps.dedup();
    let mut kept: Vec<Vec<(i64, f64)>> = vec![Vec::new(); series.len()];
    for timestamp in timestamps {
        let mut at_step: Vec<(usize, f64)> = series
            .iter()
            .enumerate()
            .filter_map(|(index, one)| {
                one.samples.iter().find(|(ts, _)| *ts == timestamp).map(|(_, value)| (index, *value))
            })
            .collect();
        at_step.sort_by(|left, right| if largest { right.1.total_cmp(&left.1) } else { left.1.total_cmp(&right.1) });
        for (index, value) in at_step.into_iter().take(count) {
            if let Some(samples) = kept.get_mut(index) {
                samples.push((timestamp, value));
            }
        }
    }
    for (one, samples) in series.iter_mut().zip(kept) {
        one.samples = samples;
    }
    series.retain(|one| !one.samples.is_empty());
    series
}

/// Runs a metrics query as one step over `start..end` (Tempo's `/api/metrics/query`): each series has one
/// value.
///
/// Errors: as [`query_range`].
pub fn query_instant(
    reader: &dyn TraceReader,
    query: &Query,
    start_unix_nano: u64,
    end_unix_nano: u64,
) -> Result<Vec<(Vec<SeriesLabel>, f64)>, TraceQlError> {
    let step_nanos = end_unix_nano.saturating_sub(start_unix_nano).max(1);
    let range = MetricsRange { start_unix_nano, end_unix_nano, step_nanos };
    let series = compute(reader, query, range, StepAlignment::WindowStart)?;
    Ok(series.into_iter().filter_map(|one| Some((one.labels, one.samples.first()?.1))).collect())
}

mod columns;
#[cfg(test)]
mod tests;
