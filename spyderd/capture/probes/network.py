"""Network probe: TCP connect (with result), accept and listen; bind; UDP destinations;
Unix-socket connects; each with the network namespace (inode) of the socket.

Decisions:
- TCP connects come from `sock:inet_sock_set_state` (SYN_SENT → ESTABLISHED/CLOSE), so
  both success and refusal/timeout are seen; a connect that fails before a SYN is sent
  (EACCES from a firewall, ENETUNREACH) is not.
- UDP is seen where the destination is named: sendto/sendmsg/sendmmsg with an address
  (the first message of sendmmsg) and connect() on a UDP socket (glibc's resolver
  connects, so DNS shows as call=connect to port 53). Sends on a connected UDP socket
  carry no address and are not events. `capture.udp_ports` keeps only some ports (empty:
  all); the same process sending to the same destination again within
  `capture.udp_repeat_seconds` is folded in the kernel and counted (udp_repeats).
- `result` of UDP sends is 0 on success (the byte count is not kept) or -errno.
- socket(): only packet sockets (AF_PACKET) and raw sockets (SOCK_RAW) are events, chosen
  in the kernel: sniffers and hand-made packets; ping's ICMP datagram sockets are not.
- dup2/dup3 onto fd 0, 1 or 2 from a socket are events (the classic reverse shell wiring
  a connection to a shell's stdio), with the socket's protocol and addresses.
"""

from __future__ import annotations

import socket
from typing import Any

from spyderd.capture.config import CaptureConfig
from spyderd.capture.records import ip_text, record
from spyderd.capture.registry import AttachPoint, DecodeContext, Probe, Settings, register
from spyderd.model import (
    AcceptEvent,
    BindEvent,
    ConnectEvent,
    DupEvent,
    ListenEvent,
    SocketEvent,
    UdpEvent,
    UnixConnectEvent,
)

# probes/common.h K_* of this probe's records
K_CONNECT, K_ACCEPT, K_LISTEN, K_BIND, K_UDP, K_UNIX_CONNECT = 4, 5, 6, 9, 10, 11
K_SOCKET, K_DUP = 16, 17
_CONN = record("HHHHiI16s16s")
_ADDR = record("HHHHiI16sQ")
_UNIX = record("iI128s")
_SOCK = record("iIII")
_DUP = record("iIIHHHHHH16s16s")
FAMILIES = {1: "unix", 2: "inet", 10: "inet6", 16: "netlink", 17: "packet"}
TYPES = {1: "stream", 2: "dgram", 3: "raw", 4: "rdm", 5: "seqpacket", 10: "packet"}
IPPROTO = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp", 255: "raw"}
UDP_CALLS = ("sendto", "sendmsg", "connect", "sendmmsg")
SOCK_TYPES = {1: "tcp", 2: "udp"}


def _cstr(raw: bytes) -> str:
    i = raw.find(b"\0")
    return (raw if i < 0 else raw[:i]).decode("utf-8", "backslashreplace")


def _head(v: tuple, ctx: DecodeContext) -> dict[str, Any]:
    return {"time": v[6] + ctx.boot_to_wall, "ktime": v[6], "pid": v[1], "tid": v[2],
            "uid": v[3], "gid": v[4], "cgroup_id": v[7], "comm": _cstr(v[8])}


def _conn(buf: bytes, ctx: DecodeContext) -> dict[str, Any]:
    v = _CONN.unpack_from(buf, 0)
    family, lport, rport, _, result, netns, laddr, raddr = v[9:]
    return {**_head(v, ctx), "family": 4 if family == socket.AF_INET else 6,
            "local_ip": ip_text(family, laddr), "local_port": lport,
            "remote_ip": ip_text(family, raddr), "remote_port": rport, "result": result,
            "netns": netns}


def decode_connect(buf: bytes, ctx: DecodeContext) -> ConnectEvent:
    return ConnectEvent(**_conn(buf, ctx))


def decode_accept(buf: bytes, ctx: DecodeContext) -> AcceptEvent:
    return AcceptEvent(**_conn(buf, ctx))


def decode_listen(buf: bytes, ctx: DecodeContext) -> ListenEvent:
    f = _conn(buf, ctx)
    for k in ("remote_ip", "remote_port", "result"):
        del f[k]
    return ListenEvent(**f)


def decode_bind(buf: bytes, ctx: DecodeContext) -> BindEvent:
    v = _ADDR.unpack_from(buf, 0)
    family, port, typ, _call, result, netns, addr, _sk = v[9:]
    return BindEvent(**_head(v, ctx), family=4 if family == socket.AF_INET else 6,
                     protocol=SOCK_TYPES.get(typ, str(typ)), local_ip=ip_text(family, addr),
                     local_port=port, result=result, netns=netns)


def decode_udp(buf: bytes, ctx: DecodeContext) -> UdpEvent:
    v = _ADDR.unpack_from(buf, 0)
    family, port, _typ, call, result, netns, addr, _sk = v[9:]
    return UdpEvent(**_head(v, ctx), call=UDP_CALLS[call] if call < len(UDP_CALLS) else str(call),
                    family=4 if family == socket.AF_INET else 6,
                    remote_ip=ip_text(family, addr), remote_port=port, result=result,
                    netns=netns)


def unix_path(raw: bytes, length: int) -> str:
    """sun_path as text: abstract names (leading NUL) as '@name', like ss(8) shows them."""
    raw = raw[:length]
    if raw[:1] == b"\0":
        return "@" + raw[1:].rstrip(b"\0").decode("utf-8", "backslashreplace")
    return _cstr(raw)


def decode_unix(buf: bytes, ctx: DecodeContext) -> UnixConnectEvent:
    v = _UNIX.unpack_from(buf, 0)
    result, length, path = v[9:]
    return UnixConnectEvent(**_head(v, ctx), path=unix_path(path, length), result=result)


def decode_socket(buf: bytes, ctx: DecodeContext) -> SocketEvent:
    v = _SOCK.unpack_from(buf, 0)
    result, family, type_, protocol = v[9:]
    return SocketEvent(**_head(v, ctx), family=FAMILIES.get(family, str(family)),
                       type=TYPES.get(type_ & 0xF, str(type_ & 0xF)), protocol=protocol,
                       result=result)


def sock_protocol(family: int, sotype: int, protocol: int) -> str:
    """tcp, udp, unix, raw, packet, netlink ... for a socket's family, type and protocol."""
    if family in (1, 16, 17):
        return FAMILIES[family]
    if sotype == 3:
        return "raw"
    return IPPROTO.get(protocol) or {1: "tcp", 2: "udp"}.get(sotype, str(protocol))


def decode_dup(buf: bytes, ctx: DecodeContext) -> DupEvent:
    v = _DUP.unpack_from(buf, 0)
    result, oldfd, newfd, family, sotype, protocol, lport, rport, _pad, laddr, raddr = v[9:]
    inet = family in (socket.AF_INET, socket.AF_INET6)
    return DupEvent(**_head(v, ctx), oldfd=oldfd, newfd=newfd,
                    protocol=sock_protocol(family, sotype, protocol),
                    local_ip=ip_text(family, laddr) if inet else "", local_port=lport,
                    remote_ip=ip_text(family, raddr) if inet else "", remote_port=rport,
                    result=result)


def configure(cfg: CaptureConfig, _missing: frozenset[str]) -> Settings:
    ns = int(float(cfg.udp_repeat_seconds) * 1e9)
    return Settings({"udp_repeat_ns": max(ns, 0),
                     "filter_udp_ports": 1 if cfg.udp_ports else 0})


def maps(cfg: CaptureConfig, _missing: frozenset[str]) -> dict[str, dict[Any, int]]:
    return {"udp_port_filter": {int(p): 1 for p in cfg.udp_ports}}


def selftest() -> None:
    """A TCP connect refused by a closed loopback port."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    c = socket.socket()
    try:
        c.connect(("127.0.0.1", port))
    except OSError:
        pass
    finally:
        c.close()


register(Probe(
    name="network",
    source="network.bpf.c",
    attach=(
        AttachPoint("tracepoint", "sock:inet_sock_set_state"),
        AttachPoint("tracepoint", "syscalls:sys_exit_accept"),
        AttachPoint("tracepoint", "syscalls:sys_exit_accept4"),
        AttachPoint("tracepoint", "syscalls:sys_enter_bind"),
        AttachPoint("tracepoint", "syscalls:sys_exit_bind"),
        AttachPoint("tracepoint", "syscalls:sys_enter_connect"),
        AttachPoint("tracepoint", "syscalls:sys_exit_connect"),
        AttachPoint("tracepoint", "syscalls:sys_enter_sendto"),
        AttachPoint("tracepoint", "syscalls:sys_exit_sendto"),
        AttachPoint("tracepoint", "syscalls:sys_enter_sendmsg"),
        AttachPoint("tracepoint", "syscalls:sys_exit_sendmsg"),
        AttachPoint("tracepoint", "syscalls:sys_enter_sendmmsg", optional=True),
        AttachPoint("tracepoint", "syscalls:sys_exit_sendmmsg", optional=True),
        AttachPoint("tracepoint", "syscalls:sys_enter_socket"),
        AttachPoint("tracepoint", "syscalls:sys_exit_socket"),
        AttachPoint("tracepoint", "syscalls:sys_enter_dup2", optional=True),
        AttachPoint("tracepoint", "syscalls:sys_exit_dup2", optional=True),
        AttachPoint("tracepoint", "syscalls:sys_enter_dup3"),
        AttachPoint("tracepoint", "syscalls:sys_exit_dup3"),
    ),
    decoders={K_CONNECT: ("connect", decode_connect), K_ACCEPT: ("accept", decode_accept),
              K_LISTEN: ("listen", decode_listen), K_BIND: ("bind", decode_bind),
              K_UDP: ("udp", decode_udp), K_UNIX_CONNECT: ("unix_connect", decode_unix),
              K_SOCKET: ("socket", decode_socket), K_DUP: ("dup", decode_dup)},
    layouts={"conn_rec": _CONN, "addr_rec": _ADDR, "unix_rec": _UNIX, "sock_rec": _SOCK,
             "dup_rec": _DUP},
    configure=configure,
    maps=maps,
    selftest=selftest,
))
