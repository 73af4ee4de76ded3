//! Per-rule redaction counters for `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Names of the built-in rules, in counter order; custom rules follow.
pub(crate) const BUILTIN_RULE_NAMES: [&str; 4] = ["sensitive_key", "card_number", "ssn", "email"];

/// Which rule produced a redaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    SensitiveKey,
    CardNumber,
    Ssn,
    Email,
    Custom(usize),
}

impl Rule {
    fn counter_index(self) -> usize {
        match self {
            Rule::SensitiveKey => 0,
            Rule::CardNumber => 1,
            Rule::Ssn => 2,
            Rule::Email => 3,
            Rule::Custom(index) => BUILTIN_RULE_NAMES.len() + index,
        }
    }
}

/// Live counters, one per rule: how many values or text spans each rule replaced since start.
///
/// Shared by every clone of a [`crate::Redactor`]; increments are relaxed atomics made once per redacted
/// line or value, never on the no-secret path.
#[derive(Debug)]
pub struct RedactionStats {
    rule_names: Box<[String]>,
    redactions: Box<[AtomicU64]>,
}

impl RedactionStats {
    pub(crate) fn new(custom_rule_names: impl Iterator<Item = String>) -> RedactionStats {
        let rule_names: Box<[String]> =
            BUILTIN_RULE_NAMES.iter().map(|name| name.to_string()).chain(custom_rule_names).collect();
        let redactions = rule_names.iter().map(|_| AtomicU64::new(0)).collect();
        RedactionStats { rule_names, redactions }
    }

    pub(crate) fn add(&self, tally: &Tally) {
        for (index, count) in tally.counts() {
            if let Some(counter) = self.redactions.get(index) {
                counter.fetch_add(count, Ordering::Relaxed);
            }
        }
    }

    /// The counters' current values, every rule listed (zeros included) in a stable order: `sensitive_key`,
    /// `card_number`, `ssn`, `email`, then the custom rules in configuration order.
    pub fn snapshot(&self) -> RedactionStatsSnapshot {
        let by_rule = self
            .rule_names
            .iter()
            .zip(self.redactions.iter())
            .map(|(rule, counter)| RuleRedactions { rule: rule.clone(), redactions: counter.load(Ordering::Relaxed) })
            .collect();
        RedactionStatsSnapshot { by_rule }
    }
}

/// A point-in-time copy of [`RedactionStats`], e.g. for `oxeye_redactions_total{rule="..."}` in `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RedactionStatsSnapshot {
    /// One entry per configured rule, in the order [`RedactionStats::snapshot`] states.
    pub by_rule: Vec<RuleRedactions>,
}

impl RedactionStatsSnapshot {
    /// The count of the rule named `rule`, 0 when there is no such rule.
    pub fn redactions(&self, rule: &str) -> u64 {
        self.by_rule.iter().find(|entry| entry.rule == rule).map_or(0, |entry| entry.redactions)
    }

    /// The sum over all rules.
    pub fn total(&self) -> u64 {
        self.by_rule.iter().map(|entry| entry.redactions).sum()
    }
}

/// How many redactions one rule made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRedactions {
    /// The rule's name: `sensitive_key`, `card_number`, `ssn`, `email` or a custom rule's name.
    pub rule: String,
    /// Values or text spans replaced since the redactor was built.
    pub redactions: u64,
}

/// Counts of one call, flushed into [`RedactionStats`] once at the end (only when something was redacted).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    builtin: [u64; BUILTIN_RULE_NAMES.len()],
    custom: Vec<u64>,
}

impl Tally {
    pub(crate) fn count(&mut self, rule: Rule) {
        let index = rule.counter_index();
        if let Some(slot) = self.builtin.get_mut(index) {
            *slot += 1;
            return;
        }
        let custom_index = index - BUILTIN_RULE_NAMES.len();
        if self.custom.len() <= custom_index {
            self.custom.resize(custom_index + 1, 0);
        }
        if let Some(slot) = self.custom.get_mut(custom_index) {
            *slot += 1;
        }
    }

    pub(crate) fn absorb(&mut self, other: &Tally) {
        for (slot, count) in self.builtin.iter_mut().zip(other.builtin.iter()) {
            *slot += count;
        }
        if self.custom.len() < other.custom.len() {
            self.custom.resize(other.custom.len(), 0);
        }
        for (slot, count) in self.custom.iter_mut().zip(other.custom.iter()) {
            *slot += count;
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.builtin.iter().all(|count| *count == 0) && self.custom.iter().all(|count| *count == 0)
    }

    fn counts(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.builtin.iter().copied().chain(self.custom.iter().copied()).enumerate().filter(|(_, count)| *count > 0)
    }
}
