"""Before/after, side by side in one run: the graph, rules and enrich benchmarks on two trees.

usage: python3 bench/compare.py [--rounds N] [--only NAME] [--rules REV] BEFORE [AFTER]

BEFORE and AFTER are git revisions of this repository (AFTER defaults to the working tree).
Each revision is exported (`git archive`) into a temporary directory; the benchmarks of each
tree run against that tree's own code, alternating before/after `--rounds` times so load
from other processes on this machine hits both sides alike. Printed: the best figure of
each side and the ratio after/before, oriented so that > 1.00 means faster.

`--rules REV` runs bench_rules on both sides with the rule pack of REV (by default each
tree's own `rules/`), so a pack that grew between the revisions does not pass for a slower
engine. The load average is printed before and after the run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable

# (bench script, its arguments, parser of its output -> {metric: (value, higher_is_better)})
Metrics = dict[str, tuple[float, bool]]


def _rules(out: str) -> Metrics:
    found = re.findall(r"^(graph only|graph \+ rules|rules only \(match\))\s+([\d,]+)", out,
                       re.MULTILINE)
    return {f"rules: {name} (events/s)": (float(v.replace(",", "")), True)
            for name, v in found}


def _graph(out: str) -> Metrics:
    res: Metrics = {}
    for label, key in (("ingest, graph only", "events_per_cpu_s"),
                       ("ingest, graph+store", "events_per_cpu_s")):
        m = re.search(rf"^{re.escape(label)}\s*: (\{{.*\}})", out, re.MULTILINE)
        if m:
            res[f"graph: {label} (events/cpu-s)"] = (json.loads(m.group(1))[key], True)
    m = re.search(r"^trace lookup @\s*\d+: (\{.*\})", out, re.MULTILINE)
    if m:
        res["graph: trace lookup p50 (ms)"] = (json.loads(m.group(1))["trace_ms_p50"], False)
    return res


def _enrich(out: str) -> Metrics:
    return {f"enrich: {kind} node (us)": (float(v), False)
            for kind, v in re.findall(r"^(fork-like|exec-like) node: median (\d+) us", out,
                                      re.MULTILINE)}


BENCHES: list[tuple[str, list[str], Callable[[str], Metrics]]] = [
    ("bench_rules.py", ["--events", "100000", "--repeat", "2"], _rules),
    ("bench_graph.py", ["--events", "50000", "--nodes", "20000", "--live", "5000"], _graph),
    ("bench_enrich.py", ["--rounds", "5"], _enrich),
]


def export(rev: str | None, into: Path) -> Path:
    """The tree of `rev` (None: the working tree itself)."""
    if rev is None:
        return REPO
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "spyderd", "bench",
                              "rules"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def loadavg() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def run(tree: Path, script: str, args: list[str]) -> str:
    r = subprocess.run([PY, str(tree / "bench" / script), *args], check=False, cwd=tree,
                       env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
                       capture_output=True, text=True, timeout=580)
    if r.returncode != 0:
        raise SystemExit(f"{script} in {tree} failed:\n{r.stdout}\n{r.stderr}")
    return r.stdout


def best(samples: list[Metrics]) -> dict[str, tuple[float, bool]]:
    out: dict[str, tuple[float, bool]] = {}
    for sample in samples:
        for k, (v, up) in sample.items():
            if k not in out or (v > out[k][0] if up else v < out[k][0]):
                out[k] = (v, up)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("before")
    ap.add_argument("after", nargs="?")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--only", default="", help="run only benchmarks whose name contains this")
    ap.add_argument("--rules", metavar="REV", help="rule pack of this revision for both sides")
    args = ap.parse_args()
    benches = [b for b in BENCHES if args.only in b[0]]
    load0 = loadavg()
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b, \
            tempfile.TemporaryDirectory() as r:
        trees = {"before": export(args.before, Path(a)), "after": export(args.after, Path(b))}
        pack = ["--rules", str(export(args.rules, Path(r)) / "rules")] if args.rules else []
        samples: dict[str, list[Metrics]] = {"before": [], "after": []}
        for _ in range(args.rounds):
            for script, bench_args, parse in benches:
                extra = pack if script == "bench_rules.py" else []
                for side, tree in trees.items():
                    samples[side].append(parse(run(tree, script, bench_args + extra)))
    before, after = best(samples["before"]), best(samples["after"])
    print(f"before: {args.before}   after: {args.after or 'working tree'}   "
          f"(best of {args.rounds}; ratio > 1.00 = after is faster)")
    print(f"rules: {'pack of ' + args.rules if args.rules else 'each tree its own'}; "
          f"load average {load0} at the start, {loadavg()} at the end")
    print(f"{'metric':44} {'before':>12} {'after':>12} {'ratio':>7}")
    for k, (v0, up) in before.items():
        v1 = after.get(k, (float("nan"), up))[0]
        ratio = (v1 / v0 if up else v0 / v1) if v0 and v1 else float("nan")
        print(f"{k:44} {v0:12,.2f} {v1:12,.2f} {ratio:7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
