"""The Enricher end to end over a recorded-style /proc tree and the runtime fixture tree."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from spyderd.enrich import Enricher
from spyderd.enrich.machine import VirtInfo
from spyderd.model import Node
from spyderd.model.nodes import CLOCK_TICK_NS

FIX = Path(__file__).parent / "fixtures"
DOCKER = "f31f384749f9115acf01fcf82f5a966b59dcc0a4cbd7c9740888c0bf32aa2bbb"
CRI = "eee199f52b2c32751c5db282ba17d8eb0b932f4f8a7f41edb55c7256f827392d"
UID_SHOP = "c89b1952-3898-5b65-9aad-f3c2dd5ef24f"
UNSET = 4294967295
HOST_NS = {"pid": "pid-host", "net": "net-host", "mnt": "mnt-host", "user": "user-host",
           "uts": "uts-host"}


class FakeProc:
    """/proc/<pid>/{stat,status,cgroup,loginuid,sessionid,ns/*} files under a directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "self").mkdir(parents=True)
        (root / "self/mountinfo").write_text((FIX / "mountinfo_hybrid").read_text())
        (root / "nsfiles").mkdir()
        self._ns_links(root / "self", HOST_NS)

    def _ns_links(self, d: Path, ns: dict[str, str]) -> None:
        (d / "ns").mkdir(exist_ok=True)
        for kind, name in ns.items():
            target = self.root / "nsfiles" / name
            target.touch()
            link = d / "ns" / kind
            if link.is_symlink():
                link.unlink()
            link.symlink_to(target)

    def ns_ino(self, name: str) -> int:
        return (self.root / "nsfiles" / name).stat().st_ino

    def add(self, pid: int, *, ppid: int = 1, comm: str = "sh", sid: int = 0,
            tty_nr: int = 0, start: int = 5000, uid: int = 0, gid: int = 0,
            nspid: list[int] | None = None, cgroup: str = "0::/\n", loginuid: int = UNSET,
            sessionid: int = UNSET, ns: dict[str, str] | None = None) -> Node:
        d = self.root / str(pid)
        d.mkdir(exist_ok=True)
        rest = ["S", ppid, pid, sid or pid, tty_nr, -1, 4194560] + [0] * 12 + [start] + [0] * 30
        (d / "stat").write_text(f"{pid} ({comm}) " + " ".join(map(str, rest)) + "\n")
        ids = " ".join(map(str, nspid or [pid]))
        (d / "status").write_text(f"Name:\t{comm}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n"
                                  f"Gid:\t{gid}\t{gid}\t{gid}\t{gid}\nNSpid:\t{ids}\n")
        (d / "cgroup").write_text(cgroup)
        (d / "loginuid").write_text(str(loginuid))
        (d / "sessionid").write_text(str(sessionid))
        self._ns_links(d, {**HOST_NS, **(ns or {})})
        return Node(id=f"proc:b:{start}:{pid}", kind="process", start=start * CLOCK_TICK_NS,
                    pid=pid, ppid=ppid, uid=uid, via="exec",
                    attrs={"exe": f"/bin/{comm}", "args": [comm], "start_ns":
                           start * CLOCK_TICK_NS, "cgroup_id": 0})

    def gone(self, pid: int) -> None:
        import shutil

        shutil.rmtree(self.root / str(pid))


@pytest.fixture
def env(tmp_path):
    proc = FakeProc(tmp_path / "proc")
    enr = Enricher("b", "mid", boot_wall_ns=0, boot_id="boot-1", proc=str(proc.root),
                   fs_root=str(FIX / "root"), virt=VirtInfo(virt="kvm", hypervisor="kvm"))
    return proc, enr


def _ctx(enr: Enricher, node: Node, parent: Node | None = None) -> tuple[dict, list]:
    attrs = enr.process_attrs(node, parent)
    node.attrs.update(attrs)
    return attrs, enr.context_nodes(node)


def test_host_process(env):
    proc, enr = env
    attrs, ctx = _ctx(enr, proc.add(100))
    assert attrs["container_id"] == "" and attrs["container_runtime"] == ""
    assert attrs["pidns"] == proc.ns_ino("pid-host") and attrs["netns"] == proc.ns_ino("net-host")
    assert attrs["loginuid"] == -1 and attrs["sessionid"] == -1 and attrs["tty"] == ""
    assert attrs["user"] == "root" and attrs["group"] == pwd.getpwuid(0).pw_name
    assert attrs["session_id"] == "" and attrs["interactive"] is False
    assert [(n.kind, e.kind) for n, e in ctx] == [("machine", "on-machine")]  # a top process
    assert ctx[0][0].attrs["virt"] == "kvm" and ctx[0][0].attrs["boot_id"] == "boot-1"


def test_docker_container_process_and_context_nodes(env):
    proc, enr = env
    cg = (FIX / "cgroup/docker_v2_systemd.cgroup").read_text()
    ns = {"pid": "pid-web", "net": "net-web", "mnt": "mnt-web"}
    a1, ctx1 = _ctx(enr, proc.add(200, cgroup=cg, ns=ns, nspid=[200, 1]))
    assert (a1["container_id"], a1["container_name"], a1["container_image"],
            a1["container_runtime"]) == (DOCKER, "shop-web-1", "nginx:1.25", "docker")
    assert a1["pidns"] == proc.ns_ino("pid-web") != proc.ns_ino("pid-host")
    kinds = [(n.kind, e.kind, e.src, e.dst) for n, e in ctx1]
    cnode = ctx1[0][0]
    assert cnode.id == f"container:{DOCKER}" and cnode.attrs["container_name"] == "shop-web-1"
    assert ("container", "in-container", "proc:b:5000:200", cnode.id) in kinds
    assert ("machine", "on-machine", cnode.id, "machine:mid") in kinds
    child = proc.add(201, ppid=200, cgroup=cg, ns=ns, nspid=[201, 7])
    a2, ctx2 = _ctx(enr, child, None)
    assert a2["container_id"] == DOCKER
    assert [(n.id, e.kind) for n, e in ctx2 if n.kind != "machine"] == [
        (cnode.id, "in-container")]
    assert not any(e.src == cnode.id for _, e in ctx2)  # on-machine only once
    assert enr.status()["containers"] == 1


def test_kubernetes_pod_metadata(env):
    proc, enr = env
    cg = (FIX / "cgroup/containerd_cri_v2_systemd.cgroup").read_text()
    attrs, _ = _ctx(enr, proc.add(300, cgroup=cg, ns={"pid": "pid-fe"}))
    assert (attrs["k8s_pod"], attrs["k8s_namespace"], attrs["k8s_pod_uid"],
            attrs["k8s_container"]) == ("frontend-7f9c6d5b4-qwz8p", "shop", UID_SHOP, "frontend")
    assert attrs["container_runtime"] == "containerd" and attrs["container_id"] == CRI
    node = enr.containers()[CRI]
    assert node.attrs["labels"]["k8s.qos"] == "burstable"


def test_runc_used_directly_found_through_its_state(env):
    proc, enr = env
    cg = (FIX / "cgroup/runc_direct_hybrid.cgroup").read_text()
    attrs, _ = _ctx(enr, proc.add(400, cgroup=cg, ns={"pid": "pid-r", "net": "net-r"}))
    assert (attrs["container_id"], attrs["container_name"], attrs["container_runtime"]) == (
        "web1", "web-7f9", "runc")
    assert attrs["container_image"] == "busybox:1.36-static"


def test_pid_namespace_without_runtime(env):
    proc, enr = env
    parent = proc.add(500, comm="unshare")
    parent.attrs["exe"] = "/usr/bin/unshare"
    _ctx(enr, parent)
    ns = {"pid": "pid-u", "net": "net-u", "mnt": "mnt-u"}
    root = proc.add(501, ppid=500, nspid=[501, 1], ns=ns)
    root.parent = parent.id
    attrs, _ = _ctx(enr, root, parent)
    cid = f"pidns-{proc.ns_ino('pid-u')}"
    assert (attrs["container_id"], attrs["container_runtime"]) == (cid, "unshare")
    cnode = enr.containers()[cid]
    assert cnode.attrs["root_pid"] == 501 and cnode.attrs["labels"]["creator"].endswith("unshare")
    assert attrs["netns"] == proc.ns_ino("net-u") and attrs["mntns"] == proc.ns_ino("mnt-u")
    kid, _ = _ctx(enr, proc.add(502, ppid=501, nspid=[502, 2], ns=ns))
    assert kid["container_id"] == cid
    enr.updates()  # drains what the start changed; later changes must still come out
    # the container ends with its root process
    root.end = 999
    changed = enr.updates()
    assert cnode in changed and cnode.end == 999
    assert enr.updates() == []


def test_terminal_session(env):
    proc, enr = env
    pts3 = (136 << 8) | 3
    leader = proc.add(600, comm="bash", tty_nr=pts3)
    attrs, ctx = _ctx(enr, leader)
    assert attrs["tty"] == "pts/3" and attrs["interactive"] is True
    sid = attrs["session_id"]
    assert sid == "session:b:600:5000"
    snode = next(n for n, e in ctx if e.kind == "in-session")
    assert snode.attrs["tty"] == "pts/3" and snode.attrs["leader"] == 600
    assert snode.attrs["interactive"] is True and snode.attrs["leader_id"] == leader.id
    child, _ = _ctx(enr, proc.add(601, ppid=600, sid=600, tty_nr=pts3, start=5100))
    assert child["session_id"] == sid


def test_audit_session_survives_user_change(env):
    proc, enr = env
    sshd = proc.add(700, comm="sshd", loginuid=1000, sessionid=7)
    sshd.attrs["exe"] = "/usr/sbin/sshd"
    a1, ctx = _ctx(enr, sshd)
    assert a1["session_id"] == "session:b:7" and a1["loginuid"] == 1000
    snode = next(n for n, e in ctx if e.kind == "in-session")
    assert snode.attrs["interactive"] is True  # opened by sshd, even without a pty
    nobody = proc.add(701, ppid=700, uid=65534, gid=65534, loginuid=1000, sessionid=7,
                      start=5200)
    nobody.uid = 65534
    a2, _ = _ctx(enr, nobody, sshd)
    assert a2["user"] == pwd.getpwuid(65534).pw_name and a2["loginuid"] == 1000
    assert a2["session_id"] == "session:b:7"
    host_1000 = _name(1000)
    assert a2["login_user"] == host_1000 and snode.attrs["user"] == host_1000


def _name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return ""


def test_exec_event_values_win_over_proc(env):
    proc, enr = env
    node = proc.add(800, loginuid=UNSET, sessionid=UNSET)
    node.attrs.update(loginuid=1000, sessionid=12)
    attrs, _ = _ctx(enr, node)
    assert attrs["loginuid"] == 1000 and attrs["session_id"] == "session:b:12"


def test_vanished_process_inherits_parent_context(env):
    proc, enr = env
    cg = (FIX / "cgroup/docker_v2_systemd.cgroup").read_text()
    parent = proc.add(900, cgroup=cg, ns={"pid": "pid-web"}, loginuid=1000, sessionid=3)
    _ctx(enr, parent)
    ghost = Node(id="proc:b:6000:901", kind="process", start=6000, pid=901, ppid=900,
                 via="spawned", parent=parent.id, attrs={"start_ns": 6000 * CLOCK_TICK_NS})
    attrs, ctx = _ctx(enr, ghost, parent)
    assert attrs["container_id"] == DOCKER and attrs["pidns"] == proc.ns_ino("pid-web")
    assert attrs["loginuid"] == 1000 and attrs["session_id"] == "session:b:3"
    assert {e.kind for _, e in ctx} == {"in-container", "in-session"}
    assert enr.status()["proc_gone"] == 1


def test_reused_pid_is_not_mistaken(env):
    proc, enr = env
    proc.add(950, start=7000, cgroup=(FIX / "cgroup/docker_v2_systemd.cgroup").read_text())
    stale = Node(id="proc:b:6500:950", kind="process", start=1, pid=950,
                 attrs={"start_ns": 6500 * CLOCK_TICK_NS})
    attrs, _ = _ctx(enr, stale)
    assert attrs["container_id"] == ""  # /proc/950 is another process now


def test_vm_monitor_node(env):
    proc, enr = env
    node = proc.add(1000, comm="qemu-system-x86")
    node.attrs.update(exe="/usr/bin/qemu-system-x86_64",
                      args=["qemu-system-x86_64", "-name", "guest=db1", "-netdev",
                            "tap,id=n0,ifname=vnet0"])
    _, ctx = _ctx(enr, node)
    vms = [(n, e) for n, e in ctx if n.kind == "vm"]
    assert len(vms) == 1 and vms[0][1].kind == "runs-vm"
    vm = vms[0][0]
    assert vm.attrs["vm_name"] == "db1" and vm.attrs["taps"] == ["vnet0"]
    assert vm.attrs["monitor"] == "qemu" and vm.id == "vm:b:qemu:db1"
    assert any(e.src == vm.id and e.kind == "on-machine" for _, e in ctx)


def test_container_restart_reopens_the_node(env):
    proc, enr = env
    cg = (FIX / "cgroup/docker_v2_systemd.cgroup").read_text()
    first = proc.add(1100, cgroup=cg, nspid=[1100, 1], ns={"pid": "pid-a"})
    _ctx(enr, first)
    cnode = enr.containers()[DOCKER]
    cnode.end = 5  # ended (as updates() would set)
    _ctx(enr, proc.add(1200, cgroup=cg, nspid=[1200, 1], ns={"pid": "pid-b"}, start=9000))
    assert cnode.end == 0


def test_status_counts(env):
    _, enr = env
    st = enr.status()
    for key in ("processes", "proc_gone", "containers", "sessions", "resolve_failed",
                "state_errors", "netns_errors", "virt"):
        assert key in st
    assert os.path.isdir(enr.proc)


def test_runc_init_seen_before_the_state_file(tmp_path):
    """runc puts its init in the cgroup before it writes state.json: the init still gets
    the container id, and the container's first real program gets the name too."""
    import shutil

    proc = FakeProc(tmp_path / "proc")
    root = tmp_path / "root"
    sd = root / "run/runc/web1"
    sd.mkdir(parents=True)
    enr = Enricher("b", "mid", proc=str(proc.root), fs_root=str(root), virt=VirtInfo())
    cg = (FIX / "cgroup/runc_direct_hybrid.cgroup").read_text()
    ns = {"pid": "pid-r"}
    init, _ = _ctx(enr, proc.add(1300, cgroup=cg, nspid=[1300, 1], ns=ns))
    assert (init["container_id"], init["container_runtime"]) == ("web1", "runc")
    assert init["container_name"] == ""
    shutil.copy(FIX / "root/run/runc/web1/state.json", sd / "state.json")
    (root / "srv/bundles/web1").mkdir(parents=True)
    shutil.copy(FIX / "root/srv/bundles/web1/config.json", root / "srv/bundles/web1")
    sh, _ = _ctx(enr, proc.add(1300, cgroup=cg, nspid=[1300, 1], ns=ns))
    assert (sh["container_id"], sh["container_name"]) == ("web1", "web-7f9")
    assert not any(c.startswith("pidns-") for c in enr.containers())


def test_namespace_stand_in_gives_way_to_the_runtime(env):
    """A process seen in a new pid namespace before any runtime state names it gets a
    stand-in; once the runtime's container claims that namespace the stand-in ends."""
    proc, enr = env
    ns = {"pid": "pid-late"}
    a1, _ = _ctx(enr, proc.add(1400, nspid=[1400, 1], ns=ns))
    stand_in = enr.containers()[a1["container_id"]]
    assert a1["container_runtime"] == "namespaces"
    cg = (FIX / "cgroup/docker_v2_systemd.cgroup").read_text()
    a2, _ = _ctx(enr, proc.add(1401, cgroup=cg, nspid=[1401, 2], ns=ns))
    assert a2["container_id"] == DOCKER
    assert stand_in.attrs["superseded_by"] == DOCKER and stand_in.end
    assert stand_in in enr.updates()
    a3, _ = _ctx(enr, proc.add(1402, nspid=[1402, 3], ns=ns))  # e.g. nsenter -p
    assert a3["container_id"] == DOCKER


def test_late_events_inherit_the_container_as_known_now(env):
    """spyderd runs behind: the parent was seen as a namespace stand-in, the child is gone
    by the time its event is handled; it gets the runtime's container, not the stand-in."""
    proc, enr = env
    ns = {"pid": "pid-lag"}
    parent = proc.add(1500, nspid=[1500, 1], ns=ns)
    _ctx(enr, parent)
    assert parent.attrs["container_runtime"] == "namespaces"
    cg = (FIX / "cgroup/docker_v2_systemd.cgroup").read_text()
    _ctx(enr, proc.add(1501, cgroup=cg, nspid=[1501, 2], ns=ns))
    ghost = Node(id="proc:b:6100:1502", kind="process", start=1, pid=1502, ppid=1500,
                 via="spawned", parent=parent.id, attrs={"start_ns": 6100 * CLOCK_TICK_NS})
    attrs, ctx = _ctx(enr, ghost, parent)
    assert (attrs["container_id"], attrs["container_name"]) == (DOCKER, "shop-web-1")
    assert [n.id for n, e in ctx if e.kind == "in-container"] == [f"container:{DOCKER}"]


def test_context_nodes_survive_the_store_round_trip(env):
    """Node.to_dict merges attrs over id/kind/start: context attrs must not shadow them."""
    proc, enr = env
    cg = (FIX / "cgroup/docker_v2_systemd.cgroup").read_text()
    node = proc.add(1600, comm="qemu", cgroup=cg, loginuid=1000, sessionid=9,
                    tty_nr=(136 << 8) | 1)
    node.attrs.update(exe="/usr/bin/qemu-system-x86_64", args=["qemu-system-x86_64", "-name",
                                                                "vm1", "-uuid", "u-1"])
    _, ctx = _ctx(enr, node)
    kinds = {n.kind for n, _ in ctx}
    assert {"container", "session", "vm", "machine"} <= kinds
    for n, _ in ctx:
        back = Node.from_dict(n.to_dict())
        assert (back.id, back.kind, back.start, back.end) == (n.id, n.kind, n.start, n.end)
        assert "name" not in n.attrs and "id" not in n.attrs


def test_unregistered_nspawn_is_named_from_its_command_line(env):
    proc, enr = env
    nspawn = proc.add(1700, comm="systemd-nspawn")
    nspawn.attrs.update(exe="/usr/bin/systemd-nspawn",
                        args=["systemd-nspawn", "-D", "/var/lib/machines/deb12/", "--register=no",
                              "-b"])
    _ctx(enr, nspawn)
    attrs, _ = _ctx(enr, proc.add(1701, ppid=1700, nspid=[1701, 1], ns={"pid": "pid-n"}),
                    nspawn)
    assert (attrs["container_runtime"], attrs["container_name"]) == ("nspawn", "deb12")


def test_a_failure_is_counted_not_raised(env, monkeypatch):
    proc, enr = env

    def boom(*_a, **_k):
        raise RuntimeError("odd /proc")

    monkeypatch.setattr(enr, "_observed", boom)
    attrs, ctx = _ctx(enr, proc.add(1800))
    assert attrs["container_id"] == "" and attrs["pidns"] == -1 and ctx == []
    st = enr.status()
    assert st["errors"] == 1 and "odd /proc" in st["last_error"]
