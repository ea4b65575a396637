"""Sequence rules: steps that must happen in order, along one causal line, within a window.

A sequence such as "web server accepts → a shell starts below it → that shell (or anything it
started) connects out, all within 10 minutes" is matched incrementally. When an event meets
step 1, its subject becomes the *anchor* of a partial match. A later event meets step k+1
when its condition holds and its subject is the anchor of a step-k partial or a causal
descendant of it (the anchor is among its ancestors), within the window counted from step 1.
The last step completes the match: the rule fires once for that partial, which is then
consumed. A step-k partial stays while its window lasts, so a web server that accepts once
and spawns two shells can lead to two findings.

State is bounded: each step keeps at most `limit` partials (oldest dropped first, counted in
`dropped`), and partials older than the window are expired (counted in `expired`).
Anchors are keyed by node id, so a subject finds its partial in one dict lookup per ancestor.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from spyderd.model.events import Event
from spyderd.model.nodes import Node
from spyderd.rules.combinators import Predicate
from spyderd.rules.context import MAX_DEPTH, GraphContext

DEFAULT_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class Step:
    """A compiled step: event kinds, predicate (exceptions already applied), condition text,
    and the process names it can only match (see `guards`), None when any."""

    events: tuple[str, ...]
    predicate: Predicate = field(repr=False)
    condition: str
    guard: frozenset[str] | None = None


@dataclass(slots=True)
class Partial:
    """A match of steps 1..k: the subject of each, and when step 1 happened."""

    first: int  # time of step 1's event, ns
    subjects: tuple[Node, ...]

    @property
    def anchor(self) -> Node:
        return self.subjects[-1]


@dataclass(slots=True)
class Completed:
    """A finished sequence: the subjects of every step (the last is the event's subject) and
    the nodes the last step's causal operators referred to."""

    subjects: tuple[Node, ...]
    refs: list[Node]


@dataclass(slots=True)
class SequenceStats:
    partials: int = 0
    started: int = 0
    completed: int = 0
    expired: int = 0
    dropped: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "partials": self.partials,
            "started": self.started,
            "completed": self.completed,
            "expired": self.expired,
            "dropped": self.dropped,
        }


class SequenceMatcher:
    """The partial matches of one sequence rule, fed every event of its steps' kinds."""

    def __init__(self, steps: tuple[Step, ...], within_ns: int, limit: int = DEFAULT_LIMIT):
        self.steps = steps
        self.within_ns = within_ns
        self.limit = limit
        # waiting[k]: partials that matched steps 1..k+1, keyed by anchor id, oldest first
        self.waiting: list[OrderedDict[str, Partial]] = [OrderedDict() for _ in steps[:-1]]
        self.stats = SequenceStats()
        self.kinds = frozenset(k for step in steps for k in step.events)
        # per event kind, the process names some step of that kind can match (None: any)
        self._names: dict[str, frozenset[str] | None] = {}
        for kind in self.kinds:
            guards = [s.guard for s in steps if kind in s.events]
            self._names[kind] = None if None in guards else frozenset().union(*guards)  # type: ignore[arg-type]

    def wants(self, kind: str, name: str | None) -> bool:
        """Could an event of `kind` by a process called `name` meet any step? (cheap)"""
        names = self._names.get(kind, frozenset())
        return names is None or name in names

    def signature(self) -> tuple:
        """What must be equal for a reloaded rule to take over this state."""
        return (tuple((s.events, s.condition) for s in self.steps), self.within_ns)

    def adopt(self, old: SequenceMatcher) -> None:
        """Take over the partial matches of the same sequence from the previous rule set."""
        self.waiting = old.waiting
        self.stats = old.stats
        for table in self.waiting:
            while len(table) > self.limit:
                table.popitem(last=False)
                self.stats.dropped += 1

    def feed(self, ev: Event, node: Node, ctx: GraphContext, name: str | None) -> list[Completed]:
        """Advance, complete or start partial matches with one event (`name`: the subject's
        process name, for the steps' guards)."""
        done: list[Completed] = []
        last = len(self.steps) - 1
        expired = False
        # later steps first, so an event never completes a step it has just opened
        for k in range(last, 0, -1):
            step = self.steps[k]
            table = self.waiting[k - 1]
            if not table or ev.kind not in step.events:
                continue
            if step.guard is not None and name not in step.guard:
                continue
            if not expired:
                self.expire(ev.time)
                expired = True
            refs: list[Node] = []
            if not step.predicate(ev, node, ctx, refs):
                continue
            partial = self._find(table, node, ctx, ev.time)
            if partial is None:
                continue
            subjects = (*partial.subjects, node)
            if k == last:
                del table[partial.anchor.id]
                self.stats.completed += 1
                done.append(Completed(subjects, refs))
            else:
                self._put(self.waiting[k], Partial(partial.first, subjects))
        first = self.steps[0]
        if (
            ev.kind in first.events
            and (first.guard is None or name in first.guard)
            and first.predicate(ev, node, ctx, [])
        ):
            self._put(self.waiting[0], Partial(ev.time, (node,)))
            self.stats.started += 1
        return done

    def _find(
        self, table: OrderedDict[str, Partial], node: Node, ctx: GraphContext, now: int
    ) -> Partial | None:
        """The live partial anchored at `node` or at its nearest ancestor that has one."""
        partial = table.get(node.id)
        if partial is not None and now - partial.first <= self.within_ns:
            return partial
        for up in ctx.ancestors(node, MAX_DEPTH):
            partial = table.get(up.id)
            if partial is not None and now - partial.first <= self.within_ns:
                return partial
        return None

    def _put(self, table: OrderedDict[str, Partial], partial: Partial) -> None:
        """Insert or refresh (a newer partial on the same anchor keeps the later start)."""
        key = partial.anchor.id
        old = table.pop(key, None)
        if old is not None and old.first > partial.first:
            partial = Partial(old.first, partial.subjects)
        table[key] = partial
        while len(table) > self.limit:
            table.popitem(last=False)
            self.stats.dropped += 1

    def expire(self, now: int) -> None:
        """Drop partials whose window has passed (oldest first; stops at the first live one)."""
        horizon = now - self.within_ns
        for table in self.waiting:
            while table:
                key = next(iter(table))
                if table[key].first >= horizon:
                    break
                del table[key]
                self.stats.expired += 1

    def counters(self) -> dict[str, int]:
        """The stats, with the current number of partial matches."""
        self.stats.partials = sum(len(t) for t in self.waiting)
        return self.stats.as_dict()
