#!/usr/bin/env bash
# End-to-end demo on this machine: builds edgefleet, starts PostgreSQL, the server and three agents,
# pushes a model, rolls out version 1 then version 2, and shows each device's answers.
#
# Usage: ./scripts/demo.sh           run the demo and stop everything at the end
#        ./scripts/demo.sh --keep    leave the stack running; writes var/demo/env
#        ./scripts/demo.sh --down    stop a stack left running by --keep
# Everything lives under var/demo/ (logs in var/demo/logs/). A new run starts from a clean fleet.
# Environment: EDGEFLEET_BUILD_DIR (default build), EDGEFLEET_SKIP_BUILD=1 to use an existing build,
#              EDGEFLEET_DEMO_TIMEOUT seconds to wait for enrollment and each rollout (default 60).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh
# shellcheck source=scripts/lib/postgres.sh
source scripts/lib/postgres.sh

ROOT=$EDGEFLEET_ROOT
BUILD_DIR=${EDGEFLEET_BUILD_DIR:-build}
case "$BUILD_DIR" in /*) ;; *) BUILD_DIR=$ROOT/$BUILD_DIR ;; esac
BIN=$BUILD_DIR/bin
DEMO=$ROOT/var/demo
LOGS=$DEMO/logs
PIDS_FILE=$DEMO/pids
ENV_FILE=$DEMO/env
PG_DIR_FILE=$DEMO/pgdir
DEVICES=(demo-cam-1 demo-cam-2 demo-gw-1)
PREDICT_INPUT=input=1x4:0.5,-1.2,3.3,0.7
WAIT_SECONDS=${EDGEFLEET_DEMO_TIMEOUT:-60}
STEP_TOTAL=8

usage() { sed -n '2,10s/^# \{0,1\}//p' "$0"; }

mode=run
case "${1:-}" in
  '') ;;
  --keep) mode=keep ;;
  --down) mode=down ;;
  -h | --help) usage; exit 0 ;;
  *) usage >&2; exit 2 ;;
esac
[ $# -le 1 ] || { usage >&2; exit 2; }

# ---------------------------------------------------------------------------------------------------
# Process bookkeeping: every background process is recorded as "NAME PID LOGFILE" in var/demo/pids.

# The directory of the demo's PostgreSQL cluster. As root the cluster runs as the postgres user, which
# may not be able to enter the checkout (e.g. under /root); then it lives under /tmp instead.
pg_dir() {
  if [ -f "$PG_DIR_FILE" ]; then cat "$PG_DIR_FILE"; return; fi
  local dir=$DEMO/pg
  if [ "$(id -u)" = 0 ] && ! pg_as_owner test -x "$DEMO"; then
    dir=/tmp/edgefleet-demo-pg-$(printf '%s' "$ROOT" | md5sum | cut -c1-8)
  fi
  echo "$dir" >"$PG_DIR_FILE"
  echo "$dir"
}

# Is PID alive and one of ours (not a recycled pid)?
is_ours() {
  local pid=$1
  kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q edgefleet
}

start_bg() {
  local name=$1 log=$2
  shift 2
  nohup "$@" </dev/null >"$log" 2>&1 &
  echo "$name $! $log" >>"$PIDS_FILE"
}

# Stops the recorded processes (agents first, then the server) and the PostgreSQL cluster.
stop_stack() {
  local name pid log pids=()
  if [ -f "$PIDS_FILE" ]; then
    while read -r name pid log; do
      if is_ours "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        pids+=("$pid")
      fi
    done < <(tac "$PIDS_FILE")
    local deadline=$((SECONDS + 15))
    for pid in "${pids[@]}"; do
      while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
      if kill -0 "$pid" 2>/dev/null; then
        echo "    process $pid did not stop on SIGTERM; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
      fi
    done
    rm -f "$PIDS_FILE"
  fi
  if [ -f "$PG_DIR_FILE" ]; then pg_stop "$(cat "$PG_DIR_FILE")"; fi
  rm -f "$ENV_FILE"
}

# Dies when a recorded process has exited, showing the end of its log.
check_alive() {
  [ -f "$PIDS_FILE" ] || return 0
  local name pid log
  while read -r name pid log; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "--- last lines of $log ---" >&2
      tail -n 30 "$log" >&2 || true
      die "$name (pid $pid) exited unexpectedly; its log is $log"
    fi
  done <"$PIDS_FILE"
}

# wait_for SECONDS "what" COMMAND...: polls COMMAND until it succeeds.
wait_for() {
  local timeout=$1 what=$2
  shift 2
  local deadline=$((SECONDS + timeout))
  info "waiting for $what (up to ${timeout}s)"
  until "$@"; do
    check_alive
    if [ $SECONDS -ge $deadline ]; then
      die "timed out after ${timeout}s waiting for $what (logs: ${LOGS#"$ROOT"/}/)"
    fi
    sleep 0.5
  done
}

# ctl ARGS...: runs edgefleetctl against the demo server (EDGEFLEET_SERVER/EDGEFLEET_TOKEN exported).
ctl() { "$BIN/edgefleetctl" "$@"; }

# show ARGS...: prints the edgefleetctl command, then runs it with its output indented.
show() {
  printf '    $ edgefleetctl %s\n' "$*"
  local out
  out=$(ctl "$@" 2>&1) || { printf '%s\n' "$out" | sed 's/^/      /' >&2; die "edgefleetctl $* failed"; }
  printf '%s\n' "$out" | sed 's/^/      /'
}

json_get() {  # json_get 'python expression over j' < json
  "$EDGEFLEET_PYTHON" -c "import json,sys; j=json.load(sys.stdin); print($1)"
}

# ---------------------------------------------------------------------------------------------------

if [ "$mode" = down ]; then
  if [ ! -f "$PIDS_FILE" ] && { [ ! -f "$PG_DIR_FILE" ] || ! pg_is_running "$(cat "$PG_DIR_FILE")"; }; then
    echo "no demo stack recorded under ${DEMO#"$ROOT"/}/"
    exit 0
  fi
  echo "stopping the demo stack (agents, server, PostgreSQL)"
  stop_stack
  echo "stopped"
  exit 0
fi

succeeded=0
on_exit() {
  local status=$?
  if [ "$mode" = keep ] && [ "$succeeded" = 1 ]; then return; fi
  if [ "$status" -ne 0 ]; then
    printf '\nthe demo failed; logs are in %s/\n' "${LOGS#"$ROOT"/}" >&2
  fi
  if [ -f "$PIDS_FILE" ] || [ -f "$PG_DIR_FILE" ]; then
    echo "stopping agents, server and PostgreSQL" >&2
    stop_stack
  fi
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------------
if [ "${EDGEFLEET_SKIP_BUILD:-0}" = 1 ]; then
  step "Build (skipped: EDGEFLEET_SKIP_BUILD=1, using ${BUILD_DIR#"$ROOT"/}/)"
else
  step "Install missing Debian packages and build (${BUILD_DIR#"$ROOT"/}/)"
  edgefleet_build "$BUILD_DIR"
fi
for b in edgefleet-server edgefleet-agent edgefleetctl; do
  [ -x "$BIN/$b" ] || die "the build did not produce $BIN/$b"
done
ok "binaries: ${BIN#"$ROOT"/}/{edgefleet-server,edgefleet-agent,edgefleetctl}"

# ---------------------------------------------------------------------------------------------------
step "Start PostgreSQL 15 and create database edgefleet"
mkdir -p "$DEMO"
if [ -f "$PIDS_FILE" ]; then
  info "a demo stack is still running (from --keep); stopping it first"
fi
stop_stack
# Every run starts from an empty fleet: fresh server data, agent state and database.
rm -rf "$DEMO/server" "$DEMO/agents" "$DEMO/models" "$LOGS" "$DEMO/ports.json"
mkdir -p "$LOGS" "$DEMO/server" "$DEMO/agents" "$DEMO/models"
PG_DIR=$(pg_dir)
pg_start "$PG_DIR" || die "could not start PostgreSQL in $PG_DIR (output above)"
DB_URL=$(pg_create_db edgefleet) || die "could not create database edgefleet"
ok "PostgreSQL in ${PG_DIR#"$ROOT"/} listening on 127.0.0.1:$(cat "$PG_DIR/port"); database $DB_URL"

# ---------------------------------------------------------------------------------------------------
step "Start edgefleet-server"
ADMIN_TOKEN=efa_$("$EDGEFLEET_PYTHON" -c 'import secrets; print(secrets.token_hex(24))')
# Port 0 everywhere: the server picks free ports and writes them to the ports file.
# Secrets go through the environment so they do not show up in `ps`.
EDGEFLEET_ADMIN_TOKEN=$ADMIN_TOKEN EDGEFLEET_DATABASE_URL=$DB_URL \
  start_bg server "$LOGS/server.log" "$BIN/edgefleet-server" \
  --data-dir "$DEMO/server" \
  --device-listen 127.0.0.1:0 \
  --admin-grpc-listen 127.0.0.1:0 \
  --admin-http-listen 127.0.0.1:0 \
  --tls-hosts localhost,127.0.0.1 \
  --check-in-interval-seconds 2 \
  --ports-file "$DEMO/ports.json" \
  --log-level info
wait_for 60 "the server to bind its ports" test -s "$DEMO/ports.json"
read -r DEVICE_PORT GRPC_PORT HTTP_PORT < <(json_get 'j["device"], j["admin_grpc"], j["admin_http"]' <"$DEMO/ports.json")
HTTP=http://127.0.0.1:$HTTP_PORT
readyz() { curl -fsS -o /dev/null "$HTTP/readyz" 2>/dev/null; }
wait_for 60 "$HTTP/readyz to answer 200" readyz
export EDGEFLEET_SERVER=127.0.0.1:$GRPC_PORT EDGEFLEET_TOKEN=$ADMIN_TOKEN
ok "server ready: device API (mTLS) 127.0.0.1:$DEVICE_PORT, admin gRPC $EDGEFLEET_SERVER, admin HTTP $HTTP"
info "log: ${LOGS#"$ROOT"/}/server.log"

# ---------------------------------------------------------------------------------------------------
step "Create an enrollment token for three devices"
printf '    $ edgefleetctl token create --max-uses 3 --label site=demo\n'
token_json=$(ctl -o json token create --max-uses 3 --label site=demo) || die "edgefleetctl token create failed"
ENROLL_TOKEN=$(json_get 'j["token"]' <<<"$token_json") || die "no token in: $token_json"
ok "token $(json_get 'j.get("tokenId", "?")' <<<"$token_json"): max 3 uses, devices get label site=demo"

# ---------------------------------------------------------------------------------------------------
step "Start three agents and wait until they are enrolled"
for id in "${DEVICES[@]}"; do
  dir=$DEMO/agents/$id
  mkdir -p "$dir"
  EDGEFLEET_ENROLLMENT_TOKEN=$ENROLL_TOKEN \
    start_bg "agent-$id" "$LOGS/agent-$id.log" "$BIN/edgefleet-agent" \
    --state-dir "$dir" \
    --server-address "127.0.0.1:$DEVICE_PORT" \
    --server-ca-file "$DEMO/server/keys/ca.pem" \
    --device-id "$id" \
    --local-socket "$dir/inference.sock" \
    --check-in-interval-seconds 2 \
    --probation-window-seconds 5 \
    --log-level info
  info "started agent $id (state ${dir#"$ROOT"/}, log ${LOGS#"$ROOT"/}/agent-$id.log)"
done
all_active() {
  local json
  json=$(ctl -o json device list 2>/dev/null) || return 1
  [ "$(json_get "sum(1 for d in j.get('devices', []) if d.get('status') == 'DEVICE_STATUS_ACTIVE' and d.get('deviceId') in '${DEVICES[*]}'.split())" <<<"$json")" = "${#DEVICES[@]}" ]
}
wait_for "$WAIT_SECONDS" "${#DEVICES[@]} active devices" all_active
show device list

# ---------------------------------------------------------------------------------------------------
# serving_everywhere VERSION: every agent's local API serves classifier at VERSION.
serving_everywhere() {
  local version=$1 id json
  for id in "${DEVICES[@]}"; do
    json=$(ctl -o json agent models --socket "$DEMO/agents/$id/inference.sock" 2>/dev/null) || return 1
    [ "$(json_get "any(m.get('modelName') == 'classifier' and m.get('version') == '$version' and m.get('state', 'MODEL_STATE_SERVING') == 'MODEL_STATE_SERVING' for m in j.get('models', []))" <<<"$json")" = True ] || return 1
  done
}

# predict_all: asks every agent for the same prediction and prints version + output per device.
predict_all() {
  local id json
  printf '    $ edgefleetctl agent predict --socket var/demo/agents/ID/inference.sock --model classifier --input %s\n' "$PREDICT_INPUT"
  for id in "${DEVICES[@]}"; do
    json=$(ctl -o json agent predict --socket "$DEMO/agents/$id/inference.sock" --model classifier --input "$PREDICT_INPUT") ||
      die "prediction on $id failed"
    printf '      %-11s %s\n' "$id" "$(json_get "'version %s  ' % j.get('version') + '  '.join('%s=[%s]' % (t.get('name'), ', '.join('%.4f' % x for x in t.get('data', []))) for t in j.get('outputs', []))" <<<"$json")"
  done
}

# deploy VERSION: pushes classifier_vVERSION.onnx, deploys it to every device and waits until they serve it.
deploy() {
  local version=$1 out
  show model push classifier "var/demo/models/classifier_v$version.onnx" --version "$version" --input input:1x4 --output probs:1x3
  printf '    $ edgefleetctl deploy create classifier %s\n' "$version"
  out=$(ctl -o json deploy create classifier "$version") || die "edgefleetctl deploy create classifier $version failed"
  DEPLOYMENT_ID=$(json_get 'j["deploymentId"]' <<<"$out")
  info "deployment $DEPLOYMENT_ID created"
  wait_for "$WAIT_SECONDS" "every agent to serve classifier version $version" serving_everywhere "$version"
  ok "all ${#DEVICES[@]} devices serve classifier version $version"
  show deploy status "$DEPLOYMENT_ID"
}

step "Push classifier v1, deploy it to the fleet and run a prediction on every device"
"$EDGEFLEET_PYTHON" tests/models/make_models.py "$DEMO/models" >"$LOGS/make_models.log" 2>&1 ||
  { cat "$LOGS/make_models.log" >&2; die "could not generate the ONNX models (needs python3-onnx and python3-numpy)"; }
info "generated ONNX models in var/demo/models/"
deploy 1
predict_all

# ---------------------------------------------------------------------------------------------------
step "Push classifier v2, roll it out, and predict again (answers change)"
deploy 2
predict_all

# ---------------------------------------------------------------------------------------------------
step "Deployments, metrics, and shutdown"
show deploy list
info "a few lines of $HTTP/metrics:"
metrics=$(curl -fsS "$HTTP/metrics") || die "GET $HTTP/metrics failed"
printf '%s\n' "$metrics" | awk '/^edgefleet_/ && !/_bucket\{/ && n++ < 12 { print "      " $0 }'

succeeded=1
if [ "$mode" = keep ]; then
  cat >"$ENV_FILE" <<EOF
export EDGEFLEET_SERVER=$EDGEFLEET_SERVER
export EDGEFLEET_HTTP=$HTTP
export EDGEFLEET_TOKEN=$ADMIN_TOKEN
EOF
  chmod 600 "$ENV_FILE"
  printf '\n%sDemo finished; the stack keeps running.%s\n' "$_ef_green" "$_ef_reset"
  cat <<EOF
Use it:
  source var/demo/env
  ${BIN#"$ROOT"/}/edgefleetctl device list
  curl -H @<(echo "Authorization: Bearer \$EDGEFLEET_TOKEN") \$EDGEFLEET_HTTP/v1/devices
  ${BIN#"$ROOT"/}/edgefleetctl agent predict --socket var/demo/agents/demo-cam-1/inference.sock --model classifier --input $PREDICT_INPUT
Logs: var/demo/logs/   Stop it: ./scripts/demo.sh --down
EOF
else
  info "stopping agents, server and PostgreSQL (use --keep to leave them running)"
  stop_stack
  trap - EXIT
  ok "stopped; logs are in var/demo/logs/"
  printf '\n%sDemo finished successfully.%s Run ./scripts/demo.sh --keep to leave the stack running.\n' "$_ef_green" "$_ef_reset"
fi
