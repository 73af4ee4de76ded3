"""Logs from real clients: structlog JSON through python-logging-loki's LokiHandler, the OpenTelemetry Python
SDK log exporter over OTLP/HTTP and OTLP/gRPC, and PII redaction checked on disk (the data directory grepped,
WAL included), against a run with redaction disabled that must find the same secrets."""

from __future__ import annotations

import json
import logging
import time
import uuid
from pathlib import Path

import logging_loki
import pytest
import structlog
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from e2e_support import DATA_TIMEOUT_S, OxeyeServer, to_yaml, wait_until

# Shaped like the seeds' structlog events and the captured boxoffice payloads; each with the raw secrets it
# holds (mirrors oxeye_pipeline::testing::SEED_EXAMPLES).
SEED_EVENTS = [
    (
        {"event": "login_attempt", "email": "user@example.com", "password": "hunter2-seed-000"},
        ["hunter2-seed-000"],
    ),
    (
        {"event": "checkout_failed", "email": "bob.fan+88d89450@example.com", "card_number": "4000000000000002",
         "message": "Payment declined for bob.fan+88d89450@example.com; customer asked to be contacted"},
        ["4000000000000002", "Payment declined for bob.fan"],
    ),
    (
        {"event": "ticket_checkout", "card_number": "5555 5555 5555 4444", "cvv": 123, "ssn": "078-05-1120",
         "note": "card 4242-4242-4242-4242 ssn 219-09-9999 mail carol@example.org"},
        ["5555 5555 5555 4444", "4242-4242-4242-4242", "078-05-1120", "219-09-9999", "mail carol@"],
    ),
]
PLAIN_LINES = [
    ('level=warn event=login_failed email=dave@example.net password="correct horse battery" api_key=ak_live_51Hd',
     ["correct horse battery", "ak_live_51Hd"]),
    ("Internal Server Error: card declined (card 4000 0000 0000 0002, ssn 123-45-6789)",
     ["4000 0000 0000 0002", "123-45-6789"]),
    ("GET /callback?code=ok&token=eyJhbGciOiJIUzI1NiJ9.payload Authorization: Bearer sk_test_4eC39HqLyjWDarjtT1zdp7dc",
     ["eyJhbGciOiJIUzI1NiJ9.payload", "sk_test_4eC39HqLyjWDarjtT1zdp7dc"]),
]


def configure_logs(server: OxeyeServer, logs: dict) -> OxeyeServer:
    server.config["logs"] = logs
    server.config_path.write_text(to_yaml(server.config))
    return server


def query_streams(server: OxeyeServer, query: str, minutes: int = 10) -> list[dict]:
    now_ns = time.time_ns()
    response = server.get(
        "/loki/api/v1/query_range",
        params={"query": query, "start": str(now_ns - minutes * 60 * 10**9), "end": str(now_ns + 60 * 10**9),
                "limit": "1000", "direction": "forward"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success", body
    assert body["data"]["resultType"] == "streams", body
    return body["data"]["result"]


def entries(streams: list[dict]) -> list[tuple[dict, str]]:
    """(labels, line) of every entry of every stream, in timestamp order."""
    timed = [(int(value[0]), stream["stream"], value[1]) for stream in streams for value in stream["values"]]
    timed.sort(key=lambda entry: entry[0])
    return [(labels, line) for _, labels, line in timed]


def structlog_logger(name: str, handler: logging.Handler) -> structlog.stdlib.BoundLogger:
    stdlib_logger = logging.getLogger(name)
    stdlib_logger.handlers = [handler]
    stdlib_logger.setLevel(logging.INFO)
    stdlib_logger.propagate = False
    return structlog.wrap_logger(
        stdlib_logger,
        processors=[
            structlog.stdlib.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
    )


@pytest.fixture(scope="module")
def server(module_oxeye_factory) -> OxeyeServer:
    return module_oxeye_factory(self_scrape=False).start()


def test_structlog_json_through_logging_loki_handler(server: OxeyeServer):
    run = uuid.uuid4().hex[:8]
    handler = logging_loki.LokiHandler(
        url=server.url + "/loki/api/v1/push", tags={"service_name": "boxoffice", "run": run}, version="1"
    )
    log = structlog_logger(f"boxoffice.views.{run}", handler)
    trace_id = "0e29288e33afccfe72edc78604c70815"
    for index in range(20):
        log.info("request_finished", request_id=f"{run}-{index}", trace_id=trace_id, user_id=str(index),
                 path="/api/events/3/checkout/", status_code=200)
    log.warning("login_attempt", email="ann@example.com", password="s3cr3t-" + run, request_id=f"{run}-login")
    log.error("checkout_failed", card_number="4000000000000002", request_id=f"{run}-checkout")

    streams = wait_until(
        lambda: (found := query_streams(server, f'{{service_name="boxoffice", run="{run}"}}'))
        and sum(len(stream["values"]) for stream in found) == 22 and found,
        DATA_TIMEOUT_S, "22 structlog entries through LokiHandler",
    )
    got = entries(streams)
    # python-logging-loki adds the level as `severity` and the logger name as `logger`.
    assert {labels["severity"] for labels, _ in got} == {"info", "warning", "error"}
    assert {labels["logger"] for labels, _ in got} == {f"boxoffice.views.{run}"}
    lines = [json.loads(line) for _, line in got]
    assert [line["request_id"] for line in lines[:20]] == [f"{run}-{index}" for index in range(20)]
    assert lines[20]["password"] == "[REDACTED]" and lines[20]["email"] == "ann@example.com"
    assert lines[21]["card_number"] == "[REDACTED]"
    assert all(line["trace_id"] == trace_id for line in lines[:20])

    # The structlog fields are queryable through the json parser, with the level structlog wrote.
    errors = query_streams(server, f'{{service_name="boxoffice", run="{run}"}} | json | level="error"')
    assert [labels["event"] for labels, _ in entries(errors)] == ["checkout_failed"]
    metrics = server.get("/metrics").text
    assert 'oxeye_redactions_total{rule="sensitive_key"}' in metrics


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_otel_sdk_log_exporter(server: OxeyeServer, transport: str):
    run = uuid.uuid4().hex[:8]
    if transport == "http":
        exporter = HttpLogExporter(endpoint=server.otlp_http_url + "/v1/logs", timeout=10)
    else:
        exporter = GrpcLogExporter(endpoint=f"127.0.0.1:{server.otlp_grpc_port}", insecure=True, timeout=10)
    resource = Resource.create({"service.name": f"checkout-{run}", "deployment.environment": "acceptance"})
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    handler = LoggingHandler(level=logging.INFO, logger_provider=provider)
    stdlib_logger = logging.getLogger(f"otel.{transport}.{run}")
    stdlib_logger.handlers = [handler]
    stdlib_logger.setLevel(logging.INFO)
    stdlib_logger.propagate = False
    tracer = TracerProvider(resource=resource).get_tracer("e2e")
    with tracer.start_as_current_span("checkout") as span:
        context = span.get_span_context()
        stdlib_logger.info("request_finished path=/api/events/3/", extra={"request_id": f"{run}-1", "user_id": "7"})
        stdlib_logger.error(
            "checkout_failed for bob@example.com",
            extra={"request_id": f"{run}-2", "card_number": "4000000000000002",
                   "http.request.header.authorization": "Bearer otel-" + run},
        )
    provider.shutdown()
    trace_id = format(context.trace_id, "032x")
    span_id = format(context.span_id, "016x")

    streams = wait_until(
        lambda: (found := query_streams(server, f'{{service_name="checkout-{run}"}}'))
        and sum(len(stream["values"]) for stream in found) == 2 and found,
        DATA_TIMEOUT_S, f"2 OTLP {transport} log records",
    )
    got = entries(streams)
    (info_labels, info_line), (error_labels, error_line) = got
    assert info_line == "request_finished path=/api/events/3/"
    assert error_line == "checkout_failed for [EMAIL]"
    assert info_labels["service_name"] == f"checkout-{run}"
    assert info_labels["deployment_environment"] == "acceptance"
    assert (info_labels["detected_level"], error_labels["detected_level"]) == ("info", "error")
    # Attributes are structured metadata; trace context is kept per entry.
    assert info_labels["request_id"] == f"{run}-1" and error_labels["request_id"] == f"{run}-2"
    assert error_labels["card_number"] == "[REDACTED]"
    assert error_labels["http_request_header_authorization"] == "[REDACTED]"
    assert (error_labels["trace_id"], error_labels["span_id"]) == (trace_id, span_id)
    levelled = query_streams(server, f'{{service_name="checkout-{run}"}} | detected_level="error"')
    assert len(entries(levelled)) == 1


def push_seed_examples(server: OxeyeServer, run: str) -> list[str]:
    """Pushes every seed example through Loki JSON, Loki with structured metadata, and OTLP/HTTP JSON; returns the
    raw secrets sent."""
    now_ns = time.time_ns()
    secrets: list[str] = []
    values = []
    for index, (event, event_secrets) in enumerate(SEED_EVENTS):
        values.append([str(now_ns + index), json.dumps(event)])
        secrets += event_secrets
    for index, (line, line_secrets) in enumerate(PLAIN_LINES):
        values.append([str(now_ns + 100 + index), line, {"authorization": f"Bearer md-{run}"}])
        secrets += line_secrets
    secrets.append(f"Bearer md-{run}")
    response = server.post("/loki/api/v1/push",
                           json={"streams": [{"stream": {"service_name": "seeds", "run": run}, "values": values}]})
    assert response.status_code == 204, response.text
    otlp = {"resourceLogs": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "seeds"}}]},
            "scopeLogs": [{"logRecords": [{
                "timeUnixNano": str(now_ns + 200),
                "attributes": [{"key": "password", "value": {"stringValue": f"otlp-attr-{run}"}}],
                "body": {"kvlistValue": {"values": [
                    {"key": "event", "value": {"stringValue": "checkout_failed"}},
                    {"key": "ssn", "value": {"stringValue": f"otlp-ssn-{run}"}},
                    {"key": "note", "value": {"stringValue": "card 4111 1111 1111 1111"}}]}}}]}]}]}
    secrets += [f"otlp-attr-{run}", f"otlp-ssn-{run}", "4111 1111 1111 1111"]
    response = server.post("/v1/logs", json=otlp)
    assert response.status_code == 200, response.text
    return secrets


def grep_data_dir(data_dir: Path, secrets: list[str]) -> dict[str, list[str]]:
    """Every file under `data_dir` holding each secret (raw bytes, like `grep -rF`)."""
    found: dict[str, list[str]] = {}
    for path in data_dir.rglob("*"):
        if not path.is_file():
            continue
        try:
            contents = path.read_bytes()
        except FileNotFoundError:
            continue
        for secret in secrets:
            if secret.encode() in contents:
                found.setdefault(secret, []).append(str(path.relative_to(data_dir)))
    return found


@pytest.mark.parametrize("redaction", ["enabled", "disabled"])
def test_seed_secrets_never_reach_the_disk(oxeye_factory, redaction: str):
    server = oxeye_factory(self_scrape=False)
    if redaction == "disabled":
        configure_logs(server, {"redaction": {"enabled": False}})
    server.start()
    run = uuid.uuid4().hex[:8]
    secrets = push_seed_examples(server, run)
    wait_until(lambda: len(entries(query_streams(server, '{service_name="seeds"}'))) == 7, DATA_TIMEOUT_S,
               "7 seed entries stored")
    while_running = grep_data_dir(server.data_dir, secrets)
    assert server.stop() == 0
    after_shutdown = grep_data_dir(server.data_dir, secrets)
    if redaction == "enabled":
        assert while_running == {}, f"secrets on disk while running: {while_running}"
        assert after_shutdown == {}, f"secrets on disk after shutdown: {after_shutdown}"
    else:
        # The control run: the same grep finds every secret in the WAL, so a clean grep above means something.
        missing = [secret for secret in secrets if not any("wal" in path for path in while_running.get(secret, []))]
        assert missing == [], f"grep did not find these unredacted secrets in the WAL: {missing}"
