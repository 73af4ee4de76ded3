//! In-memory exemplar storage: a bounded ring shared by all series, oldest evicted first, as in
//! Prometheus' circular exemplar storage. Exemplars are also written to the WAL, so they survive restarts.

use std::collections::{HashMap, VecDeque};

use oxeye_model::Exemplar;

use crate::head::MixBuildHasher;

/// Outcome of checking an exemplar against the series' newest one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExemplarCheck {
    Accept,
    /// Same timestamp as the newest exemplar of the series: silently dropped, as Prometheus does.
    Duplicate,
    OutOfOrder {
        newest_timestamp_ms: i64,
    },
}

#[derive(Debug)]
pub(crate) struct ExemplarStorage {
    capacity: usize,
    ring: VecDeque<(u32, Exemplar)>,
    newest_by_series: HashMap<u32, i64, MixBuildHasher>,
}

impl ExemplarStorage {
    pub(crate) fn new(capacity: usize) -> Self {
        ExemplarStorage { capacity, ring: VecDeque::new(), newest_by_series: HashMap::default() }
    }

    pub(crate) fn check(&self, series_ref: u32, exemplar: &Exemplar) -> ExemplarCheck {
        match self.newest_by_series.get(&series_ref) {
            Some(newest) if exemplar.timestamp_ms < *newest => {
                ExemplarCheck::OutOfOrder { newest_timestamp_ms: *newest }
            }
            Some(newest) if exemplar.timestamp_ms == *newest => ExemplarCheck::Duplicate,
            _ => ExemplarCheck::Accept,
        }
    }

    pub(crate) fn add(&mut self, series_ref: u32, exemplar: Exemplar) {
        if self.capacity == 0 || self.check(series_ref, &exemplar) != ExemplarCheck::Accept {
            return;
        }
        if self.ring.len() >= self.capacity
            && let Some((evicted_ref, evicted)) = self.ring.pop_front()
            && self.newest_by_series.get(&evicted_ref) == Some(&evicted.timestamp_ms)
        {
            self.newest_by_series.remove(&evicted_ref);
        }
        self.newest_by_series.insert(series_ref, exemplar.timestamp_ms);
        self.ring.push_back((series_ref, exemplar));
    }

    pub(crate) fn len(&self) -> usize {
        self.ring.len()
    }

    /// Every stored exemplar, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &(u32, Exemplar)> {
        self.ring.iter()
    }
}

#[cfg(test)]
mod tests {
    use oxeye_model::Labels;

    use super::*;

    fn exemplar(timestamp_ms: i64) -> Exemplar {
        Exemplar { labels: Labels::from_pairs([("trace_id", "t")]), value: 1.0, timestamp_ms }
    }

    #[test]
    fn ring_evicts_oldest_and_checks_order() {
        let mut storage = ExemplarStorage::new(2);
        storage.add(1, exemplar(10));
        assert_eq!(storage.check(1, &exemplar(5)), ExemplarCheck::OutOfOrder { newest_timestamp_ms: 10 });
        assert_eq!(storage.check(1, &exemplar(10)), ExemplarCheck::Duplicate);
        storage.add(2, exemplar(11));
        storage.add(1, exemplar(12));
        assert_eq!(storage.len(), 2);
        let kept: Vec<i64> = storage.iter().map(|(_, exemplar)| exemplar.timestamp_ms).collect();
        assert_eq!(kept, [11, 12]);
    }
}
