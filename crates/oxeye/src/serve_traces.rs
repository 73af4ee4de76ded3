//! The traces side of `oxeye serve`: opens the trace store in `data_dir/traces` (WAL replay on a blocking
//! thread), makes it the server's trace reader, adds its families to `/metrics`, runs its maintenance
//! (age-based block cuts, retention) every [`MAINTENANCE_PERIOD`], and closes it on shutdown.
//!
//! The writer OTLP ingest pushes through is installed by `serve` (`state.set_trace_writer(...)`): the store
//! itself ([`TracesRuntime::writer`]) or a pipeline wrapping it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use oxeye_model::traces::TraceWriter;
use oxeye_server::{MetricsWriter, ServerState};
use oxeye_tracestore::{TraceStore, TraceStoreOptions, TraceStoreStats};

use crate::config::ServeSettings;

/// How often the trace store cuts old heads and applies retention.
pub const MAINTENANCE_PERIOD: Duration = Duration::from_secs(10);

/// The running trace store; [`TracesRuntime::close`] stops it.
pub struct TracesRuntime {
    store: Arc<TraceStore>,
    stop: tokio::sync::watch::Sender<bool>,
    maintenance: tokio::task::JoinHandle<()>,
}

/// The trace store's options from the validated settings: `traces.storage` in `data_dir/traces`.
pub fn trace_store_options(settings: &ServeSettings) -> TraceStoreOptions {
    settings.trace_storage.store_options(&settings.data_dir.join("traces"))
}

/// Opens the trace store, sets it as `state`'s trace reader, registers its `/metrics` families and starts
/// its maintenance loop.
///
/// # Errors
/// When the store cannot be opened (I/O, corrupt block or WAL).
pub async fn start(settings: &ServeSettings, state: &Arc<ServerState>) -> anyhow::Result<TracesRuntime> {
    let options = trace_store_options(settings);
    let store = tokio::task::spawn_blocking(move || TraceStore::open(options))
        .await
        .context("trace store start-up task failed")?
        .context("cannot open the trace store")?;
    state.set_trace_reader(store.clone());
    let metrics_source = store.clone();
    state.add_metrics_source(Box::new(move |writer| write_trace_store_metrics(writer, &metrics_source.stats())));
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let maintained = store.clone();
    let maintenance = tokio::spawn(async move {
        let mut interval = tokio::time::interval(MAINTENANCE_PERIOD);
        interval.tick().await;
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = stopped.wait_for(|stopped| *stopped) => return,
            }
            let worker = maintained.clone();
            match tokio::task::spawn_blocking(move || worker.maintain()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(%error, "trace store maintenance failed; retrying next round"),
                Err(error) => tracing::warn!(%error, "trace store maintenance task failed"),
            }
        }
    });
    Ok(TracesRuntime { store, stop, maintenance })
}

impl TracesRuntime {
    /// The store as the writer OTLP ingest pushes through (or that a pipeline wraps).
    pub fn writer(&self) -> Arc<dyn TraceWriter> {
        self.store.clone()
    }

    /// Stops maintenance and closes the WAL (the head is replayed on the next start).
    ///
    /// # Errors
    /// When the final WAL fsync fails.
    pub async fn close(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let _ = self.maintenance.await;
        let store = self.store;
        tokio::task::spawn_blocking(move || store.close())
            .await
            .context("trace store shutdown task failed")?
            .context("cannot close the trace store cleanly")
    }
}

/// Writes the trace store's families: head spans and traces, blocks with their bytes and spans, and spans
/// accepted, refused and dropped by tombstones.
pub fn write_trace_store_metrics(writer: &mut MetricsWriter, stats: &TraceStoreStats) {
    writer.single("oxeye_trace_head_spans", "Spans in the trace store's head.", "gauge", stats.head_spans as f64);
    writer.single("oxeye_trace_head_traces", "Traces in the trace store's head.", "gauge", stats.head_traces as f64);
    writer.single("oxeye_trace_blocks", "Trace blocks on disk.", "gauge", stats.blocks as f64);
    writer.single("oxeye_trace_block_bytes", "Bytes of trace block files.", "gauge", stats.block_bytes as f64);
    writer.single("oxeye_trace_block_spans", "Spans in trace blocks.", "gauge", stats.block_spans as f64);
    writer.single(
        "oxeye_trace_spans_accepted_total",
        "Spans stored since start.",
        "counter",
        stats.accepted_spans_total as f64,
    );
    writer.single(
        "oxeye_trace_spans_rejected_total",
        "Spans the trace store refused (zero ids, outside retention) since start.",
        "counter",
        stats.rejected_spans_total as f64,
    );
    writer.single(
        "oxeye_trace_dropped_traces_total",
        "Head traces removed by tombstones (tail sampling) since start.",
        "counter",
        stats.dropped_traces_total as f64,
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn store_lives_under_data_dir_traces_and_reports_its_families() {
        let settings = crate::config::ConfigFile::default().validate().unwrap();
        assert!(trace_store_options(&settings).dir.ends_with("traces"));
        let mut writer = MetricsWriter::default();
        write_trace_store_metrics(&mut writer, &TraceStoreStats { head_spans: 7, ..TraceStoreStats::default() });
        let text = writer.finish();
        assert!(text.contains("oxeye_trace_head_spans 7"), "{text}");
    }
}
