#!/usr/bin/env bash
# Installs the Debian 12 packages edgefleet needs to build, test and run the demo.
# Idempotent: installs only what is missing and prints nothing when everything is there.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib/deps.sh
source "$here/lib/deps.sh"
ensure_deps
