"""The graph as rules see it: a read-only view that answers "who came before this image".

Rules never touch the store: the graph stage hands `RuleSet.match` an object with these two
methods. `DictContext` is the smallest such object, over a dict of nodes, for tests and for
replaying recorded graphs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Protocol

from spyderd.model.nodes import Node

MAX_DEPTH = 64  # longest ancestry walk; a deeper chain is cut, not followed


class GraphContext(Protocol):
    """Ancestry lookups a compiled condition needs."""

    def parent(self, node: Node) -> Node | None:
        """The image `node` came from (fork parent or the image an exec replaced), if known."""
        ...

    def ancestors(self, node: Node, depth: int | None = None) -> Iterator[Node]:
        """Ancestors nearest first, at most `depth` (default and cap MAX_DEPTH), no cycles."""
        ...


def walk_ancestors(
    parent: Callable[[Node], Node | None], node: Node, depth: int | None = None
) -> Iterator[Node]:
    """Follow `parent` from `node`: bounded by depth and MAX_DEPTH, stopping at a cycle.

    Shared by every GraphContext so no implementation can loop on a corrupt graph.
    """
    limit = MAX_DEPTH if depth is None else min(depth, MAX_DEPTH)
    seen = {node.id}
    current = node
    for _ in range(limit):
        up = parent(current)
        if up is None or up.id in seen:
            return
        seen.add(up.id)
        yield up
        current = up


class DictContext:
    """A GraphContext over nodes held in a dict by id."""

    def __init__(self, nodes: Mapping[str, Node]) -> None:
        self.nodes = nodes

    @classmethod
    def of(cls, *nodes: Node) -> DictContext:
        return cls({n.id: n for n in nodes})

    def parent(self, node: Node) -> Node | None:
        return self.nodes.get(node.parent) if node.parent else None

    def ancestors(self, node: Node, depth: int | None = None) -> Iterator[Node]:
        return walk_ancestors(self.parent, node, depth)
