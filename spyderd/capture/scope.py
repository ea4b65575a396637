"""`capture.scope`: limit a daemon to one network namespace or one cgroup subtree.

`netns:/run/netns/NAME` (or `netns:INODE`) keeps the processes whose network namespace
is that one, and the sockets in it; `cgroup:/sys/fs/cgroup/PATH` keeps the processes in
that cgroup or below. One kernel can then host several spyderd "hosts" (one per
namespace or container), each with its own machine id.

A process's namespace is read from /proc once, when it forks (only if the fork made a
new network namespace) or execs (`ip netns exec` enters the namespace right before its
exec); everything else about the process inherits that decision. Socket events carry
their own namespace. A process gone before its exec is seen keeps its parent's decision.
"""

from __future__ import annotations

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
            return self._cgroup_in(ev.cgroup_id)
        netns = getattr(ev, "netns", 0)
        if netns:
            return netns == self.target
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
            return os.stat("/sys/fs/cgroup" + rel).st_ino in self.cgroups
        except OSError:
            return False

    def status(self) -> dict[str, object]:
        return {"kind": self.kind, "target": str(self.target), "dropped": self.dropped,
                "tracked": len(self.inside)}
