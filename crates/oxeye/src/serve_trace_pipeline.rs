//! The trace pipeline side of `oxeye serve`: builds [`TracePipeline`] (span redaction with the log path's
//! rules, span metrics into the metrics store, tail sampling) in front of the trace store's writer, runs its
//! background thread (decisions every second, span metrics flushes), adds its families to `/metrics`, and on
//! shutdown decides the held traces and flushes the span metrics a last time — before the trace store and
//! the TSDB close.
//!
//! Wiring (in the traces side of serve): `let pipeline = serve_trace_pipeline::start(options, store_writer,
//! tsdb, &state)?; state.set_trace_writer(pipeline.writer());` and `pipeline.close().await` after the server
//! drained, before the stores close.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use oxeye_model::storage::MetricsStorage;
use oxeye_model::traces::TraceWriter;
use oxeye_pipeline::traces::{SystemClock, TracePipeline, TracePipelineOptions, TracePipelineStats, TracePipelineTask};
use oxeye_server::{MetricsWriter, ServerState};

/// How often held traces are checked against their wait.
const TICK_PERIOD: Duration = Duration::from_secs(1);

/// The running pipeline; [`TracePipelineRuntime::close`] stops it.
pub struct TracePipelineRuntime {
    pipeline: Arc<TracePipeline>,
    task: TracePipelineTask,
}

/// Builds the pipeline in front of `store_writer`, with span metrics into `metrics_storage` and the redactor
/// the log ingest paths use (`state.log_redactor()`, so one set of rules and counters covers logs and spans),
/// starts its background thread and registers its `/metrics` families.
///
/// # Errors
/// When the options are invalid (config validation catches this earlier) or the thread cannot start.
pub fn start(
    options: TracePipelineOptions,
    store_writer: Arc<dyn TraceWriter>,
    metrics_storage: Arc<dyn MetricsStorage>,
    state: &Arc<ServerState>,
) -> anyhow::Result<TracePipelineRuntime> {
    let redactor = state.log_redactor().clone();
    let pipeline =
        TracePipeline::new(options, store_writer, Some(metrics_storage), Some(redactor), Arc::new(SystemClock))
            .context("invalid traces.sampling / traces.span_metrics options")?;
    let pipeline = Arc::new(pipeline);
    let task = pipeline.spawn_background(TICK_PERIOD).context("cannot start the trace pipeline thread")?;
    let metrics_source = Arc::clone(&pipeline);
    state.add_metrics_source(Box::new(move |writer| write_trace_pipeline_metrics(writer, &metrics_source.stats())));
    Ok(TracePipelineRuntime { pipeline, task })
}

impl TracePipelineRuntime {
    /// The writer OTLP trace ingest pushes through (install it with `ServerState::set_trace_writer`).
    pub fn writer(&self) -> Arc<dyn TraceWriter> {
        self.pipeline.clone()
    }

    /// Stops the background thread: decides every held trace, removes the dropped ones and flushes span
    /// metrics. Call after the server drained and before the trace store and the TSDB close.
    ///
    /// # Errors
    /// When the blocking task fails.
    pub async fn close(self) -> anyhow::Result<()> {
        let task = self.task;
        tokio::task::spawn_blocking(move || task.stop()).await.context("trace pipeline shutdown task failed")
    }
}

/// Writes the pipeline's families: traces decided by decision and reason, early decisions, held traces, spans,
/// late spans, removals, span metrics series and flushes, redacted span values.
pub fn write_trace_pipeline_metrics(writer: &mut MetricsWriter, stats: &TracePipelineStats) {
    let sampler = &stats.sampler;
    let traces = "oxeye_tail_sampling_traces_total";
    writer.family(traces, "Traces decided by the tail sampler, by decision and reason.", "counter");
    writer.sample(traces, &[("decision", "kept"), ("reason", "error")], sampler.kept_error as f64);
    writer.sample(traces, &[("decision", "kept"), ("reason", "slow")], sampler.kept_slow as f64);
    writer.sample(traces, &[("decision", "kept"), ("reason", "rate")], sampler.kept_rate as f64);
    writer.sample(traces, &[("decision", "dropped"), ("reason", "rate")], sampler.dropped as f64);
    writer.single(
        "oxeye_tail_sampling_early_decisions_total",
        "Traces decided before their wait ended because max_held_traces was reached.",
        "counter",
        sampler.decided_early as f64,
    );
    writer.single(
        "oxeye_tail_sampling_held_traces",
        "Traces held by the tail sampler, waiting for their decision.",
        "gauge",
        sampler.held_traces as f64,
    );
    writer.single(
        "oxeye_tail_sampling_spans_total",
        "Spans seen by the tail sampler.",
        "counter",
        sampler.spans as f64,
    );
    let late = "oxeye_tail_sampling_late_spans_total";
    writer.family(late, "Spans that arrived after their trace was decided, by that decision.", "counter");
    writer.sample(late, &[("decision", "kept")], sampler.late_spans_kept as f64);
    writer.sample(late, &[("decision", "dropped")], sampler.late_spans_dropped as f64);
    writer.single(
        "oxeye_tail_sampling_removed_traces_total",
        "Trace ids removed from the trace store after a drop decision.",
        "counter",
        stats.traces_removed as f64,
    );
    writer.single(
        "oxeye_tail_sampling_remove_errors_total",
        "Failed removals of dropped traces (retried).",
        "counter",
        stats.drop_errors as f64,
    );
    writer.single(
        "oxeye_span_metrics_series",
        "Span metrics combinations (service, span name, kind, status) tracked.",
        "gauge",
        stats.span_metrics_series as f64,
    );
    writer.single(
        "oxeye_span_metrics_refused_spans_total",
        "Spans not aggregated into span metrics because traces.span_metrics.max_series was reached.",
        "counter",
        stats.span_metrics_refused_spans as f64,
    );
    let flushes = "oxeye_span_metrics_flushes_total";
    writer.family(flushes, "Span metrics flushes into the metrics store, by result.", "counter");
    writer.sample(flushes, &[("result", "success")], stats.span_metrics_flushes as f64);
    writer.sample(flushes, &[("result", "error")], stats.span_metrics_flush_errors as f64);
    writer.single(
        "oxeye_span_metrics_samples_total",
        "Samples appended by span metrics flushes.",
        "counter",
        stats.span_metrics_samples as f64,
    );
    writer.single(
        "oxeye_span_metrics_exemplars_total",
        "Exemplars (traceID of kept traces) appended by span metrics flushes.",
        "counter",
        stats.span_metrics_exemplars as f64,
    );
    writer.single(
        "oxeye_span_redacted_values_total",
        "Span, event, link, scope and resource attribute values and status messages changed by redaction.",
        "counter",
        stats.redacted_values as f64,
    );
}
