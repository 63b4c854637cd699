#!/bin/sh
# One-shot, before the server: makes the stack's admin API token once (kept in the secrets volume
# across restarts) and the server's configuration file that carries it, so that the token never
# shows in `docker inspect` or `ps`.
set -eu
secrets=${1:-/secrets}
umask 077
if [ ! -s "$secrets/admin-token" ]; then
  printf 'efa_%s\n' "$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$secrets/admin-token"
  echo "init-secrets: made a new admin token in $secrets/admin-token"
fi
printf '{"admin_token": "%s"}\n' "$(cat "$secrets/admin-token")" >"$secrets/server.json"
echo "init-secrets: wrote $secrets/server.json"
