//! The `logs:` section of the configuration file: the log store's limits, PII redaction and tailed files.
//! Read into [`LogsSection`] (human units as strings, unknown fields rejected), validated into [`LogsSettings`].

use std::collections::BTreeMap;

use oxeye_logstore::LineTooLongPolicy;
use oxeye_pipeline::{CustomRedactionRule, RedactionOptions};
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, parse_byte_size};

/// `logs:`: the log store and what happens to log lines on the way in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsSection {
    /// How long log entries are kept; older pushes are refused. A Prometheus duration.
    pub retention: String,
    /// The longest accepted line, e.g. `256KiB`.
    pub max_line_size: String,
    /// `reject` (drop the entry, counted) or `truncate` (cut the line, counted).
    pub max_line_size_policy: String,
    /// How far behind its stream's newest entry an entry may arrive and still be accepted.
    pub unordered_writes_window: String,
    /// PII redaction before the WAL.
    pub redaction: RedactionSection,
    /// Log files oxeye tails.
    pub files: Vec<TailedFilesSection>,
}

/// `logs.redaction:`: the rules applied to every log line, structured metadata value and OTLP body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedactionSection {
    /// Master switch; on by default.
    pub enabled: bool,
    /// Keys whose values are replaced, in addition to the built-in ones (`password`, `token`, ...).
    pub extra_sensitive_keys: Vec<String>,
    /// Redact Luhn-valid card numbers anywhere.
    pub card_numbers: bool,
    /// Redact `ddd-dd-dddd` SSNs anywhere.
    pub ssns: bool,
    /// Replace e-mail addresses in free text with `[EMAIL]` (a field named `email` is kept).
    pub emails: bool,
    /// Extra regex rules.
    pub custom_rules: Vec<CustomRuleSection>,
}

/// One `logs.redaction.custom_rules[]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomRuleSection {
    /// The rule's name: the `rule` label of `oxeye_redactions_total`.
    pub name: String,
    /// A regular expression (Rust `regex` syntax).
    pub pattern: String,
    /// The literal replacement; `[REDACTED]` when absent.
    #[serde(default = "default_replacement")]
    pub replacement: String,
}

fn default_replacement() -> String {
    oxeye_pipeline::redaction::REDACTED.to_string()
}

/// One `logs.files[]` entry: a set of files tailed with the same labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TailedFilesSection {
    /// Glob patterns of the files to tail (`*`, `?`, `[...]` in the last path component).
    pub paths: Vec<String>,
    /// Static stream labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Top-level JSON fields promoted to stream labels (JSON format only).
    #[serde(default)]
    pub json_labels: Vec<String>,
    /// `json` (JSON lines) or `text`.
    #[serde(default = "default_file_format")]
    pub format: String,
}

fn default_file_format() -> String {
    "json".into()
}

impl Default for LogsSection {
    fn default() -> Self {
        LogsSection {
            retention: "30d".into(),
            max_line_size: "256KiB".into(),
            max_line_size_policy: "reject".into(),
            unordered_writes_window: "1h".into(),
            redaction: RedactionSection::default(),
            files: Vec::new(),
        }
    }
}

impl Default for RedactionSection {
    fn default() -> Self {
        RedactionSection {
            enabled: true,
            extra_sensitive_keys: Vec::new(),
            card_numbers: true,
            ssns: true,
            emails: true,
            custom_rules: Vec::new(),
        }
    }
}

/// The format of a tailed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailedFileFormat {
    /// One JSON object per line; `json_labels` fields become labels.
    Json,
    /// Plain text lines.
    Text,
}

/// A validated `logs.files[]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct TailedFiles {
    /// Glob patterns.
    pub paths: Vec<String>,
    /// Static stream labels.
    pub labels: BTreeMap<String, String>,
    /// JSON fields promoted to labels.
    pub json_labels: Vec<String>,
    /// Line format.
    pub format: TailedFileFormat,
}

/// The validated `logs:` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LogsSettings {
    /// Retention, in milliseconds.
    pub retention_ms: i64,
    /// The longest accepted line, in bytes.
    pub max_line_bytes: usize,
    /// What happens to longer lines.
    pub line_too_long: LineTooLongPolicy,
    /// The unordered-write window, in milliseconds.
    pub unordered_window_ms: i64,
    /// The redaction rules (the built-in defaults plus the configured extras).
    pub redaction: RedactionOptions,
    /// Tailed files.
    pub files: Vec<TailedFiles>,
}

fn invalid(field: String, message: String) -> ConfigError {
    ConfigError::Invalid { field, message }
}

fn positive_duration_ms(field: &str, text: &str) -> Result<i64, ConfigError> {
    let milliseconds = oxeye_model::duration::parse_duration_ms(text)
        .map_err(|error| invalid(field.to_string(), error.to_string()))?;
    if milliseconds <= 0 {
        return Err(invalid(field.to_string(), format!("{text:?} must be greater than 0")));
    }
    Ok(milliseconds)
}

impl LogsSection {
    /// Checks every field and converts human units.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first bad field (`logs.retention`, `logs.redaction.custom_rules[1]`...).
    pub fn validate(&self) -> Result<LogsSettings, ConfigError> {
        let retention_ms = positive_duration_ms("logs.retention", &self.retention)?;
        let max_line_bytes = parse_byte_size("logs.max_line_size", &self.max_line_size)?;
        if max_line_bytes == 0 {
            return Err(invalid("logs.max_line_size".into(), "must be greater than 0".into()));
        }
        let line_too_long = match self.max_line_size_policy.as_str() {
            "reject" => LineTooLongPolicy::Reject,
            "truncate" => LineTooLongPolicy::Truncate,
            other => {
                return Err(invalid(
                    "logs.max_line_size_policy".into(),
                    format!("{other:?} is not reject or truncate"),
                ));
            }
        };
        let unordered_window_ms = positive_duration_ms("logs.unordered_writes_window", &self.unordered_writes_window)?;
        let redaction = self.redaction.options();
        // Building the redactor checks the rule names and regexes; the error names the rule.
        oxeye_pipeline::Redactor::new(redaction.clone()).map_err(|error| {
            let position = match &error {
                oxeye_pipeline::PipelineError::InvalidRedactionRegex { rule, .. }
                | oxeye_pipeline::PipelineError::InvalidRedactionRuleName { rule, .. } => {
                    self.redaction.custom_rules.iter().position(|custom| &custom.name == rule)
                }
                _ => None,
            };
            let field = match position {
                Some(index) => format!("logs.redaction.custom_rules[{index}]"),
                None => "logs.redaction".to_string(),
            };
            invalid(field, error.to_string())
        })?;
        let mut files = Vec::with_capacity(self.files.len());
        for (index, section) in self.files.iter().enumerate() {
            let field = |name: &str| format!("logs.files[{index}].{name}");
            if section.paths.is_empty() || section.paths.iter().any(String::is_empty) {
                return Err(invalid(field("paths"), "must list at least one non-empty glob".into()));
            }
            if let Some(position) =
                section.paths.iter().position(|path| oxeye_ingest::tail::glob::FileGlob::new(path).is_none())
            {
                return Err(invalid(
                    format!("logs.files[{index}].paths[{position}]"),
                    "wildcards (*, ?, [) are allowed only in the file name, not in directories".into(),
                ));
            }
            let format = match section.format.as_str() {
                "json" => TailedFileFormat::Json,
                "text" => TailedFileFormat::Text,
                other => return Err(invalid(field("format"), format!("{other:?} is not json or text"))),
            };
            if format == TailedFileFormat::Text && !section.json_labels.is_empty() {
                return Err(invalid(field("json_labels"), "needs format: json".into()));
            }
            let valid_name = |name: &str| {
                let mut bytes = name.bytes();
                bytes.next().is_some_and(|first| first.is_ascii_alphabetic() || first == b'_')
                    && bytes.all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
            };
            if let Some(name) = section.labels.keys().chain(&section.json_labels).find(|name| !valid_name(name)) {
                return Err(invalid(field("labels"), format!("{name:?} is not a valid label name")));
            }
            files.push(TailedFiles {
                paths: section.paths.clone(),
                labels: section.labels.clone(),
                json_labels: section.json_labels.clone(),
                format,
            });
        }
        Ok(LogsSettings {
            retention_ms,
            max_line_bytes: usize::try_from(max_line_bytes).unwrap_or(usize::MAX),
            line_too_long,
            unordered_window_ms,
            redaction,
            files,
        })
    }
}

impl RedactionSection {
    /// The pipeline's options: the seeds' defaults, switched and extended as configured.
    pub fn options(&self) -> RedactionOptions {
        let mut options = RedactionOptions { enabled: self.enabled, ..RedactionOptions::default() };
        options.sensitive_keys.extend(self.extra_sensitive_keys.iter().cloned());
        options.card_numbers = self.card_numbers;
        options.ssns = self.ssns;
        options.emails = self.emails;
        options.custom_rules = self
            .custom_rules
            .iter()
            .map(|rule| CustomRedactionRule {
                name: rule.name.clone(),
                pattern: rule.pattern.clone(),
                replacement: rule.replacement.clone(),
            })
            .collect();
        options
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::field_reassign_with_default)]
mod tests {
    use super::*;
    use crate::config::ConfigFile;

    #[test]
    fn defaults_are_lokis_and_the_seeds() {
        let settings = LogsSection::default().validate().unwrap();
        assert_eq!(settings.retention_ms, 30 * 86_400_000);
        assert_eq!(settings.max_line_bytes, 256 << 10);
        assert_eq!(settings.line_too_long, LineTooLongPolicy::Reject);
        assert_eq!(settings.unordered_window_ms, 3_600_000);
        assert_eq!(settings.redaction, RedactionOptions::default());
        assert!(settings.files.is_empty());
    }

    #[test]
    fn a_full_logs_section_parses_and_validates() {
        let yaml = r#"
logs:
  retention: 7d
  max_line_size: 64KiB
  max_line_size_policy: truncate
  unordered_writes_window: 10m
  redaction:
    enabled: true
    extra_sensitive_keys: [pin]
    emails: false
    custom_rules:
      - name: internal_ticket
        pattern: 'TICKET-\d{6}'
      - name: iban
        pattern: 'DE\d{20}'
        replacement: '[IBAN]'
  files:
    - paths: ["/var/log/boxoffice/*.log"]
      labels: {service_name: boxoffice}
      json_labels: [level]
"#;
        let config = ConfigFile::parse(yaml, "t.yaml").unwrap();
        let settings = config.logs.validate().unwrap();
        assert_eq!(settings.retention_ms, 7 * 86_400_000);
        assert_eq!(settings.max_line_bytes, 64 << 10);
        assert_eq!(settings.line_too_long, LineTooLongPolicy::Truncate);
        assert_eq!(settings.unordered_window_ms, 600_000);
        assert!(settings.redaction.sensitive_keys.iter().any(|key| key == "pin"));
        assert!(settings.redaction.sensitive_keys.iter().any(|key| key == "password"));
        assert!(!settings.redaction.emails);
        assert_eq!(settings.redaction.custom_rules[0].replacement, "[REDACTED]");
        assert_eq!(settings.redaction.custom_rules[1].replacement, "[IBAN]");
        assert_eq!(settings.files[0].format, TailedFileFormat::Json);
        assert_eq!(settings.files[0].labels["service_name"], "boxoffice");
    }

    #[test]
    fn bad_fields_are_named() {
        let error = |section: LogsSection| section.validate().unwrap_err().to_string();
        let mut section = LogsSection::default();
        section.max_line_size_policy = "drop".into();
        assert!(error(section).contains("logs.max_line_size_policy"));
        let mut section = LogsSection::default();
        section.retention = "0s".into();
        assert!(error(section).contains("logs.retention"));
        let mut section = LogsSection::default();
        section.redaction.custom_rules.push(CustomRuleSection {
            name: "ok".into(),
            pattern: "x+".into(),
            replacement: "[X]".into(),
        });
        section.redaction.custom_rules.push(CustomRuleSection {
            name: "broken".into(),
            pattern: "(".into(),
            replacement: "[X]".into(),
        });
        let message = error(section);
        assert!(message.contains("logs.redaction.custom_rules[1]") && message.contains("broken"), "{message}");
        let mut section = LogsSection::default();
        section.files.push(TailedFilesSection {
            paths: vec!["/tmp/*.log".into()],
            labels: BTreeMap::new(),
            json_labels: vec!["level".into()],
            format: "text".into(),
        });
        assert!(error(section).contains("logs.files[0].json_labels"));
        let mut section = LogsSection::default();
        section.files.push(TailedFilesSection {
            paths: vec!["/var/log/app.log".into(), "/var/log/*/app.log".into()],
            labels: BTreeMap::new(),
            json_labels: Vec::new(),
            format: "text".into(),
        });
        assert!(error(section).contains("logs.files[0].paths[1]"));
    }
}
