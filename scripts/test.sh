#!/usr/bin/env bash
# Builds edgefleet and runs the whole test suite against a throwaway PostgreSQL.
# Usage: ./scripts/test.sh [extra ctest arguments, e.g. -R crypto or -L unit]
# Environment: EDGEFLEET_BUILD_DIR (default build), EDGEFLEET_SKIP_BUILD=1 to reuse an existing build,
# EDGEFLEET_BUILD_TYPE (default RelWithDebInfo; .ci/run uses Release).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh
# shellcheck source=scripts/lib/postgres.sh
source scripts/lib/postgres.sh

build_dir=${EDGEFLEET_BUILD_DIR:-build}
STEP_TOTAL=3

pg_tmp=''
# shellcheck disable=SC2317  # called from the EXIT trap
cleanup() {
  if [ -n "$pg_tmp" ]; then
    pg_stop "$pg_tmp/pg"
    rm -rf "$pg_tmp"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "${EDGEFLEET_SKIP_BUILD:-0}" = 1 ]; then
  step "Build (skipped: EDGEFLEET_SKIP_BUILD=1)"
  [ -f "$build_dir/CTestTestfile.cmake" ] || die "$build_dir is not a configured build directory"
else
  step "Install missing Debian packages and build into $build_dir"
  edgefleet_build "$build_dir"
fi

step "Start a throwaway PostgreSQL 15"
pg_tmp=$(mktemp -d "${TMPDIR:-/tmp}/edgefleet-test.XXXXXX")
# As root the cluster runs as the postgres user, which must be able to enter the temp directory.
chmod 755 "$pg_tmp"
pg_start "$pg_tmp/pg" || die "could not start PostgreSQL (output above)"
info "EDGEFLEET_PG_URL=$EDGEFLEET_PG_URL"

step "Run the tests (ctest)"
status=0
ctest --test-dir "$build_dir" --output-on-failure -j2 --timeout 300 --no-tests=error "$@" || status=$?
if [ "$status" -eq 0 ]; then
  ok "all tests passed"
else
  printf '\nctest failed with status %s (failing tests listed above)\n' "$status" >&2
fi
exit "$status"
