#!/usr/bin/env bash
# Proves deploy/prometheus/: the configuration loads, the rules parse and lint, and every rule's
# promtool unit tests (deploy/prometheus/tests/*.yml) pass.
# Usage: prometheus_rules_test.sh SOURCE_DIR [PROMTOOL]
set -euo pipefail

src=${1:?usage: $0 SOURCE_DIR [PROMTOOL]}
promtool=${2:-promtool}
dir="$src/deploy/prometheus"

if ! command -v "$promtool" > /dev/null; then
  echo "$promtool not found: install Debian's prometheus package (scripts/install-deps.sh)" >&2
  exit 1
fi

# check config also checks that every rule file and file_sd target file it names exists.
"$promtool" check config "$dir/prometheus.yml"
"$promtool" check rules "$dir"/rules/*.yml
"$promtool" test rules "$dir"/tests/*.yml

# Every alert rule has a test case that names it.
missing=0
for alert in $(sed -n 's/^ *- alert: *\([A-Za-z0-9_]*\).*/\1/p' "$dir"/rules/*.yml); do
  if ! grep -q "alertname: *$alert\$" "$dir"/tests/*.yml; then
    echo "alert $alert has no promtool test case in $dir/tests/" >&2
    missing=1
  fi
done
# Every recording rule is evaluated by a test expression.
for record in $(sed -n 's/^ *- record: *\([A-Za-z0-9_:]*\).*/\1/p' "$dir"/rules/*.yml); do
  if ! grep -q -- "- expr: *$record\\b" "$dir"/tests/*.yml; then
    echo "recording rule $record has no promtool test expression in $dir/tests/" >&2
    missing=1
  fi
done
exit "$missing"
