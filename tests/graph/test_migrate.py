"""Schema 2 -> 3: a real version 2 store, written by the previous spyderd's store module
(tests/graph/store_v2_writer.py, verbatim), is migrated and read back in full."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from spyderd.errors import StoreError
from spyderd.graph import Graph, Store
from spyderd.graph.codec import BlockWriter
from spyderd.graph.query import History
from spyderd.graph.retention import check_invariants
from spyderd.graph.store import SCHEMA_VERSION
from spyderd.graph.synthetic import roots, stream
from spyderd.model import Finding, event_record, event_to_dict

HERE = Path(__file__).resolve().parent
S = 1_000_000_000


def _v2_module():
    spec = importlib.util.spec_from_file_location("store_v2_writer",
                                                  HERE / "store_v2_writer.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _as_dict(e):
    """This graph hands (event, process id) pairs; the store of that version took dicts."""
    if type(e) is tuple:
        return event_record(*e)
    return e if type(e) is dict else event_to_dict(e)


def _v2_store(tmp_path) -> dict:
    """Fill a schema 2 store through the graph; return everything it holds, read by v2."""
    v2 = _v2_module()

    class V2Store(v2.Store):
        """The graph of that version handed events over as dicts."""

        def write_batch(self, nodes, edges, events, findings, traces, extra=None):
            super().write_batch(nodes, edges, [_as_dict(e) for e in events], findings,
                                traces)

    old = V2Store(tmp_path)
    g = Graph(old, "b00t", boot_wall_ns=0)
    g.load_snapshot(roots())
    for i, ev in enumerate(stream(4000, seed=11)):
        node = g.apply(ev)
        if i % 700 == 0 and node is not None:
            f = Finding(id=f"fnd-{i}", rule="R", severity="high", priority=3, message="m",
                        time=ev.time, process_id=node.id, trace_id=f"trc-{i % 3}",
                        root_id=node.parent or node.id, event={"kind": ev.kind},
                        chain=[{"id": node.id, "pid": node.pid}], refs=[node.id])
            g.add_finding(f)
        if i % 500 == 499:
            g.flush()
    g.flush()
    assert old.get_meta("schema") == 2
    with old.env.begin() as txn, txn.cursor(db=old.db["nodes"]) as cur:
        ids = [k.decode() for k in cur.iternext(values=False)]
    want = {
        "nodes": {i: old.node(i) for i in ids},
        "edges": {i: sorted(old.edges(i, "out"), key=repr) for i in ids},
        "in": {i: sorted(old.edges(i, "in"), key=repr) for i in ids},
        "events": list(old.events()),
        "findings": [f.to_dict() for f in old.findings()],
        "traces": sorted(old.traces(), key=lambda t: t["id"]),
        "pids": {n.pid: [x.id for x in old.processes_by_pid(n.pid)]
                 for n in list(g.live.values())[:20]},
    }
    old.close()
    return want


def test_v2_store_made_by_the_previous_code_migrates_completely(tmp_path):
    want = _v2_store(tmp_path)
    assert len(want["nodes"]) > 2000 and len(want["events"]) == 4000
    assert len(want["findings"]) == 6 and len(want["traces"]) == 3
    with pytest.raises(StoreError, match="older spyderd"):
        Store(tmp_path, readonly=True)  # readers wait for the daemon to migrate it
    Store(tmp_path).close()  # the daemon opens it: migration
    store = Store(tmp_path, readonly=True)
    assert store.get_meta("schema") == SCHEMA_VERSION == 4
    for nid, node in want["nodes"].items():
        assert store.node(nid) == node, nid
    for nid, edges in want["edges"].items():
        assert sorted(store.edges(nid, "out"), key=repr) == edges, nid
    for nid, edges in want["in"].items():
        assert sorted(store.edges(nid, "in"), key=repr) == edges, nid
    assert list(store.events()) == want["events"]
    assert [f.to_dict() for f in store.findings()] == want["findings"]
    assert sorted(store.traces(), key=lambda t: t["id"]) == want["traces"]
    for pid, images in want["pids"].items():
        assert [n.id for n in store.processes_by_pid(pid)] == images
    assert store.stats()["event_count"] == 4000
    f = want["findings"][-1]
    assert History(store).node(f["process_id"]) is not None
    assert check_invariants(store) == []
    with store.env.begin() as txn:
        names = {k.decode() for k, _ in txn.cursor()}
    assert "nodes" not in names and "edges_out" not in names  # old databases dropped
    store.close()


def test_migrated_store_keeps_taking_batches(tmp_path):
    _v2_store(tmp_path)
    store = Store(tmp_path)
    g = Graph(store, "b00t", boot_wall_ns=0)
    g.load_snapshot(roots())
    for ev in stream(500, seed=12, t0=10**6 * S):
        g.apply(ev)
    g.flush()
    assert store.stats()["event_count"] == 4500
    assert check_invariants(store) == []
    assert json.loads(json.dumps(next(store.events(since_ns=10**6 * S))))["time"] >= 10**6 * S


def _everything(store: Store, ids: list[str]) -> dict:
    return {"nodes": {i: store.node(i) for i in ids},
            "out": {i: store.edges(i, "out") for i in ids},
            "in": {i: store.edges(i, "in") for i in ids},
            "events": list(store.events()),
            "pids": {i: [n.id for n in store.processes_by_pid(int(i.split(":")[3]))]
                     for i in ids[:50] if i.startswith("proc:")}}


def test_schema_3_blocks_are_read_as_they_are_after_the_bump_to_4(tmp_path, monkeypatch):
    """Schema 3 -> 4 rewrites nothing: a store of version 3 blocks (one JSON document per
    graph part, written by the real writer in that layout) reads the same after the
    daemon opens it, and takes version 4 blocks beside the old ones."""
    monkeypatch.setattr(BlockWriter, "encode", lambda self: self.encode_as(3))
    store = Store(tmp_path)
    g = Graph(store, "b00t", boot_wall_ns=0)
    g.load_snapshot(roots())
    for i, ev in enumerate(stream(3000, seed=13)):
        g.apply(ev)
        if i % 600 == 599:
            g.flush()
    g.flush()
    store.put_meta("schema", 3)
    with store.env.begin() as txn, txn.cursor(db=store.db["blocks"]) as cur:
        assert {v[0] for v in cur.iternext(keys=False)} == {3}
    ids = list(g.nodes)
    want = _everything(store, ids)
    store.close()
    monkeypatch.undo()
    with pytest.raises(StoreError, match="schema 3"):
        Store(tmp_path, readonly=True)
    Store(tmp_path).close()  # the daemon opens it
    store = Store(tmp_path, readonly=True)
    assert store.get_meta("schema") == SCHEMA_VERSION == 4
    assert _everything(store, ids) == want
    store.close()
    store = Store(tmp_path)
    g = Graph(store, "b00t", boot_wall_ns=0)
    g.load_snapshot(roots())
    for ev in stream(500, seed=14, t0=10**6 * S):
        g.apply(ev)
    g.flush()
    with store.env.begin() as txn, txn.cursor(db=store.db["blocks"]) as cur:
        assert {v[0] for v in cur.iternext(keys=False)} == {3, 4}
    assert _everything(store, ids)["nodes"] == {
        i: n for i, n in ((i, store.node(i)) for i in ids)}
    assert len(list(store.events())) == 3500
    assert check_invariants(store) == []
