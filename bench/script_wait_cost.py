"""Kernel time the files probe spends on an interpreter that runs a script by name
(`python3 x.py`, `bash x.sh`): the argv walk at exec (`files_on_exec`) and the name check on
each read-only open until the script is opened (`sys_exit_openat`), against the same
interpreter reading the same code from stdin (`python3 - < x.py`: no script operand, nothing
armed), side by side in one run.

Run times come from `kernel.bpf_stats_enabled` (run_time_ns / run_cnt of this capture's
programs), which other load on the machine distorts less than wall-clock ratios.

    PYTHONPATH=. /opt/spyderd/venv/bin/python bench/script_wait_cost.py --runs 40 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

from spyderd.capture.config import CaptureConfig
from spyderd.capture.loader import Capture

PROGS = ("sc__sys_exit_openat", "files_on_exec")
CASES = {
    "python3 x.py (armed)": (["python3", "{script}.py"], None),
    "python3 - < x.py": (["python3", "-"], "{script}.py"),
    "bash x.sh (armed)": (["bash", "{script}.sh"], None),
    "bash < x.sh": (["bash"], "{script}.sh"),
}


def prog_stats() -> dict[int, tuple[str, int, int]]:
    out = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True,
                         check=True).stdout
    return {p["id"]: (p["name"], p.get("run_time_ns", 0), p.get("run_cnt", 0))
            for p in json.loads(out) if p.get("name") in PROGS}


def run_case(cmd: list[str], stdin: str | None, runs: int) -> None:
    for _ in range(runs):
        with open(stdin or "/dev/null", "rb") as f:
            subprocess.run(cmd, stdin=f, stdout=subprocess.DEVNULL, check=True)


def measure(cap_ids: set[int], cmd: list[str], stdin: str | None, runs: int) -> dict[str, float]:
    """ns per run of each program, and its runs per interpreter start, for one case."""
    s0 = prog_stats()
    run_case(cmd, stdin, runs)
    s1 = prog_stats()
    out: dict[str, float] = {}
    for name in PROGS:
        ids = [i for i in cap_ids if s1[i][0] == name]
        ns = sum(s1[i][1] - s0[i][1] for i in ids)
        cnt = sum(s1[i][2] - s0[i][2] for i in ids)
        out[name] = ns / max(cnt, 1)
        out[name + " runs"] = cnt / runs
        out[name + " us per start"] = ns / runs / 1000
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    stats_file = Path("/proc/sys/kernel/bpf_stats_enabled")
    was = stats_file.read_text().strip()
    stats_file.write_text("1")
    before = set(prog_stats())
    cap = Capture(CaptureConfig(ring_buffer_pages=256, self_test=False,
                                disable=("process", "network", "creds", "kernel")))
    cap.start()
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in CASES}
    try:
        mine = set(prog_stats()) - before
        with tempfile.TemporaryDirectory(dir="/var/tmp") as d:
            script = f"{d}/job"
            Path(script + ".py").write_text("x = 1\n")
            Path(script + ".sh").write_text("x=1\n")
            for _ in range(args.repeat):
                for name, (cmd, stdin) in CASES.items():
                    argv = [a.format(script=script) for a in cmd]
                    rows[name].append(measure(mine, argv, stdin and stdin.format(script=script),
                                              args.runs))  # fmt: skip
    finally:
        cap.close()
        stats_file.write_text(was)
    print("| case | openat exit: ns per run | runs per start | us per start "
          "| exec program: ns per run |")
    print("|---|---|---|---|---|")
    for name, vals in rows.items():
        best = min(vals, key=lambda v: v["sc__sys_exit_openat us per start"])
        print(f"| {name} | {best['sc__sys_exit_openat']:.0f} "
              f"| {best['sc__sys_exit_openat runs']:.0f} "
              f"| {best['sc__sys_exit_openat us per start']:.1f} "
              f"| {min(v['files_on_exec'] for v in vals):.0f} |")


if __name__ == "__main__":
    main()
