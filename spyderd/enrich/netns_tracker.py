"""Network namespaces the enricher has seen: their interfaces, addresses and veth peers
(read through netlink from the daemon's tick, never per event), and the TCP sockets of
every namespace for the startup snapshot."""

from __future__ import annotations

import logging
import os
import time

from spyderd.enrich import procfs
from spyderd.enrich.contexts import ContainerCtx
from spyderd.enrich.netns import (
    NetnsView,
    SockInfo,
    link_veth_peers,
    read_netns,
    read_sockets,
    socket_owners,
)
from spyderd.model import Node

log = logging.getLogger("spyderd.enrich")


class NetnsTracker:
    """Views by netns inode; container nodes whose addresses changed go to `changed`."""

    def __init__(self, *, proc: str, containers: dict[str, ContainerCtx],
                 stats: dict[str, int], changed: dict[str, Node]) -> None:
        self.proc = proc
        self.containers = containers  # the container tracker's, by id
        self.stats = stats
        self.changed = changed
        self._pids: dict[int, list[tuple[int, int]]] = {}  # netns -> [(pid, ticks)]
        self._owner: dict[int, str] = {}
        self._views: dict[int, tuple[float, NetnsView]] = {}

    def member(self, ns: int, pid: int, ticks: int) -> None:
        """Remember a few processes per namespace: any live one lets us enter it."""
        members = self._pids.setdefault(ns, [])
        if (pid, ticks) not in members:
            members.insert(0, (pid, ticks))
            del members[4:]

    def own(self, ns: int, container_id: str) -> None:
        """The first container seen in a namespace owns it."""
        self._owner.setdefault(ns, container_id)

    def addresses(self, max_age: float = 5.0) -> dict[int, NetnsView]:
        self.refresh(only_new=False, budget=None, max_age=max_age)
        return {ns: v for ns, (_, v) in self._views.items()}

    def address_owners(self, ip: str) -> list[tuple[int, str]]:
        return [(ns, v.container_id) for ns, (_, v) in self._views.items()
                if ip in v.addresses()]

    def refresh(self, only_new: bool, budget: int | None, max_age: float = 5.0) -> None:
        now = time.monotonic()
        todo = [ns for ns in self._pids
                if ns not in self._views or (
                    not only_new and now - self._views[ns][0] > max_age)]
        if budget is not None:
            todo = todo[:budget]
        if not todo:
            return
        for ns in todo:
            self._read_one(ns, now)
        views = {ns: v for ns, (_, v) in self._views.items()}
        link_veth_peers(views)
        self._to_containers(views)

    def _read_one(self, ns: int, now: float) -> None:
        live = [(p, t) for p, t in self._pids.get(ns, ()) if procfs.alive(p, t, self.proc)]
        if not live:
            self._pids.pop(ns, None)
            self._views.pop(ns, None)
            return
        self._pids[ns] = live
        pid = live[0][0]
        view = NetnsView(netns=ns, pid=pid, container_id=self._owner.get(ns, ""))
        try:
            view.ifaces = read_netns(pid, self.proc)
        except OSError as exc:
            view.error = str(exc)
            self.stats["netns_errors"] += 1
            log.debug("netns %d via pid %d: %s", ns, pid, exc)
        self._views[ns] = (now, view)

    def _to_containers(self, views: dict[int, NetnsView]) -> None:
        """Each container node gets its addresses and the far (host-side) ends of its veths."""
        for ns, view in views.items():
            cont = self.containers.get(view.container_id)
            if cont is None:
                continue
            ips = view.addresses()
            veth = sorted(f"{i.peer[1]}@{i.peer[0]}" for i in view.ifaces if i.peer)
            if cont.node.attrs.get("ips") != ips or cont.node.attrs.get("veth") != veth:
                cont.node.attrs.update(ips=ips, veth=veth, netns=ns)
                self.changed[cont.node.id] = cont.node

    def snapshot_sockets(self) -> list[SockInfo]:
        """Listening and established TCP sockets of *every* network namespace (sock_diag
        through pyroute2), each with a process holding it. /proc/net/tcp would only show
        spyderd's own namespace."""
        members: dict[int, int] = {}  # netns -> a pid in it
        for name in os.listdir(self.proc):
            if name.isdigit():
                try:
                    members.setdefault(os.stat(f"{self.proc}/{name}/ns/net").st_ino, int(name))
                except OSError:
                    continue
        out: list[SockInfo] = []
        for ns, pid in members.items():
            try:
                out.extend(read_sockets(pid, ns, self.proc))
            except OSError as exc:
                self.stats["netns_errors"] += 1
                log.debug("sockets of netns %d via pid %d: %s", ns, pid, exc)
        owners = socket_owners({x.inode for x in out if x.inode}, self.proc)
        for x in out:
            x.pid = owners.get(x.inode, 0)
        return out
