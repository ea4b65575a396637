"""Replay throughput and per-event profile of graph -> enrich -> rules -> store (issue 17).

    PYTHONPATH=. python bench/bench_pipeline.py [--events N] [--old DIR] [--profile]

The stream is bench_rules.py's busy server (process trees, connections, accepts, file
writes, credential changes, a few attacks), written once as a recording (the format of
`spyderctl record`) and replayed by each tree in its own child process: its own
`read_recording`, `Graph` with a real LMDB `Store` in a temporary directory, the replay
enricher (context from the recorded snapshot, inherited by children as the live enricher
finds it), and its own full default rule pack (`rules/`). Batches are committed every
5,000 events. Passes, each on a fresh graph and store, CPU time of the child (one core):

  graph            Graph.apply alone (no store, no rules)
  graph+store      + LMDB commits
  graph+rules      + RuleSet.match (no store)
  full             graph + store + rules: the replay throughput

`--profile` adds a cProfile of the full pass: microseconds per event under each stage's
entry point (cumulative) and the functions with the most own time. `--old DIR` (a
checkout of an earlier spyderd, e.g. `git worktree add /tmp/old main`) runs every pass for
both trees, alternating, so the ratios come from one run. Decoding is not in the replay
(events are objects already); the daemon profile of bench_store.py covers it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_rules import Workload
from spyderd.model import event_to_dict

PASSES = ("graph", "graph+store", "graph+rules", "full")
# stage entry points in the profile: (label, function name, file suffix)
STAGES = (
    ("graph.apply (incl. enrich)", "apply", "graph/index.py"),
    ("  enrich", "process_attrs", "graph/replay.py"),
    ("rules.match", "match", "rules/ruleset.py"),
    ("graph.flush (store)", "flush", "graph/index.py"),
    ("  store.write_batch", "write_batch", "graph/store.py"),
    ("    block encode", "encode", "graph/codec.py"),
)

CHILD = r"""
import cProfile, gc, json, pstats, sys, tempfile, time
from spyderd.graph import Graph, Store
from spyderd.graph.replay import ReplayEnricher, read_recording
from spyderd.rules import load_rules

rec = read_recording(sys.argv[1])
mode, rules_dir, profile = sys.argv[2], sys.argv[3], sys.argv[4] == "1"
stages = json.loads(sys.argv[5])

def run(with_store, with_rules, prof=None):
    with tempfile.TemporaryDirectory() as d:
        store = Store(d, map_size=1 << 32) if with_store else None
        enr = ReplayEnricher(rec.attrs)
        g = Graph(store, "bench", boot_wall_ns=0, enricher=enr, max_recent=100_000)
        enr.loading = True
        g.load_snapshot(rec.snapshot, listening=rec.listening)
        enr.loading = False
        g.flush()
        match = load_rules([rules_dir]).match if with_rules else None
        matches = 0
        gc.collect()
        c0 = time.process_time()
        if prof is not None:
            prof.enable()
        for i, ev in enumerate(rec.events):
            node = g.apply(ev)
            if match is not None and node is not None:
                matches += len(match(ev, node, g))
            if i % 5000 == 4999:
                g.flush()
        g.flush()
        if prof is not None:
            prof.disable()
        cpu = time.process_time() - c0
        out = {"events_per_cpu_s": int(len(rec.events) / cpu), "matches": matches}
        if store is not None:
            out["bytes_per_event"] = round(store.stats()["used_bytes"] / len(rec.events), 1)
            store.close()
        return out

flags = {"graph": (False, False), "graph+store": (True, False),
         "graph+rules": (False, True), "full": (True, True)}[mode]
prof = cProfile.Profile() if profile else None
out = run(*flags, prof=prof)
if prof is not None:
    st = pstats.Stats(prof)
    n = len(rec.events)
    cum = {}
    for (fname, _line, func), (_cc, _nc, tt, ct, _callers) in st.stats.items():
        for label, name, suffix in stages:
            if func == name and fname.endswith(suffix):
                cum[label] = cum.get(label, 0) + ct
    out["stages_us"] = {k: round(v / n * 1e6, 2) for k, v in cum.items()}
    own = sorted(st.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:18]
    out["top_own_us"] = [[f"{f.rsplit('/spyderd/', 1)[-1]}:{ln}:{fn}", round(v[2] / n * 1e6, 2)]
                         for (f, ln, fn), v in own]
    out["profiled_total_us"] = round(sum(v[2] for v in st.stats.values()) / n * 1e6, 1)
print(json.dumps(out))
"""


def write_recording(path: Path, events: int, seed: int) -> None:
    w = Workload(seed)
    with path.open("w") as f:
        f.write(json.dumps({"kind": "recording", "boot": "bench", "boot_wall_ns": 0}) + "\n")
        for p in w.procs:
            line = {"kind": "snapshot", "pid": p.pid, "ppid": p.ppid, "start_ns": p.start_ns,
                    "comm": p.comm, "exe": p.exe, "args": p.args, "uid": p.uid}
            if p.pid in w.listening:
                line["listen_ports"] = w.listening[p.pid]
            f.write(json.dumps(line) + "\n")
        for ev in w.events(events):
            f.write(json.dumps(event_to_dict(ev)) + "\n")


def child(tree: Path, recording: Path, mode: str, profile: bool) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(recording), mode, str(tree / "rules"),
         "1" if profile else "0", json.dumps(STAGES)],
        capture_output=True, text=True, cwd=str(tree),
        env=dict(os.environ, PYTHONPATH=str(tree)), check=False)
    if out.returncode != 0:
        raise SystemExit(f"{tree} {mode}:\n{out.stderr}")
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--old", type=Path, help="an older spyderd checkout to compare with")
    ap.add_argument("--repeat", type=int, default=1, help="best of N per pass")
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()
    trees = [("this", REPO)] + ([("old", a.old.resolve())] if a.old else [])
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as d:
        rec = Path(d) / "recording.jsonl"
        write_recording(rec, a.events, a.seed)
        results: dict[str, dict[str, dict]] = {label: {} for label, _ in trees}
        for mode in PASSES:
            for _ in range(a.repeat):
                for label, tree in trees:  # alternating: load changes hit both alike
                    r = child(tree, rec, mode, False)
                    best = results[label].get(mode)
                    if best is None or r["events_per_cpu_s"] > best["events_per_cpu_s"]:
                        results[label][mode] = r
        print(f"{a.events} events, events per CPU-second (best of {a.repeat}):")
        print(f"{'pass':14}" + "".join(f"{label:>14}" for label, _ in trees)
              + ("     this/old" if a.old else ""))
        for mode in PASSES:
            row = [results[label][mode]["events_per_cpu_s"] for label, _ in trees]
            ratio = f"{row[0] / row[1]:>13.2f}" if a.old else ""
            print(f"{mode:14}" + "".join(f"{v:>14,}" for v in row) + ratio)
        for label, _ in trees:
            full, graph = results[label]["full"], results[label]["graph+store"]
            rules_rate = 1 / max(1 / full["events_per_cpu_s"] - 1 / graph["events_per_cpu_s"],
                                 1e-12)
            print(f"{label}: rules alone (full minus graph+store) {rules_rate:,.0f} events/s; "
                  f"matches {full['matches']}; store {full.get('bytes_per_event')} B/event")
        if a.profile:
            for label, tree in trees:
                print(f"profile, {label} tree:", json.dumps(child(tree, rec, "full", True)))


if __name__ == "__main__":
    main()
