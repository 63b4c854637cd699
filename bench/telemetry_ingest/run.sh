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
# shellcheck source=scripts/lib/postgres.sh
source scripts/lib/postgres.sh

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
server_pid=''
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  if [ -n "$pg_url" ]; then
    "$PG_BIN/psql" "$pg_url" -qAt -c "DROP DATABASE IF EXISTS \"$db_name\" WITH (FORCE)" >/dev/null 2>&1 || true
  else
    pg_stop "$work/pg"
  fi
  rm -rf "$work"
}
trap cleanup EXIT
db_name=edgefleet_ingest_bench_$$
if [ -n "$pg_url" ]; then
  export EDGEFLEET_PG_URL=$pg_url
else
  pg_start "$work/pg" >&2
  # pg_stat_statements, when the package has it, says which statements take the time.
  if [ -f /usr/lib/postgresql/15/lib/pg_stat_statements.so ]; then
    echo "shared_preload_libraries = 'pg_stat_statements'" | pg_as_owner tee -a "$work/pg/postgresql.conf" >/dev/null
    pg_as_owner "$PG_BIN/pg_ctl" -D "$work/pg" -w -t 60 restart -l "$work/pg/server.log" >/dev/null
  fi
fi
db_url=$(pg_create_db "$db_name")
psql_q() { "$PG_BIN/psql" "$db_url" -qAt -v ON_ERROR_STOP=1 -c "$1"; }
stats=0
psql_q "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null 2>&1 && stats=1

token=efa_bench$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
server_args=(--data-dir "$work/server" --device-listen 127.0.0.1:0 --admin-grpc-listen 127.0.0.1:0
  --admin-http-listen 127.0.0.1:0 --tls-hosts localhost,127.0.0.1 --ports-file "$work/ports.json"
  --log-level warn)
[ -n "$pool" ] && server_args+=(--database-pool-size "$pool")
EDGEFLEET_ADMIN_TOKEN=$token EDGEFLEET_DATABASE_URL=$db_url \
  "$bin/edgefleet-server" "${server_args[@]}" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 600); do [ -s "$work/ports.json" ] && break; sleep 0.1; done
[ -s "$work/ports.json" ] || { cat "$work/server.log" >&2; exit 1; }
read -r device_port grpc_port http_port < <(/usr/bin/python3 -c \
  'import json,sys; j=json.load(sys.stdin); print(j["device"], j["admin_grpc"], j["admin_http"])' <"$work/ports.json")
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$server_pid/status"; }
rss_before=$(rss_kib)
peak_file=$work/peak
echo "$rss_before" >"$peak_file"
( while kill -0 "$server_pid" 2>/dev/null; do
    r=$(rss_kib 2>/dev/null || echo 0)
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
[ "$stats" = 1 ] && psql_q "SELECT pg_stat_statements_reset()" >/dev/null
gen_status=0
"$bin/edgefleet-bench-telemetry-ingest" --device-address "127.0.0.1:$device_port" \
  --admin-address "127.0.0.1:$grpc_port" --ca-file "$work/server/keys/ca.pem" --admin-token "$token" \
  --model-file "$build_dir/testdata/classifier_v1.onnx" --devices "$devices" --rate "$rate" \
  --seconds "$seconds" --windows-per-upload "$per_upload" --json "$work/gen.json" \
  >>"$work/report.txt" 2>"$work/gen.err" || gen_status=$?
rss_peak=$(cat "$peak_file")
sleep "$after_seconds"
rss_after=$(rss_kib)
kill "$watcher" 2>/dev/null || true

rows=$(psql_q "SELECT count(*) FROM telemetry_windows")
bytes=$(psql_q "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'telemetry_windows'")
summary_bytes=$(psql_q "SELECT coalesce(avg(octet_length(summary)), 0)::int FROM telemetry_windows")
per_window=$(( rows > 0 ? bytes / rows : 0 ))
{
  printf '%-28s %12s\n' "server RSS before MiB" "$(( rss_before / 1024 ))"
  printf '%-28s %12s\n' "server RSS peak MiB" "$(( rss_peak / 1024 ))"
  printf '%-28s %12s\n' "server RSS ${after_seconds}s after MiB" "$(( rss_after / 1024 ))"
  printf '%-28s %12s\n' "windows stored (rows)" "$rows"
  printf '%-28s %12s\n' "PostgreSQL bytes/window" "$per_window"
  printf '%-28s %12s\n' "summary bytes/window" "$summary_bytes"
  if [ "$stats" = 1 ]; then
    echo "# statements by total time (pg_stat_statements):"
    psql_q "SELECT rpad(round(total_exec_time)::text || ' ms', 12) || rpad(calls::text, 9) || round((total_exec_time / greatest(calls, 1))::numeric, 3) || ' ms/call  ' || left(regexp_replace(query, '\s+', ' ', 'g'), 110) FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 12"
  fi
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
result="$(grep -v '^{' "$work/report.txt"; cat "$work/server.txt"; echo "$json")"
echo "$result"
if [ -n "$out" ]; then
  mkdir -p "$out"
  echo "$result" >"$out/ingest-${rate}ps-${per_upload}w${tag}.txt"
  echo "$json" >"$out/ingest-${rate}ps-${per_upload}w${tag}.json"
fi
exit "$gen_status"
