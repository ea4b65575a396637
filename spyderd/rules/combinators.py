"""Combinators: how compiled conditions join, and the causal operators.

Each takes predicates and returns one. `refs` collects the nodes that made a causal operator
true (the ancestor, descendant, peer, writer ... it found), outermost reason first; a branch
that ends up false takes its refs back out, and nothing under `not` explains a match, so a
match's refs only name nodes that explain it.

Ancestry results are cached per process image (see `AncestorCache`): the ancestry of an image
never changes, so `ancestor(web_server)` for the hundredth command of one shell costs one
dict lookup instead of a walk.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import islice
from typing import Any

from spyderd.model.events import Event
from spyderd.model.nodes import Node
from spyderd.rules.context import MAX_DEPTH, MAX_DESCENDANTS, GraphContext

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


def either_pure(left: Predicate, right: Predicate) -> Predicate:
    """`left or right` when neither side can add refs."""
    return lambda ev, node, ctx, refs: left(ev, node, ctx, refs) or right(ev, node, ctx, refs)


def all_of(preds: tuple[Predicate, ...]) -> Predicate:
    """`p1 and p2 and ...` for predicates that cannot add refs, as one closure."""
    if len(preds) == 2:
        a, b = preds
        return lambda ev, node, ctx, refs: a(ev, node, ctx, refs) and b(ev, node, ctx, refs)
    if len(preds) == 3:
        a, b, c = preds
        return lambda ev, node, ctx, refs: (
            a(ev, node, ctx, refs) and b(ev, node, ctx, refs) and c(ev, node, ctx, refs)
        )

    def all_(ev: Event | None, node: Node, ctx: GraphContext, refs: list[Node]) -> bool:
        for p in preds:
            if not p(ev, node, ctx, refs):
                return False
        return True

    return all_


def any_of(preds: tuple[Predicate, ...]) -> Predicate:
    """`p1 or p2 or ...` for predicates that cannot add refs, as one closure."""
    if len(preds) == 2:
        a, b = preds
        return lambda ev, node, ctx, refs: a(ev, node, ctx, refs) or b(ev, node, ctx, refs)
    if len(preds) == 3:
        a, b, c = preds
        return lambda ev, node, ctx, refs: (
            a(ev, node, ctx, refs) or b(ev, node, ctx, refs) or c(ev, node, ctx, refs)
        )

    def any_(ev: Event | None, node: Node, ctx: GraphContext, refs: list[Node]) -> bool:
        for p in preds:
            if p(ev, node, ctx, refs):
                return True
        return False

    return any_


def negate_pure(inner: Predicate) -> Predicate:
    """`not inner` when inner cannot add refs."""
    return lambda ev, node, ctx, refs: not inner(ev, node, ctx, refs)


def memoized(pred: Predicate, epoch: list[int], pure: bool) -> Predicate:
    """A macro's predicate that remembers its last answer for one event.

    Several rules of a kind often share a macro (`file_written`, `web_server`): within one
    `RuleSet.match` call (one value of `epoch[0]`), the same subject gets the same answer,
    so it is computed once. The refs it added are replayed on a hit.
    """
    last: list = [-1, None, None, False, ()]  # epoch, ev, node, result, refs

    def macro(ev: Event | None, node: Node, ctx: GraphContext, refs: list[Node]) -> bool:
        now = epoch[0]
        if last[0] == now and last[2] is node and last[1] is ev:
            if last[4]:
                refs.extend(last[4])
            return last[3]
        if pure:
            result = pred(ev, node, ctx, refs)
            last[0], last[1], last[2], last[3] = now, ev, node, result
            return result
        mark = len(refs)
        result = pred(ev, node, ctx, refs)
        last[0], last[1], last[2], last[3], last[4] = now, ev, node, result, tuple(refs[mark:])
        return result

    return macro


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


class AncestorCache:
    """Results of one ancestor() operator per process image, keyed by node id.

    The ancestry of an image is immutable, but some attributes of the ancestors are not
    (`process.listening` turns true at `listen`): `kinds` are the event kinds after which a
    cached result may be stale, and the RuleSet clears the cache when one arrives. An entry
    holds the node object it was computed for, so a different node under the same id (a
    reloaded or a test node) is a miss, never a wrong answer. Bounded: cleared when full.
    """

    __slots__ = ("entries", "hits", "kinds", "misses")
    LIMIT = 65536

    def __init__(self, kinds: frozenset[str]) -> None:
        self.kinds = kinds
        self.entries: dict[str, tuple[Node, Any]] = {}
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        self.entries.clear()

    def put(self, node: Node, value: Any) -> None:
        if len(self.entries) >= self.LIMIT:
            self.entries.clear()
        self.entries[node.id] = (node, value)


_MISS = object()


def on_ancestor(
    inner: Predicate, depth: int | None, cache: AncestorCache | None = None
) -> Predicate:
    """`ancestor(inner, depth=N)`: the nearest ancestor satisfying inner joins refs.

    The walk is cut at `depth` (or MAX_DEPTH) here as well, whatever the context does. With a
    cache, an unbounded operator remembers for each image the nearest match at or above it,
    so a walk stops at the first image already seen; a depth-bounded one remembers inner's
    result per image and never walks past `depth`.
    """
    limit = MAX_DEPTH if depth is None else depth
    if cache is None:
        return _ancestor_uncached(inner, limit)
    if depth is None:
        return _ancestor_nearest(inner, cache)
    return _ancestor_bounded(inner, limit, cache)


def _ancestor_uncached(inner: Predicate, limit: int) -> Predicate:
    def ancestor(ev: Event | None, node: Node, ctx: GraphContext, refs: list[Node]) -> bool:
        for up in islice(ctx.ancestors(node, limit), limit):
            mark = len(refs)
            if inner(None, up, ctx, refs):
                refs.insert(mark, up)
                return True
            del refs[mark:]
        return False

    return ancestor


def _ancestor_bounded(inner: Predicate, limit: int, cache: AncestorCache) -> Predicate:
    entries = cache.entries

    def ancestor(ev: Event | None, node: Node, ctx: GraphContext, refs: list[Node]) -> bool:
        for up in islice(ctx.ancestors(node, limit), limit):
            hit = entries.get(up.id)
            if hit is None or hit[0] is not up:
                found: list[Node] = []
                hit = (up, (inner(None, up, ctx, found), tuple(found)))
                cache.put(up, hit[1])
            ok, inner_refs = hit[1]
            if ok:
                refs.append(up)
                refs.extend(inner_refs)
                return True
        return False

    return ancestor


def _ancestor_nearest(inner: Predicate, cache: AncestorCache) -> Predicate:
    def ancestor(ev: Event | None, node: Node, ctx: GraphContext, refs: list[Node]) -> bool:
        up = ctx.parent(node)
        if up is None:
            return False
        found = _nearest(inner, up, ctx, cache)
        if found is None or found[0] >= MAX_DEPTH:
            return False
        refs.append(found[1])
        refs.extend(found[2])
        return True

    return ancestor


def _nearest(
    inner: Predicate, start: Node, ctx: GraphContext, cache: AncestorCache
) -> tuple[int, Node, tuple[Node, ...]] | None:
    """(distance, node, inner refs) of the nearest node at or above `start` satisfying inner.

    Walks up until a match, a cached image, the top, a cycle or MAX_DEPTH; every image walked
    through is then cached with its own distance. A walk cut by a cycle or MAX_DEPTH caches
    nothing, because images above the cut would see further than this walk did.
    """
    entries = cache.entries
    path: list[Node] = []
    seen: set[str] = set()
    cur: Node | None = start
    base: Any = None  # nearest match relative to `cur`, or None
    cacheable = True
    while cur is not None:
        hit = entries.get(cur.id, _MISS)
        if hit is not _MISS and hit[0] is cur:  # type: ignore[index]
            cache.hits += 1
            base = hit[1]  # type: ignore[index]
            break
        if cur.id in seen or len(path) >= MAX_DEPTH:
            cacheable = False
            break
        cache.misses += 1
        seen.add(cur.id)
        found: list[Node] = []
        if inner(None, cur, ctx, found):
            base = (0, cur, tuple(found))
            cache.put(cur, base)
            break
        path.append(cur)
        cur = ctx.parent(cur)
    if not cacheable:
        return None
    for i in range(len(path) - 1, -1, -1):
        if base is not None:
            base = (base[0] + 1, base[1], base[2])
        cache.put(path[i], base)
    return base


def on_descendant(inner: Predicate, within_ns: int | None) -> Predicate:
    """`descendant(inner, within=D)`: an image below the subject, started at most D after it.

    Looks at what the graph holds when the rule runs: descendants that start later are not
    waited for (write a `sequence:` rule for that). Breadth-first, so the nearest one joins refs.
    """

    def descendant(ev: Event | None, node: Node, ctx: GraphContext, refs: list[Node]) -> bool:
        for down in islice(ctx.descendants(node, within_ns), MAX_DESCENDANTS):
            mark = len(refs)
            if inner(None, down, ctx, refs):
                refs.insert(mark, down)
                return True
            del refs[mark:]
        return False

    return descendant


def on_sibling(inner: Predicate) -> Predicate:
    """`sibling(inner)`: another process started by the subject's parent process.

    The graph keeps one node per image, so "the parent process" is found by climbing over
    exec links to the image that forked the subject's process; its other children count, with
    every image each of them exec'd. The subject's own line is left out.
    """

    def sibling(ev: Event | None, node: Node, ctx: GraphContext, refs: list[Node]) -> bool:
        own, forker = _forker(node, ctx)
        if forker is None:
            return False
        for child in ctx.children(forker)[:MAX_DESCENDANTS]:
            if child.id == own.id:
                continue
            for image in _exec_line(child, ctx):
                mark = len(refs)
                if inner(None, image, ctx, refs):
                    refs.insert(mark, image)
                    return True
                del refs[mark:]
        return False

    return sibling


def _forker(node: Node, ctx: GraphContext) -> tuple[Node, Node | None]:
    """(the fork child the subject's process began as, the image that forked it)."""
    cur = node
    for _ in range(MAX_DEPTH):
        up = ctx.parent(cur)
        if up is None or cur.via != "exec":
            return cur, up
        cur = up
    return cur, None


def _exec_line(first: Node, ctx: GraphContext) -> list[Node]:
    """`first` and the images its process exec'd into, in order."""
    line, cur = [first], first
    for _ in range(MAX_DEPTH):
        nxt = [c for c in ctx.children(cur) if c.via == "exec"]
        if not nxt:
            break
        cur = nxt[0]
        line.append(cur)
    return line


def on_each(lookup: Callable[[Node, GraphContext], list[Node]], inner: Predicate) -> Predicate:
    """inner tested on each node `lookup` returns (peers); the first that satisfies joins refs."""

    def each(ev: Event | None, node: Node, ctx: GraphContext, refs: list[Node]) -> bool:
        for other in lookup(node, ctx):
            mark = len(refs)
            if inner(None, other, ctx, refs):
                refs.insert(mark, other)
                return True
            del refs[mark:]
        return False

    return each


def on_one(lookup: Callable[[Node, GraphContext], Node | None], inner: Predicate) -> Predicate:
    """inner tested on the one node `lookup` returns (session, writer), which joins refs."""

    def one(ev: Event | None, node: Node, ctx: GraphContext, refs: list[Node]) -> bool:
        other = lookup(node, ctx)
        if other is None:
            return False
        mark = len(refs)
        if inner(None, other, ctx, refs):
            refs.insert(mark, other)
            return True
        del refs[mark:]
        return False

    return one
