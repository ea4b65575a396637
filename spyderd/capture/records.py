"""Binary layout of the header every probe record starts with (see probes/common.h)."""

from __future__ import annotations

import platform
import socket
import struct

K_FORK, K_EXEC, K_EXIT, K_CONNECT, K_ACCEPT, K_LISTEN = 1, 2, 3, 4, 5, 6
# 7 and 8 belong to the file probe (records named there).
K_BIND, K_UDP, K_UNIX_CONNECT, K_CRED, K_SETSID, K_PRCTL, K_KERNEL = 9, 10, 11, 12, 13, 14, 15
KIND_NAMES = {K_FORK: "fork", K_EXEC: "exec", K_EXIT: "exit", K_CONNECT: "connect",
              K_ACCEPT: "accept", K_LISTEN: "listen", 7: "file", 8: "wrote_exec",
              K_BIND: "bind", K_UDP: "udp", K_UNIX_CONNECT: "unix_connect", K_CRED: "cred",
              K_SETSID: "setsid", K_PRCTL: "prctl", K_KERNEL: "kernel"}

# probes/common.h C_* indexes of the `kcount` map.
COUNTER_NAMES = {0: "threads", 1: "udp_repeats", 2: "ignored_comm", 3: "file_repeats",
                 4: "reserve_retries"}

HDR = struct.Struct("<IIIIIIQQ16s")


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
