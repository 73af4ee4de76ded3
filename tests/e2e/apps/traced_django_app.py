"""A small Django service traced with opentelemetry-instrumentation-django, exporting spans with the Python SDK.

Spans are shaped like the seeds' boxoffice service:
- GET /checkout/<event_id>/: the Django server span > `ticket.checkout` > `ticket.check_eligibility` >
  `eligibility.check_membership` (attributes `request_id`, `event_id`, `membership.tier`);
- GET /webhook/: the server span > `stripe.webhook.handle`, which fails: status ERROR with an `exception` event,
  and the view answers 500;
- GET /slow/: the server span > `llm.api_call`, sleeping 2.1 s (a "slow request").

Every response carries the trace id as `X-Trace-Id`. Spans are exported by a SimpleSpanProcessor (one export
per ended span, so a test never waits for a batch timer) over OTLP/HTTP protobuf or OTLP/gRPC.

Usage: python traced_django_app.py --protocol http|grpc --endpoint URL [--port 0]
Prints "LISTENING <port>" once serving; exits on SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
import uuid
from wsgiref.simple_server import WSGIRequestHandler, make_server

import django
from django.conf import settings


def configure_tracing(protocol: str, endpoint: str) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")
    resource = Resource.create(
        {"service.name": "boxoffice", "service.version": "1.4.2", "deployment.environment": "acceptance"}
    )
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)


def configure_django() -> None:
    settings.configure(
        DEBUG=False,
        ALLOWED_HOSTS=["*"],
        SECRET_KEY="e2e-only",
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
        DATABASES={},
        LOGGING_CONFIG=None,
    )
    from opentelemetry.instrumentation.django import DjangoInstrumentor

    DjangoInstrumentor().instrument()
    django.setup()


tracer = None


def _with_trace_id(response):
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    response["X-Trace-Id"] = format(context.trace_id, "032x")
    return response


def checkout(request, event_id: str):
    from django.http import JsonResponse

    request_id = str(uuid.uuid4())
    with tracer.start_as_current_span("ticket.checkout", attributes={"request_id": request_id, "event_id": event_id}):
        with tracer.start_as_current_span("ticket.check_eligibility", attributes={"event_id": event_id}):
            with tracer.start_as_current_span(
                "eligibility.check_membership", attributes={"membership.tier": "gold", "member": True}
            ):
                time.sleep(0.01)
        response = JsonResponse({"status": "ok", "request_id": request_id})
        response["X-Request-Id"] = request_id
        return _with_trace_id(response)


def webhook(request):
    from django.http import JsonResponse
    from opentelemetry.trace import Status, StatusCode

    with tracer.start_as_current_span("stripe.webhook.handle", record_exception=False) as span:
        try:
            raise ValueError("signature mismatch for event evt_1")
        except ValueError as error:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, str(error)))
        response = JsonResponse({"status": "error"}, status=500)
        return _with_trace_id(response)


def slow(request):
    from django.http import JsonResponse

    with tracer.start_as_current_span("llm.api_call", attributes={"llm.model": "small"}):
        time.sleep(2.1)
    return _with_trace_id(JsonResponse({"status": "ok"}))


urlpatterns: list = []


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args) -> None:
        pass


def main() -> None:
    global tracer, urlpatterns
    parser = argparse.ArgumentParser()
    parser.add_argument("--protocol", choices=["http", "grpc"], required=True)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--port", type=int, default=0)
    arguments = parser.parse_args()
    configure_tracing(arguments.protocol, arguments.endpoint)
    configure_django()
    from django.core.wsgi import get_wsgi_application
    from django.urls import path
    from opentelemetry import trace

    tracer = trace.get_tracer("boxoffice.tickets", "1.4.2")
    urlpatterns = [
        path("checkout/<str:event_id>/", checkout),
        path("webhook/", webhook),
        path("slow/", slow),
    ]
    server = make_server("127.0.0.1", arguments.port, get_wsgi_application(), handler_class=QuietHandler)
    stopping = threading.Event()

    def stop(*_):
        stopping.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    print(f"LISTENING {server.server_address[1]}", flush=True)
    server.serve_forever()
    trace.get_tracer_provider().shutdown()
    sys.exit(0)


if __name__ == "__main__":
    main()
