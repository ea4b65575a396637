"""Kernel time of the files probe's openat exit program per read-only open, with the
capture.watch_reads name check (shipped list) and without it (watch_reads: []), side by side.

Read-only opens of 64 files named f0..f63 (names of 2 and 3 bytes: the 3-byte ones share
their length with "mem" of /proc/*/mem, so they pass the length check and pay the name
read: the costly case). The figure is the program's own run time from
`kernel.bpf_stats_enabled` (run_time_ns / run_cnt of this capture's program), which other
load on the machine does not distort the way wall-clock ratios are distorted.

    PYTHONPATH=. /opt/spyderd/venv/bin/python bench/read_check_cost.py --repeat 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from spyderd.capture.config import CaptureConfig
from spyderd.capture.loader import Capture

PROG = "sc__sys_exit_openat"


def prog_stats() -> dict[int, tuple[int, int]]:
    out = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True,
                         check=True).stdout
    return {p["id"]: (p.get("run_time_ns", 0), p.get("run_cnt", 0))
            for p in json.loads(out) if p.get("name") == PROG}


def one_run(paths: list[str], n: int, reads: list | None) -> tuple[float, float]:
    """(ns per program run, wall us per open+close) for one capture configuration."""
    cfg = CaptureConfig(ring_buffer_pages=256, self_test=False,
                        disable=("process", "network", "creds", "kernel"))
    if reads is not None:
        cfg = dataclasses.replace(cfg, watch_reads=tuple(reads))
    before = set(prog_stats())
    cap = Capture(cfg)
    cap.start()
    try:
        mine = [i for i in prog_stats() if i not in before]
        s0 = prog_stats()
        t = time.perf_counter()
        for i in range(n):
            os.close(os.open(paths[i & 63], os.O_RDONLY))
        wall = (time.perf_counter() - t) / n * 1e6
        s1 = prog_stats()
    finally:
        cap.close()
    ns = sum(s1[i][0] - s0[i][0] for i in mine)
    runs = sum(s1[i][1] - s0[i][1] for i in mine)
    return ns / max(runs, 1), wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    stats_file = Path("/proc/sys/kernel/bpf_stats_enabled")
    was = stats_file.read_text().strip()
    stats_file.write_text("1")
    try:
        with tempfile.TemporaryDirectory(dir="/dev/shm") as d:
            paths = [os.path.join(d, f"f{i}") for i in range(64)]
            for p in paths:
                Path(p).touch()
            rows = {"watch_reads: []": [], "watch_reads: shipped": []}
            for _ in range(args.repeat):
                rows["watch_reads: []"].append(one_run(paths, args.n, []))
                rows["watch_reads: shipped"].append(one_run(paths, args.n, None))
    finally:
        stats_file.write_text(was)
    print("| configuration | ns per openat exit run (min of runs) | wall us per open+close |")
    print("|---|---|---|")
    for name, vals in rows.items():
        print(f"| {name} | {min(v[0] for v in vals):.0f} | {min(v[1] for v in vals):.2f} |")


if __name__ == "__main__":
    main()
