"""Crash-test writer: feeds the graph and commits batches until it is killed.

usage: crash_writer.py STATE_DIR SEED
Prints "batch N" after each commit so the test can kill it mid-stream.
"""

import sys

from spyderd.graph import Graph, Store
from spyderd.graph.retention import Policy, prune
from spyderd.graph.synthetic import roots, stream

state, seed = sys.argv[1], int(sys.argv[2])
store = Store(state, map_size=1 << 20)  # tiny map: growth happens under the knife too
g = Graph(store, "crash", boot_wall_ns=0)
g.load_snapshot(roots())
g.flush()
t0 = (seed + 1) * 100 * 10**9
for i, ev in enumerate(stream(10**7, seed=seed, t0=t0)):
    g.apply(ev)
    if i % 300 == 299:
        g.flush()
        print(f"batch {i // 300}", flush=True)
    if i % 3000 == 2999:
        prune(store, Policy(max_age_s=30, chunk=200), now_ns=ev.time)
