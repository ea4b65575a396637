"""`capture.scope`: limit a daemon to one network namespace or one cgroup subtree.

`netns:/run/netns/NAME` (or `netns:INODE`) keeps the processes whose network namespace
is that one, and the sockets in it; `cgroup:/sys/fs/cgroup/PATH` keeps the processes in
that cgroup or below. One kernel can then host several spyderd "hosts" (one per
namespace or container), each with its own machine id.

The probes filter in the kernel (`is_self()` in probes/common.h: the current task's
network namespace, or its cgroup ancestor at the scope's depth), so other tasks' events
never cross the ring buffer; they are counted as `out_of_scope`. User space then only
checks what the kernel cannot: a socket event carries the socket's own namespace, which
may differ from its task's. Without the kernel filter (`in_kernel=False`: replayed
events), a process's namespace is read from /proc when it forks into a new network
namespace or execs, and inherited otherwise.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass, field

from spyderd.errors import ConfigError
from spyderd.model import Event, ExecEvent, ExitEvent, ForkEvent

CLONE_NEWNET = 0x40000000


def parse_scope(text: str) -> tuple[str, int | str]:
    """('netns', inode) | ('cgroup', path) | ('', '') from the config string."""
    text = (text or "").strip()
    if not text:
        return "", ""
    kind, _, target = text.partition(":")
    if kind == "netns":
        if target.isdigit():
            return "netns", int(target)
        try:
            return "netns", os.stat(target).st_ino
        except OSError as exc:
            raise ConfigError(f"capture.scope: cannot stat {target}: {exc.strerror}") from None
    if kind == "cgroup":
        if not os.path.isdir(target):
            raise ConfigError(f"capture.scope: {target} is not a cgroup directory")
        return "cgroup", os.path.realpath(target)
    raise ConfigError(f"capture.scope: expected 'netns:PATH|INODE' or 'cgroup:PATH', "
                      f"got {text!r}")


def kernel_scope(text: str) -> dict[str, int]:
    """The probes' .rodata for capture.scope: netns inode, or cgroup id and depth."""
    kind, target = parse_scope(text)
    if kind == "netns":
        return {"scope_netns": int(target)}
    if kind == "cgroup":
        root = cgroup2_root()
        rel = os.path.relpath(str(target), root)
        level = 0 if rel == "." else len(rel.split("/"))
        return {"scope_cgroup": os.stat(str(target)).st_ino, "scope_cgroup_level": level}
    return {}


def cgroup2_root() -> str:
    """Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup on systemd hosts)."""
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                if right.startswith("cgroup2 "):
                    return left.split()[4]
    except OSError:
        pass
    return "/sys/fs/cgroup"


def enter_scope(text: str) -> None:
    """Move the calling (single-threaded, freshly forked) process into capture.scope, so
    the probes' self-test triggers are seen. A netns given by inode cannot be entered."""
    kind, target = parse_scope(text)
    if kind == "netns" and not str(text).split(":", 1)[1].isdigit():
        fd = os.open(str(text).split(":", 1)[1], os.O_RDONLY)
        try:
            if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns")
        finally:
            os.close(fd)
    elif kind == "cgroup":
        with open(os.path.join(str(target), "cgroup.procs"), "w") as f:
            f.write("0")


def _netns_of(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


@dataclass
class Scope:
    kind: str
    target: int | str
    inside: dict[int, bool] = field(default_factory=dict)  # tgid -> decision
    cgroups: set[int] = field(default_factory=set)
    dropped: int = 0
    in_kernel: bool = False  # the probes filter too (capture.scope in .rodata)

    def __post_init__(self) -> None:
        if self.kind == "cgroup":
            self._scan_cgroups()

    def _scan_cgroups(self) -> None:
        for root, _dirs, _files in os.walk(str(self.target)):
            try:
                self.cgroups.add(os.stat(root).st_ino)
            except OSError:
                continue

    def admits_pid(self, pid: int, cgroup_id: int = 0) -> bool:
        """For the /proc snapshot: is this live process in scope?"""
        if self.kind == "cgroup":
            return self._cgroup_in(cgroup_id) if cgroup_id else self._proc_cgroup_in(pid)
        ok = _netns_of(pid) == self.target
        self.inside[pid] = ok
        return ok

    def admits(self, ev: Event) -> bool:
        ok = self._decide(ev)
        if not ok:
            self.dropped += 1
        return ok

    def _decide(self, ev: Event) -> bool:
        if self.kind == "cgroup":
            return self.in_kernel or self._cgroup_in(ev.cgroup_id)
        netns = getattr(ev, "netns", 0)
        if netns:
            return netns == self.target  # a socket's own namespace (it may differ)
        if self.in_kernel:
            return True  # the probes kept only tasks in the namespace (exits included)
        if isinstance(ev, ForkEvent):
            parent = self.inside.get(ev.ppid)
            if parent is None or ev.clone_flags & CLONE_NEWNET:
                parent = self._lookup(ev.pid, parent)
            self.inside[ev.pid] = parent
            return parent
        if isinstance(ev, ExecEvent):
            self.inside[ev.pid] = self._lookup(ev.pid, self.inside.get(ev.pid))
            return self.inside[ev.pid]
        ok = self.inside.get(ev.pid)
        if ok is None:
            ok = self.inside[ev.pid] = self._lookup(ev.pid, False)
        if isinstance(ev, ExitEvent):
            self.inside.pop(ev.pid, None)
        return ok

    def _lookup(self, pid: int, fallback: bool | None) -> bool:
        ns = _netns_of(pid)
        if ns is None:
            return bool(fallback)
        return ns == self.target

    def _cgroup_in(self, cgroup_id: int) -> bool:
        if cgroup_id in self.cgroups:
            return True
        self._scan_cgroups()  # a cgroup made since the last scan
        return cgroup_id in self.cgroups

    def _proc_cgroup_in(self, pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                rel = f.read().strip().rpartition("::")[2]
            return os.stat(cgroup2_root() + rel).st_ino in self.cgroups
        except OSError:
            return False

    def status(self) -> dict[str, object]:
        return {"kind": self.kind, "target": str(self.target), "dropped": self.dropped,
                "tracked": len(self.inside)}
