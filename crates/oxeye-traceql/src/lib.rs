//! TraceQL for oxeye: the query language of Grafana Tempo over oxeye's trace store.
//!
//! In reading order:
//! - [`syntax`]: the lexer, syntax tree and parser ([`parse`]), errors with Tempo's line:column wording.
//! - [`eval`]: evaluates a [`Query`](syntax::ast::Query) on one [`Trace`](oxeye_model::traces::Trace) and
//!   returns its matching [`Spanset`](eval::Spanset)s; [`eval::scan_hints`] turns the conditions every match
//!   needs into [`TraceScanHints`](oxeye_model::traces::TraceScanHints) so a store can skip data.
//! - [`search`]: `/api/search` over a [`TraceReader`](oxeye_model::traces::TraceReader): TraceQL or the legacy
//!   `tags=` form, limits, newest first; tag names and tag values.
//! - [`metrics`]: TraceQL metrics (`rate`, `count_over_time`, `quantile_over_time`, `histogram_over_time`...)
//!   over time steps.
//! - [`testing`]: an in-memory trace store and seed-shaped traces for tests.
//!
//! Semantics follow Tempo's TraceQL documentation (<https://grafana.com/docs/tempo/latest/traceql/>):
//! unscoped `.x` looks at the span then its resource; a missing attribute makes every comparison false
//! except `= nil`; integers, floats and durations compare as numbers (durations in nanoseconds); regexes are
//! fully anchored (`^(?s:pattern)$`, as Tempo compiles them).
//!
//! ```
//! use oxeye_traceql::{parse, eval::evaluate, testing::seed_traces};
//! let query = parse(r#"{ resource.service.name = "boxoffice" && status = error }"#).unwrap();
//! let traces = seed_traces(1_700_000_000_000_000_000);
//! let matched: Vec<_> = traces.iter().filter(|trace| !evaluate(&query, trace).is_empty()).collect();
//! assert_eq!(matched.len(), 1);
//! ```

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod error;
pub mod eval;
pub mod metrics;
pub mod search;
pub mod syntax;
pub mod testing;

pub use error::TraceQlError;
pub use syntax::{parse, parse_spanset};
