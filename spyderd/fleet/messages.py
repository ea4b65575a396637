"""Fleet messages: versioned subjects, the canonical 4-tuple, and strict decoding.

Every message on the bus is zlib-compressed JSON with a version field. Decoding never
trusts a peer: anything malformed raises `BadMessage` and the consumer counts and drops it.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import zlib
from dataclasses import dataclass
from typing import Any

VERSION = 1
PREFIX = f"spyder.v{VERSION}"  # stream subjects; RPC lives outside the stream (RPC_PREFIX)
RPC_PREFIX = f"spyder.rpc.v{VERSION}"
STREAM = "SPYDER"
PEERS_BUCKET = "spyder_peers"
CONN_SHARDS = 16
MAX_MESSAGE = 4 << 20  # bytes, compressed or not
_TOKEN = re.compile(r"[^A-Za-z0-9_-]")


class BadMessage(ValueError):
    """A fleet message that does not decode or does not have the expected shape."""


def subject_token(name: str) -> str:
    """A machine name as one NATS subject token (no dots, wildcards or spaces)."""
    tok = _TOKEN.sub("_", name.strip())
    return tok or "unnamed"


def graph_subject(machine: str) -> str:
    return f"{PREFIX}.{subject_token(machine)}.graph"


def finding_subject(machine: str) -> str:
    return f"{PREFIX}.{subject_token(machine)}.finding"


def conn_subject(machine: str, shard: int) -> str:
    return f"{PREFIX}.{subject_token(machine)}.conn.{shard}"


def rpc_subject(machine: str) -> str:
    return f"{RPC_PREFIX}.{subject_token(machine)}"


STITCH_RPC = f"{RPC_PREFIX}._stitch"
PEER_SUBJECT = f"{PREFIX}._stitch.peer"


@functools.lru_cache(maxsize=65536)
def normalise_ip(ip: str) -> str:
    """IPv4-mapped IPv6 addresses (::ffff:10.0.0.1) become plain IPv4; others canonical.
    Dotted IPv4 as the kernel prints it is canonical already (the common, fast case)."""
    if ":" not in ip:
        return ip
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def canonical_tuple(local_ip: str, local_port: int, remote_ip: str,
                    remote_port: int) -> tuple[str, int, str, int]:
    """The same 4-tuple from either end: endpoints normalised and ordered."""
    a = (normalise_ip(local_ip), int(local_port))
    b = (normalise_ip(remote_ip), int(remote_port))
    lo, hi = sorted((a, b))
    return (lo[0], lo[1], hi[0], hi[1])


def shard_of(tup: tuple[str, int, str, int]) -> int:
    return zlib.crc32(repr(tup).encode()) % CONN_SHARDS


def encode(obj: dict[str, Any]) -> bytes:
    return zlib.compress(json.dumps(obj, separators=(",", ":")).encode(), 1)


def decode(raw: bytes) -> dict[str, Any]:
    """Bytes from the bus to a dict with `v` == VERSION, else BadMessage."""
    if len(raw) > MAX_MESSAGE:
        raise BadMessage(f"message of {len(raw)} bytes is over {MAX_MESSAGE}")
    try:
        d = zlib.decompressobj()
        text = d.decompress(raw, MAX_MESSAGE * 8)
        if d.unconsumed_tail:
            raise BadMessage("message expands past the size limit")
        obj = json.loads(text)
    except (zlib.error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadMessage(f"undecodable message: {exc}") from None
    if not isinstance(obj, dict) or obj.get("v") != VERSION:
        raise BadMessage("not a spyderd v1 fleet message")
    if not isinstance(obj.get("machine"), str) or not obj["machine"]:
        raise BadMessage("message without a machine")
    return obj


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One end of a TCP connection as a host saw it."""

    machine: str
    conn_id: str
    process_id: str
    direction: str  # "out" (connect) or "in" (accept)
    tup: tuple[str, int, str, int]
    time: int  # wall ns

    def to_msg(self) -> dict[str, Any]:
        return {"v": VERSION, "machine": self.machine, "id": self.conn_id,
                "process_id": self.process_id, "direction": self.direction,
                "tuple": list(self.tup), "time": self.time}


def ends_message(machine: str, ends: list[Endpoint]) -> dict[str, Any]:
    """One message for the connection ends of one batch and shard."""
    return {"v": VERSION, "machine": machine,
            "ends": [{k: v for k, v in e.to_msg().items() if k not in ("v", "machine")}
                     for e in ends]}


def nat_from(msg: dict[str, Any]) -> list[tuple[tuple, tuple]]:
    """Alias pairs of a NAT message (see spyderd.fleet.nat), canonicalised, else BadMessage."""
    out = []
    try:
        for a, b in msg["nat"]:
            out.append((canonical_tuple(str(a[0]), int(a[1]), str(a[2]), int(a[3])),
                        canonical_tuple(str(b[0]), int(b[1]), str(b[2]), int(b[3]))))
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise BadMessage(f"malformed NAT pairs: {exc}") from None
    return out


def endpoints_from(msg: dict[str, Any]) -> list[Endpoint]:
    """The Endpoints of a decoded conn message (a batch `ends`, or one end), else
    BadMessage."""
    ends = msg.get("ends")
    if ends is None:
        return [endpoint_from(msg)]
    if not isinstance(ends, list):
        raise BadMessage("malformed connection ends")
    return [endpoint_from({**e, "machine": msg["machine"]}) if isinstance(e, dict)
            else endpoint_from({}) for e in ends]


def endpoint_from(msg: dict[str, Any]) -> Endpoint:
    """An Endpoint from one decoded end, else BadMessage."""
    try:
        tup = msg["tuple"]
        if (not isinstance(tup, list) or len(tup) != 4 or msg["direction"] not in ("in", "out")
                or not isinstance(msg["id"], str) or not isinstance(msg["time"], int)):
            raise BadMessage("malformed connection endpoint")
        canon = canonical_tuple(str(tup[0]), int(tup[1]), str(tup[2]), int(tup[3]))
        return Endpoint(msg["machine"], msg["id"], str(msg.get("process_id", "")),
                        msg["direction"], canon, msg["time"])
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, BadMessage):
            raise
        raise BadMessage(f"malformed connection endpoint: {exc}") from None


def peer_key(conn_id: str) -> str:
    """KV key for a connection id (KV keys allow only a small alphabet)."""
    return "c." + conn_id.encode().hex()
