#!/usr/bin/env bash
# Installs the Debian 12 packages edgefleet needs to build, test and run the demo.
# Idempotent: installs only what is missing and prints nothing when everything is there.
# Usage: install-deps.sh [--build-only]   (--build-only: what compiling and packaging need, no more)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib/deps.sh
source "$here/lib/deps.sh"
case "${1:-}" in
  --build-only) export EDGEFLEET_DEPS_SET=build ;;
  '') ;;
  *) echo "usage: $0 [--build-only]" >&2; exit 2 ;;
esac
ensure_deps
