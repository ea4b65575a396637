"""Startup snapshot: every running process read from /proc, parents before children."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from spyderd.model.nodes import CLOCK_TICK_NS


@dataclass(slots=True)
class ProcInfo:
    """What /proc tells about one running process."""

    pid: int
    ppid: int
    start_ns: int  # start_boottime at tick precision
    comm: str
    exe: str = ""
    args: list[str] = field(default_factory=list)
    uid: int = 0
    gid: int = 0
    cgroup: str = ""


def read_proc(pid: int, root: str = "/proc") -> ProcInfo | None:
    """One process, or None if it vanished meanwhile (a race, not an error)."""
    base = f"{root}/{pid}"
    try:
        with open(f"{base}/stat", "rb") as f:
            stat = f.read().decode("utf-8", "backslashreplace")
    except OSError:
        return None
    lp, rp = stat.find("("), stat.rfind(")")
    comm = stat[lp + 1:rp]
    rest = stat[rp + 2:].split()
    ppid, start_ticks = int(rest[1]), int(rest[19])
    info = ProcInfo(pid=pid, ppid=ppid, start_ns=start_ticks * CLOCK_TICK_NS, comm=comm)
    try:
        info.exe = os.readlink(f"{base}/exe")
    except OSError:
        pass
    try:
        with open(f"{base}/cmdline", "rb") as f:
            raw = f.read()
        info.args = [a.decode("utf-8", "backslashreplace") for a in raw.split(b"\0")[:-1]]
    except OSError:
        pass
    try:
        with open(f"{base}/status", errors="backslashreplace") as f:  # Name: is the comm
            for line in f:
                if line.startswith("Uid:"):
                    info.uid = int(line.split()[1])
                elif line.startswith("Gid:"):
                    info.gid = int(line.split()[1])
                    break
    except OSError:
        pass
    try:
        with open(f"{base}/cgroup", errors="backslashreplace") as f:
            info.cgroup = f.read()
    except OSError:
        pass
    return info


def snapshot(root: str = "/proc") -> list[ProcInfo]:
    """All processes, ordered so that every parent comes before its children."""
    procs: dict[int, ProcInfo] = {}
    for name in os.listdir(root):
        if name.isdigit():
            info = read_proc(int(name), root)
            if info is not None:
                procs[info.pid] = info
    ordered: list[ProcInfo] = []
    seen: set[int] = set()

    def visit(p: ProcInfo) -> None:
        chain = []
        while p.pid not in seen:
            seen.add(p.pid)
            chain.append(p)
            parent = procs.get(p.ppid)
            if parent is None:
                break
            p = parent
        ordered.extend(reversed(chain))

    for p in sorted(procs.values(), key=lambda x: x.pid):
        visit(p)
    return ordered


def listening_sockets(root: str = "/proc") -> dict[int, list[int]]:
    """pid -> TCP ports it listens on, so servers started before spyderd are known as such."""
    inodes: dict[str, int] = {}
    for name in ("tcp", "tcp6"):
        try:
            with open(f"{root}/net/{name}") as f:
                next(f, None)
                for line in f:
                    parts = line.split()
                    if len(parts) > 9 and parts[3] == "0A":  # TCP_LISTEN
                        inodes[parts[9]] = int(parts[1].rsplit(":", 1)[1], 16)
        except OSError:
            continue
    out: dict[int, list[int]] = {}
    if not inodes:
        return out
    for pid in os.listdir(root):
        if not pid.isdigit():
            continue
        try:
            fds = os.listdir(f"{root}/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"{root}/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in inodes:
                ports = out.setdefault(int(pid), [])
                port = inodes[link[8:-1]]
                if port not in ports:
                    ports.append(port)
    return out
