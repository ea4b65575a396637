"""A trace view's store reads are bounded by its node cap, whatever the process did."""

from __future__ import annotations

from spyderd.capture.snapshot import ProcInfo
from spyderd.graph import Graph, Store
from spyderd.model import ConnectEvent, ExecEvent
from spyderd.traces import build_trace
from spyderd.traces.build import MAX_TRACE_NODES

S = 1_000_000_000


class CountingStore(Store):
    """The real LMDB store, counting the reads a trace view makes."""

    reads = 0

    def node(self, node_id):
        self.reads += 1
        return super().node(node_id)

    def edges(self, node_id, direction="out"):
        self.reads += 1
        return super().edges(node_id, direction)


def test_view_of_a_process_with_many_connections_stops_reading_when_full(tmp_path):
    store = CountingStore(tmp_path)
    g = Graph(store, "b00t", boot_wall_ns=1_700_000_000 * S)
    g.load_snapshot([ProcInfo(pid=1, ppid=0, start_ns=0, comm="init", exe="/sbin/init",
                              args=["/sbin/init"])])
    runner = g.apply(ExecEvent(time=S, ktime=S, pid=50, ppid=1, filename="/usr/bin/python3",
                               args=["python3", "runner"], start=S))
    n = 3 * MAX_TRACE_NODES
    for i in range(n):
        t = 2 * S + i
        g.apply(ConnectEvent(time=t, ktime=t, pid=50, family=2, local_ip="127.0.0.1",
                             local_port=10000 + i % 50000, remote_ip="10.0.0.1",
                             remote_port=443))
        if i % 1000 == 999:
            g.flush()
    g.flush()
    store.reads = 0
    view = build_trace(store, runner.id)
    assert view.truncated and len(view.nodes) == MAX_TRACE_NODES
    # three reads per node in the view (the node, its peer edges, its edges for the view);
    # before, every one of the 6,000 connections cost its reads even after the view was full
    assert store.reads < 3 * MAX_TRACE_NODES + 100, store.reads
