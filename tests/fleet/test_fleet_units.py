"""The fleet's parts without a broker: messages, the matcher, the outbox on a real LMDB."""

from __future__ import annotations

import pytest

from spyderd.capture.scope import parse_scope
from spyderd.common.config import FleetConfig
from spyderd.errors import ConfigError
from spyderd.fleet import messages as m
from spyderd.fleet.bus import secret_problem
from spyderd.fleet.outbox import Outbox
from spyderd.fleet.stitch import Matcher
from spyderd.graph import Store
from spyderd.model import Edge, Finding, Node


def end(machine: str, cid: str, direction: str, t: int, lport=40000, rport=80) -> m.Endpoint:
    a, b = ("10.0.0.1", lport), ("10.0.0.2", rport)
    if direction == "in":
        a, b = b, a
    return m.Endpoint(machine, cid, f"proc:{cid}", direction,
                      m.canonical_tuple(a[0], a[1], b[0], b[1]), t)


def test_canonical_tuple_is_the_same_from_both_ends_and_unmaps_ipv4():
    out = m.canonical_tuple("::ffff:10.0.0.1", 40000, "10.0.0.2", 80)
    back = m.canonical_tuple("10.0.0.2", 80, "10.0.0.1", 40000)
    assert out == back == ("10.0.0.1", 40000, "10.0.0.2", 80)
    assert m.shard_of(out) == m.shard_of(back)


@pytest.mark.parametrize("raw", [b"", b"\x00\x01garbage", m.encode({"v": 2, "machine": "a"}),
                                 m.encode({"v": 1}), m.encode([1, 2]),
                                 b"x" * (m.MAX_MESSAGE + 1)])
def test_decode_rejects_what_is_not_a_v1_message(raw):
    with pytest.raises(m.BadMessage):
        m.decode(raw)


def test_decode_refuses_a_compression_bomb():
    import zlib

    with pytest.raises(m.BadMessage):
        m.decode(zlib.compress(b'{"v":1,"machine":"a","x":"' + b"a" * (m.MAX_MESSAGE * 9)))


def test_matcher_joins_opposite_ends_of_other_hosts_closest_in_time():
    mt = Matcher()
    assert mt.add(end("a", "c1", "out", 1_000_000_000)) is None
    assert mt.add(end("a", "c0", "in", 1_000_000_000)) is None  # same host: not a peer
    assert mt.add(end("a", "c2", "out", 50_000_000_000)) is None  # port reused later
    p = mt.add(end("b", "s1", "in", 1_200_000_000))
    assert p is not None and p.a.conn_id == "c1" and p.b.conn_id == "s1"
    p2 = mt.add(end("b", "s2", "in", 50_100_000_000))
    assert p2 is not None and p2.a.conn_id == "c2"
    assert p.confidence == 0.5  # two open ends fitted: the closest won, with less confidence
    assert p2.confidence == 1.0


def test_matcher_ignores_ends_beyond_the_window():
    mt = Matcher(window_ns=10)
    mt.add(end("a", "c1", "out", 0))
    assert mt.add(end("b", "s1", "in", 11)) is None


def test_endpoint_from_rejects_forged_shapes():
    good = end("a", "c", "out", 5).to_msg()
    assert m.endpoint_from(good).conn_id == "c"
    for bad in ({**good, "tuple": "x"}, {**good, "direction": "sideways"},
                {**good, "time": "now"}, {k: v for k, v in good.items() if k != "id"}):
        with pytest.raises(m.BadMessage):
            m.endpoint_from(bad)
    for bad in ({"v": 1, "machine": "a", "ends": 5}, {"v": 1, "machine": "a", "ends": [1]}):
        with pytest.raises(m.BadMessage):
            m.endpoints_from(bad)


def conn(i: int) -> Node:
    return Node(id=f"conn:b:{i}", kind="connection", start=i, pid=7,
                attrs={"direction": "out", "local_ip": "10.0.0.1", "local_port": 40000 + i,
                       "remote_ip": "10.0.0.2", "remote_port": 80, "result": 0,
                       "process_id": "proc:x"})


def test_outbox_is_written_with_the_batch_and_bounded(tmp_path):
    store = Store(tmp_path)
    box = Outbox(store, "host-a", "boot1", limit=16)
    f = Finding.from_dict({"id": "fnd-1", "rule": "r", "severity": "high", "time": 1,
                           "process_id": "proc:x", "trace_id": "trc-1", "priority": 3,
                           "message": "m", "root_id": "proc:x", "event": {}})
    nodes = [conn(i) for i in range(3)]
    store.write_batch(nodes, [Edge("proc:x", "conn:b:0", "connect", 1)], [], [f], {},
                      extra=box.stage(nodes, [], [f]))
    entries = box.pending()
    kinds = [e.kind for e in entries]
    assert kinds[0] == "g" and kinds[-1] == "f" and set(kinds[1:-1]) == {"c"}
    assert entries[0].msg_id == "host-a:boot1:0" and entries[-1].subject.endswith(".finding")
    ends = [e for x in entries if x.kind == "c" for e in m.endpoints_from(m.decode(x.payload))]
    assert sorted(e.conn_id for e in ends) == ["conn:b:0", "conn:b:1", "conn:b:2"]
    assert all(x.subject.endswith(f".conn.{m.shard_of(e.tup)}") for x in entries
               if x.kind == "c" for e in m.endpoints_from(m.decode(x.payload)))
    queued = box.status()["queued"]
    for i in range(10):  # over the bound: graph deltas and ends go, the finding stays
        more = [conn(10 + i)]
        store.write_batch(more, [], [], [], {}, extra=box.stage(more, [], []))
    st = box.status()
    assert st["queued"] == 16 and st["dropped"] == queued + 20 - 16
    assert any(e.kind == "f" for e in box.pending(100))
    box.ack([e.seq for e in box.pending(100)])
    assert box.status()["queued"] == 0 and box.status()["acked"] == st["next_seq"]
    store.close()


def test_scope_settings_are_checked():
    assert parse_scope("") == ("", "")
    assert parse_scope("netns:4026531840") == ("netns", 4026531840)
    with pytest.raises(ConfigError):
        parse_scope("pidns:1")
    with pytest.raises(ConfigError):
        parse_scope("netns:/nonexistent/ns")


def test_credentials_in_a_world_readable_file_keep_the_fleet_off(tmp_path):
    cfg = tmp_path / "spyderd.yaml"
    cfg.write_text("fleet: {url: nats://127.0.0.1:4222, password: s3cret}\n")
    cfg.chmod(0o644)
    assert "world-readable" in secret_problem(str(cfg), FleetConfig(password="s3cret"))
    cfg.chmod(0o640)
    assert secret_problem(str(cfg), FleetConfig(password="s3cret")) == ""
    creds = tmp_path / "host.creds"
    creds.write_text("-----BEGIN NATS USER JWT-----\n")
    creds.chmod(0o604)
    assert "world-readable" in secret_problem(str(cfg), FleetConfig(creds=str(creds)))


CONNTRACK = """\
ipv4     2 tcp      6 431999 ESTABLISHED src=10.251.1.1 dst=10.251.2.2 sport=40000 \
dport=7004 src=10.251.2.2 dst=10.251.2.1 sport=7004 dport=61000 [ASSURED] mark=0 zone=0 use=2
ipv4     2 tcp      6 431999 ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=5000 dport=80 \
src=10.0.0.2 dst=10.0.0.1 sport=80 dport=5000 [ASSURED] mark=0 zone=0 use=2
ipv4     2 udp      17 29 src=10.0.0.1 dst=10.0.0.9 sport=53 dport=53 src=10.0.0.9 \
dst=10.9.9.9 sport=53 dport=53 mark=0 zone=0 use=2
garbage line
"""


def test_nat_pairs_are_the_rewritten_tcp_entries_only():
    from spyderd.fleet.nat import nat_messages, nat_pairs

    pairs = nat_pairs(CONNTRACK)
    assert pairs == [(m.canonical_tuple("10.251.1.1", 40000, "10.251.2.2", 7004),
                      m.canonical_tuple("10.251.2.1", 61000, "10.251.2.2", 7004))]
    msgs = nat_messages("host-b", pairs)
    shards = {m.shard_of(pairs[0][0]), m.shard_of(pairs[0][1])}
    assert {s for s, _ in msgs} == {m.conn_subject("host-b", x) for x in shards}
    assert m.nat_from(m.decode(m.encode(msgs[0][1]))) == pairs


def test_matcher_joins_across_a_nat_alias_whichever_comes_first():
    inside = m.canonical_tuple("10.251.1.1", 40000, "10.251.2.2", 7004)
    outside = m.canonical_tuple("10.251.2.1", 61000, "10.251.2.2", 7004)
    a = m.Endpoint("host-a", "c-a", "p-a", "out", inside, 1)
    c = m.Endpoint("host-c", "c-c", "p-c", "in", outside, 2)

    ends_first = Matcher()
    assert ends_first.add(a) is None and ends_first.add(c) is None
    peers = ends_first.alias(inside, outside)

    alias_first = Matcher()
    assert alias_first.alias(inside, outside) == []
    assert alias_first.add(a) is None
    late = alias_first.add(c)
    for got in (peers[0] if len(peers) == 1 else None, late):
        assert got is not None and {got.a.conn_id, got.b.conn_id} == {"c-a", "c-c"}
    assert ends_first.size == alias_first.size == 0
    with pytest.raises(m.BadMessage):
        m.nat_from({"v": 1, "machine": "b", "nat": [[1, 2]]})
