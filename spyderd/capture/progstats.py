"""Per-program miss counters: events the kernel never let a probe see.

When a BPF program is already running on a CPU (a syscall-exit probe, say) and a softirq
on that CPU fires another traced point, the kernel skips the nested program instead of
running it, and only counts it in `bpf_prog_info.recursion_misses`. Those events never
reach the ring buffer, so the `lost` map cannot count them; this module reads the counter
of each loaded program (BPF_OBJ_GET_INFO_BY_FD) so that they are shown as losses too.
The field's offset and the struct's size come from the running kernel's BTF; kernels
without the field (before 5.12) report nothing here.
"""

from __future__ import annotations

import ctypes
import os
import platform
from typing import Protocol

BPF_OBJ_GET_INFO_BY_FD = 15
SYS_BPF = {"x86_64": 321, "aarch64": 280}


class StructLayouts(Protocol):
    """Where struct layouts come from: spyderd's BTF parser or libbpf's (KernelBtf)."""

    def sizeof(self, name: str) -> int: ...
    def offsetof(self, name: str, member: str) -> int: ...


class _InfoAttr(ctypes.Structure):
    _fields_ = [("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32),
                ("info", ctypes.c_uint64)]


class ProgStats:
    """Reads `recursion_misses` of the given programs (name -> fd)."""

    def __init__(self, btf: StructLayouts, programs: dict[str, int]) -> None:
        self.programs = programs
        self._nr = SYS_BPF.get(platform.machine())
        try:
            self._size = btf.sizeof("bpf_prog_info")
            self._off = btf.offsetof("bpf_prog_info", "recursion_misses")
        except (KeyError, ValueError):
            self._nr = None
        self._libc = ctypes.CDLL(None, use_errno=True)

    @property
    def usable(self) -> bool:
        return self._nr is not None

    def misses(self) -> dict[str, int]:
        """Program name -> missed runs, for programs that missed any."""
        if self._nr is None:
            return {}
        out = {}
        buf = ctypes.create_string_buffer(self._size)
        for name, fd in self.programs.items():
            ctypes.memset(buf, 0, self._size)
            attr = _InfoAttr(fd, self._size, ctypes.addressof(buf))
            if self._libc.syscall(self._nr, BPF_OBJ_GET_INFO_BY_FD, ctypes.byref(attr),
                                  ctypes.sizeof(attr)) != 0:
                continue  # e.g. EPERM without CAP_SYS_ADMIN: nothing to add
            n = int.from_bytes(buf.raw[self._off:self._off + 8], "little")
            if n:
                out[name] = n
        return out


def program_label(fn_name: str) -> str:
    """bcc's function name to the hook it serves: tracepoint__sock__inet_sock_set_state ->
    inet_sock_set_state, raw_tracepoint__sched_process_fork -> sched_process_fork."""
    return fn_name.rsplit("__", 1)[-1]


def bpf_programs(bpf) -> dict[str, int]:
    """name -> fd of the programs a bcc BPF object loaded."""
    out = {}
    for name, fn in getattr(bpf, "funcs", {}).items():
        fd = getattr(fn, "fd", None)
        if isinstance(fd, int) and fd >= 0 and os.path.exists(f"/proc/self/fd/{fd}"):
            out[name.decode() if isinstance(name, bytes) else str(name)] = fd  # bcc: bytes
    return out
