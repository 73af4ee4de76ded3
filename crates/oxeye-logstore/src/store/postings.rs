//! The inverted index of stream labels: label name -> label value -> ids of the streams carrying that
//! pair, so stream selection, label names and label values do not scan every stream.
//!
//! Stream ids are positions in the store's stream list; streams are never removed (retention empties
//! them), so ids only grow and every postings list is ascending.

use std::collections::HashMap;

use oxeye_model::{Labels, Matcher};

/// Label name -> value -> ascending stream ids.
#[derive(Debug, Default)]
pub(super) struct Postings {
    by_name: HashMap<String, HashMap<String, Vec<u32>>>,
}

/// Intersects two ascending id lists.
fn intersect(left: &[u32], right: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(left.len().min(right.len()));
    let (mut left_index, mut right_index) = (0, 0);
    while let (Some(left_id), Some(right_id)) = (left.get(left_index), right.get(right_index)) {
        match left_id.cmp(right_id) {
            std::cmp::Ordering::Less => left_index += 1,
            std::cmp::Ordering::Greater => right_index += 1,
            std::cmp::Ordering::Equal => {
                out.push(*left_id);
                left_index += 1;
                right_index += 1;
            }
        }
    }
    out
}

impl Postings {
    /// Indexes stream `id` (greater than every id added before) under each of its labels.
    pub(super) fn add(&mut self, labels: &Labels, id: u32) {
        for label in labels {
            let ids = self.by_name.entry(label.name.clone()).or_default().entry(label.value.clone()).or_default();
            debug_assert!(ids.last().is_none_or(|last| *last < id), "stream ids are added in ascending order");
            ids.push(id);
        }
    }

    /// Ids (ascending) of the streams that may match all `matchers`, out of `stream_count` streams: the
    /// intersection of the postings of every matcher that does not match the empty string. Matchers
    /// that match the empty string (`a!="x"`, `a=~".*"`) select streams without the label too, so they
    /// are left to the caller's check of each candidate's labels; with only such matchers every stream
    /// is a candidate.
    pub(super) fn candidates(&self, matchers: &[Matcher], stream_count: usize) -> Vec<u32> {
        let mut selected: Option<Vec<u32>> = None;
        for matcher in matchers.iter().filter(|matcher| !matcher.matches("")) {
            let Some(values) = self.by_name.get(&matcher.name) else { return Vec::new() };
            let mut ids: Vec<u32> = match matcher.op {
                oxeye_model::MatchOp::Equal => values.get(&matcher.value).cloned().unwrap_or_default(),
                _ => {
                    let mut union: Vec<u32> = values
                        .iter()
                        .filter(|(value, _)| matcher.matches(value))
                        .flat_map(|(_, ids)| ids.iter().copied())
                        .collect();
                    union.sort_unstable();
                    union
                }
            };
            if let Some(previous) = &selected {
                ids = intersect(previous, &ids);
            }
            if ids.is_empty() {
                return ids;
            }
            selected = Some(ids);
        }
        selected.unwrap_or_else(|| (0..u32::try_from(stream_count).unwrap_or(u32::MAX)).collect())
    }

    /// Every label name with its values and their stream ids.
    pub(super) fn names(&self) -> impl Iterator<Item = (&String, &HashMap<String, Vec<u32>>)> {
        self.by_name.iter()
    }

    /// The values of label `name` with their stream ids.
    pub(super) fn values(&self, name: &str) -> Option<&HashMap<String, Vec<u32>>> {
        self.by_name.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> Postings {
        let mut postings = Postings::default();
        postings.add(&Labels::from_pairs([("service_name", "boxoffice"), ("env", "prod")]), 0);
        postings.add(&Labels::from_pairs([("service_name", "worker"), ("env", "prod")]), 1);
        postings.add(&Labels::from_pairs([("service_name", "boxoffice"), ("env", "acceptance")]), 2);
        postings.add(&Labels::from_pairs([("job", "syslog")]), 3);
        postings
    }

    #[test]
    fn equal_matchers_intersect_postings() {
        let postings = index();
        let matchers = [Matcher::equal("service_name", "boxoffice"), Matcher::equal("env", "prod")];
        assert_eq!(postings.candidates(&matchers, 4), [0]);
        assert_eq!(postings.candidates(&[Matcher::equal("service_name", "boxoffice")], 4), [0, 2]);
        assert!(postings.candidates(&[Matcher::equal("service_name", "nothing")], 4).is_empty());
        assert!(postings.candidates(&[Matcher::equal("absent", "x")], 4).is_empty());
    }

    #[test]
    fn regex_matchers_union_values_and_empty_matching_ones_leave_every_stream() {
        let postings = index();
        let regex = Matcher::new(oxeye_model::MatchOp::Regex, "service_name", "box.*|work.*").unwrap();
        assert_eq!(postings.candidates(&[regex], 4), [0, 1, 2]);
        let not_equal = Matcher::new(oxeye_model::MatchOp::NotEqual, "env", "prod").unwrap();
        assert_eq!(postings.candidates(&[not_equal], 4), [0, 1, 2, 3]);
        assert_eq!(postings.candidates(&[], 2), [0, 1]);
    }

    #[test]
    fn intersection_of_ascending_lists() {
        assert_eq!(intersect(&[1, 3, 5, 7], &[2, 3, 7, 9]), [3, 7]);
        assert!(intersect(&[], &[1]).is_empty());
    }
}
