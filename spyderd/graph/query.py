"""Query API over stored history, shared by rules (`spyderctl query`), traces and spyderctl.

`History` answers the same questions as the live `Graph` (parent, ancestors, children,
descendants, siblings, connections, peers, session, writer), but from LMDB, so a rule
condition or a trace can be evaluated over last month as well as over the last second.
Every call is a handful of B-tree lookups; nothing scans the whole store except the
explicitly time-bounded listings.

    h = History(Store(state_dir, readonly=True))
    for node in h.ancestors(h.node(pid_image_id), depth=5): ...
    h.descendants(node, within_ns=600 * 10**9)
    h.connections(node); h.peers(node)
    h.by_pid(1234, at_ns=...)            # the image of pid 1234 running at that time
    h.in_container("3f2a...", since_ns, until_ns)
    h.between(since_ns, until_ns, kind="process")
"""

from __future__ import annotations

from collections.abc import Iterator

from spyderd.graph.store import Store
from spyderd.model import Edge, Node, walks

PROC_EDGES = ("spawned", "exec")


class History:
    """Read-only graph queries over a `Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def node(self, node_id: str) -> Node | None:
        return self.store.node(node_id)

    def get(self, node_id: str) -> Node | None:
        return self.store.node(node_id)

    def edges(self, node_id: str, direction: str = "out") -> list[Edge]:
        return self.store.edges(node_id, direction)

    def parent(self, node: Node) -> Node | None:
        return self.store.node(node.parent) if node.parent else None

    def ancestors(self, node: Node, depth: int | None = None) -> Iterator[Node]:
        """Nearest first (see `spyderd.model.walks` for what `depth` means)."""
        return walks.ancestors(self.parent, node, depth)

    def children(self, node: Node) -> list[Node]:
        out = [self.store.node(e.dst) for e in self.store.edges(node.id, "out")
               if e.kind in PROC_EDGES]
        return sorted((n for n in out if n is not None), key=lambda n: n.start)

    def descendants(self, node: Node, within_ns: int | None = None,
                    limit: int = walks.MAX_DESCENDANTS) -> Iterator[Node]:
        """Breadth-first below `node`, only images started within `within_ns` of it."""
        return walks.descendants(self.children, node, within_ns, limit)

    def siblings(self, node: Node) -> list[Node]:
        parent = self.parent(node)
        return [c for c in self.children(parent) if c.id != node.id] if parent else []

    def connections(self, node: Node) -> list[Node]:
        """Connection nodes of a process image (outbound and accepted)."""
        out = [self.store.node(e.dst) for e in self.store.edges(node.id, "out")
               if e.kind in ("connect", "accept")]
        return [n for n in out if n is not None]

    def peers(self, node: Node) -> list[Node]:
        """Processes at the other end of the image's local TCP connections."""
        out: list[Node] = []
        for conn in self.connections(node):
            for e in self.store.edges(conn.id, "out"):
                if e.kind != "peer":
                    continue
                other = self.store.node(e.dst)
                proc = self.store.node(other.attrs.get("process_id", "")) if other else None
                if proc is not None and all(p.id != proc.id for p in out):
                    out.append(proc)
        return out

    def session(self, node: Node) -> Node | None:
        return self.store.node(node.attrs.get("session_id", ""))

    def pipe_peers(self, node: Node, side: str) -> list[Node]:
        """The images at the other end of the image's stdin pipe ("writers") or of its
        stdout/stderr pipe ("readers")."""
        return [n for i in node.attrs.get(f"pipe_{side}", ()) if (n := self.store.node(i))]

    def writer(self, node: Node) -> Node | None:
        if node.kind != "file":
            node = self.store.node(node.attrs.get("exec_file", ""))
            if node is None:
                return None
        return self.store.node(node.attrs.get("writer", ""))

    def machine(self, node: Node) -> Node | None:
        """The machine node the image ran on (`machine.*` fields of rules)."""
        mid = node.attrs.get("machine_id")
        return self.store.node(f"machine:{mid}") if mid else None

    def by_pid(self, pid: int, at_ns: int | None = None) -> Node | None:
        """The image of `pid` running at `at_ns` (default: the latest one stored)."""
        images = self.store.processes_by_pid(pid)
        if at_ns is not None:
            images = [n for n in images if n.start <= at_ns and (not n.end or n.end >= at_ns)]
        return max(images, key=lambda n: n.start) if images else None

    def in_container(self, container_id: str, since_ns: int = 0,
                     until_ns: int | None = None) -> Iterator[Node]:
        return self.store.in_container(container_id, since_ns, until_ns)

    def between(self, since_ns: int = 0, until_ns: int | None = None,
                kind: str | None = None) -> Iterator[Node]:
        return self.store.nodes_between(since_ns, until_ns, kind)
