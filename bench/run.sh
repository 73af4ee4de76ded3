#!/usr/bin/env bash
# The metrics ingest benchmark: oxeye, VictoriaMetrics and Prometheus on the same remote_write workload,
# each server pinned to core 0 and the load generator to core 1. See BENCHMARKS.md.
#
# Usage: bench/run.sh [quick|full|1m] [SERVER...]
#   quick  100k active series x 40 rounds (4M samples; a few minutes)
#   full   100k active series x 120 rounds (12M samples)
#   1m     1M active series x 120 rounds (120M samples; ~3 GiB of pre-built requests in memory)
#   SERVER oxeye, victoria-metrics, prometheus (default: all three); oxeye+jemalloc and oxeye+mimalloc run
#          oxeye with that allocator preloaded
# Environment: CARGO_TARGET_DIR (default /work/target-bench), BENCH_OUT (default <repo>/bench-out),
#   OXEYE_BIN and BENCH_BIN (binaries to use instead of building them), CONCURRENCY (default 4), SAMPLES_PER_REQUEST (default 2000), PORT (first server's port, default 19090;
#   each further server takes the next; refused when in use), SERVER_CPUS (default 0), BENCH_CPUS (default 1).
set -euo pipefail

mode=${1:-quick}
shift || true
servers=("$@")
if [ ${#servers[@]} -eq 0 ]; then servers=(oxeye victoria-metrics prometheus); fi

case "$mode" in
  quick) series=100000; rounds=40 ;;
  full) series=100000; rounds=120 ;;
  1m) series=1000000; rounds=120 ;;
  *) echo "unknown mode $mode (quick, full, 1m)" >&2; exit 2 ;;
esac

root=$(cd "$(dirname "$0")/.." && pwd)
out=${BENCH_OUT:-$root/bench-out}
target=${CARGO_TARGET_DIR:-/work/target-bench}
concurrency=${CONCURRENCY:-4}
samples_per_request=${SAMPLES_PER_REQUEST:-2000}
server_cpus=${SERVER_CPUS:-0}
bench_cpus=${BENCH_CPUS:-1}
mkdir -p "$out/$mode"

# Peers: Debian's packages (bookworm: victoria-metrics 1.79, prometheus 2.42).
need_install=()
command -v victoria-metrics >/dev/null || need_install+=(victoria-metrics)
command -v prometheus >/dev/null || need_install+=(prometheus)
if [ ${#need_install[@]} -gt 0 ]; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y "${need_install[@]}"
  # On a machine with systemd the packages start their own services; they would compete for the cores.
  for unit in "${need_install[@]}"; do systemctl disable --now "$unit" 2>/dev/null || true; done
fi
command -v taskset >/dev/null || { echo "taskset (util-linux) is required" >&2; exit 1; }

# Builds, release profile.
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

workload=$out/workload-$series-$rounds-$samples_per_request.bin
if [ ! -f "$workload" ]; then
  "$bench" generate --series "$series" --rounds "$rounds" --samples-per-request "$samples_per_request" --out "$workload"
fi

{
  echo "date: $(date -u +%FT%TZ)"
  echo "nproc: $(nproc)"
  lscpu | grep -E '^(Model name|Thread|Core|Socket|Hypervisor vendor|L3 cache)'
  grep MemTotal /proc/meminfo
  uname -r
  echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "oxeye: ${OXEYE_BIN:-built from $(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
} > "$out/$mode/machine.txt"

# oxeye+jemalloc / oxeye+mimalloc: oxeye with another allocator preloaded (Debian's libjemalloc2 /
# libmimalloc2.0), to show how much of its ingest CPU is glibc malloc.
preload() {
  local library=/usr/lib/x86_64-linux-gnu/$1 package=$2
  if [ ! -f "$library" ]; then apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y "$package" >/dev/null; fi
  echo "LD_PRELOAD=$library"
}

# shellcheck source=bench/ports.sh
source "$root/bench/ports.sh"

port=${PORT:-19090}
for server in "${servers[@]}"; do
  extra=()
  case "$server" in
    oxeye) kind=oxeye; binary=$oxeye_binary ;;
    oxeye+jemalloc) kind=oxeye; binary=$oxeye_binary; extra=(--server-env "$(preload libjemalloc.so.2 libjemalloc2)") ;;
    oxeye+mimalloc) kind=oxeye; binary=$oxeye_binary; extra=(--server-env "$(preload libmimalloc.so.2 libmimalloc2.0)") ;;
    victoria-metrics) kind=$server; binary=$(command -v victoria-metrics) ;;
    prometheus) kind=$server; binary=$(command -v prometheus) ;;
    *) echo "unknown server $server" >&2; exit 2 ;;
  esac
  require_free_port "$port"
  echo "== $server ($mode) load average $(cut -d' ' -f1-3 /proc/loadavg)"
  taskset -c "$bench_cpus" "$bench" run --server "$kind" --label "$server" --binary "$binary" \
    --server-cpus "$server_cpus" --port "$port" --workload "$workload" --work-dir "$out/$mode/$server" \
    --concurrency "$concurrency" --out "$out/$mode/$server.json" "${extra[@]}" > /dev/null
  port=$((port + 1))
done

results=()
for server in oxeye oxeye+jemalloc oxeye+mimalloc victoria-metrics prometheus; do
  if [ -f "$out/$mode/$server.json" ]; then results+=("$out/$mode/$server.json"); fi
done
"$bench" report "${results[@]}" | tee "$out/$mode/results.md"
