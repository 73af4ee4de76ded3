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
    wait_until(
        lambda: len(prometheus.query('up{job="django"}[1m]')["result"][0]["values"]) >= 5,
        DATA_TIMEOUT_S,
        "five Prometheus scrapes",
    )
    at = round(time.time() - 2, 3)
    for query in RAW_QUERIES:
        expected = raw_samples(prometheus, query, at)
        assert expected, query

        def same():
            got = raw_samples(oxeye, query, at)
            assert got == expected, (query, len(got), len(expected))
            return True

        # oxeye may lag by a remote_write batch; it must catch up to exactly Prometheus' samples.
        wait_until(same, DATA_TIMEOUT_S, f"oxeye's samples for {query} to equal Prometheus'")


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
    wait_until(
        lambda: len(prometheus.query('up{job="django"}[1m]')["result"][0]["values"]) >= 12,
        DATA_TIMEOUT_S,
        "twelve Prometheus scrapes",
    )
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
