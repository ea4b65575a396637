"""The one ancestry/descendant walk, and the three graph contexts answering alike through it."""

from __future__ import annotations

import pytest

from spyderd.capture.snapshot import ProcInfo
from spyderd.graph import Graph, Store
from spyderd.graph.query import History
from spyderd.model import ExecEvent, ForkEvent, Node
from spyderd.model.walks import MAX_DEPTH, ancestors, descendants
from spyderd.rules import DictContext

S = 1_000_000_000


def chain(n: int) -> dict[str, Node]:
    """p0 <- p1 <- ... <- p(n-1), each started one second after its parent."""
    return {f"p{i}": Node(id=f"p{i}", kind="process", start=i * S,
                          parent=f"p{i - 1}" if i else "") for i in range(n)}


def up(nodes: dict[str, Node], start: str, **kw) -> list[str]:
    return [n.id for n in ancestors(lambda n: nodes.get(n.parent), nodes[start], **kw)]


def test_depth_none_n_and_zero():
    nodes = chain(100)
    assert len(up(nodes, "p99")) == MAX_DEPTH
    assert up(nodes, "p5", depth=2) == ["p4", "p3"]
    assert up(nodes, "p5", depth=0) == []
    assert len(up(nodes, "p99", depth=500)) == MAX_DEPTH


def test_stop_and_cycle():
    nodes = chain(6)
    assert up(nodes, "p5", stop="p3") == ["p4", "p3"]
    assert up(nodes, "p5", stop="p5") == []
    nodes["p0"].parent = "p4"  # corrupt: a loop p4 -> p3 -> ... -> p0 -> p4
    assert up(nodes, "p4") == ["p3", "p2", "p1", "p0"]


def test_descendants_horizon_and_limit():
    nodes = {"r": Node(id="r", kind="process", start=0)}
    for i in range(10):
        nodes[f"c{i}"] = Node(id=f"c{i}", kind="process", start=i * S, parent="r")

    def kids(n: Node) -> list[Node]:
        return [c for c in nodes.values() if c.parent == n.id]

    assert [n.id for n in descendants(kids, nodes["r"], within_ns=3 * S)] == \
        ["c0", "c1", "c2", "c3"]
    assert len(list(descendants(kids, nodes["r"], limit=4))) == 4


def fork(g: Graph, t: int, pid: int, ppid: int) -> Node:
    return g.apply(ForkEvent(time=t, ktime=t, pid=pid, ppid=ppid, child_start=t, comm="x"))


def exec_(g: Graph, t: int, pid: int, exe: str, start: int) -> Node:
    return g.apply(ExecEvent(time=t, ktime=t, pid=pid, filename=exe, args=[exe], start=start,
                             comm=exe.rsplit("/", 1)[-1]))


@pytest.mark.parametrize("depth", [None, 0, 1, 2, 100])
def test_live_stored_and_dict_contexts_agree(tmp_path, depth):
    store = Store(tmp_path)
    g = Graph(store, "b00t", boot_wall_ns=1_700_000_000 * S)
    g.load_snapshot([ProcInfo(pid=1, ppid=0, start_ns=0, comm="init", exe="/sbin/init",
                              args=["/sbin/init"])])
    fork(g, 1 * S, 10, 1)
    exec_(g, 2 * S, 10, "/bin/sh", start=1 * S)
    fork(g, 3 * S, 11, 10)
    leaf = exec_(g, 4 * S, 11, "/bin/nc", start=3 * S)
    g.flush()
    top = g.live[1]
    contexts = {"live": g, "stored": History(store), "dict": DictContext(dict(g.nodes))}
    ups = {k: [n.id for n in c.ancestors(leaf, depth)] for k, c in contexts.items()}
    downs = {k: [n.id for n in c.descendants(top, None)] for k, c in contexts.items()}
    assert ups["live"] == ups["stored"] == ups["dict"], ups
    assert downs["live"] == downs["stored"] == downs["dict"], downs
    assert len(ups["live"]) == (4 if depth is None or depth > 4 else depth)
