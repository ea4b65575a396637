"""The enricher the graph calls for every new process node: container, namespaces, user,
session and VM context, plus the context nodes (container, session, vm, machine).

A thin layer over four trackers (`container_tracker`, `session_tracker`, `vm_tracker`,
`netns_tracker`), each owning one kind of context; they share the counters and the set of
context nodes changed since the daemon's last tick.

How it stays off the event path's critical time:

- Per process it reads a handful of small /proc files (procfs never waits on a device):
  ~0.1 ms. A process already gone inherits its parent's context, corrected by the
  event's cgroup id where that names a container.
- Container metadata comes from local state files, cached by id (see `container_tracker`).
- Everything slower (network namespaces through netlink, VM tap devices, container end
  detection) happens in `updates()`, which the daemon calls from its once-a-second tick
  and which returns the context nodes that changed, for the graph to store again.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from pathlib import Path

from spyderd.enrich import cgroups, procfs
from spyderd.enrich.container_tracker import ContainerTracker
from spyderd.enrich.machine import VirtInfo, detect_virt, machine_node
from spyderd.enrich.netns import NetnsView, SockInfo
from spyderd.enrich.netns_tracker import NetnsTracker
from spyderd.enrich.runtimes import StateReader
from spyderd.enrich.session_tracker import SessionTracker
from spyderd.enrich.state_index import StateIndex
from spyderd.enrich.users import NameCache, tty_name
from spyderd.enrich.vm_tracker import VmTracker
from spyderd.model import Edge, Node
from spyderd.model.nodes import CLOCK_TICK_NS

log = logging.getLogger("spyderd.enrich")

CONTAINER_KEYS = ("container_id", "container_name", "container_image", "container_runtime",
                  "k8s_pod", "k8s_namespace", "k8s_pod_uid", "k8s_container")
NS_KEYS = ("netns", "pidns", "mntns", "userns", "utsns")
USER_KEYS = ("loginuid", "sessionid", "tty", "session_id", "interactive", "login_user")


def _unknown() -> dict:
    out: dict = {k: "" for k in CONTAINER_KEYS}
    out.update({k: -1 for k in NS_KEYS})
    out.update({"loginuid": -1, "sessionid": -1, "tty": "", "user": "", "group": "",
                "session_id": "", "interactive": False, "login_user": ""})
    return out


class Enricher:
    """Implements `spyderd.graph.index.Enricher` (process_attrs, context_nodes)."""

    def __init__(self, boot: str, machine_id: str = "", *, boot_wall_ns: int = 0,
                 boot_id: str = "", proc: str = "/proc", fs_root: str = "/",
                 virt: VirtInfo | None = None) -> None:
        self.boot = boot
        self.proc = proc
        self.host_ns = procfs.host_namespaces(proc)
        mounts = cgroups.cgroup_mounts(_read_text(f"{proc}/self/mountinfo"))
        self.cgroup_ids = cgroups.CgroupIdIndex(mounts)
        self.state_index = StateIndex(fs_root, mounts)
        self.state = StateReader(fs_root)
        self.names = NameCache(self.host_ns.get("mnt", -1), proc)
        self.virt = virt or detect_virt(fs_root)
        boot_id = boot_id or _read_text(f"{proc}/sys/kernel/random/boot_id").strip() or boot
        self.machine = machine_node(machine_id, boot_id, boot_wall_ns, self.virt)
        self.stats: dict[str, int] = {"processes": 0, "proc_gone": 0, "containers": 0,
                                      "sessions": 0, "vms": 0, "resolve_slow": 0,
                                      "resolve_failed": 0, "netns_errors": 0,
                                      "resolve_us_max": 0, "errors": 0}
        self.last_error = ""
        self._changed: dict[str, Node] = {}
        mid = self.machine.attrs["machine_id"]
        shared = {"stats": self.stats, "changed": self._changed}
        self.conts = ContainerTracker(proc=proc, host_ns=self.host_ns, machine_id=mid,
                                      state_index=self.state_index, state=self.state, **shared)
        self.sess = SessionTracker(boot=boot, proc=proc, machine_id=mid, names=self.names,
                                   **shared)
        self.vms = VmTracker(boot=boot, proc=proc, machine_id=mid, **shared)
        self.netns = NetnsTracker(proc=proc, containers=self.conts.by_id, **shared)
        self._pending: OrderedDict[str, list[tuple[Node, Edge]]] = OrderedDict()
        self._emitted: set[str] = set()

    # -- the graph's interface --------------------------------------------------------------

    def process_attrs(self, node: Node, parent: Node | None) -> dict:
        """Context attributes for a new process node. Never raises: a bug or an odd /proc
        must not stop the event loop, so it is counted (`errors` in status) and logged,
        and the node gets unknown ("" / -1) context."""
        self.stats["processes"] += 1
        try:
            return self._process_attrs(node, parent)
        except Exception as exc:  # see docstring: never stop the event loop
            self.stats["errors"] += 1
            self.last_error = f"{node.id}: {type(exc).__name__}: {exc}"
            if self.stats["errors"] <= 10 or self.stats["errors"] % 1000 == 0:
                log.exception("enriching %s failed (%d so far)", node.id, self.stats["errors"])
            self._pending.pop(node.id, None)
            return _unknown()

    def _process_attrs(self, node: Node, parent: Node | None) -> dict:
        start_ticks = int(node.attrs.get("start_ns") or 0) // CLOCK_TICK_NS
        given = [node.attrs.get(k) for k in ("loginuid", "sessionid")]
        facts = procfs.read_facts(
            node.pid, self.proc, start_ticks, status=False,
            audit=not all(isinstance(v, int) for v in given)) if node.pid > 0 else None
        ctx: list[tuple[Node, Edge]] = []
        if facts is None:
            self.stats["proc_gone"] += 1
            attrs = self._inherited(node, parent, ctx)
        else:
            attrs = self._observed(node, parent, facts, ctx)
        if not node.parent:
            self._link_machine(node.id, node.start, ctx)
        self._pending[node.id] = ctx
        while len(self._pending) > 4096:
            self._pending.popitem(last=False)
        return attrs

    def context_nodes(self, node: Node) -> list[tuple[Node, Edge]]:
        """(context node, edge) pairs computed by the `process_attrs` call for this node."""
        return self._pending.pop(node.id, [])

    # -- observed from /proc ----------------------------------------------------------------

    def _observed(self, node: Node, parent: Node | None, facts: procfs.ProcFacts,
                  ctx: list) -> dict:
        attrs = _unknown()
        for k in NS_KEYS:
            attrs[k] = facts.ns.get(k[:-2], -1)
        gid = node.attrs.get("gid", parent.attrs.get("gid") if parent is not None else None)
        if facts.ns.get("pid") != self.host_ns.get("pid") or not isinstance(gid, int):
            procfs.read_status(facts, self.proc)  # NSpid (who is a namespace's init), gid
        else:
            facts.gid = gid
        cont = self.conts.of(node, parent, facts)
        if cont is not None:
            attrs.update(cont.attrs())
            self.conts.note_root(cont, node, facts)
            if attrs["pidns"] > 0 and attrs["pidns"] != self.host_ns.get("pid"):
                self.conts.claim_pidns(attrs["pidns"], cont)
            self._link(node, cont.node, "in-container", ctx)
        if attrs["netns"] > 0:
            self.netns.member(attrs["netns"], node.pid, facts.start_ticks)
            if cont is not None:
                self.netns.own(attrs["netns"], cont.info.id)
        self._user_attrs(node, facts, attrs)
        sess = self.sess.of(node, parent, facts, attrs)
        if sess is not None:
            self._link(node, sess.node, "in-session", ctx)
        if not _fork_copy(node, parent):
            vm = self.vms.of(node, facts.start_ticks)
            if vm is not None:
                self._link(node, vm.node, "runs-vm", ctx)
        return attrs

    def _user_attrs(self, node: Node, facts: procfs.ProcFacts, attrs: dict) -> None:
        mntns = attrs["mntns"]
        for key in ("loginuid", "sessionid"):  # values the exec event carried win
            given = node.attrs.get(key)
            attrs[key] = given if isinstance(given, int) and given >= 0 else getattr(facts, key)
        attrs["tty"] = tty_name(facts.tty_nr)
        attrs["user"] = self.names.user(node.uid, node.pid, mntns)
        gid = facts.gid if facts.gid >= 0 else int(node.attrs.get("gid", -1))
        attrs["group"] = self.names.group(gid, node.pid, mntns)
        if attrs["loginuid"] >= 0:
            attrs["login_user"] = self.names.user(attrs["loginuid"])

    # -- inherited when /proc is gone ------------------------------------------------------

    def _inherited(self, node: Node, parent: Node | None, ctx: list) -> dict:
        attrs = _unknown()
        pa = parent.attrs if parent is not None else {}
        for k in (*CONTAINER_KEYS, *NS_KEYS, *USER_KEYS):
            if k in pa:
                attrs[k] = pa[k]
        cont = self.conts.current(attrs["container_id"])
        path = self.cgroup_ids.path(int(node.attrs.get("cgroup_id") or 0))
        if path not in ("", "/"):
            cont = self.conts.for_text(f"0::{path}\n", node, None) or cont
        if cont is not None:  # the container as known now, not the parent's snapshot of it
            attrs.update(cont.attrs())
        for k in ("loginuid", "sessionid"):
            given = node.attrs.get(k)
            if isinstance(given, int) and given >= 0:
                attrs[k] = given
        attrs["user"] = self.names.user(node.uid, 0, attrs["mntns"])
        gid = node.attrs.get("gid", pa.get("gid", -1))
        attrs["group"] = self.names.group(gid, 0, attrs["mntns"]) if isinstance(gid, int) else ""
        if cont is not None:
            self._link(node, cont.node, "in-container", ctx)
        sess = self.sess.get(attrs["session_id"])
        if sess is not None:
            self._link(node, sess.node, "in-session", ctx)
        return attrs

    # -- context edges ----------------------------------------------------------------------

    def _link(self, node: Node, ctx_node: Node, kind: str, ctx: list) -> None:
        ctx.append((ctx_node, Edge(node.id, ctx_node.id, kind, node.start)))
        if ctx_node.id not in self._emitted:
            self._emitted.add(ctx_node.id)
            self._link_machine(ctx_node.id, ctx_node.start or node.start, ctx)

    def _link_machine(self, src: str, t: int, ctx: list) -> None:
        ctx.append((self.machine, Edge(src, self.machine.id, "on-machine", t)))

    # -- periodic work (daemon tick) -------------------------------------------------------

    def updates(self, now_ns: int | None = None, netns_budget: int = 8) -> list[Node]:
        """Context nodes changed since the last call (late metadata, ends, taps, addresses).

        Called from the daemon's periodic tick, never per event. The caller stores the
        returned nodes again (`graph.touch`).
        """
        now_ns = now_ns or time.time_ns()
        try:
            self.conts.check(now_ns)
            self.vms.check(now_ns)
            self.netns.refresh(only_new=True, budget=netns_budget)
        except Exception as exc:  # counted and logged; the daemon's tick goes on
            self.stats["errors"] += 1
            self.last_error = f"updates: {type(exc).__name__}: {exc}"
            log.exception("enricher periodic update failed")
        changed = list(self._changed.values())
        self._changed.clear()  # the trackers hold this very dict
        return changed

    # -- network namespaces -----------------------------------------------------------------

    def netns_addresses(self, max_age: float = 5.0) -> dict[int, NetnsView]:
        """Interfaces, addresses and veth peers of every network namespace seen so far.

        netns inode -> NetnsView (with the container that lives there, if any). Views
        older than `max_age` seconds are read again; namespaces whose processes are all
        gone are dropped. For cross-container stitching: `address_owners(ip)`.
        """
        return self.netns.addresses(max_age)

    def address_owners(self, ip: str) -> list[tuple[int, str]]:
        """(netns, container id) of every known namespace that has address `ip`."""
        return self.netns.address_owners(ip)

    # -- startup snapshot of sockets --------------------------------------------------------

    def snapshot_sockets(self) -> list[SockInfo]:
        """Listening and established TCP sockets of every network namespace."""
        return self.netns.snapshot_sockets()

    def listening_sockets(self) -> dict[int, list[int]]:
        """pid -> TCP ports it listens on, in any namespace (the graph's snapshot input)."""
        out: dict[int, list[int]] = {}
        for x in self.snapshot_sockets():
            if x.state == "listen" and x.pid:
                ports = out.setdefault(x.pid, [])
                if x.local_port not in ports:
                    ports.append(x.local_port)
        return out

    # -- introspection ----------------------------------------------------------------------

    def containers(self) -> dict[str, Node]:
        return {cid: c.node for cid, c in self.conts.by_id.items()}

    def sessions(self) -> dict[str, Node]:
        return {sid: s.node for sid, s in self.sess.by_id.items()}

    def status(self) -> dict:
        """Counters for `spyderctl status` (nothing lost silently)."""
        return {**self.stats, "last_error": self.last_error,
                "state_errors": sum(self.state.errors.values()),
                "state_last_error": self.state.last_error,
                "cgroup_scans": self.cgroup_ids.scans, "state_scans": self.state_index.scans,
                "virt": self.virt.virt}


def _fork_copy(node: Node, parent: Node | None) -> bool:
    """A fork child still running its parent's image (same exe and args)."""
    return parent is not None and node.via == "spawned" and not node.attrs.get(
        "snapshot") and parent.attrs.get("exe") == node.attrs.get("exe") and parent.attrs.get(
        "args") == node.attrs.get("args")


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


