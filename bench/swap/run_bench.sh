#!/usr/bin/env bash
# Runs bench/swap: generates the model pair, then 1,000 hot swaps under Predict load, and keeps
# the report (text and JSON) in OUT.
# Usage: bench/swap/run_bench.sh [--size-mb N] [--out DIR] [--tag NAME] [edgefleet-bench-swap flags...]
# Writes OUT/swap-<N>mb[-NAME].{txt,json} (OUT defaults to bench/swap/results).
# Environment: EDGEFLEET_BUILD_DIR (default build), which must hold bin/edgefleet-bench-swap
# (ninja -C build edgefleet-bench-swap).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

build_dir=${EDGEFLEET_BUILD_DIR:-build}
size_mb=8
out=bench/swap/results
tag=''
while [ $# -gt 0 ]; do
  case "$1" in
    --size-mb) size_mb=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --tag) tag=-$2; shift 2 ;;
    *) break ;;
  esac
done
bench="$build_dir/bin/edgefleet-bench-swap"
[ -x "$bench" ] || { echo "run_bench.sh: $bench is missing; build it first" >&2; exit 1; }

models=$(mktemp -d)
trap 'rm -rf "$models"' EXIT
/usr/bin/python3 bench/swap/make_pair.py "$models" --size-mb "$size_mb"
mkdir -p "$out"
{
  echo "# bench/swap at $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "# machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
  echo "# models: 2 x ${size_mb} MiB; flags: $*"
  "$bench" --model-a "$models/swap_a.onnx" --model-b "$models/swap_b.onnx" \
    --json "$out/swap-${size_mb}mb${tag}.json" "$@"
  echo "# load average $(cut -d' ' -f1-3 /proc/loadavg) at end"
} | tee "$out/swap-${size_mb}mb${tag}.txt"
