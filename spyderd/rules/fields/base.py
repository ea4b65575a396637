"""What every field module shares: the Field record, event kind sets and generic getters.

A field reads one value from the subject of a rule: the event (`ev`) and the process image
it belongs to (`node`). Getters take (ev, node); fields that need the graph take a `ctx_get`.
A missing value (None) makes every comparison false.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from spyderd.model.events import EVENT_TYPES, Event, ExecEvent
from spyderd.model.nodes import Node
from spyderd.rules.context import GraphContext

FIELD_TYPES = ("str", "int", "bool", "list[str]", "duration", "ip")
ALL_KINDS = frozenset(EVENT_TYPES)

Getter = Callable[[Event | None, Node], Any]
CtxGetter = Callable[[Event | None, Node, GraphContext], Any]
Reader = Callable[[Event | None, Node, GraphContext], Any]


@dataclass(frozen=True, slots=True)
class Field:
    """One field: its type, the event kinds that provide it, and how to read it.

    `choices`: the values an enumerated str field can take (file.op, kernel.call, ...); a
    literal outside them is a located error with the nearest ones suggested, because it can
    never match. `deprecated`: the field's new name, for an old name kept working.
    """

    name: str
    type: str
    kinds: frozenset[str]
    doc: str
    get: Getter
    from_event: bool = False  # read from the event only: missing inside causal operators
    of_parent: bool = False  # read from ctx.parent(node) instead of node
    hop: str = ""  # "session" or "machine": read from that context node
    ctx_get: CtxGetter | None = None  # reads the graph itself (connections, ...)
    mutable_on: frozenset[str] = frozenset()
    choices: frozenset[str] = frozenset()
    deprecated: str = ""


def node_field(name: str, type_: str, doc: str, get: Getter, **kw: Any) -> Field:
    """A field of the image (or a context node), present on events of every kind."""
    return Field(name, type_, ALL_KINDS, doc, get, **kw)


def event_field(name: str, type_: str, kinds: frozenset[str], doc: str, get: Getter,
                **kw: Any) -> Field:  # fmt: skip
    """A field read from the event alone, present on events of `kinds`."""
    return Field(name, type_, kinds, doc, get, from_event=True, **kw)


def event_attr(name: str, type_: str, kinds: frozenset[str], doc: str, missing: Any = None,
               **kw: Any) -> Field:  # fmt: skip
    """An event field read straight from the attribute after the dot (`file.op` -> ev.op)."""
    return event_field(name, type_, kinds, doc, ev_attr(name.split(".", 1)[1], kinds, missing),
                       **kw)  # fmt: skip


def attr(key: str) -> Getter:
    """A node attribute; "" and None read as missing."""

    def get(ev: Event | None, node: Node) -> Any:
        value = node.attrs.get(key)
        return None if value is None or value == "" else value

    return get


def id_attr(key: str) -> Getter:
    """A numeric id attribute where -1 (and absence) mean unknown."""

    def get(ev: Event | None, node: Node) -> Any:
        value = node.attrs.get(key)
        return None if value is None or value == -1 or value == "" else value

    return get


def exec_attr(key: str, unset: Any = "") -> Getter:
    """A node attribute the exec event also carries: the node first, then the event."""

    def get(ev: Event | None, node: Node) -> Any:
        value = node.attrs.get(key)
        if (value is None or value == unset) and isinstance(ev, ExecEvent):
            value = getattr(ev, key)
        return None if value is None or value == unset else value

    return get


def bool_attr(key: str) -> Getter:
    def get(ev: Event | None, node: Node) -> Any:
        value = node.attrs.get(key)
        return None if value is None else bool(value)

    return get


def ev_attr(attr: str, kinds: frozenset[str], missing: Any = None) -> Getter:
    """An event attribute, only on events of `kinds`; `missing` values read as None."""

    def get(ev: Event | None, node: Node) -> Any:
        if ev is None or ev.kind not in kinds:
            return None
        value = getattr(ev, attr, None)
        return None if value == missing and missing is not None else value

    return get
