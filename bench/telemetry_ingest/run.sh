#!/usr/bin/env bash
# Telemetry ingest benchmark: starts its own PostgreSQL 15 and edgefleet-server (fresh each run),
# runs bench/telemetry_ingest's load generator at --rate windows/s for --seconds, and prints the
# generator's table, the server's RSS, PostgreSQL's bytes per window and the statements that took
# the database's time (pg_stat_statements), then, last, one JSON line with all of it.
# Usage: bench/telemetry_ingest/run.sh [--rate R] [--seconds S] [--devices N]
#            [--windows-per-upload K] [--pool N] [--out DIR] [--tag NAME] [--pg-url URL]
# Writes OUT/ingest-<R>ps-<K>w[-NAME].{txt,json} when --out is given (bench/telemetry_ingest/results
# in docs/benchmarks.md). --pg-url uses a running cluster (a database is created and dropped)
# instead of starting one. Environment: EDGEFLEET_BUILD_DIR (default build); the binaries are
# built there when missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root=$(pwd)
# shellcheck source=bench/common/server.sh
source bench/common/server.sh

build_dir=${EDGEFLEET_BUILD_DIR:-build}
rate=5000
seconds=60
devices=2000
per_upload=1
pool=''
out=''
tag=''
pg_url=''
after_seconds=30
while [ $# -gt 0 ]; do
  case "$1" in
    --rate) rate=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --devices) devices=$2; shift 2 ;;
    --windows-per-upload) per_upload=$2; shift 2 ;;
    --pool) pool=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --tag) tag=-$2; shift 2 ;;
    --pg-url) pg_url=$2; shift 2 ;;
    --after-seconds) after_seconds=$2; shift 2 ;;
    *) echo "run.sh: unknown flag $1" >&2; exit 2 ;;
  esac
done
bin=$build_dir/bin
for t in edgefleet-server edgefleet-bench-telemetry-ingest; do
  if [ ! -x "$bin/$t" ] || [ ! -f "$build_dir/testdata/classifier_v1.onnx" ]; then
    ninja -C "$build_dir" -j2 edgefleet-server edgefleet-bench-telemetry-ingest edgefleet_test_models >&2
    break
  fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/edgefleet-ingest.XXXXXX")
chmod 755 "$work"
trap bench_cleanup EXIT
bench_pg_url=$pg_url
bench_start_db

token=efa_bench$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
server_args=(--device-listen 127.0.0.1:0 --admin-grpc-listen 127.0.0.1:0 --admin-http-listen 127.0.0.1:0)
[ -n "$pool" ] && server_args+=(--database-pool-size "$pool")
bench_start_server "$token" "${server_args[@]}"
server_pid=$(bench_server_pid)
rss_before=$(bench_rss_kib)
peak_file=$work/peak
echo "$rss_before" >"$peak_file"
( while kill -0 "$server_pid" 2>/dev/null; do
    r=$(bench_rss_kib 2>/dev/null || echo 0)
    [ "${r:-0}" -gt "$(cat "$peak_file")" ] && echo "$r" >"$peak_file"
    sleep 0.2
  done ) &
watcher=$!

head_rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
{
  echo "# bench/telemetry_ingest at $head_rev, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "# machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start; PostgreSQL on the same box"
  echo "# flags: --rate $rate --seconds $seconds --devices $devices --windows-per-upload $per_upload${pool:+ --pool $pool}"
} >"$work/report.txt"
[ "$bench_stats" = 1 ] && bench_psql "SELECT pg_stat_statements_reset()" >/dev/null
gen_status=0
"$bin/edgefleet-bench-telemetry-ingest" --device-address "127.0.0.1:$device_port" \
  --admin-address "127.0.0.1:$grpc_port" --ca-file "$work/server/keys/ca.pem" --admin-token "$token" \
  --model-file "$build_dir/testdata/classifier_v1.onnx" --devices "$devices" --rate "$rate" \
  --seconds "$seconds" --windows-per-upload "$per_upload" --json "$work/gen.json" \
  >>"$work/report.txt" 2>"$work/gen.err" || gen_status=$?
rss_peak=$(cat "$peak_file")
sleep "$after_seconds"
rss_after=$(bench_rss_kib)
kill "$watcher" 2>/dev/null || true

rows=$(bench_psql "SELECT count(*) FROM telemetry_windows")
bytes=$(bench_relation_bytes telemetry_windows)
summary_bytes=$(bench_psql "SELECT coalesce(avg(octet_length(summary)), 0)::int FROM telemetry_windows")
per_window=$(( rows > 0 ? bytes / rows : 0 ))
{
  printf '%-28s %12s\n' "server RSS before MiB" "$(( rss_before / 1024 ))"
  printf '%-28s %12s\n' "server RSS peak MiB" "$(( rss_peak / 1024 ))"
  printf '%-28s %12s\n' "server RSS ${after_seconds}s after MiB" "$(( rss_after / 1024 ))"
  printf '%-28s %12s\n' "windows stored (rows)" "$rows"
  printf '%-28s %12s\n' "PostgreSQL bytes/window" "$per_window"
  printf '%-28s %12s\n' "summary bytes/window" "$summary_bytes"
  bench_top_statements
} >"$work/server.txt"
[ -s "$work/gen.err" ] && grep -v '^enrolled\|^connected' "$work/gen.err" | tail -5 >&2 || true
gen_json=$(tail -n 1 "$work/gen.json" 2>/dev/null || echo '{}')
json=$(/usr/bin/python3 - "$gen_json" "$rss_before" "$rss_peak" "$rss_after" "$after_seconds" "$per_window" "$rows" "$head_rev" <<'PY'
import json, sys
g = json.loads(sys.argv[1] or "{}")
g.update({"server_rss_before_mib": round(int(sys.argv[2]) / 1024, 1),
          "server_rss_peak_mib": round(int(sys.argv[3]) / 1024, 1),
          "server_rss_after_mib": round(int(sys.argv[4]) / 1024, 1),
          "after_seconds": int(sys.argv[5]),
          "pg_bytes_per_window": int(sys.argv[6]), "windows_stored": int(sys.argv[7]),
          "commit": sys.argv[8]})
print(json.dumps(g))
PY
)
bench_publish "$(grep -v '^{' "$work/report.txt"; cat "$work/server.txt"; echo "$json")" "$json" \
  "$out" "ingest-${rate}ps-${per_upload}w${tag}"
exit "$gen_status"
