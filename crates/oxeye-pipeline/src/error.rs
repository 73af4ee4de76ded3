//! The crate's one error type.

use oxeye_model::storage::ErrorKind;

/// Why a pipeline stage could not be built from its options. Messages are lowercase and name the rule or field.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PipelineError {
    /// A custom redaction rule's regular expression does not compile.
    #[error("redaction rule {rule:?}: invalid regular expression: {reason}")]
    InvalidRedactionRegex {
        /// The rule's name.
        rule: String,
        /// The regex compiler's message.
        reason: String,
    },
    /// A custom redaction rule's name is not usable as a metrics label value or clashes with another rule.
    #[error("redaction rule name {rule:?} is invalid: {reason}")]
    InvalidRedactionRuleName {
        /// The offending name.
        rule: String,
        /// Why, e.g. `duplicate name` or `must match [a-z_][a-z0-9_]*`.
        reason: &'static str,
    },
    /// An entry of `sensitive_keys` or `kept_email_keys` is empty.
    #[error("redaction option {field}[{index}] is empty")]
    EmptyRedactionKey {
        /// `sensitive_keys` or `kept_email_keys`.
        field: &'static str,
        /// The entry's position in the list.
        index: usize,
    },
    /// A trace pipeline option (tail sampling, span metrics) holds an unusable value.
    #[error("trace pipeline option {field}: {reason}")]
    InvalidTraceOption {
        /// The field's path, e.g. `sampling.rate` or `span_metrics.latency_buckets`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl PipelineError {
    /// The error's category. Every variant is a configuration error: [`ErrorKind::Invalid`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            PipelineError::InvalidRedactionRegex { .. }
            | PipelineError::InvalidRedactionRuleName { .. }
            | PipelineError::EmptyRedactionKey { .. }
            | PipelineError::InvalidTraceOption { .. } => ErrorKind::Invalid,
        }
    }
}
