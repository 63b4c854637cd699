# shellcheck shell=bash
# Throwaway PostgreSQL 15 cluster helpers; source this file.
# pg_start DIR          -> starts a cluster in DIR on a free loopback port (initdb on first use; reuses a
#                          cluster that is already running there), exports EDGEFLEET_PG_URL.
# pg_stop DIR           -> stops it (no-op when it is not running).
# pg_create_db NAME     -> drops and recreates database NAME in the cluster of EDGEFLEET_PG_URL, prints its URL.
# initdb refuses to run as root, so as root the cluster belongs to the `postgres` user, and that user
# must be able to enter every parent directory of DIR.

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

pg_as_owner() {
  if [ "$(id -u)" = 0 ]; then
    # From / so that the postgres user does not complain about a working directory it cannot enter.
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

pg_free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

pg_is_running() {
  local dir
  dir=$(cd "$1" 2>/dev/null && pwd) || return 1
  [ -f "$dir/postmaster.pid" ] && pg_as_owner "$PG_BIN/pg_ctl" -D "$dir" status >/dev/null 2>&1
}

pg_start() {
  local dir=$1
  if [ ! -x "$PG_BIN/initdb" ]; then
    echo "pg_start: $PG_BIN/initdb not found; install postgresql-15 (./scripts/install-deps.sh)" >&2
    return 1
  fi
  mkdir -p "$dir" || return 1
  dir=$(cd "$dir" && pwd)
  if [ "$(id -u)" = 0 ]; then
    chown postgres:postgres "$dir" || return 1
    chmod 700 "$dir"
    if ! pg_as_owner test -w "$dir"; then
      echo "pg_start: the postgres user cannot enter $dir; make its parent directories world-executable (chmod o+x)" >&2
      return 1
    fi
  fi
  local port
  if pg_is_running "$dir" && [ -f "$dir/port" ]; then
    port=$(cat "$dir/port")
  else
    if [ ! -f "$dir/PG_VERSION" ]; then
      pg_as_owner "$PG_BIN/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 --no-sync >"$dir.initdb.log" 2>&1 ||
        { cat "$dir.initdb.log" >&2; return 1; }
    fi
    port=$(pg_free_port) || return 1
    # A cluster killed hard leaves postmaster.pid behind; pg_ctl start copes with a stale one.
    pg_as_owner "$PG_BIN/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c fsync=off -c max_connections=200" \
      start >/dev/null || { cat "$dir/server.log" >&2; return 1; }
    echo "$port" >"$dir/port"
  fi
  export EDGEFLEET_PG_URL="postgresql://postgres@127.0.0.1:$port/postgres"
}

pg_stop() {
  local dir
  dir=$(cd "$1" 2>/dev/null && pwd) || return 0
  if [ -f "$dir/postmaster.pid" ]; then
    pg_as_owner "$PG_BIN/pg_ctl" -D "$dir" -m fast -w -t 60 stop >/dev/null 2>&1 || true
  fi
  return 0
}

pg_create_db() {
  local name=$1
  local admin_url=${EDGEFLEET_PG_URL:?pg_create_db: call pg_start first}
  PGOPTIONS='-c client_min_messages=warning' "$PG_BIN/psql" "$admin_url" -v ON_ERROR_STOP=1 -qAt \
    -c "DROP DATABASE IF EXISTS \"$name\" WITH (FORCE)" -c "CREATE DATABASE \"$name\"" >/dev/null || return 1
  echo "${admin_url%/*}/$name"
}
