"""From rule matches to what analysts read: findings, folded, suppressed, grouped into traces.

The daemon hands every `Match` to `Findings.new`; `Findings.send_due` runs once per loop
turn. The path of one match:

1. **suppression**: a policy that matches (rule, ancestry, container image, user) marks the
   finding; it is stored, weighs nothing in its trace and is not sent (see
   `traces.suppress`);
2. **folding**: a repeat of the same rule on the same program and arguments within
   `findings.fold_window` seconds only raises the earlier finding's count;
3. **trace**: the subject's causal root picks the trace (see `traces.roots`), whose score
   and counts are updated (see `traces.tracker`);
4. **settle**: `findings.settle` seconds later the finding's chain is cut from the store
   (so it includes what the subject did next) and the finding goes to every sink; a trace
   whose score reached `findings.trace_threshold` goes out `findings.trace_settle` seconds
   after it did (again when it grows).

Nothing is lost when a sink is down: an item stays pending (and `sent` stays false in the
store), the sink is probed again every `RETRY_S` seconds, and the backlog goes out in order
when it answers. Findings stored but unsent when the daemon stopped are sent at the next
start; so are traces owed to a sink.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from spyderd.model import Event, Finding, Node, Trace, event_record
from spyderd.model.store import Store
from spyderd.sinks import Sink
from spyderd.traces.build import build_trace, chain_for, view_counts
from spyderd.traces.fold import Folder
from spyderd.traces.roots import find_root
from spyderd.traces.split import links, root_label, trace_key, unit_of
from spyderd.traces.suppress import Suppressions
from spyderd.traces.tracker import TraceTracker

log = logging.getLogger("spyderd.findings")
RETRY_S = 2.0
# A trace's counts come from its view in the store, which for a trace of thousands of
# processes takes seconds to build. After a count that took d seconds the trace is not
# counted again for RECOUNT_FACTOR * d seconds (at most ~10% of the loop on counting), and
# the traces below the threshold share RECOUNT_BUDGET_S per loop turn, so a busy trace
# cannot hold the loop (and the capture behind it) for minutes.
RECOUNT_FACTOR = 10.0
RECOUNT_BUDGET_S = 0.25

Publish = Callable[[str, dict[str, Any]], None]


@dataclass
class Pending:
    due: float
    finding: Finding
    published: bool = False


@dataclass
class Findings:
    """Findings and traces between the rules and the sinks (owned by the daemon)."""

    graph: Any  # spyderd.graph.Graph: live ancestry, batches to the store
    store: Store  # chains and trace views after a flush
    sinks: list[Sink]
    tracker: TraceTracker
    folder: Folder
    suppressions: Suppressions = field(default_factory=Suppressions)
    settle: float = 1.0
    publish: Publish | None = None
    pending: list[Pending] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=lambda: {
        "findings": 0, "folded": 0, "suppressed": 0, "sent": 0, "traces_sent": 0})
    retry_at: float = 0.0
    recount_at: dict[str, float] = field(default_factory=dict)  # trace id -> loop time
    stopping: bool = False

    # -- intake ----------------------------------------------------------------------------

    def new(self, ev: Event, node: Node, m: Any, now: float | None = None) -> Finding:
        """A rule matched `ev` on `node` (`m` is a `spyderd.rules.Match`)."""
        now = time.monotonic() if now is None else now
        rule = m.rule
        line = list(self.graph.ancestors(node))
        policy = self.suppressions.match(rule.name, node, line)
        if policy is None:
            earlier = self.folder.fold(rule.name, node, ev.time)
            if earlier is not None:
                self.counters["folded"] += 1
                self.tracker.touch(earlier.trace_id, ev.time)
                self._store(earlier)
                return earlier
        f = Finding(
            id="fnd-" + uuid.uuid4().hex[:20], rule=rule.name, severity=rule.severity,
            priority=rule.priority, message=m.output, time=ev.time, process_id=node.id,
            trace_id="", root_id="", event=event_record(ev, node.id), tags=list(rule.tags),
            message_id=rule.message_id, refs=[r.id for r in m.refs], last_time=ev.time,
            suppressed=policy.name if policy else "")
        root = find_root(self.graph, node)
        unit = unit_of(self.graph, root)
        known = trace_key(root.node.id, unit) in self.tracker.by_key
        label = "" if known else root_label(self.graph, root, unit)
        tr = self.tracker.add(f, root, now, unit, links(self.graph, root), label)
        self._apply_merges(skip=f.id)
        self.graph.add_finding(f, tr)
        self.counters["findings"] += 1
        if policy is not None:
            self.counters["suppressed"] += 1
            log.info("finding %s (%s) suppressed by policy '%s'", f.id, f.rule, policy.name)
            return f
        self.folder.remember(f, node)
        self.pending.append(Pending(now + self.settle, f))
        return f

    def resend_unsent(self, now: float | None = None) -> int:
        """After a start: stored findings not yet delivered, and traces owed to a sink."""
        now = time.monotonic() if now is None else now
        n = 0
        for f in self.store.findings():
            if not f.sent and not f.suppressed:
                self.pending.append(Pending(0.0, f, published=True))
                n += 1
        restored = self.tracker.restore(list(self.store.traces()), time.time_ns(), now)
        if n or restored:
            log.info("%d unsent findings to send, %d active traces restored", n, restored)
        return n

    # -- output ----------------------------------------------------------------------------

    def send_due(self, now: float) -> None:
        """Chain and send findings whose settle window ended; then traces that are due."""
        due = [p for p in self.pending if p.due <= now]
        traces = self.tracker.due(now)
        if not due and not traces:
            return
        if now < self.retry_at:
            return
        self.graph.flush()
        ok = True
        for p in due:
            ok = self._deliver_finding(p, now)
            if not ok:
                break  # the sink is down: the rest waits for the next probe
        for tr in traces if ok else ():
            if not self._deliver_trace(tr, now):
                break
        self._count_traces({p.finding.trace_id for p in due} - {t.id for t in traces}, now)
        self.graph.flush()
        self.folder.expire(time.time_ns())
        self.tracker.forget_idle(time.time_ns())

    def _rejoin(self, f: Finding, now: float) -> None:
        """Links seen since the finding was made (the file a payload ran was written by an
        earlier request: that event follows the exec) may join its trace to another."""
        tr = self.tracker.current(f.trace_id)
        subject = self.graph.get(f.process_id)
        if tr is None or subject is None:
            return
        root = find_root(self.graph, subject)
        if root.node.id == tr.root:
            self.tracker.join(tr, links(self.graph, root), now)
            self._apply_merges()

    def _apply_merges(self, skip: str = "") -> None:
        """Findings of traces merged into others take the surviving trace's id."""
        for late, early, moved in self.tracker.merges:
            log.info("trace %s merged into %s (causally joined)", late.id, early.id)
            flushed = False
            for fid in moved:
                if fid == skip:
                    continue
                g = next((p.finding for p in self.pending if p.finding.id == fid), None)
                if g is None and not flushed:
                    self.graph.flush()
                    flushed = True
                g = g or self.store.finding(fid)
                if g is not None:
                    g.trace_id = early.id
                    self.graph.add_finding(g, early)
            self.store.write_batch([], [], [], [], {late.id: late.to_dict()})
        self.tracker.merges.clear()

    def _deliver_finding(self, p: Pending, now: float) -> bool:
        f = p.finding
        if not p.published:
            self._rejoin(f, now)
        if not f.chain:
            subject = self.store.node(f.process_id)
            if subject is not None:
                f.chain = chain_for(self.store, subject, f.root_id or None, f.refs)
        if not p.published and self.publish is not None:
            p.published = True
            self.publish("findings", f.to_dict())
        ok = True
        for sink in self.sinks:
            if sink.name in f.delivered:
                continue
            if sink.send(f):
                f.delivered.append(sink.name)
            else:
                ok = False
        if ok:
            f.sent = True
            self.pending.remove(p)
            self.counters["sent"] += 1
        else:
            p.due = now + RETRY_S
            self.retry_at = now + RETRY_S
        self._store(f)
        return ok

    def _store(self, f: Finding) -> None:
        """Queue a changed finding (and its trace record, when active) for the store."""
        tr = self.tracker.traces.get(f.trace_id)
        if tr is not None:
            self.graph.add_finding(f, tr)
        else:  # a trace no longer in memory: leave its stored record alone
            self.store.write_batch([], [], [], [f], {})

    def _count(self, tr: Trace, now: float) -> bool:
        """Counts, users, containers and machines of the trace, from its view in the store;
        False when the last count was too recent for what it cost (counts kept)."""
        if now < self.recount_at.get(tr.id, now) or (self.stopping and tr.id in self.recount_at):
            return False  # at a stop, counts made before stand: the stop must not wait
        began = time.monotonic()
        try:
            tr.count(view_counts(build_trace(self.store, tr.id)))
        except KeyError as exc:  # root pruned or not yet stored: keep what we know
            log.debug("trace %s: no view (%s)", tr.id, exc)
        self.recount_at[tr.id] = now + RECOUNT_FACTOR * (time.monotonic() - began)
        return True

    def _count_traces(self, ids: set[str], now: float) -> None:
        """Keep the counts of traces below the threshold current too (`spyderctl traces`),
        least recently counted first, within the loop turn's budget."""
        start = time.monotonic()
        records = {}
        for tid in sorted(ids, key=lambda t: self.recount_at.get(t, 0.0)):
            tr = self.tracker.traces.get(tid)
            if tr is None:
                continue
            if time.monotonic() - start > RECOUNT_BUDGET_S:
                break
            if self._count(tr, now):
                records[tid] = tr
        if records:
            self.store.write_batch([], [], [], [],
                                   {tid: tr.to_dict() for tid, tr in records.items()})
        for tid in [t for t in self.recount_at if t not in self.tracker.traces]:
            del self.recount_at[tid]

    def _deliver_trace(self, tr: Trace, now: float) -> bool:
        self._count(tr, now)
        ok = True
        for sink in self.sinks:
            if tr.emitted.get(sink.name, 0) >= tr.score:
                continue
            if sink.send_trace(tr):
                self.tracker.emitted(tr, sink.name)
            else:
                ok = False
        if ok:
            self.counters["traces_sent"] += 1
            if self.publish is not None:
                self.publish("traces", tr.to_dict())
        else:
            self.tracker.retry_later(tr, now + RETRY_S)
            self.retry_at = now + RETRY_S
        self.store.write_batch([], [], [], [], {tr.id: tr.to_dict()})
        return ok

    def flush_all(self) -> None:
        """At shutdown: try everything pending now rather than hold it across a stop."""
        self.retry_at = 0.0
        self.stopping = True
        far = time.monotonic() + 3600
        for p in self.pending:
            p.due = 0.0
        for tid in list(self.tracker.due_at):
            self.tracker.due_at[tid] = 0.0
        self.send_due(far)

    def status(self) -> dict[str, Any]:
        return {
            **self.counters,
            "pending": len(self.pending),
            "traces_active": len(self.tracker.traces),
            "traces_due": len(self.tracker.due_at),
            "trace_threshold": self.tracker.threshold,
            "sinks": {s.name: s.status() for s in self.sinks},
            "suppressions": {"policies": len(self.suppressions.policies),
                             "hits": dict(self.suppressions.hits)},
        }
