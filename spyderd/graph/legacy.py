"""Record formats of store schemas 1 and 2, kept to read stores being migrated.

Schema 2 kept one value per node (JSON without the id and zero/default fields, deflated
with a preset dictionary), one value per edge, and events in zlib(JSON list) blocks.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from spyderd.graph.codec import NODE_DEFAULTS
from spyderd.model import Node

_NODE_CORE = ("start", "end", "pid", "ppid", "uid", "parent", "via")
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
ZDICT = (
    b'"direction":"out","family":4,"local_ip":"127.0.0.1","local_port":"remote_ip":'
    b'"remote_port":"result":0,"process_id":"proc:"kind":"connection","start":"pid":'
    b'"uid":0,"ppid":"parent":"proc:"via":"spawned","via":"exec","exe":"/usr/bin/'
    b'"args":["comm":"start_ns":"container_id":"listen_ports":[],"accepts":'
    b'"exit_code":0,"exit_signal":0,"replaced_by":"proc:"end":"gid":0,'
    b'"kind":"process","start":"/usr/sbin/","/bin/sh","-c","python3","kind":"file",'
)


def encode_node(n: Node) -> bytes:
    """Schema 2 node value (used by tests that build a schema 2 store)."""
    d: dict[str, Any] = {"kind": n.kind}
    for k in _NODE_CORE:
        v = getattr(n, k)
        if v:
            d[k] = v
    defaults = NODE_DEFAULTS.get(n.kind, {})
    for k, v in n.attrs.items():
        if k not in defaults or defaults[k] != v:
            d[k] = v
    c = zlib.compressobj(6, zlib.DEFLATED, -10, 2, zlib.Z_DEFAULT_STRATEGY, ZDICT)
    return b"Z" + c.compress(_ENCODE(d).encode()) + c.flush()


def decode_node(raw: bytes, node_id: str = "") -> Node:
    """A schema 2 node value (or a schema 1 plain JSON one)."""
    if raw[:1] == b"Z":
        d = zlib.decompressobj(-10, zdict=ZDICT)
        raw = d.decompress(raw[1:]) + d.flush()
    data = json.loads(raw)
    data.setdefault("id", node_id)
    for k, v in NODE_DEFAULTS.get(data.get("kind"), {}).items():
        data.setdefault(k, v)
    return Node.from_dict(data)


def decode_edge(raw: bytes) -> tuple[str, str, int]:
    """(other end, kind, time) from a schema 2 edge value."""
    kind, other, t = raw.decode().split("\0")
    return other, kind, int(t)


def decode_events(raw: bytes) -> list[dict[str, Any]]:
    """The events of a schema 2 block (8-byte last time + zlib JSON list) or a schema 1
    single-event value."""
    if raw[:1] == b"{":
        return [json.loads(raw)]
    return json.loads(zlib.decompress(raw[8:]))
