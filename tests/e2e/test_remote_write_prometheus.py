"""Debian's real `prometheus` scrapes the prometheus_client app and remote_writes to oxeye; oxeye must then
answer the same queries with the same samples as Prometheus itself."""

from __future__ import annotations

import time

import pytest

from e2e_support import (
    DATA_TIMEOUT_S,
    AppProcess,
    PrometheusServer,
    floats_close,
    matrix_as_set,
    require_prometheus,
    wait_until,
)

RAW_QUERIES = [
    "revel_tickets_sold_total",
    "revel_events_active",
    "django_http_requests_total_by_method_total",
    'django_http_requests_latency_seconds_by_view_method_bucket{view="events:list"}',
    "django_http_responses_total_by_status_total",
    'up{job="django"}',
]


@pytest.fixture(scope="module")
def pair(module_oxeye_factory, app: AppProcess, tmp_path_factory):
    """(oxeye, prometheus): Prometheus scraping the app every second and remote_writing everything to oxeye."""
    require_prometheus()
    oxeye = module_oxeye_factory(self_scrape=False).start()
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "django", "static_configs": [{"targets": [app.target], "labels": {"env": "e2e"}}]}
        ],
        "remote_write": [
            {
                "url": oxeye.url + "/api/v1/write",
                "remote_timeout": "10s",
                "queue_config": {"batch_send_deadline": "1s", "min_backoff": "100ms", "max_backoff": "1s"},
                "metadata_config": {"send": True, "send_interval": "1s"},
            }
        ],
    }
    prometheus = PrometheusServer(tmp_path_factory.mktemp("prometheus"), config).start()
    yield oxeye, prometheus
    prometheus.stop()


def wait_for_scrapes(prometheus, count: int) -> None:
    """Waits until Prometheus has scraped the app `count` times in the last minute."""
    wait_until(
        lambda: len(prometheus.query('up{job="django"}[1m]')["result"][0]["values"]) >= count,
        DATA_TIMEOUT_S,
        f"{count} Prometheus scrapes",
    )


def wait_until_equal(get, expected, what: str) -> None:
    """Waits until `get()` returns `expected` (Prometheus' answer); oxeye may lag by a remote_write batch."""

    def same():
        got = get()
        assert got == expected, (what, got, expected)
        return True

    wait_until(same, DATA_TIMEOUT_S, f"{what} to equal Prometheus'")


def raw_samples(server, query: str, at: float) -> dict:
    data = server.query(f"{query}[2m]", at)
    assert data["resultType"] == "matrix", data
    return matrix_as_set(data["result"])


def test_series_arrive_with_prometheus_labels(pair):
    oxeye, prometheus = pair
    tickets = wait_until(
        lambda: oxeye.query_vector("revel_tickets_sold_total"), DATA_TIMEOUT_S, "remote-written tickets"
    )
    assert sorted(item["value"][1] for item in tickets) == ["42", "7"]
    for item in tickets:
        assert item["metric"]["job"] == "django" and item["metric"]["env"] == "e2e"
        assert item["metric"]["instance"].startswith("127.0.0.1:")
    # Prometheus' own scrape health series travel too.
    wait_until(lambda: oxeye.query_vector('scrape_duration_seconds{job="django"}'), DATA_TIMEOUT_S, "scrape series")


def test_raw_samples_equal_prometheus(pair):
    oxeye, prometheus = pair
    # Let a few scrapes happen, then pick an evaluation time in the past that both have fully.
    wait_for_scrapes(prometheus, 5)
    at = round(time.time() - 2, 3)
    for query in RAW_QUERIES:
        expected = raw_samples(prometheus, query, at)
        assert expected, query

        # oxeye may lag by a remote_write batch; it must catch up to exactly Prometheus' samples.
        wait_until_equal(lambda: raw_samples(oxeye, query, at), expected, f"oxeye's samples for {query}")


@pytest.mark.parametrize(
    "query",
    [
        "sum by (method) (rate(django_http_requests_total_by_method_total[10s]))",
        "histogram_quantile(0.9, sum by (le) (rate(django_http_requests_latency_seconds_by_view_method_bucket[10s])))",
        'sum(increase(django_http_responses_total_by_status_total{status=~"5.."}[10s]))',
        "max_over_time(revel_events_active[1m])",
        "count by (job) (up)",
    ],
)
def test_promql_results_equal_prometheus(pair, query: str):
    oxeye, prometheus = pair
    wait_for_scrapes(prometheus, 12)
    at = round(time.time() - 2, 3)
    expected = prometheus.query(query, at)
    assert expected["resultType"] == "vector" and expected["result"], expected

    def same():
        got = oxeye.query(query, at)
        assert got["resultType"] == "vector"
        want = {frozenset(i["metric"].items()): i["value"] for i in expected["result"]}
        have = {frozenset(i["metric"].items()): i["value"] for i in got["result"]}
        assert have.keys() == want.keys(), (have, want)
        for labels, (t, v) in want.items():
            assert have[labels][0] == t, (labels, have[labels], t)
            assert floats_close(have[labels][1], v), (query, labels, have[labels][1], v)
        return True

    wait_until(same, DATA_TIMEOUT_S, f"oxeye's answer to {query} to equal Prometheus'")


def test_metadata_arrives(pair):
    oxeye, _prometheus = pair

    def counter_metadata():
        data = oxeye.api("/api/v1/metadata")
        for name in ("revel_tickets_sold", "revel_tickets_sold_total"):
            if name in data:
                return data[name]
        return None

    entries = wait_until(counter_metadata, DATA_TIMEOUT_S, "remote-written metadata")
    assert entries[0]["type"] == "counter", entries
    assert entries[0]["help"] == "Tickets sold, by organization, event, tier and payment method.", entries


def canonical(value):
    """`value` with every list of objects sorted, so answers that list series in another order compare equal."""
    if isinstance(value, list):
        items = [canonical(item) for item in value]
        return sorted(items, key=repr) if all(isinstance(item, dict) for item in items) else items
    if isinstance(value, dict):
        return {key: canonical(item) for key, item in value.items()}
    return value


def test_series_and_label_endpoints_equal_prometheus(pair):
    """/api/v1/series, /labels and /label/<name>/values with `match[]`, `start` and `end` give Prometheus'
    answers (https://prometheus.io/docs/prometheus/latest/querying/api/#finding-series-by-label-matchers)."""
    oxeye, prometheus = pair
    wait_for_scrapes(prometheus, 5)
    end = round(time.time() - 2, 3)
    window = {"start": repr(end - 30), "end": repr(end)}
    cases = [
        ("/api/v1/series", [("match[]", "revel_tickets_sold_total"), ("match[]", 'up{job="django"}')]),
        ("/api/v1/series", [("match[]", '{__name__=~"django_http_responses_total_by_status_.*", status=~"2.."}')]),
        ("/api/v1/labels", [("match[]", "revel_tickets_sold_total")]),
        ("/api/v1/labels", [("match[]", 'django_http_requests_latency_seconds_by_view_method_bucket{view="events:list"}')]),
        ("/api/v1/label/instance/values", [("match[]", "up")]),
        ("/api/v1/label/__name__/values", [("match[]", '{__name__=~"revel_.*"}')]),
        ("/api/v1/label/status/values", [("match[]", "django_http_responses_total_by_status_total")]),
    ]
    for path, matchers in cases:
        params = matchers + list(window.items())
        expected = prometheus.api(path, params)
        assert expected, (path, params)
        wait_until_equal(lambda: canonical(oxeye.api(path, params)), canonical(expected), f"oxeye's {path} {matchers}")


@pytest.mark.parametrize(
    "query",
    [
        "sum(rate(django_http_requests_total_by_method_total[5m]))by(method)",
        'sum by (job) (rate(x{status=~"5.."}[5m])) / ignoring(status) group_left sum by (job) (rate(x[5m]))',
        "max_over_time(sum by (job) (rate(y[5m]))[1h:1m] offset 5m)",
        "histogram_quantile(0.95,sum by(le,view)(rate(b_bucket[5m])))>bool 0.5",
        "-a^b*c and on(d) e unless f or topk(3, g)",
    ],
)
def test_format_query_equals_prometheus(pair, query: str):
    """/api/v1/format_query prints a query as Prometheus does."""
    oxeye, prometheus = pair
    assert oxeye.api("/api/v1/format_query", {"query": query}) == prometheus.api(
        "/api/v1/format_query", {"query": query}
    )


def test_status_endpoints_have_prometheus_fields(pair):
    """/api/v1/status/{config,flags,runtimeinfo,tsdb} carry the fields Prometheus' do (the values describe
    each server, so the field names and types are compared)."""
    oxeye, prometheus = pair
    for path in ("/api/v1/status/config", "/api/v1/status/runtimeinfo", "/api/v1/status/tsdb"):
        want = prometheus.api(path)
        have = oxeye.api(path)
        missing = {key: type(value).__name__ for key, value in want.items() if key not in have}
        assert not missing, (path, missing)
        for key, value in want.items():
            assert type(have[key]) is type(value) or {type(have[key]), type(value)} <= {int, float}, (path, key, have[key], value)
    flags = oxeye.api("/api/v1/status/flags")
    assert flags and all(isinstance(value, str) for value in flags.values()), flags
