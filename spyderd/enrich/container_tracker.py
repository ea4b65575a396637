"""Containers the enricher has seen: found from cgroup text or a private pid namespace,
described from the runtime's state files (cached by id), ended when their root process ends.

Container metadata is read from local state files the first time a container id is seen
(well under a millisecond) and cached by id, as is the cgroup text -> container id mapping.
No runtime API socket is ever called. What could not be resolved at first sight (state not
written yet) is retried at most once a second when the container is seen again, and by
`check` from the daemon's tick.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

from spyderd.enrich import cgroups, procfs
from spyderd.enrich.container import CgroupRef, cgroup_container
from spyderd.enrich.contexts import ContainerCtx, container_node
from spyderd.enrich.runtimes import ContainerInfo, StateReader
from spyderd.enrich.state_index import StateIndex
from spyderd.model import Node

log = logging.getLogger("spyderd.enrich")

NS_TOOLS = {"unshare": "unshare", "bwrap": "bubblewrap", "firejail": "firejail",
            "nsjail": "nsjail", "systemd-nspawn": "nspawn", "ip": "namespaces"}
NEGATIVE_RECHECK_S = 5.0
RESOLVE_RETRY_S = 1.0
MAX_CGROUP_CACHE = 8192


class ContainerTracker:
    """Container contexts by id; changed container nodes go to the shared `changed`."""

    def __init__(self, *, proc: str, host_ns: dict[str, int], machine_id: str,
                 state_index: StateIndex, state: StateReader, stats: dict[str, int],
                 changed: dict[str, Node]) -> None:
        self.proc = proc
        self.host_ns = host_ns
        self.machine_id = machine_id
        self.state_index = state_index
        self.state = state
        self.stats = stats
        self.changed = changed
        self._cg_cache: OrderedDict[str, tuple[str, float, float]] = OrderedDict()
        self.by_id: dict[str, ContainerCtx] = {}
        self._pidns: dict[int, str] = {}

    def of(self, node: Node, parent: Node | None,
           facts: procfs.ProcFacts) -> ContainerCtx | None:
        """The container of a process observed in /proc: its cgroup, else its pid namespace."""
        cont = self.for_text(facts.cgroup, node, facts)
        if cont is not None:
            return cont
        pidns = facts.ns.get("pid", -1)
        if pidns <= 0 or pidns == self.host_ns.get("pid"):
            return None
        return self._pidns_container(pidns, node, parent, facts)

    def for_text(self, text: str, node: Node,
                 facts: procfs.ProcFacts | None) -> ContainerCtx | None:
        """Container from cgroup text: path patterns, then runc/crun state (cached)."""
        now = time.monotonic()
        hit = self._cg_cache.get(text)
        if hit is not None:
            cid, first, checked = hit
            if cid:
                return self._touch(cid, node, facts)
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

    def _touch(self, cid: str, node: Node,
               facts: procfs.ProcFacts | None) -> ContainerCtx | None:
        cont = self.by_id.get(cid)
        if cont is None:
            return None
        if not cont.info.resolved and (
                time.monotonic() - cont.last_resolve >= RESOLVE_RETRY_S
                or self.state_index.state_ready(cid)):
            self._resolve(cont)
        if cont.node.end and facts is not None:  # same id running again: a restart
            cont.node.end = 0
            cont.root_node = None
            self.changed[cont.node.id] = cont.node
        return cont

    def _new_or_known(self, ref: CgroupRef, node: Node,
                      facts: procfs.ProcFacts | None) -> ContainerCtx:
        known = self._touch(ref.id, node, facts)
        if known is not None:
            return known
        info = ContainerInfo(id=ref.id, runtime=ref.runtime, k8s_pod_uid=ref.pod_uid)
        if ref.qos:
            info.labels["k8s.qos"] = ref.qos
        cont = ContainerCtx(info=info, node=container_node(info, node.start, self.machine_id),
                            cgroup_path=ref.path)
        self.by_id[ref.id] = cont
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
            self.changed[cont.node.id] = cont.node
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
        if cid is not None and cid in self.by_id:
            return self._touch(cid, node, facts) or self.by_id[cid]
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
        cont = ContainerCtx(info=info, node=container_node(info, node.start, self.machine_id))
        cont.node.attrs["pidns"] = pidns
        cont.node.attrs["netns"] = facts.ns.get("net", -1)
        cont.refresh_node()
        self.by_id[cid] = cont
        self._pidns[pidns] = cid
        self.stats["containers"] += 1
        return cont

    def current(self, cid: str) -> ContainerCtx | None:
        """A container by id, following a namespace stand-in to the runtime's container,
        and reading state that was not there at first sight."""
        cont = self.by_id.get(cid)
        for _ in range(2):
            nxt = self.by_id.get(cont.node.attrs.get("superseded_by", "")) if cont else None
            if nxt is None:
                break
            cont = nxt
        if cont is not None and not cont.info.resolved and self.state_index.state_ready(
                cont.info.id):
            self._resolve(cont)
        return cont

    def claim_pidns(self, pidns: int, cont: ContainerCtx) -> None:
        """A runtime's container owns this pid namespace (so `nsenter -p` joins it); a
        namespace-only stand-in made before the runtime's state was readable gives way."""
        prev = self._pidns.get(pidns)
        if prev == cont.info.id:
            return
        self._pidns[pidns] = cont.info.id
        old = self.by_id.get(prev or "")
        if old is not None and old.info.id.startswith("pidns-") and not old.node.end:
            old.node.attrs["superseded_by"] = cont.info.id
            old.node.end = cont.node.start or old.node.start
            self.changed[old.node.id] = old.node

    def note_root(self, cont: ContainerCtx, node: Node, facts: procfs.ProcFacts) -> None:
        """Keep the latest image of the container's root process (its end ends the container)."""
        if cont.info.root_pid in (-1, 0) and facts.ns_pid == 1:
            cont.info.root_pid = node.pid
            cont.node.attrs["root_pid"] = node.pid
            self.changed[cont.node.id] = cont.node
        if node.pid == cont.info.root_pid or (cont.node.attrs.get("pidns", -1) <= 0 and
                                               facts.ns.get("pid") != self.host_ns.get("pid")):
            for kind in ("pid", "net"):  # the container's own namespaces, not runc's
                if cont.node.attrs.get(f"{kind}ns") != facts.ns.get(kind, -1):
                    cont.node.attrs[f"{kind}ns"] = facts.ns.get(kind, -1)
                    self.changed[cont.node.id] = cont.node
        if node.pid == cont.info.root_pid:
            cont.root_start_ticks = facts.start_ticks
            cont.root_node = node
            if cont.node.attrs.get("root_process_id") != node.id:
                cont.node.attrs["root_process_id"] = node.id
                self.changed[cont.node.id] = cont.node

    def check(self, now_ns: int) -> None:
        """From the daemon's tick: late state files, containers whose root process ended."""
        for cont in self.by_id.values():
            self._check(cont, now_ns)

    def _check(self, cont: ContainerCtx, now_ns: int) -> None:
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
        self.changed[cont.node.id] = cont.node


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
