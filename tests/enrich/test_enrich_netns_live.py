"""Interfaces, addresses and veth peers of real network namespaces, through pyroute2."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager

import pytest

from spyderd.enrich import Enricher
from spyderd.enrich.machine import VirtInfo
from spyderd.model import Node
from spyderd.model.nodes import CLOCK_TICK_NS

pytestmark = pytest.mark.root


def run(*cmd: str) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, f"{' '.join(cmd)}: {r.stderr}"


@contextmanager
def netns(name: str):
    """A network namespace of the test's own (addresses only ever go in those)."""
    run("ip", "netns", "add", name)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def veth(a: str, a_if: str, b_if: str, b: str, n: int) -> tuple[str, str]:
    run("ip", "-n", a, "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b)
    run("ip", "-n", a, "addr", "add", f"10.199.{n}.1/30", "dev", a_if)
    run("ip", "-n", a, "link", "set", a_if, "up")
    return f"10.199.{n}.1", f"10.199.{n}.2"


def _node(pid: int) -> Node:
    with open(f"/proc/{pid}/stat") as f:
        start = int(f.read().rsplit(")", 1)[1].split()[19])
    exe = os.readlink(f"/proc/{pid}/exe")
    return Node(id=f"proc:t:{start}:{pid}", kind="process", pid=pid, start=start,
                attrs={"start_ns": start * CLOCK_TICK_NS, "exe": exe, "args": []})


def _children(pid: int) -> list[int]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(x) for x in f.read().split()]
        if kids:
            return kids
        time.sleep(0.02)
    raise AssertionError(f"{pid} has no children")


def test_netns_addresses_veth_peers_and_owner():
    tag, n = uuid.uuid4().hex[:6], 201 + os.getpid() % 50
    procs: list[subprocess.Popen] = []
    try:
        with netns(f"spa-{tag}") as a, netns(f"spb-{tag}") as b:
            ip_a, ip_b = veth(a, f"va{tag}", "eth0", b, n)
            run("ip", "-n", b, "addr", "add", f"{ip_b}/30", "dev", "eth0")
            run("ip", "-n", b, "link", "set", "eth0", "up")
            procs.append(subprocess.Popen(["ip", "netns", "exec", a, "sleep", "60"]))
            procs.append(subprocess.Popen(["ip", "netns", "exec", b, "unshare", "--pid",
                                           "--fork", "sleep", "60"]))
            time.sleep(0.2)
            host_side = procs[0].pid
            boxed = _children(procs[1].pid)[0]
            enr = Enricher("t", "m", virt=VirtInfo())
            unshare_node = _node(procs[1].pid)
            enr.process_attrs(unshare_node, None)
            enr.context_nodes(unshare_node)
            for pid, parent in ((host_side, None), (boxed, unshare_node)):
                node = _node(pid)
                node.attrs.update(enr.process_attrs(node, parent))
                enr.context_nodes(node)
            ns_a = os.stat(f"/run/netns/{a}").st_ino
            ns_b = os.stat(f"/run/netns/{b}").st_ino
            changed = enr.updates()  # reads new namespaces, off the event path
            views = enr.netns_addresses()
            assert {ns_a, ns_b} <= set(views)
            va = {i.name: i for i in views[ns_a].ifaces}
            vb = {i.name: i for i in views[ns_b].ifaces}
            assert f"{ip_a}/30" in va[f"va{tag}"].addresses and va[f"va{tag}"].kind == "veth"
            assert va[f"va{tag}"].peer == (ns_b, "eth0") and vb["eth0"].peer == (ns_a, f"va{tag}")
            cid = views[ns_b].container_id
            assert cid.startswith("pidns-") and views[ns_a].container_id == ""
            assert enr.address_owners(ip_b) == [(ns_b, cid)]
            assert enr.address_owners(ip_a) == [(ns_a, "")]
            cnode = enr.containers()[cid]
            assert cnode.attrs["ips"] == [ip_b] and cnode.attrs["veth"] == [f"va{tag}@{ns_a}"]
            assert cnode in changed and cnode.attrs["container_runtime"] == "unshare"
    finally:
        for p in procs:
            p.kill()
            p.wait()


LISTEN = ("import socket, sys, time\n"
          "s = socket.socket(); s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1)\n"
          "print('up', flush=True); time.sleep(60)\n")


def test_snapshot_sockets_sees_listeners_in_other_namespaces():
    tag, n = uuid.uuid4().hex[:6], 151 + os.getpid() % 50
    port = 22000 + n
    with netns(f"spl-{tag}") as a, netns(f"spm-{tag}") as b:
        ip_a, _ = veth(a, f"vl{tag}", "eth0", b, n)
        srv = subprocess.Popen(["ip", "netns", "exec", a, sys.executable, "-c", LISTEN, ip_a,
                                str(port)], stdout=subprocess.PIPE, text=True)
        try:
            assert srv.stdout.readline().strip() == "up"
            enr = Enricher("t", "m", virt=VirtInfo())
            socks = [x for x in enr.snapshot_sockets() if x.local_port == port]
            assert len(socks) == 1, socks
            x = socks[0]
            assert (x.state, x.local_ip, x.pid) == ("listen", ip_a, srv.pid)
            assert x.netns == os.stat(f"/run/netns/{a}").st_ino
            assert port in enr.listening_sockets()[srv.pid]
        finally:
            srv.kill()
            srv.wait()
