"""Graph + store benchmark (issue 3): ingest rate, bytes per event, trace lookup, RSS.

usage: PYTHONPATH=. python3 bench/bench_graph.py [--events N] [--nodes N] [--live N]
Prints one line per measurement. Everything runs on one core in this process (RSS in a
child process so the numbers don't mix).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spyderd.graph import Graph, Store
from spyderd.graph.synthetic import roots, stream
from spyderd.model import Edge, Node
from spyderd.traces import build_trace

S = 1_000_000_000


def ingest(n: int, with_store: bool) -> dict:
    """Events/s through Graph.apply (+ batched LMDB commits every 5000 events)."""
    events = list(stream(n, seed=3))
    with tempfile.TemporaryDirectory() as d:
        store = Store(d, map_size=1 << 30) if with_store else None
        g = Graph(store, "bench", boot_wall_ns=0)
        g.load_snapshot(roots())
        g.flush()
        c0, w0 = time.process_time(), time.perf_counter()
        for i, ev in enumerate(events):
            g.apply(ev)
            if i % 5000 == 4999:
                g.flush()
        g.flush()
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        out = {"events": n, "cpu_s": round(cpu, 3), "events_per_cpu_s": int(n / cpu),
               "events_per_s": int(n / wall)}
        if store is not None:
            st = store.stats()
            out["store_bytes"] = st["used_bytes"]
            out["bytes_per_event"] = round(st["used_bytes"] / n, 1)
            with store.env.begin() as txn, txn.cursor(db=store.db["evblocks"]) as cur:
                out["event_block_bytes_per_event"] = round(sum(len(v) for _, v in cur) / n, 1)
            store.close()
    return out


def fill_nodes(store: Store, total: int, batch: int = 20000) -> list[str]:
    """Write `total` process nodes in trees (depth ~6) with spawned edges and connections."""
    rng = random.Random(5)
    sample: list[str] = []
    made = 0
    t = 10 * S
    while made < total:
        nodes: list[Node] = []
        edges: list[Edge] = []
        while len(nodes) < batch and made < total:
            parent = None
            for depth in range(6):
                t += 1000
                pid = 1000 + (made % 4_000_000)
                n = Node(id=f"proc:bench:{t}:{pid}", kind="process", start=t, end=t + 500,
                         pid=pid, ppid=parent.pid if parent else 1, uid=33,
                         parent=parent.id if parent else "", via="spawned",
                         attrs={"exe": f"/usr/bin/cmd{depth}", "args": [f"cmd{depth}", "-x"],
                                "start_ns": t, "comm": f"cmd{depth}"})
                nodes.append(n)
                if parent is not None:
                    edges.append(Edge(parent.id, n.id, "spawned", t))
                if depth == 5:
                    c = Node(id=f"conn:bench:{t}:{pid}", kind="connection", start=t, pid=pid,
                             attrs={"direction": "out", "remote_ip": "10.0.0.5",
                                    "remote_port": 443, "process_id": n.id, "result": 0})
                    nodes.append(c)
                    edges.append(Edge(n.id, c.id, "connect", t))
                    if rng.random() < 0.001:
                        sample.append(n.id)
                parent = n
                made += 1
        store.write_batch(nodes, edges, [], [], {})
    return sample


def lookups(total: int, samples: int = 300) -> dict:
    with tempfile.TemporaryDirectory() as d:
        store = Store(d, map_size=1 << 32)
        t0 = time.perf_counter()
        ids = fill_nodes(store, total)
        fill_s = time.perf_counter() - t0
        rng = random.Random(9)
        lat = []
        for nid in rng.sample(ids, min(samples, len(ids))):
            s = time.perf_counter()
            view = build_trace(store, nid)
            lat.append((time.perf_counter() - s) * 1000)
            assert len(view.nodes) >= 6
        lat.sort()
        st = store.stats()
        store.close()
    return {"stored_nodes": st["nodes"], "fill_s": round(fill_s, 1),
            "trace_ms_p50": round(statistics.median(lat), 3),
            "trace_ms_p99": round(lat[int(len(lat) * 0.99) - 1], 3),
            "store_bytes_per_node": round(st["used_bytes"] / st["nodes"], 1)}


def rss_child(live: int) -> None:
    """Run in a child: `live` running processes in the graph, print RSS growth in MB."""
    def rss() -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    with tempfile.TemporaryDirectory() as d:
        store = Store(d, map_size=1 << 31)
        g = Graph(store, "bench", boot_wall_ns=0)
        g.load_snapshot(roots())
        base = rss()
        from spyderd.model import ExecEvent, ForkEvent

        t = 10 * S
        for i in range(live):
            pid = 1000 + i
            t += 1000
            g.apply(ForkEvent(time=t, ktime=t, pid=pid, ppid=100 + i % 8, child_start=t,
                              comm="worker"))
            g.apply(ExecEvent(time=t + 10, ktime=t + 10, pid=pid, filename="/usr/bin/worker",
                              args=["worker", "--id", str(i)], start=t, comm="worker"))
            if i % 5000 == 4999:
                g.flush()
        g.flush()
        g._events.clear()
        print(json.dumps({"live_processes": len(g.live), "nodes_in_memory": len(g.nodes),
                          "rss_mb": round(rss() / 2**20, 1),
                          "rss_growth_mb": round((rss() - base) / 2**20, 1)}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--nodes", type=int, nargs="*", default=[1_000_000])
    ap.add_argument("--live", type=int, default=100_000)
    ap.add_argument("--rss-child", type=int)
    a = ap.parse_args()
    if a.rss_child:
        rss_child(a.rss_child)
        return
    print("ingest, graph only  :", json.dumps(ingest(a.events, False)))
    print("ingest, graph+store :", json.dumps(ingest(a.events, True)))
    for n in a.nodes:
        print(f"trace lookup @{n:>9}:", json.dumps(lookups(n)))
    out = subprocess.run([sys.executable, __file__, "--rss-child", str(a.live)],
                         capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1])))
    print("memory, live procs  :", out.stdout.strip())


if __name__ == "__main__":
    main()
