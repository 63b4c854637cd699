#!/usr/bin/env bash
# Fleet benchmark: starts its own PostgreSQL 15 and edgefleet-server (fresh each run), runs the
# fleet simulator (bench/fleet/main.cpp: enrollment, a rollout's assignment over every device,
# steady check-ins with update events and telemetry, the device list page by page, the server's
# RSS after the load, a reconnect storm after a server restart), and prints its table, what
# PostgreSQL stores per device and per telemetry window, the statements that took the database's
# time, and, last, one JSON line with all of it.
# Usage: bench/fleet/run.sh [--devices N] [--seconds S] [--rate R] [--connected C] [--storm N]
#            [--pool N] [--out DIR] [--tag NAME] [--pg-url URL] [-- SIMULATOR FLAGS...]
# Writes OUT/fleet-<N>[-NAME].{txt,json} when --out is given (bench/fleet/results in
# docs/benchmarks.md). --pg-url uses a running cluster (a database is created and dropped).
# Environment: EDGEFLEET_BUILD_DIR (default build); the binaries are built there when missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=bench/common/server.sh
source bench/common/server.sh

build_dir=${EDGEFLEET_BUILD_DIR:-build}
devices=100000
seconds=60
rate=5000
connected=''
storm=10000
pool=''
out=''
tag=''
pg_url=''
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --devices) devices=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --connected) connected=$2; shift 2 ;;
    --storm) storm=$2; shift 2 ;;
    --pool) pool=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --tag) tag=-$2; shift 2 ;;
    --pg-url) pg_url=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "run.sh: unknown flag $1" >&2; exit 2 ;;
  esac
done
bin=$build_dir/bin
if [ ! -x "$bin/edgefleet-server" ] || [ ! -x "$bin/edgefleet-bench-fleet" ] ||
  [ ! -f "$build_dir/testdata/classifier_v2.onnx" ]; then
  ninja -C "$build_dir" -j2 edgefleet-server edgefleet-bench-fleet edgefleet_test_models >&2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/edgefleet-fleet.XXXXXX")
chmod 755 "$work"
trap bench_cleanup EXIT
bench_pg_url=$pg_url
bench_start_db

token=efa_bench$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
# Fixed ports: the reconnect storm restarts the server, and devices come back to the same address.
read -r device_port grpc_port http_port < <(bench_free_ports 3)
server_args=(--device-listen "127.0.0.1:$device_port" --admin-grpc-listen "127.0.0.1:$grpc_port"
  --admin-http-listen "127.0.0.1:$http_port" --rollout-interval-ms 100)
[ -n "$pool" ] && server_args+=(--database-pool-size "$pool")
bench_start_server "$token" "${server_args[@]}"

head_rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
{
  echo "# bench/fleet at $head_rev, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "# machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start; PostgreSQL, server and simulator on the same box"
  echo "# flags: --devices $devices --seconds $seconds --rate $rate${connected:+ --connected $connected} --storm $storm${pool:+ --pool $pool} ${extra[*]}"
} >"$work/report.txt"
sim_args=(--device-address "127.0.0.1:$device_port" --admin-address "127.0.0.1:$grpc_port"
  --http-address "127.0.0.1:$http_port" --ca-file "$work/server/keys/ca.pem" --admin-token "$token"
  --model-v1 "$build_dir/testdata/classifier_v1.onnx" --model-v2 "$build_dir/testdata/classifier_v2.onnx"
  --devices "$devices" --seconds "$seconds" --rate "$rate" --server-pid "$(bench_server_pid)"
  --db-pid "$(bench_db_pid)"
  --storm "$storm" --restart-command "$work/restart-server" --json "$work/sim.json")
[ -n "$connected" ] && sim_args+=(--connected "$connected")
sim_status=0
"$bin/edgefleet-bench-fleet" "${sim_args[@]}" "${extra[@]}" >>"$work/report.txt" 2>"$work/sim.err" ||
  sim_status=$?

# What PostgreSQL keeps: the registry per device (devices, their rollout targets, events) and
# telemetry per window.
registered=$(bench_psql "SELECT count(*) FROM devices")
device_bytes=$(bench_relation_bytes devices)
target_bytes=$(bench_relation_bytes deployment_targets)
event_bytes=$(bench_relation_bytes device_events)
windows=$(bench_psql "SELECT count(*) FROM telemetry_windows")
window_bytes=$(bench_relation_bytes telemetry_windows)
per_device=$(( registered > 0 ? device_bytes / registered : 0 ))
per_target=$(( registered > 0 ? target_bytes / registered : 0 ))
per_window=$(( windows > 0 ? window_bytes / windows : 0 ))
{
  printf '%-36s %12s\n' "devices registered" "$registered"
  printf '%-36s %12s\n' "PostgreSQL bytes/device (devices)" "$per_device"
  printf '%-36s %12s\n' "  + its rollout target" "$per_target"
  printf '%-36s %12s\n' "device events stored (bytes)" "$event_bytes"
  printf '%-36s %12s\n' "telemetry windows stored" "$windows"
  printf '%-36s %12s\n' "PostgreSQL bytes/window" "$per_window"
  echo "# largest relations:"
  bench_psql "SELECT rpad(relname, 34) || lpad(pg_size_pretty(pg_total_relation_size(oid)), 10) FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace ORDER BY pg_total_relation_size(oid) DESC LIMIT 8"
  bench_top_statements 15
  # What the server complained of, most frequent first (device ids and numbers folded).
  echo "# server warnings and errors: $(grep -c -E '\[(warning|error)\]' "$work/server.log" || true)"
  grep -E '\[(warning|error)\]' "$work/server.log" | sed -E 's/^\[[^]]*\] //; s/sim-[0-9]+-[0-9]+/DEVICE/g; s/[0-9]+/N/g' |
    sort | uniq -c | sort -rn | head -8 | cut -c1-200 || true
} >"$work/db.txt"
grep -v '^enrolled [0-9]*$' "$work/sim.err" | tail -8 >&2 || true
sim_json=$(tail -n 1 "$work/sim.json" 2>/dev/null || echo '{}')
json=$(/usr/bin/python3 - "$sim_json" "$per_device" "$per_target" "$per_window" "$head_rev" <<'PY'
import json, sys
r = json.loads(sys.argv[1] or "{}")
r.update({"pg_bytes_per_device": int(sys.argv[2]), "pg_target_bytes_per_device": int(sys.argv[3]),
          "pg_bytes_per_window": int(sys.argv[4]), "commit": sys.argv[5]})
print(json.dumps(r))
PY
)
bench_publish "$(grep -v '^{' "$work/report.txt"; cat "$work/db.txt"; echo "$json")" "$json" "$out" \
  "fleet-${devices}${tag}"
exit "$sim_status"
