"""Which lists and macros no rule uses (W104, W105), read off the parsed conditions.

A definition is used when a rule's condition, exception or sequence step names it, directly
or through a macro or list that is itself used. Rules that failed to load still count as
users (their other errors are reported), and so do disabled rules: switching a rule off
must not turn its helpers into noise. A file that defines no rule is a library (like the
default pack's 00-base.yaml): its lists and macros are there for other files, so only
definitions in files that also hold rules are reported.
"""

from __future__ import annotations

from collections.abc import Iterable

from lark import Token

from spyderd.errors import RuleError
from spyderd.rules.collector import Definitions
from spyderd.rules.diagnostics import Diagnostic, warning
from spyderd.rules.parser import parse_condition
from spyderd.rules.source import SourceText


def unused_definitions(defs: Definitions) -> list[Diagnostic]:
    """A warning at each list and macro that no rule reaches."""
    macros: set[str] = set()
    lists: set[str] = set()
    pending = list(_rule_texts(defs))
    while pending:
        for word in _words(pending.pop()):
            if word in defs.macros and word not in macros:
                macros.add(word)
                pending.extend(defs.macros[word].parts)
            elif word in defs.lists:
                _use_list(word, defs, lists)
    ruled = {r.loc.file for r in defs.rules.values()} | {s.loc.file for s in defs.salvaged}
    out = []
    for name, lst in defs.lists.items():
        if name not in lists and lst.loc.file in ruled:
            message = f"list {name!r} is never used by a rule"
            out.append(warning("W104", message, lst.loc, lst.source_line))
    for name, macro in defs.macros.items():
        if name not in macros and macro.loc.file in ruled:
            message = f"macro {name!r} is never used by a rule"
            out.append(warning("W105", message, macro.loc, macro.parts[0].source_line(macro.loc)))
    return out


def _rule_texts(defs: Definitions) -> Iterable[SourceText]:
    for rule in defs.rules.values():
        yield rule.condition
        yield from rule.exception_texts()
        yield from (step.condition for step in rule.steps)
    for salvage in defs.salvaged:
        yield from salvage.conditions


def _words(text: SourceText) -> set[str]:
    try:
        tree = parse_condition(text)
    except RuleError:
        return set()
    return {str(t) for t in tree.scan_values(lambda v: isinstance(v, Token) and v.type == "WORD")}


def _use_list(name: str, defs: Definitions, used: set[str]) -> None:
    if name in used:
        return
    used.add(name)
    for raw, _, _ in defs.lists[name].items:
        if isinstance(raw, str) and raw in defs.lists:
            _use_list(raw, defs, used)
