//! Evaluating LogQL over a [`LogReader`]: log queries into streams, metric queries into vectors and
//! matrices, following Loki's semantics (range windows are `(t - range - offset, t - offset]`).
//!
//! All timestamps here are **nanoseconds** since the Unix epoch, as in Loki's API.

use std::collections::{BTreeMap, HashMap};

use oxeye_model::logs::{LogEntryRef, LogReader, LogSelection, LogVisitor, ScanOrder};
use oxeye_model::storage::{ErrorKind, StorageError};
use oxeye_model::{LabelRef, Labels, MatchOp, Matcher};

use crate::pipeline::{
    ERROR_DETAILS_LABEL, ERROR_LABEL, LineFilters, ParserHints, Pipeline, convert, same_short_bytes,
    sanitized_label_name,
};
use crate::syntax::{
    BinaryOp, Expr, Grouping, LineFilterOp, LogExpr, LogRange, MetricExpr, NumberKind, ParseError, RangeOp, Stage,
    UnwrapConversion, VectorMatching, VectorOp, parse_expr,
};

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The query does not parse (HTTP 400 with the position).
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The query parses but cannot run as asked, e.g. a log query on the instant endpoint, or a
    /// pipeline error left in a metric query's series.
    #[error("{0}")]
    Invalid(String),
    /// A limit (series, steps) was exceeded.
    #[error("{0}")]
    Limit(String),
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl QueryError {
    /// The error's category.
    pub fn kind(&self) -> ErrorKind {
        match self {
            QueryError::Parse(_) | QueryError::Invalid(_) => ErrorKind::BadData,
            QueryError::Limit(_) => ErrorKind::Limit,
            QueryError::Storage(error) => error.kind(),
        }
    }
}

/// The order of entries in a log query result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Oldest first.
    Forward,
    /// Newest first (Loki's default).
    #[default]
    Backward,
}

/// Limits of the engine.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// The most series a metric query may return (Loki's `max_query_series`, default 500).
    pub max_series: usize,
    /// The most steps a range query may have (11 000, as Prometheus).
    pub max_steps: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { max_series: 500, max_steps: 11_000 }
    }
}

/// One stream of a log query result.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamResult {
    /// The labels after the pipeline (stream labels, structured metadata, parsed labels).
    pub labels: Labels,
    /// `(timestamp_ns, line)` in the requested direction.
    pub entries: Vec<(i64, String)>,
}

/// One series of a metric query result.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleSeries {
    /// The series' labels.
    pub labels: Labels,
    /// `(timestamp_ns, value)`, ascending.
    pub points: Vec<(i64, f64)>,
}

/// A query's result.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryResult {
    /// Log lines.
    Streams(Vec<StreamResult>),
    /// An instant metric query: one point per series (at the query time).
    Vector(Vec<SampleSeries>),
    /// A range metric query.
    Matrix(Vec<SampleSeries>),
    /// A scalar: `(timestamp_ns, value)` per step.
    Scalar(Vec<(i64, f64)>),
}

/// The LogQL engine: stateless apart from its limits.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    options: EngineOptions,
}

/// A value while evaluating: per series, one optional value per step.
enum Value {
    Scalar(Vec<f64>),
    Vector(Vec<StepSeries>),
}

/// One series of a metric query's result: its labels and a value (or none) per step.
type StepSeries = (Labels, Vec<Option<f64>>);

/// The substrings every line passing the pipeline must contain, usable by the store to skip chunks:
/// single-valued `|=` filters before any stage that rewrites the line.
pub fn required_substrings(stages: &[Stage]) -> Vec<String> {
    let mut needles = Vec::new();
    for stage in stages {
        match stage {
            Stage::LineFilter(filter)
                if filter.op == LineFilterOp::Contains && filter.values.len() == 1 && !filter.values[0].is_empty() =>
            {
                needles.push(filter.values[0].clone());
            }
            Stage::LineFormat(_) | Stage::Decolorize => break,
            _ => {}
        }
    }
    needles
}

impl Engine {
    /// An engine with these limits.
    pub fn new(options: EngineOptions) -> Self {
        Engine { options }
    }

    /// Runs a range query over `[start_ns, end_ns]`: a log query returns at most `limit` entries of
    /// `[start_ns, end_ns)` in `direction`; a metric query is evaluated every `step_ns` from `start_ns`.
    ///
    /// # Errors
    /// [`QueryError::Parse`], [`QueryError::Invalid`], [`QueryError::Limit`], [`QueryError::Storage`].
    #[allow(clippy::too_many_arguments)] // the parameters of Loki's `query_range`, one each
    pub fn query_range(
        &self,
        reader: &dyn LogReader,
        query: &str,
        start_ns: i64,
        end_ns: i64,
        step_ns: i64,
        limit: usize,
        direction: Direction,
    ) -> Result<QueryResult, QueryError> {
        match parse_expr(query)? {
            Expr::Log(log) => {
                Ok(QueryResult::Streams(self.log_query(reader, &log, start_ns, end_ns, limit, direction)?))
            }
            Expr::Metric(metric) => {
                if step_ns <= 0 {
                    return Err(QueryError::Invalid(
                        "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
                    ));
                }
                let count = ((end_ns - start_ns) / step_ns + 1).max(1) as usize;
                if count > self.options.max_steps {
                    return Err(QueryError::Limit(format!(
                        "exceeded maximum resolution of {} points per timeseries. Try decreasing the query resolution (?step=XX)",
                        self.options.max_steps
                    )));
                }
                let steps: Vec<i64> = (0..count).map(|index| start_ns + index as i64 * step_ns).collect();
                match self.eval(reader, &metric, &steps)? {
                    Value::Scalar(values) => Ok(QueryResult::Scalar(steps.iter().copied().zip(values).collect())),
                    Value::Vector(series) => Ok(QueryResult::Matrix(self.to_series(series, &steps, &metric)?)),
                }
            }
        }
    }

    /// Runs an instant metric query at `time_ns`. Log queries are refused, as Loki's `/query` does.
    ///
    /// # Errors
    /// As [`Engine::query_range`].
    pub fn query_instant(&self, reader: &dyn LogReader, query: &str, time_ns: i64) -> Result<QueryResult, QueryError> {
        match parse_expr(query)? {
            Expr::Log(_) => Err(QueryError::Invalid(
                "log queries are not supported as an instant query type, please change your query to a range query type"
                    .into(),
            )),
            Expr::Metric(metric) => {
                let steps = [time_ns];
                match self.eval(reader, &metric, &steps)? {
                    Value::Scalar(values) => Ok(QueryResult::Scalar(vec![(time_ns, values.first().copied().unwrap_or(0.0))])),
                    Value::Vector(series) => Ok(QueryResult::Vector(self.to_series(series, &steps, &metric)?)),
                }
            }
        }
    }

    fn to_series(
        &self,
        series: Vec<(Labels, Vec<Option<f64>>)>,
        steps: &[i64],
        metric: &MetricExpr,
    ) -> Result<Vec<SampleSeries>, QueryError> {
        let mut result: Vec<SampleSeries> = series
            .into_iter()
            .map(|(labels, values)| SampleSeries {
                labels,
                points: steps
                    .iter()
                    .zip(values)
                    .filter_map(|(step, value)| value.map(|value| (*step, value)))
                    .collect(),
            })
            .filter(|series| !series.points.is_empty())
            .collect();
        if result.len() > self.options.max_series {
            return Err(QueryError::Limit(format!(
                "maximum of series ({}) reached for a single query",
                self.options.max_series
            )));
        }
        let keep_order = matches!(
            metric,
            MetricExpr::VectorAggregation {
                op: VectorOp::Sort | VectorOp::SortDesc | VectorOp::Topk | VectorOp::Bottomk,
                ..
            }
        );
        if !keep_order {
            result.sort_by(|left, right| left.labels.cmp(&right.labels));
        }
        Ok(result)
    }

    fn log_query(
        &self,
        reader: &dyn LogReader,
        log: &LogExpr,
        start_ns: i64,
        end_ns: i64,
        limit: usize,
        direction: Direction,
    ) -> Result<Vec<StreamResult>, QueryError> {
        let (line_filters, covered) = LineFilters::leading(&log.pipeline).map_err(QueryError::Invalid)?;
        let pipeline = Pipeline::new(log.pipeline.get(covered..).unwrap_or_default()).map_err(QueryError::Invalid)?;
        let selection = LogSelection {
            start_ns,
            end_ns,
            matchers: log.matchers.clone(),
            line_contains: required_substrings(&log.pipeline),
        };
        let mut visitor = NewestOrOldest {
            line_filters: &line_filters,
            pipeline,
            limit,
            direction,
            sequence: 0,
            kept: std::collections::BinaryHeap::new(),
        };
        let order = match direction {
            Direction::Forward => ScanOrder::Forward,
            Direction::Backward => ScanOrder::Backward,
        };
        reader.scan(&selection, order, &mut visitor)?;
        let mut entries: Vec<KeptEntry> = visitor.kept.into_vec();
        entries.sort_by_key(|entry| entry.rank);
        let mut grouped: BTreeMap<Labels, Vec<(i64, String)>> = BTreeMap::new();
        for entry in entries {
            grouped.entry(entry.labels).or_default().push((entry.timestamp_ns, entry.line));
        }
        Ok(grouped.into_iter().map(|(labels, entries)| StreamResult { labels, entries }).collect())
    }

    fn eval(&self, reader: &dyn LogReader, expr: &MetricExpr, steps: &[i64]) -> Result<Value, QueryError> {
        match expr {
            MetricExpr::Literal(value) => Ok(Value::Scalar(vec![*value; steps.len()])),
            MetricExpr::Vector(value) => Ok(Value::Vector(vec![(Labels::empty(), vec![Some(*value); steps.len()])])),
            MetricExpr::Paren(inner) => self.eval(reader, inner, steps),
            MetricExpr::RangeAggregation { op, param, range, grouping } => {
                self.range_aggregation(reader, *op, *param, range, grouping.as_ref(), steps)
            }
            MetricExpr::VectorAggregation { op, param, inner, grouping } => {
                let value = match pushed_down_grouping(*op, inner, grouping.as_ref()) {
                    Some((range_op, range, pushed)) => {
                        self.range_aggregation(reader, range_op, None, range, Some(&pushed), steps)?
                    }
                    None => self.eval(reader, inner, steps)?,
                };
                let series = match value {
                    Value::Vector(series) => series,
                    Value::Scalar(_) => {
                        return Err(QueryError::Invalid(format!("expected a vector for {}, got a scalar", op.name())));
                    }
                };
                Ok(Value::Vector(vector_aggregation(*op, *param, series, grouping.as_ref(), steps.len())))
            }
            MetricExpr::LabelReplace { inner, destination, replacement, source, regex } => {
                let regex = regex::Regex::new(&format!("^(?s:{regex})$"))
                    .map_err(|error| QueryError::Invalid(error.to_string()))?;
                let value = self.eval(reader, inner, steps)?;
                let Value::Vector(series) = value else { return Ok(value) };
                let mut merged: BTreeMap<Labels, Vec<Option<f64>>> = BTreeMap::new();
                for (labels, values) in series {
                    let source_value = labels.get(source).unwrap_or("").to_string();
                    let labels = match regex.captures(&source_value) {
                        Some(captures) => {
                            let mut expanded = String::new();
                            captures.expand(replacement, &mut expanded);
                            let mut builder = labels.to_builder();
                            builder.set(destination.clone(), expanded);
                            builder.build()
                        }
                        None => labels,
                    };
                    merged.insert(labels, values);
                }
                Ok(Value::Vector(merged.into_iter().collect()))
            }
            MetricExpr::Binary { op, return_bool, matching, lhs, rhs } => {
                let left = self.eval(reader, lhs, steps)?;
                let right = self.eval(reader, rhs, steps)?;
                binary(*op, *return_bool, matching, left, right, steps.len())
            }
        }
    }

    fn range_aggregation(
        &self,
        reader: &dyn LogReader,
        op: RangeOp,
        param: Option<f64>,
        range: &LogRange,
        grouping: Option<&Grouping>,
        steps: &[i64],
    ) -> Result<Value, QueryError> {
        let range_ns = range.range_ms.saturating_mul(1_000_000);
        let offset_ns = range.offset_ms.saturating_mul(1_000_000);
        let (Some(first), Some(last)) = (steps.first(), steps.last()) else {
            return Ok(Value::Vector(Vec::new()));
        };
        let (line_filters, covered) = LineFilters::leading(&range.log.pipeline).map_err(QueryError::Invalid)?;
        let hints = ParserHints::for_grouping(grouping, &range.log.pipeline, range.unwrap.as_ref());
        let pipeline = Pipeline::with_hints(range.log.pipeline.get(covered..).unwrap_or_default(), hints)
            .map_err(QueryError::Invalid)?;
        let pipeline_is_empty = pipeline.is_empty();
        // Counting entries (or their bytes) through `| json` and label stages reading hinted labels only:
        // chunks keeping those labels in field columns answer without their lines.
        let counts_entries =
            matches!(op, RangeOp::CountOverTime | RangeOp::Rate | RangeOp::BytesOverTime | RangeOp::BytesRate);
        let field_names = (counts_entries && line_filters.is_empty() && range.unwrap.is_none())
            .then(|| pipeline.line_field_names().map(|(semantics, names)| (semantics, names.to_vec())))
            .flatten();
        let post_filters = match &range.unwrap {
            Some(unwrap) if !unwrap.post_filters.is_empty() => Some(
                Pipeline::new(&unwrap.post_filters.iter().cloned().map(Stage::LabelFilter).collect::<Vec<_>>())
                    .map_err(QueryError::Invalid)?,
            ),
            _ => None,
        };
        let selection = LogSelection {
            start_ns: first - offset_ns - range_ns,
            end_ns: last - offset_ns + 1,
            matchers: range.log.matchers.clone(),
            line_contains: required_substrings(&range.log.pipeline),
        };
        let buckets = StepBuckets::for_aggregation(op, range, steps, range_ns, offset_ns);
        let mut extractor = SampleExtractor {
            op,
            buckets,
            range,
            grouping,
            line_filters: &line_filters,
            pipeline,
            pipeline_is_empty,
            post_filters,
            series: Vec::new(),
            series_index: HashMap::new(),
            group_index: HashMap::default(),
            few_groups: Vec::new(),
            group_key: Vec::new(),
            last_stream: None,
            batch_series: None,
            first_error: None,
            unread_line_bytes: None,
            field_names,
            fields_memo: HashMap::default(),
            fields_key: Vec::new(),
            fields_memo_hits: 0,
            fields_memo_off: false,
        };
        reader.scan(&selection, ScanOrder::Forward, &mut extractor)?;
        let first_error = extractor.first_error;
        let buckets = extractor.buckets;
        let samples: HashMap<Labels, SeriesSamples> = extractor.series.into_iter().collect();
        if let Some(labels) = &first_error {
            return Err(QueryError::Invalid(format!(
                "pipeline error: '{}' for series: '{}'.\nUse a label filter to intentionally skip this error. (e.g | __error__!=\"{}\").\nTo skip all potential errors you can match empty errors.(e.g __error__=\"\")\nThe label filter can also be specified after unwrap. (e.g | unwrap latency | __error__=\"\" )",
                labels.get(ERROR_LABEL).unwrap_or(""),
                labels,
                labels.get(ERROR_LABEL).unwrap_or("")
            )));
        }
        let range_seconds = range_ns as f64 / 1e9;
        if op == RangeOp::AbsentOverTime {
            let mut values = vec![Some(1.0); steps.len()];
            for samples in samples.values() {
                let SeriesSamples::Points(points) = samples else { continue };
                for (index, step) in steps.iter().enumerate() {
                    let window_end = step - offset_ns;
                    if points
                        .iter()
                        .any(|(timestamp, _)| *timestamp > window_end - range_ns && *timestamp <= window_end)
                    {
                        values[index] = None;
                    }
                }
            }
            let labels = Labels::from_pairs(
                range
                    .log
                    .matchers
                    .iter()
                    .filter(|matcher| matcher.op == MatchOp::Equal)
                    .map(|matcher| (matcher.name.clone(), matcher.value.clone())),
            );
            return Ok(Value::Vector(vec![(labels, values)]));
        }
        let mut series = Vec::with_capacity(samples.len());
        for (labels, samples) in samples {
            let mut points = match samples {
                SeriesSamples::Points(points) => points,
                SeriesSamples::Buckets(counts_and_sums) => {
                    let Some(buckets) = &buckets else { continue };
                    let values = buckets.windows(&counts_and_sums, steps.len()).map(|(count, sum)| {
                        (count > 0).then(|| aggregate_counted_window(op, count, sum, range_seconds))
                    });
                    series.push((labels, values.collect()));
                    continue;
                }
            };
            points.sort_by_key(|(timestamp, _)| *timestamp);
            let mut values = Vec::with_capacity(steps.len());
            for step in steps {
                let window_end = step - offset_ns;
                let window_start = window_end - range_ns;
                let from = points.partition_point(|(timestamp, _)| *timestamp <= window_start);
                let to = points.partition_point(|(timestamp, _)| *timestamp <= window_end);
                let window = &points[from..to.max(from)];
                values.push(aggregate_window(op, param, window, range_seconds, window_start, window_end));
            }
            series.push((labels, values));
        }
        Ok(Value::Vector(series))
    }
}

/// `sum [by|without (...)] (count_over_time|rate|bytes_over_time|bytes_rate|sum_over_time({...} [d]))`
/// groups while extracting: summing counts (or unwrapped values) per group equals counting (or summing)
/// per group, so the range aggregation can
/// produce grouped series directly (and skip building each entry's full label set, which carries its
/// structured metadata and parsed labels). Entries whose labels carry `__error__` are noted before
/// grouping, so the query still fails on pipeline errors as Loki's does. Returns the range aggregation and
/// the grouping to extract with.
fn pushed_down_grouping<'a>(
    op: VectorOp,
    inner: &'a MetricExpr,
    grouping: Option<&Grouping>,
) -> Option<(RangeOp, &'a LogRange, Grouping)> {
    let MetricExpr::RangeAggregation { op: range_op, range, grouping: None, .. } = inner else { return None };
    // Sums of sums: what Loki's `canInjectVectorGrouping` lets a `sum by` reach into (`rate` and
    // `sum_over_time` of unwrapped values included).
    let linear = matches!(
        range_op,
        RangeOp::CountOverTime | RangeOp::Rate | RangeOp::BytesOverTime | RangeOp::BytesRate | RangeOp::SumOverTime
    );
    if op != VectorOp::Sum || !linear {
        return None;
    }
    Some((*range_op, range, grouping.cloned().unwrap_or(Grouping { without: false, labels: Vec::new() })))
}

/// An entry kept by a log query, ranked by its order in the result.
struct KeptEntry {
    /// `(key, sequence)`: key is the timestamp (forward) or its bitwise complement (backward), so the
    /// smallest ranks are the ones to return.
    rank: (i64, u64),
    timestamp_ns: i64,
    labels: Labels,
    line: String,
}

impl PartialEq for KeptEntry {
    fn eq(&self, other: &Self) -> bool {
        self.rank == other.rank
    }
}

impl Eq for KeptEntry {}

impl PartialOrd for KeptEntry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for KeptEntry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank.cmp(&other.rank)
    }
}

/// Keeps the `limit` newest (backward) or oldest (forward) entries passing the pipeline, in a max-heap of
/// ranks, and refuses batches that cannot beat the worst kept entry once the heap is full: with the
/// store's batch order this stops a `direction=backward&limit=100` query after the newest chunks.
struct NewestOrOldest<'a> {
    line_filters: &'a LineFilters,
    pipeline: Pipeline,
    limit: usize,
    direction: Direction,
    sequence: u64,
    kept: std::collections::BinaryHeap<KeptEntry>,
}

impl NewestOrOldest<'_> {
    fn key(&self, timestamp_ns: i64) -> i64 {
        match self.direction {
            Direction::Forward => timestamp_ns,
            Direction::Backward => !timestamp_ns,
        }
    }

    /// True when an entry with this key cannot enter the kept set.
    fn is_beaten(&self, key: i64) -> bool {
        self.limit > 0 && self.kept.len() >= self.limit && self.kept.peek().is_some_and(|worst| key > worst.rank.0)
    }
}

impl LogVisitor for NewestOrOldest<'_> {
    fn wants_batch(&mut self, _: &Labels, min_ns: i64, max_ns: i64) -> bool {
        let best_ns = match self.direction {
            Direction::Forward => min_ns,
            Direction::Backward => max_ns,
        };
        !self.is_beaten(self.key(best_ns))
    }

    fn entry(&mut self, stream: &Labels, entry: LogEntryRef<'_>) {
        let key = self.key(entry.timestamp_ns);
        if self.is_beaten(key) || !self.line_filters.keeps(entry.line) {
            return;
        }
        let Some(processed) = self.pipeline.process_ref(stream, entry) else { return };
        self.sequence += 1;
        self.kept.push(KeptEntry {
            rank: (key, self.sequence),
            timestamp_ns: entry.timestamp_ns,
            labels: processed.labels,
            line: processed.line,
        });
        if self.limit > 0 && self.kept.len() > self.limit {
            self.kept.pop();
        }
    }
}

/// Turns entries into samples for a range aggregation: `(labels, (timestamp_ns, value))` per entry that
/// passes the pipeline. Entries of a stream without structured metadata through a pipeline of line
/// filters only (the common `count_over_time({...} |= "x" [5m])`) take a fast path: the leading filters
/// run on the borrowed line and the series is found once per stream, so nothing is allocated per entry.
struct SampleExtractor<'a> {
    op: RangeOp,
    /// Set when samples are summed per step interval instead of kept one by one.
    buckets: Option<StepBuckets>,
    range: &'a LogRange,
    grouping: Option<&'a Grouping>,
    line_filters: &'a LineFilters,
    pipeline: Pipeline,
    /// The pipeline has no stage (the entry goes through unchanged).
    pipeline_is_empty: bool,
    post_filters: Option<Pipeline>,
    series: Vec<(Labels, SeriesSamples)>,
    series_index: HashMap<Labels, usize>,
    /// Grouped by name: the series of each group key ([`Pipeline::process_grouped_key`]) seen so far.
    /// Hashed with foldhash, seeded per query: a key is hashed per entry, and SipHash cost 3% of a scan.
    group_index: HashMap<Vec<u8>, usize, foldhash::fast::RandomState>,
    /// The first [`FEW_GROUPS`] group keys and their series, searched before `group_index`: most grouped
    /// queries have a few groups, and comparing a short key in line with a few beats hashing it (the hash
    /// lookup was 5.6% of `sum by (level) (count_over_time(... | logfmt [10m]))`'s CPU time).
    few_groups: Vec<(Vec<u8>, usize)>,
    /// The current entry's group key, reused between entries.
    group_key: Vec<u8>,
    /// The stream of the previous fast-path entry and its series.
    last_stream: Option<(Labels, usize)>,
    /// The series of the current batch's fast-path entries, once its first entry found it (a batch's
    /// entries all come from the stream [`LogVisitor::wants_batch`] was asked about).
    batch_series: Option<usize>,
    /// The labels of the first entry left with `__error__`, seen before grouping.
    first_error: Option<Labels>,
    /// The length of the current entry's line when the store left it unread.
    unread_line_bytes: Option<usize>,
    /// The parser's semantics and the labels that stand for the line ([`Pipeline::line_field_names`]),
    /// asked of the store as field columns; `None` when the query reads lines otherwise.
    field_names: Option<(u32, Vec<String>)>,
    /// Within a batch, grouped by name: the series (or `None`: dropped) of each combination of field values
    /// seen in entries without structured metadata of a hinted name. Cleared per batch.
    fields_memo: HashMap<Vec<u8>, Option<usize>, foldhash::fast::RandomState>,
    /// The current entry's key into `fields_memo`, reused.
    fields_key: Vec<u8>,
    /// How many entries of the batch `fields_memo` answered.
    fields_memo_hits: usize,
    /// `fields_memo` is left unused for the rest of the batch: it missed more than it answered.
    fields_memo_off: bool,
}

/// How many combinations of field values a batch's memo holds before it is judged by how often it answered
/// ([`SampleExtractor::entry_with_fields`]).
const FIELDS_MEMO_TRIAL: usize = 256;

impl SampleExtractor<'_> {
    fn series_of(&mut self, labels: Labels) -> usize {
        if let Some(index) = self.series_index.get(&labels) {
            return *index;
        }
        let index = self.series.len();
        self.series.push((labels.clone(), SeriesSamples::Points(Vec::new())));
        self.series_index.insert(labels, index);
        index
    }

    /// Adds a sample to series `index`. A series keeps its samples until they would take more room than
    /// per-interval sums ([`StepBuckets`]), then sums them, so a query with many small series (one per
    /// line, say) takes no more memory than before.
    fn record(&mut self, index: usize, timestamp_ns: i64, value: f64) {
        let Some((_, samples)) = self.series.get_mut(index) else { return };
        match (samples, &self.buckets) {
            (SeriesSamples::Points(points), Some(buckets)) if points.len() >= buckets.len => {
                let mut intervals = vec![(0, 0.0); buckets.len];
                for (timestamp_ns, value) in points.iter().copied().chain([(timestamp_ns, value)]) {
                    buckets.add(&mut intervals, timestamp_ns, value);
                }
                self.series[index].1 = SeriesSamples::Buckets(intervals);
            }
            (SeriesSamples::Points(points), _) => points.push((timestamp_ns, value)),
            (SeriesSamples::Buckets(intervals), Some(buckets)) => buckets.add(intervals, timestamp_ns, value),
            (SeriesSamples::Buckets(_), None) => {}
        }
    }

    fn push(&mut self, labels: Labels, timestamp_ns: i64, value: f64) {
        if self.first_error.is_none() && labels.get(ERROR_LABEL).is_some() {
            self.first_error = Some(labels.clone());
        }
        let labels = match self.grouping {
            Some(grouping) => group_labels(&labels, grouping),
            None => labels,
        };
        let index = self.series_of(labels);
        self.record(index, timestamp_ns, value);
    }
}

/// How many group keys a grouped range aggregation compares in line before hashing them.
const FEW_GROUPS: usize = 8;

/// Where an entry went in a range aggregation grouped by name.
enum Grouped {
    /// Into series `.0`; its line is `.1` bytes long.
    Series(usize, usize),
    /// A stage dropped it.
    Dropped,
    /// A stage left `__error__` on it (noted in `first_error`).
    Error,
}

impl SampleExtractor<'_> {
    /// [`SampleExtractor::grouped_series`] with `fields` given as the labels the pipeline's parser gives the
    /// entry ([`Pipeline::give_parsed_fields`]), for an entry read from field columns.
    fn grouped_series_given(
        &mut self,
        stream: &Labels,
        entry: LogEntryRef<'_>,
        names: &[String],
        fields: &[Option<&str>],
    ) -> Grouped {
        self.pipeline.give_parsed_fields(fields);
        let grouped = self.grouped_series(stream, entry, names);
        self.pipeline.clear_parsed_fields();
        grouped
    }

    /// Runs the pipeline on `entry` for a range aggregation grouped `by (names)` and finds its series: per
    /// entry only a key of the grouping labels' values is built; the labels only for a group not seen
    /// before.
    fn grouped_series(&mut self, stream: &Labels, entry: LogEntryRef<'_>, names: &[String]) -> Grouped {
        match self.pipeline.process_grouped_key(stream, entry, names, &mut self.group_key) {
            None => Grouped::Dropped,
            Some(Ok(line_length)) => {
                let key = self.group_key.as_slice();
                let same_key = |(known, _): &&(Vec<u8>, usize)| same_short_bytes(known, key);
                let known = match self.few_groups.iter().find(same_key) {
                    Some((_, index)) => Some(*index),
                    None => self.group_index.get(key).copied(),
                };
                let index = match known {
                    Some(index) => index,
                    None => {
                        // A group not seen before: its labels, once.
                        let Some(Ok((_, grouped))) = self.pipeline.process_grouped(stream, entry, names) else {
                            return Grouped::Dropped;
                        };
                        let index = self.series_of(grouped);
                        if self.few_groups.len() < FEW_GROUPS {
                            self.few_groups.push((self.group_key.clone(), index));
                        } else {
                            self.group_index.insert(self.group_key.clone(), index);
                        }
                        index
                    }
                };
                Grouped::Series(index, line_length)
            }
            Some(Err(labels)) => {
                if self.first_error.is_none() {
                    self.first_error = Some(labels);
                }
                Grouped::Error
            }
        }
    }
}

impl LogVisitor for SampleExtractor<'_> {
    fn wants_batch(&mut self, _: &Labels, _: i64, _: i64) -> bool {
        self.batch_series = None;
        self.fields_memo.clear();
        self.fields_memo_hits = 0;
        self.fields_memo_off = false;
        true
    }

    /// Counting entries or their bytes for a stream selector without stages that read lines
    /// (`count_over_time`, `rate`, `bytes_over_time`, `bytes_rate`, `absent_over_time`, past `drop` or `keep`
    /// at most) reads timestamps, line lengths and structured metadata only.
    fn reads_lines(&self) -> bool {
        let counts_entries = matches!(
            self.op,
            RangeOp::CountOverTime
                | RangeOp::Rate
                | RangeOp::BytesOverTime
                | RangeOp::BytesRate
                | RangeOp::AbsentOverTime
        );
        let line_unread = self.line_filters.is_empty() && !self.pipeline.reads_lines() && self.range.unwrap.is_none();
        !(counts_entries && line_unread)
    }

    fn entry_without_line(
        &mut self,
        stream: &Labels,
        timestamp_ns: i64,
        line_bytes: usize,
        structured_metadata: &[LabelRef<'_>],
    ) {
        // No stage reads or rewrites the line (`reads_lines`), so its length stands for the one it would have.
        self.unread_line_bytes = Some(line_bytes);
        self.entry(stream, LogEntryRef { timestamp_ns, line: "", structured_metadata });
        self.unread_line_bytes = None;
    }

    fn line_fields(&self) -> Option<(u32, &[String])> {
        self.field_names.as_ref().map(|(semantics, names)| (*semantics, names.as_slice()))
    }

    /// The entry goes through the pipeline with its field values given as the parser's labels, which the
    /// pipeline treats as it would the line ([`Pipeline::give_parsed_fields`]); counted bytes are the line's.
    fn entry_with_fields(
        &mut self,
        stream: &Labels,
        timestamp_ns: i64,
        line_bytes: usize,
        structured_metadata: &[LabelRef<'_>],
        fields: &[Option<&str>],
    ) {
        let names = self.field_names.as_ref().map_or(&[][..], |(_, names)| names.as_slice());
        // Grouped by name, an entry's fate depends on its stream (the batch's), its field values and its
        // structured metadata of hinted names only: entries of a batch without such metadata and with the
        // values of an earlier one go where it went, without running the pipeline.
        let memo = match self.grouping {
            Some(Grouping { without: false, labels: grouping }) => {
                let hinted_metadata = structured_metadata
                    .iter()
                    .any(|label| names.iter().any(|name| *name == sanitized_label_name(label.name)));
                (!hinted_metadata).then_some(grouping)
            }
            _ => None,
        };
        let record_value = match self.op {
            RangeOp::BytesOverTime | RangeOp::BytesRate => line_bytes as f64,
            _ => 1.0,
        };
        // The line is read as empty by no stage (label stages only follow the parser, `line_field_names`):
        // whenever the pipeline runs, its parser takes the values instead of parsing a line.
        let entry = LogEntryRef { timestamp_ns, line: "", structured_metadata };
        match memo {
            Some(grouping) if !self.fields_memo_off => {
                let mut key = std::mem::take(&mut self.fields_key);
                key.clear();
                for value in fields {
                    match value {
                        None => key.push(0),
                        Some(value) => {
                            key.push(1);
                            key.extend_from_slice(&(value.len() as u64).to_le_bytes());
                            key.extend_from_slice(value.as_bytes());
                        }
                    }
                }
                let series = match self.fields_memo.get(key.as_slice()) {
                    Some(series) => {
                        self.fields_memo_hits += 1;
                        *series
                    }
                    None => {
                        // Values that seldom repeat within a batch (`duration_ms`) make the memo cost more
                        // than it saves: past a few hundred combinations, mostly missed, the batch goes on
                        // without it.
                        if self.fields_memo.len() >= FIELDS_MEMO_TRIAL && self.fields_memo_hits < self.fields_memo.len()
                        {
                            self.fields_memo_off = true;
                        }
                        match self.grouped_series_given(stream, entry, grouping, fields) {
                            Grouped::Series(index, _) => {
                                self.fields_memo.insert(key.clone(), Some(index));
                                Some(index)
                            }
                            Grouped::Dropped => {
                                self.fields_memo.insert(key.clone(), None);
                                None
                            }
                            Grouped::Error => None,
                        }
                    }
                };
                self.fields_key = key;
                if let Some(index) = series {
                    self.record(index, timestamp_ns, record_value);
                }
            }
            Some(grouping) => {
                if let Grouped::Series(index, _) = self.grouped_series_given(stream, entry, grouping, fields) {
                    self.record(index, timestamp_ns, record_value);
                }
            }
            None => {
                self.pipeline.give_parsed_fields(fields);
                self.unread_line_bytes = Some(line_bytes);
                self.entry(stream, entry);
                self.unread_line_bytes = None;
                self.pipeline.clear_parsed_fields();
            }
        }
    }

    fn entry(&mut self, stream: &Labels, entry: LogEntryRef<'_>) {
        if !self.line_filters.keeps(entry.line) {
            return;
        }
        let unread_line_bytes = self.unread_line_bytes;
        let line_value = |line: &str| match self.op {
            RangeOp::BytesOverTime | RangeOp::BytesRate => unread_line_bytes.unwrap_or(line.len()) as f64,
            _ => 1.0,
        };
        // Structured metadata joins an entry's labels, unless a `by` grouping drops it anyway.
        let metadata_kept = || {
            !entry.structured_metadata.is_empty()
                && match self.grouping {
                    // Sanitizing an ASCII name keeps its length or adds a byte: other lengths never match.
                    // Metadata named like a stream label joins as `<name>_extracted`.
                    Some(Grouping { without: false, labels }) => entry.structured_metadata.iter().any(|label| {
                        let ascii = label.name.is_ascii();
                        let same_name = |name: &str| {
                            let length_may_match =
                                !ascii || name.len() == label.name.len() || name.len() == label.name.len() + 1;
                            length_may_match && name == sanitized_label_name(label.name)
                        };
                        labels.iter().any(|name| {
                            same_name(name)
                                || ((!ascii || name.len() >= label.name.len() + "_extracted".len())
                                    && name.strip_suffix("_extracted").is_some_and(same_name))
                        })
                    }),
                    _ => true,
                }
        };
        if self.pipeline_is_empty && self.range.unwrap.is_none() && !metadata_kept() {
            let value = line_value(entry.line);
            // The entries of a batch share its stream: its series is looked up once per batch.
            let index = match (self.batch_series, &self.last_stream) {
                (Some(index), _) => {
                    debug_assert!(self.last_stream.as_ref().is_some_and(|(labels, _)| labels == stream));
                    index
                }
                (None, Some((labels, index))) if labels == stream => *index,
                _ => {
                    let grouped = match self.grouping {
                        Some(grouping) => group_labels(stream, grouping),
                        None => stream.clone(),
                    };
                    let index = self.series_of(grouped);
                    self.last_stream = Some((stream.clone(), index));
                    index
                }
            };
            self.batch_series = Some(index);
            self.record(index, entry.timestamp_ns, value);
            return;
        }
        if let (None, Some(Grouping { without: false, labels: names })) = (&self.range.unwrap, self.grouping) {
            // Grouped by name: per entry only a key of the grouping labels' values is built; the labels
            // only for a group not seen before.
            if let Grouped::Series(index, line_length) = self.grouped_series(stream, entry, names) {
                let value = match self.op {
                    RangeOp::BytesOverTime | RangeOp::BytesRate => unread_line_bytes.unwrap_or(line_length) as f64,
                    _ => 1.0,
                };
                self.record(index, entry.timestamp_ns, value);
            }
            return;
        }
        let Some(processed) = self.pipeline.process_ref(stream, entry) else { return };
        match &self.range.unwrap {
            None => {
                let value = line_value(&processed.line);
                self.push(processed.labels, entry.timestamp_ns, value);
            }
            Some(unwrap) => {
                let text = processed.labels.get(&unwrap.label).unwrap_or("").to_string();
                let kind = match unwrap.conversion {
                    UnwrapConversion::Number => NumberKind::Number,
                    UnwrapConversion::Duration => NumberKind::Duration,
                    UnwrapConversion::Bytes => NumberKind::Bytes,
                };
                let mut builder = processed.labels.to_builder();
                builder.delete(&unwrap.label);
                let value = match convert(&text, kind) {
                    Some(value) => value,
                    None => {
                        if builder.get(ERROR_LABEL).is_none() {
                            builder.set(ERROR_LABEL, "SampleExtractionErr");
                            builder.set(
                                ERROR_DETAILS_LABEL,
                                format!("strconv.ParseFloat: parsing {text:?}: invalid syntax"),
                            );
                        }
                        0.0
                    }
                };
                let mut labels = builder.build();
                if let Some(post) = &mut self.post_filters {
                    let probe = oxeye_model::logs::LogEntry::new(entry.timestamp_ns, processed.line);
                    match post.process(&labels, &probe) {
                        Some(kept) => labels = kept.labels,
                        None => return,
                    }
                }
                self.push(labels, entry.timestamp_ns, value);
            }
        }
    }
}

/// The samples of one series while a range aggregation scans.
enum SeriesSamples {
    /// Every sample, `(timestamp_ns, value)`, in scan order.
    Points(Vec<(i64, f64)>),
    /// Per step interval of [`StepBuckets`], the count and the sum of the samples in it.
    Buckets(Vec<(u64, f64)>),
}

/// Step intervals for range aggregations whose windows are sums of whole intervals: with steps `t_i`
/// `step_ns` apart and a range of `k` steps, window `i` (`(t_i - range, t_i]`, shifted by the offset) is
/// the union of the intervals `(t_j - step, t_j]` for `j` in `i-k+1..=i`. Counting each sample into its
/// interval replaces keeping (and sorting) every sample: `count_over_time`, `rate`, `bytes_over_time` and
/// `bytes_rate` of lines then cost one addition per entry. Their values are whole numbers (1 or a line's
/// length), so summing per interval first gives exactly the same floats as summing per window.
#[derive(Debug, Clone)]
struct StepBuckets {
    /// The first step's window end (`t_0 - offset`), nanoseconds.
    first_end_ns: i64,
    step_ns: i64,
    /// Steps per range.
    steps_per_range: usize,
    /// Intervals: the steps plus the `steps_per_range - 1` before the first.
    len: usize,
    /// The bounds (`(after_ns, through_ns]`) and index of the interval found last.
    last_interval: std::cell::Cell<(i64, i64, usize)>,
}

impl StepBuckets {
    /// Most intervals kept per series (16 bytes each).
    const MAX_LEN: usize = 1 << 16;

    /// The intervals for `op` over evenly spaced `steps`, when its windows are unions of them and its
    /// value a sum of whole numbers; `None` otherwise.
    fn for_aggregation(op: RangeOp, range: &LogRange, steps: &[i64], range_ns: i64, offset_ns: i64) -> Option<Self> {
        let whole_numbers =
            matches!(op, RangeOp::CountOverTime | RangeOp::Rate | RangeOp::BytesOverTime | RangeOp::BytesRate);
        if !whole_numbers || range.unwrap.is_some() || range_ns <= 0 {
            return None;
        }
        let first = *steps.first()?;
        let step_ns = match steps.get(1) {
            Some(second) => second.checked_sub(first)?,
            None => range_ns,
        };
        let evenly_spaced = steps.iter().enumerate().all(|(index, step)| {
            i64::try_from(index)
                .ok()
                .and_then(|index| index.checked_mul(step_ns))
                .and_then(|delta| first.checked_add(delta))
                == Some(*step)
        });
        if step_ns <= 0 || range_ns % step_ns != 0 || !evenly_spaced {
            return None;
        }
        let steps_per_range = usize::try_from(range_ns / step_ns).ok()?;
        let len = steps.len().checked_add(steps_per_range - 1).filter(|len| *len <= Self::MAX_LEN)?;
        Some(StepBuckets {
            first_end_ns: first.checked_sub(offset_ns)?,
            step_ns,
            steps_per_range,
            len,
            last_interval: std::cell::Cell::new((0, 0, 0)),
        })
    }

    /// The interval of a sample at `timestamp_ns`, if any window holds it.
    fn index(&self, timestamp_ns: i64) -> Option<usize> {
        // Entries come in time order within a batch: most fall into the interval of the one before.
        let (after_ns, through_ns, last_index) = self.last_interval.get();
        if timestamp_ns > after_ns && timestamp_ns <= through_ns {
            return Some(last_index);
        }
        // Interval j (from -(k-1)) is (t_j - step, t_j]: j = ceil((timestamp - t_0) / step).
        let since_first = i128::from(timestamp_ns) - i128::from(self.first_end_ns);
        let step = i128::from(self.step_ns);
        let interval = (since_first + step - 1).div_euclid(step);
        let index =
            usize::try_from(interval + self.steps_per_range as i128 - 1).ok().filter(|index| *index < self.len)?;
        let through = i128::from(self.first_end_ns) + interval * step;
        if let (Ok(after_ns), Ok(through_ns)) = (i64::try_from(through - step), i64::try_from(through)) {
            self.last_interval.set((after_ns, through_ns, index));
        }
        Some(index)
    }

    /// Counts a sample at `timestamp_ns` of `value` into its interval of `intervals` (one per interval).
    fn add(&self, intervals: &mut [(u64, f64)], timestamp_ns: i64, value: f64) {
        if let Some((count, sum)) = self.index(timestamp_ns).and_then(|index| intervals.get_mut(index)) {
            *count += 1;
            *sum += value;
        }
    }

    /// The count and sum of each of `steps` windows, from a series' intervals.
    fn windows<'a>(&self, intervals: &'a [(u64, f64)], steps: usize) -> impl Iterator<Item = (u64, f64)> + 'a {
        let mut prefix = Vec::with_capacity(intervals.len() + 1);
        let (mut count, mut sum) = (0u64, 0.0f64);
        prefix.push((count, sum));
        for (interval_count, interval_sum) in intervals {
            count += interval_count;
            sum += interval_sum;
            prefix.push((count, sum));
        }
        let width = self.steps_per_range;
        (0..steps).map(move |step| {
            let (Some(before), Some(through)) = (prefix.get(step), prefix.get(step + width)) else { return (0, 0.0) };
            (through.0 - before.0, through.1 - before.1)
        })
    }
}

/// [`aggregate_window`] of the ops [`StepBuckets`] serves, from a window's sample count and sum.
fn aggregate_counted_window(op: RangeOp, count: u64, sum: f64, range_seconds: f64) -> f64 {
    match op {
        RangeOp::CountOverTime => count as f64,
        RangeOp::Rate | RangeOp::BytesRate => sum / range_seconds,
        _ => sum,
    }
}

fn group_labels(labels: &Labels, grouping: &Grouping) -> Labels {
    if grouping.without {
        let mut builder = labels.to_builder();
        for name in &grouping.labels {
            builder.delete(name);
        }
        builder.build()
    } else {
        Labels::from_pairs(
            grouping.labels.iter().filter_map(|name| labels.get(name).map(|value| (name.clone(), value.to_string()))),
        )
    }
}

fn aggregate_window(
    op: RangeOp,
    param: Option<f64>,
    window: &[(i64, f64)],
    range_seconds: f64,
    window_start: i64,
    window_end: i64,
) -> Option<f64> {
    if window.is_empty() {
        return None;
    }
    let values = window.iter().map(|(_, value)| *value);
    let count = window.len() as f64;
    let sum: f64 = values.clone().sum();
    Some(match op {
        RangeOp::CountOverTime => count,
        RangeOp::Rate => sum / range_seconds,
        RangeOp::BytesOverTime | RangeOp::SumOverTime => sum,
        RangeOp::BytesRate => sum / range_seconds,
        RangeOp::AvgOverTime => sum / count,
        RangeOp::MinOverTime => values.fold(f64::INFINITY, f64::min),
        RangeOp::MaxOverTime => values.fold(f64::NEG_INFINITY, f64::max),
        RangeOp::StdvarOverTime | RangeOp::StddevOverTime => {
            let mean = sum / count;
            let variance = values.map(|value| (value - mean).powi(2)).sum::<f64>() / count;
            if op == RangeOp::StddevOverTime { variance.sqrt() } else { variance }
        }
        RangeOp::QuantileOverTime => {
            let mut sorted: Vec<f64> = values.collect();
            sorted.sort_by(f64::total_cmp);
            quantile(param.unwrap_or(0.5), &sorted)
        }
        RangeOp::FirstOverTime => window.first().map_or(0.0, |(_, value)| *value),
        RangeOp::LastOverTime => window.last().map_or(0.0, |(_, value)| *value),
        RangeOp::RateCounter => extrapolated_counter_rate(window, window_start, window_end, range_seconds)?,
        RangeOp::AbsentOverTime => 1.0,
    })
}

/// Prometheus' quantile: linear interpolation between closest ranks.
fn quantile(q: f64, sorted: &[f64]) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    let rank = q * (sorted.len() - 1) as f64;
    let lower = rank.floor() as usize;
    let upper = (lower + 1).min(sorted.len() - 1);
    let weight = rank - lower as f64;
    sorted[lower] * (1.0 - weight) + sorted[upper] * weight
}

/// Prometheus' `extrapolatedRate` for counters, as Loki's `rate_counter` uses it.
fn extrapolated_counter_rate(
    window: &[(i64, f64)],
    window_start: i64,
    window_end: i64,
    range_seconds: f64,
) -> Option<f64> {
    if window.len() < 2 {
        return None;
    }
    let (first_time, first_value) = window[0];
    let (last_time, last_value) = window[window.len() - 1];
    let mut result = last_value - first_value;
    let mut previous = first_value;
    for (_, value) in &window[1..] {
        if *value < previous {
            result += previous;
        }
        previous = *value;
    }
    let duration_to_start = (first_time - window_start) as f64 / 1e9;
    let duration_to_end = (window_end - last_time) as f64 / 1e9;
    let sampled_interval = (last_time - first_time) as f64 / 1e9;
    let average_interval = sampled_interval / (window.len() - 1) as f64;
    let mut duration_to_start = duration_to_start;
    if result > 0.0 && first_value >= 0.0 {
        let duration_to_zero = sampled_interval * (first_value / result);
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    let threshold = average_interval * 1.1;
    let mut extrapolate_to = sampled_interval;
    extrapolate_to += if duration_to_start < threshold { duration_to_start } else { average_interval / 2.0 };
    extrapolate_to += if duration_to_end < threshold { duration_to_end } else { average_interval / 2.0 };
    if sampled_interval == 0.0 {
        return None;
    }
    Some(result * (extrapolate_to / sampled_interval) / range_seconds)
}

fn vector_aggregation(
    op: VectorOp,
    param: Option<f64>,
    series: Vec<(Labels, Vec<Option<f64>>)>,
    grouping: Option<&Grouping>,
    step_count: usize,
) -> Vec<(Labels, Vec<Option<f64>>)> {
    let group_of = |labels: &Labels| match grouping {
        Some(grouping) => group_labels(labels, grouping),
        None => Labels::empty(),
    };
    match op {
        VectorOp::Sort | VectorOp::SortDesc => {
            let mut series = series;
            let last_value =
                |values: &Vec<Option<f64>>| values.iter().rev().find_map(|value| *value).unwrap_or(f64::NAN);
            series.sort_by(|left, right| {
                let ordering = last_value(&left.1).total_cmp(&last_value(&right.1));
                if op == VectorOp::Sort { ordering } else { ordering.reverse() }
            });
            series
        }
        VectorOp::Topk | VectorOp::Bottomk => {
            let k = param.unwrap_or(1.0).max(0.0) as usize;
            let mut groups: BTreeMap<Labels, Vec<usize>> = BTreeMap::new();
            for (index, (labels, _)) in series.iter().enumerate() {
                groups.entry(group_of(labels)).or_default().push(index);
            }
            let mut keep: Vec<Vec<Option<f64>>> = vec![vec![None; step_count]; series.len()];
            for members in groups.values() {
                #[allow(clippy::needless_range_loop)] // `step` indexes every member's values and `keep`
                for step in 0..step_count {
                    let mut candidates: Vec<(usize, f64)> = members
                        .iter()
                        .filter_map(|index| series[*index].1[step].map(|value| (*index, value)))
                        .collect();
                    candidates.sort_by(|left, right| {
                        let ordering = left.1.total_cmp(&right.1);
                        if op == VectorOp::Topk { ordering.reverse() } else { ordering }
                    });
                    for (index, value) in candidates.into_iter().take(k) {
                        keep[index][step] = Some(value);
                    }
                }
            }
            let mut result: Vec<(Labels, Vec<Option<f64>>)> = series
                .into_iter()
                .zip(keep)
                .map(|((labels, _), values)| (labels, values))
                .filter(|(_, values)| values.iter().any(Option::is_some))
                .collect();
            let last_value =
                |values: &Vec<Option<f64>>| values.iter().rev().find_map(|value| *value).unwrap_or(f64::NAN);
            result.sort_by(|left, right| {
                let ordering = last_value(&left.1).total_cmp(&last_value(&right.1));
                if op == VectorOp::Topk { ordering.reverse() } else { ordering }
            });
            result
        }
        _ => {
            let mut groups: BTreeMap<Labels, Vec<Vec<f64>>> = BTreeMap::new();
            for (labels, values) in &series {
                let group = groups.entry(group_of(labels)).or_insert_with(|| vec![Vec::new(); step_count]);
                for (step, value) in values.iter().enumerate() {
                    if let Some(value) = value {
                        group[step].push(*value);
                    }
                }
            }
            groups
                .into_iter()
                .map(|(labels, per_step)| {
                    let values = per_step
                        .into_iter()
                        .map(|values| {
                            if values.is_empty() {
                                return None;
                            }
                            let count = values.len() as f64;
                            let sum: f64 = values.iter().sum();
                            Some(match op {
                                VectorOp::Sum => sum,
                                VectorOp::Avg => sum / count,
                                VectorOp::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
                                VectorOp::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                                VectorOp::Count => count,
                                VectorOp::Stddev | VectorOp::Stdvar => {
                                    let mean = sum / count;
                                    let variance =
                                        values.iter().map(|value| (value - mean).powi(2)).sum::<f64>() / count;
                                    if op == VectorOp::Stddev { variance.sqrt() } else { variance }
                                }
                                _ => sum,
                            })
                        })
                        .collect();
                    (labels, values)
                })
                .collect()
        }
    }
}

fn arithmetic(op: BinaryOp, left: f64, right: f64) -> Option<f64> {
    Some(match op {
        BinaryOp::Add => left + right,
        BinaryOp::Sub => left - right,
        BinaryOp::Mul => left * right,
        BinaryOp::Div => left / right,
        BinaryOp::Mod => left % right,
        BinaryOp::Pow => left.powf(right),
        BinaryOp::Compare(_) | BinaryOp::And | BinaryOp::Or | BinaryOp::Unless => return None,
    })
}

/// Applies an arithmetic or comparison operator to one pair; `None` drops the point (failed comparison).
fn apply(op: BinaryOp, return_bool: bool, left: f64, right: f64, keep_left: bool) -> Option<f64> {
    match op {
        BinaryOp::Compare(compare) => {
            let holds = compare.compare(left, right);
            if return_bool {
                Some(if holds { 1.0 } else { 0.0 })
            } else if holds {
                Some(if keep_left { left } else { right })
            } else {
                None
            }
        }
        _ => arithmetic(op, left, right),
    }
}

fn match_key(labels: &Labels, matching: &VectorMatching) -> Labels {
    match &matching.labels {
        Some(names) if matching.on => Labels::from_pairs(
            names.iter().filter_map(|name| labels.get(name).map(|value| (name.clone(), value.to_string()))),
        ),
        Some(names) => {
            let mut builder = labels.to_builder();
            for name in names {
                builder.delete(name);
            }
            builder.build()
        }
        None => labels.clone(),
    }
}

fn binary(
    op: BinaryOp,
    return_bool: bool,
    matching: &VectorMatching,
    left: Value,
    right: Value,
    step_count: usize,
) -> Result<Value, QueryError> {
    match (left, right) {
        (Value::Scalar(left), Value::Scalar(right)) => {
            if matches!(op, BinaryOp::And | BinaryOp::Or | BinaryOp::Unless) {
                return Err(QueryError::Invalid(format!(
                    "set operator {} not allowed in binary scalar expression",
                    op.as_str()
                )));
            }
            if matches!(op, BinaryOp::Compare(_)) && !return_bool {
                return Err(QueryError::Invalid("comparisons between scalars must use BOOL modifier".into()));
            }
            Ok(Value::Scalar(
                left.iter()
                    .zip(&right)
                    .map(|(left, right)| apply(op, true, *left, *right, true).unwrap_or(f64::NAN))
                    .collect(),
            ))
        }
        (Value::Vector(series), Value::Scalar(scalar)) | (Value::Scalar(scalar), Value::Vector(series))
            if matches!(op, BinaryOp::And | BinaryOp::Or | BinaryOp::Unless) =>
        {
            let _ = (series, scalar);
            Err(QueryError::Invalid(format!("set operator {} not allowed with a scalar", op.as_str())))
        }
        (Value::Vector(series), Value::Scalar(scalar)) => Ok(Value::Vector(
            series
                .into_iter()
                .map(|(labels, values)| {
                    let values = values
                        .iter()
                        .zip(&scalar)
                        .map(|(value, right)| value.and_then(|left| apply(op, return_bool, left, *right, true)))
                        .collect();
                    (labels, values)
                })
                .collect(),
        )),
        (Value::Scalar(scalar), Value::Vector(series)) => Ok(Value::Vector(
            series
                .into_iter()
                .map(|(labels, values)| {
                    let values = values
                        .iter()
                        .zip(&scalar)
                        .map(|(value, left)| value.and_then(|right| apply(op, return_bool, *left, right, false)))
                        .collect();
                    (labels, values)
                })
                .collect(),
        )),
        (Value::Vector(left), Value::Vector(right)) => {
            let right_by_key: HashMap<Labels, Vec<&StepSeries>> = right.iter().fold(HashMap::new(), |mut map, item| {
                map.entry(match_key(&item.0, matching)).or_default().push(item);
                map
            });
            match op {
                BinaryOp::And | BinaryOp::Unless => Ok(Value::Vector(
                    left.into_iter()
                        .map(|(labels, values)| {
                            let partners = right_by_key.get(&match_key(&labels, matching));
                            let values = (0..step_count)
                                .map(|step| {
                                    let present = partners.is_some_and(|partners| {
                                        partners.iter().any(|partner| partner.1[step].is_some())
                                    });
                                    if (op == BinaryOp::And) == present { values[step] } else { None }
                                })
                                .collect();
                            (labels, values)
                        })
                        .collect(),
                )),
                BinaryOp::Or => {
                    let left_keys: Vec<(Labels, Vec<bool>)> = left
                        .iter()
                        .map(|(labels, values)| {
                            (match_key(labels, matching), values.iter().map(Option::is_some).collect())
                        })
                        .collect();
                    let mut result = left;
                    for (labels, values) in right {
                        let key = match_key(&labels, matching);
                        let values = (0..step_count)
                            .map(|step| {
                                let covered =
                                    left_keys.iter().any(|(left_key, present)| *left_key == key && present[step]);
                                if covered { None } else { values[step] }
                            })
                            .collect();
                        result.push((labels, values));
                    }
                    Ok(Value::Vector(result))
                }
                _ => {
                    let group_right = matches!(matching.group, Some((true, _)));
                    let (many, one) = if group_right { (right, left) } else { (left, right) };
                    let one_by_key: HashMap<Labels, &(Labels, Vec<Option<f64>>)> = {
                        let mut map = HashMap::new();
                        for item in &one {
                            if map.insert(match_key(&item.0, matching), item).is_some() && matching.group.is_some() {
                                return Err(QueryError::Invalid(
                                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
                                ));
                            }
                        }
                        map
                    };
                    let mut result: BTreeMap<Labels, Vec<Option<f64>>> = BTreeMap::new();
                    for (labels, values) in &many {
                        let key = match_key(labels, matching);
                        let Some(partner) = one_by_key.get(&key) else { continue };
                        let result_labels = if matching.group.is_some() {
                            let mut builder = labels.to_builder();
                            if let Some((_, include)) = &matching.group {
                                for name in include {
                                    if let Some(value) = partner.0.get(name) {
                                        builder.set(name.clone(), value.to_string());
                                    }
                                }
                            }
                            builder.build()
                        } else if matching.on {
                            key.clone()
                        } else {
                            match &matching.labels {
                                Some(_) => key.clone(),
                                None => labels.clone(),
                            }
                        };
                        let combined: Vec<Option<f64>> = (0..step_count)
                            .map(|step| match (values[step], partner.1[step]) {
                                (Some(many_value), Some(one_value)) => {
                                    let (left_value, right_value) =
                                        if group_right { (one_value, many_value) } else { (many_value, one_value) };
                                    apply(op, return_bool, left_value, right_value, true)
                                }
                                _ => None,
                            })
                            .collect();
                        if result.insert(result_labels, combined).is_some() && matching.group.is_none() {
                            return Err(QueryError::Invalid(
                                "found duplicate series for the match group; many-to-many matching not allowed".into(),
                            ));
                        }
                    }
                    Ok(Value::Vector(result.into_iter().collect()))
                }
            }
        }
    }
}

/// Compiles stream matchers of a `match[]`-style selector (`{a="b"}`) for the series and labels APIs.
///
/// # Errors
/// [`QueryError::Parse`] when the text is not a bare selector.
pub fn parse_selector(text: &str) -> Result<Vec<Matcher>, QueryError> {
    match parse_expr(text)? {
        Expr::Log(log) if log.pipeline.is_empty() => Ok(log.matchers),
        Expr::Log(log) => Ok(log.matchers),
        Expr::Metric(_) => Err(QueryError::Invalid(format!("{text:?} is not a stream selector"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(range_ms: i64, offset_ms: i64) -> LogRange {
        let Ok(Expr::Metric(MetricExpr::RangeAggregation { range, .. })) =
            parse_expr(&format!(r#"count_over_time({{a="b"}}[{range_ms}ms] offset {offset_ms}ms)"#))
        else {
            panic!("not a range aggregation");
        };
        *range
    }

    /// Counting per step interval gives, for every window, the count and sum that filtering the samples
    /// by the window's bounds gives; windows that are not unions of intervals keep every sample.
    #[test]
    fn step_intervals_count_what_each_window_holds() {
        // (first step, step, steps, range, offset), all in ms.
        let cases =
            [(1_000, 100, 12, 100, 0), (1_000, 100, 12, 300, 0), (1_000, 100, 12, 300, 250), (950, 50, 3, 1_000, 7)];
        let ms = 1_000_000i64;
        for (first, step, count, range_ms, offset_ms) in cases {
            let steps: Vec<i64> = (0..count).map(|index| (first + index * step) * ms).collect();
            let (range_ns, offset_ns) = (range_ms * ms, offset_ms * ms);
            let buckets = StepBuckets::for_aggregation(
                RangeOp::BytesOverTime,
                &range(range_ms, offset_ms),
                &steps,
                range_ns,
                offset_ns,
            )
            .unwrap();
            // Samples every 7 ms (some on window bounds) across and beyond the windows; value = timestamp ms.
            let samples: Vec<(i64, f64)> =
                (-200..2_400).step_by(7).map(|at| ((first - range_ms - offset_ms + at) * ms, at as f64)).collect();
            let mut intervals = vec![(0u64, 0.0f64); buckets.len];
            for (timestamp_ns, value) in &samples {
                buckets.add(&mut intervals, *timestamp_ns, *value);
            }
            let windows: Vec<(u64, f64)> = buckets.windows(&intervals, steps.len()).collect();
            for (step, window) in steps.iter().zip(&windows) {
                let end = step - offset_ns;
                let inside =
                    samples.iter().filter(|(timestamp_ns, _)| *timestamp_ns > end - range_ns && *timestamp_ns <= end);
                let expected = inside.fold((0u64, 0.0f64), |(count, sum), (_, value)| (count + 1, sum + value));
                assert_eq!(*window, expected, "step {step} of {:?}", (first, step, count, range_ms, offset_ms));
            }
        }
        // A range that is not a whole number of steps, an unwrap, or an op other than a sum of whole
        // numbers keeps every sample.
        let steps = [0, 100 * ms, 200 * ms];
        assert!(StepBuckets::for_aggregation(RangeOp::CountOverTime, &range(150, 0), &steps, 150 * ms, 0).is_none());
        assert!(StepBuckets::for_aggregation(RangeOp::MaxOverTime, &range(100, 0), &steps, 100 * ms, 0).is_none());
        assert!(
            StepBuckets::for_aggregation(RangeOp::Rate, &range(100, 0), &[0, 100 * ms, 250 * ms], 100 * ms, 0)
                .is_none()
        );
    }
}
