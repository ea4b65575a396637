"""Structured exceptions, the Falco way: named rows of values for a fixed set of fields.

```yaml
exceptions:
  - name: known_writers
    fields: [process.name, file.directory]
    comps: [=, startswith]            # optional: = for every field
    values:
      - [apt, /etc/apt]
      - [dpkg, /var/lib/dpkg]
  - name: trusted                     # one field: values are a flat list
    fields: process.name
    comps: in
    values: [ansible, salt-minion]
```

A row excuses a match when every field passes its comparison with the row's value; the rule
drops a match any row excuses. Each exception is turned into condition text
(`(process.name = "apt" and file.directory startswith "/etc/apt") or (...)`) whose field names
and values keep pointing at the YAML they came from, so the compiler's located errors
(unknown field, wrong type, bad operator) land on the exact item. A later file adds rows
with `append: true` (or `override: {exceptions: append}`) and the same `name:`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from spyderd.rules.diagnostics import Diagnostic, Location, error
from spyderd.rules.reader import Entry, construct, mapping_items, node_location
from spyderd.rules.source import SourceFile, SourceText

# comparisons whose value is a set: a row's value for them is a list
SET_COMPS = ("in", "iin", "pmatch", "ipmatch", "intersects")
_BARE = re.compile(r"[^\s(),=!<>\"'&]+")
_KEYWORDS = frozenset({"and", "or", "not", "in", "exists", "contains", "icontains", "startswith",
                       "endswith", "glob", "matches", "has", "iin", "pmatch"})  # fmt: skip
# Falco comparison names spyderd spells differently
_COMP_ALIASES = {"intersects": "in"}


@dataclass(slots=True)
class ExceptionDef:
    """One named structured exception, its fields and comparisons, and its rows."""

    name: str
    loc: Location
    fields: list[SourceText]
    comps: list[SourceText]
    rows: list[list[tuple[yaml.Node, SourceFile]]] = field(default_factory=list)  # YAML cells

    def condition(self) -> SourceText | None:
        """`(f1 c1 v1 and f2 c2 v2) or (...)`, or None when there are no rows yet."""
        rows = [row for row in self.rows if len(row) == len(self.fields) == len(self.comps)]
        if not rows or not self.fields:
            return None  # rows appended to an exception not defined (reported as E102)
        pieces: list[tuple[str, SourceText | None]] = []
        for r, row in enumerate(rows):
            pieces.append((" or (" if r else "(", None))
            for i, (fld, comp, (node, file)) in enumerate(
                zip(self.fields, self.comps, row, strict=True)
            ):
                value = _literal(node, file, comp.value in SET_COMPS)
                if i:
                    pieces.append((" and ", None))
                pieces += [("", fld), (" ", None), ("", comp), (" ", None), ("", value)]
            pieces.append((")", None))
        return SourceText.join(pieces)


def parse_exceptions(
    entry: Entry, diags: list[Diagnostic]
) -> tuple[list[SourceText], list[ExceptionDef]] | None:
    """The `exceptions:` key: plain conditions (strings) and structured ones (mappings)."""
    item = entry.items.get("exceptions")
    if item is None:
        return [], []
    if not isinstance(item.node, yaml.SequenceNode):
        diags.append(_err("E005", "exceptions: must be a list", item.node, entry.file))
        return None
    texts: list[SourceText] = []
    named: list[ExceptionDef] = []
    ok = True
    for node in item.node.value:
        if isinstance(node, yaml.ScalarNode) and isinstance(_value(node), str):
            texts.append(SourceText.from_node(node, entry.file))
        elif isinstance(node, yaml.MappingNode):
            exc = structured(node, entry.file, diags)
            ok = ok and exc is not None
            if exc is not None:
                named.append(exc)
        else:
            message = "exceptions: items are conditions or name:/fields:/values: mappings"
            diags.append(_err("E005", message, node, entry.file))
            ok = False
    return (texts, named) if ok else None


def structured(
    node: yaml.MappingNode, file: SourceFile, diags: list[Diagnostic], partial: bool = False
) -> ExceptionDef | None:
    """One `name:/fields:/comps:/values:` mapping; with `partial`, the good rows of one that
    has bad ones (to check them while the rule itself is reported broken)."""
    items = mapping_items(node, file, diags)
    if items is None:
        return None
    name = items.get("name")
    if name is None or not isinstance(name.value, str):
        diags.append(_err("E004", "a structured exception needs a name:", node, file))
        return None
    loc = node_location(node, file)
    fields_item = items.get("fields")
    if fields_item is None:  # rows appended to an exception of the same name
        exc = ExceptionDef(name.value, loc, [], [])
        return exc if _rows(exc, items.get("values"), file, diags, single=False) else None
    single = isinstance(fields_item.node, yaml.ScalarNode)
    fields = _scalars(fields_item.node, file, diags, "fields")
    if fields is None:
        return None
    comps = _comps(items.get("comps"), len(fields), single, file, diags)
    if comps is None:
        return None
    exc = ExceptionDef(name.value, loc, fields, comps)
    return exc if _rows(exc, items.get("values"), file, diags, single) or partial else None


def _scalars(
    node: yaml.Node, file: SourceFile, diags: list[Diagnostic], key: str
) -> list[SourceText] | None:
    nodes = [node] if isinstance(node, yaml.ScalarNode) else getattr(node, "value", None)
    if (
        not isinstance(nodes, list)
        or not nodes
        or not all(isinstance(n, yaml.ScalarNode) for n in nodes)
    ):
        diags.append(_err("E005", f"{key}: must be a name or a list of names", node, file))
        return None
    return [SourceText.from_node(n, file) for n in nodes]


def _comps(
    item: Any, count: int, single: bool, file: SourceFile, diags: list[Diagnostic]
) -> list[SourceText] | None:
    if item is None:
        default = "in" if single else "="
        return [SourceText(default, file, [(0, 1, 1)]) for _ in range(count)]
    comps = _scalars(item.node, file, diags, "comps")
    if comps is None:
        return None
    if len(comps) != count:
        diags.append(
            _err("E005", f"comps: needs {count} comparisons, one per field", item.node, file)
        )
        return None
    return [_alias(c) for c in comps]


def _alias(comp: SourceText) -> SourceText:
    spelled = _COMP_ALIASES.get(comp.value)
    if spelled is None:
        return comp
    loc = comp.start
    return SourceText(spelled, comp.file, [(0, loc.line, loc.col)])


def _rows(
    exc: ExceptionDef, item: Any, file: SourceFile, diags: list[Diagnostic], single: bool
) -> bool:
    """Read `values:` into rows of located literals; a row of the wrong width is an error."""
    if item is None:
        return True
    node = item.node
    if not isinstance(node, yaml.SequenceNode):
        diags.append(_err("E005", "values: must be a list", node, file))
        return False
    if single and exc.comps and exc.comps[0].value in SET_COMPS:
        exc.rows.append([(node, file)])
        return True
    ok = True
    for row in node.value:
        cells = [row] if single else getattr(row, "value", None)
        if not isinstance(row, yaml.SequenceNode if not single else yaml.Node) or not isinstance(
            cells, list
        ):
            diags.append(
                _err("E005", "each row of values: is a list, one value per field", row, file)
            )
            ok = False
            continue
        if exc.fields and len(cells) != len(exc.fields):
            message = f"this row has {len(cells)} values for {len(exc.fields)} fields"
            diags.append(_err("E005", message, row, file))
            ok = False
            continue
        exc.rows.append([(cell, file) for cell in cells])
    return ok


def _literal(
    node: yaml.Node, file: SourceFile, as_set: bool = False, in_set: bool = False
) -> SourceText:
    """A value as condition text located at its YAML node: quoted strings, bare numbers and
    booleans, `(a, b)` for a list or for one value of a set comparison (`in`, `pmatch`)."""
    loc = node_location(node, file)
    if as_set and not isinstance(node, yaml.SequenceNode):
        return SourceText.join([("(", None), ("", _literal(node, file, in_set=True)), (")", None)])
    if isinstance(node, yaml.SequenceNode):
        parts: list[tuple[str, SourceText | None]] = [("(", None)]
        for i, child in enumerate(node.value):
            parts += [(", " if i else "", None), ("", _literal(child, file, in_set=True))]
        parts.append((")", None))
        return SourceText.join(parts)
    value = _value(node)
    if in_set and isinstance(value, str) and _BARE.fullmatch(value) and value not in _KEYWORDS:
        text = value  # bare, so a list name expands as in a condition's `in (...)`
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int):
        text = str(value)
    else:
        text = '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
    return SourceText(text, file, [(0, loc.line, loc.col)])


def _value(node: yaml.ScalarNode) -> Any:
    try:
        return construct(node)
    except yaml.YAMLError:
        return node.value


def _err(code: str, message: str, node: yaml.Node, file: SourceFile) -> Diagnostic:
    loc = node_location(node, file)
    return error(code, message, loc, file.line(loc.line))


def merge(into: dict[str, ExceptionDef], new: list[ExceptionDef], diags: list[Diagnostic],
          file: SourceFile) -> None:  # fmt: skip
    """Add `new` to a rule's named exceptions: rows of a known name are appended, a new name
    must say its fields."""
    for exc in new:
        earlier = into.get(exc.name)
        if earlier is None:
            if not exc.fields:
                message = f"exception {exc.name!r} is not defined yet; give its fields:"
                diags.append(error("E102", message, exc.loc, file.line(exc.loc.line)))
                continue
            into[exc.name] = exc
        elif exc.fields:
            message = f"exception {exc.name!r} already exists; append rows without fields:"
            diags.append(error("E005", message, exc.loc, file.line(exc.loc.line)))
        else:
            if earlier.rows and exc.rows and len(exc.rows[0]) != len(earlier.fields):
                message = f"rows of {exc.name!r} have {len(earlier.fields)} values"
                diags.append(error("E005", message, exc.loc, file.line(exc.loc.line)))
                continue
            earlier.rows.extend(exc.rows)
