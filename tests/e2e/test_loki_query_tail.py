"""The Loki query API against the real binary: live tail over a WebSocket with a real client
(websocket-client), patterns, index stats and volume, and invalid LogQL answered 400 with its position."""

from __future__ import annotations

import json
import socket as sockets
import time
import urllib.parse

import requests
import websocket

from e2e_support import DATA_TIMEOUT_S, OxeyeServer


def push(oxeye: OxeyeServer, service: str, lines: list[tuple[int, str]]) -> None:
    body = {"streams": [{"stream": {"service_name": service, "env": "e2e"},
                         "values": [[str(ts), line] for ts, line in lines]}]}
    response = requests.post(f"{oxeye.url}/loki/api/v1/push", json=body, timeout=10)
    assert response.status_code == 204, response.text


def test_tail_streams_pushed_lines_over_a_websocket(oxeye: OxeyeServer) -> None:
    now = time.time_ns()
    push(oxeye, "boxoffice", [(now - 5_000_000_000, '{"event": "request_finished", "status_code": 200}')])
    query = urllib.parse.quote('{service_name="boxoffice"} |= "request"')
    ws_url = oxeye.url.replace("http://", "ws://")
    socket = websocket.create_connection(
        f"{ws_url}/loki/api/v1/tail?query={query}&start={now - 60_000_000_000}&limit=50", timeout=DATA_TIMEOUT_S)
    try:
        first = json.loads(socket.recv())
        assert first["streams"][0]["stream"]["service_name"] == "boxoffice"
        assert first["streams"][0]["values"][0][1] == '{"event": "request_finished", "status_code": 200}'
        assert first["dropped_entries"] is None
        push(oxeye, "boxoffice", [(time.time_ns(), '{"event": "request_started"}'), (time.time_ns(), "other")])
        second = json.loads(socket.recv())
        lines = [value[1] for stream in second["streams"] for value in stream["values"]]
        assert lines == ['{"event": "request_started"}']
    finally:
        socket.close()
    # A metric query cannot be tailed: refused before the upgrade.
    metric = urllib.parse.quote('count_over_time({service_name="boxoffice"}[1m])')
    try:
        websocket.create_connection(f"{ws_url}/loki/api/v1/tail?query={metric}", timeout=10)
        raise AssertionError("a metric query was accepted for tail")
    except websocket.WebSocketBadStatusException as refused:
        assert refused.status_code == 400


def test_tail_that_falls_behind_lists_dropped_entries(oxeye: OxeyeServer) -> None:
    """A client that stops reading while lines keep coming: once its live tail is more than 10 s behind
    (MAX_LIVE_LAG_NS in loki_tail.rs), the server skips to the present and lists what it skipped in
    `dropped_entries`, as Loki's tailer does for a client that cannot keep up. Takes about 15 s: the lag
    bound is real time. The tail reads 2 s behind (`delay_for`), so no push lands after the tail has read
    past its timestamps, even on a slow debug build."""
    query = urllib.parse.quote('{service_name="slowreader"}')
    ws_url = oxeye.url.replace("http://", "ws://")
    # One entry per message and a small receive buffer, so the server's sends block after a few MB.
    socket = websocket.create_connection(
        f"{ws_url}/loki/api/v1/tail?query={query}&limit=1&delay_for=2", timeout=DATA_TIMEOUT_S,
        sockopt=((sockets.SOL_SOCKET, sockets.SO_RCVBUF, 16_384),))
    try:
        started = time.monotonic()
        # 60 lines of 200 KiB (the default line limit is 256 KiB): more than loopback's socket buffers hold.
        filler = "x" * (200 * 1024)
        pushed = 0
        for batch in range(6):
            push(oxeye, "slowreader", [(time.time_ns(), f"big {batch}-{index} {filler}") for index in range(10)])
            pushed += 10
        # Small lines keep coming while the client reads nothing; it starts reading when the tail lags over
        # 10 s behind its window's end (now less 2 s), which by then holds every line pushed.
        while time.monotonic() - started < 11.5:
            push(oxeye, "slowreader", [(time.time_ns(), f"small line at {time.time_ns()}")])
            pushed += 1
            time.sleep(0.5)
        time.sleep(max(0.0, started + 14.5 - time.monotonic()))
        sent: list[tuple[str, str]] = []
        dropped = None
        deadline = time.monotonic() + DATA_TIMEOUT_S
        while dropped is None and time.monotonic() < deadline:
            message = json.loads(socket.recv())
            dropped = message["dropped_entries"]
            sent.extend((value[0], value[1]) for stream in message["streams"] for value in stream["values"])
    finally:
        socket.close()
    assert dropped, "no message listed dropped entries"
    assert all(entry["labels"] == {"service_name": "slowreader", "env": "e2e"} for entry in dropped), dropped[:3]
    timestamps = [int(entry["timestamp"]) for entry in dropped]
    assert timestamps == sorted(timestamps)
    # The blocked sends were of the big lines; every line pushed was either sent or listed as dropped, once.
    assert sent and all(line.startswith("big ") for _, line in sent), [line[:20] for _, line in sent]
    assert not {timestamp for timestamp, _ in sent} & {entry["timestamp"] for entry in dropped}
    assert len(sent) + len(dropped) == pushed, (len(sent), len(dropped), pushed)


def test_patterns_stats_volume_and_parse_errors(oxeye: OxeyeServer) -> None:
    now = time.time_ns()
    lines = [(now - (30 - i) * 1_000_000_000, f"task {name} done in {i}ms")
             for i, name in enumerate(["notify", "receipt", "notify", "refund"])]
    push(oxeye, "worker", lines)
    params = {"query": '{service_name="worker"}', "start": str(now - 60_000_000_000), "end": str(now)}
    patterns = requests.get(f"{oxeye.url}/loki/api/v1/patterns", params=params, timeout=10).json()
    assert patterns["status"] == "success"
    assert patterns["data"][0]["pattern"] == "task <_> done in <_>"
    assert sum(count for _, count in patterns["data"][0]["samples"]) == 4
    stats = requests.get(f"{oxeye.url}/loki/api/v1/index/stats", params=params, timeout=10).json()
    assert stats["streams"] == 1 and stats["entries"] == 4
    assert stats["bytes"] == sum(len(line) for _, line in lines)
    volume = requests.get(f"{oxeye.url}/loki/api/v1/index/volume",
                          params={**params, "query": '{env="e2e"}', "targetLabels": "service_name"}, timeout=10).json()
    by_service = {item["metric"]["service_name"]: int(item["value"][1]) for item in volume["data"]["result"]}
    assert by_service["worker"] == stats["bytes"]
    # volume_range: Loki's bucketed shape; every byte counted once over the buckets.
    ranged = requests.get(f"{oxeye.url}/loki/api/v1/index/volume_range",
                          params={**params, "query": '{service_name="worker"}', "step": "10s"}, timeout=10).json()
    assert ranged["data"]["resultType"] in ("matrix", "vector")
    (worker,) = ranged["data"]["result"]
    samples = worker["values"] if "values" in worker else [worker["value"]]
    assert worker["metric"] == {"service_name": "worker"}
    assert sum(int(value) for _, value in samples) == stats["bytes"]
    detected = requests.get(f"{oxeye.url}/loki/api/v1/detected_labels", params=params, timeout=10).json()
    assert {"label": "service_name", "cardinality": 1} in detected["detectedLabels"]
    bad = requests.get(f"{oxeye.url}/loki/api/v1/query_range",
                       params={**params, "query": '{service_name="worker"} | jsn'}, timeout=10)
    assert bad.status_code == 400
    assert bad.text.startswith("parse error at line 1, col 27:"), bad.text


def test_detected_fields_name_structured_metadata_and_parsed_fields(oxeye: OxeyeServer) -> None:
    now = time.time_ns()
    body = {"streams": [{"stream": {"service_name": "fields", "env": "e2e"}, "values": [
        [str(now - 3_000_000_000), '{"event": "login", "http": {"status": 200}, "took": "15ms", "env": "x"}',
         {"trace_id": "0af7651916cd43dd8448eb211c80319c"}],
        [str(now - 2_000_000_000), '{"event": "logout", "http": {"status": 404}, "took": "2s", "env": "y"}',
         {"trace_id": "b7ad6b7169203331b7ad6b7169203331"}],
        [str(now - 1_000_000_000), 'level=warn size=12KB ok=true', {"trace_id": "0af7651916cd43dd8448eb211c80319c"}],
    ]}]}
    assert requests.post(f"{oxeye.url}/loki/api/v1/push", json=body, timeout=10).status_code == 204
    params = {"query": '{service_name="fields"}', "start": str(now - 60_000_000_000), "end": str(now)}
    answer = requests.get(f"{oxeye.url}/loki/api/v1/detected_fields", params=params, timeout=10).json()
    fields = {field["label"]: field for field in answer["fields"]}
    assert answer["limit"] == 1000
    # Structured metadata: no parser (null), as Loki reports it.
    assert fields["trace_id"] == {"label": "trace_id", "type": "string", "cardinality": 2, "parsers": None}
    # Nested JSON keys flattened, typed from their values; a key naming a stream label gets `_extracted`.
    assert fields["http_status"] == {"label": "http_status", "type": "int", "cardinality": 2, "parsers": ["json"]}
    assert fields["took"]["type"] == "duration"
    assert fields["env_extracted"]["cardinality"] == 2
    assert "env" not in fields and "service_name" not in fields
    assert fields["level"]["parsers"] == ["logfmt"]
    assert fields["size"]["type"] == "bytes" and fields["ok"]["type"] == "boolean"
    limited = requests.get(f"{oxeye.url}/loki/api/v1/detected_fields", params={**params, "field_limit": "2"},
                           timeout=10).json()
    assert len(limited["fields"]) == 2 and limited["limit"] == 2
