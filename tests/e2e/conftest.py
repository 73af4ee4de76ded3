"""Fixtures for the end-to-end tests: oxeye servers, the prometheus_client app, a garbage scrape target.

Nothing is built here: the runner builds `target/debug/oxeye` first (or points $OXEYE_BIN at a binary).
Every oxeye started through `oxeye_factory` is stopped with SIGTERM at teardown and must exit 0.
"""

from __future__ import annotations

import http.server
import signal
import threading
from pathlib import Path
from typing import Callable, Iterator

import pytest

from e2e_support import AppProcess, OxeyeServer, oxeye_binary, scrape_configs_for


def pytest_sessionstart(session: pytest.Session) -> None:
    binary = oxeye_binary()
    if not binary.is_file():
        raise pytest.UsageError(f"oxeye binary not found at {binary}: run `cargo build -p oxeye` or set OXEYE_BIN")


def _factory(base: Path) -> Iterator[Callable[..., OxeyeServer]]:
    servers: list[OxeyeServer] = []

    def make(**options) -> OxeyeServer:
        server = OxeyeServer(base / f"oxeye{len(servers)}", **options)
        servers.append(server)
        return server

    yield make
    failures = []
    for server in servers:
        if server.running:
            code = server.stop(signal.SIGTERM)
            if code != 0:
                failures.append(f"{server.url}: exit code {code} after SIGTERM; log tail:\n{server.log_text()[-3000:]}")
    if failures:
        pytest.fail("\n".join(failures))


@pytest.fixture
def oxeye_factory(tmp_path: Path) -> Iterator[Callable[..., OxeyeServer]]:
    """Makes (unstarted) oxeye servers in their own directories; stops survivors with SIGTERM, expecting 0."""
    yield from _factory(tmp_path)


@pytest.fixture(scope="module")
def module_oxeye_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., OxeyeServer]]:
    """As `oxeye_factory`, for servers shared by the tests of one module."""
    yield from _factory(tmp_path_factory.mktemp("oxeye"))


@pytest.fixture
def oxeye(oxeye_factory) -> OxeyeServer:
    """A started oxeye with self-scrape on and no other scrape targets."""
    return oxeye_factory().start()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    """The django-like prometheus_client app, serving /metrics on a free port."""
    process = AppProcess(tmp_path_factory.mktemp("app"))
    yield process
    process.stop()


GARBAGE_BODY = b"<html><body><h1>Welcome to nginx!</h1></body></html>\n"


class _GarbageHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(GARBAGE_BODY)))
        self.end_headers()
        self.wfile.write(GARBAGE_BODY)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def garbage_target() -> Iterator[str]:
    """A scrape target answering 200 with an HTML page instead of metrics; yields "127.0.0.1:PORT"."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _GarbageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def scraping_oxeye(module_oxeye_factory, app, garbage_target) -> OxeyeServer:
    """oxeye (shared by a module) scraping the app (job "django", 1 s) and the garbage target (job "garbage")."""
    return module_oxeye_factory(scrape_configs=scrape_configs_for(app.target, garbage_target)).start()
