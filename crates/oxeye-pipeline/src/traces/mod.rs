//! The trace pipeline between OTLP decoding and the trace store: span redaction, span metrics and tail
//! sampling, as one [`TraceWriter`] ([`TracePipeline`]) that wraps the store's writer.
//!
//! On [`TraceWriter::push`], in order:
//! 1. **redaction**: the log path's [`Redactor`] rules on resource, scope, span, event and link attributes and
//!    status messages ([`redact_resource_spans`]);
//! 2. **span metrics** from every valid span, before sampling so sampling never distorts them: each span is
//!    resolved to its series (service, span name, kind, status; [`SpanMetricsAggregator`]);
//! 3. **store**: the inner writer's push, durable when it returns (its summary is the caller's answer);
//! 4. only then the resolved spans are counted, and each trace is registered with the **tail sampler**
//!    ([`TailSampler`]), so a failed write counts nothing and a client's retry is not counted twice.
//!
//! [`TracePipeline::tick`] (every second from [`TracePipeline::spawn_background`]) decides the traces whose
//! wait has passed and removes the dropped ones with [`TraceWriter::drop_traces`], batched; every
//! `span_metrics.flush_interval` it appends the aggregated span metrics to the metrics store.
//! [`TracePipeline::shutdown`] decides every held trace and flushes a last time.
//!
//! ```
//! use std::sync::Arc;
//! use oxeye_model::traces::{ResourceSpans, TracePushSummary, TraceWriter, TraceId};
//! use oxeye_model::storage::StorageError;
//! use oxeye_pipeline::traces::{ManualClock, TracePipeline, TracePipelineOptions};
//!
//! struct Discard;
//! impl TraceWriter for Discard {
//!     fn push(&self, batches: Vec<ResourceSpans>) -> Result<TracePushSummary, StorageError> {
//!         let accepted_spans = batches.iter().map(|batch| batch.spans().count() as u64).sum();
//!         Ok(TracePushSummary { accepted_spans, ..TracePushSummary::default() })
//!     }
//!     fn drop_traces(&self, _: &[TraceId]) -> Result<(), StorageError> { Ok(()) }
//! }
//!
//! let mut options = TracePipelineOptions::default();
//! options.sampling.rate = 0.1; // production: every error, every slow trace and 10% of the rest
//! let clock = Arc::new(ManualClock::new(1_700_000_000_000));
//! let pipeline = TracePipeline::new(options, Arc::new(Discard), None, None, clock).unwrap();
//! assert_eq!(pipeline.push(Vec::new()).unwrap().accepted_spans, 0);
//! ```

mod clock;
mod options;
mod redact;
mod sampler;
mod span_metrics;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::Duration;

use oxeye_model::storage::{MetricsStorage, StorageError};
use oxeye_model::traces::{ResourceSpans, Span, TraceId, TracePushSummary, TraceWriter};

pub use clock::{Clock, ManualClock, SystemClock};
pub use options::{
    DEFAULT_LATENCY_BUCKETS_SECONDS, ServiceSamplingOptions, SpanMetricsOptions, TailSamplingOptions,
    TracePipelineOptions,
};
pub use redact::redact_resource_spans;
use sampler::SamplingPolicy;
pub use sampler::{
    KeepReason, SamplerCounters, SamplingDecision, TailSampler, TraceObservation, keep_by_rate, trace_id_hash,
};
pub use span_metrics::{
    CALLS_TOTAL, EXEMPLAR_TRACE_ID_LABEL, ExemplarFate, LATENCY_BUCKET, LATENCY_COUNT, LATENCY_SUM,
    SpanMetricsAggregator, SpanMetricsFlush, SpanObservation, UNKNOWN_SERVICE,
};

use crate::{PipelineError, Redactor};

/// Trace ids removed per [`TraceWriter::drop_traces`] call.
const DROP_BATCH: usize = 1024;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn has_valid_ids(span: &Span) -> bool {
    span.trace_id != [0; 16] && span.span_id != [0; 8]
}

#[derive(Debug, Default)]
struct PipelineCounters {
    redacted_values: AtomicU64,
    traces_removed: AtomicU64,
    drop_errors: AtomicU64,
    span_metrics_flushes: AtomicU64,
    span_metrics_flush_errors: AtomicU64,
    span_metrics_samples: AtomicU64,
    span_metrics_exemplars: AtomicU64,
    span_metrics_refused_samples: AtomicU64,
}

/// The pipeline's counters and gauges at one moment, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TracePipelineStats {
    /// The tail sampler's counters (kept and dropped traces by reason, early decisions, late spans, held
    /// traces).
    pub sampler: SamplerCounters,
    /// Attribute values and status messages changed by redaction.
    pub redacted_values: u64,
    /// Trace ids removed from the store after a drop decision.
    pub traces_removed: u64,
    /// Failed [`TraceWriter::drop_traces`] calls (their ids are retried at the next tick).
    pub drop_errors: u64,
    /// Span metrics series combinations tracked.
    pub span_metrics_series: u64,
    /// Spans not aggregated because `span_metrics.max_series` was reached.
    pub span_metrics_refused_spans: u64,
    /// Span metrics flushes committed.
    pub span_metrics_flushes: u64,
    /// Span metrics flushes whose commit failed.
    pub span_metrics_flush_errors: u64,
    /// Samples appended by span metrics flushes.
    pub span_metrics_samples: u64,
    /// Exemplars appended by span metrics flushes.
    pub span_metrics_exemplars: u64,
    /// Samples and exemplars the metrics store refused.
    pub span_metrics_refused_samples: u64,
}

/// What one [`TracePipeline::tick`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickSummary {
    /// Trace ids removed from the store.
    pub traces_removed: u64,
    /// The span metrics flush, when one was due.
    pub span_metrics: Option<SpanMetricsFlush>,
}

/// Redaction, span metrics and tail sampling in front of a trace store; a [`TraceWriter`] itself, so the
/// server pushes through it exactly as it would push to the store. `Send + Sync`; share it in an `Arc`.
pub struct TracePipeline {
    options: TracePipelineOptions,
    policy: SamplingPolicy,
    inner: Arc<dyn TraceWriter>,
    metrics_storage: Option<Arc<dyn MetricsStorage>>,
    redactor: Option<Redactor>,
    clock: Arc<dyn Clock>,
    sampler: Mutex<TailSampler>,
    span_metrics: Mutex<SpanMetricsAggregator>,
    next_flush_ms: AtomicU64,
    counters: PipelineCounters,
}

impl std::fmt::Debug for TracePipeline {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("TracePipeline").field("options", &self.options).finish_non_exhaustive()
    }
}

impl TracePipeline {
    /// A pipeline in front of `inner` (the trace store's writer). Span metrics go to `metrics_storage` (none:
    /// span metrics off); `redactor` is the log path's redactor (none: spans are not redacted); `clock` is
    /// [`SystemClock`] outside tests.
    ///
    /// # Errors
    /// [`PipelineError::InvalidTraceOption`] from [`TracePipelineOptions::validate`].
    pub fn new(
        options: TracePipelineOptions,
        inner: Arc<dyn TraceWriter>,
        metrics_storage: Option<Arc<dyn MetricsStorage>>,
        redactor: Option<Redactor>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, PipelineError> {
        options.validate()?;
        let flush_interval_ms = u64::try_from(options.span_metrics.flush_interval.as_millis()).unwrap_or(u64::MAX);
        let next_flush_ms = clock.now_unix_ms().saturating_add(flush_interval_ms);
        Ok(TracePipeline {
            policy: SamplingPolicy::new(&options.sampling),
            sampler: Mutex::new(TailSampler::new(&options.sampling)),
            span_metrics: Mutex::new(SpanMetricsAggregator::new(&options.span_metrics)),
            options,
            inner,
            metrics_storage,
            redactor,
            clock,
            next_flush_ms: AtomicU64::new(next_flush_ms),
            counters: PipelineCounters::default(),
        })
    }

    /// The options it was built with.
    pub fn options(&self) -> &TracePipelineOptions {
        &self.options
    }

    fn span_metrics_on(&self) -> bool {
        self.options.span_metrics.enabled && self.metrics_storage.is_some()
    }

    /// The remembered sampling decision of `trace_id` (`None` while held, when never seen or forgotten).
    pub fn decision(&self, trace_id: &TraceId) -> Option<SamplingDecision> {
        lock(&self.sampler).decision(trace_id)
    }

    /// Decides the traces whose wait has passed and removes the dropped ones from the store; flushes span
    /// metrics when `span_metrics.flush_interval` has passed since the last flush. Failures are counted in
    /// [`TracePipeline::stats`] (a failed removal is retried at the next tick), never returned: this runs on a
    /// background thread.
    pub fn tick(&self) -> TickSummary {
        let now_ms = self.clock.now_unix_ms();
        let mut summary = TickSummary::default();
        if self.options.sampling.enabled {
            let drops = lock(&self.sampler).expire(now_ms);
            summary.traces_removed = self.remove_from_store(&drops);
        }
        if self.span_metrics_on() && now_ms >= self.next_flush_ms.load(Ordering::Relaxed) {
            let interval_ms = u64::try_from(self.options.span_metrics.flush_interval.as_millis()).unwrap_or(u64::MAX);
            self.next_flush_ms.store(now_ms.saturating_add(interval_ms), Ordering::Relaxed);
            summary.span_metrics = self.flush_span_metrics().ok();
        }
        summary
    }

    /// Decides every held trace now, removes the dropped ones and flushes span metrics a last time: what a
    /// graceful shutdown calls after the listeners stopped.
    ///
    /// # Errors
    /// [`StorageError`] from the last span metrics commit (removal failures are counted, as in
    /// [`TracePipeline::tick`]).
    pub fn shutdown(&self) -> Result<(), StorageError> {
        if self.options.sampling.enabled {
            let drops = lock(&self.sampler).decide_all();
            self.remove_from_store(&drops);
        }
        if self.span_metrics_on() {
            self.flush_span_metrics()?;
        }
        Ok(())
    }

    fn remove_from_store(&self, trace_ids: &[TraceId]) -> u64 {
        let mut removed = 0;
        for chunk in trace_ids.chunks(DROP_BATCH) {
            match self.inner.drop_traces(chunk) {
                Ok(()) => removed += chunk.len() as u64,
                Err(_) => {
                    self.counters.drop_errors.fetch_add(1, Ordering::Relaxed);
                    lock(&self.sampler).retry_drops(chunk);
                }
            }
        }
        self.counters.traces_removed.fetch_add(removed, Ordering::Relaxed);
        removed
    }

    /// Appends the span metrics aggregated so far to the metrics store, stamped now, with exemplars of kept
    /// traces, and commits (blocking until durable). Does nothing without a metrics store.
    ///
    /// # Errors
    /// [`StorageError`] from the commit (counted too).
    pub fn flush_span_metrics(&self) -> Result<SpanMetricsFlush, StorageError> {
        let Some(storage) = &self.metrics_storage else {
            return Ok(SpanMetricsFlush::default());
        };
        let now_ms = self.clock.now_unix_ms();
        let sampling = self.options.sampling.enabled;
        let mut fate = |trace_id: &TraceId| -> ExemplarFate {
            if !sampling {
                return ExemplarFate::Kept;
            }
            let sampler = lock(&self.sampler);
            match sampler.decision(trace_id) {
                Some(decision) if decision.is_keep() => ExemplarFate::Kept,
                Some(_) => ExemplarFate::Dropped,
                None if sampler.is_held(trace_id) => ExemplarFate::Undecided,
                None => ExemplarFate::Dropped,
            }
        };
        let mut appender = storage.appender();
        // Lock order: span metrics, then the sampler (inside `fate`); nothing takes them the other way round.
        let flush = lock(&self.span_metrics).write(appender.as_mut(), now_ms, &mut fate);
        self.counters.span_metrics_refused_samples.fetch_add(flush.refused, Ordering::Relaxed);
        if flush.samples == 0 && flush.exemplars == 0 {
            appender.rollback();
            return Ok(flush);
        }
        match appender.commit() {
            Ok(_) => {
                self.counters.span_metrics_flushes.fetch_add(1, Ordering::Relaxed);
                self.counters.span_metrics_samples.fetch_add(flush.samples, Ordering::Relaxed);
                self.counters.span_metrics_exemplars.fetch_add(flush.exemplars, Ordering::Relaxed);
                Ok(flush)
            }
            Err(error) => {
                self.counters.span_metrics_flush_errors.fetch_add(1, Ordering::Relaxed);
                Err(error)
            }
        }
    }

    /// The counters and gauges now.
    pub fn stats(&self) -> TracePipelineStats {
        let sampler = lock(&self.sampler).counters();
        let (span_metrics_series, span_metrics_refused_spans) = {
            let aggregator = lock(&self.span_metrics);
            (aggregator.series_count() as u64, aggregator.refused_spans())
        };
        let counters = &self.counters;
        TracePipelineStats {
            sampler,
            redacted_values: counters.redacted_values.load(Ordering::Relaxed),
            traces_removed: counters.traces_removed.load(Ordering::Relaxed),
            drop_errors: counters.drop_errors.load(Ordering::Relaxed),
            span_metrics_series,
            span_metrics_refused_spans,
            span_metrics_flushes: counters.span_metrics_flushes.load(Ordering::Relaxed),
            span_metrics_flush_errors: counters.span_metrics_flush_errors.load(Ordering::Relaxed),
            span_metrics_samples: counters.span_metrics_samples.load(Ordering::Relaxed),
            span_metrics_exemplars: counters.span_metrics_exemplars.load(Ordering::Relaxed),
            span_metrics_refused_samples: counters.span_metrics_refused_samples.load(Ordering::Relaxed),
        }
    }

    /// Runs [`TracePipeline::tick`] every `period` on a new thread until the returned handle is stopped (or
    /// dropped), then [`TracePipeline::shutdown`].
    ///
    /// # Errors
    /// The OS error when the thread cannot be spawned.
    pub fn spawn_background(self: &Arc<Self>, period: Duration) -> std::io::Result<TracePipelineTask> {
        let (stop_sender, stop_receiver) = mpsc::channel::<()>();
        let pipeline = Arc::clone(self);
        let handle = std::thread::Builder::new().name("trace-pipeline".to_string()).spawn(move || {
            // A stop message or a dropped handle ends the loop.
            while let Err(mpsc::RecvTimeoutError::Timeout) = stop_receiver.recv_timeout(period) {
                pipeline.tick();
            }
            // Errors are counted in the stats; nothing is left to report them to at shutdown.
            let _ = pipeline.shutdown();
        })?;
        Ok(TracePipelineTask { stop_sender: Some(stop_sender), handle: Some(handle) })
    }

    /// Collects what the sampler and span metrics need from `batches` (valid spans only), before the spans
    /// move into the store.
    fn observe(&self, batches: &[ResourceSpans]) -> (Vec<SpanObservation>, Vec<TraceObservation>) {
        let sampling = self.options.sampling.enabled;
        let mut span_observations = Vec::new();
        let mut trace_observations: Vec<TraceObservation> = Vec::new();
        let mut trace_positions: HashMap<TraceId, usize> = HashMap::new();
        let mut aggregator = self.span_metrics_on().then(|| lock(&self.span_metrics));
        for batch in batches {
            let service = batch.resource.service_name().filter(|name| !name.is_empty()).unwrap_or(UNKNOWN_SERVICE);
            let service_override = if sampling { self.policy.service_override(service) } else { None };
            for span in batch.spans().filter(|span| has_valid_ids(span)) {
                if let Some(aggregator) = aggregator.as_mut()
                    && let Some(observation) = aggregator.resolve(service, span, span.trace_id)
                {
                    span_observations.push(observation);
                }
                if !sampling {
                    continue;
                }
                // Spans of a trace usually come together: try the last trace before the map.
                let last_matches = trace_observations.last().is_some_and(|last| last.trace_id == span.trace_id);
                let position = if last_matches {
                    trace_observations.len() - 1
                } else {
                    *trace_positions.entry(span.trace_id).or_insert_with(|| {
                        trace_observations.push(TraceObservation::new(span.trace_id));
                        trace_observations.len() - 1
                    })
                };
                if let Some(observation) = trace_observations.get_mut(position) {
                    observation.add_span(span, service_override);
                }
            }
        }
        (span_observations, trace_observations)
    }
}

impl TraceWriter for TracePipeline {
    /// Redacts, resolves span metrics, stores through the inner writer, then counts the span metrics and
    /// registers the traces with the tail sampler. Returns the inner writer's summary.
    ///
    /// Errors: the inner writer's [`StorageError`]; nothing is then counted or registered.
    fn push(&self, mut batches: Vec<ResourceSpans>) -> Result<TracePushSummary, StorageError> {
        if let Some(redactor) = &self.redactor {
            let changed = redact_resource_spans(redactor, &mut batches);
            if changed > 0 {
                self.counters.redacted_values.fetch_add(changed, Ordering::Relaxed);
            }
        }
        let (span_observations, trace_observations) = self.observe(&batches);
        let summary = self.inner.push(batches)?;
        let now_ms = self.clock.now_unix_ms();
        if !span_observations.is_empty() {
            lock(&self.span_metrics).record(now_ms, &span_observations);
        }
        if !trace_observations.is_empty() {
            let mut sampler = lock(&self.sampler);
            for observation in &trace_observations {
                sampler.observe(now_ms, observation);
            }
        }
        Ok(summary)
    }

    /// Forwards to the inner writer.
    fn drop_traces(&self, trace_ids: &[TraceId]) -> Result<(), StorageError> {
        self.inner.drop_traces(trace_ids)
    }
}

/// The handle of [`TracePipeline::spawn_background`]'s thread: [`TracePipelineTask::stop`] (or dropping it)
/// ends the loop, runs the pipeline's shutdown and waits for it.
#[derive(Debug)]
pub struct TracePipelineTask {
    stop_sender: Option<mpsc::Sender<()>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl TracePipelineTask {
    /// Stops the loop and waits until the last decisions and the last span metrics flush are done.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(sender) = self.stop_sender.take() {
            let _ = sender.send(());
        }
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for TracePipelineTask {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
