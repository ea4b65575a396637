"""Index: compiled rules, bucketed by event kind, and the `load_rules` entry point (stage 4).

An event only meets the rules of its kind's bucket. A rule whose predicate raises at run time
(a bug, or a graph value of an unexpected type) is taken out of every bucket and recorded in
`RuleSet.disabled`, so one broken rule cannot stop the others; the daemon logs it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from spyderd.errors import RuleError
from spyderd.model.events import Event
from spyderd.model.nodes import Node
from spyderd.rules.collector import SEVERITIES, Definitions, ListDef, MacroDef, RuleDef, collect
from spyderd.rules.compiler import Compiler, Predicate
from spyderd.rules.context import GraphContext
from spyderd.rules.diagnostics import Diagnostic, Location
from spyderd.rules.output import Template, compile_template
from spyderd.rules.reader import read_paths
from spyderd.rules.source import SourceText

MITRE_ID = re.compile(r"T\d{4}(\.\d{3})?")
# MESSAGE_ID namespace: journald's catalog keys on it, so it must never change
_MESSAGE_NS = uuid.UUID("5d3c2e8a-7b1f-4f0a-9c61-2a8e4b7d9f13")


def message_id(rule_name: str) -> str:
    """Stable 32-hex journald MESSAGE_ID of a rule, derived from its name alone."""
    return uuid.uuid5(_MESSAGE_NS, rule_name).hex


@dataclass(frozen=True, slots=True, eq=False)
class Rule:
    """A compiled rule. `predicate` already excludes the rule's exceptions."""

    name: str
    description: str
    severity: str
    priority: int  # syslog priority for journald: critical 2 ... info 6
    tags: list[str]
    mitre: list[str]
    output: str
    events: tuple[str, ...]
    condition: str
    location: Location
    enabled: bool
    message_id: str
    predicate: Predicate = field(repr=False)
    template: Template = field(repr=False)


@dataclass(frozen=True, slots=True)
class Match:
    """A rule that matched: the rendered output and the ancestor nodes that explain it."""

    rule: Rule
    output: str
    refs: list[Node]


class RuleSet:
    """Rules indexed by event kind, plus the lists and macros they were compiled with."""

    def __init__(
        self,
        rules: Iterable[Rule],
        definitions: Definitions | None = None,
        warnings: Iterable[Diagnostic] = (),
    ) -> None:
        self.rules: list[Rule] = list(rules)
        self.definitions = definitions or Definitions()
        self.warnings: list[Diagnostic] = list(warnings)
        self.disabled: dict[str, str] = {}
        self._by_kind: dict[str, list[Rule]] = {}
        for rule in self.rules:
            if rule.enabled:
                for kind in rule.events:
                    self._by_kind.setdefault(kind, []).append(rule)

    def get(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.name == name), None)

    def for_kind(self, kind: str) -> list[Rule]:
        """The enabled, working rules an event of `kind` is tested against, in file order."""
        return list(self._by_kind.get(kind, ()))

    def match(self, ev: Event, node: Node, ctx: GraphContext) -> list[Match]:
        """Every rule of the event's kind that matches; a rule that raises is disabled."""
        matches: list[Match] = []
        for rule in tuple(self._by_kind.get(ev.kind, ())):
            refs: list[Node] = []
            try:
                if rule.predicate(ev, node, ctx, refs):
                    matches.append(Match(rule, rule.template.render(ev, node, ctx, refs), refs))
            except Exception as exc:  # noqa: BLE001 - a rule bug must not stop the others
                self.disable(rule.name, f"{type(exc).__name__}: {exc}")
        return matches

    def disable(self, name: str, reason: str) -> None:
        """Take a rule out of every bucket and record why."""
        self.disabled[name] = reason
        for bucket in self._by_kind.values():
            bucket[:] = [r for r in bucket if r.name != name]

    def compile_condition(self, text: str, name: str = "<query>") -> Predicate:
        """A condition compiled with this set's lists and macros (for `spyderctl query`)."""
        return _compile_one(text, self.definitions.lists, self.definitions.macros, name)


def load_rules(paths: Iterable[str | Path]) -> RuleSet:
    """Read, collect and compile rule files (later files append to and override earlier ones).

    Raises RuleError carrying every diagnostic, warnings included, if any error was found.
    """
    paths = list(paths)
    entries, diags = read_paths(paths)
    defs, found = collect(entries)
    diags.extend(found)
    rules = build_rules(defs, diags)
    diags = _in_file_order(diags, [e.file.name for e in entries])
    if any(d.is_error for d in diags):
        raise RuleError(diags)
    return RuleSet(rules, defs, diags)


def build_rules(defs: Definitions, diags: list[Diagnostic]) -> list[Rule]:
    """Compile every macro and rule; problems go to `diags`, broken rules are left out."""
    compiler = Compiler(defs.lists, defs.macros, diags)
    compiler.compile_macros()
    rules = []
    for rule_def in defs.rules.values():
        rule = _build_rule(rule_def, compiler, diags)
        if rule is not None:
            rules.append(rule)
    return rules


def _build_rule(rd: RuleDef, compiler: Compiler, diags: list[Diagnostic]) -> Rule | None:
    chain = (f"in rule {rd.name!r} at {rd.loc}",)
    main = compiler.compile(rd.condition, chain)
    exceptions = [
        compiler.compile(text, (f"in exception {i} of rule {rd.name!r}",))
        for i, text in enumerate(rd.exceptions, start=1)
    ]
    template = compile_template(rd.output, diags, chain)
    if main is None or template is None or None in exceptions:
        return None
    return Rule(
        name=rd.name,
        description=rd.description,
        severity=rd.severity,
        priority=SEVERITIES[rd.severity],
        tags=list(rd.tags),
        mitre=[t.upper() for t in rd.tags if MITRE_ID.fullmatch(t.upper())],
        output=rd.output.value,
        events=rd.events,
        condition=rd.condition.value,
        location=rd.loc,
        enabled=rd.enabled,
        message_id=message_id(rd.name),
        predicate=_excluding(main, [e for e in exceptions if e is not None]),
        template=template,
    )


def _excluding(main: Predicate, exceptions: list[Predicate]) -> Predicate:
    """`main and not (e1) and not (e2) ...`; exceptions add nothing to refs."""
    if not exceptions:
        return main

    def predicate(ev: Event | None, node: Node, ctx: GraphContext, refs: list[Node]) -> bool:
        if not main(ev, node, ctx, refs):
            return False
        if any(exc(ev, node, ctx, []) for exc in exceptions):
            del refs[:]
            return False
        return True

    return predicate


def _in_file_order(diags: list[Diagnostic], files: list[str]) -> list[Diagnostic]:
    rank = {name: i for i, name in reversed(list(enumerate(files)))}
    return sorted(diags, key=lambda d: (rank.get(d.file, -1), d.line, d.col))


def compile_condition(
    text: str,
    lists: Mapping[str, Iterable[str | int]] | None = None,
    macros: Mapping[str, str] | None = None,
    name: str = "<condition>",
) -> Predicate:
    """Compile one condition string with the given lists and macros (for `spyderctl query`).

    Raises RuleError with every error found; locations are within `text` itself.
    """
    list_defs = {
        n: ListDef(
            n,
            Location(f"<list {n}>", 1, 1),
            [(v, Location(f"<list {n}>", 1, 1), "") for v in items],
        )
        for n, items in (lists or {}).items()
    }
    macro_defs = {
        n: MacroDef(n, Location(f"<macro {n}>", 1, 1), [SourceText.plain(t, f"<macro {n}>")])
        for n, t in (macros or {}).items()
    }
    return _compile_one(text, list_defs, macro_defs, name)


def _compile_one(
    text: str, lists: Mapping[str, ListDef], macros: Mapping[str, MacroDef], name: str
) -> Predicate:
    diags: list[Diagnostic] = []
    pred = Compiler(lists, macros, diags).compile(SourceText.plain(text, name))
    errors = [d for d in diags if d.is_error]
    if pred is None or errors:
        raise RuleError(errors)
    return pred
