#!/usr/bin/env bash
# Local traffic for scripts/demo.sh: the application on each device calls Predict on its agent's
# Unix socket about once a second, until it is stopped. This is what an agent's probation judges a
# new version on (errors, non-finite outputs, p95 latency).
#
# Usage: demo_traffic.sh EDGEFLEETCTL MODEL INPUT SOCKET...
# One loop per socket, so that a slow call on one device does not hold back the others. Logs every
# failed or non-finite answer, and each socket's count of calls every 20 calls.
set -uo pipefail

[ $# -ge 4 ] || { echo "usage: $0 EDGEFLEETCTL MODEL INPUT SOCKET..." >&2; exit 2; }
ctl=$1 model=$2 input=$3
shift 3
REST_SECONDS=0.7  # about one call a second per device

now() { date -u +%H:%M:%S.%N | cut -c1-12; }

# drive SOCKET: calls Predict on SOCKET until killed.
drive() {
  local socket=$1 calls=0 failed=0 out
  while :; do
    calls=$((calls + 1))
    if ! out=$("$ctl" -o json agent predict --socket "$socket" --model "$model" --input "$input" 2>&1); then
      failed=$((failed + 1))
      echo "$(now) $socket failed: $(tr -s ' \n' ' ' <<<"$out")"
    else
      case "$out" in *NaN* | *Infinity*) echo "$(now) $socket answered non-finite: $(tr -d ' \n' <<<"$out")" ;; esac
    fi
    [ $((calls % 20)) -ne 0 ] || echo "$(now) $socket: $calls calls, $failed failed"
    sleep "$REST_SECONDS"
  done
}

pids=()
for socket in "$@"; do
  drive "$socket" &
  pids+=($!)
done
# Stopped (SIGTERM): stop every loop too.
trap 'kill "${pids[@]}" 2>/dev/null; wait; exit 0' TERM INT
wait
