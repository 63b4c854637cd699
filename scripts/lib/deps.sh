# shellcheck shell=bash
# Debian 12 package dependencies of edgefleet; source this file.
# ensure_deps installs only the packages that are missing (apt-get update once, then install).
# EDGEFLEET_DEPS_SET picks the list: all (default: EDGEFLEET_DEPS), build (image builds,
# packagers), sanitizers or deploy.

# What compiling the binaries and packaging them (cpack: dpkg-shlibdeps, file) needs.
EDGEFLEET_BUILD_DEPS=(
  build-essential cmake ninja-build pkg-config file python3
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libpqxx-dev libssl-dev libspdlog-dev libzstd-dev libbz2-dev libdivsufsort-dev
  libsqlite3-dev libcpp-httplib-dev libopencv-dnn-dev
)
# Plus what the tests, the benchmarks and the demo need (iproute2's ip and tc, nftables and faketime for
# tests/faults).
EDGEFLEET_DEPS=(
  "${EDGEFLEET_BUILD_DEPS[@]}" git
  libgtest-dev libgmock-dev libbenchmark-dev
  postgresql-15 prometheus python3-onnx python3-numpy
  bsdiff xdelta3 zstd openssl clang-format curl
  iproute2 nftables faketime
)
# Plus what scripts/test-sanitizers.sh needs: clang, its sanitizer runtimes and libFuzzer
# (libclang-rt-14-dev; clang only recommends it) and llvm-symbolizer for readable reports.
EDGEFLEET_SANITIZER_DEPS=(
  "${EDGEFLEET_DEPS[@]}" clang libclang-rt-14-dev llvm
)
# Plus what scripts/test-deploy.sh needs: Docker, Compose, and mmdebstrap for a base image.
EDGEFLEET_DEPLOY_DEPS=(
  "${EDGEFLEET_DEPS[@]}" docker.io docker-compose mmdebstrap
)

# Prints the wanted packages that are not installed, one per line.
missing_deps() {
  local pkg status
  local -a wanted
  case "${EDGEFLEET_DEPS_SET:-all}" in
    build) wanted=("${EDGEFLEET_BUILD_DEPS[@]}") ;;
    sanitizers) wanted=("${EDGEFLEET_SANITIZER_DEPS[@]}") ;;
    deploy) wanted=("${EDGEFLEET_DEPLOY_DEPS[@]}") ;;
    *) wanted=("${EDGEFLEET_DEPS[@]}") ;;
  esac
  for pkg in "${wanted[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    if [ "$status" != "installed" ]; then echo "$pkg"; fi
  done
}

ensure_deps() {
  if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "error: dpkg-query not found; edgefleet expects Debian 12 (bookworm). Install these packages by hand:" >&2
    echo "  ${EDGEFLEET_DEPS[*]}" >&2
    return 1
  fi
  local missing
  mapfile -t missing < <(missing_deps)
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  echo "Installing missing Debian packages: ${missing[*]}"
  local -a sudo=()
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      sudo=(sudo)
    else
      echo "error: missing packages (${missing[*]}) and not root and no sudo; install them as root" >&2
      return 1
    fi
  fi
  "${sudo[@]}" apt-get update -qq || { echo "error: apt-get update failed" >&2; return 1; }
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" ||
    { echo "error: apt-get install failed for: ${missing[*]}" >&2; return 1; }
  mapfile -t missing < <(missing_deps)
  if [ "${#missing[@]}" -ne 0 ]; then
    echo "error: still missing after install: ${missing[*]}" >&2
    return 1
  fi
}
