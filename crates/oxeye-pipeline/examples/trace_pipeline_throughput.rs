//! Measures the trace pipeline (span redaction, span metrics, tail sampling) on seed-shaped traces, one core.
//!
//! `CARGO_TARGET_DIR=/work/target-tracepipe cargo run --release -p oxeye-pipeline --example trace_pipeline_throughput`
//!
//! Traces look like the boxoffice app's: a Django server span (`GET /api/events/{id}/checkout/`) over
//! `ticket.checkout > ticket.check_eligibility > eligibility.check_membership`, two psycopg queries, a Redis
//! call and a Celery publish: 8 spans, 3–9 attributes each, 1% errors (with an exception event), 0.5% slow
//! (2.5 s). They are pushed in OTLP-sized requests of 512 spans through a [`TracePipeline`] with the production
//! settings (rate 0.1, wait 10 s, span metrics on, default redaction) in front of a store that only counts, so
//! the figure is the pipeline's own cost. A manual clock advances 5.12 ms per request (100,000 spans per
//! simulated second) and the pipeline ticks once per simulated second, so traces are decided and span metrics
//! flushed as in production. Span generation is not timed; throughput is reported per CPU second of this
//! process while pushing (and per wall second).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use oxeye_model::storage::{Appender, CommitSummary, MetricsStorage, Querier, Series, SeriesExemplars, StorageError};
use oxeye_model::traces::{
    Attribute, AttributeValue, Resource, ResourceSpans, Scope, ScopeSpans, Span, SpanEvent, SpanKind, StatusCode,
    TraceId, TracePushSummary, TraceWriter,
};
use oxeye_model::{Exemplar, Labels, Matcher, MetricMetadata, Sample};
use oxeye_pipeline::Redactor;
use oxeye_pipeline::traces::{ManualClock, TracePipeline, TracePipelineOptions};

const SPANS_PER_TRACE: usize = 8;
const TRACES_PER_REQUEST: usize = 64;
const REQUESTS_PER_ROUND: usize = 400;
const ROUNDS: usize = 8;
const START_MS: u64 = 1_700_000_000_000;

#[derive(Default)]
struct CountingStore {
    spans: AtomicU64,
    dropped_traces: AtomicU64,
}

impl TraceWriter for CountingStore {
    fn push(&self, batches: Vec<ResourceSpans>) -> Result<TracePushSummary, StorageError> {
        let accepted_spans: u64 = batches.iter().map(|batch| batch.spans().count() as u64).sum();
        self.spans.fetch_add(accepted_spans, Ordering::Relaxed);
        Ok(TracePushSummary { accepted_spans, ..TracePushSummary::default() })
    }

    fn drop_traces(&self, trace_ids: &[TraceId]) -> Result<(), StorageError> {
        self.dropped_traces.fetch_add(trace_ids.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

#[derive(Default)]
struct CountingMetrics {
    samples: Arc<AtomicU64>,
}

struct CountingAppender {
    samples: Arc<AtomicU64>,
    pending: u64,
}

impl Appender for CountingAppender {
    fn append(&mut self, _: &Labels, _: Sample) -> Result<(), StorageError> {
        self.pending += 1;
        Ok(())
    }
    fn append_exemplar(&mut self, _: &Labels, _: Exemplar) -> Result<(), StorageError> {
        Ok(())
    }
    fn update_metadata(&mut self, _: &str, _: MetricMetadata) {}
    fn commit(self: Box<Self>) -> Result<CommitSummary, StorageError> {
        self.samples.fetch_add(self.pending, Ordering::Relaxed);
        Ok(CommitSummary { samples: self.pending, ..CommitSummary::default() })
    }
    fn rollback(self: Box<Self>) {}
}

impl Querier for CountingMetrics {
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

impl MetricsStorage for CountingMetrics {
    fn appender(&self) -> Box<dyn Appender> {
        Box::new(CountingAppender { samples: Arc::clone(&self.samples), pending: 0 })
    }
    fn metadata(&self, _: Option<&str>, _: Option<usize>) -> Vec<(String, MetricMetadata)> {
        Vec::new()
    }
    fn exemplars(&self, _: i64, _: i64, _: &[Vec<Matcher>]) -> Result<Vec<SeriesExemplars>, StorageError> {
        Ok(Vec::new())
    }
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut mixed = *state;
    mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    mixed ^ (mixed >> 31)
}

fn text(key: &str, value: impl Into<String>) -> Attribute {
    Attribute::string(key, value)
}

fn int(key: &str, value: i64) -> Attribute {
    Attribute { key: key.to_string(), value: AttributeValue::Int(value) }
}

/// One boxoffice checkout trace starting at `start_ns`.
fn trace(random: &mut u64, index: u64, start_ns: u64) -> Vec<Span> {
    let mut trace_id = [0u8; 16];
    trace_id[..8].copy_from_slice(&splitmix(random).to_le_bytes());
    trace_id[8..].copy_from_slice(&splitmix(random).to_le_bytes());
    let is_error = index % 100 == 7;
    let is_slow = index % 200 == 3;
    let root_ns: u64 = if is_slow { 2_500_000_000 } else { 40_000_000 + (index % 50) * 1_000_000 };
    let ids: Vec<[u8; 8]> = (0..SPANS_PER_TRACE).map(|_| splitmix(random).to_le_bytes()).collect();
    let event_id = (index % 13) as i64;
    let user_id = format!("6b1f0c3e-8d2a-4c57-9e4f-{:012x}", index % 997);
    let span =
        |position: usize, parent: Option<usize>, name: &str, kind: SpanKind, offset_ns: u64, length_ns: u64| Span {
            trace_id,
            span_id: ids[position],
            parent_span_id: parent.map(|parent| ids[parent]),
            name: name.to_string(),
            kind,
            start_time_unix_nano: start_ns + offset_ns,
            end_time_unix_nano: start_ns + offset_ns + length_ns,
            flags: 1,
            ..Span::default()
        };
    let mut root = span(0, None, "GET /api/events/{id}/checkout/", SpanKind::Server, 0, root_ns);
    root.attributes = vec![
        text("http.method", "GET"),
        text("http.route", "api/events/<uuid:event_id>/checkout/"),
        text("http.target", format!("/api/events/{event_id}/checkout/")),
        text("http.scheme", "http"),
        int("http.status_code", if is_error { 500 } else { 200 }),
        text("net.peer.ip", "10.0.3.17"),
        text("request_id", format!("88d89450-4f2b-4c1e-a7d3-{index:012x}")),
        text("http.user_agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"),
        text("user.id", user_id.clone()),
    ];
    let mut checkout = span(1, Some(0), "ticket.checkout", SpanKind::Internal, 2_000_000, root_ns - 4_000_000);
    checkout.attributes = vec![text("user.id", user_id), int("event.id", event_id), text("ticket.tier", "vip")];
    let mut eligibility = span(2, Some(1), "ticket.check_eligibility", SpanKind::Internal, 3_000_000, 8_000_000);
    eligibility.attributes = vec![int("event.id", event_id), text("eligibility.policy", "members_only")];
    let mut membership = span(3, Some(2), "eligibility.check_membership", SpanKind::Internal, 3_500_000, 5_000_000);
    membership.attributes = vec![text("membership.level", "gold"), text("organization.slug", "revel-club")];
    let query = |position: usize, offset_ns: u64, statement: &str| {
        let mut query = span(position, Some(1), "SELECT boxoffice", SpanKind::Client, offset_ns, 1_200_000);
        query.attributes = vec![
            text("db.system", "postgresql"),
            text("db.name", "boxoffice"),
            text("db.user", "boxoffice"),
            text("db.statement", statement),
            text("net.peer.name", "postgres"),
            int("net.peer.port", 5432),
        ];
        query
    };
    let select_event = query(
        4,
        12_000_000,
        "SELECT \"events_event\".\"id\", \"events_event\".\"name\" FROM \"events_event\" WHERE \"events_event\".\"id\" = %s",
    );
    let select_tickets =
        query(5, 15_000_000, "SELECT COUNT(*) FROM \"tickets_ticket\" WHERE \"tickets_ticket\".\"event_id\" = %s");
    let mut redis = span(6, Some(1), "GET", SpanKind::Client, 18_000_000, 300_000);
    redis.attributes = vec![
        text("db.system", "redis"),
        text("db.statement", "GET session:8f3a"),
        text("net.peer.name", "redis"),
        int("net.peer.port", 6379),
        int("db.redis.database_index", 0),
    ];
    let mut publish = span(7, Some(1), "apply_async/send_confirmation", SpanKind::Producer, 20_000_000, 900_000);
    publish.attributes = vec![
        text("celery.action", "apply_async"),
        text("celery.task_name", "boxoffice.tasks.send_confirmation"),
        text("messaging.system", "redis"),
    ];
    if is_error {
        checkout.status_code = StatusCode::Error;
        checkout.status_message = "PaymentDeclined: card declined".to_string();
        checkout.events = vec![SpanEvent {
            time_unix_nano: start_ns + 30_000_000,
            name: "exception".to_string(),
            attributes: vec![
                text("exception.type", "boxoffice.payments.PaymentDeclined"),
                text("exception.message", "card declined"),
                text(
                    "exception.stacktrace",
                    "Traceback (most recent call last):\n  File \"views.py\", line 88, in checkout\n    raise PaymentDeclined()",
                ),
            ],
            dropped_attributes_count: 0,
        }];
        root.status_code = StatusCode::Error;
    }
    vec![root, checkout, eligibility, membership, select_event, select_tickets, redis, publish]
}

fn request(random: &mut u64, first_trace: u64, start_ns: u64) -> ResourceSpans {
    let spans = (0..TRACES_PER_REQUEST as u64)
        .flat_map(|offset| trace(random, first_trace + offset, start_ns + offset * 1_000_000))
        .collect();
    ResourceSpans {
        resource: Resource {
            attributes: vec![
                text("service.name", "boxoffice"),
                text("service.version", "2026.11.3"),
                text("deployment.environment", "production"),
                text("telemetry.sdk.language", "python"),
                text("telemetry.sdk.name", "opentelemetry"),
                text("telemetry.sdk.version", "1.38.0"),
                text("host.name", "web-7f9c"),
            ],
            dropped_attributes_count: 0,
        },
        scope_spans: vec![ScopeSpans {
            scope: Scope { name: "opentelemetry.instrumentation.django".to_string(), ..Scope::default() },
            spans,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }
}

/// CPU time this process has used, from `/proc/self/stat` (utime + stime, clock ticks of 10 ms); `None` off
/// Linux.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let user_ticks: f64 = fields.get(11)?.parse().ok()?;
    let system_ticks: f64 = fields.get(12)?.parse().ok()?;
    Some((user_ticks + system_ticks) / 100.0)
}

fn main() {
    let mut options = TracePipelineOptions::default();
    options.sampling.rate = 0.1;
    let store = Arc::new(CountingStore::default());
    let metrics = Arc::new(CountingMetrics::default());
    let clock = Arc::new(ManualClock::new(START_MS));
    let pipeline = match TracePipeline::new(
        options,
        store.clone(),
        Some(metrics.clone()),
        Some(
            Redactor::new(oxeye_pipeline::RedactionOptions::default())
                .unwrap_or_else(|error| panic!("default rules: {error}")),
        ),
        clock.clone(),
    ) {
        Ok(pipeline) => pipeline,
        Err(error) => {
            eprintln!("cannot build the pipeline: {error}");
            std::process::exit(1);
        }
    };
    let mut random = 0x5eed_u64;
    let mut next_trace = 0u64;
    let request_interval = Duration::from_micros(5_120);
    let mut simulated_since_tick = Duration::ZERO;
    let mut cpu_seconds = 0.0;
    let mut wall = Duration::ZERO;
    let mut pushed_spans = 0u64;
    for _ in 0..ROUNDS {
        let requests: Vec<ResourceSpans> = (0..REQUESTS_PER_ROUND)
            .map(|_| {
                let now_ns = clock_now_ns(&clock);
                let batch = request(&mut random, next_trace, now_ns);
                next_trace += TRACES_PER_REQUEST as u64;
                batch
            })
            .collect();
        pushed_spans += (REQUESTS_PER_ROUND * TRACES_PER_REQUEST * SPANS_PER_TRACE) as u64;
        let cpu_started = process_cpu_seconds();
        let started = Instant::now();
        for batch in requests {
            if let Err(error) = pipeline.push(vec![batch]) {
                eprintln!("push failed: {error}");
                std::process::exit(1);
            }
            clock.advance(request_interval);
            simulated_since_tick += request_interval;
            if simulated_since_tick >= Duration::from_secs(1) {
                simulated_since_tick = Duration::ZERO;
                pipeline.tick();
            }
        }
        wall += started.elapsed();
        if let (Some(before), Some(after)) = (cpu_started, process_cpu_seconds()) {
            cpu_seconds += after - before;
        }
    }
    clock.advance(Duration::from_secs(11));
    pipeline.tick();
    let stats = pipeline.stats();
    println!(
        "{pushed_spans} spans ({} traces) in {:.2} s wall, {cpu_seconds:.2} CPU s: {:.0} spans/s per CPU second, {:.0} spans/s wall ({:.0} ns per span)",
        next_trace,
        wall.as_secs_f64(),
        pushed_spans as f64 / cpu_seconds,
        pushed_spans as f64 / wall.as_secs_f64(),
        cpu_seconds * 1e9 / pushed_spans as f64,
    );
    println!(
        "kept: {} error, {} slow, {} by rate; dropped {} (removed from the store: {}); span metrics series {}, samples written {}; redacted values {}",
        stats.sampler.kept_error,
        stats.sampler.kept_slow,
        stats.sampler.kept_rate,
        stats.sampler.dropped,
        store.dropped_traces.load(Ordering::Relaxed),
        stats.span_metrics_series,
        metrics.samples.load(Ordering::Relaxed),
        stats.redacted_values,
    );
}

fn clock_now_ns(clock: &ManualClock) -> u64 {
    use oxeye_pipeline::traces::Clock;
    clock.now_unix_ms() * 1_000_000
}
