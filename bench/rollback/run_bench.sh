#!/usr/bin/env bash
# Runs bench/rollback once per check-in interval given and keeps each report (text and JSON).
# Usage: bench/rollback/run_bench.sh [--out DIR] [--seconds "2 5 10"] [--tag NAME]
#            [edgefleet-bench-rollback flags...]
# Writes OUT/rollback-<S>s[-NAME].{txt,json} (OUT defaults to bench/rollback/results).
# Environment: EDGEFLEET_PG_URL (a PostgreSQL server; a database is created and dropped per
# run), EDGEFLEET_BUILD_DIR (default build), which must hold bin/edgefleet-bench-rollback,
# bin/edgefleet-server, bin/edgefleet-agent and testdata/ (ninja -C build edgefleet-bench-rollback).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

build_dir=${EDGEFLEET_BUILD_DIR:-build}
out=bench/rollback/results
seconds="2 5 10"
tag=''
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --tag) tag=-$2; shift 2 ;;
    *) break ;;
  esac
done
bench="$build_dir/bin/edgefleet-bench-rollback"
[ -x "$bench" ] || { echo "run_bench.sh: $bench is missing; build it first" >&2; exit 1; }
: "${EDGEFLEET_PG_URL:?set EDGEFLEET_PG_URL to a PostgreSQL server URL}"
mkdir -p "$out"
for s in $seconds; do
  {
    echo "# bench/rollback at $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "# machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
    echo "# flags: --check-in-seconds $s $*"
    "$bench" --bin-dir "$build_dir/bin" --models "$build_dir/testdata" --check-in-seconds "$s" \
      --json "$out/rollback-${s}s${tag}.json" "$@"
    echo "# load average $(cut -d' ' -f1-3 /proc/loadavg) at end"
  } 2>&1 | tee "$out/rollback-${s}s${tag}.txt"
done
