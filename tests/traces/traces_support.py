"""A small world of processes on a real LMDB store, built from synthetic events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from spyderd.capture.snapshot import ProcInfo
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
