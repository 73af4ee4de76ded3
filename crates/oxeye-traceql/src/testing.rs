//! Test support: an in-memory trace store and traces shaped like the seeds' workload (a Django box office
//! with psycopg and Redis calls, a checkout that fails inside `ticket.checkout > ticket.check_eligibility >
//! eligibility.check_membership`, a slow listing, a Celery task across two services, a Stripe webhook with a
//! link, and a trace whose root has not arrived).

use std::collections::HashMap;
use std::sync::RwLock;

use oxeye_model::storage::StorageError;
use oxeye_model::traces::{
    Attribute, AttributeValue, Resource, ResourceSpans, Scope, ScopeSpans, Span, SpanEvent, SpanKind, SpanLink,
    StatusCode, Trace, TraceId, TracePushSummary, TraceReader, TraceScanHints, TraceWriter, find_attribute,
};

/// A trace store in memory, for tests and benchmarks: pushes merge spans into traces by id; scans visit
/// traces newest first (by earliest span start) and skip traces that cannot meet the hints.
#[derive(Debug, Default)]
pub struct MemoryTraceStore {
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    traces: Vec<Trace>,
    by_id: HashMap<TraceId, usize>,
    /// `(earliest span start, latest span start, index)`, newest first; rebuilt after inserts.
    newest_first: Vec<(u64, u64, usize)>,
    sorted: bool,
}

impl Inner {
    fn sort(&mut self) {
        if !self.sorted {
            self.newest_first = self
                .traces
                .iter()
                .enumerate()
                .map(|(index, trace)| {
                    let latest = trace.spans().map(|(_, span)| span.start_time_unix_nano).max().unwrap_or(0);
                    (trace_start(trace), latest, index)
                })
                .collect();
            self.newest_first.sort_by_key(|(start, _, _)| std::cmp::Reverse(*start));
            self.sorted = true;
        }
    }
}

impl MemoryTraceStore {
    /// A store holding `traces`.
    pub fn with_traces(traces: Vec<Trace>) -> Self {
        let store = MemoryTraceStore::default();
        for trace in traces {
            store.insert(trace);
        }
        store
    }

    /// Adds a trace, merging with a stored one of the same id.
    pub fn insert(&self, trace: Trace) {
        let mut inner = self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.sorted = false;
        match inner.by_id.get(&trace.trace_id).copied() {
            Some(index) => {
                if let Some(stored) = inner.traces.get_mut(index) {
                    stored.resource_spans.extend(trace.resource_spans);
                }
            }
            None => {
                let index = inner.traces.len();
                inner.by_id.insert(trace.trace_id, index);
                inner.traces.push(trace);
            }
        }
    }

    /// Spans stored.
    pub fn span_count(&self) -> usize {
        let inner = self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.traces.iter().map(|trace| trace.spans().count()).sum()
    }
}

fn trace_start(trace: &Trace) -> u64 {
    trace.spans().map(|(_, span)| span.start_time_unix_nano).min().unwrap_or(0)
}

/// Whether `trace` can match a search with `hints` (every condition present holds for some span).
pub fn trace_meets_hints(trace: &Trace, hints: &TraceScanHints) -> bool {
    let spans = || trace.spans();
    if let Some(service) = &hints.service_name
        && !spans().any(|(resource, _)| resource.service_name() == Some(service.as_str()))
    {
        return false;
    }
    if let Some(name) = &hints.span_name
        && !spans().any(|(_, span)| span.name == *name)
    {
        return false;
    }
    if let Some(minimum) = hints.min_span_duration_nanos
        && !spans().any(|(_, span)| span.duration_nanos() >= minimum)
    {
        return false;
    }
    if hints.has_error && !spans().any(|(_, span)| span.status_code == StatusCode::Error) {
        return false;
    }
    hints.string_attributes.iter().all(|(key, value)| {
        spans().any(|(resource, span)| {
            let is_value = |found: Option<&AttributeValue>| found.and_then(AttributeValue::as_str) == Some(value);
            is_value(find_attribute(&span.attributes, key)) || is_value(find_attribute(&resource.attributes, key))
        })
    })
}

impl TraceReader for MemoryTraceStore {
    fn trace_by_id(&self, trace_id: &TraceId, window: Option<(u64, u64)>) -> Result<Option<Trace>, StorageError> {
        let inner = self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(trace) = inner.by_id.get(trace_id).and_then(|index| inner.traces.get(*index)) else {
            return Ok(None);
        };
        let Some((start, end)) = window else {
            return Ok(Some(trace.clone()));
        };
        let mut windowed = trace.clone();
        for batch in &mut windowed.resource_spans {
            for scope_spans in &mut batch.scope_spans {
                scope_spans.spans.retain(|span| (start..end).contains(&span.start_time_unix_nano));
            }
        }
        let has_spans = windowed.spans().next().is_some();
        Ok(has_spans.then_some(windowed))
    }

    fn scan_traces(
        &self,
        start_unix_nano: u64,
        end_unix_nano: u64,
        hints: &TraceScanHints,
        visit: &mut dyn FnMut(&Trace) -> bool,
    ) -> Result<(), StorageError> {
        let needs_sort = !self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner()).sorted;
        if needs_sort {
            self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner()).sort();
        }
        let inner = self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let window = start_unix_nano..end_unix_nano;
        // Skip the traces starting after the window without looking at them.
        let first = inner.newest_first.partition_point(|(earliest, _, _)| *earliest >= end_unix_nano);
        for (earliest, latest, index) in inner.newest_first.iter().skip(first) {
            if *latest < start_unix_nano {
                continue;
            }
            let Some(trace) = inner.traces.get(*index) else {
                continue;
            };
            let in_window =
                window.contains(earliest) || trace.spans().any(|(_, span)| window.contains(&span.start_time_unix_nano));
            if in_window && trace_meets_hints(trace, hints) && !visit(trace) {
                break;
            }
        }
        Ok(())
    }
}

impl TraceWriter for MemoryTraceStore {
    fn push(&self, batches: Vec<ResourceSpans>) -> Result<TracePushSummary, StorageError> {
        let mut summary = TracePushSummary::default();
        for batch in batches {
            for scope_spans in batch.scope_spans {
                for span in scope_spans.spans {
                    summary.accepted_spans += 1;
                    self.insert(Trace {
                        trace_id: span.trace_id,
                        resource_spans: vec![ResourceSpans {
                            resource: batch.resource.clone(),
                            scope_spans: vec![ScopeSpans {
                                scope: scope_spans.scope.clone(),
                                spans: vec![span],
                                schema_url: String::new(),
                            }],
                            schema_url: String::new(),
                        }],
                    });
                }
            }
        }
        Ok(summary)
    }

    fn drop_traces(&self, trace_ids: &[TraceId]) -> Result<(), StorageError> {
        let mut inner = self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let kept: Vec<Trace> = std::mem::take(&mut inner.traces)
            .into_iter()
            .filter(|trace| !trace_ids.contains(&trace.trace_id))
            .collect();
        inner.by_id = kept.iter().enumerate().map(|(index, trace)| (trace.trace_id, index)).collect();
        inner.traces = kept;
        inner.sorted = false;
        Ok(())
    }
}

const MS: u64 = 1_000_000;

/// The seed-shaped trace id number `n` (`n` in the last byte, `0x5e` in the first).
pub fn seed_trace_id(n: u8) -> TraceId {
    let mut id = [0u8; 16];
    id[0] = 0x5e;
    id[15] = n;
    id
}

struct SpanSpec<'a> {
    id: u8,
    parent: Option<u8>,
    name: &'a str,
    kind: SpanKind,
    start_ms: u64,
    duration_ms: u64,
    status: StatusCode,
    attributes: Vec<Attribute>,
}

fn span(trace: u8, base: u64, spec: SpanSpec<'_>) -> Span {
    let start = base + spec.start_ms * MS;
    Span {
        trace_id: seed_trace_id(trace),
        span_id: [trace, 0, 0, 0, 0, 0, 0, spec.id],
        parent_span_id: spec.parent.map(|parent| [trace, 0, 0, 0, 0, 0, 0, parent]),
        name: spec.name.to_string(),
        kind: spec.kind,
        start_time_unix_nano: start,
        end_time_unix_nano: start + spec.duration_ms * MS,
        attributes: spec.attributes,
        status_code: spec.status,
        ..Span::default()
    }
}

fn resource(service: &str) -> Resource {
    Resource {
        attributes: vec![
            Attribute::string("service.name", service),
            Attribute::string("deployment.environment", "dev"),
        ],
        dropped_attributes_count: 0,
    }
}

fn batch(service: &str, scope: &str, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: resource(service),
        scope_spans: vec![ScopeSpans {
            scope: Scope { name: scope.to_string(), version: "0.48b0".to_string(), ..Scope::default() },
            spans,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }
}

fn int(key: &str, value: i64) -> Attribute {
    Attribute { key: key.to_string(), value: AttributeValue::Int(value) }
}

fn spec<'a>(
    id: u8,
    parent: Option<u8>,
    name: &'a str,
    kind: SpanKind,
    start_ms: u64,
    duration_ms: u64,
) -> SpanSpec<'a> {
    SpanSpec { id, parent, name, kind, start_ms, duration_ms, status: StatusCode::Unset, attributes: Vec::new() }
}

/// Six traces starting one second apart from `base_unix_nano`:
///
/// 1. `GET /events/{id}/` (boxoffice, 120 ms, 200) with `SELECT events` (psycopg) and a Redis `GET`.
/// 2. `POST /tickets/checkout/` (500, error) ▸ `ticket.checkout` (error, `exception` event) ▸
///    `ticket.check_eligibility` ▸ `eligibility.check_membership` ▸ `SELECT members`.
/// 3. `GET /events/` taking 2.5 s, its `SELECT events` 2.3 s.
/// 4. `POST /tickets/` (boxoffice) ▸ `send_confirmation_email send` (producer) ▸
///    `run/send_confirmation_email` (consumer, service `boxoffice-worker`).
/// 5. `POST /webhooks/stripe/` ▸ `stripe.webhook.handle` with a link to trace 2.
/// 6. Only `ticket.checkout` whose parent never arrived (root not received).
pub fn seed_traces(base_unix_nano: u64) -> Vec<Trace> {
    use SpanKind::*;
    let at = |n: u64| base_unix_nano + n * 1_000 * MS;
    let http = |method: &str, route: &str, status: i64, request: &str| {
        vec![
            Attribute::string("http.method", method),
            Attribute::string("http.route", route),
            int("http.status_code", status),
            Attribute::string("request_id", request),
        ]
    };
    let db = |system: &str, statement: &str| {
        vec![Attribute::string("db.system", system), Attribute::string("db.statement", statement)]
    };

    let trace1 = Trace {
        trace_id: seed_trace_id(1),
        resource_spans: vec![
            batch(
                "boxoffice",
                "opentelemetry.instrumentation.django",
                vec![span(
                    1,
                    at(0),
                    SpanSpec {
                        attributes: http("GET", "/events/{id}/", 200, "req-1"),
                        ..spec(1, None, "GET /events/{id}/", Server, 0, 120)
                    },
                )],
            ),
            batch(
                "boxoffice",
                "opentelemetry.instrumentation.psycopg",
                vec![
                    span(
                        1,
                        at(0),
                        SpanSpec {
                            attributes: db("postgresql", "SELECT * FROM events WHERE id = %s"),
                            ..spec(2, Some(1), "SELECT events", Client, 10, 15)
                        },
                    ),
                    span(
                        1,
                        at(0),
                        SpanSpec { attributes: db("redis", "GET event:42"), ..spec(3, Some(1), "GET", Client, 30, 2) },
                    ),
                ],
            ),
        ],
    };

    let mut checkout = span(
        2,
        at(1),
        SpanSpec {
            status: StatusCode::Error,
            attributes: vec![Attribute::string("ticket.tier", "vip"), int("ticket.quantity", 4)],
            ..spec(2, Some(1), "ticket.checkout", Internal, 5, 250)
        },
    );
    checkout.status_message = "PaymentDeclined: card declined".to_string();
    checkout.events = vec![SpanEvent {
        time_unix_nano: at(1) + 200 * MS,
        name: "exception".to_string(),
        attributes: vec![
            Attribute::string("exception.type", "PaymentDeclined"),
            Attribute::string("exception.message", "card declined"),
        ],
        dropped_attributes_count: 0,
    }];
    let mut root2 = span(
        2,
        at(1),
        SpanSpec {
            status: StatusCode::Error,
            attributes: http("POST", "/tickets/checkout/", 500, "req-2"),
            ..spec(1, None, "POST /tickets/checkout/", Server, 0, 300)
        },
    );
    root2.status_message = "Internal Server Error".to_string();
    let trace2 = Trace {
        trace_id: seed_trace_id(2),
        resource_spans: vec![batch(
            "boxoffice",
            "boxoffice",
            vec![
                root2,
                checkout,
                span(2, at(1), spec(3, Some(2), "ticket.check_eligibility", Internal, 10, 60)),
                span(
                    2,
                    at(1),
                    SpanSpec {
                        attributes: vec![Attribute {
                            key: "membership.levels".into(),
                            value: AttributeValue::Array(vec![
                                AttributeValue::String("gold".into()),
                                AttributeValue::String("silver".into()),
                            ]),
                        }],
                        ..spec(4, Some(3), "eligibility.check_membership", Internal, 15, 40)
                    },
                ),
                span(
                    2,
                    at(1),
                    SpanSpec {
                        attributes: db("postgresql", "SELECT * FROM members WHERE user_id = %s"),
                        ..spec(5, Some(4), "SELECT members", Client, 20, 12)
                    },
                ),
            ],
        )],
    };

    let trace3 = Trace {
        trace_id: seed_trace_id(3),
        resource_spans: vec![batch(
            "boxoffice",
            "opentelemetry.instrumentation.django",
            vec![
                span(
                    3,
                    at(2),
                    SpanSpec {
                        attributes: http("GET", "/events/", 200, "req-3"),
                        ..spec(1, None, "GET /events/", Server, 0, 2_500)
                    },
                ),
                span(
                    3,
                    at(2),
                    SpanSpec {
                        attributes: db("postgresql", "SELECT * FROM events"),
                        ..spec(2, Some(1), "SELECT events", Client, 100, 2_300)
                    },
                ),
            ],
        )],
    };

    let trace4 = Trace {
        trace_id: seed_trace_id(4),
        resource_spans: vec![
            batch(
                "boxoffice",
                "opentelemetry.instrumentation.django",
                vec![
                    span(
                        4,
                        at(3),
                        SpanSpec {
                            attributes: http("POST", "/tickets/", 201, "req-4"),
                            ..spec(1, None, "POST /tickets/", Server, 0, 90)
                        },
                    ),
                    span(
                        4,
                        at(3),
                        SpanSpec {
                            attributes: vec![Attribute::string("celery.task_name", "send_confirmation_email")],
                            ..spec(2, Some(1), "send_confirmation_email send", Producer, 50, 5)
                        },
                    ),
                ],
            ),
            batch(
                "boxoffice-worker",
                "opentelemetry.instrumentation.celery",
                vec![span(
                    4,
                    at(3),
                    SpanSpec {
                        attributes: vec![
                            Attribute::string("celery.task_name", "send_confirmation_email"),
                            Attribute::string("celery.state", "SUCCESS"),
                        ],
                        ..spec(3, Some(2), "run/send_confirmation_email", Consumer, 200, 400)
                    },
                )],
            ),
        ],
    };

    let mut handle = span(
        5,
        at(4),
        SpanSpec {
            attributes: vec![Attribute::string("stripe.event_type", "payment_intent.succeeded")],
            ..spec(2, Some(1), "stripe.webhook.handle", Internal, 5, 60)
        },
    );
    handle.links = vec![SpanLink {
        trace_id: seed_trace_id(2),
        span_id: [2, 0, 0, 0, 0, 0, 0, 1],
        attributes: vec![Attribute::string("link.reason", "retry")],
        ..SpanLink::default()
    }];
    let trace5 = Trace {
        trace_id: seed_trace_id(5),
        resource_spans: vec![batch(
            "boxoffice",
            "boxoffice",
            vec![
                span(
                    5,
                    at(4),
                    SpanSpec {
                        attributes: http("POST", "/webhooks/stripe/", 200, "req-5"),
                        ..spec(1, None, "POST /webhooks/stripe/", Server, 0, 80)
                    },
                ),
                handle,
            ],
        )],
    };

    let trace6 = Trace {
        trace_id: seed_trace_id(6),
        resource_spans: vec![batch(
            "boxoffice",
            "boxoffice",
            vec![span(
                6,
                at(5),
                SpanSpec {
                    attributes: vec![Attribute::string("ticket.tier", "standard")],
                    ..spec(2, Some(1), "ticket.checkout", Internal, 0, 30)
                },
            )],
        )],
    };

    vec![trace1, trace2, trace3, trace4, trace5, trace6]
}

/// A deterministic pseudo-random trace number `number` starting at `start_unix_nano`, shaped like the seed
/// traffic (a Django request with 2–8 child spans over a few routes and two services; about 2% errors and
/// 1% slower than 2 s), for benchmarks of search over many traces.
pub fn synthetic_trace(number: u64, start_unix_nano: u64) -> Trace {
    let mut state = number.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xdead_beef;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut trace_id = [0u8; 16];
    trace_id[..8].copy_from_slice(&number.to_be_bytes());
    trace_id[8..].copy_from_slice(&next().to_be_bytes());
    let routes = ["/events/", "/events/{id}/", "/tickets/checkout/", "/tickets/", "/webhooks/stripe/", "/accounts/me/"];
    let route = routes[(next() % routes.len() as u64) as usize];
    let is_error = next() % 50 == 0;
    let is_slow = next() % 100 == 0;
    let root_duration_ms = if is_slow { 2_000 + next() % 3_000 } else { 5 + next() % 300 };
    let span_id = |index: u64| {
        let mut id = [0u8; 8];
        id.copy_from_slice(&(number.wrapping_mul(16).wrapping_add(index + 1)).to_be_bytes());
        id
    };
    let mut root = Span {
        trace_id,
        span_id: span_id(0),
        name: format!("GET {route}"),
        kind: SpanKind::Server,
        start_time_unix_nano: start_unix_nano,
        end_time_unix_nano: start_unix_nano + root_duration_ms * MS,
        attributes: vec![
            Attribute::string("http.method", "GET"),
            Attribute::string("http.route", route),
            int("http.status_code", if is_error { 500 } else { 200 }),
            Attribute::string("request_id", format!("req-{number}")),
        ],
        ..Span::default()
    };
    if is_error {
        root.status_code = StatusCode::Error;
    }
    let children = 2 + next() % 7;
    let mut spans = vec![root];
    for index in 1..=children {
        let (name, system) = match next() % 3 {
            0 => ("SELECT events", "postgresql"),
            1 => ("GET", "redis"),
            _ => ("ticket.check_eligibility", "internal"),
        };
        let child_start = start_unix_nano + (index * root_duration_ms * MS) / (children + 2);
        spans.push(Span {
            trace_id,
            span_id: span_id(index),
            parent_span_id: Some(span_id(0)),
            name: name.to_string(),
            kind: if system == "internal" { SpanKind::Internal } else { SpanKind::Client },
            start_time_unix_nano: child_start,
            end_time_unix_nano: child_start + (root_duration_ms * MS) / (children + 2),
            attributes: vec![Attribute::string("db.system", system)],
            ..Span::default()
        });
    }
    let service = if next() % 4 == 0 { "boxoffice-worker" } else { "boxoffice" };
    Trace { trace_id, resource_spans: vec![batch(service, "opentelemetry.instrumentation.django", spans)] }
}
