#!/usr/bin/env bash
# The whole test suite: unit and property tests, the PromQL conformance runner, and the end-to-end tests
# with real clients (prometheus_client, Debian's prometheus, the OpenTelemetry Python SDK).
#
# With CI=true or OXEYE_INSTALL=1 it first installs what the end-to-end tests need (Debian packages and a
# Python venv in .venv), see scripts/setup-test-env.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

# A target directory outside the clone, so CI on the same machine reuses earlier builds.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/oxeye/target}"
export CARGO_TERM_COLOR=never

if [ "${CI:-}" = "true" ] || [ "${OXEYE_INSTALL:-}" = "1" ]; then
    bash scripts/setup-test-env.sh
fi

echo "== cargo test (unit, property, conformance)"
cargo test --workspace --locked

if [ -d tests/e2e ]; then
    echo "== end-to-end tests with real clients"
    cargo build --locked -p oxeye
    export OXEYE_BIN="$CARGO_TARGET_DIR/debug/oxeye"
    .venv/bin/python -m pytest -q -p no:cacheprovider tests/e2e
fi
