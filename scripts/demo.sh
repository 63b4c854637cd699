#!/usr/bin/env bash
# End-to-end demo on this machine: builds edgefleet, starts PostgreSQL, the server and N agents with
# hw labels, deploys model v1 (a 4.3 MB image CNN), rolls v2 (its head fine-tuned) out in waves gated
# on what the devices report, delivered as patches of kilobytes, then rolls out a broken v3 that the
# first wave's agents catch on probation: the rollout rolls itself back and the devices outside that
# wave never download v3. The demo checks every claim it prints.
#
# Usage: ./scripts/demo.sh [--agents N]          run the demo and stop everything at the end
#        ./scripts/demo.sh [--agents N] --keep   leave the stack running; writes var/demo/env
#        ./scripts/demo.sh --down                stop a stack left running by --keep
# --agents N: how many agents (default 3, from 2 to 50); they get hw=jetson, hw=rpi4 and no hw label
# in turn. Everything lives under var/demo/ (logs in var/demo/logs/). A new run starts from a clean
# fleet. Environment: EDGEFLEET_BUILD_DIR (default build), EDGEFLEET_SKIP_BUILD=1 to use an existing
# build, EDGEFLEET_DEMO_TIMEOUT seconds to wait for enrollment, a deployment or a wave (default 60).
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
# The demo's model (tests/models/make_demo_models.py): a small image CNN, input image 1x3x32x32,
# output probs over 10 classes. Its sample image is what the devices' applications send.
MODEL_INPUT=image:1x3x32x32
MODEL_OUTPUT=probs:1x10
PREDICT_INPUT=image=@var/demo/models/image_sample.npy
WAIT_SECONDS=${EDGEFLEET_DEMO_TIMEOUT:-60}
STEP_TOTAL=12
MIN_AGENTS=2   # the broken rollout's story needs a device outside its first wave
MAX_AGENTS=50  # each agent is a process with its own inference runtime

usage() { sed -n '2,14s/^# \{0,1\}//p' "$0"; }
usage_error() {
  printf 'demo.sh: %s\n\n' "$1" >&2
  usage >&2
  exit 2
}

mode=run
AGENTS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --keep | --down)
      [ "$mode" = run ] || usage_error "give at most one of --keep and --down"
      mode=${1#--}
      ;;
    --agents)
      [ $# -ge 2 ] || usage_error "--agents needs a number"
      AGENTS=$2
      shift
      ;;
    --agents=*) AGENTS=${1#--agents=} ;;
    -h | --help) usage; exit 0 ;;
    *) usage_error "unknown argument '$1'" ;;
  esac
  shift
done
if ! [[ $AGENTS =~ ^[0-9]{1,4}$ ]] || [ $((10#$AGENTS)) -lt $MIN_AGENTS ] || [ $((10#$AGENTS)) -gt $MAX_AGENTS ]; then
  usage_error "--agents: want a whole number from $MIN_AGENTS to $MAX_AGENTS, not '$AGENTS'"
fi
AGENTS=$((10#$AGENTS))

# The fleet: devices get hw=jetson, hw=rpi4 and no hw label in turn (demo-jetson-1, demo-rpi4-1,
# demo-gw-1, demo-jetson-2, ...). Rollout waves are spread across the hw values.
DEVICES=()
declare -A DEVICE_HW=() HW_COUNT=()
for ((i = 0; i < AGENTS; i++)); do
  case $((i % 3)) in 0) hw=jetson ;; 1) hw=rpi4 ;; *) hw='' ;; esac
  kind=${hw:-gw}
  HW_COUNT[$kind]=$((${HW_COUNT[$kind]:-0} + 1))
  id=demo-$kind-${HW_COUNT[$kind]}
  DEVICES+=("$id")
  DEVICE_HW[$id]=$hw
done

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

# stop_bg NAME: stops the recorded process NAME and forgets it.
stop_bg() {
  local name=$1 n pid log
  [ -f "$PIDS_FILE" ] || return 0
  while read -r n pid log; do
    if [ "$n" = "$name" ] && is_ours "$pid"; then
      kill -TERM "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done <"$PIDS_FILE"
  grep -v "^$name " "$PIDS_FILE" >"$PIDS_FILE.new" || true
  mv "$PIDS_FILE.new" "$PIDS_FILE"
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
# The rollout controller evaluates every 0.5 s instead of the default 5 s so that a wave is promoted
# (or a failing one rolled back) right after its devices report, and the demo stays short; a real
# fleet soaks waves for minutes to hours, where 5 s is nothing. Telemetry is rolled up every 2 s
# (default 10 s) for the same reason.
EDGEFLEET_ADMIN_TOKEN=$ADMIN_TOKEN EDGEFLEET_DATABASE_URL=$DB_URL \
  start_bg server "$LOGS/server.log" "$BIN/edgefleet-server" \
  --data-dir "$DEMO/server" \
  --device-listen 127.0.0.1:0 \
  --admin-grpc-listen 127.0.0.1:0 \
  --admin-http-listen 127.0.0.1:0 \
  --tls-hosts localhost,127.0.0.1 \
  --check-in-interval-seconds 2 \
  --rollout-interval-ms 500 \
  --telemetry-rollup-interval-seconds 2 \
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
step "Create enrollment tokens: devices get their labels from the token they enroll with"
declare -A ENROLL_TOKEN=()
for kind in jetson rpi4 gw; do
  count=${HW_COUNT[$kind]:-0}
  [ "$count" -gt 0 ] || continue
  labels=(site=demo)
  [ "$kind" = gw ] || labels+=("hw=$kind")
  flags=()
  for label in "${labels[@]}"; do flags+=(--label "$label"); done
  printf '    $ edgefleetctl token create --max-uses %s %s\n' "$count" "${flags[*]}"
  token_json=$(ctl -o json token create --max-uses "$count" "${flags[@]}") || die "edgefleetctl token create failed"
  ENROLL_TOKEN[$kind]=$(json_get 'j["token"]' <<<"$token_json") || die "no token in: $token_json"
  ok "token $(json_get 'j.get("tokenId", "?")' <<<"$token_json"): $count uses, devices get ${labels[*]}"
done

# ---------------------------------------------------------------------------------------------------
step "Start $AGENTS agents and wait until they are enrolled"
# Probation: after a swap the agent watches the new version for 5 s (default 60 s) and, when the
# device has traffic, for at least 5 answers (default 50; with fewer answers the window stretches,
# up to 10 times). The demo's traffic (below) gives each device about one request a second.
# The latency limit is 100x the previous version's p95 (default 2x): here every agent, the server,
# PostgreSQL and the traffic share one machine, where a Predict that waits for a core takes 5-40 ms,
# 10-80 times the model's half millisecond, and with a handful of answers in the window p95 is that
# one call. So probation here catches a version that hangs, not one that is a little slower. The
# broken version below fails on NaN answers, which no latency limit hides.
# Telemetry windows are cut every 2 s (default 60 s) so that the rollouts' inference gates see the
# demo's traffic within seconds.
for id in "${DEVICES[@]}"; do
  dir=$DEMO/agents/$id
  mkdir -p "$dir"
  EDGEFLEET_ENROLLMENT_TOKEN=${ENROLL_TOKEN[${DEVICE_HW[$id]:-gw}]} \
    start_bg "agent-$id" "$LOGS/agent-$id.log" "$BIN/edgefleet-agent" \
    --state-dir "$dir" \
    --server-address "127.0.0.1:$DEVICE_PORT" \
    --server-ca-file "$DEMO/server/keys/ca.pem" \
    --device-id "$id" \
    --local-socket "$dir/inference.sock" \
    --check-in-interval-seconds 2 \
    --telemetry-interval-seconds 2 \
    --probation-window-seconds 5 \
    --probation-min-requests 5 \
    --probation-latency-limit-percent 10000 \
    --log-level info
done
info "started ${DEVICES[*]}"
info "(state in var/demo/agents/ID/, logs in ${LOGS#"$ROOT"/}/agent-ID.log)"
all_active() {
  local json
  json=$(ctl -o json device list 2>/dev/null) || return 1
  [ "$(json_get "sum(1 for d in j.get('devices', []) if d.get('status') == 'DEVICE_STATUS_ACTIVE' and d.get('deviceId') in '${DEVICES[*]}'.split())" <<<"$json")" = "${#DEVICES[@]}" ]
}
wait_for "$WAIT_SECONDS" "${#DEVICES[@]} active devices" all_active
show device list

# ---------------------------------------------------------------------------------------------------
# ask_agents ARGS...: runs `edgefleetctl -o json agent ARGS --socket ...` on every agent at once (one
# after the other takes long with many agents); leaves each answer in var/demo/answers/ID.json and
# its errors in ID.err. Fails when a call failed.
ANSWERS=$DEMO/answers
ask_agents() {
  local id pid failed=0 pids=()
  rm -rf "$ANSWERS"
  mkdir -p "$ANSWERS"
  for id in "${DEVICES[@]}"; do
    ctl -o json agent "$@" --socket "$DEMO/agents/$id/inference.sock" >"$ANSWERS/$id.json" 2>"$ANSWERS/$id.err" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
  return $failed
}

# serving_everywhere VERSION: every agent's local API serves vision at VERSION.
serving_everywhere() {
  ask_agents models || return 1
  [ "$("$EDGEFLEET_PYTHON" - "$1" "$ANSWERS" "${DEVICES[@]}" <<'PY'
import json, sys
version, answers, ids = sys.argv[1], sys.argv[2], sys.argv[3:]
def serves(i):
    models = json.load(open(f"{answers}/{i}.json")).get("models", [])
    return any(m.get("modelName") == "vision" and m.get("version") == version
               and m.get("state", "MODEL_STATE_SERVING") == "MODEL_STATE_SERVING" for m in models)
print(all(serves(i) for i in ids))
PY
)" = True ]
}

# predict_all VERSION: asks every agent for a prediction of the sample image and prints version and
# output per device; checks that every device answers with VERSION, and with the probabilities numpy
# computed for it (var/demo/models/vision_expected.json, from make_demo_models.py).
predict_all() {
  local id version=$1
  printf '    $ edgefleetctl agent predict --socket var/demo/agents/ID/inference.sock --model vision --input %s\n' "$PREDICT_INPUT"
  if ! ask_agents predict --model vision --input "$PREDICT_INPUT"; then
    for id in "${DEVICES[@]}"; do
      [ ! -s "$ANSWERS/$id.err" ] || printf '      %s: %s\n' "$id" "$(cat "$ANSWERS/$id.err")" >&2
    done
    die "a prediction failed (above)"
  fi
  "$EDGEFLEET_PYTHON" - "$ANSWERS" "$DEMO/models/vision_expected.json" "$version" "${DEVICES[@]}" <<'PY' || die "check failed (above)"
import json, sys
answers, expected_file, version, ids = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
expected = json.load(open(expected_file))["models"][f"vision_v{version}.onnx"]["outputs"][0]["data"]
width = max(len(i) for i in ids)
wrong = []
for i in ids:
    j = json.load(open(f"{answers}/{i}.json"))
    outputs = "  ".join("%s=[%s]" % (t.get("name"), ", ".join("%.4f" % float(x) for x in t.get("data", [])))
                        for t in j.get("outputs", []))
    probs = [float(x) for t in j.get("outputs", []) for x in t.get("data", [])]
    top = "  top class %d" % max(range(len(probs)), key=probs.__getitem__) if probs else ""
    print("      %-*s  version %s  %s%s" % (width, i, j.get("version"), outputs, top))
    if j.get("version") != version or len(probs) != len(expected) or any(
            abs(p - e) > 1e-4 for p, e in zip(probs, expected)):
        wrong.append(i)
if wrong:
    print("    problem: %s did not answer as vision v%s: numpy gives [%s]" % (
        ", ".join(wrong), version, ", ".join("%.4f" % e for e in expected)), file=sys.stderr)
    sys.exit(1)
PY
  ok "checked: every device answers with v$version's probabilities for the sample as numpy computes them"
}

# push VERSION FILE: publishes var/demo/models/FILE as vision VERSION; prints its JSON.
push() {
  local version=$1 file=$2
  printf '    $ edgefleetctl model push vision var/demo/models/%s --version %s --input %s --output %s\n' "$file" "$version" "$MODEL_INPUT" "$MODEL_OUTPUT" >&2
  ctl -o json model push vision "$DEMO/models/$file" --version "$version" --input "$MODEL_INPUT" --output "$MODEL_OUTPUT" ||
    die "edgefleetctl model push vision $file failed"
}

rollout_json() { ctl -o json rollout status "$1"; }

# rollout_done NAME: the rollout reached a final state; sets ROLLOUT_STATE (RUNNING, SUCCEEDED, ...).
ROLLOUT_STATE=''
rollout_done() {
  local json
  json=$(rollout_json "$1" 2>/dev/null) || return 1
  ROLLOUT_STATE=$(json_get 'j["state"].replace("ROLLOUT_STATE_", "")' <<<"$json")
  case $ROLLOUT_STATE in SUCCEEDED | ABORTED | ROLLED_BACK) return 0 ;; *) return 1 ;; esac
}

# follow_rollout NAME: waits until the rollout ends (each wave gets EDGEFLEET_DEMO_TIMEOUT seconds),
# showing `rollout status` whenever it moves on to another wave. Sets ROLLOUT_STATE.
follow_rollout() {
  local name=$1 json state='' wave last_wave=0 deadline=$((SECONDS + WAIT_SECONDS))
  info "following rollout $name (up to ${WAIT_SECONDS}s per wave)"
  while :; do
    check_alive
    if json=$(rollout_json "$name" 2>/dev/null); then
      read -r state wave < <(json_get '"%s %s" % (j["state"].replace("ROLLOUT_STATE_", ""), j.get("currentWave", 0))' <<<"$json")
      case $state in SUCCEEDED | ABORTED | ROLLED_BACK) break ;; esac
      if [ "$wave" != "$last_wave" ]; then
        ok "wave $last_wave passed its gates and its soak: the controller promoted the rollout to wave $wave"
        show rollout status "$name"
        last_wave=$wave
        deadline=$((SECONDS + WAIT_SECONDS))
      fi
    fi
    if [ $SECONDS -ge $deadline ]; then
      show rollout status "$name"
      die "timed out after ${WAIT_SECONDS}s in wave $last_wave of rollout $name (logs: ${LOGS#"$ROOT"/}/)"
    fi
    sleep 0.5
  done
  ROLLOUT_STATE=$state
  info "rollout $name ended: $ROLLOUT_STATE"
}

# expect JSON "claim" EXPRESSION: dies with the claim unless the Python expression over j (the
# parsed JSON) is true. The demo is also a check of what it shows.
expect() {
  local json=$1 claim=$2 expr=$3 verdict
  verdict=$(json_get "bool($expr)" <<<"$json") || die "could not check: $claim"
  [ "$verdict" = True ] || die "check failed: $claim"
  ok "checked: $claim"
}

# bytes_served [KIND]: the server's edgefleet_artifact_bytes_served_total, of KIND (full or patch)
# or of both.
bytes_served() {
  curl -fsS "$HTTP/metrics" | awk -v kind="${1:-}" '/^edgefleet_artifact_bytes_served_total/ &&
    (kind == "" || index($1, "kind=\"" kind "\"")) { s += $2 } END { printf "%d\n", s }'
}

# patches_ready: how many patches the server has computed (edgefleet_patches_computed_total).
patches_ready() {
  curl -fsS "$HTTP/metrics" | awk '/^edgefleet_patches_computed_total\{.*result="ready"/ { s += $2 } END { printf "%d\n", s }'
}

# mb BYTES / kb BYTES: a size for people (MB = 10^6 bytes, KB = 10^3).
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }
kb() { awk -v b="$1" 'BEGIN { printf "%.1f KB", b / 1e3 }'; }

# The rollouts' waves: three (30%, 60%, 100%: 1, 2 and 3 devices of 3), two for a fleet of two.
if [ "$AGENTS" -ge 3 ]; then WAVES=30%,60%,100%; else WAVES=50%,100%; fi

# ---------------------------------------------------------------------------------------------------
step "Push vision v1 and deploy it to the whole fleet (deploy create: one wave of 100%)"
"$EDGEFLEET_PYTHON" tests/models/make_demo_models.py "$DEMO/models" >"$LOGS/make_models.log" 2>&1 ||
  { cat "$LOGS/make_models.log" >&2; die "could not generate the ONNX models (needs python3-onnx and python3-numpy)"; }
info "tests/models/make_demo_models.py wrote vision_v1.onnx, vision_v2.onnx, vision_v3.onnx and"
info "image_sample.npy to var/demo/models/: an image CNN (3 conv blocks, a dense layer, a 10-class"
info "head; input image 1x3x32x32, output probs 1x10)"
V1_SIZE=$(push 1 vision_v1.onnx | json_get 'int(j["sizeBytes"])') || exit 1
info "v1 is $V1_SIZE bytes ($(mb "$V1_SIZE"))"
printf '    $ edgefleetctl deploy create vision 1\n'
out=$(ctl -o json deploy create vision 1) || die "edgefleetctl deploy create vision 1 failed"
DEPLOYMENT_ID=$(json_get 'j["deploymentId"]' <<<"$out")
info "deployment $DEPLOYMENT_ID created (its rollout is deploy-$DEPLOYMENT_ID)"
wait_for "$WAIT_SECONDS" "every device to install v1 and pass probation" rollout_done "deploy-$DEPLOYMENT_ID"
[ "$ROLLOUT_STATE" = SUCCEEDED ] || { show rollout status "deploy-$DEPLOYMENT_ID"; die "deploy-$DEPLOYMENT_ID ended $ROLLOUT_STATE, not SUCCEEDED"; }
show deploy status "$DEPLOYMENT_ID"
serving_everywhere 1 || die "not every agent serves vision v1 although deploy-$DEPLOYMENT_ID succeeded"
V1_FULL_BYTES=$(bytes_served full) || die "GET $HTTP/metrics failed"
info "v1 went to the $AGENTS devices as full files: $V1_FULL_BYTES bytes served ($(mb "$V1_FULL_BYTES"); the file is $(mb "$V1_SIZE"))"
predict_all 1

# ---------------------------------------------------------------------------------------------------
step "Start local traffic: the application on every device calls Predict"
SOCKETS=()
for id in "${DEVICES[@]}"; do SOCKETS+=("$DEMO/agents/$id/inference.sock"); done
start_bg traffic "$LOGS/traffic.log" bash scripts/lib/demo_traffic.sh "$BIN/edgefleetctl" vision "$PREDICT_INPUT" "${SOCKETS[@]}"
info "scripts/lib/demo_traffic.sh calls edgefleetctl agent predict on every device about once a second"
info "(log: ${LOGS#"$ROOT"/}/traffic.log). A new version's probation is judged on these answers."

# ---------------------------------------------------------------------------------------------------
step "Roll vision v2 out in waves ($WAVES): each wave promotes itself when its gates pass"
PATCHES_BEFORE=$(patches_ready) || die "GET $HTTP/metrics failed"
V2_SIZE=$(push 2 vision_v2.onnx | json_get 'int(j["sizeBytes"])') || exit 1
info "v2 is v1 with its last layer (the 10-class head) fine-tuned: $V2_SIZE bytes, and every tensor but"
info "the head's is byte-identical. The fleet runs v1, so the server computes a v1 -> v2 patch on push."
v2_patch_ready() { [ "$(patches_ready)" -gt "$PATCHES_BEFORE" ]; }
wait_for "$WAIT_SECONDS" "the server to compute the v1 -> v2 patch" v2_patch_ready
grep 'patch computed' "$LOGS/server.log" | tail -n 1 | sed 's/^.*patch computed/      patch computed/'
FULL_BEFORE_V2=$(bytes_served full) || die "GET $HTTP/metrics failed"
PATCH_BEFORE_V2=$(bytes_served patch) || die "GET $HTTP/metrics failed"
info "Each wave's inference gates compare its canaries (on v2) with the devices still on v1 (the last"
info "wave: with its own devices on v1 before it started), from the telemetry windows they upload."
info "A demo fleet is small and quiet: the gates decide on 10 inferences per side (default 1000 on"
info "10 devices). v2 is a fine-tuned model whose answers are meant to change, so the output"
info "PSI bound is lifted for it. Latency: p50 is bounded at 2x; p99 at 100x, because with a dozen"
info "inferences per side p99 is the slowest single call, and on one shared machine a call that waits"
info "for a core takes 5-40 ms, 10-80 times the model's half millisecond."
show rollout create vision-v2 --model vision --version 2 --waves "$WAVES" --soak 3s --min-devices 1 --on-failure rollback \
  --min-inferences 10 --min-inference-devices 1 --max-p99-ratio 100 --max-p50-ratio 2 --max-output-psi 100
follow_rollout vision-v2
[ "$ROLLOUT_STATE" = SUCCEEDED ] || { show rollout status vision-v2; die "rollout vision-v2 ended $ROLLOUT_STATE, not SUCCEEDED"; }
show rollout status vision-v2
json=$(rollout_json vision-v2) || die "edgefleetctl rollout status vision-v2 failed"
expect "$json" "vision-v2 SUCCEEDED, every wave PASSED" \
  "j['state'] == 'ROLLOUT_STATE_SUCCEEDED' and all(w['state'] == 'WAVE_STATE_PASSED' for w in j['waves'])"
expect "$json" "its waves targeted $AGENTS devices in all and all $AGENTS serve v2" \
  "sum(int(w['targeted']) for w in j['waves']) == $AGENTS and sum(int(w['serving']) for w in j['waves']) == $AGENTS"
expect "$json" "wave 0's inference gates compared its canaries with live control devices on v1 and passed" \
  "[g['result'] for g in j['waves'][0]['gates'] if g['gate'].startswith(('GATE_LATENCY', 'GATE_ERROR', 'GATE_OUTPUT'))] == ['GATE_OUTCOME_PASS'] * 4 and all(g.get('control') == 'INFERENCE_CONTROL_LIVE' and g.get('controlVersion') == '1' for g in j['waves'][0]['gates'] if g['gate'].startswith('GATE_LATENCY'))"
serving_everywhere 2 || die "check failed: not every agent's local API serves vision v2"
ok "checked: every agent's local API serves vision v2"
# What v2 cost on the wire, from the server's own counters (edgefleet_artifact_bytes_served_total).
V2_FULL=$(($(bytes_served full) - FULL_BEFORE_V2))
V2_PATCH=$(($(bytes_served patch) - PATCH_BEFORE_V2))
info "artifact bytes served for v2: $V2_PATCH in patches, $V2_FULL in full files"
[ "$V2_FULL" -eq 0 ] || die "check failed: $V2_FULL bytes of v2 went out as full files; every device should have patched v1"
if [ "$V2_PATCH" -le 0 ] || [ "$V2_PATCH" -ge "$V2_SIZE" ]; then
  die "check failed: v2's patches to $AGENTS devices took $V2_PATCH bytes, not between 0 and one full file ($V2_SIZE bytes)"
fi
ok "checked: v2 reached the $AGENTS devices as patches of $(kb $((V2_PATCH / AGENTS))) each ($(kb "$V2_PATCH") in all)"
ok "         against the $(mb "$V2_SIZE") full file ($(mb $((AGENTS * V2_SIZE))) for the fleet): $(awk -v p="$V2_PATCH" -v f=$((AGENTS * V2_SIZE)) 'BEGIN { printf "%.2f%%", 100 * p / f }') of the bytes"
predict_all 2

# ---------------------------------------------------------------------------------------------------
step "Roll out a broken vision v3 with --on-failure rollback"
info "vision_v3.onnx (v2 plus a bad branch) loads and passes the agent's warm-up (a black image in,"
info "finite out), but answers NaN for the images the devices' applications send: only probation"
info "under real traffic catches it."
v3_json=$(push 3 vision_v3.onnx) || exit 1
V3_SIZE=$(json_get 'int(j["sizeBytes"])' <<<"$v3_json")
BYTES_BEFORE=$(bytes_served) || die "GET $HTTP/metrics failed"
info "v3 is $V3_SIZE bytes; artifact bytes served so far (edgefleet_artifact_bytes_served_total): $BYTES_BEFORE"
show rollout create vision-v3 --model vision --version 3 --waves "$WAVES" --soak 3s --min-devices 1 --on-failure rollback
follow_rollout vision-v3
[ "$ROLLOUT_STATE" = ROLLED_BACK ] || { show rollout status vision-v3; die "rollout vision-v3 ended $ROLLOUT_STATE, not ROLLED_BACK"; }

# ---------------------------------------------------------------------------------------------------
step "Check: v3 was stopped in wave 0, rolled back, and never reached the other devices"
show rollout status vision-v3
json=$(rollout_json vision-v3) || die "edgefleetctl rollout status vision-v3 failed"
expect "$json" "vision-v3 is ROLLED_BACK by the controller" \
  "j['state'] == 'ROLLOUT_STATE_ROLLED_BACK' and any(e['kind'] == 'ROLLOUT_EVENT_KIND_ROLLED_BACK' and e.get('actor') == 'ROLLOUT_ACTOR_CONTROLLER' for e in j['events'])"
expect "$json" "wave 0's probation gate FAILED: an agent reported PROBATION_FAILED" \
  "any(g['gate'] == 'GATE_PROBATION_FAILURES' and g['result'] == 'GATE_OUTCOME_FAIL' for g in j['waves'][0]['gates']) and int(j['waves'][0]['probationFailed']) >= 1"
WAVE0=$(json_get 'int(j["waves"][0]["targeted"])' <<<"$json")
expect "$json" "only wave 0 was targeted ($WAVE0 of $AGENTS devices); the later waves targeted nobody" \
  "j['currentWave'] == 0 and $WAVE0 < $AGENTS and all(int(w['targeted']) == 0 for w in j['waves'][1:])"

# The roll back is over on the devices once every device checked in after it, reports vision v2
# serving and v3 in no state short of FAILED (a wave-0 device that was still installing v3 when the
# gate failed swaps back at its next check-in), and its local API serves v2.
FINISHED_AT=$(json_get 'j["finishedAt"]' <<<"$json")
rollback_settled() {
  local devices
  devices=$(ctl -o json device list 2>/dev/null) || return 1
  [ "$("$EDGEFLEET_PYTHON" -c '
import datetime, json, sys
finished = datetime.datetime.fromisoformat(sys.argv[1].replace("Z", "+00:00"))
ids = set(sys.argv[2].split())
settled = 0
for d in json.load(sys.stdin).get("devices", []):
    if d["deviceId"] not in ids or "lastSeen" not in d:
        continue
    seen = datetime.datetime.fromisoformat(d["lastSeen"].replace("Z", "+00:00"))
    models = {m["version"]: m["state"] for m in d.get("inventory", {}).get("models", [])
              if m["modelName"] == "vision"}
    if ((seen - finished).total_seconds() >= 2 and models.get("2") == "MODEL_STATE_SERVING"
            and models.get("3", "MODEL_STATE_FAILED") == "MODEL_STATE_FAILED"):
        settled += 1
print(settled == len(ids))' "$FINISHED_AT" "${DEVICES[*]}" <<<"$devices")" = True ] || return 1
  serving_everywhere 2
}
wait_for "$WAIT_SECONDS" "every device to check in after the roll back and report vision v2 serving" rollback_settled
ok "checked: every device serves vision v2 again (its local API, and its report to the server)"

BYTES_AFTER=$(bytes_served) || die "GET $HTTP/metrics failed"
V3_BYTES=$((BYTES_AFTER - BYTES_BEFORE))
info "artifact bytes served during the v3 rollout and its roll back: $BYTES_AFTER - $BYTES_BEFORE = $V3_BYTES"
info "(v3 in full is $V3_SIZE bytes; a device fetches it in full or as a smaller patch)"
[ "$V3_BYTES" -gt 0 ] || die "check failed: no artifact bytes were served during the v3 rollout, yet wave 0 ran v3"
[ "$V3_BYTES" -le $((WAVE0 * V3_SIZE)) ] ||
  die "check failed: $V3_BYTES bytes served is more than wave 0's $WAVE0 device(s) x $V3_SIZE bytes: v3 reached more devices, or the roll back downloaded v2 again"
ok "checked: $V3_BYTES bytes <= $WAVE0 wave-0 device(s) x $V3_SIZE bytes; the roll back to v2 downloaded nothing"

# Per device: its target in the v3 rollout (none: never offered v3) and what the agent reports of v3.
DEPLOY_V3=$(ctl -o json deploy list | json_get '[d["deploymentId"] for d in j.get("deployments", []) if d.get("version") == "3"][0]') ||
  die "no deployment for vision v3 in edgefleetctl deploy list"
info "per device: its target in rollout vision-v3 (edgefleetctl deploy status $DEPLOY_V3), the version it"
info "serves and what it reports of v3 (edgefleetctl device list):"
ctl -o json deploy status "$DEPLOY_V3" >"$DEMO/v3-targets.json" || die "edgefleetctl deploy status $DEPLOY_V3 failed"
ctl -o json device list >"$DEMO/devices.json" || die "edgefleetctl device list failed"
"$EDGEFLEET_PYTHON" - "$DEMO/v3-targets.json" "$DEMO/devices.json" "$WAVE0" "${DEVICES[@]}" <<'PY' || die "check failed (above)"
import json, sys
targets_file, devices_file, wave0, ids = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
targets = {t["deviceId"]: t for t in json.load(open(targets_file)).get("targets", [])}
devices = {d["deviceId"]: d for d in json.load(open(devices_file)).get("devices", [])}
rows, problems = [], []
for i in ids:
    d = devices[i]
    hw = d.get("labels", {}).get("hw", "-")
    t = targets.get(i)
    target = t["state"].replace("DEPLOYMENT_TARGET_STATE_", "") if t else "never targeted"
    v3 = [m for m in d.get("inventory", {}).get("models", [])
          if m["modelName"] == "vision" and m["version"] == "3"]
    serving = [m["version"] for m in d.get("inventory", {}).get("models", [])
               if m["modelName"] == "vision" and m["state"] == "MODEL_STATE_SERVING"]
    report = "never had it"
    if v3:
        detail = v3[0].get("detail", "").replace("FAILURE_REASON_", "").split(" (attempt")[0]
        report = v3[0]["state"].replace("MODEL_STATE_", "") + (": " + detail if detail else "")
    rows.append((i, hw, target, ",".join(serving), report))
    if not t and v3:
        problems.append(f"{i} was never targeted by vision-v3 yet reports v3: {report}")
width = [max(len(r[k]) for r in rows + [("DEVICE", "HW", "V3 TARGET", "SERVES", "")]) for k in range(4)]
print("      %-*s  %-*s  %-*s  %-*s  %s" % (width[0], "DEVICE", width[1], "HW", width[2], "V3 TARGET",
                                           width[3], "SERVES", "V3 AS THE AGENT REPORTS IT"))
for r in rows:
    print("      %-*s  %-*s  %-*s  %-*s  %s" % (width[0], r[0], width[1], r[1], width[2], r[2],
                                               width[3], r[3], r[4]))
if len(targets) != wave0:
    problems.append(f"vision-v3 has {len(targets)} targets, wave 0 has {wave0}")
outside = [i for i in ids if i not in targets]
if len(outside) != len(ids) - wave0:
    problems.append(f"{len(outside)} devices outside wave 0, expected {len(ids) - wave0}")
for p in problems:
    print("    problem: " + p, file=sys.stderr)
if problems:
    sys.exit(1)
print(f"    checked: the {len(outside)} devices outside wave 0 were never targeted and never had v3")
PY
for id in "${DEVICES[@]}"; do
  line=$(grep -m1 'failed probation' "$LOGS/agent-$id.log" | grep 'version=3' || true)
  [ -z "$line" ] || info "agent $id: ${line#* }"
done
predict_all 2

# The devices keep their applications' traffic in a real fleet; the demo stops its own here.
stop_bg traffic
info "stopped the local traffic; NaN answers the applications got from v3 before it was swapped out: $(grep -c 'answered non-finite' "$LOGS/traffic.log" || true) (log: ${LOGS#"$ROOT"/}/traffic.log)"

# ---------------------------------------------------------------------------------------------------
step "Field telemetry: what the devices saw of each version, with no device id in any metric"
info "Agents summarise every Predict per version and window (latency sketch, errors by reason,"
info "feature and output histograms); the server rolls the windows up per model, version, hw, minute."
show model stats vision 2 --from -15m --step 5m
stats=$(ctl -o json model stats vision 2 --from -15m) || die "edgefleetctl model stats failed"
expect "$stats" "the fleet's windows for v2 count the Predicts the devices answered, with latency quantiles" \
  "int(j['total'].get('requests', 0)) > 0 and 'latencyP99Seconds' in j['total']"
show model drift vision 2 --from -15m
info "(drift needs 1,000 samples per feature against a reference: the demo's traffic is too small"
info " for a number, so it says so instead of guessing; tests/integration/drift_test.cpp shows one)"
metrics=$(curl -fsS "$HTTP/metrics") || die "GET $HTTP/metrics failed"
printf '%s\n' "$metrics" | awk '/^edgefleet_(inference_requests_total|inference_errors_total|telemetry_devices_reporting|drift_psi)/ { print "      " $0 }'
if printf '%s\n' "$metrics" | grep '^edgefleet_' | grep -q -F -e "${DEVICES[0]}"; then
  die "check failed: a device id appears in /metrics"
fi
ok "checked: no device id in any /metrics series"

# ---------------------------------------------------------------------------------------------------
step "Rollouts, metrics, and shutdown"
show rollout list
info "rollout and delivery lines of $HTTP/metrics:"
metrics=$(curl -fsS "$HTTP/metrics") || die "GET $HTTP/metrics failed"
printf '%s\n' "$metrics" | awk '/^edgefleet_(rollouts|rollout_targets|artifact_bytes_served_total|update_events_total)/ && !/ 0$/ { print "      " $0 }'

succeeded=1
if [ "$mode" = keep ]; then
  cat >"$ENV_FILE" <<ENV
export EDGEFLEET_SERVER=$EDGEFLEET_SERVER
export EDGEFLEET_HTTP=$HTTP
export EDGEFLEET_TOKEN=$ADMIN_TOKEN
ENV
  chmod 600 "$ENV_FILE"
  printf '\n%sDemo finished; the stack keeps running.%s\n' "$_ef_green" "$_ef_reset"
  cat <<USE
Use it:
  source var/demo/env
  ${BIN#"$ROOT"/}/edgefleetctl device list
  ${BIN#"$ROOT"/}/edgefleetctl rollout status vision-v3
  curl -H @<(echo "Authorization: Bearer \$EDGEFLEET_TOKEN") \$EDGEFLEET_HTTP/v1/rollouts
  ${BIN#"$ROOT"/}/edgefleetctl agent predict --socket var/demo/agents/${DEVICES[0]}/inference.sock --model vision --input $PREDICT_INPUT
Logs: var/demo/logs/   Stop it: ./scripts/demo.sh --down
USE
else
  info "stopping agents, server and PostgreSQL (use --keep to leave them running)"
  stop_stack
  trap - EXIT
  ok "stopped; logs are in var/demo/logs/"
  printf '\n%sDemo finished successfully.%s Run ./scripts/demo.sh --keep to leave the stack running.\n' "$_ef_green" "$_ef_reset"
fi
