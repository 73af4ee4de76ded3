//! Binary operators: arithmetic, comparison (with `bool`), `atan2`, the set operators `and`/`or`/`unless`,
//! and vector matching with `on`/`ignoring`/`group_left`/`group_right`, as Prometheus' `VectorBinop`.

use std::collections::HashMap;

use oxeye_model::{Labels, LabelsBuilder, METRIC_NAME_LABEL};
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use crate::engine::{Evaluated, Evaluator, Grid, StepSeries, by_step, merge_same_labels};
use crate::error::{QueryError, execution};

/// The operator of a binary expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl BinaryOp {
    fn parse(text: &str) -> Option<BinaryOp> {
        Some(match text {
            "+" => BinaryOp::Add,
            "-" => BinaryOp::Sub,
            "*" => BinaryOp::Mul,
            "/" => BinaryOp::Div,
            "%" => BinaryOp::Mod,
            "^" => BinaryOp::Pow,
            "atan2" => BinaryOp::Atan2,
            "==" => BinaryOp::Eq,
            "!=" => BinaryOp::Ne,
            ">" => BinaryOp::Gt,
            "<" => BinaryOp::Lt,
            ">=" => BinaryOp::Ge,
            "<=" => BinaryOp::Le,
            "and" => BinaryOp::And,
            "or" => BinaryOp::Or,
            "unless" => BinaryOp::Unless,
            _ => return None,
        })
    }

    fn is_comparison(self) -> bool {
        matches!(self, BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Gt | BinaryOp::Lt | BinaryOp::Ge | BinaryOp::Le)
    }

    fn is_set(self) -> bool {
        matches!(self, BinaryOp::And | BinaryOp::Or | BinaryOp::Unless)
    }

    /// Arithmetic drops the metric name; comparisons and set operators keep it.
    fn drops_metric_name(self) -> bool {
        matches!(
            self,
            BinaryOp::Add
                | BinaryOp::Sub
                | BinaryOp::Mul
                | BinaryOp::Div
                | BinaryOp::Mod
                | BinaryOp::Pow
                | BinaryOp::Atan2
        )
    }

    /// Applies the operator to two floats: the result and, for comparisons, whether the pair is kept.
    fn apply(self, left: f64, right: f64) -> (f64, bool) {
        match self {
            BinaryOp::Add => (left + right, true),
            BinaryOp::Sub => (left - right, true),
            BinaryOp::Mul => (left * right, true),
            BinaryOp::Div => (left / right, true),
            BinaryOp::Mod => (go_mod(left, right), true),
            BinaryOp::Pow => (go_pow(left, right), true),
            BinaryOp::Atan2 => (left.atan2(right), true),
            BinaryOp::Eq => (left, left == right),
            BinaryOp::Ne => (left, left != right),
            BinaryOp::Gt => (left, left > right),
            BinaryOp::Lt => (left, left < right),
            BinaryOp::Ge => (left, left >= right),
            BinaryOp::Le => (left, left <= right),
            BinaryOp::And | BinaryOp::Or | BinaryOp::Unless => (left, true),
        }
    }
}

/// Go's `math.Mod`: the result has the sign of the dividend, NaN for a zero divisor or infinite dividend.
pub(crate) fn go_mod(left: f64, right: f64) -> f64 {
    if right == 0.0 || left.is_infinite() || left.is_nan() || right.is_nan() {
        return f64::NAN;
    }
    left % right
}

/// Go's `math.Pow` agrees with Rust's `powf` except that `pow(-1, ±Inf)` is 1 in Go.
pub(crate) fn go_pow(base: f64, exponent: f64) -> f64 {
    if base == -1.0 && exponent.is_infinite() {
        return 1.0;
    }
    base.powf(exponent)
}

pub(crate) fn eval_binary(
    evaluator: &mut Evaluator<'_>,
    binary: &BinaryExpr,
    grid: &Grid,
) -> Result<Evaluated, QueryError> {
    let op_text = binary.op.to_string();
    let op = BinaryOp::parse(&op_text).ok_or_else(|| execution(format!("unknown binary operator {op_text}")))?;
    let return_bool = binary.return_bool();
    let delayed = evaluator.delayed_name_removal;
    let (left, right) = match crate::aggregation::stream_aggregate_pair(evaluator, &binary.lhs, &binary.rhs, grid)? {
        Some((left, right)) => (Evaluated::Vector(left), Evaluated::Vector(right)),
        None => (evaluator.eval(&binary.lhs, grid)?, evaluator.eval(&binary.rhs, grid)?),
    };
    match (left, right) {
        (Evaluated::Scalar(left), Evaluated::Scalar(right)) => {
            let values = left
                .iter()
                .zip(right.iter())
                .map(|(left, right)| {
                    let (value, keep) = op.apply(*left, *right);
                    if op.is_comparison() { if keep { 1.0 } else { 0.0 } } else { value }
                })
                .collect();
            Ok(Evaluated::Scalar(values))
        }
        (Evaluated::Vector(vector), Evaluated::Scalar(scalar)) => {
            Ok(Evaluated::Vector(vector_scalar(op, vector, &scalar, false, return_bool, delayed)?))
        }
        (Evaluated::Scalar(scalar), Evaluated::Vector(vector)) => {
            Ok(Evaluated::Vector(vector_scalar(op, vector, &scalar, true, return_bool, delayed)?))
        }
        (Evaluated::Vector(left), Evaluated::Vector(right)) => {
            let modifier = binary.modifier.as_ref();
            let matching = modifier.and_then(|modifier| modifier.matching.as_ref());
            let cardinality =
                modifier.map(|modifier| modifier.card.clone()).unwrap_or(VectorMatchCardinality::OneToOne);
            let fill =
                modifier.map(|modifier| (modifier.fill_values.lhs, modifier.fill_values.rhs)).unwrap_or_default();
            let matching = Matching::new(matching);
            let steps = grid.steps();
            let result = if op.is_set() {
                set_operation(op, left, right, &matching, steps)?
            } else {
                let options =
                    VectorMatchOptions { cardinality: &cardinality, fill, return_bool, delayed_name_removal: delayed };
                vector_vector(op, left, right, &matching, &options, steps)?
            };
            Ok(Evaluated::Vector(result))
        }
        _ => Err(execution("binary operators are only allowed between scalars and instant vectors")),
    }
}

fn vector_scalar(
    op: BinaryOp,
    vector: Vec<StepSeries>,
    scalar: &[f64],
    scalar_on_left: bool,
    return_bool: bool,
    delayed_name_removal: bool,
) -> Result<Vec<StepSeries>, QueryError> {
    let drop_name = op.drops_metric_name() || return_bool;
    let mut output = Vec::with_capacity(vector.len());
    for series in vector {
        let mut points = Vec::with_capacity(series.points.len());
        for (step, sample_value) in series.points {
            let scalar_value = scalar.get(step as usize).copied().unwrap_or(f64::NAN);
            let (left, right) =
                if scalar_on_left { (scalar_value, sample_value) } else { (sample_value, scalar_value) };
            let (mut value, mut keep) = op.apply(left, right);
            // A comparison keeps the vector's value even when the scalar is on the left.
            if op.is_comparison() && scalar_on_left {
                value = sample_value;
            }
            if return_bool {
                value = if keep { 1.0 } else { 0.0 };
                keep = true;
            }
            if keep {
                points.push((step, value));
            }
        }
        if points.is_empty() {
            continue;
        }
        if drop_name && delayed_name_removal {
            output.push(StepSeries { labels: series.labels, points, drop_name: true });
        } else if drop_name {
            output.push(StepSeries {
                labels: crate::engine::drop_metric_name(series.labels),
                points,
                drop_name: false,
            });
        } else {
            output.push(StepSeries { labels: series.labels, points, drop_name: series.drop_name });
        }
    }
    if drop_name && !delayed_name_removal { merge_same_labels(output) } else { Ok(output) }
}

/// How two series are matched: `on(labels)`, `ignoring(labels)`, or all labels but the name.
pub(crate) struct Matching {
    on: bool,
    names: Vec<String>,
}

impl Matching {
    fn new(modifier: Option<&LabelModifier>) -> Self {
        match modifier {
            Some(LabelModifier::Include(labels)) => Matching { on: true, names: labels.labels.clone() },
            Some(LabelModifier::Exclude(labels)) => Matching { on: false, names: labels.labels.clone() },
            None => Matching { on: false, names: Vec::new() },
        }
    }

    /// The match-group signature of a series: its labels restricted as the matching says.
    fn signature(&self, labels: &Labels) -> Labels {
        let kept = labels
            .iter()
            .filter(|label| {
                if self.on {
                    self.names.iter().any(|name| name == &label.name)
                } else {
                    label.name != METRIC_NAME_LABEL && !self.names.iter().any(|name| name == &label.name)
                }
            })
            .cloned()
            .collect();
        Labels::from_sorted(kept)
    }
}

fn set_operation(
    op: BinaryOp,
    left: Vec<StepSeries>,
    right: Vec<StepSeries>,
    matching: &Matching,
    steps: usize,
) -> Result<Vec<StepSeries>, QueryError> {
    let left_signatures: Vec<Labels> = left.iter().map(|series| matching.signature(&series.labels)).collect();
    let right_signatures: Vec<Labels> = right.iter().map(|series| matching.signature(&series.labels)).collect();
    // Interned signature ids make the per-step sets cheap.
    let mut ids: HashMap<Labels, u32> = HashMap::new();
    let mut intern = |signature: &Labels| -> u32 {
        let next = ids.len() as u32;
        *ids.entry(signature.clone()).or_insert(next)
    };
    let left_ids: Vec<u32> = left_signatures.iter().map(&mut intern).collect();
    let right_ids: Vec<u32> = right_signatures.iter().map(&mut intern).collect();
    let signature_count = ids.len();
    let left_by_step = by_step(&left, steps);
    let right_by_step = by_step(&right, steps);
    let mut left_points: Vec<Vec<(u32, f64)>> = vec![Vec::new(); left.len()];
    let mut right_points: Vec<Vec<(u32, f64)>> = vec![Vec::new(); right.len()];
    let mut seen = vec![false; signature_count];
    for step in 0..steps {
        let lefts = &left_by_step[step];
        let rights = &right_by_step[step];
        match op {
            BinaryOp::And | BinaryOp::Unless => {
                for (index, _) in rights {
                    seen[right_ids[*index as usize] as usize] = true;
                }
                for (index, value) in lefts {
                    let present = seen[left_ids[*index as usize] as usize];
                    if present == (op == BinaryOp::And) {
                        left_points[*index as usize].push((step as u32, *value));
                    }
                }
                for (index, _) in rights {
                    seen[right_ids[*index as usize] as usize] = false;
                }
            }
            _ => {
                for (index, value) in lefts {
                    seen[left_ids[*index as usize] as usize] = true;
                    left_points[*index as usize].push((step as u32, *value));
                }
                for (index, value) in rights {
                    if !seen[right_ids[*index as usize] as usize] {
                        right_points[*index as usize].push((step as u32, *value));
                    }
                }
                for (index, _) in lefts {
                    seen[left_ids[*index as usize] as usize] = false;
                }
            }
        }
    }
    let mut output: Vec<StepSeries> = Vec::new();
    for (series, points) in left.into_iter().zip(left_points) {
        if !points.is_empty() {
            output.push(StepSeries { labels: series.labels, points, drop_name: series.drop_name });
        }
    }
    for (series, points) in right.into_iter().zip(right_points) {
        if !points.is_empty() {
            output.push(StepSeries { labels: series.labels, points, drop_name: series.drop_name });
        }
    }
    merge_same_labels(output)
}

/// The modifiers of a vector-to-vector operation besides `on`/`ignoring`.
struct VectorMatchOptions<'c> {
    cardinality: &'c VectorMatchCardinality,
    /// `fill_left` and `fill_right` values (experimental `fill` modifiers): used in place of a missing
    /// left or right operand.
    fill: (Option<f64>, Option<f64>),
    return_bool: bool,
    delayed_name_removal: bool,
}

fn vector_vector(
    op: BinaryOp,
    left: Vec<StepSeries>,
    right: Vec<StepSeries>,
    matching: &Matching,
    options: &VectorMatchOptions<'_>,
    steps: usize,
) -> Result<Vec<StepSeries>, QueryError> {
    let cardinality = options.cardinality;
    let return_bool = options.return_bool;
    let delayed_name_removal = options.delayed_name_removal;
    let one_to_many = matches!(cardinality, VectorMatchCardinality::OneToMany(_));
    let include: Vec<String> = match cardinality {
        VectorMatchCardinality::ManyToOne(labels) | VectorMatchCardinality::OneToMany(labels) => labels.labels.clone(),
        _ => Vec::new(),
    };
    let one_to_one = matches!(cardinality, VectorMatchCardinality::OneToOne);
    // The "many" side is walked, the "one" side is looked up; group_right swaps the sides.
    let (many, one) = if one_to_many { (&right, &left) } else { (&left, &right) };
    let mut ids: HashMap<Labels, u32> = HashMap::new();
    let many_ids: Vec<u32> = many
        .iter()
        .map(|series| {
            let next = ids.len() as u32;
            *ids.entry(matching.signature(&series.labels)).or_insert(next)
        })
        .collect();
    let one_ids: Vec<u32> = one
        .iter()
        .map(|series| {
            let next = ids.len() as u32;
            *ids.entry(matching.signature(&series.labels)).or_insert(next)
        })
        .collect();
    // Prometheus applies `fill_left`/`fill_right` to the sides as they are after `group_right` swaps
    // them, so with `group_right` the left fill value stands in for a missing right operand.
    let (fill_left, fill_right) = if one_to_many { (options.fill.1, options.fill.0) } else { options.fill };
    let (fill_many, fill_one) = if one_to_many { (fill_right, fill_left) } else { (fill_left, fill_right) };
    let mut one_matched: Vec<bool> = vec![false; ids.len()];
    let mut last_pairing: Vec<Option<(u32, usize)>> = vec![None; many.len()];
    let many_by_step = by_step(many, steps);
    let one_by_step = by_step(one, steps);
    // Arithmetic removes the name right away even with delayed name removal (Prometheus'
    // `resultMetric`); `bool` comparisons only mark it then.
    let drop_name = op.drops_metric_name() || (return_bool && !delayed_name_removal);
    let mark_name = return_bool && delayed_name_removal;

    let mut output_index: HashMap<(u32, u32), usize> = HashMap::new();
    let mut output: Vec<StepSeries> = Vec::new();
    let mut one_at_signature: Vec<Option<(u32, f64)>> = vec![None; ids.len()];
    let mut matched_signature: Vec<bool> = vec![false; ids.len()];
    for step in 0..steps {
        let ones = &one_by_step[step];
        for (index, value) in ones {
            let signature = one_ids[*index as usize];
            if let Some((previous, _)) = one_at_signature[signature as usize] {
                let side = if one_to_many { "left" } else { "right" };
                return Err(execution(format!(
                    "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                    prometheus_labels(&matching.signature(&one[*index as usize].labels)),
                    prometheus_labels(&one[previous as usize].labels),
                    prometheus_labels(&one[*index as usize].labels),
                )));
            }
            one_at_signature[signature as usize] = Some((*index, *value));
        }
        for (many_index, many_value) in &many_by_step[step] {
            let signature = many_ids[*many_index as usize];
            let (one_index, one_value) = match (one_at_signature[signature as usize], fill_one) {
                (Some(found), _) => {
                    one_matched[signature as usize] = true;
                    found
                }
                (None, Some(fill)) => (FILLED, fill),
                (None, None) => continue,
            };
            if one_to_one && one_index != FILLED {
                if matched_signature[signature as usize] {
                    return Err(execution(
                        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
                    ));
                }
                matched_signature[signature as usize] = true;
            }
            let (left_value, right_value) =
                if one_to_many { (one_value, *many_value) } else { (*many_value, one_value) };
            let (mut value, mut keep) = op.apply(left_value, right_value);
            if return_bool {
                value = if keep { 1.0 } else { 0.0 };
                keep = true;
            }
            if !keep {
                continue;
            }
            let key = (*many_index, one_index);
            // A series usually keeps its partner from step to step: check the last pairing before hashing.
            let cached = last_pairing[*many_index as usize].filter(|(partner, _)| *partner == one_index);
            let output_slot = match cached.map(|(_, slot)| slot).or_else(|| output_index.get(&key).copied()) {
                Some(slot) => slot,
                None => {
                    let empty = Labels::empty();
                    let one_labels = one.get(one_index as usize).map(|series| &series.labels).unwrap_or(&empty);
                    let labels = result_labels(
                        &many[*many_index as usize].labels,
                        one_labels,
                        matching,
                        one_to_one,
                        &include,
                        drop_name,
                    );
                    let drop_flag = mark_name || many[*many_index as usize].drop_name;
                    output.push(StepSeries { labels, points: Vec::new(), drop_name: drop_flag });
                    output_index.insert(key, output.len() - 1);
                    output.len() - 1
                }
            };
            last_pairing[*many_index as usize] = Some((one_index, output_slot));
            if !one_to_one && output[output_slot].points.last().is_some_and(|(last_step, _)| *last_step == step as u32)
            {
                return Err(execution("multiple matches for labels: grouping labels must ensure unique matches"));
            }
            output[output_slot].points.push((step as u32, value));
        }
        if let Some(fill) = fill_many {
            // A match group present only on the "one" side: the result carries the group's labels.
            for (one_index, one_value) in ones {
                let signature = one_ids[*one_index as usize];
                if one_matched[signature as usize] {
                    continue;
                }
                let (left_value, right_value) = if one_to_many { (*one_value, fill) } else { (fill, *one_value) };
                let (mut value, mut keep) = op.apply(left_value, right_value);
                if return_bool {
                    value = if keep { 1.0 } else { 0.0 };
                    keep = true;
                }
                if !keep {
                    continue;
                }
                let key = (FILLED, *one_index);
                let output_slot = match output_index.get(&key) {
                    Some(slot) => *slot,
                    None => {
                        let mut builder = matching.signature(&one[*one_index as usize].labels).to_builder();
                        if drop_name {
                            builder.delete(METRIC_NAME_LABEL);
                        }
                        output.push(StepSeries { labels: builder.build(), points: Vec::new(), drop_name: mark_name });
                        output_index.insert(key, output.len() - 1);
                        output.len() - 1
                    }
                };
                output[output_slot].points.push((step as u32, value));
            }
        }
        for (index, _) in ones {
            let signature = one_ids[*index as usize];
            one_at_signature[signature as usize] = None;
            matched_signature[signature as usize] = false;
            one_matched[signature as usize] = false;
        }
        for (many_index, _) in &many_by_step[step] {
            matched_signature[many_ids[*many_index as usize] as usize] = false;
        }
    }
    let merged = merge_same_labels(output);
    match merged {
        Err(_) if !one_to_one => {
            Err(execution("multiple matches for labels: grouping labels must ensure unique matches"))
        }
        other => other,
    }
}

/// Stands for the missing series of a side filled by a `fill` modifier.
const FILLED: u32 = u32::MAX;

/// Labels as Prometheus' `Labels.String()` prints them in error messages: `{__name__="up", job="a"}`.
pub(crate) fn prometheus_labels(labels: &Labels) -> String {
    let parts: Vec<String> = labels.iter().map(|label| format!("{}={:?}", label.name, label.value)).collect();
    format!("{{{}}}", parts.join(", "))
}

/// The labels of a binary operation's result, as Prometheus' `resultMetric`.
fn result_labels(
    many: &Labels,
    one: &Labels,
    matching: &Matching,
    one_to_one: bool,
    include: &[String],
    drop_name: bool,
) -> Labels {
    let mut builder: LabelsBuilder = many.to_builder();
    if drop_name {
        builder.delete(METRIC_NAME_LABEL);
    }
    if one_to_one {
        if matching.on {
            let kept: Vec<String> = many
                .iter()
                .filter(|label| !matching.names.iter().any(|name| name == &label.name))
                .map(|label| label.name.clone())
                .collect();
            for name in kept {
                builder.delete(&name);
            }
        } else {
            for name in &matching.names {
                builder.delete(name);
            }
        }
    }
    for name in include {
        match one.get(name) {
            Some(value) => {
                builder.set(name.clone(), value.to_string());
            }
            None => {
                builder.delete(name);
            }
        }
    }
    builder.build()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn go_float_helpers() {
        assert!(go_mod(1.0, 0.0).is_nan());
        assert_eq!(go_mod(-7.0, 3.0), -1.0);
        assert_eq!(go_pow(-1.0, f64::INFINITY), 1.0);
        assert_eq!(go_pow(2.0, 10.0), 1024.0);
    }

    #[test]
    fn on_signature_keeps_only_listed_labels() {
        let matching = Matching { on: true, names: vec!["job".into()] };
        let labels = Labels::from_pairs([("__name__", "up"), ("job", "a"), ("instance", "x")]);
        assert_eq!(matching.signature(&labels), Labels::from_pairs([("job", "a")]));
        let ignoring = Matching { on: false, names: vec!["instance".into()] };
        assert_eq!(ignoring.signature(&labels), Labels::from_pairs([("job", "a")]));
    }
}
