//! Typed options of the redaction stage, with the seeds' defaults.

/// The text that replaces a redacted value: a sensitive key's value, a card number, an SSN.
pub const REDACTED: &str = "[REDACTED]";

/// The text that replaces an e-mail address found in free text.
pub const EMAIL_REPLACEMENT: &str = "[EMAIL]";

/// The default sensitive keys, from the seeds' structlog PII processor plus the usual credentials.
pub const DEFAULT_SENSITIVE_KEYS: &[&str] = &[
    "password",
    "password_confirmation",
    "old_password",
    "card_number",
    "cvv",
    "card_cvc",
    "ssn",
    "social_security_number",
    "authorization",
    "token",
    "secret",
    "api_key",
];

/// The default keys whose values keep their e-mail addresses (the seeds keep `email` for log correlation).
pub const DEFAULT_KEPT_EMAIL_KEYS: &[&str] = &["email"];

/// The default keys whose W3C-shaped ids (exactly 16 or 32 hex digits) are left alone: an all-decimal span id
/// can pass the Luhn check, and correlation ids must survive (the seeds keep `trace_id` and `request_id`).
pub const DEFAULT_TRACE_ID_KEYS: &[&str] =
    &["trace_id", "span_id", "parent_span_id", "traceid", "spanid", "parentspanid"];

/// What the redaction stage removes before anything reaches the WAL.
///
/// Built by the binary from its config file; [`Default`] is the seeds' policy and redaction is on.
///
/// Key matching (see [`crate::Redactor`]): a key is sensitive when the whole key, or its last `.`-separated
/// segment, equals one of [`RedactionOptions::sensitive_keys`] ASCII-case-insensitively with `-` and `_` taken as
/// the same character. So `Password`, `http.request.header.authorization` and `X-Api-Key`'s `api-key` form
/// (`api-key`) match, while `user_password` or `password_hint` do not: like the seeds' `scrub_pii` processor,
/// names are matched exactly, not as substrings. Add such keys to `sensitive_keys` when an application uses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedactionOptions {
    /// Master switch. When `false`, every entry point returns its input unchanged and counts nothing.
    pub enabled: bool,
    /// Keys whose values become [`REDACTED`] wherever they appear: JSON object keys (at any depth), logfmt
    /// `key=value` pairs, `"key": value` and `key: value` pairs inside free text, OTLP attribute and kvlist keys.
    pub sensitive_keys: Vec<String>,
    /// Keys whose values are exempt from the e-mail rule (exact, case-sensitive match of the whole key).
    /// Card numbers and SSNs are still redacted inside them.
    pub kept_email_keys: Vec<String>,
    /// Keys whose values, when exactly 16 or 32 hex digits (a trace or span id), are exempt from every free-text
    /// rule. Matched like `sensitive_keys` (case-insensitive, `-` as `_`, whole key or last `.` segment).
    pub trace_id_keys: Vec<String>,
    /// Redact Luhn-valid card numbers found anywhere: 13–19 digits, optionally grouped by single spaces or
    /// dashes, first digit 2–6 (the banking and financial issuer ranges; this keeps millisecond and nanosecond
    /// Unix timestamps, which start with 1 until 2033, from being taken for card numbers).
    pub card_numbers: bool,
    /// Redact US social security numbers written `ddd-dd-dddd` anywhere.
    pub ssns: bool,
    /// Replace e-mail addresses in free text with [`EMAIL_REPLACEMENT`].
    pub emails: bool,
    /// Extra rules: every match of the regex in any string value, line or attribute is replaced.
    pub custom_rules: Vec<CustomRedactionRule>,
}

/// A user-supplied redaction rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomRedactionRule {
    /// The rule's name, used as the `rule` label of the redaction counters; must match `[a-z_][a-z0-9_]*` and
    /// differ from the built-in names `sensitive_key`, `card_number`, `ssn` and `email`.
    pub name: String,
    /// A regular expression (Rust `regex` syntax); every match is replaced.
    pub pattern: String,
    /// The literal replacement text (no `$1` expansion), [`REDACTED`] by default. A replacement that the
    /// pattern matches again makes redaction non-idempotent; avoid it.
    pub replacement: String,
}

impl CustomRedactionRule {
    /// A rule replacing every match of `pattern` with [`REDACTED`].
    pub fn new(name: impl Into<String>, pattern: impl Into<String>) -> CustomRedactionRule {
        CustomRedactionRule { name: name.into(), pattern: pattern.into(), replacement: REDACTED.to_string() }
    }
}

impl Default for RedactionOptions {
    fn default() -> RedactionOptions {
        RedactionOptions {
            enabled: true,
            sensitive_keys: DEFAULT_SENSITIVE_KEYS.iter().map(|key| key.to_string()).collect(),
            kept_email_keys: DEFAULT_KEPT_EMAIL_KEYS.iter().map(|key| key.to_string()).collect(),
            trace_id_keys: DEFAULT_TRACE_ID_KEYS.iter().map(|key| key.to_string()).collect(),
            card_numbers: true,
            ssns: true,
            emails: true,
            custom_rules: Vec::new(),
        }
    }
}

impl RedactionOptions {
    /// Options that redact nothing (`enabled: false`, the defaults otherwise).
    pub fn disabled() -> RedactionOptions {
        RedactionOptions { enabled: false, ..RedactionOptions::default() }
    }
}
