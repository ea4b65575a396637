"""Model: ids, event and node round trips, the memory bound of the in-memory index."""

from __future__ import annotations

import json

import pytest

from spyderd.graph import Graph
from spyderd.graph.codec import Block, BlockWriter
from spyderd.graph.synthetic import roots, stream
from spyderd.model import (
    EVENT_TYPES,
    ExecEvent,
    ForkEvent,
    Node,
    event_from_dict,
    event_to_dict,
    process_id,
)
from spyderd.model.nodes import CLOCK_TICK_NS

S = 1_000_000_000


def test_process_ids_agree_between_kernel_and_proc():
    exact = 123 * S + 4_567_891  # start_boottime from the kernel, ns
    from_proc = (exact // CLOCK_TICK_NS) * CLOCK_TICK_NS  # /proc's tick precision
    assert process_id("b", 42, exact) == process_id("b", 42, from_proc)
    assert process_id("b", 42, exact) != process_id("b", 42, exact + CLOCK_TICK_NS)
    assert process_id("b", 42, exact, exec_ktime=9) != process_id("b", 42, exact)


@pytest.mark.parametrize("kind", sorted(EVENT_TYPES))
def test_every_event_kind_round_trips_through_json(kind):
    cls = EVENT_TYPES[kind]
    required = {"time": 1, "pid": 2}
    samples = {"fork": {"ppid": 1}, "exec": {"filename": "/bin/sh", "args": ["sh", "-c"]},
               "connect": {"family": 4, "local_ip": "1.1.1.1", "local_port": 1,
                           "remote_ip": "2.2.2.2", "remote_port": 2},
               "accept": {"family": 6, "local_ip": "::1", "local_port": 1,
                          "remote_ip": "::1", "remote_port": 2},
               "listen": {"family": 4, "local_ip": "0.0.0.0", "local_port": 80},
               "bind": {"family": 4, "protocol": "udp", "local_ip": "0.0.0.0",
                        "local_port": 53},
               "udp": {"call": "sendto", "family": 4, "remote_ip": "9.9.9.9",
                       "remote_port": 53},
               "unix_connect": {"path": "/run/x.sock"},
               "file": {"op": "rename", "path": "/etc/a", "path2": "/etc/b"},
               "wrote_exec": {"path": "/tmp/x", "writer_pid": 7},
               "cred": {"call": "setuid", "args": [0]},
               "prctl": {"option": 15, "name": "kworker"},
               "kernel": {"call": "ptrace", "target_pid": 9, "request": 16},
               "alert": {"message": "authentication failure"},
               "socket": {"family": "packet", "type": "raw", "protocol": 768},
               "dup": {"oldfd": 3, "newfd": 0, "protocol": "tcp"}}
    ev = cls(**required, **samples.get(kind, {}))
    d = json.loads(json.dumps(event_to_dict(ev)))
    assert d["kind"] == kind and next(iter(d)) == "kind"
    assert event_from_dict(d) == ev


def test_bad_event_records_are_rejected_with_a_reason():
    with pytest.raises(ValueError, match="unknown event kind"):
        event_from_dict({"kind": "nope"})
    with pytest.raises(ValueError, match="bad exec event"):
        event_from_dict({"kind": "exec", "time": 1})


def test_node_encoding_round_trips():
    n = Node(id="proc:b:1:2", kind="process", start=5, pid=2, uid=0,
             attrs={"exe": "/bin/sh", "args": ["sh"], "result": 0, "container_id": "",
                    "flag": False, "machine_id": "m", "cgroup_id": 0})
    w = BlockWriter()
    w.add_node(n)
    raw, events = w.encode()
    assert events is None and Block(raw).node(0) == n
    assert len(raw) < len(json.dumps(n.to_dict())) + 40


def test_memory_bound_keeps_live_ancestry_without_a_store():
    g = Graph(None, "b", boot_wall_ns=0, max_recent=2000)
    g.load_snapshot(roots())
    for i, ev in enumerate(stream(30000)):
        g.apply(ev)
        if i % 1000 == 999:
            g.flush()
    # a long-lived child that stays while everything around it ends
    g.apply(ForkEvent(time=10**12, ktime=10**12, pid=99999, ppid=100, child_start=10**12))
    live = g.apply(ExecEvent(time=10**12 + 1, ktime=10**12 + 1, pid=99999, filename="/bin/x",
                             start=10**12))
    for i, ev in enumerate(stream(30000, seed=2, t0=2 * 10**12)):
        g.apply(ev)
        if i % 1000 == 999:
            g.flush()
    g.flush()
    assert len(g.nodes) <= 2000 + 200
    chain = [a.pid for a in g.ancestors(live)]
    assert chain == [99999, 100, 1]  # from memory: there is no store to fall back on
