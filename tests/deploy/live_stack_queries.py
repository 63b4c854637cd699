#!/usr/bin/python3
"""Proves deploy/grafana/ and deploy/prometheus/ against a running edgefleet stack.

Asks a live Prometheus (the compose stack's, after a rollout and some inference traffic):
- every scrape target is up;
- every expression of every dashboard panel and variable returns series, with Grafana's
  variables set to values of the live fleet (--values);
- every recording rule's series exists, and every series an alert rule reads exists (an alert
  that does not fire returns nothing by design: what must exist is what it compares).

An expression that reads a series only a failure makes (a dropped telemetry window, a failed
download, ...) may come back empty from a healthy stack: EXEMPT names those series and why. An
empty expression is a failure unless it reads an exempt series, and every exemption is printed.

Usage: live_stack_queries.py SOURCE_DIR PROMETHEUS_URL [--values k=v,k=v] [--wait SECONDS]
Exit status 1 when something is missing; the report says what.
"""
import argparse
import glob
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grafana_dashboards_test as dashboards  # noqa: E402  (the dashboards' own lint)

# What a healthy stack has no series of (a regular expression over the query), and why.
EXEMPT = {
    r"edgefleet_telemetry_windows_dropped_total":
        "counts telemetry windows agents lost; a healthy stack loses none",
    r'kind="UPDATE_EVENT_KIND_PATCH_REJECTED"':
        "counts patches devices refused to apply; the server's patches apply",
}

SELECTOR = re.compile(r"(?<![A-Za-z0-9_:])((?:edgefleet[_:][A-Za-z0-9_:]*|up))(\{[^}]*\})?")


def exemption(expr):
    return next((f"{pattern}: {why}" for pattern, why in EXEMPT.items() if re.search(pattern, expr)),
                None)


def has_data(base, expr):
    status, body = dashboards.query(base, expr)
    if status != 200 or not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, dict) else body
        return None, f"HTTP {status}: {error}"
    return bool(body.get("data", {}).get("result")), None


class Report:
    def __init__(self):
        self.failures, self.exempt, self.targets_up, self.passed = [], [], [], 0

    def check(self, base, where, expr):
        ok, error = has_data(base, expr)
        if ok:
            self.passed += 1
            return
        why = exemption(expr)
        if ok is not None and why:
            self.exempt.append(f"{where}: no data, exempt ({why}): {expr}")
        else:
            self.failures.append(f"{where}: {error or 'no data'}: {expr}")


def check_targets(base, report):
    status, body = dashboards.get(base + "/api/v1/targets")
    active = body.get("data", {}).get("activeTargets", []) if isinstance(body, dict) else []
    if status != 200 or not active:
        report.failures.append(f"targets: Prometheus lists none (HTTP {status})")
    for target in active:
        name = f"{target.get('labels', {}).get('job')} {target.get('scrapeUrl')}"
        if target.get("health") != "up":
            report.failures.append(f"target {name} is {target.get('health')}: "
                                   f"{target.get('lastError')}")
        else:
            report.targets_up.append(name)


def check_dashboards(src, base, values, report):
    lint = dashboards.Lint()
    uids, expressions = {}, []
    for path in sorted(glob.glob(os.path.join(src, "deploy/grafana/dashboards/*.json"))):
        dashboards.check_dashboard(lint, path, uids, expressions)
    for where, expr, variables in expressions:
        report.check(base, where, dashboards.substitute(expr, variables, values))
    return len(expressions)


def check_rules(base, report):
    status, body = dashboards.get(base + "/api/v1/rules")
    groups = body.get("data", {}).get("groups", []) if isinstance(body, dict) else []
    if status != 200 or not groups:
        report.failures.append(f"rules: Prometheus loaded none (HTTP {status})")
    count = 0
    for group in groups:
        for rule in group.get("rules", []):
            count += 1
            if rule.get("type") == "recording":
                report.check(base, f"recording rule {rule['name']}", rule["name"])
                continue
            where = f"alert {rule['name']}"
            selectors = {m.group(0) for m in SELECTOR.finditer(rule["query"])}
            if not selectors:
                report.failures.append(f"{where}: reads no series: {rule['query']}")
            for selector in sorted(selectors):
                report.check(base, f"{where} reads", selector)
    return count


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source_dir")
    parser.add_argument("prometheus_url")
    parser.add_argument("--values", default="",
                        help="Grafana variables as k=v,k=v (e.g. model=vision,version=2)")
    parser.add_argument("--wait", type=float, default=0,
                        help="seconds to keep asking while something is missing")
    args = parser.parse_args()
    values = dict(kv.split("=", 1) for kv in args.values.split(",") if kv)
    src, base, wait = os.path.abspath(args.source_dir), args.prometheus_url.rstrip("/"), args.wait
    deadline = time.monotonic() + wait
    while True:
        report = Report()
        check_targets(base, report)
        panels = check_dashboards(src, base, values, report)
        rules = check_rules(base, report)
        if not report.failures or time.monotonic() >= deadline:
            break
        print(f"{len(report.failures)} expressions still without data; asking again in 10 s")
        time.sleep(10)  # waiting for scrapes, roll-ups and rule evaluations to catch up
    for name in report.targets_up:
        print("target up:", name)
    for line in report.exempt:
        print("EXEMPT", line)
    for line in report.failures:
        print("FAIL", line, file=sys.stderr)
    print(f"{panels} dashboard expressions and {rules} rules against {base}: {report.passed} "
          f"returned data, {len(report.exempt)} exempt, {len(report.failures)} failed")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
