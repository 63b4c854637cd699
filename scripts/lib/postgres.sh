# Throwaway PostgreSQL 15 cluster helpers; source this file.
# pg_start DIR  -> starts a cluster in DIR on a free loopback port, exports EDGEFLEET_PG_URL.
# pg_stop DIR   -> stops it.
# initdb refuses to run as root, so as root the cluster belongs to the `postgres` user.

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

pg_as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

pg_free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

pg_start() {
  local dir=$1
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$dir"; fi
  if [ ! -f "$dir/PG_VERSION" ]; then
    pg_as_owner "$PG_BIN/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 >"$dir.initdb.log" 2>&1 ||
      { cat "$dir.initdb.log"; return 1; }
  fi
  local port
  port=$(pg_free_port)
  pg_as_owner "$PG_BIN/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c fsync=off -c max_connections=200" \
    start >/dev/null || { cat "$dir/server.log"; return 1; }
  echo "$port" >"$dir/port"
  export EDGEFLEET_PG_URL="postgresql://postgres@127.0.0.1:$port/postgres"
}

pg_stop() {
  local dir=$1
  [ -f "$dir/postmaster.pid" ] && pg_as_owner "$PG_BIN/pg_ctl" -D "$dir" -m fast -w stop >/dev/null
  return 0
}
