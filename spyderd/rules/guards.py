"""Guards: what one field must be for a rule to have a chance, so most rules are never tried.

Most rules start with a test that rules out nearly every event: `process.name in (...)`,
`file.changed_path startswith /etc/cron`, `file.path startswith /var/log/`. Such a rule cannot match
an event whose value is outside that set, so `RuleSet` files it by that value: by exact
process name in a dict, and per field in a group whose union (one set lookup and one
`str.startswith` with a tuple) is checked once for all the group's rules. A guard is read off
the condition's tree at load time:

- `F in (...)`, `F in list`, `F = x`: those values; `F startswith p` / `F endswith s`: that
  prefix or suffix; `F pmatch (p, ...)`: p itself, or the prefix p/;
- `a and b`: the guards of both (either conjunct constrains the whole);
- `a or b`: per field guarded on both sides, the union;
- a macro: the same over its (or-ed) parts;
- anything else (`not`, causal operators, other tests): nothing.

F is one of `GUARD_FIELDS`, read with its plain getter. When a rule has guards on several
fields, the first field of `GUARD_FIELDS` is used. A guard only narrows which rules are
*tried*; a rule that is tried is evaluated in full, so no guard can invent a match.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lark import Token, Tree

from spyderd.errors import RuleError
from spyderd.rules.collector import ListDef, MacroDef
from spyderd.rules.parser import parse_condition
from spyderd.rules.source import SourceText
from spyderd.rules.values import unquote

GUARD_FIELDS = ("process.name", "file.changed_path", "file.path", "file.name", "process.exe")
# old names read as the field they stand for, so a rule using one is guarded the same way
_CANONICAL = {"file.target": "file.changed_path"}


@dataclass(frozen=True, slots=True)
class Guard:
    """`field` must equal one of `exact`, start with one of `prefixes` or end with one of
    `suffixes`."""

    field: str
    exact: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    suffixes: tuple[str, ...] = ()

    def allows(self, value: object) -> bool:
        return isinstance(value, str) and (
            value in self.exact or value.startswith(self.prefixes) or value.endswith(self.suffixes)
        )

    def union(self, other: Guard) -> Guard:
        return Guard(
            self.field,
            self.exact | other.exact,
            (*self.prefixes, *other.prefixes),
            (*self.suffixes, *other.suffixes),
        )


Guards = dict[str, Guard]  # field -> guard


def _path_guard(name: str, paths: list[str]) -> Guard:
    """`F pmatch (p, ...)`: F is p itself or lies below it."""
    exact = frozenset(p.rstrip("/") or "/" for p in paths)
    return Guard(name, exact, tuple(p if p.endswith("/") else p + "/" for p in exact))


class GuardFinder:
    """Reads guards off conditions, with the lists and macros they may use."""

    def __init__(self, lists: Mapping[str, ListDef], macros: Mapping[str, MacroDef]) -> None:
        self.lists = lists
        self.macros = macros
        self._macro_guards: dict[str, Guards] = {}

    def guard(self, src: SourceText) -> Guard | None:
        """The guard of the first field of GUARD_FIELDS the condition constrains."""
        try:
            found = self._tree(parse_condition(src), ())
        except RuleError:
            return None
        return next((found[f] for f in GUARD_FIELDS if f in found), None)

    def _tree(self, tree: Tree, stack: tuple[str, ...]) -> Guards:
        kind = tree.data
        kids = tree.children
        if kind == "and_":
            return {**self._tree(kids[1], stack), **self._tree(kids[0], stack)}
        if kind == "or_":
            left, right = self._tree(kids[0], stack), self._tree(kids[1], stack)
            return {f: g.union(right[f]) for f, g in left.items() if f in right}
        if kind == "ref":
            return self._macro(str(kids[0]), stack)
        if not kids or not isinstance(kids[0], Token):
            return {}
        name = _CANONICAL.get(str(kids[0]), str(kids[0]))
        if name not in GUARD_FIELDS:
            return {}
        if kind == "in_values":
            values = kids[1].children if kids[1] is not None else []
            return {name: Guard(name, frozenset(v for item in values for v in self._item(item)))}
        if kind == "in_list":
            return {name: Guard(name, frozenset(self._list(str(kids[1]), ())))}
        if kind in ("set_values", "set_list") and str(kids[1].children[0]) == "pmatch":
            if kind == "set_list":
                paths = self._list(str(kids[2]), ())
            else:
                paths = [v for item in (kids[2].children if kids[2] is not None else [])
                         for v in self._item(item)]  # fmt: skip
            return {name: _path_guard(name, paths)}
        if kind == "compare":
            op = str(kids[1].children[0])
            if op == "=":
                return {name: Guard(name, frozenset(self._item(kids[2], expand=False)))}
            if op == "startswith":
                return {name: Guard(name, prefixes=tuple(self._item(kids[2], expand=False)))}
            if op == "endswith":
                return {name: Guard(name, suffixes=tuple(self._item(kids[2], expand=False)))}
        return {}

    def _item(self, tok: Token, expand: bool = True) -> list[str]:
        if tok.type == "STRING":
            return [unquote(str(tok))]
        word = str(tok)
        if expand and word in self.lists:
            return self._list(word, ())
        return [word]

    def _list(self, name: str, stack: tuple[str, ...]) -> list[str]:
        if name in stack or name not in self.lists:
            return []
        out: list[str] = []
        for raw, _, _ in self.lists[name].items:
            if isinstance(raw, str) and raw in self.lists:
                out.extend(self._list(raw, (*stack, name)))
            else:
                out.append(str(raw))
        return out

    def _macro(self, name: str, stack: tuple[str, ...]) -> Guards:
        if name not in self.macros or name in stack:
            return {}
        if name not in self._macro_guards:
            merged: Guards | None = None
            for text in self.macros[name].parts:
                try:
                    part = self._tree(parse_condition(text), (*stack, name))
                except RuleError:
                    part = {}
                merged = (
                    part
                    if merged is None
                    else {f: g.union(part[f]) for f, g in merged.items() if f in part}
                )
            self._macro_guards[name] = merged or {}
        return self._macro_guards[name]
