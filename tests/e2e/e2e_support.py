"""Helpers for the end-to-end tests: processes (oxeye, Prometheus, the Python app), polling, remote_write bodies.

Everything here talks to processes on 127.0.0.1 only. Waiting is always a bounded poll (`wait_until`), never a
fixed sleep whose length a test depends on.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import cramjam
import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
E2E_DIR = Path(__file__).resolve().parent
APP_SCRIPT = E2E_DIR / "apps" / "django_like_app.py"

# How long a start-up (WAL replay included) may take on the small CI machine with a debug build.
START_TIMEOUT_S = 90.0
# How long ingested data may take to become queryable (scrape intervals of 1 s, remote_write deadlines of 1 s).
DATA_TIMEOUT_S = 60.0
# How long a graceful shutdown may take.
STOP_TIMEOUT_S = 60.0


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def oxeye_binary() -> Path:
    """The oxeye binary under test: $OXEYE_BIN, else <target dir>/debug/oxeye (the runner builds it)."""
    if os.environ.get("OXEYE_BIN"):
        return Path(os.environ["OXEYE_BIN"]).resolve()
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))
    if not target.is_absolute():
        target = REPO_ROOT / target
    return target / "debug" / "oxeye"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WaitTimeout(AssertionError):
    pass


def wal_segments(data_dir: Path) -> dict[Path, Path]:
    """{WAL directory: its newest segment file}; segments are named by 8 decimal digits."""
    newest: dict[Path, Path] = {}
    for path in data_dir.rglob("*"):
        if path.is_file() and re.fullmatch(r"\d{8}", path.name) and "checkpoint" not in str(path.parent.name):
            current = newest.get(path.parent)
            if current is None or int(path.name) > int(current.name):
                newest[path.parent] = path
    return newest


def tear_wal_tail(segment: Path) -> None:
    """Appends a torn last record to a WAL segment, as a crash mid-write leaves it: a frame header announcing
    4096 payload bytes with a bogus CRC, then only a few of them."""
    with open(segment, "ab") as file:
        file.write((4096).to_bytes(4, "little") + b"\xde\xad\xbe\xef" + os.urandom(37))


def warnings_matching(server: "OxeyeServer", pattern: str) -> list[dict]:
    """The WARN records of the server's log (current or last run) whose text matches `pattern` (any case)."""
    return [
        record
        for record in server.log_records()
        if str(record.get("level", "")).upper() in ("WARN", "WARNING") and re.search(pattern, str(record), re.I)
    ]


class AckingSender(threading.Thread):
    """Sends requests back to back (`send(session, i)`, given by a subclass) and records every acknowledged
    (2xx) request number in `acked`, refusals as (number, status, text) in `refused`; `sent` counts the
    requests started. It stops at the first connection error (the server died; `stopped_by` holds it), after
    100 refusals, or after `limit_s` seconds ("time limit")."""

    def __init__(self, name: str, limit_s: float) -> None:
        super().__init__(daemon=True)
        self.name = name
        self.limit_s = limit_s
        self.sent = 0
        self.acked: list[int] = []
        self.refused: list[tuple[int, int, str]] = []
        self.stopped_by = ""

    def send(self, session: requests.Session, i: int) -> requests.Response:
        raise NotImplementedError

    def run(self) -> None:
        session = requests.Session()
        deadline = time.monotonic() + self.limit_s
        i = 0
        while time.monotonic() < deadline:
            self.sent = i + 1
            try:
                response = self.send(session, i)
            except requests.RequestException as error:
                self.stopped_by = repr(error)
                return
            if 200 <= response.status_code < 300:
                self.acked.append(i)
            else:
                self.refused.append((i, response.status_code, response.text[:200]))
                if len(self.refused) > 100:
                    self.stopped_by = "too many refusals"
                    return
            i += 1
        self.stopped_by = "time limit"


def kill9_during_ingest(server: "OxeyeServer", senders: list[AckingSender], min_acks: int, what: str) -> None:
    """Starts the senders, waits until each has `min_acks` acknowledged requests, kills the server with
    SIGKILL while they are still sending, and checks that every sender then stopped on the dead connection
    with nothing refused."""
    for sender in senders:
        sender.start()
    wait_until(
        lambda: all(len(s.acked) >= min_acks for s in senders) or not any(s.is_alive() for s in senders),
        max(s.limit_s for s in senders),
        what,
    )
    assert all(s.is_alive() for s in senders), [(s.name, s.stopped_by, s.refused[:3]) for s in senders]
    server.kill9()  # while the senders are still sending
    for sender in senders:
        sender.join(timeout=60)
        assert not sender.is_alive()
        assert not sender.refused, sender.refused[:5]
        assert sender.stopped_by and sender.stopped_by != "time limit", sender.stopped_by


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Calls `predicate` until it returns a truthy value (which is returned) or `timeout` seconds pass.

    Exceptions raised by the predicate count as "not yet"; the last one is reported on timeout.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    last_value: Any = None
    while True:
        try:
            last_value = predicate()
            if last_value:
                return last_value
        except (requests.RequestException, AssertionError, KeyError, ValueError, IndexError) as error:
            last_error = error
        if time.monotonic() >= deadline:
            detail = f"; last error: {last_error!r}" if last_error else f"; last value: {last_value!r}"
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------------------
# YAML (block style, enough for our configs; strings are double-quoted, which YAML reads as JSON strings)


def to_yaml(value: Any, indent: int = 0) -> str:
    pad = "  " * indent
    if isinstance(value, dict):
        if not value:
            return pad + "{}\n"
        out = []
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                out.append(f"{pad}{key}:\n{to_yaml(item, indent + 1)}")
            else:
                out.append(f"{pad}{key}: {_yaml_scalar(item)}\n")
        return "".join(out)
    if isinstance(value, list):
        if not value:
            return pad + "[]\n"
        out = []
        for item in value:
            if isinstance(item, (dict, list)) and item:
                nested = to_yaml(item, indent + 1)
                out.append(f"{pad}- {nested.lstrip()}")
            else:
                out.append(f"{pad}- {_yaml_scalar(item)}\n")
        return "".join(out)
    return pad + _yaml_scalar(value) + "\n"


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return json.dumps(str(value))


# ---------------------------------------------------------------------------------------------------------
# Processes


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no log>"


class OxeyeServer:
    """One `oxeye serve` process (restartable on the same data directory and ports)."""

    def __init__(
        self,
        workdir: Path,
        *,
        scrape_configs: Iterable[dict] = (),
        self_scrape: bool = True,
        max_request_body_size: str | None = None,
        block_duration: str | None = None,
        log_level: str = "info",
    ) -> None:
        self.binary = oxeye_binary()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = workdir / "data"
        self.config_path = workdir / "oxeye.yaml"
        self.port = free_port()
        self.otlp_http_port = free_port()
        self.otlp_grpc_port = free_port()
        server: dict[str, Any] = {
            "listen": f"127.0.0.1:{self.port}",
            "otlp_http_listen": f"127.0.0.1:{self.otlp_http_port}",
            "otlp_grpc_listen": f"127.0.0.1:{self.otlp_grpc_port}",
        }
        if max_request_body_size is not None:
            server["max_request_body_size"] = max_request_body_size
        self.config = {
            "version": 1,
            "server": server,
            "storage": {"data_dir": str(self.data_dir), **({"block_duration": block_duration} if block_duration else {})},
            "logging": {"level": log_level, "format": "json"},
            "self_scrape": {"enabled": self_scrape, "scrape_interval": "1s"},
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": list(scrape_configs),
        }
        self.config_path.write_text(to_yaml(self.config))
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self.log_path = workdir / "oxeye-0.log"
        self.session = requests.Session()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def otlp_http_url(self) -> str:
        return f"http://127.0.0.1:{self.otlp_http_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = START_TIMEOUT_S) -> "OxeyeServer":
        assert not self.running, "already running"
        self.starts += 1
        self.log_path = self.workdir / f"oxeye-{self.starts}.log"
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [str(self.binary), "serve", "--config", str(self.config_path), "--data-dir", str(self.data_dir)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            code = self.process.poll()
            if code is not None:
                raise AssertionError(f"oxeye exited with {code} during start-up; log:\n{_tail(self.log_path)}")
            try:
                if self.session.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            if time.monotonic() >= deadline:
                self.kill9()
                raise AssertionError(f"oxeye not ready after {timeout:.0f}s; log:\n{_tail(self.log_path)}")
            time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> int:
        """Sends `sig` and waits for the exit; returns the exit code (killing it after `timeout`)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"oxeye did not exit within {timeout:.0f}s of signal {sig}")
        return self.process.returncode

    def kill9(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_records(self) -> list[dict]:
        """The JSON log lines of the current (or last) run; non-JSON lines are returned as {"raw": line}."""
        records = []
        for line in self.log_text().splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
                records.append(record if isinstance(record, dict) else {"raw": line})
            except ValueError:
                records.append({"raw": line})
        return records

    # --- HTTP API helpers

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return self.session.get(self.url + path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return self.session.post(self.url + path, **kwargs)

    def api(self, path: str, params: dict | list | None = None) -> Any:
        """GET a Prometheus API path; asserts status "success" and returns `data`."""
        response = self.get(path, params=params)
        assert response.status_code == 200, f"GET {path} {params}: {response.status_code} {response.text}"
        body = response.json()
        assert body.get("status") == "success", body
        return body["data"]

    def query(self, query: str, at: float | None = None) -> dict:
        params = {"query": query}
        if at is not None:
            params["time"] = repr(at)
        return self.api("/api/v1/query", params)

    def query_vector(self, query: str, at: float | None = None) -> list[dict]:
        data = self.query(query, at)
        assert data["resultType"] == "vector", data
        return data["result"]


class PrometheusServer:
    """Debian's `prometheus` binary with our own config, port and data directory (never its service)."""

    def __init__(self, workdir: Path, config: dict) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(to_yaml(config))
        self.log_path = workdir / "prometheus.log"
        self.process: subprocess.Popen | None = None
        self.session = requests.Session()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = START_TIMEOUT_S) -> "PrometheusServer":
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=info",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited during start-up; log:\n{_tail(self.log_path)}")
            try:
                if self.session.get(self.url + "/-/ready", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            if time.monotonic() >= deadline:
                raise AssertionError(f"prometheus not ready after {timeout:.0f}s; log:\n{_tail(self.log_path)}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def query(self, query: str, at: float | None = None) -> dict:
        params = {"query": query}
        if at is not None:
            params["time"] = repr(at)
        return self.api("/api/v1/query", params)

    def api(self, path: str, params: dict | list | None = None) -> Any:
        """GET a Prometheus API path; asserts status "success" and returns `data`."""
        response = self.session.get(self.url + path, params=params, timeout=30)
        assert response.status_code == 200, f"GET {path} {params}: {response.status_code} {response.text}"
        body = response.json()
        assert body.get("status") == "success", body
        return body["data"]


class AppProcess:
    """The prometheus_client app (apps/django_like_app.py) in its own Python process."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "app.log"
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, str(APP_SCRIPT), "--port", "0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
        )
        log.close()
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode().strip()  # the app prints "LISTENING <port>" first
        if not line.startswith("LISTENING "):
            self.stop()
            raise AssertionError(f"app did not start: {line!r}; log:\n{_tail(self.log_path)}")
        self.port = int(line.split()[1])
        self.target = f"127.0.0.1:{self.port}"
        wait_until(
            lambda: requests.get(f"http://{self.target}/metrics", timeout=2).status_code == 200,
            30,
            "the app's /metrics",
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# ---------------------------------------------------------------------------------------------------------
# Remote write 1.0 bodies, hand-encoded from the field numbers of prometheus/prompb (types.proto, remote.proto)


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field_bytes(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def encode_label(name: str, value: str) -> bytes:
    return field_bytes(1, name.encode()) + field_bytes(2, value.encode())


def encode_sample(value: float, timestamp_ms: int) -> bytes:
    return _varint(1 << 3 | 1) + struct.pack("<d", value) + _varint(2 << 3 | 0) + _varint(timestamp_ms)


def encode_timeseries(
    labels: dict[str, str] | list[tuple[str, str]], samples: Iterable[tuple[int, float]]
) -> bytes:
    """A prometheus.TimeSeries with (timestamp ms, value) samples; a dict's labels are sorted by name, a list's
    pairs are written as given (for malformed label sets)."""
    pairs = sorted(labels.items()) if isinstance(labels, dict) else labels
    body = b"".join(field_bytes(1, encode_label(k, v)) for k, v in pairs)
    body += b"".join(field_bytes(2, encode_sample(value, ts)) for ts, value in samples)
    return body


def encode_write_request(series: Iterable[tuple[Any, Iterable[tuple[int, float]]]]) -> bytes:
    """An uncompressed prometheus.WriteRequest."""
    return b"".join(field_bytes(1, encode_timeseries(labels, samples)) for labels, samples in series)


def snappy_block(data: bytes) -> bytes:
    return bytes(cramjam.snappy.compress_raw(data))


REMOTE_WRITE_HEADERS = {
    "Content-Type": "application/x-protobuf",
    "Content-Encoding": "snappy",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
    "User-Agent": "oxeye-e2e/1.0",
}


def remote_write(session: requests.Session, url: str, body: bytes, timeout: float = 30) -> requests.Response:
    """POSTs an already snappy-compressed body to `url` + /api/v1/write."""
    return session.post(url + "/api/v1/write", data=body, headers=REMOTE_WRITE_HEADERS, timeout=timeout)


# ---------------------------------------------------------------------------------------------------------
# Result comparison


def matrix_as_set(result: list[dict]) -> dict[frozenset, tuple]:
    """A matrix result as {labelset: ((t, "v"), ...)}."""
    return {frozenset(item["metric"].items()): tuple((t, v) for t, v in item["values"]) for item in result}


def floats_close(a: str, b: str, rel: float = 1e-9) -> bool:
    x, y = float(a), float(b)
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return math.isclose(x, y, rel_tol=rel, abs_tol=1e-12)


# ---------------------------------------------------------------------------------------------------------
# Test set-up helpers


def scrape_configs_for(app_target: str, garbage: str | None = None) -> list[dict]:
    """Scrape configs: the app as job "django" (1 s, with label env="e2e"), the garbage target as job "garbage"."""
    configs = [
        {
            "job_name": "django",
            "scrape_interval": "1s",
            "scrape_timeout": "1s",
            "metrics_path": "/metrics",
            "static_configs": [{"targets": [app_target], "labels": {"env": "e2e"}}],
        },
    ]
    if garbage:
        configs.append(
            {
                "job_name": "garbage",
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "static_configs": [{"targets": [garbage]}],
            }
        )
    return configs


def require_prometheus() -> None:
    """Skips (outside CI) or fails (in CI) when Debian's prometheus binary is missing."""
    if shutil.which("prometheus") is None:
        message = "Debian's `prometheus` is not installed: run OXEYE_INSTALL=1 bash scripts/setup-test-env.sh"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
