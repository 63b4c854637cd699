#!/usr/bin/env bash
# Installs the .deb packages into a clean Debian 12 container that boots systemd, and checks what
# an operator expects of them: the units are enabled at install, the server starts once its
# database exists (as the packaged default configuration says), the agent enrolls with a token
# from /etc/default/edgefleet-agent and runs under its hardened unit, and purge removes the agent
# with its user and state.
# Usage: deb_install_test.sh PACKAGES_DIR   (a docker daemon must answer; DOCKER_HOST is honoured)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
packages=${1:?usage: $0 PACKAGES_DIR}
tag=edgefleet-test/debs:$$
ctx=$(mktemp -d)
cid=''
cleanup() {
  [ -z "$cid" ] || docker rm -f "$cid" >/dev/null 2>&1 || true
  docker rmi -f "$tag" >/dev/null 2>&1 || true
  rm -rf "$ctx"
}
trap cleanup EXIT
fail() { echo "deb_install_test: FAIL: $*" >&2; [ -z "$cid" ] || docker exec "$cid" journalctl --no-pager -n 40 -u edgefleet-server -u edgefleet-agent >&2 || true; exit 1; }
pass() { echo "deb_install_test: ok: $*"; }
# inside CMD...: runs CMD inside the booted container.
inside() { docker exec "$cid" "$@"; }
# until_ok SECONDS WHAT CMD...: polls CMD (inside the container) until it succeeds.
until_ok() {
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until inside "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || fail "timed out waiting for $what"
    sleep 1
  done
}

mkdir -p "$ctx/packages"
cp "$here/Dockerfile" "$ctx/"
cp "$packages"/edgefleet-server_*.deb "$packages"/edgefleet-agent_*.deb "$packages"/edgefleetctl_*.deb "$ctx/packages/"
echo "deb_install_test: apt install of the packages into a clean Debian 12 image"
docker build -q --network host -t "$tag" "$ctx" >/dev/null || fail "apt install ./edgefleet-*.deb failed in a clean Debian 12"
pass "apt install ./edgefleet-server_*.deb ./edgefleet-agent_*.deb ./edgefleetctl_*.deb"

# No network: everything the test reaches is on the container's own loopback.
cid=$(docker run -d --network none --tmpfs /run --tmpfs /run/lock --tmpfs /tmp \
  -v /sys/fs/cgroup:/sys/fs/cgroup:ro "$tag")
until_ok 60 "systemd to boot" sh -c 'systemctl is-system-running | grep -qE "running|degraded"'
for unit in edgefleet-server edgefleet-agent; do
  [ "$(inside systemctl is-enabled $unit)" = enabled ] || fail "$unit is not enabled after install"
done
pass "both units are enabled by the packages"
inside getent passwd edgefleet | grep -q nologin || fail "no system user edgefleet"
inside getent passwd edgefleet-agent | grep -q nologin || fail "no system user edgefleet-agent"

# The packaged configuration reaches the local PostgreSQL over its socket as the user edgefleet.
until_ok 60 "PostgreSQL" su postgres -c "pg_isready -q"
inside su postgres -c "createuser edgefleet && createdb -O edgefleet edgefleet"
until_ok 60 "edgefleet-server's /readyz" curl -fsS http://127.0.0.1:7480/readyz
[ "$(inside systemctl is-active edgefleet-server)" = active ] || fail "edgefleet-server is not active"
pass "edgefleet-server is active and ready (database from the packaged default configuration)"

token=$(inside journalctl -u edgefleet-server --no-pager -o cat | sed -n 's/^admin token (shown once, store it): //p' | tail -n 1)
[ -n "$token" ] || fail "the server's first start logged no admin token"
enroll=$(inside edgefleetctl --token "$token" -o json token create --max-uses 1 --label hw=deb-test |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
inside sh -c "install -m 0644 /var/lib/edgefleet/keys/ca.pem /etc/edgefleet/server-ca.pem"
inside sh -c "printf 'EDGEFLEET_ENROLLMENT_TOKEN=%s\nEDGEFLEET_SERVER_CA_FILE=/etc/edgefleet/server-ca.pem\nEDGEFLEET_DEVICE_ID=deb-agent-1\n' '$enroll' >/etc/default/edgefleet-agent"
inside systemctl restart edgefleet-agent
until_ok 60 "the agent to enroll" sh -c "edgefleetctl --token '$token' device list | grep deb-agent-1 | grep -qi active"
[ "$(inside systemctl is-active edgefleet-agent)" = active ] || fail "edgefleet-agent is not active"
inside test -S /run/edgefleet-agent/inference.sock || fail "no inference socket in /run/edgefleet-agent"
pass "edgefleet-agent is active, enrolled as deb-agent-1, serving /run/edgefleet-agent/inference.sock"
inside systemd-analyze security --no-pager edgefleet-server edgefleet-agent | tail -n 2 || true

inside env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q edgefleet-agent >/dev/null
! inside getent passwd edgefleet-agent >/dev/null || fail "purge left the user edgefleet-agent"
! inside test -e /var/lib/edgefleet-agent || fail "purge left /var/lib/edgefleet-agent"
[ "$(inside systemctl is-active edgefleet-server)" = active ] || fail "purging the agent stopped the server"
pass "apt purge edgefleet-agent removed its user and state; the server kept running"
