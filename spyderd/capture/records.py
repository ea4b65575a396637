"""Binary layout of the header every probe record starts with (see probes/common.h).

Event kinds (the K_* numbers) belong to the probe modules that decode them; the registry
is their one table (`registry.kind_names()`), and tests/capture/test_event_kinds.py
checks it against the C (`#define K_*`) and every record layout against the BTF of the
compiled objects."""

from __future__ import annotations

import platform
import socket
import struct

# probes/common.h C_* indexes of the `kcount` map.
COUNTER_NAMES = {0: "threads", 1: "udp_repeats", 2: "ignored_comm", 3: "file_repeats",
                 4: "reserve_retries", 5: "out_of_scope"}

HDR = struct.Struct("<IIIIIIQQ16s")


def record(fmt: str) -> struct.Struct:
    """A record's layout: the header, then `fmt` (little-endian, no implicit padding)."""
    return struct.Struct("<" + HDR.format.lstrip("<") + fmt)


def header(buf: bytes, boot_to_wall: int) -> dict:
    """Decode the common header into Event keyword arguments."""
    _kind, pid, tid, uid, gid, _pad, ktime, cgid, comm = HDR.unpack_from(buf, 0)
    return {
        "time": ktime + boot_to_wall,
        "ktime": ktime,
        "pid": pid,
        "tid": tid,
        "uid": uid,
        "gid": gid,
        "cgroup_id": cgid,
        "comm": cstr(comm),
    }


def cstr(raw: bytes) -> str:
    """A NUL-terminated C string as text; undecodable bytes escaped, never dropped."""
    return raw.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")


def ip_text(family: int, raw: bytes) -> str:
    """Address bytes to text; IPv4-mapped IPv6 kept as the kernel reports it."""
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[:4])
    return socket.inet_ntop(socket.AF_INET6, raw[:16])


def signed32(v: int) -> int:
    """A u32 the kernel holds for an id that may be 'unset' ((u32)-1 → -1)."""
    return v - (1 << 32) if v >= 1 << 31 else v


# Syscalls watched through raw_syscalls:sys_enter when their own tracepoints are missing
# (kernels without CONFIG_MODULES / CONFIG_KEXEC). Numbers from the kernel's syscall tables.
FALLBACK_SYSCALLS: dict[str, dict[str, int]] = {
    "x86_64": {"init_module": 175, "delete_module": 176, "kexec_load": 246,
               "finit_module": 313, "kexec_file_load": 320},
    "aarch64": {"kexec_load": 104, "init_module": 105, "delete_module": 106,
                "finit_module": 273, "kexec_file_load": 294},
}


def fallback_syscalls(machine: str | None = None) -> dict[str, int]:
    """Name → number of the watched syscalls on this architecture ({} if unknown)."""
    return FALLBACK_SYSCALLS.get(machine or platform.machine(), {})
