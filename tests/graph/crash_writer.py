"""Crash-test writer: feeds the graph and commits batches until it is killed.

usage: crash_writer.py STATE_DIR SEED [--no-prune]
Prints "batch N" after each commit so the test can kill it mid-stream. `write` is also
called in-process by the tests to build the reference store a killed run is compared with.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from spyderd.graph import Graph, Store
from spyderd.graph.retention import Policy, prune
from spyderd.graph.synthetic import roots, stream
from spyderd.model import Finding

BATCH = 300


def run_t0(seed: int) -> int:
    return (seed + 1) * 100 * 10**9


def finding(seed: int, batch: int, t: int, pid_node: str) -> Finding:
    """One deterministic finding per batch."""
    return Finding(id=f"fnd-crash-{seed}-{batch}", rule="crash test", severity="low",
                   priority=5, message=f"batch {batch} of run {seed}", time=t,
                   process_id=pid_node, trace_id=f"trc-crash-{seed}", root_id="",
                   event={"kind": "exec", "time": t})


def write(store: Store, seed: int, batches: int | None, *, pruning: bool,
          committed: Callable[[int], None] = lambda n: None) -> None:
    """Commit `batches` batches of the run's deterministic stream (None: until killed)."""
    g = Graph(store, "crash", boot_wall_ns=0, max_recent=10**7)
    g.load_snapshot(roots())
    g.flush()
    limit = 10**7 if batches is None else batches * BATCH
    for i, ev in enumerate(stream(limit, seed=seed, t0=run_t0(seed))):
        node = g.apply(ev)
        if i % BATCH == BATCH - 1:
            b = i // BATCH
            g.add_finding(finding(seed, b, ev.time, node.id if node else ""), None)
            g.flush()
            committed(b)
        if pruning and i % 3000 == 2999:
            prune(store, Policy(max_age_s=30, chunk=200), now_ns=ev.time)


if __name__ == "__main__":
    state, seed = sys.argv[1], int(sys.argv[2])
    # tiny map: growth happens under the knife too
    write(Store(state, map_size=1 << 20), seed, None, pruning="--no-prune" not in sys.argv,
          committed=lambda b: print(f"batch {b}", flush=True))
