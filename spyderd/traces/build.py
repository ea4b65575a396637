"""Trace construction over anything that can read nodes and edges (the LMDB store).

A finding's *chain* is the line an analyst reads first: the subject's ancestors, the
subject, then the path to what it went on to do (preferring a descendant that made a
connection). A *trace* is the wider picture around the trace root: its ancestry, its
whole subtree (bounded), every connection of those processes and, across peer edges,
the process at the other end of a local connection.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Protocol

from spyderd.model import Edge, Node

MAX_TRACE_NODES = 2000
PROC_EDGES = ("spawned", "exec")
CONN_EDGES = ("connect", "accept", "listen")


class GraphReader(Protocol):
    def node(self, node_id: str) -> Node | None: ...
    def edges(self, node_id: str, direction: str = "out") -> list[Edge]: ...


def trace_id_for(root_id: str) -> str:
    """Stable trace id from the trace root's node id."""
    return "trc-" + hashlib.sha1(root_id.encode()).hexdigest()[:16]


def ancestors(g: GraphReader, node: Node, limit: int = 64) -> list[Node]:
    """Nearest first."""
    out, seen, cur = [], {node.id}, node
    for _ in range(limit):
        cur = g.node(cur.parent) if cur.parent else None
        if cur is None or cur.id in seen:
            break
        seen.add(cur.id)
        out.append(cur)
    return out


def children(g: GraphReader, node_id: str) -> list[Node]:
    out = []
    for e in g.edges(node_id, "out"):
        if e.kind in PROC_EDGES:
            n = g.node(e.dst)
            if n is not None:
                out.append(n)
    return sorted(out, key=lambda n: n.start)


def descendants(g: GraphReader, root: Node, limit: int = MAX_TRACE_NODES) -> list[Node]:
    """Breadth-first subtree below `root` (root excluded), bounded."""
    out, queue, seen = [], [root.id], {root.id}
    while queue and len(out) < limit:
        nid = queue.pop(0)
        for c in children(g, nid):
            if c.id not in seen:
                seen.add(c.id)
                out.append(c)
                queue.append(c.id)
    return out


def _collapse(chain: list[Node]) -> list[Node]:
    """Drop fork copies that were immediately replaced by an exec (python > python > sh)."""
    out = []
    for i, n in enumerate(chain):
        nxt = chain[i + 1] if i + 1 < len(chain) else None
        copy = n.via == "spawned" and not n.attrs.get("snapshot")
        if copy and nxt is not None and nxt.via == "exec" and nxt.parent == n.id:
            continue
        out.append(n)
    return out


def chain_for(g: GraphReader, subject: Node) -> list[dict[str, Any]]:
    """Ancestors → subject → path to its most telling descendant, as chain entries."""
    up = list(reversed(ancestors(g, subject)))
    below = descendants(g, subject, limit=500)
    target = None
    talkers = [n for n in below if any(e.kind in ("connect", "accept")
                                       for e in g.edges(n.id, "out"))]
    if talkers:
        target = talkers[0]
    elif below:
        target = max(below, key=lambda n: (n.start, n.pid))
    down: list[Node] = []
    cur = target
    while cur is not None and cur.id != subject.id:
        down.append(cur)
        cur = g.node(cur.parent) if cur.parent else None
    nodes = _collapse(up + [subject] + list(reversed(down)))
    roles = {n.id: "ancestor" for n in up} | {subject.id: "subject"}
    return [chain_entry(n, roles.get(n.id, "descendant")) for n in nodes]


def chain_entry(n: Node, role: str) -> dict[str, Any]:
    return {
        "id": n.id, "role": role, "pid": n.pid, "ppid": n.ppid, "name": n.name,
        "exe": n.attrs.get("exe", ""), "args": n.attrs.get("args", []), "uid": n.uid,
        "container_id": n.attrs.get("container_id", ""), "start": n.start,
    }


def chain_text(chain: list[dict[str, Any]]) -> str:
    """`python3[120] > sh[133] > curl[134]`."""
    return " > ".join(f"{c['name'] or '?'}[{c['pid']}]" for c in chain)


@dataclass
class TraceView:
    """What `spyderctl trace` shows; `to_dict` is the `-o json` shape."""

    id: str
    kind: str
    root: str
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "root": self.root,
            "nodes": [node_json(n) for n in sorted(self.nodes.values(),
                                                   key=lambda n: (n.start, n.id))],
            "edges": [e.to_dict() for e in self.edges],
            "findings": self.findings,
        }


def node_json(n: Node) -> dict[str, Any]:
    d = n.to_dict()
    d.setdefault("exe", "")
    d.setdefault("args", [])
    d.setdefault("container_id", "")
    d.setdefault("machine_id", "")
    d["name"] = n.name
    return d


def resolve(store, ident: str) -> tuple[str, str, list[dict[str, Any]]]:
    """Map a finding, trace or process id to (trace id, root node id, findings)."""
    if ident.startswith("fnd-"):
        f = store.finding(ident)
        if f is None:
            raise KeyError(f"no finding {ident}")
        ident = f.trace_id
    if ident.startswith("trc-"):
        tr = store.trace(ident)
        if tr is None:
            raise KeyError(f"no trace {ident}")
        fs = [f.to_dict() for f in (store.finding(x) for x in tr["findings"]) if f]
        return ident, tr["root"], fs
    if store.node(ident) is None:
        raise KeyError(f"no node {ident}")
    fs = [f.to_dict() for f in store.findings() if f.process_id == ident]
    return ident, ident, fs


def build_trace(store, ident: str) -> TraceView:
    """The trace view for a finding, trace or process id (KeyError if unknown)."""
    tid, root_id, findings = resolve(store, ident)
    root = store.node(root_id)
    if root is None:
        raise KeyError(f"trace root {root_id} is not in the store")
    kind = "trace" if tid.startswith("trc-") else "process"
    view = TraceView(id=tid, kind=kind, root=root_id, findings=findings)
    procs = list(reversed(ancestors(store, root))) + [root] + descendants(store, root)
    for f in findings:  # subjects outside the subtree still belong to the trace
        subj = store.node(f["process_id"])
        if subj is not None:
            procs += [subj] + ancestors(store, subj)
    for n in procs:
        view.nodes[n.id] = n
    for n in list(view.nodes.values()):
        _add_connections(store, view, n)
    ids = set(view.nodes)
    seen = set()
    for nid in ids:
        for e in store.edges(nid, "out"):
            key = (e.src, e.dst, e.kind)
            if e.dst in ids and key not in seen:
                seen.add(key)
                view.edges.append(e)
    view.edges.sort(key=lambda e: e.time)
    return view


def _add_connections(store, view: TraceView, proc: Node) -> None:
    """A process's connections, and the process behind each local peer."""
    if proc.kind != "process":
        return
    for e in store.edges(proc.id, "out"):
        if e.kind not in CONN_EDGES or len(view.nodes) >= MAX_TRACE_NODES:
            continue
        conn = store.node(e.dst)
        if conn is None:
            continue
        view.nodes[conn.id] = conn
        for pe in store.edges(conn.id, "out"):
            if pe.kind != "peer":
                continue
            other = store.node(pe.dst)
            if other is None:
                continue
            view.nodes[other.id] = other
            owner = store.node(other.attrs.get("process_id", ""))
            if owner is not None and owner.id not in view.nodes:
                view.nodes[owner.id] = owner
                for a in ancestors(store, owner):
                    view.nodes.setdefault(a.id, a)
