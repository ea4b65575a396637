"""The graph as rules see it: a read-only view of the causal graph around one process image.

Rules never touch the store: the graph stage hands `RuleSet.match` an object with these
methods (`spyderd.graph.Graph` live, `spyderd.graph.query.History` over stored history).
Every method answers from memory and must not block on I/O; an unknown node answers None or
an empty list. `DictContext` is the smallest implementation, over a dict of nodes, for tests
and for replaying recorded graphs.

What each causal operator of the condition language asks:

    parent(c)          parent(node)
    ancestor(c)        parent(node) walked (or ancestors(node, depth) with depth=N)
    descendant(c)      descendants(node, within_ns)
    sibling(c)         parent(node), children(node)
    peer(c)            peers(node)
    session(c)         session(node)
    wrote_by(c)        writer(node)
    pipe_writer(c)     pipe_peers(node, "writers")
    pipe_reader(c)     pipe_peers(node, "readers")
    machine.* fields   machine(node)
    process.connections_out   connections(node)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

from spyderd.model import walks
from spyderd.model.nodes import Node

# every GraphContext walks with spyderd.model.walks: the bounds cannot drift apart
MAX_DEPTH = walks.MAX_DEPTH
MAX_DESCENDANTS = walks.MAX_DESCENDANTS
walk_ancestors = walks.ancestors


class GraphContext(Protocol):
    """Causal lookups a compiled condition needs; all answered from memory."""

    def parent(self, node: Node) -> Node | None:
        """The image `node` came from (fork parent or the image an exec replaced), if known."""
        ...

    def ancestors(self, node: Node, depth: int | None = None) -> Iterator[Node]:
        """Ancestors nearest first, at most `depth` (None: MAX_DEPTH; 0: none), no cycles."""
        ...

    def children(self, node: Node) -> list[Node]:
        """Images spawned by `node` (fork) or exec'd from it, oldest first."""
        ...

    def descendants(self, node: Node, within_ns: int | None = None) -> Iterator[Node]:
        """Images below `node`, breadth-first, only those started at most `within_ns` after
        `node` started (all when None); bounded (the Graph stops after 1000)."""
        ...

    def connections(self, node: Node) -> list[Node]:
        """Connection nodes of the image (kind "connection"; attrs direction, result, ...)."""
        ...

    def peers(self, node: Node) -> list[Node]:
        """Process images at the other end of the image's local TCP connections."""
        ...

    def session(self, node: Node) -> Node | None:
        """The session node the image belongs to (attrs["session_id"]), if known."""
        ...

    def writer(self, node: Node) -> Node | None:
        """The image that wrote the file `node` runs (download then execute), if known;
        for a file node, its writer."""
        ...

    def machine(self, node: Node) -> Node | None:
        """The machine node the image runs on (`machine:<attrs machine_id>`), if known."""
        ...

    def pipe_peers(self, node: Node, side: str) -> list[Node]:
        """Images at the other end of the image's stdin pipe (side "writers") or of its
        stdout/stderr pipe ("readers"): the node's pipe_writers / pipe_readers ids."""
        ...


def parent_process(ctx: GraphContext, node: Node) -> Node | None:
    """The image that forked the subject's process, skipping the execs of the process itself
    (what `ps` calls the parent: `parent.*` fields read it). For a fork child it is the
    graph parent; for an image exec'd from a fork child, the forking image above that."""
    cur = node
    for _ in range(MAX_DEPTH):
        if cur.via != "exec":
            break
        up = ctx.parent(cur)
        if up is None:
            return None
        cur = up
    return ctx.parent(cur)


class DictContext:
    """A GraphContext over nodes held in a dict by id (tests, replays of node dumps).

    Children are found from the nodes' `parent` fields; connections are connection nodes
    whose attrs["process_id"] names the image, and attrs["peer"] names the connection node
    at the other end of a local connection.
    """

    def __init__(self, nodes: Mapping[str, Node]) -> None:
        self.nodes = nodes

    @classmethod
    def of(cls, *nodes: Node) -> DictContext:
        return cls({n.id: n for n in nodes})

    def get(self, node_id: str) -> Node | None:
        return self.nodes.get(node_id) if node_id else None

    def parent(self, node: Node) -> Node | None:
        return self.nodes.get(node.parent) if node.parent else None

    def ancestors(self, node: Node, depth: int | None = None) -> Iterator[Node]:
        return walk_ancestors(self.parent, node, depth)

    def children(self, node: Node) -> list[Node]:
        found = [n for n in self.nodes.values() if n.parent == node.id and n.id != node.id]
        return sorted(found, key=lambda n: n.start)

    def descendants(self, node: Node, within_ns: int | None = None) -> Iterator[Node]:
        return walks.descendants(self.children, node, within_ns)

    def connections(self, node: Node) -> list[Node]:
        return [
            n
            for n in self.nodes.values()
            if n.kind == "connection" and n.attrs.get("process_id") == node.id
        ]

    def peers(self, node: Node) -> list[Node]:
        out: list[Node] = []
        for conn in self.connections(node):
            other = self.get(conn.attrs.get("peer", ""))
            proc = self.get(other.attrs.get("process_id", "")) if other is not None else None
            if proc is not None and all(p.id != proc.id for p in out):
                out.append(proc)
        return out

    def session(self, node: Node) -> Node | None:
        return self.get(node.attrs.get("session_id", ""))

    def writer(self, node: Node) -> Node | None:
        if node.kind != "file":
            found = self.get(node.attrs.get("exec_file", ""))
            if found is None:
                return None
            node = found
        return self.get(node.attrs.get("writer", ""))

    def machine(self, node: Node) -> Node | None:
        mid = node.attrs.get("machine_id")
        return self.get(f"machine:{mid}") if mid else None

    def pipe_peers(self, node: Node, side: str) -> list[Node]:
        return [n for i in node.attrs.get(f"pipe_{side}", ()) if (n := self.get(i))]
