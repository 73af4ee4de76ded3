#!/usr/bin/env bash
# The whole test suite: unit tests, conformance and end-to-end tests with real clients.
# Installs what it needs (Debian packages, a Python venv) when run with CI=true or OXEYE_INSTALL=1.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked
