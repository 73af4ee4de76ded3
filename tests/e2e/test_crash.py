"""Durability: what oxeye acknowledged survives `kill -9`; a torn last WAL record is cut off with a warning;
SIGTERM and SIGINT shut down cleanly (exit 0) with the data still there after a restart."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import requests

from e2e_support import (
    DATA_TIMEOUT_S,
    AckingSender,
    OxeyeServer,
    encode_write_request,
    kill9_during_ingest,
    remote_write,
    snappy_block,
    tear_wal_tail,
    wait_until,
    wal_segments,
    warnings_matching,
)

SERIES_PER_REQUEST = 20
SENDERS = 2
MIN_ACKS_BEFORE_KILL = 150  # per sender
SEND_LIMIT_S = 120  # a sender stops by itself after this long, whatever happens


class Sender(AckingSender):
    """Sends remote_write requests back to back and records every acknowledged (2xx) one.

    Request i carries one sample per series `crash_test_samples{sender=NAME, shard="k"}` (k < 20) at
    timestamp base + i * 10 ms with value i * 1000 + k. It stops at the first connection error (the server
    died) or after SEND_LIMIT_S.
    """

    def __init__(self, url: str, name: str, base_ms: int) -> None:
        super().__init__(name, SEND_LIMIT_S)
        self.url = url
        self.base_ms = base_ms

    def body(self, i: int) -> bytes:
        ts = self.base_ms + i * 10
        series = [
            ({"__name__": "crash_test_samples", "sender": self.name, "shard": str(k)}, [(ts, float(i * 1000 + k))])
            for k in range(SERIES_PER_REQUEST)
        ]
        return snappy_block(encode_write_request(series))

    def send(self, session: requests.Session, i: int) -> requests.Response:
        return remote_write(session, self.url, self.body(i), timeout=30)

    def expected(self) -> dict[tuple[str, int], float]:
        """{(shard, timestamp ms): value} of every acknowledged sample."""
        return {
            (str(k), self.base_ms + i * 10): float(i * 1000 + k) for i in self.acked for k in range(SERIES_PER_REQUEST)
        }


def stored_samples(server: OxeyeServer, sender: Sender) -> dict[tuple[str, int], float]:
    last_ms = sender.base_ms + (max(sender.acked, default=0) + 1000) * 10
    data = server.query(f'crash_test_samples{{sender="{sender.name}"}}[1h]', at=last_ms / 1000)
    out = {}
    for item in data["result"]:
        for t, v in item["values"]:
            out[(item["metric"]["shard"], int(round(float(t) * 1000)))] = float(v)
    return out


def assert_all_acknowledged_present(server: OxeyeServer, senders: list[Sender]) -> None:
    for sender in senders:
        expected = sender.expected()
        stored = stored_samples(server, sender)
        missing = [key for key in expected if key not in stored]
        assert not missing, f"{sender.name}: {len(missing)} of {len(expected)} acknowledged samples lost, e.g. {missing[:5]}"
        wrong = [(key, stored[key], value) for key, value in expected.items() if stored[key] != value]
        assert not wrong, f"{sender.name}: wrong values {wrong[:5]}"


def test_kill9_during_ingest_loses_no_acknowledged_sample(oxeye_factory):
    server = oxeye_factory(self_scrape=False).start()
    base_ms = int(time.time() * 1000) - 60_000
    senders = [Sender(server.url, f"s{n}", base_ms) for n in range(SENDERS)]
    kill9_during_ingest(server, senders, MIN_ACKS_BEFORE_KILL, "sustained ingest")

    server.start()
    assert_all_acknowledged_present(server, senders)

    # More acknowledged writes after the restart, so the newest WAL segment holds records of its own.
    second = Sender(server.url, "s-after-restart", int(time.time() * 1000) - 30_000)
    session = requests.Session()
    for i in range(50):
        response = remote_write(session, server.url, second.body(i))
        assert response.status_code in (200, 204), response.text
        second.acked.append(i)
    senders.append(second)

    # A torn last record: garbage appended to the newest segment of every WAL, as a crash mid-write leaves it.
    server.kill9()
    segments = wal_segments(server.data_dir)
    assert segments, f"no WAL segment files (8-digit names) under {server.data_dir}"
    assert any(segment.stat().st_size > 64 for segment in segments.values()), "the newest segments hold no records"
    for segment in segments.values():
        tear_wal_tail(segment)
    server.start()
    warnings = warnings_matching(server, r"torn|truncat")
    assert warnings, f"no warning about the torn WAL tail in the log:\n{server.log_text()[-3000:]}"
    assert_all_acknowledged_present(server, senders)

    # And it keeps accepting writes after the repair.
    after = Sender(server.url, "after-repair", int(time.time() * 1000))
    response = remote_write(requests.Session(), server.url, after.body(0))
    assert response.status_code in (200, 204), response.text
    after.acked.append(0)
    assert_all_acknowledged_present(server, [after])


def write_marker(server: OxeyeServer, name: str, value: float) -> int:
    ts = int(time.time() * 1000)
    body = snappy_block(encode_write_request([({"__name__": name, "job": "lifecycle"}, [(ts, value)])]))
    response = remote_write(server.session, server.url, body)
    assert response.status_code in (200, 204), response.text
    return ts


def test_sigterm_exits_zero_and_data_survives_restart(oxeye_factory):
    server = oxeye_factory().start()
    ts = write_marker(server, "lifecycle_marker", 17)
    wait_until(lambda: server.query_vector('up{job="oxeye"}'), DATA_TIMEOUT_S, "a self-scrape")
    assert server.stop(signal.SIGTERM) == 0, server.log_text()[-3000:]
    server.start()
    data = server.query("lifecycle_marker[1h]", at=ts / 1000 + 1)
    assert [(v[0], v[1]) for v in data["result"][0]["values"]] == [(ts / 1000, "17")], data
    # The self-scraped series from before the restart are still there too.
    before = server.query('up{job="oxeye"}[1h]', at=ts / 1000 + 60)
    assert before["result"], before


def test_sigint_exits_zero(oxeye_factory):
    server = oxeye_factory().start()
    ts = write_marker(server, "lifecycle_sigint", 3)
    assert server.stop(signal.SIGINT) == 0, server.log_text()[-3000:]
    server.start()
    data = server.query("lifecycle_sigint[1h]", at=ts / 1000 + 1)
    assert data["result"] and data["result"][0]["values"][-1][1] == "3", data


def test_two_servers_cannot_share_a_data_dir(oxeye_factory):
    first = oxeye_factory(self_scrape=False).start()
    second = oxeye_factory(self_scrape=False)
    second.data_dir = first.data_dir  # `--data-dir` overrides the config file's
    try:
        second.start(timeout=30)
    except AssertionError as error:
        assert "exited" in str(error), error
        assert re.search(r"lock|in use|already", second.log_text(), re.I), second.log_text()[-2000:]
    else:
        second.kill9()
        raise AssertionError("a second oxeye started on a data directory that another one holds")


def test_sigterm_during_ingest_keeps_every_acknowledged_sample(oxeye_factory):
    server = oxeye_factory(self_scrape=False).start()
    base_ms = int(time.time() * 1000) - 60_000
    senders = [Sender(server.url, f"term{n}", base_ms) for n in range(SENDERS)]
    for sender in senders:
        sender.start()
    wait_until(
        lambda: all(len(s.acked) >= 100 for s in senders) or not any(s.is_alive() for s in senders),
        SEND_LIMIT_S,
        "sustained ingest",
    )
    assert all(s.is_alive() for s in senders), [(s.name, s.stopped_by, s.refused[:3]) for s in senders]
    assert server.stop(signal.SIGTERM) == 0, server.log_text()[-3000:]
    for sender in senders:
        sender.join(timeout=60)
        assert not sender.is_alive()
    server.start()
    assert_all_acknowledged_present(server, senders)


def blocks(data_dir: Path) -> list[Path]:
    # The metrics store keeps its blocks in data_dir/metrics (one subdirectory per store).
    return [meta.parent for meta in data_dir.glob("metrics/*/meta.json")]


def test_acknowledged_samples_survive_block_cuts_checkpoints_and_kill9(oxeye_factory):
    # 1-minute blocks and ten minutes of history: the server's maintenance (every minute) cuts blocks out of
    # the head and checkpoints the WAL; a kill -9 after that must still find every sample, in blocks or WAL.
    server = oxeye_factory(self_scrape=False, block_duration="1m").start()
    history = Sender(server.url, "history", int(time.time() * 1000) - 10 * 60_000)
    session = requests.Session()
    step = 100  # in units of Sender's 10 ms: one sample per second
    for first in range(0, 60_000, step * 10):  # ten seconds of samples per request
        indexes = list(range(first, first + step * 10, step))
        series = [
            (
                {"__name__": "crash_test_samples", "sender": history.name, "shard": str(k)},
                [(history.base_ms + i * 10, float(i * 1000 + k)) for i in indexes],
            )
            for k in range(SERIES_PER_REQUEST)
        ]
        response = remote_write(session, server.url, snappy_block(encode_write_request(series)))
        assert response.status_code in (200, 204), response.text
        history.acked.extend(indexes)
    assert_all_acknowledged_present(server, [history])
    wait_until(lambda: blocks(server.data_dir), 180, "a block cut by maintenance", interval=1)

    # Fresh writes after the cut, then a crash.
    recent = Sender(server.url, "recent", int(time.time() * 1000))
    for i in range(20):
        response = remote_write(session, server.url, recent.body(i))
        assert response.status_code in (200, 204), response.text
        recent.acked.append(i)
    server.kill9()
    server.start()
    assert blocks(server.data_dir)
    assert_all_acknowledged_present(server, [history, recent])
    # A query spanning blocks and head returns each sample once (no duplicates at the cut line).
    data = server.query(
        'count_over_time(crash_test_samples{sender="history", shard="0"}[15m])', at=time.time()
    )
    assert [item["value"][1] for item in data["result"]] == [str(len(history.acked))], data
