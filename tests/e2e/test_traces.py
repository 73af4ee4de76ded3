"""Traces end to end: a Django app instrumented with opentelemetry-instrumentation-django exports over OTLP/HTTP and
OTLP/gRPC with the Python SDK; each trace comes back by id (Tempo API, JSON and protobuf) with its parent/child tree,
resource and attributes. Also: OTLP/JSON with gzip, partial success for invalid ids, malformed bodies, and every
acknowledged span surviving kill -9 during ingest.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, TracesData

from e2e_support import wait_until

APP = Path(__file__).parent / "apps" / "traced_django_app.py"


class TracedApp:
    """The traced Django app as a subprocess exporting to oxeye."""

    def __init__(self, protocol: str, endpoint: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(APP), "--protocol", protocol, "--endpoint", endpoint],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "OTEL_PYTHON_LOG_LEVEL": "error"},
        )
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line.startswith("LISTENING "):
            rest = self.process.stdout.read() if self.process.stdout else ""
            self.process.kill()
            raise AssertionError(f"traced app did not start: {line}{rest}")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"
        self.output: list[str] = []
        # Drain the app's output so a chatty exporter never blocks on a full pipe.
        threading.Thread(target=lambda: self.output.extend(self.process.stdout), daemon=True).start()

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url + path, timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def trace_json(oxeye, trace_id: str, expected_spans: int) -> dict:
    def fetch():
        response = oxeye.get(f"/api/traces/{trace_id}")
        if response.status_code != 200:
            return None
        body = response.json()
        count = sum(len(scope["spans"]) for batch in body["batches"] for scope in batch["scopeSpans"])
        return body if count >= expected_spans else None

    return wait_until(fetch, timeout=30, what=f"trace {trace_id} with {expected_spans} spans")


def spans_by_name(batches: list[dict]) -> dict[str, dict]:
    spans = {}
    for batch in batches:
        for scope in batch["scopeSpans"]:
            for span in scope["spans"]:
                span["_resource"] = {a["key"]: a["value"] for a in batch["resource"]["attributes"]}
                span["_scope"] = scope["scope"].get("name")
                spans[span["name"]] = span
    return spans


def attributes(span: dict) -> dict:
    return {attribute["key"]: attribute["value"] for attribute in span.get("attributes", [])}


def length_delimited_field(message: bytes, wanted: int) -> bytes:
    """The first length-delimited field `wanted` of a protobuf message (enough to unwrap TraceByIDResponse.trace)."""
    position = 0

    def varint() -> int:
        nonlocal position
        value, shift = 0, 0
        while True:
            byte = message[position]
            position += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    while position < len(message):
        key = varint()
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            varint()
        elif wire_type == 2:
            length = varint()
            if number == wanted:
                return message[position : position + length]
            position += length
        elif wire_type == 1:
            position += 8
        elif wire_type == 5:
            position += 4
        else:
            raise AssertionError(f"unexpected wire type {wire_type}")
    raise AssertionError(f"field {wanted} absent")


@pytest.fixture
def traced_oxeye(oxeye_factory):
    return oxeye_factory(self_scrape=False).start()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_django_traces_come_back_by_id_with_their_tree(traced_oxeye, protocol):
    oxeye = traced_oxeye
    endpoint = oxeye.otlp_http_url if protocol == "http" else f"http://127.0.0.1:{oxeye.otlp_grpc_port}"
    app = TracedApp(protocol, endpoint)
    try:
        checkout = app.get("/checkout/evt-42/")
        assert checkout.status_code == 200
        webhook = app.get("/webhook/")
        assert webhook.status_code == 500
        slow = app.get("/slow/")
        assert slow.status_code == 200
    finally:
        app.stop()

    # The checkout tree: Django's server span > ticket.checkout > ticket.check_eligibility > check_membership.
    trace_id = checkout.headers["X-Trace-Id"]
    body = trace_json(oxeye, trace_id, 4)
    spans = spans_by_name(body["batches"])
    server = next(span for span in spans.values() if span.get("kind") == "SPAN_KIND_SERVER")
    assert server["name"].startswith("GET checkout/"), server["name"]
    assert "parentSpanId" not in server
    assert spans["ticket.checkout"]["parentSpanId"] == server["spanId"]
    assert spans["ticket.check_eligibility"]["parentSpanId"] == spans["ticket.checkout"]["spanId"]
    assert spans["eligibility.check_membership"]["parentSpanId"] == spans["ticket.check_eligibility"]["spanId"]
    for span in spans.values():
        # Tempo's JSON (Go jsonpb) writes ids in base64, not OTLP/JSON's hex.
        assert span["traceId"] == base64.b64encode(bytes.fromhex(trace_id)).decode()
        assert span["_resource"]["service.name"] == {"stringValue": "boxoffice"}
        assert span["_resource"]["deployment.environment"] == {"stringValue": "acceptance"}
    assert spans["ticket.checkout"]["_scope"] == "boxoffice.tickets"
    assert server["_scope"] == "opentelemetry.instrumentation.django"
    checkout_attributes = attributes(spans["ticket.checkout"])
    assert checkout_attributes["request_id"] == {"stringValue": checkout.headers["X-Request-Id"]}
    assert checkout_attributes["event_id"] == {"stringValue": "evt-42"}
    membership = attributes(spans["eligibility.check_membership"])
    assert membership["member"] == {"boolValue": True}
    assert int(server["endTimeUnixNano"]) >= int(spans["ticket.checkout"]["endTimeUnixNano"])

    # The same trace as tempopb.Trace (v1) and TraceByIDResponse (v2), as Grafana asks for it.
    protobuf = oxeye.get(f"/api/traces/{trace_id}", headers={"Accept": "application/protobuf"})
    assert protobuf.status_code == 200
    assert protobuf.headers["Content-Type"] == "application/protobuf"
    decoded = TracesData.FromString(protobuf.content)
    names = {span.name for batch in decoded.resource_spans for scope in batch.scope_spans for span in scope.spans}
    assert {"ticket.checkout", "ticket.check_eligibility", "eligibility.check_membership"} <= names
    v2 = oxeye.get(f"/api/v2/traces/{trace_id}", headers={"Accept": "application/protobuf"})
    assert v2.status_code == 200
    v2_trace = TracesData.FromString(length_delimited_field(v2.content, 1))
    assert sum(len(scope.spans) for batch in v2_trace.resource_spans for scope in batch.scope_spans) == 4
    v2_json = oxeye.get(f"/api/v2/traces/{trace_id}").json()
    assert len(spans_by_name(v2_json["trace"]["resourceSpans"])) == 4

    # The error trace: the failing span has status error, its message and the exception event.
    error_body = trace_json(oxeye, webhook.headers["X-Trace-Id"], 2)
    error_spans = spans_by_name(error_body["batches"])
    failing = error_spans["stripe.webhook.handle"]
    assert failing["status"]["code"] == "STATUS_CODE_ERROR"
    assert "signature mismatch" in failing["status"]["message"]
    assert [event["name"] for event in failing["events"]] == ["exception"]
    exception_attributes = attributes(failing["events"][0])
    assert exception_attributes["exception.type"] == {"stringValue": "ValueError"}

    # The slow request: more than 2 s.
    slow_spans = spans_by_name(trace_json(oxeye, slow.headers["X-Trace-Id"], 2)["batches"])
    llm = slow_spans["llm.api_call"]
    assert int(llm["endTimeUnixNano"]) - int(llm["startTimeUnixNano"]) >= 2_000_000_000

    # A window that excludes the trace finds nothing; a missing trace is 404 with Tempo's body.
    assert oxeye.get(f"/api/traces/{trace_id}?start=1000&end=2000").status_code == 404
    missing = oxeye.get("/api/traces/" + "1" * 32)
    assert missing.status_code == 404 and missing.text.strip() == "trace not found"
    assert oxeye.get("/api/traces/not-hex").status_code == 400
    assert oxeye.get("/api/echo").text == "echo"


def hand_built_request(trace_ids: list[bytes], now_ns: int) -> ExportTraceServiceRequest:
    spans = [
        Span(
            trace_id=trace_id,
            span_id=bytes([index + 1] * 8),
            name=f"span-{index}",
            kind=Span.SPAN_KIND_SERVER,
            start_time_unix_nano=now_ns,
            end_time_unix_nano=now_ns + 1_000_000,
            attributes=[KeyValue(key="request_id", value=AnyValue(string_value=f"req-{index}"))],
        )
        for index, trace_id in enumerate(trace_ids)
    ]
    resource = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value="payments"))])
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=spans)])]
    )


def test_json_gzip_partial_success_and_malformed_bodies(traced_oxeye):
    import time

    oxeye = traced_oxeye
    now_ns = time.time_ns()
    body = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "payments"}}]},
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "5B8EFFF798038103D269B633813FC60C",
                                "spanId": "eee19b7ec3c1b174",
                                "name": "stripe.webhook.handle",
                                "kind": "SPAN_KIND_SERVER",
                                "startTimeUnixNano": str(now_ns),
                                "endTimeUnixNano": now_ns + 5_000_000,
                                "status": {"code": 2, "message": "boom"},
                            },
                            {"traceId": "0" * 32, "spanId": "eee19b7ec3c1b175", "name": "zero trace id"},
                        ]
                    }
                ],
            }
        ]
    }
    response = requests.post(
        oxeye.otlp_http_url + "/v1/traces",
        data=gzip.compress(json.dumps(body).encode()),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["partialSuccess"]["rejectedSpans"] == "1"
    stored = oxeye.get("/api/traces/5b8efff798038103d269b633813fc60c").json()
    span = stored["batches"][0]["scopeSpans"][0]["spans"][0]
    assert span["name"] == "stripe.webhook.handle" and span["status"]["code"] == "STATUS_CODE_ERROR"

    # Protobuf on the main port: an empty-bodied response (no partial success) for a fully valid request.
    request = hand_built_request([bytes([7] * 16)], now_ns)
    response = oxeye.post(
        "/v1/traces", data=request.SerializeToString(), headers={"Content-Type": "application/x-protobuf"}
    )
    assert response.status_code == 200
    assert not ExportTraceServiceResponse.FromString(response.content).HasField("partial_success")

    # Malformed: 400 naming the problem, nothing stored.
    response = oxeye.post("/v1/traces", data=b"\x0a\x05\x01", headers={"Content-Type": "application/x-protobuf"})
    assert response.status_code == 400
    bad_json = '{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"' + "ab" * 16 + '","spanId":"zz"}]}]}]}'
    response = oxeye.post("/v1/traces", data=bad_json, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert "spanId" in response.json()["message"]
    assert oxeye.get("/api/traces/" + "ab" * 16).status_code == 404


def test_grpc_export_reports_invalid_spans_as_partial_success_and_malformed_as_invalid_argument(traced_oxeye):
    import time

    import grpc

    oxeye = traced_oxeye
    request = hand_built_request([bytes([9] * 16), bytes(16)], time.time_ns())
    with grpc.insecure_channel(f"127.0.0.1:{oxeye.otlp_grpc_port}") as channel:
        export = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=ExportTraceServiceRequest.SerializeToString,
            response_deserializer=ExportTraceServiceResponse.FromString,
        )
        response = export(request, timeout=30)
        assert response.partial_success.rejected_spans == 1, response
        assert "trace id must be 16 bytes" in response.partial_success.error_message
        raw_export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        with pytest.raises(grpc.RpcError) as raised:
            raw_export(b"\x0a\xff\xff\xff\x0f\x01", timeout=30)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value
    assert oxeye.get("/api/traces/" + "09" * 16).status_code == 200


def test_acknowledged_spans_survive_kill_9_during_ingest(traced_oxeye):
    import time

    oxeye = traced_oxeye
    acknowledged: list[str] = []
    stop = threading.Event()

    def send() -> None:
        session = requests.Session()
        batch = 0
        while not stop.is_set():
            trace_ids = [os.urandom(16) for _ in range(20)]
            request = hand_built_request(trace_ids, time.time_ns())
            try:
                response = session.post(
                    oxeye.otlp_http_url + "/v1/traces",
                    data=request.SerializeToString(),
                    headers={"Content-Type": "application/x-protobuf"},
                    timeout=5,
                )
            except requests.RequestException:
                return
            if response.status_code == 200:
                acknowledged.extend(trace_id.hex() for trace_id in trace_ids)
            batch += 1

    senders = [threading.Thread(target=send) for _ in range(4)]
    for sender in senders:
        sender.start()
    wait_until(lambda: len(acknowledged) >= 2_000, timeout=60, what="2,000 acknowledged traces")
    oxeye.kill9()
    stop.set()
    for sender in senders:
        sender.join(timeout=10)
    assert acknowledged
    oxeye.start()
    missing = [trace_id for trace_id in acknowledged if oxeye.get(f"/api/traces/{trace_id}").status_code != 200]
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged traces lost, e.g. {missing[:3]}"
