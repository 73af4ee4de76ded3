//! The logs side of `oxeye serve`: opens the log store with the `logs:` settings, installs the redaction
//! rules every log ingest path applies before the WAL, adds the log store's families to `/metrics`, runs
//! the file tailer (`logs.files`), and closes it all on shutdown.
//!
//! The tailer runs on its own thread: poll the files, redact, push to the log store (which returns after
//! the WAL fsync), and only then commit the tail positions, so a position on disk never runs ahead of what
//! is stored. On shutdown the thread finishes its round, then the store is closed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use oxeye_ingest::tail::{TailFormat, TailSource, Tailer, TailerOptions};
use oxeye_logstore::{LogStore, LogStoreOptions, LogStoreStats};
use oxeye_server::{MetricsWriter, ServerState};

use crate::config::ServeSettings;
use crate::config_logs::TailedFileFormat;

/// How long the tailer sleeps after a poll that found nothing new.
const TAIL_IDLE_SLEEP: Duration = Duration::from_millis(250);

/// What the logs side runs; [`LogsRuntime::close`] stops it.
pub struct LogsRuntime {
    store: Arc<LogStore>,
    tailer: Option<TailerThread>,
}

struct TailerThread {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<()>,
}

/// Counters of the tailer, for `/metrics`.
#[derive(Debug, Default)]
struct TailCounters {
    lines_total: AtomicU64,
    bytes_total: AtomicU64,
    push_failures_total: AtomicU64,
    files: AtomicU64,
}

/// The log store's options from the validated settings: `data_dir/logs`, retention, line limit and policy,
/// unordered-write window.
pub fn log_store_options(settings: &ServeSettings) -> LogStoreOptions {
    let mut options = LogStoreOptions::new(settings.data_dir.join("logs"));
    options.retention_ms = settings.logs.retention_ms;
    options.max_line_bytes = settings.logs.max_line_bytes;
    options.line_too_long = settings.logs.line_too_long;
    options.unordered_window_ms = settings.logs.unordered_window_ms;
    // `| json`'s or `| logfmt`'s labels of the default names in field columns: `sum by (level)` of JSON or
    // logfmt logs reads no line.
    options.line_fields = Some(Arc::new(oxeye_logql::field_columns::LineFieldColumns::default()));
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
    let tailer = if settings.logs.files.is_empty() { None } else { Some(start_tailer(settings, state, &store)?) };
    Ok(LogsRuntime { store, tailer })
}

fn tail_sources(settings: &ServeSettings) -> Vec<TailSource> {
    settings
        .logs
        .files
        .iter()
        .map(|files| TailSource {
            globs: files.paths.clone(),
            labels: files.labels.iter().map(|(name, value)| (name.clone(), value.clone())).collect(),
            json_labels: files.json_labels.clone(),
            format: match files.format {
                TailedFileFormat::Json => TailFormat::Json,
                TailedFileFormat::Text => TailFormat::Text,
            },
        })
        .collect()
}

fn start_tailer(
    settings: &ServeSettings,
    state: &Arc<ServerState>,
    store: &Arc<LogStore>,
) -> anyhow::Result<TailerThread> {
    let positions_path = store.options().dir.join("tail-positions.json");
    let mut tailer =
        Tailer::new(tail_sources(settings), TailerOptions::new(positions_path)).context("invalid logs.files")?;
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(TailCounters::default());
    let metrics_counters = counters.clone();
    state.add_metrics_source(Box::new(move |writer| write_tail_metrics(writer, &metrics_counters)));
    let thread_stop = stop.clone();
    let thread_state = state.clone();
    let thread_store = store.clone();
    let handle = std::thread::Builder::new()
        .name("oxeye-log-tailer".into())
        .spawn(move || {
            loop {
                let stopping = thread_stop.load(Ordering::Acquire);
                let read_everything = tail_round(&mut tailer, &thread_state, &thread_store, &counters);
                if stopping {
                    return;
                }
                if read_everything {
                    std::thread::sleep(TAIL_IDLE_SLEEP);
                }
            }
        })
        .context("cannot start the log tailer thread")?;
    Ok(TailerThread { stop, handle })
}

/// One poll, redact, push, commit round; returns whether the files were read to their end (nothing left
/// for an immediate next round).
fn tail_round(tailer: &mut Tailer, state: &ServerState, store: &LogStore, counters: &TailCounters) -> bool {
    let mut batch = match tailer.poll() {
        Ok(batch) => batch,
        Err(error) => {
            tracing::warn!(%error, "log tailing failed; retrying");
            return true;
        }
    };
    counters.files.store(tailer.positions().len() as u64, Ordering::Relaxed);
    if batch.is_empty() {
        // Finished files are dropped and positions of vanished files forgotten only at a commit.
        if let Err(error) = tailer.commit() {
            tracing::warn!(%error, "cannot write the tail positions; retrying");
        }
        return true;
    }
    let full_batch = batch.bytes as usize >= oxeye_ingest::tail::DEFAULT_MAX_BATCH_BYTES / 2;
    state.log_redactor().redact_log_streams(&mut batch.streams);
    match store.push_streams(std::mem::take(&mut batch.streams)) {
        Ok(summary) => {
            counters.lines_total.fetch_add(batch.lines, Ordering::Relaxed);
            counters.bytes_total.fetch_add(batch.bytes, Ordering::Relaxed);
            if summary.rejected() > 0 {
                tracing::warn!(
                    rejected = summary.rejected(),
                    first_error = summary.first_error.as_deref().unwrap_or(""),
                    "tailed log entries refused"
                );
            }
            if let Err(error) = tailer.commit() {
                tracing::warn!(%error, "cannot write the tail positions; retrying");
            }
            !full_batch
        }
        Err(error) => {
            counters.push_failures_total.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%error, "cannot store tailed log lines; reading them again");
            tailer.rollback();
            true
        }
    }
}

fn write_tail_metrics(writer: &mut MetricsWriter, counters: &TailCounters) {
    writer.single(
        "oxeye_log_tail_files",
        "Log files being tailed.",
        "gauge",
        counters.files.load(Ordering::Relaxed) as f64,
    );
    writer.single(
        "oxeye_log_tail_lines_total",
        "Lines read from tailed log files and stored.",
        "counter",
        counters.lines_total.load(Ordering::Relaxed) as f64,
    );
    writer.single(
        "oxeye_log_tail_bytes_total",
        "Bytes read from tailed log files and stored, newlines included.",
        "counter",
        counters.bytes_total.load(Ordering::Relaxed) as f64,
    );
    writer.single(
        "oxeye_log_tail_push_failures_total",
        "Tailed batches the log store refused as a whole (read again).",
        "counter",
        counters.push_failures_total.load(Ordering::Relaxed) as f64,
    );
}

impl LogsRuntime {
    /// Cuts and writes every head and closes the WAL.
    ///
    /// # Errors
    /// When the final flush fails.
    pub async fn close(self) -> anyhow::Result<()> {
        if let Some(tailer) = self.tailer {
            tailer.stop.store(true, Ordering::Release);
            let joined = tokio::task::spawn_blocking(move || tailer.handle.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::warn!("the log tailer thread panicked");
            }
        }
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
#[allow(clippy::unwrap_used, clippy::field_reassign_with_default)]
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
