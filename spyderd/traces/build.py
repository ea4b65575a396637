"""Trace construction over anything that can read nodes and edges (the LMDB store).

A finding's *chain* is the line an analyst reads first: from the trace root (see `roots`)
down to the subject, then the path to what the subject went on to do (preferring a
descendant that made a connection), then the nodes the rule referred to that are not on
that line (role ``ref``).

A *trace view* is what `spyderctl trace` draws. For a trace: the root, a few ancestors above
it for context, each finding's path from the root to its subject, and the subtree where the
activity happened: the root's whole subtree when the root is a session, a container or the
top of the graph; below a long-lived server or service only the subtree of the child that
led to the findings (one request, one connection), not every request the server ever
answered. Around each process: its connections (and the process at the other end of a local
one), the files it wrote or executed, and the third-party alerts it raised. For a process id:
its ancestry and its subtree.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Protocol

from spyderd.model import Edge, Node, walks

MAX_TRACE_NODES = 2000
CONTEXT_ANCESTORS = 3
PROC_EDGES = ("spawned", "exec")
CONN_EDGES = ("connect", "accept", "listen")
FILE_EDGES = ("wrote", "changed", "deleted", "denied")
WHOLE_SUBTREE_ROOTS = ("session", "container", "top")


class GraphReader(Protocol):
    def node(self, node_id: str) -> Node | None: ...
    def edges(self, node_id: str, direction: str = "out") -> list[Edge]: ...


def trace_id_for(root_id: str, epoch: int = 0) -> str:
    """Stable trace id from the root's node id (and the start of a later activity window)."""
    key = root_id if not epoch else f"{root_id}@{epoch}"
    return "trc-" + hashlib.sha1(key.encode()).hexdigest()[:16]


def ancestors(g: GraphReader, node: Node, limit: int = walks.MAX_DEPTH,
              stop: str = "") -> list[Node]:
    """Nearest first; stops after the node whose id is `stop` (the trace root)."""
    return list(walks.ancestors(lambda n: g.node(n.parent) if n.parent else None, node,
                                limit, stop))


def children(g: GraphReader, node_id: str) -> list[Node]:
    out = []
    for e in g.edges(node_id, "out"):
        if e.kind in PROC_EDGES:
            n = g.node(e.dst)
            if n is not None:
                out.append(n)
    return sorted(out, key=lambda n: n.start)


def descendants(g: GraphReader, root: Node, limit: int = MAX_TRACE_NODES) -> list[Node]:
    """Breadth-first subtree below `root` (root excluded), at most `limit` images."""
    return list(walks.descendants(lambda n: children(g, n.id), root, None, limit))


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


def chain_for(g: GraphReader, subject: Node, root_id: str | None = None,
              refs: list[str] | tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Root (or the top, without one) → subject → path to its most telling descendant → refs."""
    up = list(reversed(ancestors(g, subject, stop=root_id or "")))
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
    top = up[0] if up else subject
    if root_id and top.id == root_id:
        roles[root_id] = "root"
    out = [chain_entry(n, roles.get(n.id, "descendant")) for n in nodes]
    if root_id and top.id == root_id:
        above = ancestors(g, top)
        if above:
            out.insert(0, elided_entry(above, top))
    on_line = {n.id for n in up + [subject] + down}
    for rid in refs:
        ref = g.node(rid) if rid not in on_line else None
        if ref is not None:
            on_line.add(rid)
            out.append(chain_entry(ref, "ref"))
    return out


def chain_entry(n: Node, role: str) -> dict[str, Any]:
    a = n.attrs
    return {
        "id": n.id, "role": role, "kind": n.kind, "pid": n.pid, "ppid": n.ppid,
        "name": n.name, "exe": a.get("exe", ""), "args": a.get("args", []), "uid": n.uid,
        "user": a.get("user", ""), "container_id": a.get("container_id", ""),
        "container_name": a.get("container_name", ""), "start": n.start,
    }


ELIDED_NAMES = 4  # names of elided ancestors kept in their summary


def elided_entry(above: list[Node], below: Node) -> dict[str, Any]:
    """Stands for the ancestry left out of a chain (`above`: nearest first, above `below`).

    It keeps the keys every chain entry has, for the nearest ancestor left out, with
    `count` and the `names` of the nearest ones (outermost first), so `SPYDER_CHAIN`
    reads `… > sshd[100] > bash[101]`.
    """
    progs = _collapse(list(reversed(above)) + [below])[:-1]  # fork copies left out
    near = progs[-1] if progs else above[0]
    names = [a.name or "?" for a in progs[-ELIDED_NAMES:]]
    if len(progs) > ELIDED_NAMES:
        names.insert(0, "…")
    return {"id": near.id, "role": "elided", "kind": near.kind, "pid": near.pid,
            "name": "…", "count": len(progs), "names": names}


def chain_text(chain: list[dict[str, Any]]) -> str:
    """`… > python3[120] > sh[133] > curl[134]`: ancestry left out shown as `…`, nodes the
    rule referred to off the line left out."""
    return " > ".join("…" if c.get("role") == "elided" else f"{c['name'] or '?'}[{c['pid']}]"
                      for c in chain if c.get("role") != "ref")


@dataclass
class TraceView:
    """What `spyderctl trace` shows; `to_dict` is the `-o json` shape."""

    id: str
    kind: str
    root: str
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)
    roles: dict[str, str] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    truncated: bool = False

    def full(self) -> bool:
        """No room for another node (marks the view truncated): callers stop reading."""
        if len(self.nodes) >= MAX_TRACE_NODES:
            self.truncated = True
        return self.truncated

    def add(self, n: Node, role: str = "") -> None:
        if n.id not in self.nodes:
            if self.full():
                return
            self.nodes[n.id] = n
        if role and (n.id not in self.roles or _ROLE_RANK[role] < _ROLE_RANK[self.roles[n.id]]):
            self.roles[n.id] = role

    def to_dict(self) -> dict[str, Any]:
        nodes = []
        for n in sorted(self.nodes.values(), key=lambda n: (n.start, n.id)):
            d = node_json(n)
            d["role"] = self.roles.get(n.id, "")
            nodes.append(d)
        return {
            "id": self.id,
            "kind": self.kind,
            "root": self.root,
            **self.summary,
            "truncated": self.truncated,
            "nodes": nodes,
            "edges": [e.to_dict() for e in self.edges],
            "findings": self.findings,
        }


_ROLE_RANK = {"root": 0, "subject": 1, "ref": 2, "ancestor": 3, "context": 4, "": 5}


def node_json(n: Node) -> dict[str, Any]:
    d = n.to_dict()
    d.setdefault("exe", "")
    d.setdefault("args", [])
    d.setdefault("container_id", "")
    d.setdefault("machine_id", "")
    d["name"] = n.name
    return d


def resolve(store, ident: str) -> tuple[str, dict[str, Any] | None, list[dict[str, Any]]]:
    """Map a finding, trace or process id to (id, trace record or None, findings)."""
    if ident.startswith("fnd-"):
        f = store.finding(ident)
        if f is None:
            raise KeyError(f"no finding {ident}")
        ident = f.trace_id
    if ident.startswith("trc-"):
        tr = store.trace(ident)
        for _ in range(16):  # a trace merged into another (see traces.split) shows that one
            if tr is None or not tr.get("merged_into"):
                break
            ident = tr["merged_into"]
            tr = store.trace(ident)
        if tr is None:
            raise KeyError(f"no trace {ident}")
        fs = [f.to_dict() for f in (store.finding(x) for x in tr["findings"]) if f]
        return ident, tr, fs
    if store.node(ident) is None:
        raise KeyError(f"no node {ident}")
    fs = [f.to_dict() for f in store.findings() if f.process_id == ident]
    return ident, None, fs


def build_trace(store, ident: str) -> TraceView:
    """The trace view for a finding, trace or process id (KeyError if unknown)."""
    tid, record, findings = resolve(store, ident)
    root_id = record["root"] if record else tid
    root = store.node(root_id)
    if root is None:
        raise KeyError(f"trace root {root_id} is not in the store")
    view = TraceView(id=tid, kind="trace" if record else "process", root=root_id,
                     findings=findings)
    if record:
        view.summary = summary_fields(record)
        _trace_processes(store, view, root, record, findings)
    else:
        _process_neighbourhood(store, view, root)
    requests = _request_starts(store, view, record) if record else None
    for n in [n for n in view.nodes.values()
              if n.kind == "process" and view.roles.get(n.id) not in ("context", "ref")]:
        # context and peers: only how they touch the story; a server: only the connections
        # that led to this trace's requests, not every request it answered
        _add_surroundings(store, view, n, requests if n.id == root_id else None)
    _collect_edges(store, view)
    return view


def summary_fields(record: dict[str, Any]) -> dict[str, Any]:
    """The trace record's fields shown next to the graph (score, rules, counts, ...)."""
    keys = ("root_kind", "root_label", "units", "trigger", "score", "threshold", "rules",
            "counts", "users", "containers", "machines", "first", "last", "suppressed")
    return {k: record[k] for k in keys if k in record}


def _process_neighbourhood(store, view: TraceView, proc: Node) -> None:
    for a in reversed(ancestors(store, proc)):
        view.add(a, "ancestor")
    view.add(proc, "subject")
    for d in descendants(store, proc):
        view.add(d)


def _trace_processes(store, view: TraceView, root: Node, record: dict[str, Any],
                     findings: list[dict[str, Any]]) -> None:
    for a in reversed(ancestors(store, root, limit=CONTEXT_ANCESTORS)):
        view.add(a, "context")
    view.add(root, "root")
    whole = record.get("root_kind") in WHOLE_SUBTREE_ROOTS
    subtrees: list[Node] = [root] if whole else []
    for f in findings:
        subj = store.node(f["process_id"])
        if subj is None:
            continue
        path = list(reversed(ancestors(store, subj, stop=root.id)))
        if path and path[0].id != root.id:
            path = path[-8:]  # the subject moved out of the root's tree: show its parents
        for n in path:
            view.add(n, "ancestor")
        view.add(subj, "subject")
        entry = path[1] if len(path) > 1 and path[0].id == root.id else subj
        if not whole and all(s.id != entry.id for s in subtrees):
            subtrees.append(entry)
        for rid in f.get("refs") or []:
            ref = store.node(rid)
            if ref is not None:
                view.add(ref, "ref")
    for top in subtrees:
        for d in descendants(store, top):
            view.add(d)


def _request_starts(store, view: TraceView, record: dict[str, Any]) -> list[int] | None:
    """Start times of a server trace's requests (None: not split by request)."""
    if record.get("root_kind") != "inbound" or not record.get("units"):
        return None
    out = []
    for uid in record["units"]:
        n = view.nodes.get(uid) or store.node(uid)
        if n is not None:
            out.append(n.start)
    return out


def _serving(e: Edge, starts: list[int], accepts: list[int]) -> bool:
    """Is this server edge about one of the requests: a listener, or the latest connection
    accepted before a request started."""
    if e.kind != "accept":
        return e.kind in ("listen", "alerted") or e.kind in FILE_EDGES
    for start in starts:
        before = [t for t in accepts if t <= start]
        if before and e.time == max(before):
            return True
    return False


def _add_surroundings(store, view: TraceView, proc: Node,
                      requests: list[int] | None = None) -> None:
    """A process's connections (and the process behind a local peer), files and alerts;
    for a server split by request (`requests`: their start times), only theirs. Reading
    stops once the view is full: a job runner with 100,000 connections would otherwise
    cost three store reads for each one, on the daemon's loop, at every finding."""
    out_edges = store.edges(proc.id, "out")
    if requests is not None:
        accepts = sorted(e.time for e in out_edges if e.kind == "accept")
        out_edges = [e for e in out_edges if _serving(e, requests, accepts)]
    for e in out_edges:
        if view.full():
            return
        if e.kind in CONN_EDGES:
            conn = store.node(e.dst)
            if conn is not None:
                view.add(conn)
                _add_peer(store, view, conn)
        elif e.kind in FILE_EDGES or e.kind == "alerted":
            other = store.node(e.dst)
            if other is not None:
                view.add(other)
    for e in store.edges(proc.id, "in"):
        if e.kind == "executed-file":
            f = store.node(e.src)
            if f is not None:
                view.add(f)
                writer = store.node(f.attrs.get("writer", ""))
                if writer is not None:
                    view.add(writer, "ref")


def _add_peer(store, view: TraceView, conn: Node) -> None:
    for pe in store.edges(conn.id, "out"):
        if pe.kind != "peer":
            continue
        other = store.node(pe.dst)
        if other is None:
            continue
        view.add(other)
        owner = store.node(other.attrs.get("process_id", ""))
        if owner is not None and owner.id not in view.nodes:
            view.add(owner, "ref")


def _collect_edges(store, view: TraceView) -> None:
    ids = set(view.nodes)
    seen = set()
    for nid in ids:
        for e in store.edges(nid, "out"):
            key = (e.src, e.dst, e.kind)
            if e.dst in ids and key not in seen:
                seen.add(key)
                view.edges.append(e)
    view.edges.sort(key=lambda e: e.time)


def view_counts(view: TraceView) -> dict[str, Any]:
    """Counts, users, containers and machines of a view (for trace records and journald)."""
    procs = [n for n in view.nodes.values()
             if n.kind == "process" and view.roles.get(n.id) != "context"]
    return {
        "counts": {
            "processes": len(procs),
            "connections": sum(1 for n in view.nodes.values() if n.kind == "connection"),
            "files": sum(1 for n in view.nodes.values() if n.kind == "file"),
            "alerts": sum(1 for n in view.nodes.values() if n.kind == "alert"),
        },
        "users": sorted({str(n.attrs.get("user") or n.uid) for n in procs}),
        "containers": sorted({n.attrs.get("container_id") for n in procs
                              if n.attrs.get("container_id")}),
        "machines": sorted({n.attrs.get("machine_id") for n in view.nodes.values()
                            if n.attrs.get("machine_id")}),
    }
