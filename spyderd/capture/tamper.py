"""Signals aimed at spyderd itself, as the kernel saw them (probes/kernel.bpf.c).

Every kill/tkill/tgkill whose target is spyderd's pid (or -1, every process) is a `kernel`
event whatever `capture.kill_signals` says, and the kernel also writes the last one into a
one-slot map pinned to bpffs. A SIGKILL ends spyderd before it can read its ring buffer,
but not the pinned map: the next start reads who sent the signal (`read_pinned`), then pins
its own map in its place. The pin is per state directory (two daemons never share one).
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spyderd.capture.libbpf import Libbpf, MapView
from spyderd.capture.registry import MapAccess

log = logging.getLogger("spyderd.capture")
BPFFS = Path("/sys/fs/bpf")
MAP_NAME = "self_signals"
_REC = struct.Struct("<IIIIQQII16s")
CALLS = {16: "kill", 17: "tkill", 18: "tgkill"}  # probes/kernel.bpf.c KC_*


@dataclass(frozen=True, slots=True)
class SelfSignal:
    """The last signal sent to a spyderd: by whom, which, when (wall ns), how many in all."""

    sender_pid: int
    sender_tid: int
    sender_uid: int
    sender_comm: str
    signal: int
    call: str
    target: int
    time: int
    count: int

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]


def pin_path(state_dir: str, root: Path = BPFFS) -> Path:
    """Where the map of the daemon on `state_dir` is pinned."""
    key = hashlib.sha256(str(Path(state_dir).resolve()).encode()).hexdigest()[:16]
    return root / "spyderd" / key / MAP_NAME


def decode(raw: bytes, boot_to_wall: int) -> SelfSignal | None:
    """The map's slot; None when no signal was recorded."""
    pid, tid, uid, sig, ktime, count, call, target, comm = _REC.unpack_from(raw)
    if not count:
        return None
    return SelfSignal(sender_pid=pid, sender_tid=tid, sender_uid=uid,
                      sender_comm=comm.split(b"\0", 1)[0].decode("utf-8", "backslashreplace"),
                      signal=sig, call=CALLS.get(call, str(call)),
                      target=target - (1 << 32) if target >= 1 << 31 else target,
                      time=ktime + boot_to_wall, count=count)


def read_pinned(lib: Libbpf, path: Path, boot_to_wall: int) -> SelfSignal | None:
    """The record a previous daemon's kernel map holds, if that map is still pinned."""
    if not path.exists():
        return None
    fd = lib.lib.bpf_obj_get(str(path).encode())
    if fd < 0:
        log.warning("cannot open pinned map %s: %s", path, os.strerror(-fd))
        return None
    try:
        raw = MapView(lib, fd, 4, _REC.size).lookup(0)
        return decode(raw, boot_to_wall) if raw else None
    finally:
        os.close(fd)


def pin(lib: Libbpf, map_fd: int, path: Path) -> None:
    """Pin the live map at `path`, replacing a previous daemon's pin."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    lib.check(lib.lib.bpf_obj_pin(map_fd, str(path).encode()), f"pin {path}")


def release(table: MapAccess, path: Path, boot_to_wall: int) -> SelfSignal | None:
    """At a clean stop: the last signal sent to this daemon (who stopped it), read from the
    live map, and the pin removed (a daemon alive to log it needs no record left behind)."""
    raw = table.lookup(0)
    last = decode(raw, boot_to_wall) if raw else None
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()
    except OSError:
        pass
    return last
