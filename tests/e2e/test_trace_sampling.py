"""Tail sampling and span metrics end to end with the OpenTelemetry Python SDK: many checkout traces, some with an
error span and some slower than 2 s, exported over OTLP/HTTP to an oxeye with production sampling (rate 0.1) and a
short wait. Every error and slow trace is kept, the rest exactly as the trace-id hash decides (about 10%), dropped
traces are gone from the Tempo API, span metrics count every request (PromQL) with exemplars only of kept traces,
and the correlation API finds a trace from its request_id and its log lines from the trace id.
"""

from __future__ import annotations

import json
import math
import time

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from e2e_support import DATA_TIMEOUT_S, OxeyeServer, to_yaml, wait_until

RATE = 0.1
NORMAL_TRACES = 600
ERROR_TRACES = 20
SLOW_TRACES = 20
ALL_TRACES = NORMAL_TRACES + ERROR_TRACES + SLOW_TRACES
MS = 1_000_000
MASK = (1 << 64) - 1


def _mix64(value: int) -> int:
    """SplitMix64's finaliser, as oxeye_pipeline::traces::trace_id_hash uses it."""
    mixed = (value + 0x9E3779B97F4A7C15) & MASK
    mixed = ((mixed ^ (mixed >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    mixed = ((mixed ^ (mixed >> 27)) * 0x94D049BB133111EB) & MASK
    return mixed ^ (mixed >> 31)


def kept_by_rate(trace_id: int, rate: float) -> bool:
    """The tail sampler's rate decision for a trace id, recomputed here to check oxeye's exact choices."""
    id_bytes = trace_id.to_bytes(16, "big")  # the OTLP bytes, in the order of the hex rendering
    high = int.from_bytes(id_bytes[:8], "little")
    low = int.from_bytes(id_bytes[8:], "little")
    hashed = _mix64(high ^ _mix64(low ^ 0x6F786579655F7473))
    return (hashed >> 11) / float(1 << 53) < rate


def metric_values(server: OxeyeServer, name: str) -> dict[str, float]:
    """Samples of `name` from oxeye's /metrics, by their label text (`{...}` or "")."""
    values = {}
    for line in server.get("/metrics").text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            series, value = line.rsplit(" ", 1)
            values[series[len(name):]] = float(value)
    return values


@pytest.fixture(scope="module")
def sampled(module_oxeye_factory) -> dict:
    server = module_oxeye_factory(self_scrape=False)
    server.config["traces"] = {
        "sampling": {"wait": "1s", "rate": RATE},
        "span_metrics": {"flush_interval": "1s"},
    }
    server.config_path.write_text(to_yaml(server.config))
    server.start()

    provider = TracerProvider(resource=Resource.create({"service.name": "boxoffice"}))
    exporter = OTLPSpanExporter(endpoint=server.otlp_http_url + "/v1/traces", timeout=30)
    provider.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=512, max_queue_size=20_000))
    tracer = provider.get_tracer("boxoffice.checkout")
    start = time.time_ns() - 60_000 * MS
    kinds: dict[int, str] = {}
    request_ids: dict[int, str] = {}
    for index in range(ALL_TRACES):
        kind = "error" if index < ERROR_TRACES else "slow" if index < ERROR_TRACES + SLOW_TRACES else "normal"
        begin = start + index * 20 * MS
        request_id = f"req-{index:05d}"
        root = tracer.start_span(
            "GET /api/events/{id}/checkout/",
            kind=SpanKind.SERVER,
            start_time=begin,
            attributes={"http.route": "api/events/<uuid:event_id>/checkout/", "request_id": request_id},
        )
        child = tracer.start_span(
            "ticket.checkout", context=trace.set_span_in_context(root), start_time=begin + 1 * MS
        )
        if kind == "error":
            child.set_status(Status(StatusCode.ERROR, "card declined"))
        child.end(end_time=begin + 5 * MS)
        root.end(end_time=begin + (2_500 * MS if kind == "slow" else 20 * MS))
        trace_id = root.get_span_context().trace_id
        kinds[trace_id] = kind
        request_ids[trace_id] = request_id
    assert provider.force_flush(60_000)
    provider.shutdown()

    def all_decided():
        decided = metric_values(server, "oxeye_tail_sampling_traces_total")
        held = metric_values(server, "oxeye_tail_sampling_held_traces").get("", -1)
        return sum(decided.values()) >= ALL_TRACES and held == 0

    wait_until(all_decided, timeout=DATA_TIMEOUT_S, what=f"tail sampling decisions for {ALL_TRACES} traces")
    return {"server": server, "kinds": kinds, "request_ids": request_ids}


def trace_is_stored(server: OxeyeServer, trace_id: int) -> bool:
    response = server.get(f"/api/traces/{trace_id:032x}")
    assert response.status_code in (200, 404), response.text
    return response.status_code == 200


def test_errors_and_slow_traces_are_all_kept_and_the_rest_by_the_trace_id_hash(sampled):
    server, kinds = sampled["server"], sampled["kinds"]
    for trace_id, kind in kinds.items():
        if kind != "normal":
            assert trace_is_stored(server, trace_id), f"{kind} trace {trace_id:032x} was dropped"
    normal = [trace_id for trace_id, kind in kinds.items() if kind == "normal"]
    kept = {trace_id for trace_id in normal if trace_is_stored(server, trace_id)}
    expected = {trace_id for trace_id in normal if kept_by_rate(trace_id, RATE)}
    assert kept == expected, f"kept {len(kept)}, expected {len(expected)} by the hash"
    mean = NORMAL_TRACES * RATE
    sd = math.sqrt(NORMAL_TRACES * RATE * (1 - RATE))
    assert abs(len(kept) - mean) <= 5 * sd, f"kept {len(kept)} of {NORMAL_TRACES} at rate {RATE}"
    decided = metric_values(server, "oxeye_tail_sampling_traces_total")
    assert decided['{decision="kept",reason="error"}'] == ERROR_TRACES
    assert decided['{decision="kept",reason="slow"}'] == SLOW_TRACES
    assert decided['{decision="kept",reason="rate"}'] == len(kept)
    assert decided['{decision="dropped",reason="rate"}'] == NORMAL_TRACES - len(kept)
    assert metric_values(server, "oxeye_tail_sampling_spans_total")[""] == 2 * ALL_TRACES


def test_span_metrics_count_every_request_even_when_sampling_dropped_it(sampled):
    server = sampled["server"]
    server_spans = 'traces_spanmetrics_calls_total{service="boxoffice",span_kind="SPAN_KIND_SERVER"}'

    def total(query: str) -> float | None:
        result = server.query_vector(query)
        return float(result[0]["value"][1]) if result else None

    wait_until(lambda: total(f"sum({server_spans})") == ALL_TRACES, timeout=DATA_TIMEOUT_S, what="span metrics")
    errors = 'traces_spanmetrics_calls_total{span_name="ticket.checkout",status_code="STATUS_CODE_ERROR"}'
    assert total(f"sum({errors})") == ERROR_TRACES
    buckets = 'traces_spanmetrics_latency_bucket{service="boxoffice",span_kind="SPAN_KIND_SERVER",le="%s"}'
    assert total(f"sum({buckets % '2.048'})") == ALL_TRACES - SLOW_TRACES
    assert total(f"sum({buckets % '+Inf'})") == ALL_TRACES
    count = 'traces_spanmetrics_latency_count{service="boxoffice",span_kind="SPAN_KIND_SERVER"}'
    assert total(f"sum({count})") == ALL_TRACES


def test_exemplars_point_only_at_kept_traces(sampled):
    server, kinds = sampled["server"], sampled["kinds"]
    now = time.time()
    data = server.api(
        "/api/v1/query_exemplars",
        {"query": "traces_spanmetrics_calls_total", "start": repr(now - 3600), "end": repr(now + 60)},
    )
    exemplar_ids = {exemplar["labels"]["traceID"] for series in data for exemplar in series["exemplars"]}
    assert exemplar_ids, data
    for hex_id in exemplar_ids:
        trace_id = int(hex_id, 16)
        assert trace_id in kinds, hex_id
        assert kinds[trace_id] != "normal" or kept_by_rate(trace_id, RATE), f"exemplar of dropped trace {hex_id}"


def test_a_trace_is_found_from_its_request_id_and_its_logs_from_the_trace_id(sampled):
    server, kinds, request_ids = sampled["server"], sampled["kinds"], sampled["request_ids"]
    error_trace = next(trace_id for trace_id, kind in kinds.items() if kind == "error")
    hex_id = f"{error_trace:032x}"
    body = server.get(f"/api/correlate/request/{request_ids[error_trace]}").json()
    assert [found["traceID"] for found in body["traces"]] == [hex_id], body
    assert body["traces"][0]["rootServiceName"] == "boxoffice"

    line = json.dumps({"event": "checkout_failed", "trace_id": hex_id, "request_id": request_ids[error_trace]})
    push = {"streams": [{"stream": {"service_name": "boxoffice"}, "values": [[str(time.time_ns()), line]]}]}
    response = server.post("/loki/api/v1/push", json=push)
    assert response.status_code == 204, response.text
    now = time.time()
    logs = server.get(f"/api/traces/{hex_id}/logs", params={"start": now - 3600, "end": now + 60}).json()
    lines = [value[1] for stream in logs["data"]["result"] for value in stream["values"]]
    assert lines == [line], logs
