#!/usr/bin/python3
"""Benchmarks edgefleet's delta codecs against Debian's bsdiff, xdelta3 and zstd --patch-from.

For every pair in CORPUS/pairs.csv (written by make_corpus.py) each tool diffs old -> new and
applies the patch back; the apply output must equal new byte for byte. Wall time comes from the
runner's clock, peak RSS from /usr/bin/time -f %M (KiB; it counts memory-mapped file pages the
process touched, so an mmap-ed old model counts in full). Every command has a timeout; a command
past it is killed and reported as "timeout".

Usage:
  /usr/bin/python3 bench/delta/run_bench.py CORPUS [--ctl build/bin/edgefleet-delta]
      [--out bench/delta/results] [--timeout 600] [--tools ef-auto,...,zstd] [--sizes 2,20]

Writes OUT/results.csv and OUT/results.md (tables per pair plus the issue's targets, PASS/FAIL)
and prints the Markdown.
"""

import argparse
import csv
import filecmp
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time

TIME = "/usr/bin/time"

# name -> (diff argv, apply argv, kind). {ctl} {old} {new} {patch} {out} are substituted.
# kind: "ours" (edgefleet codecs), "peer" (counts for "best peer"), "ref" (context only).
TOOLS = {
    "ef-auto": (["{ctl}", "-o", "json", "diff", "{old}", "{new}", "{patch}", "--codec", "auto"],
                ["{ctl}", "apply", "{old}", "{patch}", "{out}"], "ours"),
    "ef-tensor": (["{ctl}", "-o", "json", "diff", "{old}", "{new}", "{patch}", "--codec", "tensor"],
                  ["{ctl}", "apply", "{old}", "{patch}", "{out}"], "ours"),
    "ef-match-zstd": (["{ctl}", "-o", "json", "diff", "{old}", "{new}", "{patch}", "--codec",
                       "match-zstd"],
                      ["{ctl}", "apply", "{old}", "{patch}", "{out}"], "ours"),
    "ef-bsdiff40": (["{ctl}", "-o", "json", "diff", "{old}", "{new}", "{patch}", "--codec",
                     "bsdiff40"],
                    ["{ctl}", "apply", "{old}", "{patch}", "{out}"], "ours"),
    "bsdiff": (["/usr/bin/bsdiff", "{old}", "{new}", "{patch}"],
               ["/usr/bin/bspatch", "{old}", "{out}", "{patch}"], "peer"),
    "xdelta3": (["/usr/bin/xdelta3", "-9", "-e", "-f", "-s", "{old}", "{new}", "{patch}"],
                ["/usr/bin/xdelta3", "-d", "-f", "-s", "{old}", "{patch}", "{out}"], "peer"),
    "zstd": (["/usr/bin/zstd", "-q", "-f", "-19", "--long=31", "--patch-from={old}", "{new}", "-o",
              "{patch}"],
             ["/usr/bin/zstd", "-q", "-f", "-d", "--long=31", "--patch-from={old}", "{patch}", "-o",
              "{out}"], "peer"),
    # What sending the new model whole costs (zstd -19 alone): context, not a delta.
    "full-zstd": (["/usr/bin/zstd", "-q", "-f", "-19", "--long=31", "{new}", "-o", "{patch}"],
                  ["/usr/bin/zstd", "-q", "-f", "-d", "--long=31", "{patch}", "-o", "{out}"], "ref"),
}
DEFAULT_TOOLS = ["full-zstd", "ef-auto", "ef-tensor", "ef-match-zstd", "ef-bsdiff40", "bsdiff",
                 "xdelta3", "zstd"]
PEERS = ["bsdiff", "xdelta3", "zstd"]
# Pairs the "<= 0.7x best peer" target applies to: the fine-tuned and pruned ones.
TUNED_PAIRS = {"finetune-partial", "finetune-full", "prune-30", "int8-finetune", "prune-finetune",
               "fp16-finetune", "prune-rows", "lora-merge", "finetune-1e-2", "lora-r32-half",
               "lora-fp16"}


def run_timed(argv, timeout):
    """Runs argv under /usr/bin/time; returns (status, wall_s, peak_rss_kib, stdout, stderr)."""
    with tempfile.NamedTemporaryFile(mode="r", suffix=".time") as tf:
        start = time.perf_counter()
        proc = subprocess.Popen([TIME, "-f", "%e %M", "-o", tf.name] + argv,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return "timeout", time.perf_counter() - start, None, "", ""
        wall = time.perf_counter() - start
        rss = None
        fields = tf.read().split()
        if len(fields) >= 2 and fields[-1].isdigit():
            rss = int(fields[-1])
        status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
        return status, wall, rss, out.decode(errors="replace"), err.decode(errors="replace")


def bench_tool(tool, ctl, old, new, work, timeout, full_zstd_size):
    diff_t, apply_t, kind = TOOLS[tool]
    patch = os.path.join(work, f"{tool}.patch")
    out = os.path.join(work, f"{tool}.out")
    for p in (patch, out):
        if os.path.exists(p):
            os.remove(p)
    subst = lambda argv: [a.format(ctl=ctl, old=old, new=new, patch=patch, out=out) for a in argv]
    row = {"tool": tool, "kind": kind, "patch_bytes": None, "codec": "", "diff_status": "",
           "diff_s": None, "diff_rss_kib": None, "apply_status": "", "apply_s": None,
           "apply_rss_kib": None, "verified": ""}
    status, wall, rss, stdout, stderr = run_timed(subst(diff_t), timeout)
    row.update(diff_status=status, diff_s=wall, diff_rss_kib=rss)
    if status != "ok":
        if status != "timeout":
            row["diff_status"] = f"{status}: {stderr.strip().splitlines()[-1] if stderr.strip() else ''}"
        return row
    if tool.startswith("ef-"):
        info = json.loads(stdout)
        row["codec"] = info.get("codec", "")
        if info.get("full_is_smaller"):
            # No patch: the device downloads the new model whole, zstd-compressed.
            row.update(codec="full", patch_bytes=full_zstd_size, apply_status="n/a (full file)",
                       verified="n/a")
            return row
    row["patch_bytes"] = os.path.getsize(patch)
    status, wall, rss, _, stderr = run_timed(subst(apply_t), timeout)
    row.update(apply_status=status, apply_s=wall, apply_rss_kib=rss)
    if status == "ok":
        row["verified"] = "yes" if filecmp.cmp(out, new, shallow=False) else "NO (output differs)"
    elif status != "timeout":
        row["apply_status"] = f"{status}: {stderr.strip().splitlines()[-1] if stderr.strip() else ''}"
    for p in (patch, out):
        if os.path.exists(p):
            os.remove(p)
    return row


def fmt_s(v):
    return "-" if v is None else f"{v:.2f}"


def fmt_mib(kib):
    return "-" if kib is None else f"{kib / 1024:.0f}"


def best_peer(rows):
    sizes = [(r["patch_bytes"], r["tool"]) for r in rows
             if r["kind"] == "peer" and r["patch_bytes"] is not None and r["verified"] == "yes"]
    return min(sizes) if sizes else (None, None)


def pair_table(pair, size_mb, new_size, rows):
    best, best_tool = best_peer(rows)
    lines = [f"### {pair}, {size_mb} MB (new file {new_size:,} bytes; best peer: {best_tool or '-'})",
             "",
             "| tool | codec | patch bytes | % of new | vs best peer | diff s | diff peak RSS MiB "
             "| apply s | apply peak RSS MiB | apply output == new |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        size = r["patch_bytes"]
        if r["diff_status"] != "ok":
            size_cell, pct, vs = r["diff_status"], "-", "-"
        else:
            size_cell = f"{size:,}"
            pct = f"{100.0 * size / new_size:.2f}%"
            vs = f"{size / best:.3f}x" if best else "-"
        verified = r["verified"] or r["apply_status"]
        lines.append(f"| {r['tool']} | {r['codec'] or '-'} | {size_cell} | {pct} | {vs} | "
                     f"{fmt_s(r['diff_s'])} | {fmt_mib(r['diff_rss_kib'])} | "
                     f"{fmt_s(r['apply_s'])} | {fmt_mib(r['apply_rss_kib'])} | {verified} |")
    return "\n".join(lines) + "\n"


def check_targets(pair, rows, timeout):
    """[(target, verdict, detail)] for one pair; `ef-auto` is what the targets measure."""
    by = {r["tool"]: r for r in rows}
    auto = by.get("ef-auto")
    out = []
    if auto is None:
        return []
    if auto["diff_status"] != "ok" or auto["verified"] not in ("yes", "n/a"):
        return [("ef-auto works", "FAIL", auto["diff_status"] if auto else "not run")]
    best, best_tool = best_peer(rows)
    size = auto["patch_bytes"]
    if best is None:
        out.append(("auto <= best peer", "n/a", "no peer finished"))
    else:
        out.append(("auto <= best peer", "PASS" if size <= best else "FAIL",
                    f"{size:,} vs {best:,} ({best_tool}) = {size / best:.3f}x"))
        if pair in TUNED_PAIRS:
            out.append(("auto <= 0.7x best peer (fine-tuned/pruned)",
                        "PASS" if size <= 0.7 * best else "FAIL", f"{size / best:.3f}x"))
    bs = by.get("bsdiff")
    if bs is not None:
        if bs["diff_status"] == "timeout":
            ok = auto["diff_s"] <= timeout / 10
            out.append(("auto diff time <= bsdiff/10", "PASS" if ok else "n/a",
                        f"{auto['diff_s']:.2f} s vs bsdiff timeout (> {timeout} s)"))
        elif bs["diff_status"] == "ok":
            out.append(("auto diff time <= bsdiff/10",
                        "PASS" if auto["diff_s"] <= bs["diff_s"] / 10 else "FAIL",
                        f"{auto['diff_s']:.2f} s vs {bs['diff_s']:.2f} s "
                        f"({bs['diff_s'] / max(auto['diff_s'], 1e-9):.1f}x faster)"))
    zs = by.get("zstd")
    if zs is not None and zs["diff_status"] == "ok":
        out.append(("auto diff time <= zstd -19 --patch-from",
                    "PASS" if auto["diff_s"] <= zs["diff_s"] else "FAIL",
                    f"{auto['diff_s']:.2f} s vs {zs['diff_s']:.2f} s"))
    if bs is not None and bs["apply_rss_kib"] and auto["apply_rss_kib"]:
        out.append(("auto apply peak RSS <= bspatch/2",
                    "PASS" if auto["apply_rss_kib"] <= bs["apply_rss_kib"] / 2 else "FAIL",
                    f"{fmt_mib(auto['apply_rss_kib'])} MiB vs {fmt_mib(bs['apply_rss_kib'])} MiB"))
    elif auto["verified"] == "n/a":
        out.append(("auto apply peak RSS <= bspatch/2", "n/a", "auto sent the full file"))
    return out


def summary_table(groups):
    """One line per pair: auto against the best peer, and the numbers the targets use."""
    lines = ["| pair | MB | best peer (bytes) | ef-auto codec | ef-auto bytes | auto / best peer "
             "| ef-tensor / best peer | diff s: auto / bsdiff / zstd | apply peak RSS MiB: auto / bspatch |",
             "|---|---:|---|---|---:|---:|---:|---|---|"]
    for (pair, size_mb, _), rows in groups:
        by = {r["tool"]: r for r in rows}
        best, best_tool = best_peer(rows)
        auto, tensor = by.get("ef-auto"), by.get("ef-tensor")
        cell = lambda r, k, f: f(r[k]) if r is not None and r[k] is not None else "-"
        ratio = lambda r: (f"{r['patch_bytes'] / best:.3f}x"
                           if r is not None and r["patch_bytes"] is not None and best else "-")
        times = " / ".join(cell(by.get(t), "diff_s", fmt_s) if by.get(t) is None or
                           by[t]["diff_status"] in ("ok", "") else by[t]["diff_status"]
                           for t in ("ef-auto", "bsdiff", "zstd"))
        rss = " / ".join(cell(by.get(t), "apply_rss_kib", fmt_mib) for t in ("ef-auto", "bsdiff"))
        lines.append(f"| {pair} | {size_mb} | {best_tool or '-'} ({'-' if best is None else f'{best:,}'}) | "
                     f"{auto['codec'] if auto else '-'} | {cell(auto, 'patch_bytes', lambda v: f'{v:,}')} | "
                     f"{ratio(auto)} | {ratio(tensor)} | {times} | {rss} |")
    return "\n".join(lines) + "\n"


def load_csv(path):
    """Rows of a results.csv back into the runner's types, grouped per pair."""
    groups, order = {}, []
    with open(path) as f:
        for r in csv.DictReader(f):
            for k in ("patch_bytes", "diff_rss_kib", "apply_rss_kib", "new_bytes"):
                r[k] = int(r[k]) if r.get(k) else None
            for k in ("diff_s", "apply_s"):
                r[k] = float(r[k]) if r.get(k) else None
            key = (r["pair"], r["size_mb"], r["new_bytes"])
            if key not in groups:
                groups[key] = []
                order.append(key)
            groups[key].append(r)
    return [(k, groups[k]) for k in order]


def render(groups, timeout, header):
    md = [header, "### Summary\n", summary_table(groups)]
    summary = []
    for (pair, size_mb, new_size), rows in groups:
        md.append(pair_table(pair, size_mb, new_size, rows))
        for target, verdict, detail in check_targets(pair, rows, timeout):
            summary.append((pair, size_mb, target, verdict, detail))
    md.append("### Targets (measured with ef-auto)\n")
    md.append("| pair | MB | target | result | detail |\n|---|---:|---|---|---|")
    for pair, size, target, verdict, detail in summary:
        md.append(f"| {pair} | {size} | {target} | **{verdict}** | {detail} |")
    counts = {v: sum(1 for s in summary if s[3] == v) for v in ("PASS", "FAIL", "n/a")}
    md.append(f"\nTotal: {counts['PASS']} PASS, {counts['FAIL']} FAIL, {counts['n/a']} n/a.\n")
    return "\n".join(md)


def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({model}), {platform.system()} {platform.release()}"


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("corpus")
    p.add_argument("--ctl", default="build/bin/edgefleet-delta",
                   help="edgefleet-delta (same commands as `edgefleetctl delta`, linking only the engine)")
    p.add_argument("--out", default="bench/delta/results")
    p.add_argument("--work", default=None, help="scratch dir for patches (default: a temp dir)")
    p.add_argument("--timeout", type=int, default=600, help="seconds per command")
    p.add_argument("--tools", default=",".join(DEFAULT_TOOLS))
    p.add_argument("--sizes", default=None, help="only these sizes (MB), comma separated")
    p.add_argument("--pairs", default=None, help="only these pairs, comma separated")
    p.add_argument("--summarize", metavar="CSV",
                   help="only re-render the Markdown of an earlier results.csv (CORPUS unused)")
    args = p.parse_args()
    if args.summarize:
        print(render(load_csv(args.summarize), args.timeout,
                     f"Timeout per command: {args.timeout} s.\n"))
        return

    tools = [t for t in args.tools.split(",") if t]
    for t in tools:
        if t not in TOOLS:
            sys.exit(f"unknown tool {t!r}; known: {', '.join(TOOLS)}")
    if "full-zstd" in tools:  # measured first: ef-auto's "send the full file" costs this much
        tools.remove("full-zstd")
        tools.insert(0, "full-zstd")
    ctl = os.path.abspath(args.ctl)
    if any(t.startswith("ef-") for t in tools) and not os.access(ctl, os.X_OK):
        sys.exit(f"{ctl} is not executable; build edgefleet-delta first or pass --ctl")
    for exe in [TIME] + [TOOLS[t][0][0] for t in tools if not t.startswith("ef-")]:
        if not os.access(exe, os.X_OK):
            sys.exit(f"{exe} is missing (apt-get install time bsdiff xdelta3 zstd)")

    with open(os.path.join(args.corpus, "pairs.csv")) as f:
        pairs = list(csv.DictReader(f))
    if args.sizes:
        pairs = [r for r in pairs if r["size_mb"] in args.sizes.split(",")]
    if args.pairs:
        pairs = [r for r in pairs if r["pair"] in args.pairs.split(",")]

    os.makedirs(args.out, exist_ok=True)
    work = args.work or tempfile.mkdtemp(prefix="edgefleet-delta-bench-")
    os.makedirs(work, exist_ok=True)
    csv_rows, groups = [], []
    started = time.time()
    for pr in pairs:
        old = os.path.join(args.corpus, pr["old"])
        new = os.path.join(args.corpus, pr["new"])
        new_size = os.path.getsize(new)
        rows, full_zstd = [], None
        for tool in tools:
            print(f"[{time.time() - started:7.1f}s] {pr['size_mb']} MB {pr['pair']}: {tool}",
                  file=sys.stderr, flush=True)
            r = bench_tool(tool, ctl, old, new, work, args.timeout, full_zstd)
            if tool == "full-zstd":
                full_zstd = r["patch_bytes"]
            rows.append(r)
            csv_rows.append(dict(pair=pr["pair"], size_mb=pr["size_mb"], old_bytes=os.path.getsize(old),
                                 new_bytes=new_size, **r))
        groups.append(((pr["pair"], pr["size_mb"], new_size), rows))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    text = render(groups, args.timeout,
                  f"Machine: {machine()}. Timeout per command: {args.timeout} s. "
                  f"{time.time() - started:.0f} s of benchmarking.\n")
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.out, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(csv_rows[0].keys()) if csv_rows else ["pair"])
        w.writeheader()
        w.writerows(csv_rows)
    print(text)


if __name__ == "__main__":
    main()
