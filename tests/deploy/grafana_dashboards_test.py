#!/usr/bin/python3
"""Lints deploy/grafana/ and proves every query in it against a real Prometheus.

Fails when a dashboard does not parse, has __inputs, lacks a uid or shares one, a panel lacks a
unit or does not use the datasource variable, a rate/irate/increase over a raw counter uses a
window other than $__rate_interval, a provisioning file lacks the fixed datasource uid or
allowUiUpdates: false, an expression names an edgefleet metric that does not exist, or
Prometheus refuses an expression as invalid PromQL.

Known metric names: the recording rules' `record:` names (deploy/prometheus/rules/) and the
families the server registers (`AddCounter/AddGauge/AddHistogram("edgefleet_...")` in
server/**/*.cpp, with a histogram's _bucket/_sum/_count series): the code, not the docs, is what
/metrics exports.

PromQL: a throwaway /usr/bin/prometheus on a free 127.0.0.1 port, with a temporary storage
directory and deploy/prometheus's rule files loaded, answers /api/v1/query for each expression
(Grafana's variables substituted); 400 / bad_data is invalid PromQL. Then Prometheus scrapes a
stand-in for edgefleet-server (StandIn below: the server's families with the label values its
code writes) and evaluates the rules, and every expression must return series: this catches a
label value, a join or a `version="$new"` comparison that can never match. Prometheus is
stopped at the end whatever happens (and dies with this process).

Usage: grafana_dashboards_test.py SOURCE_DIR [PROMETHEUS]
       grafana_dashboards_test.py --self-test SOURCE_DIR [PROMETHEUS]
         breaks a copy of deploy/grafana/ in each way above, one at a time, and fails unless
         the lint catches every one.
"""
import ctypes
import glob
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

DATASOURCE_UID = "edgefleet-prometheus"
DATASOURCE_VAR = "datasource"
RAW_COUNTER = re.compile(r"(_total|_bucket|_count|_sum)$")
METRIC_NAME = re.compile(r"(?<![A-Za-z0-9_:])edgefleet[_:][A-Za-z0-9_:]*")
# Grafana's built-in interval variables, as Prometheus durations for the check.
BUILTINS = {
    "__rate_interval": "5m",
    "__interval": "1m",
    "__range": "6h",
    "__range_s": "21600",
    "__range_ms": "21600000",
    "__interval_ms": "60000",
}
VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]")


class Lint:
    def __init__(self):
        self.errors = []

    def error(self, where, what):
        self.errors.append(f"{where}: {what}")


def all_panels(panels):
    for panel in panels or []:
        yield panel
        yield from all_panels(panel.get("panels"))


def strip_strings(expr):
    """The expression without its string literals (label values), for name scanning."""
    return re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)


def call_arguments(expr, functions):
    """(function, argument text) for every call of one of `functions` in expr."""
    for match in re.finditer(r"\b(" + "|".join(functions) + r")\s*\(", expr):
        depth, start = 1, match.end()
        i = start
        while i < len(expr) and depth:
            depth += {"(": 1, ")": -1}.get(expr[i], 0)
            i += 1
        yield match.group(1), expr[start:i - 1]


def check_rate_windows(lint, where, expr):
    bare = strip_strings(expr)
    for function, argument in call_arguments(bare, ["rate", "irate", "increase"]):
        names = [n for n in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", argument)
                 if RAW_COUNTER.search(n)]
        windows = re.findall(r"\[([^\]]*)\]", argument)
        if names and any(w.strip() not in ("$__rate_interval", "${__rate_interval}")
                         for w in windows):
            lint.error(where, f"{function}() over raw counter {names[0]} uses window "
                       f"{windows} instead of $__rate_interval: {expr}")


def substitute(expr, variables, values=None):
    def value(match):
        name = match.group(1) or match.group(2) or match.group(3)
        if name in BUILTINS:
            return BUILTINS[name]
        if name in variables:
            return (values or {}).get(name, "edgefleet_lint")
        return match.group(0)  # left as is: Prometheus refuses it, and the test says so
    return VARIABLE.sub(value, expr)


def label_values_selector(query):
    """label_values(SELECTOR, label) -> SELECTOR; label_values(label) -> None."""
    match = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", query, re.S)
    return match.group(1) if match else None


def known_metric_names(src):
    names = set()
    for path in glob.glob(os.path.join(src, "deploy/prometheus/rules/*.yml")):
        with open(path, encoding="utf-8") as f:
            names.update(re.findall(r"^\s*-?\s*record:\s*([A-Za-z0-9_:]+)", f.read(), re.M))
    registered = re.compile(r'Add(Counter|Gauge|Histogram)\(\s*"(edgefleet_[a-z0-9_]+)"')
    for path in glob.glob(os.path.join(src, "server/**/*.cpp"), recursive=True):
        with open(path, encoding="utf-8") as f:
            for kind, name in registered.findall(f.read()):
                names.add(name)
                if kind == "Histogram":
                    names.update(name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names


def check_dashboard(lint, path, uids, expressions):
    where = "dashboards/" + os.path.basename(path)
    try:
        with open(path, encoding="utf-8") as f:
            board = json.load(f)
    except (OSError, ValueError) as e:
        lint.error(where, f"does not parse as JSON: {e}")
        return
    if "__inputs" in board:
        lint.error(where, "has __inputs (an export for sharing: file provisioning cannot fill it)")
    uid = board.get("uid")
    if not uid:
        lint.error(where, "has no uid")
    elif uid in uids:
        lint.error(where, f"uid {uid} is also the uid of {uids[uid]}")
    else:
        uids[uid] = where
    variables = board.get("templating", {}).get("list", [])
    names = {v.get("name") for v in variables}
    if not any(v.get("type") == "datasource" and v.get("query") == "prometheus"
               and v.get("name") == DATASOURCE_VAR for v in variables):
        lint.error(where, f"no datasource variable ${DATASOURCE_VAR} (type datasource, query "
                   "prometheus)")
    uses_variable = {"${%s}" % DATASOURCE_VAR, "$" + DATASOURCE_VAR}

    def datasource_ok(ds):
        return isinstance(ds, dict) and ds.get("uid") in uses_variable

    for v in variables:
        if v.get("type") != "query":
            continue
        vwhere = f"{where}: variable {v.get('name')}"
        if not datasource_ok(v.get("datasource")):
            lint.error(vwhere, f"does not use the datasource variable: {v.get('datasource')}")
        query = v.get("query")
        query = query.get("query", "") if isinstance(query, dict) else (query or "")
        selector = label_values_selector(query)
        if selector is None and not query.startswith("label_values("):
            selector = query  # query_result(...) or a plain expression
            selector = re.sub(r"^\s*query_result\((.*)\)\s*$", r"\1", selector, flags=re.S)
        if selector:
            expressions.append((vwhere, selector, names))
    panels = [p for p in all_panels(board.get("panels")) if p.get("type") != "row"]
    if not panels:
        lint.error(where, "has no panels")
    for panel in panels:
        pwhere = f"{where}: panel {panel.get('title')!r}"
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        if not unit:
            lint.error(pwhere, "has no unit (fieldConfig.defaults.unit)")
        if not datasource_ok(panel.get("datasource")):
            lint.error(pwhere, f"does not use the datasource variable: {panel.get('datasource')}")
        targets = panel.get("targets") or []
        if not targets:
            lint.error(pwhere, "has no query")
        for target in targets:
            twhere = f"{pwhere} {target.get('refId')}"
            if "datasource" in target and not datasource_ok(target["datasource"]):
                lint.error(twhere, f"does not use the datasource variable: {target['datasource']}")
            expr = target.get("expr")
            if not expr:
                lint.error(twhere, "has no expr")
                continue
            check_rate_windows(lint, twhere, expr)
            expressions.append((twhere, expr, names))


def check_provisioning(lint, grafana):
    """Paths in messages are relative to deploy/grafana/."""
    datasources = glob.glob(os.path.join(grafana, "provisioning/datasources/*.yml"))
    providers = glob.glob(os.path.join(grafana, "provisioning/dashboards/*.yml"))
    if not datasources:
        lint.error(grafana, "no provisioning/datasources/*.yml")
    if not providers:
        lint.error(grafana, "no provisioning/dashboards/*.yml")
    for path in datasources:
        where = os.path.relpath(path, grafana)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if not re.search(r"^\s*uid:\s*['\"]?%s['\"]?\s*$" % re.escape(DATASOURCE_UID), text, re.M):
            lint.error(where, f"no datasource with the fixed uid {DATASOURCE_UID}")
        if not re.search(r"^\s*type:\s*prometheus\s*$", text, re.M):
            lint.error(where, "no datasource of type prometheus")
    for path in providers:
        where = os.path.relpath(path, grafana)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for setting in ("allowUiUpdates: false", "disableDeletion: true", "type: file"):
            if not re.search(r"^\s*%s\s*$" % re.escape(setting), text, re.M):
                lint.error(where, f"lacks `{setting}`")
        if not re.search(r"^\s*folder:\s*\S", text, re.M):
            lint.error(where, "names no folder")


# What the data check's stand-in for edgefleet-server exports: the server's families with the
# label values its code writes (server_metrics.cpp and its callers, docs/metrics.md), for model
# "m" at versions v1 (old) and v2 (new), on hw "a" and on devices without hw. Counters grow at
# every scrape. Values are per scrape; a histogram is {le: count}.
MODEL_SERIES = [{"model": "m", "version": v, **hw} for v in ("v1", "v2")
                for hw in ({"hw": "a"}, {})]
GAUGES = (
    [("edgefleet_devices", {"status": s}, 5) for s in ("pending", "active", "decommissioned")]
    + [("edgefleet_devices_unseen", {"longer_than": t}, 1)
       for t in ("5m", "15m", "1h", "6h", "1d", "7d")]
    + [("edgefleet_rollouts", {"state": s}, 1) for s in
       ("pending", "running", "paused", "succeeded", "aborted", "rolled_back")]
    + [("edgefleet_rollout_targets", {"state": s}, 2) for s in
       ("pending", "in_progress", "serving", "failed", "superseded", "rolled_back")]
    + [("edgefleet_patches", {"state": s}, 1) for s in
       ("pending", "ready", "not_smaller", "failed")]
    + [("edgefleet_patch_oldest_pending_age_seconds", {}, 60)]
    + [("edgefleet_telemetry_devices_reporting", m, 3) for m in MODEL_SERIES]
    + [(f"edgefleet_drift_{kind}", {**m, "feature": f}, 0.2)
       for kind in ("psi", "js_distance") for m in MODEL_SERIES for f in ("0", "1", "output")]
    + [("edgefleet_drift_warn_threshold", {"model": "m"}, 0.1),
       ("edgefleet_drift_alert_threshold", {"model": "m"}, 0.25)])
COUNTERS = (
    [("edgefleet_device_check_ins_total", {}, 10),
     ("edgefleet_enrollments_total", {"result": "ok"}, 1),
     ("edgefleet_artifact_bytes_served_total", {"kind": "full"}, 4000000),
     ("edgefleet_artifact_bytes_served_total", {"kind": "patch"}, 40000),
     ("edgefleet_patch_bytes_saved_total", {}, 3960000),
     ("edgefleet_patches_computed_total", {"result": "ready"}, 1),
     ("edgefleet_telemetry_windows_total", {"result": "stored"}, 10),
     ("edgefleet_telemetry_windows_dropped_total", {"reason": "outbox_full"}, 1),
     ("edgefleet_rollout_gate_evaluations_total",
      {"gate": "GATE_LATENCY_P99_RATIO", "result": "GATE_OUTCOME_PASS"}, 1),
     ("edgefleet_update_events_total",
      {"kind": "UPDATE_EVENT_KIND_FAILED", "reason": "FAILURE_REASON_DOWNLOAD"}, 1),
     ("edgefleet_update_events_total",
      {"kind": "UPDATE_EVENT_KIND_PATCH_REJECTED", "reason": "FAILURE_REASON_PATCH"}, 1)]
    + [("edgefleet_inference_requests_total", m, 100) for m in MODEL_SERIES]
    + [("edgefleet_inference_errors_total", {**m, "reason": "invalid_input"}, 1)
       for m in MODEL_SERIES])
HISTOGRAMS = (
    [("edgefleet_inference_latency_seconds", m, {0.005: 50, 0.01: 90, 0.05: 99})
     for m in MODEL_SERIES]
    + [("edgefleet_patch_compute_seconds", {}, {0.1: 1, 1: 2})])


def exposition(scrape):
    """The stand-in's /metrics text at its scrape-th scrape."""
    def series(name, labels, value):
        text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        return f"{name}{{{text}}} {value}\n"
    out = [series(n, labels, v) for n, labels, v in GAUGES]
    out += [series(n, labels, v * scrape) for n, labels, v in COUNTERS]
    for name, labels, buckets in HISTOGRAMS:
        total = max(buckets.values()) + 1
        for le, count in sorted(buckets.items()):
            out.append(series(name + "_bucket", {**labels, "le": le}, count * scrape))
        out.append(series(name + "_bucket", {**labels, "le": "+Inf"}, total * scrape))
        out.append(series(name + "_count", labels, total * scrape))
        out.append(series(name + "_sum", labels, 0.01 * total * scrape))
    return "".join(out)


class StandIn(http.server.ThreadingHTTPServer):
    """Serves exposition() on 127.0.0.1 (a free port) from a thread."""

    def __init__(self):
        self.scrapes = 0
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                stand_in.scrapes += 1
                body = exposition(stand_in.scrapes).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.shutdown()
        self.server_close()


# The data check's variable values: series the stand-in exports.
DATA_VALUES = {"model": "m", "version": "v2", "old": "v1", "new": "v2", "hw": "a",
               "feature": "0"}


def die_with_parent():
    """Run in the child before exec: SIGKILL when this test dies, even by SIGKILL (a ctest
    timeout), so that no Prometheus outlives it."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=10):
    """(HTTP status, decoded JSON body or text)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode("utf-8", "replace")


def query(base, expr):
    """(HTTP status, body) of an instant query."""
    return get(base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))


def check_data(lint, base, expressions):
    # Rates need two scrapes, the rules read the rates: wait until the last rule group's
    # rate-based series and the latency quantiles exist.
    ready = ("edgefleet:inference_latency_seconds_by_hw:p99_rate5m "
             "and on () edgefleet:telemetry_windows_dropped:rate5m "
             "and on () edgefleet:drift_psi:max")
    deadline = time.monotonic() + 60
    while not (query(base, ready)[1].get("data", {}).get("result")):
        if time.monotonic() > deadline:
            raise RuntimeError("no recording rule series within 60 s of scraping the stand-in")
        time.sleep(0.5)  # polling for Prometheus' scrapes and rule evaluations
    empty = 0
    for where, expr, variables in expressions:
        with_data = substitute(expr, variables, DATA_VALUES)
        status, body = query(base, with_data)
        if status != 200 or not isinstance(body, dict) or body.get("status") != "success":
            empty += 1
            error = body.get("error") if isinstance(body, dict) else body
            lint.error(where, f"Prometheus could not run the query on the stand-in's series "
                       f"(HTTP {status}: {error}): {with_data}")
        elif not body.get("data", {}).get("result"):
            empty += 1
            lint.error(where, f"returns no data from the stand-in's series: {with_data}")
    print(f"{len(expressions) - empty} of {len(expressions)} expressions returned data")


def check_promql(lint, src, prometheus, expressions, data):
    """Every expression is valid PromQL; with data, every one also returns series once
    Prometheus has scraped the stand-in a few times and evaluated the recording rules."""
    rules = sorted(glob.glob(os.path.join(src, "deploy/prometheus/rules/*.yml")))
    tmp = tempfile.mkdtemp(prefix="grafana-lint-")
    process = None
    stand_in = StandIn() if data else None
    log = open(os.path.join(tmp, "prometheus.log"), "w+", encoding="utf-8")
    try:
        config = os.path.join(tmp, "prometheus.yml")
        with open(config, "w", encoding="utf-8") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n")
            f.writelines(f"  - {json.dumps(path)}\n" for path in rules)
            if stand_in:
                f.write("scrape_configs:\n  - job_name: edgefleet-server\n"
                        "    static_configs:\n"
                        f"      - targets: [\"127.0.0.1:{stand_in.server_address[1]}\"]\n")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        process = subprocess.Popen(
            [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp}/data",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {process.returncode}")
            try:
                if get(base + "/-/ready", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("prometheus not ready within 60 s")
            time.sleep(0.2)  # polling for readiness, not ordering
        status, body = get(base + "/api/v1/rules")
        groups = body.get("data", {}).get("groups", []) if isinstance(body, dict) else []
        if status != 200 or not groups:
            raise RuntimeError(f"prometheus loaded no rule groups from {rules}: {status} {body}")
        for where, expr, variables in expressions:
            valid = substitute(expr, variables)
            status, body = query(base, valid)
            if status != 200 or not isinstance(body, dict) or body.get("status") != "success":
                kind = body.get("errorType") if isinstance(body, dict) else ""
                message = body.get("error") if isinstance(body, dict) else body
                lint.error(where, f"Prometheus refused the query (HTTP {status} {kind}: "
                           f"{message}): {valid}")
        if stand_in:
            check_data(lint, base, expressions)
    except (RuntimeError, OSError) as e:
        log.seek(0)
        lint.error(prometheus, f"{e}\n--- prometheus log ---\n{log.read()[-4000:]}")
    finally:
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if stand_in:
            stand_in.stop()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"prometheus answered {len(expressions)} expressions")


def run(src, prometheus, data=True):
    """The problems found in SOURCE_DIR's deploy/grafana/, as a list of messages."""
    grafana = os.path.join(src, "deploy/grafana")
    lint = Lint()
    check_provisioning(lint, grafana)
    paths = sorted(glob.glob(os.path.join(grafana, "dashboards/*.json")))
    if len(paths) < 5:
        lint.error(grafana, f"{len(paths)} dashboards in dashboards/, at least 5 expected")
    uids, expressions = {}, []
    for path in paths:
        check_dashboard(lint, path, uids, expressions)
    known = known_metric_names(src)
    for where, expr, _ in expressions:
        for name in METRIC_NAME.findall(strip_strings(expr)):
            if name not in known:
                lint.error(where, f"metric {name} is neither a recording rule nor exported by "
                           "the server")
    check_promql(lint, src, prometheus, expressions, data)
    print(f"{len(paths)} dashboards ({', '.join(sorted(uids))}), {len(expressions)} expressions, "
          f"{len(lint.errors)} problems")
    return lint.errors


def edit_json(name, change):
    def mutate(grafana):
        path = os.path.join(grafana, "dashboards", name)
        with open(path, encoding="utf-8") as f:
            board = json.load(f)
        change(board)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(board, f)
    return mutate


def edit_text(relative, old, new):
    def mutate(grafana):
        path = os.path.join(grafana, relative)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        assert old in text, f"{old!r} not in {path}"
        with open(path, "w", encoding="utf-8") as f:
            f.write(text.replace(old, new, 1))
    return mutate


def first_panel(board):
    return next(p for p in all_panels(board["panels"]) if p.get("targets"))


def set_expr(expr):
    return lambda board: first_panel(board)["targets"][0].update(expr=expr)


# (what is broken, how, a piece of the message the lint must give[, run the data check])
MUTATIONS = [
    ("JSON that does not parse", edit_text("dashboards/fleet.json", "{", "{,"), "does not parse"),
    ("__inputs", edit_json("fleet.json", lambda b: b.update(__inputs=[])), "__inputs"),
    ("no uid", edit_json("drift.json", lambda b: b.pop("uid")), "has no uid"),
    ("duplicate uid", edit_json("drift.json", lambda b: b.update(uid="edgefleet-fleet")),
     "is also the uid"),
    ("panel without a unit",
     edit_json("latency.json", lambda b: first_panel(b)["fieldConfig"]["defaults"].pop("unit")),
     "has no unit"),
    ("panel with a fixed datasource",
     edit_json("delivery.json", lambda b: first_panel(b).update(
         datasource={"type": "prometheus", "uid": "edgefleet-prometheus"})),
     "does not use the datasource variable"),
    ("no datasource variable",
     edit_json("rollouts.json", lambda b: b["templating"]["list"].pop(0)),
     "no datasource variable"),
    ("rate over a raw counter with a fixed window",
     edit_json("delivery.json", set_expr(
         "sum(rate(edgefleet_artifact_bytes_served_total[5m]))")),
     "instead of $__rate_interval"),
    ("increase over a histogram's buckets with $__interval",
     edit_json("delivery.json", set_expr(
         "sum by (le) (increase(edgefleet_patch_compute_seconds_bucket[$__interval]))")),
     "instead of $__rate_interval"),
    ("invalid PromQL", edit_json("fleet.json", set_expr("sum by (status (edgefleet:devices:max)")),
     "bad_data"),
    ("a metric that does not exist", edit_json("fleet.json", set_expr("edgefleet:devices:sum")),
     "metric edgefleet:devices:sum"),
    ("an undefined variable",
     edit_json("fleet.json", set_expr('edgefleet:devices:max{x="$nope"} > $nope')),
     "Prometheus refused"),
    ("provisioned datasource without the fixed uid",
     edit_text("provisioning/datasources/edgefleet.yml", "uid: edgefleet-prometheus", "uid: other"),
     "fixed uid"),
    ("dashboard provider that allows UI updates",
     edit_text("provisioning/dashboards/edgefleet.yml", "allowUiUpdates: false",
               "allowUiUpdates: true"),
     "allowUiUpdates: false"),
    ("a label value the server never exports",
     edit_json("fleet.json", set_expr('edgefleet:devices:max{status="enabled"}')),
     "returns no data", True),
    ("a join that matches nothing",
     edit_json("rollouts.json", set_expr(
         'edgefleet:devices:max{status="active"} and on (status) edgefleet:rollouts:max')),
     "returns no data", True),
    ("a many-to-many join",
     edit_json("rollouts.json", set_expr(
         "edgefleet:rollouts:max / on (model) edgefleet:rollout_targets:max")),
     "could not run the query", True),
]


def self_test(src, prometheus):
    """Breaks a copy of deploy/grafana/ in each way the lint must catch, one at a time."""
    failures = 0
    with tempfile.TemporaryDirectory(prefix="grafana-lint-self-") as tmp:
        shutil.copytree(os.path.join(src, "server"), os.path.join(tmp, "server"))
        shutil.copytree(os.path.join(src, "deploy/prometheus"),
                        os.path.join(tmp, "deploy/prometheus"))
        grafana = os.path.join(tmp, "deploy/grafana")
        for what, mutate, expected, *data in MUTATIONS:
            shutil.rmtree(grafana, ignore_errors=True)
            shutil.copytree(os.path.join(src, "deploy/grafana"), grafana)
            mutate(grafana)
            errors = run(tmp, prometheus, data=bool(data))
            if any(expected in error for error in errors):
                print(f"ok: {what} is caught")
            else:
                failures += 1
                print(f"FAIL: {what} is not caught (expected {expected!r}); the lint said: "
                      f"{errors}", file=sys.stderr)
    return failures


def main():
    args = [a for a in sys.argv[1:] if a != "--self-test"]
    if not args:
        sys.exit(f"usage: {sys.argv[0]} [--self-test] SOURCE_DIR [PROMETHEUS]")
    src = os.path.abspath(args[0])
    prometheus = args[1] if len(args) > 1 else "/usr/bin/prometheus"
    if not shutil.which(prometheus):
        sys.exit(f"{prometheus} not found: install Debian's prometheus package "
                 "(scripts/install-deps.sh)")
    # SIGTERM (or ^C) unwinds through check_promql's finally, which stops Prometheus.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if "--self-test" in sys.argv[1:]:
        return 1 if self_test(src, prometheus) else 0
    errors = run(src, prometheus)
    for error in errors:
        print("FAIL", error, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
