#!/usr/bin/env bash
# Prepares what the end-to-end tests (tests/e2e) need: Debian's `prometheus` binary and a Python venv at
# .venv with the pinned client libraries of tests/e2e/requirements.txt.
#
# Idempotent: a second run does nothing when everything is already in place. System packages are installed
# only with CI=true or OXEYE_INSTALL=1 (runs `apt-get update` once, then `apt-get install -y prometheus`);
# otherwise a missing `prometheus` is reported and the tests that need it skip. The venv is project-local
# (gitignored) and is (re)built whenever requirements.txt changes.
#
# Only the prometheus binary is used: its systemd service is never started; tests run their own process
# with their own config, port and data directory.
set -euo pipefail
cd "$(dirname "$0")/.."

install=0
if [[ "${CI:-}" == "true" || "${OXEYE_INSTALL:-}" == "1" ]]; then
  install=1
fi

if ! command -v prometheus >/dev/null 2>&1; then
  if [[ $install == 1 ]]; then
    echo "setup-test-env: installing Debian package prometheus"
    export DEBIAN_FRONTEND=noninteractive
    sudo_cmd=()
    if [[ $(id -u) != 0 ]]; then sudo_cmd=(sudo); fi
    "${sudo_cmd[@]}" apt-get update -qq
    "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  else
    echo "setup-test-env: 'prometheus' not found; run with OXEYE_INSTALL=1 to install it (remote_write tests skip)" >&2
  fi
fi
if command -v prometheus >/dev/null 2>&1; then
  echo "setup-test-env: $(prometheus --version 2>&1 | head -1)"
fi

python=${PYTHON:-python3}
requirements=tests/e2e/requirements.txt
stamp=.venv/.requirements.sha256
want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [[ -x .venv/bin/python && -f $stamp && "$(cat "$stamp")" == "$want" ]]; then
  echo "setup-test-env: .venv up to date"
else
  echo "setup-test-env: building .venv from $requirements"
  if [[ ! -x .venv/bin/python ]]; then
    "$python" -m venv .venv
  fi
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-input -r "$requirements"
  echo "$want" > "$stamp"
fi
