#!/usr/bin/env bash
# The whole test suite: unit and property tests, the PromQL conformance runner, and the end-to-end tests
# with real clients (prometheus_client, Debian's prometheus, the OpenTelemetry Python SDK).
#
# It first prepares what the end-to-end tests need (scripts/setup-test-env.sh): a Python venv in .venv and,
# with CI=true or OXEYE_INSTALL=1, Debian's prometheus package.
set -euo pipefail
cd "$(dirname "$0")/.."

# A target directory outside the clone, so CI on the same machine reuses earlier builds.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/oxeye/target}"
export CARGO_TERM_COLOR=never

# Debian packages only with CI=true or OXEYE_INSTALL=1; the venv always.
bash scripts/setup-test-env.sh

echo "== cargo test (unit, property, conformance)"
cargo test --workspace --locked

echo "== end-to-end tests with real clients"
cargo build --locked -p oxeye
export OXEYE_BIN="$CARGO_TARGET_DIR/debug/oxeye"
.venv/bin/python -m pytest -q -p no:cacheprovider tests/e2e
