"""The command line: `oxeye config example`, `oxeye config check FILE`, `oxeye --version`."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import requests

from e2e_support import DATA_TIMEOUT_S, START_TIMEOUT_S, free_port, oxeye_binary, wait_until


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(oxeye_binary()), *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, **kwargs
    )


def test_example_config_passes_its_own_check_through_a_pipe():
    # The README's way: `oxeye config example | oxeye config check /dev/stdin`.
    binary = str(oxeye_binary())
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", f"'{binary}' config example | '{binary}' config check /dev/stdin"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


def test_example_config_documents_every_section():
    result = run("config", "example")
    assert result.returncode == 0, result.stderr
    for section in ("version:", "server:", "storage:", "query:", "logging:", "self_scrape:", "global:",
                    "scrape_configs:"):
        assert section in result.stdout, section


def test_unknown_field_fails_naming_field_and_line(tmp_path: Path):
    config = tmp_path / "oxeye.yaml"
    config.write_text("version: 1\nstorage:\n  data_dir: /tmp/x\n  retension: 7d\n")
    result = run("config", "check", str(config))
    assert result.returncode != 0
    assert "retension" in result.stderr, result.stderr
    assert "line 4" in result.stderr, result.stderr
    assert str(config) in result.stderr, result.stderr


def test_unknown_top_level_field_fails(tmp_path: Path):
    config = tmp_path / "oxeye.yaml"
    config.write_text("version: 1\nscrape_config: []\n")
    result = run("config", "check", str(config))
    assert result.returncode != 0
    assert "scrape_config" in result.stderr and "line 2" in result.stderr, result.stderr


def test_bad_duration_fails_naming_the_field(tmp_path: Path):
    config = tmp_path / "oxeye.yaml"
    config.write_text('version: 1\nstorage:\n  retention: "30 parsecs"\n')
    result = run("config", "check", str(config))
    assert result.returncode != 0
    assert "retention" in result.stderr, result.stderr


def test_trace_storage_section_is_documented_and_checked(tmp_path: Path):
    example = run("config", "example")
    assert "retention" in example.stdout.split("traces:", 1)[1].split("sampling:", 1)[0], example.stdout
    config = tmp_path / "oxeye.yaml"
    config.write_text('version: 1\ntraces:\n  storage:\n    retention: 7d\n    page_size: "512B"\n')
    result = run("config", "check", str(config))
    assert result.returncode != 0
    assert "traces.storage.page_size" in result.stderr, result.stderr
    config.write_text("version: 1\ntraces:\n  storage:\n    retention: 7d\n    max_head_span: 10\n")
    result = run("config", "check", str(config))
    assert result.returncode != 0
    assert "max_head_span" in result.stderr and "line 5" in result.stderr, result.stderr
    config.write_text("version: 1\ntraces:\n  storage:\n    retention: 7d\n    max_head_age: 1m\n")
    result = run("config", "check", str(config))
    assert result.returncode == 0, result.stderr


def test_missing_file_fails_naming_it(tmp_path: Path):
    missing = tmp_path / "nope.yaml"
    result = run("config", "check", str(missing))
    assert result.returncode != 0
    assert str(missing) in result.stderr, result.stderr


def test_valid_config_with_scrape_configs_passes(tmp_path: Path):
    config = tmp_path / "oxeye.yaml"
    config.write_text(
        "version: 1\n"
        "server:\n  listen: 127.0.0.1:19090\n"
        "storage:\n  data_dir: ./data\n  retention: 7d\n  retention_size: 10GiB\n"
        "scrape_configs:\n"
        "  - job_name: django\n    scrape_interval: 15s\n    metrics_path: /metrics\n"
        "    static_configs:\n      - targets: ['127.0.0.1:8000']\n        labels: {env: dev}\n"
    )
    result = run("config", "check", str(config))
    assert result.returncode == 0, result.stderr
    assert "127.0.0.1:19090" in result.stdout


def test_environment_override_is_checked(tmp_path: Path):
    config = tmp_path / "oxeye.yaml"
    config.write_text("version: 1\n")
    env = dict(os.environ, OXEYE_STORAGE__RETENTION="not-a-duration")
    result = run("config", "check", str(config), env=env)
    assert result.returncode != 0
    assert "OXEYE_STORAGE__RETENTION" in result.stderr or "retention" in result.stderr, result.stderr


def test_version_flag():
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("oxeye "), result.stdout


def test_serve_configured_by_flags_and_environment_only(tmp_path: Path):
    # No config file: the listeners come from OXEYE_* variables (values read as YAML), the data dir from a flag.
    port, otlp_port = free_port(), free_port()
    env = dict(
        os.environ,
        OXEYE_SERVER__LISTEN=f"127.0.0.1:{port}",
        OXEYE_SERVER__OTLP_HTTP_LISTEN=f"127.0.0.1:{otlp_port}",
        OXEYE_SERVER__OTLP_GRPC_LISTEN='""',
        OXEYE_SELF_SCRAPE__SCRAPE_INTERVAL="1s",
        OXEYE_LOGGING__FORMAT="text",
    )
    log_path = tmp_path / "oxeye.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(oxeye_binary()), "serve", "--data-dir", str(tmp_path / "data")],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        def ready():
            assert process.poll() is None, log_path.read_text()
            return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200

        wait_until(ready, START_TIMEOUT_S, "oxeye ready on the port from OXEYE_SERVER__LISTEN")
        assert requests.post(f"http://127.0.0.1:{otlp_port}/v1/metrics", data=b"",
                             headers={"Content-Type": "application/x-protobuf"}, timeout=10).status_code == 200
        wait_until(
            lambda: requests.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": 'up{job="oxeye"}'},
                                 timeout=10).json()["data"]["result"],
            DATA_TIMEOUT_S,
            "the self-scrape",
        )
        assert (tmp_path / "data").is_dir() and any((tmp_path / "data").iterdir())
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log_path.read_text()[-3000:]
