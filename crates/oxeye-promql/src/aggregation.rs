//! Aggregation operators (`sum`, `avg`, `min`, `max`, `count`, `group`, `stddev`, `stdvar`, `topk`,
//! `bottomk`, `quantile`, `count_values`, `limitk`, `limit_ratio`) with `by`/`without`, as Prometheus'
//! `aggregation` and `aggregationK` in `promql/engine.go`.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use oxeye_model::{Labels, LabelsBuilder, METRIC_NAME_LABEL};
use promql_parser::parser::{AggregateExpr, Call, Expr, LabelModifier};

use crate::engine::{Evaluated, Evaluator, Grid, StepSeries, by_step};
use crate::error::{QueryError, execution};
use crate::functions::{
    SharedSelection, SharingCall, kahan_add, quantile_of, shared_range_selection, stream_range_function,
    stream_range_functions_sharing, streamed_range_selector, unwrap_parens,
};
use crate::value::format_float;

pub(crate) fn eval_aggregate(
    evaluator: &mut Evaluator<'_>,
    aggregate: &AggregateExpr,
    grid: &Grid,
) -> Result<Evaluated, QueryError> {
    let op = aggregate.op.to_string();
    let steps = grid.steps();
    let mut string_param: Option<String> = None;
    let mut scalar_param: Option<Vec<f64>> = None;
    if let Some(param) = &aggregate.param {
        match evaluator.eval(param, grid)? {
            Evaluated::Scalar(values) => scalar_param = Some(values),
            Evaluated::String(text) => string_param = Some(text),
            _ => return Err(execution(format!("invalid parameter for aggregation {op}"))),
        }
    }
    let grouping = Grouping::new(aggregate.modifier.as_ref());
    if let Some(output) = stream_aggregate(evaluator, &op, aggregate, &grouping, grid)? {
        return Ok(Evaluated::Vector(output));
    }
    let input = evaluator.eval_vector(&aggregate.expr, grid)?;
    match op.as_str() {
        "topk" | "bottomk" | "limitk" | "limit_ratio" => {
            let params = scalar_param.ok_or_else(|| execution(format!("{op} needs a parameter")))?;
            let param_text = aggregate.param.as_ref().map(|param| param.to_string()).unwrap_or_default();
            Ok(Evaluated::Vector(aggregate_k(evaluator, &op, &param_text, input, &params, &grouping, steps)?))
        }
        "count_values" => {
            let label = string_param.ok_or_else(|| execution("count_values needs a label name"))?;
            if !crate::functions::is_valid_label_name(&label) {
                return Err(execution(format!("invalid label name {label:?}")));
            }
            Ok(Evaluated::Vector(count_values(&label, input, &grouping, steps)))
        }
        _ => {
            let params = scalar_param.unwrap_or_default();
            let param_text = aggregate.param.as_ref().map(|param| param.to_string()).unwrap_or_default();
            let simple = SimpleOp::parse(&op).ok_or_else(|| execution(format!("unsupported aggregation {op}")))?;
            Ok(Evaluated::Vector(aggregate_simple(evaluator, simple, &param_text, input, &params, &grouping, steps)?))
        }
    }
}

/// Aggregates a range function over a selector (`sum by (view) (rate(x[5m]))`) series by series as the
/// store hands them over, so only one input series exists at a time besides the groups' running state
/// (groups × steps accumulators). Used for the folding aggregations with `by` (whose groups are few);
/// `None` when the expression does not have that shape and the general path must run. Series reach the
/// accumulators in the same order as in the general path, so the results are identical.
fn stream_aggregate(
    evaluator: &mut Evaluator<'_>,
    op: &str,
    aggregate: &AggregateExpr,
    grouping: &Grouping,
    grid: &Grid,
) -> Result<Option<Vec<StepSeries>>, QueryError> {
    let Some((op, call)) = streamed_shape(evaluator, op, aggregate, grouping) else { return Ok(None) };
    let mut fold = GroupFold::new(op, grid.steps());
    // Only the group labels are looked at: the store need not copy the others.
    let keep_label = |name: &str| grouping.keeps(name);
    let streamed = stream_range_function(evaluator, call, grid, Some(&keep_label), &mut |evaluator, series| {
        fold.add(evaluator, grouping, series)
    })?;
    if !streamed {
        return Ok(None);
    }
    Ok(Some(fold.into_series()))
}

/// The running state of a streamed aggregation: its groups and their accumulators, one per step.
struct GroupFold {
    op: SimpleOp,
    steps: usize,
    /// Groups by the hash of their labels; a series' group labels are only built for a new group.
    groups_by_hash: HashMap<u64, Vec<usize>>,
    groups: Vec<(Labels, Vec<Accumulator>)>,
}

impl GroupFold {
    fn new(op: SimpleOp, steps: usize) -> GroupFold {
        GroupFold { op, steps, groups_by_hash: HashMap::new(), groups: Vec::new() }
    }

    /// Folds one series' points into its group's accumulators.
    fn add(
        &mut self,
        evaluator: &mut Evaluator<'_>,
        grouping: &Grouping,
        series: StepSeries,
    ) -> Result<(), QueryError> {
        let slots = self.groups_by_hash.entry(grouping.group_hash(&series.labels)).or_default();
        let groups = &mut self.groups;
        let found = slots.iter().copied().find(|slot| grouping.in_group(&series.labels, &groups[*slot].0));
        let group = match found {
            Some(group) => group,
            None => {
                // Each group's accumulators count as held samples, as the general path's output would.
                evaluator.hold_samples(self.steps)?;
                groups.push((grouping.group_labels(&series.labels), vec![Accumulator::default(); self.steps]));
                slots.push(groups.len() - 1);
                groups.len() - 1
            }
        };
        let accumulators = &mut groups[group].1;
        for (step, value) in series.points {
            if let Some(accumulator) = accumulators.get_mut(step as usize) {
                accumulator.add(self.op, value);
            }
        }
        Ok(())
    }

    /// The groups with at least one point, in the order their first series came.
    fn into_series(self) -> Vec<StepSeries> {
        let op = self.op;
        self.groups
            .into_iter()
            .map(|(labels, accumulators)| {
                let points = accumulators
                    .iter()
                    .enumerate()
                    .filter(|(_, accumulator)| accumulator.seen)
                    .map(|(step, accumulator)| (step as u32, accumulator.result(op)))
                    .collect();
                StepSeries { labels, points, drop_name: false }
            })
            .filter(|series| !series.points.is_empty())
            .collect()
    }
}

/// The results of a binary operation's left and right operands.
pub(crate) type OperandPair = (Vec<StepSeries>, Vec<StepSeries>);

/// Evaluates the two operands of a binary operation that are both streamed aggregations over one metric
/// (`sum by (job) (rate(x{status=~"5.."}[5m])) / sum by (job) (rate(x[5m]))`) from one read of the store
/// instead of two ([`stream_range_functions_sharing`]): each operand gets the same series in the same
/// order as its own read would give, so the results are identical. `None` (nothing evaluated) when the
/// operands do not have that shape, their selectors differ in range, offset or `@`, neither's matchers
/// are among the other's (a shared read would then read series neither needs), or the query collects
/// per-step statistics (which count each selector's samples).
pub(crate) fn stream_aggregate_pair(
    evaluator: &mut Evaluator<'_>,
    lhs: &Expr,
    rhs: &Expr,
    grid: &Grid,
) -> Result<Option<OperandPair>, QueryError> {
    if evaluator.collect_stats {
        return Ok(None);
    }
    fn shape<'x>(evaluator: &Evaluator<'_>, expr: &'x Expr) -> Option<(SimpleOp, &'x Call, Grouping)> {
        let Expr::Aggregate(aggregate) = unwrap_parens(expr) else { return None };
        let grouping = Grouping::new(aggregate.modifier.as_ref());
        let (op, call) = streamed_shape(evaluator, &aggregate.op.to_string(), aggregate, &grouping)?;
        Some((op, call, grouping))
    }
    let (Some((left_op, left_call, left_grouping)), Some((right_op, right_call, right_grouping))) =
        (shape(evaluator, lhs), shape(evaluator, rhs))
    else {
        return Ok(None);
    };
    let Some(SharedSelection { widest, extra_matchers: mut extra }) =
        shared_range_selection(evaluator, &[left_call, right_call])?
    else {
        return Ok(None);
    };
    let Some(selection) = streamed_range_selector(evaluator, [left_call, right_call][widest]) else {
        return Ok(None);
    };
    let right_extra = extra.pop().unwrap_or_default();
    let left_extra = extra.pop().unwrap_or_default();
    let keep_label = |name: &str| {
        left_grouping.keeps(name)
            || right_grouping.keeps(name)
            || left_extra.iter().chain(&right_extra).any(|matcher| matcher.name == name)
    };
    let steps = grid.steps();
    let mut left_fold = GroupFold::new(left_op, steps);
    let mut right_fold = GroupFold::new(right_op, steps);
    let mut visit_left = |evaluator: &mut Evaluator<'_>, series| left_fold.add(evaluator, &left_grouping, series);
    let mut visit_right = |evaluator: &mut Evaluator<'_>, series| right_fold.add(evaluator, &right_grouping, series);
    let mut calls = [
        SharingCall { call: left_call, extra_matchers: left_extra.clone(), visit: &mut visit_left },
        SharingCall { call: right_call, extra_matchers: right_extra.clone(), visit: &mut visit_right },
    ];
    stream_range_functions_sharing(evaluator, selection, &mut calls, grid, &keep_label)?;
    Ok(Some((left_fold.into_series(), right_fold.into_series())))
}

/// The folding operation and the range function call of an aggregation [`stream_aggregate`] streams.
fn streamed_shape<'a>(
    evaluator: &Evaluator<'_>,
    op: &str,
    aggregate: &'a AggregateExpr,
    grouping: &Grouping,
) -> Option<(SimpleOp, &'a Call)> {
    let op = SimpleOp::parse(op)?;
    let folds_as_it_goes =
        matches!(op, SimpleOp::Sum | SimpleOp::Avg | SimpleOp::Min | SimpleOp::Max | SimpleOp::Count | SimpleOp::Group);
    if !folds_as_it_goes || !grouping.by || aggregate.param.is_some() || evaluator.delayed_name_removal {
        return None;
    }
    let Expr::Call(call) = unwrap_parens(&aggregate.expr) else { return None };
    streamed_range_selector(evaluator, call).map(|_| (op, call))
}

/// Whether `expr` is an aggregation that folds the series of a range function over a selector one at a
/// time as the store reads them (see [`stream_aggregate`]): its evaluation holds its groups' running
/// state and one input series, whatever the length of the grid.
pub(crate) fn aggregation_streams(evaluator: &Evaluator<'_>, expr: &Expr) -> bool {
    let Expr::Aggregate(aggregate) = unwrap_parens(expr) else { return false };
    let grouping = Grouping::new(aggregate.modifier.as_ref());
    streamed_shape(evaluator, &aggregate.op.to_string(), aggregate, &grouping).is_some()
}

/// `by(labels)` or `without(labels)`; no modifier groups everything together.
struct Grouping {
    by: bool,
    names: Vec<String>,
}

impl Grouping {
    fn new(modifier: Option<&LabelModifier>) -> Self {
        match modifier {
            Some(LabelModifier::Include(labels)) => Grouping { by: true, names: labels.labels.clone() },
            Some(LabelModifier::Exclude(labels)) => Grouping { by: false, names: labels.labels.clone() },
            None => Grouping { by: true, names: Vec::new() },
        }
    }

    /// Whether the label `name` is among a series' group labels.
    fn keeps(&self, name: &str) -> bool {
        if self.by {
            self.names.iter().any(|kept| kept == name)
        } else {
            name != METRIC_NAME_LABEL && !self.names.iter().any(|dropped| dropped == name)
        }
    }

    fn group_labels(&self, labels: &Labels) -> Labels {
        let kept = labels.iter().filter(|label| self.keeps(&label.name)).cloned().collect();
        Labels::from_sorted(kept)
    }

    /// A hash of what [`Grouping::group_labels`] returns for `labels`, without building it.
    fn group_hash(&self, labels: &Labels) -> u64 {
        let mut hasher = std::hash::DefaultHasher::new();
        for label in labels.iter().filter(|label| self.keeps(&label.name)) {
            label.name.hash(&mut hasher);
            label.value.hash(&mut hasher);
        }
        hasher.finish()
    }

    /// Whether `labels` belong to the group labelled `group` (built by [`Grouping::group_labels`]).
    fn in_group(&self, labels: &Labels, group: &Labels) -> bool {
        labels.iter().filter(|label| self.keeps(&label.name)).eq(group.iter())
    }

    /// Group index per input series, and the groups' labels in first-seen order.
    fn assign(&self, input: &[StepSeries]) -> (Vec<u32>, Vec<Labels>) {
        let mut index_of: HashMap<Labels, u32> = HashMap::new();
        let mut groups: Vec<Labels> = Vec::new();
        let assignment = input
            .iter()
            .map(|series| {
                let labels = self.group_labels(&series.labels);
                *index_of.entry(labels.clone()).or_insert_with(|| {
                    groups.push(labels);
                    (groups.len() - 1) as u32
                })
            })
            .collect();
        (assignment, groups)
    }
}

/// Running state of one group at one step.
#[derive(Clone, Copy, Default)]
struct Accumulator {
    seen: bool,
    count: f64,
    value: f64,
    compensation: f64,
    mean: f64,
    incremental_mean: bool,
}

impl Accumulator {
    /// Folds `value` in (for quantiles the caller keeps the values); returns whether it was the first.
    fn add(&mut self, op: SimpleOp, value: f64) -> bool {
        if !self.seen {
            *self = Accumulator { seen: true, count: 1.0, value, ..Accumulator::default() };
            if matches!(op, SimpleOp::Stddev | SimpleOp::Stdvar) {
                // A lone NaN or infinity has no defined deviation.
                self.value = if value.is_nan() || value.is_infinite() { f64::NAN } else { 0.0 };
                self.mean = value;
            }
            return true;
        }
        self.count += 1.0;
        match op {
            SimpleOp::Sum => (self.value, self.compensation) = kahan_add(value, self.value, self.compensation),
            SimpleOp::Avg => {
                if !self.incremental_mean {
                    let (sum, compensation) = kahan_add(value, self.value, self.compensation);
                    if !sum.is_infinite() {
                        self.value = sum;
                        self.compensation = compensation;
                        return false;
                    }
                    // The sum overflowed: switch to an incremental mean.
                    self.incremental_mean = true;
                    self.mean = self.value / (self.count - 1.0);
                    self.compensation /= self.count - 1.0;
                }
                let ratio = (self.count - 1.0) / self.count;
                (self.mean, self.compensation) =
                    kahan_add(value / self.count, ratio * self.mean, ratio * self.compensation);
            }
            SimpleOp::Min => {
                if self.value > value || self.value.is_nan() {
                    self.value = value;
                }
            }
            SimpleOp::Max => {
                if self.value < value || self.value.is_nan() {
                    self.value = value;
                }
            }
            SimpleOp::Count | SimpleOp::Group | SimpleOp::Quantile => {}
            SimpleOp::Stddev | SimpleOp::Stdvar => {
                let delta = value - self.mean;
                self.mean += delta / self.count;
                self.value += delta * (value - self.mean);
            }
        }
        false
    }

    /// The group's value at a step (quantiles are computed by the caller from the values it kept).
    fn result(&self, op: SimpleOp) -> f64 {
        match op {
            SimpleOp::Sum => self.value + self.compensation,
            SimpleOp::Avg => {
                if self.incremental_mean {
                    self.mean + self.compensation
                } else {
                    self.value / self.count + self.compensation / self.count
                }
            }
            SimpleOp::Count => self.count,
            SimpleOp::Group => 1.0,
            SimpleOp::Min | SimpleOp::Max => self.value,
            SimpleOp::Stdvar => self.value / self.count,
            SimpleOp::Stddev => (self.value / self.count).sqrt(),
            SimpleOp::Quantile => f64::NAN,
        }
    }
}

/// The aggregations that fold a group into one value, resolved once per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SimpleOp {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Group,
    Stddev,
    Stdvar,
    Quantile,
}

impl SimpleOp {
    fn parse(name: &str) -> Option<SimpleOp> {
        Some(match name {
            "sum" => SimpleOp::Sum,
            "avg" => SimpleOp::Avg,
            "min" => SimpleOp::Min,
            "max" => SimpleOp::Max,
            "count" => SimpleOp::Count,
            "group" => SimpleOp::Group,
            "stddev" => SimpleOp::Stddev,
            "stdvar" => SimpleOp::Stdvar,
            "quantile" => SimpleOp::Quantile,
            _ => return None,
        })
    }
}

#[allow(clippy::too_many_arguments)]
fn aggregate_simple(
    evaluator: &mut Evaluator<'_>,
    op: SimpleOp,
    param_text: &str,
    input: Vec<StepSeries>,
    params: &[f64],
    grouping: &Grouping,
    steps: usize,
) -> Result<Vec<StepSeries>, QueryError> {
    let (assignment, groups) = grouping.assign(&input);
    let per_step = by_step(&input, steps);
    // A group keeps a to-be-dropped metric name (`by (__name__)` with delayed name removal) when any of
    // its members was marked.
    let mut group_drops_name = vec![false; groups.len()];
    for (series, group) in input.iter().zip(&assignment) {
        group_drops_name[*group as usize] |= series.drop_name;
    }
    let mut output: Vec<StepSeries> = groups
        .into_iter()
        .zip(group_drops_name)
        .map(|(labels, drop_name)| {
            let drop_name = drop_name && labels.metric_name().is_some();
            StepSeries { labels, points: Vec::new(), drop_name }
        })
        .collect();
    let mut accumulators = vec![Accumulator::default(); output.len()];
    let mut quantile_values: Vec<Vec<f64>> = vec![Vec::new(); if op == SimpleOp::Quantile { output.len() } else { 0 }];
    for (step, samples) in per_step.iter().enumerate() {
        if samples.is_empty() {
            continue;
        }
        evaluator.check_deadline()?;
        let mut touched: Vec<u32> = Vec::new();
        for (series, value) in samples {
            let group = assignment[*series as usize];
            if accumulators[group as usize].add(op, *value) {
                touched.push(group);
            }
            if op == SimpleOp::Quantile {
                quantile_values[group as usize].push(*value);
            }
        }
        for group in touched {
            let accumulator = &mut accumulators[group as usize];
            let value = match op {
                SimpleOp::Quantile => {
                    let phi = params.get(step).copied().unwrap_or(f64::NAN);
                    let values = std::mem::take(&mut quantile_values[group as usize]);
                    quantile_of(phi, values)
                }
                _ => accumulator.result(op),
            };
            *accumulator = Accumulator::default();
            output[group as usize].points.push((step as u32, value));
        }
    }
    if op == SimpleOp::Quantile
        && let Some(phi) = params.iter().find(|phi| phi.is_nan() || **phi < 0.0 || **phi > 1.0)
    {
        let position = evaluator.position_suffix(&[param_text, "quantile"]);
        evaluator.warn(format!(
            "PromQL warning: quantile value should be between 0 and 1, got {}{position}",
            format_float(*phi)
        ));
    }
    Ok(output.into_iter().filter(|series| !series.points.is_empty()).collect())
}

fn count_values(label: &str, input: Vec<StepSeries>, grouping: &Grouping, steps: usize) -> Vec<StepSeries> {
    let per_step = by_step(&input, steps);
    let group_labels: Vec<Labels> = input.iter().map(|series| grouping.group_labels(&series.labels)).collect();
    let mut index_of: HashMap<Labels, usize> = HashMap::new();
    let mut output: Vec<StepSeries> = Vec::new();
    for (step, samples) in per_step.iter().enumerate() {
        let mut counts: Vec<(usize, f64)> = Vec::new();
        for (series, value) in samples {
            let mut builder: LabelsBuilder = group_labels[*series as usize].to_builder();
            builder.set(label.to_string(), format_float(*value));
            let labels = builder.build();
            let drop_name = input[*series as usize].drop_name && labels.metric_name().is_some();
            let slot = *index_of.entry(labels.clone()).or_insert_with(|| {
                output.push(StepSeries { labels, points: Vec::new(), drop_name: false });
                output.len() - 1
            });
            output[slot].drop_name |= drop_name;
            match counts.iter_mut().find(|(existing, _)| *existing == slot) {
                Some((_, count)) => *count += 1.0,
                None => counts.push((slot, 1.0)),
            }
        }
        for (slot, count) in counts {
            output[slot].points.push((step as u32, count));
        }
    }
    output
}

/// `topk`, `bottomk`, `limitk` and `limit_ratio`: these keep the input series' labels.
#[allow(clippy::too_many_arguments)]
fn aggregate_k(
    evaluator: &mut Evaluator<'_>,
    op: &str,
    param_text: &str,
    input: Vec<StepSeries>,
    params: &[f64],
    grouping: &Grouping,
    steps: usize,
) -> Result<Vec<StepSeries>, QueryError> {
    let (assignment, groups) = grouping.assign(&input);
    let per_step = by_step(&input, steps);
    let mut selected_points: Vec<Vec<(u32, f64)>> = vec![Vec::new(); input.len()];
    // Per step, the order in which series are output (matters for instant queries).
    let mut order: Vec<u32> = Vec::new();
    let ratio_offsets: Vec<f64> = if op == "limit_ratio" {
        input.iter().map(|series| ratio_offset(&series.labels)).collect()
    } else {
        Vec::new()
    };
    if params.iter().any(|param| param.is_nan()) {
        return Err(execution(if op == "limit_ratio" { "Ratio value is NaN" } else { "Parameter value is NaN" }));
    }
    for (step, samples) in per_step.iter().enumerate() {
        if samples.is_empty() {
            continue;
        }
        let param = params.get(step).copied().unwrap_or(f64::NAN);
        if op == "limit_ratio" {
            if param.is_nan() {
                return Err(execution("Ratio value is NaN"));
            }
            let ratio = if !(-1.0..=1.0).contains(&param) {
                let position = evaluator.position_suffix(&[param_text, op]);
                evaluator.warn(format!(
                    "PromQL warning: ratio value should be between -1 and 1, got {}, capping to {}{position}",
                    format_float(param),
                    if param < -1.0 { "-1" } else { "1" }
                ));
                param.clamp(-1.0, 1.0)
            } else {
                param
            };
            for (series, value) in samples {
                let offset = ratio_offsets[*series as usize];
                let keep = (ratio >= 0.0 && offset < ratio) || (ratio < 0.0 && offset >= 1.0 + ratio);
                if keep {
                    selected_points[*series as usize].push((step as u32, *value));
                    if step == 0 {
                        order.push(*series);
                    }
                }
            }
            continue;
        }
        if param.is_nan() {
            return Err(execution("Parameter value is NaN"));
        }
        if param > i64::MAX as f64 || param < i64::MIN as f64 {
            return Err(execution(format!("Scalar value {} overflows int64", crate::value::go_format_v(param))));
        }
        let k = param as i64;
        if k < 1 {
            continue;
        }
        let k = k as usize;
        let mut per_group: Vec<Vec<(u32, f64)>> = vec![Vec::new(); groups.len()];
        for (series, value) in samples {
            per_group[assignment[*series as usize] as usize].push((*series, *value));
        }
        for members in per_group {
            let chosen: Vec<(u32, f64)> = match op {
                "limitk" => members.into_iter().take(k).collect(),
                "topk" | "bottomk" => {
                    let mut sorted = members;
                    let top = op == "topk";
                    sorted.sort_by(|left, right| {
                        let ordering = compare_for_k(left.1, right.1, top);
                        ordering.then_with(|| left.0.cmp(&right.0))
                    });
                    sorted.truncate(k);
                    sorted
                }
                other => return Err(execution(format!("unsupported aggregation {other}"))),
            };
            for (series, value) in chosen {
                selected_points[series as usize].push((step as u32, value));
                if steps == 1 {
                    order.push(series);
                }
            }
        }
    }
    let mut input_labels: Vec<Option<(Labels, bool)>> =
        input.into_iter().map(|series| Some((series.labels, series.drop_name))).collect();
    let mut output = Vec::new();
    if steps == 1 {
        for series in order {
            if let Some((labels, drop_name)) = input_labels[series as usize].take() {
                let points = std::mem::take(&mut selected_points[series as usize]);
                output.push(StepSeries { labels, points, drop_name });
            }
        }
    } else {
        for (series, points) in selected_points.into_iter().enumerate() {
            if points.is_empty() {
                continue;
            }
            if let Some((labels, drop_name)) = input_labels[series].take() {
                output.push(StepSeries { labels, points, drop_name });
            }
        }
    }
    Ok(output)
}

/// Ordering for topk (largest first) or bottomk (smallest first); NaN always sorts last.
fn compare_for_k(left: f64, right: f64, top: bool) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (left.is_nan(), right.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => {
            let ordering = left.partial_cmp(&right).unwrap_or(Ordering::Equal);
            if top { ordering.reverse() } else { ordering }
        }
    }
}

/// A series' position in `[0, 1)` for `limit_ratio`, from a hash of its labels: stable across queries.
fn ratio_offset(labels: &Labels) -> f64 {
    labels.stable_hash() as f64 / u64::MAX as f64
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn topk_ordering_puts_nan_last() {
        let mut values = [1.0, f64::NAN, 3.0];
        values.sort_by(|left, right| compare_for_k(*left, *right, true));
        assert_eq!(values[..2], [3.0, 1.0]);
        assert!(values[2].is_nan());
    }

    #[test]
    fn grouping_without_drops_name() {
        let grouping = Grouping { by: false, names: vec!["instance".into()] };
        let labels = Labels::from_pairs([("__name__", "up"), ("job", "a"), ("instance", "x")]);
        assert_eq!(grouping.group_labels(&labels), Labels::from_pairs([("job", "a")]));
    }
}
