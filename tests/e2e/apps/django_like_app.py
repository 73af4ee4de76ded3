"""A stand-in for a Django service instrumented with django-prometheus plus Revel's business metrics.

It uses prometheus_client exactly as django-prometheus does (same metric names, label names and latency buckets)
and serves them with `start_http_server`. Prints "LISTENING <port>" on stdout once serving, then simulates
traffic: every 100 ms one request from a fixed cycle is counted. Some series are fixed at start-up so tests can
assert exact values:

- revel_tickets_sold_total{organization_id="org-1",event_id="evt-1",tier_id="general",payment_method="online"} = 42
- revel_tickets_sold_total{organization_id="org-1",event_id="evt-1",tier_id="general",payment_method="free"} = 7
- revel_events_active{organization_id="org-1"} = 3
- revel_payments_total{organization_id="org-1",status="succeeded",payment_method="online"} = 2, its last
  increment carrying the exemplar {trace_id="4bf92f3577b34da6a3ce929d0e0e4736",span_id="00f067aa0ba902b7"} 1.5
  (exemplars are exposed in the OpenMetrics format only)
- revel_celery_queue_depth{queue="emails",instance="worker-1"} = 12 (its `instance` clashes with the target label)
- django_http_exceptions_total_by_type_total{type=WEIRD_LABEL_VALUE} = 1 (quotes, backslash, newline, non-ASCII)
- revel.http.requests_total{http.route="/api/events/"} = 5 (OpenTelemetry-style dotted names, which
  prometheus_client escapes to underscores unless the scraper asks for `escaping=allow-utf-8`)

Usage: python django_like_app.py [--port PORT]   (0 picks a free port)
"""

from __future__ import annotations

import argparse
import itertools
import signal
import sys
import threading

from prometheus_client import Counter, Gauge, Histogram, start_http_server

# django-prometheus' default latency buckets.
LATENCY_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 25.0, 50.0, 75.0, float("inf"),
)

REQUESTS_BY_METHOD = Counter(
    "django_http_requests_total_by_method", "Count of requests by method.", ["method"]
)
REQUESTS_BY_VIEW = Counter(
    "django_http_requests_total_by_view_transport_method",
    "Count of requests by view, transport, method.",
    ["view", "transport", "method"],
)
RESPONSES_BY_STATUS = Counter(
    "django_http_responses_total_by_status", "Count of responses by status.", ["status"]
)
RESPONSES_BY_STATUS_VIEW = Counter(
    "django_http_responses_total_by_status_view_method",
    "Count of responses by status, view, method.",
    ["status", "view", "method"],
)
LATENCY = Histogram(
    "django_http_requests_latency_seconds_by_view_method",
    "Histogram of request processing time labelled by view.",
    ["view", "method"],
    buckets=LATENCY_BUCKETS,
)
TICKETS_SOLD = Counter(
    "revel_tickets_sold",
    "Tickets sold, by organization, event, tier and payment method.",
    ["organization_id", "event_id", "tier_id", "payment_method"],
)
PAYMENTS = Counter(
    "revel_payments", "Payments, by organization, status and payment method.",
    ["organization_id", "status", "payment_method"],
)
EXEMPLAR = {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7"}
QUEUE_DEPTH = Gauge("revel_celery_queue_depth", "Tasks waiting, by queue.", ["queue", "instance"])
EXCEPTIONS = Counter("django_http_exceptions_total_by_type", "Count of exceptions by object type.", ["type"])
WEIRD_LABEL_VALUE = 'Value"Error\\ in\nview é'
DOTTED = Counter("revel.http.requests", "Requests, OpenTelemetry-style name.", ["http.route"])
EVENTS_ACTIVE = Gauge("revel_events_active", "Events currently open for registration.", ["organization_id"])

# One simulated request per tick: (method, view, status, latency seconds).
TRAFFIC = (
    ("GET", "events:list", "200", 0.012),
    ("GET", "events:detail", "200", 0.031),
    ("POST", "tickets:checkout", "201", 0.240),
    ("GET", "events:list", "200", 0.008),
    ("POST", "tickets:checkout", "400", 0.060),
    ("GET", "events:detail", "404", 0.004),
    ("GET", "events:list", "500", 1.700),
)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--tick", type=float, default=0.1, help="seconds between simulated requests")
    args = parser.parse_args()

    TICKETS_SOLD.labels("org-1", "evt-1", "general", "online").inc(42)
    TICKETS_SOLD.labels("org-1", "evt-1", "general", "free").inc(7)
    EVENTS_ACTIVE.labels("org-1").set(3)
    PAYMENTS.labels("org-1", "succeeded", "online").inc(0.5)
    QUEUE_DEPTH.labels("emails", "worker-1").set(12)
    EXCEPTIONS.labels(WEIRD_LABEL_VALUE).inc()
    DOTTED.labels("/api/events/").inc(5)
    PAYMENTS.labels("org-1", "succeeded", "online").inc(1.5, exemplar=EXEMPLAR)

    server, _thread = start_http_server(args.port, addr="127.0.0.1")
    print(f"LISTENING {server.server_port}", flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    for method, view, status, latency in itertools.cycle(TRAFFIC):
        if stop.wait(args.tick):
            break
        REQUESTS_BY_METHOD.labels(method).inc()
        REQUESTS_BY_VIEW.labels(view, "http", method).inc()
        RESPONSES_BY_STATUS.labels(status).inc()
        RESPONSES_BY_STATUS_VIEW.labels(status, view, method).inc()
        LATENCY.labels(view, method).observe(latency)
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
