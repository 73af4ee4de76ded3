"""The `logs:` limits through the real server: lines over logs.max_line_size rejected (400, Loki's message) or
truncated per policy, entries older than logs.retention refused, each counted in /metrics by reason; bad
`logs:` settings refused by `oxeye config check` naming the field."""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from pathlib import Path

from e2e_support import DATA_TIMEOUT_S, OxeyeServer, oxeye_binary, to_yaml, wait_until


def server_with_logs(oxeye_factory, logs: dict) -> OxeyeServer:
    server = oxeye_factory(self_scrape=False)
    server.config["logs"] = logs
    server.config_path.write_text(to_yaml(server.config))
    return server.start()


def push(server: OxeyeServer, service: str, values: list[list[str]]):
    return server.post("/loki/api/v1/push", json={"streams": [{"stream": {"service_name": service}, "values": values}]})


def metric(server: OxeyeServer, name: str, labels: str = "") -> float:
    pattern = re.compile(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", re.MULTILINE)
    found = pattern.search(server.get("/metrics").text)
    return float(found.group(1)) if found else float("nan")


def stored_lines(server: OxeyeServer, service: str) -> list[str]:
    now_ns = time.time_ns()
    response = server.get("/loki/api/v1/query_range", params={
        "query": f'{{service_name="{service}"}}', "start": str(now_ns - 600 * 10**9), "end": str(now_ns + 60 * 10**9)})
    assert response.status_code == 200, response.text
    return [value[1] for stream in response.json()["data"]["result"] for value in stream["values"]]


def test_long_lines_are_rejected_and_old_entries_refused_with_counts(oxeye_factory):
    server = server_with_logs(oxeye_factory, {"max_line_size": "1KiB", "max_line_size_policy": "reject",
                                              "retention": "7d"})
    service = f"limits-{uuid.uuid4().hex[:8]}"
    now_ns = time.time_ns()
    response = push(server, service, [[str(now_ns), "x" * 2048], [str(now_ns + 1), "short line"]])
    assert response.status_code == 400, response.text
    assert "max entry size '1024' bytes exceeded" in response.text, response.text
    response = push(server, service, [[str(now_ns - 8 * 86_400 * 10**9), "a week and a day old"]])
    assert response.status_code == 400, response.text
    assert "has timestamp too old" in response.text and "oldest acceptable timestamp is" in response.text
    assert wait_until(lambda: stored_lines(server, service) == ["short line"], DATA_TIMEOUT_S, "the short line")
    assert metric(server, "oxeye_log_lines_discarded_total", '{reason="line_too_long"}') == 1
    assert metric(server, "oxeye_log_lines_discarded_total", '{reason="too_old"}') == 1
    assert metric(server, "oxeye_log_lines_accepted_total") == 1


def test_long_lines_are_truncated_when_configured(oxeye_factory):
    server = server_with_logs(oxeye_factory, {"max_line_size": "1KiB", "max_line_size_policy": "truncate"})
    service = f"truncate-{uuid.uuid4().hex[:8]}"
    response = push(server, service, [[str(time.time_ns()), "y" * 3000]])
    assert response.status_code == 204, response.text
    lines = wait_until(lambda: stored_lines(server, service), DATA_TIMEOUT_S, "the truncated line")
    assert lines == ["y" * 1024]
    assert metric(server, "oxeye_log_lines_truncated_total") == 1


def test_bad_logs_settings_are_named_by_config_check(tmp_path: Path):
    cases = {
        'logs:\n  max_line_size_policy: "drop"\n': "logs.max_line_size_policy",
        'logs:\n  redaction:\n    custom_rules:\n      - {name: broken, pattern: "("}\n': "logs.redaction.custom_rules[0]",
        'logs:\n  files:\n    - {paths: ["/var/log/app.log"], format: xml}\n': "logs.files[0].format",
        'logs:\n  files:\n    - {paths: ["/var/log/*/app.log"]}\n': "logs.files[0].paths[0]",
    }
    for index, (yaml, field) in enumerate(cases.items()):
        config = tmp_path / f"oxeye-{index}.yaml"
        config.write_text("version: 1\n" + yaml)
        result = subprocess.run([str(oxeye_binary()), "config", "check", str(config)], capture_output=True, text=True,
                                timeout=60, stdin=subprocess.DEVNULL)
        assert result.returncode != 0, yaml
        assert field in result.stderr, result.stderr
