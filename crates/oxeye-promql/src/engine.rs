//! The engine: parses a query, evaluates it over a [`Querier`] on a grid of steps, and shapes the result.
//!
//! Evaluation follows Prometheus' `promql/engine.go`: every expression is evaluated for all steps of the
//! query at once. Selectors read their series once for the whole time range and walk them with cursors;
//! binary operators and aggregations then work step by step on the evaluated operands.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use oxeye_model::storage::Querier;
use oxeye_model::{Labels, MatchOp, Matcher, Sample, is_stale_nan};
use promql_parser::label::MatchOp as ParserMatchOp;
use promql_parser::parser::{self, AtModifier, Expr, MatrixSelector, Offset, VectorSelector};

use crate::error::{QueryError, execution};
use crate::parse::parse_query;
use crate::stats::{QueryStats, SampleCounters};
use crate::value::{QueryResult, RangeSeries, Value, VectorSample};

/// Resolution of subqueries written without a step (`foo[1h:]`), as Prometheus' default global
/// evaluation interval.
pub const DEFAULT_SUBQUERY_STEP_MS: i64 = 60_000;

/// The lookback delta used when [`EngineOptions::lookback_delta_ms`] is not positive: 5 minutes.
pub const DEFAULT_LOOKBACK_DELTA_MS: i64 = 300_000;

/// The most points per series a range query may return, as Prometheus' HTTP API enforces.
pub const MAX_POINTS_PER_SERIES: i64 = 11_000;

/// Engine settings, with Prometheus' defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineOptions {
    /// How far back an instant selector looks for the latest sample, in milliseconds (default 5 minutes,
    /// Prometheus `--query.lookback-delta`; zero or less means the default).
    pub lookback_delta_ms: i64,
    /// The most samples a query may hold in memory at once (default 50,000,000, Prometheus
    /// `--query.max-samples`). Counted as Prometheus does in spirit: the points of the instant vectors
    /// produced so far plus the raw samples a range selector holds while its function runs; exceeding
    /// it fails the query with [`QueryError::TooManySamples`].
    pub max_samples: usize,
    /// The longest a query may run (default 2 minutes, Prometheus `--query.timeout`).
    pub timeout: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta_ms: DEFAULT_LOOKBACK_DELTA_MS,
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
        }
    }
}

/// The PromQL engine. Stateless apart from its options; one engine serves any number of queries.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    options: EngineOptions,
    delayed_name_removal: bool,
}

impl Engine {
    /// An engine with `options`.
    pub fn new(options: EngineOptions) -> Self {
        Engine { options, delayed_name_removal: false }
    }

    /// Turns on delayed `__name__` removal (Prometheus' `promql-delayed-name-removal` feature, which its
    /// PromQL test suite runs with): functions and operators that drop the metric name only mark it, and
    /// it is removed when the result is returned. `label_replace` can then still read or keep the name,
    /// and `sum by (__name__)` groups by it. Off by default, as in Prometheus.
    pub fn with_delayed_name_removal(mut self, enabled: bool) -> Self {
        self.delayed_name_removal = enabled;
        self
    }

    /// The engine's options.
    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// Evaluates `query` at `time_ms` (milliseconds since the epoch), as Prometheus' `/api/v1/query`.
    ///
    /// Instant vectors carry `time_ms` as their timestamp; range selectors and subqueries return a
    /// [`Value::Matrix`] of raw samples.
    ///
    /// # Errors
    /// [`QueryError::Parse`] for invalid PromQL, [`QueryError::Execution`] when evaluation fails,
    /// [`QueryError::Timeout`], [`QueryError::TooManySamples`], [`QueryError::Storage`].
    pub fn instant_query(&self, querier: &dyn Querier, query: &str, time_ms: i64) -> Result<QueryResult, QueryError> {
        let expr = parse_query(query)?;
        self.instant_query_expr(querier, &expr, query, time_ms)
    }

    /// As [`Engine::instant_query`] for an already parsed expression; `query` is its text, used only for
    /// the positions in annotations.
    ///
    /// # Errors
    /// As [`Engine::instant_query`], without parse errors.
    pub fn instant_query_expr(
        &self,
        querier: &dyn Querier,
        expr: &Expr,
        query: &str,
        time_ms: i64,
    ) -> Result<QueryResult, QueryError> {
        self.instant_query_inner(querier, expr, query, time_ms, false).map(|(result, _)| result)
    }

    /// As [`Engine::instant_query`], also returning the query's [`QueryStats`] (Prometheus `stats=all`).
    /// Counting samples costs a little extra time, so the plain methods do not.
    ///
    /// # Errors
    /// As [`Engine::instant_query`].
    pub fn instant_query_with_stats(
        &self,
        querier: &dyn Querier,
        query: &str,
        time_ms: i64,
    ) -> Result<(QueryResult, QueryStats), QueryError> {
        let expr = parse_query(query)?;
        self.instant_query_inner(querier, &expr, query, time_ms, true)
    }

    fn instant_query_inner(
        &self,
        querier: &dyn Querier,
        expr: &Expr,
        query: &str,
        time_ms: i64,
        collect_stats: bool,
    ) -> Result<(QueryResult, QueryStats), QueryError> {
        let started = Instant::now();
        let mut evaluator = Evaluator::new(querier, &self.options, query, time_ms, time_ms, 0);
        evaluator.delayed_name_removal = self.delayed_name_removal;
        evaluator.collect_stats = collect_stats;
        let grid = Grid { start_ms: time_ms, end_ms: time_ms, step_ms: 1 };
        let evaluated = remove_marked_names(evaluator.eval(expr, &grid)?)?;
        let value = match evaluated {
            Evaluated::Scalar(values) => {
                Value::Scalar { timestamp_ms: time_ms, value: values.first().copied().unwrap_or(f64::NAN) }
            }
            Evaluated::String(value) => Value::String { timestamp_ms: time_ms, value },
            Evaluated::Vector(series) => Value::Vector(
                series
                    .into_iter()
                    .filter_map(|series| {
                        let value = series.points.first()?.1;
                        Some(VectorSample { labels: series.labels, timestamp_ms: time_ms, value })
                    })
                    .collect(),
            ),
            Evaluated::Matrix(series) => Value::Matrix(
                series
                    .into_iter()
                    .filter(|series| !series.samples.is_empty())
                    .map(|series| RangeSeries { labels: series.labels, samples: series.samples })
                    .collect(),
            ),
        };
        let grid_times = [time_ms];
        Ok(evaluator.finish(value, started, Duration::ZERO, &grid_times))
    }

    /// Evaluates `query` at every step from `start_ms` to `end_ms` inclusive, `step_ms` apart, as
    /// Prometheus' `/api/v1/query_range`. The result is always a [`Value::Matrix`] sorted by labels
    /// (a scalar becomes one series without labels).
    ///
    /// # Errors
    /// [`QueryError::BadParameter`] when `step_ms <= 0`, `end_ms < start_ms` or the range has more than
    /// 11,000 steps; [`QueryError::Execution`] when the expression is a string or range vector; otherwise
    /// as [`Engine::instant_query`].
    pub fn range_query(
        &self,
        querier: &dyn Querier,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<QueryResult, QueryError> {
        // Parameters are checked before the query is parsed, as Prometheus' HTTP API does.
        validate_range(start_ms, end_ms, step_ms)?;
        let expr = parse_query(query)?;
        self.range_query_expr(querier, &expr, query, start_ms, end_ms, step_ms)
    }

    /// As [`Engine::range_query`] for an already parsed expression; `query` is its text, used only for
    /// the positions in annotations.
    ///
    /// # Errors
    /// As [`Engine::range_query`], without parse errors.
    pub fn range_query_expr(
        &self,
        querier: &dyn Querier,
        expr: &Expr,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<QueryResult, QueryError> {
        self.range_query_inner(querier, expr, query, start_ms, end_ms, step_ms, false).map(|(result, _)| result)
    }

    /// As [`Engine::range_query`], also returning the query's [`QueryStats`] (Prometheus `stats=all`).
    ///
    /// # Errors
    /// As [`Engine::range_query`].
    pub fn range_query_with_stats(
        &self,
        querier: &dyn Querier,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<(QueryResult, QueryStats), QueryError> {
        validate_range(start_ms, end_ms, step_ms)?;
        let expr = parse_query(query)?;
        self.range_query_inner(querier, &expr, query, start_ms, end_ms, step_ms, true)
    }

    #[allow(clippy::too_many_arguments)]
    fn range_query_inner(
        &self,
        querier: &dyn Querier,
        expr: &Expr,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        collect_stats: bool,
    ) -> Result<(QueryResult, QueryStats), QueryError> {
        let started = Instant::now();
        validate_range(start_ms, end_ms, step_ms)?;
        match expr.value_type() {
            parser::value::ValueType::Vector | parser::value::ValueType::Scalar => {}
            other => {
                let name = if other == parser::value::ValueType::String { "string" } else { "range vector" };
                return Err(execution(format!(
                    "invalid expression type \"{name}\" for range query, must be Scalar or instant Vector"
                )));
            }
        }
        let mut evaluator = Evaluator::new(querier, &self.options, query, start_ms, end_ms, step_ms);
        evaluator.delayed_name_removal = self.delayed_name_removal;
        evaluator.collect_stats = collect_stats;
        let grid = Grid { start_ms, end_ms, step_ms };
        let evaluated = evaluator.eval_in_slices(expr, &grid)?;
        let mut matrix = match evaluated {
            Evaluated::Scalar(values) => vec![RangeSeries {
                labels: Labels::empty(),
                samples: values
                    .iter()
                    .enumerate()
                    .map(|(step, value)| Sample { timestamp_ms: grid.timestamp(step), value: *value })
                    .collect(),
            }],
            Evaluated::Vector(series) => series
                .into_iter()
                .filter(|series| !series.points.is_empty())
                .map(|series| RangeSeries {
                    labels: series.labels,
                    samples: series
                        .points
                        .iter()
                        .map(|(step, value)| Sample { timestamp_ms: grid.timestamp(*step as usize), value: *value })
                        .collect(),
                })
                .collect(),
            Evaluated::String(_) | Evaluated::Matrix(_) => {
                return Err(execution("invalid expression type for range query, must be Scalar or instant Vector"));
            }
        };
        let sort_started = Instant::now();
        matrix.sort_by(|left, right| left.labels.cmp(&right.labels));
        let sort_time = sort_started.elapsed();
        let grid_times: Vec<i64> =
            if collect_stats { (0..grid.steps()).map(|step| grid.timestamp(step)).collect() } else { Vec::new() };
        Ok(evaluator.finish(Value::Matrix(matrix), started, sort_time, &grid_times))
    }
}

/// Removes the metric names marked for delayed removal, failing when two series then share labels.
fn remove_marked_names(evaluated: Evaluated) -> Result<Evaluated, QueryError> {
    match evaluated {
        Evaluated::Vector(series) if series.iter().any(|one| one.drop_name) => {
            let renamed = series
                .into_iter()
                .map(|one| StepSeries {
                    labels: if one.drop_name { drop_metric_name(one.labels) } else { one.labels },
                    points: one.points,
                    drop_name: false,
                })
                .collect();
            Ok(Evaluated::Vector(merge_same_labels(renamed)?))
        }
        Evaluated::Matrix(series) if series.iter().any(|one| one.drop_name) => {
            let renamed: Vec<RawSeries> = series
                .into_iter()
                .map(|one| RawSeries {
                    labels: if one.drop_name { drop_metric_name(one.labels) } else { one.labels },
                    samples: one.samples,
                    drop_name: false,
                })
                .collect();
            let mut seen = std::collections::HashSet::with_capacity(renamed.len());
            if !renamed.iter().all(|one| seen.insert(&one.labels)) {
                return Err(execution("vector cannot contain metrics with the same labelset"));
            }
            Ok(Evaluated::Matrix(renamed))
        }
        other => Ok(other),
    }
}

/// Range queries are evaluated in slices of at most this much time, so that a selector holds the
/// samples of one slice (plus its window) rather than of the whole range: a 24 h dashboard panel then
/// needs about a twelfth of the memory, at the cost of one more index lookup per slice. Subqueries
/// evaluate their inner expression in slices of the same length.
const RANGE_SLICE_MS: i64 = 2 * 3600 * 1000;

/// A query's slices are at least this many times its longest subquery range: each slice evaluates the
/// subquery's inner expression over the slice plus that range again, so with 1 h subqueries 4 h slices
/// repeat a quarter of the inner work where 2 h slices would repeat half. The inner evaluation is
/// itself sliced, so the longer outer slice does not hold more samples at once.
const SLICES_PER_SUBQUERY_RANGE: i64 = 4;

/// Slices of a query whose every selector is read by a streamed aggregation ([`holds_groups_only`]) span
/// at least this many steps. Such a query never holds a selector's samples beyond one series', so the
/// slices' purpose is the aggregation's running state (groups × steps of the slice), while each slice
/// boundary costs a fresh index lookup and the chunks across it inflated and decoded twice (a 24 h range
/// at 60 s steps in 2 h slices decoded about a quarter of its chunks twice). 1,440 steps: a whole 24 h
/// range at 60 s steps, 6 h slices at 15 s steps.
const STREAMED_SLICE_STEPS: i64 = 1440;

/// Whether `expr` reads every selector in it through a streamed aggregation
/// ([`crate::aggregation::aggregation_streams`]), so its evaluation holds groups' results but never a
/// selector's series: literals, and operators and functions over such expressions.
fn holds_groups_only(evaluator: &Evaluator<'_>, expr: &Expr) -> bool {
    match expr {
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => true,
        Expr::Paren(paren) => holds_groups_only(evaluator, &paren.expr),
        Expr::Unary(unary) => holds_groups_only(evaluator, &unary.expr),
        Expr::Binary(binary) => holds_groups_only(evaluator, &binary.lhs) && holds_groups_only(evaluator, &binary.rhs),
        Expr::Aggregate(aggregate) => {
            crate::aggregation::aggregation_streams(evaluator, expr)
                || (aggregate.param.as_deref().is_none_or(|param| holds_groups_only(evaluator, param))
                    && holds_groups_only(evaluator, &aggregate.expr))
        }
        Expr::Call(call) => call.args.args.iter().all(|argument| holds_groups_only(evaluator, argument)),
        Expr::VectorSelector(_) | Expr::MatrixSelector(_) | Expr::Subquery(_) | Expr::Extension(_) => false,
    }
}

/// Whether a sliced evaluation is the query's own (its slices count towards the query's per-step stats
/// and metric names marked for removal are removed) or a subquery's inner one (the names stay marked
/// until the outer query returns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SliceLevel {
    Query,
    Subquery,
}

/// The longest range of any subquery in `expr`, in milliseconds (0 when there is none).
fn longest_subquery_range_ms(expr: &Expr) -> i64 {
    match expr {
        Expr::Subquery(subquery) => duration_ms(subquery.range).max(longest_subquery_range_ms(&subquery.expr)),
        Expr::Paren(paren) => longest_subquery_range_ms(&paren.expr),
        Expr::Unary(unary) => longest_subquery_range_ms(&unary.expr),
        Expr::Binary(binary) => longest_subquery_range_ms(&binary.lhs).max(longest_subquery_range_ms(&binary.rhs)),
        Expr::Aggregate(aggregate) => longest_subquery_range_ms(&aggregate.expr)
            .max(aggregate.param.as_deref().map(longest_subquery_range_ms).unwrap_or(0)),
        Expr::Call(call) => {
            call.args.args.iter().map(|argument| longest_subquery_range_ms(argument)).max().unwrap_or(0)
        }
        _ => 0,
    }
}

impl Evaluator<'_> {
    /// Evaluates the query's `expr` over `grid` slice by slice (see [`RANGE_SLICE_MS`] and
    /// [`SLICES_PER_SUBQUERY_RANGE`]) and joins the slices.
    fn eval_in_slices(&mut self, expr: &Expr, grid: &Grid) -> Result<Evaluated, QueryError> {
        let mut slice_ms =
            RANGE_SLICE_MS.max(longest_subquery_range_ms(expr).saturating_mul(SLICES_PER_SUBQUERY_RANGE));
        if holds_groups_only(self, expr) {
            slice_ms = slice_ms.max(grid.step_ms.saturating_mul(STREAMED_SLICE_STEPS));
        }
        self.eval_sliced(expr, grid, slice_ms, SliceLevel::Query)
    }

    /// Evaluates `expr` over `grid` in slices of at most `slice_ms` and joins them. Every step of PromQL
    /// depends only on the data in its own windows (subqueries align their inner steps to absolute time),
    /// so the joined result equals a single evaluation over the whole grid.
    fn eval_sliced(
        &mut self,
        expr: &Expr,
        grid: &Grid,
        slice_ms: i64,
        level: SliceLevel,
    ) -> Result<Evaluated, QueryError> {
        let finish = |evaluated: Evaluated| match level {
            SliceLevel::Query => remove_marked_names(evaluated),
            SliceLevel::Subquery => Ok(evaluated),
        };
        let total_steps = grid.steps();
        let slice_steps = usize::try_from((slice_ms / grid.step_ms).max(1)).unwrap_or(usize::MAX);
        if total_steps <= slice_steps {
            return finish(self.eval(expr, grid)?);
        }
        let mut scalar: Option<Vec<f64>> = None;
        let mut merged: Vec<StepSeries> = Vec::new();
        let mut index_of: HashMap<Labels, usize> = HashMap::new();
        let mut first_step = 0usize;
        while first_step < total_steps {
            let last_step = first_step.saturating_add(slice_steps).min(total_steps) - 1;
            let slice =
                Grid { start_ms: grid.timestamp(first_step), end_ms: grid.timestamp(last_step), step_ms: grid.step_ms };
            if level == SliceLevel::Query {
                self.counters.step_offset = first_step;
            }
            let enclosing_later_slices = self.later_slices;
            self.later_slices = enclosing_later_slices || last_step + 1 < total_steps;
            let evaluated = self.eval(expr, &slice);
            self.later_slices = enclosing_later_slices;
            if level == SliceLevel::Query {
                self.counters.step_offset = 0;
            }
            match finish(evaluated?)? {
                Evaluated::Scalar(values) => scalar.get_or_insert_with(Vec::new).extend(values),
                Evaluated::Vector(series) => {
                    let offset = u32::try_from(first_step).unwrap_or(u32::MAX);
                    for one in series {
                        let points = one.points.into_iter().map(|(step, value)| (step + offset, value));
                        match index_of.get(&one.labels) {
                            Some(index) => merged[*index].points.extend(points),
                            None => {
                                index_of.insert(one.labels.clone(), merged.len());
                                merged.push(StepSeries {
                                    labels: one.labels,
                                    points: points.collect(),
                                    drop_name: one.drop_name,
                                });
                            }
                        }
                    }
                }
                other => return Ok(other),
            }
            first_step = last_step + 1;
        }
        Ok(match scalar {
            Some(values) => Evaluated::Scalar(values),
            None => Evaluated::Vector(merged),
        })
    }
}

/// The range query parameter checks of Prometheus' `/api/v1/query_range`.
fn validate_range(start_ms: i64, end_ms: i64, step_ms: i64) -> Result<(), QueryError> {
    if step_ms <= 0 {
        return Err(QueryError::BadParameter(
            "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
        ));
    }
    if end_ms < start_ms {
        return Err(QueryError::BadParameter("end timestamp must not be before start time".into()));
    }
    if (end_ms - start_ms) / step_ms > MAX_POINTS_PER_SERIES {
        return Err(QueryError::BadParameter(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"
                    .into(),
            ));
    }
    Ok(())
}

/// The evaluation time grid: steps `start_ms, start_ms + step_ms, ..., end_ms`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grid {
    pub start_ms: i64,
    pub end_ms: i64,
    pub step_ms: i64,
}

impl Grid {
    pub fn steps(&self) -> usize {
        if self.end_ms < self.start_ms {
            return 0;
        }
        (self.end_ms.saturating_sub(self.start_ms) / self.step_ms).saturating_add(1) as usize
    }
    pub fn timestamp(&self, step: usize) -> i64 {
        self.start_ms.saturating_add((step as i64).saturating_mul(self.step_ms))
    }
}

/// One series of an instant vector evaluated over the grid: `(step index, value)` points, ascending.
#[derive(Debug, Clone)]
pub(crate) struct StepSeries {
    pub labels: Labels,
    pub points: Vec<(u32, f64)>,
    /// With delayed name removal, the metric name is still in `labels` but goes at the end.
    pub drop_name: bool,
}

/// One series of a range vector: raw samples, stale markers removed.
#[derive(Debug, Clone)]
pub(crate) struct RawSeries {
    pub labels: Labels,
    pub samples: Vec<Sample>,
    /// As [`StepSeries::drop_name`].
    pub drop_name: bool,
}

/// A node's value over the whole grid.
#[derive(Debug)]
pub(crate) enum Evaluated {
    /// One value per step.
    Scalar(Vec<f64>),
    String(String),
    Vector(Vec<StepSeries>),
    /// Only produced for instant queries (a grid of one step).
    Matrix(Vec<RawSeries>),
}

/// A range-vector argument prepared for windowed functions: series, the window length, and for each grid
/// step the window's end (the evaluation time after `@` and `offset`).
pub(crate) struct RangeInput {
    pub series: Vec<RawSeries>,
    pub range_ms: i64,
    pub window_ends: Vec<i64>,
}

pub(crate) struct Evaluator<'a> {
    querier: &'a dyn Querier,
    pub options: &'a EngineOptions,
    deadline: Instant,
    query: &'a str,
    pub query_start_ms: i64,
    pub query_end_ms: i64,
    /// The range query's step; 0 for instant queries.
    pub query_step_ms: i64,
    samples_held: usize,
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
    /// See [`Engine::with_delayed_name_removal`].
    pub delayed_name_removal: bool,
    /// Whether [`QueryStats`] sample counts are collected (they cost a pass over each range input).
    pub collect_stats: bool,
    pub counters: SampleCounters,
    /// Whether the grid being evaluated is a slice with later slices to come (see
    /// [`Evaluator::eval_sliced`]): only then do subqueries keep a [`SubqueryTail`].
    later_slices: bool,
    /// Per subquery node (by its address in the parsed query), the inner results the next slice can
    /// reuse.
    subquery_tails: HashMap<usize, SubqueryTail>,
}

/// The last inner steps a subquery's inner expression was evaluated at, kept while a sliced evaluation
/// has slices to come: the next slice's windows overlap this slice's by the subquery's range, and inner
/// steps are aligned to absolute time, so the inner values at those steps are the same and are not
/// computed again (for `max_over_time(...[1h:])` over 24 h in 4 h slices, 6 of 30 inner hours).
struct SubqueryTail {
    step_ms: i64,
    /// The subquery's range, ms.
    range_ms: i64,
    /// The first inner step kept, ms.
    start_ms: i64,
    /// The last inner step evaluated (a step of the inner grid), ms.
    end_ms: i64,
    /// The inner series with their points from `start_ms` on.
    series: Vec<RawSeries>,
}

impl<'a> Evaluator<'a> {
    fn new(
        querier: &'a dyn Querier,
        options: &'a EngineOptions,
        query: &'a str,
        query_start_ms: i64,
        query_end_ms: i64,
        query_step_ms: i64,
    ) -> Self {
        Evaluator {
            querier,
            options,
            deadline: Instant::now() + options.timeout,
            query,
            query_start_ms,
            query_end_ms,
            query_step_ms,
            samples_held: 0,
            later_slices: false,
            subquery_tails: HashMap::new(),
            warnings: Vec::new(),
            infos: Vec::new(),
            delayed_name_removal: false,
            collect_stats: false,
            counters: SampleCounters::new(if query_step_ms > 0 {
                ((query_end_ms.saturating_sub(query_start_ms)) / query_step_ms).saturating_add(1).max(0) as usize
            } else {
                1
            }),
        }
    }

    /// The result and its statistics; `grid_times` are the query's step timestamps (empty when stats
    /// were not collected).
    fn finish(
        self,
        value: Value,
        started: Instant,
        result_sort: Duration,
        grid_times: &[i64],
    ) -> (QueryResult, QueryStats) {
        let eval_total = started.elapsed();
        let per_step: Vec<(i64, u64)> = if self.collect_stats {
            grid_times.iter().copied().zip(self.counters.per_step.iter().copied()).collect()
        } else {
            Vec::new()
        };
        let stats = QueryStats {
            eval_total,
            query_preparation: self.counters.select_time,
            inner_eval: eval_total.saturating_sub(self.counters.select_time).saturating_sub(result_sort),
            result_sort,
            total_queryable_samples: per_step.iter().map(|(_, count)| count).sum(),
            peak_samples: self.counters.peak,
            total_queryable_samples_per_step: per_step,
        };
        (QueryResult { value, warnings: self.warnings, infos: self.infos }, stats)
    }

    pub fn warn(&mut self, message: String) {
        if !self.warnings.contains(&message) {
            self.warnings.push(message);
        }
    }

    pub fn info(&mut self, message: String) {
        if !self.infos.contains(&message) {
            self.infos.push(message);
        }
    }

    /// Prometheus appends the position of the expression an annotation is about, as ` (line:column)`.
    /// The parser keeps no positions, so the first of `needles` found in the query text is used
    /// (`1:1` when none is).
    pub fn position_suffix(&self, needles: &[&str]) -> String {
        let offset =
            needles.iter().filter(|needle| !needle.is_empty()).find_map(|needle| self.query.find(needle)).unwrap_or(0);
        let before = &self.query[..offset];
        let line = before.matches('\n').count() + 1;
        let column = offset - before.rfind('\n').map(|newline| newline + 1).unwrap_or(0) + 1;
        format!(" ({line}:{column})")
    }

    /// Drops the metric name of every series (or, with delayed name removal, marks it for removal),
    /// failing if two series then collide at a step.
    pub fn drop_names(&self, series: Vec<StepSeries>) -> Result<Vec<StepSeries>, QueryError> {
        if self.delayed_name_removal {
            return Ok(series.into_iter().map(|one| StepSeries { drop_name: true, ..one }).collect());
        }
        let renamed = series
            .into_iter()
            .map(|one| StepSeries { labels: drop_metric_name(one.labels), points: one.points, drop_name: false })
            .collect();
        merge_same_labels(renamed)
    }

    pub fn check_deadline(&self) -> Result<(), QueryError> {
        if Instant::now() > self.deadline { Err(QueryError::Timeout("expression evaluation")) } else { Ok(()) }
    }

    /// Counts `count` more samples as held in memory; fails past the limit.
    pub fn hold_samples(&mut self, count: usize) -> Result<(), QueryError> {
        self.samples_held = self.samples_held.saturating_add(count);
        self.counters.observe_held(self.samples_held);
        if self.samples_held > self.options.max_samples {
            return Err(QueryError::TooManySamples("query execution"));
        }
        Ok(())
    }

    /// Releases `count` samples counted by [`Evaluator::hold_samples`].
    pub fn release_samples(&mut self, count: usize) {
        self.samples_held = self.samples_held.saturating_sub(count);
    }

    pub fn eval(&mut self, expr: &Expr, grid: &Grid) -> Result<Evaluated, QueryError> {
        self.check_deadline()?;
        match expr {
            Expr::NumberLiteral(number) => Ok(Evaluated::Scalar(vec![number.val; grid.steps()])),
            Expr::StringLiteral(string) => Ok(Evaluated::String(string.val.clone())),
            Expr::Paren(paren) => self.eval(&paren.expr, grid),
            Expr::Unary(unary) => match self.eval(&unary.expr, grid)? {
                Evaluated::Scalar(values) => Ok(Evaluated::Scalar(values.into_iter().map(|value| -value).collect())),
                Evaluated::Vector(series) => {
                    let negated = series
                        .into_iter()
                        .map(|series| StepSeries {
                            points: series.points.into_iter().map(|(step, value)| (step, -value)).collect(),
                            ..series
                        })
                        .collect();
                    Ok(Evaluated::Vector(self.drop_names(negated)?))
                }
                _ => Err(execution("unary expression only allowed on expressions of type scalar or vector")),
            },
            Expr::VectorSelector(selector) => {
                let series = self.eval_vector_selector(selector, grid, false)?;
                Ok(Evaluated::Vector(series))
            }
            Expr::MatrixSelector(_) | Expr::Subquery(_) => {
                let input = self.eval_range_input(expr, grid)?;
                // A range vector is only a result of its own in instant queries: the samples of the one
                // window.
                let window_end = input.window_ends.first().copied().unwrap_or(grid.start_ms);
                let window_start = window_end.saturating_sub(input.range_ms);
                let series = input
                    .series
                    .into_iter()
                    .map(|series| RawSeries {
                        labels: series.labels,
                        drop_name: series.drop_name,
                        samples: series
                            .samples
                            .into_iter()
                            .filter(|sample| sample.timestamp_ms > window_start && sample.timestamp_ms <= window_end)
                            .collect(),
                    })
                    .collect();
                Ok(Evaluated::Matrix(series))
            }
            Expr::Binary(binary) => crate::binary::eval_binary(self, binary, grid),
            Expr::Aggregate(aggregate) => crate::aggregation::eval_aggregate(self, aggregate, grid),
            Expr::Call(call) => crate::functions::eval_call(self, call, grid),
            Expr::Extension(_) => Err(execution("extension expressions are not supported")),
        }
    }

    /// Evaluates `expr` expecting an instant vector.
    pub fn eval_vector(&mut self, expr: &Expr, grid: &Grid) -> Result<Vec<StepSeries>, QueryError> {
        match self.eval(expr, grid)? {
            Evaluated::Vector(series) => Ok(series),
            _ => Err(execution(format!("expected instant vector, got another type in {expr}"))),
        }
    }

    /// Evaluates `expr` expecting a scalar: one value per step.
    pub fn eval_scalar(&mut self, expr: &Expr, grid: &Grid) -> Result<Vec<f64>, QueryError> {
        match self.eval(expr, grid)? {
            Evaluated::Scalar(values) => Ok(values),
            _ => Err(execution(format!("expected scalar, got another type in {expr}"))),
        }
    }

    /// The `@` time (ms) of a selector or subquery, when it has one.
    pub fn at_time_ms(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(self.query_start_ms),
            Some(AtModifier::End) => Some(self.query_end_ms),
            Some(AtModifier::At(time)) => Some(system_time_ms(*time)),
        }
    }

    /// For each step of `grid`, the time a selector is evaluated at after `@` and `offset`.
    fn evaluation_times(&self, grid: &Grid, at: &Option<AtModifier>, offset: &Option<Offset>) -> Vec<i64> {
        let offset_ms = offset_ms(offset);
        let at_ms = self.at_time_ms(at);
        (0..grid.steps()).map(|step| at_ms.unwrap_or_else(|| grid.timestamp(step)).saturating_sub(offset_ms)).collect()
    }

    /// Reads the series of `selector` with samples in `[mint_ms, maxt_ms]`.
    pub fn select(
        &mut self,
        selector: &VectorSelector,
        mint_ms: i64,
        maxt_ms: i64,
    ) -> Result<Vec<oxeye_model::storage::Series>, QueryError> {
        let groups = selector_matcher_groups(selector)?;
        let mut selected: Vec<oxeye_model::storage::Series> = Vec::new();
        for matchers in groups {
            let select_started = Instant::now();
            let series = self.querier.select(mint_ms, maxt_ms, &matchers)?;
            self.counters.select_time += select_started.elapsed();
            selected.extend(series);
        }
        if !selector.matchers.or_matchers.is_empty() {
            selected.sort_by(|left, right| left.labels.cmp(&right.labels));
            selected.dedup_by(|left, right| left.labels == right.labels);
        }
        let loaded: usize = selected.iter().map(|series| series.samples.len()).sum();
        self.hold_samples(loaded)?;
        self.release_samples(loaded);
        Ok(selected)
    }

    /// Evaluates an instant vector selector at every step: the newest sample no older than the lookback
    /// delta, unless it is a staleness marker. With `keep_sample_time`, the value is the sample's
    /// timestamp in seconds (for `timestamp()`).
    pub fn eval_vector_selector(
        &mut self,
        selector: &VectorSelector,
        grid: &Grid,
        keep_sample_time: bool,
    ) -> Result<Vec<StepSeries>, QueryError> {
        let times = self.evaluation_times(grid, &selector.at, &selector.offset);
        let (Some(min_time), Some(max_time)) = (times.iter().min().copied(), times.iter().max().copied()) else {
            return Ok(Vec::new());
        };
        // As in Prometheus, a zero (or negative) lookback delta means the default of 5 minutes.
        let lookback_ms =
            if self.options.lookback_delta_ms > 0 { self.options.lookback_delta_ms } else { DEFAULT_LOOKBACK_DELTA_MS };
        let selected = self.select(selector, min_time.saturating_sub(lookback_ms).saturating_add(1), max_time)?;
        let mut output = Vec::with_capacity(selected.len());
        let mut points_total = 0usize;
        for (index, series) in selected.into_iter().enumerate() {
            if index % 1024 == 1023 {
                self.check_deadline()?;
            }
            let samples = &series.samples;
            let mut points = Vec::new();
            let mut cursor = 0usize;
            for (step, time) in times.iter().enumerate() {
                while cursor < samples.len() && samples[cursor].timestamp_ms <= *time {
                    cursor += 1;
                }
                if cursor == 0 {
                    continue;
                }
                let sample = samples[cursor - 1];
                if sample.timestamp_ms <= time - lookback_ms || is_stale_nan(sample.value) {
                    continue;
                }
                let value = if keep_sample_time { sample.timestamp_ms as f64 / 1000.0 } else { sample.value };
                points.push((step as u32, value));
                if self.collect_stats {
                    self.counters.add(step, 1);
                }
            }
            if !points.is_empty() {
                points_total += points.len();
                output.push(StepSeries { labels: series.labels, points, drop_name: false });
            }
        }
        self.hold_samples(points_total)?;
        Ok(output)
    }

    /// Reads the series of the range selector `matrix` one at a time ([`Querier::select_each`]), stale
    /// markers removed, and calls `visit` with each series that keeps samples and the windows of `grid`
    /// (a [`RangeInput`] without series of its own). A selector with `or` alternatives reads the first
    /// alternative only: callers stream only selectors without them. When `visit` returns `Err(())`
    /// reading stops and `Ok(())` is returned: the visitor keeps its own error. With `keep_label`, the
    /// series may carry only the labels it accepts ([`Querier::select_each_projected`]).
    pub fn for_each_range_series(
        &mut self,
        matrix: &MatrixSelector,
        grid: &Grid,
        keep_label: Option<&dyn Fn(&str) -> bool>,
        visit: &mut dyn FnMut(&mut Evaluator<'a>, &RangeInput, RawSeries) -> Result<(), ()>,
    ) -> Result<(), QueryError> {
        let range_ms = duration_ms(matrix.range);
        let selector = &matrix.vs;
        let window_ends = self.evaluation_times(grid, &selector.at, &selector.offset);
        let (Some(min_time), Some(max_time)) = (window_ends.iter().min().copied(), window_ends.iter().max().copied())
        else {
            return Ok(());
        };
        let input = RangeInput { series: Vec::new(), range_ms, window_ends };
        let Some(matchers) = selector_matcher_groups(selector)?.into_iter().next() else { return Ok(()) };
        let querier = self.querier;
        let mut stopped = false;
        let mut index = 0usize;
        let mint_ms = min_time.saturating_sub(range_ms).saturating_add(1);
        let mut visit_series = |series: oxeye_model::storage::Series| {
            index += 1;
            if index.is_multiple_of(1024) && self.check_deadline().is_err() {
                stopped = true;
                return Err(oxeye_model::storage::StorageError::LimitExceeded("query timed out".to_string()));
            }
            let mut samples = series.samples;
            samples.retain(|sample| !is_stale_nan(sample.value));
            if samples.is_empty() {
                return Ok(());
            }
            if self.collect_stats && self.counters.nesting == 0 {
                self.count_series_window_samples(&input.window_ends, range_ms, &samples);
            }
            let raw = RawSeries { labels: series.labels, samples, drop_name: false };
            visit(self, &input, raw).map_err(|()| {
                stopped = true;
                oxeye_model::storage::StorageError::LimitExceeded("query stopped".to_string())
            })
        };
        let read = match keep_label {
            Some(keep_label) => {
                querier.select_each_projected(mint_ms, max_time, &matchers, keep_label, &mut visit_series)
            }
            None => querier.select_each(mint_ms, max_time, &matchers, &mut visit_series),
        };
        if stopped {
            // A timeout found here is reported as such; a visitor's error is the visitor's to return.
            self.check_deadline()?;
            return Ok(());
        }
        read?;
        Ok(())
    }

    /// Prepares a range-vector argument (a range selector or a subquery) for every step of `grid`.
    pub fn eval_range_input(&mut self, expr: &Expr, grid: &Grid) -> Result<RangeInput, QueryError> {
        match expr {
            Expr::Paren(paren) => self.eval_range_input(&paren.expr, grid),
            Expr::MatrixSelector(matrix) => {
                let range_ms = duration_ms(matrix.range);
                let selector = &matrix.vs;
                let window_ends = self.evaluation_times(grid, &selector.at, &selector.offset);
                let (Some(min_time), Some(max_time)) =
                    (window_ends.iter().min().copied(), window_ends.iter().max().copied())
                else {
                    return Ok(RangeInput { series: Vec::new(), range_ms, window_ends });
                };
                let selected = self.select(selector, min_time.saturating_sub(range_ms).saturating_add(1), max_time)?;
                let series: Vec<RawSeries> = selected
                    .into_iter()
                    .map(|series| RawSeries {
                        labels: series.labels,
                        drop_name: false,
                        samples: series.samples.into_iter().filter(|sample| !is_stale_nan(sample.value)).collect(),
                    })
                    .filter(|series| !series.samples.is_empty())
                    .collect();
                let held: usize = series.iter().map(|series| series.samples.len()).sum();
                self.hold_samples(held)?;
                let input = RangeInput { series, range_ms, window_ends };
                self.count_window_samples(&input);
                Ok(input)
            }
            Expr::Subquery(subquery) => {
                let range_ms = duration_ms(subquery.range);
                let step_ms = subquery.step.map(duration_ms).unwrap_or(DEFAULT_SUBQUERY_STEP_MS);
                if step_ms <= 0 {
                    return Err(execution("subquery step must be positive"));
                }
                let window_ends = self.evaluation_times(grid, &subquery.at, &subquery.offset);
                let (Some(min_time), Some(max_time)) =
                    (window_ends.iter().min().copied(), window_ends.iter().max().copied())
                else {
                    return Ok(RangeInput { series: Vec::new(), range_ms, window_ends });
                };
                // The first subquery step is the first multiple of the step after the earliest window start.
                let earliest = min_time.saturating_sub(range_ms);
                let mut start_ms = step_ms * div_floor(earliest, step_ms);
                if start_ms <= earliest {
                    start_ms += step_ms;
                }
                let inner_grid = Grid { start_ms, end_ms: max_time, step_ms };
                // A subquery with a tiny step over a long range would need more steps than samples allowed.
                let inner_steps = (max_time.saturating_sub(start_ms) / step_ms).saturating_add(1);
                if inner_steps > 0 && inner_steps as u64 > self.options.max_samples as u64 {
                    return Err(QueryError::TooManySamples("query execution"));
                }
                let series = if inner_grid.end_ms < inner_grid.start_ms {
                    Vec::new()
                } else {
                    self.eval_subquery_inner(subquery, inner_grid, range_ms)?
                };
                let input = RangeInput { series, range_ms, window_ends };
                self.count_window_samples(&input);
                Ok(input)
            }
            _ => Err(execution(format!("expected a range vector, got {expr}"))),
        }
    }

    /// The inner series of `subquery` at the steps of `inner_grid`: computed, or for steps a
    /// [`SubqueryTail`] of the previous slice holds, taken from it. Keeps a new tail (the points of the
    /// last `range_ms`) when later slices follow.
    fn eval_subquery_inner(
        &mut self,
        subquery: &parser::SubqueryExpr,
        inner_grid: Grid,
        range_ms: i64,
    ) -> Result<Vec<RawSeries>, QueryError> {
        let key = std::ptr::from_ref(subquery) as usize;
        let step_ms = inner_grid.step_ms;
        let reusable = self.subquery_tails.remove(&key).filter(|tail| {
            tail.step_ms == step_ms
                && tail.range_ms == range_ms
                && tail.start_ms <= inner_grid.start_ms
                && inner_grid.start_ms <= tail.end_ms.saturating_add(step_ms)
                && (inner_grid.start_ms - tail.start_ms) % step_ms == 0
        });
        let reused = reusable.is_some();
        let (mut series, computed_grid) = match reusable {
            Some(tail) => {
                let kept: Vec<RawSeries> = tail
                    .series
                    .into_iter()
                    .map(|mut one| {
                        one.samples.retain(|sample| {
                            sample.timestamp_ms >= inner_grid.start_ms && sample.timestamp_ms <= inner_grid.end_ms
                        });
                        one
                    })
                    .collect();
                (kept, Grid { start_ms: tail.end_ms.saturating_add(step_ms), ..inner_grid })
            }
            None => (Vec::new(), inner_grid),
        };
        if computed_grid.start_ms <= computed_grid.end_ms {
            let computed = self.eval_subquery_grid(subquery, &computed_grid)?;
            if series.is_empty() {
                series = computed;
            } else {
                let mut index_of: HashMap<Labels, usize> =
                    series.iter().enumerate().map(|(index, one)| (one.labels.clone(), index)).collect();
                for one in computed {
                    match index_of.get(&one.labels) {
                        Some(index) => series[*index].samples.extend(one.samples),
                        None => {
                            index_of.insert(one.labels.clone(), series.len());
                            series.push(one);
                        }
                    }
                }
            }
        }
        if reused {
            // A series of the tail may have no point left in this grid: a computed one would be absent.
            series.retain(|one| !one.samples.is_empty());
        }
        if self.later_slices {
            // The grid's end need not be one of its steps.
            let last_step_ms = inner_grid.timestamp(inner_grid.steps().saturating_sub(1));
            let start_ms = last_step_ms.saturating_sub(range_ms);
            let tail_series = series
                .iter()
                .map(|one| RawSeries {
                    labels: one.labels.clone(),
                    drop_name: one.drop_name,
                    samples: one.samples.iter().filter(|sample| sample.timestamp_ms >= start_ms).copied().collect(),
                })
                .collect();
            // The first inner step at or after `start_ms`.
            let steps_before = (start_ms - inner_grid.start_ms).max(0).saturating_add(step_ms - 1) / step_ms;
            let first_step_ms = inner_grid.start_ms.saturating_add(steps_before.saturating_mul(step_ms));
            self.subquery_tails.insert(
                key,
                SubqueryTail { step_ms, range_ms, start_ms: first_step_ms, end_ms: last_step_ms, series: tail_series },
            );
        }
        Ok(series)
    }

    /// Evaluates the inner expression of `subquery` at every step of `inner_grid`, in slices unless the
    /// expression streams (see [`crate::aggregation::aggregation_streams`]): slices bound what selectors
    /// hold, but a streamed aggregation holds its groups' state and one series whatever the grid, while
    /// each slice reads the chunks at its edges again and inflates the chunk frames of a block longer
    /// than a slice once more.
    fn eval_subquery_grid(
        &mut self,
        subquery: &parser::SubqueryExpr,
        inner_grid: &Grid,
    ) -> Result<Vec<RawSeries>, QueryError> {
        let slice_ms =
            if crate::aggregation::aggregation_streams(self, &subquery.expr) { i64::MAX } else { RANGE_SLICE_MS };
        // The inner expression's samples are not counted at the outer steps; the subquery's output points
        // inside each window are (see `count_window_samples`).
        self.counters.nesting += 1;
        let inner = self.eval_sliced(&subquery.expr, inner_grid, slice_ms, SliceLevel::Subquery);
        self.counters.nesting -= 1;
        Ok(match inner? {
            Evaluated::Vector(series) => series
                .into_iter()
                .map(|series| RawSeries {
                    labels: series.labels,
                    drop_name: series.drop_name,
                    samples: series
                        .points
                        .iter()
                        .map(|(step, value)| Sample {
                            timestamp_ms: inner_grid.timestamp(*step as usize),
                            value: *value,
                        })
                        .collect(),
                })
                .collect(),
            Evaluated::Scalar(values) => vec![RawSeries {
                labels: Labels::empty(),
                drop_name: false,
                samples: values
                    .iter()
                    .enumerate()
                    .map(|(step, value)| Sample { timestamp_ms: inner_grid.timestamp(step), value: *value })
                    .collect(),
            }],
            _ => return Err(execution("subquery is only allowed on instant vector or scalar")),
        })
    }
}

impl Evaluator<'_> {
    /// For [`QueryStats`]: adds, at each step, the samples inside that step's window
    /// `(end - range, end]`.
    fn count_window_samples(&mut self, input: &RangeInput) {
        if !self.collect_stats || self.counters.nesting > 0 {
            return;
        }
        for series in &input.series {
            self.count_series_window_samples(&input.window_ends, input.range_ms, &series.samples);
        }
    }

    /// [`Evaluator::count_window_samples`] for one series' samples.
    fn count_series_window_samples(&mut self, window_ends: &[i64], range_ms: i64, samples: &[Sample]) {
        let ascending = window_ends.windows(2).all(|pair| pair[0] <= pair[1]);
        let (mut first, mut past) = (0usize, 0usize);
        for (step, end) in window_ends.iter().enumerate() {
            let start = end.saturating_sub(range_ms);
            if !ascending {
                first = 0;
                past = 0;
            }
            while past < samples.len() && samples[past].timestamp_ms <= *end {
                past += 1;
            }
            while first < past && samples[first].timestamp_ms <= start {
                first += 1;
            }
            self.counters.add(step, (past - first) as u64);
        }
    }
}

/// The matcher groups a selector reads (one, or one per `or` alternative), each with the metric name as a
/// matcher and at least one matcher that does not match the empty string, as stores need.
fn selector_matcher_groups(selector: &VectorSelector) -> Result<Vec<Vec<Matcher>>, QueryError> {
    let mut groups: Vec<Vec<Matcher>> = Vec::new();
    let base = convert_matchers(&selector.matchers.matchers)?;
    if selector.matchers.or_matchers.is_empty() {
        groups.push(base);
    } else {
        for group in &selector.matchers.or_matchers {
            groups.push(convert_matchers(group)?);
        }
    }
    for matchers in &mut groups {
        if let Some(name) = &selector.name
            && !matchers.iter().any(|matcher| matcher.name == oxeye_model::METRIC_NAME_LABEL)
        {
            matchers.push(Matcher::equal(oxeye_model::METRIC_NAME_LABEL, name.clone()));
        }
        if matchers.iter().all(Matcher::matches_empty) {
            // One group of an `or` selector may have none; every series has a name.
            let any_name = Matcher::new(MatchOp::Regex, oxeye_model::METRIC_NAME_LABEL, ".+")
                .map_err(|error| execution(error.to_string()))?;
            matchers.push(any_name);
        }
    }
    Ok(groups)
}

/// Floor division for possibly negative timestamps.
fn div_floor(value: i64, divisor: i64) -> i64 {
    let quotient = value / divisor;
    if value % divisor != 0 && ((value < 0) != (divisor < 0)) { quotient - 1 } else { quotient }
}

pub(crate) fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

pub(crate) fn offset_ms(offset: &Option<Offset>) -> i64 {
    match offset {
        None => 0,
        Some(Offset::Pos(duration)) => duration_ms(*duration),
        Some(Offset::Neg(duration)) => -duration_ms(*duration),
    }
}

fn system_time_ms(time: SystemTime) -> i64 {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => duration_ms(after),
        Err(before) => -duration_ms(before.duration()),
    }
}

/// Converts promql-parser matchers into oxeye matchers (regexes fully anchored, `.` matching newlines).
pub(crate) fn convert_matchers(matchers: &[promql_parser::label::Matcher]) -> Result<Vec<Matcher>, QueryError> {
    matchers
        .iter()
        .map(|matcher| {
            let op = match matcher.op {
                ParserMatchOp::Equal => MatchOp::Equal,
                ParserMatchOp::NotEqual => MatchOp::NotEqual,
                ParserMatchOp::Re(_) => MatchOp::Regex,
                ParserMatchOp::NotRe(_) => MatchOp::NotRegex,
            };
            Matcher::new(op, matcher.name.clone(), matcher.value.clone()).map_err(|error| QueryError::Parse {
                line: 1,
                column: 1,
                message: error.to_string(),
            })
        })
        .collect()
}

/// The labels without `__name__`, reusing the label strings.
pub(crate) fn drop_metric_name(labels: Labels) -> Labels {
    if labels.metric_name().is_none() {
        return labels;
    }
    Labels::from_sorted(
        labels.into_vec().into_iter().filter(|label| label.name != oxeye_model::METRIC_NAME_LABEL).collect(),
    )
}

/// Merges series that ended up with identical labels (after dropping the metric name, say). Fails when
/// two of them have a value at the same step, as Prometheus does.
pub(crate) fn merge_same_labels(series: Vec<StepSeries>) -> Result<Vec<StepSeries>, QueryError> {
    if series.len() < 2 {
        return Ok(series);
    }
    // Keyed by label hash; equal hashes are confirmed by comparing the labels.
    let mut slots_by_hash: HashMap<u64, Vec<usize>> = HashMap::with_capacity(series.len());
    let mut merged: Vec<StepSeries> = Vec::with_capacity(series.len());
    let mut needs_check = false;
    for one in series {
        let hash = one.labels.stable_hash();
        let slots = slots_by_hash.entry(hash).or_default();
        match slots.iter().copied().find(|slot| merged[*slot].labels == one.labels) {
            Some(slot) => {
                merged[slot].points.extend(one.points);
                needs_check = true;
            }
            None => {
                slots.push(merged.len());
                merged.push(one);
            }
        }
    }
    if needs_check {
        for one in &mut merged {
            one.points.sort_by_key(|(step, _)| *step);
            if one.points.windows(2).any(|pair| pair[0].0 == pair[1].0) {
                return Err(execution("vector cannot contain metrics with the same labelset"));
            }
        }
    }
    Ok(merged)
}

/// For each step, the `(series index, value)` pairs present: the transposed view binary operators and
/// aggregations work on.
pub(crate) fn by_step(series: &[StepSeries], steps: usize) -> Vec<Vec<(u32, f64)>> {
    let mut per_step: Vec<Vec<(u32, f64)>> = vec![Vec::new(); steps];
    for (index, one) in series.iter().enumerate() {
        for (step, value) in &one.points {
            if let Some(slot) = per_step.get_mut(*step as usize) {
                slot.push((index as u32, *value));
            }
        }
    }
    per_step
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::testing::MemoryQuerier;
    use oxeye_model::STALE_NAN;
    use oxeye_model::storage::ErrorKind;

    fn store() -> MemoryQuerier {
        let mut store = MemoryQuerier::new();
        let api = Labels::from_pairs([("__name__", "http_requests_total"), ("job", "api")]);
        let web = Labels::from_pairs([("__name__", "http_requests_total"), ("job", "web")]);
        for minute in 0..=10 {
            let timestamp_ms = minute * 60_000;
            store.add_sample(&api, Sample { timestamp_ms, value: (minute * 60) as f64 });
            store.add_sample(&web, Sample { timestamp_ms, value: (minute * 120) as f64 });
        }
        let gauge = Labels::from_pairs([("__name__", "temperature")]);
        store.add_sample(&gauge, Sample { timestamp_ms: 0, value: 20.0 });
        store.add_sample(&gauge, Sample { timestamp_ms: 60_000, value: 21.0 });
        store.add_sample(&gauge, Sample { timestamp_ms: 120_000, value: STALE_NAN });
        store
    }

    fn vector(result: QueryResult) -> Vec<(String, f64)> {
        let Value::Vector(samples) = result.value else { panic!("not a vector: {:?}", result.value) };
        let mut pairs: Vec<(String, f64)> =
            samples.into_iter().map(|sample| (sample.labels.to_string(), sample.value)).collect();
        pairs.sort_by(|left, right| left.0.cmp(&right.0));
        pairs
    }

    #[test]
    fn instant_selector_uses_lookback_and_staleness() {
        let engine = Engine::default();
        let store = store();
        let at_90s = vector(engine.instant_query(&store, "temperature", 90_000).unwrap());
        assert_eq!(at_90s, [("temperature".to_string(), 21.0)]);
        // The stale marker at 2m ends the series even though 21 is within the lookback delta.
        assert!(vector(engine.instant_query(&store, "temperature", 150_000).unwrap()).is_empty());
        // Past the 5 minute lookback the last sample of a series is no longer returned.
        let old = vector(engine.instant_query(&store, "http_requests_total offset 1h", 600_000).unwrap());
        assert!(old.is_empty());
        let just_in =
            vector(engine.instant_query(&store, "http_requests_total{job=\"api\"}", 600_000 + 299_999).unwrap());
        assert_eq!(just_in.len(), 1);
        let just_out =
            vector(engine.instant_query(&store, "http_requests_total{job=\"api\"}", 600_000 + 300_000).unwrap());
        assert!(just_out.is_empty());
    }

    #[test]
    fn rate_sum_and_matching() {
        let engine = Engine::default();
        let store = store();
        let rates =
            vector(engine.instant_query(&store, "sum by (job) (rate(http_requests_total[5m]))", 600_000).unwrap());
        assert_eq!(rates.len(), 2);
        assert!((rates[0].1 - 1.0).abs() < 1e-9 && (rates[1].1 - 2.0).abs() < 1e-9, "{rates:?}");
        let ratio = vector(
            engine
                .instant_query(
                    &store,
                    "http_requests_total / ignoring(job) group_left sum(http_requests_total)",
                    600_000,
                )
                .unwrap(),
        );
        assert_eq!(ratio.len(), 2);
        assert!((ratio[0].1 - 1.0 / 3.0).abs() < 1e-9, "{ratio:?}");
        let error =
            engine.instant_query(&store, "http_requests_total + on() http_requests_total", 600_000).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Invalid);
        assert_eq!(error.prometheus_error_type(), "execution");
        assert!(error.to_string().contains("many-to-many matching not allowed"), "{error}");
    }

    #[test]
    fn range_query_returns_sorted_matrix_with_step_timestamps() {
        let engine = Engine::default();
        let store = store();
        let result = engine.range_query(&store, "http_requests_total", 0, 120_000, 60_000).unwrap();
        let Value::Matrix(series) = result.value else { panic!("not a matrix") };
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].labels.get("job"), Some("api"));
        let timestamps: Vec<i64> = series[0].samples.iter().map(|sample| sample.timestamp_ms).collect();
        assert_eq!(timestamps, [0, 60_000, 120_000]);
        let scalar = engine.range_query(&store, "time()", 0, 60_000, 30_000).unwrap();
        let Value::Matrix(series) = scalar.value else { panic!("not a matrix") };
        assert_eq!(series.len(), 1);
        assert!(series[0].labels.is_empty());
        assert_eq!(series[0].samples[2], Sample { timestamp_ms: 60_000, value: 60.0 });
    }

    #[test]
    fn instant_query_value_types() {
        let engine = Engine::default();
        let store = store();
        assert_eq!(
            engine.instant_query(&store, "1 + 2", 5_000).unwrap().value,
            Value::Scalar { timestamp_ms: 5_000, value: 3.0 }
        );
        assert_eq!(
            engine.instant_query(&store, "\"text\"", 5_000).unwrap().value,
            Value::String { timestamp_ms: 5_000, value: "text".into() }
        );
        let matrix = engine.instant_query(&store, "temperature[5m]", 290_000).unwrap();
        let Value::Matrix(series) = matrix.value else { panic!("not a matrix") };
        // Stale markers are not part of range vectors; the window (-10s, 290s] holds the samples at 0 and 1m.
        assert_eq!(series[0].samples.len(), 2);
    }

    #[test]
    fn errors_have_prometheus_shapes() {
        let engine = Engine::default();
        let store = store();
        let parse = engine.instant_query(&store, "foo{", 0).unwrap_err();
        assert_eq!(parse.to_string(), "1:5: parse error: unexpected end of input inside braces");
        let cases = [
            ("1 +", "1:4: parse error: unexpected end of input"),
            ("sum(rate(foo[5m])", "1:4: parse error: unclosed left parenthesis"),
            ("foo{a=\"b}", "1:7: parse error: unterminated quoted string \""),
            ("foo[5x]", "1:5: parse error: bad number or duration syntax: 5x"),
            ("nope(foo)", "1:1: parse error: unknown function with name 'nope'"),
            ("foo}", "1:4: parse error: unexpected right brace '}'"),
        ];
        for (query, expected) in cases {
            assert_eq!(engine.instant_query(&store, query, 0).unwrap_err().to_string(), expected, "{query}");
        }
        assert_eq!(parse.prometheus_error_type(), "bad_data");
        assert_eq!(parse.kind(), ErrorKind::BadData);
        let range_of_matrix = engine.range_query(&store, "temperature[5m]", 0, 60_000, 15_000).unwrap_err();
        assert!(range_of_matrix.to_string().contains("range vector"), "{range_of_matrix}");
        let step = engine.range_query(&store, "temperature", 0, 60_000, 0).unwrap_err();
        assert_eq!(step.prometheus_error_type(), "bad_data");
        let too_many = engine.range_query(&store, "temperature", 0, 12_000_000, 1_000).unwrap_err();
        assert!(too_many.to_string().contains("11,000 points"), "{too_many}");
    }

    #[test]
    fn limits_stop_queries() {
        let store = store();
        let small = Engine::new(EngineOptions { max_samples: 5, ..EngineOptions::default() });
        let error = small.range_query(&store, "http_requests_total", 0, 600_000, 60_000).unwrap_err();
        assert_eq!(error.to_string(), "query processing would load too many samples into memory in query execution");
        assert_eq!(error.kind(), ErrorKind::Limit);
        let hurried = Engine::new(EngineOptions { timeout: Duration::ZERO, ..EngineOptions::default() });
        let error = hurried.instant_query(&store, "http_requests_total", 0).unwrap_err();
        assert_eq!(error.prometheus_error_type(), "timeout");
        assert_eq!(error.to_string(), "query timed out in expression evaluation");
    }

    #[test]
    fn subquery_and_at_modifier() {
        let engine = Engine::default();
        let store = store();
        let maximum = vector(
            engine
                .instant_query(&store, "max_over_time(rate(http_requests_total{job=\"api\"}[2m])[5m:1m])", 600_000)
                .unwrap(),
        );
        assert!((maximum[0].1 - 1.0).abs() < 1e-9, "{maximum:?}");
        let pinned = vector(engine.instant_query(&store, "http_requests_total{job=\"api\"} @ 120", 600_000).unwrap());
        assert_eq!(pinned[0].1, 120.0);
        let at_start =
            engine.range_query(&store, "http_requests_total{job=\"api\"} @ start()", 60_000, 180_000, 60_000).unwrap();
        let Value::Matrix(series) = at_start.value else { panic!("not a matrix") };
        assert!(series[0].samples.iter().all(|sample| sample.value == 60.0));
    }

    #[test]
    fn delayed_name_removal_lets_label_replace_read_the_name() {
        let store = store();
        let query = "label_replace(rate(http_requests_total[5m]), \"from\", \"$1\", \"__name__\", \"(.*)\")";
        let eager = vector(Engine::default().instant_query(&store, query, 600_000).unwrap());
        assert!(eager.iter().all(|(labels, _)| !labels.contains("from=")), "{eager:?}");
        let delayed_engine = Engine::default().with_delayed_name_removal(true);
        let delayed = vector(delayed_engine.instant_query(&store, query, 600_000).unwrap());
        assert_eq!(delayed.len(), 2);
        assert!(delayed.iter().all(|(labels, _)| labels.starts_with("{from=\"http_requests_total\"")), "{delayed:?}");
        // The name is still removed from the result, so both engines agree on plain queries.
        let plain = vector(delayed_engine.instant_query(&store, "rate(http_requests_total[5m])", 600_000).unwrap());
        assert!(plain.iter().all(|(labels, _)| labels.starts_with("{job=")), "{plain:?}");
    }

    #[test]
    fn odd_queries_fail_cleanly_instead_of_panicking() {
        let engine = Engine::new(EngineOptions { max_samples: 1_000_000, ..EngineOptions::default() });
        let store = store();
        let too_fine = engine.instant_query(&store, "max_over_time(temperature[10y:1ms])", 600_000).unwrap_err();
        assert_eq!(too_fine.kind(), ErrorKind::Limit);
        for query in [
            "temperature @ 9223372036854775",
            "temperature offset 290000y",
            "rate(temperature[290000y])",
            "temperature @ -9223372036854775 offset -100y",
            "histogram_quantile(0.5, temperature)",
            "label_replace(temperature, \"x\", \"$99\", \"__name__\", \"(.*)\")",
            "topk(9e300, temperature)",
            "quantile(2, temperature) + on() group_left vector(1)",
            "count_values(\"v\", temperature) / ignoring(v) temperature",
            "-(-temperature)",
            "day_of_week(vector(1e300))",
            "predict_linear(temperature[1h], 1e308)",
        ] {
            let _ = engine.instant_query(&store, query, 600_000);
            let _ = engine.range_query(&store, query, 0, 600_000, 60_000);
        }
    }

    #[test]
    fn fill_modifiers_stand_in_for_missing_operands() {
        let store = store();
        let query =
            "http_requests_total{job=\"api\"} + on(job) fill(0) sum by (job) (http_requests_total{job=\"web\"})";
        let result = vector(Engine::default().instant_query(&store, query, 600_000).unwrap());
        assert_eq!(result, [("{job=\"api\"}".to_string(), 600.0), ("{job=\"web\"}".to_string(), 1200.0)]);
    }

    #[test]
    fn info_adds_target_info_data_labels() {
        let mut store = store();
        let target_info = Labels::from_pairs([
            ("__name__", "target_info"),
            ("job", "api"),
            ("instance", "x"),
            ("service_version", "1.2"),
        ]);
        let requests = Labels::from_pairs([("__name__", "up"), ("job", "api"), ("instance", "x")]);
        for minute in 0..=10 {
            store.add_sample(&target_info, Sample { timestamp_ms: minute * 60_000, value: 1.0 });
            store.add_sample(&requests, Sample { timestamp_ms: minute * 60_000, value: 1.0 });
        }
        let result = vector(Engine::default().instant_query(&store, "info(up)", 600_000).unwrap());
        assert_eq!(result, [("up{instance=\"x\", job=\"api\", service_version=\"1.2\"}".to_string(), 1.0)]);
    }

    #[test]
    fn invalid_utf8_label_names_are_rejected() {
        let error = Engine::default()
            .instant_query(&store(), r#"label_replace(temperature, "\xff", "", "__name__", ".*")"#, 60_000)
            .unwrap_err();
        assert!(error.to_string().contains("invalid destination label name"), "{error}");
    }

    #[test]
    fn sliced_range_queries_equal_instant_queries_at_each_step() {
        let mut store = MemoryQuerier::new();
        for (job, slope) in [("api", 3.0), ("web", 0.5)] {
            let labels = Labels::from_pairs([("__name__", "requests_total"), ("job", job)]);
            for index in 0..(6 * 240) {
                // A counter reset every 100 minutes.
                let value = ((index % 400) as f64) * slope;
                store.add_sample(&labels, Sample { timestamp_ms: index * 15_000, value });
            }
        }
        let engine = Engine::new(EngineOptions::default());
        let queries = [
            "sum by (job) (rate(requests_total[5m]))",
            "max_over_time(sum(rate(requests_total[5m]))[1h:5m])",
            // 4 h slices: the second slice reuses the inner steps of the first one's last hour, with the
            // inner expression streamed (unsliced) or evaluated in slices of its own.
            "max_over_time(sum by (job) (rate(requests_total[5m]))[1h:1m])",
            "max_over_time((sum by (job) (rate(requests_total[5m])) + 0)[1h:1m])",
            "avg_over_time(sum(rate(requests_total[5m]))[50m:7m] offset 3m)",
            "max_over_time(max_over_time(rate(requests_total[5m])[10m:1m])[1h:5m])",
            "sum_over_time(vector(1)[1h:2m] @ 7200)",
            // The inner grid (9 h at 1 m) is evaluated in slices of its own.
            "min_over_time(rate(requests_total[5m])[3h:1m])",
            "requests_total @ 7230",
            "increase(requests_total[3h])",
            "time()",
        ];
        let (start_ms, end_ms, step_ms) = (60_000, 6 * 3_600_000 - 60_000, 60_000);
        for query in queries {
            let range = engine.range_query(&store, query, start_ms, end_ms, step_ms).unwrap();
            let Value::Matrix(series) = range.value else { panic!("matrix") };
            assert!(!series.is_empty(), "{query}");
            let slice_edges = [2, 4]
                .into_iter()
                .flat_map(|hours| [-60_000, 0, 60_000, 120_000].map(|offset_ms| hours * 3_600_000 + offset_ms));
            for timestamp_ms in [start_ms, end_ms].into_iter().chain(slice_edges) {
                let mut expected: Vec<(Labels, f64)> =
                    match engine.instant_query(&store, query, timestamp_ms).unwrap().value {
                        Value::Vector(samples) => {
                            samples.into_iter().map(|sample| (sample.labels, sample.value)).collect()
                        }
                        Value::Scalar { value, .. } => vec![(Labels::empty(), value)],
                        other => panic!("{other:?}"),
                    };
                expected.sort_by(|left, right| left.0.cmp(&right.0));
                let actual: Vec<(Labels, f64)> = series
                    .iter()
                    .filter_map(|one| {
                        let sample = one.samples.iter().find(|sample| sample.timestamp_ms == timestamp_ms)?;
                        Some((one.labels.clone(), sample.value))
                    })
                    .collect();
                assert_eq!(actual, expected, "{query} at {timestamp_ms}");
            }
        }
    }

    #[test]
    fn streamed_aggregations_equal_the_general_path() {
        // `x{...}` with a name streams series by series into the aggregation; `{__name__="x"}` (no name of
        // the selector's own) and `sum(... + 0)` take the general path. Both must give the same matrix.
        assert_same_answers(&[
            (
                "sum by (job) (rate(http_requests_total[5m]))",
                "sum by (job) (rate({__name__=\"http_requests_total\"}[5m]))",
            ),
            ("sum(increase(http_requests_total[3m]))", "sum(increase(http_requests_total[3m]) + 0)"),
            ("avg(rate(http_requests_total[5m]))", "avg(rate(http_requests_total[5m]) * 1)"),
            ("max by (job) (max_over_time(temperature[2m]))", "max by (job) (max_over_time(temperature[2m]) + 0)"),
            ("count(rate(http_requests_total[5m]))", "count(rate(http_requests_total[5m]) + 0)"),
        ]);
    }

    /// Asserts that each pair of queries gives the same range answer over 0..600 s at 30 s steps and the
    /// same instant answer at 600 s: the first a fast path's shape, the second the general path's.
    fn assert_same_answers(pairs: &[(&str, &str)]) {
        let engine = Engine::default();
        let store = store();
        for (fast, general) in pairs {
            let range = |query: &str| engine.range_query(&store, query, 0, 600_000, 30_000).unwrap().value;
            assert_eq!(format!("{:?}", range(fast)), format!("{:?}", range(general)), "{fast}");
            let instant = |query: &str| engine.instant_query(&store, query, 600_000).unwrap().value;
            assert_eq!(format!("{:?}", instant(fast)), format!("{:?}", instant(general)), "{fast}");
        }
    }

    #[test]
    fn operands_sharing_one_read_equal_separate_reads() {
        // Both operands stream over one metric: the first pair shares one read of the wider selector
        // (in either order, with equal selectors, with another range function); `+ 0` keeps the general
        // path. Operands with disjoint selectors (the last pair) are read apart.
        assert_same_answers(&[
            (
                "sum by (job) (rate(http_requests_total{job=~\"a.*\"}[5m])) / sum by (job) (rate(http_requests_total[5m]))",
                "sum by (job) (rate(http_requests_total{job=~\"a.*\"}[5m]) + 0) / sum by (job) (rate(http_requests_total[5m]) + 0)",
            ),
            (
                "sum by (job) (rate(http_requests_total[5m])) - sum by (job) (rate(http_requests_total{job!=\"web\"}[5m]))",
                "sum by (job) (rate(http_requests_total[5m]) + 0) - sum by (job) (rate(http_requests_total{job!=\"web\"}[5m]) + 0)",
            ),
            (
                "sum(increase(http_requests_total[3m])) / count(rate(http_requests_total[3m]))",
                "sum(increase(http_requests_total[3m]) + 0) / count(rate(http_requests_total[3m]) + 0)",
            ),
            (
                "max by (job) (rate(http_requests_total{job=\"api\"}[5m])) + on() group_left max by (job) (rate(http_requests_total{job=\"web\"}[5m]))",
                "max by (job) (rate(http_requests_total{job=\"api\"}[5m]) + 0) + on() group_left max by (job) (rate(http_requests_total{job=\"web\"}[5m]) + 0)",
            ),
        ]);
    }

    #[test]
    fn floor_division_handles_negative_times() {
        assert_eq!(div_floor(-1, 10), -1);
        assert_eq!(div_floor(-10, 10), -1);
        assert_eq!(div_floor(15, 10), 1);
    }
}
