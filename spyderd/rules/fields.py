"""The field catalogue: every name a condition or an output template may use.

A field reads one value from the subject of a rule: the event (`ev`) and the process image it
belongs to (`node`). Inside `parent(...)` and `ancestor(...)` the subject is an ancestor image
and there is no event, so event fields (`connection.*`, `exit.*`, `evt.kind`) read as missing
there. A missing value (None) makes every comparison false, `!=` included; `exists` tests for
it. `parent.*` fields read the same value as `process.*` from the image this one came from
(`ctx.parent(node)`: the forking parent, or the image an exec replaced).

Types: str, int, bool, list[str], ip (a str holding an IPv4/IPv6 address; compares as an
address and accepts CIDR networks in `in (...)`).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from spyderd.model.events import EVENT_TYPES, Event, ExecEvent
from spyderd.model.nodes import Node
from spyderd.rules.context import GraphContext

FIELD_TYPES = ("str", "int", "bool", "list[str]", "ip")
ALL_KINDS = frozenset(EVENT_TYPES)
_CONN = frozenset({"connect", "accept"})
_SOCK = frozenset({"connect", "accept", "listen"})

Getter = Callable[[Event | None, Node], Any]
Reader = Callable[[Event | None, Node, GraphContext], Any]


@dataclass(frozen=True, slots=True)
class Field:
    """One field: its type, the event kinds that provide it, and how to read it."""

    name: str
    type: str
    kinds: frozenset[str]
    doc: str
    get: Getter
    from_event: bool = False  # read from the event only: missing inside parent()/ancestor()
    of_parent: bool = False  # read from ctx.parent(node) instead of node


def _exe(ev: Event | None, node: Node) -> str | None:
    exe = node.attrs.get("exe")
    if not exe and isinstance(ev, ExecEvent):
        exe = ev.filename
    return exe or None


def _args(ev: Event | None, node: Node) -> list[str] | None:
    args = node.attrs.get("args")
    if args is None and isinstance(ev, ExecEvent):
        args = ev.args
    return None if args is None else list(args)


def _cmdline(ev: Event | None, node: Node) -> str | None:
    args = _args(ev, node)
    return None if args is None else " ".join(args)


def _name(ev: Event | None, node: Node) -> str | None:
    exe = _exe(ev, node)
    if exe:
        return exe.rsplit("/", 1)[-1]
    return node.attrs.get("comm") or (ev.comm if ev is not None else None) or None


def _comm(ev: Event | None, node: Node) -> str | None:
    return node.attrs.get("comm") or (ev.comm if ev is not None else None) or None


def _attr(key: str) -> Getter:
    return lambda ev, node: node.attrs.get(key) or None


def _event_attr(attr: str, kinds: frozenset[str]) -> Getter:
    return lambda ev, node: getattr(ev, attr, None) if ev is not None and ev.kind in kinds else None


def _process_fields() -> list[Field]:
    def f(name: str, type_: str, doc: str, get: Getter) -> Field:
        return Field(name, type_, ALL_KINDS, doc, get)

    return [
        f("process.name", "str", "Program name: basename of the executable, else comm.", _name),
        f("process.exe", "str", "Path of the executable the image runs.", _exe),
        f("process.args", "list[str]", "Argument vector; `contains` tests for one element.", _args),
        f("process.cmdline", "str", "The arguments joined by spaces.", _cmdline),
        f("process.comm", "str", "The kernel's 16-byte task name.", _comm),
        f("process.cwd", "str", "Working directory, when known.", _attr("cwd")),
        f("process.pid", "int", "Process id.", lambda ev, node: node.pid),
        f("process.ppid", "int", "Parent process id.", lambda ev, node: node.ppid),
        f("process.uid", "int", "User id the image runs as.", lambda ev, node: node.uid),
        f("process.id", "str", "Graph id of the process image.", lambda ev, node: node.id),
        f(
            "process.listening",
            "bool",
            "True once the image listened on a TCP port.",
            lambda ev, node: bool(node.attrs.get("listen_ports")),
        ),
        f(
            "process.accepts",
            "int",
            "Inbound connections the image accepted so far.",
            lambda ev, node: int(node.attrs.get("accepts", 0)),
        ),
        f(
            "process.container_id",
            "str",
            "Container id; missing on the host.",
            _attr("container_id"),
        ),
    ]


def _parent_fields(process: list[Field]) -> list[Field]:
    wanted = ("name", "exe", "args", "cmdline", "comm", "pid", "uid", "id")
    by_name = {fld.name: fld for fld in process}
    return [
        Field(
            "parent." + key,
            by_name["process." + key].type,
            ALL_KINDS,
            f"Parent image's {key} (see process.{key}).",
            by_name["process." + key].get,
            of_parent=True,
        )
        for key in wanted
    ]


def _event_fields() -> list[Field]:
    def f(name: str, type_: str, kinds: frozenset[str], doc: str, get: Getter) -> Field:
        return Field(name, type_, kinds, doc, get, from_event=True)

    return [
        f(
            "evt.kind",
            "str",
            ALL_KINDS,
            "Event kind: exec, fork, exit, connect, accept, listen.",
            lambda ev, node: ev.kind if ev is not None else None,
        ),
        f(
            "evt.time",
            "int",
            ALL_KINDS,
            "Event wall-clock time, ns.",
            lambda ev, node: ev.time if ev is not None else None,
        ),
        Field(
            "user.uid",
            "int",
            ALL_KINDS,
            "Uid of the event, else of the image.",
            lambda ev, node: ev.uid if ev is not None else node.uid,
        ),
        f(
            "connection.family",
            "int",
            _SOCK,
            "Address family: 4 or 6.",
            _event_attr("family", _SOCK),
        ),
        f("connection.local_ip", "ip", _SOCK, "Local address.", _event_attr("local_ip", _SOCK)),
        f("connection.local_port", "int", _SOCK, "Local port.", _event_attr("local_port", _SOCK)),
        f("connection.remote_ip", "ip", _CONN, "Remote address.", _event_attr("remote_ip", _CONN)),
        f(
            "connection.remote_port",
            "int",
            _CONN,
            "Remote port.",
            _event_attr("remote_port", _CONN),
        ),
        f(
            "connection.result",
            "int",
            _CONN,
            "0 when established, else -errno.",
            _event_attr("result", _CONN),
        ),
        f(
            "exit.code",
            "int",
            frozenset({"exit"}),
            "Exit status.",
            _event_attr("code", frozenset({"exit"})),
        ),
        f(
            "exit.signal",
            "int",
            frozenset({"exit"}),
            "Signal that ended the process, or 0.",
            _event_attr("signal", frozenset({"exit"})),
        ),
    ]


def _catalogue() -> MappingProxyType[str, Field]:
    process = _process_fields()
    fields = [*_event_fields(), *process, *_parent_fields(process)]
    return MappingProxyType({fld.name: fld for fld in fields})


FIELDS: MappingProxyType[str, Field] = _catalogue()


def field_reader(fld: Field) -> Reader:
    """How to read `fld` from a subject; parent.* hops to the parent image first."""
    get = fld.get
    if not fld.of_parent:
        return lambda ev, node, ctx: get(ev, node)

    def read_parent(ev: Event | None, node: Node, ctx: GraphContext) -> Any:
        up = ctx.parent(node)
        return None if up is None else get(None, up)

    return read_parent


def suggest(name: str, names: list[str] | None = None) -> list[str]:
    """The nearest valid names to a misspelt one, best first."""
    return difflib.get_close_matches(
        name, names if names is not None else list(FIELDS), n=3, cutoff=0.6
    )


def describe() -> str:
    """The catalogue as text, for `spyderctl rules fields` and the docs."""
    rows = []
    for fld in FIELDS.values():
        kinds = "all" if fld.kinds == ALL_KINDS else ",".join(sorted(fld.kinds))
        rows.append(f"{fld.name:24} {fld.type:10} {kinds:22} {fld.doc}")
    return "\n".join(rows)
