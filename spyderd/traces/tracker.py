"""Traces: findings grouped by causal root, scored, and scheduled for journald.

A trace is keyed by its root (see `roots`) and, below a network server, by the request
that led to the finding (see `split`). Findings with the same key join the same trace while
it is active; after `idle` seconds without a finding the key starts a new trace (a web
server attacked today and again next month gives two traces, with ids derived from the key
and the start of each window). Traces of one root that turn out to be causally joined (a
file written in one and run in the other, the same outbound address) are merged into the
earlier one; `merges` lists them for the owner, who moves the findings.

When a trace's score reaches the threshold, or grows after it was sent, it is due to be
sent `settle` seconds later, once: findings that arrive meanwhile ride along, so an attack
that trips five rules within a few seconds gives one trace entry, not five. The record
remembers the score each sink last received, so a restart neither repeats nor loses one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from spyderd.model import Finding, Trace
from spyderd.traces.build import trace_id_for
from spyderd.traces.roots import Root
from spyderd.traces.score import DEFAULT_THRESHOLD, score, worse
from spyderd.traces.split import Links, trace_key

NS = 1_000_000_000


@dataclass
class TraceTracker:
    """Active traces in memory; every change is handed back as a record for the store."""

    threshold: int = DEFAULT_THRESHOLD
    settle: float = 3.0
    idle: float = 3600.0
    sinks: tuple[str, ...] = ("journald",)
    traces: dict[str, Trace] = field(default_factory=dict)
    by_key: dict[str, str] = field(default_factory=dict)
    due_at: dict[str, float] = field(default_factory=dict)
    lookup: Callable[[str], dict[str, Any] | None] | None = None  # stored record by id
    merges: list[tuple[Trace, Trace, list[str]]] = field(default_factory=list)

    def add(self, f: Finding, root: Root, now: float, unit: str = "",
            links: Links | None = None, label: str = "") -> Trace:
        """Put a new finding in its trace; returns the updated trace record.

        Sets `f.trace_id` and `f.root_id`. `now` is the monotonic clock (for scheduling).
        `unit` is the request below a server root, `links` what joins it to other traces,
        `label` names the root in human terms (for a new trace).
        """
        tr = self._active(root, unit, f.time)
        if label and not tr.root_label:
            tr.root_label = label
        if f.id not in tr.findings:
            tr.findings.append(f.id)
        tr.first = min(tr.first, f.time)
        tr.last = max(tr.last, f.time)
        if not tr.findings[:-1]:
            tr.trigger = f.id
            if f.suppressed:
                tr.suppressed = f.suppressed
        if not f.suppressed:
            prev = tr.rules.get(f.rule)
            tr.rules[f.rule] = worse(prev, f.severity) if prev else f.severity
            tr.priority = min(tr.priority, f.priority)
        tr.mitre = sorted(set(tr.mitre) | {t for t in f.tags if _is_mitre(t)})
        tr.score = score(tr.rules, bool(tr.suppressed))
        tr = self.join(tr, links, now) if links else tr
        f.trace_id, f.root_id = tr.id, tr.root
        self._schedule(tr, now)
        return tr

    def join(self, tr: Trace, links: Links, now: float) -> Trace:
        """Merge `tr` with the trace of its root that `links` ties it to, if any; returns the
        trace that holds its findings now."""
        tr = self.current(tr.id) or tr
        tr.dsts = sorted(set(tr.dsts) | links.dsts)
        other = self._joined(tr, links)
        if other is None:
            return tr
        early, late = sorted((other, tr), key=lambda t: (t.first, t.id))
        self._merge(early, late, now)
        return early

    def current(self, trace_id: str) -> Trace | None:
        """The trace record holding what `trace_id` held (following merges)."""
        tr = self.traces.get(trace_id)
        for _ in range(16):
            if tr is None or not tr.merged_into:
                return tr
            tr = self.traces.get(tr.merged_into)
        return tr

    def _joined(self, tr: Trace, links: Links) -> Trace | None:
        for key in sorted(links.writers):
            other = self.current(self.by_key.get(key, ""))
            if other is not None and other.id != tr.id and other.root == tr.root:
                return other
        if links.dsts:
            for other in self.traces.values():
                shared = links.dsts & set(other.dsts)
                if (shared and other.id != tr.id and other.root == tr.root
                        and not other.merged_into):
                    return other
        return None

    def _merge(self, early: Trace, late: Trace, now: float) -> None:
        """`early` takes over `late`'s findings, rules, requests and addresses."""
        moved = [fid for fid in late.findings if fid not in early.findings]
        early.findings += moved
        for rule, sev in late.rules.items():
            prev = early.rules.get(rule)
            early.rules[rule] = worse(prev, sev) if prev else sev
        early.first = min(early.first, late.first)
        early.last = max(early.last, late.last)
        early.units = sorted(set(early.units) | set(late.units))
        early.dsts = sorted(set(early.dsts) | set(late.dsts))
        early.mitre = sorted(set(early.mitre) | set(late.mitre))
        early.priority = min(early.priority, late.priority)
        early.score = score(early.rules, bool(early.suppressed))
        late.merged_into = early.id
        for key, tid in self.by_key.items():
            if tid == late.id:
                self.by_key[key] = early.id
        self.due_at.pop(late.id, None)
        self.merges.append((late, early, moved))
        self._schedule(early, now)

    def touch(self, trace_id: str, t: int) -> Trace | None:
        """A folded repeat: the trace saw activity (no new rule, so no new score)."""
        tr = self.current(trace_id)
        if tr is not None:
            tr.last = max(tr.last, t)
        return tr

    def _active(self, root: Root, unit: str, t: int) -> Trace:
        key = trace_key(root.node.id, unit)
        tr = self.current(self.by_key.get(key, ""))
        if tr is None and self.lookup is not None:  # a trace of this key from before
            tr = self._stored(trace_id_for(key))
            while tr is not None and tr.merged_into:
                tr = self.traces.get(tr.merged_into) or self._stored(tr.merged_into)
            if tr is not None and tr.tracked:
                self.traces[tr.id] = tr
        if tr is not None and tr.tracked and t - tr.last <= self.idle * NS:
            self.by_key[key] = tr.id
            return tr
        epoch = 0 if tr is None else t
        tid = trace_id_for(key, epoch)
        tr = Trace(id=tid, key=key, root=root.node.id, root_kind=root.kind,
                   root_name=root.node.name, root_pid=root.node.pid,
                   units=[unit] if unit else [], threshold=self.threshold, first=t, last=t)
        self.traces[tid] = tr
        self.by_key[key] = tid
        return tr

    def _stored(self, trace_id: str) -> Trace | None:
        record = self.lookup(trace_id) if self.lookup is not None else None
        return Trace.from_dict(record) if record is not None else None

    def _schedule(self, tr: Trace, now: float) -> None:
        if tr.score < self.threshold or tr.id in self.due_at:
            return
        if all(tr.emitted.get(s, 0) >= tr.score for s in self.sinks):
            return
        self.due_at[tr.id] = now + self.settle

    def due(self, now: float) -> list[Trace]:
        """Traces whose settle time has passed and that some sink has not yet received."""
        ready = [tid for tid, t in self.due_at.items() if t <= now]
        return [self.traces[tid] for tid in ready
                if tid in self.traces and not self.traces[tid].merged_into]

    def emitted(self, tr: Trace, sink: str) -> None:
        """`sink` received the trace at its current score."""
        tr.emitted[sink] = tr.score
        if all(tr.emitted.get(s, 0) >= tr.score for s in self.sinks):
            self.due_at.pop(tr.id, None)

    def retry_later(self, tr: Trace, when: float) -> None:
        self.due_at[tr.id] = when

    def restore(self, records: list[dict[str, Any]], now_wall_ns: int, now: float) -> int:
        """Take traces from the store back after a restart; unsent ones become due now."""
        n = 0
        traces = sorted((Trace.from_dict(r) for r in records), key=lambda t: t.last)
        for tr in traces:
            if not tr.tracked or now_wall_ns - tr.last > self.idle * NS:
                if tr.score >= self.threshold and tr.tracked:
                    self.traces[tr.id] = tr  # too old to grow, but still owed to a sink
                    self._schedule(tr, now - self.settle)
                continue
            self.traces[tr.id] = tr
            if not tr.merged_into:
                self.by_key[tr.key or tr.root] = tr.id
                self._schedule(tr, now - self.settle)
            n += 1
        for tr in traces:  # keys of merged traces lead to the trace they were merged into
            survivor = self.current(tr.id) if tr.merged_into else None
            if survivor is not None and tr.key:
                self.by_key.setdefault(tr.key, survivor.id)
        return n

    def forget_idle(self, now_wall_ns: int) -> None:
        """Drop traces idle for longer than `idle` and owed to nobody (they stay stored)."""
        for tid, tr in list(self.traces.items()):
            if tid not in self.due_at and now_wall_ns - tr.last > self.idle * NS:
                del self.traces[tid]
        live = set(self.traces)
        self.by_key = {k: tid for k, tid in self.by_key.items() if tid in live}


def _is_mitre(tag: str) -> bool:
    t = tag.upper()
    return t[:1] == "T" and t[1:5].isdigit()
