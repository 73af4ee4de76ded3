#!/usr/bin/env bash
# The PromQL query benchmark: the Django-fleet history backfilled into oxeye and Prometheus 2.42 from the
# same OpenMetrics text files (one per 2 h range, turned into blocks by `oxeye tsdb create-blocks-from
# openmetrics` and `promtool tsdb create-blocks-from openmetrics`, each file deleted once both loaded it, so
# the scratch disk needs one range of text: about 10 GB at 100k series), then ten dashboard queries timed
# on each (instant, 1h and 24h ranges at 15s and 60s steps, median of RUNS runs, peak RSS per query).
# Servers run pinned to core 0, the driver to core 1.
# See BENCHMARKS.md ("PromQL queries") and crates/oxeye-bench/src/query.rs.
#
# Usage: bench/query.sh [SERIES] [HOURS] [SERVER...]
#   SERIES  active series (default 100000, the issue's dataset)
#   HOURS   hours of history at a 15 s scrape interval (default 24)
#   SERVER  oxeye, prometheus (default: both)
# Environment: CARGO_TARGET_DIR (default /work/target-bench), BENCH_OUT (default <repo>/bench-out),
#   OXEYE_BIN and BENCH_BIN (binaries to use instead of building them), RUNS (default 5),
#   SERVER_CPUS (default 0), BENCH_CPUS (default 1), REUSE_DATA=1 (keep loaded data, skip the load),
#   ONLY (only queries whose name contains this), ONLY_SHAPE (only shapes whose name contains this, e.g.
#   24h), PORT (first server's port, default 19190; each further
#   server takes the next; refused when in use), LOAD_ONLY=1 (load the servers, then stop; time the
#   queries later with REUSE_DATA=1), PROMETHEUS_ARGS (extra arguments for Prometheus' query run, e.g.
#   "--query.max-samples=1000000000": its default of 50,000,000 refuses the 24 h rows at 100k series).
set -euo pipefail

series=${1:-100000}
hours=${2:-24}
shift 2 || shift $# || true
servers=("$@")
if [ ${#servers[@]} -eq 0 ]; then servers=(oxeye prometheus); fi
rounds=$((hours * 240))

root=$(cd "$(dirname "$0")/.." && pwd)
out=${BENCH_OUT:-$root/bench-out}/query
target=${CARGO_TARGET_DIR:-/work/target-bench}
runs=${RUNS:-5}
server_cpus=${SERVER_CPUS:-0}
bench_cpus=${BENCH_CPUS:-1}
mkdir -p "$out"

if ! command -v prometheus >/dev/null; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y prometheus
  systemctl disable --now prometheus 2>/dev/null || true
fi
command -v promtool >/dev/null || [[ " ${servers[*]} " != *" prometheus "* ]] || { echo "promtool (package prometheus) is required" >&2; exit 1; }
command -v taskset >/dev/null || { echo "taskset (util-linux) is required" >&2; exit 1; }

export CARGO_TARGET_DIR=$target
bench=${BENCH_BIN:-}
if [ -z "$bench" ]; then
  (cd "$root" && cargo build --release -p oxeye-bench)
  bench=$target/release/oxeye-bench
fi
oxeye_binary=${OXEYE_BIN:-}
if [[ " ${servers[*]} " == *" oxeye "* ]] && [ -z "$oxeye_binary" ]; then
  (cd "$root" && cargo build --release -p oxeye)
  oxeye_binary=$target/release/oxeye
fi

workload=$out/workload-$series-$rounds-2000.bin
if [ ! -f "$workload" ]; then
  "$bench" generate --series "$series" --rounds "$rounds" --out "$workload"
fi

{
  echo "date: $(date -u +%FT%TZ)"
  echo "nproc: $(nproc)"
  lscpu | grep -E '^(Model name|L3 cache)'
  grep MemTotal /proc/meminfo
  echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "oxeye: ${OXEYE_BIN:-built from $(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
  echo "workload: $series series x $rounds rounds (15 s)"
} > "$out/machine-$series-$hours.txt"

extra=(--reuse-data)
if [ -n "${ONLY:-}" ]; then extra+=(--only "$ONLY"); fi
if [ -n "${ONLY_SHAPE:-}" ]; then extra+=(--only-shape "$ONLY_SHAPE"); fi

binary_of() {
  case "$1" in
    oxeye) echo "$oxeye_binary" ;;
    prometheus) command -v prometheus ;;
    *) echo "unknown server $1 (oxeye, prometheus)" >&2; exit 2 ;;
  esac
}

# shellcheck source=bench/ports.sh
source "$root/bench/ports.sh"

# Load every server from the same text files (unless REUSE_DATA=1 keeps an earlier load).
if [ "${REUSE_DATA:-}" != 1 ]; then
  load_args=()
  port=${PORT:-19190}
  for server in "${servers[@]}"; do
    require_free_port "$port"
    load_args+=(--server "$server=$(binary_of "$server")=$out/$server-$series-$hours=$port")
    port=$((port + 1))
  done
  echo "== load: load average $(cut -d' ' -f1-3 /proc/loadavg)"
  taskset -c "$bench_cpus" "$bench" query load --workload "$workload" --scratch-dir "$out" \
    --out "$out/load-$series-$hours.json" "${load_args[@]}"
fi
if [ "${LOAD_ONLY:-}" = 1 ]; then exit 0; fi

port=${PORT:-19190}
results=()
for server in "${servers[@]}"; do
  require_free_port "$port"
  binary=$(binary_of "$server")
  server_args=()
  if [ "$server" = prometheus ]; then
    for arg in ${PROMETHEUS_ARGS:-}; do server_args+=("--server-arg=$arg"); done
  fi
  echo "== $server: load average $(cut -d' ' -f1-3 /proc/loadavg)"
  taskset -c "$bench_cpus" "$bench" query run --server "$server" --binary "$binary" --server-cpus "$server_cpus" \
    --port "$port" --workload "$workload" --work-dir "$out/$server-$series-$hours" --runs "$runs" \
    --out "$out/$server-$series-$hours.json" "${extra[@]}" "${server_args[@]}" > /dev/null
  results+=("$out/$server-$series-$hours.json")
  port=$((port + 1))
done

"$bench" query report "${results[@]}" | tee "$out/results-$series-$hours.md"
