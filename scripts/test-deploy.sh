#!/usr/bin/env bash
# Proves the stack an operator runs: builds the Docker images from the project's Debian packages,
# brings docker-compose.yml up (on the host's network), runs the demo story against it (v1 deployed
# to the fleet, v2 rolled out in waves, a broken v3 rolled back by its gates), then checks through
# Prometheus' HTTP API that every target is up and every dashboard and rule expression returns
# data, runs the rule and dashboard checks, and installs the .deb packages into a clean Debian 12
# that boots systemd. Everything it started or made is removed at the end.
#
# Usage: ./scripts/test-deploy.sh        (as root, after ./scripts/test.sh built the binaries;
#                                         .ci/run calls it after the test suite)
# Environment: EDGEFLEET_BUILD_DIR (default build), EDGEFLEET_DEPLOY_KEEP=1 leaves the compose
# stack (and a docker daemon this script started) running, DOCKER_HOST to use a given daemon.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh

ROOT=$EDGEFLEET_ROOT
BUILD_DIR=${EDGEFLEET_BUILD_DIR:-build}
case "$BUILD_DIR" in /*) ;; *) BUILD_DIR=$ROOT/$BUILD_DIR ;; esac
BIN=$BUILD_DIR/bin
TAG=test-deploy
PROJECT=edgefleet-test-deploy
PACKAGES_IN_CONTEXT=$ROOT/deploy/docker/packages
WAIT=${EDGEFLEET_DEPLOY_TIMEOUT:-180}
STEP_TOTAL=9

[ "$(id -u)" = 0 ] || die "run as root: it starts dockerd and builds images"
work=$(mktemp -d "${TMPDIR:-/tmp}/edgefleet-deploy.XXXXXX")
dockerd_pid=''
stack_up=0
compose() {
  docker-compose -p "$PROJECT" -f "$ROOT/docker-compose.yml" \
    -f "$ROOT/deploy/docker-compose.host-network.yml" "$@"
}
# start_dockerd DRIVER: starts dockerd with that storage driver; fails unless it answers and runs
# a container.
start_dockerd() {
  rm -rf "$work/docker" "$work/docker-exec"
  dockerd --iptables=false --ip-masq=false --bridge=none --storage-driver="$1" \
    --data-root "$work/docker" --exec-root "$work/docker-exec" --pidfile "$work/docker.pid" \
    -H "$DOCKER_HOST" >"$work/dockerd.log" 2>&1 &
  dockerd_pid=$!
  local deadline=$((SECONDS + 60))
  until docker info >/dev/null 2>&1; do
    kill -0 "$dockerd_pid" 2>/dev/null || return 1
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.5
  done
  docker info --format '{{.Driver}}' | grep -qx "$1"
}
# stop_dockerd: stops the daemon this script started and unmounts what it left mounted.
# shellcheck disable=SC2317  # also called from the EXIT trap
stop_dockerd() {
  [ -n "$dockerd_pid" ] || return 0
  kill "$dockerd_pid" 2>/dev/null || true
  wait "$dockerd_pid" 2>/dev/null || true
  dockerd_pid=''
  findmnt -rn -o TARGET | grep "^$work/" | sort -r | xargs -r umount -l 2>/dev/null || true
}
# shellcheck disable=SC2317  # called from the EXIT trap
cleanup() {
  local status=$?
  if [ "${EDGEFLEET_DEPLOY_KEEP:-0}" = 1 ] && [ "$status" = 0 ]; then
    info "EDGEFLEET_DEPLOY_KEEP=1: the stack keeps running (DOCKER_HOST=${DOCKER_HOST:-default})"
    rm -rf "$PACKAGES_IN_CONTEXT"
    return
  fi
  if [ "$stack_up" = 1 ]; then
    if [ "$status" != 0 ]; then
      echo "--- compose ps and the last log lines of each service ---" >&2
      compose ps >&2 || true
      compose logs --no-color --tail 30 >&2 || true
    fi
    compose down -v --remove-orphans >/dev/null 2>&1 || true
  fi
  if [ -n "$dockerd_pid" ]; then
    stop_dockerd
  elif docker info >/dev/null 2>&1; then
    # A daemon we did not start: remove only the images this script built.
    docker images --format '{{.Repository}}:{{.Tag}}' | grep -E "^edgefleet(-test)?/.*:$TAG\$" |
      xargs -r docker rmi -f >/dev/null 2>&1 || true
  fi
  rm -rf "$PACKAGES_IN_CONTEXT" "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------------
step "Install missing Debian packages (Docker, Compose, mmdebstrap)"
EDGEFLEET_DEPS_SET=deploy ensure_deps || die "could not install the Debian packages (see above)"
for b in edgefleet-server edgefleet-agent edgefleetctl; do
  [ -x "$BIN/$b" ] || die "no $BIN/$b: run ./scripts/test.sh (or ./scripts/demo.sh) first to build"
done
ok "docker-compose $(docker-compose version --short 2>/dev/null || echo '?'), binaries in ${BIN#"$ROOT"/}"

# ---------------------------------------------------------------------------------------------------
step "A Docker daemon"
if docker info >/dev/null 2>&1; then
  ok "using the running daemon (${DOCKER_HOST:-default socket})"
else
  # No bridge and no iptables: this machine may not allow them, and every container of the test
  # uses the host's network (or none) anyway. overlay2 where the kernel allows it, else vfs
  # (which copies a whole file system per build step: several times slower).
  export DOCKER_HOST=unix://$work/docker.sock
  for driver in overlay2 vfs; do
    start_dockerd "$driver" && break
    stop_dockerd
    info "dockerd with $driver did not work (log: $work/dockerd.log)"
  done
  [ -n "$dockerd_pid" ] || die "dockerd did not start with overlay2 or vfs (log: $work/dockerd.log)"
  ok "started dockerd ($driver, no bridge) on $DOCKER_HOST; it stops at the end"
fi

# ---------------------------------------------------------------------------------------------------
step "Base image debian:bookworm-slim and the third-party images"
# try_pull IMAGE: pulls IMAGE unless it is here; fails quickly without a registry.
try_pull() {
  docker image inspect "$1" >/dev/null 2>&1 || timeout 90 docker pull -q "$1" >/dev/null 2>&1
}
if try_pull debian:bookworm-slim; then
  ok "debian:bookworm-slim from the registry (or already here)"
else
  info "no registry answers: making debian:bookworm-slim from Debian's packages with mmdebstrap"
  mmdebstrap --quiet --variant=minbase --format=tar bookworm "$work/bookworm.tar" \
    "deb http://deb.debian.org/debian bookworm main" \
    "deb http://deb.debian.org/debian bookworm-updates main" \
    "deb http://deb.debian.org/debian-security bookworm-security main" ||
    die "mmdebstrap could not make a Debian 12 base image"
  docker import "$work/bookworm.tar" debian:bookworm-slim >/dev/null
  rm -f "$work/bookworm.tar"
  ok "debian:bookworm-slim imported from mmdebstrap --variant=minbase bookworm"
fi
# build_image TAG DIR [docker build args...]: a build whose RUN steps reach Debian's archive.
build_image() {
  local tag=$1
  shift
  docker build -q --network host -t "$tag" "$@" >/dev/null || die "docker build of $tag failed"
}
# default_image SERVICE: the image docker-compose.yml names for SERVICE when no
# EDGEFLEET_*_IMAGE variable replaces it (the compose file is the one place its tag is written).
default_image() {
  env -u EDGEFLEET_POSTGRES_IMAGE -u EDGEFLEET_PROMETHEUS_IMAGE -u EDGEFLEET_GRAFANA_IMAGE \
    docker-compose -f "$ROOT/docker-compose.yml" config |
    "$EDGEFLEET_PYTHON" -c 'import sys, yaml; print(yaml.safe_load(sys.stdin)["services"][sys.argv[1]]["image"])' "$1"
}
postgres_image=$(default_image postgres) prometheus_image=$(default_image prometheus)
grafana_image=$(default_image grafana)
if ! try_pull "$postgres_image"; then
  postgres_image=edgefleet-test/postgres:$TAG
  build_image "$postgres_image" tests/deploy/standins/postgres
  info "$postgres_image: a stand-in for $(default_image postgres) from Debian's postgresql-15 (no registry)"
fi
if ! try_pull "$prometheus_image"; then
  prometheus_image=edgefleet-test/prometheus:$TAG
  build_image "$prometheus_image" tests/deploy/standins/prometheus
  info "$prometheus_image: a stand-in for $(default_image prometheus) from Debian's prometheus (no registry)"
fi
grafana=0
if try_pull "$grafana_image"; then
  grafana=1
else
  info "Grafana's image ($grafana_image) cannot be fetched here (no registry): the stack comes up without Grafana;"
  info "every query of its dashboards is run against the stack's Prometheus instead"
fi
export EDGEFLEET_POSTGRES_IMAGE=$postgres_image EDGEFLEET_PROMETHEUS_IMAGE=$prometheus_image
ok "postgres: $postgres_image; prometheus: $prometheus_image"

# ---------------------------------------------------------------------------------------------------
step "Debian packages (cpack) and the edgefleet images"
cpack --config "$BUILD_DIR/CPackConfig.cmake" -B "$work/packages" >"$work/cpack.log" 2>&1 ||
  { cat "$work/cpack.log" >&2; die "cpack failed"; }
ls "$work/packages"/*.deb | sed "s|^$work/packages/|    |"
# The images' packages stage takes prebuilt packages from the build context: CI compiles once.
rm -rf "$PACKAGES_IN_CONTEXT"
mkdir -p "$PACKAGES_IN_CONTEXT"
cp "$work/packages"/*.deb "$PACKAGES_IN_CONTEXT/"
export EDGEFLEET_TAG=$TAG
for target in server agent demo; do
  build_image "edgefleet/$target:$TAG" -f deploy/docker/Dockerfile --target "$target" .
  docker run --rm --entrypoint id "edgefleet/$target:$TAG" -u | grep -qv '^0$' ||
    die "edgefleet/$target runs as root"
done
docker images --format '    {{.Repository}}:{{.Tag}}  {{.Size}}' | grep "edgefleet/.*:$TAG"
ok "edgefleet/server, edgefleet/agent and edgefleet/demo built; none runs as root"

# ---------------------------------------------------------------------------------------------------
step "docker-compose up (host network)"
for port in "${EDGEFLEET_HOST_PG_PORT:=5432}" 7443 7444 7480 9090; do
  ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || die "port $port on 127.0.0.1 is taken; the host-network stack needs it"
done
export EDGEFLEET_HOST_PG_PORT
services=(postgres init-secrets server enroll agent-1 agent-2 agent-3 seed app prometheus)
[ "$grafana" = 0 ] || services+=(grafana)
stack_up=1
compose up -d --no-build "${services[@]}" || die "docker-compose up failed"
# The seed step ends once the agents enrolled and every one serves v1.
seed=$(compose ps -q seed)
deadline=$((SECONDS + WAIT))
while [ "$(docker inspect -f '{{.State.Status}}' "$seed")" != exited ]; do
  [ $SECONDS -lt $deadline ] || die "the seed step did not finish within ${WAIT}s"
  sleep 2
done
[ "$(docker inspect -f '{{.State.ExitCode}}' "$seed")" = 0 ] || { compose logs seed >&2; die "the seed step failed"; }
compose ps
ok "the stack is up: three agents enrolled and serving v1, deployed by the seed step"

# ---------------------------------------------------------------------------------------------------
step "The demo story against the stack"
EDGEFLEET_SERVER=127.0.0.1:7444
EDGEFLEET_TOKEN=$(compose exec -T server cat /secrets/admin-token | tr -d '\r\n')
export EDGEFLEET_SERVER EDGEFLEET_TOKEN
"$EDGEFLEET_PYTHON" scripts/lib/deploy_story.py --ctl "$BIN/edgefleetctl" --models "$work/models" \
  --timeout "$WAIT" --sockets "$(for n in 1 2 3; do
    printf '%s/inference.sock,' "$(docker volume inspect -f '{{.Mountpoint}}' "${PROJECT}_agent-$n-run")"
  done)" || die "the demo story failed against the compose stack"

# ---------------------------------------------------------------------------------------------------
step "Every target up; every dashboard and rule expression returns data (Prometheus HTTP API)"
"$EDGEFLEET_PYTHON" tests/deploy/live_stack_queries.py "$ROOT" http://127.0.0.1:9090 --wait 180 \
  --values "model=vision,version=1|2|3,hw=container,feature=0,old=1,new=2" ||
  die "an expression has no data from the running stack (above)"
if [ "$grafana" = 1 ]; then
  found=$(curl -fsS 'http://127.0.0.1:3000/api/search?type=dash-db' |
    "$EDGEFLEET_PYTHON" -c 'import json, sys; print(len([d for d in json.load(sys.stdin) if d["uid"].startswith("edgefleet-")]))')
  [ "$found" -ge 5 ] || die "Grafana provisioned $found edgefleet dashboards, not 5"
  ok "Grafana serves the $found provisioned edgefleet dashboards"
fi

# ---------------------------------------------------------------------------------------------------
step "Rules (promtool check and test) and dashboards (lint, every query against Prometheus)"
tests/deploy/prometheus_rules_test.sh "$ROOT" >"$work/rules.log" 2>&1 || { cat "$work/rules.log" >&2; die "promtool rules checks failed"; }
grep -v "^ *$" "$work/rules.log" | tail -n 1 | sed 's/^/    /'
"$EDGEFLEET_PYTHON" tests/deploy/grafana_dashboards_test.py "$ROOT" >"$work/dashboards.log" 2>&1 ||
  { cat "$work/dashboards.log" >&2; die "the dashboards' lint failed"; }
tail -n 1 "$work/dashboards.log" | sed 's/^/    /'
ok "rules and dashboards pass their checks"

# ---------------------------------------------------------------------------------------------------
step "The .deb packages in a clean Debian 12 booting systemd"
if [ "${EDGEFLEET_DEPLOY_KEEP:-0}" != 1 ]; then
  compose down -v --remove-orphans >/dev/null 2>&1
  stack_up=0
  info "compose stack down, volumes removed"
fi
tests/deploy/debs/deb_install_test.sh "$work/packages" || die "the packages did not install and start"

printf '\n%sThe deploy checks passed.%s\n' "$_ef_green" "$_ef_reset"
