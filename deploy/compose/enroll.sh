#!/bin/sh
# One-shot, after the server is ready: creates the enrollment token the stack's agents enroll with
# and hands it to them, with the server's CA certificate, in the enrollment volume.
# Environment: EDGEFLEET_SERVER (admin gRPC), EDGEFLEET_TOKEN_FILE, AGENTS (how many will enroll).
set -eu
out=${1:-/enroll}
ca=${EDGEFLEET_CA_FILE:-/var/lib/edgefleet/keys/ca.pem}
if [ -s "$out/agent.json" ]; then
  echo "enroll: $out/agent.json exists (the agents enrolled before); nothing to do"
  exit 0
fi
json=$(edgefleetctl -o json token create \
  --max-uses "${AGENTS:-3}" --label site=compose --label hw=container)
token=$(printf '%s' "$json" | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
cp "$ca" "$out/ca.pem.tmp"
printf '{"enrollment_token": "%s", "server_ca_file": "%s/ca.pem"}\n' "$token" "$out" >"$out/agent.json.tmp"
chmod 0644 "$out/ca.pem.tmp" "$out/agent.json.tmp"
mv "$out/ca.pem.tmp" "$out/ca.pem"
mv "$out/agent.json.tmp" "$out/agent.json"
echo "enroll: token for ${AGENTS:-3} agents (labels site=compose, hw=container) in $out/agent.json"
