//! Query statistics, as Prometheus reports them with `stats=all` (`util/stats` in Prometheus 2.42:
//! `data.stats.timings` and `data.stats.samples`).

use std::time::Duration;

/// Where a query spent its time and how many samples it touched.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryStats {
    /// Wall time of the whole evaluation: parsing excluded, selects, evaluation and result sorting
    /// included (Prometheus `evalTotalTime`).
    pub eval_total: Duration,
    /// Time spent reading series from the store (Prometheus `queryPreparationTime`).
    pub query_preparation: Duration,
    /// Evaluation time minus the store reads (Prometheus `innerEvalTime`).
    pub inner_eval: Duration,
    /// Time spent sorting the result (Prometheus `resultSortTime`).
    pub result_sort: Duration,
    /// Samples read for the answer, counted as Prometheus does: one per series and step for an instant
    /// selector that found a sample, and every sample inside the window at each step for a range
    /// selector or subquery (Prometheus `totalQueryableSamples`).
    pub total_queryable_samples: u64,
    /// The most samples the query held in memory at once (Prometheus `peakSamples`).
    pub peak_samples: u64,
    /// `total_queryable_samples` split by evaluation step: `(timestamp_ms, samples)` for every step of
    /// the query, oldest first (Prometheus `totalQueryableSamplesPerStep`, reported with `stats=all`).
    pub total_queryable_samples_per_step: Vec<(i64, u64)>,
}

/// Counters kept by the evaluator while a query runs.
#[derive(Debug, Default)]
pub(crate) struct SampleCounters {
    /// Samples per step of the query's own grid.
    pub per_step: Vec<u64>,
    /// Samples counted at nested grids (subqueries) are not counted: Prometheus counts a subquery's
    /// output inside each window instead. Depth of nested subquery evaluation.
    pub nesting: usize,
    pub peak: u64,
    pub select_time: Duration,
    /// The query step of step 0 of the grid being evaluated (range queries run in slices).
    pub step_offset: usize,
}

impl SampleCounters {
    pub fn new(steps: usize) -> Self {
        SampleCounters { per_step: vec![0; steps], ..SampleCounters::default() }
    }

    /// Adds `count` samples at `step` of the query grid (ignored inside subqueries).
    pub fn add(&mut self, step: usize, count: u64) {
        if self.nesting > 0 {
            return;
        }
        if let Some(slot) = self.per_step.get_mut(step + self.step_offset) {
            *slot += count;
        }
    }

    pub fn observe_held(&mut self, held: usize) {
        self.peak = self.peak.max(held as u64);
    }
}
