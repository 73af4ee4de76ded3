//! LogQL for oxeye: the language ([`syntax`]: lexer, AST, parser, printer) apart from its evaluation
//! ([`pipeline`] for log stages, [`engine`] for queries over an `oxeye_model::logs::LogReader`).
//!
//! ```
//! use oxeye_logql::syntax::{Expr, parse_expr};
//! let expr = parse_expr(r#"sum by (level) (count_over_time({service_name="boxoffice"} | json [5m]))"#).unwrap();
//! assert!(matches!(expr, Expr::Metric(_)));
//! assert_eq!(expr.to_string(), r#"sum by (level) (count_over_time({service_name="boxoffice"} | json [5m]))"#);
//! ```

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::panic))]

pub mod engine;
pub mod field_columns;
mod json_fields;
mod line_regex;
mod logfmt;
pub mod pattern;
pub mod patterns;
pub mod pipeline;
mod swar;
pub mod syntax;
pub mod template;
#[cfg(test)]
mod test_random;

pub use engine::{Direction, Engine, EngineOptions, QueryError, QueryResult, SampleSeries, StreamResult};
