"""Cost of enriching one new process node (the work the graph does per fork/exec).

Runs `Enricher.process_attrs` + `context_nodes` over every live process, as fork-like
nodes (nothing known but pid and start time) and exec-like nodes (the exec event already
carried gid, loginuid and sessionid), and prints the cost of one /proc read next to it:
the enricher is syscall-bound, so that is the number to compare across machines.

    PYTHONPATH=. /opt/spyderd/venv/bin/python bench/bench_enrich.py   (as root)
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from spyderd.enrich import Enricher
from spyderd.model import Node
from spyderd.model.nodes import CLOCK_TICK_NS


def live_processes() -> list[tuple[int, int]]:
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                out.append((int(name), int(f.read().rsplit(")", 1)[1].split()[19])))
        except (OSError, IndexError, ValueError):
            continue
    return out


def nodes(procs: list[tuple[int, int]], exec_like: bool) -> list[Node]:
    out = []
    for pid, ticks in procs:
        attrs: dict = {"start_ns": ticks * CLOCK_TICK_NS, "exe": "/bin/x", "args": ["x"]}
        if exec_like:
            attrs.update(gid=0, loginuid=-1, sessionid=-1)
        out.append(Node(id=f"proc:b:{ticks}:{pid}:{time.monotonic_ns()}", kind="process",
                        pid=pid, attrs=attrs))
    return out


def per_node_us(enr: Enricher, batch: list[Node]) -> float:
    t = time.perf_counter()
    for n in batch:
        enr.process_attrs(n, None)
        enr.context_nodes(n)
    return (time.perf_counter() - t) / len(batch) * 1e6


def proc_read_us(n: int = 2000) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fd = os.open("/proc/self/stat", os.O_RDONLY)
        os.read(fd, 4096)
        os.close(fd)
    return (time.perf_counter() - t) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args()
    procs = live_processes()
    enr = Enricher("bench", "bench")
    per_node_us(enr, nodes(procs, True))  # warm the caches (containers, names, cgroups)
    for label, exec_like in (("fork-like node", False), ("exec-like node", True)):
        xs = [per_node_us(enr, nodes(procs, exec_like)) for _ in range(args.rounds)]
        print(f"{label}: median {statistics.median(xs):.0f} us per process "
              f"({len(procs)} live processes, {args.rounds} rounds)")
    print(f"one /proc open+read+close: {proc_read_us():.1f} us "
          f"(load average {os.getloadavg()[0]:.1f})")
    print(f"enricher status: {enr.status()}")


if __name__ == "__main__":
    main()
