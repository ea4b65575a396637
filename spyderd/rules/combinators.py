"""Combinators: how compiled conditions join, and the causal operators parent() and ancestor().

Each takes predicates and returns one. `refs` collects the ancestor nodes that made a causal
operator true, nearest reason first; a branch that ends up false takes its refs back out, and
nothing under `not` explains a match, so a match's refs only name nodes that explain it.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import islice

from spyderd.model.events import Event
from spyderd.model.nodes import Node
from spyderd.rules.context import MAX_DEPTH, GraphContext

Predicate = Callable[[Event | None, Node, GraphContext, list[Node]], bool]


def never(ev: Event | None, node: Node, ctx: GraphContext, refs: list[Node]) -> bool:
    """Stands in for a part that did not compile, so compiling can go on."""
    return False


def either(left: Predicate, right: Predicate) -> Predicate:
    """`left or right`; refs of a false left branch are dropped before trying the right."""

    def or_(ev: Event | None, node: Node, ctx: GraphContext, refs: list[Node]) -> bool:
        mark = len(refs)
        if left(ev, node, ctx, refs):
            return True
        del refs[mark:]
        if right(ev, node, ctx, refs):
            return True
        del refs[mark:]
        return False

    return or_


def both(left: Predicate, right: Predicate) -> Predicate:
    """`left and right`; when either fails, neither leaves refs."""

    def and_(ev: Event | None, node: Node, ctx: GraphContext, refs: list[Node]) -> bool:
        mark = len(refs)
        if left(ev, node, ctx, refs) and right(ev, node, ctx, refs):
            return True
        del refs[mark:]
        return False

    return and_


def negate(inner: Predicate) -> Predicate:
    """`not inner`; what is absent explains nothing, so inner refs are always dropped."""

    def not_(ev: Event | None, node: Node, ctx: GraphContext, refs: list[Node]) -> bool:
        mark = len(refs)
        result = inner(ev, node, ctx, refs)
        del refs[mark:]  # what is absent explains nothing
        return not result

    return not_


def on_parent(inner: Predicate) -> Predicate:
    """`parent(inner)`: inner tested on the parent image, with no event; it joins refs."""

    def parent(ev: Event | None, node: Node, ctx: GraphContext, refs: list[Node]) -> bool:
        up = ctx.parent(node)
        if up is None:
            return False
        mark = len(refs)
        if inner(None, up, ctx, refs):
            refs.insert(mark, up)
            return True
        del refs[mark:]
        return False

    return parent


def on_ancestor(inner: Predicate, depth: int | None) -> Predicate:
    """`ancestor(inner, depth=N)`: the nearest ancestor satisfying inner joins refs.

    The walk is cut at `depth` (or MAX_DEPTH) here as well, whatever the context does.
    """
    limit = MAX_DEPTH if depth is None else depth

    def ancestor(ev: Event | None, node: Node, ctx: GraphContext, refs: list[Node]) -> bool:
        for up in islice(ctx.ancestors(node, limit), limit):
            mark = len(refs)
            if inner(None, up, ctx, refs):
                refs.insert(mark, up)
                return True
            del refs[mark:]
        return False

    return ancestor
