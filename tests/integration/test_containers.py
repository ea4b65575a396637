"""Issue 6 on the real kernel: a runc container and an unshare "container" talk to a host
listener; spyderd places their processes in the container, records their namespaces, and
joins the connection to the listener's process in one trace."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import uuid

import pytest
from conftest import REPO, Spyderd, wait_for
from containers_support import (
    Listener,
    events,
    exec_with_args,
    kill_tree_wait,
    netns,
    ns_inode,
    run,
    runc_bundle,
    subnet_index,
    trace_of,
    veth,
)

pytestmark = pytest.mark.root
HOST_PIDNS = ns_inode("/proc/self/ns/pid")
HOST_NETNS = ns_inode("/proc/self/ns/net")
HOST_MNTNS = ns_inode("/proc/self/ns/mnt")


def _joined(trace: dict, client_id: str, listener_pid: int) -> bool:
    """The client's connection has a peer edge to a connection of the listener's process."""
    nodes = {n["id"]: n for n in trace["nodes"]}
    listener = {n["id"] for n in trace["nodes"] if n["kind"] == "process"
                and n["pid"] == listener_pid}
    conns = {e["dst"] for e in trace["edges"] if e["src"] == client_id and e["kind"] == "connect"}
    for e in trace["edges"]:
        if e["kind"] == "peer" and e["src"] in conns:
            other = nodes.get(e["dst"])
            if other is not None and other.get("process_id") in listener:
                return True
    return False


def _proc(trace: dict, pid: int, argv0: str) -> dict:
    """The image of `pid` that ran `argv0` (busybox re-executes itself as /proc/self/exe)."""
    hits = [n for n in trace["nodes"] if n["kind"] == "process" and n["pid"] == pid
            and n["args"][:1] == [argv0]]
    assert hits, [n for n in trace["nodes"] if n["pid"] == pid]
    return hits[-1]


def _check_connection(trace: dict, client: dict, listener: Listener, host_ip: str) -> None:
    conns = [n for n in trace["nodes"] if n["kind"] == "connection"
             and n.get("process_id") == client["id"]]
    assert any(c["remote_ip"] == host_ip and c["remote_port"] == listener.port
               and c["result"] == 0 for c in conns), conns
    assert _joined(trace, client["id"], listener.pid)
    server = [n for n in trace["nodes"] if n["kind"] == "process" and n["pid"] == listener.pid]
    assert server and server[-1]["container_id"] == ""  # the listener is a host process
    assert server[-1]["pidns"] == HOST_PIDNS


def _node_by_id(d, node_id: str) -> dict:
    """Any stored node (container, session, machine) through `spyderctl trace ID`."""
    r = d.ctl("trace", node_id, "-o", "json", check=True)
    nodes = [n for n in json.loads(r.stdout)["nodes"] if n["id"] == node_id]
    assert nodes, r.stdout[:2000]
    return nodes[0]


def _with(node: dict, key: str) -> dict | None:
    return node if node.get(key) else None


def _check_machine(d, proc_node: dict) -> None:
    """The machine node says VM (Firecracker/KVM here), never docker."""
    m = _node_by_id(d, f"machine:{proc_node['machine_id']}")
    assert m["kind"] == "machine" and m["vm"] is True, m
    assert m["virt"] not in ("docker", "none") and m["container"] == ""
    assert m["kernel"] == os.uname().release and m["hostname"] == os.uname().nodename


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, journald):
    """One spyderd for the module: both containers are started after it is ready."""
    d = Spyderd(tmp_path_factory.mktemp("spyderd-containers"), [str(REPO / "rules")])
    try:
        d.start(wait=240)  # compiling the probes is slow on a busy 2-core machine
        yield d
    finally:
        d.stop()


def test_runc_container(daemon, tmp_path):
    n, tag = subnet_index(), uuid.uuid4().hex[:6]
    cid, name = f"spy-{tag}", f"web-{tag}"
    port = 20000 + n
    with netns(f"sph-{tag}") as hns, netns(f"spc-{tag}") as cns:
        host_ip, ctr_ip = veth(hns, f"vh{tag}", "eth0", cns, n)
        run("ip", "-n", cns, "addr", "add", f"{ctr_ip}/30", "dev", "eth0")
        run("ip", "-n", cns, "link", "set", "eth0", "up")
        listener = Listener(hns, host_ip, port)
        nc_args = ["nc", host_ip, str(port)]
        script = f"echo hello-{tag} | nc {host_ip} {port}; sleep 5"
        bundle = runc_bundle(tmp_path / "bundle", ["sh", "-c", script], f"/run/netns/{cns}",
                             {"name": name, "org.example.test": "issue6"})
        try:
            r = subprocess.run(["runc", "run", "-d", "--bundle", str(bundle), cid],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, timeout=60, check=False)
            assert r.returncode == 0, r.stderr
            peer = listener.wait_peer()
            assert peer[0] == ctr_ip and peer[2] == "ok" or peer[2] == f"hello-{tag}"
            ev = exec_with_args(daemon, nc_args)
            trace = trace_of(daemon, ev["pid"],
                             lambda t: _joined(t, t["root"], listener.pid))
            client = _proc(trace, ev["pid"], "nc")
            init = [n for n in trace["nodes"] if n["kind"] == "process"
                    and n["args"][:2] == ["sh", "-c"] and script in n["args"]]
            for node in [client, *init[-1:]]:
                assert node["container_id"] == cid, node
                assert node["container_name"] == name
                assert node["container_runtime"] == "runc"
                assert node["pidns"] > 0 and node["pidns"] != HOST_PIDNS
                assert node["netns"] == ns_inode(f"/run/netns/{cns}") != HOST_NETNS
                assert node["mntns"] > 0 and node["mntns"] != HOST_MNTNS
                assert node["user"] == "root" and node["machine_id"]
            assert init, "the container's shell is not in the nc trace"
            _check_connection(trace, client, listener, host_ip)
            _check_machine(daemon, client)
            ctr = _node_by_id(daemon, f"container:{cid}")
            assert ctr["kind"] == "container" and ctr["container_runtime"] == "runc"
            assert (ctr["container_id"], ctr["container_name"]) == (cid, name)
            assert ctr["root_pid"] > 0 and ctr["start"] > 0
            assert ctr["labels"]["org.example.test"] == "issue6"
            assert ctr["pidns"] == client["pidns"] and ctr["netns"] == client["netns"]
            # addresses and the host end of its veth, read off the event path
            host_end = f"vh{tag}@{ns_inode(f'/run/netns/{hns}')}"
            ctr = wait_for(lambda: _with(_node_by_id(daemon, f"container:{cid}"), "veth"),
                           20) or ctr
            assert ctr["ips"] == [ctr_ip] and ctr["veth"] == [host_end], ctr
            # the raw audit trail: the container's exec, its connect and the accept
            cg = f"/sys/fs/cgroup/unified/{cid}"
            if os.path.isdir(cg):
                assert ev["cgroup_id"] == ns_inode(cg)
            connects = [e for e in events(daemon, "connect") if e["pid"] == ev["pid"]]
            assert any(e["remote_port"] == port for e in connects), connects
            accepts = [e for e in events(daemon, "accept") if e["pid"] == listener.pid]
            assert any(e["local_port"] == port for e in accepts), accepts
            run("runc", "delete", "-f", cid)  # its root process dies: the container ends
            ended = wait_for(lambda: _node_by_id(daemon, f"container:{cid}")["end"], 20)
            assert ended and ended > ctr["start"]
        finally:
            listener.close()
            run("runc", "delete", "-f", cid, check=False)
    assert not os.path.exists(f"/run/runc/{cid}")


def _child_of(pid: int, timeout: float = 10) -> int:
    def find():
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                kids = f.read().split()
        except OSError:
            return 0
        return int(kids[0]) if kids else 0

    child = wait_for(find, timeout, interval=0.02)
    assert child, f"unshare {pid} has no child"
    return child


def test_unshare_container(daemon, tmp_path):
    n, tag = subnet_index(), uuid.uuid4().hex[:6]
    port = 21000 + n
    flag = tmp_path / "go"
    with netns(f"spu-{tag}") as hns:
        host_ip, ctr_ip = f"10.199.{n}.1", f"10.199.{n}.2"
        nc_args = ["busybox", "nc", host_ip, str(port)]
        script = (f"while [ ! -e {flag} ]; do sleep 0.05; done; "
                  f"echo hello-{tag} | busybox nc {host_ip} {port}; sleep 5")
        box = subprocess.Popen(["unshare", "--pid", "--net", "--mount", "--fork",
                                "sh", "-c", script], stdin=subprocess.DEVNULL)
        listener, inner = None, 0
        try:
            inner = _child_of(box.pid)
            ns = {k: ns_inode(f"/proc/{inner}/ns/{k}") for k in ("pid", "net", "mnt")}
            veth(hns, f"vu{tag}", "eth0", str(inner), n)
            listener = Listener(hns, host_ip, port)
            run("nsenter", "-t", str(inner), "-n", "ip", "addr", "add", f"{ctr_ip}/30",
                "dev", "eth0")
            run("nsenter", "-t", str(inner), "-n", "ip", "link", "set", "eth0", "up")
            run("nsenter", "-t", str(inner), "-n", "ip", "link", "set", "lo", "up")
            flag.touch()
            peer = listener.wait_peer()
            assert peer[0] == ctr_ip
            ev = exec_with_args(daemon, nc_args)
            trace = trace_of(daemon, ev["pid"], lambda t: _joined(t, t["root"], listener.pid))
            client = _proc(trace, ev["pid"], "busybox")
            shell = [x for x in trace["nodes"] if x["kind"] == "process" and x["pid"] == inner]
            assert shell, "the namespace's first process is not an ancestor of the client"
            for node in (client, shell[-1]):
                assert node["container_runtime"] == "unshare", node
                assert node["container_id"] == f"pidns-{ns['pid']}"
                assert node["pidns"] == ns["pid"] != HOST_PIDNS
                assert node["netns"] == ns["net"] != HOST_NETNS
                assert node["mntns"] == ns["mnt"] != HOST_MNTNS
            _check_connection(trace, client, listener, host_ip)
            ctr = _node_by_id(daemon, f"container:pidns-{ns['pid']}")
            assert ctr["container_runtime"] == "unshare" and ctr["root_pid"] == inner
            assert ctr["labels"]["creator"].endswith("/unshare")
        finally:
            if listener is not None:
                listener.close()
            if inner:  # the namespace's init: killing it ends everything inside
                with contextlib.suppress(ProcessLookupError):
                    os.kill(inner, signal.SIGKILL)
            kill_tree_wait(box)


@pytest.fixture(autouse=True)
def _tools():
    for tool in ("runc", "ip", "unshare", "nsenter", "busybox"):
        assert shutil.which(tool), f"{tool} is missing (packaging/install.sh installs it)"
