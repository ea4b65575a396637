"""Graph and store on a real LMDB in a temporary directory, fed with synthetic events."""

from __future__ import annotations

from spyderd.capture.snapshot import ProcInfo
from spyderd.graph import Graph, Store
from spyderd.graph.synthetic import roots, stream
from spyderd.model import (
    AcceptEvent,
    AlertEvent,
    ConnectEvent,
    ExecEvent,
    ExitEvent,
    ForkEvent,
    event_record,
    event_to_dict,
)
from spyderd.traces import build_trace, chain_for
from spyderd.traces.build import chain_text

BOOT = "b00t"
S = 1_000_000_000


def make(tmp_path) -> tuple[Graph, Store]:
    store = Store(tmp_path)
    g = Graph(store, BOOT, boot_wall_ns=1_700_000_000 * S)
    g.load_snapshot([ProcInfo(pid=1, ppid=0, start_ns=0, comm="init", exe="/sbin/init",
                              args=["/sbin/init"])])
    return g, store


def fork(g, t, pid, ppid):
    return g.apply(ForkEvent(time=t, ktime=t, pid=pid, ppid=ppid, child_start=t, comm="x"))


def exec_(g, t, pid, exe, *args, start):
    return g.apply(ExecEvent(time=t, ktime=t, pid=pid, filename=exe, args=[exe, *args],
                             start=start, comm=exe.rsplit("/", 1)[-1]))


def test_pid_reuse_gives_distinct_nodes(tmp_path):
    g, store = make(tmp_path)
    a = fork(g, 10 * S, 500, 1)
    g.apply(ExitEvent(time=11 * S, ktime=11 * S, pid=500))
    b = fork(g, 20 * S, 500, 1)
    assert a.id != b.id and a.end == 11 * S and b.end == 0
    g.flush()
    assert {n.id for n in store.processes_by_pid(500)} == {a.id, b.id}


def test_exec_chain_and_spawn_edges(tmp_path):
    g, store = make(tmp_path)
    copy = fork(g, 10 * S, 600, 1)
    sh = exec_(g, 11 * S, 600, "/bin/sh", "-c", "x", start=10 * S)
    nc = exec_(g, 12 * S, 600, "/bin/nc", "h", "1", start=10 * S)
    assert (sh.parent, sh.via) == (copy.id, "exec") and (nc.parent, nc.via) == (sh.id, "exec")
    assert copy.end == 11 * S and sh.end == 12 * S
    assert [a.id for a in g.ancestors(nc)] == [sh.id, copy.id, g.live[1].id]
    g.flush()
    kinds = [(e.kind, e.dst) for e in store.edges(sh.id, "out")]
    assert ("exec", nc.id) in kinds
    # The fork copy is folded away in the readable chain; the real exec chain stays.
    assert chain_text(chain_for(store, nc)) == "init[1] > sh[600] > nc[600]"


def test_peer_stitching_and_trace_crosses_to_server(tmp_path):
    g, store = make(tmp_path)
    fork(g, 1 * S, 700, 1)
    server = exec_(g, 2 * S, 700, "/usr/sbin/nginx", start=1 * S)
    fork(g, 3 * S, 800, 1)
    client = exec_(g, 4 * S, 800, "/usr/bin/curl", "http://127.0.0.1:80/", start=3 * S)
    g.apply(ConnectEvent(time=5 * S, ktime=5 * S, pid=800, family=4, local_ip="127.0.0.1",
                         local_port=40000, remote_ip="127.0.0.1", remote_port=80))
    g.apply(AcceptEvent(time=5 * S + 1, ktime=5 * S + 1, pid=700, family=4,
                        local_ip="127.0.0.1", local_port=80, remote_ip="127.0.0.1",
                        remote_port=40000))
    g.flush()
    view = build_trace(store, client.id)
    assert server.id in view.nodes, list(view.nodes)
    peers = [e for e in view.edges if e.kind == "peer"]
    assert len(peers) == 2
    assert g.live[700].attrs["accepts"] == 1


def test_store_reopens_with_same_data(tmp_path):
    g, store = make(tmp_path)
    n = fork(g, 10 * S, 900, 1)
    g.flush()
    store.close()
    again = Store(tmp_path, readonly=True)
    assert again.node(n.id).pid == 900
    assert again.stats()["nodes"] >= 2


def test_restart_keeps_ids_of_running_processes(tmp_path):
    g, store = make(tmp_path)
    fork(g, 10 * S, 950, 1)
    sh = exec_(g, 11 * S, 950, "/bin/sh", start=10 * S)
    g.flush()
    store.close()
    store2 = Store(tmp_path)
    g2 = Graph(store2, BOOT, boot_wall_ns=0)
    g2.load_snapshot([ProcInfo(pid=1, ppid=0, start_ns=0, comm="init", exe="/sbin/init"),
                      ProcInfo(pid=950, ppid=1, start_ns=10 * S, comm="sh", exe="/bin/sh")])
    assert g2.live[950].id == sh.id


def test_apply_leaves_events_unchanged_and_stores_the_image(tmp_path):
    """Events are never written to: the graph's answer (the image) goes into the record."""
    g, store = make(tmp_path)
    events = [ForkEvent(time=10 * S, ktime=10 * S, pid=900, ppid=1, child_start=10 * S,
                        comm="x"),
              ExecEvent(time=11 * S, ktime=11 * S, pid=900, filename="/bin/sh",
                        args=["/bin/sh"], start=10 * S, comm="sh"),
              ConnectEvent(time=12 * S, ktime=12 * S, pid=900, family=4, local_ip="127.0.0.1",
                           local_port=40000, remote_ip="127.0.0.1", remote_port=80)]
    before = [event_to_dict(ev) for ev in events]
    nodes = [g.apply(ev) for ev in events]
    assert [event_to_dict(ev) for ev in events] == before
    g.flush()
    stored = list(store.events(0))
    assert [e["process_id"] for e in stored[-3:]] == [n.id for n in nodes]


def test_long_lived_process_indexes_stay_bounded_and_complete(tmp_path):
    """A server or job runner that lives for months links every child and connection it
    makes: the in-memory lists must not grow with them (they did, without bound), and its
    children, connections and peers must still all be found (memory, then the store)."""
    store = Store(tmp_path)
    g = Graph(store, BOOT, boot_wall_ns=1_700_000_000 * S, max_recent=200)
    g.load_snapshot([ProcInfo(pid=1, ppid=0, start_ns=0, comm="init", exe="/sbin/init",
                              args=["/sbin/init"])])
    runner = exec_(g, S, 50, "/usr/bin/python3", "runner", start=S)
    server = exec_(g, S, 60, "/usr/bin/python3", "server", start=S)
    kids = []
    for i in range(2000):
        t = (10 + i) * S
        pid = 1000 + i
        kids.append(fork(g, t, pid, 50).id)
        g.apply(ExitEvent(time=t + 1, ktime=t + 1, pid=pid))
        port = 20000 + i
        g.apply(ConnectEvent(time=t + 2, ktime=t + 2, pid=50, family=2, local_ip="127.0.0.1",
                             local_port=port, remote_ip="127.0.0.1", remote_port=80))
        g.apply(AcceptEvent(time=t + 3, ktime=t + 3, pid=60, family=2, local_ip="127.0.0.1",
                            local_port=80, remote_ip="127.0.0.1", remote_port=port))
        if i % 50 == 49:
            g.flush()
    g.flush()
    held = (sum(map(len, g._children.values())) + sum(map(len, g._conns.values()))
            + len(g._peer))
    assert held <= 3 * g.max_recent, held
    assert len(g.nodes) <= g.max_recent
    assert [c.id for c in g.children(runner)] == kids
    assert len(g.connections(runner)) == len(g.connections(server)) == 2000
    assert [p.id for p in g.peers(runner)] == [server.id]
    assert [p.id for p in g.peers(server)] == [runner.id]


def test_stored_events_are_the_records_of_what_the_graph_filed(tmp_path):
    """The graph hands (event, image) pairs to the store, not dicts: what comes back is
    exactly `event_record(event, image)` for every kind, in time order, including an event
    whose source already named its process and one the graph filed under no image."""
    store = Store(tmp_path)
    g = Graph(store, BOOT, boot_wall_ns=0)
    g.load_snapshot(roots())
    want = []
    events = list(stream(2500, seed=5))
    events.append(ExecEvent(time=events[-1].time + 1, ktime=1, pid=4242, filename="/bin/x",
                            args=["x", "-v"], env={"LD_PRELOAD": "/tmp/a.so"},
                            stdio=[{"type": "pipe", "pipe": 7}], comm="x"))
    events.append(AlertEvent(time=events[-1].time + 1, pid=4242, message="m",
                             process_id="proc:gone:1:4242"))
    for i, ev in enumerate(events):
        node = g.apply(ev)
        want.append(event_record(ev, node.id if node is not None else ""))
        if i % 700 == 699:
            g.flush()
    g.flush()
    assert want[-1]["process_id"] == "proc:gone:1:4242"  # alert of an image never seen
    assert list(store.events()) == sorted(want, key=lambda e: e["time"])
