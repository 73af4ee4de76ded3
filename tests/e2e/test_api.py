"""Response shapes of the Prometheus HTTP API, as https://prometheus.io/docs/prometheus/latest/querying/api/
documents them and as Grafana's Prometheus datasource calls them."""

from __future__ import annotations

import time

import pytest
import requests

from e2e_support import DATA_TIMEOUT_S, AppProcess, OxeyeServer, wait_until

TICKETS = "revel_tickets_sold_total"
LATENCY_BUCKET = "django_http_requests_latency_seconds_by_view_method_bucket"


@pytest.fixture(scope="module")
def server(scraping_oxeye: OxeyeServer) -> OxeyeServer:
    """The module's scraping oxeye, once the app's series and the self-scrape are queryable."""
    wait_until(lambda: len(scraping_oxeye.query_vector(TICKETS)) == 2, DATA_TIMEOUT_S, TICKETS)
    # The app's request series appear with its first simulated request, 0.1 s after it starts listening:
    # a first scrape may come before it.
    wait_until(lambda: scraping_oxeye.query_vector(LATENCY_BUCKET), DATA_TIMEOUT_S, LATENCY_BUCKET)
    wait_until(lambda: scraping_oxeye.query_vector('up{job="oxeye"}'), DATA_TIMEOUT_S, "the self-scrape")
    return scraping_oxeye


def envelope(response: requests.Response) -> dict:
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    body = response.json()
    assert body["status"] == "success", body
    assert set(body) <= {"status", "data", "warnings", "infos"}, body
    return body["data"]


def is_number_string(value) -> bool:
    if not isinstance(value, str):
        return False
    float(value)
    return True


def test_grafana_save_and_test(server: OxeyeServer):
    # Exactly what Grafana's datasource health check sends and expects.
    response = server.post("/api/v1/query", data={"query": "1+1", "time": "4"})
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "success", "data": {"resultType": "scalar", "result": [4, "2"]}}
    response = server.get("/api/v1/status/buildinfo")
    data = envelope(response)
    for key in ("version", "revision", "branch", "buildUser", "buildDate", "goVersion"):
        assert isinstance(data[key], str), (key, data)
    assert data["version"], data
    # A non-empty "features" map makes Grafana take us for Mimir and call ruler APIs.
    assert not data.get("features"), data


def test_instant_query_vector_shape(server: OxeyeServer):
    at = time.time()
    data = envelope(server.get("/api/v1/query", params={"query": TICKETS, "time": f"{at:.3f}"}))
    assert data["resultType"] == "vector"
    assert len(data["result"]) == 2
    for item in data["result"]:
        assert set(item) == {"metric", "value"}, item
        assert item["metric"]["__name__"] == TICKETS
        t, v = item["value"]
        assert isinstance(t, (int, float)) and abs(t - round(at, 3)) < 1e-6, (t, at)
        assert is_number_string(v)


def test_instant_query_rfc3339_time_and_scalar_string(server: OxeyeServer):
    data = envelope(server.get("/api/v1/query", params={"query": "2 * 21", "time": "2026-01-01T00:00:00Z"}))
    assert data == {"resultType": "scalar", "result": [1767225600, "42"]}
    data = envelope(server.get("/api/v1/query", params={"query": '"hello"', "time": "10"}))
    assert data == {"resultType": "string", "result": [10, "hello"]}


def test_instant_query_matrix_shape(server: OxeyeServer):
    data = envelope(server.get("/api/v1/query", params={"query": f"{TICKETS}[1m]"}))
    assert data["resultType"] == "matrix"
    assert len(data["result"]) == 2
    for item in data["result"]:
        assert set(item) == {"metric", "values"}
        assert item["values"], item
        for t, v in item["values"]:
            assert isinstance(t, (int, float)) and is_number_string(v)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_query_range_shape(server: OxeyeServer, method: str):
    end = int(time.time()) + 1  # not before the first scrape, which may have been less than a second ago
    start = end - 20
    params = {"query": f'sum by (payment_method) ({TICKETS})', "start": str(start), "end": str(end), "step": "5s"}
    if method == "GET":
        response = server.get("/api/v1/query_range", params=params)
    else:
        response = server.post("/api/v1/query_range", data=params)
    data = envelope(response)
    assert data["resultType"] == "matrix"
    by_method = {item["metric"]["payment_method"]: item for item in data["result"]}
    assert set(by_method) == {"online", "free"}, data
    for payment_method, expected in (("online", "42"), ("free", "7")):
        item = by_method[payment_method]
        assert item["metric"] == {"payment_method": payment_method}
        assert item["values"], item
        for t, v in item["values"]:
            assert (t - start) % 5 == 0 and start <= t <= end, t  # aligned to start + k * step
            assert v == expected


def test_query_range_step_as_float_seconds_and_rfc3339(server: OxeyeServer):
    data = envelope(
        server.get(
            "/api/v1/query_range",
            params={"query": "vector(1)", "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:00:10Z",
                    "step": "2.5"},
        )
    )
    assert data == {
        "resultType": "matrix",
        "result": [{"metric": {}, "values": [[1767225600, "1"], [1767225602.5, "1"], [1767225605, "1"],
                                              [1767225607.5, "1"], [1767225610, "1"]]}],
    }


def test_series_shape(server: OxeyeServer, app: AppProcess):
    end = time.time()
    params = {"match[]": [TICKETS, 'up{job="django"}'], "start": str(end - 300), "end": str(end)}
    get = envelope(server.get("/api/v1/series", params=params))
    post = envelope(server.post("/api/v1/series", data=params))
    assert sorted(map(str, get)) == sorted(map(str, post))
    assert len(get) == 3, get
    for labels in get:
        assert isinstance(labels, dict)
        assert labels["job"] == "django" and labels["instance"] == app.target
        assert labels["__name__"] in (TICKETS, "up")


def test_series_requires_match(server: OxeyeServer):
    response = server.get("/api/v1/series")
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == "error" and body["errorType"] == "bad_data", body


def test_labels_shape(server: OxeyeServer):
    names = envelope(server.get("/api/v1/labels"))
    assert names == sorted(names), names
    for name in ("__name__", "job", "instance", "env", "payment_method", "le"):
        assert name in names, name
    matched = envelope(server.get("/api/v1/labels", params={"match[]": TICKETS}))
    assert set(matched) == {"__name__", "job", "instance", "env", "organization_id", "event_id", "tier_id",
                            "payment_method"}, matched


def test_label_values_shape(server: OxeyeServer):
    names = envelope(server.get("/api/v1/label/__name__/values"))
    assert names == sorted(names)
    assert TICKETS in names and "up" in names and LATENCY_BUCKET in names
    jobs = envelope(server.get("/api/v1/label/job/values"))
    assert {"django", "oxeye"} <= set(jobs), jobs
    methods = envelope(server.get("/api/v1/label/payment_method/values", params={"match[]": TICKETS}))
    assert methods == ["free", "online"]
    assert envelope(server.get("/api/v1/label/no_such_label/values")) == []


def test_metadata_shape(server: OxeyeServer):
    def metadata_for(*names):
        data = envelope(server.get("/api/v1/metadata"))
        for name in names:
            if name in data:
                return data[name]
        return None

    # prometheus_client speaks OpenMetrics when asked, where the counter family is named without `_total`.
    tickets = wait_until(lambda: metadata_for("revel_tickets_sold", TICKETS), DATA_TIMEOUT_S, "counter metadata")
    assert tickets[0] == {"type": "counter", "help": "Tickets sold, by organization, event, tier and payment method.",
                          "unit": ""}
    latency = metadata_for("django_http_requests_latency_seconds_by_view_method")
    assert latency and latency[0]["type"] == "histogram", latency
    gauge = metadata_for("revel_events_active")
    assert gauge and gauge[0]["type"] == "gauge", gauge
    one = envelope(server.get("/api/v1/metadata", params={"metric": "revel_events_active"}))
    assert list(one) == ["revel_events_active"], one
    limited = envelope(server.get("/api/v1/metadata", params={"limit": "1"}))
    assert len(limited) == 1, limited


def test_targets_shape(server: OxeyeServer, app: AppProcess):
    def django_target():
        data = envelope(server.get("/api/v1/targets"))
        found = [t for t in data["activeTargets"] if t["labels"].get("job") == "django"]
        return found if found and found[0]["health"] == "up" else None

    (target,) = wait_until(django_target, DATA_TIMEOUT_S, "the django target up")
    for key in ("discoveredLabels", "labels", "scrapePool", "scrapeUrl", "globalUrl", "lastError", "lastScrape",
                "lastScrapeDuration", "health", "scrapeInterval", "scrapeTimeout"):
        assert key in target, (key, target)
    assert target["labels"] == {"job": "django", "instance": app.target, "env": "e2e"}
    assert target["scrapePool"] == "django"
    assert target["scrapeUrl"] == f"http://{app.target}/metrics"
    assert target["lastError"] == ""
    assert target["scrapeInterval"] == "1s"
    assert isinstance(target["lastScrapeDuration"], (int, float))
    data = envelope(server.get("/api/v1/targets"))
    assert data["droppedTargets"] == []
    jobs = {t["labels"]["job"] for t in data["activeTargets"]}
    assert {"django", "garbage"} <= jobs, jobs


def test_rules_and_alerts_are_empty_not_missing(server: OxeyeServer):
    assert envelope(server.get("/api/v1/rules")) == {"groups": []}
    assert envelope(server.get("/api/v1/alerts")) == {"alerts": []}


def test_health_endpoints(server: OxeyeServer):
    for path in ("/healthz", "/readyz", "/-/healthy", "/-/ready"):
        assert server.get(path).status_code == 200, path
    metrics = server.get("/metrics")
    assert metrics.status_code == 200
    assert "# TYPE" in metrics.text


def test_query_errors_use_the_envelope(server: OxeyeServer):
    response = server.get("/api/v1/query", params={"query": "up", "time": "yesterday-ish"})
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == "error" and body["errorType"] == "bad_data"
    assert "time" in body["error"], body
    response = server.get("/api/v1/query_range", params={"query": "up", "start": "10", "end": "0", "step": "1"})
    assert response.status_code == 400
    assert response.json()["errorType"] == "bad_data"
    response = server.get("/api/v1/query_range", params={"query": "up", "start": "0", "end": "10", "step": "0"})
    assert response.status_code == 400
    assert response.json()["errorType"] == "bad_data"
