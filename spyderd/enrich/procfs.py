"""What /proc/<pid> says about a process's context: cgroup, namespaces, login, terminal.

Everything here is a read of procfs, which lives in kernel memory and never waits on a
device, so it is cheap enough for the event path (about ten small reads per new process).
A process that exited before spyderd got to it, or whose pid was reused meanwhile (start
time differs), yields None: callers then fall back to the parent's context.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

NS_KINDS = ("pid", "net", "mnt", "user", "uts")
UNSET_ID = 4294967295  # (u32)-1: audit loginuid/sessionid never set


@dataclass(slots=True)
class ProcFacts:
    """One process's context as /proc shows it at one moment."""

    pid: int
    ppid: int = 0
    start_ticks: int = 0
    comm: str = ""
    sid: int = 0  # POSIX session id (pid of the session leader)
    pgrp: int = 0
    tty_nr: int = 0  # controlling terminal, kernel dev_t encoding; 0 = none
    uid: int = -1
    gid: int = -1
    nspid: list[int] = field(default_factory=list)  # pid in each nested pid namespace
    cgroup: str = ""
    loginuid: int = -1
    sessionid: int = -1
    ns: dict[str, int] = field(default_factory=dict)

    @property
    def ns_pid(self) -> int:
        """The pid inside the process's own pid namespace (1 for a namespace's init)."""
        return self.nspid[-1] if self.nspid else self.pid


def parse_stat(text: str) -> tuple[str, list[str]]:
    """(comm, fields after comm) from /proc/<pid>/stat; comm may hold spaces and parens."""
    lp, rp = text.find("("), text.rfind(")")
    return text[lp + 1:rp], text[rp + 2:].split()


def _read(path: str) -> str:
    """A small procfs file; os.open/os.read is about twice as fast as open() here."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 65536).decode("utf-8", "backslashreplace")
    finally:
        os.close(fd)


def _audit_id(text: str) -> int:
    value = int(text.strip() or UNSET_ID)
    return -1 if value == UNSET_ID else value


def read_facts(pid: int, proc: str = "/proc", start_ticks: int = 0, *, status: bool = True,
               audit: bool = True) -> ProcFacts | None:
    """The process's facts, or None if it is gone or `start_ticks` shows a reused pid.

    Every file is a syscall or two on the event path, so callers skip what they already
    know: `audit=False` when the exec event carried loginuid/sessionid, `status=False`
    when uid/gid are known and the pid-namespace pid is not needed (`read_status` later).
    """
    base = f"{proc}/{pid}"
    try:
        comm, rest = parse_stat(_read(f"{base}/stat"))
        facts = ProcFacts(pid=pid, ppid=int(rest[1]), pgrp=int(rest[2]), sid=int(rest[3]),
                          tty_nr=int(rest[4]), start_ticks=int(rest[19]), comm=comm)
        if start_ticks and facts.start_ticks != start_ticks:
            return None
        if status:
            _status(facts, _read(f"{base}/status"))
        facts.cgroup = _read(f"{base}/cgroup")
    except (OSError, ValueError, IndexError):
        return None
    for name in ("loginuid", "sessionid") if audit else ():
        try:
            setattr(facts, name, _audit_id(_read(f"{base}/{name}")))
        except (OSError, ValueError):
            pass  # kernel without CONFIG_AUDIT: stays -1
    facts.ns = read_ns(pid, proc)
    return facts


def read_status(facts: ProcFacts, proc: str = "/proc") -> None:
    """uid, gid and NSpid, for facts read with `status=False` (no-op if it is gone)."""
    if facts.nspid:
        return
    try:
        _status(facts, _read(f"{proc}/{facts.pid}/status"))
    except (OSError, ValueError):
        pass


def _field(text: str, key: str) -> list[str]:
    """Whitespace-split value of a `Key:` line of /proc/<pid>/status ([] if absent)."""
    at = text.find(f"\n{key}:")
    if at < 0:
        return []
    end = text.find("\n", at + 1)
    return text[at + len(key) + 2:end if end >= 0 else None].split()


def _status(facts: ProcFacts, text: str) -> None:
    uid, gid = _field(text, "Uid"), _field(text, "Gid")
    facts.uid = int(uid[0]) if uid else -1
    facts.gid = int(gid[0]) if gid else -1
    facts.nspid = [int(x) for x in _field(text, "NSpid")]


def read_ns(pid: int | str, proc: str = "/proc") -> dict[str, int]:
    """Namespace inode numbers (the ids `lsns` shows); a kind we cannot read is left out."""
    out: dict[str, int] = {}
    for kind in NS_KINDS:
        try:
            out[kind] = os.stat(f"{proc}/{pid}/ns/{kind}").st_ino
        except OSError:
            continue
    return out


def host_namespaces(proc: str = "/proc") -> dict[str, int]:
    """PID 1's namespaces, taken as the host's; our own where PID 1's are unreadable
    (a PID 1 with more capabilities than spyderd refuses ptrace-mode reads)."""
    return {**read_ns("self", proc), **read_ns(1, proc)}


def alive(pid: int, start_ticks: int, proc: str = "/proc") -> bool:
    """Is this exact process (pid and start time) still running?"""
    if pid <= 0:
        return False
    try:
        _, rest = parse_stat(_read(f"{proc}/{pid}/stat"))
    except (OSError, IndexError):
        return False
    return not start_ticks or int(rest[19]) == start_ticks


def exe_of(pid: int, proc: str = "/proc") -> str:
    try:
        return os.readlink(f"{proc}/{pid}/exe")
    except OSError:
        return ""
