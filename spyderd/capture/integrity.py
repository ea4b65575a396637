"""Probe integrity: every attachment spyderd made is checked at the watchdog tick, so a
probe someone detached or replaced is noticed within one interval, reported and attached
again.

What is checked, per attachment (ids are the kernel's, taken right after attaching):
- a BPF link (libbpf's tracepoint and raw-tracepoint links, bcc's raw tracepoints): our
  descriptor still holds that link (BPF_OBJ_GET_INFO_BY_FD: same link id), and the link
  still runs our program (same prog_id; BPF_LINK_UPDATE would change it). A descriptor
  closed behind our back (a debugger injecting close(), a pidfd trick) drops the last
  reference, and the kernel detaches the link;
- a perf event with a program (bcc's tracepoints): our descriptor still is that event and
  our program is still among those the event runs (PERF_EVENT_IOC_QUERY_BPF);
- each program: its id still resolves (BPF_PROG_GET_FD_BY_ID).

The UAPI structs read here (the first words of bpf_link_info / bpf_prog_info, the
get-fd-by-id attribute, perf_event_query_bpf) are the kernel's stable ABI, not internal
layouts. A check costs one or two system calls per attachment.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import platform
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

BPF_PROG_GET_FD_BY_ID = 13
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_LINK_GET_FD_BY_ID = 30
SYS_BPF = {"x86_64": 321, "aarch64": 280}
PERF_EVENT_IOC_QUERY_BPF = 0xC008240A  # _IOWR('$', 10, struct perf_event_query_bpf *)
_INFO_SIZE = 256  # larger than bpf_link_info / bpf_prog_info; the kernel wants a zero tail
_IDS = 64  # programs one tracepoint may run (ours and others')


class _InfoAttr(ctypes.Structure):
    _fields_ = [("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32),
                ("info", ctypes.c_uint64)]


class _IdAttr(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint32), ("next_id", ctypes.c_uint32),
                ("open_flags", ctypes.c_uint32)]


class BpfSys:
    """The few bpf(2) and ioctl(2) calls the check needs."""

    def __init__(self) -> None:
        self._nr = SYS_BPF.get(platform.machine())
        self._libc = ctypes.CDLL(None, use_errno=True)

    @property
    def usable(self) -> bool:
        return self._nr is not None

    def _bpf(self, cmd: int, attr: ctypes.Structure) -> int:
        if self._nr is None:
            return -1
        return self._libc.syscall(self._nr, cmd, ctypes.byref(attr), ctypes.sizeof(attr))

    def info(self, fd: int) -> tuple[int, int, int] | None:
        """(type, id, prog_id) of a link, or (type, id, _) of a program; None when `fd` is
        no BPF object (closed, or now another file)."""
        buf = ctypes.create_string_buffer(_INFO_SIZE)
        attr = _InfoAttr(fd, _INFO_SIZE, ctypes.addressof(buf))
        if fd < 0 or self._bpf(BPF_OBJ_GET_INFO_BY_FD, attr) != 0:
            return None
        return struct.unpack_from("<III", buf.raw)

    def exists(self, cmd: int, obj_id: int) -> bool:
        """The object with this id is still in the kernel (its fd is opened and closed)."""
        fd = self._bpf(cmd, _IdAttr(obj_id, 0, 0))
        if fd < 0:
            return ctypes.get_errno() not in (2,)  # ENOENT: gone; EPERM etc.: cannot tell
        os.close(fd)
        return True

    def perf_programs(self, fd: int) -> list[int] | None:
        """Ids of the programs the perf event `fd` runs; None when `fd` is no such event."""
        buf = bytearray(struct.pack("<II", _IDS, 0) + bytes(4 * _IDS))
        try:
            fcntl.ioctl(fd, PERF_EVENT_IOC_QUERY_BPF, buf, True)
        except OSError:
            return None
        n = min(struct.unpack_from("<I", buf, 4)[0], _IDS)
        return list(struct.unpack_from(f"<{n}I", buf, 8))


@dataclass(slots=True)
class Attachment:
    """One program attached to one hook, as spyderd made it."""

    probe: str
    program: str
    hook: str
    kind: str  # "link" | "perf"
    fd: int
    prog_id: int
    link_id: int = 0
    handle: Any = None  # the loader's own handle, for attaching again
    state: str = "attached"  # attached | detached | replaced | gone
    since: float = 0.0
    detail: str = ""

    def label(self) -> str:
        what = f"link {self.link_id}" if self.link_id else f"perf event fd {self.fd}"
        return f"{what}, program {self.program} (id {self.prog_id}) on {self.hook}"


@dataclass(slots=True)
class Fault:
    """A detached or replaced attachment, as reported once."""

    attachment: Attachment
    state: str
    detail: str
    time: float
    reattached: bool = False
    reattach_error: str = ""
    new_label: str = ""

    def to_dict(self) -> dict[str, Any]:
        a = self.attachment
        return {"probe": a.probe, "program": a.program, "hook": a.hook, "state": self.state,
                "detail": self.detail, "time": self.time, "link_id": a.link_id,
                "prog_id": a.prog_id, "reattached": self.reattached,
                "reattach_error": self.reattach_error, "now": self.new_label}


def inspect(a: Attachment, sys: BpfSys) -> tuple[str, str] | None:
    """(state, why) when the attachment is no longer what spyderd made, else None."""
    if a.kind == "link":
        info = sys.info(a.fd)
        if info is None or info[1] != a.link_id:
            why = "descriptor closed" if info is None else "descriptor now holds another object"
            return "detached", f"link {a.link_id} detached ({why})"
        if info[2] != a.prog_id:
            return "replaced", (f"link {a.link_id} now runs program id {info[2]} instead of "
                                f"{a.program} (id {a.prog_id})")
    else:
        ids = sys.perf_programs(a.fd)
        if ids is None or a.prog_id not in ids:
            why = "descriptor closed" if ids is None else "our program no longer attached"
            return "detached", f"perf event of {a.hook} detached ({why})"
    if not sys.exists(BPF_PROG_GET_FD_BY_ID, a.prog_id):
        return "gone", f"program {a.program} (id {a.prog_id}) no longer in the kernel"
    return None


Reattach = Callable[[Attachment], Attachment]


@dataclass(slots=True)
class ProbeIntegrity:
    """The attachments of the running probes and what happened to them."""

    attachments: list[Attachment]
    sys: BpfSys
    reattach: Reattach | None = None
    why_unchecked: str = ""  # why some attachments cannot be checked (bcc's old paths)
    checks: int = 0
    counters: dict[str, int] = field(default_factory=lambda: {
        "detached": 0, "replaced": 0, "gone": 0, "reattached": 0, "reattach_failed": 0})
    faults: list[Fault] = field(default_factory=list)

    def check(self, now: float | None = None) -> list[Fault]:
        """Inspect every attachment; a new fault is counted, attached again where the
        loader can, and returned (once) for the journal."""
        now = time.time() if now is None else now
        self.checks += 1
        new: list[Fault] = []
        for i, a in enumerate(self.attachments):
            if a.state != "attached":  # reported once; not attached again
                continue
            found = inspect(a, self.sys)
            if found is None:
                continue
            state, detail = found
            fault = Fault(a, state, detail, now)
            self.counters[state] += 1
            a.state, a.since, a.detail = state, now, detail
            self._repair(i, fault)
            new.append(fault)
        self.faults = (self.faults + new)[-20:]
        return new

    def _repair(self, i: int, fault: Fault) -> None:
        if self.reattach is None:
            fault.reattach_error = "this loader cannot attach again"
            self.counters["reattach_failed"] += 1
            return
        try:
            fresh = self.reattach(fault.attachment)
        except Exception as exc:  # noqa: BLE001 - any failure is reported, never raised
            fault.reattach_error = f"{type(exc).__name__}: {exc}"
            self.counters["reattach_failed"] += 1
            return
        self.attachments[i] = fresh
        fault.reattached, fault.new_label = True, fresh.label()
        self.counters["reattached"] += 1

    def probe_notes(self) -> dict[str, str]:
        """Probe name -> what happened to it, for its line in `spyderctl status`."""
        out: dict[str, str] = {}
        for f in self.faults:
            at = time.strftime("%H:%M:%S", time.localtime(f.time))
            what = f"{f.state.upper()} at {at} ({f.detail})"
            what += ", re-attached" if f.reattached else f", NOT re-attached: {f.reattach_error}"
            out[f.attachment.probe] = what
        return out

    def status(self) -> dict[str, Any]:
        return {"attachments": len(self.attachments), "checks": self.checks,
                **self.counters, "unchecked": self.why_unchecked,
                "faults": [f.to_dict() for f in self.faults[-10:]]}
