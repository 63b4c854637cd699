#!/bin/sh
# The compose stack's stand-in for the devices' applications: calls Predict on every agent's socket
# about once a second with the demo's sample image (scripts/lib/demo_traffic.sh), so that the
# agents' probation, the rollouts' inference gates and the dashboards have traffic to read.
# Usage: app.sh MODELS_DIR SOCKET...
set -eu
models=$1
shift
exec bash /usr/share/edgefleet/compose/demo_traffic.sh edgefleetctl vision "image=@$models/image_sample.npy" "$@"
