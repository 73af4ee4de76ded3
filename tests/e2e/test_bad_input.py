"""Bad input is refused with a status and a message naming the problem, and nothing of it is stored."""

from __future__ import annotations

import json
import os
import re
import time

import pytest
import requests

from e2e_support import (
    DATA_TIMEOUT_S,
    OxeyeServer,
    encode_timeseries,
    encode_write_request,
    field_bytes,
    remote_write,
    scrape_configs_for,
    snappy_block,
    wait_until,
)

LIMIT = 1 << 20  # max_request_body_size of the server below: 1 MiB


@pytest.fixture(scope="module")
def server(module_oxeye_factory) -> OxeyeServer:
    return module_oxeye_factory(max_request_body_size="1MiB").start()


def now_ms() -> int:
    return int(time.time() * 1000)


def assert_not_stored(server: OxeyeServer, name: str) -> None:
    assert server.query(f"{name}[1h]")["result"] == [], f"{name} was stored"
    assert server.api("/api/v1/series", {"match[]": name}) == [], f"{name} has series"


def good_body(name: str, value: float = 1.0) -> bytes:
    return encode_write_request([({"__name__": name, "job": "bad-input"}, [(now_ms(), value)])])


def test_good_remote_write_is_stored(server: OxeyeServer):
    # The control for the tests below: the same body shape, well-formed, is accepted and queryable.
    response = remote_write(server.session, server.url, snappy_block(good_body("bad_input_control", 5)))
    assert response.status_code in (200, 204), response.text
    result = wait_until(lambda: server.query_vector("bad_input_control"), DATA_TIMEOUT_S, "the control series")
    assert result[0]["value"][1] == "5"


def test_remote_write_not_snappy(server: OxeyeServer):
    raw = good_body("bad_input_not_snappy")  # protobuf sent without compression
    response = remote_write(server.session, server.url, raw)
    assert response.status_code == 400, response.text
    assert "snappy" in response.text.lower(), response.text
    assert_not_stored(server, "bad_input_not_snappy")


def test_remote_write_truncated_snappy(server: OxeyeServer):
    compressed = snappy_block(good_body("bad_input_truncated_snappy") * 50)
    response = remote_write(server.session, server.url, compressed[: len(compressed) // 2])
    assert response.status_code == 400, response.text
    assert "snappy" in response.text.lower(), response.text
    assert_not_stored(server, "bad_input_truncated_snappy")


def test_remote_write_malformed_protobuf_stores_nothing(server: OxeyeServer):
    # A valid TimeSeries followed by a second one whose length prefix runs past the end of the message.
    valid = field_bytes(1, encode_timeseries({"__name__": "bad_input_partial", "job": "x"}, [(now_ms(), 1.0)]))
    torn = b"\x0a\xe8\x07" + b"\x0a\x05abc"  # field 1, length 1000, only 5 bytes follow
    response = remote_write(server.session, server.url, snappy_block(valid + torn))
    assert response.status_code == 400, response.text
    text = response.text.lower()
    assert re.search(r"protobuf|decode|writerequest|truncat|eof", text), response.text
    assert_not_stored(server, "bad_input_partial")


@pytest.mark.parametrize(
    "bad_labels, named",
    [
        ([("__name__", "bad_input_dup"), ("job", "a"), ("job", "b")], "job"),  # duplicate label name
        ([("", "x"), ("__name__", "bad_input_empty_name")], "label"),  # empty label name
    ],
    ids=["duplicate-label", "empty-label-name"],
)
def test_remote_write_invalid_labels_store_nothing(server: OxeyeServer, bad_labels, named):
    neighbour = f"bad_input_neighbour_{named}"
    body = encode_write_request(
        [
            ({"__name__": neighbour, "job": "x"}, [(now_ms(), 1.0)]),
            (bad_labels, [(now_ms(), 1.0)]),
        ]
    )
    response = remote_write(server.session, server.url, snappy_block(body))
    assert response.status_code == 400, response.text
    assert named in response.text.lower(), response.text
    assert_not_stored(server, neighbour)


def test_remote_write_oversized_body_is_413(server: OxeyeServer):
    body = os.urandom(LIMIT + 4096)  # larger than the limit before any decoding
    response = remote_write(server.session, server.url, body)
    assert response.status_code == 413, (response.status_code, response.text[:200])


def test_remote_write_decompression_bomb_is_413(server: OxeyeServer):
    # Small on the wire, larger than the limit once decompressed.
    series = [({"__name__": "bad_input_bomb", "i": str(i), "pad": "x" * 200}, [(now_ms(), 1.0)]) for i in range(8000)]
    raw = encode_write_request(series)
    assert len(raw) > 1.5 * LIMIT
    compressed = snappy_block(raw)
    assert len(compressed) < LIMIT
    response = remote_write(server.session, server.url, compressed)
    assert response.status_code == 413, (response.status_code, response.text[:200])
    assert_not_stored(server, "bad_input_bomb")


def test_otlp_malformed_json_is_400(server: OxeyeServer):
    body = b'{"resourceMetrics": [{"resource": {"attributes": ['
    response = server.post("/v1/metrics", data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    status = response.json()  # google.rpc.Status in JSON
    assert status.get("message"), status
    assert re.search(r"json|line|column|eof|expected|parse", status["message"], re.I), status


def test_otlp_json_with_a_bad_value_stores_nothing(server: OxeyeServer):
    ts = str(time.time_ns())
    point = {"timeUnixNano": ts, "asDouble": 1.0}
    bad_point = {"timeUnixNano": ts, "asDouble": "one point five"}
    body = {
        "resourceMetrics": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "bad-input"}}]},
                "scopeMetrics": [
                    {
                        "metrics": [
                            {"name": "bad_input_otlp_good", "gauge": {"dataPoints": [point]}},
                            {"name": "bad_input_otlp_bad", "gauge": {"dataPoints": [bad_point]}},
                        ]
                    }
                ],
            }
        ]
    }
    response = server.post("/v1/metrics", data=json.dumps(body), headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert "asDouble" in response.json().get("message", "") or "double" in response.text.lower(), response.text
    assert_not_stored(server, "bad_input_otlp_good")
    assert_not_stored(server, "bad_input_otlp_bad")


def test_otlp_malformed_protobuf_is_400(server: OxeyeServer):
    response = server.post(
        "/v1/metrics", data=b"\x0a\xff\xff\xff\x0f\x01", headers={"Content-Type": "application/x-protobuf"}
    )
    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"].startswith("application/x-protobuf"), response.headers
    assert len(response.content) > 0  # a google.rpc.Status carrying the message


def test_otlp_oversized_body_is_413(server: OxeyeServer):
    response = server.post(
        "/v1/metrics", data=os.urandom(LIMIT + 4096), headers={"Content-Type": "application/x-protobuf"}
    )
    assert response.status_code == 413, (response.status_code, response.text[:200])
    response = requests.post(
        server.otlp_http_url + "/v1/metrics",
        data=os.urandom(LIMIT + 4096),
        headers={"Content-Type": "application/x-protobuf"},
        timeout=30,
    )
    assert response.status_code == 413, (response.status_code, response.text[:200])


@pytest.mark.parametrize(
    "query",
    ["sum(rate(up[5m])", "up{job=}", "rate(up)", "up + ", "1 +* 2", 'histogram_quantile(0.9, rate(x[5m]) by (le)'],
)
def test_invalid_promql_is_400_bad_data_with_position(server: OxeyeServer, query: str):
    for response in (
        server.get("/api/v1/query", params={"query": query}),
        server.post("/api/v1/query", data={"query": query}),
        server.get("/api/v1/query_range", params={"query": query, "start": "0", "end": "60", "step": "15"}),
    ):
        assert response.status_code == 400, (query, response.text)
        body = response.json()
        assert body["status"] == "error" and body["errorType"] == "bad_data", body
        # Prometheus words it "1:14: parse error: ..." (line:column); accept "char N" / "position N" too.
        assert re.search(r"\d+:\d+|char \d+|position \d+|column \d+", body["error"]), body


def test_missing_query_parameter(server: OxeyeServer):
    response = server.get("/api/v1/query")
    assert response.status_code == 400
    body = response.json()
    assert body["errorType"] == "bad_data" and "query" in body["error"], body


def test_garbage_target_is_down_with_its_parse_error(module_oxeye_factory, app, garbage_target):
    server = module_oxeye_factory(scrape_configs=scrape_configs_for(app.target, garbage_target)).start()

    def targets_settled():
        data = server.api("/api/v1/targets")
        by_job = {t["labels"]["job"]: t for t in data["activeTargets"]}
        if by_job.get("garbage", {}).get("health") == "down" and by_job.get("django", {}).get("health") == "up":
            return by_job
        return None

    by_job = wait_until(targets_settled, DATA_TIMEOUT_S, "garbage down and django up")
    garbage = by_job["garbage"]
    assert garbage["lastError"], garbage
    assert re.search(r"pars|invalid|unexpected|expected", garbage["lastError"], re.I), garbage
    assert by_job["django"]["lastError"] == ""
    up = {item["metric"]["job"]: item["value"][1] for item in server.query_vector('up{job=~"garbage|django"}')}
    assert up == {"garbage": "0", "django": "1"}, up
    # Nothing from the garbage page became a series.
    names = server.api("/api/v1/label/__name__/values", {"match[]": '{job="garbage"}'})
    assert not [n for n in names if n not in {"up", "scrape_duration_seconds", "scrape_samples_scraped",
                                              "scrape_samples_post_metric_relabeling", "scrape_series_added"}], names


def otlp_request(*names: str) -> bytes:
    """A serialized ExportMetricsServiceRequest with one gauge point per name (opentelemetry-proto's classes)."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    request = ExportMetricsServiceRequest()
    resource_metrics = request.resource_metrics.add()
    resource_metrics.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="bad-pb")))
    scope_metrics = resource_metrics.scope_metrics.add()
    for name in names:
        metric = scope_metrics.metrics.add()
        metric.name = name
        point = metric.gauge.data_points.add()
        point.time_unix_nano = time.time_ns()
        point.as_double = 1.0
    return request.SerializeToString()


def test_otlp_torn_protobuf_stores_nothing(server: OxeyeServer):
    control = server.post("/v1/metrics", data=otlp_request("bad_input_pb_control"),
                          headers={"Content-Type": "application/x-protobuf"})
    assert control.status_code == 200, control.text
    wait_until(lambda: server.query_vector("bad_input_pb_control"), DATA_TIMEOUT_S, "the control gauge")
    body = otlp_request("bad_input_pb_good", "bad_input_pb_other")
    response = server.post("/v1/metrics", data=body[:-5], headers={"Content-Type": "application/x-protobuf"})
    assert response.status_code == 400, response.text
    assert_not_stored(server, "bad_input_pb_good")


def test_otlp_grpc_malformed_is_invalid_argument(server: OxeyeServer):
    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{server.otlp_grpc_port}") as channel:
        export = channel.unary_unary("/opentelemetry.proto.collector.metrics.v1.MetricsService/Export")
        with pytest.raises(grpc.RpcError) as raised:
            export(b"\x0a\xff\xff\xff\x0f\x01", timeout=30)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value
        assert raised.value.details(), raised.value
        # The same channel still works for a good request.
        assert export(otlp_request("bad_input_grpc_after"), timeout=30) is not None
    wait_until(lambda: server.query_vector("bad_input_grpc_after"), DATA_TIMEOUT_S, "the gauge sent after the error")


def test_query_range_too_many_points(server: OxeyeServer):
    response = server.get("/api/v1/query_range", params={"query": "1", "start": "0", "end": "100000", "step": "1"})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["errorType"] == "bad_data" and "11,000" in body["error"], body
