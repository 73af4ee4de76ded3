//! The inverted label index: for each label name and value, the sorted set of series ids carrying it
//! (a roaring bitmap), and the matcher resolution that turns a selector into a set of series ids.
//!
//! The head keys postings by series reference; a block keys them by the series' position in its index.

use std::collections::HashMap;

use oxeye_model::{Labels, MatchOp, Matcher};
use roaring::RoaringBitmap;

use crate::head::MixBuildHasher;

/// Postings of one label set collection, in memory.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MemPostings {
    by_name: HashMap<String, HashMap<String, RoaringBitmap, MixBuildHasher>, MixBuildHasher>,
    all: RoaringBitmap,
}

impl MemPostings {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds series `id` under each of its labels.
    pub fn add(&mut self, id: u32, labels: &Labels) {
        for label in labels {
            self.add_pair(id, &label.name, &label.value);
        }
        self.all.insert(id);
    }

    /// Adds series given in ascending id order, each with its `(name, value)` pairs: ids above every id
    /// already present are appended at the end of their bitmaps, without searching (WAL replay indexes
    /// a whole head this way once its series exist).
    pub(crate) fn extend_ascending<'a, Pairs>(&mut self, series: impl IntoIterator<Item = (u32, Pairs)>)
    where
        Pairs: IntoIterator<Item = (&'a str, &'a str)>,
    {
        for (id, pairs) in series {
            for (name, value) in pairs {
                let values = match self.by_name.get_mut(name) {
                    Some(values) => values,
                    None => self.by_name.entry(name.to_owned()).or_default(),
                };
                match values.get_mut(value) {
                    Some(bitmap) => {
                        if bitmap.try_push(id).is_err() {
                            bitmap.insert(id);
                        }
                    }
                    None => {
                        values.insert(value.to_owned(), RoaringBitmap::from_iter([id]));
                    }
                }
            }
            if self.all.try_push(id).is_err() {
                self.all.insert(id);
            }
        }
    }

    fn add_pair(&mut self, id: u32, name: &str, value: &str) {
        let values = match self.by_name.get_mut(name) {
            Some(values) => values,
            None => self.by_name.entry(name.to_owned()).or_default(),
        };
        match values.get_mut(value) {
            Some(bitmap) => {
                bitmap.insert(id);
            }
            None => {
                let mut bitmap = RoaringBitmap::new();
                bitmap.insert(id);
                values.insert(value.to_owned(), bitmap);
            }
        }
    }

    /// Adds a ready bitmap for one label pair (used when loading a block index).
    pub(crate) fn insert_bitmap(&mut self, name: &str, value: &str, bitmap: RoaringBitmap) {
        self.all |= &bitmap;
        self.by_name.entry(name.to_owned()).or_default().insert(value.to_owned(), bitmap);
    }

    /// Number of label pairs (name and value) with postings.
    pub(crate) fn pair_count(&self) -> usize {
        self.by_name.values().map(HashMap::len).sum()
    }

    /// Stores every bitmap with run containers where they are smaller (roaring's `optimize`), for
    /// postings that no longer change: a block's series are sorted by labels, so each metric name and
    /// most label values cover runs of consecutive ids. At 100k series (the query benchmark's fleet) a
    /// block's postings take about a third of their array-and-bitmap size.
    pub(crate) fn run_compress(&mut self) {
        for values in self.by_name.values_mut() {
            for bitmap in values.values_mut() {
                bitmap.optimize();
            }
        }
        self.all.optimize();
    }

    /// Removes series `id` from the postings of `labels`, dropping emptied entries.
    pub fn remove(&mut self, id: u32, labels: &Labels) {
        for label in labels {
            let Some(values) = self.by_name.get_mut(label.name.as_str()) else { continue };
            if let Some(bitmap) = values.get_mut(label.value.as_str()) {
                bitmap.remove(id);
                if bitmap.is_empty() {
                    values.remove(label.value.as_str());
                }
            }
            if values.is_empty() {
                self.by_name.remove(label.name.as_str());
            }
        }
        self.all.remove(id);
    }

    /// Estimated heap bytes: label names and values as map keys, the maps' tables, and the bitmaps (their
    /// serialized size, which is close to what a roaring bitmap holds in memory).
    pub fn approximate_bytes(&self) -> u64 {
        // A hashbrown table holds one control byte per bucket beside each entry, and its capacity is
        // seven eighths of its buckets.
        let table_bytes = |capacity: usize, entry: usize| (capacity.div_ceil(7) * 8 * (entry + 1)) as u64;
        let mut total = table_bytes(
            self.by_name.capacity(),
            std::mem::size_of::<(String, HashMap<String, RoaringBitmap, MixBuildHasher>)>(),
        );
        for (name, values) in &self.by_name {
            total += name.capacity() as u64;
            total += table_bytes(values.capacity(), std::mem::size_of::<(String, RoaringBitmap)>());
            for (value, bitmap) in values {
                total += value.capacity() as u64 + bitmap.serialized_size() as u64;
            }
        }
        total + self.all.serialized_size() as u64
    }

    /// Every series id.
    pub fn all(&self) -> &RoaringBitmap {
        &self.all
    }

    /// The postings of one label pair.
    pub fn get(&self, name: &str, value: &str) -> Option<&RoaringBitmap> {
        self.by_name.get(name)?.get(value)
    }

    /// Label names, sorted.
    pub fn label_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.by_name.keys().cloned().collect();
        names.sort_unstable();
        names
    }

    /// Values of label `name`, sorted.
    pub fn label_values(&self, name: &str) -> Vec<String> {
        let mut values: Vec<String> =
            self.by_name.get(name).map(|values| values.keys().cloned().collect()).unwrap_or_default();
        values.sort_unstable();
        values
    }

    /// Union of the postings of the values of `name` for which `keep(value)` holds.
    fn union_where(&self, name: &str, keep: impl Fn(&str) -> bool) -> RoaringBitmap {
        let mut union = RoaringBitmap::new();
        if let Some(values) = self.by_name.get(name) {
            for (value, bitmap) in values {
                if keep(value) {
                    union |= bitmap;
                }
            }
        }
        union
    }

    /// The ids of the series matching every matcher (all series for none), with Prometheus semantics: a
    /// missing label matches as the empty string.
    ///
    /// Matchers that cannot match the empty string are intersected first (each is a union over the
    /// label's matching values); the others then subtract the series whose value they reject.
    pub fn select(&self, matchers: &[Matcher]) -> RoaringBitmap {
        let mut result: Option<RoaringBitmap> = None;
        for matcher in matchers.iter().filter(|matcher| !matcher.matches_empty()) {
            let matching = match matcher.op {
                MatchOp::Equal => self.get(&matcher.name, &matcher.value).cloned().unwrap_or_default(),
                _ => self.union_where(&matcher.name, |value| matcher.matches(value)),
            };
            result = Some(match result {
                Some(mut so_far) => {
                    so_far &= matching;
                    so_far
                }
                None => matching,
            });
            if result.as_ref().is_some_and(RoaringBitmap::is_empty) {
                return RoaringBitmap::new();
            }
        }
        let mut result = result.unwrap_or_else(|| self.all.clone());
        for matcher in matchers.iter().filter(|matcher| matcher.matches_empty()) {
            let rejected = self.union_where(&matcher.name, |value| !matcher.matches(value));
            result -= rejected;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascending_extension_equals_one_by_one_adds_even_out_of_order() {
        let pairs = |id: u32| {
            [("job", if id.is_multiple_of(2) { "even" } else { "odd" }), ("shard", if id < 5 { "low" } else { "high" })]
        };
        let mut one_by_one = MemPostings::new();
        let mut extended = MemPostings::new();
        for id in [3, 9, 1] {
            one_by_one.add(id, &Labels::from_pairs(pairs(id)));
            extended.add(id, &Labels::from_pairs(pairs(id)));
        }
        // 2 and 4 are below ids already present, so they cannot be appended at the end.
        for id in [2, 4, 10, 11] {
            one_by_one.add(id, &Labels::from_pairs(pairs(id)));
        }
        extended.extend_ascending([2, 4, 10, 11].map(|id| (id, pairs(id))));
        for (name, value) in [("job", "even"), ("job", "odd"), ("shard", "low"), ("shard", "high")] {
            assert_eq!(extended.get(name, value), one_by_one.get(name, value), "{name}={value}");
        }
        assert_eq!(extended.all(), one_by_one.all());
        assert_eq!(extended.label_values("job"), ["even", "odd"]);
    }

    fn index() -> MemPostings {
        let mut postings = MemPostings::new();
        let series = [
            [("__name__", "http_requests_total"), ("method", "GET"), ("status", "200")],
            [("__name__", "http_requests_total"), ("method", "POST"), ("status", "500")],
            [("__name__", "http_requests_total"), ("method", "GET"), ("status", "500")],
            [("__name__", "up"), ("method", ""), ("status", "")],
        ];
        for (id, pairs) in series.iter().enumerate() {
            postings.add(id as u32, &Labels::from_pairs(pairs.iter().copied()));
        }
        postings
    }

    fn ids(bitmap: RoaringBitmap) -> Vec<u32> {
        bitmap.iter().collect()
    }

    #[test]
    fn intersection_of_equal_and_regex_matchers() {
        let postings = index();
        let name = Matcher::equal("__name__", "http_requests_total");
        let get = Matcher::equal("method", "GET");
        let server_error = Matcher::new(MatchOp::Regex, "status", "5..").unwrap();
        assert_eq!(ids(postings.select(&[name.clone(), get.clone()])), [0, 2]);
        assert_eq!(ids(postings.select(&[name.clone(), get, server_error.clone()])), [2]);
        assert_eq!(ids(postings.select(&[server_error])), [1, 2]);
        assert_eq!(ids(postings.select(&[Matcher::equal("method", "PUT")])), Vec::<u32>::new());
        assert_eq!(ids(postings.select(&[])), [0, 1, 2, 3]);
    }

    #[test]
    fn negative_and_empty_matching_matchers() {
        let postings = index();
        let not_get = Matcher::new(MatchOp::NotEqual, "method", "GET").unwrap();
        // Series without `method` match `method!="GET"`.
        assert_eq!(ids(postings.select(&[not_get])), [1, 3]);
        assert_eq!(ids(postings.select(&[Matcher::equal("method", "")])), [3]);
        let has_status = Matcher::new(MatchOp::Regex, "status", ".+").unwrap();
        assert_eq!(ids(postings.select(&[has_status])), [0, 1, 2]);
        let not_5xx = Matcher::new(MatchOp::NotRegex, "status", "5..").unwrap();
        let name = Matcher::equal("__name__", "http_requests_total");
        assert_eq!(ids(postings.select(&[name, not_5xx])), [0]);
    }

    #[test]
    fn removal_drops_empty_entries() {
        let mut postings = index();
        let labels = Labels::from_pairs([("__name__", "up")]);
        postings.remove(3, &labels);
        assert_eq!(postings.label_values("__name__"), ["http_requests_total"]);
        assert!(!postings.all().contains(3));
        assert_eq!(postings.label_names(), ["__name__", "method", "status"]);
    }
}
