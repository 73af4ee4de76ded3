"""oxeye scraping a real prometheus_client app (and itself), queried through the HTTP API."""

from __future__ import annotations

import math
import time

from e2e_support import DATA_TIMEOUT_S, AppProcess, OxeyeServer, scrape_configs_for, wait_until

TICKETS = "revel_tickets_sold_total"
LATENCY = "django_http_requests_latency_seconds_by_view_method"


def values_by(result: list[dict], label: str) -> dict[str, float]:
    return {item["metric"].get(label, ""): float(item["value"][1]) for item in result}


def test_self_scrape_makes_up_queryable(oxeye: OxeyeServer):
    result = wait_until(
        lambda: oxeye.query_vector('up{job="oxeye"}'), DATA_TIMEOUT_S, 'up{job="oxeye"} from the self-scrape'
    )
    assert len(result) == 1, result
    series = result[0]
    assert series["metric"]["__name__"] == "up"
    assert series["metric"]["job"] == "oxeye"
    assert series["metric"].get("instance"), series
    assert series["value"][1] == "1"
    # The self-scrape stores oxeye's own metrics too, not only `up`.
    names = oxeye.api("/api/v1/label/__name__/values", {"match[]": '{job="oxeye"}'})
    assert "scrape_duration_seconds" in names
    assert len(names) > 5, names


def test_app_is_scraped_with_target_labels(scraping_oxeye: OxeyeServer, app: AppProcess):
    up = wait_until(
        lambda: scraping_oxeye.query_vector('up{job="django"} == 1'), DATA_TIMEOUT_S, 'up{job="django"} == 1'
    )
    assert up[0]["metric"] == {"__name__": "up", "job": "django", "instance": app.target, "env": "e2e"}

    tickets = wait_until(lambda: scraping_oxeye.query_vector(TICKETS), DATA_TIMEOUT_S, TICKETS)
    assert values_by(tickets, "payment_method") == {"online": 42.0, "free": 7.0}
    for item in tickets:
        assert item["metric"]["job"] == "django"
        assert item["metric"]["instance"] == app.target
        assert item["metric"]["env"] == "e2e"
        assert item["metric"]["organization_id"] == "org-1"
        assert item["metric"]["event_id"] == "evt-1"
        assert item["metric"]["tier_id"] == "general"

    gauge = scraping_oxeye.query_vector('revel_events_active{job="django"}')
    assert [(g["metric"]["organization_id"], g["value"][1]) for g in gauge] == [("org-1", "3")]


def test_scrape_health_series(scraping_oxeye: OxeyeServer):
    wait_until(lambda: scraping_oxeye.query_vector('up{job="django"} == 1'), DATA_TIMEOUT_S, "django up")
    for name in ("scrape_duration_seconds", "scrape_samples_scraped", "scrape_samples_post_metric_relabeling",
                 "scrape_series_added"):
        result = wait_until(
            lambda: scraping_oxeye.query_vector(f'{name}{{job="django"}}'), DATA_TIMEOUT_S, name
        )
        assert len(result) == 1, (name, result)
    scraped = float(scraping_oxeye.query_vector('scrape_samples_scraped{job="django"}')[0]["value"][1])
    assert scraped > 20, scraped  # the app exposes dozens of samples (histogram buckets, process metrics...)


def test_counters_increase_between_scrapes(scraping_oxeye: OxeyeServer):
    query = 'sum(django_http_requests_total_by_method_total{job="django"})'
    first = float(wait_until(lambda: scraping_oxeye.query_vector(query), DATA_TIMEOUT_S, query)[0]["value"][1])
    wait_until(
        lambda: float(scraping_oxeye.query_vector(query)[0]["value"][1]) > first,
        DATA_TIMEOUT_S,
        "the request counter to grow",
    )
    rate = wait_until(
        lambda: scraping_oxeye.query_vector('sum(rate(django_http_requests_total_by_method_total[5s])) > 0'),
        DATA_TIMEOUT_S,
        "a positive request rate",
    )
    assert float(rate[0]["value"][1]) > 0


def test_histogram_buckets_are_consistent(scraping_oxeye: OxeyeServer):
    bucket = f"{LATENCY}_bucket"
    wait_until(lambda: scraping_oxeye.query_vector(f'{bucket}{{view="events:list"}}'), DATA_TIMEOUT_S, bucket)
    buckets = scraping_oxeye.query_vector(f'{bucket}{{view="events:list",method="GET"}}')
    bounds = sorted(float(b["metric"]["le"]) for b in buckets)
    assert bounds == [0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 25.0, 50.0, 75.0,
                      math.inf]
    # Cumulative: counts never decrease with le (all from the same scrape).
    counts = [float(b["value"][1]) for b in sorted(buckets, key=lambda b: float(b["metric"]["le"]))]
    assert counts == sorted(counts), counts
    # le="+Inf" equals _count for every view/method.
    diff = scraping_oxeye.query_vector(f'{bucket}{{le="+Inf"}} - ignoring(le) {LATENCY}_count')
    assert diff and all(item["value"][1] == "0" for item in diff), diff
    # histogram_quantile over the cumulative buckets answers a latency inside the bucket range.
    quantile = scraping_oxeye.query_vector(f"histogram_quantile(0.5, sum by (le) ({bucket}))")
    assert len(quantile) == 1, quantile
    assert 0 < float(quantile[0]["value"][1]) <= 2.5, quantile


def test_target_going_away_is_down_and_its_series_go_stale(oxeye_factory, tmp_path):
    own_app = AppProcess(tmp_path / "app")
    try:
        server = oxeye_factory(scrape_configs=scrape_configs_for(own_app.target)).start()
        wait_until(lambda: server.query_vector(f'{TICKETS}{{job="django"}}'), DATA_TIMEOUT_S, "the app scraped")
    finally:
        own_app.stop()
    wait_until(lambda: server.query_vector('up{job="django"} == 0'), DATA_TIMEOUT_S, 'up{job="django"} == 0')
    # A failed scrape writes stale markers: the series vanish from instant queries at once, not after 5 m.
    wait_until(lambda: server.query_vector(f'{TICKETS}{{job="django"}}') == [], DATA_TIMEOUT_S, "stale series")
    # The raw samples are still there.
    raw = server.query(f'{TICKETS}{{job="django"}}[10m]')
    assert raw["resultType"] == "matrix" and len(raw["result"]) == 2, raw


def test_exemplars_from_openmetrics(scraping_oxeye: OxeyeServer, app: AppProcess):
    # prometheus_client exposes exemplars in OpenMetrics only, so this also proves the format negotiation.
    now = time.time()
    params = {"query": 'revel_payments_total{job="django"}', "start": str(now - 600), "end": str(now + 600)}
    data = wait_until(
        lambda: scraping_oxeye.api("/api/v1/query_exemplars", params), DATA_TIMEOUT_S, "the scraped exemplar"
    )
    assert len(data) == 1, data
    assert data[0]["seriesLabels"] == {
        "__name__": "revel_payments_total", "job": "django", "instance": app.target, "env": "e2e",
        "organization_id": "org-1", "status": "succeeded", "payment_method": "online",
    }
    exemplars = data[0]["exemplars"]
    # The same exemplar is exposed by every scrape; it is stored once.
    assert len(exemplars) == 1, exemplars
    exemplar = exemplars[0]
    assert exemplar["labels"] == {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7"}
    assert exemplar["value"] == "1.5"
    assert now - 600 < exemplar["timestamp"] <= time.time()


def test_clashing_target_label_becomes_exported(scraping_oxeye: OxeyeServer, app: AppProcess):
    result = wait_until(
        lambda: scraping_oxeye.query_vector('revel_celery_queue_depth{job="django"}'), DATA_TIMEOUT_S, "queue depth"
    )
    assert len(result) == 1, result
    labels = result[0]["metric"]
    assert labels["instance"] == app.target, labels  # the target's label wins (honor_labels: false)
    assert labels["exported_instance"] == "worker-1", labels
    assert labels["queue"] == "emails" and result[0]["value"][1] == "12"


def test_escaped_label_values_round_trip(scraping_oxeye: OxeyeServer):
    result = wait_until(
        lambda: scraping_oxeye.query_vector('django_http_exceptions_total_by_type_total{job="django"}'),
        DATA_TIMEOUT_S,
        "the exceptions counter",
    )
    assert [item["metric"]["type"] for item in result] == ['Value"Error\\ in\nview é'], result
    # The same value works as an exact matcher (PromQL string escapes) and in label values.
    matched = scraping_oxeye.query_vector('django_http_exceptions_total_by_type_total{type="Value\\"Error\\\\ in\\nview é"}')
    assert len(matched) == 1, matched
    assert 'Value"Error\\ in\nview é' in scraping_oxeye.api("/api/v1/label/type/values")


def test_dotted_names_from_prometheus_client_are_stored(scraping_oxeye: OxeyeServer):
    # prometheus_client 0.26 writes quoted UTF-8 names when the scraper accepts them, underscores otherwise;
    # either way the scrape must parse and the series must be queryable under one of the two names.
    def found():
        names = scraping_oxeye.api("/api/v1/label/__name__/values", {"match[]": '{job="django"}'})
        return [n for n in names if n in ("revel_http_requests_total", "revel.http.requests_total")]

    (name,) = wait_until(found, DATA_TIMEOUT_S, "the dotted counter")
    result = scraping_oxeye.query_vector(f'{{__name__="{name}", job="django"}}')
    assert len(result) == 1 and result[0]["value"][1] == "5", result
    route_label = "http_route" if name == "revel_http_requests_total" else "http.route"
    assert result[0]["metric"][route_label] == "/api/events/", result
