//! Label sets, the identity of a series.

use std::fmt;
use std::hash::{Hash, Hasher};

/// The label that holds a series' metric name, as in Prometheus.
pub const METRIC_NAME_LABEL: &str = "__name__";

/// One label: a name and a value. Neither is empty in a stored series; an empty value means "absent".
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label {
    /// The label name, e.g. `method`.
    pub name: String,
    /// The label value, e.g. `GET`.
    pub value: String,
}

/// One label borrowed from elsewhere (typically a request body), so that a store can find an existing
/// series without allocating a [`Labels`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LabelRef<'a> {
    /// The label name.
    pub name: &'a str,
    /// The label value (never empty in a decoded series).
    pub value: &'a str,
}

/// [`Labels::stable_hash`] of labels given as references, sorted by name; equal to the hash of the
/// [`Labels`] that [`Labels::from_refs`] builds from them.
pub fn stable_hash_of_refs(labels: &[LabelRef<'_>]) -> u64 {
    let mut hasher = Fnv1a::default();
    for label in labels {
        hasher.write(label.name.as_bytes());
        hasher.write(&[0xff]);
        hasher.write(label.value.as_bytes());
        hasher.write(&[0xff]);
    }
    hasher.finish()
}

/// A set of labels sorted by name with unique names: the identity of a series.
///
/// Invariant: names are strictly ascending (byte order) and no value is empty. Every constructor keeps it,
/// dropping empty values and keeping the last value of a repeated name, as Prometheus' `labels.Builder` does.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels(Vec<Label>);

impl Labels {
    /// An empty label set.
    pub fn empty() -> Self {
        Labels(Vec::new())
    }

    /// Builds a set from `(name, value)` pairs in any order; see the type's invariant for duplicates and
    /// empty values.
    pub fn from_pairs<N: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (N, V)>) -> Self {
        let mut builder = LabelsBuilder::new();
        for (name, value) in pairs {
            builder.set(name.into(), value.into());
        }
        builder.build()
    }

    /// Wraps labels that the caller already sorted by name, unique and non-empty (e.g. read back from a
    /// store). Checked with `debug_assert!` only.
    pub fn from_sorted(labels: Vec<Label>) -> Self {
        debug_assert!(labels.windows(2).all(|pair| pair[0].name < pair[1].name), "labels not sorted");
        Labels(labels)
    }

    /// Builds a set from borrowed labels that are already sorted by name, unique and non-empty (as
    /// decoders produce them). Checked with `debug_assert!` only.
    pub fn from_refs(labels: &[LabelRef<'_>]) -> Self {
        let owned =
            labels.iter().map(|label| Label { name: label.name.to_string(), value: label.value.to_string() }).collect();
        Self::from_sorted(owned)
    }

    /// True when these labels equal the sorted borrowed `labels`, compared without allocating.
    pub fn eq_refs(&self, labels: &[LabelRef<'_>]) -> bool {
        self.0.len() == labels.len()
            && self.0.iter().zip(labels).all(|(own, other)| own.name == other.name && own.value == other.value)
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.binary_search_by(|label| label.name.as_str().cmp(name)).ok().map(|index| self.0[index].value.as_str())
    }

    /// The metric name (`__name__`), if present.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME_LABEL)
    }

    /// The labels in name order.
    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }

    /// The number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The labels as a slice in name order.
    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    /// Consumes the set into its sorted vector.
    pub fn into_vec(self) -> Vec<Label> {
        self.0
    }

    /// A builder seeded with these labels, to add, replace or remove some.
    pub fn to_builder(&self) -> LabelsBuilder {
        LabelsBuilder { labels: self.0.clone() }
    }

    /// A copy without the metric name, as PromQL functions and aggregations produce.
    pub fn without_metric_name(&self) -> Labels {
        Labels(self.0.iter().filter(|label| label.name != METRIC_NAME_LABEL).cloned().collect())
    }

    /// A stable 64-bit hash of names and values (FNV-1a over `name 0xff value 0xff` bytes). Stable across
    /// processes and versions, so stores may persist it.
    pub fn stable_hash(&self) -> u64 {
        let mut hasher = Fnv1a::default();
        for label in &self.0 {
            hasher.write(label.name.as_bytes());
            hasher.write(&[0xff]);
            hasher.write(label.value.as_bytes());
            hasher.write(&[0xff]);
        }
        hasher.finish()
    }

    /// The first label name that is not a valid Prometheus label name, if any (see [`is_valid_label_name`]).
    pub fn first_invalid_name(&self) -> Option<&str> {
        self.0.iter().map(|label| label.name.as_str()).find(|name| !is_valid_label_name(name))
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Prints the Prometheus text form: `name{a="1", b="2"}` without the name label inside the braces, or
/// `{a="1"}` when there is no metric name. Values are escaped as in the exposition format.
impl fmt::Display for Labels {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.metric_name();
        if let Some(name) = name {
            formatter.write_str(name)?;
        }
        let others: Vec<&Label> = self.0.iter().filter(|label| label.name != METRIC_NAME_LABEL).collect();
        if others.is_empty() && name.is_some() {
            return Ok(());
        }
        formatter.write_str("{")?;
        for (index, label) in others.iter().enumerate() {
            if index > 0 {
                formatter.write_str(", ")?;
            }
            write!(formatter, "{}=\"", label.name)?;
            for character in label.value.chars() {
                match character {
                    '\\' => formatter.write_str("\\\\")?,
                    '"' => formatter.write_str("\\\"")?,
                    '\n' => formatter.write_str("\\n")?,
                    other => write!(formatter, "{other}")?,
                }
            }
            formatter.write_str("\"")?;
        }
        formatter.write_str("}")
    }
}

/// Builds a [`Labels`] by setting and deleting labels; keeps the type's invariant on [`LabelsBuilder::build`].
#[derive(Debug, Clone, Default)]
pub struct LabelsBuilder {
    labels: Vec<Label>,
}

impl LabelsBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name` to `value`, replacing an earlier value; an empty value deletes the label.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        let name = name.into();
        let value = value.into();
        match self.labels.iter_mut().find(|label| label.name == name) {
            Some(existing) => existing.value = value,
            None => self.labels.push(Label { name, value }),
        }
        self
    }

    /// Removes `name` if present.
    pub fn delete(&mut self, name: &str) -> &mut Self {
        self.labels.retain(|label| label.name != name);
        self
    }

    /// The current value of `name`, if set and non-empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|label| label.name == name && !label.value.is_empty()).map(|label| label.value.as_str())
    }

    /// Finishes the set: drops empty values and sorts by name.
    pub fn build(&self) -> Labels {
        let mut labels: Vec<Label> = self.labels.iter().filter(|label| !label.value.is_empty()).cloned().collect();
        labels.sort_by(|left, right| left.name.cmp(&right.name));
        Labels(labels)
    }
}

/// True for a valid Prometheus label name. Prometheus 3 accepts any non-empty UTF-8 name (quoted in the
/// text formats); we accept the same, and reject only the empty name and names with a NUL byte, which no
/// wire format can carry.
///
/// Source: <https://prometheus.io/docs/concepts/data_model/#metric-names-and-labels>.
pub fn is_valid_label_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('\0')
}

/// True for a metric name of the legacy character set `[a-zA-Z_:][a-zA-Z0-9_:]*`, the one that needs no
/// quoting in PromQL and in the 0.0.4 text format.
pub fn is_valid_legacy_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(first) if first.is_ascii_alphabetic() || first == b'_' || first == b':' => {}
        _ => return false,
    }
    bytes.all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b':')
}

/// 64-bit FNV-1a: tiny, stable and good enough to key a series map (collisions are resolved by comparing
/// the full label set).
#[derive(Debug)]
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_sorts_dedups_and_drops_empty_values() {
        let labels = Labels::from_pairs([("b", "2"), ("a", "1"), ("b", "3"), ("c", "")]);
        let names: Vec<&str> = labels.iter().map(|label| label.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(labels.get("b"), Some("3"));
        assert_eq!(labels.get("c"), None);
    }

    #[test]
    fn display_escapes_values() {
        let labels = Labels::from_pairs([("__name__", "up"), ("path", "a\"b\\c\nd")]);
        assert_eq!(labels.to_string(), r#"up{path="a\"b\\c\nd"}"#);
        assert_eq!(Labels::from_pairs([("job", "x")]).to_string(), r#"{job="x"}"#);
        assert_eq!(Labels::empty().to_string(), "{}");
    }

    #[test]
    fn stable_hash_separates_name_and_value_boundaries() {
        let first = Labels::from_pairs([("ab", "c")]);
        let second = Labels::from_pairs([("a", "bc")]);
        assert_ne!(first.stable_hash(), second.stable_hash());
        assert_eq!(first.stable_hash(), Labels::from_pairs([("ab", "c")]).stable_hash());
    }

    #[test]
    fn borrowed_labels_hash_and_compare_like_owned_ones() {
        let refs = [LabelRef { name: "__name__", value: "up" }, LabelRef { name: "job", value: "django" }];
        let owned = Labels::from_refs(&refs);
        assert_eq!(owned, Labels::from_pairs([("job", "django"), ("__name__", "up")]));
        assert_eq!(stable_hash_of_refs(&refs), owned.stable_hash());
        assert!(owned.eq_refs(&refs));
        assert!(!owned.eq_refs(&refs[..1]));
    }

    #[test]
    fn legacy_metric_names() {
        assert!(is_valid_legacy_metric_name("django_http_requests_total"));
        assert!(is_valid_legacy_metric_name("job:rate5m"));
        assert!(!is_valid_legacy_metric_name("1abc"));
        assert!(!is_valid_legacy_metric_name("http.server.duration"));
        assert!(!is_valid_legacy_metric_name(""));
    }
}
