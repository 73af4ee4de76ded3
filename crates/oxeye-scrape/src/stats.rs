//! Counters about the scraper itself, for oxeye's own `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Totals since the manager started, read with [`crate::ScrapeManager::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScrapeStats {
    /// Scrapes attempted (successful or not).
    pub scrapes_total: u64,
    /// Scrapes that failed (HTTP error, timeout, parse error, sample limit, storage failure).
    pub scrapes_failed_total: u64,
    /// Sample lines parsed from successful scrape bodies.
    pub samples_scraped_total: u64,
    /// Samples (scraped, report and stale markers) the storage accepted and committed.
    pub samples_appended_total: u64,
    /// Samples skipped because they were older than their series' newest sample.
    pub samples_out_of_order_total: u64,
    /// Samples skipped because they were outside the storage's accepted time window.
    pub samples_out_of_bounds_total: u64,
    /// Samples skipped because their series already had another value at that timestamp.
    pub samples_duplicate_timestamp_total: u64,
    /// Samples skipped for other reasons (invalid labels, series limit).
    pub samples_rejected_total: u64,
    /// Exemplars appended.
    pub exemplars_appended_total: u64,
    /// Exemplars dropped (labels over 128 characters, or refused by the storage).
    pub exemplars_dropped_total: u64,
    /// Stale markers written (series that disappeared, failed and removed targets).
    pub stale_markers_total: u64,
}

/// The shared, lock-free counters behind [`ScrapeStats`].
#[derive(Debug, Default)]
pub(crate) struct StatsCounters {
    pub scrapes_total: AtomicU64,
    pub scrapes_failed_total: AtomicU64,
    pub samples_scraped_total: AtomicU64,
    pub samples_appended_total: AtomicU64,
    pub samples_out_of_order_total: AtomicU64,
    pub samples_out_of_bounds_total: AtomicU64,
    pub samples_duplicate_timestamp_total: AtomicU64,
    pub samples_rejected_total: AtomicU64,
    pub exemplars_appended_total: AtomicU64,
    pub exemplars_dropped_total: AtomicU64,
    pub stale_markers_total: AtomicU64,
}

impl StatsCounters {
    pub fn add(counter: &AtomicU64, amount: u64) {
        if amount > 0 {
            counter.fetch_add(amount, Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self) -> ScrapeStats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ScrapeStats {
            scrapes_total: read(&self.scrapes_total),
            scrapes_failed_total: read(&self.scrapes_failed_total),
            samples_scraped_total: read(&self.samples_scraped_total),
            samples_appended_total: read(&self.samples_appended_total),
            samples_out_of_order_total: read(&self.samples_out_of_order_total),
            samples_out_of_bounds_total: read(&self.samples_out_of_bounds_total),
            samples_duplicate_timestamp_total: read(&self.samples_duplicate_timestamp_total),
            samples_rejected_total: read(&self.samples_rejected_total),
            exemplars_appended_total: read(&self.exemplars_appended_total),
            exemplars_dropped_total: read(&self.exemplars_dropped_total),
            stale_markers_total: read(&self.stale_markers_total),
        }
    }
}
