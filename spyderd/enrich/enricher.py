"""The enricher the graph calls for every new process node: container, namespaces, user,
session and VM context, plus the context nodes (container, session, vm, machine).

How it stays off the event path's critical time:

- Per process it reads a handful of small /proc files (procfs never waits on a device):
  ~0.1 ms. A process already gone inherits its parent's context, corrected by the
  event's cgroup id where that names a container.
- Container metadata is read from the runtime's state files the first time a container
  id is seen (local files, well under a millisecond) and cached by id; the cgroup text
  -> container id mapping is cached too. No runtime API socket is ever called. What
  could not be resolved at first sight (state not written yet) is retried at most once
  a second when the container is seen again, and by `updates()`.
- Everything slower (network namespaces through netlink, VM tap devices, container end
  detection) happens in `updates()`, which the daemon calls from its once-a-second tick
  and which returns the context nodes that changed, for the graph to store again.
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from pathlib import Path

from spyderd.enrich import cgroups, procfs
from spyderd.enrich.container import CgroupRef, cgroup_container
from spyderd.enrich.contexts import ContainerCtx, SessionCtx, VmCtx, container_node
from spyderd.enrich.machine import VirtInfo, detect_virt, machine_node
from spyderd.enrich.netns import (
    NetnsView,
    SockInfo,
    link_veth_peers,
    read_netns,
    read_sockets,
    socket_owners,
)
from spyderd.enrich.runtimes import ContainerInfo, StateReader
from spyderd.enrich.sessions import opened_by_login, session_key
from spyderd.enrich.state_index import StateIndex
from spyderd.enrich.users import NameCache, tty_name
from spyderd.enrich.vm import firecracker_taps, parse_monitor, tun_interfaces
from spyderd.model import Edge, Node
from spyderd.model.nodes import CLOCK_TICK_NS

log = logging.getLogger("spyderd.enrich")

CONTAINER_KEYS = ("container_id", "container_name", "container_image", "container_runtime",
                  "k8s_pod", "k8s_namespace", "k8s_pod_uid", "k8s_container")
NS_KEYS = ("netns", "pidns", "mntns", "userns", "utsns")
USER_KEYS = ("loginuid", "sessionid", "tty", "session_id", "interactive", "login_user")
NS_TOOLS = {"unshare": "unshare", "bwrap": "bubblewrap", "firejail": "firejail",
            "nsjail": "nsjail", "systemd-nspawn": "nspawn", "ip": "namespaces"}
NEGATIVE_RECHECK_S = 5.0
RESOLVE_RETRY_S = 1.0
VM_TAP_WATCH_S = 30.0
MAX_CGROUP_CACHE = 8192


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
        self._cg_cache: OrderedDict[str, tuple[str, float, float]] = OrderedDict()
        self._containers: dict[str, ContainerCtx] = {}
        self._pidns: dict[int, str] = {}
        self._sessions: dict[str, SessionCtx] = {}
        self._vms: dict[str, VmCtx] = {}
        self._netns_pid: dict[int, list[tuple[int, int]]] = {}  # netns -> [(pid, ticks)]
        self._netns_owner: dict[int, str] = {}
        self._netns_views: dict[int, tuple[float, NetnsView]] = {}
        self._pending: OrderedDict[str, list[tuple[Node, Edge]]] = OrderedDict()
        self._changed: dict[str, Node] = {}
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
        cont = self._container_of(node, parent, facts)
        if cont is not None:
            attrs.update(cont.attrs())
            self._note_root(cont, node, facts)
            if attrs["pidns"] > 0 and attrs["pidns"] != self.host_ns.get("pid"):
                self._claim_pidns(attrs["pidns"], cont)
            self._link(node, cont.node, "in-container", ctx)
        if attrs["netns"] > 0:
            self._netns_member(attrs["netns"], node.pid, facts.start_ticks)
            if cont is not None:
                self._netns_owner.setdefault(attrs["netns"], cont.info.id)
        self._user_attrs(node, facts, attrs)
        self._session(node, parent, facts, attrs, ctx)
        if not _fork_copy(node, parent):
            self._vm(node, facts.start_ticks, ctx)
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
        cont = self._current(attrs["container_id"])
        path = self.cgroup_ids.path(int(node.attrs.get("cgroup_id") or 0))
        if path not in ("", "/"):
            cont = self._container_for_text(f"0::{path}\n", node, None) or cont
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
        sess = self._sessions.get(attrs["session_id"])
        if sess is not None:
            self._link(node, sess.node, "in-session", ctx)
        return attrs

    # -- containers -------------------------------------------------------------------------

    def _container_of(self, node: Node, parent: Node | None,
                      facts: procfs.ProcFacts) -> ContainerCtx | None:
        cont = self._container_for_text(facts.cgroup, node, facts)
        if cont is not None:
            return cont
        pidns = facts.ns.get("pid", -1)
        if pidns <= 0 or pidns == self.host_ns.get("pid"):
            return None
        return self._pidns_container(pidns, node, parent, facts)

    def _container_for_text(self, text: str, node: Node,
                            facts: procfs.ProcFacts | None) -> ContainerCtx | None:
        """Container from cgroup text: path patterns, then runc/crun state (cached)."""
        now = time.monotonic()
        hit = self._cg_cache.get(text)
        if hit is not None:
            cid, first, checked = hit
            if cid:
                return self._touch_container(cid, node, facts)
            if now - checked < NEGATIVE_RECHECK_S:  # runtimes make state dirs first:
                return None  # a new container's cgroup is a new text, looked up in full
        ref = cgroup_container(text)
        if ref is None:
            ref = self._state_ref(text)
        first = hit[1] if hit is not None else now
        self._cg_cache[text] = (ref.id if ref else "", first, now)
        self._cg_cache.move_to_end(text)
        while len(self._cg_cache) > MAX_CGROUP_CACHE:
            self._cg_cache.popitem(last=False)
        if ref is None:
            return None
        return self._new_or_known(ref, node, facts)

    def _state_ref(self, text: str) -> CgroupRef | None:
        paths = cgroups.distinct_paths(text)
        entry = self.state_index.lookup(paths)
        if entry is None:
            return None
        path = next((p for p in paths if p in entry.cgroup_paths), "")
        return CgroupRef(id=entry.state_dir.name, runtime=entry.runtime, path=path)

    def _touch_container(self, cid: str, node: Node,
                         facts: procfs.ProcFacts | None) -> ContainerCtx | None:
        cont = self._containers.get(cid)
        if cont is None:
            return None
        if not cont.info.resolved and (
                time.monotonic() - cont.last_resolve >= RESOLVE_RETRY_S
                or self.state_index.state_ready(cid)):
            self._resolve(cont)
        if cont.node.end and facts is not None:  # same id running again: a restart
            cont.node.end = 0
            cont.root_node = None
            self._changed[cont.node.id] = cont.node
        return cont

    def _new_or_known(self, ref: CgroupRef, node: Node,
                      facts: procfs.ProcFacts | None) -> ContainerCtx:
        known = self._touch_container(ref.id, node, facts)
        if known is not None:
            return known
        info = ContainerInfo(id=ref.id, runtime=ref.runtime, k8s_pod_uid=ref.pod_uid)
        if ref.qos:
            info.labels["k8s.qos"] = ref.qos
        cont = ContainerCtx(info=info, node=container_node(info, node.start,
                                                           self.machine.attrs["machine_id"]),
                            cgroup_path=ref.path)
        self._containers[ref.id] = cont
        self.stats["containers"] += 1
        self._resolve(cont, ref)
        return cont

    def _resolve(self, cont: ContainerCtx, ref: CgroupRef | None = None) -> None:
        """Read the runtime's state files for the container (timed, counted)."""
        t0 = time.perf_counter()
        cont.last_resolve = time.monotonic()
        info = cont.info
        got = self._read_state(info.runtime, info.id)
        if got is not None:
            got.k8s_pod_uid = got.k8s_pod_uid or info.k8s_pod_uid
            got.labels = {**info.labels, **got.labels}
            if not got.name and got.runtime in ("runc", "crun", "lxc", "nspawn", "containerd"):
                got.name = got.id  # ids chosen by a person (runc run web1) are the name
            cont.info = got
            if got.created:
                cont.node.start = got.created
        else:
            self.stats["resolve_failed"] += 1
        if cont.refresh_node():
            self._changed[cont.node.id] = cont.node
        us = int((time.perf_counter() - t0) * 1e6)
        self.stats["resolve_us_max"] = max(self.stats["resolve_us_max"], us)
        if us > 5000:
            self.stats["resolve_slow"] += 1
            log.warning("resolving container %s took %.1f ms", info.id, us / 1000)

    def _read_state(self, runtime: str, cid: str) -> ContainerInfo | None:
        """Runtime from the cgroup pattern, or the first runtime whose files know the id."""
        readers = {
            "docker": lambda: self.state.docker(cid),
            "containerd": lambda: self.state.containerd(cid),
            "cri-o": lambda: self.state.containers_storage(cid, "cri-o"),
            "podman": lambda: self.state.containers_storage(cid, "podman"),
            "lxc": lambda: self.state.lxc(cid),
            "nspawn": lambda: self.state.nspawn(cid),
        }
        if runtime in ("runc", "crun"):
            entry = self.state_index.find(cid, runtime)
            return self.state.oci_state(runtime, entry) if entry is not None else None
        if runtime in readers:
            got = readers[runtime]()
            if got is None and runtime in ("docker", "containerd"):
                entry = self.state_index.find(cid)  # custom data roots: runc state remains
                got = self.state.oci_state("runc", entry) if entry is not None else None
                if got is not None:
                    got.runtime = runtime
            return got
        if runtime == "":  # Kubernetes path without a runtime name: whoever knows the id
            for name in ("containerd", "cri-o", "docker"):
                got = readers[name]()
                if got is not None:
                    return got
        return None

    def _pidns_container(self, pidns: int, node: Node, parent: Node | None,
                         facts: procfs.ProcFacts) -> ContainerCtx:
        """A process in its own pid namespace that no runtime claims: runtime = the tool."""
        cid = self._pidns.get(pidns)
        if cid is not None and cid in self._containers:
            return self._touch_container(cid, node, facts) or self._containers[cid]
        cid = f"pidns-{pidns}"
        creator = ""
        if facts.ns_pid == 1:
            creator = (parent.attrs.get("exe", "") if parent is not None else "") or \
                procfs.exe_of(facts.ppid, self.proc)
        tool = creator.rsplit("/", 1)[-1]
        info = ContainerInfo(id=cid, runtime=NS_TOOLS.get(tool, "namespaces"),
                             root_pid=node.pid if facts.ns_pid == 1 else -1, resolved=True)
        if tool:
            info.labels["creator"] = creator
        if tool == "systemd-nspawn" and parent is not None:  # nspawn --register=no
            info.name = _nspawn_name(parent.attrs.get("args") or [])
        cont = ContainerCtx(info=info, node=container_node(info, node.start,
                                                           self.machine.attrs["machine_id"]))
        cont.node.attrs["pidns"] = pidns
        cont.node.attrs["netns"] = facts.ns.get("net", -1)
        cont.refresh_node()
        self._containers[cid] = cont
        self._pidns[pidns] = cid
        self.stats["containers"] += 1
        return cont

    def _current(self, cid: str) -> ContainerCtx | None:
        """A container by id, following a namespace stand-in to the runtime's container,
        and reading state that was not there at first sight."""
        cont = self._containers.get(cid)
        for _ in range(2):
            nxt = self._containers.get(cont.node.attrs.get("superseded_by", "")) if cont else None
            if nxt is None:
                break
            cont = nxt
        if cont is not None and not cont.info.resolved and self.state_index.state_ready(
                cont.info.id):
            self._resolve(cont)
        return cont

    def _claim_pidns(self, pidns: int, cont: ContainerCtx) -> None:
        """A runtime's container owns this pid namespace (so `nsenter -p` joins it); a
        namespace-only stand-in made before the runtime's state was readable gives way."""
        prev = self._pidns.get(pidns)
        if prev == cont.info.id:
            return
        self._pidns[pidns] = cont.info.id
        old = self._containers.get(prev or "")
        if old is not None and old.info.id.startswith("pidns-") and not old.node.end:
            old.node.attrs["superseded_by"] = cont.info.id
            old.node.end = cont.node.start or old.node.start
            self._changed[old.node.id] = old.node

    def _note_root(self, cont: ContainerCtx, node: Node, facts: procfs.ProcFacts) -> None:
        """Keep the latest image of the container's root process (its end ends the container)."""
        if cont.info.root_pid in (-1, 0) and facts.ns_pid == 1:
            cont.info.root_pid = node.pid
            cont.node.attrs["root_pid"] = node.pid
            self._changed[cont.node.id] = cont.node
        if node.pid == cont.info.root_pid or (cont.node.attrs.get("pidns", -1) <= 0 and
                                               facts.ns.get("pid") != self.host_ns.get("pid")):
            for kind in ("pid", "net"):  # the container's own namespaces, not runc's
                if cont.node.attrs.get(f"{kind}ns") != facts.ns.get(kind, -1):
                    cont.node.attrs[f"{kind}ns"] = facts.ns.get(kind, -1)
                    self._changed[cont.node.id] = cont.node
        if node.pid == cont.info.root_pid:
            cont.root_start_ticks = facts.start_ticks
            cont.root_node = node
            if cont.node.attrs.get("root_process_id") != node.id:
                cont.node.attrs["root_process_id"] = node.id
                self._changed[cont.node.id] = cont.node

    # -- sessions ---------------------------------------------------------------------------

    def _session(self, node: Node, parent: Node | None, facts: procfs.ProcFacts,
                 attrs: dict, ctx: list) -> None:
        if attrs["sessionid"] >= 0 and facts.sessionid != attrs["sessionid"]:
            facts.sessionid = attrs["sessionid"]
        key = session_key(self.boot, facts, self.proc)
        if key is None:
            return
        sess = self._sessions.get(key.id)
        if sess is None:
            sess = self._new_session(key, node, parent, attrs)
        elif attrs["tty"] and not sess.node.attrs.get("tty"):
            sess.node.attrs.update(tty=attrs["tty"], interactive=True)
            self._changed[sess.node.id] = sess.node
        attrs["session_id"] = key.id
        attrs["interactive"] = bool(attrs["tty"]) or bool(sess.node.attrs.get("interactive"))
        self._link(node, sess.node, "in-session", ctx)

    def _new_session(self, key, node: Node, parent: Node | None, attrs: dict) -> SessionCtx:
        exes = (node.attrs.get("exe", ""), parent.attrs.get("exe", "") if parent else "")
        login = attrs["loginuid"]
        user = self.names.user(login) if login >= 0 else attrs["user"]
        s = Node(id=key.id, kind="session", start=node.start, uid=max(login, -1),
                 attrs={"session_kind": key.kind, "sessionid": key.sessionid,
                        "loginuid": login, "user": user, "tty": attrs["tty"],
                        "leader": key.leader,
                        "leader_id": node.id if key.leader == node.pid else "",
                        "interactive": bool(attrs["tty"]) or opened_by_login(*exes),
                        "machine_id": self.machine.attrs["machine_id"]})
        sess = SessionCtx(node=s)
        self._sessions[key.id] = sess
        self.stats["sessions"] += 1
        return sess

    # -- VMs --------------------------------------------------------------------------------

    def _vm(self, node: Node, start_ticks: int, ctx: list) -> None:
        info = parse_monitor(node.attrs.get("exe", ""), node.attrs.get("args") or [])
        if info is None:
            return
        if info.config:
            text = _read_text(info.config if info.config.startswith("/") else
                              f"{self.proc}/{node.pid}/cwd/{info.config}")
            info.taps += [t for t in firecracker_taps(text) if t not in info.taps]
        ident = (info.uuid or (f"{self.boot}:{info.monitor}:{info.name}" if info.name
                               else f"{self.boot}:{node.pid}:{start_ticks}"))
        vid = f"vm:{ident}"
        vm = self._vms.get(vid)
        if vm is None:
            vnode = Node(id=vid, kind="vm", start=node.start, pid=node.pid,
                         attrs={"monitor": info.monitor, "vm_name": info.name,
                                "vm_uuid": info.uuid,
                                "taps": list(info.taps), "process_id": node.id,
                                "machine_id": self.machine.attrs["machine_id"]})
            vm = VmCtx(node=vnode, pid=node.pid, start_ticks=start_ticks,
                       first_seen=time.monotonic())
            self._vms[vid] = vm
            self.stats["vms"] += 1
        else:
            vm.node.end = 0
            vm.pid, vm.start_ticks = node.pid, start_ticks
            vm.node.attrs["process_id"] = node.id
            self._changed[vid] = vm.node
        self._link(node, vm.node, "runs-vm", ctx)

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
            for cont in self._containers.values():
                self._check_container(cont, now_ns)
            for vm in self._vms.values():
                self._check_vm(vm, now_ns)
            self._refresh_netns(only_new=True, budget=netns_budget)
        except Exception as exc:  # counted and logged; the daemon's tick goes on
            self.stats["errors"] += 1
            self.last_error = f"updates: {type(exc).__name__}: {exc}"
            log.exception("enricher periodic update failed")
        changed = list(self._changed.values())
        self._changed = {}
        return changed

    def _check_container(self, cont: ContainerCtx, now_ns: int) -> None:
        if cont.node.end:
            return
        if not cont.info.resolved and time.monotonic() - cont.last_resolve >= RESOLVE_RETRY_S:
            self._resolve(cont)
        root = cont.root_node
        if root is not None and root.end and root.pid == cont.info.root_pid:
            cont.node.end = root.end
        elif cont.info.root_pid > 0 and cont.root_start_ticks and not procfs.alive(
                cont.info.root_pid, cont.root_start_ticks, self.proc):
            cont.node.end = now_ns
        else:
            return
        self._changed[cont.node.id] = cont.node

    def _check_vm(self, vm: VmCtx, now_ns: int) -> None:
        if vm.node.end:
            return
        if not procfs.alive(vm.pid, vm.start_ticks, self.proc):
            vm.node.end = now_ns
            self._changed[vm.node.id] = vm.node
            return
        if time.monotonic() - vm.first_seen > VM_TAP_WATCH_S:
            return
        taps = vm.node.attrs["taps"]
        new = [t for t in tun_interfaces(vm.pid, self.proc) if t not in taps]
        if new:
            taps.extend(new)
            self._changed[vm.node.id] = vm.node

    # -- network namespaces -----------------------------------------------------------------

    def netns_addresses(self, max_age: float = 5.0) -> dict[int, NetnsView]:
        """Interfaces, addresses and veth peers of every network namespace seen so far.

        netns inode -> NetnsView (with the container that lives there, if any). Views
        older than `max_age` seconds are read again; namespaces whose processes are all
        gone are dropped. For cross-container stitching: `address_owners(ip)`.
        """
        self._refresh_netns(only_new=False, budget=None, max_age=max_age)
        return {ns: v for ns, (_, v) in self._netns_views.items()}

    def address_owners(self, ip: str) -> list[tuple[int, str]]:
        """(netns, container id) of every known namespace that has address `ip`."""
        return [(ns, v.container_id) for ns, (_, v) in self._netns_views.items()
                if ip in v.addresses()]

    def _refresh_netns(self, only_new: bool, budget: int | None,
                       max_age: float = 5.0) -> None:
        now = time.monotonic()
        todo = [ns for ns in self._netns_pid
                if ns not in self._netns_views or (
                    not only_new and now - self._netns_views[ns][0] > max_age)]
        if budget is not None:
            todo = todo[:budget]
        if not todo:
            return
        for ns in todo:
            self._read_one_netns(ns, now)
        views = {ns: v for ns, (_, v) in self._netns_views.items()}
        link_veth_peers(views)
        self._netns_to_containers(views)

    def _netns_member(self, ns: int, pid: int, ticks: int) -> None:
        """Remember a few processes per namespace: any live one lets us enter it."""
        members = self._netns_pid.setdefault(ns, [])
        if (pid, ticks) not in members:
            members.insert(0, (pid, ticks))
            del members[4:]

    def _read_one_netns(self, ns: int, now: float) -> None:
        live = [(p, t) for p, t in self._netns_pid.get(ns, ()) if procfs.alive(p, t, self.proc)]
        if not live:
            self._netns_pid.pop(ns, None)
            self._netns_views.pop(ns, None)
            return
        self._netns_pid[ns] = live
        pid = live[0][0]
        view = NetnsView(netns=ns, pid=pid, container_id=self._netns_owner.get(ns, ""))
        try:
            view.ifaces = read_netns(pid, self.proc)
        except OSError as exc:
            view.error = str(exc)
            self.stats["netns_errors"] += 1
            log.debug("netns %d via pid %d: %s", ns, pid, exc)
        self._netns_views[ns] = (now, view)

    def _netns_to_containers(self, views: dict[int, NetnsView]) -> None:
        """Each container node gets its addresses and the far (host-side) ends of its veths."""
        for ns, view in views.items():
            cont = self._containers.get(view.container_id)
            if cont is None:
                continue
            ips = view.addresses()
            veth = sorted(f"{i.peer[1]}@{i.peer[0]}" for i in view.ifaces if i.peer)
            if cont.node.attrs.get("ips") != ips or cont.node.attrs.get("veth") != veth:
                cont.node.attrs.update(ips=ips, veth=veth, netns=ns)
                self._changed[cont.node.id] = cont.node

    # -- startup snapshot of sockets --------------------------------------------------------

    def snapshot_sockets(self) -> list[SockInfo]:
        """Listening and established TCP sockets of *every* network namespace (sock_diag
        through pyroute2, entered as for `netns_addresses`), each with a process holding it.
        /proc/net/tcp would only show spyderd's own namespace."""
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
        return {cid: c.node for cid, c in self._containers.items()}

    def sessions(self) -> dict[str, Node]:
        return {sid: s.node for sid, s in self._sessions.items()}

    def status(self) -> dict:
        """Counters for `spyderctl status` (nothing lost silently)."""
        return {**self.stats, "last_error": self.last_error,
                "state_errors": sum(self.state.errors.values()),
                "state_last_error": self.state.last_error,
                "cgroup_scans": self.cgroup_ids.scans, "state_scans": self.state_index.scans,
                "virt": self.virt.virt}


def _nspawn_name(args: list[str]) -> str:
    """The machine name systemd-nspawn gives: -M/--machine, else the -D directory's name."""
    name = directory = ""
    for i, a in enumerate(args):
        nxt = args[i + 1] if i + 1 < len(args) else ""
        if a in ("-M", "--machine"):
            name = nxt
        elif a.startswith("--machine="):
            name = a.split("=", 1)[1]
        elif a in ("-D", "--directory"):
            directory = nxt
        elif a.startswith("--directory="):
            directory = a.split("=", 1)[1]
    return name or directory.rstrip("/").rsplit("/", 1)[-1]


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


