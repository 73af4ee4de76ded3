//! Plain data shared by every oxeye crate.
//!
//! The types here carry no behaviour beyond validation and ordering: the stores, the query engines, the
//! decoders and the server all speak them, so none of those crates needs to know another's internals.
//!
//! In reading order:
//! - [`Labels`] and [`Label`]: a series' identity, sorted by label name, as in Prometheus'
//!   `model/labels` package. The metric name is the label [`METRIC_NAME_LABEL`] (`__name__`).
//! - [`Sample`]: one `(timestamp_ms, value)` point. Timestamps are **milliseconds** since the Unix epoch
//!   everywhere in oxeye; values are `f64`, with the Prometheus staleness marker [`STALE_NAN`].
//! - [`Matcher`]: one label matcher (`=`, `!=`, `=~`, `!~`) with its fully anchored regular expression.
//! - [`logs`]: log entries, streams and the log storage traits ([`logs::LogWriter`], [`logs::LogReader`]).
//! - [`traces`]: spans grouped by resource and scope, traces, and the trace storage traits
//!   ([`traces::TraceWriter`], [`traces::TraceReader`]).
//! - [`storage`]: the traits that connect writers (ingest, scrape) and readers (PromQL, the HTTP API) to a
//!   metrics store without depending on it.
//!
//! ```
//! use oxeye_model::{Labels, Matcher, MatchOp};
//! let labels = Labels::from_pairs([("__name__", "django_http_requests_total"), ("method", "GET")]);
//! assert_eq!(labels.metric_name(), Some("django_http_requests_total"));
//! let matcher = Matcher::new(MatchOp::Regex, "method", "GET|POST").unwrap();
//! assert!(matcher.matches(labels.get("method").unwrap_or("")));
//! assert_eq!(labels.to_string(), r#"django_http_requests_total{method="GET"}"#);
//! ```

pub mod duration;
mod labels;
pub mod logs;
mod matcher;
mod sample;
pub mod storage;
pub mod traces;

pub use labels::{
    Label, LabelRef, Labels, LabelsBuilder, METRIC_NAME_LABEL, is_valid_label_name, is_valid_legacy_metric_name,
    stable_hash_of_refs,
};
pub use matcher::{MatchOp, Matcher, MatcherError};
pub use sample::{Exemplar, MetricMetadata, MetricType, STALE_NAN, STALE_NAN_BITS, Sample, is_stale_nan};
