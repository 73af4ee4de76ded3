#!/usr/bin/env bash
# Regenerates crates/oxeye/link/startup-and-query-functions.txt: the functions `oxeye serve` runs while it
# starts on a metrics data directory and answers the PromQL benchmark's dashboard queries (instant, 1 h
# and 24 h ranges), as mangled names. crates/oxeye/build.rs has LLD place them together at the start of
# .text, so the pages of code a running server keeps resident are few (BENCHMARKS.md, "PromQL memory,
# session 9"). A stale list only costs memory. Names carry hashes that change with a crate's dependencies
# (a dependency added or updated renames most of the functions of the crates above it) and `.llvm.N`
# suffixes that change with a crate's code: run it again after such changes and before quiet benchmarks.
#
# Usage: scripts/startup-functions.sh OXEYE_BIN DATA_DIR END_SECONDS [PORT]
#   OXEYE_BIN    a release build of oxeye
#   DATA_DIR     a data directory with metrics blocks; it is copied, never written
#   END_SECONDS  evaluation time of the queries (the end of the data, Unix seconds)
#   PORT         loopback port (default 19503)
# Environment: RANGES, the range shapes run besides the instant queries, as RANGE_SECONDS:STEP_SECONDS
#   (default "3600:15 3600:60 86400:60"; "3600:15 3600:60" skips the 24 h ranges, whose memory is far
#   below the peer's and whose queries take most of the run under valgrind).
# Needs valgrind (Debian package valgrind) and curl; the run takes a few minutes.
set -euo pipefail
binary=$1
data=$2
end=$3
port=${4:-19503}
root=$(cd "$(dirname "$0")/.." && pwd)
command -v valgrind >/dev/null || { echo "valgrind is required" >&2; exit 1; }
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp -a "$data" "$scratch/data"
# The query benchmark's configuration (crates/oxeye-bench/src/server.rs).
printf 'version: 1\nserver:\n  otlp_http_listen: ""\n  otlp_grpc_listen: ""\nself_scrape:\n  enabled: false\n' >"$scratch/oxeye.yaml"

valgrind --tool=callgrind --demangle=no --callgrind-out-file="$scratch/callgrind.out" \
  "$binary" serve --config "$scratch/oxeye.yaml" --listen "127.0.0.1:$port" --data-dir "$scratch/data" >"$scratch/server.log" 2>&1 &
server=$!
for _ in $(seq 1 600); do curl -sf "localhost:$port/readyz" >/dev/null && break; sleep 1; done
# The dashboard queries, taken from the benchmark's source so the two cannot drift apart.
python3 - "$root/crates/oxeye-bench/src/query.rs" >"$scratch/queries.txt" <<'PY'
import re, sys
source = open(sys.argv[1]).read()
table = source[source.index("pub const DASHBOARD_QUERIES"):]
table = table[:table.index("];")]
for match in re.finditer(r'\(\s*"([^"]+)",\s*"((?:[^"\\]|\\.)*)",?\s*\)', table):
    print(match.group(2).replace('\\"', '"'))
PY
while read -r query; do
  curl -sf -o /dev/null "localhost:$port/api/v1/query" --data-urlencode "query=$query" --data-urlencode "time=$end"
  for range_step in ${RANGES-3600:15 3600:60 86400:60}; do
    curl -sf -o /dev/null "localhost:$port/api/v1/query_range" --data-urlencode "query=$query" \
      --data-urlencode "start=$((end - ${range_step%:*}))" --data-urlencode "end=$end" --data-urlencode "step=${range_step#*:}"
  done
done <"$scratch/queries.txt"
kill "$server"
wait "$server" || true

# Every function callgrind saw that the binary defines, in the binary's own address order: the
# compiler's placement of related code next to each other is kept, only the cold code between is taken
# out.
python3 - "$scratch/callgrind.out" "$binary" >"$root/crates/oxeye/link/startup-and-query-functions.txt" <<'PY'
import re, subprocess, sys
seen = set()
for line in open(sys.argv[1], errors="replace"):
    match = re.match(r"^c?fn=\(\d+\) (.+)$", line.rstrip("\n"))
    if match:
        seen.add(match.group(1))
symbols = subprocess.run(["nm", "-n", "--defined-only", sys.argv[2]], capture_output=True, text=True, check=True).stdout
ordered = []
for parts in (line.split() for line in symbols.splitlines()):
    if len(parts) == 3 and parts[1] in "tTwW" and parts[2] in seen:
        ordered.append(parts[2])
        seen.discard(parts[2])
print("\n".join(ordered))
PY
wc -l "$root/crates/oxeye/link/startup-and-query-functions.txt"
