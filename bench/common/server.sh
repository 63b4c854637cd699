# What the server benchmarks' run.sh scripts share (sourced): a throwaway PostgreSQL 15 with
# pg_stat_statements when the package has it (or a database on a running cluster), an
# edgefleet-server on it, its RSS, and the statements that took the database's time.
# The caller sets `work` (a private temporary directory) and calls bench_cleanup on exit.
# shellcheck shell=bash
# shellcheck source=scripts/lib/postgres.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/postgres.sh"

bench_pg_url=''     # a running cluster to use instead of starting one (set before bench_start_db)
bench_db_name=edgefleet_bench_$$
bench_stats=0       # 1 when pg_stat_statements is collecting

# Starts PostgreSQL (unless bench_pg_url is set) and creates the benchmark's database; sets
# bench_db_url.
bench_start_db() {
  if [ -n "$bench_pg_url" ]; then
    export EDGEFLEET_PG_URL=$bench_pg_url
  else
    pg_start "$work/pg" >&2
    if [ -f /usr/lib/postgresql/15/lib/pg_stat_statements.so ]; then
      # Planning is counted too: a prepared statement PostgreSQL plans anew on each call costs
      # CPU that total_exec_time does not show.
      printf '%s\n' "shared_preload_libraries = 'pg_stat_statements'" \
        'pg_stat_statements.track_planning = on' | pg_as_owner tee -a "$work/pg/postgresql.conf" >/dev/null
      pg_as_owner "$PG_BIN/pg_ctl" -D "$work/pg" -w -t 60 restart -l "$work/pg/server.log" >/dev/null
    fi
  fi
  bench_db_url=$(pg_create_db "$bench_db_name")
  bench_psql "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null 2>&1 && bench_stats=1
  return 0
}

# PostgreSQL's postmaster (0 for a cluster this script did not start).
bench_db_pid() {
  if [ -z "$bench_pg_url" ] && [ -s "$work/pg/postmaster.pid" ]; then head -n 1 "$work/pg/postmaster.pid"; else echo 0; fi
}

bench_psql() { "$PG_BIN/psql" "$bench_db_url" -qAt -v ON_ERROR_STOP=1 -c "$1"; }

# Starts edgefleet-server with the token and flags given (after the data directory and the
# ports file); waits for its ports; sets device_port, grpc_port and http_port.
# Writes $work/restart-server, which stops the server and starts it again with the same flags
# (give fixed ports to keep them) and returns once it is ready.
bench_start_server() {
  local token=$1
  shift
  {
    echo '#!/usr/bin/env bash'
    echo 'set -e'
    printf 'rm -f %q\n' "$work/ports.json"
    printf 'EDGEFLEET_ADMIN_TOKEN=%q EDGEFLEET_DATABASE_URL=%q nohup %q' "$token" "$bench_db_url" "$bin/edgefleet-server"
    printf ' %q' --data-dir "$work/server" --tls-hosts localhost,127.0.0.1 --ports-file "$work/ports.json" \
      --log-level warn "$@"
    printf ' >>%q 2>&1 </dev/null &\n' "$work/server.log"
    printf 'echo $! >%q\n' "$work/server.pid"
    printf 'for _ in $(seq 600); do [ -s %q ] && exit 0; sleep 0.1; done\n' "$work/ports.json"
    echo 'echo "the server did not start" >&2; exit 1'
  } >"$work/start-server"
  {
    echo '#!/usr/bin/env bash'
    printf 'pid=$(cat %q)\n' "$work/server.pid"
    echo 'kill "$pid"; while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done'
    printf 'exec %q\n' "$work/start-server"
  } >"$work/restart-server"
  chmod +x "$work/start-server" "$work/restart-server"
  "$work/start-server" || { cat "$work/server.log" >&2; return 1; }
  read -r device_port grpc_port http_port < <(/usr/bin/python3 -c \
    'import json,sys; j=json.load(sys.stdin); print(j["device"], j["admin_grpc"], j["admin_http"])' <"$work/ports.json")
}

# The server's pid, after a restart too.
bench_server_pid() { cat "$work/server.pid"; }

bench_stop_server() {
  [ -s "$work/server.pid" ] || return 0
  local pid
  pid=$(cat "$work/server.pid")
  kill "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  rm -f "$work/server.pid"
}

# Free TCP ports on 127.0.0.1, as many as asked (for a server that must keep them on restart).
bench_free_ports() {
  /usr/bin/python3 - "$1" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

bench_rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$(bench_server_pid)/status"; }

# Bytes PostgreSQL keeps for table $1 with its indexes and TOAST, its partitions included.
bench_relation_bytes() {
  bench_psql "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c
    LEFT JOIN pg_inherits i ON i.inhrelid = c.oid LEFT JOIN pg_class p ON p.oid = i.inhparent
    WHERE c.relkind = 'r' AND (c.relname = '$1' OR p.relname = '$1')"
}

# bench_publish RESULT JSON OUT NAME: prints RESULT (whose last line is JSON) and, when OUT is
# set, writes OUT/NAME.txt and OUT/NAME.json.
bench_publish() {
  echo "$1"
  [ -n "$3" ] || return 0
  mkdir -p "$3"
  echo "$1" >"$3/$4.txt"
  echo "$2" >"$3/$4.json"
}

# The statements that took the database's time, a line each (when pg_stat_statements runs).
bench_top_statements() {
  [ "$bench_stats" = 1 ] || return 0
  echo "# statements by total time, planning included (pg_stat_statements): total, calls, plans, plan and execution ms/call"
  bench_psql "SELECT rpad(round(total_plan_time + total_exec_time)::text || ' ms', 12) || rpad(calls::text, 9) || rpad(plans::text, 9) || round((total_plan_time / greatest(calls, 1))::numeric, 3) || ' + ' || round((total_exec_time / greatest(calls, 1))::numeric, 3) || ' ms/call  ' || left(regexp_replace(query, '\s+', ' ', 'g'), 100) FROM pg_stat_statements ORDER BY total_plan_time + total_exec_time DESC LIMIT ${1:-12}"
}

# EDGEFLEET_BENCH_KEEP=1 keeps the work directory (the server's log, its data) for a look.
bench_cleanup() {
  bench_stop_server
  if [ -n "$bench_pg_url" ]; then
    "$PG_BIN/psql" "$bench_pg_url" -qAt -c "DROP DATABASE IF EXISTS \"$bench_db_name\" WITH (FORCE)" >/dev/null 2>&1 || true
  else
    pg_stop "$work/pg"
  fi
  if [ "${EDGEFLEET_BENCH_KEEP:-0}" = 1 ]; then
    echo "kept $work" >&2
  else
    rm -rf "$work"
  fi
}
