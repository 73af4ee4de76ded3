//! Relabelling, as Prometheus' `relabel_configs` (applied to targets before scraping) and
//! `metric_relabel_configs` (applied to each scraped sample before it is stored).
//!
//! Source: Prometheus `model/relabel/relabel.go` and the `<relabel_config>` section of the configuration
//! reference. Regular expressions are fully anchored (`^(?s:regex)$`); replacements use `$1`, `${1}`,
//! `$name` and `${name}` (the longest name wins, so `$1x` names the group `1x`), `$$` for a literal `$`.
//!
//! ```
//! use oxeye_model::Labels;
//! use oxeye_scrape::relabel::{RelabelConfig, RelabelRule, relabel};
//! let config: RelabelConfig = serde_json::from_str(
//!     r#"{"source_labels": ["__address__"], "regex": "(.*):\\d+", "target_label": "host"}"#,
//! ).unwrap();
//! let rules = vec![RelabelRule::new(&config).unwrap()];
//! let labels = Labels::from_pairs([("__address__", "django:8000")]);
//! assert_eq!(relabel(&labels, &rules).unwrap().get("host"), Some("django"));
//! ```

use md5::{Digest, Md5};
use oxeye_model::{Labels, is_valid_label_name};
use regex::Regex;
use serde::Deserialize;

/// The default `separator` between joined source label values.
pub const DEFAULT_SEPARATOR: &str = ";";
/// The default `regex`, which matches anything (and captures it as `$1`).
pub const DEFAULT_REGEX: &str = "(.*)";
/// The default `replacement`.
pub const DEFAULT_REPLACEMENT: &str = "$1";

/// What a relabel rule does; the YAML spelling is the lowercase variant name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RelabelAction {
    /// Sets `target_label` to `replacement` (with `regex` groups expanded) when `regex` matches the
    /// joined source values; an empty result deletes the label.
    #[default]
    Replace,
    /// Drops the label set unless `regex` matches the joined source values.
    Keep,
    /// Drops the label set when `regex` matches the joined source values.
    Drop,
    /// Drops the label set unless the joined source values equal the value of `target_label`.
    KeepEqual,
    /// Drops the label set when the joined source values equal the value of `target_label`.
    DropEqual,
    /// Sets `target_label` to the MD5 of the joined source values modulo `modulus`.
    HashMod,
    /// Copies every label whose name matches `regex` to the name `replacement` expands to.
    LabelMap,
    /// Removes every label whose name matches `regex`.
    LabelDrop,
    /// Removes every label whose name does not match `regex`.
    LabelKeep,
    /// Sets `target_label` to the joined source values in lower case.
    Lowercase,
    /// Sets `target_label` to the joined source values in upper case.
    Uppercase,
}

impl RelabelAction {
    /// The YAML spelling, e.g. `keepequal`.
    pub fn as_str(self) -> &'static str {
        match self {
            RelabelAction::Replace => "replace",
            RelabelAction::Keep => "keep",
            RelabelAction::Drop => "drop",
            RelabelAction::KeepEqual => "keepequal",
            RelabelAction::DropEqual => "dropequal",
            RelabelAction::HashMod => "hashmod",
            RelabelAction::LabelMap => "labelmap",
            RelabelAction::LabelDrop => "labeldrop",
            RelabelAction::LabelKeep => "labelkeep",
            RelabelAction::Lowercase => "lowercase",
            RelabelAction::Uppercase => "uppercase",
        }
    }
}

/// One `<relabel_config>` as written in YAML, field names as in Prometheus. Unset fields take the
/// documented defaults ([`DEFAULT_SEPARATOR`], [`DEFAULT_REGEX`], [`DEFAULT_REPLACEMENT`], action
/// `replace`) when compiled by [`RelabelRule::new`].
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelabelConfig {
    /// Labels whose values are joined with `separator` to form the input.
    #[serde(default)]
    pub source_labels: Vec<String>,
    /// Joins source label values; default `;`.
    #[serde(default)]
    pub separator: Option<String>,
    /// The label written by `replace`, `hashmod`, `lowercase`, `uppercase`, compared by
    /// `keepequal`/`dropequal`. For `replace` it may use `$1`-style references.
    #[serde(default)]
    pub target_label: Option<String>,
    /// The fully anchored regular expression; default `(.*)`.
    #[serde(default)]
    pub regex: Option<String>,
    /// The modulus of `hashmod`; required (non-zero) for it.
    #[serde(default)]
    pub modulus: Option<u64>,
    /// The replacement template of `replace` and `labelmap`; default `$1`.
    #[serde(default)]
    pub replacement: Option<String>,
    /// The action; default `replace`.
    #[serde(default)]
    pub action: RelabelAction,
}

/// Why a relabel config cannot be compiled; the caller adds the job and the rule's position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelabelConfigError {
    /// The offending field, e.g. `regex` or `target_label`.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// A compiled, validated relabel rule.
#[derive(Debug, Clone)]
pub struct RelabelRule {
    source_labels: Vec<String>,
    separator: String,
    target_label: String,
    regex: Regex,
    modulus: u64,
    replacement: String,
    action: RelabelAction,
}

impl RelabelRule {
    /// Validates `config` as Prometheus does and compiles its regular expression.
    ///
    /// # Errors
    /// [`RelabelConfigError`] naming the field: an invalid `regex`; a missing `target_label` for
    /// `replace`, `hashmod`, `lowercase`, `uppercase`, `keepequal`, `dropequal`; an invalid target label
    /// name; a zero or missing `modulus` for `hashmod`; `labelmap`/`labeldrop`/`labelkeep` with fields
    /// they ignore; `keepequal`/`dropequal` with a non-default `regex` or `replacement`.
    pub fn new(config: &RelabelConfig) -> Result<RelabelRule, RelabelConfigError> {
        let error = |field: &'static str, reason: String| RelabelConfigError { field, reason };
        let action = config.action;
        let regex_text = config.regex.as_deref().unwrap_or(DEFAULT_REGEX);
        let regex = Regex::new(&format!("^(?s:{regex_text})$")).map_err(|regex_error| {
            error("regex", format!("invalid regular expression {regex_text:?}: {regex_error}"))
        })?;
        let target_label = config.target_label.clone().unwrap_or_default();
        let replacement = config.replacement.clone().unwrap_or_else(|| DEFAULT_REPLACEMENT.to_string());
        let needs_target = matches!(
            action,
            RelabelAction::Replace
                | RelabelAction::HashMod
                | RelabelAction::Lowercase
                | RelabelAction::Uppercase
                | RelabelAction::KeepEqual
                | RelabelAction::DropEqual
        );
        if needs_target && target_label.is_empty() {
            return Err(error("target_label", format!("relabel action {} requires target_label", action.as_str())));
        }
        // A `replace` target may be a template (`${1}`); everything else must be a label name.
        let target_is_template = action == RelabelAction::Replace && target_label.contains('$');
        if needs_target && !target_is_template && !is_valid_label_name(&target_label) {
            return Err(error("target_label", format!("{target_label:?} is invalid for action {}", action.as_str())));
        }
        let modulus = config.modulus.unwrap_or(0);
        if action == RelabelAction::HashMod && modulus == 0 {
            return Err(error("modulus", "relabel action hashmod requires a non-zero modulus".to_string()));
        }
        if matches!(action, RelabelAction::LabelDrop | RelabelAction::LabelKeep)
            && (!config.source_labels.is_empty()
                || config.target_label.is_some()
                || config.modulus.is_some()
                || config.separator.is_some()
                || config.replacement.is_some())
        {
            return Err(error(
                "action",
                format!(
                    "{} only takes regex; source_labels, target_label, modulus, separator and replacement must be unset",
                    action.as_str()
                ),
            ));
        }
        if action == RelabelAction::LabelMap && !config.source_labels.is_empty() {
            return Err(error("source_labels", "labelmap does not take source_labels".to_string()));
        }
        if matches!(action, RelabelAction::KeepEqual | RelabelAction::DropEqual)
            && (config.regex.is_some() || config.replacement.is_some() || config.modulus.is_some())
        {
            return Err(error(
                "action",
                format!("{} takes only source_labels, separator and target_label", action.as_str()),
            ));
        }
        Ok(RelabelRule {
            source_labels: config.source_labels.clone(),
            separator: config.separator.clone().unwrap_or_else(|| DEFAULT_SEPARATOR.to_string()),
            target_label,
            regex,
            modulus,
            replacement,
            action,
        })
    }

    /// The rule's action.
    pub fn action(&self) -> RelabelAction {
        self.action
    }
}

/// Applies `rules` in order to `labels`. Returns `None` when a rule drops the label set (keep, drop,
/// keepequal, dropequal), otherwise the relabelled set (empty values removed).
pub fn relabel(labels: &Labels, rules: &[RelabelRule]) -> Option<Labels> {
    if rules.is_empty() {
        return Some(labels.clone());
    }
    let mut builder = labels.to_builder();
    for rule in rules {
        if !apply_rule(&mut builder, rule) {
            return None;
        }
    }
    Some(builder.build())
}

/// Applies one rule; false when it drops the label set.
fn apply_rule(builder: &mut oxeye_model::LabelsBuilder, rule: &RelabelRule) -> bool {
    let joined_values = || {
        let values: Vec<&str> = rule.source_labels.iter().map(|name| builder.get(name).unwrap_or("")).collect();
        values.join(&rule.separator)
    };
    match rule.action {
        RelabelAction::Drop => !rule.regex.is_match(&joined_values()),
        RelabelAction::Keep => rule.regex.is_match(&joined_values()),
        RelabelAction::DropEqual => builder.get(&rule.target_label).unwrap_or("") != joined_values(),
        RelabelAction::KeepEqual => builder.get(&rule.target_label).unwrap_or("") == joined_values(),
        RelabelAction::Replace => {
            let value = joined_values();
            let Some(captures) = rule.regex.captures(&value) else {
                return true;
            };
            let mut target = String::new();
            captures.expand(&rule.target_label, &mut target);
            if !is_valid_label_name(&target) {
                return true;
            }
            let mut replaced = String::new();
            captures.expand(&rule.replacement, &mut replaced);
            if replaced.is_empty() {
                builder.delete(&target);
            } else {
                builder.set(target, replaced);
            }
            true
        }
        RelabelAction::Lowercase => {
            let value = joined_values().to_lowercase();
            builder.set(rule.target_label.clone(), value);
            true
        }
        RelabelAction::Uppercase => {
            let value = joined_values().to_uppercase();
            builder.set(rule.target_label.clone(), value);
            true
        }
        RelabelAction::HashMod => {
            let digest = Md5::digest(joined_values().as_bytes());
            // Prometheus reads the digest's last 8 bytes as a big-endian integer.
            let mut tail = [0u8; 8];
            for (slot, byte) in tail.iter_mut().zip(digest.iter().skip(8)) {
                *slot = *byte;
            }
            let bucket = u64::from_be_bytes(tail) % rule.modulus;
            builder.set(rule.target_label.clone(), bucket.to_string());
            true
        }
        RelabelAction::LabelMap => {
            let current = builder.build();
            for label in &current {
                if let Some(captures) = rule.regex.captures(&label.name) {
                    let mut new_name = String::new();
                    captures.expand(&rule.replacement, &mut new_name);
                    if is_valid_label_name(&new_name) {
                        builder.set(new_name, label.value.clone());
                    }
                }
            }
            true
        }
        RelabelAction::LabelDrop | RelabelAction::LabelKeep => {
            let keep_matching = rule.action == RelabelAction::LabelKeep;
            let current = builder.build();
            for label in &current {
                if rule.regex.is_match(&label.name) != keep_matching {
                    builder.delete(&label.name);
                }
            }
            true
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rule(json: &str) -> RelabelRule {
        let config: RelabelConfig = serde_json::from_str(json).unwrap();
        RelabelRule::new(&config).unwrap()
    }

    fn rule_error(json: &str) -> RelabelConfigError {
        let config: RelabelConfig = serde_json::from_str(json).unwrap();
        RelabelRule::new(&config).unwrap_err()
    }

    fn sample_labels() -> Labels {
        Labels::from_pairs([
            ("__name__", "django_http_requests_total"),
            ("__address__", "django:8000"),
            ("method", "GET"),
            ("view", "events:list"),
            ("status", "200"),
        ])
    }

    #[test]
    fn replace_with_groups_and_default_action() {
        let rules = [rule(
            r#"{"source_labels": ["__address__"], "regex": "([^:]+):(\\d+)", "target_label": "host", "replacement": "${1}-port$2"}"#,
        )];
        let result = relabel(&sample_labels(), &rules).unwrap();
        assert_eq!(result.get("host"), Some("django-port8000"));
    }

    #[test]
    fn replace_is_anchored_and_non_matching_leaves_labels_alone() {
        let rules =
            [rule(r#"{"source_labels": ["method"], "regex": "ET", "target_label": "verb", "replacement": "x"}"#)];
        assert_eq!(relabel(&sample_labels(), &rules).unwrap(), sample_labels());
    }

    #[test]
    fn replace_with_empty_result_deletes_the_target_and_joins_with_separator() {
        let rules = [
            rule(r#"{"source_labels": ["method", "status"], "separator": "/", "target_label": "route"}"#),
            rule(r#"{"source_labels": ["nothing"], "target_label": "view"}"#),
        ];
        let result = relabel(&sample_labels(), &rules).unwrap();
        assert_eq!(result.get("route"), Some("GET/200"));
        assert_eq!(result.get("view"), None);
    }

    #[test]
    fn replace_with_templated_target_label() {
        let rules =
            [rule(r#"{"source_labels": ["method"], "regex": "(.*)", "target_label": "m_${1}", "replacement": "yes"}"#)];
        assert_eq!(relabel(&sample_labels(), &rules).unwrap().get("m_GET"), Some("yes"));
    }

    #[test]
    fn keep_and_drop() {
        let keep_get = [rule(r#"{"action": "keep", "source_labels": ["method"], "regex": "GET|HEAD"}"#)];
        assert!(relabel(&sample_labels(), &keep_get).is_some());
        let keep_post = [rule(r#"{"action": "keep", "source_labels": ["method"], "regex": "POST"}"#)];
        assert!(relabel(&sample_labels(), &keep_post).is_none());
        let drop_5xx = [rule(r#"{"action": "drop", "source_labels": ["status"], "regex": "5.."}"#)];
        assert!(relabel(&sample_labels(), &drop_5xx).is_some());
        let drop_200 = [rule(r#"{"action": "drop", "source_labels": ["status"], "regex": "2.."}"#)];
        assert!(relabel(&sample_labels(), &drop_200).is_none());
    }

    #[test]
    fn keepequal_and_dropequal() {
        let labels = Labels::from_pairs([("a", "x"), ("b", "x"), ("c", "y")]);
        let keep_equal = [rule(r#"{"action": "keepequal", "source_labels": ["a"], "target_label": "b"}"#)];
        assert!(relabel(&labels, &keep_equal).is_some());
        let keep_unequal = [rule(r#"{"action": "keepequal", "source_labels": ["a"], "target_label": "c"}"#)];
        assert!(relabel(&labels, &keep_unequal).is_none());
        let drop_equal = [rule(r#"{"action": "dropequal", "source_labels": ["a"], "target_label": "b"}"#)];
        assert!(relabel(&labels, &drop_equal).is_none());
        let drop_unequal = [rule(r#"{"action": "dropequal", "source_labels": ["a"], "target_label": "c"}"#)];
        assert!(relabel(&labels, &drop_unequal).is_some());
    }

    #[test]
    fn hashmod_matches_prometheus() {
        // Prometheus' relabel_test.go: md5("foo") last 8 bytes big-endian mod 1000 = 972... computed here
        // from the definition and cross-checked against the digest bytes.
        let digest = Md5::digest(b"foo");
        let mut tail = [0u8; 8];
        tail.copy_from_slice(&digest[8..16]);
        let expected = (u64::from_be_bytes(tail) % 1000).to_string();
        let rules =
            [rule(r#"{"action": "hashmod", "source_labels": ["a"], "modulus": 1000, "target_label": "shard"}"#)];
        let result = relabel(&Labels::from_pairs([("a", "foo")]), &rules).unwrap();
        assert_eq!(result.get("shard"), Some(expected.as_str()));
        // Known value: md5("foo") = acbd18db4cc2f85cedef654fccc4a4d8; 0xedef654fccc4a4d8 % 1000 = 744.
        assert_eq!(expected, (0xedef_654f_ccc4_a4d8_u64 % 1000).to_string());
    }

    #[test]
    fn labelmap_copies_matching_names() {
        let labels = Labels::from_pairs([("__meta_kubernetes_pod_label_app", "django"), ("other", "1")]);
        let rules = [rule(r#"{"action": "labelmap", "regex": "__meta_kubernetes_pod_label_(.+)"}"#)];
        let result = relabel(&labels, &rules).unwrap();
        assert_eq!(result.get("app"), Some("django"));
        assert_eq!(result.get("__meta_kubernetes_pod_label_app"), Some("django"));
        assert_eq!(result.get("other"), Some("1"));
    }

    #[test]
    fn labeldrop_and_labelkeep() {
        let drop_rules = [rule(r#"{"action": "labeldrop", "regex": "view|status"}"#)];
        let dropped = relabel(&sample_labels(), &drop_rules).unwrap();
        assert_eq!(dropped.get("view"), None);
        assert_eq!(dropped.get("status"), None);
        assert_eq!(dropped.get("method"), Some("GET"));
        let keep_rules = [rule(r#"{"action": "labelkeep", "regex": "__name__|method"}"#)];
        let kept = relabel(&sample_labels(), &keep_rules).unwrap();
        assert_eq!(kept, Labels::from_pairs([("__name__", "django_http_requests_total"), ("method", "GET")]));
    }

    #[test]
    fn lowercase_and_uppercase() {
        let rules = [
            rule(r#"{"action": "lowercase", "source_labels": ["method"], "target_label": "method_lower"}"#),
            rule(r#"{"action": "uppercase", "source_labels": ["view"], "target_label": "view_upper"}"#),
        ];
        let result = relabel(&sample_labels(), &rules).unwrap();
        assert_eq!(result.get("method_lower"), Some("get"));
        assert_eq!(result.get("view_upper"), Some("EVENTS:LIST"));
    }

    #[test]
    fn invalid_configs_name_the_field() {
        assert_eq!(rule_error(r#"{"regex": "(unclosed"}"#).field, "regex");
        assert_eq!(rule_error(r#"{"action": "replace", "source_labels": ["a"]}"#).field, "target_label");
        assert_eq!(
            rule_error(r#"{"action": "hashmod", "source_labels": ["a"], "target_label": "b"}"#).field,
            "modulus"
        );
        assert_eq!(rule_error(r#"{"action": "labeldrop", "regex": "a", "source_labels": ["a"]}"#).field, "action");
        assert_eq!(
            rule_error(r#"{"action": "keepequal", "source_labels": ["a"], "target_label": "b", "regex": "x"}"#).field,
            "action"
        );
        assert_eq!(rule_error(r#"{"action": "lowercase", "source_labels": ["a"]}"#).field, "target_label");
        let unknown_field: Result<RelabelConfig, _> = serde_json::from_str(r#"{"actoin": "keep"}"#);
        assert!(unknown_field.is_err());
        let unknown_action: Result<RelabelConfig, _> = serde_json::from_str(r#"{"action": "explode"}"#);
        assert!(unknown_action.is_err());
    }
}
