//! The trace benchmark (issue 5): OTLP/HTTP span ingest into a running oxeye, then trace-by-id latency.
//!
//! ```text
//! oxeye-bench traces --url http://127.0.0.1:9090 --pid PID --spans 10000000 --data-dir DATA/traces
//! ```
//!
//! Traces are shaped like the seeds' boxoffice service: a Django server span (`GET api/events/{id}/`,
//! `POST checkout/{event_id}/`...) > `ticket.checkout` > `ticket.check_eligibility` >
//! `eligibility.check_membership`, psycopg `SELECT`/`INSERT` client spans, a Redis `GET`, one trace in 20 with
//! an error span (`stripe.webhook.handle` with an exception event), each span with the attributes the Python
//! instrumentations set (`http.*`, `db.*`, `net.peer.*`, `request_id`, `event_id`...). Requests hold
//! `--spans-per-request` spans (the Python BatchSpanProcessor exports 512 at most).
//!
//! Reported: spans/s of wall time, spans per **server CPU second** (from `/proc/<pid>/stat`, so the load
//! generator sharing the machine does not count), stored bytes per span (block files under `--data-dir`
//! divided by `oxeye_trace_block_spans`; spans still in the head are only in the WAL and are left out), and
//! by-id latency percentiles over `--lookups` random stored traces, sequentially, each a full
//! `GET /api/traces/<id>` (JSON rendering included).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use oxeye_proto::otlp::collector::ExportTraceServiceRequest;
use oxeye_proto::otlp::common::{AnyValue, InstrumentationScope, KeyValue, any_value};
use oxeye_proto::otlp::resource::Resource;
use oxeye_proto::otlp::trace::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message;

use crate::rng::Rng;

/// Options of `oxeye-bench traces`.
#[derive(Debug, Clone, clap::Args)]
pub struct TracesArgs {
    /// oxeye's main URL (OTLP/HTTP `/v1/traces` and the Tempo API are both there).
    #[arg(long)]
    pub url: String,
    /// oxeye's pid, for its CPU time.
    #[arg(long)]
    pub pid: u32,
    /// Spans to send.
    #[arg(long, default_value_t = 1_000_000)]
    pub spans: u64,
    /// Spans per OTLP request.
    #[arg(long, default_value_t = 512)]
    pub spans_per_request: usize,
    /// Concurrent requests.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// By-id lookups after ingest.
    #[arg(long, default_value_t = 2_000)]
    pub lookups: usize,
    /// The trace store directory (`data_dir/traces`), for stored bytes.
    #[arg(long)]
    pub data_dir: std::path::PathBuf,
    /// Generator seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

fn text(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }) }
}

fn integer(key: &str, value: i64) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(any_value::Value::IntValue(value)) }) }
}

const ROUTES: &[(&str, &str)] = &[
    ("GET", "api/events/<int:event_id>/"),
    ("GET", "api/events/"),
    ("POST", "checkout/<str:event_id>/"),
    ("POST", "api/stripe/webhook/"),
    ("GET", "api/organizations/<int:organization_id>/"),
];

/// One seed-shaped trace (5 to 9 spans) appended to the per-scope span lists; returns its id.
fn push_trace(
    rng: &mut Rng,
    start_ns: u64,
    django: &mut Vec<Span>,
    custom: &mut Vec<Span>,
    db: &mut Vec<Span>,
) -> [u8; 16] {
    let mut trace_id = [0u8; 16];
    trace_id[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
    trace_id[8..].copy_from_slice(&rng.next_u64().to_le_bytes());
    let mut next_span_id = || {
        let mut id = rng.next_u64();
        if id == 0 {
            id = 1;
        }
        id.to_le_bytes().to_vec()
    };
    let (method, route) = ROUTES[(start_ns % ROUTES.len() as u64) as usize];
    let event_id = 1000 + start_ns % 5000;
    let request_id = format!("{:016x}{:016x}", start_ns.wrapping_mul(0x9e37_79b9_7f4a_7c15), start_ns);
    let root_id = next_span_id();
    let duration = 20_000_000 + start_ns % 180_000_000;
    let is_error = start_ns.is_multiple_of(20);
    let status_code = if is_error { 500 } else { 200 };
    django.push(Span {
        trace_id: trace_id.to_vec(),
        span_id: root_id.clone(),
        name: format!("{method} {route}"),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: start_ns,
        end_time_unix_nano: start_ns + duration,
        attributes: vec![
            text("http.method", method),
            text("http.server_name", "boxoffice"),
            text("http.scheme", "http"),
            text("net.host.port", "8000"),
            text("http.host", "boxoffice.internal:8000"),
            text("http.target", route.replace("<int:event_id>", &event_id.to_string())),
            text("net.peer.ip", "10.0.3.17"),
            text("http.user_agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"),
            text("http.flavor", "1.1"),
            text("http.route", route),
            integer("http.status_code", status_code),
        ],
        status: is_error.then(|| Status { message: String::new(), code: 2 }),
        ..Span::default()
    });
    let checkout_id = next_span_id();
    custom.push(Span {
        trace_id: trace_id.to_vec(),
        span_id: checkout_id.clone(),
        parent_span_id: root_id.clone(),
        name: "ticket.checkout".into(),
        kind: span::SpanKind::Internal as i32,
        start_time_unix_nano: start_ns + 1_000_000,
        end_time_unix_nano: start_ns + duration - 1_000_000,
        attributes: vec![text("request_id", request_id.clone()), integer("event_id", event_id as i64)],
        ..Span::default()
    });
    let eligibility_id = next_span_id();
    custom.push(Span {
        trace_id: trace_id.to_vec(),
        span_id: eligibility_id.clone(),
        parent_span_id: checkout_id.clone(),
        name: "ticket.check_eligibility".into(),
        kind: span::SpanKind::Internal as i32,
        start_time_unix_nano: start_ns + 2_000_000,
        end_time_unix_nano: start_ns + 9_000_000,
        attributes: vec![integer("event_id", event_id as i64)],
        ..Span::default()
    });
    custom.push(Span {
        trace_id: trace_id.to_vec(),
        span_id: next_span_id(),
        parent_span_id: eligibility_id,
        name: "eligibility.check_membership".into(),
        kind: span::SpanKind::Internal as i32,
        start_time_unix_nano: start_ns + 3_000_000,
        end_time_unix_nano: start_ns + 8_000_000,
        attributes: vec![text("membership.tier", if start_ns.is_multiple_of(3) { "gold" } else { "standard" })],
        ..Span::default()
    });
    let queries = 1 + start_ns % 3;
    for query in 0..queries {
        let statement = if query == 0 {
            "SELECT \"events_event\".\"id\", \"events_event\".\"name\" FROM \"events_event\" WHERE \"events_event\".\"id\" = %s"
        } else {
            "INSERT INTO \"tickets_ticket\" (\"event_id\", \"user_id\", \"tier_id\") VALUES (%s, %s, %s)"
        };
        db.push(Span {
            trace_id: trace_id.to_vec(),
            span_id: next_span_id(),
            parent_span_id: checkout_id.clone(),
            name: if query == 0 { "SELECT".into() } else { "INSERT".into() },
            kind: span::SpanKind::Client as i32,
            start_time_unix_nano: start_ns + 10_000_000 + query * 2_000_000,
            end_time_unix_nano: start_ns + 11_000_000 + query * 2_000_000,
            attributes: vec![
                text("db.system", "postgresql"),
                text("db.name", "boxoffice"),
                text("db.user", "boxoffice"),
                text("net.peer.name", "postgres.internal"),
                integer("net.peer.port", 5432),
                text("db.statement", statement),
            ],
            ..Span::default()
        });
    }
    db.push(Span {
        trace_id: trace_id.to_vec(),
        span_id: next_span_id(),
        parent_span_id: root_id.clone(),
        name: "GET".into(),
        kind: span::SpanKind::Client as i32,
        start_time_unix_nano: start_ns + 500_000,
        end_time_unix_nano: start_ns + 700_000,
        attributes: vec![
            text("db.system", "redis"),
            text("db.statement", format!("GET session:{:x}", start_ns % 100_000)),
            text("net.peer.name", "redis.internal"),
            integer("net.peer.port", 6379),
            integer("db.redis.database_index", 0),
        ],
        ..Span::default()
    });
    if is_error {
        custom.push(Span {
            trace_id: trace_id.to_vec(),
            span_id: next_span_id(),
            parent_span_id: root_id,
            name: "stripe.webhook.handle".into(),
            kind: span::SpanKind::Internal as i32,
            start_time_unix_nano: start_ns + 12_000_000,
            end_time_unix_nano: start_ns + 15_000_000,
            attributes: vec![text("stripe.event_type", "checkout.session.completed")],
            events: vec![span::Event {
                time_unix_nano: start_ns + 14_000_000,
                name: "exception".into(),
                attributes: vec![
                    text("exception.type", "stripe.error.SignatureVerificationError"),
                    text("exception.message", "No signatures found matching the expected signature for payload"),
                ],
                dropped_attributes_count: 0,
            }],
            status: Some(Status { message: "signature verification failed".into(), code: 2 }),
            ..Span::default()
        });
    }
    trace_id
}

/// One export request of about `spans_per_request` spans; adds its trace ids to `ids`.
fn build_request(
    rng: &mut Rng,
    clock_ns: &mut u64,
    spans_per_request: usize,
    ids: &mut Vec<[u8; 16]>,
) -> (Vec<u8>, u64) {
    let (mut django, mut custom, mut db) = (Vec::new(), Vec::new(), Vec::new());
    while django.len() + custom.len() + db.len() < spans_per_request {
        *clock_ns += 1_000_000 + rng.below(2_000_000);
        ids.push(push_trace(rng, *clock_ns, &mut django, &mut custom, &mut db));
    }
    let spans = (django.len() + custom.len() + db.len()) as u64;
    let scope = |name: &str, version: &str, spans: Vec<Span>| ScopeSpans {
        scope: Some(InstrumentationScope { name: name.into(), version: version.into(), ..Default::default() }),
        spans,
        schema_url: String::new(),
    };
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    text("telemetry.sdk.language", "python"),
                    text("telemetry.sdk.name", "opentelemetry"),
                    text("telemetry.sdk.version", "1.45.2"),
                    text("service.name", "boxoffice"),
                    text("service.version", "1.4.2"),
                    text("service.instance.id", "a48efe66-8af3-41d8-8568-4a22848a03e6"),
                    text("deployment.environment", "production"),
                ],
                dropped_attributes_count: 0,
            }),
            scope_spans: vec![
                scope("opentelemetry.instrumentation.django", "0.66b2", django),
                scope("boxoffice.tickets", "1.4.2", custom),
                scope("opentelemetry.instrumentation.psycopg", "0.66b2", db),
            ],
            schema_url: String::new(),
        }],
    };
    (request.encode_to_vec(), spans)
}

fn metric_value(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Runs the trace benchmark and prints one JSON line of results.
///
/// # Errors
/// When the server refuses a request or cannot be reached.
pub fn main(args: TracesArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("runtime")?;
    runtime.block_on(run(args))
}

async fn run(args: TracesArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().build().context("building the client")?;
    let url = format!("{}/v1/traces", args.url.trim_end_matches('/'));
    let now_ns = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64;
    // Spans start an hour ago and advance ~2 ms per trace, like a busy service over the last hours.
    let clock = Arc::new(AtomicU64::new(now_ns - 3_600_000_000_000));
    let sent_spans = Arc::new(AtomicU64::new(0));
    let cpu_before = crate::procfs::cpu_seconds(args.pid)?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..args.concurrency {
        let client = client.clone();
        let url = url.clone();
        let clock = clock.clone();
        let sent_spans = sent_spans.clone();
        let target = args.spans;
        let spans_per_request = args.spans_per_request;
        let seed = args.seed.wrapping_mul(1000).wrapping_add(worker as u64);
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(seed);
            let mut ids = Vec::new();
            let mut sample = Vec::new();
            while sent_spans.load(Ordering::Relaxed) < target {
                let mut request_clock = clock.fetch_add(spans_per_request as u64 * 400_000, Ordering::Relaxed);
                let (body, spans) = build_request(&mut rng, &mut request_clock, spans_per_request, &mut ids);
                let response = client
                    .post(&url)
                    .header("Content-Type", "application/x-protobuf")
                    .body(body)
                    .send()
                    .await
                    .context("sending spans")?;
                if !response.status().is_success() {
                    bail!("oxeye answered {} to an export", response.status());
                }
                sent_spans.fetch_add(spans, Ordering::Relaxed);
                // Keep a few ids of every request for the lookups.
                sample.extend(ids.drain(..).step_by(16));
            }
            anyhow::Ok(sample)
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.context("sender task")??);
    }
    let elapsed = started.elapsed();
    let cpu_seconds = crate::procfs::cpu_seconds(args.pid)? - cpu_before;
    let spans = sent_spans.load(Ordering::Relaxed);
    let mut ids: Vec<[u8; 16]> = results.into_iter().flatten().collect();

    let metrics = client.get(format!("{}/metrics", args.url)).send().await?.text().await?;
    let block_spans = metric_value(&metrics, "oxeye_trace_block_spans").unwrap_or(0.0);
    let block_bytes = crate::procfs::tree_size(&args.data_dir.join("blocks")).apparent_bytes as f64;
    let wal_bytes = crate::procfs::tree_size(&args.data_dir.join("wal")).apparent_bytes as f64;

    let mut rng = Rng::new(args.seed ^ 0x5eed);
    let mut latencies = Vec::with_capacity(args.lookups);
    let mut not_found = 0usize;
    for _ in 0..args.lookups.min(ids.len()) {
        let index = rng.below(ids.len() as u64) as usize;
        let trace_id: String = ids.swap_remove(index).iter().map(|byte| format!("{byte:02x}")).collect();
        let lookup_started = Instant::now();
        let response = client.get(format!("{}/api/traces/{trace_id}", args.url)).send().await?;
        let status = response.status();
        let _ = response.bytes().await?;
        latencies.push(lookup_started.elapsed());
        if status != reqwest::StatusCode::OK {
            not_found += 1;
        }
    }
    latencies.sort();
    let result = serde_json::json!({
        "spans": spans,
        "wall_seconds": elapsed.as_secs_f64(),
        "spans_per_second": spans as f64 / elapsed.as_secs_f64(),
        "server_cpu_seconds": cpu_seconds,
        "spans_per_server_cpu_second": spans as f64 / cpu_seconds.max(0.01),
        "block_spans": block_spans,
        "block_bytes": block_bytes,
        "bytes_per_span_in_blocks": if block_spans > 0.0 { block_bytes / block_spans } else { 0.0 },
        "wal_bytes": wal_bytes,
        "lookups": latencies.len(),
        "lookups_not_found": not_found,
        "by_id_p50_ms": percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
        "by_id_p90_ms": percentile(&latencies, 0.90).as_secs_f64() * 1000.0,
        "by_id_p99_ms": percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        "by_id_max_ms": latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
    });
    println!("{result}");
    Ok(())
}
