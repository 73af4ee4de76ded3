"""The OpenTelemetry Python SDK exporting metrics to oxeye over OTLP/HTTP (main port and 4318-style port) and
OTLP/gRPC, then PromQL over oxeye finds them under their Prometheus names (otlptranslator's default naming)."""

from __future__ import annotations

import json
import time

import pytest
from grpc import Compression as GrpcCompression
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExportResult, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from e2e_support import DATA_TIMEOUT_S, OxeyeServer, wait_until

SDK_DEFAULT_BOUNDS = [0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000]


def recording(exporter_class):
    """The exporter class, also keeping every export's result so a failed export fails the test."""

    class Recording(exporter_class):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.results: list[MetricExportResult] = []

        def export(self, metrics_data, timeout_millis: float = 10_000, **kwargs):
            result = super().export(metrics_data, timeout_millis=timeout_millis, **kwargs)
            self.results.append(result)
            return result

    return Recording


@pytest.fixture(scope="module")
def server(module_oxeye_factory) -> OxeyeServer:
    return module_oxeye_factory(self_scrape=False).start()


def make_exporter(server: OxeyeServer, transport: str):
    if transport == "http-main":
        return recording(HttpExporter)(endpoint=server.url + "/v1/metrics", timeout=10)
    if transport == "http-otlp-port":
        return recording(HttpExporter)(endpoint=server.otlp_http_url + "/v1/metrics", timeout=10)
    if transport == "http-gzip":
        return recording(HttpExporter)(
            endpoint=server.otlp_http_url + "/v1/metrics", timeout=10, compression=HttpCompression.Gzip
        )
    if transport == "grpc":
        return recording(GrpcExporter)(endpoint=f"127.0.0.1:{server.otlp_grpc_port}", insecure=True, timeout=10)
    if transport == "grpc-gzip":
        return recording(GrpcExporter)(
            endpoint=f"127.0.0.1:{server.otlp_grpc_port}", insecure=True, timeout=10, compression=GrpcCompression.Gzip
        )
    raise ValueError(transport)


@pytest.mark.parametrize("transport", ["http-main", "http-otlp-port", "http-gzip", "grpc", "grpc-gzip"])
def test_sdk_metrics_arrive_under_prometheus_names(server: OxeyeServer, transport: str):
    service = f"revel-{transport}"
    exporter = make_exporter(server, transport)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    resource = Resource.create(
        {"service.name": service, "service.instance.id": "pod-1", "deployment.environment": "e2e"}
    )
    provider = MeterProvider(resource=resource, metric_readers=[reader])
    meter = provider.get_meter("revel.e2e", "1.2.3")

    tickets = meter.create_counter("revel.tickets.sold", unit="{ticket}", description="Tickets sold.")
    latency = meter.create_histogram("http.server.request.duration", unit="s", description="Request latency.")
    active = meter.create_up_down_counter("revel.events.active", unit="{event}", description="Open events.")

    tickets.add(3, {"payment_method": "online"})
    tickets.add(4, {"payment_method": "online"})
    tickets.add(1, {"payment_method": "free"})
    for seconds in (0.1, 0.2, 3.0):
        latency.record(seconds, {"http.route": "/api/events/"})
    active.add(5)
    active.add(-2)

    assert provider.force_flush(timeout_millis=30_000)
    provider.shutdown()
    assert exporter.results and all(r == MetricExportResult.SUCCESS for r in exporter.results), exporter.results

    job = f'job="{service}"'
    counter = wait_until(
        lambda: server.query_vector(f"revel_tickets_sold_total{{{job}}}"), DATA_TIMEOUT_S, "the counter"
    )
    by_method = {item["metric"]["payment_method"]: item for item in counter}
    assert {k: v["value"][1] for k, v in by_method.items()} == {"online": "7", "free": "1"}
    labels = by_method["online"]["metric"]
    assert labels["job"] == service and labels["instance"] == "pod-1", labels
    assert labels.get("otel_scope_name") == "revel.e2e", labels

    count = server.query_vector(f'http_server_request_duration_seconds_count{{{job}}}')
    assert [c["value"][1] for c in count] == ["3"], count
    assert count[0]["metric"]["http_route"] == "/api/events/"
    total = server.query_vector(f'http_server_request_duration_seconds_sum{{{job}}}')
    assert abs(float(total[0]["value"][1]) - 3.3) < 1e-9, total
    buckets = server.query_vector(f'http_server_request_duration_seconds_bucket{{{job}}}')
    by_le = {float(b["metric"]["le"]): float(b["value"][1]) for b in buckets}
    assert sorted(by_le) == [float(b) for b in SDK_DEFAULT_BOUNDS] + [float("inf")], by_le
    assert by_le[0.0] == 0 and by_le[5.0] == 3 and by_le[float("inf")] == 3, by_le
    quantile = server.query_vector(
        f'histogram_quantile(0.5, sum by (le) (http_server_request_duration_seconds_bucket{{{job}}}))'
    )
    assert 0 < float(quantile[0]["value"][1]) <= 5, quantile

    gauge = server.query_vector(f"revel_events_active{{{job}}}")
    assert [g["value"][1] for g in gauge] == ["3"], gauge

    # Other resource attributes go to target_info, joined to the series by job and instance.
    info = wait_until(lambda: server.query_vector(f"target_info{{{job}}}"), DATA_TIMEOUT_S, "target_info")
    assert info[0]["metric"].get("deployment_environment") == "e2e", info
    assert info[0]["metric"]["instance"] == "pod-1" and info[0]["value"][1] == "1"


def test_metric_metadata_from_otlp(server: OxeyeServer):
    exporter = make_exporter(server, "http-main")
    provider = MeterProvider(
        resource=Resource.create({"service.name": "revel-metadata"}),
        metric_readers=[PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)],
    )
    provider.get_meter("revel.e2e").create_counter("revel.emails.sent", description="E-mails sent.").add(2)
    assert provider.force_flush(timeout_millis=30_000)
    provider.shutdown()
    wait_until(lambda: server.query_vector('revel_emails_sent_total{job="revel-metadata"}'), DATA_TIMEOUT_S, "series")
    metadata = server.api("/api/v1/metadata", {"metric": "revel_emails_sent_total"})
    assert metadata["revel_emails_sent_total"][0]["type"] == "counter", metadata
    assert metadata["revel_emails_sent_total"][0]["help"] == "E-mails sent.", metadata


def test_otlp_json_request(server: OxeyeServer):
    # OTLP/JSON as the spec writes it: 64-bit integers as decimal strings, enums as integers, camelCase keys.
    now = time.time_ns()
    body = {
        "resourceMetrics": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "revel-json"}}]},
                "scopeMetrics": [
                    {
                        "scope": {"name": "json.e2e"},
                        "metrics": [
                            {
                                "name": "revel.payments",
                                "unit": "1",
                                "sum": {
                                    "aggregationTemporality": 2,
                                    "isMonotonic": True,
                                    "dataPoints": [
                                        {
                                            "attributes": [{"key": "status", "value": {"stringValue": "succeeded"}}],
                                            "startTimeUnixNano": str(now - 10**9),
                                            "timeUnixNano": str(now),
                                            "asInt": "12",
                                        }
                                    ],
                                },
                            },
                            {
                                "name": "revel.queue.depth",
                                "gauge": {"dataPoints": [{"timeUnixNano": now, "asDouble": 4.5}]},
                            },
                        ],
                    }
                ],
            }
        ]
    }
    response = server.post("/v1/metrics", data=json.dumps(body), headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    assert not response.json().get("partialSuccess"), response.text
    payments = wait_until(
        lambda: server.query_vector('revel_payments_total{job="revel-json"}'), DATA_TIMEOUT_S, "the JSON counter"
    )
    assert [(p["metric"]["status"], p["value"][1]) for p in payments] == [("succeeded", "12")]
    depth = server.query_vector('revel_queue_depth{job="revel-json"}')
    assert [d["value"][1] for d in depth] == ["4.5"], depth
