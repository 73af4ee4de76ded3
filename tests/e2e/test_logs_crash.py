"""Durability of logs: every Loki push oxeye acknowledged survives `kill -9` in the middle of ingest, a push
that was in flight when the process died is stored whole or not at all (the log WAL is written before the
push is acknowledged; issue 4, "WAL with group commit"), and a torn last record of the log WAL is cut off
with a warning."""

from __future__ import annotations

import json
import time
import uuid

import requests

from e2e_support import (
    DATA_TIMEOUT_S,
    AckingSender,
    OxeyeServer,
    kill9_during_ingest,
    tear_wal_tail,
    wait_until,
    wal_segments,
    warnings_matching,
)

SENDERS = 2
LINES_PER_PUSH = 50
MIN_ACKS_BEFORE_KILL = 60  # pushes per sender
SEND_LIMIT_S = 120  # a sender stops by itself after this long, whatever happens


class Sender(AckingSender):
    """Sends Loki push requests back to back and records every acknowledged (2xx) one.

    Push i of a sender carries LINES_PER_PUSH structlog JSON lines, shaped like the seeds' boxoffice app, in the
    stream {service_name=SERVICE, sender=NAME}; each line names its push (`push`) and place (`line`). Timestamps
    are base + (i * LINES_PER_PUSH + k) microseconds, so no two lines share one. It stops at the first
    connection error (the server died) or after SEND_LIMIT_S.
    """

    def __init__(self, url: str, service: str, name: str, base_ns: int) -> None:
        super().__init__(name, SEND_LIMIT_S)
        self.url = url
        self.service = service
        self.base_ns = base_ns

    def body(self, i: int) -> dict:
        values = []
        for k in range(LINES_PER_PUSH):
            line = {
                "event": "request_finished",
                "level": "info",
                "logger": "boxoffice.requests",
                "push": i,
                "line": k,
                "request_id": uuid.uuid4().hex,
                "path": "/api/checkout/",
                "status_code": 200,
                "duration_ms": 41.5,
            }
            values.append([str(self.base_ns + (i * LINES_PER_PUSH + k) * 1000), json.dumps(line)])
        return {"streams": [{"stream": {"service_name": self.service, "sender": self.name}, "values": values}]}

    def send(self, session: requests.Session, i: int) -> requests.Response:
        return session.post(self.url + "/loki/api/v1/push", json=self.body(i), timeout=30)


def lines_per_push(server: OxeyeServer, sender: Sender) -> dict[int, int]:
    """{push number: lines stored}, by LogQL over the Loki API: count_over_time by the `push` field of `| json`."""
    query = (
        f'sum by (push) (count_over_time({{service_name="{sender.service}", sender="{sender.name}"}} | json [30m]))'
    )
    at_ns = sender.base_ns + 10 * 60 * 10**9
    response = server.get("/loki/api/v1/query", params={"query": query, "time": str(at_ns)})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["resultType"] == "vector", data
    return {int(item["metric"]["push"]): int(item["value"][1]) for item in data["result"]}


def assert_acknowledged_whole_and_rest_atomic(server: OxeyeServer, senders: list[Sender]) -> None:
    for sender in senders:
        stored = lines_per_push(server, sender)
        acked = set(sender.acked)
        missing = {i: stored.get(i, 0) for i in acked if stored.get(i, 0) != LINES_PER_PUSH}
        assert not missing, (
            f"{sender.name}: {len(missing)} of {len(acked)} acknowledged pushes not stored whole "
            f"(push: lines stored) {dict(list(missing.items())[:5])}"
        )
        half = {i: n for i, n in stored.items() if i not in acked and n != LINES_PER_PUSH}
        assert not half, f"{sender.name}: pushes in flight at the kill stored in part (push: lines) {half}"
        unknown = [i for i in stored if i >= sender.sent]
        assert not unknown, f"{sender.name}: pushes never sent are stored: {unknown[:5]}"


def test_kill9_during_log_ingest_loses_no_acknowledged_line(oxeye_factory):
    server = oxeye_factory(self_scrape=False).start()
    service = f"crash-{uuid.uuid4().hex[:8]}"
    base_ns = time.time_ns() - 60 * 10**9
    senders = [Sender(server.url, service, f"s{n}", base_ns + n * 10**9 * 20) for n in range(SENDERS)]
    kill9_during_ingest(server, senders, MIN_ACKS_BEFORE_KILL, "sustained log ingest")
    assert all(len(s.acked) >= MIN_ACKS_BEFORE_KILL for s in senders)

    server.start()
    assert_acknowledged_whole_and_rest_atomic(server, senders)

    # It keeps accepting pushes after the restart, and a second kill -9 keeps those too.
    after = Sender(server.url, service, "after-restart", time.time_ns() - 30 * 10**9)
    session = requests.Session()
    for i in range(5):
        response = after.send(session, i)
        assert response.status_code == 204, response.text
        after.acked.append(i)
        after.sent = i + 1
    server.kill9()

    # A torn last record: garbage appended to the newest segment of the log WAL, as a crash mid-write leaves it.
    segments = [segment for wal, segment in wal_segments(server.data_dir).items() if "log" in str(wal)]
    assert segments, f"no log WAL segment (8-digit names) under {server.data_dir}"
    for segment in segments:
        tear_wal_tail(segment)
    server.start()
    warnings = warnings_matching(server, r"log WAL.*torn")
    assert warnings, f"no warning about the torn log WAL tail in the log:\n{server.log_text()[-3000:]}"
    assert wait_until(
        lambda: lines_per_push(server, after) == {i: LINES_PER_PUSH for i in range(5)},
        DATA_TIMEOUT_S,
        "the pushes acknowledged after the restart",
    )
    assert_acknowledged_whole_and_rest_atomic(server, senders + [after])
