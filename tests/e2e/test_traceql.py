"""TraceQL end to end: the traced Django app (apps/traced_django_app.py) exports over OTLP/HTTP with the Python
SDK; Tempo's search API finds the error trace and the slow trace with TraceQL (as Grafana's Tempo datasource
sends it), the structural and pipeline forms find the checkout tree, tag names and values list what was sent,
TraceQL metrics count the requests, and invalid TraceQL is a 400 with its position.
"""

from __future__ import annotations

import time

import pytest

from e2e_support import wait_until
from test_traces import TracedApp


def search(oxeye, query: str, **extra) -> list[dict]:
    now = int(time.time())
    params = {"q": query, "start": now - 3600, "end": now + 60, "limit": 20, **extra}
    response = oxeye.get("/api/search", params=params)
    assert response.status_code == 200, response.text
    return response.json()["traces"]


def trace_ids(traces: list[dict]) -> set[str]:
    return {trace["traceID"] for trace in traces}


@pytest.fixture(scope="module")
def traced(module_oxeye_factory):
    oxeye = module_oxeye_factory(self_scrape=False).start()
    app = TracedApp("http", oxeye.otlp_http_url)
    try:
        checkout = app.get("/checkout/evt-7/")
        webhook = app.get("/webhook/")
        slow = app.get("/slow/")
        assert (checkout.status_code, webhook.status_code, slow.status_code) == (200, 500, 200)
    finally:
        app.stop()
    ids = {
        "checkout": checkout.headers["X-Trace-Id"].lower(),
        "webhook": webhook.headers["X-Trace-Id"].lower(),
        "slow": slow.headers["X-Trace-Id"].lower(),
    }
    # Every span of the three traces is searchable once ingested.
    wait_until(
        lambda: len(search(oxeye, "{ }", spss=50)) >= 3
        and sum(trace["spanSets"][0]["matched"] for trace in search(oxeye, "{ }", spss=50)) >= 8,
        timeout=30,
        what="the app's spans in search",
    )
    return oxeye, ids


def test_traceql_finds_the_error_trace(traced):
    oxeye, ids = traced
    errors = search(oxeye, "{ status = error }")
    assert trace_ids(errors) == {ids["webhook"]}
    trace = errors[0]
    assert trace["rootServiceName"] == "boxoffice"
    assert trace["rootTraceName"].startswith("GET")
    span_names = {span["name"] for span in trace["spanSets"][0]["spans"]}
    assert "stripe.webhook.handle" in span_names
    assert {"key": "status", "value": {"stringValue": "error"}} in trace["spanSets"][0]["spans"][0]["attributes"]
    assert trace_ids(search(oxeye, '{ event.exception.type = "ValueError" }')) == {ids["webhook"]}
    assert trace_ids(search(oxeye, '{ statusMessage =~ ".*signature mismatch.*" }')) == {ids["webhook"]}


def test_traceql_finds_the_slow_trace(traced):
    oxeye, ids = traced
    assert trace_ids(search(oxeye, "{ duration > 2s }")) == {ids["slow"]}
    assert trace_ids(search(oxeye, '{ traceDuration > 2s && name = "llm.api_call" }')) == {ids["slow"]}
    assert trace_ids(search(oxeye, "{ }", minDuration="2s")) == {ids["slow"]}
    slow = search(oxeye, "{ kind = server } | avg(duration) > 2s")
    assert trace_ids(slow) == {ids["slow"]}
    assert slow[0]["durationMs"] >= 2000


def test_traceql_structure_pipelines_and_attributes(traced):
    oxeye, ids = traced
    tree = search(oxeye, '{ name = "ticket.checkout" } >> { name = "eligibility.check_membership" }')
    assert trace_ids(tree) == {ids["checkout"]}
    assert tree[0]["spanSets"][0]["spans"][0]["name"] == "eligibility.check_membership"
    assert trace_ids(search(oxeye, '{ kind = server } > { name = "ticket.checkout" }')) == {ids["checkout"]}
    assert trace_ids(search(oxeye, '{ span.event_id = "evt-7" && resource.service.name = "boxoffice" }')) == {
        ids["checkout"]
    }
    assert trace_ids(search(oxeye, '{ resource.service.name = "boxoffice" } | count() > 3')) == {ids["checkout"]}
    grouped = search(oxeye, "{ } | by(resource.service.name)")
    assert all(
        trace["spanSets"][0]["attributes"][0] == {"key": "by(resource.service.name)", "value": {"stringValue": "boxoffice"}}
        for trace in grouped
    )
    # Legacy tag search, as older Grafana sends it.
    now = int(time.time())
    legacy = oxeye.get("/api/search", params={"tags": "event_id=evt-7", "start": now - 3600, "end": now + 60})
    assert legacy.status_code == 200 and trace_ids(legacy.json()["traces"]) == {ids["checkout"]}


def test_tags_and_tag_values(traced):
    oxeye, _ = traced
    scopes = {scope["name"]: scope["tags"] for scope in oxeye.get("/api/v2/search/tags").json()["scopes"]}
    assert "service.name" in scopes["resource"] and "deployment.environment" in scopes["resource"]
    assert "event_id" in scopes["span"] and "request_id" in scopes["span"]
    assert "exception.type" in scopes["event"]
    assert "rootServiceName" in scopes["intrinsic"]
    assert "service.name" in oxeye.get("/api/search/tags").json()["tagNames"]
    values = oxeye.get("/api/v2/search/tag/resource.service.name/values").json()["tagValues"]
    assert values == [{"type": "string", "value": "boxoffice"}]
    assert oxeye.get("/api/search/tag/service.name/values").json()["tagValues"] == ["boxoffice"]
    names = oxeye.get("/api/v2/search/tag/name/values", params={"q": "{ status = error }"}).json()["tagValues"]
    assert {"type": "string", "value": "stripe.webhook.handle"} in names
    assert all(value["type"] == "string" for value in names)


def test_traceql_metrics(traced):
    oxeye, _ = traced
    now = int(time.time())
    response = oxeye.get(
        "/api/metrics/query_range",
        params={"q": "{ kind = server } | count_over_time() by (resource.service.name)", "start": now - 600, "end": now + 60, "step": "60s"},
    )
    assert response.status_code == 200, response.text
    series = response.json()["series"]
    assert len(series) == 1
    assert series[0]["promLabels"] == '{resource.service.name="boxoffice"}'
    assert sum(sample["value"] for sample in series[0]["samples"]) == 3
    instant = oxeye.get(
        "/api/metrics/query", params={"q": "{ status = error } | count_over_time()", "start": now - 600, "end": now + 60}
    )
    assert instant.status_code == 200, instant.text
    assert instant.json()["series"][0]["value"] >= 1


def test_invalid_traceql_is_400_with_the_position(traced):
    oxeye, _ = traced
    response = oxeye.get("/api/search", params={"q": "{ .a = 1 } foo"})
    assert response.status_code == 400
    assert "parse error at line 1, col 12" in response.text
    assert oxeye.get("/api/metrics/query_range", params={"q": "{ }"}).status_code == 400
