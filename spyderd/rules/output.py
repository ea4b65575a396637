"""Output templates: a finding's MESSAGE, built from the subject's field values.

`{process.name}` is replaced by the field's value (lists joined by spaces, a missing value by
`<NA>`); `{{` and `}}` are literal braces. `{ancestor.X}` reads `process.X` from the first node
in the match's refs: the ancestor (or parent) that made the rule's causal operator true, so
a rule `ancestor(web_server)` can name the web server it found. Templates are checked and
split once at load time; rendering only joins strings.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from spyderd.model.events import Event
from spyderd.model.nodes import Node
from spyderd.rules.context import GraphContext
from spyderd.rules.diagnostics import Diagnostic, error, warning
from spyderd.rules.fields import FIELDS, field_reader, suggest
from spyderd.rules.fields.falco import falco_template_name
from spyderd.rules.source import SourceText

MISSING = "<NA>"
REF_PREFIX = "ancestor."
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_FALCO_FIELD = re.compile(r"%([a-z][a-z0-9_]*\.[a-z0-9_.]+)")

Part = Callable[[Event | None, Node, GraphContext, list[Node]], Any]


@dataclass(frozen=True, slots=True)
class Template:
    """A checked output template: literal strings and field readers, in order."""

    text: str
    parts: tuple[str | Part, ...]

    def render(self, ev: Event | None, node: Node, ctx: GraphContext, refs: list[Node]) -> str:
        return "".join(
            p if isinstance(p, str) else _show(p(ev, node, ctx, refs)) for p in self.parts
        )


def _show(value: Any) -> str:
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value)
    return str(value)


def template_names() -> list[str]:
    """Every name a template may use: the fields, plus ancestor.* for process fields."""
    process = [n for n in FIELDS if n.startswith("process.")]
    return [*FIELDS, *(REF_PREFIX + n.removeprefix("process.") for n in process)]


def compile_template(
    src: SourceText, diags: list[Diagnostic], chain: tuple[str, ...] = ()
) -> Template | None:
    """The template in `src`, or None when a name or brace is wrong (diagnostics recorded)."""
    text = src.value
    parts: list[str | Part] = []
    ok, pos = True, 0
    for m in _TOKEN.finditer(text):
        parts.append(text[pos : m.start()])
        pos = m.end()
        token = m.group(0)
        if token in ("{{", "}}"):
            parts.append(token[0])
            continue
        part = None if m.group(1) is None else _part(m.group(1).strip())
        if part is None:
            ok = False
            diags.append(_template_error(src, m, chain))
            continue
        parts.append(part)
    parts.append(text[pos:])
    diags.extend(_falco_fields(src, chain))
    diags.extend(_deprecated(src, chain))
    merged = tuple(p for p in parts if p != "")
    return Template(text, merged) if ok else None


def _falco_fields(src: SourceText, chain: tuple[str, ...]) -> list[Diagnostic]:
    """W402 for each Falco-style `%proc.name` in a template: spyderd writes `{process.name}`
    (outside braces, `%name` is printed as it is)."""
    out = []
    for m in _FALCO_FIELD.finditer(src.value):
        name = m.group(1)
        if name not in FIELDS and falco_template_name(name) is None:
            continue
        spyder = name if name in FIELDS else falco_template_name(name)
        loc = src.locate(m.start())
        out.append(
            warning(
                "W402",
                f"'%{name}' is Falco's output syntax and is printed as it is; write {{{spyder}}}",
                loc,
                src.source_line(loc),
                chain,
            )
        )
    return out


def _deprecated(src: SourceText, chain: tuple[str, ...]) -> list[Diagnostic]:
    """W306 for an old field name in a template (it still renders)."""
    out = []
    for m in _TOKEN.finditer(src.value):
        fld = FIELDS.get((m.group(1) or "").strip())
        if fld is not None and fld.deprecated:
            loc = src.locate(m.start(1))
            message = f"{fld.name} is a deprecated name: write {{{fld.deprecated}}}"
            out.append(warning("W306", message, loc, src.source_line(loc), chain))
    return out


def _part(name: str) -> Part | None:
    """A reader for one template name, or None if the name is unknown."""
    fld = FIELDS.get(name)
    if fld is not None:
        read = field_reader(fld)
        return lambda ev, node, ctx, refs: read(ev, node, ctx)
    if name.startswith(REF_PREFIX):
        ref_fld = FIELDS.get("process." + name.removeprefix(REF_PREFIX))
        if ref_fld is not None:
            get = ref_fld.get
            return lambda ev, node, ctx, refs: get(None, refs[0]) if refs else None
    return None


def _template_error(src: SourceText, m: re.Match[str], chain: tuple[str, ...]) -> Diagnostic:
    if m.group(1) is None:
        loc = src.locate(m.start())
        return error(
            "E401",
            f"unbalanced {m.group(0)!r} in output; write {m.group(0) * 2!r} for a literal brace",
            loc,
            src.source_line(loc),
            chain=chain,
        )
    name = m.group(1).strip()
    loc = src.locate(m.start(1))
    near = suggest(name, template_names())
    hint = "; did you mean " + " or ".join(repr(n) for n in near) + "?" if near else ""
    if falco_template_name(name):
        hint = f"; this is Falco's {name}: write {{{falco_template_name(name)}}}"
    return error(
        "E401", f"unknown field {name!r} in output{hint}", loc, src.source_line(loc), chain=chain
    )
