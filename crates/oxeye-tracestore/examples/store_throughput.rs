//! In-process trace store benchmark: seed-shaped traces pushed straight into a `TraceStore` (no HTTP, no
//! OTLP decoding), then stored bytes per span and trace-by-id latency.
//!
//! ```text
//! cargo run --release -p oxeye-tracestore --example store_throughput -- SPANS [SPANS_PER_PUSH] [LOOKUPS]
//! ```
//!
//! Each trace is a Django server span > `ticket.checkout` > `ticket.check_eligibility` >
//! `eligibility.check_membership`, 1-3 psycopg client spans and a Redis `GET` (7-9 spans, one in 20 with an
//! error span and an exception event), with the attributes the Python instrumentations set. Pushes are of
//! `SPANS_PER_PUSH` spans (default 512, the Python BatchSpanProcessor's export size) from one thread, so
//! every push pays its own WAL fsync. Printed: spans/s of wall time and per CPU second of this process
//! (`/proc/self/stat`, generation of the spans included), bytes of block files per span in blocks, and
//! by-id latency percentiles over random stored traces (model `Trace` returned, no JSON rendering).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use oxeye_model::traces::{
    Attribute, AttributeValue, Resource, ResourceSpans, Scope, ScopeSpans, Span, SpanEvent, SpanKind, StatusCode,
    TraceReader, TraceWriter,
};
use oxeye_tracestore::{TraceStore, TraceStoreOptions};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| fields.get(index).and_then(|field| field.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn text(key: &str, value: impl Into<String>) -> Attribute {
    Attribute::string(key, value)
}

fn integer(key: &str, value: i64) -> Attribute {
    Attribute { key: key.into(), value: AttributeValue::Int(value) }
}

const ROUTES: &[(&str, &str)] = &[
    ("GET", "api/events/<int:event_id>/"),
    ("GET", "api/events/"),
    ("POST", "checkout/<str:event_id>/"),
    ("POST", "api/stripe/webhook/"),
    ("GET", "api/organizations/<int:organization_id>/"),
];

fn span(
    trace_id: [u8; 16],
    rng: &mut Rng,
    parent: Option<[u8; 8]>,
    name: &str,
    kind: SpanKind,
    start: u64,
    end: u64,
) -> Span {
    Span {
        trace_id,
        span_id: (rng.next() | 1).to_le_bytes(),
        parent_span_id: parent,
        name: name.into(),
        kind,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        ..Span::default()
    }
}

/// One trace into the three scopes' span lists; returns its id.
fn push_trace(rng: &mut Rng, start: u64, scopes: &mut [Vec<Span>; 3]) -> [u8; 16] {
    let mut trace_id = [0u8; 16];
    trace_id[..8].copy_from_slice(&rng.next().to_le_bytes());
    trace_id[8..].copy_from_slice(&rng.next().to_le_bytes());
    let (method, route) = ROUTES[(start % ROUTES.len() as u64) as usize];
    let event_id = 1000 + start % 5000;
    let duration = 20_000_000 + start % 180_000_000;
    let is_error = start.is_multiple_of(20);
    let mut root = span(trace_id, rng, None, &format!("{method} {route}"), SpanKind::Server, start, start + duration);
    root.attributes = vec![
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
        integer("http.status_code", if is_error { 500 } else { 200 }),
    ];
    if is_error {
        root.status_code = StatusCode::Error;
    }
    let root_id = root.span_id;
    scopes[0].push(root);
    let mut checkout = span(
        trace_id,
        rng,
        Some(root_id),
        "ticket.checkout",
        SpanKind::Internal,
        start + 1_000_000,
        start + duration - 1_000_000,
    );
    checkout.attributes = vec![
        text("request_id", format!("{:016x}{:016x}", start.wrapping_mul(0x9e37_79b9_7f4a_7c15), start)),
        integer("event_id", event_id as i64),
    ];
    let checkout_id = checkout.span_id;
    scopes[1].push(checkout);
    let mut eligibility = span(
        trace_id,
        rng,
        Some(checkout_id),
        "ticket.check_eligibility",
        SpanKind::Internal,
        start + 2_000_000,
        start + 9_000_000,
    );
    eligibility.attributes = vec![integer("event_id", event_id as i64)];
    let eligibility_id = eligibility.span_id;
    scopes[1].push(eligibility);
    let mut membership = span(
        trace_id,
        rng,
        Some(eligibility_id),
        "eligibility.check_membership",
        SpanKind::Internal,
        start + 3_000_000,
        start + 8_000_000,
    );
    membership.attributes = vec![text("membership.tier", if start.is_multiple_of(3) { "gold" } else { "standard" })];
    scopes[1].push(membership);
    for query in 0..1 + start % 3 {
        let (name, statement) = if query == 0 {
            (
                "SELECT",
                "SELECT \"events_event\".\"id\", \"events_event\".\"name\" FROM \"events_event\" WHERE \"events_event\".\"id\" = %s",
            )
        } else {
            ("INSERT", "INSERT INTO \"tickets_ticket\" (\"event_id\", \"user_id\", \"tier_id\") VALUES (%s, %s, %s)")
        };
        let query_start = start + 10_000_000 + query * 2_000_000;
        let mut database =
            span(trace_id, rng, Some(checkout_id), name, SpanKind::Client, query_start, query_start + 1_000_000);
        database.attributes = vec![
            text("db.system", "postgresql"),
            text("db.name", "boxoffice"),
            text("db.user", "boxoffice"),
            text("net.peer.name", "postgres.internal"),
            integer("net.peer.port", 5432),
            text("db.statement", statement),
        ];
        scopes[2].push(database);
    }
    let mut redis = span(trace_id, rng, Some(root_id), "GET", SpanKind::Client, start + 500_000, start + 700_000);
    redis.attributes = vec![
        text("db.system", "redis"),
        text("db.statement", format!("GET session:{:x}", start % 100_000)),
        text("net.peer.name", "redis.internal"),
        integer("net.peer.port", 6379),
        integer("db.redis.database_index", 0),
    ];
    scopes[2].push(redis);
    if is_error {
        let mut webhook = span(
            trace_id,
            rng,
            Some(root_id),
            "stripe.webhook.handle",
            SpanKind::Internal,
            start + 12_000_000,
            start + 15_000_000,
        );
        webhook.attributes = vec![text("stripe.event_type", "checkout.session.completed")];
        webhook.events = vec![SpanEvent {
            time_unix_nano: start + 14_000_000,
            name: "exception".into(),
            attributes: vec![
                text("exception.type", "stripe.error.SignatureVerificationError"),
                text("exception.message", "No signatures found matching the expected signature for payload"),
            ],
            dropped_attributes_count: 0,
        }];
        webhook.status_code = StatusCode::Error;
        webhook.status_message = "signature verification failed".into();
        scopes[1].push(webhook);
    }
    trace_id
}

fn batch(scopes: [Vec<Span>; 3]) -> ResourceSpans {
    let [django, custom, database] = scopes;
    let scope = |name: &str, version: &str, spans: Vec<Span>| ScopeSpans {
        scope: Scope { name: name.into(), version: version.into(), ..Scope::default() },
        spans,
        schema_url: String::new(),
    };
    ResourceSpans {
        resource: Resource {
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
        },
        scope_spans: vec![
            scope("opentelemetry.instrumentation.django", "0.66b2", django),
            scope("boxoffice.tickets", "1.4.2", custom),
            scope("opentelemetry.instrumentation.psycopg", "0.66b2", database),
        ],
        schema_url: String::new(),
    }
}

fn percentile(sorted: &[Duration], fraction: f64) -> f64 {
    let index = ((sorted.len().max(1) - 1) as f64 * fraction).round() as usize;
    sorted.get(index).map_or(0.0, |latency| latency.as_secs_f64() * 1000.0)
}

fn main() {
    let arguments: Vec<String> = std::env::args().collect();
    let total_spans: u64 = arguments.get(1).and_then(|text| text.parse().ok()).unwrap_or(1_000_000);
    let spans_per_push: usize = arguments.get(2).and_then(|text| text.parse().ok()).unwrap_or(512);
    let lookups: usize = arguments.get(3).and_then(|text| text.parse().ok()).unwrap_or(2_000);
    let directory = std::env::temp_dir().join(format!("oxeye-trace-bench-{}", std::process::id()));
    let store = match TraceStore::open(TraceStoreOptions::new(&directory)) {
        Ok(store) => store,
        Err(error) => {
            eprintln!("cannot open the store: {error}");
            std::process::exit(1);
        }
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_nanos() as u64);
    let mut clock = now - 3_600_000_000_000;
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut sampled_ids = Vec::new();
    let mut pushed = 0u64;
    let cpu_start = cpu_seconds();
    let started = Instant::now();
    while pushed < total_spans {
        let mut scopes: [Vec<Span>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        let mut traces = 0;
        while scopes.iter().map(Vec::len).sum::<usize>() < spans_per_push {
            clock += 1_000_000 + rng.next() % 2_000_000;
            let trace_id = push_trace(&mut rng, clock, &mut scopes);
            if traces % 16 == 0 {
                sampled_ids.push(trace_id);
            }
            traces += 1;
        }
        match store.push(vec![batch(scopes)]) {
            Ok(summary) => pushed += summary.accepted_spans,
            Err(error) => {
                eprintln!("push failed: {error}");
                std::process::exit(1);
            }
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_start;
    let stats = store.stats();
    let mut latencies = Vec::with_capacity(lookups);
    let mut missing = 0;
    for _ in 0..lookups.min(sampled_ids.len()) {
        let index = (rng.next() % sampled_ids.len() as u64) as usize;
        let trace_id = sampled_ids.swap_remove(index);
        let lookup_started = Instant::now();
        let found = store.trace_by_id(&trace_id, None);
        latencies.push(lookup_started.elapsed());
        if !matches!(found, Ok(Some(_))) {
            missing += 1;
        }
    }
    latencies.sort();
    println!(
        "{{\"spans\":{pushed},\"spans_per_push\":{spans_per_push},\"wall_seconds\":{wall:.1},\"spans_per_second\":{:.0},\"cpu_seconds\":{cpu:.1},\"spans_per_cpu_second\":{:.0},\"blocks\":{},\"block_spans\":{},\"block_bytes\":{},\"bytes_per_span_in_blocks\":{:.1},\"head_spans\":{},\"lookups\":{},\"missing\":{missing},\"by_id_p50_ms\":{:.3},\"by_id_p99_ms\":{:.3},\"by_id_max_ms\":{:.3}}}",
        pushed as f64 / wall,
        pushed as f64 / cpu.max(0.01),
        stats.blocks,
        stats.block_spans,
        stats.block_bytes,
        stats.block_bytes as f64 / (stats.block_spans.max(1)) as f64,
        stats.head_spans,
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
    );
    let _ = store.close();
    let _ = std::fs::remove_dir_all(&directory);
}
