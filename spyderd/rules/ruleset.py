"""Index: compiled rules, bucketed by event kind, and the `load_rules` entry point (stage 4).

An event only meets the rules of its kind's bucket. A rule whose predicate raises at run time
(a bug, or a graph value of an unexpected type) is taken out of every bucket and recorded in
`RuleSet.disabled`, so one broken rule cannot stop the others; the daemon logs it.

Sequence rules keep partial matches (see `sequences`); `RuleSet.adopt_state` hands them to
the rule set that replaces this one on reload, for every sequence whose steps are unchanged.
The ancestry caches of `ancestor()` operators are cleared here when an event arrives that can
change a value they read (see `combinators.AncestorCache`). Matching never does I/O: it reads
the in-memory graph through the GraphContext only.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from spyderd.errors import RuleError
from spyderd.model.events import EVENT_TYPES, Event
from spyderd.model.nodes import Node
from spyderd.rules.aggregate import AggregateSpec, Aggregator, summary
from spyderd.rules.collector import (
    SEVERITIES,
    Definitions,
    ListDef,
    MacroDef,
    RuleDef,
    StepDef,
    collect,
)
from spyderd.rules.combinators import AncestorCache
from spyderd.rules.compiler import Compiler, Predicate
from spyderd.rules.context import GraphContext
from spyderd.rules.diagnostics import Diagnostic, Location
from spyderd.rules.fields import FIELDS, process_name
from spyderd.rules.guards import Guard, GuardFinder
from spyderd.rules.output import Template, compile_template
from spyderd.rules.reader import read_paths
from spyderd.rules.sequences import DEFAULT_LIMIT, SequenceMatcher, Step
from spyderd.rules.source import SourceText
from spyderd.rules.usage import unused_definitions

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
    steps: tuple[Step, ...] = ()  # a sequence rule's steps (predicate is then step 1's)
    within_ns: int = 0
    max_partials: int | None = None
    guard: Guard | None = None  # the values one field must have for it to match (see guards)
    aggregate: AggregateSpec | None = None  # fires on a count of matches per key
    sigma_id: str = ""  # the Sigma rule it was converted from

    @property
    def is_sequence(self) -> bool:
        return bool(self.steps)


@dataclass(frozen=True, slots=True)
class Match:
    """A rule that matched: the rendered output and the nodes that explain it.

    `refs`: the nodes the rule's causal operators found (ancestor, descendant, peer, writer,
    session ...), outermost first; for a sequence, the subjects of the earlier steps first
    (step 1's subject leads), then the last step's refs.
    """

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
        caches: Iterable[AncestorCache] = (),
        max_partials: int = DEFAULT_LIMIT,
        epoch: list[int] | None = None,
    ) -> None:
        self.rules: list[Rule] = list(rules)
        self.definitions = definitions or Definitions()
        self.warnings: list[Diagnostic] = list(warnings)
        self.disabled: dict[str, str] = {}
        self.caches = list(caches)
        self.sequences: dict[str, SequenceMatcher] = {
            r.name: SequenceMatcher(r.steps, r.within_ns, r.max_partials or max_partials)
            for r in self.rules
            if r.is_sequence
        }
        self.aggregates: dict[str, Aggregator] = {
            r.name: Aggregator(r.aggregate, (r.events, r.condition))
            for r in self.rules
            if r.aggregate is not None
        }
        self._seen = 0
        self._scratch: list[Node] = []
        self._epoch = epoch if epoch is not None else [0]  # shared with the macros' memos
        self._invalidate: dict[str, tuple[AncestorCache, ...]] = {}
        for cache in self.caches:
            for kind in cache.kinds:
                self._invalidate[kind] = (*self._invalidate.get(kind, ()), cache)
        self._index()

    def _index(self) -> None:
        """Buckets by event kind of the enabled rules that have not been disabled; inside a
        kind, the rules with a process-name guard are filed under each of their names."""
        plain: dict[str, list[Rule]] = {}
        seqs: dict[str, list[tuple[Rule, SequenceMatcher]]] = {}
        for rule in self.rules:
            if not rule.enabled or rule.name in self.disabled:
                continue
            for kind in rule.events:
                if rule.is_sequence:
                    seqs.setdefault(kind, []).append((rule, self.sequences[rule.name]))
                else:
                    plain.setdefault(kind, []).append(rule)
        self._by_kind = {k: tuple(v) for k, v in plain.items()}
        self._seq_by_kind = {k: tuple(v) for k, v in seqs.items()}
        self._dispatch = {k: _Dispatch(v) for k, v in plain.items()}
        self._order = {r.name: i for i, r in enumerate(self.rules)}
        # kinds whose index or sequences need the subject's process name
        self._named = frozenset(k for k, d in self._dispatch.items() if d.by_name) | set(seqs)
        # kinds no rule, sequence step or cache invalidation cares about
        self._idle = frozenset(EVENT_TYPES) - set(plain) - set(seqs) - set(self._invalidate)

    def get(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.name == name), None)

    def for_kind(self, kind: str) -> list[Rule]:
        """The enabled, working rules an event of `kind` is tested against, in file order."""
        return [*self._by_kind.get(kind, ()), *(r for r, _ in self._seq_by_kind.get(kind, ()))]

    def match(self, ev: Event, node: Node, ctx: GraphContext) -> list[Match]:
        """Every rule of the event's kind that matches; a rule that raises is disabled."""
        kind = ev.kind
        if kind in self._idle:
            return []
        stale = self._invalidate.get(kind)
        if stale:
            for cache in stale:
                cache.clear()
        self._seen += 1
        self._epoch[0] = self._seen
        if not self._seen & 0xFFF:
            self.expire(ev.time)
        matches: list[Match] = []
        name = _safe_name(ev, node) if kind in self._named else None
        dispatch = self._dispatch.get(kind)
        if dispatch is not None:
            rules = dispatch.by_name.get(name, dispatch.always) if dispatch.by_name else None  # type: ignore[arg-type]
            self._run(dispatch.always if rules is None else rules, ev, node, ctx, matches)
            for get, group in dispatch.groups:
                value = get(ev, node)
                if value is not None and group.allows(value):
                    rules = [r for r in dispatch.grouped[group.field] if r.guard.allows(value)]  # type: ignore[union-attr]
                    self._run(rules, ev, node, ctx, matches)
            if len(matches) > 1:
                matches.sort(key=lambda m: self._order[m.rule.name])
        seqs = self._seq_by_kind.get(kind)
        if seqs:
            self._match_sequences(seqs, ev, node, ctx, matches, name)
        return matches

    def _run(self, rules: Iterable[Rule], ev: Event, node: Node, ctx: GraphContext,
             matches: list[Match]) -> None:  # fmt: skip
        refs = self._scratch  # predicates that fail leave it empty: no list per event
        for rule in rules:
            try:
                if rule.predicate(ev, node, ctx, refs):
                    found, refs = refs, []
                    self._scratch = refs
                    if rule.aggregate is not None:
                        self._aggregate(rule, ev, node, ctx, found, matches)
                        continue
                    matches.append(Match(rule, rule.template.render(ev, node, ctx, found), found))
            except Exception as exc:  # noqa: BLE001 - a rule bug must not stop the others
                self._scratch = refs = []
                self.disable(rule.name, f"{type(exc).__name__}: {exc}")

    def _aggregate(self, rule: Rule, ev: Event, node: Node, ctx: GraphContext,
                   found: list[Node], matches: list[Match]) -> None:  # fmt: skip
        """Count a match of an aggregate rule; it becomes a Match when its key fires. The
        refs are the other counted subjects (oldest first), then the operators' refs."""
        fired = self.aggregates[rule.name].feed(ev, node, ctx)
        if fired is None:
            return
        refs = [*(n for n in fired.subjects if n is not node), *found]
        text = rule.template.render(ev, node, ctx, found) + summary(rule.aggregate, fired)  # type: ignore[arg-type]
        matches.append(Match(rule, text, refs))

    def _match_sequences(
        self,
        seqs: tuple[tuple[Rule, SequenceMatcher], ...],
        ev: Event,
        node: Node,
        ctx: GraphContext,
        matches: list[Match],
        name: str | None,
    ) -> None:
        for rule, matcher in seqs:
            if not matcher.wants(ev.kind, name):
                continue
            try:
                for done in matcher.feed(ev, node, ctx, name):
                    refs = [*done.subjects[:-1], *done.refs]
                    matches.append(Match(rule, rule.template.render(ev, node, ctx, refs), refs))
            except Exception as exc:  # noqa: BLE001 - a rule bug must not stop the others
                self.disable(rule.name, f"{type(exc).__name__}: {exc}")

    def expire(self, now: int) -> None:
        """Drop sequence partials older than their window (also done every 4096 events)."""
        for matcher in self.sequences.values():
            matcher.expire(now)
        for agg in self.aggregates.values():
            agg.expire(now)

    def disable(self, name: str, reason: str) -> None:
        """Take a rule out of every bucket and record why."""
        self.disabled[name] = reason
        self._index()

    def adopt_state(self, old: RuleSet) -> list[str]:
        """Carry unfinished sequence matches and aggregate counts over from the rule set
        this one replaces.

        Only for sequences with the same name, steps and window, and aggregates with the same
        name, events, condition and aggregate block; returns their names.
        """
        kept = []
        for name, matcher in self.sequences.items():
            previous = old.sequences.get(name)
            if previous is not None and previous.signature() == matcher.signature():
                matcher.adopt(previous)
                kept.append(name)
        for name, agg in self.aggregates.items():
            before = old.aggregates.get(name)
            if before is not None and before.signature() == agg.signature():
                agg.adopt(before)
                kept.append(name)
        return kept

    def stats(self) -> dict:
        """Sequence state and ancestry cache counters, for `spyderctl status`."""
        return {
            "sequences": {n: m.counters() for n, m in self.sequences.items()},
            "aggregates": {n: a.counters() for n, a in self.aggregates.items()},
            "ancestor_cache": {
                "entries": sum(len(c.entries) for c in self.caches),
                "hits": sum(c.hits for c in self.caches),
                "misses": sum(c.misses for c in self.caches),
            },
        }

    def compile_condition(self, text: str, name: str = "<query>") -> Predicate:
        """A condition compiled with this set's lists and macros (for `spyderctl query`)."""
        return _compile_one(text, self.definitions.lists, self.definitions.macros, name)


class _Dispatch:
    """Which rules of one event kind an event is tried against.

    Rules without a guard are always tried. Rules guarded by exact process names are filed
    under each name (one dict lookup finds the rules to try, in file order, with the
    unguarded ones). Rules guarded on another field (or by name prefixes) form one group per
    field: the union of the group's guards is checked once, and only when it passes are the
    group's rules checked one by one.
    """

    def __init__(self, rules: list[Rule]) -> None:
        by_name = [r for r in rules if r.guard is not None and _name_exact(r.guard)]
        others = [r for r in rules if r.guard is not None and r not in by_name]
        self.always = tuple(r for r in rules if r.guard is None)
        names = {n for r in by_name for n in r.guard.exact}  # type: ignore[union-attr]
        self.by_name = {
            n: tuple(r for r in rules if r.guard is None or (r in by_name and n in r.guard.exact))  # type: ignore[union-attr]
            for n in names
        }
        self.grouped: dict[str, tuple[Rule, ...]] = {}
        for rule in others:
            assert rule.guard is not None
            self.grouped[rule.guard.field] = (*self.grouped.get(rule.guard.field, ()), rule)
        self.groups = tuple(
            (FIELDS[f].get, _union([r.guard for r in group if r.guard is not None]))
            for f, group in self.grouped.items()
        )

    def rules(self, ev: Event, node: Node) -> tuple[Rule, ...]:
        if not self.by_name:
            return self.always
        return self.by_name.get(process_name(ev, node), self.always)  # type: ignore[arg-type]


def _safe_name(ev: Event, node: Node) -> str | None:
    """The subject's process name for the indexes; a corrupt node gives None (then only the
    unguarded rules are tried, and they report the corruption themselves)."""
    try:
        name = process_name(ev, node)
    except Exception:  # noqa: BLE001 - a corrupt graph value must not stop matching
        return None
    return name if isinstance(name, str) else None


def _names(guards: GuardFinder, step: StepDef) -> frozenset[str] | None:
    """A step's guard, when it is a set of exact process names (all a step index uses)."""
    guard = guards.guard(step.condition)
    return guard.exact if guard is not None and _name_exact(guard) else None


def _name_exact(guard: Guard) -> bool:
    return guard.field == "process.name" and not guard.prefixes and not guard.suffixes


def _union(guards: list[Guard]) -> Guard:
    out = guards[0]
    for g in guards[1:]:
        out = out.union(g)
    return out


def load_rules(paths: Iterable[str | Path], max_partials: int = DEFAULT_LIMIT) -> RuleSet:
    """Read, collect and compile rule files (later files append to and override earlier ones).

    `max_partials` bounds each sequence rule's unfinished matches per step, unless the rule
    sets `max_partial_matches`. Raises RuleError carrying every diagnostic, warnings
    included, if any error was found.
    """
    paths = list(paths)
    entries, diags = read_paths(paths)
    defs, found = collect(entries)
    diags.extend(found)
    compiler = Compiler(defs.lists, defs.macros, diags)
    rules = build_rules(defs, diags, compiler)
    diags = _in_file_order(diags, [e.file.name for e in entries])
    if any(d.is_error for d in diags):
        raise RuleError(diags)
    return RuleSet(rules, defs, diags, compiler.caches, max_partials, compiler.epoch)


def build_rules(
    defs: Definitions, diags: list[Diagnostic], compiler: Compiler | None = None
) -> list[Rule]:
    """Compile every macro and rule; problems go to `diags`, broken rules are left out."""
    compiler = compiler or Compiler(defs.lists, defs.macros, diags)
    compiler.compile_macros()
    for salvage in defs.salvaged:
        chain = (f"in rule {salvage.name!r} at {salvage.loc} (not loaded: see its other errors)",)
        for text in salvage.conditions:
            compiler.compile(text, chain)
        if salvage.output is not None:
            compile_template(salvage.output, diags, chain)
    diags.extend(unused_definitions(defs))
    guards = GuardFinder(defs.lists, defs.macros)
    rules = []
    for rule_def in defs.rules.values():
        rule = _build_rule(rule_def, compiler, diags, guards)
        if rule is not None:
            if not rule.is_sequence:
                rule = dataclasses.replace(rule, guard=guards.guard(rule_def.condition))
            rules.append(rule)
    return rules


def _build_rule(
    rd: RuleDef, compiler: Compiler, diags: list[Diagnostic], guards: GuardFinder
) -> Rule | None:
    chain = (f"in rule {rd.name!r} at {rd.loc}",)
    exceptions = [
        compiler.compile(text, (f"in exception {i} of rule {rd.name!r}",))
        for i, text in enumerate(rd.exception_texts(), start=1)
    ]
    template = compile_template(rd.output, diags, chain)
    if rd.steps:
        steps = _build_steps(rd, compiler, exceptions, chain, guards)
        main = steps[0].predicate if steps else None
    else:
        steps = ()
        main = compiler.compile_for(rd.condition, rd.events, chain)
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
        predicate=main if steps else _excluding(main, [e for e in exceptions if e is not None]),
        template=template,
        steps=steps,
        within_ns=rd.within_ns,
        max_partials=rd.max_partials,
        aggregate=rd.aggregate,
        sigma_id=rd.sigma_id,
    )


def _build_steps(
    rd: RuleDef,
    compiler: Compiler,
    exceptions: list[Predicate | None],
    chain: tuple[str, ...],
    guards: GuardFinder,
) -> tuple[Step, ...]:
    """Each step's condition compiled for its own event kinds; the rule's exceptions apply to
    every step, so an excepted process can neither start nor advance a sequence."""
    preds = [
        compiler.compile_for(sd.condition, sd.events, (f"in step {index}", *chain))
        for index, sd in enumerate(rd.steps, start=1)
    ]
    if None in preds:
        return ()
    excepted = [e for e in exceptions if e is not None]
    return tuple(
        Step(sd.events, _excluding(pred, excepted), sd.condition.value, _names(guards, sd))
        for sd, pred in zip(rd.steps, preds, strict=True)
        if pred is not None
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
