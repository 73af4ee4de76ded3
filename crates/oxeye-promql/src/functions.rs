//! PromQL functions, as documented at <https://prometheus.io/docs/prometheus/latest/querying/functions/>
//! and implemented in Prometheus' `promql/functions.go` (float samples only).

use std::collections::HashMap;

use oxeye_model::{Labels, LabelsBuilder, METRIC_NAME_LABEL, Sample};
use promql_parser::parser::{Call, Expr, value::ValueType};
use regex::Regex;

use crate::engine::{Evaluated, Evaluator, Grid, RangeInput, StepSeries, by_step, convert_matchers, merge_same_labels};
use crate::error::{QueryError, execution};
use crate::value::format_float;

/// Neumaier-compensated summation step: adds `increment` to `sum` with compensation `compensation`.
pub(crate) fn kahan_add(increment: f64, sum: f64, compensation: f64) -> (f64, f64) {
    let total = sum + increment;
    let compensation = if total.is_infinite() {
        0.0
    } else if sum.abs() >= increment.abs() {
        compensation + ((sum - total) + increment)
    } else {
        compensation + ((increment - total) + sum)
    };
    (total, compensation)
}

/// The φ-quantile of `values` with linear interpolation, as Prometheus' `quantile` (NaN sorts first).
pub(crate) fn quantile_of(phi: f64, mut values: Vec<f64>) -> f64 {
    if values.is_empty() || phi.is_nan() {
        return f64::NAN;
    }
    if phi < 0.0 {
        return f64::NEG_INFINITY;
    }
    if phi > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|left, right| match (left.is_nan(), right.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        (false, false) => left.partial_cmp(right).unwrap_or(std::cmp::Ordering::Equal),
    });
    let count = values.len() as f64;
    let rank = phi * (count - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(count - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// Go's `math.Max`: NaN wins.
fn go_max(left: f64, right: f64) -> f64 {
    if left.is_nan() || right.is_nan() { f64::NAN } else { left.max(right) }
}

/// Go's `math.Min`: NaN wins.
fn go_min(left: f64, right: f64) -> f64 {
    if left.is_nan() || right.is_nan() { f64::NAN } else { left.min(right) }
}

pub(crate) fn eval_call(evaluator: &mut Evaluator<'_>, call: &Call, grid: &Grid) -> Result<Evaluated, QueryError> {
    let name = call.func.name;
    let args: Vec<&Expr> = call.args.args.iter().map(|arg| arg.as_ref()).collect();
    let steps = grid.steps();
    match name {
        "step" => Ok(Evaluated::Scalar(vec![evaluator.query_step_ms as f64 / 1000.0; steps])),
        "range" => {
            Ok(Evaluated::Scalar(vec![(evaluator.query_end_ms - evaluator.query_start_ms) as f64 / 1000.0; steps]))
        }
        "start" => Ok(Evaluated::Scalar(vec![evaluator.query_start_ms as f64 / 1000.0; steps])),
        "end" => Ok(Evaluated::Scalar(vec![evaluator.query_end_ms as f64 / 1000.0; steps])),
        "min_of" | "max_of" => {
            let left = evaluator.eval_scalar(arg(&args, 0)?, grid)?;
            let right = evaluator.eval_scalar(arg(&args, 1)?, grid)?;
            let pick = if name == "min_of" { go_min } else { go_max };
            Ok(Evaluated::Scalar(left.iter().zip(right.iter()).map(|(left, right)| pick(*left, *right)).collect()))
        }
        "time" => Ok(Evaluated::Scalar((0..steps).map(|step| grid.timestamp(step) as f64 / 1000.0).collect())),
        "pi" => Ok(Evaluated::Scalar(vec![std::f64::consts::PI; steps])),
        "vector" => {
            let values = evaluator.eval_scalar(arg(&args, 0)?, grid)?;
            let points = values.into_iter().enumerate().map(|(step, value)| (step as u32, value)).collect();
            Ok(Evaluated::Vector(vec![StepSeries { labels: Labels::empty(), points, drop_name: false }]))
        }
        "scalar" => {
            let series = evaluator.eval_vector(arg(&args, 0)?, grid)?;
            let per_step = by_step(&series, steps);
            Ok(Evaluated::Scalar(
                per_step.iter().map(|samples| if samples.len() == 1 { samples[0].1 } else { f64::NAN }).collect(),
            ))
        }
        "absent" => {
            let argument = arg(&args, 0)?;
            let series = evaluator.eval_vector(argument, grid)?;
            let per_step = by_step(&series, steps);
            let points: Vec<(u32, f64)> = per_step
                .iter()
                .enumerate()
                .filter(|(_, samples)| samples.is_empty())
                .map(|(step, _)| (step as u32, 1.0))
                .collect();
            Ok(Evaluated::Vector(absent_result(argument, points)?))
        }
        "absent_over_time" => {
            let argument = arg(&args, 0)?;
            let input = evaluator.eval_range_input(argument, grid)?;
            let mut present = vec![false; steps];
            for series in &input.series {
                for_each_window(&input, series.samples.as_slice(), |step, window| {
                    if !window.is_empty() {
                        present[step] = true;
                    }
                });
            }
            let points: Vec<(u32, f64)> =
                present.iter().enumerate().filter(|(_, seen)| !**seen).map(|(step, _)| (step as u32, 1.0)).collect();
            Ok(Evaluated::Vector(absent_result(argument, points)?))
        }
        "timestamp" => {
            let argument = unwrap_parens(arg(&args, 0)?);
            let series = match argument {
                Expr::VectorSelector(selector) => evaluator.eval_vector_selector(selector, grid, true)?,
                other => {
                    let series = evaluator.eval_vector(other, grid)?;
                    series
                        .into_iter()
                        .map(|series| StepSeries {
                            labels: series.labels,
                            points: series
                                .points
                                .into_iter()
                                .map(|(step, _)| (step, grid.timestamp(step as usize) as f64 / 1000.0))
                                .collect(),
                            drop_name: series.drop_name,
                        })
                        .collect()
                }
            };
            Ok(Evaluated::Vector(evaluator.drop_names(series)?))
        }
        "label_replace" => label_replace(evaluator, &args, grid),
        "label_join" => label_join(evaluator, &args, grid),
        "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc" if evaluator.query_step_ms > 0 => {
            let position = evaluator.position_suffix(&[name]);
            evaluator.warn(format!(
                "PromQL warning: sort is ineffective for range queries since results are always ordered by labels{position}"
            ));
            let series = evaluator.eval_vector(arg(&args, 0)?, grid)?;
            for argument in args.iter().skip(1) {
                evaluator.eval(argument, grid)?;
            }
            Ok(Evaluated::Vector(series))
        }
        "sort" | "sort_desc" => {
            let mut series = evaluator.eval_vector(arg(&args, 0)?, grid)?;
            if steps == 1 {
                let descending = name == "sort_desc";
                series.sort_by(|left, right| {
                    let left_value = left.points.first().map(|point| point.1).unwrap_or(f64::NAN);
                    let right_value = right.points.first().map(|point| point.1).unwrap_or(f64::NAN);
                    compare_nan_last(left_value, right_value, descending)
                });
            }
            Ok(Evaluated::Vector(series))
        }
        "sort_by_label" | "sort_by_label_desc" => {
            let mut series = evaluator.eval_vector(arg(&args, 0)?, grid)?;
            let mut label_names = Vec::new();
            for argument in args.iter().skip(1) {
                match evaluator.eval(argument, grid)? {
                    Evaluated::String(text) => label_names.push(text),
                    _ => return Err(execution(format!("{name} expects string label names"))),
                }
            }
            let descending = name == "sort_by_label_desc";
            series.sort_by(|left, right| {
                for label in &label_names {
                    let ordering =
                        natural_compare(left.labels.get(label).unwrap_or(""), right.labels.get(label).unwrap_or(""));
                    if ordering != std::cmp::Ordering::Equal {
                        return if descending { ordering.reverse() } else { ordering };
                    }
                }
                let ordering = left.labels.cmp(&right.labels);
                if descending { ordering.reverse() } else { ordering }
            });
            Ok(Evaluated::Vector(series))
        }
        "histogram_quantile" => histogram_quantile(evaluator, &args, grid),
        "histogram_count"
        | "histogram_sum"
        | "histogram_avg"
        | "histogram_fraction"
        | "histogram_stddev"
        | "histogram_stdvar"
        | "histogram_quantiles" => {
            // These only read native histograms, which oxeye does not store: float series yield nothing.
            for argument in &args {
                evaluator.eval(argument, grid)?;
            }
            Ok(Evaluated::Vector(Vec::new()))
        }
        "days_in_month" | "day_of_month" | "day_of_week" | "day_of_year" | "hour" | "minute" | "month" | "year" => {
            let series = if args.is_empty() {
                vec![StepSeries {
                    labels: Labels::empty(),
                    points: (0..steps).map(|step| (step as u32, grid.timestamp(step) as f64 / 1000.0)).collect(),
                    drop_name: false,
                }]
            } else {
                evaluator.eval_vector(arg(&args, 0)?, grid)?
            };
            let mapped = map_values(series, |value| date_part(name, value));
            Ok(Evaluated::Vector(evaluator.drop_names(mapped)?))
        }
        "round" => {
            let series = evaluator.eval_vector(arg(&args, 0)?, grid)?;
            let nearest = if args.len() > 1 { evaluator.eval_scalar(args[1], grid)? } else { vec![1.0; steps] };
            let mapped = map_values_at(series, |step, value| {
                let inverse = 1.0 / nearest.get(step).copied().unwrap_or(1.0);
                (value * inverse + 0.5).floor() / inverse
            });
            Ok(Evaluated::Vector(evaluator.drop_names(mapped)?))
        }
        "clamp" => {
            let series = evaluator.eval_vector(arg(&args, 0)?, grid)?;
            let minimums = evaluator.eval_scalar(arg(&args, 1)?, grid)?;
            let maximums = evaluator.eval_scalar(arg(&args, 2)?, grid)?;
            let mut output = Vec::new();
            for one in series {
                let points: Vec<(u32, f64)> = one
                    .points
                    .into_iter()
                    .filter_map(|(step, value)| {
                        let minimum = minimums.get(step as usize).copied().unwrap_or(f64::NAN);
                        let maximum = maximums.get(step as usize).copied().unwrap_or(f64::NAN);
                        if maximum < minimum {
                            return None;
                        }
                        Some((step, go_max(minimum, go_min(maximum, value))))
                    })
                    .collect();
                if !points.is_empty() {
                    output.push(StepSeries { labels: one.labels, points, drop_name: one.drop_name });
                }
            }
            Ok(Evaluated::Vector(evaluator.drop_names(output)?))
        }
        "clamp_min" | "clamp_max" => {
            let series = evaluator.eval_vector(arg(&args, 0)?, grid)?;
            let bounds = evaluator.eval_scalar(arg(&args, 1)?, grid)?;
            let is_min = name == "clamp_min";
            let mapped = map_values_at(series, |step, value| {
                let bound = bounds.get(step).copied().unwrap_or(f64::NAN);
                if is_min { go_max(bound, value) } else { go_min(bound, value) }
            });
            Ok(Evaluated::Vector(evaluator.drop_names(mapped)?))
        }
        _ => {
            if let Some(function) = simple_math(name) {
                let series = evaluator.eval_vector(arg(&args, 0)?, grid)?;
                return Ok(Evaluated::Vector(evaluator.drop_names(map_values(series, function))?));
            }
            if args.iter().any(|argument| argument.value_type() == ValueType::Matrix) {
                return eval_range_function(evaluator, name, &args, grid);
            }
            Err(execution(format!("function {name} is not supported")))
        }
    }
}

fn arg<'e>(args: &[&'e Expr], index: usize) -> Result<&'e Expr, QueryError> {
    args.get(index).copied().ok_or_else(|| execution(format!("missing function argument {}", index + 1)))
}

fn unwrap_parens(expr: &Expr) -> &Expr {
    match expr {
        Expr::Paren(paren) => unwrap_parens(&paren.expr),
        other => other,
    }
}

fn compare_nan_last(left: f64, right: f64, descending: bool) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (left.is_nan(), right.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => {
            let ordering = left.partial_cmp(&right).unwrap_or(Ordering::Equal);
            if descending { ordering.reverse() } else { ordering }
        }
    }
}

/// Natural ordering: runs of digits compare by numeric value, everything else byte-wise.
fn natural_compare(left: &str, right: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let left_bytes = left.as_bytes();
    let right_bytes = right.as_bytes();
    let (mut left_index, mut right_index) = (0usize, 0usize);
    while left_index < left_bytes.len() && right_index < right_bytes.len() {
        let left_byte = left_bytes[left_index];
        let right_byte = right_bytes[right_index];
        if left_byte.is_ascii_digit() && right_byte.is_ascii_digit() {
            let left_end =
                left_index + left_bytes[left_index..].iter().take_while(|byte| byte.is_ascii_digit()).count();
            let right_end =
                right_index + right_bytes[right_index..].iter().take_while(|byte| byte.is_ascii_digit()).count();
            let left_digits = left[left_index..left_end].trim_start_matches('0');
            let right_digits = right[right_index..right_end].trim_start_matches('0');
            let ordering = left_digits.len().cmp(&right_digits.len()).then_with(|| left_digits.cmp(right_digits));
            if ordering != Ordering::Equal {
                return ordering;
            }
            left_index = left_end;
            right_index = right_end;
        } else {
            if left_byte != right_byte {
                return left_byte.cmp(&right_byte);
            }
            left_index += 1;
            right_index += 1;
        }
    }
    (left_bytes.len() - left_index).cmp(&(right_bytes.len() - right_index))
}

fn simple_math(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sqrt" => f64::sqrt,
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        "deg" => |value| value * 180.0 / std::f64::consts::PI,
        "rad" => |value| value * std::f64::consts::PI / 180.0,
        "sgn" => |value: f64| {
            if value > 0.0 {
                1.0
            } else if value < 0.0 {
                -1.0
            } else {
                value
            }
        },
        _ => return None,
    })
}

fn map_values(series: Vec<StepSeries>, function: impl Fn(f64) -> f64) -> Vec<StepSeries> {
    map_values_at(series, |_, value| function(value))
}

fn map_values_at(series: Vec<StepSeries>, function: impl Fn(usize, f64) -> f64) -> Vec<StepSeries> {
    series
        .into_iter()
        .map(|one| StepSeries {
            labels: one.labels,
            points: one.points.into_iter().map(|(step, value)| (step, function(step as usize, value))).collect(),
            drop_name: one.drop_name,
        })
        .collect()
}

/// The labels `absent()` and `absent_over_time()` return: the selector's equality matchers.
fn absent_result(argument: &Expr, points: Vec<(u32, f64)>) -> Result<Vec<StepSeries>, QueryError> {
    if points.is_empty() {
        return Ok(Vec::new());
    }
    let selector = match unwrap_parens(argument) {
        Expr::VectorSelector(selector) => Some(selector),
        Expr::MatrixSelector(matrix) => Some(&matrix.vs),
        _ => None,
    };
    let mut builder = LabelsBuilder::new();
    if let Some(selector) = selector {
        let matchers = convert_matchers(&selector.matchers.matchers)?;
        let mut seen: HashMap<String, usize> = HashMap::new();
        for matcher in &matchers {
            *seen.entry(matcher.name.clone()).or_default() += 1;
        }
        for matcher in matchers {
            if matcher.op == oxeye_model::MatchOp::Equal
                && matcher.name != METRIC_NAME_LABEL
                && seen.get(&matcher.name).copied().unwrap_or(0) == 1
            {
                builder.set(matcher.name.clone(), matcher.value.clone());
            }
        }
    }
    Ok(vec![StepSeries { labels: builder.build(), points, drop_name: false }])
}

/// Label names are any non-empty UTF-8 (Prometheus 3). The parser turns invalid bytes such as `\xff`
/// into U+FFFD, so that character marks a name Prometheus would reject as invalid UTF-8.
pub(crate) fn is_valid_label_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('\u{fffd}')
}

fn string_arg(evaluator: &mut Evaluator<'_>, expr: &Expr, grid: &Grid) -> Result<String, QueryError> {
    match evaluator.eval(expr, grid)? {
        Evaluated::String(text) => Ok(text),
        _ => Err(execution(format!("expected a string argument, got {expr}"))),
    }
}

fn label_replace(evaluator: &mut Evaluator<'_>, args: &[&Expr], grid: &Grid) -> Result<Evaluated, QueryError> {
    let series = evaluator.eval_vector(arg(args, 0)?, grid)?;
    let destination = string_arg(evaluator, arg(args, 1)?, grid)?;
    let replacement = string_arg(evaluator, arg(args, 2)?, grid)?;
    let source = string_arg(evaluator, arg(args, 3)?, grid)?;
    let pattern = string_arg(evaluator, arg(args, 4)?, grid)?;
    let regex = Regex::new(&format!("^(?s:{pattern})$"))
        .map_err(|_| execution(format!("invalid regular expression in label_replace(): {pattern}")))?;
    if !is_valid_label_name(&destination) {
        return Err(execution(format!("invalid destination label name in label_replace(): {destination}")));
    }
    let mut output = Vec::with_capacity(series.len());
    for one in series {
        let value = one.labels.get(&source).unwrap_or("");
        let labels = match regex.captures(value) {
            Some(captures) => {
                let mut expanded = String::new();
                captures.expand(&replacement, &mut expanded);
                let mut builder = one.labels.to_builder();
                builder.set(destination.clone(), expanded);
                builder.build()
            }
            None => one.labels.clone(),
        };
        // Writing `__name__` explicitly keeps it even when it was marked for removal.
        let drop_name = one.drop_name && destination != METRIC_NAME_LABEL;
        output.push(StepSeries { labels, points: one.points, drop_name });
    }
    Ok(Evaluated::Vector(merge_same_labels(output)?))
}

fn label_join(evaluator: &mut Evaluator<'_>, args: &[&Expr], grid: &Grid) -> Result<Evaluated, QueryError> {
    let series = evaluator.eval_vector(arg(args, 0)?, grid)?;
    let destination = string_arg(evaluator, arg(args, 1)?, grid)?;
    let separator = string_arg(evaluator, arg(args, 2)?, grid)?;
    let mut sources = Vec::new();
    for argument in args.iter().skip(3) {
        sources.push(string_arg(evaluator, argument, grid)?);
    }
    if !is_valid_label_name(&destination) {
        return Err(execution(format!("invalid destination label name in label_join(): {destination}")));
    }
    if let Some(source) = sources.iter().find(|source| !is_valid_label_name(source)) {
        return Err(execution(format!("invalid source label name in label_join(): {source}")));
    }
    let mut output = Vec::with_capacity(series.len());
    for one in series {
        let joined: Vec<&str> = sources.iter().map(|source| one.labels.get(source).unwrap_or("")).collect();
        let mut builder = one.labels.to_builder();
        builder.set(destination.clone(), joined.join(&separator));
        let drop_name = one.drop_name && destination != METRIC_NAME_LABEL;
        output.push(StepSeries { labels: builder.build(), points: one.points, drop_name });
    }
    Ok(Evaluated::Vector(merge_same_labels(output)?))
}

/// Calls `visit(step, window)` for each step with the series' samples in `(end - range, end]`.
fn for_each_window(input: &RangeInput, samples: &[Sample], mut visit: impl FnMut(usize, &[Sample])) {
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

fn eval_range_function(
    evaluator: &mut Evaluator<'_>,
    name: &str,
    args: &[&Expr],
    grid: &Grid,
) -> Result<Evaluated, QueryError> {
    let function = RangeFunction::parse(name).ok_or_else(|| execution(format!("function {name} is not supported")))?;
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
    let input = evaluator.eval_range_input(args[matrix_index], grid)?;
    let steps = grid.steps();
    if name == "quantile_over_time"
        && let Some(phi) = scalars.first().and_then(|values| values.iter().find(|phi| !(0.0..=1.0).contains(*phi)))
    {
        evaluator.warn(format!("PromQL warning: quantile value should be between 0 and 1, got {}", format_float(*phi)));
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
    let held: usize = input.series.iter().map(|series| series.samples.len()).sum();
    let RangeInput { series: input_series, range_ms, window_ends } = input;
    let input = RangeInput { series: Vec::new(), range_ms, window_ends };
    let mut output = Vec::with_capacity(input_series.len());
    let mut non_counter_names: Vec<String> = Vec::new();
    for series in input_series {
        evaluator.check_deadline()?;
        let mut points = Vec::new();
        let mut failure: Option<QueryError> = None;
        // Counter resets are found once per series, so rate() and increase() over long windows do not
        // rescan every window.
        let reset_indices: Vec<usize> = if matches!(function, RangeFunction::Rate | RangeFunction::Increase) {
            (1..series.samples.len())
                .filter(|index| series.samples[*index].value < series.samples[index - 1].value)
                .collect()
        } else {
            Vec::new()
        };
        let mut window_resets: Vec<usize> = Vec::new();
        for_each_window_at(&input, &series.samples, |step, offset, window| {
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
            continue;
        }
        if matches!(name, "rate" | "increase")
            && let Some(metric) = series.labels.metric_name()
            && !["_total", "_sum", "_count", "_bucket"].iter().any(|suffix| metric.ends_with(suffix))
            && !non_counter_names.iter().any(|seen| seen == metric)
        {
            non_counter_names.push(metric.to_string());
        }
        let (labels, drop_name) = if keeps_name {
            (series.labels, series.drop_name)
        } else if evaluator.delayed_name_removal {
            (series.labels, true)
        } else {
            (crate::engine::drop_metric_name(series.labels), false)
        };
        output.push(StepSeries { labels, points, drop_name });
    }
    let matrix_text = args[matrix_index].to_string();
    for metric in non_counter_names {
        let position = evaluator.position_suffix(&[&matrix_text, &metric]);
        evaluator.info(format!(
            "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {metric:?}{position}"
        ));
    }
    evaluator.release_samples(held);
    let produced: usize = output.iter().map(|series| series.points.len()).sum();
    evaluator.hold_samples(produced)?;
    let _ = steps;
    Ok(Evaluated::Vector(merge_same_labels(output)?))
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

fn histogram_quantile(evaluator: &mut Evaluator<'_>, args: &[&Expr], grid: &Grid) -> Result<Evaluated, QueryError> {
    let phis = evaluator.eval_scalar(arg(args, 0)?, grid)?;
    let series = evaluator.eval_vector(arg(args, 1)?, grid)?;
    let steps = grid.steps();
    let phi_text = arg(args, 0)?.to_string();
    let buckets_text = arg(args, 1)?.to_string();
    if let Some(phi) = phis.iter().find(|phi| !(0.0..=1.0).contains(*phi)) {
        let position = evaluator.position_suffix(&[&format!("({phi_text}"), &phi_text]);
        evaluator.warn(format!(
            "PromQL warning: quantile value should be between 0 and 1, got {}{position}",
            format_float(*phi)
        ));
    }
    // Group buckets by their labels without `le` and the metric name.
    let mut group_of: HashMap<Labels, usize> = HashMap::new();
    let mut groups: Vec<(Labels, String)> = Vec::new();
    let mut bucket_of: Vec<Option<(usize, f64)>> = Vec::with_capacity(series.len());
    for one in &series {
        let metric = one.labels.metric_name().unwrap_or("").to_string();
        let upper_bound = one.labels.get("le").and_then(parse_bucket_bound);
        let Some(upper_bound) = upper_bound else {
            let position = evaluator.position_suffix(&[&buckets_text, &metric]);
            evaluator.warn(format!(
                "PromQL warning: bucket label \"le\" is missing or has a malformed value of {:?} for metric name {:?}{position}",
                one.labels.get("le").unwrap_or(""),
                metric
            ));
            bucket_of.push(None);
            continue;
        };
        // Buckets are grouped with their metric name; the name is dropped from the result afterwards.
        let mut builder = one.labels.to_builder();
        builder.delete("le");
        let labels = builder.build();
        let next = groups.len();
        let group = *group_of.entry(labels.clone()).or_insert_with(|| {
            groups.push((labels, metric));
            next
        });
        bucket_of.push(Some((group, upper_bound)));
    }
    let per_step = by_step(&series, steps);
    let mut output: Vec<StepSeries> = groups
        .iter()
        .map(|(labels, _)| StepSeries { labels: labels.clone(), points: Vec::new(), drop_name: false })
        .collect();
    let mut buckets: Vec<Vec<(f64, f64)>> = vec![Vec::new(); groups.len()];
    let mut fixed_names: Vec<String> = Vec::new();
    for (step, samples) in per_step.iter().enumerate() {
        let mut touched = Vec::new();
        for (index, value) in samples {
            if let Some((group, upper_bound)) = bucket_of[*index as usize] {
                if buckets[group].is_empty() {
                    touched.push(group);
                }
                buckets[group].push((upper_bound, *value));
            }
        }
        let phi = phis.get(step).copied().unwrap_or(f64::NAN);
        for group in touched {
            let mut group_buckets = std::mem::take(&mut buckets[group]);
            let (value, forced_monotonic) = bucket_quantile(phi, &mut group_buckets);
            if forced_monotonic && !fixed_names.contains(&groups[group].1) {
                fixed_names.push(groups[group].1.clone());
            }
            output[group].points.push((step as u32, value));
        }
    }
    for metric in fixed_names {
        let position = evaluator.position_suffix(&[&buckets_text, &metric]);
        evaluator.info(format!(
            "PromQL info: input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name {metric:?}{position}"
        ));
    }
    let output: Vec<StepSeries> = output.into_iter().filter(|series| !series.points.is_empty()).collect();
    Ok(Evaluated::Vector(evaluator.drop_names(output)?))
}

/// Parses an `le` label value as Go's `strconv.ParseFloat` would (`+Inf`, `Inf`, decimals, exponents).
fn parse_bucket_bound(text: &str) -> Option<f64> {
    let trimmed = text.trim();
    match trimmed.to_ascii_lowercase().as_str() {
        "+inf" | "inf" | "+infinity" | "infinity" => return Some(f64::INFINITY),
        "-inf" | "-infinity" => return Some(f64::NEG_INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    if trimmed != text {
        return None;
    }
    text.parse::<f64>().ok()
}

/// The φ-quantile of classic histogram buckets `(upper bound, cumulative count)`, as Prometheus'
/// `BucketQuantile`; also says whether the counts had to be made monotonic.
fn bucket_quantile(phi: f64, buckets: &mut [(f64, f64)]) -> (f64, bool) {
    if phi.is_nan() {
        return (f64::NAN, false);
    }
    if phi < 0.0 {
        return (f64::NEG_INFINITY, false);
    }
    if phi > 1.0 {
        return (f64::INFINITY, false);
    }
    buckets.sort_by(|left, right| left.0.partial_cmp(&right.0).unwrap_or(std::cmp::Ordering::Equal));
    match buckets.last() {
        Some((upper, _)) if *upper == f64::INFINITY => {}
        _ => return (f64::NAN, false),
    }
    // Coalesce buckets with the same upper bound.
    let mut coalesced: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for (upper, count) in buckets.iter() {
        match coalesced.last_mut() {
            Some((last_upper, last_count)) if *last_upper == *upper => *last_count += count,
            _ => coalesced.push((*upper, *count)),
        }
    }
    let mut forced_monotonic = false;
    if let Some(first) = coalesced.first() {
        let mut previous = first.1;
        for bucket in coalesced.iter_mut().skip(1) {
            let current = bucket.1;
            if current == previous {
                continue;
            }
            if almost_equal(previous, current, 1e-12) {
                bucket.1 = previous;
                continue;
            }
            if current < previous {
                bucket.1 = previous;
                forced_monotonic = true;
                continue;
            }
            previous = current;
        }
    }
    if coalesced.len() < 2 {
        return (f64::NAN, forced_monotonic);
    }
    let observations = coalesced[coalesced.len() - 1].1;
    if observations == 0.0 {
        return (f64::NAN, forced_monotonic);
    }
    let mut rank = phi * observations;
    let searchable = coalesced.len() - 1;
    let bucket = coalesced[..searchable].partition_point(|(_, count)| *count < rank);
    if bucket == searchable {
        return (coalesced[coalesced.len() - 2].0, forced_monotonic);
    }
    if bucket == 0 && coalesced[0].0 <= 0.0 {
        return (coalesced[0].0, forced_monotonic);
    }
    let mut bucket_start = 0.0;
    let bucket_end = coalesced[bucket].0;
    let mut count = coalesced[bucket].1;
    if bucket > 0 {
        bucket_start = coalesced[bucket - 1].0;
        count -= coalesced[bucket - 1].1;
        rank -= coalesced[bucket - 1].1;
    }
    (bucket_start + (bucket_end - bucket_start) * (rank / count), forced_monotonic)
}

/// Relative float comparison as Prometheus' `almost.Equal`.
pub(crate) fn almost_equal(left: f64, right: f64, epsilon: f64) -> bool {
    const MIN_NORMAL: f64 = f64::MIN_POSITIVE;
    if left == right {
        return true;
    }
    let absolute_sum = left.abs() + right.abs();
    let difference = (left - right).abs();
    if left == 0.0 || right == 0.0 || absolute_sum < MIN_NORMAL {
        return difference < epsilon * MIN_NORMAL;
    }
    difference / absolute_sum.min(f64::MAX) < epsilon
}

/// The calendar field `name` of the Unix time `seconds`, in UTC.
fn date_part(name: &str, seconds: f64) -> f64 {
    if seconds.is_nan() || seconds.is_infinite() {
        return f64::NAN;
    }
    let whole = seconds.trunc() as i64;
    let days = whole.div_euclid(86_400);
    let second_of_day = whole.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    match name {
        "year" => year as f64,
        "month" => month as f64,
        "day_of_month" => day as f64,
        "day_of_week" => ((days + 4).rem_euclid(7)) as f64,
        "day_of_year" => (days - days_from_civil(year, 1, 1) + 1) as f64,
        "hour" => (second_of_day / 3600) as f64,
        "minute" => (second_of_day % 3600 / 60) as f64,
        "days_in_month" => {
            let (next_year, next_month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
            (days_from_civil(next_year, next_month, 1) - days_from_civil(year, month, 1)) as f64
        }
        _ => f64::NAN,
    }
}

/// Year, month (1-12) and day (1-31) of a count of days since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a civil date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_shifted = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_shifted + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(days_from_civil(2024, 3, 1) - days_from_civil(2024, 2, 1), 29);
        assert_eq!(date_part("day_of_week", 0.0), 4.0);
        assert_eq!(date_part("day_of_year", 86_400.0 * 40.0), 41.0);
    }

    #[test]
    fn bucket_quantile_interpolates_linearly() {
        let mut buckets = vec![(1.0, 10.0), (2.0, 20.0), (f64::INFINITY, 20.0)];
        assert_eq!(bucket_quantile(0.5, &mut buckets), (1.0, false));
        let mut buckets = vec![(1.0, 10.0), (2.0, 20.0), (f64::INFINITY, 20.0)];
        assert_eq!(bucket_quantile(0.75, &mut buckets), (1.5, false));
    }

    #[test]
    fn kahan_sum_keeps_small_terms() {
        let (sum, compensation) = [1e100, 1.0, -1e100]
            .iter()
            .fold((0.0, 0.0), |(sum, compensation), value| kahan_add(*value, sum, compensation));
        assert_eq!(sum + compensation, 1.0);
    }

    #[test]
    fn natural_order_compares_numbers() {
        assert_eq!(natural_compare("a10", "a9"), std::cmp::Ordering::Greater);
        assert_eq!(natural_compare("a1", "b0"), std::cmp::Ordering::Less);
    }

    #[test]
    fn quantile_interpolates() {
        assert_eq!(quantile_of(0.5, vec![1.0, 2.0, 3.0, 4.0]), 2.5);
        assert_eq!(quantile_of(-1.0, vec![1.0]), f64::NEG_INFINITY);
    }
}
