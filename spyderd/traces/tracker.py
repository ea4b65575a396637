"""Traces: findings grouped by causal root, scored, and scheduled for journald.

A trace is keyed by its root (see `roots`). Findings whose subjects share a root join the
same trace while it is active; after `idle` seconds without a finding the root starts a
new trace (a web server attacked today and again next month gives two traces, with ids
derived from the root and the start of each window).

When a trace's score reaches the threshold, or grows after it was sent, it is due to be
sent `settle` seconds later, once: findings that arrive meanwhile ride along, so an attack
that trips five rules within a few seconds gives one trace entry, not five. The record
remembers the score each sink last received, so a restart neither repeats nor loses one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from spyderd.model import Finding
from spyderd.traces.build import trace_id_for
from spyderd.traces.roots import Root
from spyderd.traces.score import DEFAULT_THRESHOLD, score, worse

NS = 1_000_000_000


@dataclass
class TraceTracker:
    """Active traces in memory; every change is handed back as a record for the store."""

    threshold: int = DEFAULT_THRESHOLD
    settle: float = 3.0
    idle: float = 3600.0
    sinks: tuple[str, ...] = ("journald",)
    traces: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_root: dict[str, str] = field(default_factory=dict)
    due_at: dict[str, float] = field(default_factory=dict)
    lookup: Callable[[str], dict[str, Any] | None] | None = None  # stored trace by id

    def add(self, f: Finding, root: Root, now: float) -> dict[str, Any]:
        """Put a new finding in its root's trace; returns the updated trace record.

        Sets `f.trace_id` and `f.root_id`. `now` is the monotonic clock (for scheduling).
        """
        tr = self._active(root, f.time)
        f.trace_id, f.root_id = tr["id"], tr["root"]
        if f.id not in tr["findings"]:
            tr["findings"].append(f.id)
        tr["first"] = min(tr["first"], f.time)
        tr["last"] = max(tr["last"], f.time)
        if not tr["findings"][:-1]:
            tr["trigger"] = f.id
            if f.suppressed:
                tr["suppressed"] = f.suppressed
        if not f.suppressed:
            prev = tr["rules"].get(f.rule)
            tr["rules"][f.rule] = worse(prev, f.severity) if prev else f.severity
        tr["mitre"] = sorted(set(tr.get("mitre", [])) | {t for t in f.tags if _is_mitre(t)})
        tr["priority"] = min(tr.get("priority", 7), f.priority) if not f.suppressed \
            else tr.get("priority", 7)
        tr["score"] = score(tr["rules"], bool(tr.get("suppressed")))
        self._schedule(tr, now)
        return tr

    def touch(self, trace_id: str, t: int) -> dict[str, Any] | None:
        """A folded repeat: the trace saw activity (no new rule, so no new score)."""
        tr = self.traces.get(trace_id)
        if tr is not None:
            tr["last"] = max(tr["last"], t)
        return tr

    def _active(self, root: Root, t: int) -> dict[str, Any]:
        tid = self.by_root.get(root.node.id)
        tr = self.traces.get(tid) if tid else None
        if tr is None and self.lookup is not None:  # a trace of this root from before
            tr = self.lookup(trace_id_for(root.node.id))
            if tr is not None and "rules" in tr:
                tr.setdefault("emitted", {})
                self.traces[tr["id"]] = tr
        if tr is not None and "rules" in tr and t - tr["last"] <= self.idle * NS:
            self.by_root[root.node.id] = tr["id"]
            return tr
        epoch = 0 if tr is None else t
        tid = trace_id_for(root.node.id, epoch)
        tr = {
            "id": tid, "root": root.node.id, "root_kind": root.kind,
            "root_name": root.node.name, "root_pid": root.node.pid, "trigger": "",
            "findings": [], "rules": {}, "score": 0, "threshold": self.threshold,
            "suppressed": "", "first": t, "last": t, "emitted": {}, "mitre": [],
        }
        self.traces[tid] = tr
        self.by_root[root.node.id] = tid
        return tr

    def _schedule(self, tr: dict[str, Any], now: float) -> None:
        if tr["score"] < self.threshold or tr["id"] in self.due_at:
            return
        if all(tr["emitted"].get(s, 0) >= tr["score"] for s in self.sinks):
            return
        self.due_at[tr["id"]] = now + self.settle

    def due(self, now: float) -> list[dict[str, Any]]:
        """Traces whose settle time has passed and that some sink has not yet received."""
        ready = [tid for tid, t in self.due_at.items() if t <= now]
        return [self.traces[tid] for tid in ready if tid in self.traces]

    def emitted(self, tr: dict[str, Any], sink: str) -> None:
        """`sink` received the trace at its current score."""
        tr["emitted"][sink] = tr["score"]
        if all(tr["emitted"].get(s, 0) >= tr["score"] for s in self.sinks):
            self.due_at.pop(tr["id"], None)

    def retry_later(self, tr: dict[str, Any], when: float) -> None:
        self.due_at[tr["id"]] = when

    def restore(self, records: list[dict[str, Any]], now_wall_ns: int, now: float) -> int:
        """Take traces from the store back after a restart; unsent ones become due now."""
        n = 0
        for tr in sorted(records, key=lambda r: r.get("last", 0)):
            if "rules" not in tr or now_wall_ns - tr.get("last", 0) > self.idle * NS:
                if tr.get("score", 0) >= self.threshold and "rules" in tr:
                    self.traces[tr["id"]] = tr  # too old to grow, but still owed to a sink
                    self._schedule(tr, now - self.settle)
                continue
            tr.setdefault("emitted", {})
            self.traces[tr["id"]] = tr
            self.by_root[tr["root"]] = tr["id"]
            self._schedule(tr, now - self.settle)
            n += 1
        return n

    def forget_idle(self, now_wall_ns: int) -> None:
        """Drop traces idle for longer than `idle` and owed to nobody (they stay stored)."""
        for tid, tr in list(self.traces.items()):
            if tid not in self.due_at and now_wall_ns - tr["last"] > self.idle * NS:
                del self.traces[tid]
                if self.by_root.get(tr["root"]) == tid:
                    del self.by_root[tr["root"]]


def _is_mitre(tag: str) -> bool:
    t = tag.upper()
    return t[:1] == "T" and t[1:5].isdigit()
