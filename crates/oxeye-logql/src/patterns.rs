//! Log pattern detection for Loki's `/loki/api/v1/patterns`: a Drain-style clustering of lines into
//! templates where varying tokens become `<_>`, with per-step sample counts.
//!
//! Lines are split into tokens at spaces; a token holding a digit is a variable from the start (ids,
//! numbers, timestamps). Lines are grouped by token count and first token; within a group a line joins
//! the most similar template (share of positions with the same token, wildcards counting as equal) when
//! at least [`SIMILARITY_THRESHOLD`] of it matches, turning differing positions into `<_>`; otherwise it
//! starts a new template. This follows the Drain algorithm (He et al., ICWS 2017) that Loki's pattern
//! ingester uses, without its parse tree depth and line-length tuning.

use std::collections::{BTreeMap, HashMap};

/// The wildcard token of a pattern.
pub const WILDCARD: &str = "<_>";
/// The share of equal tokens a line needs to join a template.
pub const SIMILARITY_THRESHOLD: f64 = 0.5;
/// The most templates kept per (token count, first token) group; later lines that match none are
/// dropped, so a group of unrelated lines cannot grow without bound.
pub const MAX_TEMPLATES_PER_GROUP: usize = 100;

/// A detected pattern and its counts.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectedPattern {
    /// The template, tokens joined by single spaces, varying tokens as `<_>`.
    pub pattern: String,
    /// `(bucket start in nanoseconds, lines)` ascending; buckets are `step_ns` wide, aligned to 0.
    pub samples: Vec<(i64, u64)>,
    /// Lines matched in total.
    pub total: u64,
}

struct Template {
    tokens: Vec<String>,
    buckets: BTreeMap<i64, u64>,
    total: u64,
}

/// Clusters lines into patterns; feed lines with [`PatternDetector::add`], then take
/// [`PatternDetector::patterns`].
pub struct PatternDetector {
    step_ns: i64,
    groups: HashMap<(usize, String), Vec<Template>>,
}

fn is_variable(token: &str) -> bool {
    token.bytes().any(|byte| byte.is_ascii_digit())
}

impl PatternDetector {
    /// A detector counting samples in buckets of `step_ns` nanoseconds (at least 1).
    pub fn new(step_ns: i64) -> Self {
        PatternDetector { step_ns: step_ns.max(1), groups: HashMap::new() }
    }

    /// Adds one line logged at `timestamp_ns`.
    pub fn add(&mut self, timestamp_ns: i64, line: &str) {
        let tokens: Vec<&str> = line.split(' ').filter(|token| !token.is_empty()).collect();
        let Some(first) = tokens.first() else { return };
        let key = (tokens.len(), if is_variable(first) { WILDCARD.to_string() } else { (*first).to_string() });
        let templates = self.groups.entry(key).or_default();
        let bucket = timestamp_ns.div_euclid(self.step_ns) * self.step_ns;
        let mut best: Option<(usize, f64)> = None;
        for (index, template) in templates.iter().enumerate() {
            let same = template
                .tokens
                .iter()
                .zip(&tokens)
                .filter(|(known, token)| known.as_str() == WILDCARD || known.as_str() == **token)
                .count();
            let similarity = same as f64 / tokens.len() as f64;
            if similarity >= SIMILARITY_THRESHOLD && best.is_none_or(|(_, score)| similarity > score) {
                best = Some((index, similarity));
            }
        }
        let template = match best {
            Some((index, _)) => {
                let Some(template) = templates.get_mut(index) else { return };
                for (known, token) in template.tokens.iter_mut().zip(&tokens) {
                    if known != token && known != WILDCARD {
                        *known = WILDCARD.to_string();
                    }
                }
                template
            }
            None => {
                if templates.len() >= MAX_TEMPLATES_PER_GROUP {
                    return;
                }
                let tokens = tokens
                    .iter()
                    .map(|token| if is_variable(token) { WILDCARD.to_string() } else { (*token).to_string() })
                    .collect();
                templates.push(Template { tokens, buckets: BTreeMap::new(), total: 0 });
                let Some(template) = templates.last_mut() else { return };
                template
            }
        };
        *template.buckets.entry(bucket).or_default() += 1;
        template.total += 1;
    }

    /// The patterns found, most frequent first. Templates that differ only where one has `<_>` are
    /// merged.
    pub fn patterns(self) -> Vec<DetectedPattern> {
        let mut merged: HashMap<String, (BTreeMap<i64, u64>, u64)> = HashMap::new();
        for template in self.groups.into_values().flatten() {
            let entry = merged.entry(template.tokens.join(" ")).or_default();
            for (bucket, count) in template.buckets {
                *entry.0.entry(bucket).or_default() += count;
            }
            entry.1 += template.total;
        }
        let mut patterns: Vec<DetectedPattern> = merged
            .into_iter()
            .map(|(pattern, (buckets, total))| DetectedPattern {
                pattern,
                samples: buckets.into_iter().collect(),
                total,
            })
            .collect();
        patterns.sort_by(|left, right| right.total.cmp(&left.total).then_with(|| left.pattern.cmp(&right.pattern)));
        patterns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varying_tokens_become_wildcards_and_counts_fall_in_steps() {
        let mut detector = PatternDetector::new(10);
        detector.add(1, "task notify_event_open done in 12ms for user alice");
        detector.add(5, "task notify_event_open done in 40ms for user bob");
        detector.add(12, "task send_receipt done in 7ms for user carol");
        detector.add(13, "cache miss key=events");
        detector.add(14, "cache miss key=users");
        detector.add(15, "something entirely different here");
        let patterns = detector.patterns();
        assert_eq!(patterns[0].pattern, "task <_> done in <_> for user <_>");
        assert_eq!(patterns[0].samples, [(0, 2), (10, 1)]);
        assert_eq!(patterns[0].total, 3);
        assert_eq!(patterns[1].pattern, "cache miss <_>");
        assert_eq!(patterns[2].pattern, "something entirely different here");
        assert_eq!(patterns.len(), 3);
    }

    #[test]
    fn dissimilar_lines_of_the_same_shape_stay_apart() {
        let mut detector = PatternDetector::new(1);
        detector.add(0, "GET /healthz ok");
        detector.add(0, "GET /api/events failed");
        detector.add(0, "GET /healthz ok");
        let patterns = detector.patterns();
        assert_eq!(patterns.len(), 2);
        assert_eq!((patterns[0].pattern.as_str(), patterns[0].total), ("GET /healthz ok", 2));
        assert!(PatternDetector::new(0).patterns().is_empty());
    }
}
