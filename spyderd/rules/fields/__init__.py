"""The field catalogue: every name a condition or an output template may use.

One module per namespace: `process` (process.*, parent.*), `context` (user, group,
container, k8s, session, machine), `network` (connection, unix), `files` (file,
wrote_exec), `kernel` (kernel, cred, prctl), `events` (evt, exit, fork, alert); `base` holds
the Field record and the generic getters. `constants` names flag and request values
(O_TRUNC, PTRACE_ATTACH, SIGKILL ...), `falco` maps Falco's field names to these.

Inside a causal operator (`parent(...)`, `ancestor(...)`, ...) the subject is another node
and there is no event, so event fields read as missing there. A missing value (None) makes
every comparison false, `!=` included; `exists` tests for it.

`mutable_on` names the event kinds after which a field's value on an existing node may change
(`process.listening` after `listen`). Cached ancestry results that read such a field are
dropped when an event of that kind arrives (see `combinators.AncestorCache`).

Types: str, int, bool, list[str], duration (ns; literals like 30s), ip (a str holding an
IPv4/IPv6 address; compares as an address and accepts CIDR networks in `in (...)`).
"""

from __future__ import annotations

import difflib
from types import MappingProxyType
from typing import Any

from spyderd.model.events import Event
from spyderd.model.nodes import Node
from spyderd.rules.context import GraphContext, parent_process
from spyderd.rules.fields.base import ALL_KINDS, FIELD_TYPES, Field, Getter, Reader
from spyderd.rules.fields.capture import capture_fields, env_field
from spyderd.rules.fields.context import context_fields
from spyderd.rules.fields.events import event_fields
from spyderd.rules.fields.files import file_fields
from spyderd.rules.fields.kernel import kernel_fields
from spyderd.rules.fields.network import network_fields
from spyderd.rules.fields.process import HOST_NS, parent_fields, process_fields, process_name

__all__ = [
    "ALL_KINDS",
    "FIELDS",
    "FIELD_TYPES",
    "HOST_NS",
    "Field",
    "Getter",
    "Reader",
    "describe",
    "field_reader",
    "kinds_text",
    "markdown",
    "process_name",
    "suggest",
]


def _catalogue() -> MappingProxyType[str, Field]:
    process = process_fields()
    fields = [
        *event_fields(),
        *network_fields(),
        *file_fields(),
        *kernel_fields(),
        *process,
        *parent_fields(process),
        *context_fields(),
        *capture_fields(),
    ]
    return MappingProxyType(_Catalogue({fld.name: fld for fld in fields}))


class _Catalogue(dict):
    """The field table; `process.env.NAME` and `parent.env.NAME` exist for every NAME."""

    def __missing__(self, name: str) -> Field:
        for prefix, parent in (("process.env.", False), ("parent.env.", True)):
            var = name.removeprefix(prefix)
            if var != name and var.replace("_", "a").isalnum() and not var[0].isdigit():
                fld = self[name] = env_field(var, parent)
                return fld
        raise KeyError(name)

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        try:
            return self[name]
        except KeyError:
            return default


FIELDS: MappingProxyType[str, Field] = _catalogue()


def field_reader(fld: Field) -> Reader:
    """How to read `fld` from a subject: from the node, its parent or a context node."""
    get = fld.get
    if fld.ctx_get is not None:
        return fld.ctx_get
    if fld.of_parent:

        def read_parent(ev: Event | None, node: Node, ctx: GraphContext) -> Any:
            up = parent_process(ctx, node)
            return None if up is None else get(None, up)

        return read_parent
    if fld.hop == "session":

        def read_session(ev: Event | None, node: Node, ctx: GraphContext) -> Any:
            if node.kind == "session":
                return get(None, node)
            sess = ctx.session(node)
            return get(None, sess) if sess is not None else get(None, node)

        return read_session
    if fld.hop == "machine":

        def read_machine(ev: Event | None, node: Node, ctx: GraphContext) -> Any:
            mach = node if node.kind == "machine" else ctx.machine(node)
            return None if mach is None else get(None, mach)

        return read_machine
    return lambda ev, node, ctx: get(ev, node)


def suggest(name: str, names: list[str] | None = None) -> list[str]:
    """The nearest valid names to a misspelt one, best first."""
    return difflib.get_close_matches(
        name, names if names is not None else list(FIELDS), n=3, cutoff=0.6
    )


def kinds_text(fld: Field) -> str:
    return "all" if fld.kinds == ALL_KINDS else ", ".join(sorted(fld.kinds))


def describe() -> str:
    """The catalogue as text, for `spyderctl rules fields` and the docs."""
    rows = []
    for fld in sorted(FIELDS.values(), key=lambda f: f.name):
        kinds = "all" if fld.kinds == ALL_KINDS else ",".join(sorted(fld.kinds))
        rows.append(f"{fld.name:24} {fld.type:10} {kinds:22} {fld.doc}")
    return "\n".join(rows)


def markdown() -> str:
    """The catalogue as Markdown tables grouped by prefix (docs/rules.md is built from it)."""
    groups: dict[str, list[Field]] = {}
    for fld in FIELDS.values():
        groups.setdefault(fld.name.split(".", 1)[0], []).append(fld)
    out = []
    for prefix in sorted(groups, key=_group_order):
        out += [f"### {prefix}.*", "", "| field | type | events | meaning |", "|---|---|---|---|"]
        for fld in sorted(groups[prefix], key=lambda f: f.name):
            doc = fld.doc.replace("|", "\\|")
            out.append(f"| `{fld.name}` | {fld.type} | {kinds_text(fld)} | {doc} |")
        out.append("")
    return "\n".join(out)


_ORDER = ("process", "parent", "user", "group", "session", "container", "k8s", "machine", "evt")


def _group_order(prefix: str) -> tuple[int, str]:
    return (_ORDER.index(prefix) if prefix in _ORDER else len(_ORDER), prefix)
