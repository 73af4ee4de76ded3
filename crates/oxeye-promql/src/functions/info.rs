//! `info(v, [data-label selector])` (experimental in Prometheus): enriches each series with the data
//! labels of the info series (`target_info` by default) that share its identifying labels `instance`
//! and `job`, as of the time the series' samples were read.

use std::collections::HashMap;

use oxeye_model::{Labels, LabelsBuilder, METRIC_NAME_LABEL, MatchOp, Matcher, is_stale_nan};
use promql_parser::parser::{Expr, VectorSelector};

use super::arg;
use crate::engine::{Evaluated, Evaluator, Grid, StepSeries, convert_matchers, offset_ms};
use crate::error::{QueryError, execution};

/// The labels that tie a series to its info series.
const IDENTIFYING_LABELS: [&str; 2] = ["instance", "job"];

pub(super) fn info(evaluator: &mut Evaluator<'_>, args: &[&Expr], grid: &Grid) -> Result<Evaluated, QueryError> {
    let base_expr = arg(args, 0)?;
    let base = evaluator.eval_vector(base_expr, grid)?;
    let mut matchers = match args.get(1) {
        Some(Expr::VectorSelector(selector)) => {
            let mut matchers = convert_matchers(&selector.matchers.matchers)?;
            if let Some(name) = &selector.name {
                matchers.push(Matcher::equal(METRIC_NAME_LABEL, name.clone()));
            }
            matchers
        }
        Some(other) => {
            return Err(execution(format!("expected a label selector as second argument of info(), got {other}")));
        }
        None => Vec::new(),
    };
    if !matchers.iter().any(|matcher| matcher.name == METRIC_NAME_LABEL) {
        matchers.push(Matcher::equal(METRIC_NAME_LABEL, "target_info"));
    }
    let (mut name_matchers, data_matchers): (Vec<Matcher>, Vec<Matcher>) =
        matchers.into_iter().partition(|matcher| matcher.name == METRIC_NAME_LABEL);
    if !name_matchers.iter().any(|matcher| matches!(matcher.op, MatchOp::Equal | MatchOp::Regex)) {
        // Only negative name matchers: they narrow down the info metrics, the `*_info` ones.
        let any_info =
            Matcher::new(MatchOp::Regex, METRIC_NAME_LABEL, ".+_info").map_err(|error| execution(error.to_string()))?;
        name_matchers.push(any_info);
    }
    let data_matchers_accept_missing = data_matchers.iter().all(Matcher::matches_empty);

    // The time each step's samples were read at, after the `@` and `offset` of the argument.
    let reference_times: Vec<i64> =
        (0..grid.steps()).map(|step| reference_time(evaluator, base_expr, grid.timestamp(step))).collect();
    let info_series = select_info_series(evaluator, &name_matchers, &data_matchers, &reference_times)?;

    let mut output: Vec<StepSeries> = Vec::new();
    let mut index_of: HashMap<(Labels, bool), usize> = HashMap::new();
    for series in base {
        // A series selected by the info metric name matchers is an info series itself and is not
        // enriched; that takes at least one positive name matcher.
        let is_info_series = name_matchers.iter().any(|matcher| matches!(matcher.op, MatchOp::Equal | MatchOp::Regex))
            && series
                .labels
                .metric_name()
                .is_some_and(|name| name_matchers.iter().all(|matcher| matcher.matches(name)));
        if is_info_series {
            push_points(&mut output, &mut index_of, series.labels, series.drop_name, &series.points);
            continue;
        }
        for (step, value) in &series.points {
            let Some(reference_ms) = reference_times.get(*step as usize).copied() else { continue };
            let enriched = enrich(
                &series.labels,
                &info_series,
                &data_matchers,
                reference_ms,
                evaluator.options.lookback_delta_ms,
            )?;
            let labels = match enriched {
                Some(labels) => labels,
                None if data_matchers_accept_missing => series.labels.clone(),
                None => continue,
            };
            push_points(&mut output, &mut index_of, labels, series.drop_name, &[(*step, *value)]);
        }
    }
    Ok(Evaluated::Vector(output))
}

fn push_points(
    output: &mut Vec<StepSeries>,
    index_of: &mut HashMap<(Labels, bool), usize>,
    labels: Labels,
    drop_name: bool,
    points: &[(u32, f64)],
) {
    let slot = *index_of.entry((labels.clone(), drop_name)).or_insert_with(|| {
        output.push(StepSeries { labels, points: Vec::new(), drop_name });
        output.len() - 1
    });
    output[slot].points.extend_from_slice(points);
}

/// The time the first selector inside `expr` reads at when `expr` is evaluated at `time_ms`.
fn reference_time(evaluator: &Evaluator<'_>, expr: &Expr, time_ms: i64) -> i64 {
    let shifted = |at: &Option<promql_parser::parser::AtModifier>, offset| {
        evaluator.at_time_ms(at).unwrap_or(time_ms).saturating_sub(offset_ms(offset))
    };
    match expr {
        Expr::VectorSelector(selector) => shifted(&selector.at, &selector.offset),
        Expr::MatrixSelector(matrix) => shifted(&matrix.vs.at, &matrix.vs.offset),
        Expr::Subquery(subquery) => reference_time(evaluator, &subquery.expr, shifted(&subquery.at, &subquery.offset)),
        Expr::Paren(paren) => reference_time(evaluator, &paren.expr, time_ms),
        Expr::Unary(unary) => reference_time(evaluator, &unary.expr, time_ms),
        Expr::Aggregate(aggregate) => reference_time(evaluator, &aggregate.expr, time_ms),
        Expr::Binary(binary) => reference_time(evaluator, &binary.lhs, time_ms),
        Expr::Call(call) => call
            .args
            .args
            .iter()
            .find(|arg| contains_selector(arg))
            .map(|arg| reference_time(evaluator, arg, time_ms))
            .unwrap_or(time_ms),
        _ => time_ms,
    }
}

fn contains_selector(expr: &Expr) -> bool {
    match expr {
        Expr::VectorSelector(_) | Expr::MatrixSelector(_) | Expr::Subquery(_) => true,
        Expr::Paren(paren) => contains_selector(&paren.expr),
        Expr::Unary(unary) => contains_selector(&unary.expr),
        Expr::Aggregate(aggregate) => contains_selector(&aggregate.expr),
        Expr::Binary(binary) => contains_selector(&binary.lhs) || contains_selector(&binary.rhs),
        Expr::Call(call) => call.args.args.iter().any(|arg| contains_selector(arg)),
        _ => false,
    }
}

/// An info series that passed the data-label matchers, with its samples (stale markers kept).
struct InfoSeries {
    labels: Labels,
    samples: Vec<oxeye_model::Sample>,
}

fn select_info_series(
    evaluator: &mut Evaluator<'_>,
    name_matchers: &[Matcher],
    data_matchers: &[Matcher],
    reference_times: &[i64],
) -> Result<Vec<InfoSeries>, QueryError> {
    let (Some(min_time), Some(max_time)) = (reference_times.iter().min(), reference_times.iter().max()) else {
        return Ok(Vec::new());
    };
    // A selector that matches only by name; the data matchers are applied below.
    let mut selector = VectorSelector::default();
    for matcher in name_matchers {
        let op = match matcher.op {
            MatchOp::Equal => promql_parser::label::MatchOp::Equal,
            MatchOp::NotEqual => promql_parser::label::MatchOp::NotEqual,
            MatchOp::Regex | MatchOp::NotRegex => {
                let regex = regex::Regex::new(&format!("^(?s:{})$", matcher.value))
                    .map_err(|error| execution(format!("invalid regular expression in info(): {error}")))?;
                if matcher.op == MatchOp::Regex {
                    promql_parser::label::MatchOp::Re(regex)
                } else {
                    promql_parser::label::MatchOp::NotRe(regex)
                }
            }
        };
        selector.matchers.matchers.push(promql_parser::label::Matcher::new(op, &matcher.name, &matcher.value));
    }
    if name_matchers.iter().all(Matcher::matches_empty) {
        // Stores need one matcher that does not match the empty string; every series has a name.
        let any_name = regex::Regex::new("^(?s:.+)$").map_err(|error| execution(error.to_string()))?;
        selector.matchers.matchers.push(promql_parser::label::Matcher::new(
            promql_parser::label::MatchOp::Re(any_name),
            METRIC_NAME_LABEL,
            ".+",
        ));
    }
    let lookback_ms = evaluator.options.lookback_delta_ms;
    let selected = evaluator.select(&selector, min_time.saturating_sub(lookback_ms).saturating_add(1), *max_time)?;
    Ok(selected
        .into_iter()
        .filter(|series| {
            data_matchers.iter().all(|matcher| matcher.matches(series.labels.get(&matcher.name).unwrap_or("")))
        })
        .map(|series| InfoSeries { labels: series.labels, samples: series.samples })
        .collect())
}

/// The labels of `base` with the data labels of its info series as of `reference_ms`, or `None` when no
/// info series matches.
fn enrich(
    base: &Labels,
    info_series: &[InfoSeries],
    data_matchers: &[Matcher],
    reference_ms: i64,
    lookback_ms: i64,
) -> Result<Option<Labels>, QueryError> {
    let identity: Vec<(&str, &str)> =
        IDENTIFYING_LABELS.iter().filter_map(|name| base.get(name).map(|value| (*name, value))).collect();
    if identity.is_empty() {
        return Ok(None);
    }
    // Per info metric name, the matching series with the newest sample (churned series resolve to the
    // latest one).
    let mut chosen: HashMap<&str, (i64, &InfoSeries)> = HashMap::new();
    for series in info_series {
        if !identity.iter().all(|(name, value)| series.labels.get(name) == Some(*value)) {
            continue;
        }
        let end = series.samples.partition_point(|sample| sample.timestamp_ms <= reference_ms);
        let Some(sample) = end.checked_sub(1).and_then(|index| series.samples.get(index)) else { continue };
        if sample.timestamp_ms <= reference_ms - lookback_ms || is_stale_nan(sample.value) {
            continue;
        }
        let name = series.labels.metric_name().unwrap_or("");
        match chosen.get(name) {
            Some((newest, _)) if *newest >= sample.timestamp_ms => {}
            _ => {
                chosen.insert(name, (sample.timestamp_ms, series));
            }
        }
    }
    if chosen.is_empty() {
        return Ok(None);
    }
    let mut builder: LabelsBuilder = base.to_builder();
    let mut added: HashMap<String, String> = HashMap::new();
    for (_, series) in chosen.values() {
        for label in series.labels.iter() {
            if label.name == METRIC_NAME_LABEL || IDENTIFYING_LABELS.contains(&label.name.as_str()) {
                continue;
            }
            if !data_matchers.is_empty() && !data_matchers.iter().any(|matcher| matcher.name == label.name) {
                continue;
            }
            if base.get(&label.name).is_some() {
                continue;
            }
            if let Some(previous) = added.get(&label.name) {
                if previous != &label.value {
                    return Err(execution(format!(
                        "conflicting label: {} has values {previous:?} and {:?} in different info metrics",
                        label.name, label.value
                    )));
                }
                continue;
            }
            added.insert(label.name.clone(), label.value.clone());
            builder.set(label.name.clone(), label.value.clone());
        }
    }
    Ok(Some(builder.build()))
}
