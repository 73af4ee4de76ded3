"""The PromQL query API of the real binary: `stats` in query answers, parse errors that point at the
offending token, and the shapes Grafana relies on."""

from __future__ import annotations

import time

import pytest
import requests

from e2e_support import OxeyeServer, encode_write_request, remote_write, snappy_block

STEP_MS = 15_000


@pytest.fixture(scope="module")
def server(module_oxeye_factory) -> OxeyeServer:
    oxeye = module_oxeye_factory().start()
    # Ten minutes of a counter that grows by 3 every 15 s, ending a minute ago.
    end_ms = (int(time.time() * 1000) // 60_000 - 1) * 60_000
    samples = [(end_ms - index * STEP_MS, float(1000 - index * 3)) for index in range(40, -1, -1)]
    body = snappy_block(encode_write_request([({"__name__": "http_requests_total", "job": "api"}, samples)]))
    response = remote_write(requests.Session(), oxeye.url, body)
    assert response.status_code == 204, response.text
    oxeye.end_s = end_ms / 1000  # type: ignore[attr-defined]
    return oxeye


def test_stats_all_on_range_queries(server: OxeyeServer) -> None:
    end_s = server.end_s  # type: ignore[attr-defined]
    response = server.post(
        "/api/v1/query_range",
        data={
            "query": "rate(http_requests_total[1m])",
            "start": end_s - 180,
            "end": end_s,
            "step": 60,
            "stats": "all",
        },
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["resultType"] == "matrix"
    timings = data["stats"]["timings"]
    assert set(timings) == {
        "evalTotalTime",
        "resultSortTime",
        "queryPreparationTime",
        "innerEvalTime",
        "execQueueTime",
        "execTotalTime",
    }
    samples = data["stats"]["samples"]
    # A 1m window at 15 s holds 4 samples; four steps.
    assert samples["totalQueryableSamplesPerStep"] == [[end_s - 180 + 60 * i, 4] for i in range(4)]
    assert samples["totalQueryableSamples"] == 16
    assert samples["peakSamples"] > 0


def test_stats_absent_unless_asked(server: OxeyeServer) -> None:
    response = server.post("/api/v1/query", data={"query": "http_requests_total", "time": server.end_s})  # type: ignore[attr-defined]
    assert response.status_code == 200
    assert "stats" not in response.json()["data"]
    response = server.post(
        "/api/v1/query", data={"query": "http_requests_total", "time": server.end_s, "stats": "1"}  # type: ignore[attr-defined]
    )
    samples = response.json()["data"]["stats"]["samples"]
    assert samples["totalQueryableSamples"] == 1 and "totalQueryableSamplesPerStep" not in samples


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("foo bar", '1:5: parse error: unexpected identifier "bar"'),
        ("rate(foo[5m]) by (job)", "1:15: parse error: unexpected <by>"),
        ("sum(foo) without", "1:17: parse error: unexpected end of input"),
        ('foo{a="b",,c="d"}', '1:11: parse error: unexpected ","'),
        ("sum(rate(foo[5m])", "1:4: parse error: unclosed left parenthesis"),
    ],
)
def test_parse_errors_point_at_the_token(server: OxeyeServer, query: str, expected: str) -> None:
    response = server.post("/api/v1/query", data={"query": query, "time": 4})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["errorType"] == "bad_data"
    assert body["error"] == f'invalid parameter "query": {expected}'
