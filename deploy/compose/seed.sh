#!/bin/sh
# One-shot, after the agents started: waits until they enrolled, generates the demo models
# (a small CNN: v1, and v2 with only its head retrained) and deploys v1 to the fleet, then waits
# until every agent serves it, so that the application finds it and the dashboards fill up. Idempotent: a stack started again keeps
# what it has. Environment: EDGEFLEET_SERVER, EDGEFLEET_TOKEN_FILE, AGENTS.
set -eu
models=${1:-/models}
agents=${AGENTS:-3}
ctl() { edgefleetctl -o json "$@"; }
field() { python3 -c "import json, sys; j = json.load(sys.stdin); print($1)"; }

echo "seed: waiting for $agents active devices"
i=0
until [ "$(ctl device list | field "sum(d.get('status') == 'DEVICE_STATUS_ACTIVE' for d in j.get('devices', []))")" -ge "$agents" ]; do
  i=$((i + 1))
  if [ "$i" -gt 120 ]; then echo "seed: the agents did not enroll within 120 s" >&2; exit 1; fi
  sleep 1
done

if [ ! -s "$models/vision_v1.onnx" ]; then
  python3 /usr/share/edgefleet/models/make_demo_models.py "$models"
fi
if ctl model list | field "any(m.get('name') == 'vision' for m in j.get('models', []))" | grep -q True; then
  echo "seed: model vision is registered already; nothing to do"
  exit 0
fi
ctl model push vision "$models/vision_v1.onnx" --version 1 --input image:1x3x32x32 --output probs:1x10 |
  field '"seed: pushed vision 1 (%s bytes)" % j["sizeBytes"]'
id=$(ctl deploy create vision 1 | field 'j["deploymentId"]')
echo "seed: deployment $id of vision 1 created; waiting until every agent serves it"
# The application starts after this step: it should find the model serving.
i=0
until [ "$(ctl rollout status "deploy-$id" | field 'j["state"]')" = ROLLOUT_STATE_SUCCEEDED ]; do
  i=$((i + 1))
  if [ "$i" -gt 300 ]; then echo "seed: deploy-$id did not succeed within 300 s" >&2; exit 1; fi
  sleep 1
done
echo "seed: every agent serves vision 1"
