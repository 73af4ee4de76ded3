//! Tests of the tail sampler (explicit times), span metrics values and span redaction, and of the pipeline
//! with a recording trace writer, a recording metrics store and a manual clock.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use oxeye_model::storage::{Appender, CommitSummary, MetricsStorage, Querier, Series, SeriesExemplars, StorageError};
use oxeye_model::traces::{
    Attribute, AttributeValue, Resource, ResourceSpans, ScopeSpans, Span, SpanEvent, SpanKind, StatusCode, TraceId,
    TracePushSummary, TraceWriter,
};
use oxeye_model::{Exemplar, Labels, Matcher, MetricMetadata, Sample};

use super::*;
use crate::RedactionOptions;

const START_MS: u64 = 1_700_000_000_000;
const MS: u64 = 1_000_000;

/// Deterministic, well-spread trace ids (SplitMix64 over a counter), like real random ids.
fn trace_id(index: u64) -> TraceId {
    let mut state = index.wrapping_mul(0x2545_f491_4f6c_dd1d).wrapping_add(1);
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut mixed = state;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^ (mixed >> 31)
    };
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&next().to_le_bytes());
    id[8..].copy_from_slice(&next().to_le_bytes());
    id
}

fn span(trace: TraceId, span_index: u8, parent: Option<u8>, duration_ms: u64, status: StatusCode) -> Span {
    let start = START_MS * MS;
    Span {
        trace_id: trace,
        span_id: [span_index; 8],
        parent_span_id: parent.map(|parent| [parent; 8]),
        name: if parent.is_none() { "GET /events/{id}/".to_string() } else { "ticket.checkout".to_string() },
        kind: if parent.is_none() { SpanKind::Server } else { SpanKind::Internal },
        start_time_unix_nano: start,
        end_time_unix_nano: start + duration_ms * MS,
        status_code: status,
        ..Span::default()
    }
}

fn batch(service: &str, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Resource { attributes: vec![Attribute::string("service.name", service)], ..Resource::default() },
        scope_spans: vec![ScopeSpans { spans, ..ScopeSpans::default() }],
        ..ResourceSpans::default()
    }
}

fn observation(sampler: &TailSampler, service: &str, spans: &[Span]) -> TraceObservation {
    let mut observation = TraceObservation::new(spans[0].trace_id);
    for span in spans {
        observation.add_span(span, sampler.service_override(service));
    }
    observation
}

fn sampler_with(rate: f64) -> TailSampler {
    TailSampler::new(&TailSamplingOptions { rate, ..TailSamplingOptions::default() })
}

#[test]
fn errors_are_always_kept_even_at_rate_zero() {
    let mut sampler = sampler_with(0.0);
    for index in 0..1_000 {
        let id = trace_id(index);
        let spans = [span(id, 1, None, 5, StatusCode::Unset), span(id, 2, Some(1), 1, StatusCode::Error)];
        sampler.observe(START_MS, &observation(&sampler, "boxoffice", &spans));
    }
    assert!(sampler.expire(START_MS + 10_000).is_empty());
    for index in 0..1_000 {
        assert_eq!(sampler.decision(&trace_id(index)), Some(SamplingDecision::Keep(KeepReason::Error)));
    }
    assert_eq!(sampler.counters().kept_error, 1_000);
    assert_eq!(sampler.counters().dropped, 0);
}

#[test]
fn slow_roots_are_kept_and_fast_ones_are_not_at_rate_zero() {
    let mut sampler = sampler_with(0.0);
    let slow = trace_id(1);
    let fast = trace_id(2);
    sampler.observe(START_MS, &observation(&sampler, "boxoffice", &[span(slow, 1, None, 2_001, StatusCode::Ok)]));
    sampler.observe(START_MS, &observation(&sampler, "boxoffice", &[span(fast, 1, None, 2_000, StatusCode::Ok)]));
    assert_eq!(sampler.expire(START_MS + 10_000), vec![fast]);
    assert_eq!(sampler.decision(&slow), Some(SamplingDecision::Keep(KeepReason::Slow)));
    assert_eq!(sampler.decision(&fast), Some(SamplingDecision::Drop));
}

#[test]
fn service_overrides_follow_the_root_span_service() {
    let mut options = TailSamplingOptions { rate: 1.0, ..TailSamplingOptions::default() };
    options.services.insert(
        "celery".to_string(),
        ServiceSamplingOptions { rate: Some(0.0), slow_threshold: Some(Duration::from_secs(30)) },
    );
    let mut sampler = TailSampler::new(&options);
    // A 5 s celery task: slow by the global threshold, not by celery's 30 s; celery's rate is 0.
    let task = trace_id(7);
    let spans = [span(task, 1, None, 5_000, StatusCode::Ok)];
    sampler.observe(START_MS, &observation(&sampler, "celery", &spans));
    // The same shape for the web service is kept by the global rate of 1.0.
    let web = trace_id(8);
    sampler.observe(START_MS, &observation(&sampler, "boxoffice", &[span(web, 1, None, 5, StatusCode::Ok)]));
    assert_eq!(sampler.expire(START_MS + 10_000), vec![task]);
    assert_eq!(sampler.decision(&web), Some(SamplingDecision::Keep(KeepReason::Rate)));
}

#[test]
fn the_rate_keeps_about_its_fraction_of_ten_thousand_traces_consistently() {
    let traces = 10_000u64;
    let rate = 0.1;
    let mut sampler = sampler_with(rate);
    for index in 0..traces {
        let id = trace_id(index);
        sampler.observe(START_MS, &observation(&sampler, "boxoffice", &[span(id, 1, None, 20, StatusCode::Ok)]));
    }
    let dropped = sampler.expire(START_MS + 10_000);
    let kept = traces - dropped.len() as u64;
    // Binomial: mean n*p, standard deviation sqrt(n*p*(1-p)) = 30; allow five standard deviations.
    let mean = traces as f64 * rate;
    let sd = (traces as f64 * rate * (1.0 - rate)).sqrt();
    assert!((kept as f64 - mean).abs() <= 5.0 * sd, "kept {kept} of {traces}, expected {mean} ± {}", 5.0 * sd);
    assert_eq!(sampler.counters().kept_rate, kept);
    for index in 0..traces {
        let id = trace_id(index);
        // The same answer from the hash alone (what a restarted process decides), and kept at any higher rate.
        let kept_now = sampler.decision(&id) == Some(SamplingDecision::Keep(KeepReason::Rate));
        assert_eq!(kept_now, keep_by_rate(&id, rate));
        if kept_now {
            assert!(keep_by_rate(&id, 0.5));
        }
    }
    // Pinned so a change of the hash (which would change decisions across an upgrade) is noticed.
    assert_eq!(trace_id_hash(&[0; 16]), trace_id_hash(&[0; 16]));
    assert_eq!(trace_id_hash(&[1; 16]), 0xc225_09ae_2249_512f, "{:#x}", trace_id_hash(&[1; 16]));
}

#[test]
fn a_trace_is_held_until_no_span_arrived_for_the_wait() {
    let mut sampler = sampler_with(0.0);
    let id = trace_id(3);
    sampler.observe(START_MS, &observation(&sampler, "boxoffice", &[span(id, 2, Some(1), 5, StatusCode::Ok)]));
    sampler.observe(START_MS + 6_000, &observation(&sampler, "boxoffice", &[span(id, 3, Some(1), 5, StatusCode::Ok)]));
    assert!(sampler.expire(START_MS + 10_000).is_empty());
    assert!(sampler.is_held(&id));
    // The root arrives late in the wait and is slow: the trace is kept.
    sampler
        .observe(START_MS + 15_000, &observation(&sampler, "boxoffice", &[span(id, 1, None, 3_000, StatusCode::Ok)]));
    assert!(sampler.expire(START_MS + 24_999).is_empty());
    assert!(sampler.expire(START_MS + 25_000).is_empty());
    assert_eq!(sampler.decision(&id), Some(SamplingDecision::Keep(KeepReason::Slow)));
    assert_eq!(sampler.counters().held_traces, 0);
    assert_eq!(sampler.counters().spans, 3);
}

#[test]
fn held_traces_are_bounded_and_pressure_decides_early() {
    let options = TailSamplingOptions { rate: 0.0, max_held_traces: 100, ..TailSamplingOptions::default() };
    let mut sampler = TailSampler::new(&options);
    for index in 0..1_000 {
        let id = trace_id(index);
        let status = if index % 10 == 0 { StatusCode::Error } else { StatusCode::Ok };
        sampler.observe(START_MS + index, &observation(&sampler, "boxoffice", &[span(id, 1, None, 5, status)]));
        assert!(sampler.counters().held_traces <= 100);
    }
    let counters = sampler.counters();
    assert_eq!(counters.decided_early, 900);
    // Early decisions follow the rules: the error traces among the first 900 are kept.
    assert_eq!(counters.kept_error, 90);
    assert_eq!(sampler.decision(&trace_id(0)), Some(SamplingDecision::Keep(KeepReason::Error)));
    assert_eq!(sampler.expire(START_MS).len(), 810, "the early drops are handed out at the next expiry");
}

#[test]
fn late_spans_follow_the_decision_and_dropped_ones_are_removed_again() {
    let mut sampler = sampler_with(0.0);
    let dropped = trace_id(4);
    let kept = trace_id(5);
    sampler.observe(START_MS, &observation(&sampler, "boxoffice", &[span(dropped, 1, None, 5, StatusCode::Ok)]));
    sampler.observe(START_MS, &observation(&sampler, "boxoffice", &[span(kept, 1, None, 5, StatusCode::Error)]));
    assert_eq!(sampler.expire(START_MS + 10_000), vec![dropped]);
    // A late error span does not resurrect a dropped trace, and a late span of a kept trace stays.
    let late_dropped = [span(dropped, 2, Some(1), 5, StatusCode::Error)];
    sampler.observe(START_MS + 11_000, &observation(&sampler, "boxoffice", &late_dropped));
    sampler.observe(START_MS + 11_000, &observation(&sampler, "boxoffice", &late_dropped));
    sampler
        .observe(START_MS + 11_000, &observation(&sampler, "boxoffice", &[span(kept, 2, Some(1), 5, StatusCode::Ok)]));
    assert_eq!(sampler.expire(START_MS + 11_000), vec![dropped], "one removal for repeated late spans");
    let counters = sampler.counters();
    assert_eq!((counters.late_spans_dropped, counters.late_spans_kept), (2, 1));
    assert_eq!(counters.held_traces, 0);
}

#[test]
fn decisions_are_remembered_up_to_the_cache_size() {
    let options = TailSamplingOptions { rate: 0.0, decision_cache_size: 10, ..TailSamplingOptions::default() };
    let mut sampler = TailSampler::new(&options);
    for index in 0..100 {
        let id = trace_id(index);
        sampler.observe(START_MS, &observation(&sampler, "boxoffice", &[span(id, 1, None, 5, StatusCode::Ok)]));
    }
    sampler.expire(START_MS + 10_000);
    let remembered = (0..100).filter(|index| sampler.decision(&trace_id(*index)).is_some()).count();
    assert_eq!(remembered, 10);
}

// ---- the pipeline, with recording fakes ----

#[derive(Default)]
struct RecordingTraceWriter {
    pushed: Mutex<Vec<ResourceSpans>>,
    dropped: Mutex<Vec<TraceId>>,
    fail_pushes: std::sync::atomic::AtomicBool,
}

impl TraceWriter for RecordingTraceWriter {
    fn push(&self, batches: Vec<ResourceSpans>) -> Result<TracePushSummary, StorageError> {
        if self.fail_pushes.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StorageError::Io("wal segment 3: disk full".to_string()));
        }
        let accepted_spans = batches.iter().map(|batch| batch.spans().count() as u64).sum();
        self.pushed.lock().unwrap().extend(batches);
        Ok(TracePushSummary { accepted_spans, ..TracePushSummary::default() })
    }

    fn drop_traces(&self, trace_ids: &[TraceId]) -> Result<(), StorageError> {
        self.dropped.lock().unwrap().extend_from_slice(trace_ids);
        Ok(())
    }
}

#[derive(Default)]
struct RecordingMetrics {
    samples: Mutex<Vec<(Labels, Sample)>>,
    exemplars: Mutex<Vec<(Labels, Exemplar)>>,
    metadata: Mutex<Vec<(String, MetricMetadata)>>,
}

impl RecordingMetrics {
    /// The newest value of the series with exactly `labels`.
    fn value(&self, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted = Labels::from_pairs(labels.iter().copied());
        self.samples.lock().unwrap().iter().rev().find(|(series, _)| *series == wanted).map(|(_, sample)| sample.value)
    }
}

struct RecordingAppender {
    storage: Arc<RecordingMetrics>,
    samples: Vec<(Labels, Sample)>,
    exemplars: Vec<(Labels, Exemplar)>,
    metadata: Vec<(String, MetricMetadata)>,
}

impl Appender for RecordingAppender {
    fn append(&mut self, labels: &Labels, sample: Sample) -> Result<(), StorageError> {
        self.samples.push((labels.clone(), sample));
        Ok(())
    }

    fn append_exemplar(&mut self, labels: &Labels, exemplar: Exemplar) -> Result<(), StorageError> {
        self.exemplars.push((labels.clone(), exemplar));
        Ok(())
    }

    fn update_metadata(&mut self, metric_family_name: &str, metadata: MetricMetadata) {
        self.metadata.push((metric_family_name.to_string(), metadata));
    }

    fn commit(self: Box<Self>) -> Result<CommitSummary, StorageError> {
        let summary = CommitSummary {
            samples: self.samples.len() as u64,
            exemplars: self.exemplars.len() as u64,
            series_created: 0,
        };
        self.storage.samples.lock().unwrap().extend(self.samples);
        self.storage.exemplars.lock().unwrap().extend(self.exemplars);
        self.storage.metadata.lock().unwrap().extend(self.metadata);
        Ok(summary)
    }

    fn rollback(self: Box<Self>) {}
}

struct RecordingMetricsStorage(Arc<RecordingMetrics>);

impl Querier for RecordingMetricsStorage {
    fn select(&self, _: i64, _: i64, _: &[Matcher]) -> Result<Vec<Series>, StorageError> {
        Ok(Vec::new())
    }
    fn series(&self, _: i64, _: i64, _: &[Matcher]) -> Result<Vec<Labels>, StorageError> {
        Ok(Vec::new())
    }
    fn label_names(&self, _: i64, _: i64, _: &[Matcher]) -> Result<Vec<String>, StorageError> {
        Ok(Vec::new())
    }
    fn label_values(&self, _: i64, _: i64, _: &str, _: &[Matcher]) -> Result<Vec<String>, StorageError> {
        Ok(Vec::new())
    }
}

impl MetricsStorage for RecordingMetricsStorage {
    fn appender(&self) -> Box<dyn Appender> {
        Box::new(RecordingAppender {
            storage: Arc::clone(&self.0),
            samples: Vec::new(),
            exemplars: Vec::new(),
            metadata: Vec::new(),
        })
    }
    fn metadata(&self, _: Option<&str>, _: Option<usize>) -> Vec<(String, MetricMetadata)> {
        Vec::new()
    }
    fn exemplars(&self, _: i64, _: i64, _: &[Vec<Matcher>]) -> Result<Vec<SeriesExemplars>, StorageError> {
        Ok(Vec::new())
    }
}

struct Harness {
    pipeline: Arc<TracePipeline>,
    store: Arc<RecordingTraceWriter>,
    metrics: Arc<RecordingMetrics>,
    clock: Arc<ManualClock>,
}

fn harness(options: TracePipelineOptions, redactor: Option<Redactor>) -> Harness {
    let store = Arc::new(RecordingTraceWriter::default());
    let metrics = Arc::new(RecordingMetrics::default());
    let clock = Arc::new(ManualClock::new(START_MS));
    let pipeline = TracePipeline::new(
        options,
        store.clone(),
        Some(Arc::new(RecordingMetricsStorage(metrics.clone()))),
        redactor,
        clock.clone(),
    )
    .unwrap();
    Harness { pipeline: Arc::new(pipeline), store, metrics, clock }
}

fn production_options() -> TracePipelineOptions {
    let mut options = TracePipelineOptions::default();
    options.sampling.rate = 0.0;
    options
}

#[test]
fn the_pipeline_keeps_errors_and_slow_traces_and_removes_the_rest_after_the_wait() {
    let harness = harness(production_options(), None);
    let error = trace_id(10);
    let slow = trace_id(11);
    let normal = trace_id(12);
    let summary = harness
        .pipeline
        .push(vec![batch(
            "boxoffice",
            vec![
                span(error, 1, None, 40, StatusCode::Unset),
                span(error, 2, Some(1), 30, StatusCode::Error),
                span(slow, 1, None, 2_500, StatusCode::Ok),
                span(normal, 1, None, 30, StatusCode::Ok),
            ],
        )])
        .unwrap();
    assert_eq!(summary.accepted_spans, 4, "the inner writer's summary is returned");
    assert_eq!(harness.store.pushed.lock().unwrap().len(), 1, "stored before any decision");
    harness.clock.advance(Duration::from_secs(9));
    assert_eq!(harness.pipeline.tick().traces_removed, 0);
    harness.clock.advance(Duration::from_secs(1));
    assert_eq!(harness.pipeline.tick().traces_removed, 1);
    assert_eq!(*harness.store.dropped.lock().unwrap(), vec![normal]);
    let stats = harness.pipeline.stats();
    assert_eq!(
        (stats.sampler.kept_error, stats.sampler.kept_slow, stats.sampler.dropped, stats.sampler.spans),
        (1, 1, 1, 4)
    );
    assert_eq!(stats.traces_removed, 1);
    assert_eq!(harness.pipeline.decision(&slow), Some(SamplingDecision::Keep(KeepReason::Slow)));
}

#[test]
fn span_metrics_count_every_span_with_tempo_names_and_exemplars_of_kept_traces_only() {
    let harness = harness(production_options(), None);
    let error = trace_id(20);
    let dropped = trace_id(21);
    harness
        .pipeline
        .push(vec![batch(
            "boxoffice",
            vec![
                span(error, 1, None, 3, StatusCode::Error),
                span(dropped, 1, None, 100, StatusCode::Unset),
                span(dropped, 2, Some(1), 5_000, StatusCode::Unset),
            ],
        )])
        .unwrap();
    // A span with an all-zero trace id is refused by stores: not counted.
    harness.pipeline.push(vec![batch("boxoffice", vec![span([0; 16], 1, None, 1, StatusCode::Ok)])]).unwrap();
    harness.clock.advance(Duration::from_secs(15));
    let summary = harness.pipeline.tick();
    let flush = summary.span_metrics.expect("a flush is due after 15 s");
    assert!(flush.samples > 0);
    let metrics = &harness.metrics;
    let server = |name: &'static str, status: &'static str| {
        vec![
            ("__name__", name),
            ("service", "boxoffice"),
            ("span_kind", "SPAN_KIND_SERVER"),
            ("span_name", "GET /events/{id}/"),
            ("status_code", status),
        ]
    };
    assert_eq!(metrics.value(&server(CALLS_TOTAL, "STATUS_CODE_ERROR")), Some(1.0));
    assert_eq!(metrics.value(&server(CALLS_TOTAL, "STATUS_CODE_UNSET")), Some(1.0));
    assert_eq!(metrics.value(&server(LATENCY_COUNT, "STATUS_CODE_UNSET")), Some(1.0));
    assert_eq!(metrics.value(&server(LATENCY_SUM, "STATUS_CODE_UNSET")), Some(0.1));
    let bucket = |le: &'static str| {
        let mut labels = server(LATENCY_BUCKET, "STATUS_CODE_UNSET");
        labels.push(("le", le));
        metrics.value(&labels)
    };
    // 100 ms falls in le=0.128, cumulative from there on.
    assert_eq!(bucket("0.064"), Some(0.0));
    assert_eq!(bucket("0.128"), Some(1.0));
    assert_eq!(bucket("4.096"), Some(1.0));
    assert_eq!(bucket("+Inf"), Some(1.0));
    let internal = [
        ("__name__", LATENCY_BUCKET),
        ("le", "4.096"),
        ("service", "boxoffice"),
        ("span_kind", "SPAN_KIND_INTERNAL"),
        ("span_name", "ticket.checkout"),
        ("status_code", "STATUS_CODE_UNSET"),
    ];
    assert_eq!(metrics.value(&internal), Some(0.0), "5 s is above the last finite bucket");
    let calls_total: f64 = metrics
        .samples
        .lock()
        .unwrap()
        .iter()
        .filter(|(labels, _)| labels.metric_name() == Some(CALLS_TOTAL))
        .map(|(_, sample)| sample.value)
        .sum();
    assert_eq!(calls_total, 3.0, "every valid span is counted before sampling");
    // By 15 s both traces are decided (wait 10 s): the error trace is kept and has the exemplars, the other
    // is dropped and no exemplar points at it.
    let exemplars = metrics.exemplars.lock().unwrap();
    assert!(!exemplars.is_empty());
    let error_hex = oxeye_model::traces::id_to_hex(&error);
    for (series, exemplar) in exemplars.iter() {
        assert_eq!(exemplar.labels.get(EXEMPLAR_TRACE_ID_LABEL), Some(error_hex.as_str()), "{series}");
    }
    let with_bucket: Vec<_> = exemplars.iter().filter(|(series, _)| series.get("le") == Some("0.004")).collect();
    assert_eq!(with_bucket.len(), 1, "the exemplar sits on the bucket its 3 ms duration falls in");
    let metadata = metrics.metadata.lock().unwrap();
    assert!(metadata.iter().any(|(name, meta)| name == "traces_spanmetrics_latency" && meta.unit == "seconds"));
}

#[test]
fn undecided_exemplars_wait_for_the_decision() {
    let mut options = TracePipelineOptions::default();
    options.span_metrics.flush_interval = Duration::from_secs(5);
    let harness = harness(options, None);
    let id = trace_id(30);
    harness.pipeline.push(vec![batch("boxoffice", vec![span(id, 1, None, 10, StatusCode::Ok)])]).unwrap();
    harness.clock.advance(Duration::from_secs(5));
    harness.pipeline.tick();
    assert!(harness.metrics.exemplars.lock().unwrap().is_empty(), "held at 5 s: no exemplar yet");
    harness.clock.advance(Duration::from_secs(5));
    harness.pipeline.tick();
    assert_eq!(harness.pipeline.decision(&id), Some(SamplingDecision::Keep(KeepReason::Rate)));
    assert_eq!(harness.metrics.exemplars.lock().unwrap().len(), 2, "calls_total and its bucket");
}

#[test]
fn a_failed_store_write_counts_nothing() {
    let harness = harness(production_options(), None);
    harness.store.fail_pushes.store(true, std::sync::atomic::Ordering::SeqCst);
    let result = harness.pipeline.push(vec![batch("boxoffice", vec![span(trace_id(40), 1, None, 5, StatusCode::Ok)])]);
    assert!(matches!(result, Err(StorageError::Io(_))));
    let stats = harness.pipeline.stats();
    assert_eq!((stats.sampler.spans, stats.sampler.held_traces), (0, 0));
    harness.clock.advance(Duration::from_secs(15));
    assert_eq!(harness.pipeline.tick().span_metrics, Some(SpanMetricsFlush::default()));
    assert!(harness.metrics.samples.lock().unwrap().is_empty());
}

#[test]
fn span_resource_and_event_attributes_are_redacted_before_the_store() {
    let redactor = Redactor::new(RedactionOptions::default()).unwrap();
    let harness = harness(TracePipelineOptions::default(), Some(redactor.clone()));
    let mut root = span(trace_id(50), 1, None, 5, StatusCode::Error);
    root.attributes = vec![
        Attribute::string("request_id", "0b6f1c5e-2d4e-4a8b-9f8e-1c2d3e4f5a6b"),
        Attribute::string("http.request.header.authorization", "Bearer abc.def"),
        Attribute::string("db.statement", "UPDATE users SET password='hunter2' WHERE login='ann@example.com'"),
        Attribute { key: "payment.card".to_string(), value: AttributeValue::Int(4_111_111_111_111_111) },
        Attribute {
            key: "user".to_string(),
            value: AttributeValue::Map(vec![
                Attribute::string("email", "ann@example.com"),
                Attribute::string("token", "tok_123"),
            ]),
        },
        Attribute { key: "retry".to_string(), value: AttributeValue::Bool(true) },
    ];
    root.events = vec![SpanEvent {
        name: "exception".to_string(),
        attributes: vec![Attribute::string("exception.message", "checkout failed for bob@example.com")],
        ..SpanEvent::default()
    }];
    root.status_message = "card 4111 1111 1111 1111 declined".to_string();
    let mut resource_batch = batch("boxoffice", vec![root]);
    resource_batch.resource.attributes.push(Attribute::string("deployment.api_key", "sk_live_123"));
    harness.pipeline.push(vec![resource_batch]).unwrap();

    let stored = harness.store.pushed.lock().unwrap();
    let stored_span = stored[0].spans().next().unwrap();
    let attribute = |key: &str| oxeye_model::traces::find_attribute(&stored_span.attributes, key).cloned();
    let text = |value: &str| Some(AttributeValue::String(value.to_string()));
    assert_eq!(attribute("request_id"), text("0b6f1c5e-2d4e-4a8b-9f8e-1c2d3e4f5a6b"));
    assert_eq!(attribute("http.request.header.authorization"), text("[REDACTED]"));
    assert_eq!(attribute("db.statement"), text("UPDATE users SET password='[REDACTED]' WHERE login='[EMAIL]'"));
    assert_eq!(attribute("payment.card"), text("[REDACTED]"));
    assert_eq!(
        attribute("user"),
        Some(AttributeValue::Map(vec![
            Attribute::string("email", "ann@example.com"),
            Attribute::string("token", "[REDACTED]"),
        ]))
    );
    assert_eq!(attribute("retry"), Some(AttributeValue::Bool(true)));
    assert_eq!(
        stored_span.events[0].attributes[0].value,
        AttributeValue::String("checkout failed for [EMAIL]".to_string())
    );
    assert_eq!(stored_span.status_message, "card [REDACTED] declined");
    assert_eq!(
        oxeye_model::traces::find_attribute(&stored[0].resource.attributes, "deployment.api_key"),
        Some(&AttributeValue::String("[REDACTED]".to_string()))
    );
    assert_eq!(harness.pipeline.stats().redacted_values, 7);
    assert!(redactor.stats().redactions("sensitive_key") >= 3, "the shared redactor counts per rule");
}

#[test]
fn shutdown_decides_every_held_trace_and_flushes() {
    let harness = harness(production_options(), None);
    let normal = trace_id(60);
    harness.pipeline.push(vec![batch("boxoffice", vec![span(normal, 1, None, 5, StatusCode::Ok)])]).unwrap();
    let task = harness.pipeline.spawn_background(Duration::from_secs(3600)).unwrap();
    task.stop();
    assert_eq!(*harness.store.dropped.lock().unwrap(), vec![normal]);
    assert_eq!(
        harness.metrics.value(&[
            ("__name__", CALLS_TOTAL),
            ("service", "boxoffice"),
            ("span_kind", "SPAN_KIND_SERVER"),
            ("span_name", "GET /events/{id}/"),
            ("status_code", "STATUS_CODE_OK"),
        ]),
        Some(1.0)
    );
}

#[test]
fn span_metrics_series_are_bounded() {
    let mut options = TracePipelineOptions::default();
    options.span_metrics.max_series = 2;
    let harness = harness(options, None);
    let spans = (0..5u8)
        .map(|index| {
            let mut one = span(trace_id(70), index + 1, None, 5, StatusCode::Ok);
            one.name = format!("task-{index}");
            one
        })
        .collect();
    harness.pipeline.push(vec![batch("celery", spans)]).unwrap();
    let stats = harness.pipeline.stats();
    assert_eq!((stats.span_metrics_series, stats.span_metrics_refused_spans), (2, 3));
}
