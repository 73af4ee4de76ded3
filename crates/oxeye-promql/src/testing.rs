//! A small in-memory [`Querier`] for tests and as a reference store for the conformance runner.
//!
//! It keeps every series in a sorted map and answers `select` by scanning it: correct and simple, not
//! fast. The real store is `oxeye-tsdb`.

use std::collections::BTreeMap;

use oxeye_model::storage::{Querier, Series, StorageError};
use oxeye_model::{Labels, Matcher, Sample};

/// An in-memory series store: labels to samples (ascending timestamps, stale markers kept).
#[derive(Debug, Default, Clone)]
pub struct MemoryQuerier {
    series: BTreeMap<Labels, Vec<Sample>>,
}

impl MemoryQuerier {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one sample to the series `labels`. A sample at an existing timestamp replaces the old one;
    /// samples may come in any order.
    pub fn add_sample(&mut self, labels: &Labels, sample: Sample) {
        if !self.series.contains_key(labels) {
            self.series.insert(labels.clone(), Vec::new());
        }
        let Some(samples) = self.series.get_mut(labels) else { return };
        if samples.last().is_none_or(|last| last.timestamp_ms < sample.timestamp_ms) {
            samples.push(sample);
            return;
        }
        match samples.binary_search_by(|existing| existing.timestamp_ms.cmp(&sample.timestamp_ms)) {
            Ok(index) => samples[index] = sample,
            Err(index) => samples.insert(index, sample),
        }
    }

    /// Forgets every series.
    pub fn clear(&mut self) {
        self.series.clear();
    }

    /// Number of series held.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    fn matching<'a>(&'a self, matchers: &'a [Matcher]) -> impl Iterator<Item = (&'a Labels, &'a Vec<Sample>)> + 'a {
        self.series.iter().filter(move |(labels, _)| {
            matchers.iter().all(|matcher| matcher.matches(labels.get(&matcher.name).unwrap_or("")))
        })
    }

    fn window(samples: &[Sample], mint_ms: i64, maxt_ms: i64) -> &[Sample] {
        let start = samples.partition_point(|sample| sample.timestamp_ms < mint_ms);
        let end = samples.partition_point(|sample| sample.timestamp_ms <= maxt_ms);
        if start >= end { &[] } else { &samples[start..end] }
    }
}

impl Querier for MemoryQuerier {
    fn select(&self, mint_ms: i64, maxt_ms: i64, matchers: &[Matcher]) -> Result<Vec<Series>, StorageError> {
        Ok(self
            .matching(matchers)
            .filter_map(|(labels, samples)| {
                let window = Self::window(samples, mint_ms, maxt_ms);
                (!window.is_empty()).then(|| Series { labels: labels.clone(), samples: window.to_vec() })
            })
            .collect())
    }

    /// Leaves out the labels `keep_label` rejects, as a store reading one block does, so the engine's
    /// tests and the conformance scripts cover callers of projected series.
    fn select_each_projected(
        &self,
        mint_ms: i64,
        maxt_ms: i64,
        matchers: &[Matcher],
        keep_label: &dyn Fn(&str) -> bool,
        visit: &mut dyn FnMut(Series) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        for series in self.select(mint_ms, maxt_ms, matchers)? {
            let kept = series.labels.iter().filter(|label| keep_label(&label.name)).cloned().collect();
            visit(Series { labels: Labels::from_sorted(kept), samples: series.samples })?;
        }
        Ok(())
    }

    fn series(&self, mint_ms: i64, maxt_ms: i64, matchers: &[Matcher]) -> Result<Vec<Labels>, StorageError> {
        Ok(self
            .matching(matchers)
            .filter(|(_, samples)| !Self::window(samples, mint_ms, maxt_ms).is_empty())
            .map(|(labels, _)| labels.clone())
            .collect())
    }

    fn label_names(&self, mint_ms: i64, maxt_ms: i64, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        let mut names: Vec<String> = self
            .series(mint_ms, maxt_ms, matchers)?
            .iter()
            .flat_map(|labels| labels.iter().map(|label| label.name.clone()).collect::<Vec<_>>())
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn label_values(
        &self,
        mint_ms: i64,
        maxt_ms: i64,
        name: &str,
        matchers: &[Matcher],
    ) -> Result<Vec<String>, StorageError> {
        let mut values: Vec<String> = self
            .series(mint_ms, maxt_ms, matchers)?
            .iter()
            .filter_map(|labels| labels.get(name).map(str::to_string))
            .collect();
        values.sort();
        values.dedup();
        Ok(values)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn select_filters_by_matchers_and_window() {
        let mut store = MemoryQuerier::new();
        let up_a = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        let up_b = Labels::from_pairs([("__name__", "up"), ("job", "b")]);
        for timestamp_ms in [0, 10, 20] {
            store.add_sample(&up_a, Sample { timestamp_ms, value: 1.0 });
        }
        store.add_sample(&up_b, Sample { timestamp_ms: 30, value: 2.0 });
        let selected = store.select(5, 20, &[Matcher::equal("__name__", "up")]).unwrap();
        assert_eq!(selected.len(), 1);
        assert_eq!(selected[0].labels, up_a);
        assert_eq!(selected[0].samples.len(), 2);
        assert_eq!(store.label_values(0, 100, "job", &[]).unwrap(), ["a", "b"]);
    }
}
