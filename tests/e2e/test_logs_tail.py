"""File tailing with a real writer: Python's RotatingFileHandler writes structlog JSON through many rotations
while oxeye tails the files; every line arrives exactly once, also across an oxeye restart in the middle (with
rotations while oxeye is down) and across a copytruncate-style truncation."""

from __future__ import annotations

import json
import logging
import logging.handlers
import time
import uuid
from collections import Counter
from pathlib import Path

import structlog

from e2e_support import DATA_TIMEOUT_S, OxeyeServer, to_yaml, wait_until
from test_logs_clients import grep_data_dir


def tailing_server(oxeye_factory, log_dir: Path, service: str) -> OxeyeServer:
    server = oxeye_factory(self_scrape=False)
    server.config["logs"] = {
        "files": [{
            "paths": [str(log_dir / "app.log*")],
            "labels": {"service_name": service},
            "json_labels": ["logger"],
            "format": "json",
        }]
    }
    server.config_path.write_text(to_yaml(server.config))
    return server


def rotating_structlog(path: Path, name: str, max_bytes: int) -> tuple[structlog.stdlib.BoundLogger, logging.Handler]:
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=200)
    handler.setFormatter(logging.Formatter("%(message)s"))
    stdlib_logger = logging.getLogger(name)
    stdlib_logger.handlers = [handler]
    stdlib_logger.setLevel(logging.INFO)
    stdlib_logger.propagate = False
    log = structlog.wrap_logger(
        stdlib_logger,
        processors=[
            structlog.stdlib.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
    )
    return log, handler


def tailed_app(oxeye_factory, tmp_path: Path, kind: str, max_bytes: int):
    """A started oxeye tailing `<tmp>/applogs/app.log*` as service `<kind>-<run>`, and a structlog logger writing
    that file through a RotatingFileHandler: (log_dir, run, service, server, log, handler)."""
    log_dir = tmp_path / "applogs"
    log_dir.mkdir()
    run = uuid.uuid4().hex[:8]
    service = f"{kind}-{run}"
    server = tailing_server(oxeye_factory, log_dir, service).start()
    log, handler = rotating_structlog(log_dir / "app.log", f"{kind}.{run}", max_bytes=max_bytes)
    return log_dir, run, service, server, log, handler


def request_ids(server: OxeyeServer, service: str) -> Counter:
    now_ns = time.time_ns()
    response = server.get(
        "/loki/api/v1/query_range",
        params={"query": f'{{service_name="{service}"}}', "start": str(now_ns - 3600 * 10**9),
                "end": str(now_ns + 60 * 10**9), "limit": "5000", "direction": "forward"},
    )
    assert response.status_code == 200, response.text
    counted: Counter = Counter()
    for stream in response.json()["data"]["result"]:
        assert stream["stream"]["logger"] == "boxoffice.views", stream["stream"]
        for _, line in stream["values"]:
            counted[json.loads(line)["request_id"]] += 1
    return counted


def write_lines(log, run: str, start: int, count: int) -> None:
    for index in range(start, start + count):
        log.info("request_finished", request_id=f"{run}-{index:04d}", trace_id=uuid.uuid4().hex,
                 user_id=str(index % 17), path="/api/events/3/checkout/", status_code=200, logger="boxoffice.views")


def test_rotating_file_handler_lines_arrive_exactly_once_across_rotations_and_a_restart(oxeye_factory, tmp_path):
    log_dir, run, service, server, log, handler = tailed_app(oxeye_factory, tmp_path, "tailed", max_bytes=4000)
    try:
        write_lines(log, run, 0, 150)
        wait_until(lambda: sum(request_ids(server, service).values()) >= 100, DATA_TIMEOUT_S,
                   "the first lines tailed")
        # Stopped mid-way: lines keep coming and files keep rotating while oxeye is down.
        assert server.stop() == 0
        write_lines(log, run, 150, 150)
        server.start()
        write_lines(log, run, 300, 150)
        expected = {f"{run}-{index:04d}" for index in range(450)}

        def all_arrived() -> Counter | None:
            counted = request_ids(server, service)
            return counted if set(counted) == expected else None

        counted = wait_until(all_arrived, DATA_TIMEOUT_S, "all 450 lines tailed")
        rotated = sorted(path.name for path in log_dir.iterdir())
        assert len(rotated) > 10, f"the handler should have rotated many times: {rotated}"
        duplicates = {request_id: count for request_id, count in counted.items() if count != 1}
        assert duplicates == {}, f"lines stored more than once: {duplicates}"
        # Nothing else arrives later.
        time.sleep(1.5)
        assert sum(request_ids(server, service).values()) == 450
        metrics = server.get("/metrics").text
        assert "oxeye_log_tail_lines_total" in metrics
    finally:
        handler.close()


def test_truncated_file_is_read_again_from_the_start(oxeye_factory, tmp_path):
    log_dir, run, service, server, log, handler = tailed_app(oxeye_factory, tmp_path, "truncated", max_bytes=0)
    path = log_dir / "app.log"
    try:
        write_lines(log, run, 0, 20)
        wait_until(lambda: sum(request_ids(server, service).values()) == 20, DATA_TIMEOUT_S, "20 lines tailed")
        # copytruncate: the file is emptied in place and written again from its start.
        with open(path, "r+") as file:
            file.truncate(0)
        handler.stream.seek(0)
        write_lines(log, run, 20, 5)
        expected = {f"{run}-{index:04d}" for index in range(25)}
        counted = wait_until(lambda: (found := request_ids(server, service)) and set(found) == expected and found,
                             DATA_TIMEOUT_S, "the 5 lines written after the truncation")
        assert all(count == 1 for count in counted.values()), counted
    finally:
        handler.close()


def test_tailed_lines_are_redacted_before_they_are_stored(oxeye_factory, tmp_path):
    _, run, service, server, log, handler = tailed_app(oxeye_factory, tmp_path, "redacted", max_bytes=0)
    password, card = f"hunter2-{run}", "4111111111111111"
    try:
        log.info("password_changed", request_id=f"{run}-0000", password=password, logger="boxoffice.views")
        log.info("payment_failed", request_id=f"{run}-0001", note=f"card {card} declined", logger="boxoffice.views")
        wait_until(lambda: sum(request_ids(server, service).values()) == 2, DATA_TIMEOUT_S, "2 lines tailed")
        now_ns = time.time_ns()
        response = server.get("/loki/api/v1/query_range", params={
            "query": f'{{service_name="{service}"}}', "start": str(now_ns - 3600 * 10**9),
            "end": str(now_ns + 60 * 10**9), "direction": "forward"})
        lines = [json.loads(line) for stream in response.json()["data"]["result"] for _, line in stream["values"]]
        assert {line["event"]: line.get("password", line.get("note")) for line in lines} == {
            "password_changed": "[REDACTED]", "payment_failed": "card [REDACTED] declined"}, lines
        assert grep_data_dir(server.data_dir, [password, card]) == {}
    finally:
        handler.close()
