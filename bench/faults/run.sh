#!/usr/bin/env bash
# Faults on a real network, full size: a model of --model-mib MiB (default 100) delivered to an
# agent in its own network namespace over a veth link shaped by tc netem to --rate (1mbit) with
# 5% loss and 20 ms delay each way, the link dropping for --drop-seconds (10) every
# --drop-every (30) seconds. It is the CI test FaultTest.ModelArrivesOverLossyDroppingLinkByResuming
# (tests/faults/fault_test.cpp, a 3 MiB model there) at full size: the model must arrive,
# resume after the drops, verify and serve. Prints the test's output and, last, its JSON line:
# model_bytes, seconds, drops, resumes (downloads the server saw resumed), bytes_served and
# bytes_resent (served beyond the file: lost in the cuts). Root only (ip netns, tc).
# Usage: bench/faults/run.sh [--model-mib N] [--rate R] [--drop-every S] [--drop-seconds S]
#            [--timeout-seconds S]
# Environment: EDGEFLEET_BUILD_DIR (default build); what is missing is built there.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=scripts/lib/postgres.sh
source scripts/lib/postgres.sh

build_dir=${EDGEFLEET_BUILD_DIR:-build}
model_mib=100
rate=1mbit
drop_every=30
drop_seconds=10
timeout_seconds=7200
while [ $# -gt 0 ]; do
  case "$1" in
    --model-mib) model_mib=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --drop-every) drop_every=$2; shift 2 ;;
    --drop-seconds) drop_seconds=$2; shift 2 ;;
    --timeout-seconds) timeout_seconds=$2; shift 2 ;;
    *) echo "run.sh: unknown flag $1" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "run.sh: needs root (ip netns, tc netem)" >&2; exit 1; }
if [ ! -x "$build_dir/tests/fault_test" ] || [ ! -x "$build_dir/bin/edgefleet-agent" ]; then
  ninja -C "$build_dir" -j2 fault_test edgefleet-server edgefleet-agent edgefleetctl \
    edgefleet_test_models >&2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/edgefleet-faults.XXXXXX")
chmod 755 "$work"
cleanup() {
  pg_stop "$work/pg"
  rm -rf "$work"
}
trap cleanup EXIT
pg_start "$work/pg" >&2
out="$work/test.out"
status=0
EDGEFLEET_FAULT_MODEL_MIB=$model_mib EDGEFLEET_FAULT_RATE=$rate \
  EDGEFLEET_FAULT_DROP_EVERY_SECONDS=$drop_every EDGEFLEET_FAULT_DROP_SECONDS=$drop_seconds \
  EDGEFLEET_FAULT_TIMEOUT_SECONDS=$timeout_seconds \
  "$build_dir/tests/fault_test" --gtest_filter='FaultTest.ModelArrivesOverLossyDroppingLinkByResuming' \
  >"$out" 2>&1 || status=$?
grep -v '^{"model_bytes"' "$out" || true
grep '^{"model_bytes"' "$out" || { echo "run.sh: the test printed no result (status $status)" >&2; exit 1; }
exit "$status"
