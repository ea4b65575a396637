"""Interfaces and addresses of each network namespace, and which veth ends are peers.

A netlink socket belongs to the network namespace it was created in. To read another
namespace, a short-lived worker thread enters it with setns(2) (which changes only that
thread), opens a pyroute2 `IPRoute` socket there, returns to its own namespace and
queries. No fork, no /var/run/netns name needed: `/proc/<pid>/ns/net` of any process in
the namespace is enough. Never called on the event path: the daemon asks for it from its
periodic tick, and callers such as cross-container stitching ask on demand.
"""

from __future__ import annotations

import ctypes
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("spyderd.enrich")
CLONE_NEWNET = 0x40000000


@dataclass(slots=True)
class Iface:
    name: str
    index: int
    kind: str = ""  # veth, bridge, tun, ... ("" for physical/loopback)
    mac: str = ""
    up: bool = False
    addresses: list[str] = field(default_factory=list)  # "10.0.0.2/24"
    link: int = 0  # veth: the peer's ifindex (in the peer's namespace)
    peer: tuple[int, str] | None = None  # veth: (peer netns inode, peer ifname)

    def to_dict(self) -> dict:
        return {"name": self.name, "index": self.index, "kind": self.kind, "mac": self.mac,
                "up": self.up, "addresses": list(self.addresses),
                "peer": list(self.peer) if self.peer else None}


@dataclass(slots=True)
class NetnsView:
    """One network namespace: its interfaces and who lives there."""

    netns: int
    pid: int  # a process in it, used to enter it
    container_id: str = ""
    ifaces: list[Iface] = field(default_factory=list)
    error: str = ""

    def addresses(self) -> list[str]:
        """Non-loopback addresses without prefix length."""
        return [a.split("/")[0] for i in self.ifaces if i.name != "lo" for a in i.addresses]

    def to_dict(self) -> dict:
        return {"netns": self.netns, "pid": self.pid, "container_id": self.container_id,
                "ifaces": [i.to_dict() for i in self.ifaces], "error": self.error}


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _links(ipr) -> list[Iface]:
    by_index: dict[int, Iface] = {}
    for msg in ipr.get_links():
        info = msg.get_attr("IFLA_LINKINFO")
        by_index[msg["index"]] = Iface(
            name=msg.get_attr("IFLA_IFNAME") or "", index=msg["index"],
            kind=(info.get_attr("IFLA_INFO_KIND") if info else "") or "",
            mac=msg.get_attr("IFLA_ADDRESS") or "", up=bool(msg["flags"] & 1),
            link=msg.get_attr("IFLA_LINK") or 0)
    for msg in ipr.get_addr():
        iface = by_index.get(msg["index"])
        addr = msg.get_attr("IFA_ADDRESS")
        if iface is not None and addr:
            iface.addresses.append(f"{addr}/{msg['prefixlen']}")
    return list(by_index.values())


def in_netns(pid: int, open_socket: Callable[[], Any], use: Callable[[Any], list],
             proc: str = "/proc", timeout: float = 2.0) -> list:
    """Open a netlink socket inside the network namespace of `pid` and query it.

    A worker thread enters the namespace (setns changes only that thread), opens the
    socket there, goes back, then runs `use(socket)`. Raises OSError on any failure.
    """
    result: list = []
    error: list[BaseException] = []

    def work() -> None:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        target = -1
        try:
            target = os.open(f"{proc}/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            _setns(target)
            try:
                sock = open_socket()
            finally:
                _setns(own)
            with sock:
                result.extend(use(sock))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            error.append(exc)
        finally:
            os.close(own)
            if target >= 0:
                os.close(target)

    t = threading.Thread(target=work, name=f"netns-{pid}", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise OSError(f"netns of pid {pid}: netlink did not answer within {timeout}s")
    if error:
        exc = error[0]
        raise exc if isinstance(exc, OSError) else OSError(str(exc))
    return result


def read_netns(pid: int, proc: str = "/proc", timeout: float = 2.0) -> list[Iface]:
    """Interfaces of the network namespace process `pid` is in (raises OSError)."""
    from pyroute2 import IPRoute

    return in_netns(pid, IPRoute, _links, proc, timeout)


TCP_STATES = {1: "established", 10: "listen"}


@dataclass(slots=True)
class SockInfo:
    """One TCP socket from sock_diag, and the process holding it (pid 0 if unknown)."""

    netns: int
    state: str
    family: int
    local_ip: str
    local_port: int
    remote_ip: str
    remote_port: int
    inode: int
    uid: int
    pid: int = 0


def _diag(ds, netns: int) -> list[SockInfo]:
    ds.bind()
    out = []
    for family in (socket.AF_INET, socket.AF_INET6):
        states = sum(1 << s for s in TCP_STATES)
        for m in ds.get_sock_stats(family=family, states=states):
            out.append(SockInfo(netns=netns, state=TCP_STATES.get(m["idiag_state"], ""),
                                family=family, local_ip=m["idiag_src"],
                                local_port=m["idiag_sport"], remote_ip=m["idiag_dst"],
                                remote_port=m["idiag_dport"], inode=m["idiag_inode"],
                                uid=m["idiag_uid"]))
    return out


def read_sockets(pid: int, netns: int, proc: str = "/proc",
                 timeout: float = 2.0) -> list[SockInfo]:
    """Listening and established TCP sockets of the namespace `pid` is in (sock_diag)."""
    from pyroute2 import DiagSocket

    return in_netns(pid, DiagSocket, lambda ds: _diag(ds, netns), proc, timeout)


def socket_owners(inodes: set[int], proc: str = "/proc") -> dict[int, int]:
    """socket inode -> pid of a process holding it, from /proc/<pid>/fd (one pass)."""
    out: dict[int, int] = {}
    if not inodes:
        return out
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        try:
            fds = os.listdir(f"{proc}/{name}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"{proc}/{name}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                ino = int(link[8:-1])
                if ino in inodes:
                    out.setdefault(ino, int(name))
    return out


def link_veth_peers(views: dict[int, NetnsView]) -> None:
    """Set `peer` on veth ends whose partner is in one of `views`.

    A veth end's IFLA_LINK is its partner's ifindex in the partner's namespace, so a pair
    is (A in X, B in Y) with A.link == B.index and B.link == A.index.
    """
    veths = [(ns, i) for ns, v in views.items() for i in v.ifaces if i.kind == "veth"]
    for ns_a, a in veths:
        for ns_b, b in veths:
            if a is not b and a.link == b.index and b.link == a.index and (
                    ns_a != ns_b or a.index != b.index):
                a.peer = (ns_b, b.name)
                break
