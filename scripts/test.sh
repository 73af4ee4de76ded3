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
# Incremental caches only help edit-compile loops; in CI they cost GBs of disk and nothing else.
if [[ "${CI:-}" == "true" ]]; then export CARGO_INCREMENTAL=0; fi

# A persistent target directory grows with every toolchain and dependency change. When the disk holding
# it has less than 6 GiB free, start it afresh (a full build needs about 4 GiB) rather than fail half-way
# with "No space left on device".
mkdir -p "$CARGO_TARGET_DIR"
free_kib=$(df -Pk "$CARGO_TARGET_DIR" | awk 'NR==2 {print $4}')
echo "test.sh: $((free_kib / 1024)) MiB free on the disk of $CARGO_TARGET_DIR ($(du -sh "$CARGO_TARGET_DIR" 2>/dev/null | cut -f1) used by it)"
if (( free_kib < 6 * 1024 * 1024 )); then
  echo "test.sh: under 6 GiB free: removing the cached target directory $CARGO_TARGET_DIR"
  rm -rf "$CARGO_TARGET_DIR"
  mkdir -p "$CARGO_TARGET_DIR"
  echo "test.sh: now $(( $(df -Pk "$CARGO_TARGET_DIR" | awk 'NR==2 {print $4}') / 1024 )) MiB free"
fi

# Debian packages only with CI=true or OXEYE_INSTALL=1; the venv always.
bash scripts/setup-test-env.sh

echo "== cargo test (unit, property, conformance)"
cargo test --workspace --locked

echo "== end-to-end tests with real clients"
cargo build --locked -p oxeye
export OXEYE_BIN="$CARGO_TARGET_DIR/debug/oxeye"
.venv/bin/python -m pytest -q -p no:cacheprovider tests/e2e
