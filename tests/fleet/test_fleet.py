"""The fleet for real: three scoped spyderd hosts, a nats-server, a stitcher; an attack
hops A -> B -> C and `spyderctl trace --fleet` shows it as one trace across the hosts."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess

import pytest
from conftest import REPO, Spyderd, journal_entries, wait_for
from fleet_support import (
    HOSTS,
    LINKS,
    TEST_RULES,
    Broker,
    Stitcher,
    host_config,
    in_ns,
    sh,
    wait_findings,
)

from spyderd.fleet import messages as m

pytestmark = [pytest.mark.root, pytest.mark.slow]
HOP = "tests/fleet/hop.py"


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("nats"))
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def netns():
    """spyt-a, spyt-b, spyt-c with veths a-b and b-c; removed afterwards."""
    names = {h: f"spyt-{h}-{os.getpid()}" for h in HOSTS}
    for n in names.values():
        sh("ip", "netns", "add", n)
        sh("ip", "-n", n, "link", "set", "lo", "up")
    for i, (x, y, ipx, ipy) in enumerate(LINKS):
        vx, vy = f"spyv{i}x{os.getpid() % 10000}", f"spyv{i}y{os.getpid() % 10000}"
        sh("ip", "link", "add", vx, "type", "veth", "peer", "name", vy)
        sh("ip", "link", "set", vx, "netns", names[x])
        sh("ip", "link", "set", vy, "netns", names[y])
        for ns, dev, ip in ((names[x], vx, ipx), (names[y], vy, ipy)):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
    # B also routes A's traffic to C's network and masquerades it (the NAT test)
    sh("ip", "netns", "exec", names["b"], "sysctl", "-qw", "net.ipv4.ip_forward=1")
    sh("ip", "-n", names["a"], "route", "add", "10.251.2.0/24", "via", "10.251.1.2")
    sh("ip", "netns", "exec", names["b"], "iptables", "-t", "nat", "-A", "POSTROUTING",
       "-s", "10.251.1.0/24", "-j", "MASQUERADE")
    yield names
    for n in names.values():
        sh("ip", "netns", "del", n, check=False)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, broker, netns, journald):
    """Three scoped spyderd hosts and a stitcher, all on one broker."""
    base = tmp_path_factory.mktemp("fleet")
    rules = base / "fleet-test.yaml"
    rules.write_text(TEST_RULES)
    hosts: dict[str, Spyderd] = {}
    try:
        for h in HOSTS:
            (base / h).mkdir()
            d = Spyderd(base / h, [str(REPO / "rules"), str(rules)],
                        config=host_config(base, h, netns[h], broker.url))
            d.start()
            hosts[h] = d
        st = Stitcher(base, broker.url)
        st.start()
        yield {"hosts": hosts, "stitcher": st, "base": base, "netns": netns, "broker": broker}
        st.stop()
    finally:
        for d in hosts.values():
            d.stop()


def fleet_trace(fleet, host: str, ident: str) -> dict:
    d = fleet["hosts"][host]
    cfg = fleet["base"] / f"host-{host}.yaml"
    r = d.ctl("--config", str(cfg), "trace", ident, "--fleet", "-o", "json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def chain(fleet):
    """C listens; B listens and, per connection, runs a shell that connects to C; A's shell
    connects to B. The broker is restarted half way: B's hop to C happens while it is down."""
    ns = fleet["netns"]
    servers = [
        in_ns(ns["c"], "python3", HOP, "serve", "7003", stdout=subprocess.PIPE),
        in_ns(ns["b"], "python3", HOP, "serve", "7002", "sh", "-c",
              f"python3 {HOP} connect 10.251.2.2 7003", stdout=subprocess.PIPE),
    ]
    try:
        for s in servers:
            assert s.stdout.readline().strip() == b"listening"
        fleet["broker"].stop()  # the whole hop runs with the broker away
        a = in_ns(ns["a"], "sh", "-c", f"python3 {HOP} connect 10.251.1.2 7002; true")
        assert a.wait(60) == 0
        host_a = fleet["hosts"]["a"]

        def queued() -> int:
            st = json.loads(host_a.ctl("status", "-o", "json").stdout)
            return st.get("fleet", {}).get("outbox", {}).get("queued", 0)

        assert wait_for(queued, 20), "A's outbox did not hold what it could not send"
        fleet["broker"].start()
        yield
    finally:
        for s in servers:
            s.kill()
            s.wait()


def test_fleet_trace_spans_three_hosts(fleet, chain):
    found = wait_findings(fleet["hosts"]["a"], "Fleet test client on A")
    assert found, "no finding on host A"
    st = fleet["stitcher"]
    assert wait_for(lambda: st.stats().get("peers", 0) >= 2, 60), st.stats()

    def three_hosts() -> dict | None:
        doc = fleet_trace(fleet, "a", found[0]["id"])
        return doc if len(doc["hosts"]) == 3 else None

    doc = wait_for(three_hosts, 30)
    assert doc, fleet_trace(fleet, "a", found[0]["id"])
    assert doc["hosts"] == ["host-a", "host-b", "host-c"]
    by_host = {h: [n for n in doc["nodes"] if n["host"] == h] for h in doc["hosts"]}
    assert any("7002" in n.get("args", []) and n.get("kind") == "process"
               for n in by_host["host-b"]), "B's server is not in the fleet trace"
    assert any("7003" in n.get("args", []) for n in by_host["host-c"]), "C's server missing"
    rules = {f["rule"] for f in doc["findings"]}
    assert {"Fleet test client on A", "Fleet test hop on B"} <= rules
    assert doc["score"] >= 40  # two distinct high rules, scored once across hosts
    assert len([e for e in doc["edges"] if e["kind"] == "peer"]) >= 2
    tree = fleet["hosts"]["a"].ctl("--config", str(fleet["base"] / "host-a.yaml"), "trace",
                                   found[0]["id"], "--fleet", "--no-pager")
    assert "── host host-c" in tree.stdout and "continues on host host-b" in tree.stdout


def test_outbox_caught_up_after_broker_restart(fleet, chain):
    """Everything each host queued while the broker was down reached the stream."""
    for d in fleet["hosts"].values():
        def drained(d=d):
            st = json.loads(d.ctl("status", "-o", "json").stdout)
            box = st.get("fleet", {}).get("outbox", {})
            return box if box.get("queued") == 0 and st["fleet"]["published"] > 0 else None
        box = wait_for(drained, 60, 0.5)
        assert box, d.ctl("status", "-o", "json").stdout
        assert box["dropped"] == 0


async def _publish(url: str, subject: str, payload: bytes, msg_id: str | None) -> object:
    import nats

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        headers = {"Nats-Msg-Id": msg_id} if msg_id else None
        return await js.publish(subject, payload, headers=headers)
    finally:
        await nc.close()


def test_duplicates_are_not_doubled(fleet, chain):
    st = fleet["stitcher"]
    assert wait_for(lambda: st.stats().get("peers", 0) >= 2, 60)
    before = st.stats()
    end = m.Endpoint("host-z", "conn:dup:1", "proc:dup", "out",
                     m.canonical_tuple("10.251.9.1", 5555, "10.251.9.2", 80), 1)
    url = fleet["broker"].url
    subj = m.conn_subject("host-z", m.shard_of(end.tup))
    first = asyncio.run(_publish(url, subj, m.encode(end.to_msg()), "host-z:b:1"))
    again = asyncio.run(_publish(url, subj, m.encode(end.to_msg()), "host-z:b:1"))
    assert not first.duplicate and again.duplicate and again.seq == first.seq
    assert wait_for(lambda: st.stats()["ends"] == before["ends"] + 1, 10), st.stats()
    assert st.stats()["peers"] == before["peers"]


def test_malformed_messages_are_counted_and_ignored(fleet, chain):
    st = fleet["stitcher"]
    before = st.stats()["rejected"]
    url = fleet["broker"].url
    bad = [(m.conn_subject("host-z", 3), b"\x00garbage"),
           (m.graph_subject("host-z"), m.encode({"v": 1, "machine": "host-z", "nodes": 5})),
           (m.conn_subject("host-z", 4), m.encode({"v": 99, "machine": "x"})),
           (m.finding_subject("host-z"), m.encode({"v": 1, "machine": "z", "finding": []}))]
    for subj, payload in bad:
        asyncio.run(_publish(url, subj, payload, None))
    assert wait_for(lambda: st.stats()["rejected"] >= before + len(bad), 15), st.stats()
    assert st.proc.poll() is None  # still running, and still stitching:
    found = wait_findings(fleet["hosts"]["a"], "Fleet test client on A")
    assert len(fleet_trace(fleet, "a", found[0]["id"])["hosts"]) == 3


def test_one_journald_entry_on_the_host_where_it_started(fleet, chain):
    """Scored once across hosts; the entry comes from A (where the hop began), not B or C."""
    ids = {h: ("f1ee7" + h) * 4 + "0000" for h in ("a", "b", "c")}

    def entries(h: str) -> list[dict]:
        return journal_entries(SPYDER_KIND="fleet-trace", SPYDER_MACHINE_ID=ids[h])

    got = wait_for(lambda: [e for e in entries("a")
                            if e["SPYDER_FLEET_HOSTS"] == "host-a,host-b,host-c"], 60)
    assert got, entries("a")
    e = got[-1]
    assert int(e["SPYDER_TRACE_SCORE"]) >= 40
    assert {"Fleet test client on A", "Fleet test hop on B"} <= set(
        e["SPYDER_TRACE_RULES"].split(","))
    assert e["SPYDER_FLEET_ORIGIN"] == "host-a"
    assert not entries("b") and not entries("c")


def test_nat_on_a_spyderd_host_still_joins(fleet, chain):
    """A connects straight to C through B, which masquerades it: C sees B's address. B's
    conntrack aliases join A's end with C's."""
    ns, st = fleet["netns"], fleet["stitcher"]
    server = in_ns(ns["c"], "python3", HOP, "serve", "7004", stdout=subprocess.PIPE)
    try:
        assert server.stdout.readline().strip() == b"listening"
        before = st.stats()["peers"]
        a = in_ns(ns["a"], "sh", "-c", f"python3 {HOP} connect 10.251.2.2 7004; true")
        assert a.wait(60) == 0
        assert wait_for(lambda: st.stats()["peers"] > before, 30), st.stats()
        assert st.stats()["nat_aliases"] >= 1
        found = wait_findings(fleet["hosts"]["a"], "Fleet test NAT client on A")
        assert found
        doc = fleet_trace(fleet, "a", found[0]["id"])
        assert "host-c" in doc["hosts"] and "host-b" not in doc["hosts"]
        assert any("7004" in n.get("args", []) for n in doc["nodes"] if n["host"] == "host-c")
    finally:
        server.kill()
        server.wait()


def test_trace_reads_a_host_that_is_down_from_the_stitchers_copy(fleet, chain):
    """Host C's daemon stops: its part of the trace comes from spyderd-stitch's copy."""
    found = wait_findings(fleet["hosts"]["a"], "Fleet test client on A")
    fleet["hosts"]["c"].stop()
    doc = fleet_trace(fleet, "a", found[0]["id"])
    assert doc["hosts"] == ["host-a", "host-b", "host-c"]
    assert any("7003" in n.get("args", []) for n in doc["nodes"] if n["host"] == "host-c")
    assert not doc.get("unreachable")
