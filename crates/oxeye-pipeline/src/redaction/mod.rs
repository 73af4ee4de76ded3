//! PII redaction: the first stage of the ingest pipeline, run on every log line, log body and span/log attribute
//! before anything reaches the WAL.
//!
//! Rules (all configurable in [`RedactionOptions`], defaults from the seeds):
//! - **sensitive keys** — the value of `password`, `card_number`, `token`, ... becomes `[REDACTED]`, whether the
//!   key is a JSON object key at any depth, a logfmt `key=value` pair, a `"key": value`, `'key': 'value'` or
//!   `key: value` pair inside free text (also JSON escaped inside a JSON string), a URL query parameter or an
//!   OTLP attribute/kvlist key (matching rules on [`RedactionOptions`]);
//! - **card numbers** — Luhn-valid 13–19 digit numbers, optionally grouped by spaces or dashes, anywhere;
//! - **SSNs** — `ddd-dd-dddd` anywhere;
//! - **e-mail addresses** in free text become `[EMAIL]`, except in the value of a key named exactly `email`;
//! - **custom regexes**.
//!
//! Values under trace and span id keys that have the W3C id shape (16 or 32 hex digits) are exempt from every
//! rule, so an all-decimal span id is never taken for a card number.
//!
//! Each entry point returns or changes nothing when nothing matches, which is the common case: one byte-class
//! pass tells which detectors can match at all, `memchr` finds delimiters and `@`, and no regex runs unless
//! custom rules are configured. Redacting twice gives the same result as redacting once (the replacements are
//! never matched again, and values already `[REDACTED]` are not counted again); custom rules must keep that.
//!
//! Known limits, by design: a secret in prose without a key (`my password is hunter2`) is not found; card
//! numbers whose first digit is not 2–6 (airline, petroleum, national cards) are not detected; e-mail addresses
//! are ASCII only; Loki stream labels are not redacted (they are the stream's identity).

mod json;
mod numbers;
mod options;
mod prefilter;
#[cfg(test)]
mod prefilter_oracle;
mod stats;
mod structured;
mod text;

use std::borrow::Cow;
use std::sync::Arc;

use oxeye_model::logs::{LogEntry, LogStream};
use regex::Regex;

use crate::PipelineError;
use json::JsonScanner;
pub use numbers::luhn_valid;
pub use options::{
    CustomRedactionRule, DEFAULT_KEPT_EMAIL_KEYS, DEFAULT_SENSITIVE_KEYS, DEFAULT_TRACE_ID_KEYS, EMAIL_REPLACEMENT,
    REDACTED, RedactionOptions,
};
use stats::{BUILTIN_RULE_NAMES, Rule, Tally};
pub use stats::{RedactionStats, RedactionStatsSnapshot, RuleRedactions};
pub use structured::{StructuredValue, ValueMut};
use text::Replacement;

/// What the key a value sits under asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyContext {
    /// No key, or an ordinary one: the free-text rules apply.
    Plain,
    /// A kept e-mail key (`email`): the free-text rules apply except the e-mail rule.
    KeepEmail,
    /// A sensitive key: the whole value is replaced.
    Sensitive,
    /// A trace or span id key: a 16 or 32 hex digit value is left alone, anything else is plain text.
    TraceId,
}

#[derive(Debug)]
struct CompiledCustomRule {
    regex: Regex,
    replacement: String,
}

/// Sensitive key names normalised (ASCII lowercase, `-` as `_`), bucketed by length for a cheap lookup.
#[derive(Debug)]
struct SensitiveKeys {
    by_length: Vec<Vec<Box<[u8]>>>,
    /// Whether every name is made of ASCII letters, digits and `_` only (after normalising), which the line
    /// prefilter ([`Redactor::line_may_change`]) relies on.
    name_bytes_only: bool,
    /// For each name length below [`SHORT_NAME_LIMIT`]: bit `b & 31` is set when a name of that length ends with
    /// byte `b` in either case (`_` names set the bit of `-` too), so most runs of name bytes are ruled out
    /// without a comparison.
    short_name_ends: [u32; SHORT_NAME_LIMIT],
    /// Whether a name is [`SHORT_NAME_LIMIT`] bytes or longer.
    has_long_name: bool,
    /// Bit `last & 31` of entry `before_last & 31` is set when a name ends with the two bytes `before_last`,
    /// `last` in either case (`_` as `-` too): most runs of name bytes are ruled out from their last two bytes.
    pair_ends: [u32; 32],
    /// Whether a name is a single byte, which [`SensitiveKeys::may_end_with_pair`] cannot rule out.
    has_one_byte_name: bool,
}

/// Name lengths [`SensitiveKeys::may_end_with`] answers from its table.
const SHORT_NAME_LIMIT: usize = 64;

/// A normalised name byte and the raw bytes that normalise to it besides its uppercase form (`-` for `_`).
fn underscore_variants(byte: u8) -> impl Iterator<Item = u8> {
    std::iter::once(byte).chain((byte == b'_').then_some(b'-'))
}

fn normalise_key_byte(byte: u8) -> u8 {
    if byte == b'-' { b'_' } else { byte.to_ascii_lowercase() }
}

impl SensitiveKeys {
    fn new(keys: &[String]) -> SensitiveKeys {
        let mut by_length: Vec<Vec<Box<[u8]>>> = Vec::new();
        for key in keys {
            let normalised: Box<[u8]> = key.bytes().map(normalise_key_byte).collect();
            if by_length.len() <= normalised.len() {
                by_length.resize(normalised.len() + 1, Vec::new());
            }
            if let Some(bucket) = by_length.get_mut(normalised.len()) {
                bucket.push(normalised);
            }
        }
        let name_bytes_only = by_length
            .iter()
            .flatten()
            .all(|name| name.iter().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || *byte == b'_'));
        let mut short_name_ends = [0u32; SHORT_NAME_LIMIT];
        let mut has_long_name = false;
        for name in by_length.iter().flatten() {
            let Some(&last) = name.last() else { continue };
            match short_name_ends.get_mut(name.len()) {
                Some(ends) => {
                    *ends |= 1 << (last & 31);
                    if last == b'_' {
                        *ends |= 1 << (b'-' & 31);
                    }
                }
                None => has_long_name = true,
            }
        }
        let mut pair_ends = [0u32; 32];
        let mut has_one_byte_name = false;
        for name in by_length.iter().flatten() {
            match *name.as_ref() {
                [] => {}
                [_] => has_one_byte_name = true,
                [.., before_last, last] => {
                    for before_variant in underscore_variants(before_last) {
                        for last_variant in underscore_variants(last) {
                            if let Some(ends) = pair_ends.get_mut(usize::from(before_variant & 31)) {
                                *ends |= 1 << (last_variant & 31);
                            }
                        }
                    }
                }
            }
        }
        SensitiveKeys { by_length, name_bytes_only, short_name_ends, has_long_name, pair_ends, has_one_byte_name }
    }

    /// Whether a run of name bytes ending with `before_last`, `last` (`None` when the run is one byte long at
    /// the line's start) may be a name; never `false` for a run that [`SensitiveKeys::matches_exactly`].
    #[inline(always)]
    fn may_end_with_pair(&self, before_last: Option<u8>, last: u8) -> bool {
        self.has_one_byte_name
            || before_last.is_some_and(|before_last| {
                self.pair_ends.get(usize::from(before_last & 31)).is_some_and(|ends| ends >> (last & 31) & 1 != 0)
            })
    }

    /// Whether a run of `length` name bytes ending with `last_byte` may be a name (never `false` for a run that
    /// [`SensitiveKeys::matches_exactly`]); `false` for an empty run.
    #[inline(always)]
    fn may_end_with(&self, length: usize, last_byte: u8) -> bool {
        match self.short_name_ends.get(length) {
            Some(ends) => ends >> (last_byte & 31) & 1 != 0,
            None => self.has_long_name,
        }
    }

    fn name_bytes_only(&self) -> bool {
        self.name_bytes_only
    }

    fn is_empty(&self) -> bool {
        self.by_length.iter().all(Vec::is_empty)
    }

    fn matches_exactly(&self, candidate: &[u8]) -> bool {
        self.by_length.get(candidate.len()).is_some_and(|bucket| {
            bucket.iter().any(|name| name.iter().zip(candidate).all(|(&want, &have)| want == normalise_key_byte(have)))
        })
    }
}

/// The compiled redaction rules and their counters. Build once with [`Redactor::new`], share freely: it is
/// `Send + Sync`, cloning is cheap (the rules and [`RedactionStats`] are behind an `Arc`).
///
/// ```
/// use oxeye_pipeline::{RedactionOptions, Redactor};
/// let redactor = Redactor::new(RedactionOptions::default()).unwrap();
/// let line = r#"{"event": "login_attempt", "email": "ann@example.com", "password": "hunter2"}"#;
/// assert_eq!(
///     redactor.redact_line(line),
///     r#"{"event": "login_attempt", "email": "ann@example.com", "password": "[REDACTED]"}"#
/// );
/// assert_eq!(redactor.redact_line("paid with 4111 1111 1111 1111 by bob@example.com"), "paid with [REDACTED] by [EMAIL]");
/// assert_eq!(redactor.stats().redactions("card_number"), 1);
/// ```
#[derive(Debug, Clone)]
pub struct Redactor {
    inner: Arc<RedactorInner>,
}

#[derive(Debug)]
struct RedactorInner {
    options: RedactionOptions,
    sensitive_keys: SensitiveKeys,
    trace_id_keys: SensitiveKeys,
    custom_rules: Vec<CompiledCustomRule>,
    stats: Arc<RedactionStats>,
}

fn valid_rule_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|first| first.is_ascii_lowercase() || first == b'_')
        && bytes.all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_')
}

impl Redactor {
    /// Validates `options` and compiles the rules.
    ///
    /// # Errors
    ///
    /// - [`PipelineError::EmptyRedactionKey`] when an entry of `sensitive_keys` or `kept_email_keys` is empty;
    /// - [`PipelineError::InvalidRedactionRuleName`] when a custom rule's name is not `[a-z_][a-z0-9_]*`, is a
    ///   built-in rule's name or is used twice;
    /// - [`PipelineError::InvalidRedactionRegex`] when a custom rule's pattern does not compile (or matches the
    ///   empty string, which would redact between every character).
    pub fn new(options: RedactionOptions) -> Result<Redactor, PipelineError> {
        let key_lists = [
            ("sensitive_keys", &options.sensitive_keys),
            ("kept_email_keys", &options.kept_email_keys),
            ("trace_id_keys", &options.trace_id_keys),
        ];
        for (field, keys) in key_lists {
            if let Some(index) = keys.iter().position(String::is_empty) {
                return Err(PipelineError::EmptyRedactionKey { field, index });
            }
        }
        let mut custom_rules = Vec::with_capacity(options.custom_rules.len());
        for (index, rule) in options.custom_rules.iter().enumerate() {
            if !valid_rule_name(&rule.name) {
                return Err(PipelineError::InvalidRedactionRuleName {
                    rule: rule.name.clone(),
                    reason: "must match [a-z_][a-z0-9_]*",
                });
            }
            let duplicate = BUILTIN_RULE_NAMES.contains(&rule.name.as_str())
                || options.custom_rules[..index].iter().any(|earlier| earlier.name == rule.name);
            if duplicate {
                return Err(PipelineError::InvalidRedactionRuleName {
                    rule: rule.name.clone(),
                    reason: "duplicate name",
                });
            }
            let regex = Regex::new(&rule.pattern).map_err(|error| PipelineError::InvalidRedactionRegex {
                rule: rule.name.clone(),
                reason: error.to_string(),
            })?;
            if regex.is_match("") {
                return Err(PipelineError::InvalidRedactionRegex {
                    rule: rule.name.clone(),
                    reason: "the pattern matches the empty string".to_string(),
                });
            }
            custom_rules.push(CompiledCustomRule { regex, replacement: rule.replacement.clone() });
        }
        Ok(Redactor::compiled(options, custom_rules))
    }

    /// A redactor with the seeds' default rules ([`RedactionOptions::default`]); infallible, since the
    /// defaults have no custom rule and no empty key.
    pub fn default_rules() -> Redactor {
        Redactor::compiled(RedactionOptions::default(), Vec::new())
    }

    fn compiled(options: RedactionOptions, custom_rules: Vec<CompiledCustomRule>) -> Redactor {
        debug_assert_eq!(options.custom_rules.len(), custom_rules.len(), "one compiled rule per custom rule");
        let stats = Arc::new(RedactionStats::new(options.custom_rules.iter().map(|rule| rule.name.clone())));
        let sensitive_keys = SensitiveKeys::new(&options.sensitive_keys);
        let trace_id_keys = SensitiveKeys::new(&options.trace_id_keys);
        Redactor { inner: Arc::new(RedactorInner { options, sensitive_keys, trace_id_keys, custom_rules, stats }) }
    }

    /// The options this redactor was built from.
    pub fn options(&self) -> &RedactionOptions {
        &self.inner.options
    }

    /// The counters' current values, per rule (see [`RedactionStats::snapshot`]).
    pub fn stats(&self) -> RedactionStatsSnapshot {
        self.inner.stats.snapshot()
    }

    /// The live counters, shared with every clone of this redactor, for a `/metrics` collector to hold.
    pub fn stats_handle(&self) -> Arc<RedactionStats> {
        Arc::clone(&self.inner.stats)
    }

    /// Whether `key` is sensitive: its whole value would be replaced (see [`RedactionOptions`] for matching).
    /// Always `false` when redaction is disabled.
    pub fn is_sensitive_key(&self, key: &str) -> bool {
        self.inner.options.enabled && self.classify_key(key) == KeyContext::Sensitive
    }

    fn has_key_rules(&self) -> bool {
        !self.inner.sensitive_keys.is_empty()
            || !self.inner.trace_id_keys.is_empty()
            || !self.inner.options.kept_email_keys.is_empty()
    }

    pub(crate) fn classify_key(&self, key: &str) -> KeyContext {
        let key_bytes = key.as_bytes();
        // The last `.`-separated segment, found once for both key lists (keys are short: no memrchr call).
        let last_segment = key_bytes.iter().rposition(|byte| *byte == b'.').and_then(|dot| key_bytes.get(dot + 1..));
        let inner = &self.inner;
        if inner.sensitive_keys.matches_exactly(key_bytes)
            || last_segment.is_some_and(|segment| inner.sensitive_keys.matches_exactly(segment))
        {
            KeyContext::Sensitive
        } else if inner.options.kept_email_keys.iter().any(|kept| kept == key) {
            KeyContext::KeepEmail
        } else if inner.trace_id_keys.matches_exactly(key_bytes)
            || last_segment.is_some_and(|segment| inner.trace_id_keys.matches_exactly(segment))
        {
            KeyContext::TraceId
        } else {
            KeyContext::Plain
        }
    }

    fn record(&self, tally: &Tally) {
        if !tally.is_empty() {
            self.inner.stats.add(tally);
        }
    }

    /// Redacts one log line (a Loki push entry, a tailed file line, an OTLP string body).
    ///
    /// - A line that is one JSON value (after optional whitespace, starting with `{` or `[`) is redacted by key at
    ///   every depth and by the free-text rules inside string values; every byte not replaced is kept as it was
    ///   (strings containing escapes are re-encoded by `serde_json` when something inside them is replaced).
    /// - Any other line — logfmt, plain text, or JSON that does not parse — gets the free-text rules, which also
    ///   find `key=value`, `key="quoted value"`, `"key": value` and `key: value` pairs of sensitive keys.
    ///
    /// Returns `Cow::Borrowed(line)` when nothing was redacted. Never fails: input that fits no format is text.
    pub fn redact_line<'l>(&self, line: &'l str) -> Cow<'l, str> {
        if !self.inner.options.enabled {
            return Cow::Borrowed(line);
        }
        let mut tally = Tally::default();
        let redacted = self.line_with_tally(line, &mut tally);
        self.record(&tally);
        redacted
    }

    pub(crate) fn line_with_tally<'l>(&self, line: &'l str, tally: &mut Tally) -> Cow<'l, str> {
        if !self.line_may_change(line.as_bytes()) {
            return Cow::Borrowed(line);
        }
        self.line_by_every_rule(line, tally)
    }

    /// [`Redactor::line_with_tally`] without the line prefilter.
    fn line_by_every_rule<'l>(&self, line: &'l str, tally: &mut Tally) -> Cow<'l, str> {
        let first = line.bytes().find(|byte| !byte.is_ascii_whitespace());
        if matches!(first, Some(b'{' | b'[')) {
            let mut scanner = JsonScanner::new(self, line);
            if scanner.scan().is_ok() {
                tally.absorb(&scanner.tally);
                if scanner.edits.is_empty() {
                    return Cow::Borrowed(line);
                }
                return Cow::Owned(apply_edits(line, &scanner.edits));
            }
        }
        let replacements = self.text_replacements(line, KeyContext::Plain, tally);
        if replacements.is_empty() { Cow::Borrowed(line) } else { Cow::Owned(apply_replacements(line, &replacements)) }
    }

    /// Redacts a text value that sits under `key` (an attribute, a structured-metadata entry, a kvlist member):
    /// the whole text when `key` is sensitive, the free-text rules otherwise (without the e-mail rule when
    /// `key` is a kept e-mail key). With `key: None` the text is treated as free text (not parsed as JSON; use
    /// [`Redactor::redact_line`] for that).
    ///
    /// Returns `Cow::Borrowed(text)` when nothing was redacted.
    pub fn redact_text<'t>(&self, key: Option<&str>, text: &'t str) -> Cow<'t, str> {
        if !self.inner.options.enabled {
            return Cow::Borrowed(text);
        }
        let context = key.map_or(KeyContext::Plain, |key| self.classify_key(key));
        if context == KeyContext::Sensitive {
            if text.is_empty() || text == REDACTED {
                return Cow::Borrowed(text);
            }
            let mut tally = Tally::default();
            tally.count(Rule::SensitiveKey);
            self.record(&tally);
            return Cow::Owned(REDACTED.to_string());
        }
        self.redact_free_text(text, context)
    }

    /// [`Redactor::redact_text`] in place for an attribute's string value; returns whether `value` changed.
    /// The rules for OTLP span, event, link and log attributes and for resource attributes.
    pub fn redact_attribute(&self, key: &str, value: &mut String) -> bool {
        let redacted = match self.redact_text(Some(key), value) {
            Cow::Borrowed(_) => return false,
            Cow::Owned(redacted) => redacted,
        };
        *value = redacted;
        true
    }

    /// Whether an integer attribute value under `key` must be replaced by the text [`REDACTED`]: the key is
    /// sensitive, or the integer is a card number. Counts the redaction when it answers `true`.
    pub fn redact_integer(&self, key: Option<&str>, value: i64) -> bool {
        if !self.inner.options.enabled {
            return false;
        }
        let rule = if key.is_some_and(|key| self.classify_key(key) == KeyContext::Sensitive) {
            Rule::SensitiveKey
        } else if self.inner.options.card_numbers && numbers::is_card_number_integer(value) {
            Rule::CardNumber
        } else {
            return false;
        };
        let mut tally = Tally::default();
        tally.count(rule);
        self.record(&tally);
        true
    }

    /// Redacts a structured value in place — an OTLP `AnyValue` body (kvlist, array, string, int), a JSON value
    /// — walking maps and lists (see [`StructuredValue`]). `key` is the key the value sits under (`None` for a
    /// log body). Map members use their own key; list elements inherit the list's key. A top-level text value
    /// with `key: None` is redacted as a line ([`Redactor::redact_line`], so a JSON string body is parsed);
    /// nested text as with [`Redactor::redact_text`]. Returns whether anything changed.
    pub fn redact_structured<V: StructuredValue + ?Sized>(&self, key: Option<&str>, value: &mut V) -> bool {
        if !self.inner.options.enabled {
            return false;
        }
        let mut tally = Tally::default();
        let changed = self.walk_structured(key, true, value, &mut tally);
        self.record(&tally);
        changed
    }

    /// [`Redactor::redact_structured`] for a `serde_json::Value` (e.g. a decoded JSON log body).
    pub fn redact_value(&self, key: Option<&str>, value: &mut serde_json::Value) -> bool {
        self.redact_structured(key, value)
    }

    /// Redacts a log entry in place before it is appended: its line as with [`Redactor::redact_line`], and each
    /// structured metadata value as an attribute under its name ([`Redactor::redact_attribute`]). The timestamp
    /// and the metadata names are never changed. Returns whether anything changed.
    pub fn redact_log_entry(&self, entry: &mut LogEntry) -> bool {
        if !self.inner.options.enabled {
            return false;
        }
        let mut changed = false;
        if let Cow::Owned(line) = self.redact_line(&entry.line) {
            entry.line = line;
            changed = true;
        }
        for metadata in &mut entry.structured_metadata {
            changed |= self.redact_attribute(&metadata.name, &mut metadata.value);
        }
        changed
    }

    /// [`Redactor::redact_log_entry`] for every entry of every stream (a decoded Loki push or OTLP logs request);
    /// returns how many entries changed. Stream labels are left alone: they are the stream's identity, chosen by
    /// the operator, and low-cardinality by design.
    pub fn redact_log_streams(&self, streams: &mut [LogStream]) -> usize {
        streams
            .iter_mut()
            .flat_map(|stream| stream.entries.iter_mut())
            .map(|entry| usize::from(self.redact_log_entry(entry)))
            .sum()
    }

    fn redact_free_text<'t>(&self, text: &'t str, context: KeyContext) -> Cow<'t, str> {
        let mut tally = Tally::default();
        let replacements = self.text_replacements(text, context, &mut tally);
        self.record(&tally);
        if replacements.is_empty() { Cow::Borrowed(text) } else { Cow::Owned(apply_replacements(text, &replacements)) }
    }
}

/// Builds `text` with the sorted, non-overlapping `replacements` applied.
fn apply_replacements(text: &str, replacements: &[Replacement<'_>]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut copied_up_to = 0;
    for replacement in replacements {
        out.push_str(text.get(copied_up_to..replacement.start).unwrap_or_default());
        out.push_str(replacement.text);
        copied_up_to = replacement.end;
    }
    out.push_str(text.get(copied_up_to..).unwrap_or_default());
    out
}

fn apply_edits(line: &str, edits: &[json::Edit]) -> String {
    let mut out = String::with_capacity(line.len());
    let mut copied_up_to = 0;
    for edit in edits {
        debug_assert!(edit.start >= copied_up_to, "json edits are produced in line order without overlap");
        out.push_str(line.get(copied_up_to..edit.start).unwrap_or_default());
        out.push_str(&edit.text);
        copied_up_to = edit.end;
    }
    out.push_str(line.get(copied_up_to..).unwrap_or_default());
    out
}

#[cfg(test)]
mod tests;
