# shellcheck shell=bash
# Shared helpers for the scripts in scripts/: step headers, errors, dependency install and the build.
# Source this file; it sets EDGEFLEET_ROOT to the repository root.

EDGEFLEET_ROOT=${EDGEFLEET_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
EDGEFLEET_PYTHON=${EDGEFLEET_PYTHON:-/usr/bin/python3}  # Debian's python3, the one with onnx + numpy

# shellcheck source=scripts/lib/deps.sh
source "$EDGEFLEET_ROOT/scripts/lib/deps.sh"

if [ -t 1 ]; then
  _ef_bold=$'\033[1m' _ef_red=$'\033[31m' _ef_green=$'\033[32m' _ef_reset=$'\033[0m'
else
  _ef_bold='' _ef_red='' _ef_green='' _ef_reset=''
fi

# step "text": prints a numbered step header ("==> [3/8] text"); set STEP_TOTAL to show the total.
STEP_NO=0
STEP_NAME=''
step() {
  STEP_NO=$((STEP_NO + 1))
  STEP_NAME=$1
  local total=''
  [ -n "${STEP_TOTAL:-}" ] && total="/$STEP_TOTAL"
  printf '\n%s==> [%s%s] %s%s\n' "$_ef_bold" "$STEP_NO" "$total" "$1" "$_ef_reset"
}

info() { printf '    %s\n' "$*"; }
ok() { printf '    %s%s%s\n' "$_ef_green" "$*" "$_ef_reset"; }
warn() { printf '    %swarning: %s%s\n' "$_ef_red" "$*" "$_ef_reset" >&2; }

# die "message": prints an error naming the current step and exits 1.
die() {
  if [ -n "$STEP_NAME" ]; then
    printf '\n%serror in step %s (%s): %s%s\n' "$_ef_red" "$STEP_NO" "$STEP_NAME" "$*" "$_ef_reset" >&2
  else
    printf '\n%serror: %s%s\n' "$_ef_red" "$*" "$_ef_reset" >&2
  fi
  exit 1
}

# edgefleet_build BUILD_DIR: installs missing Debian packages, configures with CMake + Ninja and builds
# (EDGEFLEET_BUILD_TYPE, default RelWithDebInfo).
edgefleet_build() {
  local build_dir=$1
  info "checking Debian packages"
  ensure_deps || die "could not install the Debian packages (see above); run ./scripts/install-deps.sh as root"
  if [ -f "$build_dir/CMakeCache.txt" ] && ! grep -q '^CMAKE_GENERATOR:INTERNAL=Ninja$' "$build_dir/CMakeCache.txt"; then
    die "$build_dir was configured with another CMake generator; remove it (rm -rf $build_dir) and run again"
  fi
  local build_type=${EDGEFLEET_BUILD_TYPE:-RelWithDebInfo}
  info "configuring $build_dir (CMake, Ninja, $build_type)"
  mkdir -p "$build_dir"
  local log="$build_dir/edgefleet-configure.log"
  cmake -S "$EDGEFLEET_ROOT" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="$build_type" >"$log" 2>&1 || {
    cat "$log" >&2
    die "cmake configure failed (output above, also in $log)"
  }
  info "building with $(nproc) jobs"
  cmake --build "$build_dir" -j"$(nproc)" || die "build failed (compiler output above)"
}
