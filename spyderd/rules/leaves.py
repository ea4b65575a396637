"""Leaf predicates: one field tested against literals, built for the hot path.

Every event meets every rule of its kind, so the leaves are where the time goes. Each leaf is
one closure that reads the field and tests it inline: a field that needs no graph lookup is
read with its two-argument getter directly, a set membership (and an equality: a set of
one) is `in` on a frozenset. A missing value (None) is false for every test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from spyderd.model.events import Event
from spyderd.model.nodes import Node
from spyderd.rules.context import GraphContext
from spyderd.rules.fields import Field, Getter, Reader, field_reader

Predicate = Callable[[Event | None, Node, GraphContext, list[Node]], bool]


def direct_getter(fld: Field) -> Getter | None:
    """The field's own (ev, node) getter when reading it needs no graph lookup."""
    if fld.of_parent or fld.hop or fld.ctx_get is not None:
        return None
    return fld.get


def tested(fld: Field, test: Callable[[Any], bool]) -> Predicate:
    """`test(value)` on the field's value; false when missing."""
    get = direct_getter(fld)
    if get is not None:

        def leaf(ev: Event | None, node: Node, ctx: GraphContext, refs: list[Node]) -> bool:
            got = get(ev, node)
            return got is not None and test(got)

        return leaf
    read = field_reader(fld)

    def leaf_ctx(ev: Event | None, node: Node, ctx: GraphContext, refs: list[Node]) -> bool:
        got = read(ev, node, ctx)
        return got is not None and test(got)

    return leaf_ctx


def member(fld: Field, members: frozenset) -> Predicate:
    """`field in (...)` for a scalar, non-ip field: a frozenset lookup."""
    get = direct_getter(fld)
    if get is not None:
        return lambda ev, node, ctx, refs: get(ev, node) in members
    read: Reader = field_reader(fld)
    return lambda ev, node, ctx, refs: read(ev, node, ctx) in members


def present(fld: Field) -> Predicate:
    """`field exists`."""
    get = direct_getter(fld)
    if get is not None:
        return lambda ev, node, ctx, refs: get(ev, node) is not None
    read: Reader = field_reader(fld)
    return lambda ev, node, ctx, refs: read(ev, node, ctx) is not None


def true(fld: Field) -> Predicate:
    """A bool field standing alone."""
    get = direct_getter(fld)
    if get is not None:
        return lambda ev, node, ctx, refs: get(ev, node) is True
    read: Reader = field_reader(fld)
    return lambda ev, node, ctx, refs: read(ev, node, ctx) is True


class Leaf:
    """What a leaf tests, kept so `a or b` on the same field can become one leaf.

    `kind` is "in" (payload: frozenset), "startswith" / "endswith" / "contains" (payload: a
    tuple of strings; contains only for str fields) or "test" (payload: a callable).
    `field or field` chains (`file.changed_path startswith /etc/cron or file.changed_path = /etc/crontab
    or ...`) then read the value once and test it once: `str.startswith` takes a tuple.
    """

    __slots__ = ("field", "kind", "payload")

    def __init__(self, fld: Field, kind: str, payload: Any) -> None:
        self.field = fld
        self.kind = kind
        self.payload = payload

    def predicate(self) -> Predicate:
        if self.kind == "in":
            return member(self.field, self.payload)
        return tested(self.field, self.test())

    def test(self) -> Callable[[Any], bool]:
        p = self.payload
        if self.kind == "in":
            return p.__contains__
        if self.kind == "startswith":
            return lambda got: got.startswith(p)
        if self.kind == "endswith":
            return lambda got: got.endswith(p)
        if self.kind == "contains":
            return lambda got: any(s in got for s in p)
        return p

    def fuse(self, other: Leaf) -> Leaf:
        """`self or other` (same field) as one leaf."""
        if self.kind == other.kind and self.kind != "test":
            joined = (
                self.payload | other.payload
                if self.kind == "in"
                else (*self.payload, *other.payload)
            )
            return Leaf(self.field, self.kind, joined)
        a, b = self.test(), other.test()
        return Leaf(self.field, "test", lambda got: a(got) or b(got))
