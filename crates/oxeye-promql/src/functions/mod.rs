//! PromQL functions, as documented at <https://prometheus.io/docs/prometheus/latest/querying/functions/>
//! and implemented in Prometheus' `promql/functions.go` (float samples only).

use std::collections::HashMap;

use oxeye_model::{Labels, LabelsBuilder, METRIC_NAME_LABEL};
use promql_parser::parser::{Call, Expr, value::ValueType};
use regex::Regex;

use crate::engine::{Evaluated, Evaluator, Grid, StepSeries, by_step, convert_matchers, merge_same_labels};
use crate::error::{QueryError, execution};

mod calendar;
mod histogram;
mod info;
mod range;

use calendar::date_part;
use histogram::histogram_quantile;
pub(crate) use range::{
    SharedSelection, SharingCall, shared_range_selection, stream_range_function, stream_range_functions_sharing,
    streamed_range_selector,
};
use range::{eval_range_function, for_each_window};

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
        "info" => info::info(evaluator, &args, grid),
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

pub(crate) fn unwrap_parens(expr: &Expr) -> &Expr {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
