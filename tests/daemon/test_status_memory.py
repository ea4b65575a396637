"""`spyderctl status -o json` shows what holds the daemon's memory next to its bounds."""

from __future__ import annotations

from types import SimpleNamespace

from spyderd.daemon.status import memory_status
from spyderd.graph import Graph
from spyderd.model import ForkEvent


def test_memory_status_counts_graph_nodes_and_live_processes():
    g = Graph(None, "b00t", boot_wall_ns=0, max_recent=1234)
    for pid in (10, 11, 12):
        g.apply(ForkEvent(time=pid, pid=pid, ppid=1, child_start=pid))
    out = memory_status(SimpleNamespace(graph=g, capture=None))
    assert out == {"backlog_bytes": 0, "graph_nodes": 3, "max_memory_nodes": 1234,
                   "live_processes": 3}
