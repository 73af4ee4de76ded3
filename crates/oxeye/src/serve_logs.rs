//! The logs side of `oxeye serve`: opens the log store with the `logs:` settings, installs the redaction
//! rules every log ingest path applies before the WAL, adds the log store's families to `/metrics`, and
//! closes it all on shutdown.

use std::sync::Arc;

use anyhow::Context;
use oxeye_logstore::{LogStore, LogStoreOptions, LogStoreStats};
use oxeye_server::{MetricsWriter, ServerState};

use crate::config::ServeSettings;

/// What the logs side runs; [`LogsRuntime::close`] stops it.
pub struct LogsRuntime {
    store: Arc<LogStore>,
}

/// The log store's options from the validated settings: `data_dir/logs`, retention, line limit and policy,
/// unordered-write window.
pub fn log_store_options(settings: &ServeSettings) -> LogStoreOptions {
    let mut options = LogStoreOptions::new(settings.data_dir.join("logs"));
    options.retention_ms = settings.logs.retention_ms;
    options.max_line_bytes = settings.logs.max_line_bytes;
    options.line_too_long = settings.logs.line_too_long;
    options.unordered_window_ms = settings.logs.unordered_window_ms;
    options
}

/// Opens the log store (WAL replay on a blocking thread), attaches it and the redactor to `state`, and
/// registers its `/metrics` families.
///
/// # Errors
/// When the redaction rules do not compile (validation catches this earlier) or the store cannot be opened.
pub async fn start(settings: &ServeSettings, state: &Arc<ServerState>) -> anyhow::Result<LogsRuntime> {
    let redactor =
        oxeye_pipeline::Redactor::new(settings.logs.redaction.clone()).context("invalid logs.redaction rules")?;
    state.set_log_redactor(redactor);
    let options = log_store_options(settings);
    let store = tokio::task::spawn_blocking(move || LogStore::open(options))
        .await
        .context("log store start-up task failed")?
        .context("cannot open the log store")?;
    state.set_log_storage(store.clone());
    let metrics_source = store.clone();
    state.add_metrics_source(Box::new(move |writer| {
        write_log_store_metrics(writer, &metrics_source.stats(), &metrics_source.wal_stats())
    }));
    Ok(LogsRuntime { store })
}

impl LogsRuntime {
    /// Cuts and writes every head and closes the WAL.
    ///
    /// # Errors
    /// When the final flush fails.
    pub async fn close(self) -> anyhow::Result<()> {
        let store = self.store;
        tokio::task::spawn_blocking(move || store.close())
            .await
            .context("log store shutdown task failed")?
            .context("cannot close the log store cleanly")
    }
}

/// Writes the log store's families: streams, chunks, bytes, accepted and discarded lines by reason, and the
/// log WAL's group commits with their fsync latency.
pub fn write_log_store_metrics(writer: &mut MetricsWriter, stats: &LogStoreStats, wal: &oxeye_wal::WalStats) {
    writer.single("oxeye_log_streams", "Log streams known to the log store.", "gauge", stats.streams as f64);
    writer.single("oxeye_log_chunks", "Cut log chunks, in memory or in chunk files.", "gauge", stats.chunks as f64);
    writer.single(
        "oxeye_log_head_entries",
        "Log entries in stream heads, not yet cut.",
        "gauge",
        stats.head_entries as f64,
    );
    writer.single(
        "oxeye_log_head_bytes",
        "Bytes of log lines in stream heads, not yet cut.",
        "gauge",
        stats.head_line_bytes as f64,
    );
    writer.single("oxeye_log_chunk_files", "Log chunk files on disk.", "gauge", stats.chunk_files as f64);
    writer.single(
        "oxeye_log_chunk_file_bytes",
        "Bytes of log chunk files on disk.",
        "gauge",
        stats.chunk_file_bytes as f64,
    );
    writer.single(
        "oxeye_log_lines_accepted_total",
        "Log entries stored since start.",
        "counter",
        stats.entries_accepted_total as f64,
    );
    let discarded = "oxeye_log_lines_discarded_total";
    writer.family(discarded, "Log entries refused or dropped, by reason.", "counter");
    for (reason, count) in [
        ("too_old", stats.rejected_too_old_total),
        ("line_too_long", stats.rejected_too_long_total),
        ("invalid_labels", stats.rejected_invalid_total),
        ("duplicate", stats.duplicates_total),
    ] {
        writer.sample(discarded, &[("reason", reason)], count as f64);
    }
    writer.single(
        "oxeye_log_lines_truncated_total",
        "Log entries stored with their line cut to logs.max_line_size.",
        "counter",
        stats.truncated_total as f64,
    );
    writer.single(
        "oxeye_log_chunks_read_total",
        "Log chunks decompressed by queries.",
        "counter",
        stats.chunks_read_total as f64,
    );
    writer.single(
        "oxeye_log_chunks_skipped_total",
        "Log chunks skipped by queries thanks to their bloom filter.",
        "counter",
        stats.chunks_skipped_total as f64,
    );
    writer.single(
        "oxeye_log_wal_records_total",
        "Records appended to the log WAL.",
        "counter",
        wal.records_total as f64,
    );
    writer.single(
        "oxeye_log_wal_bytes_written_total",
        "Bytes written to log WAL segments.",
        "counter",
        wal.bytes_written_total as f64,
    );
    writer.single(
        "oxeye_log_wal_fsyncs_total",
        "Log WAL group commits (one write and fsync each).",
        "counter",
        wal.fsyncs_total as f64,
    );
    let name = "oxeye_log_wal_fsync_duration_seconds";
    writer.family(name, "Log WAL fsync latency in seconds.", "histogram");
    let snapshot = oxeye_server::self_metrics::HistogramSnapshot {
        buckets: oxeye_wal::FSYNC_LATENCY_BUCKETS_SECONDS
            .iter()
            .copied()
            .zip(wal.fsync_latency_cumulative_counts.iter().copied())
            .collect(),
        sum: wal.fsync_seconds_total,
        count: wal.fsyncs_total,
    };
    writer.histogram(name, &[], &snapshot);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discarded_lines_are_labelled_by_reason() {
        let stats = LogStoreStats { rejected_too_old_total: 3, rejected_too_long_total: 2, ..LogStoreStats::default() };
        let mut writer = MetricsWriter::default();
        write_log_store_metrics(&mut writer, &stats, &oxeye_wal::WalStats::default());
        let text = writer.finish();
        assert!(text.contains("oxeye_log_lines_discarded_total{reason=\"too_old\"} 3"), "{text}");
        assert!(text.contains("oxeye_log_lines_discarded_total{reason=\"line_too_long\"} 2"), "{text}");
        assert!(text.contains("# TYPE oxeye_log_wal_fsync_duration_seconds histogram"), "{text}");
    }

    #[test]
    fn store_options_follow_the_logs_section() {
        let mut config = crate::config::ConfigFile::default();
        config.logs.retention = "7d".into();
        config.logs.max_line_size_policy = "truncate".into();
        config.logs.unordered_writes_window = "5m".into();
        let settings = config.validate().unwrap();
        let options = log_store_options(&settings);
        assert_eq!(options.retention_ms, 7 * 86_400_000);
        assert_eq!(options.line_too_long, oxeye_logstore::LineTooLongPolicy::Truncate);
        assert_eq!(options.unordered_window_ms, 300_000);
        assert!(options.dir.ends_with("logs"));
    }
}
