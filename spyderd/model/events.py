"""Typed events, one dataclass per kind, with the header every probe record carries."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(slots=True, kw_only=True)
class Event:
    """Header shared by every event: who (pid/tid/uid/gid/comm/cgroup) and when.

    `time` is wall-clock ns; `ktime` is CLOCK_BOOTTIME ns as the kernel stamped it.
    `process_id` is filled by the graph: the id of the process image the event belongs to.
    """

    kind: ClassVar[str] = "event"
    time: int
    ktime: int = 0
    pid: int
    tid: int = 0
    uid: int = 0
    gid: int = 0
    cgroup_id: int = 0
    comm: str = ""
    process_id: str = ""


@dataclass(slots=True, kw_only=True)
class ForkEvent(Event):
    """A new process (not a thread) was created; `pid` is the child, `ppid` the parent."""

    kind: ClassVar[str] = "fork"
    ppid: int
    child_start: int = 0  # child's start_boottime, ns


@dataclass(slots=True, kw_only=True)
class ExecEvent(Event):
    """A process replaced its program image."""

    kind: ClassVar[str] = "exec"
    filename: str
    args: list[str] = field(default_factory=list)
    args_truncated: bool = False
    start: int = 0  # the process's start_boottime, ns (unchanged by exec)
    ppid: int = 0


@dataclass(slots=True, kw_only=True)
class ExitEvent(Event):
    """A process (thread group) ended; `code` is the exit status, `signal` the killing signal."""

    kind: ClassVar[str] = "exit"
    code: int = 0
    signal: int = 0


@dataclass(slots=True, kw_only=True)
class ConnectEvent(Event):
    """An outbound TCP connection attempt finished (`result` 0 = established, else -errno)."""

    kind: ClassVar[str] = "connect"
    family: int
    local_ip: str
    local_port: int
    remote_ip: str
    remote_port: int
    result: int = 0


@dataclass(slots=True, kw_only=True)
class AcceptEvent(Event):
    """An inbound TCP connection was accepted by the process."""

    kind: ClassVar[str] = "accept"
    family: int
    local_ip: str
    local_port: int
    remote_ip: str
    remote_port: int
    result: int = 0


@dataclass(slots=True, kw_only=True)
class ListenEvent(Event):
    """A TCP socket started listening."""

    kind: ClassVar[str] = "listen"
    family: int
    local_ip: str
    local_port: int


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (ForkEvent, ExecEvent, ExitEvent, ConnectEvent, AcceptEvent, ListenEvent)
}


def event_to_dict(ev: Event) -> dict[str, Any]:
    """JSON-ready dict with `kind` first; the form of `spyderctl events -o json` and replay files."""
    out: dict[str, Any] = {"kind": ev.kind}
    for f in dataclasses.fields(ev):
        out[f.name] = getattr(ev, f.name)
    return out


def event_from_dict(data: dict[str, Any]) -> Event:
    """Inverse of `event_to_dict`; unknown keys are ignored, a bad kind raises ValueError."""
    kind = data.get("kind")
    cls = EVENT_TYPES.get(kind)  # type: ignore[arg-type]
    if cls is None:
        raise ValueError(f"unknown event kind {kind!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    try:
        return cls(**{k: v for k, v in data.items() if k in names})
    except TypeError as exc:
        raise ValueError(f"bad {kind} event: {exc}") from None
