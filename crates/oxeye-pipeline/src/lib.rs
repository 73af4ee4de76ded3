//! Processing on the way in, between decoding and the WAL.
//!
//! Today this crate holds the first stage, **redaction** ([`Redactor`]): passwords, tokens, card numbers, SSNs
//! and e-mail addresses in free text are replaced before a log line, log body or span/log attribute is stored,
//! while a field named `email` is kept for correlation. Cardinality and rate limits, RED metrics from spans and
//! tail sampling will join it.
//!
//! In reading order:
//! - [`RedactionOptions`]: the typed rules, with the seeds' defaults ([`RedactionOptions::default`]).
//! - [`Redactor`]: the compiled rules (`Send + Sync`, cheap to clone) and its entry points —
//!   [`Redactor::redact_line`] for JSON, logfmt and plain-text lines, [`Redactor::redact_attribute`] and
//!   [`Redactor::redact_text`] for attribute values, [`Redactor::redact_structured`] for OTLP kvlist/array bodies
//!   through the [`StructuredValue`] trait, [`Redactor::redact_value`] for `serde_json::Value`.
//! - [`RedactionStats`]: per-rule counters for `/metrics`.
//! - [`testing`]: the seeds' example secrets and a helper that greps a data directory for them.
//! - [`traces`]: the trace pipeline ([`traces::TracePipeline`], a `TraceWriter` in front of the trace store):
//!   span redaction with the same [`Redactor`], span metrics (Tempo's `traces_spanmetrics_*`) and tail sampling.
//!
//! ```
//! use oxeye_pipeline::{RedactionOptions, Redactor};
//! let redactor = Redactor::new(RedactionOptions::default()).unwrap();
//! let logfmt = r#"level=info msg="checkout failed for bob@example.com" card_number=5555555555554444"#;
//! assert_eq!(
//!     redactor.redact_line(logfmt),
//!     r#"level=info msg="checkout failed for [EMAIL]" card_number=[REDACTED]"#
//! );
//! let mut header = "Bearer abc.def".to_string();
//! assert!(redactor.redact_attribute("http.request.header.authorization", &mut header));
//! assert_eq!(header, "[REDACTED]");
//! ```

mod error;
pub mod redaction;
pub mod testing;
pub mod traces;

pub use error::PipelineError;
pub use redaction::{
    CustomRedactionRule, RedactionOptions, RedactionStats, RedactionStatsSnapshot, Redactor, RuleRedactions,
    StructuredValue, ValueMut,
};
