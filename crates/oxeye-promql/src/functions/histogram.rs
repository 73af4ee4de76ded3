//! `histogram_quantile` over classic histograms (series of cumulative `le` buckets), as Prometheus'
//! `BucketQuantile`.

use std::collections::HashMap;

use oxeye_model::Labels;
use promql_parser::parser::Expr;

use super::arg;
use crate::engine::{Evaluated, Evaluator, Grid, StepSeries, by_step};
use crate::error::QueryError;
use crate::value::format_float;

pub(super) fn histogram_quantile(
    evaluator: &mut Evaluator<'_>,
    args: &[&Expr],
    grid: &Grid,
) -> Result<Evaluated, QueryError> {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bucket_quantile_interpolates_linearly() {
        let mut buckets = vec![(1.0, 10.0), (2.0, 20.0), (f64::INFINITY, 20.0)];
        assert_eq!(bucket_quantile(0.5, &mut buckets), (1.0, false));
        let mut buckets = vec![(1.0, 10.0), (2.0, 20.0), (f64::INFINITY, 20.0)];
        assert_eq!(bucket_quantile(0.75, &mut buckets), (1.5, false));
    }
}
