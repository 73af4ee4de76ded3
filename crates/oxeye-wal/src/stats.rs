//! Self-monitoring counters of a WAL.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (inclusive, in seconds) of the fsync latency buckets; a last, implicit `+Inf` bucket
/// follows.
pub const FSYNC_LATENCY_BUCKETS_SECONDS: [f64; 10] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

/// A snapshot of a WAL's counters, for `/metrics`. Counters only grow while the process runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WalStats {
    /// Records appended (each payload given to `append`/`append_batch`).
    pub records_total: u64,
    /// Bytes written to segment files, frames and headers included.
    pub bytes_written_total: u64,
    /// Group commits: one write + fsync each.
    pub fsyncs_total: u64,
    /// Total time spent in fsync, in seconds.
    pub fsync_seconds_total: f64,
    /// Cumulative counts per bucket of [`FSYNC_LATENCY_BUCKETS_SECONDS`] plus a final `+Inf` bucket
    /// (Prometheus histogram convention: each count includes the faster buckets).
    pub fsync_latency_cumulative_counts: Vec<u64>,
    /// Segment files created.
    pub segments_created_total: u64,
    /// Index of the segment being written.
    pub current_segment: u64,
}

#[derive(Debug, Default)]
pub(crate) struct StatsCounters {
    pub(crate) records_total: AtomicU64,
    pub(crate) bytes_written_total: AtomicU64,
    pub(crate) fsyncs_total: AtomicU64,
    pub(crate) fsync_nanos_total: AtomicU64,
    pub(crate) fsync_buckets: [AtomicU64; FSYNC_LATENCY_BUCKETS_SECONDS.len() + 1],
    pub(crate) segments_created_total: AtomicU64,
    pub(crate) current_segment: AtomicU64,
}

impl StatsCounters {
    pub(crate) fn observe_fsync(&self, elapsed: Duration) {
        self.fsyncs_total.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.fsync_nanos_total.fetch_add(nanos, Ordering::Relaxed);
        let seconds = elapsed.as_secs_f64();
        let bucket = FSYNC_LATENCY_BUCKETS_SECONDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(FSYNC_LATENCY_BUCKETS_SECONDS.len());
        if let Some(counter) = self.fsync_buckets.get(bucket) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn snapshot(&self) -> WalStats {
        let mut cumulative = 0;
        let fsync_latency_cumulative_counts = self
            .fsync_buckets
            .iter()
            .map(|counter| {
                cumulative += counter.load(Ordering::Relaxed);
                cumulative
            })
            .collect();
        WalStats {
            records_total: self.records_total.load(Ordering::Relaxed),
            bytes_written_total: self.bytes_written_total.load(Ordering::Relaxed),
            fsyncs_total: self.fsyncs_total.load(Ordering::Relaxed),
            fsync_seconds_total: self.fsync_nanos_total.load(Ordering::Relaxed) as f64 / 1e9,
            fsync_latency_cumulative_counts,
            segments_created_total: self.segments_created_total.load(Ordering::Relaxed),
            current_segment: self.current_segment.load(Ordering::Relaxed),
        }
    }
}
