//! Label matchers, as in PromQL selectors and `match[]` parameters.

use std::fmt;

use regex::Regex;

/// The four matcher operators of PromQL and LogQL stream selectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    /// `=`: the value equals.
    Equal,
    /// `!=`: the value differs.
    NotEqual,
    /// `=~`: the whole value matches the regular expression.
    Regex,
    /// `!~`: the whole value does not match the regular expression.
    NotRegex,
}

impl MatchOp {
    /// The operator as written in a selector: `=`, `!=`, `=~` or `!~`.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }
}

/// Why a matcher could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MatcherError {
    /// The regular expression of a `=~` or `!~` matcher does not compile; names the label and the pattern.
    #[error("invalid regular expression {pattern:?} for label {label:?}: {message}")]
    InvalidRegex {
        /// The label the matcher applies to.
        label: String,
        /// The pattern as given.
        pattern: String,
        /// The regex crate's explanation.
        message: String,
    },
}

/// One label matcher. A missing label matches as the empty string, as in Prometheus, so `{a=""}` selects
/// series without `a` and `{a!=""}` selects series that have it.
///
/// Regular expressions are RE2 syntax, fully anchored (`^(?:pattern)$`), as Prometheus' `labels.Matcher`.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// The operator.
    pub op: MatchOp,
    /// The label name.
    pub name: String,
    /// The value or pattern as written.
    pub value: String,
    regex: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.op == other.op && self.name == other.name && self.value == other.value
    }
}

impl Matcher {
    /// Builds a matcher; compiles the anchored regex for `=~`/`!~`.
    ///
    /// # Errors
    /// [`MatcherError::InvalidRegex`] when the pattern does not compile.
    pub fn new(op: MatchOp, name: impl Into<String>, value: impl Into<String>) -> Result<Self, MatcherError> {
        let name = name.into();
        let value = value.into();
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => {
                let anchored = format!("^(?s:{value})$");
                let compiled = Regex::new(&anchored).map_err(|error| MatcherError::InvalidRegex {
                    label: name.clone(),
                    pattern: value.clone(),
                    message: error.to_string(),
                })?;
                Some(compiled)
            }
            MatchOp::Equal | MatchOp::NotEqual => None,
        };
        Ok(Matcher { op, name, value, regex })
    }

    /// An equality matcher, which cannot fail.
    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Matcher { op: MatchOp::Equal, name: name.into(), value: value.into(), regex: None }
    }

    /// True when `value` (the empty string for a missing label) satisfies the matcher.
    pub fn matches(&self, value: &str) -> bool {
        match (self.op, &self.regex) {
            (MatchOp::Equal, _) => value == self.value,
            (MatchOp::NotEqual, _) => value != self.value,
            (MatchOp::Regex, Some(regex)) => regex.is_match(value),
            (MatchOp::NotRegex, Some(regex)) => !regex.is_match(value),
            // Constructors always compile the regex for the regex operators.
            (MatchOp::Regex | MatchOp::NotRegex, None) => false,
        }
    }

    /// True when the matcher selects series that lack the label (it matches the empty string).
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}{}{:?}", self.name, self.op.as_str(), self.value)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn regex_is_anchored_and_spans_newlines() {
        let matcher = Matcher::new(MatchOp::Regex, "path", "/api/.*").unwrap();
        assert!(matcher.matches("/api/events"));
        assert!(matcher.matches("/api/a\nb"));
        assert!(!matcher.matches("x/api/events"));
    }

    #[test]
    fn missing_label_matches_as_empty() {
        assert!(Matcher::equal("a", "").matches_empty());
        assert!(!Matcher::new(MatchOp::NotEqual, "a", "").unwrap().matches_empty());
        assert!(Matcher::new(MatchOp::NotRegex, "a", ".+").unwrap().matches_empty());
    }

    #[test]
    fn invalid_regex_names_label_and_pattern() {
        let error = Matcher::new(MatchOp::Regex, "status", "(5..").unwrap_err().to_string();
        assert!(error.contains("\"status\"") && error.contains("(5.."), "{error}");
    }
}
