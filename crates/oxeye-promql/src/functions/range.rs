//! Functions over range vectors (`rate`, `increase`, `*_over_time`, `deriv`, `predict_linear`, ...):
//! each series' samples are walked once per query with a sliding window per step.

use oxeye_model::{Labels, Matcher, Sample};
use promql_parser::parser::{Call, Expr, MatrixSelector, value::ValueType};

use super::{kahan_add, quantile_of};
use crate::engine::{Evaluated, Evaluator, Grid, RangeInput, RawSeries, StepSeries, merge_same_labels};
use crate::error::{QueryError, execution};
use crate::value::format_float;

/// Calls `visit(step, window)` for each step with the series' samples in `(end - range, end]`.
pub(super) fn for_each_window(input: &RangeInput, samples: &[Sample], mut visit: impl FnMut(usize, &[Sample])) {
    for_each_window_at(input, samples, |step, _, window| visit(step, window));
}

/// As [`for_each_window`], also passing the index of the window's first sample in `samples`.
fn for_each_window_at(input: &RangeInput, samples: &[Sample], mut visit: impl FnMut(usize, usize, &[Sample])) {
    let mut low = 0usize;
    let mut high = 0usize;
    let mut previous_end = i64::MIN;
    for (step, end) in input.window_ends.iter().enumerate() {
        if *end < previous_end {
            low = 0;
            high = 0;
        }
        previous_end = *end;
        let start = end.saturating_sub(input.range_ms);
        while high < samples.len() && samples[high].timestamp_ms <= *end {
            high += 1;
        }
        while low < high && samples[low].timestamp_ms <= start {
            low += 1;
        }
        visit(step, low, &samples[low..high]);
    }
}

/// What a windowed function sees besides the samples.
struct WindowContext<'r> {
    /// Indices (relative to the window) of samples lower than their predecessor, for counters.
    counter_resets: &'r [usize],
    range_start_ms: i64,
    range_end_ms: i64,
    range_ms: i64,
    step_timestamp_ms: i64,
    scalar: f64,
    second_scalar: f64,
}

/// A range function call with its scalar arguments evaluated, applied to one series at a time.
struct RangeCall<'a> {
    function: RangeFunction,
    name: &'a str,
    /// Index of the range-vector argument.
    matrix_index: usize,
    scalars: Vec<Vec<f64>>,
    /// `last_over_time` and `first_over_time` keep the metric name.
    keeps_name: bool,
    /// Names of series given to `rate`/`increase` that do not look like counters, for the info note.
    non_counter_names: Vec<String>,
}

impl<'a> RangeCall<'a> {
    /// Evaluates the scalar arguments and checks them.
    fn prepare(
        evaluator: &mut Evaluator<'_>,
        name: &'a str,
        args: &[&Expr],
        grid: &Grid,
    ) -> Result<RangeCall<'a>, QueryError> {
        let function =
            RangeFunction::parse(name).ok_or_else(|| execution(format!("function {name} is not supported")))?;
        let matrix_index = args
            .iter()
            .position(|argument| argument.value_type() == ValueType::Matrix)
            .ok_or_else(|| execution(format!("{name} needs a range vector")))?;
        let mut scalars: Vec<Vec<f64>> = Vec::new();
        for (index, argument) in args.iter().enumerate() {
            if index != matrix_index {
                scalars.push(evaluator.eval_scalar(argument, grid)?);
            }
        }
        if name == "quantile_over_time"
            && let Some(phi) = scalars.first().and_then(|values| values.iter().find(|phi| !(0.0..=1.0).contains(*phi)))
        {
            evaluator
                .warn(format!("PromQL warning: quantile value should be between 0 and 1, got {}", format_float(*phi)));
        }
        if matches!(name, "double_exponential_smoothing" | "holt_winters") {
            for (values, what) in scalars.iter().zip(["smoothing", "trend"]) {
                if let Some(factor) = values.iter().find(|factor| !(**factor > 0.0 && **factor < 1.0)) {
                    return Err(execution(format!(
                        "invalid {what} factor. Expected: 0 < {} < 1, got: {factor:.6}",
                        if what == "smoothing" { "sf" } else { "tf" }
                    )));
                }
            }
        }
        let keeps_name = matches!(name, "last_over_time" | "first_over_time");
        Ok(RangeCall { function, name, matrix_index, scalars, keeps_name, non_counter_names: Vec::new() })
    }

    /// The function's points for one series over the windows of `input` (whose own series are not
    /// read); `None` when no window has a value.
    fn apply(
        &mut self,
        evaluator: &Evaluator<'_>,
        input: &RangeInput,
        grid: &Grid,
        labels: Labels,
        drop_name: bool,
        samples: &[Sample],
    ) -> Result<Option<StepSeries>, QueryError> {
        let function = self.function;
        let mut points = Vec::new();
        let mut failure: Option<QueryError> = None;
        // Counter resets are found once per series, so rate() and increase() over long windows do not
        // rescan every window.
        let reset_indices: Vec<usize> = if matches!(function, RangeFunction::Rate | RangeFunction::Increase) {
            (1..samples.len()).filter(|index| samples[*index].value < samples[index - 1].value).collect()
        } else {
            Vec::new()
        };
        let mut window_resets: Vec<usize> = Vec::new();
        let scalars = &self.scalars;
        for_each_window_at(input, samples, |step, offset, window| {
            if window.is_empty() || failure.is_some() {
                return;
            }
            window_resets.clear();
            if !reset_indices.is_empty() {
                let first = reset_indices.partition_point(|index| *index <= offset);
                let end = offset + window.len();
                window_resets.extend(
                    reset_indices[first..].iter().take_while(|index| **index < end).map(|index| index - offset),
                );
            }
            let end = input.window_ends[step];
            let context = WindowContext {
                counter_resets: &window_resets,
                range_start_ms: end.saturating_sub(input.range_ms),
                range_end_ms: end,
                range_ms: input.range_ms,
                step_timestamp_ms: grid.timestamp(step),
                scalar: scalars.first().and_then(|values| values.get(step)).copied().unwrap_or(f64::NAN),
                second_scalar: scalars.get(1).and_then(|values| values.get(step)).copied().unwrap_or(f64::NAN),
            };
            match window_function(function, window, &context) {
                Ok(Some(value)) => points.push((step as u32, value)),
                Ok(None) => {}
                Err(error) => failure = Some(error),
            }
        });
        if let Some(error) = failure {
            return Err(error);
        }
        if points.is_empty() {
            return Ok(None);
        }
        if matches!(self.name, "rate" | "increase")
            && let Some(metric) = labels.metric_name()
            && !["_total", "_sum", "_count", "_bucket"].iter().any(|suffix| metric.ends_with(suffix))
            && !self.non_counter_names.iter().any(|seen| seen == metric)
        {
            self.non_counter_names.push(metric.to_string());
        }
        let (labels, drop_name) = if self.keeps_name {
            (labels, drop_name)
        } else if evaluator.delayed_name_removal {
            (labels, true)
        } else {
            (crate::engine::drop_metric_name(labels), false)
        };
        Ok(Some(StepSeries { labels, points, drop_name }))
    }

    /// Adds the info notes gathered over all series.
    fn finish(self, evaluator: &mut Evaluator<'_>, args: &[&Expr]) {
        let matrix_text = args[self.matrix_index].to_string();
        for metric in self.non_counter_names {
            let position = evaluator.position_suffix(&[&matrix_text, &metric]);
            evaluator.info(format!(
                "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {metric:?}{position}"
            ));
        }
    }
}

pub(super) fn eval_range_function(
    evaluator: &mut Evaluator<'_>,
    name: &str,
    args: &[&Expr],
    grid: &Grid,
) -> Result<Evaluated, QueryError> {
    let mut call = RangeCall::prepare(evaluator, name, args, grid)?;
    let input = evaluator.eval_range_input(args[call.matrix_index], grid)?;
    let held: usize = input.series.iter().map(|series| series.samples.len()).sum();
    let RangeInput { series: input_series, range_ms, window_ends } = input;
    let input = RangeInput { series: Vec::new(), range_ms, window_ends };
    let mut output = Vec::with_capacity(input_series.len());
    // Input series have distinct labels; when they also share one metric name (a selector by name),
    // dropping it cannot make two of them equal, and the merge below is skipped.
    let first_name = input_series.first().and_then(|series| series.labels.metric_name().map(str::to_owned));
    let one_metric_name = input_series.iter().all(|series| series.labels.metric_name() == first_name.as_deref());
    for series in input_series {
        evaluator.check_deadline()?;
        if let Some(points) = call.apply(evaluator, &input, grid, series.labels, series.drop_name, &series.samples)? {
            output.push(points);
        }
    }
    call.finish(evaluator, args);
    evaluator.release_samples(held);
    let produced: usize = output.iter().map(|series| series.points.len()).sum();
    evaluator.hold_samples(produced)?;
    if one_metric_name {
        return Ok(Evaluated::Vector(output));
    }
    Ok(Evaluated::Vector(merge_same_labels(output)?))
}

/// The range selector of `call` when [`stream_range_function`] streams it: a range function over a plain
/// range selector with a metric name, without delayed name removal.
pub(crate) fn streamed_range_selector<'c>(evaluator: &Evaluator<'_>, call: &'c Call) -> Option<&'c MatrixSelector> {
    if RangeFunction::parse(call.func.name).is_none() || evaluator.delayed_name_removal {
        return None;
    }
    let matrix_argument = call.args.args.iter().find(|argument| argument.value_type() == ValueType::Matrix)?;
    let Expr::MatrixSelector(matrix) = super::unwrap_parens(matrix_argument) else { return None };
    (matrix.vs.name.is_some() && matrix.vs.matchers.or_matchers.is_empty()).then_some(matrix)
}

/// Evaluates a range function over a plain range selector with a metric name (`rate(x{a="b"}[5m])`)
/// series by series as the store reads them, handing each result series to `visit` instead of
/// collecting them. Returns `Ok(false)` without evaluating anything when `call` does not have that shape
/// (another function, a subquery, a selector without a name, whose series could collide once the name is
/// dropped, or delayed name removal); the caller then takes the general path. Series are visited in the
/// store's order, the order the general path produces. With `keep_label`, a visited series may lack the
/// labels it rejects (see [`oxeye_model::storage::Querier::select_each_projected`]).
pub(crate) fn stream_range_function<'e>(
    evaluator: &mut Evaluator<'e>,
    call: &Call,
    grid: &Grid,
    keep_label: Option<&dyn Fn(&str) -> bool>,
    visit: &mut dyn FnMut(&mut Evaluator<'e>, StepSeries) -> Result<(), QueryError>,
) -> Result<bool, QueryError> {
    let Some(matrix) = streamed_range_selector(evaluator, call) else { return Ok(false) };
    let name = call.func.name;
    let args: Vec<&Expr> = call.args.args.iter().map(|arg| arg.as_ref()).collect();
    let mut range_call = RangeCall::prepare(evaluator, name, &args, grid)?;
    let mut failure: Option<QueryError> = None;
    let mut visit_raw = |evaluator: &mut Evaluator<'e>, input: &RangeInput, series: RawSeries| {
        let held = series.samples.len();
        evaluator.hold_samples(held)?;
        let points = range_call.apply(evaluator, input, grid, series.labels, series.drop_name, &series.samples);
        evaluator.release_samples(held);
        match points? {
            Some(points) => visit(evaluator, points),
            None => Ok(()),
        }
    };
    // The metric name stays for the function's own notes ("might not be a counter").
    let keep_label_and_name =
        keep_label.map(|keep_label| move |name: &str| name == oxeye_model::METRIC_NAME_LABEL || keep_label(name));
    let keep_label_and_name = keep_label_and_name.as_ref().map(|keep| keep as &dyn Fn(&str) -> bool);
    evaluator.for_each_range_series(matrix, grid, keep_label_and_name, &mut |evaluator, input, series| {
        visit_raw(evaluator, input, series).map_err(|error| {
            failure = Some(error);
        })
    })?;
    if let Some(error) = failure {
        return Err(error);
    }
    range_call.finish(evaluator, &args);
    Ok(true)
}

/// One of the calls [`stream_range_functions_sharing`] evaluates from one read.
pub(crate) struct SharingCall<'c, 'v, 'e> {
    /// A call [`streamed_range_selector`] accepts.
    pub call: &'c Call,
    /// The matchers this call's selector has beyond the shared selection's: a series read is this
    /// call's when it matches them all (a label the series lacks matches as the empty value).
    pub extra_matchers: Vec<Matcher>,
    /// Takes each of this call's result series, as in [`stream_range_function`].
    pub visit: &'v mut dyn FnMut(&mut Evaluator<'e>, StepSeries) -> Result<(), QueryError>,
}

/// Evaluates several range function calls over selectors of one metric from a single read of
/// `selection` (for `sum(rate(x{status=~"5.."}[5m])) / sum(rate(x[5m]))`: once, not twice), handing
/// each call the series its own selector would have read, in the same order, so every call's results
/// equal [`stream_range_function`]'s. `selection` must select a superset of every call's series with the
/// same range, offset and `@` as theirs ([`shared_range_selection`] checks that); `keep_label` must accept
/// the labels of every call's `extra_matchers`.
pub(crate) fn stream_range_functions_sharing<'e>(
    evaluator: &mut Evaluator<'e>,
    selection: &MatrixSelector,
    calls: &mut [SharingCall<'_, '_, 'e>],
    grid: &Grid,
    keep_label: &dyn Fn(&str) -> bool,
) -> Result<(), QueryError> {
    let mut prepared: Vec<(RangeCall<'_>, Vec<&Expr>)> = Vec::with_capacity(calls.len());
    for sharing in calls.iter() {
        let args: Vec<&Expr> = sharing.call.args.args.iter().map(|arg| arg.as_ref()).collect();
        prepared.push((RangeCall::prepare(evaluator, sharing.call.func.name, &args, grid)?, args));
    }
    let mut failure: Option<QueryError> = None;
    let mut visit_raw = |evaluator: &mut Evaluator<'e>, input: &RangeInput, series: RawSeries| {
        let held = series.samples.len();
        evaluator.hold_samples(held)?;
        for (sharing, (range_call, _)) in calls.iter_mut().zip(prepared.iter_mut()) {
            let selected = sharing
                .extra_matchers
                .iter()
                .all(|matcher| matcher.matches(series.labels.get(&matcher.name).unwrap_or("")));
            if !selected {
                continue;
            }
            let labels = series.labels.clone();
            let points = range_call.apply(evaluator, input, grid, labels, series.drop_name, &series.samples)?;
            if let Some(points) = points {
                (sharing.visit)(evaluator, points)?;
            }
        }
        evaluator.release_samples(held);
        Ok(())
    };
    let keep_label_and_name = |name: &str| name == oxeye_model::METRIC_NAME_LABEL || keep_label(name);
    evaluator.for_each_range_series(selection, grid, Some(&keep_label_and_name), &mut |evaluator, input, series| {
        visit_raw(evaluator, input, series).map_err(|error| {
            failure = Some(error);
        })
    })?;
    if let Some(error) = failure {
        return Err(error);
    }
    for (range_call, args) in prepared {
        range_call.finish(evaluator, &args);
    }
    Ok(())
}

/// The read several streamed calls share: found by [`shared_range_selection`].
pub(crate) struct SharedSelection {
    /// Index of the call whose selector is read.
    pub widest: usize,
    /// For each call, the matchers its selector has beyond the read one's.
    pub extra_matchers: Vec<Vec<Matcher>>,
}

/// Whether `calls` (each one [`streamed_range_selector`] accepts) can share one read in
/// [`stream_range_functions_sharing`], which call's selector to read and the matchers each has beyond
/// it: `Some` when all select the same metric over the same range, offset and `@`, and the matchers of
/// `calls[index]`'s selector are among every other's, so reading its series reads no series the
/// separate reads would not. `None` otherwise (including when `calls` has fewer than two).
pub(crate) fn shared_range_selection(
    evaluator: &Evaluator<'_>,
    calls: &[&Call],
) -> Result<Option<SharedSelection>, QueryError> {
    let Some(matrices) = calls.iter().map(|call| streamed_range_selector(evaluator, call)).collect::<Option<Vec<_>>>()
    else {
        return Ok(None);
    };
    let Some(first) = matrices.first() else { return Ok(None) };
    let same_reach = |matrix: &&MatrixSelector| {
        matrix.range == first.range
            && matrix.vs.name == first.vs.name
            && matrix.vs.offset == first.vs.offset
            && matrix.vs.at == first.vs.at
    };
    if matrices.len() < 2 || !matrices.iter().all(same_reach) {
        return Ok(None);
    }
    fn matchers_of(matrix: &MatrixSelector) -> &[promql_parser::label::Matcher] {
        &matrix.vs.matchers.matchers
    }
    let Some(widest) = (0..matrices.len()).find(|candidate| {
        let wide = matchers_of(matrices[*candidate]);
        matrices.iter().all(|other| wide.iter().all(|matcher| matchers_of(other).contains(matcher)))
    }) else {
        return Ok(None);
    };
    let wide = matchers_of(matrices[widest]);
    let mut extra = Vec::with_capacity(matrices.len());
    for matrix in &matrices {
        let own: Vec<_> = matchers_of(matrix).iter().filter(|matcher| !wide.contains(matcher)).cloned().collect();
        extra.push(crate::engine::convert_matchers(&own)?);
    }
    Ok(Some(SharedSelection { widest, extra_matchers: extra }))
}

/// The functions over range vectors, resolved once per call rather than per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeFunction {
    Rate,
    Increase,
    Delta,
    Irate,
    Idelta,
    AvgOverTime,
    SumOverTime,
    CountOverTime,
    MinOverTime,
    MaxOverTime,
    LastOverTime,
    FirstOverTime,
    PresentOverTime,
    TsOfLastOverTime,
    TsOfFirstOverTime,
    TsOfMaxOverTime,
    TsOfMinOverTime,
    StddevOverTime,
    StdvarOverTime,
    QuantileOverTime,
    MadOverTime,
    Changes,
    Resets,
    Deriv,
    PredictLinear,
    DoubleExponentialSmoothing,
    HoltWinters,
}

impl RangeFunction {
    fn parse(name: &str) -> Option<RangeFunction> {
        Some(match name {
            "rate" => RangeFunction::Rate,
            "increase" => RangeFunction::Increase,
            "delta" => RangeFunction::Delta,
            "irate" => RangeFunction::Irate,
            "idelta" => RangeFunction::Idelta,
            "avg_over_time" => RangeFunction::AvgOverTime,
            "sum_over_time" => RangeFunction::SumOverTime,
            "count_over_time" => RangeFunction::CountOverTime,
            "min_over_time" => RangeFunction::MinOverTime,
            "max_over_time" => RangeFunction::MaxOverTime,
            "last_over_time" => RangeFunction::LastOverTime,
            "first_over_time" => RangeFunction::FirstOverTime,
            "present_over_time" => RangeFunction::PresentOverTime,
            "ts_of_last_over_time" => RangeFunction::TsOfLastOverTime,
            "ts_of_first_over_time" => RangeFunction::TsOfFirstOverTime,
            "ts_of_max_over_time" => RangeFunction::TsOfMaxOverTime,
            "ts_of_min_over_time" => RangeFunction::TsOfMinOverTime,
            "stddev_over_time" => RangeFunction::StddevOverTime,
            "stdvar_over_time" => RangeFunction::StdvarOverTime,
            "quantile_over_time" => RangeFunction::QuantileOverTime,
            "mad_over_time" => RangeFunction::MadOverTime,
            "changes" => RangeFunction::Changes,
            "resets" => RangeFunction::Resets,
            "deriv" => RangeFunction::Deriv,
            "predict_linear" => RangeFunction::PredictLinear,
            "double_exponential_smoothing" => RangeFunction::DoubleExponentialSmoothing,
            "holt_winters" => RangeFunction::HoltWinters,
            _ => return None,
        })
    }
}

fn window_function(name: RangeFunction, window: &[Sample], context: &WindowContext) -> Result<Option<f64>, QueryError> {
    let values = || window.iter().map(|sample| sample.value);
    let first = window[0];
    let last = window[window.len() - 1];
    Ok(match name {
        RangeFunction::Rate => extrapolated_rate(window, context, true, true),
        RangeFunction::Increase => extrapolated_rate(window, context, true, false),
        RangeFunction::Delta => extrapolated_rate(window, context, false, false),
        RangeFunction::Irate | RangeFunction::Idelta => {
            if window.len() < 2 {
                return Ok(None);
            }
            let previous = window[window.len() - 2];
            let is_rate = name == RangeFunction::Irate;
            let mut result =
                if is_rate && last.value < previous.value { last.value } else { last.value - previous.value };
            let interval_ms = last.timestamp_ms - previous.timestamp_ms;
            if interval_ms == 0 {
                return Ok(None);
            }
            if is_rate {
                result /= interval_ms as f64 / 1000.0;
            }
            Some(result)
        }
        RangeFunction::AvgOverTime => Some(average(values())),
        RangeFunction::SumOverTime => {
            let (sum, compensation) =
                values().fold((0.0, 0.0), |(sum, compensation), value| kahan_add(value, sum, compensation));
            Some(sum + compensation)
        }
        RangeFunction::CountOverTime => Some(window.len() as f64),
        RangeFunction::MinOverTime => {
            Some(values().fold(
                first.value,
                |minimum, value| {
                    if value < minimum || minimum.is_nan() { value } else { minimum }
                },
            ))
        }
        RangeFunction::MaxOverTime => {
            Some(values().fold(
                first.value,
                |maximum, value| {
                    if value > maximum || maximum.is_nan() { value } else { maximum }
                },
            ))
        }
        RangeFunction::LastOverTime => Some(last.value),
        RangeFunction::FirstOverTime => Some(first.value),
        RangeFunction::PresentOverTime => Some(1.0),
        RangeFunction::TsOfLastOverTime => Some(last.timestamp_ms as f64 / 1000.0),
        RangeFunction::TsOfFirstOverTime => Some(first.timestamp_ms as f64 / 1000.0),
        RangeFunction::TsOfMaxOverTime | RangeFunction::TsOfMinOverTime => {
            let want_max = name == RangeFunction::TsOfMaxOverTime;
            let mut best = first;
            for sample in window {
                let better = if want_max { sample.value >= best.value } else { sample.value <= best.value };
                if better || best.value.is_nan() {
                    best = *sample;
                }
            }
            Some(best.timestamp_ms as f64 / 1000.0)
        }
        RangeFunction::StddevOverTime | RangeFunction::StdvarOverTime => {
            let mut count = 0.0;
            let (mut mean, mut mean_compensation) = (0.0, 0.0);
            let (mut aux, mut aux_compensation) = (0.0, 0.0);
            for value in values() {
                count += 1.0;
                let delta = value - (mean + mean_compensation);
                (mean, mean_compensation) = kahan_add(delta / count, mean, mean_compensation);
                (aux, aux_compensation) =
                    kahan_add(delta * (value - (mean + mean_compensation)), aux, aux_compensation);
            }
            let variance = (aux + aux_compensation) / count;
            Some(if name == RangeFunction::StddevOverTime { variance.sqrt() } else { variance })
        }
        RangeFunction::QuantileOverTime => Some(quantile_of(context.scalar, values().collect())),
        RangeFunction::MadOverTime => {
            let all: Vec<f64> = values().collect();
            if all.iter().any(|value| value.is_nan()) {
                return Ok(Some(f64::NAN));
            }
            let median = quantile_of(0.5, all.clone());
            Some(quantile_of(0.5, all.iter().map(|value| (value - median).abs()).collect()))
        }
        RangeFunction::Changes | RangeFunction::Resets => {
            let mut count = 0.0;
            let mut previous = first.value;
            for value in values().skip(1) {
                let counted = if name == RangeFunction::Changes {
                    !(value == previous || (value.is_nan() && previous.is_nan()))
                } else {
                    value < previous
                };
                if counted {
                    count += 1.0;
                }
                previous = value;
            }
            Some(count)
        }
        RangeFunction::Deriv => {
            if window.len() < 2 {
                return Ok(None);
            }
            Some(linear_regression(window, first.timestamp_ms).0)
        }
        RangeFunction::PredictLinear => {
            if window.len() < 2 {
                return Ok(None);
            }
            let (slope, intercept) = linear_regression(window, context.step_timestamp_ms);
            Some(intercept + slope * context.scalar)
        }
        RangeFunction::DoubleExponentialSmoothing | RangeFunction::HoltWinters => {
            if window.len() < 2 {
                return Ok(None);
            }
            let smoothing = context.scalar;
            let trend_factor = context.second_scalar;
            let (mut previous_level, mut level) = (0.0, first.value);
            let mut trend = window[1].value - first.value;
            for (index, sample) in window.iter().enumerate().skip(1) {
                let scaled = smoothing * sample.value;
                if index > 1 {
                    trend = trend_factor * (level - previous_level) + (1.0 - trend_factor) * trend;
                }
                let carried = (1.0 - smoothing) * (level + trend);
                previous_level = level;
                level = scaled + carried;
            }
            Some(level)
        }
    })
}

/// Mean with Kahan summation, switching to an incremental mean when the sum overflows (Prometheus'
/// `avg_over_time`).
fn average(values: impl Iterator<Item = f64>) -> f64 {
    let mut count = 0.0;
    let (mut sum, mut compensation) = (0.0, 0.0);
    let mut mean = 0.0;
    let mut incremental = false;
    for value in values {
        count += 1.0;
        if count == 1.0 {
            sum = value;
            continue;
        }
        if !incremental {
            let (new_sum, new_compensation) = kahan_add(value, sum, compensation);
            if !new_sum.is_infinite() {
                sum = new_sum;
                compensation = new_compensation;
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            compensation /= count - 1.0;
        }
        let ratio = (count - 1.0) / count;
        (mean, compensation) = kahan_add(value / count, ratio * mean, ratio * compensation);
    }
    if incremental { mean + compensation } else { sum / count + compensation / count }
}

/// Least-squares slope and intercept of the samples, with x in seconds relative to `intercept_ms`.
fn linear_regression(samples: &[Sample], intercept_ms: i64) -> (f64, f64) {
    let mut count = 0.0;
    let (mut sum_x, mut compensation_x) = (0.0, 0.0);
    let (mut sum_y, mut compensation_y) = (0.0, 0.0);
    let (mut sum_xy, mut compensation_xy) = (0.0, 0.0);
    let (mut sum_x2, mut compensation_x2) = (0.0, 0.0);
    let initial = samples[0].value;
    let mut constant = true;
    for (index, sample) in samples.iter().enumerate() {
        if constant && index > 0 && sample.value != initial {
            constant = false;
        }
        count += 1.0;
        let x = (sample.timestamp_ms - intercept_ms) as f64 / 1000.0;
        (sum_x, compensation_x) = kahan_add(x, sum_x, compensation_x);
        (sum_y, compensation_y) = kahan_add(sample.value, sum_y, compensation_y);
        (sum_xy, compensation_xy) = kahan_add(x * sample.value, sum_xy, compensation_xy);
        (sum_x2, compensation_x2) = kahan_add(x * x, sum_x2, compensation_x2);
    }
    if constant {
        if initial.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, initial);
    }
    sum_x += compensation_x;
    sum_y += compensation_y;
    sum_xy += compensation_xy;
    sum_x2 += compensation_x2;
    let covariance = sum_xy - sum_x * sum_y / count;
    let variance = sum_x2 - sum_x * sum_x / count;
    let slope = covariance / variance;
    let intercept = sum_y / count - slope * sum_x / count;
    (slope, intercept)
}

/// `rate`, `increase` and `delta` with Prometheus' extrapolation to the window boundaries.
fn extrapolated_rate(window: &[Sample], context: &WindowContext, is_counter: bool, is_rate: bool) -> Option<f64> {
    if window.len() < 2 {
        return None;
    }
    let first = window[0];
    let last = window[window.len() - 1];
    let mut result = last.value - first.value;
    if is_counter {
        // Same additions in the same order as a scan of the window would make.
        for index in context.counter_resets {
            result += window[index - 1].value;
        }
    }
    let mut duration_to_start = (first.timestamp_ms - context.range_start_ms) as f64 / 1000.0;
    let mut duration_to_end = (context.range_end_ms - last.timestamp_ms) as f64 / 1000.0;
    let sampled_interval = (last.timestamp_ms - first.timestamp_ms) as f64 / 1000.0;
    let average_interval = sampled_interval / (window.len() - 1) as f64;
    let threshold = average_interval * 1.1;
    if duration_to_start >= threshold {
        duration_to_start = average_interval / 2.0;
    }
    if is_counter {
        let mut duration_to_zero = duration_to_start;
        if result > 0.0 && first.value >= 0.0 {
            duration_to_zero = sampled_interval * (first.value / result);
        }
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    if duration_to_end >= threshold {
        duration_to_end = average_interval / 2.0;
    }
    let mut factor = (sampled_interval + duration_to_start + duration_to_end) / sampled_interval;
    if is_rate {
        factor /= context.range_ms as f64 / 1000.0;
    }
    Some(result * factor)
}
