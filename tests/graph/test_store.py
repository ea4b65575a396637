"""Store: indexes, compressed event blocks, retention, migrations, History queries."""

from __future__ import annotations

import json
import zlib

import lmdb
import pytest

from spyderd.errors import StoreError
from spyderd.graph import Graph, Store
from spyderd.graph.codec import HEADER, digest
from spyderd.graph.query import History
from spyderd.graph.retention import Policy, check_invariants, projection, prune
from spyderd.graph.store import SCHEMA_VERSION, U64
from spyderd.graph.synthetic import roots, stream
from spyderd.model import (
    ConnectEvent,
    ExecEvent,
    FileEvent,
    Finding,
    ForkEvent,
    WroteExecEvent,
)

S = 1_000_000_000


def filled(tmp_path, n: int = 3000) -> tuple[Graph, Store]:
    store = Store(tmp_path)
    g = Graph(store, "b00t", boot_wall_ns=0)
    g.load_snapshot(roots())
    for i, ev in enumerate(stream(n)):
        g.apply(ev)
        if i % 500 == 499:
            g.flush()
    g.flush()
    return g, store


def test_events_round_trip_in_time_order_and_range(tmp_path):
    _, store = filled(tmp_path)
    evs = list(store.events())
    assert len(evs) == 3000 == store.stats()["event_count"]
    times = [e["time"] for e in evs]
    assert times == sorted(times)
    mid = times[1500]
    part = list(store.events(since_ns=mid, until_ns=times[2000]))
    assert part and all(mid <= e["time"] <= times[2000] for e in part)
    assert len(part) == sum(1 for t in times if mid <= t <= times[2000])


def test_indexes_by_time_pid_container_and_rule(tmp_path):
    g, store = filled(tmp_path, 600)
    node = next(iter(store.nodes_between(kind="process")))
    assert node.kind == "process"
    first_fork = next(e for e in store.events() if e["kind"] == "fork")
    images = store.processes_by_pid(first_fork["pid"])
    assert images and all(n.pid == first_fork["pid"] for n in images)
    f = Finding(id="fnd-1", rule="R1", severity="high", priority=3, message="m",
                time=50 * S, process_id=node.id, trace_id="trc-1", root_id=node.id, event={})
    g.add_finding(f)
    proc = g.live[100]
    proc.attrs["container_id"] = "c0ffee"
    g.flush()
    assert [x.id for x in store.findings(rule="R1")] == ["fnd-1"]
    assert list(store.findings(rule="R2")) == []
    assert [x.id for x in store.findings(since_ns=51 * S)] == []
    # container index is written for nodes first stored with a container id
    fork = ForkEvent(time=60 * S, ktime=60 * S, pid=4242, ppid=100, child_start=60 * S)
    child = g.apply(fork)
    child.attrs["container_id"] = "c0ffee"
    g.flush()
    assert [n.id for n in store.in_container("c0ffee")] == [child.id]
    assert check_invariants(store) == []


def test_blocks_are_compact(tmp_path):
    _, store = filled(tmp_path, 5000)
    with store.env.begin() as txn:
        raw = sum(len(v) for name in ("blocks", "evblocks")
                  for _, v in txn.cursor(db=store.db[name]))
    assert raw / 5000 < 60, raw / 5000  # nodes, edges and events: far below the JSON size


def test_retention_by_age_prunes_ended_nodes_only(tmp_path):
    g, store = filled(tmp_path, 4000)
    before = store.stats()
    now = max(e["time"] for e in store.events())
    policy = Policy(max_age_s=0.05, chunk=200)  # keep only the last 50 ms
    rounds = 0
    while True:
        rounds += 1
        res = prune(store, policy, now_ns=now)
        assert check_invariants(store) == []  # consistent after every chunk
        if res.done:
            break
    after = store.stats()
    assert rounds > 1 and after["nodes"] < before["nodes"]
    assert after["events"] < before["events"]
    # live processes (init and services) survive however old they are
    for pid in (1, 100, 107):
        assert store.node(g.live[pid].id) is not None
    cutoff = now - int(0.05 * S)
    assert all(e["time"] >= cutoff - 120 * S for e in store.events())


def test_retention_by_size_prunes_oldest_first(tmp_path):
    _, store = filled(tmp_path, 6000)
    used = store.stats()["used_bytes"]
    oldest = next(store.events())["time"]
    newest = max(e["time"] for e in store.events())
    res = prune(store, Policy(max_age_s=10**9, max_bytes=used // 2, chunk=10**6),
                now_ns=newest)
    assert res.event_blocks > 0
    assert oldest < next(store.events())["time"] < newest
    assert check_invariants(store) == []


def test_migration_from_schema_1(tmp_path):
    path = tmp_path / "store"
    path.mkdir()
    env = lmdb.open(str(path), max_dbs=20, subdir=True)
    dbs = {n: env.open_db(n.encode(), dupsort=n in ("edges_out", "edges_in", "idx_pid"))
           for n in ("meta", "nodes", "edges_out", "edges_in", "events", "findings", "traces",
                     "idx_pid", "idx_time")}
    ev = {"kind": "exec", "time": 5 * S, "pid": 7, "filename": "/bin/sh"}
    node = {"id": "proc:x:1:7", "kind": "process", "start": 5 * S, "end": 6 * S, "pid": 7,
            "container_id": "abc"}
    fnd = {"id": "fnd-old", "rule": "Old", "severity": "low", "priority": 5, "message": "m",
           "time": 5 * S, "process_id": "proc:x:1:7", "trace_id": "trc-x", "root_id": "r",
           "event": ev, "tags": [], "message_id": "", "chain": [], "sent": True}
    with env.begin(write=True) as txn:
        txn.put(b"schema", b"1", db=dbs["meta"])
        txn.put(U64.pack(5 * S) + U64.pack(0), json.dumps(ev).encode(), db=dbs["events"])
        txn.put(node["id"].encode(), json.dumps(node).encode(), db=dbs["nodes"])
        txn.put(U64.pack(5 * S) + node["id"].encode(), b"", db=dbs["idx_time"])
        txn.put(b"fnd-old", json.dumps(fnd).encode(), db=dbs["findings"])
    env.close()
    with pytest.raises(StoreError, match="older spyderd"):
        Store(tmp_path, readonly=True)  # readers can't see v2 databases yet
    store = Store(tmp_path)
    assert store.get_meta("schema") == SCHEMA_VERSION
    assert list(store.events()) == [ev]
    assert [n.id for n in store.in_container("abc")] == ["proc:x:1:7"]
    assert [f.id for f in store.findings(rule="Old")] == ["fnd-old"]
    assert check_invariants(store) == []


def test_newer_schema_is_refused(tmp_path):
    store = Store(tmp_path)
    store.put_meta("schema", SCHEMA_VERSION + 1)
    store.close()
    with pytest.raises(StoreError, match="newer than this spyderd"):
        Store(tmp_path)


def test_history_queries_and_download_then_run(tmp_path):
    store = Store(tmp_path)
    g = Graph(store, "b00t", boot_wall_ns=0)
    g.load_snapshot(roots(1))
    g.apply(ForkEvent(time=10 * S, ktime=10 * S, pid=500, ppid=100, child_start=10 * S))
    curl = g.apply(ExecEvent(time=11 * S, ktime=11 * S, pid=500, filename="/usr/bin/curl",
                             args=["curl", "-o", "/tmp/x"], start=10 * S))
    g.apply(FileEvent(time=12 * S, ktime=12 * S, pid=500, op="open", path="/tmp/x",
                      inode=77, dev=1))
    g.apply(ForkEvent(time=20 * S, ktime=20 * S, pid=600, ppid=100, child_start=20 * S))
    run = g.apply(ExecEvent(time=21 * S, ktime=21 * S, pid=600, filename="/tmp/x",
                            args=["/tmp/x"], start=20 * S))
    g.apply(WroteExecEvent(time=21 * S, ktime=21 * S, pid=600, path="/tmp/x", inode=77, dev=1,
                           writer_pid=500, writer_start=10 * S, write_time=12 * S))
    assert g.writer(run).id == curl.id
    g.flush()
    h = History(store)
    assert h.writer(h.node(run.id)).id == curl.id
    svc = h.node(g.live[100].id)
    kids = [n.pid for n in h.descendants(svc)]
    assert kids.count(500) == 2 and kids.count(600) == 2  # fork copy + exec image each
    assert [n.pid for n in h.descendants(svc, within_ns=15 * S)] == [500, 500]
    assert h.by_pid(600).id == run.id
    assert h.by_pid(500, at_ns=10 * S + 1).via == "spawned"
    assert [a.pid for a in h.ancestors(h.node(run.id))][:2] == [600, 100]
    edges = {(e.kind, e.dst) for e in store.edges("file:1:77", "out")}
    assert ("executed-file", run.id) in edges
    assert check_invariants(store) == []


def test_block_decodes_with_plain_zlib(tmp_path):
    """The format is documented and tool-friendly: 17-byte header + zlib(JSON); a graph
    part is one JSON value per line (directory, groups, edges, table entries)."""
    _, store = filled(tmp_path, 100)
    with store.env.begin() as txn:
        raw = txn.cursor(db=store.db["blocks"])
        raw.last()
        ev = txn.get(raw.key(), db=store.db["evblocks"])
        lines = [json.loads(x) for x in zlib.decompress(raw.value()[HEADER.size:]).split(b"\n")]
        events = json.loads(zlib.decompress(ev[HEADER.size:]))
    head = lines[0]
    ids = lines[len(head["k"]) + 2:][:head["i"]]  # the table starts with the node ids
    assert head["v"] == 4 and head["i"] == len(head["g"]) == len(ids) and events["x"]["g"]
    assert "process" in {keys[0] for keys in head["k"]}
    assert all(i.count(":") >= 2 for i in ids)


def test_event_indexes_answer_like_a_scan(tmp_path):
    """pid, path, remote address, user and container lookups return exactly what a full
    scan filtered the same way returns, and read fewer blocks."""
    g, store = filled(tmp_path, 6000)
    g.live[100].attrs["container_id"] = "c" * 64
    g.touch(g.live[100])
    g.apply(ConnectEvent(time=999 * S, ktime=999 * S, pid=100, family=4, local_ip="10.0.0.2",
                         local_port=1, remote_ip="192.0.2.7", remote_port=22, uid=7))
    g.flush()
    every = list(store.events())
    pid = every[2000]["pid"]
    path = next(e["path"] for e in every if e["kind"] == "file")
    cases = [
        ({"pid": pid}, lambda e: e["pid"] == pid),
        ({"path": path}, lambda e: path in (e.get("path"), e.get("path2"), e.get("filename"))),
        ({"remote_ip": "192.0.2.7"}, lambda e: e.get("remote_ip") == "192.0.2.7"),
        ({"uid": 7}, lambda e: e["uid"] == 7),
        ({"container_id": "c" * 64}, lambda e: e["process_id"] == g.live[100].id),
    ]
    for kw, want in cases:
        got = list(store.events(**kw))
        assert got == [e for e in every if want(e)], kw
        assert got, kw
    since = every[3000]["time"]
    assert list(store.events(since_ns=since, pid=pid)) == [
        e for e in every if e["pid"] == pid and e["time"] >= since]
    with store.env.begin() as txn:
        assert len(store.indexed_blocks(txn, b"A" + digest("192.0.2.7"))) == 1


def test_live_processes_and_users(tmp_path):
    g, store = filled(tmp_path, 3000)
    live = {n.id for n in store.live_processes()}
    assert live == {n.id for n in g.live.values()}
    assert all(n.uid == 33 for n in store.by_user(33))
    assert {n.pid for n in store.by_user(0)} >= {1, 100}


def test_retention_ages_events_before_nodes_and_keeps_what_findings_name(tmp_path):
    g, store = filled(tmp_path, 4000)
    evs = list(store.events())
    subject = next(n for n in store.nodes_between(kind="process")
                   if n.end and n.parent and n.start < evs[500]["time"])
    f = Finding(id="fnd-keep", rule="R", severity="high", priority=3, message="m",
                time=evs[-1]["time"], process_id=subject.id, trace_id="trc-k",
                root_id=subject.parent, event={},
                chain=[{"id": subject.parent}, {"id": subject.id}])
    g.add_finding(f)
    g.flush()
    now = evs[-1]["time"] + S
    nodes_before = store.stats()["nodes"]
    # events older than 1 s go; nodes stay (their horizon is longer)
    pol = Policy(max_age_s=3600, events_age_s=1, findings_age_s=7200, chunk=10**6)
    prune(store, pol, now_ns=now)
    assert all(e["time"] >= now - S - 120 * S for e in store.events())
    assert len(list(store.events())) < len(evs)
    assert store.stats()["nodes"] == nodes_before
    assert check_invariants(store) == []
    # now the graph horizon passes too: ended nodes go, but not what the finding names
    prune(store, Policy(max_age_s=0.001, events_age_s=0.001, findings_age_s=7200,
                        chunk=10**6), now_ns=now + 10 * S)
    assert store.stats()["nodes"] < nodes_before
    assert store.node(subject.id) == subject
    assert store.node(subject.parent) is not None
    assert store.finding("fnd-keep") is not None
    for p in (1, 100):
        assert store.node(g.live[p].id) is not None  # live processes stay
    assert check_invariants(store) == []
    # and once the finding itself ages out, so does what only it kept
    prune(store, Policy(max_age_s=0.001, events_age_s=0.001, findings_age_s=0.001,
                        chunk=10**6), now_ns=now + 10**4 * S)
    prune(store, Policy(max_age_s=0.001, events_age_s=0.001, findings_age_s=0.001,
                        chunk=10**6), now_ns=now + 10**4 * S)
    assert store.finding("fnd-keep") is None and store.node(subject.id) is None
    assert check_invariants(store) == []


def test_projection_of_days_the_size_limit_holds():
    p = projection(used_bytes=10_000_000, events_stored=100_000, events_per_s=50,
                   max_bytes=10 << 30)
    assert p["bytes_per_event"] == 100.0
    assert p["bytes_per_day"] == 100 * 50 * 86400
    assert p["days"] == round((10 << 30) / (100 * 50 * 86400), 1)
    assert "days" not in projection(0, 0, 0, 10 << 30)


def test_values_keep_their_types(tmp_path):
    """A column of False next to a column of 0 stays False (they compare equal)."""
    _, store = filled(tmp_path, 300)
    for ev in store.events():
        if ev["kind"] == "exec":
            assert ev["args_truncated"] is False and ev["execveat"] is False
            assert type(ev["gid"]) is int
        if ev["kind"] == "fork":
            assert ev["thread"] is False
