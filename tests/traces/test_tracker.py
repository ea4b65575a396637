"""Trace grouping and scoring: distinct rules count, repeats don't; settle, growth, idle."""

from __future__ import annotations

from spyderd.model import Finding, Node
from spyderd.traces.roots import Root
from spyderd.traces.score import WEIGHTS, score
from spyderd.traces.tracker import TraceTracker

S = 1_000_000_000


def root(nid: str = "proc:b:1:100") -> Root:
    n = Node(id=nid, kind="process", pid=100, attrs={"exe": "/usr/sbin/nginx"})
    return Root(node=n, kind="inbound", path=(n,))


def finding(i: int, rule: str, sev: str = "high", t: int = 0, suppressed: str = "") -> Finding:
    return Finding(id=f"fnd-{i}", rule=rule, severity=sev, priority=3, message="m",
                   time=t or (1000 + i) * S, process_id="proc:b:1:200", trace_id="",
                   root_id="", event={}, tags=["T1059"], suppressed=suppressed)


def test_score_counts_distinct_rules_by_severity_and_ignores_repeats():
    tr = TraceTracker(threshold=40, settle=2)
    r = root()
    for i in range(20):
        tr.add(finding(i, "A", "medium"), r, now=0)
    rec = tr.traces[tr.by_key[r.node.id]]
    assert rec.score == WEIGHTS["medium"] and len(rec.findings) == 20
    tr.add(finding(30, "B", "high"), r, now=0)
    tr.add(finding(31, "B", "critical"), r, now=0)  # same rule, worse severity: counts once
    assert rec.score == WEIGHTS["medium"] + WEIGHTS["critical"]
    assert rec.rules == {"A": "medium", "B": "critical"}
    assert rec.trigger == "fnd-0" and rec.mitre == ["T1059"]
    assert score({"A": "low", "B": "info"}) == WEIGHTS["low"] + WEIGHTS["info"]


def test_threshold_crossing_is_due_once_after_settle_and_again_when_it_grows():
    tr = TraceTracker(threshold=40, settle=2, sinks=("journald",))
    r = root()
    f = finding(1, "A")
    tr.add(f, r, now=10)
    assert tr.due(100) == []  # 20 < 40
    tr.add(finding(2, "B"), r, now=11)
    assert tr.due(12.9) == []  # settling
    (rec,) = tr.due(13.0)
    assert rec.score == 40 and f.trace_id == rec.id and f.root_id == r.node.id
    tr.add(finding(3, "B"), r, now=13.5)  # a repeat of B while settling rides along
    tr.emitted(rec, "journald")
    assert tr.due(1000) == []
    tr.add(finding(4, "B"), r, now=20)  # no new rule: no new entry
    assert tr.due(1000) == []
    tr.add(finding(5, "C", "medium"), r, now=21)  # grew
    (again,) = tr.due(23)
    assert again is rec and rec.score == 48


def test_idle_root_starts_a_new_trace():
    tr = TraceTracker(threshold=40, idle=60)
    r = root()
    a = finding(1, "A", t=1000 * S)
    b = finding(2, "A", t=1030 * S)
    c = finding(3, "A", t=1200 * S)
    for f in (a, b, c):
        tr.add(f, r, now=0)
    assert a.trace_id == b.trace_id != c.trace_id


def test_suppressed_trigger_zeroes_the_trace_for_good():
    tr = TraceTracker(threshold=10)
    r = root()
    tr.add(finding(1, "A", suppressed="ops"), r, now=0)
    tr.add(finding(2, "B", "critical"), r, now=0)
    rec = tr.traces[tr.by_key[r.node.id]]
    assert rec.score == 0 and rec.suppressed == "ops" and tr.due(100) == []


def test_restore_makes_unsent_traces_due_and_keeps_growing_them():
    tr = TraceTracker(threshold=40, settle=1, sinks=("journald",))
    r = root()
    tr.add(finding(1, "A"), r, now=0)
    tr.add(finding(2, "B"), r, now=0)
    rec = tr.traces[tr.by_key[r.node.id]].to_dict()
    again = TraceTracker(threshold=40, settle=1, sinks=("journald",))
    assert again.restore([rec], now_wall_ns=1003 * S, now=50) == 1
    assert [t.id for t in again.due(50)] == [rec["id"]]
    f = finding(3, "C", "low", t=1004 * S)
    again.add(f, r, now=51)
    assert f.trace_id == rec["id"]


def test_lookup_resumes_a_stored_trace_and_never_overwrites_an_idle_one():
    stored = {}
    tr = TraceTracker(threshold=40, idle=60, lookup=stored.get)
    r = root()
    first = finding(1, "A", t=1000 * S)
    tr.add(first, r, now=0)
    stored[first.trace_id] = {**tr.traces[first.trace_id].to_dict(), "last": 1000 * S}
    fresh = TraceTracker(threshold=40, idle=60, lookup=stored.get)
    soon = finding(2, "B", t=1010 * S)
    fresh.add(soon, r, now=0)
    assert soon.trace_id == first.trace_id
    late = TraceTracker(threshold=40, idle=60, lookup=stored.get)
    much_later = finding(3, "B", t=5000 * S)
    late.add(much_later, r, now=0)
    assert much_later.trace_id != first.trace_id
