//! PromQL evaluation for oxeye: the query language of Prometheus over an
//! [`oxeye_model::storage::Querier`].
//!
//! Parsing is done by the `promql-parser` crate; everything after the syntax tree is here. In reading
//! order:
//! - [`Engine`] with [`EngineOptions`] (lookback delta, sample limit, timeout) runs
//!   [`Engine::instant_query`] and [`Engine::range_query`], like Prometheus' `/api/v1/query` and
//!   `/api/v1/query_range` (`*_expr` variants take an already parsed expression).
//!   [`Engine::with_delayed_name_removal`] switches on Prometheus' delayed `__name__` removal.
//! - [`Engine::instant_query_with_stats`] and [`Engine::range_query_with_stats`] also return
//!   [`QueryStats`] (timings, samples read in total and per step, peak samples), what Prometheus reports
//!   for `stats=all`.
//! - [`QueryResult`] holds a [`Value`] (`scalar`, `string`, `vector` or `matrix`, timestamps in
//!   milliseconds) and Prometheus' warning and info annotations.
//! - [`QueryError`] says what failed, with [`QueryError::prometheus_error_type`] for the HTTP API body.
//! - [`format_float`] (and [`write_float`], into a buffer) prints sample values as Prometheus' JSON API
//!   does.
//! - [`testing::MemoryQuerier`] is a small in-memory store for tests and the conformance runner.
//!
//! Semantics follow Prometheus 3 (`promql/engine.go`, `promql/functions.go`): left-open lookback and
//! range windows, staleness markers ending a series, rate extrapolation, Kahan summation, and the same
//! error messages where callers see them. `tests/conformance.rs` runs Prometheus' own PromQL test
//! scripts against the engine; its rule table lists what is skipped or still failing, and why.
//!
//! How evaluation works: every expression is evaluated for all steps of a query at once. Each selector
//! reads its series from the [`oxeye_model::storage::Querier`] once for the whole time range and walks
//! them with cursors (an instant vector is a list of series with `(step, value)` points); binary
//! operators and aggregations then work step by step; subqueries evaluate their inner expression once
//! over their own step grid. Folding aggregations with `by` over a range function of a named selector
//! (`sum by (le) (rate(x_bucket[5m]))`) take the series one at a time from
//! [`oxeye_model::storage::Querier::select_each_projected`] (asking only for the grouping labels and the
//! metric name) and fold each into per-group, per-step accumulators, so neither the selected samples nor
//! the function's output series are held all at once. Range queries
//! longer than 2 hours are evaluated in 2-hour slices of steps and joined, so selectors hold one slice of
//! samples at a time. Deliberately absent: native histograms (oxeye
//! stores floats only; the `histogram_*` functions other than `histogram_quantile` return nothing), and
//! the experimental features extended range selectors, duration expressions, start timestamps and
//! type-and-unit labels (the experimental `fill`, `fill_left` and `fill_right` binary operator modifiers
//! and `info()` are supported).
//!
//! ```
//! use oxeye_model::{Labels, Sample};
//! use oxeye_promql::{Engine, EngineOptions, Value, testing::MemoryQuerier};
//!
//! let mut store = MemoryQuerier::new();
//! let series = Labels::from_pairs([("__name__", "http_requests_total"), ("job", "api")]);
//! for minute in 0..=10 {
//!     store.add_sample(&series, Sample { timestamp_ms: minute * 60_000, value: (minute * 60) as f64 });
//! }
//! let engine = Engine::new(EngineOptions::default());
//! let result = engine.instant_query(&store, "rate(http_requests_total[5m])", 600_000).unwrap();
//! let Value::Vector(samples) = result.value else { panic!("expected a vector") };
//! assert_eq!(samples.len(), 1);
//! assert!((samples[0].value - 1.0).abs() < 1e-9);
//! ```

mod aggregation;
mod binary;
mod engine;
mod error;
mod functions;
mod parse;
mod parse_position;
mod stats;
pub mod testing;
mod value;

pub use engine::{DEFAULT_LOOKBACK_DELTA_MS, DEFAULT_SUBQUERY_STEP_MS, Engine, EngineOptions, MAX_POINTS_PER_SERIES};
pub use error::QueryError;
pub use promql_parser;
pub use stats::QueryStats;
pub use value::{QueryResult, RangeSeries, Value, VectorSample, format_float, write_float};
