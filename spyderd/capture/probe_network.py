"""TCP probe: connect with result, accept with both addresses, listen."""

from __future__ import annotations

import struct

from spyderd.capture.records import HDR, K_ACCEPT, K_CONNECT, K_LISTEN, header, ip_text
from spyderd.capture.registry import AttachPoint, DecodeContext, Probe, register
from spyderd.model import AcceptEvent, ConnectEvent, ListenEvent

_CONN = struct.Struct("<HHHHiI16s16s")


def _conn_fields(buf: bytes) -> dict:
    family, lport, rport, _, result, _, laddr, raddr = _CONN.unpack_from(buf, HDR.size)
    return {
        "family": 4 if family == 2 else 6,
        "local_ip": ip_text(family, laddr),
        "local_port": lport,
        "remote_ip": ip_text(family, raddr),
        "remote_port": rport,
        "result": result,
    }


def decode_connect(buf: bytes, ctx: DecodeContext) -> ConnectEvent:
    return ConnectEvent(**header(buf, ctx.boot_to_wall), **_conn_fields(buf))


def decode_accept(buf: bytes, ctx: DecodeContext) -> AcceptEvent:
    return AcceptEvent(**header(buf, ctx.boot_to_wall), **_conn_fields(buf))


def decode_listen(buf: bytes, ctx: DecodeContext) -> ListenEvent:
    f = _conn_fields(buf)
    return ListenEvent(**header(buf, ctx.boot_to_wall), family=f["family"],
                       local_ip=f["local_ip"], local_port=f["local_port"])


register(Probe(
    name="network",
    source="network.bpf.c",
    attach=(
        AttachPoint("tracepoint", "sock:inet_sock_set_state"),
        AttachPoint("tracepoint", "syscalls:sys_exit_accept"),
        AttachPoint("tracepoint", "syscalls:sys_exit_accept4"),
    ),
    decoders={K_CONNECT: ("connect", decode_connect), K_ACCEPT: ("accept", decode_accept),
              K_LISTEN: ("listen", decode_listen)},
    offsets={
        "OFF_TASK_FILES": ("task_struct", "files"),
        "OFF_FILES_FDT": ("files_struct", "fdt"),
        "OFF_FDT_FD": ("fdtable", "fd"),
        "OFF_FILE_PRIVATE_DATA": ("file", "private_data"),
        "OFF_SOCKET_SK": ("socket", "sk"),
        "OFF_SOCK_SK_ERR": ("sock", "sk_err"),
        "OFF_SKC_FAMILY": ("sock_common", "skc_family"),
        "OFF_SKC_NUM": ("sock_common", "skc_num"),
        "OFF_SKC_DPORT": ("sock_common", "skc_dport"),
        "OFF_SKC_DADDR": ("sock_common", "skc_daddr"),
        "OFF_SKC_RCV_SADDR": ("sock_common", "skc_rcv_saddr"),
        "OFF_SKC_V6_DADDR": ("sock_common", "skc_v6_daddr"),
        "OFF_SKC_V6_RCV_SADDR": ("sock_common", "skc_v6_rcv_saddr"),
    },
))
