"""Binary layout of the header every probe record starts with (see probes/common.h)."""

from __future__ import annotations

import socket
import struct

K_FORK, K_EXEC, K_EXIT, K_CONNECT, K_ACCEPT, K_LISTEN = 1, 2, 3, 4, 5, 6
KIND_NAMES = {K_FORK: "fork", K_EXEC: "exec", K_EXIT: "exit", K_CONNECT: "connect",
              K_ACCEPT: "accept", K_LISTEN: "listen"}

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
