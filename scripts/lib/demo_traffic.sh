#!/usr/bin/env bash
# Local traffic for scripts/demo.sh: the application on each device calls Predict on its agent's
# Unix socket, about once a second, until it is stopped. This is what an agent's probation judges
# a new version on (errors, non-finite outputs, p95 latency).
#
# Usage: demo_traffic.sh EDGEFLEETCTL MODEL INPUT SOCKET...
# Each round calls every socket at once, then rests. Logs one line per round and every failed or
# non-finite answer.
set -uo pipefail

[ $# -ge 4 ] || { echo "usage: $0 EDGEFLEETCTL MODEL INPUT SOCKET..." >&2; exit 2; }
ctl=$1 model=$2 input=$3
shift 3

now() { date -u +%H:%M:%S.%N | cut -c1-12; }

# call SOCKET: one Predict; prints a line when it failed or answered non-finite values.
call() {
  local out
  if ! out=$("$ctl" -o json agent predict --socket "$1" --model "$model" --input "$input" 2>&1); then
    echo "$(now) $1 failed: $(tr -s ' \n' ' ' <<<"$out")"
    return 1
  fi
  case "$out" in *NaN* | *Infinity*) echo "$(now) $1 answered non-finite: $(tr -d ' \n' <<<"$out")" ;; esac
}

# Stopped (SIGTERM): let the calls under way finish, so that none outlives the generator.
trap 'wait; exit 0' TERM

round=0
while :; do
  round=$((round + 1))
  pids=()
  for socket in "$@"; do
    call "$socket" &
    pids+=($!)
  done
  failed=0
  for pid in "${pids[@]}"; do wait "$pid" || failed=$((failed + 1)); done
  echo "$(now) round $round: $# calls, $failed failed"
  sleep 0.7
done
