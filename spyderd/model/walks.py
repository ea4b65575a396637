"""The one ancestry walk and the one descendant walk over the causal graph.

The live graph, stored history, the rule-test context and trace building each answer
`parent` and `children` their own way (memory, LMDB, a dict); the walks over those answers
live here once, so their bounds cannot drift apart.

Depth means the same everywhere: `None` walks up to MAX_DEPTH ancestors, `N` at most N
(capped at MAX_DEPTH), and `0` none at all. The rule language only accepts 1..MAX_DEPTH.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from spyderd.model.nodes import Node

MAX_DEPTH = 64  # longest ancestry walk; a deeper chain is cut, not followed
MAX_DESCENDANTS = 1000  # most images one descendant walk yields


def ancestors(parent: Callable[[Node], Node | None], node: Node, depth: int | None = None,
              stop: str = "") -> Iterator[Node]:
    """Nearest first, at most `depth` (see the module docstring), ending at the top, at a
    cycle (a corrupt graph must not loop) or right after the node whose id is `stop`."""
    if node.id == stop:
        return
    limit = MAX_DEPTH if depth is None else min(depth, MAX_DEPTH)
    seen, cur = {node.id}, node
    for _ in range(limit):
        up = parent(cur)
        if up is None or up.id in seen:
            return
        seen.add(up.id)
        yield up
        if up.id == stop:
            return
        cur = up


def descendants(children: Callable[[Node], list[Node]], node: Node,
                within_ns: int | None = None, limit: int = MAX_DESCENDANTS) -> Iterator[Node]:
    """Breadth-first below `node` (itself excluded), at most `limit` images, only those that
    started at most `within_ns` after `node` (all when None)."""
    horizon = None if within_ns is None else node.start + within_ns
    queue, seen, count = [node], {node.id}, 0
    while queue and count < limit:
        for child in children(queue.pop(0)):
            if child.id in seen or (horizon is not None and child.start > horizon):
                continue
            seen.add(child.id)
            count += 1
            queue.append(child)
            yield child
            if count >= limit:
                return
